//! `SignalStore`: cancel/pause requests and external events.
//!
//! Lock order, everywhere: the instance's `wake_lock` (only where a signal wait's woken mark
//! is written), then the workflow row, then signal rows. The checks are one plain
//! read when no request is pending (the common case, twice per task boundary) and a short
//! transaction otherwise.

use bytes::Bytes;
use std::time::Duration;

use chrono::DateTime;
use sqlx::{Postgres, Transaction};

use crate::error::db;
use crate::row::{COLUMNS_PARAMS, SnapshotRow, StoredRow, assemble};
use crate::sayiir_core::snapshot::{PauseRequest, SignalKind, SignalRequest, WorkflowSnapshot};
use crate::validation::{SignalDecision, not_paused_error, signal_decision};
use crate::{BackendError, PostgresBackend, SignalStore};
use sayiir_persistence::operation::Call;
use sayiir_persistence::status::{self, ALL as ALL_STATUSES};

/// Stores a request if the workflow's status allows it, in one statement: the workflow row is
/// locked (by the update that marks it `signal_pending` when the request is stored, migration
/// 0003) so its status cannot change between the check and the write, and before the signals
/// row (the lock order of every writer). `$7` lists the statuses that must not store it, from
/// [`signal_decision`].
pub(crate) const STORE: &str = "WITH w AS (
        UPDATE {schema}.workflows
        SET signal_pending = signal_pending OR NOT (status = ANY ($7))
        WHERE instance_id = $1
        RETURNING status
    ), stored AS (
        INSERT INTO {schema}.signals
            (instance_id, kind, reason, requested_by, requested_secs, requested_nanos)
        SELECT $1, $2, $3, $4, $5, $6 FROM w WHERE NOT (w.status = ANY ($7))
        ON CONFLICT (instance_id, kind) DO UPDATE SET
            reason = EXCLUDED.reason,
            requested_by = EXCLUDED.requested_by,
            requested_secs = EXCLUDED.requested_secs,
            requested_nanos = EXCLUDED.requested_nanos
    )
    SELECT status FROM w";

pub(crate) const GET: &str = "SELECT reason, requested_by, requested_secs, requested_nanos \
    FROM {schema}.signals WHERE instance_id = $1 AND kind = $2";

pub(crate) const GET_FOR_UPDATE: &str = "SELECT reason, requested_by, requested_secs, requested_nanos \
    FROM {schema}.signals WHERE instance_id = $1 AND kind = $2 FOR UPDATE";

pub(crate) const PENDING: &str =
    "SELECT EXISTS (SELECT 1 FROM {schema}.signals WHERE instance_id = $1 AND kind = $2)";

pub(crate) const CLEAR: &str = "DELETE FROM {schema}.signals WHERE instance_id = $1 AND kind = $2";

/// Locks the workflow row before [`CLEAR`] (the lock order of every writer).
pub(crate) const LOCK_FOR_FLAG: &str =
    "SELECT 1 FROM {schema}.workflows WHERE instance_id = $1 FOR NO KEY UPDATE";

/// Recomputes `signal_pending` after [`CLEAR`] (migration 0003). A statement of its own, after
/// the lock: its snapshot then sees every request committed while the lock was awaited (one
/// statement holding all three would compute the flag from a snapshot taken before).
pub(crate) const FLAG: &str = "UPDATE {schema}.workflows
    SET signal_pending = EXISTS (SELECT 1 FROM {schema}.signals WHERE instance_id = $1)
    WHERE instance_id = $1";

pub(crate) const LOCK_WORKFLOW: &str =
    "SELECT status FROM {schema}.workflows WHERE instance_id = $1 FOR UPDATE";

/// Queues the event and marks a workflow waiting for it as woken (function of migration 0002).
pub(crate) const SEND_EVENT: &str = "SELECT {schema}.send_event($1, $2, $3)";

/// Takes the oldest event of the queue (NULL: none) and clears the workflow's woken mark if
/// that was its last event (function of migration 0002). `SKIP LOCKED`: a concurrent consumer
/// holding the oldest row makes this one take the next (or none), never the same event.
pub(crate) const CONSUME_EVENT: &str = "SELECT {schema}.consume_event_once($1, $2, $3)";

