//! `TaskClaimStore` claims for the in-memory backend (`find_available_tasks` is in `find`).

use chrono::{Duration, Utc};
use sayiir_persistence::BackendError;
use sayiir_persistence::claims::{
    claim_held_by_other, claim_not_found, expiry_millis, extended_millis, task_claim,
};
use sayiir_persistence::results::held_results;
use sayiir_persistence::sayiir_core::task_claim::TaskClaim;
use sayiir_persistence::validation::{IdKind, validate_ids};

use crate::InMemoryBackend;
use crate::state::{Claim, State};

fn check_ids(instance_id: &str, task_id: &str, worker_id: &str) -> Result<(), BackendError> {
    validate_ids(&[
        (IdKind::Instance, instance_id),
        (IdKind::Task, task_id),
        (IdKind::Worker, worker_id),
    ])
}

impl State {
    /// D12: no claim on a terminal workflow or on a task whose result is already stored.
    fn claim_refused(&self, instance_id: &str, task_id: &str) -> Result<bool, BackendError> {
        let Some(workflow) = self.workflows.get(instance_id) else {
            return Ok(false);
        };
        let snapshot = workflow.snapshot(instance_id)?;
        Ok(snapshot.state.is_terminal()
            || held_results(&snapshot.state).is_some_and(|r| r.contains_key(task_id)))
    }

    /// The caller's claim, or the error for a missing claim or another owner.
    fn owned_claim(
        &self,
        instance_id: &str,
        task_id: &str,
        worker_id: &str,
    ) -> Result<Claim, BackendError> {
        let claim = self
            .claims
            .get(instance_id)
            .and_then(|tasks| tasks.get(task_id))
            .ok_or_else(|| claim_not_found(instance_id, task_id))?;
        if claim.worker_id != worker_id {
            return Err(claim_held_by_other(instance_id, task_id, &claim.worker_id));
        }
        Ok(claim.clone())
    }
}

impl InMemoryBackend {
    pub(crate) fn claim(
        &self,
        instance_id: &str,
        task_id: &str,
        worker_id: &str,
        ttl: Option<Duration>,
    ) -> Result<Option<TaskClaim>, BackendError> {
        check_ids(instance_id, task_id, worker_id)?;
        let mut state = self.lock()?;
        let now = Utc::now();
        let now_ms = now.timestamp_millis();
        if state.claim_refused(instance_id, task_id)?
            || state.live_claim(instance_id, task_id, now_ms).is_some()
        {
            return Ok(None);
        }
        let expires_ms = expiry_millis(now, ttl);
        let claim = Claim { worker_id: worker_id.to_string(), expires_ms };
        state.insert_claim(instance_id, task_id, claim);
        Ok(Some(task_claim(instance_id, task_id, worker_id, now_ms, expires_ms)))
    }

    pub(crate) fn release(
        &self,
        instance_id: &str,
        task_id: &str,
        worker_id: &str,
    ) -> Result<(), BackendError> {
        check_ids(instance_id, task_id, worker_id)?;
        let mut state = self.lock()?;
        state.owned_claim(instance_id, task_id, worker_id)?;
        state.remove_claim(instance_id, task_id);
        Ok(())
    }

    pub(crate) fn extend(
        &self,
        instance_id: &str,
        task_id: &str,
        worker_id: &str,
        additional: Duration,
    ) -> Result<(), BackendError> {
        check_ids(instance_id, task_id, worker_id)?;
        let mut state = self.lock()?;
        let mut claim = state.owned_claim(instance_id, task_id, worker_id)?;
        claim.expires_ms = extended_millis(claim.expires_ms, additional);
        state.insert_claim(instance_id, task_id, claim);
        Ok(())
    }
}
