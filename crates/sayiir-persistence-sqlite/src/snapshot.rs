//! `SnapshotStore` for SQLite.

use bytes::Bytes;
use rusqlite::{OptionalExtension, params};
use sayiir_persistence::sayiir_core::snapshot::WorkflowSnapshot;
use sayiir_persistence::schedule::seconds_to_column;
use sayiir_persistence::status;
use sayiir_persistence::{BackendError, SnapshotStore};

use crate::SqliteBackend;
use crate::error::SqlResultExt;
use crate::row::{not_found, read_snapshot, write_snapshot};
use sayiir_persistence::operation::Call;

impl SnapshotStore for SqliteBackend {
    async fn save_snapshot(&self, snapshot: &WorkflowSnapshot) -> Result<(), BackendError> {
        let owned = snapshot.clone();
        self.write(Call::SaveSnapshot(snapshot), move |tx| {
            write_snapshot(tx, "save_snapshot", &owned)
        })
        .await
    }

    async fn save_task_result(
        &self,
        instance_id: &str,
        task_id: &str,
        output: Bytes,
    ) -> Result<(), BackendError> {
        let (id, task) = (instance_id.to_string(), task_id.to_string());
        self.write(Call::SaveTaskResult { instance_id, task_id }, move |tx| {
            const OP: &str = "save_task_result";
            let status: Option<String> = tx
                .prepare_cached("SELECT status FROM workflows WHERE instance_id = ?1")
                .and_then(|mut s| s.query_row([&id], |row| row.get(0)).optional())
                .during(OP, "read status")?;
            match status.as_deref() {
                None => return Err(not_found(&id)),
                // mark_task_completed changes nothing outside InProgress.
                Some(status) if status != status::IN_PROGRESS => return Ok(()),
                Some(_) => {}
            }
            tx.prepare_cached(
                "INSERT INTO task_results (instance_id, task_id, output) VALUES (?1, ?2, ?3)
                     ON CONFLICT (instance_id, task_id) DO UPDATE SET output = excluded.output",
            )
            .and_then(|mut s| s.execute(params![id, task, output.as_ref()]))
            .during(OP, "write result")?;
            // The task that just completed may be the current one (no longer runnable),
            // and a workflow waiting for its first input now has one.
            tx.prepare_cached(
                "UPDATE workflows SET last_completed_task_id = ?2, updated_at = ?3,
                         ready_priority = CASE
                             WHEN position_kind = 'AtTask' AND NOT EXISTS (
                                 SELECT 1 FROM task_results r
                                 WHERE r.instance_id = ?1 AND r.task_id = current_task_id)
                             THEN task_priority END
                     WHERE instance_id = ?1",
            )
            .and_then(|mut s| s.execute(params![id, task, now_column()]))
            .during(OP, "update workflow row")?;
            Ok(())
        })
        .await
    }

    async fn load_snapshot(&self, instance_id: &str) -> Result<WorkflowSnapshot, BackendError> {
        let id = instance_id.to_string();
        self.read(Call::LoadSnapshot(instance_id), move |tx| {
            read_snapshot(tx, "load_snapshot", &id)?.ok_or_else(|| not_found(&id))
        })
        .await
    }

    async fn delete_snapshot(&self, instance_id: &str) -> Result<(), BackendError> {
        let id = instance_id.to_string();
        self.write(Call::DeleteSnapshot(instance_id), move |tx| {
            if delete_workflow(tx, "delete_snapshot", &id)? { Ok(()) } else { Err(not_found(&id)) }
        })
        .await
    }

    async fn list_snapshots(&self) -> Result<Vec<String>, BackendError> {
        self.read(Call::ListSnapshots, |tx| {
            let mut stmt = tx
                .prepare_cached("SELECT instance_id FROM workflows")
                .during("list_snapshots", "prepare")?;
            let ids = stmt.query_map([], |row| row.get(0)).during("list_snapshots", "query")?;
            ids.collect::<rusqlite::Result<Vec<String>>>().during("list_snapshots", "read")
        })
        .await
    }
}

/// Deletes the workflow `id` and everything stored for it (§ Delete removes everything);
/// `false` if no workflow was stored.
pub(crate) fn delete_workflow(
    tx: &rusqlite::Transaction<'_>,
    operation: &str,
    id: &str,
) -> Result<bool, BackendError> {
    let deleted = tx
        .prepare_cached("DELETE FROM workflows WHERE instance_id = ?1")
        .and_then(|mut s| s.execute([id]))
        .during(operation, "workflow row")?;
    if deleted == 0 {
        return Ok(false);
    }
    for sql in [
        "DELETE FROM task_results WHERE instance_id = ?1",
        "DELETE FROM signals WHERE instance_id = ?1",
        "DELETE FROM claims WHERE instance_id = ?1",
        "DELETE FROM events WHERE instance_id = ?1",
    ] {
        tx.prepare_cached(sql).and_then(|mut s| s.execute([id])).during(operation, sql)?;
    }
    Ok(true)
}

/// Now, in the encoding of the `updated_at` column (the snapshot's clock, as
/// `mark_task_completed` would stamp it).
fn now_column() -> i64 {
    seconds_to_column(u64::try_from(crate::find::now_secs()).unwrap_or(0))
}