/// The per-instance lock every writer of a signal wait's `woken` mark takes first.
pub(crate) const WAKE_LOCK: &str = "SELECT {schema}.wake_lock($1)";

/// `(reason, requested_by, requested_secs, requested_nanos)` of a `signals` row.
/// A stored cancel or pause request.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SignalRow {
    reason: Option<String>,
    requested_by: Option<String>,
    /// `requested_at`: whole Unix seconds.
    requested_secs: i64,
    /// `requested_at`: nanoseconds within the second.
    requested_nanos: i32,
}

/// A request's time as the `signals` columns hold it: whole Unix seconds and the nanoseconds
/// within the second (below 2 × 10^9 even in a leap second, so they fit an `INTEGER`).
pub(crate) fn request_time(request: &SignalRequest) -> (i64, i32) {
    let at = request.requested_at;
    (at.timestamp(), i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0))
}

pub(crate) fn request_of(instance_id: &str, row: SignalRow) -> Result<SignalRequest, BackendError> {
    let SignalRow { reason, requested_by, requested_secs: secs, requested_nanos: nanos } = row;
    let requested_at = u32::try_from(nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(secs, nanos))
        .ok_or_else(|| crate::error::corrupt(instance_id, "signal time out of range"))?;
    Ok(SignalRequest { reason, requested_by, requested_at })
}

/// The `UPDATE` that writes a changed snapshot's row and drops the request it consumed (`$17`
/// is the signal kind).
pub(crate) fn write_and_clear_sql() -> String {
    format!(
        "WITH cleared AS (
            DELETE FROM {{schema}}.signals WHERE instance_id = $1 AND kind = $17
        )
        UPDATE {{schema}}.workflows SET {COLUMNS_PARAMS},
            signal_pending = EXISTS (SELECT 1 FROM {{schema}}.signals
                                     WHERE instance_id = $1 AND kind <> $17)
        WHERE instance_id = $1"
    )
}

impl PostgresBackend {
    /// Locks the workflow row and loads the snapshot, inside `tx`; `None` if it is missing.
    /// The load is a statement of its own, after the lock, so it sees the latest results.
    pub(crate) async fn lock_and_load(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        operation: &'static str,
        instance_id: &str,
    ) -> Result<Option<(String, SnapshotRow)>, BackendError> {
        let status: Option<String> = sqlx::query_scalar(self.statement(|s| &s.lock_workflow))
            .bind(instance_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db(operation, instance_id))?;
        let Some(status) = status else {
            return Ok(None);
        };
        let row: SnapshotRow = sqlx::query_as(self.load_statement())
            .bind(instance_id)
            .fetch_one(&mut **tx)
            .await
            .map_err(db(operation, instance_id))?;
        Ok(Some((status, row)))
    }

    /// Writes `snapshot`'s row and deletes the `kind` request, inside `tx`. The result rows
    /// are unchanged by the transitions that call this.
    async fn write_and_clear(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        operation: &'static str,
        snapshot: &WorkflowSnapshot,
        kind: SignalKind,
    ) -> Result<(), BackendError> {
        let id = snapshot.instance_id.as_str();
        let row = StoredRow::of(snapshot)?;
        let query = sqlx::query(self.statement(|s| &s.write_and_clear)).bind(id);
        row.bind_columns(query)
            .bind(kind.as_ref())
            .execute(&mut **tx)
            .await
            .map_err(db(operation, id))?;
        Ok(())
    }

    /// `check_and_cancel` and `check_and_pause`: applies a pending `kind` request to an
    /// in-progress workflow with `apply`, atomically.
    async fn check_and_apply(
        &self,
        operation: &'static str,
        instance_id: &str,
        kind: SignalKind,
        apply: impl FnOnce(&mut WorkflowSnapshot, SignalRequest),
    ) -> Result<bool, BackendError> {
        // The fast path: one plain read, no transaction. A request stored just after it is
        // seen at the next task boundary.
        let pending: bool = crate::retry_read!(self, |conn| {
            sqlx::query_scalar(self.statement(|s| &s.pending_signal))
                .bind(instance_id)
                .bind(kind.as_ref())
                .fetch_one(conn)
        })
        .map_err(db(operation, instance_id))?;
        if !pending {
            return Ok(false);
        }
        // Boxed: the transaction's state would otherwise enlarge the future of every check,
        // most of which end above.
        Box::pin(self.apply_pending(operation, instance_id, kind, apply)).await
    }

