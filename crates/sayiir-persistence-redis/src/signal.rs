//! `SignalStore`: cancel and pause requests, events, and the atomic transitions.
//!
//! `store_signal`, `clear_signal` and the event queues are single scripts. The transitions
//! (`check_and_cancel`, `check_and_pause`, `unpause`) need the snapshot decoded, so they read
//! it with one script, apply the sayiir-core mutator in Rust, and write it back with a
//! compare-and-set that also consumes the request. The compare-and-set is on what the
//! transition depends on: the pending request, and the state revision, which only whole
//! saves bump. Results recorded meanwhile by `save_task_result` (concurrent fork branches)
//! do not make it lose: the transition keeps the results hash as it is, and keeps the
//! stored last completed task id where the new state carries it. A lost compare-and-set
//! (another whole save, another transition, a request overwritten) re-reads, without a
//! limit: each loss means another writer made progress, and an error here would be fatal
//! to the workflow (contract 8.4). When no request is pending, a check is a single
//! `HEXISTS`.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};

use bytes::Bytes;
use sayiir_persistence::sayiir_core::snapshot::{
    PauseRequest, SignalKind, SignalRequest, SnapshotStatus, WorkflowSnapshot,
};
use sayiir_persistence::validation::{
    IdKind, SignalDecision, not_paused_error, signal_decision, validate_cancel_ids, validate_id,
    validate_ids,
};
use sayiir_persistence::{BackendError, SignalStore};
use tracing::Instrument;

use crate::error::{self, At};
use crate::reply::{self, Items};
use crate::snapshot::{Expect, Written};
use crate::{RedisBackend, Retry, scripts, span};

fn kind_name(kind: SignalKind) -> &'static str {
    match kind {
        SignalKind::Cancel => "Cancel",
        SignalKind::Pause => "Pause",
    }
}

fn encode_request(at: &At<'_>, request: &SignalRequest) -> Result<Vec<u8>, BackendError> {
    rmp_serde::to_vec_named(request).map_err(|e| {
        BackendError::Serialization(format!("redis {at}: cannot encode the request: {e}"))
    })
}

fn decode_request(at: &At<'_>, raw: &[u8]) -> Result<SignalRequest, BackendError> {
    rmp_serde::from_slice(raw).map_err(|e| error::corrupt(at, &format!("signal request: {e}")))
}

/// The decision word `store_signal.lua` applies for one status.
fn decision_word(status: &str, kind: SignalKind) -> &'static str {
    match signal_decision(status, kind) {
        Ok(SignalDecision::Store) => "store",
        Ok(SignalDecision::AlreadyApplied) => "already",
        Err(_) => "refuse",
    }
}

/// The ARGV tail of `store_signal.lua` for `kind`: the decision for a status the table does
/// not list, then (status, decision) for every status, all computed by the core rule
/// `validation::signal_decision`, so the script only looks the stored status up.
fn decision_table(kind: SignalKind) -> Vec<String> {
    // A text no status has: the rule's answer for unknown statuses.
    let mut table = vec![decision_word("", kind).to_string()];
    for status in [
        SnapshotStatus::InProgress,
        SnapshotStatus::Completed,
        SnapshotStatus::Failed,
        SnapshotStatus::Cancelled,
        SnapshotStatus::Paused,
    ] {
        let name: &str = status.as_ref();
        table.push(name.to_string());
        table.push(decision_word(name, kind).to_string());
    }
    table
}

static CANCEL_DECISIONS: LazyLock<Vec<String>> =
    LazyLock::new(|| decision_table(SignalKind::Cancel));
static PAUSE_DECISIONS: LazyLock<Vec<String>> = LazyLock::new(|| decision_table(SignalKind::Pause));

fn decisions(kind: SignalKind) -> &'static [String] {
    match kind {
        SignalKind::Cancel => &CANCEL_DECISIONS,
        SignalKind::Pause => &PAUSE_DECISIONS,
    }
}

/// Lets the scheduler run other tasks a random number of times, growing with the number of
/// compare-and-sets lost in a row, so that transitions that keep colliding spread out.
async fn back_off(losses: u32) {
    let spread = 1_u64 << losses.min(6);
    let turns = RandomState::new().hash_one(losses) % spread + 1;
    for _ in 0..turns {
        YieldNow(false).await;
    }
}

