//! `SnapshotStore`: each method is one statement, one round trip.

use std::sync::LazyLock;

use bytes::Bytes;
use chrono::Utc;

use crate::error::{db, db_all};
use crate::row::{RESULTS_LATERAL, SNAPSHOT_COLUMNS, SnapshotRow, StoredRow, assemble};
use crate::sayiir_core::snapshot::WorkflowSnapshot;
use crate::schedule::seconds_to_column;
use crate::{BackendError, PostgresBackend, SnapshotStore};
use sayiir_persistence::operation::Call;
use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;

/// Calls the `save_snapshot` function (migration 0006): upsert of the row, definition hash
/// included (`$20`), then, for states that hold results, replacement of the result rows.
pub(crate) const SAVE: &str = "SELECT {schema}.save_snapshot(\
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)";

/// Adds one result to an in-progress workflow: the result row plus the row's last id, clock
/// and readiness. The row update comes first and locks the row, so concurrent calls for one
/// instance take turns and none is lost; a workflow in another state is left as it is.
pub(crate) const SAVE_TASK_RESULT: &str = "WITH updated AS (
        UPDATE {schema}.workflows
        SET last_completed_task_id = $2,
            updated_at = $4,
            current_done = current_done OR current_task_id IS NOT DISTINCT FROM $2,
            has_input = TRUE,
            revision = revision + 1
        WHERE instance_id = $1 AND status = 'InProgress'
        RETURNING instance_id
    ), stored AS (
        INSERT INTO {schema}.task_results (instance_id, task_id, output)
        SELECT instance_id, $2, $3 FROM updated
        ON CONFLICT (instance_id, task_id) DO UPDATE SET output = EXCLUDED.output
    )
    SELECT EXISTS (SELECT 1 FROM updated)
        OR EXISTS (SELECT 1 FROM {schema}.workflows WHERE instance_id = $1)";

/// The stored snapshot with its results, for [`assemble`].
pub(crate) static LOAD_SQL: LazyLock<String> = LazyLock::new(|| {
    let lateral = &*RESULTS_LATERAL;
    format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM {{schema}}.workflows w {lateral} \
         WHERE w.instance_id = $1"
    )
});

/// Everything stored for one instance, in every table (§ Delete removes everything). The other
/// tables are emptied only when the workflow row existed: events sent ahead of a run stay until
/// that run is deleted.
pub(crate) const DELETE: &str = "WITH gone AS (
        DELETE FROM {schema}.workflows WHERE instance_id = $1 RETURNING instance_id
    ), results AS (
        DELETE FROM {schema}.task_results WHERE instance_id = $1 AND EXISTS (SELECT 1 FROM gone)
    ), signals AS (
        DELETE FROM {schema}.signals WHERE instance_id = $1 AND EXISTS (SELECT 1 FROM gone)
    ), claims AS (
        DELETE FROM {schema}.claims WHERE instance_id = $1 AND EXISTS (SELECT 1 FROM gone)
    ), events AS (
        DELETE FROM {schema}.events WHERE instance_id = $1 AND EXISTS (SELECT 1 FROM gone)
    ), receipts AS (
        DELETE FROM {schema}.event_receipts WHERE instance_id = $1 AND EXISTS (SELECT 1 FROM gone)
    )
    SELECT EXISTS (SELECT 1 FROM gone)";

pub(crate) const LIST: &str = "SELECT instance_id FROM {schema}.workflows";

impl PostgresBackend {
    /// The `save_snapshot` call that stores `row`, the stored form of `snapshot`: its columns,
    /// its results (for a state that holds them) and its definition hash.
    pub(crate) fn save_query<'q>(
        &self,
        row: &'q StoredRow,
        snapshot: &'q WorkflowSnapshot,
    ) -> Query<'q, Postgres, PgArguments> {
        let (task_ids, outputs): (Vec<&str>, Vec<&[u8]>) = row
            .results
            .iter()
            .flatten()
            .map(|(task, output)| (task.as_str(), output.as_ref()))
            .unzip();
        let query = sqlx::query(self.statement(|s| &s.save_snapshot)).bind(&snapshot.instance_id);
        row.bind_columns(query)
            .bind(row.results.is_some())
            .bind(task_ids)
            .bind(outputs)
            .bind(&snapshot.definition_hash)
    }

    /// The statement of [`LOAD_SQL`].
    pub(crate) fn load_statement(&self) -> sqlx::SqlStr {
        self.statement(|s| &s.load_snapshot)
    }
}

impl SnapshotStore for PostgresBackend {
    async fn save_snapshot(&self, snapshot: &WorkflowSnapshot) -> Result<(), BackendError> {
        let id = snapshot.instance_id.as_str();
        self.calls()
            .run(Call::SaveSnapshot(snapshot), async {
                let row = StoredRow::of(snapshot)?;
                // An overwrite with the whole state: sent again on a fresh connection after a lost
                // one, it leaves the same state.
                crate::retry_read!(self, |conn| self.save_query(&row, snapshot).execute(conn))
                    .map_err(db("save_snapshot", id))?;
                Ok(())
            })
            .await
    }

    async fn save_task_result(
        &self,
        instance_id: &str,
        task_id: &str,
        output: Bytes,
    ) -> Result<(), BackendError> {
        self.calls()
            .run(Call::SaveTaskResult { instance_id, task_id }, async {
                // The snapshot's own clock, as `mark_task_completed` would stamp it, in the
                // encoding of the `updated_at` column.
                let now = seconds_to_column(u64::try_from(Utc::now().timestamp()).unwrap_or(0));
                // The same output stored again is the same state: retried after a lost connection.
                let found: bool = crate::retry_read!(self, |conn| {
                    sqlx::query_scalar(self.statement(|s| &s.save_task_result))
                        .bind(instance_id)
                        .bind(task_id)
                        .bind(output.as_ref())
                        .bind(now)
                        .fetch_one(conn)
                })
                .map_err(db("save_task_result", instance_id))?;
                if found { Ok(()) } else { Err(BackendError::NotFound(instance_id.to_string())) }
            })
            .await
    }

    async fn load_snapshot(&self, instance_id: &str) -> Result<WorkflowSnapshot, BackendError> {
        self.calls()
            .run(Call::LoadSnapshot(instance_id), async {
                let row: Option<SnapshotRow> = crate::retry_read!(self, |conn| {
                    sqlx::query_as(self.load_statement()).bind(instance_id).fetch_optional(conn)
                })
                .map_err(db("load_snapshot", instance_id))?;
                let row = row.ok_or_else(|| BackendError::NotFound(instance_id.to_string()))?;
                assemble(instance_id, row)
            })
            .await
    }

    async fn delete_snapshot(&self, instance_id: &str) -> Result<(), BackendError> {
        self.calls()
            .run(Call::DeleteSnapshot(instance_id), async {
                let found: bool = crate::on_held!(self, |conn| {
                    sqlx::query_scalar(self.statement(|s| &s.delete_snapshot))
                        .bind(instance_id)
                        .fetch_one(conn)
                })
                .map_err(db("delete_snapshot", instance_id))?;
                if found { Ok(()) } else { Err(BackendError::NotFound(instance_id.to_string())) }
            })
            .await
    }

    async fn list_snapshots(&self) -> Result<Vec<String>, BackendError> {
        self.calls()
            .run(Call::ListSnapshots, async {
                crate::retry_read!(self, |conn| sqlx::query_scalar(
                    self.statement(|s| &s.list_snapshots)
                )
                .fetch_all(conn))
                .map_err(db_all("list_snapshots"))
            })
            .await
    }
}
