//! `RetentionStore` and `WorkflowListing` for Redis, on the listing sorted sets that every
//! script writing a workflow's status, `updated_at` or definition keeps (`relist` in
//! `lua/index.lua`): per status, and per status and
//! definition, members `<updated_at, 20 digits>:<instance id>` of score 0, read by range of
//! member (`ZRANGEBYLEX`), so a page or a batch costs O(log n + `limit`) per status.
//!
//! A listing page is one pipelined round trip for the statuses plus one `HMGET` for the
//! definitions (none with a definition filter). A prune batch reads its candidates in one
//! round trip, then removes each with `lua/prune.lua`, which checks again that the workflow
//! still qualifies: each workflow goes whole or stays, and a batch is not one transaction.

use redis::Value;
use sayiir_persistence::listing::{ListRequest, WorkflowListing, WorkflowPage, WorkflowSummary};
use sayiir_persistence::operation::Call;
use sayiir_persistence::retention::{PruneRequest, RetentionStore};
use sayiir_persistence::status::TERMINAL;

use crate::command::Retry;
use crate::error::{At, at};
use crate::keys::{Own, claim_member};
use crate::{BackendError, RedisBackend, reply, scripts};

/// Listing members read per `SSCAN` page by [`RedisBackend::build_listing_indexes`].
const BACKFILL_PAGE: usize = 500;

/// Most candidate reads of one prune batch (see `prune_finished_batch`).
const PRUNE_ROUNDS: usize = 8;

/// The member of a workflow in the listing sorted sets, as `relist` builds it.
fn member(updated_at: u64, instance_id: &str) -> String {
    format!("{updated_at:020}:{instance_id}")
}

/// Splits a listing member into (`updated_at`, instance id).
fn split_member(member: &str) -> Option<(u64, &str)> {
    let (digits, id) = member.split_once(':')?;
    Some((digits.parse().ok()?, id))
}

impl RedisBackend {
    /// Runs `commands` pipelined (one round trip, not a transaction) and returns a reply per
    /// command.
    async fn pipelined<T: redis::FromRedisValue>(
        &self,
        at: &At<'_>,
        commands: Vec<redis::Cmd>,
    ) -> Result<Vec<T>, BackendError> {
        let mut pipeline = redis::Pipeline::with_capacity(commands.len());
        for cmd in commands {
            pipeline.add_command(cmd);
        }
        self.on_connection(at, Retry::OnReconnect, |mut conn| {
            let pipeline = &pipeline;
            async move { pipeline.query_async(&mut conn).await }
        })
        .await
    }

    /// [`Self::pipelined`] on every index shard, concurrently (a pipeline may only touch one
    /// hash slot on a cluster): `commands` gives the commands of one shard. The replies of all
    /// shards, shard after shard.
    async fn pipelined_per_shard<T: redis::FromRedisValue>(
        &self,
        at: &At<'_>,
        commands: impl Fn(usize) -> Vec<redis::Cmd>,
    ) -> Result<Vec<T>, BackendError> {
        let pages = futures::future::join_all(
            self.keys().shard_numbers().map(|shard| self.pipelined::<T>(at, commands(shard))),
        )
        .await;
        let mut all = Vec::new();
        for page in pages {
            all.extend(page?);
        }
        Ok(all)
    }

    /// Gives every workflow stored before the listing indexes existed its entry: the
    /// definition hash is decoded from its blob (an undecodable blob gets an empty one), a
    /// page of 500 at a time, with a progress line per page; and puts the never-expiring
    /// claims of a store written before they were indexed into the claim-expiry index (once
    /// per store: a marker key `{prefix}:claims-indexed` records it). `connect` and
    /// `connect_with` run it; a backend made with `from_pool` on a store written by an older
    /// version calls it once. Cheap when there is nothing to do: an `EXISTS` and two counts.
    ///
    /// # Errors
    /// `Backend` if a command fails; the entries made so far stay, and calling it again
    /// finishes the work.
    pub async fn build_listing_indexes(&self) -> Result<(), BackendError> {
        let at = at("build_listing_indexes");
        if !self.keys().sharded() {
            // A sharded store is written by this version: it indexed these claims itself.
            self.index_lasting_claims(&at).await?;
        }
        for shard in self.keys().shard_numbers() {
            self.build_shard_listing(&at, shard).await?;
        }
        Ok(())
    }

