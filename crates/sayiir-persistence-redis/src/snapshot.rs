//! `SnapshotStore`, and how a snapshot maps to its Redis hashes.
//!
//! A snapshot is stored in three keys: `blob`, the codec blob with the task results taken
//! out (`codec::encode_snapshot_without_results`); `snap`, a hash of the small fields
//! scripts need without decoding the blob (small enough for Redis' compact listpack
//! encoding); `results`, one entry per completed task. Task outputs are therefore stored
//! once, `save_task_result` is a plain hash write inside a script, and the results hash
//! doubles as the archive that `load_task_result` serves once the workflow is Completed or
//! Failed (contract D5).
//!
//! The `snap` hash carries two revisions: `rev`, bumped by every write (whole saves and
//! `save_task_result`), and `srev`, bumped only by whole saves (`save.lua`: `save_snapshot`,
//! the signal transitions, advancement). A transition that keeps the results as they are
//! compares `srev`, so results recorded meanwhile never make it lose its compare-and-set.

use std::borrow::Cow;

use bytes::Bytes;
use redis::Value;
use sayiir_persistence::codec::{decode_snapshot_with_results, encode_snapshot_without_results};
use sayiir_persistence::results::held_results;
use sayiir_persistence::sayiir_core::snapshot::{
    ExecutionPosition, WorkflowSnapshot, WorkflowSnapshotState,
};
use sayiir_persistence::schedule::DEFAULT_PRIORITY;
use sayiir_persistence::validation::{IdKind, validate_id};
use sayiir_persistence::{BackendError, SnapshotStore};
use tracing::Instrument;

use crate::error::{self, At};
use crate::reply::{self, Items};
use crate::{RedisBackend, Retry, scripts, span};

/// A snapshot in the shape `save.lua` stores it.
#[derive(Debug)]
pub(crate) struct Stored<'a> {
    /// The codec blob, without task results.
    blob: Vec<u8>,
    /// Fields of the `snap` hash.
    fields: Vec<(&'static str, Cow<'a, [u8]>)>,
    /// The entry of the global `meta` hash (tags, last failed worker), empty for none.
    meta: Vec<u8>,
}

impl<'a> Stored<'a> {
    pub(crate) fn new(snapshot: &'a WorkflowSnapshot) -> Result<Self, BackendError> {
        let blob = encode_snapshot_without_results(snapshot)?;
        let mut fields: Vec<(&'static str, Cow<'a, [u8]>)> = Vec::with_capacity(12);
        fields.push(("st", Cow::Borrowed(snapshot.state.as_ref().as_bytes())));
        fields.push(("upd", Cow::Owned(snapshot.updated_at.to_string().into_bytes())));
        let priority = snapshot.task_priority.unwrap_or(DEFAULT_PRIORITY);
        fields.push(("prio", Cow::Owned(priority.to_string().into_bytes())));
        let mut push = |name: &'static str, value: Option<&'a str>| {
            if let Some(value) = value {
                fields.push((name, Cow::Borrowed(value.as_bytes())));
            }
        };
        push("pk", snapshot.position_kind());
        let current = snapshot.current_task_id();
        push("cur", current);
        push("hin", snapshot.initial_input.as_ref().map(|_| "1"));
        push("last", last_completed(&snapshot.state));
        push("tp", snapshot.trace_parent.as_deref());
        if let WorkflowSnapshotState::InProgress {
            position: ExecutionPosition::AtSignal { signal_name, .. },
            ..
        } = &snapshot.state
        {
            push("sig", Some(signal_name));
        }
        let retry = current.and_then(|task| snapshot.task_retries.get(task));
        let millis = |t: chrono::DateTime<chrono::Utc>| t.timestamp_millis().to_string();
        if let Some(retry) = retry {
            fields.push(("nb", Cow::Owned(millis(retry.next_retry_at).into_bytes())));
        }
        if let Some(wake) = snapshot.delay_wake_at() {
            fields.push(("wake", Cow::Owned(millis(wake).into_bytes())));
        }
        let failed_worker = retry.and_then(|r| r.last_failed_worker.as_deref());
        let meta =
            if current.is_some() && (failed_worker.is_some() || !snapshot.task_tags.is_empty()) {
                encode_meta(failed_worker, &snapshot.task_tags)
            } else {
                Vec::new()
            };
        Ok(Self { blob, fields, meta })
    }
}

