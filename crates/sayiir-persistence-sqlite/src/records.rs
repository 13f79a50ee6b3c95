//! `WorkflowTransfer` for SQLite: each export is one read transaction, each import one write
//! transaction, over the tables the 0.4.0 methods write.

use std::collections::BTreeMap;

use bytes::Bytes;
use rusqlite::{Transaction, params};
use sayiir_persistence::BackendError;
use sayiir_persistence::claims::task_claim;
use sayiir_persistence::operation::Call;
use sayiir_persistence::results::reads_archive;
use sayiir_persistence::sayiir_core::snapshot::SignalKind;
use sayiir_persistence::sayiir_core::task_claim::TaskClaim;
use sayiir_persistence::transfer::{ImportOutcome, QueuePage, WorkflowRecord, WorkflowTransfer};

use crate::SqliteBackend;
use crate::error::SqlResultExt;
use crate::row::{REFRESH_WOKEN, read_snapshot, write_snapshot};
use crate::signal::{read_signal, write_signal};

/// Rows of `sql` (one `?1` parameter, the instance id) as pairs.
fn pairs<A, B>(
    tx: &Transaction<'_>,
    operation: &str,
    sql: &str,
    id: &str,
) -> Result<Vec<(A, B)>, BackendError>
where
    A: rusqlite::types::FromSql,
    B: rusqlite::types::FromSql,
{
    let mut stmt = tx.prepare_cached(sql).during(operation, sql)?;
    let rows = stmt.query_map([id], |row| Ok((row.get(0)?, row.get(1)?))).during(operation, sql)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().during(operation, sql)
}

/// The buffered events of `id`, per signal name, oldest first.
fn read_events(
    tx: &Transaction<'_>,
    operation: &str,
    id: &str,
) -> Result<BTreeMap<String, Vec<Bytes>>, BackendError> {
    let rows: Vec<(String, Vec<u8>)> = pairs(
        tx,
        operation,
        "SELECT signal_name, payload FROM events WHERE instance_id = ?1 ORDER BY seq",
        id,
    )?;
    let mut events: BTreeMap<String, Vec<Bytes>> = BTreeMap::new();
    for (name, payload) in rows {
        events.entry(name).or_default().push(Bytes::from(payload));
    }
    Ok(events)
}

