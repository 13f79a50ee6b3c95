//! `WorkflowTransfer` for Redis: an export is one `MULTI` (the snapshot script and the
//! hashes beside it, read at one point in time), an import one script (`lua/import.lua`,
//! which runs `save.lua` itself), sent in the same transaction as the staged results.

use std::collections::BTreeMap;

use bytes::Bytes;
use redis::Value;
use sayiir_persistence::BackendError;
use sayiir_persistence::claims::task_claim;
use sayiir_persistence::operation::Call;
use sayiir_persistence::results::reads_archive;
use sayiir_persistence::sayiir_core::snapshot::SignalKind;
use sayiir_persistence::sayiir_core::task_claim::TaskClaim;
use sayiir_persistence::transfer::{ImportOutcome, QueuePage, WorkflowRecord, WorkflowTransfer};

use crate::error::{self, At, at};
use crate::keys::Own;
use crate::signal::{decode_request, encode_request, kind_name};
use crate::snapshot::{Loaded, SaveCommands};
use crate::{RedisBackend, Retry, reply, scripts};

/// The buffered events of an event-queue hash (fields `m\0<seq>\0<name>`; head, tail and
/// receipt fields are bookkeeping), per signal name in sequence order.
fn read_events(
    hash: Vec<reply::FieldValue>,
    at: &At<'_>,
) -> Result<BTreeMap<String, Vec<Bytes>>, BackendError> {
    let mut queues: BTreeMap<String, Vec<(u64, Bytes)>> = BTreeMap::new();
    for (field, payload) in hash {
        let Some(rest) = field.strip_prefix(b"m\0") else { continue };
        let text = std::str::from_utf8(rest)
            .map_err(|_| error::corrupt(at, "an event field is not UTF-8"))?;
        let parsed = text.split_once('\0').and_then(|(seq, name)| Some((seq.parse().ok()?, name)));
        let (seq, name) = parsed
            .ok_or_else(|| error::corrupt(at, &format!("event field {text:?} is malformed")))?;
        queues.entry(name.to_string()).or_default().push((seq, Bytes::from(payload)));
    }
    Ok(queues
        .into_iter()
        .map(|(name, mut queue)| {
            queue.sort_unstable_by_key(|(seq, _)| *seq);
            (name, queue.into_iter().map(|(_, payload)| payload).collect())
        })
        .collect())
}

/// A claim value (`"<claimed_ms> <expires_ms|-> <worker>"`, see `claim.lua`) as
/// `(claimed_ms, expires_ms, worker)`.
fn parse_claim(value: &str) -> Option<(i64, Option<i64>, &str)> {
    let (claimed, rest) = value.split_once(' ')?;
    let (expires, worker) = rest.split_once(' ')?;
    let expires = if expires == "-" { None } else { Some(expires.parse().ok()?) };
    Some((claimed.parse().ok()?, expires, worker))
}

/// Appends a count and the pairs of `items` to a script command.
fn push_list<'a>(cmd: &mut redis::Cmd, items: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>) {
    cmd.arg(items.len());
    for (key, value) in items {
        cmd.arg(key).arg(value);
    }
}

impl WorkflowTransfer for RedisBackend {
    async fn export_workflow(
        &self,
        instance_id: &str,
    ) -> Result<Option<WorkflowRecord>, BackendError> {
        self.calls()
            .run(Call::ExportWorkflow(instance_id), async {
                let at = at("export_workflow").instance(instance_id);
                let keys = self.keys().workflow(instance_id);
                let lua = &scripts().load;
                let mut commands = vec![self.workflow_script_command(lua, &keys, instance_id)];
                for key in [keys.results(), keys.archive(), keys.signals(), keys.events()] {
                    let mut read = redis::cmd("HGETALL");
                    read.arg(key);
                    commands.push(read);
                }
                let replies =
                    self.run_transaction(&at, lua, commands, 0, Retry::OnReconnect).await?;
                let [packed, results, archive, signals, events]: [Value; 5] = replies
                    .try_into()
                    .map_err(|_| error::reply(&at, "export: 5 replies expected"))?;
                let events = read_events(reply::pairs(events, &at)?, &at)?;
                if packed == Value::Nil {
                    return Ok(WorkflowRecord::unstarted(instance_id, events));
                }
                let snapshot = Loaded::read(packed, results, at)?.assemble(&at, instance_id)?;
                let archived = reads_archive(&snapshot.state);
                let mut record = WorkflowRecord::of_snapshot(snapshot);
                if archived {
                    record.archived_results = reply::results(archive, &at)?.into_iter().collect();
                }
                for (kind, raw) in reply::pairs(signals, &at)? {
                    let request = Some(decode_request(&at, &raw)?);
                    if kind == kind_name(SignalKind::Cancel).as_bytes() {
                        record.cancel_request = request;
                    } else if kind == kind_name(SignalKind::Pause).as_bytes() {
                        record.pause_request = request;
                    }
                }
                record.events = events;
                Ok(Some(record))
            })
            .await
    }