/// What a write expects to find, for compare-and-set writes.
#[derive(Debug, Default)]
pub(crate) struct Expect<'a> {
    /// The revision read before the change: any write since makes this one lose.
    pub(crate) revision: Option<&'a str>,
    /// The state revision read before the change: a whole save since makes this one lose,
    /// results recorded by `save_task_result` do not.
    pub(crate) state_revision: Option<&'a str>,
    /// A pending request to consume: (kind, encoded request as read).
    pub(crate) consume_signal: Option<(&'a str, &'a [u8])>,
    /// An event to pop: (name, payload as read).
    pub(crate) pop_event: Option<(&'a str, &'a [u8])>,
    /// Fail if any cancel or pause request is pending.
    pub(crate) no_signal: bool,
    /// Drop a pending pause request.
    pub(crate) clear_pause: bool,
    /// Keep the stored last completed task id (a transition that preserves it, so a result
    /// recorded since the read stays the last one).
    pub(crate) keep_last: bool,
    /// Results to add (instead of replacing the results with the snapshot's own).
    pub(crate) add_results: Option<Vec<(String, Bytes)>>,
    /// The write may be sent again on a fresh connection after a lost one: a
    /// compare-and-set whose caller does not report whether it won.
    pub(crate) retry: bool,
}

/// A revision to compare-and-set on.
#[derive(Debug)]
pub(crate) enum Revision {
    /// `rev`: any write since the read makes the write lose.
    Any(String),
    /// `srev`: only a whole save since the read makes the write lose.
    State(String),
}

impl Revision {
    /// An [`Expect`] comparing this revision.
    pub(crate) fn expect(&self) -> Expect<'_> {
        match self {
            Self::Any(revision) => Expect { revision: Some(revision), ..Expect::default() },
            Self::State(revision) => Expect { state_revision: Some(revision), ..Expect::default() },
        }
    }
}

/// A snapshot as read back, before it is assembled.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) blob: Vec<u8>,
    pub(crate) trace_parent: Option<String>,
    pub(crate) last: Option<String>,
    pub(crate) updated_at: Option<u64>,
    pub(crate) status: String,
    pub(crate) revision: String,
    pub(crate) state_revision: Option<String>,
    pub(crate) results: Vec<(String, Bytes)>,
}

impl Loaded {
    /// Reads the rest of a `load.lua` reply once its first element (the blob) is known.
    pub(crate) fn read(blob: Vec<u8>, items: &mut Items<'_>) -> Result<Self, BackendError> {
        let trace_parent = items.text()?;
        let last = items.text()?;
        let updated_at = items.int()?.and_then(|n| u64::try_from(n).ok());
        let status = items.text()?.unwrap_or_default();
        let revision = items.text()?.unwrap_or_default();
        let state_revision = items.text()?;
        let mut results = Vec::with_capacity(items.remaining() / 2);
        while items.remaining() > 0 {
            let task = items.text()?.unwrap_or_default();
            let output = items.bytes()?.unwrap_or_default();
            results.push((task, Bytes::from(output)));
        }
        Ok(Self { blob, trace_parent, last, updated_at, status, revision, state_revision, results })
    }

    /// What a transition that keeps the results compares: the state revision, or the
    /// revision for a workflow stored before state revisions existed.
    pub(crate) fn transition_revision(&self) -> Revision {
        match &self.state_revision {
            Some(state_revision) => Revision::State(state_revision.clone()),
            None => Revision::Any(self.revision.clone()),
        }
    }

    /// The snapshot: the blob, with the fields kept beside it put back.
    pub(crate) fn assemble(self, instance_id: &str) -> Result<WorkflowSnapshot, BackendError> {
        let mut snapshot = decode_snapshot_with_results(instance_id, &self.blob, self.results)?;
        snapshot.trace_parent = self.trace_parent;
        if let Some(updated_at) = self.updated_at {
            snapshot.updated_at = updated_at;
        }
        match &mut snapshot.state {
            WorkflowSnapshotState::InProgress { last_completed_task_id, .. }
            | WorkflowSnapshotState::Paused { last_completed_task_id, .. } => {
                *last_completed_task_id = self.last;
            }
            _ => {}
        }
        Ok(snapshot)
    }
}

