//! `find_available_tasks`: purge expired claims, advance due parks, then pick the best
//! ready tasks from the index.
//!
//! The `ready` index holds exactly the workflows a worker could take now, apart from the worker's
//! own tags and bias: every script that changes a workflow, its pending requests or the claim on
//! its current task recomputes its entry. Scores are `priority * 2^33 + updated_at`, so within one
//! priority level the index order is the order of § Ordering, aging and worker bias for every aging
//! interval, and the best `limit` tasks overall are among the first `limit` the worker accepts of
//! each level (`poll.lua`), merged here with the shared `RankKey`. Work read per call therefore
//! grows with `limit` (and the number of priority levels in use), not with the number of stored
//! workflows.
//!
//! In the sharded key layout (Redis Cluster) each index shard has its own indexes: `poll.lua`
//! runs on every shard, concurrently, and the candidates of all shards are merged with the same
//! `RankKey`, which gives exactly the single-index result, since each shard proposes its own best
//! `limit` per level by the same order; work per call grows with `limit × shards`.
//!
//! Delays, signal timeouts and retry backoffs wait in the `parked` index, scored by wake
//! time (a buffered event scores 0). Due entries are advanced by `advance.lua`, which checks
//! on the stored fields that the park is still due, so concurrent pollers advance it once.
//!
//! A workflow whose blob does not decode is logged, skipped and taken out of the indexes
//! (its next save puts it back), so it cannot crowd out the others.

use chrono::Utc;
use futures::future::join_all;
use redis::Value;
use sayiir_persistence::BackendError;
use sayiir_persistence::codec::decode_snapshot;
use sayiir_persistence::operation::FindRequest;
use sayiir_persistence::sayiir_core::task_claim::AvailableTask;
use sayiir_persistence::schedule::{
    RankKey, aging_seconds, best_by_rank, effective_priority, unix_seconds,
};

use crate::error::{self, At, at};
use crate::keys::split_claim_member;
use crate::packed::Packed;
use crate::reply;
use crate::{RedisBackend, Retry, now_millis, scripts};

/// Index scores are `priority * SPAN + updated_at`.
const SPAN: f64 = 8_589_934_592.0;

/// At most this many due parks and expired claims are settled per call; the rest wait
/// for the next call.
const DUE_BATCH: usize = 256;

/// How many times one call polls again to replace tasks that turned out not to be
/// available (taken meanwhile, or undecodable).
const TAKE_ROUNDS: usize = 4;

/// Every call of `find_available_tasks` may be sent again on a fresh connection after a lost one
/// (an error here ends the worker's loop, § One bad row never fails the call): its reads are reads,
/// and its writes check their own preconditions (an advancement sent twice advances once) and do
/// not report their outcome.
const RETRY: Retry = Retry::OnReconnect;

/// A ready task proposed by `poll.lua`.
#[derive(Debug)]
struct Candidate {
    instance_id: String,
    priority: u8,
    updated_at: u64,
    biased: bool,
}

/// The reply of `poll.lua`.
#[derive(Debug)]
struct Poll {
    due: Vec<String>,
    expired: Vec<String>,
    candidates: Vec<Candidate>,
}

