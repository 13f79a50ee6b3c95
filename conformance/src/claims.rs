//! `TaskClaimStore` claims (§ TaskClaimStore, § Claim keys, times and ownership, § No claim on
//! finished work): the returned claim, liveness and TTLs, release and extend with their owner
//! checks, structured keys, the refusal of claims on finished work, and the purge of expired claims
//! by `find_available_tasks`. The claim race is in `concurrency`.
//!
//! Claims have no getter, so extension is observed through liveness: a claim made with a TTL
//! of one hour and extended by a *negative* amount is still live or already expired depending
//! on whether the extension counts from the old expiry (§ extend_task_claim) or from now.
//! Extending a claim that has already expired is left unasserted (a MAY in § extend_task_claim).

use std::sync::Arc;

use bytes::Bytes;
use chrono::Duration;
use sayiir_persistence::sayiir_core::task_claim::TaskClaim;
use sayiir_persistence::{BackendError, SnapshotStore, TaskClaimStore};

use crate::Harness;
use crate::fixtures::{
    assert_not_found, at_task, cancelled_snapshot, completed_snapshot, failed_snapshot, find_all,
    hour, in_progress, now_secs, paused_snapshot, unique_id, with_results,
};

/// Claims `(id, task)` for `worker` with `ttl`, unwrapping the call.
async fn claim<H: Harness>(
    h: &H,
    id: &str,
    task: &str,
    worker: &str,
    ttl: Option<Duration>,
) -> Option<TaskClaim> {
    h.backend().claim_task(id, task, worker, ttl).await.unwrap()
}

/// Whether another worker can claim `(id, task)` right now (and then releases that claim).
async fn claimable<H: Harness>(h: &H, id: &str, task: &str) -> bool {
    let probe = unique_id("probe");
    match claim(h, id, task, &probe, Some(hour())).await {
        Some(_) => {
            h.backend().release_task_claim(id, task, &probe).await.unwrap();
            true
        }
        None => false,
    }
}

/// A free task is claimed: instance, task and worker as given, `claimed_at` is now in whole
/// seconds, `expires_at` = `claimed_at` + TTL.
pub async fn claim_free_task_fields<H: Harness>(h: Arc<H>) {
    let id = unique_id("claim");
    let before = now_secs();
    let got = claim(&*h, &id, "t", "w1", Some(Duration::seconds(300))).await.unwrap();
    let after = now_secs();
    assert_eq!((got.instance_id.as_str(), got.task_id.as_str()), (id.as_str(), "t"));
    assert_eq!(got.worker_id, "w1");
    assert!(
        got.claimed_at + 2 >= before && got.claimed_at <= after + 2,
        "claimed_at {} not within [{before}, {after}] ± 2 s",
        got.claimed_at
    );
    let expires = got.expires_at.expect("a TTL gives an expiry");
    let lease = expires.checked_sub(got.claimed_at).expect("expiry before claim");
    assert!((299..=301).contains(&lease), "expires_at - claimed_at = {lease}, expected 300");
}

/// A claim works for an instance that has no snapshot at all (no foreign key).
pub async fn claim_without_snapshot<H: Harness>(h: Arc<H>) {
    let id = unique_id("claim-nosnap");
    assert!(claim(&*h, &id, "t", "w", Some(hour())).await.is_some());
}

/// A live claim blocks another worker.
pub async fn live_claim_blocks_others<H: Harness>(h: Arc<H>) {
    let id = unique_id("claim-live");
    claim(&*h, &id, "t", "w1", Some(hour())).await.unwrap();
    assert!(claim(&*h, &id, "t", "w2", Some(hour())).await.is_none());
}

/// A live claim blocks its own holder too (no re-entrancy).
pub async fn live_claim_blocks_holder<H: Harness>(h: Arc<H>) {
    let id = unique_id("claim-holder");
    claim(&*h, &id, "t", "w1", Some(hour())).await.unwrap();
    assert!(claim(&*h, &id, "t", "w1", Some(hour())).await.is_none());
    assert!(claim(&*h, &id, "t", "w1", None).await.is_none());
}