fn last_completed(state: &WorkflowSnapshotState) -> Option<&str> {
    match state {
        WorkflowSnapshotState::InProgress { last_completed_task_id, .. }
        | WorkflowSnapshotState::Paused { last_completed_task_id, .. } => {
            last_completed_task_id.as_deref()
        }
        _ => None,
    }
}

/// Netstrings (`<len>:<bytes>`): `F<worker>` or `N`, then the tags. Read by `poll.lua`.
fn encode_meta(failed_worker: Option<&str>, tags: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut item = |bytes: &[u8]| {
        out.extend_from_slice(bytes.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(bytes);
    };
    match failed_worker {
        Some(worker) => item(format!("F{worker}").as_bytes()),
        None => item(b"N"),
    }
    for tag in tags {
        item(tag.as_bytes());
    }
    out
}

/// How a write ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Written {
    Ok,
    Conflict,
}

impl RedisBackend {
    /// Writes `snapshot` with `save.lua`.
    pub(crate) async fn write_snapshot(
        &self,
        at: &At<'_>,
        snapshot: &WorkflowSnapshot,
        expect: Expect<'_>,
    ) -> Result<Written, BackendError> {
        let stored = Stored::new(snapshot)?;
        let (check_field, check_value): (&[u8], &str) =
            match (expect.state_revision, expect.revision) {
                (Some(state_revision), _) => (b"srev", state_revision),
                (None, Some(revision)) => (b"rev", revision),
                (None, None) => (b"", ""),
            };
        let (signal_kind, signal_value) = expect.consume_signal.unwrap_or(("", b""));
        let (event_name, event_payload) = expect.pop_event.unwrap_or(("", b""));
        let flag = |on: bool| -> &'static [u8] { if on { b"1" } else { b"" } };
        let keys = self.keys().workflow(&snapshot.instance_id);
        let mut cmd = self.workflow_script_command(&scripts().save, &keys, &snapshot.instance_id);
        cmd.arg(check_field)
            .arg(check_value)
            .arg(signal_kind)
            .arg(signal_value)
            .arg(event_name)
            .arg(event_payload)
            .arg(flag(expect.no_signal))
            .arg(flag(expect.clear_pause))
            .arg(flag(expect.keep_last));
        // Added results (a transition or an advancement), or the snapshot's own results,
        // which replace the stored ones. A state without results (Completed, Failed) keeps
        // the results hash as the archive of the last state that held them.
        let held = held_results(&snapshot.state);
        let mode = if expect.add_results.is_none() && held.is_some() { "replace" } else { "add" };
        cmd.arg(mode).arg(&stored.meta).arg(&stored.blob).arg(stored.fields.len());
        for (name, value) in &stored.fields {
            cmd.arg(*name).arg(value.as_ref());
        }
        match (&expect.add_results, held) {
            (Some(added), _) => {
                for (task, output) in added {
                    cmd.arg(task.as_str()).arg(&output[..]);
                }
            }
            (None, Some(held)) => {
                for (task, result) in held {
                    cmd.arg(task.as_str()).arg(&result.output[..]);
                }
            }
            (None, None) => {}
        }
        let retry = if expect.retry { Retry::OnReconnect } else { Retry::No };
        let reply = self.run_script(at, &scripts().save, &cmd, retry).await?;
        let mut items = Items::new(reply, *at)?;
        match items.text()?.as_deref() {
            Some("ok") => Ok(Written::Ok),
            Some("conflict") => Ok(Written::Conflict),
            other => Err(error::reply(at, &format!("save returned {other:?}"))),
        }
    }

    /// Runs `read_full.lua`: the pending request of `kind` (if asked), the number of pending
    /// requests, the head event of the awaited signal, and the snapshot (if present).
    pub(crate) async fn read_full(
        &self,
        at: &At<'_>,
        instance_id: &str,
        kind: &str,
    ) -> Result<FullRead, BackendError> {
        let keys = self.keys().workflow(instance_id);
        let args: [&[u8]; 1] = [kind.as_bytes()];
        let reply = self
            .run_workflow_script(
                at,
                &scripts().read_full,
                &keys,
                instance_id,
                &args,
                Retry::OnReconnect,
            )
            .await?;
        let mut items = Items::new(reply, *at)?;
        let request = items.bytes()?;
        let pending = items.int()?.unwrap_or(0);
        let event = items.bytes()?;
        let loaded = match items.bytes()? {
            Some(blob) => Some(Loaded::read(blob, &mut items)?),
            None => None,
        };
        Ok(FullRead { request, pending, event, loaded })
    }
}

