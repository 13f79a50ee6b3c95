//! `RetentionStore` and `WorkflowListing` for PostgreSQL, on the indexes of migration 0006:
//! `workflows_by_status (status, updated_at, instance_id)` and `workflows_by_definition
//! (status, definition_hash, updated_at, instance_id)`. One statement per page or batch; each
//! status is read from its end of the index (a `LATERAL` subquery per status), so a page or a
//! batch costs O(`limit` × statuses), not O(rows).

use sayiir_persistence::listing::{ListRequest, WorkflowListing, WorkflowPage, WorkflowSummary};
use sayiir_persistence::operation::Call;
use sayiir_persistence::retention::{PruneRequest, RetentionStore};
use sayiir_persistence::schedule::{seconds_from_column, seconds_to_column};
use sayiir_persistence::status::TERMINAL;

use futures::FutureExt;
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::Query;
use sqlx::{FromRow, Row, SqlStr};

use crate::error::db_all;
use crate::{BackendError, PostgresBackend};

/// The newest rows of each status of `$1`, `$2` per status, before the cursor `($3, $4)` when
/// `after`, of the definition `$5` when `by_definition`. Rows stored before migration 0006
/// whose definition is not backfilled yet show an empty one.
pub(crate) fn list_sql(by_definition: bool, after: bool) -> String {
    let definition =
        if by_definition { "AND w.definition_hash = $5" } else { "AND $5::text IS NULL" };
    let cursor = if after {
        "AND (w.updated_at, w.instance_id) < ($3, $4::text)"
    } else {
        "AND $3::bigint IS NULL AND $4::text IS NULL"
    };
    format!(
        "SELECT p.instance_id, p.status, COALESCE(p.definition_hash, '') AS definition_hash,
            p.updated_at
        FROM unnest($1::text[]) AS s (status) CROSS JOIN LATERAL (
            SELECT w.instance_id, w.status, w.definition_hash, w.updated_at
            FROM {{schema}}.workflows w
            WHERE w.status = s.status {definition} {cursor}
            ORDER BY w.updated_at DESC, w.instance_id DESC
            LIMIT $2
        ) p"
    )
}

/// Deletes the oldest finished rows (statuses `$1`) before the cut-off `$2`, `$3` at most, of
/// the definition `$4` when `by_definition`, with everything stored for them, in one
/// statement. The delete checks status and cut-off again: a row saved meanwhile (back in
/// progress, or newer) stays.
pub(crate) fn prune_sql(by_definition: bool) -> String {
    let definition =
        if by_definition { "AND w.definition_hash = $4" } else { "AND $4::text IS NULL" };
    let cascade = |table: &str| {
        format!(
            "DELETE FROM {{schema}}.{table} WHERE instance_id IN (SELECT instance_id FROM gone)"
        )
    };
    format!(
        "WITH candidates AS (
            SELECT c.instance_id FROM unnest($1::text[]) AS s (status) CROSS JOIN LATERAL (
                SELECT w.instance_id, w.updated_at FROM {{schema}}.workflows w
                WHERE w.status = s.status {definition} AND w.updated_at < $2
                ORDER BY w.updated_at, w.instance_id
                LIMIT $3
            ) c
            ORDER BY c.updated_at, c.instance_id
            LIMIT $3
        ), gone AS (
            DELETE FROM {{schema}}.workflows w USING candidates c
            WHERE w.instance_id = c.instance_id AND w.status = ANY ($1::text[])
              AND w.updated_at < $2
            RETURNING w.instance_id
        ), results AS ({}), signals AS ({}), claims AS ({}), events AS ({}), receipts AS ({})
        SELECT count(*) FROM gone",
        cascade("task_results"),
        cascade("signals"),
        cascade("claims"),
        cascade("events"),
        cascade("event_receipts"),
    )
}

/// A row of [`list_sql`].
#[derive(Debug, sqlx::FromRow)]
struct ListRow {
    instance_id: String,
    status: String,
    definition_hash: String,
    /// In the column's encoding (`seconds_to_column`).
    updated_at: i64,
}

/// A row count as PostgreSQL's `bigint`.
fn sql_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The prune statement `sql` (`prune_sql`, possibly wrapped in EXPLAIN) with the arguments of
/// `request` bound.
pub(crate) fn prune_query(sql: SqlStr, request: &PruneRequest) -> Query<'_, Postgres, PgArguments> {
    sqlx::query(sql)
        .bind(TERMINAL.as_slice())
        .bind(seconds_to_column(request.finished_before))
        .bind(sql_limit(request.batch_size))
        .bind(request.definition_hash.as_deref())
}

/// The listing statement `sql` (`list_sql` of the request's shape, possibly wrapped in
/// EXPLAIN) with the arguments of `request` bound.
pub(crate) fn list_query(sql: SqlStr, request: &ListRequest) -> Query<'_, Postgres, PgArguments> {
    let (at, id) = match &request.after {
        Some(after) => {
            (Some(seconds_to_column(after.updated_at)), Some(after.instance_id.as_str()))
        }
        None => (None, None),
    };
    sqlx::query(sql)
        .bind(request.wanted_statuses())
        .bind(sql_limit(request.limit))
        .bind(at)
        .bind(id)
        .bind(request.definition_hash.as_deref())
}

impl PostgresBackend {
    /// The prune statement for `request`'s shape.
    pub(crate) fn prune_statement(&self, request: &PruneRequest) -> SqlStr {
        if request.definition_hash.is_some() {
            self.statement(|s| &s.prune_by_definition)
        } else {
            self.statement(|s| &s.prune)
        }
    }

    /// The listing statement for `request`'s shape.
    pub(crate) fn list_statement(&self, request: &ListRequest) -> SqlStr {
        match (request.definition_hash.is_some(), request.after.is_some()) {
            (false, false) => self.statement(|s| &s.list),
            (false, true) => self.statement(|s| &s.list_after),
            (true, false) => self.statement(|s| &s.list_by_definition),
            (true, true) => self.statement(|s| &s.list_by_definition_after),
        }
    }
}

impl RetentionStore for PostgresBackend {
    async fn prune_finished_batch(&self, request: &PruneRequest) -> Result<u64, BackendError> {
        self.calls()
            .run(Call::PruneFinished(request), async {
                let statement = self.prune_statement(request);
                let pruned: i64 = crate::on_held!(self, |conn| {
                    prune_query(statement.clone(), request).fetch_one(conn).map(|row| {
                        row.and_then(|row: sqlx::postgres::PgRow| row.try_get::<i64, _>(0))
                    })
                })
                .map_err(db_all("prune_finished"))?;
                Ok(u64::try_from(pruned).unwrap_or(0))
            })
            .await
    }
}

impl WorkflowListing for PostgresBackend {
    async fn list_workflows(&self, request: &ListRequest) -> Result<WorkflowPage, BackendError> {
        self.calls()
            .run(Call::ListWorkflows(request), async {
                let statement = self.list_statement(request);
                let rows: Vec<sqlx::postgres::PgRow> = crate::retry_read!(self, |conn| {
                    list_query(statement.clone(), request).fetch_all(conn)
                })
                .map_err(db_all("list_workflows"))?;
                let candidates = rows
                    .iter()
                    .map(|row| {
                        let row = ListRow::from_row(row)?;
                        Ok(WorkflowSummary {
                            instance_id: row.instance_id,
                            status: row.status,
                            definition_hash: row.definition_hash,
                            updated_at: seconds_from_column(row.updated_at),
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(db_all("list_workflows"))?;
                Ok(request.page(candidates))
            })
            .await
    }
}
