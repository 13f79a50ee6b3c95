//! `TaskClaimStore` for the in-memory backend; the search of `find_available_tasks` is in `find`.

use crate::claims::{
    check_holder, claim_not_found, claim_refused, expiry_millis, extended_millis, task_claim,
};
use crate::operation::{Call, ClaimIds, FindRequest};
use crate::results::held_results;
use crate::{BackendError, TaskClaimStore};
use chrono::{Duration, Utc};
use sayiir_core::task_claim::{AvailableTask, TaskClaim};

use super::InMemoryBackend;
use super::state::{Claim, State};

impl State {
    /// § No claim on finished work: no claim on a terminal workflow or on a task whose result is
    /// already stored.
    fn refuses_claim(&self, instance_id: &str, task_id: &str) -> Result<bool, BackendError> {
        let Some(workflow) = self.workflows.get(instance_id) else {
            return Ok(false);
        };
        let snapshot = workflow.snapshot(instance_id)?;
        let has_result = held_results(&snapshot.state).is_some_and(|r| r.contains_key(task_id));
        Ok(claim_refused(snapshot.state.as_ref(), has_result))
    }

    /// The caller's claim, or the error for a missing claim or another owner.
    fn owned_claim(
        &self,
        instance_id: &str,
        task_id: &str,
        worker_id: &str,
    ) -> Result<Claim, BackendError> {
        let claim = self.claims.get(instance_id).and_then(|tasks| tasks.get(task_id));
        check_holder(instance_id, task_id, worker_id, claim.map(|c| c.worker_id.as_str()))?;
        claim.cloned().ok_or_else(|| claim_not_found(instance_id, task_id))
    }
}

impl TaskClaimStore for InMemoryBackend {
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
                let mut state = self.lock()?;
                let now = Utc::now();
                let now_ms = now.timestamp_millis();
                if state.refuses_claim(instance_id, task_id)?
                    || state.live_claim(instance_id, task_id, now_ms).is_some()
                {
                    return Ok(None);
                }
                let expires_ms = expiry_millis(now, ttl);
                let claim =
                    Claim { worker_id: worker_id.to_string(), claimed_ms: now_ms, expires_ms };
                state.insert_claim(instance_id, task_id, claim);
                Ok(Some(task_claim(instance_id, task_id, worker_id, now_ms, expires_ms)))
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
                let mut state = self.lock()?;
                state.owned_claim(instance_id, task_id, worker_id)?;
                state.remove_claim(instance_id, task_id);
                Ok(())
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
                let mut state = self.lock()?;
                let mut claim = state.owned_claim(instance_id, task_id, worker_id)?;
                claim.expires_ms = extended_millis(claim.expires_ms, additional_duration);
                state.insert_claim(instance_id, task_id, claim);
                Ok(())
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
        let find = async { self.find(request) };
        self.calls().run(Call::FindAvailableTasks(request), find).await
    }
}