/// The reply of `read_full.lua`.
#[derive(Debug)]
pub(crate) struct FullRead {
    pub(crate) request: Option<Vec<u8>>,
    pub(crate) pending: i64,
    pub(crate) event: Option<Vec<u8>>,
    pub(crate) loaded: Option<Loaded>,
}

impl SnapshotStore for RedisBackend {
    async fn save_snapshot(&self, snapshot: &WorkflowSnapshot) -> Result<(), BackendError> {
        let instance_id = snapshot.instance_id.as_str();
        async {
            validate_id(IdKind::Instance, instance_id)?;
            let at = At::new("save_snapshot").instance(instance_id);
            self.write_snapshot(&at, snapshot, Expect::default()).await.map(|_| ())
        }
        .instrument(span("save_snapshot", instance_id))
        .await
    }

    async fn save_task_result(
        &self,
        instance_id: &str,
        task_id: &str,
        output: Bytes,
    ) -> Result<(), BackendError> {
        async {
            validate_id(IdKind::Instance, instance_id)?;
            validate_id(IdKind::Task, task_id)?;
            let at = At::new("save_task_result").instance(instance_id).task(task_id);
            let keys = self.keys().workflow(instance_id);
            let now_secs = chrono::Utc::now().timestamp().to_string();
            let args: [&[u8]; 3] = [task_id.as_bytes(), &output, now_secs.as_bytes()];
            let reply = self
                .run_workflow_script(
                    &at,
                    &scripts().save_task_result,
                    &keys,
                    instance_id,
                    &args,
                    Retry::No,
                )
                .await?;
            match reply::word(reply, &at)?.as_str() {
                "ok" => Ok(()),
                "not_found" => Err(BackendError::NotFound(instance_id.to_string())),
                other => Err(error::reply(&at, other)),
            }
        }
        .instrument(span("save_task_result", instance_id))
        .await
    }

    async fn load_snapshot(&self, instance_id: &str) -> Result<WorkflowSnapshot, BackendError> {
        async {
            validate_id(IdKind::Instance, instance_id)?;
            let at = At::new("load_snapshot").instance(instance_id);
            let keys = self.keys().workflow(instance_id);
            let reply = self
                .run_workflow_script(
                    &at,
                    &scripts().load,
                    &keys,
                    instance_id,
                    &[],
                    Retry::OnReconnect,
                )
                .await?;
            if reply == Value::Nil {
                return Err(BackendError::NotFound(instance_id.to_string()));
            }
            let mut items = Items::new(reply, at)?;
            let blob = items.bytes()?.unwrap_or_default();
            Loaded::read(blob, &mut items)?.assemble(instance_id)
        }
        .instrument(span("load_snapshot", instance_id))
        .await
    }

    async fn delete_snapshot(&self, instance_id: &str) -> Result<(), BackendError> {
        async {
            validate_id(IdKind::Instance, instance_id)?;
            let at = At::new("delete_snapshot").instance(instance_id);
            let keys = self.keys().workflow(instance_id);
            let reply = self
                .run_workflow_script(&at, &scripts().delete, &keys, instance_id, &[], Retry::No)
                .await?;
            match reply::word(reply, &at)?.as_str() {
                "ok" => Ok(()),
                "not_found" => Err(BackendError::NotFound(instance_id.to_string())),
                other => Err(error::reply(&at, other)),
            }
        }
        .instrument(span("delete_snapshot", instance_id))
        .await
    }

    async fn list_snapshots(&self) -> Result<Vec<String>, BackendError> {
        async {
            let at = At::new("list_snapshots");
            let mut ids = Vec::new();
            let mut cursor = 0_u64;
            loop {
                let mut cmd = redis::cmd("SSCAN");
                cmd.arg(self.keys().instances()).arg(cursor).arg("COUNT").arg(1000);
                let (next, page): (u64, Vec<String>) =
                    self.query(&at, &cmd, Retry::OnReconnect).await?;
                ids.extend(page);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            // SSCAN may return an element twice when the set is rehashed meanwhile.
            ids.sort_unstable();
            ids.dedup();
            Ok(ids)
        }
        .instrument(span("list_snapshots", ""))
        .await
    }
}