    /// The slow path of [`Self::check_and_apply`]: a request is pending.
    async fn apply_pending(
        &self,
        operation: &'static str,
        instance_id: &str,
        kind: SignalKind,
        apply: impl FnOnce(&mut WorkflowSnapshot, SignalRequest),
    ) -> Result<bool, BackendError> {
        let mut tx = self.pool.begin().await.map_err(db(operation, instance_id))?;
        let loaded = self.lock_and_load(&mut tx, operation, instance_id).await?;
        let signal: Option<SignalRow> =
            sqlx::query_as(self.statement(|s| &s.get_signal_for_update))
                .bind(instance_id)
                .bind(kind.as_ref())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db(operation, instance_id))?;
        // Dropping `tx` rolls it back.
        let Some(signal) = signal else {
            return Ok(false);
        };
        let Some((status, row)) = loaded else {
            return Err(BackendError::NotFound(instance_id.to_string()));
        };
        if status != status::IN_PROGRESS {
            // The request stays pending (e.g. a cancel for a paused workflow).
            return Ok(false);
        }
        let mut snapshot = assemble(instance_id, row)?;
        apply(&mut snapshot, request_of(instance_id, signal)?);
        self.write_and_clear(&mut tx, operation, &snapshot, kind).await?;
        tx.commit().await.map_err(db(operation, instance_id))?;
        Ok(true)
    }
}

impl SignalStore for PostgresBackend {
    async fn store_signal(
        &self,
        instance_id: &str,
        kind: SignalKind,
        request: SignalRequest,
    ) -> Result<(), BackendError> {
        self.calls()
            .run(Call::StoreSignal { instance_id, request: &request }, async {
                // The statuses for which the shared rule says "do not store", so the rule is
                // applied inside the statement that writes.
                let refused: Vec<&str> = ALL_STATUSES
                    .into_iter()
                    .filter(|status| {
                        !matches!(signal_decision(status, kind), Ok(SignalDecision::Store))
                    })
                    .collect();
                let (secs, nanos) = request_time(&request);
                let status: Option<String> = crate::on_held!(self, |conn| {
                    sqlx::query_scalar(self.statement(|s| &s.store_signal))
                        .bind(instance_id)
                        .bind(kind.as_ref())
                        .bind(&request.reason)
                        .bind(&request.requested_by)
                        .bind(secs)
                        .bind(nanos)
                        .bind(refused)
                        .fetch_optional(conn)
                })
                .map_err(db("store_signal", instance_id))?;
                let status =
                    status.ok_or_else(|| BackendError::NotFound(instance_id.to_string()))?;
                signal_decision(&status, kind).map(|_| ())
            })
            .await
    }

    async fn get_signal(
        &self,
        instance_id: &str,
        kind: SignalKind,
    ) -> Result<Option<SignalRequest>, BackendError> {
        self.calls()
            .run(Call::GetSignal(instance_id), async {
                let row: Option<SignalRow> = crate::retry_read!(self, |conn| {
                    sqlx::query_as(self.statement(|s| &s.get_signal))
                        .bind(instance_id)
                        .bind(kind.as_ref())
                        .fetch_optional(conn)
                })
                .map_err(db("get_signal", instance_id))?;
                row.map(|row| request_of(instance_id, row)).transpose()
            })
            .await
    }

