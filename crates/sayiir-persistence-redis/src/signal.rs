//! `SignalStore`: cancel and pause requests, events, and the atomic transitions.
//!
//! `store_signal`, `clear_signal` and the event queues are single scripts. The transitions
//! (`check_and_cancel`, `check_and_pause`, `unpause`) need the snapshot decoded, so they read
//! it with one script, apply the sayiir-core mutator in Rust, and write it back with a
//! compare-and-set on the snapshot's revision that also consumes the request. When no
//! request is pending, a check is a single `HEXISTS`.

use bytes::Bytes;
use sayiir_persistence::sayiir_core::snapshot::{
    PauseRequest, SignalKind, SignalRequest, WorkflowSnapshot,
};
use sayiir_persistence::validation::{IdKind, not_paused_error, validate_id, validate_ids};
use sayiir_persistence::{BackendError, SignalStore};
use tracing::Instrument;

use crate::error::{self, At};
use crate::reply::{self, Items};
use crate::snapshot::{Expect, Written};
use crate::{RedisBackend, scripts, span};

/// How many times a transition re-reads after losing a compare-and-set. Each loss means
/// another writer changed the workflow; after it the transition usually no longer applies.
const TRANSITION_ATTEMPTS: usize = 16;

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
        if !self.query::<bool>(at, &probe).await? {
            return Ok(false);
        }
        for _ in 0..TRANSITION_ATTEMPTS {
            let read = self.read_full(at, instance_id, name).await?;
            let Some(raw) = read.request else {
                return Ok(false);
            };
            let Some(loaded) = read.loaded else {
                return Err(BackendError::NotFound(instance_id.to_string()));
            };
            if loaded.status != "InProgress" {
                return Ok(false);
            }
            let revision = loaded.revision.clone();
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
                revision: Some(&revision),
                consume_signal: Some((name, &raw)),
                add_results: Some(Vec::new()),
                ..Expect::default()
            };
            if self.write_snapshot(at, &snapshot, expect).await? == Written::Ok {
                return Ok(true);
            }
        }
        Err(BackendError::Backend(format!(
            "redis {at}: the workflow kept changing during {TRANSITION_ATTEMPTS} attempts"
        )))
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
            let args: [&[u8]; 2] = [kind_name(kind).as_bytes(), &encoded];
            let reply = self
                .run_workflow_script(&at, &scripts().store_signal, &keys, instance_id, &args)
                .await?;
            let mut items = Items::new(reply, at)?;
            match items.text()?.as_deref() {
                Some("stored" | "already") => Ok(()),
                Some("not_found") => Err(BackendError::NotFound(instance_id.to_string())),
                Some("cannot_cancel") => {
                    Err(BackendError::CannotCancel(items.text()?.unwrap_or_default()))
                }
                Some("cannot_pause") => {
                    Err(BackendError::CannotPause(items.text()?.unwrap_or_default()))
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
            let raw: Option<Vec<u8>> = self.query(&at, &cmd).await?;
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
                .run_workflow_script(&at, &scripts().clear_signal, &keys, instance_id, &args)
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
                .run_workflow_script(&at, &scripts().send_event, &keys, instance_id, &args)
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
                .run_workflow_script(&at, &scripts().consume_event, &keys, instance_id, &args)
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
            validate_id(IdKind::Instance, instance_id)?;
            if let Some(task) = interrupted_at_task {
                validate_id(IdKind::Task, task)?;
            }
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
            for _ in 0..TRANSITION_ATTEMPTS {
                let read = self.read_full(&at, instance_id, "").await?;
                let Some(loaded) = read.loaded else {
                    return Err(BackendError::NotFound(instance_id.to_string()));
                };
                let revision = loaded.revision.clone();
                let mut snapshot = loaded.assemble(instance_id)?;
                if !snapshot.state.is_paused() {
                    return Err(not_paused_error(&snapshot.state));
                }
                snapshot.mark_unpaused();
                let expect = Expect {
                    revision: Some(&revision),
                    clear_pause: true,
                    add_results: Some(Vec::new()),
                    ..Expect::default()
                };
                if self.write_snapshot(&at, &snapshot, expect).await? == Written::Ok {
                    return Ok(snapshot);
                }
            }
            Err(BackendError::Backend(format!(
                "redis {at}: the workflow kept changing during {TRANSITION_ATTEMPTS} attempts"
            )))
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
