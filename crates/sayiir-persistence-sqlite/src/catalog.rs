//! `RetentionStore` and `WorkflowListing` for SQLite, on the indexes of migration 0004:
//! `workflows_by_status (status, updated_at, instance_id)` and `workflows_by_definition
//! (status, definition_hash, updated_at, instance_id)`. Each status is read from its end of
//! the index, so a page or a batch costs O(`limit` × statuses), not O(rows).

use rusqlite::types::Value;
use sayiir_persistence::BackendError;
use sayiir_persistence::listing::{ListRequest, WorkflowListing, WorkflowPage, WorkflowSummary};
use sayiir_persistence::operation::Call;
use sayiir_persistence::retention::{PruneRequest, RetentionStore};
use sayiir_persistence::schedule::{seconds_from_column, seconds_to_column};
use sayiir_persistence::status::TERMINAL;

use crate::SqliteBackend;
use crate::error::SqlResultExt;
use crate::snapshot::delete_workflow;

/// The oldest finished rows of one status before the cut-off `?2`, `?3` at most; `?4` the
/// definition when the statement filters by one.
fn prune_sql(by_definition: bool) -> &'static str {
    if by_definition {
        "SELECT updated_at, instance_id FROM workflows INDEXED BY workflows_by_definition
         WHERE status = ?1 AND definition_hash = ?4 AND updated_at < ?2
         ORDER BY updated_at, instance_id LIMIT ?3"
    } else {
        "SELECT updated_at, instance_id FROM workflows INDEXED BY workflows_by_status
         WHERE status = ?1 AND updated_at < ?2 AND ?4 IS NULL
         ORDER BY updated_at, instance_id LIMIT ?3"
    }
}

/// The newest rows of one status (`?1`), `?2` at most, before the cursor `(?3, ?4)` when
/// the statement has one, of the definition `?5` when it filters by one.
fn list_sql(by_definition: bool, after: bool) -> String {
    let (index, definition) = if by_definition {
        ("workflows_by_definition", "AND definition_hash = ?5")
    } else {
        ("workflows_by_status", "AND ?5 IS NULL")
    };
    let cursor = if after {
        "AND (updated_at, instance_id) < (?3, ?4)"
    } else {
        "AND ?3 IS NULL AND ?4 IS NULL"
    };
    format!(
        "SELECT instance_id, status, definition_hash, updated_at
         FROM workflows INDEXED BY {index}
         WHERE status = ?1 {definition} {cursor}
         ORDER BY updated_at DESC, instance_id DESC LIMIT ?2"
    )
}

/// A row count as SQLite's integer.
fn sql_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl RetentionStore for SqliteBackend {
    async fn prune_finished_batch(&self, request: &PruneRequest) -> Result<u64, BackendError> {
        const OP: &str = "prune_finished";
        let owned = request.clone();
        self.write(Call::PruneFinished(request), move |tx| {
            let request = owned;
            let sql = prune_sql(request.definition_hash.is_some());
            let before = seconds_to_column(request.finished_before);
            let mut oldest: Vec<(i64, String)> = Vec::new();
            for status in TERMINAL {
                let mut stmt = tx.prepare_cached(sql).during(OP, "prepare")?;
                let rows = stmt
                    .query_map(
                        rusqlite::params![
                            status,
                            before,
                            sql_limit(request.batch_size),
                            request.definition_hash
                        ],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .during(OP, "read finished workflows")?;
                for row in rows {
                    oldest.push(row.during(OP, "read finished workflows")?);
                }
            }
            oldest.sort();
            oldest.truncate(request.batch_size);
            let mut pruned = 0;
            for (_, id) in oldest {
                if delete_workflow(tx, OP, &id)? {
                    pruned += 1;
                }
            }
            Ok(pruned)
        })
        .await
    }
}

impl WorkflowListing for SqliteBackend {
    async fn list_workflows(&self, request: &ListRequest) -> Result<WorkflowPage, BackendError> {
        const OP: &str = "list_workflows";
        let owned = request.clone();
        self.read(Call::ListWorkflows(request), move |tx| {
            let request = owned;
            let sql = list_sql(request.definition_hash.is_some(), request.after.is_some());
            let (at, id) = match &request.after {
                Some(after) => (
                    Value::Integer(seconds_to_column(after.updated_at)),
                    Value::Text(after.instance_id.clone()),
                ),
                None => (Value::Null, Value::Null),
            };
            let mut candidates = Vec::new();
            for status in request.wanted_statuses() {
                let mut stmt = tx.prepare_cached(&sql).during(OP, "prepare")?;
                let rows = stmt
                    .query_map(
                        rusqlite::params![
                            status,
                            sql_limit(request.limit),
                            at,
                            id,
                            request.definition_hash
                        ],
                        |row| {
                            Ok(WorkflowSummary {
                                instance_id: row.get(0)?,
                                status: row.get(1)?,
                                definition_hash: row.get(2)?,
                                updated_at: seconds_from_column(row.get(3)?),
                            })
                        },
                    )
                    .during(OP, "read workflows")?;
                for row in rows {
                    candidates.push(row.during(OP, "read workflows")?);
                }
            }
            Ok(request.page(candidates))
        })
        .await
    }
}
