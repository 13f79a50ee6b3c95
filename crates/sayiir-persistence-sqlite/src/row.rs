//! A snapshot as the columns of its `workflows` row and its `task_results` rows, and back.

use bytes::Bytes;
use rusqlite::{OptionalExtension, Transaction, params};
use sayiir_persistence::BackendError;
use sayiir_persistence::codec::{decode_snapshot_with_results, encode_snapshot_without_results};
use sayiir_persistence::results::held_results;
use sayiir_persistence::sayiir_core::snapshot::{WorkflowSnapshot, WorkflowSnapshotState};
use sayiir_persistence::schedule::{IndexProjection, seconds_from_column, seconds_to_column};

use crate::error::SqlResultExt;

/// Writes the `workflows` row of `snapshot` (insert or replace) and, when its state holds
/// results, makes the `task_results` rows exactly its `completed_tasks`. A Completed or
/// Failed snapshot leaves the result rows alone: they are its archive (§ Results survive
/// completion).
pub(crate) fn write_snapshot(
    tx: &Transaction<'_>,
    operation: &str,
    snapshot: &WorkflowSnapshot,
) -> Result<(), BackendError> {
    let id = snapshot.instance_id.as_str();
    let blob = encode_snapshot_without_results(snapshot)?;
    let index = IndexProjection::of(snapshot);
    let tags = serde_json::to_string(index.tags)
        .map_err(|e| BackendError::Serialization(format!("task_tags of {id:?}: {e}")))?;
    let retry = index.current_task();
    let ready_priority = index.ready.then_some(index.priority);
    let (wake_ms, signal_name) = index.parked();
    let last_completed = match &snapshot.state {
        WorkflowSnapshotState::InProgress { last_completed_task_id, .. }
        | WorkflowSnapshotState::Paused { last_completed_task_id, .. } => {
            last_completed_task_id.as_deref()
        }
        _ => None,
    };
    tx.prepare_cached(UPSERT_WORKFLOW)
        .and_then(|mut stmt| {
            stmt.execute(params![
                id,
                snapshot.state.as_ref(),
                blob,
                snapshot.trace_parent,
                snapshot.definition_hash,
                seconds_to_column(snapshot.updated_at),
                last_completed,
                snapshot.position_kind(),
                snapshot.current_task_id(),
                index.priority,
                tags,
                retry.and_then(|r| r.not_before_ms),
                retry.and_then(|r| r.failed_worker),
                ready_priority,
                wake_ms,
                signal_name,
            ])
        })
        .during(operation, "write workflow row")?;

    if let Some(results) = held_results(&snapshot.state) {
        let ids: Vec<&str> = results.keys().map(String::as_str).collect();
        let ids = serde_json::to_string(&ids)
            .map_err(|e| BackendError::Serialization(format!("task ids of {id:?}: {e}")))?;
        tx.prepare_cached(DELETE_OTHER_RESULTS)
            .and_then(|mut stmt| stmt.execute(params![id, ids]))
            .during(operation, "drop removed results")?;
        let mut upsert = tx.prepare_cached(UPSERT_RESULT).during(operation, "prepare")?;
        for (task_id, result) in results {
            upsert
                .execute(params![id, task_id, result.output.as_ref()])
                .during(operation, "write result")?;
        }
    }
    if signal_name.is_some() {
        tx.prepare_cached(REFRESH_WOKEN)
            .and_then(|mut stmt| stmt.execute(params![id]))
            .during(operation, "check buffered events")?;
    }
    Ok(())
}

const UPSERT_WORKFLOW: &str = "
INSERT INTO workflows (instance_id, status, blob, trace_parent, definition_hash, updated_at,
    last_completed_task_id, position_kind, current_task_id, task_priority, task_tags,
    retry_not_before_ms, failed_worker, ready_priority, wake_ms, signal_name, woken)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, 0)
ON CONFLICT (instance_id) DO UPDATE SET
    status = excluded.status, blob = excluded.blob, trace_parent = excluded.trace_parent,
    definition_hash = excluded.definition_hash, updated_at = excluded.updated_at,
    last_completed_task_id = excluded.last_completed_task_id,
    position_kind = excluded.position_kind, current_task_id = excluded.current_task_id,
    task_priority = excluded.task_priority, task_tags = excluded.task_tags,
    retry_not_before_ms = excluded.retry_not_before_ms, failed_worker = excluded.failed_worker,
    ready_priority = excluded.ready_priority, wake_ms = excluded.wake_ms,
    signal_name = excluded.signal_name, woken = 0";

const DELETE_OTHER_RESULTS: &str = "
DELETE FROM task_results
WHERE instance_id = ?1 AND task_id NOT IN (SELECT value FROM json_each(?2))";

// Unchanged outputs are not rewritten: re-saving a snapshot after each task only writes
// the new result's pages.
const UPSERT_RESULT: &str = "
INSERT INTO task_results (instance_id, task_id, output) VALUES (?1, ?2, ?3)
ON CONFLICT (instance_id, task_id) DO UPDATE SET output = excluded.output
WHERE output IS NOT excluded.output";

pub(crate) const REFRESH_WOKEN: &str = "
UPDATE workflows SET woken = EXISTS (
    SELECT 1 FROM events e
    WHERE e.instance_id = workflows.instance_id AND e.signal_name = workflows.signal_name)
WHERE instance_id = ?1 AND signal_name IS NOT NULL";

/// Reads the whole snapshot of `id`, or `None` if there is no row.
pub(crate) fn read_snapshot(
    tx: &Transaction<'_>,
    operation: &str,
    id: &str,
) -> Result<Option<WorkflowSnapshot>, BackendError> {
    let row = tx
        .prepare_cached(
            "SELECT blob, trace_parent, updated_at, last_completed_task_id, status
             FROM workflows WHERE instance_id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([id], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, String>(4)?,
                ))
            })
            .optional()
        })
        .during(operation, "read workflow row")?;
    let Some((blob, trace_parent, updated_at, last_completed, status)) = row else {
        return Ok(None);
    };
    let results = if sayiir_persistence::results::status_holds_results(&status) {
        read_results(tx, operation, id)?
    } else {
        Vec::new()
    };
    let mut snapshot = decode_snapshot_with_results(id, &blob, results)?;
    snapshot.trace_parent = trace_parent;
    snapshot.updated_at = seconds_from_column(updated_at);
    if let WorkflowSnapshotState::InProgress { last_completed_task_id, .. } = &mut snapshot.state {
        *last_completed_task_id = last_completed;
    }
    Ok(Some(snapshot))
}

fn read_results(
    tx: &Transaction<'_>,
    operation: &str,
    id: &str,
) -> Result<Vec<(String, Bytes)>, BackendError> {
    let mut stmt = tx
        .prepare_cached("SELECT task_id, output FROM task_results WHERE instance_id = ?1")
        .during(operation, "read results")?;
    let rows = stmt
        .query_map([id], |row| {
            Ok((row.get::<_, String>(0)?, Bytes::from(row.get::<_, Vec<u8>>(1)?)))
        })
        .during(operation, "read results")?;
    rows.collect::<rusqlite::Result<Vec<_>>>().during(operation, "read results")
}

/// `NotFound` for a missing snapshot.
pub(crate) fn not_found(id: &str) -> BackendError {
    BackendError::NotFound(id.to_string())
}