    async fn import_workflow(
        &self,
        record: &WorkflowRecord,
    ) -> Result<ImportOutcome, BackendError> {
        let instance_id = record.instance_id.as_str();
        self.calls()
            .run(Call::ImportWorkflow(record), async {
                let at = at("import_workflow").instance(instance_id);
                let lua = &scripts().import;
                let mut commands = match &record.snapshot {
                    Some(snapshot) => self.save_commands(lua, snapshot)?,
                    None => {
                        let keys = self.keys().workflow(instance_id);
                        let mut script = self.workflow_script_command(lua, &keys, instance_id);
                        script.arg("absent").arg("").arg("").arg(0);
                        SaveCommands { staging: Vec::new(), script }
                    }
                };
                let events: Vec<(&[u8], &[u8])> = record
                    .events
                    .iter()
                    .flat_map(|(name, queue)| {
                        queue.iter().map(move |payload| (name.as_bytes(), payload.as_ref()))
                    })
                    .collect();
                push_list(&mut commands.script, events.into_iter());
                push_list(
                    &mut commands.script,
                    record
                        .archived_results
                        .iter()
                        .map(|(task, out)| (task.as_bytes(), out.as_ref())),
                );
                let mut requests = Vec::new();
                for (kind, request) in [
                    (SignalKind::Cancel, &record.cancel_request),
                    (SignalKind::Pause, &record.pause_request),
                ] {
                    if let Some(request) = request {
                        requests.push((kind_name(kind), encode_request(&at, request)?));
                    }
                }
                push_list(
                    &mut commands.script,
                    requests.iter().map(|(kind, encoded)| (kind.as_bytes(), encoded.as_slice())),
                );
                // Not sent again after a lost connection: the repeat would find the first
                // attempt's data and answer `AlreadyStored`. An import run again skips it.
                let reply = self.send_save(&at, lua, commands, Retry::No).await?;
                match reply::word(reply, &at)?.as_str() {
                    "imported" => Ok(ImportOutcome::Imported),
                    "already" => Ok(ImportOutcome::AlreadyStored),
                    other => Err(error::reply(&at, &format!("import returned {other:?}"))),
                }
            })
            .await
    }