/// Writes everything of `record` but the snapshot row into an empty slot.
fn write_rest(
    tx: &Transaction<'_>,
    operation: &str,
    record: &WorkflowRecord,
) -> Result<(), BackendError> {
    let id = record.instance_id.as_str();
    for (task_id, output) in &record.archived_results {
        tx.prepare_cached(
            "INSERT INTO task_results (instance_id, task_id, output) VALUES (?1, ?2, ?3)",
        )
        .and_then(|mut s| s.execute(params![id, task_id, output.as_ref()]))
        .during(operation, "write archived result")?;
    }
    let requests =
        [(SignalKind::Cancel, &record.cancel_request), (SignalKind::Pause, &record.pause_request)];
    for (kind, request) in requests {
        if let Some(request) = request {
            write_signal(tx, operation, id, kind, request)?;
        }
    }
    for (name, queue) in &record.events {
        for payload in queue {
            tx.prepare_cached(
                "INSERT INTO events (instance_id, signal_name, payload) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![id, name, payload.as_ref()]))
            .during(operation, "write event")?;
        }
    }
    tx.prepare_cached(REFRESH_WOKEN)
        .and_then(|mut s| s.execute([id]))
        .during(operation, "refresh woken")
        .map(drop)
}

impl WorkflowTransfer for SqliteBackend {
    async fn export_workflow(
        &self,
        instance_id: &str,
    ) -> Result<Option<WorkflowRecord>, BackendError> {
        const OP: &str = "export_workflow";
        let id = instance_id.to_string();
        self.read(Call::ExportWorkflow(instance_id), move |tx| {
            let events = read_events(tx, OP, &id)?;
            let Some(snapshot) = read_snapshot(tx, OP, &id)? else {
                return Ok(WorkflowRecord::unstarted(id, events));
            };
            let archived = reads_archive(&snapshot.state);
            let mut record = WorkflowRecord::of_snapshot(snapshot);
            if archived {
                let rows: Vec<(String, Vec<u8>)> = pairs(
                    tx,
                    OP,
                    "SELECT task_id, output FROM task_results WHERE instance_id = ?1",
                    &id,
                )?;
                record.archived_results =
                    rows.into_iter().map(|(task, output)| (task, Bytes::from(output))).collect();
            }
            record.cancel_request = read_signal(tx, OP, &id, SignalKind::Cancel)?;
            record.pause_request = read_signal(tx, OP, &id, SignalKind::Pause)?;
            record.events = events;
            Ok(Some(record))
        })
        .await
    }

    async fn import_workflow(
        &self,
        record: &WorkflowRecord,
    ) -> Result<ImportOutcome, BackendError> {
        const OP: &str = "import_workflow";
        let owned = record.clone();
        self.write(Call::ImportWorkflow(record), move |tx| {
            let record = owned;
            let stored: bool = tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM workflows WHERE instance_id = ?1)
                         OR EXISTS (SELECT 1 FROM events WHERE instance_id = ?1)",
                )
                .and_then(|mut s| s.query_row([&record.instance_id], |r| r.get(0)))
                .during(OP, "check what is stored")?;
            if stored {
                return Ok(ImportOutcome::AlreadyStored);
            }
            if let Some(snapshot) = &record.snapshot {
                write_snapshot(tx, OP, snapshot)?;
            }
            write_rest(tx, OP, &record)?;
            Ok(ImportOutcome::Imported)
        })
        .await
    }

    async fn list_unstarted_queues(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<QueuePage, BackendError> {
        const OP: &str = "list_unstarted_queues";
        let after = cursor.map(String::from);
        self.read(Call::ListUnstartedQueues(limit), move |tx| {
            let fetch = i64::try_from(QueuePage::fetch_size(limit)).unwrap_or(i64::MAX);
            let mut stmt = tx
                .prepare_cached(
                    "SELECT DISTINCT e.instance_id FROM events e
                     WHERE (?1 IS NULL OR e.instance_id > ?1)
                       AND NOT EXISTS (SELECT 1 FROM workflows w
                                       WHERE w.instance_id = e.instance_id)
                     ORDER BY e.instance_id LIMIT ?2",
                )
                .during(OP, "prepare")?;
            let rows = stmt
                .query_map(params![after, fetch], |row| row.get::<_, String>(0))
                .during(OP, "read event queues")?;
            let ids = rows.collect::<rusqlite::Result<Vec<_>>>().during(OP, "read")?;
            Ok(QueuePage::from_fetched(ids, limit))
        })
        .await
    }

    async fn task_claims(&self, instance_id: &str) -> Result<Vec<TaskClaim>, BackendError> {
        const OP: &str = "task_claims";
        let id = instance_id.to_string();
        self.read(Call::TaskClaims(instance_id), move |tx| {
            let now_ms = chrono::Utc::now().timestamp_millis();
            let mut stmt = tx
                .prepare_cached(
                    "SELECT task_id, worker_id, claimed_ms, expires_ms FROM claims
                     WHERE instance_id = ?1 AND (expires_ms IS NULL OR expires_ms > ?2)
                     ORDER BY task_id",
                )
                .during(OP, "prepare")?;
            let rows = stmt
                .query_map(params![id, now_ms], |row| {
                    let (task, worker): (String, String) = (row.get(0)?, row.get(1)?);
                    Ok(task_claim(&id, &task, &worker, row.get(2)?, row.get(3)?))
                })
                .during(OP, "read claims")?;
            rows.collect::<rusqlite::Result<Vec<_>>>().during(OP, "read claims")
        })
        .await
    }
}