    async fn clear_signal(&self, instance_id: &str, kind: SignalKind) -> Result<(), BackendError> {
        self.calls()
            .run(Call::ClearSignal(instance_id), async {
                let failed = || db("clear_signal", instance_id);
                let mut tx = self.pool.begin().await.map_err(failed())?;
                sqlx::query(self.statement(|s| &s.lock_for_flag))
                    .bind(instance_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(failed())?;
                sqlx::query(self.statement(|s| &s.clear_signal))
                    .bind(instance_id)
                    .bind(kind.as_ref())
                    .execute(&mut *tx)
                    .await
                    .map_err(failed())?;
                sqlx::query(self.statement(|s| &s.flag_signal))
                    .bind(instance_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(failed())?;
                tx.commit().await.map_err(failed())?;
                Ok(())
            })
            .await
    }

    async fn send_event(
        &self,
        instance_id: &str,
        signal_name: &str,
        payload: Bytes,
    ) -> Result<(), BackendError> {
        self.calls()
            .run(Call::SendEvent { instance_id, signal_name }, async {
                crate::on_held!(self, |conn| {
                    sqlx::query(self.statement(|s| &s.send_event))
                        .bind(instance_id)
                        .bind(signal_name)
                        .bind(payload.as_ref())
                        .execute(conn)
                })
                .map_err(db("send_event", instance_id))?;
                Ok(())
            })
            .await
    }

    async fn consume_event(
        &self,
        instance_id: &str,
        signal_name: &str,
    ) -> Result<Option<Bytes>, BackendError> {
        self.calls()
            .run(Call::ConsumeEvent { instance_id, signal_name }, async {
                // A consumed event must reach the caller: the request carries an id and is asked
                // again (same id, on a fresh connection) after a lost connection or an attempt
                // that got no answer, until `call_timeout` ends the call; the server answers a
                // repeat with the event the first attempt took.
                let request = crate::requests::request_id();
                let attempt = (self.inner.options.call_timeout / 5).max(Duration::from_millis(200));
                let ask = || {
                    sqlx::query_scalar::<_, Option<Vec<u8>>>(self.statement(|s| &s.consume_event))
                        .bind(instance_id)
                        .bind(signal_name)
                        .bind(request.as_str())
                };
                let mut pause = Duration::from_millis(20);
                let mut answer = tokio::time::timeout(attempt, ask().fetch_one(&self.pool)).await;
                loop {
                    match answer {
                        Ok(Ok(payload)) => return Ok(payload.map(Bytes::from)),
                        Ok(Err(error)) if !crate::error::is_connection_error(&error) => {
                            return Err(db("consume_event", instance_id)(error));
                        }
                        Ok(Err(_)) | Err(_) => {}
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                    answer = tokio::time::timeout(attempt, async {
                        let mut fresh = self.fresh_connection().await?;
                        let got = ask().fetch_one(&mut fresh).await;
                        self.discard_connection(fresh).await;
                        got
                    })
                    .await;
                }
            })
            .await
    }

    async fn check_and_cancel(
        &self,
        instance_id: &str,
        interrupted_at_task: Option<&str>,
    ) -> Result<bool, BackendError> {
        self.calls()
            .run(Call::CheckAndCancel { instance_id, interrupted_at_task }, async {
                self.check_and_apply("check_and_cancel", instance_id, SignalKind::Cancel, |s, r| {
                    s.mark_cancelled(
                        r.reason,
                        r.requested_by,
                        interrupted_at_task.map(String::from),
                    );
                })
                .await
            })
            .await
    }

    async fn check_and_pause(&self, instance_id: &str) -> Result<bool, BackendError> {
        self.calls()
            .run(Call::CheckAndPause(instance_id), async {
                self.check_and_apply("check_and_pause", instance_id, SignalKind::Pause, |s, r| {
                    s.mark_paused(&PauseRequest::from(r));
                })
                .await
            })
            .await
    }

    async fn unpause(&self, instance_id: &str) -> Result<WorkflowSnapshot, BackendError> {
        self.calls()
            .run(Call::Unpause(instance_id), async {
                let mut tx = self.pool.begin().await.map_err(db("unpause", instance_id))?;
                // The workflow may go back to a signal wait: its woken mark is recomputed under
                // this lock, taken before the row lock as everywhere.
                sqlx::query(self.statement(|s| &s.wake_lock))
                    .bind(instance_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("unpause", instance_id))?;
                let (_, row) = self
                    .lock_and_load(&mut tx, "unpause", instance_id)
                    .await?
                    .ok_or_else(|| BackendError::NotFound(instance_id.to_string()))?;
                let mut snapshot = assemble(instance_id, row)?;
                if !snapshot.state.is_paused() {
                    return Err(not_paused_error(&snapshot.state));
                }
                snapshot.mark_unpaused();
                // A pause request still pending would undo this unpause at the next check (§
                // Unpause drops a pending pause).
                self.write_and_clear(&mut tx, "unpause", &snapshot, SignalKind::Pause).await?;
                tx.commit().await.map_err(db("unpause", instance_id))?;
                Ok(snapshot)
            })
            .await
    }
}