/// A claim with TTL 0 is expired on creation: the next claim by anyone succeeds at once.
pub async fn zero_ttl_is_replaceable<H: Harness>(h: Arc<H>) {
    let id = unique_id("claim-ttl0");
    let first = claim(&*h, &id, "t", "w1", Some(Duration::zero())).await.unwrap();
    assert!(first.expires_at.is_some_and(|e| e <= first.claimed_at + 1));
    let second = claim(&*h, &id, "t", "w2", Some(hour())).await.expect("TTL-0 claim not replaced");
    assert_eq!(second.worker_id, "w2");
    assert!(claim(&*h, &id, "t", "w1", Some(hour())).await.is_none(), "new claim is live");
}

/// A claim with a negative TTL is expired on creation, also for the same worker.
pub async fn negative_ttl_is_replaceable<H: Harness>(h: Arc<H>) {
    let id = unique_id("claim-neg");
    claim(&*h, &id, "t", "w1", Some(-hour())).await.unwrap();
    assert!(claim(&*h, &id, "t", "w1", Some(hour())).await.is_some());
}

/// TTL `None` never expires: `expires_at` is `None` and the claim blocks everyone.
pub async fn no_ttl_never_expires<H: Harness>(h: Arc<H>) {
    let id = unique_id("claim-forever");
    let got = claim(&*h, &id, "t", "w1", None).await.unwrap();
    assert_eq!(got.expires_at, None);
    assert!(claim(&*h, &id, "t", "w2", Some(hour())).await.is_none());
    assert!(claim(&*h, &id, "t", "w2", None).await.is_none());
}

/// A TTL whose expiry overflows (`Duration::MAX`) does not panic and never expires.
pub async fn huge_ttl_never_expires<H: Harness>(h: Arc<H>) {
    let id = unique_id("claim-huge");
    let got = claim(&*h, &id, "t", "w1", Some(Duration::MAX)).await.unwrap();
    assert_eq!(got.expires_at, None, "an overflowing TTL means no expiry");
    assert!(claim(&*h, &id, "t", "w2", Some(hour())).await.is_none());
}

/// A TTL of a hundred million days (past the calendar's end) does not panic and blocks.
pub async fn calendar_overflow_ttl_blocks<H: Harness>(h: Arc<H>) {
    let id = unique_id("claim-days");
    let got = claim(&*h, &id, "t", "w1", Some(Duration::days(100_000_000))).await.unwrap();
    assert!(got.expires_at.is_none_or(|e| e > now_secs() + 86_400 * 365 * 1000));
    assert!(claim(&*h, &id, "t", "w2", Some(hour())).await.is_none());
}

/// Claims are per (instance, task): other tasks and other instances stay claimable.
pub async fn claims_are_per_task<H: Harness>(h: Arc<H>) {
    let id = unique_id("claim-per");
    let other = unique_id("claim-per");
    claim(&*h, &id, "t", "w1", None).await.unwrap();
    assert!(claim(&*h, &id, "u", "w1", None).await.is_some());
    assert!(claim(&*h, &other, "t", "w1", None).await.is_some());
}

/// Ids containing ':' never collide: instance `a:b` + task `c` vs instance `a` + task `b:c`.
pub async fn colon_ids_do_not_collide<H: Harness>(h: Arc<H>) {
    let base = unique_id("claim-colon");
    let one = format!("{base}:b");
    assert!(claim(&*h, &one, "c", "w1", None).await.is_some());
    let two = claim(&*h, &base, "b:c", "w2", None).await.expect("keys collided");
    assert_eq!((two.instance_id.as_str(), two.task_id.as_str()), (base.as_str(), "b:c"));
    h.backend().release_task_claim(&one, "c", "w1").await.unwrap();
    assert!(claim(&*h, &base, "b:c", "w3", None).await.is_none(), "release freed the wrong key");
}

/// Release by the owner is `Ok`; the task can then be claimed again.
pub async fn release_by_owner<H: Harness>(h: Arc<H>) {
    let id = unique_id("release");
    claim(&*h, &id, "t", "w1", None).await.unwrap();
    h.backend().release_task_claim(&id, "t", "w1").await.unwrap();
    let again = claim(&*h, &id, "t", "w2", Some(hour())).await.expect("not released");
    assert_eq!(again.worker_id, "w2");
}

