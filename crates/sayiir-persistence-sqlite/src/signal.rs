//! `SignalStore` for SQLite: signals, events, and the composites as single transactions.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{OptionalExtension, Transaction, params};
use sayiir_persistence::sayiir_core::snapshot::{
    PauseRequest, SignalKind, SignalRequest, WorkflowSnapshot,
};
use sayiir_persistence::validation::{
    IdKind, SignalDecision, not_paused_error, signal_decision, validate_cancel_ids, validate_id,
    validate_ids, validate_signal_request,
};
use sayiir_persistence::{BackendError, SignalStore};
use tracing::Instrument;

use crate::error::SqlResultExt;
use crate::row::{REFRESH_WOKEN, not_found, read_snapshot, write_snapshot};
use crate::{SqliteBackend, span};

fn read_signal(
    tx: &Transaction<'_>,
    operation: &str,
    id: &str,
    kind: SignalKind,
) -> Result<Option<SignalRequest>, BackendError> {
    let row: Option<(Option<String>, Option<String>, String)> = tx
        .prepare_cached(
            "SELECT reason, requested_by, requested_at FROM signals
             WHERE instance_id = ?1 AND kind = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![id, kind.as_ref()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .during(operation, "read signal")?;
    row.map(|(reason, requested_by, at)| {
        let requested_at = DateTime::parse_from_rfc3339(&at)
            .map_err(|e| {
                BackendError::Serialization(format!(
                    "stored {kind:?} signal of instance {id:?} has an unreadable time {at:?}: {e}"
                ))
            })?
            .with_timezone(&Utc);
        Ok(SignalRequest { reason, requested_by, requested_at })
    })
    .transpose()
}

fn delete_signal(
    tx: &Transaction<'_>,
    operation: &str,
    id: &str,
    kind: SignalKind,
) -> Result<(), BackendError> {
    tx.prepare_cached("DELETE FROM signals WHERE instance_id = ?1 AND kind = ?2")
        .and_then(|mut s| s.execute(params![id, kind.as_ref()]))
        .during(operation, "delete signal")?;
    tx.prepare_cached(
        "UPDATE workflows
         SET signal_pending = EXISTS (SELECT 1 FROM signals WHERE instance_id = ?1)
         WHERE instance_id = ?1",
    )
    .and_then(|mut s| s.execute([id]))
    .during(operation, "mark pending signals")
    .map(drop)
}

impl SqliteBackend {
    /// The no-signal fast path: one indexed read on a reader connection.
    async fn signal_pending(
        &self,
        operation: &'static str,
        id: &str,
        kind: SignalKind,
    ) -> Result<bool, BackendError> {
        let instance_id = id;
        let id = id.to_string();
        self.threads
            .read(operation, instance_id, move |tx| {
                tx.prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM signals WHERE instance_id = ?1 AND kind = ?2)",
                )
                .and_then(|mut s| s.query_row(params![id, kind.as_ref()], |r| r.get(0)))
                .during(operation, "probe signal")
            })
            .await
    }

    /// Applies a pending signal of `kind` to an in-progress workflow in one transaction.
    async fn apply_signal(
        &self,
        operation: &'static str,
        id: &str,
        kind: SignalKind,
        apply: impl FnOnce(&mut WorkflowSnapshot, SignalRequest) + Send + 'static,
    ) -> Result<bool, BackendError> {
        if !self.signal_pending(operation, id, kind).await? {
            return Ok(false);
        }
        let instance_id = id;
        let id = id.to_string();
        self.threads
            .write(operation, instance_id, move |tx| {
                let Some(request) = read_signal(tx, operation, &id, kind)? else {
                    return Ok(false);
                };
                let mut snapshot =
                    read_snapshot(tx, operation, &id)?.ok_or_else(|| not_found(&id))?;
                if !snapshot.state.is_in_progress() {
                    return Ok(false);
                }
                apply(&mut snapshot, request);
                write_snapshot(tx, operation, &snapshot)?;
                delete_signal(tx, operation, &id, kind)?;
                Ok(true)
            })
            .await
    }
}

