//! `SnapshotStore`, and how a snapshot maps to its Redis hashes.
//!
//! A snapshot is stored in three keys: `blob`, the codec blob with the task results taken
//! out (`codec::encode_snapshot_without_results`); `snap`, a hash of the small fields
//! scripts need without decoding the blob (small enough for Redis' compact listpack
//! encoding); `results`, one entry per completed task. Task outputs are therefore stored
//! once, `save_task_result` is a plain hash write inside a script, and the results hash
//! doubles as the archive that `load_task_result` serves once the workflow is Completed or
//! Failed (§ Results survive completion). Transitions applied by scripts leave the blob alone and
//! are replayed on read (see `transition`).

use std::borrow::Cow;

use bytes::Bytes;
use redis::Value;
use sayiir_persistence::codec::{decode_snapshot_with_results, encode_snapshot_without_results};
use sayiir_persistence::results::held_results;
use sayiir_persistence::sayiir_core::snapshot::{
    ExecutionPosition, WorkflowSnapshot, WorkflowSnapshotState,
};
use sayiir_persistence::schedule::IndexProjection;
use sayiir_persistence::{BackendError, SnapshotStore};

use crate::error::{self, At, at};
use crate::packed::Packed;
use crate::reply;
use crate::transition::Record;
use crate::{RedisBackend, Retry, scripts};
use sayiir_persistence::operation::Call;

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
        fields.push(("def", Cow::Borrowed(snapshot.definition_hash.as_bytes())));
        let index = IndexProjection::of(snapshot);
        fields.push(("prio", Cow::Owned(index.priority.to_string().into_bytes())));
        let mut push = |name: &'static str, value: Option<&'a str>| {
            if let Some(value) = value {
                fields.push((name, Cow::Borrowed(value.as_bytes())));
            }
        };
        push("pk", snapshot.position_kind());
        push("hin", snapshot.initial_input.as_ref().map(|_| "1"));
        push("last", last_completed(&snapshot.state));
        push("tp", snapshot.trace_parent.as_deref());
        // The position's fields are stored for a Paused workflow too: `unpause.lua` resumes it
        // without the blob, and the indexes need them then.
        let position = match &snapshot.state {
            WorkflowSnapshotState::InProgress { position, .. }
            | WorkflowSnapshotState::Paused { position, .. } => Some(position),
            _ => None,
        };
        // A park: what advance.lua needs to move to the next task without the blob.
        let (current, next) = match position {
            Some(ExecutionPosition::AtTask { task_id }) => (Some(task_id.as_str()), None),
            Some(ExecutionPosition::AtSignal { signal_id, signal_name, next_task_id, .. }) => {
                push("sig", Some(signal_name));
                push("pid", Some(signal_id));
                (None, next_task_id.as_deref())
            }
            Some(ExecutionPosition::AtDelay { delay_id, next_task_id, .. }) => {
                push("pid", Some(delay_id));
                (None, next_task_id.as_deref())
            }
            _ => (None, None),
        };
        push("cur", current);
        push("nxt", next);
        if let Some(wake_ms) = index.wake_ms {
            // Rounded up: a script that finds the park due (now_ms >= wake) has an application
            // time at or past `wake_at`, so replaying the advancement at that time agrees.
            fields.push(("wake", Cow::Owned(wake_ms.to_string().into_bytes())));
        }
        let (not_before, meta) = task_fields(snapshot, current);
        if let Some(not_before) = not_before {
            fields.push(("nb", Cow::Owned(not_before.into_bytes())));
        }
        if next.is_some() {
            let (not_before, next_meta) = task_fields(snapshot, next);
            if let Some(not_before) = not_before {
                fields.push(("anb", Cow::Owned(not_before.into_bytes())));
            }
            if !next_meta.is_empty() {
                fields.push(("amt", Cow::Owned(next_meta)));
            }
        }
        Ok(Self { blob, fields, meta })
    }
}

/// The retry not-before (Unix ms, as text) and the `meta` entry (tags, last failed worker;
/// empty for none) of `task` as the current task of `snapshot`.
fn task_fields(snapshot: &WorkflowSnapshot, task: Option<&str>) -> (Option<String>, Vec<u8>) {
    let Some(task) = task else {
        return (None, Vec::new());
    };
    let task = IndexProjection::task(snapshot, task);
    let not_before = task.not_before_ms.map(|ms| ms.to_string());
    let failed_worker = task.failed_worker;
    let meta = if failed_worker.is_some() || !snapshot.task_tags.is_empty() {
        encode_meta(failed_worker, &snapshot.task_tags)
    } else {
        Vec::new()
    };
    (not_before, meta)
}