/// Release by another worker is a `Backend` error and the claim is kept.
pub async fn release_by_other_is_backend_error<H: Harness>(h: Arc<H>) {
    let id = unique_id("release-other");
    claim(&*h, &id, "t", "w1", Some(hour())).await.unwrap();
    let result = h.backend().release_task_claim(&id, "t", "w2").await;
    assert!(matches!(result, Err(BackendError::Backend(_))), "{result:?}");
    assert!(claim(&*h, &id, "t", "w3", Some(hour())).await.is_none(), "claim was deleted");
    h.backend().release_task_claim(&id, "t", "w1").await.unwrap();
}

/// Release of an expired claim by another worker is refused: a `Backend` error while the row
/// is there (or `NotFound` if the backend already purged it), never `Ok`.
pub async fn release_expired_by_other_is_refused<H: Harness>(h: Arc<H>) {
    let id = unique_id("release-exp-other");
    claim(&*h, &id, "t", "w1", Some(-hour())).await.unwrap();
    let result = h.backend().release_task_claim(&id, "t", "w2").await;
    assert!(
        matches!(result, Err(BackendError::Backend(_)) | Err(BackendError::NotFound(_))),
        "{result:?}"
    );
}

/// Release with no claim is `NotFound` with the message `"{instance}:{task}"`.
pub async fn release_missing_not_found<H: Harness>(h: Arc<H>) {
    let id = unique_id("release-missing");
    match h.backend().release_task_claim(&id, "t", "w1").await {
        Err(BackendError::NotFound(message)) => {
            assert!(message.contains(&format!("{id}:t")), "message {message:?}");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
}

/// Releasing twice: the second release is `NotFound`.
pub async fn release_twice_not_found<H: Harness>(h: Arc<H>) {
    let id = unique_id("release-twice");
    claim(&*h, &id, "t", "w1", None).await.unwrap();
    h.backend().release_task_claim(&id, "t", "w1").await.unwrap();
    assert_not_found(h.backend().release_task_claim(&id, "t", "w1").await, "second release");
}

/// Extending by a negative amount counts from the old expiry: TTL 1 h, extend by −(1 h − 10 s)
/// leaves the claim live for about 10 more seconds (from now it would be long expired).
pub async fn extend_counts_from_old_expiry<H: Harness>(h: Arc<H>) {
    let id = unique_id("extend-old");
    claim(&*h, &id, "t", "w1", Some(hour())).await.unwrap();
    let shift = -(hour() - Duration::seconds(10));
    h.backend().extend_task_claim(&id, "t", "w1", shift).await.unwrap();
    assert!(!claimable(&*h, &id, "t").await, "extension did not count from the old expiry");
}

/// Extending takes effect: TTL 1 h, extend by −(1 h + 10 s) puts the expiry 10 s in the
/// past, so another worker can claim (new expiry = old + additional, within 10 s).
pub async fn extend_moves_expiry<H: Harness>(h: Arc<H>) {
    let id = unique_id("extend-move");
    claim(&*h, &id, "t", "w1", Some(hour())).await.unwrap();
    let shift = -(hour() + Duration::seconds(10));
    h.backend().extend_task_claim(&id, "t", "w1", shift).await.unwrap();
    assert!(claim(&*h, &id, "t", "w2", Some(hour())).await.is_some(), "extension was ignored");
}

/// Extending a live claim by a positive amount keeps it live and owned by the same worker.
pub async fn extend_by_owner_keeps_claim<H: Harness>(h: Arc<H>) {
    let id = unique_id("extend");
    claim(&*h, &id, "t", "w1", Some(Duration::seconds(10))).await.unwrap();
    h.backend().extend_task_claim(&id, "t", "w1", Duration::seconds(100)).await.unwrap();
    assert!(!claimable(&*h, &id, "t").await);
    h.backend().release_task_claim(&id, "t", "w1").await.unwrap();
}

/// Extending by an overflowing amount does not panic and never expires.
pub async fn extend_overflow_never_expires<H: Harness>(h: Arc<H>) {
    let id = unique_id("extend-max");
    claim(&*h, &id, "t", "w1", Some(hour())).await.unwrap();
    h.backend().extend_task_claim(&id, "t", "w1", Duration::MAX).await.unwrap();
    assert!(!claimable(&*h, &id, "t").await);
}

/// Extending a claim held by another worker is a `Backend` error and changes nothing.
pub async fn extend_by_other_is_backend_error<H: Harness>(h: Arc<H>) {
    let id = unique_id("extend-other");
    claim(&*h, &id, "t", "w1", Some(hour())).await.unwrap();
    let result = h.backend().extend_task_claim(&id, "t", "w2", -hour() * 2).await;
    assert!(matches!(result, Err(BackendError::Backend(_))), "{result:?}");
    assert!(!claimable(&*h, &id, "t").await, "the other worker's extension was applied");
    h.backend().release_task_claim(&id, "t", "w1").await.unwrap();
}

/// Extending with no claim is `NotFound`.
pub async fn extend_missing_not_found<H: Harness>(h: Arc<H>) {
    let id = unique_id("extend-missing");
    let result = h.backend().extend_task_claim(&id, "t", "w1", hour()).await;
    assert_not_found(result, "extend without a claim");
}

/// Extending a claim without TTL keeps it never-expiring, whatever the amount.
pub async fn extend_no_ttl_stays_forever<H: Harness>(h: Arc<H>) {
    let id = unique_id("extend-forever");
    claim(&*h, &id, "t", "w1", None).await.unwrap();
    h.backend().extend_task_claim(&id, "t", "w1", hour()).await.unwrap();
    h.backend().extend_task_claim(&id, "t", "w1", -hour() * 48).await.unwrap();
    assert!(!claimable(&*h, &id, "t").await, "a no-TTL claim expired after extension");
}

/// § No claim on finished work: no claim on a Completed workflow.
pub async fn refused_on_completed<H: Harness>(h: Arc<H>) {
    let id = unique_id("d12-done");
    h.backend().save_snapshot(&completed_snapshot(&id)).await.unwrap();
    assert!(claim(&*h, &id, "b", "w", Some(hour())).await.is_none());
    assert!(claim(&*h, &id, "z", "w", None).await.is_none());
}

/// § No claim on finished work: no claim on a Failed workflow.
pub async fn refused_on_failed<H: Harness>(h: Arc<H>) {
    let id = unique_id("d12-failed");
    h.backend().save_snapshot(&failed_snapshot(&id)).await.unwrap();
    assert!(claim(&*h, &id, "b", "w", Some(hour())).await.is_none());
}

/// § No claim on finished work: no claim on a Cancelled workflow.
pub async fn refused_on_cancelled<H: Harness>(h: Arc<H>) {
    let id = unique_id("d12-cancelled");
    h.backend().save_snapshot(&cancelled_snapshot(&id)).await.unwrap();
    assert!(claim(&*h, &id, "b", "w", Some(hour())).await.is_none());
}

/// § No claim on finished work: no claim on a task whose result is already stored, also one stored
/// by `save_task_result`; other tasks of the workflow stay claimable.
pub async fn refused_on_completed_task<H: Harness>(h: Arc<H>) {
    let id = unique_id("d12-task");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    assert!(claim(&*h, &id, "a", "w", Some(hour())).await.is_none(), "task a is done");
    h.backend().save_task_result(&id, "b", Bytes::from_static(b"done")).await.unwrap();
    assert!(claim(&*h, &id, "b", "w", Some(hour())).await.is_none(), "task b is done");
    assert!(claim(&*h, &id, "c", "w", Some(hour())).await.is_some());
}

/// § No claim on finished work: the current, not yet completed task of an in-progress workflow can
/// be claimed.
pub async fn allowed_on_pending_task<H: Harness>(h: Arc<H>) {
    let id = unique_id("d12-ok");
    h.backend().save_snapshot(&with_results(&id, &[("a", b"1")], "b")).await.unwrap();
    let got = claim(&*h, &id, "b", "w", Some(hour())).await.expect("refused a pending task");
    assert_eq!(got.task_id, "b");
}

/// § No claim on finished work: a Paused workflow is not terminal, so its pending task can be
/// claimed.
pub async fn allowed_on_paused_workflow<H: Harness>(h: Arc<H>) {
    let id = unique_id("d12-paused");
    h.backend().save_snapshot(&paused_snapshot(&id)).await.unwrap();
    assert!(claim(&*h, &id, "b", "w", Some(hour())).await.is_some());
}

/// § No claim on finished work with loops: once a loop removed the body's result (remove + save),
/// the body task can be claimed again.
pub async fn allowed_after_loop_removed_result<H: Harness>(h: Arc<H>) {
    let id = unique_id("d12-loop");
    let mut snapshot = with_results(&id, &[("body", b"1")], "body");
    h.backend().save_snapshot(&snapshot).await.unwrap();
    assert!(claim(&*h, &id, "body", "w", Some(hour())).await.is_none());
    snapshot.remove_task_result("body");
    h.backend().save_snapshot(&snapshot).await.unwrap();
    assert!(claim(&*h, &id, "body", "w", Some(hour())).await.is_some());
}

/// § No claim on finished work looks at the current snapshot: refused while Completed, allowed
/// again once the id is re-saved in progress at that task.
pub async fn refusal_then_reopen<H: Harness>(h: Arc<H>) {
    let id = unique_id("d12-reopen");
    h.backend().save_snapshot(&completed_snapshot(&id)).await.unwrap();
    assert!(claim(&*h, &id, "x", "w", Some(hour())).await.is_none());
    h.backend().save_snapshot(&at_task(&id, "x")).await.unwrap();
    assert!(claim(&*h, &id, "x", "w", Some(hour())).await.is_some());
}

/// `find_available_tasks` purges expired claims (all of them): afterwards the owner's release
/// is `NotFound`.
pub async fn find_purges_expired_claims<H: Harness>(h: Arc<H>) {
    let id = unique_id("purge");
    claim(&*h, &id, "t", "w1", Some(Duration::zero())).await.unwrap();
    claim(&*h, &id, "u", "w1", Some(-hour())).await.unwrap();
    claim(&*h, &id, "live", "w1", Some(hour())).await.unwrap();
    find_all(h.backend(), "someone-else").await;
    assert_not_found(h.backend().release_task_claim(&id, "t", "w1").await, "purged claim t");
    assert_not_found(h.backend().release_task_claim(&id, "u", "w1").await, "purged claim u");
    h.backend().release_task_claim(&id, "live", "w1").await.unwrap();
}

/// A TTL is judged by its sign: however negative (`Duration::MIN`, a hundred million days
/// back), the claim is expired on creation, with an expiry, and another worker takes it.
pub async fn hugely_negative_ttl_is_replaceable<H: Harness>(h: Arc<H>) {
    for (label, ttl) in [("MIN", Duration::MIN), ("-1e8 days", -Duration::days(100_000_000))] {
        let id = unique_id("claim-neg-huge");
        let first = claim(&*h, &id, "t", "w1", Some(ttl)).await.expect("a fresh claim");
        assert!(
            first.expires_at.is_some_and(|e| e <= first.claimed_at + 1),
            "{label}: a negative TTL expires on creation, got {first:?}"
        );
        let second = claim(&*h, &id, "t", "w2", Some(hour())).await;
        assert_eq!(second.map(|c| c.worker_id).as_deref(), Some("w2"), "{label}: not replaced");
    }
}

/// An extension is judged by its sign: however negative, it pulls the expiry into the past,
/// never into "no expiry"; another worker takes the task.
pub async fn hugely_negative_extension_expires<H: Harness>(h: Arc<H>) {
    for (label, more) in [("MIN", Duration::MIN), ("-1e8 days", -Duration::days(100_000_000))] {
        let id = unique_id("extend-neg-huge");
        claim(&*h, &id, "t", "w1", Some(hour())).await.unwrap();
        h.backend().extend_task_claim(&id, "t", "w1", more).await.unwrap();
        assert!(claimable(&*h, &id, "t").await, "{label}: the pulled-back claim still blocks");
    }
}
