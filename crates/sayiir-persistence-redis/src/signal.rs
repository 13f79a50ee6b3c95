//! `SignalStore`: cancel and pause requests, events, and the atomic transitions.
//!
//! Every operation is one script. The transitions (`check_and_cancel`, `check_and_pause`,
//! `unpause`) change the stored status and record what they applied, without decoding the
//! blob (see `transition`); when no request is pending, a check is a single `HEXISTS`.

use std::sync::LazyLock;

use bytes::Bytes;
use chrono::Utc;
use sayiir_persistence::sayiir_core::snapshot::{
    SignalKind, SignalRequest, SnapshotStatus, WorkflowSnapshot,
};
use sayiir_persistence::validation::{SignalDecision, not_paused_status_error, signal_decision};
use sayiir_persistence::{BackendError, SignalStore};

use crate::error::{self, At, at};
use crate::reply::{self, Items};
use crate::snapshot::Loaded;
use crate::{RedisBackend, Retry, scripts};
use sayiir_persistence::operation::Call;

pub(crate) fn kind_name(kind: SignalKind) -> &'static str {
    match kind {
        SignalKind::Cancel => "Cancel",
        SignalKind::Pause => "Pause",
    }
}

pub(crate) fn encode_request(
    at: &At<'_>,
    request: &SignalRequest,
) -> Result<Vec<u8>, BackendError> {
    rmp_serde::to_vec_named(request)
        .map_err(|e| at.serialization(format_args!("cannot encode the request: {e}")))
}

pub(crate) fn decode_request(at: &At<'_>, raw: &[u8]) -> Result<SignalRequest, BackendError> {
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

impl RedisBackend {
    /// Applies a pending request of `kind` to an in-progress workflow (§ Applying pending
    /// requests).
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
        let now = Utc::now();
        let seconds = now.timestamp().to_string();
        let micros = now.timestamp_micros().to_string();
        let interrupted = interrupted_at_task.unwrap_or_default();
        let args: [&[u8]; 4] =
            [name.as_bytes(), seconds.as_bytes(), micros.as_bytes(), interrupted.as_bytes()];
        let reply = self
            .run_workflow_script(at, &scripts().apply_signal, &keys, instance_id, &args, Retry::No)
            .await?;
        match reply::word(reply, at)?.as_str() {
            "applied" => Ok(true),
            "none" => Ok(false),
            "not_found" => Err(BackendError::NotFound(instance_id.to_string())),
            other => Err(error::reply(at, &format!("apply_signal returned {other:?}"))),
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
        self.calls()
            .run(Call::StoreSignal { instance_id, request: &request }, async {
                let at = at("store_signal").instance(instance_id);
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
                let at = at("get_signal").instance(instance_id);
                let keys = self.keys().workflow(instance_id);
                let mut cmd = redis::cmd("HGET");
                cmd.arg(keys.signals()).arg(kind_name(kind));
                let raw: Option<Vec<u8>> = self.query(&at, &cmd, Retry::OnReconnect).await?;
                raw.map(|raw| decode_request(&at, &raw)).transpose()
            })
            .await
    }

    async fn clear_signal(&self, instance_id: &str, kind: SignalKind) -> Result<(), BackendError> {
        self.calls()
            .run(Call::ClearSignal(instance_id), async {
                let at = at("clear_signal").instance(instance_id);
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
                let at = at("send_event").instance(instance_id);
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
                let at = at("consume_event").instance(instance_id);
                let keys = self.keys().workflow(instance_id);
                // A consumed event must reach the caller: the request carries an id, and is asked
                // again (same id) after a timeout or a lost connection until it is answered; the
                // script answers a repeat with the event the first attempt took.
                let request = sayiir_persistence::requests::request_id();
                let args: [&[u8]; 2] = [signal_name.as_bytes(), request.as_bytes()];
                let reply = self
                    .run_workflow_script(
                        &at,
                        &scripts().consume_event,
                        &keys,
                        instance_id,
                        &args,
                        Retry::UntilAnswered,
                    )
                    .await?;
                let mut items = Items::new(reply, at)?;
                if items.remaining() == 0 {
                    return Ok(None);
                }
                Ok(Some(Bytes::from(items.bytes()?.unwrap_or_default())))
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
                let at = at("check_and_cancel").instance(instance_id);
                self.apply_signal(&at, instance_id, SignalKind::Cancel, interrupted_at_task).await
            })
            .await
    }

    async fn check_and_pause(&self, instance_id: &str) -> Result<bool, BackendError> {
        self.calls()
            .run(Call::CheckAndPause(instance_id), async {
                let at = at("check_and_pause").instance(instance_id);
                self.apply_signal(&at, instance_id, SignalKind::Pause, None).await
            })
            .await
    }

    async fn unpause(&self, instance_id: &str) -> Result<WorkflowSnapshot, BackendError> {
        self.calls()
            .run(Call::Unpause(instance_id), async {
                let at = at("unpause").instance(instance_id);
                let keys = self.keys().workflow(instance_id);
                let seconds = Utc::now().timestamp().to_string();
                let args: [&[u8]; 1] = [seconds.as_bytes()];
                let reply = self
                    .run_workflow_script(
                        &at,
                        &scripts().unpause,
                        &keys,
                        instance_id,
                        &args,
                        Retry::No,
                    )
                    .await?;
                let mut items = Items::new(reply, at)?;
                match items.text()?.as_deref() {
                    Some("ok") => {
                        let packed = items.value()?;
                        Loaded::read(packed, items.value()?, at)?.assemble(&at, instance_id)
                    }
                    Some("not_found") => Err(BackendError::NotFound(instance_id.to_string())),
                    Some("not_paused") => {
                        Err(not_paused_status_error(&items.text()?.unwrap_or_default()))
                    }
                    other => Err(error::reply(&at, &format!("unpause returned {other:?}"))),
                }
            })
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

    /// The table `store_signal.lua` receives is § store_signal with § Repeated pause or cancel
    /// stores nothing, as the core rule gives it.
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