/// Pending once, then ready: hands the thread to the other tasks of the runtime.
#[derive(Debug)]
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl RedisBackend {
    /// Applies a pending request of `kind` to an in-progress workflow (contract 4.5, 4.6).
    async fn apply_signal(
        &self,
        at: &At<'_>,
        instance_id: &str,
        kind: SignalKind,
        interrupted_at_task: Option<&str>,
    ) -> Result<bool, BackendError> {
        let name = kind_name(kind);
        let keys = self.keys().workflow(instance_id);
        let mut probe = redis::cmd("HEXISTS");
        probe.arg(keys.signals()).arg(name);
        if !self.query::<bool>(at, &probe, Retry::OnReconnect).await? {
            return Ok(false);
        }
        let mut losses = 0_u32;
        loop {
            let read = self.read_full(at, instance_id, name).await?;
            let Some(raw) = read.request else {
                return Ok(false);
            };
            let Some(loaded) = read.loaded else {
                return Err(BackendError::NotFound(instance_id.to_string()));
            };
            if loaded.status != SnapshotStatus::InProgress.as_ref() {
                return Ok(false);
            }
            let revision = loaded.transition_revision();
            let request = decode_request(at, &raw)?;
            let mut snapshot = loaded.assemble(instance_id)?;
            match kind {
                SignalKind::Cancel => snapshot.mark_cancelled(
                    request.reason,
                    request.requested_by,
                    interrupted_at_task.map(String::from),
                ),
                SignalKind::Pause => snapshot.mark_paused(&PauseRequest::from(request)),
            }
            let expect = Expect {
                consume_signal: Some((name, &raw)),
                // Paused keeps the last completed task id: one recorded since the read wins.
                keep_last: kind == SignalKind::Pause,
                add_results: Some(Vec::new()),
                ..revision.expect()
            };
            if self.write_snapshot(at, &snapshot, expect).await? == Written::Ok {
                return Ok(true);
            }
            losses = losses.saturating_add(1);
            back_off(losses).await;
        }
    }
}

impl SignalStore for RedisBackend {
    async fn store_signal(
        &self,
        instance_id: &str,
        kind: SignalKind,
        request: SignalRequest,
    ) -> Result<(), BackendError> {
        async {
            validate_id(IdKind::Instance, instance_id)?;
            let at = At::new("store_signal").instance(instance_id);
            let encoded = encode_request(&at, &request)?;
            let keys = self.keys().workflow(instance_id);
            let script = &scripts().store_signal;
            let mut cmd = self.workflow_script_command(script, &keys, instance_id);
            cmd.arg(kind_name(kind)).arg(&encoded).arg(decisions(kind));
            let reply = self.run_script(&at, script, &cmd, Retry::No).await?;
            let mut items = Items::new(reply, at)?;
            match items.text()?.as_deref() {
                Some("stored" | "already") => Ok(()),
                Some("not_found") => Err(BackendError::NotFound(instance_id.to_string())),
                // The same rule that built the table gives the error, with its message.
                Some("refused") => {
                    match signal_decision(&items.text()?.unwrap_or_default(), kind) {
                        Err(refused) => Err(refused),
                        Ok(decision) => Err(error::reply(
                            &at,
                            &format!("refused a signal the rule allows: {decision:?}"),
                        )),
                    }
                }
                other => Err(error::reply(&at, &format!("store_signal returned {other:?}"))),
            }
        }
        .instrument(span("store_signal", instance_id))
        .await
    }

    async fn get_signal(
        &self,
        instance_id: &str,
        kind: SignalKind,
    ) -> Result<Option<SignalRequest>, BackendError> {
        async {
            validate_id(IdKind::Instance, instance_id)?;
            let at = At::new("get_signal").instance(instance_id);
            let keys = self.keys().workflow(instance_id);
            let mut cmd = redis::cmd("HGET");
            cmd.arg(keys.signals()).arg(kind_name(kind));
            let raw: Option<Vec<u8>> = self.query(&at, &cmd, Retry::OnReconnect).await?;
            raw.map(|raw| decode_request(&at, &raw)).transpose()
        }
        .instrument(span("get_signal", instance_id))
        .await
    }

    async fn clear_signal(&self, instance_id: &str, kind: SignalKind) -> Result<(), BackendError> {
        async {
            validate_id(IdKind::Instance, instance_id)?;
            let at = At::new("clear_signal").instance(instance_id);
            let keys = self.keys().workflow(instance_id);
            let args: [&[u8]; 1] = [kind_name(kind).as_bytes()];
            let reply = self
                .run_workflow_script(
                    &at,
                    &scripts().clear_signal,
                    &keys,
                    instance_id,
                    &args,
                    Retry::No,
                )
                .await?;
            expect_ok(&at, reply)
        }
        .instrument(span("clear_signal", instance_id))
        .await
    }