/// A snapshot as read back (`packed_snapshot` in `lua/common.lua`, and its results), before it
/// is assembled.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) blob: Bytes,
    pub(crate) status: String,
    pub(crate) trace_parent: Option<String>,
    pub(crate) last: Option<String>,
    pub(crate) updated_at: Option<u64>,
    pub(crate) record: Record,
    pub(crate) results: Vec<(String, Bytes)>,
}

/// How many snap fields `packed_snapshot` sends.
const SNAPSHOT_FIELDS: usize = 11;

impl Loaded {
    /// Reads a `packed_snapshot` reply and the results read beside it (flat task/output
    /// pairs).
    pub(crate) fn read(packed: Value, results: Value, at: At<'_>) -> Result<Self, BackendError> {
        let mut packed = Packed::new(packed, at)?;
        let blob = packed.bytes()?.unwrap_or_default();
        let fields = packed.array()?;
        if fields != SNAPSHOT_FIELDS {
            return Err(
                packed.error(&format!("{fields} snapshot fields, {SNAPSHOT_FIELDS} expected"))
            );
        }
        let status = packed.text()?.unwrap_or_default();
        let trace_parent = packed.text()?;
        let last = packed.text()?;
        // Text, not `Packed::int`: any u64 is stored verbatim, also past i64::MAX. A stored
        // value that does not parse is corrupted data, not a broken reply.
        let updated_at = match packed.text()? {
            Some(text) => Some(text.parse::<u64>().map_err(|_| {
                error::corrupt(&at, &format!("field upd (updated_at) is {text:?}, not a number"))
            })?),
            None => None,
        };
        let record = Record {
            transitioned: packed.bytes()?.is_some(),
            deadline_cleared: packed.bytes()?.is_some(),
            advanced_at_ms: packed.int()?,
            event_consumed: packed.bytes()?.is_some(),
            request: packed.bytes()?,
            applied_at_us: packed.int()?,
            interrupted_at_task: packed.text()?,
        };
        let mut results = reply::results(results, &at)?;
        // A park a script completed: its output, which the replay needs, is in the archive.
        if let (Some(park), Some(output)) = (packed.text()?, packed.bytes()?) {
            results.push((park, output));
        }
        Ok(Self { blob, status, trace_parent, last, updated_at, record, results })
    }