    async fn list_unstarted_queues(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<QueuePage, BackendError> {
        self.calls()
            .run(Call::ListUnstartedQueues(limit), async {
                let at = at("list_unstarted_queues");
                let keys = self.keys();
                // `<shard>:<SCAN cursor>`: the keys of one index shard at a time, each scanned
                // on the master that serves its slot.
                let (shard, scan_cursor) = match cursor {
                    None => (0, 0),
                    Some(text) => text
                        .split_once(':')
                        .and_then(|(shard, scan)| Some((shard.parse().ok()?, scan.parse().ok()?)))
                        .filter(|(shard, _): &(usize, u64)| *shard < keys.shard_count())
                        .ok_or_else(|| {
                            at.backend(format_args!(
                                "cursor {text:?} is not a cursor this backend wrote; pass the \
                                 `next` of the previous page"
                            ))
                        })?,
                };
                let mut scan = redis::cmd("SCAN");
                scan.arg(scan_cursor)
                    .arg("MATCH")
                    .arg(keys.workflow_key_pattern(shard, Own::Events))
                    .arg("COUNT")
                    .arg(limit);
                let shard_key = keys.instances(shard).as_bytes();
                let (next, found): (u64, Vec<String>) = self
                    .on_connection(&at, Retry::OnReconnect, |mut conn| {
                        let scan = &scan;
                        async move { conn.query_at(scan, shard_key).await }
                    })
                    .await?;
                let next = match next {
                    0 if shard + 1 < keys.shard_count() => Some(format!("{}:0", shard + 1)),
                    0 => None,
                    next => Some(format!("{shard}:{next}")),
                };
                let ids: Vec<String> =
                    found.iter().filter_map(|key| keys.instance_of_key(key, Own::Events)).collect();
                // Which of them have no snapshot and a queue: one pipeline of reads.
                let mut reads = redis::pipe();
                for id in &ids {
                    let keys = self.keys().workflow(id);
                    reads.cmd("EXISTS").arg(keys.snap());
                    reads.cmd("HKEYS").arg(keys.events());
                }
                let replies: Vec<Value> = if ids.is_empty() {
                    Vec::new()
                } else {
                    self.on_connection(&at, Retry::OnReconnect, |mut conn| {
                        let reads = &reads;
                        async move { reads.query_async(&mut conn).await }
                    })
                    .await?
                };
                let mut replies = replies.into_iter();
                let mut instance_ids = Vec::new();
                for id in ids {
                    let (Some(exists), Some(fields)) = (replies.next(), replies.next()) else {
                        return Err(error::reply(&at, "fewer replies than reads"));
                    };
                    let started = matches!(exists, Value::Int(n) if n > 0);
                    let fields: Vec<Vec<u8>> = match fields {
                        Value::Array(items) => items
                            .into_iter()
                            .map(|item| reply::bytes(item, &at).map(Option::unwrap_or_default))
                            .collect::<Result<_, _>>()?,
                        _ => return Err(error::reply(&at, "HKEYS did not return an array")),
                    };
                    if !started && fields.iter().any(|field| field.starts_with(b"h\0")) {
                        instance_ids.push(id);
                    }
                }
                Ok(QueuePage { instance_ids, next })
            })
            .await
    }

    async fn task_claims(&self, instance_id: &str) -> Result<Vec<TaskClaim>, BackendError> {
        self.calls()
            .run(Call::TaskClaims(instance_id), async {
                let at = at("task_claims").instance(instance_id);
                let keys = self.keys().workflow(instance_id);
                let mut reads = redis::pipe();
                reads.atomic().cmd("TIME").cmd("HGETALL").arg(keys.claims());
                let ((secs, micros), claims): ((i64, i64), Value) = self
                    .on_connection(&at, Retry::OnReconnect, |mut conn| {
                        let reads = &reads;
                        async move { reads.query_async(&mut conn).await }
                    })
                    .await?;
                // Claims are timed by the server clock (`server_ms` in `lua/index.lua`).
                let now_ms = secs * 1000 + micros / 1000;
                let mut live = Vec::new();
                for (task, value) in reply::pairs(claims, &at)? {
                    let (task, value) = (String::from_utf8(task), String::from_utf8(value));
                    let (Ok(task), Ok(value)) = (task, value) else {
                        return Err(error::corrupt(&at, "a stored claim is not UTF-8"));
                    };
                    let (claimed_ms, expires_ms, worker) =
                        parse_claim(&value).ok_or_else(|| {
                            error::corrupt(&at, &format!("claim of task {task:?} is {value:?}"))
                        })?;
                    if sayiir_persistence::claims::is_live(expires_ms, now_ms) {
                        live.push(task_claim(instance_id, &task, worker, claimed_ms, expires_ms));
                    }
                }
                live.sort_by(|a, b| a.task_id.cmp(&b.task_id));
                Ok(live)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_and_event_fields_parse() {
        assert_eq!(parse_claim("10 20 w a"), Some((10, Some(20), "w a")));
        assert_eq!(parse_claim("10 - w"), Some((10, None, "w")));
        assert_eq!(parse_claim("x - w"), None);
        let at = at("test");
        let hash = vec![
            (b"m\x0010\x00a".to_vec(), b"second".to_vec()),
            (b"m\x009\x00a".to_vec(), b"first".to_vec()),
            (b"h\x00a".to_vec(), b"9".to_vec()),
            (b"r\x00a".to_vec(), b"id\x00old".to_vec()),
        ];
        let events = read_events(hash, &at).unwrap_or_default();
        let expected = vec![Bytes::from_static(b"first"), Bytes::from_static(b"second")];
        assert_eq!(events.get("a"), Some(&expected));
    }
}