    async fn send_event(
        &self,
        instance_id: &str,
        signal_name: &str,
        payload: Bytes,
    ) -> Result<(), BackendError> {
        async {
            validate_ids(&[(IdKind::Instance, instance_id), (IdKind::SignalName, signal_name)])?;
            let at = At::new("send_event").instance(instance_id);
            let keys = self.keys().workflow(instance_id);
            let args: [&[u8]; 2] = [signal_name.as_bytes(), &payload];
            let reply = self
                .run_workflow_script(
                    &at,
                    &scripts().send_event,
                    &keys,
                    instance_id,
                    &args,
                    Retry::No,
                )
                .await?;
            expect_ok(&at, reply)
        }
        .instrument(span("send_event", instance_id))
        .await
    }

    async fn consume_event(
        &self,
        instance_id: &str,
        signal_name: &str,
    ) -> Result<Option<Bytes>, BackendError> {
        async {
            validate_ids(&[(IdKind::Instance, instance_id), (IdKind::SignalName, signal_name)])?;
            let at = At::new("consume_event").instance(instance_id);
            let keys = self.keys().workflow(instance_id);
            let args: [&[u8]; 1] = [signal_name.as_bytes()];
            let reply = self
                .run_workflow_script(
                    &at,
                    &scripts().consume_event,
                    &keys,
                    instance_id,
                    &args,
                    Retry::No,
                )
                .await?;
            let mut items = Items::new(reply, at)?;
            if items.remaining() == 0 {
                return Ok(None);
            }
            Ok(Some(Bytes::from(items.bytes()?.unwrap_or_default())))
        }
        .instrument(span("consume_event", instance_id))
        .await
    }

    async fn check_and_cancel(
        &self,
        instance_id: &str,
        interrupted_at_task: Option<&str>,
    ) -> Result<bool, BackendError> {
        async {
            validate_cancel_ids(instance_id, interrupted_at_task)?;
            let at = At::new("check_and_cancel").instance(instance_id);
            self.apply_signal(&at, instance_id, SignalKind::Cancel, interrupted_at_task).await
        }
        .instrument(span("check_and_cancel", instance_id))
        .await
    }

    async fn check_and_pause(&self, instance_id: &str) -> Result<bool, BackendError> {
        async {
            validate_id(IdKind::Instance, instance_id)?;
            let at = At::new("check_and_pause").instance(instance_id);
            self.apply_signal(&at, instance_id, SignalKind::Pause, None).await
        }
        .instrument(span("check_and_pause", instance_id))
        .await
    }

    async fn unpause(&self, instance_id: &str) -> Result<WorkflowSnapshot, BackendError> {
        async {
            validate_id(IdKind::Instance, instance_id)?;
            let at = At::new("unpause").instance(instance_id);
            let mut losses = 0_u32;
            loop {
                let read = self.read_full(&at, instance_id, "").await?;
                let Some(loaded) = read.loaded else {
                    return Err(BackendError::NotFound(instance_id.to_string()));
                };
                let revision = loaded.transition_revision();
                let mut snapshot = loaded.assemble(instance_id)?;
                if !snapshot.state.is_paused() {
                    return Err(not_paused_error(&snapshot.state));
                }
                snapshot.mark_unpaused();
                let expect = Expect {
                    clear_pause: true,
                    add_results: Some(Vec::new()),
                    ..revision.expect()
                };
                if self.write_snapshot(&at, &snapshot, expect).await? == Written::Ok {
                    return Ok(snapshot);
                }
                losses = losses.saturating_add(1);
                back_off(losses).await;
            }
        }
        .instrument(span("unpause", instance_id))
        .await
    }
}

fn expect_ok(at: &At<'_>, reply: redis::Value) -> Result<(), BackendError> {
    match reply::word(reply, at)?.as_str() {
        "ok" => Ok(()),
        other => Err(error::reply(at, other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table `store_signal.lua` receives is contract 4.1 with D2, as the core rule
    /// gives it.
    #[test]
    fn decision_tables_follow_the_core_rule() {
        let table = |kind| decisions(kind).iter().map(String::as_str).collect::<Vec<_>>();
        assert_eq!(
            table(SignalKind::Cancel),
            [
                "store",
                "InProgress",
                "store",
                "Completed",
                "refuse",
                "Failed",
                "refuse",
                "Cancelled",
                "already",
                "Paused",
                "store"
            ]
        );
        assert_eq!(
            table(SignalKind::Pause),
            [
                "store",
                "InProgress",
                "store",
                "Completed",
                "refuse",
                "Failed",
                "refuse",
                "Cancelled",
                "refuse",
                "Paused",
                "already"
            ]
        );
    }
}