    /// The snapshot: the blob, with the recorded transitions replayed and the fields kept
    /// beside it put back.
    pub(crate) fn assemble(
        self,
        at: &At<'_>,
        instance_id: &str,
    ) -> Result<WorkflowSnapshot, BackendError> {
        let mut snapshot = decode_snapshot_with_results(instance_id, &self.blob, self.results)?;
        self.record
            .replay(&mut snapshot, &self.status)
            .map_err(|why| error::corrupt(at, &format!("recorded transition: {why}")))?;
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

/// The commands that store a snapshot: the native writes of its results into the staging
/// hash (none when it holds no result), then the script, built up to the save arguments
/// (`save.lua`, or a script that starts with them).
#[derive(Debug)]
pub(crate) struct SaveCommands {
    pub(crate) staging: Vec<redis::Cmd>,
    pub(crate) script: redis::Cmd,
}

impl RedisBackend {
    /// The commands of [`SaveCommands`] for `snapshot`, the script being `lua`.
    pub(crate) fn save_commands(
        &self,
        lua: &crate::scripts::Lua,
        snapshot: &WorkflowSnapshot,
    ) -> Result<SaveCommands, BackendError> {
        let stored = Stored::new(snapshot)?;
        let keys = self.keys().workflow(&snapshot.instance_id);
        let mut script = self.workflow_script_command(lua, &keys, &snapshot.instance_id);
        // The snapshot's own results replace the stored ones: written natively into the
        // staging hash in the same transaction, which `save.lua` renames. A state without
        // results (Completed, Failed) moves the stored ones to the archive (§ Results survive
        // completion).
        let held = held_results(&snapshot.state);
        let mode = match held {
            Some(held) if !held.is_empty() => "staged",
            Some(_) => "none",
            None => "archive",
        };
        script.arg(mode).arg(&stored.meta).arg(&stored.blob).arg(stored.fields.len());
        for (name, value) in &stored.fields {
            script.arg(*name).arg(value.as_ref());
        }
        let mut staging = Vec::new();
        if let Some(held) = held.filter(|held| !held.is_empty()) {
            let staging_key = keys.staging();
            let mut clear = redis::cmd("DEL");
            clear.arg(&staging_key);
            let size = held.iter().map(|(task, r)| task.len() + r.output.len()).sum::<usize>();
            let mut stage =
                redis::Cmd::with_capacity(2 + 2 * held.len(), staging_key.len() + size + 16);
            stage.arg("HSET").arg(&staging_key);
            for (task, result) in held {
                stage.arg(task.as_str()).arg(&result.output[..]);
            }
            staging = vec![clear, stage];
        }
        Ok(SaveCommands { staging, script })
    }

    /// Sends [`SaveCommands`]: the script alone, or the staging writes and the script in one
    /// transaction. Gives the script's reply.
    pub(crate) async fn send_save(
        &self,
        at: &At<'_>,
        lua: &crate::scripts::Lua,
        commands: SaveCommands,
        retry: Retry,
    ) -> Result<Value, BackendError> {
        let SaveCommands { mut staging, script } = commands;
        if staging.is_empty() {
            return self.run_script(at, lua, &script, retry).await;
        }
        let index = staging.len();
        staging.push(script);
        let replies = self.run_transaction(at, lua, staging, index, retry).await?;
        Ok(replies.into_iter().nth(index).unwrap_or(Value::Nil))
    }

    /// Writes `snapshot` with `save.lua`.
    async fn write_snapshot(
        &self,
        at: &At<'_>,
        snapshot: &WorkflowSnapshot,
    ) -> Result<(), BackendError> {
        let lua = &scripts().save;
        let commands = self.save_commands(lua, snapshot)?;
        // An overwrite with the whole state: sent again after a lost connection, it leaves
        // the same state.
        let reply = self.send_save(at, lua, commands, Retry::OnReconnect).await?;
        match reply::word(reply, at)?.as_str() {
            "ok" => Ok(()),
            other => Err(error::reply(at, &format!("save returned {other:?}"))),
        }
    }
}

impl SnapshotStore for RedisBackend {
    async fn save_snapshot(&self, snapshot: &WorkflowSnapshot) -> Result<(), BackendError> {
        let instance_id = snapshot.instance_id.as_str();
        self.calls()
            .run(Call::SaveSnapshot(snapshot), async {
                let at = at("save_snapshot").instance(instance_id);
                self.write_snapshot(&at, snapshot).await
            })
            .await
    }

    async fn save_task_result(
        &self,
        instance_id: &str,
        task_id: &str,
        output: Bytes,
    ) -> Result<(), BackendError> {
        self.calls()
            .run(Call::SaveTaskResult { instance_id, task_id }, async {
                let at = at("save_task_result").instance(instance_id).task(task_id);
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
                        Retry::OnReconnect, // the same output stored again is the same state
                    )
                    .await?;
                reply::found(reply, &at, instance_id)
            })
            .await
    }

    async fn load_snapshot(&self, instance_id: &str) -> Result<WorkflowSnapshot, BackendError> {
        self.calls()
            .run(Call::LoadSnapshot(instance_id), async {
                let at = at("load_snapshot").instance(instance_id);
                let keys = self.keys().workflow(instance_id);
                let lua = &scripts().load;
                let load = self.workflow_script_command(lua, &keys, instance_id);
                let mut results = redis::cmd("HGETALL");
                results.arg(keys.results());
                let replies = self
                    .run_transaction(&at, lua, vec![load, results], 0, Retry::OnReconnect)
                    .await?;
                let mut replies = replies.into_iter();
                let (Some(packed), Some(results)) = (replies.next(), replies.next()) else {
                    return Err(error::reply(&at, "load returned fewer than two replies"));
                };
                if packed == Value::Nil {
                    return Err(BackendError::NotFound(instance_id.to_string()));
                }
                Loaded::read(packed, results, at)?.assemble(&at, instance_id)
            })
            .await
    }

    async fn delete_snapshot(&self, instance_id: &str) -> Result<(), BackendError> {
        self.calls()
            .run(Call::DeleteSnapshot(instance_id), async {
                let at = at("delete_snapshot").instance(instance_id);
                let keys = self.keys().workflow(instance_id);
                let reply = self
                    .run_workflow_script(&at, &scripts().delete, &keys, instance_id, &[], Retry::No)
                    .await?;
                reply::found(reply, &at, instance_id)
            })
            .await
    }

    async fn list_snapshots(&self) -> Result<Vec<String>, BackendError> {
        self.calls()
            .run(Call::ListSnapshots, async {
                let at = at("list_snapshots");
                let mut ids = Vec::new();
                for shard in self.keys().shard_numbers() {
                    let mut cursor = 0_u64;
                    loop {
                        let mut cmd = redis::cmd("SSCAN");
                        cmd.arg(self.keys().instances(shard)).arg(cursor).arg("COUNT").arg(1000);
                        let (next, page): (u64, Vec<String>) =
                            self.query(&at, &cmd, Retry::OnReconnect).await?;
                        ids.extend(page);
                        if next == 0 {
                            break;
                        }
                        cursor = next;
                    }
                }
                // SSCAN may return an element twice when the set is rehashed meanwhile.
                ids.sort_unstable();
                ids.dedup();
                Ok(ids)
            })
            .await
    }
}