impl RedisBackend {
    pub(crate) async fn find_tasks(
        &self,
        request: FindRequest<'_>,
    ) -> Result<Vec<AvailableTask>, BackendError> {
        let FindRequest { worker_id, limit, aging_interval, worker_tags } = request;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let at = at("find_available_tasks").worker(worker_id);
        let mut poll = self.poll(&at, worker_id, limit, worker_tags).await?;
        if !poll.due.is_empty() || !poll.expired.is_empty() {
            self.settle(&at, &poll).await;
            poll = self.poll(&at, worker_id, limit, worker_tags).await?;
        }

        let aging = aging_seconds(aging_interval);
        let mut tasks: Vec<AvailableTask> = Vec::with_capacity(limit);
        for round in 0..TAKE_ROUNDS {
            let needed = limit - tasks.len();
            // After a miss, read twice as many candidates per round, so a run of tasks taken
            // meanwhile or undecodable rows costs a few rounds, not one round each.
            let want = needed.saturating_mul(1 << round);
            if round > 0 {
                poll = self.poll(&at, worker_id, want, worker_tags).await?;
            }
            let now_secs = unix_seconds(Utc::now());
            let keyed = poll
                .candidates
                .iter()
                .filter(|c| !tasks.iter().any(|t| t.instance_id == c.instance_id))
                .map(|c| {
                    let key = RankKey {
                        biased: c.biased,
                        effective: effective_priority(c.priority, c.updated_at, now_secs, aging),
                        updated_at: c.updated_at,
                        instance_id: &c.instance_id,
                    };
                    (key, c)
                })
                .collect();
            let best = best_by_rank(keyed, want);
            let mut missed = false;
            // Accepted in rank order; reads beyond what is needed are dropped (they have no
            // side effect).
            for taken in join_all(best.iter().map(|c| self.take(&at, &c.instance_id))).await {
                match taken {
                    Ok(Some(task)) if tasks.len() < limit => tasks.push(task),
                    Ok(Some(_)) => {}
                    Ok(None) => missed = true,
                    Err(BackendError::Serialization(why)) => {
                        tracing::warn!(error = %why, "skipping a task whose snapshot does not decode");
                        missed = true;
                    }
                    Err(e) => return Err(e),
                }
            }
            // A task taken by another worker meanwhile, or one that does not decode (now out
            // of the index), left a gap: poll again for the next best.
            if tasks.len() == limit || !missed {
                break;
            }
        }
        Ok(tasks)
    }

    /// Runs `poll.lua` on every index shard (concurrently, one script each) and puts the
    /// replies together: each shard proposes its own best candidates by the same rule, so the
    /// best `limit` overall are among them.
    async fn poll(
        &self,
        at: &At<'_>,
        worker_id: &str,
        limit: usize,
        worker_tags: &[String],
    ) -> Result<Poll, BackendError> {
        let shards = self.keys().shard_numbers();
        let polls =
            join_all(shards.map(|shard| self.poll_shard(at, shard, worker_id, limit, worker_tags)))
                .await;
        let mut all = Poll { due: Vec::new(), expired: Vec::new(), candidates: Vec::new() };
        let (mut failed, mut read) = (None, 0_usize);
        for poll in polls {
            match poll {
                Ok(poll) => {
                    read += 1;
                    all.due.extend(poll.due);
                    all.expired.extend(poll.expired);
                    all.candidates.extend(poll.candidates);
                }
                // One master out of reach (a failover under way) holds up only the tasks of
                // its shards: the others are served, and the next call asks it again.
                Err(error) => {
                    tracing::warn!(%error, "find_available_tasks skips an index shard it cannot read");
                    failed = Some(error);
                }
            }
        }
        // Only when no shard answered is there nothing to serve.
        match failed {
            Some(error) if read == 0 => Err(error),
            _ => Ok(all),
        }
    }