impl SignalStore for SqliteBackend {
    async fn store_signal(
        &self,
        instance_id: &str,
        kind: SignalKind,
        request: SignalRequest,
    ) -> Result<(), BackendError> {
        validate_signal_request(instance_id, &request)?;
        let id = instance_id.to_string();
        self.threads
            .write("store_signal", instance_id, move |tx| {
                let status: String = tx
                    .prepare_cached("SELECT status FROM workflows WHERE instance_id = ?1")
                    .and_then(|mut s| s.query_row([&id], |r| r.get(0)).optional())
                    .during("store_signal", "read status")?
                    .ok_or_else(|| not_found(&id))?;
                if signal_decision(&status, kind)? == SignalDecision::AlreadyApplied {
                    return Ok(());
                }
                tx.prepare_cached(
                    "INSERT INTO signals (instance_id, kind, reason, requested_by, requested_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (instance_id, kind) DO UPDATE SET reason = excluded.reason,
                         requested_by = excluded.requested_by, requested_at = excluded.requested_at",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        id,
                        kind.as_ref(),
                        request.reason,
                        request.requested_by,
                        request.requested_at.to_rfc3339_opts(SecondsFormat::Nanos, true),
                    ])
                })
                .during("store_signal", "write signal")?;
                // Out of the scheduling indexes while a request is pending.
                tx.prepare_cached("UPDATE workflows SET signal_pending = 1 WHERE instance_id = ?1")
                    .and_then(|mut s| s.execute([&id]))
                    .during("store_signal", "mark pending signals")
                    .map(drop)
            })
            .instrument(span("store_signal", instance_id))
            .await
    }

    async fn get_signal(
        &self,
        instance_id: &str,
        kind: SignalKind,
    ) -> Result<Option<SignalRequest>, BackendError> {
        validate_id(IdKind::Instance, instance_id)?;
        let id = instance_id.to_string();
        self.threads
            .read("get_signal", instance_id, move |tx| read_signal(tx, "get_signal", &id, kind))
            .instrument(span("get_signal", instance_id))
            .await
    }

    async fn clear_signal(&self, instance_id: &str, kind: SignalKind) -> Result<(), BackendError> {
        validate_id(IdKind::Instance, instance_id)?;
        let id = instance_id.to_string();
        self.threads
            .write("clear_signal", instance_id, move |tx| {
                delete_signal(tx, "clear_signal", &id, kind)
            })
            .instrument(span("clear_signal", instance_id))
            .await
    }

    async fn send_event(
        &self,
        instance_id: &str,
        signal_name: &str,
        payload: Bytes,
    ) -> Result<(), BackendError> {
        validate_ids(&[(IdKind::Instance, instance_id), (IdKind::SignalName, signal_name)])?;
        let (id, name) = (instance_id.to_string(), signal_name.to_string());
        self.threads
            .write("send_event", instance_id, move |tx| {
                tx.prepare_cached(
                    "INSERT INTO events (instance_id, signal_name, payload) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut s| s.execute(params![id, name, payload.as_ref()]))
                .during("send_event", "insert")?;
                // A workflow waiting for this signal can now be advanced by find.
                tx.prepare_cached(
                    "UPDATE workflows SET woken = 1 WHERE instance_id = ?1 AND signal_name = ?2",
                )
                .and_then(|mut s| s.execute(params![id, name]))
                .during("send_event", "wake waiting workflow")
                .map(drop)
            })
            .instrument(span("send_event", instance_id))
            .await
    }

    async fn consume_event(
        &self,
        instance_id: &str,
        signal_name: &str,
    ) -> Result<Option<Bytes>, BackendError> {
        validate_ids(&[(IdKind::Instance, instance_id), (IdKind::SignalName, signal_name)])?;
        let (id, name) = (instance_id.to_string(), signal_name.to_string());
        self.threads
            .write("consume_event", instance_id, move |tx| {
                pop_event(tx, "consume_event", &id, &name)
            })
            .instrument(span("consume_event", instance_id))
            .await
    }

    async fn check_and_cancel(
        &self,
        instance_id: &str,
        interrupted_at_task: Option<&str>,
    ) -> Result<bool, BackendError> {
        validate_cancel_ids(instance_id, interrupted_at_task)?;
        let interrupted = interrupted_at_task.map(String::from);
        self.apply_signal("check_and_cancel", instance_id, SignalKind::Cancel, move |s, r| {
            s.mark_cancelled(r.reason, r.requested_by, interrupted);
        })
        .instrument(span("check_and_cancel", instance_id))
        .await
    }

    async fn check_and_pause(&self, instance_id: &str) -> Result<bool, BackendError> {
        validate_id(IdKind::Instance, instance_id)?;
        self.apply_signal("check_and_pause", instance_id, SignalKind::Pause, |s, r| {
            s.mark_paused(&PauseRequest::from(r));
        })
        .instrument(span("check_and_pause", instance_id))
        .await
    }

    async fn unpause(&self, instance_id: &str) -> Result<WorkflowSnapshot, BackendError> {
        validate_id(IdKind::Instance, instance_id)?;
        let id = instance_id.to_string();
        self.threads
            .write("unpause", instance_id, move |tx| {
                let mut snapshot =
                    read_snapshot(tx, "unpause", &id)?.ok_or_else(|| not_found(&id))?;
                if !snapshot.state.is_paused() {
                    return Err(not_paused_error(&snapshot.state));
                }
                snapshot.mark_unpaused();
                write_snapshot(tx, "unpause", &snapshot)?;
                // D3: a stale pause request must not pause the workflow again right away.
                delete_signal(tx, "unpause", &id, SignalKind::Pause)?;
                Ok(snapshot)
            })
            .instrument(span("unpause", instance_id))
            .await
    }
}

/// Removes and returns the oldest event of a queue, and refreshes the waiting workflow's
/// `woken` flag.
pub(crate) fn pop_event(
    tx: &Transaction<'_>,
    operation: &str,
    id: &str,
    name: &str,
) -> Result<Option<Bytes>, BackendError> {
    let payload: Option<Vec<u8>> = tx
        .prepare_cached(
            "DELETE FROM events WHERE seq = (
                 SELECT seq FROM events WHERE instance_id = ?1 AND signal_name = ?2
                 ORDER BY seq LIMIT 1)
             RETURNING payload",
        )
        .and_then(|mut s| s.query_row(params![id, name], |r| r.get(0)).optional())
        .during(operation, "pop event")?;
    if payload.is_some() {
        tx.prepare_cached(REFRESH_WOKEN)
            .and_then(|mut s| s.execute([id]))
            .during(operation, "refresh woken")?;
    }
    Ok(payload.map(Bytes::from))
}
