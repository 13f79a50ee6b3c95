//! `TaskClaimStore`: leases on tasks, timed by the Redis server clock.
//!
//! A claim is a field of the workflow's `claims` hash (`task_id` → claimed ms, expiry ms, worker),
//! so ids never collide (§ Claim keys, times and ownership). Expiring claims are also indexed by
//! expiry, so that `find_available_tasks` purges them without scanning. Times come from `TIME`
//! inside the scripts: one clock for every worker machine, and a fresh claim never looks expired
//! because of skew between machines.
//!
//! `claim.lua` refuses a claim on a terminal workflow or an already completed task (§ No claim on
//! finished work) inside the same script as the claim, so it cannot call the core's
//! `claims::claim_refused`; it mirrors that rule, and the test
//! `claim_refusal_mirrors_the_core_rule` compares the two for every status.

use chrono::Duration;
use sayiir_persistence::claims::{check_holder, claim_ttl_millis, extension_millis, task_claim};
use sayiir_persistence::sayiir_core::task_claim::{AvailableTask, TaskClaim};
use sayiir_persistence::{BackendError, TaskClaimStore};

use crate::error::{self, At, at};
use crate::reply::Items;
use crate::{RedisBackend, Retry, scripts};
use sayiir_persistence::operation::{Call, ClaimIds, FindRequest};

impl RedisBackend {
    /// Runs `release.lua` or `extend.lua`, which answer alike.
    async fn owner_checked(
        &self,
        at: &At<'_>,
        script: &crate::scripts::Lua,
        ids: (&str, &str, &str),
        extra: &[u8],
    ) -> Result<(), BackendError> {
        let (instance_id, task_id, worker_id) = ids;
        let keys = self.keys().workflow(instance_id);
        let args: [&[u8]; 3] = [task_id.as_bytes(), worker_id.as_bytes(), extra];
        let reply =
            self.run_workflow_script(at, script, &keys, instance_id, &args, Retry::No).await?;
        let mut items = Items::new(reply, *at)?;
        let holder = match items.text()?.as_deref() {
            Some("ok") => Some(worker_id.to_string()),
            Some("not_found") => None,
            Some("other") => Some(items.text()?.unwrap_or_default()),
            other => return Err(error::reply(at, &format!("returned {other:?}"))),
        };
        check_holder(instance_id, task_id, worker_id, holder.as_deref())
    }
}

impl TaskClaimStore for RedisBackend {
    async fn claim_task(
        &self,
        instance_id: &str,
        task_id: &str,
        worker_id: &str,
        ttl: Option<Duration>,
    ) -> Result<Option<TaskClaim>, BackendError> {
        let ids = ClaimIds { instance_id, task_id, worker_id };
        self.calls()
            .run(Call::ClaimTask(ids), async {
                let at = at("claim_task").instance(instance_id).task(task_id).worker(worker_id);
                // The TTL by the shared rule (zero or negative: expired on creation; an expiry
                // past the calendar: never expires); the expiry itself is computed on the server
                // clock.
                let ttl_ms = claim_ttl_millis(chrono::Utc::now(), ttl)
                    .map(|ms| ms.to_string())
                    .unwrap_or_default();
                let keys = self.keys().workflow(instance_id);
                let args: [&[u8]; 3] =
                    [task_id.as_bytes(), worker_id.as_bytes(), ttl_ms.as_bytes()];
                let reply = self
                    .run_workflow_script(
                        &at,
                        &scripts().claim,
                        &keys,
                        instance_id,
                        &args,
                        Retry::No,
                    )
                    .await?;
                let mut items = Items::new(reply, at)?;
                match items.text()?.as_deref() {
                    Some("refused") => Ok(None),
                    Some("claimed") => {
                        let claimed =
                            items.int()?.ok_or_else(|| error::reply(&at, "no claim time"))?;
                        let expires = items.int()?;
                        Ok(Some(task_claim(instance_id, task_id, worker_id, claimed, expires)))
                    }
                    other => Err(error::reply(&at, &format!("claim returned {other:?}"))),
                }
            })
            .await
    }

    async fn release_task_claim(
        &self,
        instance_id: &str,
        task_id: &str,
        worker_id: &str,
    ) -> Result<(), BackendError> {
        let ids = ClaimIds { instance_id, task_id, worker_id };
        self.calls()
            .run(Call::ReleaseTaskClaim(ids), async {
                let at =
                    at("release_task_claim").instance(instance_id).task(task_id).worker(worker_id);
                self.owner_checked(&at, &scripts().release, (instance_id, task_id, worker_id), b"")
                    .await
            })
            .await
    }

    async fn extend_task_claim(
        &self,
        instance_id: &str,
        task_id: &str,
        worker_id: &str,
        additional_duration: Duration,
    ) -> Result<(), BackendError> {
        let ids = ClaimIds { instance_id, task_id, worker_id };
        self.calls()
            .run(Call::ExtendTaskClaim(ids), async {
                let at =
                    at("extend_task_claim").instance(instance_id).task(task_id).worker(worker_id);
                let additional = extension_millis(additional_duration).to_string();
                self.owner_checked(
                    &at,
                    &scripts().extend,
                    (instance_id, task_id, worker_id),
                    additional.as_bytes(),
                )
                .await
            })
            .await
    }

    async fn find_available_tasks(
        &self,
        worker_id: &str,
        limit: usize,
        aging_interval: Duration,
        worker_tags: &[String],
    ) -> Result<Vec<AvailableTask>, BackendError> {
        let request = FindRequest { worker_id, limit, aging_interval, worker_tags };
        let find = self.find_tasks(request);
        self.calls().run(Call::FindAvailableTasks(request), find).await
    }
}