    /// `poll.lua` on the indexes of one shard.
    async fn poll_shard(
        &self,
        at: &At<'_>,
        shard: usize,
        worker_id: &str,
        limit: usize,
        worker_tags: &[String],
    ) -> Result<Poll, BackendError> {
        let keys = self.keys();
        let now = now_millis().to_string();
        let limit = limit.to_string();
        // The batch is shared by the shards, so one call settles at most DUE_BATCH of each kind.
        let batch = DUE_BATCH.div_ceil(keys.shard_count()).to_string();
        let mut args: Vec<&[u8]> =
            vec![now.as_bytes(), limit.as_bytes(), worker_id.as_bytes(), batch.as_bytes()];
        args.extend(worker_tags.iter().map(|tag| tag.as_bytes()));
        let keys =
            [keys.ready(shard), keys.meta(shard), keys.parked(shard), keys.claim_expiry(shard)];
        let reply = self.eval(at, &scripts().poll, &keys, &args, RETRY).await?;
        let mut packed = Packed::new(reply, *at)?;
        let due = texts(&mut packed)?;
        let expired = texts(&mut packed)?;
        let count = packed.array()? / 3;
        let mut candidates = Vec::with_capacity(count);
        for _ in 0..count {
            let instance_id = packed.text()?.unwrap_or_default();
            let score: f64 = packed
                .text()?
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| error::reply(at, "candidate without a score"))?;
            let biased = packed.int()? == Some(1);
            let level = (score / SPAN).floor();
            // Scores are built from a u8 priority and a clamped u64: both conversions are exact.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let (priority, updated_at) = (level as u8, (score - level * SPAN) as u64);
            candidates.push(Candidate { instance_id, priority, updated_at, biased });
        }
        Ok(Poll { due, expired, candidates })
    }

    /// Purges the expired claims and advances the due parks of `poll`. Failures are logged,
    /// not returned: the next call retries them, and the tasks already ready are served.
    async fn settle(&self, at: &At<'_>, poll: &Poll) {
        let now_secs = Utc::now().timestamp().to_string();
        let purges = poll.expired.iter().map(|member| self.purge(at, member));
        let advances = poll.due.iter().map(|id| self.advance(at, id, &now_secs));
        let (purged, advanced) = futures::join!(join_all(purges), join_all(advances));
        for result in purged.into_iter().chain(advanced) {
            if let Err(e) = result {
                tracing::warn!(error = %e, "find_available_tasks could not settle a workflow");
            }
        }
    }

    async fn purge(&self, at: &At<'_>, member: &str) -> Result<(), BackendError> {
        let Some((instance_id, task_id)) = split_claim_member(member) else {
            return Err(error::reply(at, &format!("malformed claim index entry {member:?}")));
        };
        let keys = self.keys().workflow(instance_id);
        let args: [&[u8]; 1] = [task_id.as_bytes()];
        let reply = self
            .run_workflow_script(at, &scripts().purge_claim, &keys, instance_id, &args, RETRY)
            .await?;
        reply::word(reply, at).map(|_| ())
    }

    /// Advances one due park (§ Advancing parked workflows), or fixes its index entry when it is
    /// not due after all (a backoff that ended, an event consumed by someone else, a pending
    /// request): one script, `advance.lua`, which may run again after a lost connection (a
    /// second run finds the park advanced and only refreshes the index).
    async fn advance(
        &self,
        at: &At<'_>,
        instance_id: &str,
        now_secs: &str,
    ) -> Result<(), BackendError> {
        let keys = self.keys().workflow(instance_id);
        let args: [&[u8]; 1] = [now_secs.as_bytes()];
        let reply = self
            .run_workflow_script(at, &scripts().advance, &keys, instance_id, &args, RETRY)
            .await?;
        reply::word(reply, at).map(|_| ())
    }

    /// Takes a workflow whose blob does not decode out of the indexes (unless it was
    /// rewritten since revision `revision`), so that it is skipped once rather than read by
    /// every call and crowd out decodable ones; returns `error` to report.
    async fn unindex(
        &self,
        at: &At<'_>,
        instance_id: &str,
        revision: &str,
        error: BackendError,
    ) -> BackendError {
        let keys = self.keys().workflow(instance_id);
        let args: [&[u8]; 1] = [revision.as_bytes()];
        match self
            .run_workflow_script(at, &scripts().unindex, &keys, instance_id, &args, RETRY)
            .await
        {
            Ok(_) => error,
            Err(unindex_error) => {
                tracing::warn!(error = %unindex_error, "cannot unindex an undecodable workflow");
                error
            }
        }
    }

    /// Reads one ready task, if it is still ready.
    async fn take(
        &self,
        at: &At<'_>,
        instance_id: &str,
    ) -> Result<Option<AvailableTask>, BackendError> {
        let keys = self.keys().workflow(instance_id);
        let reply =
            self.run_workflow_script(at, &scripts().take, &keys, instance_id, &[], RETRY).await?;
        if reply == Value::Nil {
            return Ok(None);
        }
        let mut packed = Packed::new(reply, *at)?;
        let task_id = packed.text()?.unwrap_or_default();
        let blob = packed.bytes()?.unwrap_or_default();
        let trace_parent = packed.text()?;
        let last_output = packed.bytes()?;
        let revision = packed.text()?.unwrap_or_default();
        let snapshot = match decode_snapshot(instance_id, &blob) {
            Ok(snapshot) => snapshot,
            Err(e) => return Err(self.unindex(at, instance_id, &revision, e).await),
        };
        let input = match last_output {
            Some(output) => output,
            None => match snapshot.initial_input {
                Some(input) => input,
                None => return Ok(None),
            },
        };
        Ok(Some(AvailableTask {
            instance_id: instance_id.to_string(),
            task_id,
            input,
            workflow_definition_hash: snapshot.definition_hash,
            trace_parent,
        }))
    }
}

/// An array of texts.
fn texts(packed: &mut Packed<'_>) -> Result<Vec<String>, BackendError> {
    let count = packed.array()?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push(packed.text()?.unwrap_or_default());
    }
    Ok(out)
}