    /// [`Self::build_listing_indexes`] for the workflows of one index shard.
    async fn build_shard_listing(&self, at: &At<'_>, shard: usize) -> Result<(), BackendError> {
        let keys = self.keys();
        let mut count = redis::pipe();
        count.cmd("SCARD").arg(keys.instances(shard)).cmd("HLEN").arg(keys.listed(shard));
        let (stored, listed): (u64, u64) = self
            .on_connection(at, Retry::OnReconnect, |mut conn| {
                let count = &count;
                async move { count.query_async(&mut conn).await }
            })
            .await?;
        if stored == listed {
            return Ok(());
        }
        let (mut cursor, mut built) = (0_u64, 0_u64);
        loop {
            let mut scan = redis::cmd("SSCAN");
            scan.arg(keys.instances(shard)).arg(cursor).arg("COUNT").arg(BACKFILL_PAGE);
            let (next, ids): (u64, Vec<String>) = self.query(at, &scan, Retry::OnReconnect).await?;
            if !ids.is_empty() {
                let mut present = redis::cmd("HMGET");
                present.arg(keys.listed(shard)).arg(&ids);
                let entries: Vec<Option<Vec<u8>>> =
                    self.query(at, &present, Retry::OnReconnect).await?;
                for (id, entry) in ids.iter().zip(entries) {
                    if entry.is_none() {
                        self.relist(at, id).await?;
                        built += 1;
                    }
                }
                tracing::info!(built, "listing entries built for workflows stored before them");
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        self.drop_stale_listing_entries(at, shard).await
    }

    /// Puts the never-expiring claims of a store written by an older version into the
    /// claim-expiry index at `+inf` (where `claim.lua` now puts them), so `store_counts` counts
    /// them; once per store (a marker key records it). One `SCAN` of the claims hashes.
    async fn index_lasting_claims(&self, at: &At<'_>) -> Result<(), BackendError> {
        let keys = self.keys();
        let marker = keys.lasting_claims_indexed();
        let mut exists = redis::cmd("EXISTS");
        exists.arg(&marker);
        let done: bool = self.query(at, &exists, Retry::OnReconnect).await?;
        if done {
            return Ok(());
        }
        let (mut cursor, mut indexed) = (0_u64, 0_u64);
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(keys.workflow_key_pattern(0, Own::Claims))
                .arg("COUNT")
                .arg(BACKFILL_PAGE);
            let (next, found): (u64, Vec<String>) =
                self.query(at, &scan, Retry::OnReconnect).await?;
            for key in found {
                let Some(instance_id) = keys.instance_of_key(&key, Own::Claims) else { continue };
                let mut read = redis::cmd("HGETALL");
                read.arg(&key);
                let claims = reply::pairs(self.query(at, &read, Retry::OnReconnect).await?, at)?;
                for (task, value) in claims {
                    // `<claimed ms> - <worker>`: never expires.
                    let lasting = value.split(|b| *b == b' ').nth(1) == Some(b"-".as_slice());
                    let Ok(task) = String::from_utf8(task) else { continue };
                    if lasting {
                        let mut add = redis::cmd("ZADD");
                        add.arg(keys.claim_expiry(0))
                            .arg("+inf")
                            .arg(claim_member(&instance_id, &task));
                        self.query::<()>(at, &add, Retry::OnReconnect).await?;
                        indexed += 1;
                    }
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        if indexed > 0 {
            tracing::info!(indexed, "never-expiring claims of an older store indexed");
        }
        let mut mark = redis::cmd("SET");
        mark.arg(&marker).arg(1);
        self.query::<()>(at, &mark, Retry::OnReconnect).await
    }

    /// Removes the listing entries of instances no longer stored (left by an older version's
    /// delete, or by keys removed by hand), so that they neither show in listings nor stand in
    /// front of the workflows a prune can remove.
    async fn drop_stale_listing_entries(
        &self,
        at: &At<'_>,
        shard: usize,
    ) -> Result<(), BackendError> {
        let keys = self.keys();
        let mut cursor = 0_u64;
        loop {
            let mut scan = redis::cmd("HSCAN");
            // Fields and values alternate (`NOVALUES` needs Redis 7.4).
            scan.arg(keys.listed(shard)).arg(cursor).arg("COUNT").arg(BACKFILL_PAGE);
            let (next, pairs): (u64, Vec<Vec<u8>>) =
                self.query(at, &scan, Retry::OnReconnect).await?;
            let ids: Vec<String> = pairs
                .into_iter()
                .step_by(2)
                .filter_map(|field| String::from_utf8(field).ok())
                .collect();
            if !ids.is_empty() {
                let mut stored = redis::cmd("SMISMEMBER");
                stored.arg(keys.instances(shard)).arg(&ids);
                let stored: Vec<bool> = self.query(at, &stored, Retry::OnReconnect).await?;
                for (id, stored) in ids.iter().zip(stored) {
                    if !stored {
                        self.relist(at, id).await?;
                    }
                }
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Makes the listing entry of one workflow stored before listing existed.
    async fn relist(&self, at: &At<'_>, instance_id: &str) -> Result<(), BackendError> {
        let workflow = self.keys().workflow(instance_id);
        let blob: Option<Vec<u8>> =
            self.query(at, redis::cmd("GET").arg(workflow.blob()), Retry::OnReconnect).await?;
        let definition = match blob
            .map(|blob| sayiir_persistence::codec::decode_snapshot(instance_id, &blob))
        {
            Some(Ok(snapshot)) => snapshot.definition_hash,
            Some(Err(error)) => {
                tracing::warn!(%error, instance_id, "undecodable workflow: listed with an empty definition");
                String::new()
            }
            // Not stored (deleted meanwhile, or only its listing entry is left): the script
            // removes the entry.
            None => String::new(),
        };
        let args: [&[u8]; 1] = [definition.as_bytes()];
        let reply = self
            .run_workflow_script(
                at,
                &scripts().relist,
                &workflow,
                instance_id,
                &args,
                Retry::OnReconnect,
            )
            .await?;
        match reply::found(reply, at, instance_id) {
            Ok(()) | Err(BackendError::NotFound(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

impl RetentionStore for RedisBackend {
    async fn prune_finished_batch(&self, request: &PruneRequest) -> Result<u64, BackendError> {
        self.calls()
            .run(Call::PruneFinished(request), async {
                let at = at("prune_finished");
                let keys = self.keys();
                let before = format!("({:020}", request.finished_before);
                let cutoff = format!("{:020}", request.finished_before);
                let definition = request.definition_hash.as_deref().unwrap_or_default();
                let filtered: &[u8] = if request.definition_hash.is_some() { b"1" } else { b"0" };
                let mut pruned = 0;
                // A round whose candidates were all left-over entries (removed by prune.lua)
                // removes nothing: read again, so that one batch does not end a prune while
                // workflows it may remove are behind them.
                for _ in 0..PRUNE_ROUNDS {
                    let mut oldest: Vec<String> = self
                        .pipelined_per_shard::<Vec<String>>(&at, |shard| {
                            TERMINAL
                                .into_iter()
                                .map(|status| {
                                    let key = keys.listing_of(
                                        shard,
                                        status,
                                        request.definition_hash.as_deref(),
                                    );
                                    let mut cmd = redis::cmd("ZRANGEBYLEX");
                                    cmd.arg(key)
                                        .arg("-")
                                        .arg(&before)
                                        .arg("LIMIT")
                                        .arg(0)
                                        .arg(request.batch_size);
                                    cmd
                                })
                                .collect()
                        })
                        .await?
                        .into_iter()
                        .flatten()
                        .collect();
                    oldest.sort();
                    oldest.truncate(request.batch_size);
                    for member in &oldest {
                        let Some((_, instance_id)) = split_member(member) else {
                            return Err(crate::error::reply(
                                &at,
                                "a listing member without its instance id",
                            ));
                        };
                        let workflow = keys.workflow(instance_id);
                        let args: [&[u8]; 3] = [cutoff.as_bytes(), definition.as_bytes(), filtered];
                        let reply = self
                            .run_workflow_script(
                                &at,
                                &scripts().prune,
                                &workflow,
                                instance_id,
                                &args,
                                Retry::OnReconnect,
                            )
                            .await?;
                        if matches!(reply, Value::Int(1)) {
                            pruned += 1;
                        }
                    }
                    if pruned > 0 || oldest.is_empty() {
                        break;
                    }
                }
                Ok(pruned)
            })
            .await
    }
}

impl WorkflowListing for RedisBackend {
    async fn list_workflows(&self, request: &ListRequest) -> Result<WorkflowPage, BackendError> {
        self.calls()
            .run(Call::ListWorkflows(request), async {
                let at = at("list_workflows");
                let keys = self.keys();
                let upper = match &request.after {
                    Some(after) => format!("({}", member(after.updated_at, &after.instance_id)),
                    None => "+".to_string(),
                };
                let statuses = request.wanted_statuses();
                let pages: Vec<Vec<String>> = self
                    .pipelined_per_shard(&at, |shard| {
                        statuses
                            .iter()
                            .map(|status| {
                                let definition = request.definition_hash.as_deref();
                                let key = keys.listing_of(shard, status, definition);
                                let mut cmd = redis::cmd("ZREVRANGEBYLEX");
                                cmd.arg(key)
                                    .arg(&upper)
                                    .arg("-")
                                    .arg("LIMIT")
                                    .arg(0)
                                    .arg(request.limit);
                                cmd
                            })
                            .collect()
                    })
                    .await?;
                let mut candidates = Vec::new();
                // Shard after shard, a page per status.
                for (status, members) in statuses.iter().cycle().zip(pages) {
                    for member in members {
                        let Some((updated_at, instance_id)) = split_member(&member) else {
                            return Err(crate::error::reply(
                                &at,
                                "a listing member without its instance id",
                            ));
                        };
                        candidates.push(WorkflowSummary {
                            instance_id: instance_id.to_string(),
                            status: (*status).to_string(),
                            definition_hash: request.definition_hash.clone().unwrap_or_default(),
                            updated_at,
                        });
                    }
                }
                let mut page = request.page(candidates);
                if request.definition_hash.is_none() && !page.workflows.is_empty() {
                    self.fill_definitions(&at, &mut page.workflows).await?;
                }
                Ok(page)
            })
            .await
    }
}

impl RedisBackend {
    /// Fills in the definition of each summary from its listing entry: one `HMGET` per index
    /// shard that holds some of them.
    async fn fill_definitions(
        &self,
        at: &At<'_>,
        workflows: &mut [WorkflowSummary],
    ) -> Result<(), BackendError> {
        let keys = self.keys();
        let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); keys.shard_count()];
        for (index, summary) in workflows.iter().enumerate() {
            by_shard[keys.workflow(&summary.instance_id).shard()].push(index);
        }
        let reads = by_shard.iter().enumerate().filter(|(_, indexes)| !indexes.is_empty()).map(
            |(shard, indexes)| {
                let mut entries = redis::cmd("HMGET");
                entries.arg(keys.listed(shard));
                for index in indexes {
                    entries.arg(&workflows[*index].instance_id);
                }
                async move {
                    let entries: Vec<Option<Vec<u8>>> =
                        self.query(at, &entries, Retry::OnReconnect).await?;
                    Ok::<_, BackendError>((indexes, entries))
                }
            },
        );
        for read in futures::future::join_all(reads).await {
            let (indexes, entries) = read?;
            for (index, entry) in indexes.iter().zip(entries) {
                // `<status>\0<member>\0<definition>`; an entry gone meanwhile (the workflow was
                // deleted) leaves the definition empty.
                if let Some(definition) =
                    entry.as_deref().and_then(|e| e.splitn(3, |b| *b == 0).nth(2))
                {
                    workflows[*index].definition_hash =
                        String::from_utf8_lossy(definition).into_owned();
                }
            }
        }
        Ok(())
    }
}
