//! `StoreStatistics` (§ Statistics): the counts a dashboard shows.
//!
//! Not part of `conformance_suite!(H)` without a group list: the trait is an extension a
//! third-party backend may not implement. Name the group to run it:
//! `conformance_suite!(H; statistics)`.

use std::sync::Arc;

use chrono::{Duration, Utc};
use sayiir_persistence::sayiir_core::snapshot::SignalKind;
use sayiir_persistence::statistics::{StoreCounts, StoreStatistics};
use sayiir_persistence::{SignalStore, SnapshotStore, TaskClaimStore};

use crate::Harness;
use crate::fixtures::{
    at_delay, at_task, cancelled_snapshot, completed_snapshot, failed_once, failed_snapshot,
    paused_snapshot, request, unique_id,
};

/// The counts of `h`'s store.
async fn counts<H: Harness>(h: &H) -> StoreCounts
where
    H::Backend: StoreStatistics,
{
    h.backend().store_counts().await.unwrap()
}

/// Workflows per status, tasks a worker could take now and live claims follow what is
/// stored: a pending request, a retry backoff, a live claim or a park keep a task from being
/// ready; an expired claim does not; a release and a delete show at once.
pub async fn counts_follow_the_store<H: Harness>(h: Arc<H>)
where
    H::Backend: StoreStatistics,
{
    let b = h.backend();
    let fresh = counts(&*h).await;
    assert_eq!(fresh, StoreCounts::empty(), "a fresh store counts nothing, every status listed");

    let id = |name: &str| unique_id(name);
    let (ready, also_ready, held) = (id("ready"), id("also-ready"), id("held"));
    let (claimed, forever, expired) = (id("claimed"), id("forever"), id("expired"));
    for instance in [&ready, &also_ready, &held, &claimed, &forever, &expired] {
        b.save_snapshot(&at_task(instance, "t")).await.unwrap();
    }
    let backing_off = id("backing-off");
    b.save_snapshot(&failed_once(&backing_off, "t", "w", Utc::now() + Duration::hours(1)))
        .await
        .unwrap();
    b.save_snapshot(&at_delay(&id("parked"), "d", Duration::hours(1), Some("next"))).await.unwrap();
    b.store_signal(&held, SignalKind::Pause, request("hold")).await.unwrap();
    b.claim_task(&claimed, "t", "w", Some(Duration::hours(1))).await.unwrap().unwrap();
    b.claim_task(&forever, "t", "w", None).await.unwrap().unwrap();
    b.claim_task(&expired, "t", "w", Some(Duration::zero())).await.unwrap();
    for snapshot in [
        completed_snapshot(&id("done")),
        failed_snapshot(&id("failed")),
        cancelled_snapshot(&id("cancelled")),
        paused_snapshot(&id("paused")),
    ] {
        b.save_snapshot(&snapshot).await.unwrap();
    }

    let seen = counts(&*h).await;
    let expected =
        [("InProgress", 8), ("Paused", 1), ("Completed", 1), ("Failed", 1), ("Cancelled", 1)];
    for (status, count) in expected {
        assert_eq!(seen.workflows.get(status), Some(&count), "{status} in {seen:?}");
    }
    assert_eq!(seen.total_workflows(), 12);
    assert_eq!(seen.ready_tasks, 3, "ready, also-ready and the expired claim's: {seen:?}");
    assert_eq!(seen.live_claims, 2, "{seen:?}");

    b.release_task_claim(&claimed, "t", "w").await.unwrap();
    b.delete_snapshot(&ready).await.unwrap();
    let seen = counts(&*h).await;
    assert_eq!(seen.workflows.get("InProgress"), Some(&7));
    assert_eq!(seen.ready_tasks, 3, "released: ready again; deleted: gone; {seen:?}");
    assert_eq!(seen.live_claims, 1);
}
