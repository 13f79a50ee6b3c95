//! Claim arithmetic shared by every backend (§ TaskClaimStore and § Claim keys, times and
//! ownership).
//!
//! Backends keep claim times in milliseconds, so a claim made with a TTL of 1.5 s lives
//! 1.5 s; the [`TaskClaim`] they return carries truncated Unix seconds.

use chrono::{DateTime, Duration, Utc};
use sayiir_core::task_claim::TaskClaim;

use crate::BackendError;

/// The most a claim's expiry is pushed back, in ms (2^53, about 285,000 years): a negative
/// extension is clamped to it so that no backend's arithmetic (a signed 64-bit column, a Lua
/// double) can wrap an expiry into "never expires". Such a claim is expired either way.
pub const MAX_PULL_BACK_MS: i64 = 1 << 53;

/// The TTL a new claim is made with, in milliseconds, decided by its sign. Every backend
/// passes this, and nothing else, to its storage:
/// - `None` (no TTL): `None`, never expires;
/// - zero or negative, however large: `Some(0)`, expired the moment it is made (a negative
///   TTL never wraps around into "never expires");
/// - positive with `now + ttl` past the end of the calendar `DateTime<Utc>` covers: `None`,
///   never expires;
/// - otherwise the TTL in milliseconds.
#[must_use]
pub fn claim_ttl_millis(now: DateTime<Utc>, ttl: Option<Duration>) -> Option<i64> {
    let ttl = ttl?;
    if ttl <= Duration::zero() {
        return Some(0);
    }
    now.checked_add_signed(ttl).map(|_| ttl.num_milliseconds())
}

/// When a claim made at `now` with `ttl` expires, in Unix milliseconds; `None` never expires.
/// See [`claim_ttl_millis`] for the rule.
#[must_use]
pub fn expiry_millis(now: DateTime<Utc>, ttl: Option<Duration>) -> Option<i64> {
    claim_ttl_millis(now, ttl).map(|ms| now.timestamp_millis() + ms)
}

/// An extension in milliseconds, decided by sign: positive as given (an expiry it pushes past
/// what storage can hold means "never expires"), negative clamped to [`MAX_PULL_BACK_MS`].
#[must_use]
pub fn extension_millis(additional: Duration) -> i64 {
    additional.num_milliseconds().max(-MAX_PULL_BACK_MS)
}

/// The expiry after extending one at `expires_ms` by `additional` (from the old expiry, as in
/// 0.4); `None` stays `None`. Decided by sign: an overflow towards the future means "never
/// expires", a pull-back far into the past stays an expiry in the past.
#[must_use]
pub fn extended_millis(expires_ms: Option<i64>, additional: Duration) -> Option<i64> {
    let additional = extension_millis(additional);
    expires_ms.and_then(|ms| match ms.checked_add(additional) {
        Some(extended) => Some(extended),
        None if additional > 0 => None,
        None => Some(i64::MIN),
    })
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

/// § No claim on finished work: whether a claim must be refused for a workflow whose status text is
/// `status` and whose stored results do (`has_result`) or do not hold the task: a terminal
/// workflow, or a task that already completed, is never handed out again.
#[must_use]
pub fn claim_refused(status: &str, has_result: bool) -> bool {
    crate::status::is_terminal(status)
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

/// The outcome of a release or an extend asked by `worker_id`, given who holds the claim
/// (`None`: nobody): `Ok` when the caller does, `NotFound` ([`claim_not_found`]) when nobody
/// does, `Backend` naming the holder ([`claim_held_by_other`]) otherwise. Every backend
/// decides with it, so all answer alike.
///
/// # Errors
/// As above.
pub fn check_holder(
    instance_id: &str,
    task_id: &str,
    worker_id: &str,
    holder: Option<&str>,
) -> Result<(), BackendError> {
    match holder {
        None => Err(claim_not_found(instance_id, task_id)),
        Some(holder) if holder == worker_id => Ok(()),
        Some(holder) => Err(claim_held_by_other(instance_id, task_id, holder)),
    }
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

    /// A TTL or an extension is judged by its sign: however negative, it means "expired",
    /// never "no expiry".
    #[test]
    fn negative_durations_expire_whatever_their_size() {
        let now = DateTime::from_timestamp_millis(1_700_000_000_999).unwrap_or_default();
        let now_ms = now.timestamp_millis();
        for ttl in
            [Duration::MIN, -Duration::days(100_000_000), -Duration::hours(1), Duration::zero()]
        {
            assert_eq!(claim_ttl_millis(now, Some(ttl)), Some(0), "{ttl:?}");
            let expires = expiry_millis(now, Some(ttl));
            assert_eq!(expires, Some(now_ms), "{ttl:?}");
            assert!(!is_live(expires, now_ms), "{ttl:?}");
        }
        assert_eq!(claim_ttl_millis(now, Some(Duration::days(100_000_000))), None);
        assert_eq!(claim_ttl_millis(now, Some(Duration::seconds(90))), Some(90_000));
        for more in [Duration::MIN, -Duration::days(100_000_000)] {
            assert!(extension_millis(more) >= -MAX_PULL_BACK_MS, "{more:?}");
            let extended = extended_millis(Some(now_ms), more);
            assert!(!is_live(extended, now_ms), "{more:?}: {extended:?}");
            assert!(!is_live(extended_millis(Some(i64::MIN + 5), more), now_ms));
        }
        assert_eq!(extension_millis(Duration::MIN), -MAX_PULL_BACK_MS);
        assert_eq!(extended_millis(Some(now_ms), Duration::MAX), None);
    }
}
