//! `SignalStore` for SQLite: signals, events, and the composites as single transactions.

use bytes::Bytes;
use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use rusqlite::{OptionalExtension, Transaction, params};
use sayiir_persistence::sayiir_core::snapshot::{
    PauseRequest, SignalKind, SignalRequest, WorkflowSnapshot,
};
use sayiir_persistence::validation::{SignalDecision, not_paused_error, signal_decision};
use sayiir_persistence::{BackendError, SignalStore};

use crate::SqliteBackend;
use crate::error::SqlResultExt;
use crate::row::{REFRESH_WOKEN, not_found, read_snapshot, write_snapshot};
use sayiir_persistence::operation::Call;

pub(crate) fn read_signal(
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
        let requested_at = time_from_text(&at).ok_or_else(|| {
            BackendError::Serialization(format!(
                "stored {kind:?} signal of instance {id:?} has an unreadable time {at:?}; \
                 clear the signal (clear_signal) and store it again"
            ))
        })?;
        Ok(SignalRequest { reason, requested_by, requested_at })
    })
    .transpose()
}

/// An instant as the text of the `requested_at` column: RFC 3339 with nanoseconds for the
/// years 0 to 9999, which RFC 3339 can write; `@<seconds>.<nanoseconds>` since the Unix epoch
/// for the rest of `DateTime<Utc>`'s range, so every instant `store_signal` accepts reads back
/// exactly.
fn time_to_text(time: DateTime<Utc>) -> String {
    if (0..=9999).contains(&time.year()) {
        time.to_rfc3339_opts(SecondsFormat::Nanos, true)
    } else {
        format!("@{}.{:09}", time.timestamp(), time.timestamp_subsec_nanos())
    }
}

/// The inverse of [`time_to_text`]; `None` for text it did not write.
fn time_from_text(text: &str) -> Option<DateTime<Utc>> {
    match text.strip_prefix('@') {
        Some(epoch) => {
            let (seconds, nanos) = epoch.split_once('.')?;
            DateTime::from_timestamp(seconds.parse().ok()?, nanos.parse().ok()?)
        }
        None => DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc)),
    }
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

/// Stores `request` as the pending request of `kind` (replacing one already there), and takes
/// the workflow out of the scheduling indexes while it is pending.
pub(crate) fn write_signal(
    tx: &Transaction<'_>,
    operation: &str,
    id: &str,
    kind: SignalKind,
    request: &SignalRequest,
) -> Result<(), BackendError> {
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
            time_to_text(request.requested_at),
        ])
    })
    .during(operation, "write signal")?;
    // Out of the scheduling indexes while a request is pending.
    tx.prepare_cached("UPDATE workflows SET signal_pending = 1 WHERE instance_id = ?1")
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
        call: Call<'_>,
        kind: SignalKind,
        apply: impl FnOnce(&mut WorkflowSnapshot, SignalRequest) + Send + 'static,
    ) -> Result<bool, BackendError> {
        let (operation, instance_id) = (call.name(), call.instance_id());
        self.calls()
            .run(call, async {
                if !self.signal_pending(operation, instance_id, kind).await? {
                    return Ok(false);
                }
                let id = instance_id.to_string();
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
        let id = instance_id.to_string();
        // The request moves into the transaction; the checks look at a copy.
        let checked = request.clone();
        self.write(Call::StoreSignal { instance_id, request: &checked }, move |tx| {
            let status: String = tx
                .prepare_cached("SELECT status FROM workflows WHERE instance_id = ?1")
                .and_then(|mut s| s.query_row([&id], |r| r.get(0)).optional())
                .during("store_signal", "read status")?
                .ok_or_else(|| not_found(&id))?;
            if signal_decision(&status, kind)? == SignalDecision::AlreadyApplied {
                return Ok(());
            }
            write_signal(tx, "store_signal", &id, kind, &request)
        })
        .await
    }

    async fn get_signal(
        &self,
        instance_id: &str,
        kind: SignalKind,
    ) -> Result<Option<SignalRequest>, BackendError> {
        let id = instance_id.to_string();
        self.read(Call::GetSignal(instance_id), move |tx| read_signal(tx, "get_signal", &id, kind))
            .await
    }

    async fn clear_signal(&self, instance_id: &str, kind: SignalKind) -> Result<(), BackendError> {
        let id = instance_id.to_string();
        self.write(Call::ClearSignal(instance_id), move |tx| {
            delete_signal(tx, "clear_signal", &id, kind)
        })
        .await
    }

    async fn send_event(
        &self,
        instance_id: &str,
        signal_name: &str,
        payload: Bytes,
    ) -> Result<(), BackendError> {
        let (id, name) = (instance_id.to_string(), signal_name.to_string());
        self.write(Call::SendEvent { instance_id, signal_name }, move |tx| {
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
        .await
    }

    async fn consume_event(
        &self,
        instance_id: &str,
        signal_name: &str,
    ) -> Result<Option<Bytes>, BackendError> {
        let (id, name) = (instance_id.to_string(), signal_name.to_string());
        self.write(Call::ConsumeEvent { instance_id, signal_name }, move |tx| {
            pop_event(tx, "consume_event", &id, &name)
        })
        .await
    }

    async fn check_and_cancel(
        &self,
        instance_id: &str,
        interrupted_at_task: Option<&str>,
    ) -> Result<bool, BackendError> {
        let call = Call::CheckAndCancel { instance_id, interrupted_at_task };
        let interrupted = interrupted_at_task.map(String::from);
        self.apply_signal(call, SignalKind::Cancel, move |s, r| {
            s.mark_cancelled(r.reason, r.requested_by, interrupted);
        })
        .await
    }

    async fn check_and_pause(&self, instance_id: &str) -> Result<bool, BackendError> {
        self.apply_signal(Call::CheckAndPause(instance_id), SignalKind::Pause, |s, r| {
            s.mark_paused(&PauseRequest::from(r));
        })
        .await
    }

    async fn unpause(&self, instance_id: &str) -> Result<WorkflowSnapshot, BackendError> {
        let id = instance_id.to_string();
        self.write(Call::Unpause(instance_id), move |tx| {
            let mut snapshot = read_snapshot(tx, "unpause", &id)?.ok_or_else(|| not_found(&id))?;
            if !snapshot.state.is_paused() {
                return Err(not_paused_error(&snapshot.state));
            }
            snapshot.mark_unpaused();
            write_snapshot(tx, "unpause", &snapshot)?;
            // § Unpause drops a pending pause: a stale pause request must not pause the workflow
            // again right away.
            delete_signal(tx, "unpause", &id, SignalKind::Pause)?;
            Ok(snapshot)
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every instant `DateTime<Utc>` can hold reads back exactly, in both text forms.
    #[test]
    fn every_instant_round_trips_through_text() {
        let instants = [
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            DateTime::from_timestamp(-62_167_219_201, 999_999_999).unwrap_or_default(),
            DateTime::from_timestamp(0, 0).unwrap_or_default(),
            DateTime::from_timestamp(1_234_567_890, 123_456_789).unwrap_or_default(),
            DateTime::from_timestamp(253_402_300_799, 999_999_999).unwrap_or_default(),
            DateTime::from_timestamp(253_402_300_800, 0).unwrap_or_default(),
        ];
        for time in instants {
            assert_eq!(time_from_text(&time_to_text(time)), Some(time), "{time:?}");
        }
        assert!(
            time_to_text(DateTime::from_timestamp(0, 0).unwrap_or_default()).starts_with("1970")
        );
        assert_eq!(time_from_text("not a time"), None);
        assert_eq!(time_from_text("@1.x"), None);
    }
}
