//! Claim arithmetic shared by every backend (contract section 5 and D6).
//!
//! Backends keep claim times in milliseconds, so a claim made with a TTL of 1.5 s lives
//! 1.5 s; the [`TaskClaim`] they return carries truncated Unix seconds.

use chrono::{DateTime, Duration, Utc};
use sayiir_core::task_claim::TaskClaim;

use crate::BackendError;

/// When a claim made at `now` with `ttl` expires, in Unix milliseconds; `None` never expires
/// (no TTL, or a TTL so large that the expiry overflows).
#[must_use]
pub fn expiry_millis(now: DateTime<Utc>, ttl: Option<Duration>) -> Option<i64> {
    ttl.and_then(|ttl| now.checked_add_signed(ttl)).map(|t| t.timestamp_millis())
}

/// The expiry after extending one at `expires_ms` by `additional` (from the old expiry, as in
/// 0.4); `None` stays `None`, and an overflow means "never expires".
#[must_use]
pub fn extended_millis(expires_ms: Option<i64>, additional: Duration) -> Option<i64> {
    expires_ms.and_then(|ms| ms.checked_add(additional.num_milliseconds()))
}

/// Whether a claim expiring at `expires_ms` is still live at `now_ms`.
#[must_use]
pub fn is_live(expires_ms: Option<i64>, now_ms: i64) -> bool {
    expires_ms.is_none_or(|ms| now_ms < ms)
}

/// Unix milliseconds to the truncated Unix seconds of [`TaskClaim`].
#[must_use]
pub fn millis_to_secs(ms: i64) -> u64 {
    u64::try_from(ms.div_euclid(1000)).unwrap_or(0)
}

/// The claim value returned to the caller.
#[must_use]
pub fn task_claim(
    instance_id: &str,
    task_id: &str,
    worker_id: &str,
    claimed_ms: i64,
    expires_ms: Option<i64>,
) -> TaskClaim {
    TaskClaim {
        instance_id: instance_id.to_string(),
        task_id: task_id.to_string(),
        worker_id: worker_id.to_string(),
        claimed_at: millis_to_secs(claimed_ms),
        expires_at: expires_ms.map(millis_to_secs),
    }
}

/// D12: whether a claim must be refused for a workflow whose status text is `status` and
/// whose stored results do (`has_result`) or do not hold the task: a terminal workflow, or a
/// task that already completed, is never handed out again.
#[must_use]
pub fn claim_refused(status: &str, has_result: bool) -> bool {
    matches!(status, "Completed" | "Failed" | "Cancelled")
        || (has_result && crate::results::status_holds_results(status))
}

/// `NotFound` for a missing claim, with the message 0.4 used (`"{instance}:{task}"`).
#[must_use]
pub fn claim_not_found(instance_id: &str, task_id: &str) -> BackendError {
    BackendError::NotFound(format!("{instance_id}:{task_id}"))
}

/// `Backend` for a claim held by another worker.
#[must_use]
pub fn claim_held_by_other(instance_id: &str, task_id: &str, owner: &str) -> BackendError {
    BackendError::Backend(format!(
        "claim on task {task_id:?} of instance {instance_id:?} is owned by a different worker: {owner}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_rules() {
        let now = DateTime::from_timestamp_millis(1_700_000_000_999).unwrap_or_default();
        assert_eq!(expiry_millis(now, None), None);
        assert_eq!(expiry_millis(now, Some(Duration::MAX)), None);
        let zero = expiry_millis(now, Some(Duration::zero()));
        assert!(!is_live(zero, now.timestamp_millis()));
        let claim = task_claim("i", "t", "w", now.timestamp_millis(), zero);
        assert_eq!(claim.claimed_at, 1_700_000_000);
        assert_eq!(extended_millis(Some(1000), Duration::seconds(2)), Some(3000));
        assert_eq!(extended_millis(None, Duration::seconds(2)), None);
        assert_eq!(extended_millis(Some(i64::MAX), Duration::seconds(2)), None);
    }
}
