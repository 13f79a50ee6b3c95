//! `RetentionStore` and `WorkflowListing` (§ Retention, § Listing): pruning finished
//! workflows and paging through the stored ones.
//!
//! Not part of `conformance_suite!(H)` without a group list: these traits are extensions a
//! third-party backend may not implement. Name the group to run it:
//! `conformance_suite!(H; retention)`.

use std::sync::Arc;

use bytes::Bytes;
use chrono::Duration;
use sayiir_persistence::listing::{ListRequest, MAX_PAGE, WorkflowSummary};
use sayiir_persistence::retention::{MAX_PRUNE_BATCH, PruneRequest};
use sayiir_persistence::sayiir_core::snapshot::{SignalKind, WorkflowSnapshot};
use sayiir_persistence::{
    RetentionStore, SignalStore, SnapshotStore, TaskClaimStore, TaskResultStore, WorkflowListing,
};

use crate::Harness;
use crate::fixtures::{
    assert_backend_error, assert_not_found, at_delay, at_task, cancelled_snapshot,
    completed_snapshot, failed_snapshot, in_progress, paused_snapshot, request, unique_id,
};

/// `snapshot` with `definition_hash` and `updated_at` set.
fn stamped(mut snapshot: WorkflowSnapshot, definition: &str, updated_at: u64) -> WorkflowSnapshot {
    snapshot.definition_hash = definition.to_string();
    snapshot.updated_at = updated_at;
    snapshot
}

/// Saves every snapshot.
async fn save_all<H: Harness>(h: &H, snapshots: &[WorkflowSnapshot]) {
    for snapshot in snapshots {
        h.backend().save_snapshot(snapshot).await.unwrap();
    }
}

/// Every page of `request`, concatenated; checks each page's size and cursor.
async fn all_pages<H: Harness>(h: &H, request: ListRequest) -> Vec<WorkflowSummary>
where
    H::Backend: WorkflowListing,
{
    let mut listed = Vec::new();
    let mut request = request;
    for _ in 0..1000 {
        let page = h.backend().list_workflows(&request).await.unwrap();
        assert!(page.workflows.len() <= request.limit, "a page holds at most `limit`");
        listed.extend(page.workflows.iter().cloned());
        match page.next {
            Some(next) => {
                assert_eq!(page.workflows.len(), request.limit, "only a full page has a next");
                assert_eq!(Some(&next), page.workflows.last().map(|w| w.cursor()).as_ref());
                request = request.after(next);
            }
            None => return listed,
        }
    }
    panic!("the listing never ended");
}

/// The instance ids of `listed`.
fn ids(listed: &[WorkflowSummary]) -> Vec<&str> {
    listed.iter().map(|w| w.instance_id.as_str()).collect()
}

/// Finished workflows (Completed, Failed, Cancelled) whose `updated_at` is strictly before the
/// cut-off are removed; finished ones at or after it, and unfinished ones however old, stay.
pub async fn prune_removes_finished_before_the_cutoff<H: Harness>(h: Arc<H>)
where
    H::Backend: RetentionStore,
{
    let id = |name: &str| unique_id(name);
    let (done, failed, cancelled) = (id("done"), id("failed"), id("cancelled"));
    let (at_cut, newer) = (id("at-cut"), id("newer"));
    let (running, paused, parked) = (id("running"), id("paused"), id("parked"));
    save_all(
        &*h,
        &[
            stamped(completed_snapshot(&done), "d", 1_000),
            stamped(failed_snapshot(&failed), "d", 1_000),
            stamped(cancelled_snapshot(&cancelled), "d", 1_999),
            stamped(completed_snapshot(&at_cut), "d", 2_000),
            stamped(completed_snapshot(&newer), "d", 3_000),
            stamped(in_progress(&running), "d", 10),
            stamped(paused_snapshot(&paused), "d", 10),
            stamped(at_delay(&parked, "wait", Duration::hours(1), Some("t")), "d", 10),
        ],
    )
    .await;
    let pruned = h.backend().prune_finished(&PruneRequest::finished_before(2_000)).await.unwrap();
    assert_eq!(pruned, 3);
    for gone in [&done, &failed, &cancelled] {
        assert_not_found(h.backend().load_snapshot(gone).await, "a pruned workflow");
    }
    for kept in [&at_cut, &newer, &running, &paused, &parked] {
        assert_eq!(&h.backend().load_snapshot(kept).await.unwrap().instance_id, kept);
    }
    let again = h.backend().prune_finished(&PruneRequest::finished_before(2_000)).await.unwrap();
    assert_eq!(again, 0, "nothing left to prune");
}

/// A pruned workflow leaves nothing behind: requests, events, claims and archived results go
/// with it, and the same id saved again starts clean (§ Delete removes everything).
pub async fn prune_removes_everything_stored<H: Harness>(h: Arc<H>)
where
    H::Backend: RetentionStore,
{
    let id = unique_id("prune-all");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Cancel, request("old")).await.unwrap();
    h.backend().send_event(&id, "go", Bytes::from_static(b"old")).await.unwrap();
    h.backend().claim_task(&id, "b", "w", None).await.unwrap().unwrap();
    h.backend().save_snapshot(&stamped(completed_snapshot(&id), "d", 100)).await.unwrap();
    assert!(h.backend().load_task_result(&id, "a").await.unwrap().is_some(), "archived");

    assert_eq!(h.backend().prune_finished(&PruneRequest::finished_before(101)).await.unwrap(), 1);
    assert_not_found(h.backend().load_snapshot(&id).await, "a pruned workflow");
    assert!(!h.backend().list_snapshots().await.unwrap().contains(&id));
    h.backend().save_snapshot(&at_task(&id, "b")).await.unwrap();
    assert!(h.backend().get_signal(&id, SignalKind::Cancel).await.unwrap().is_none());
    assert_eq!(h.backend().consume_event(&id, "go").await.unwrap(), None);
    assert!(h.backend().claim_task(&id, "b", "w2", None).await.unwrap().is_some());
    assert_eq!(h.backend().load_task_result(&id, "a").await.unwrap(), None);
}

/// A definition filter prunes that definition only.
pub async fn prune_filters_by_definition<H: Harness>(h: Arc<H>)
where
    H::Backend: RetentionStore,
{
    let (mine, other) = (unique_id("mine"), unique_id("other"));
    save_all(
        &*h,
        &[
            stamped(completed_snapshot(&mine), "orders-v1", 100),
            stamped(completed_snapshot(&other), "orders-v2", 100),
        ],
    )
    .await;
    let request = PruneRequest::finished_before(1_000).definition("orders-v1");
    assert_eq!(h.backend().prune_finished(&request).await.unwrap(), 1);
    assert_not_found(h.backend().load_snapshot(&mine).await, "the pruned definition");
    assert!(h.backend().load_snapshot(&other).await.is_ok(), "another definition stays");
}

/// A batch removes at most `batch_size` workflows, the oldest first; the batches add up to
/// every match.
pub async fn prune_batches_take_the_oldest_first<H: Harness>(h: Arc<H>)
where
    H::Backend: RetentionStore,
{
    let ids: Vec<String> = (0..5).map(|i| unique_id(&format!("batch-{i}"))).collect();
    let snapshots: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| stamped(completed_snapshot(id), "d", 500 - i as u64))
        .collect();
    save_all(&*h, &snapshots).await;
    let request = PruneRequest::finished_before(1_000).batch_size(2);
    assert_eq!(h.backend().prune_finished_batch(&request).await.unwrap(), 2);
    // The two oldest were ids[4] (496) and ids[3] (497).
    for (i, id) in ids.iter().enumerate() {
        let stored = h.backend().load_snapshot(id).await.is_ok();
        assert_eq!(stored, i < 3, "{id} (updated_at {})", 500 - i);
    }
    assert_eq!(h.backend().prune_finished(&request).await.unwrap(), 3);
    assert_eq!(h.backend().prune_finished_batch(&request).await.unwrap(), 0);
}

/// Invalid prune requests fail before anything is removed.
pub async fn prune_rejects_bad_requests<H: Harness>(h: Arc<H>)
where
    H::Backend: RetentionStore,
{
    let id = unique_id("kept");
    h.backend().save_snapshot(&stamped(completed_snapshot(&id), "d", 1)).await.unwrap();
    for (request, needle) in [
        (PruneRequest::finished_before(10).batch_size(0), "batch_size"),
        (PruneRequest::finished_before(10).batch_size(MAX_PRUNE_BATCH + 1), "batch_size"),
        (PruneRequest::finished_before(10).definition(""), "definition"),
    ] {
        assert_backend_error(h.backend().prune_finished(&request).await, needle, "bad prune");
    }
    assert!(h.backend().load_snapshot(&id).await.is_ok(), "nothing removed");
}

/// Pages run newest `updated_at` first, ties by instance id descending, every workflow once,
/// each full page with the cursor of the next.
pub async fn list_pages_newest_first<H: Harness>(h: Arc<H>)
where
    H::Backend: WorkflowListing,
{
    let prefix = unique_id("page");
    let name = |s: &str| format!("{prefix}-{s}");
    save_all(
        &*h,
        &[
            stamped(in_progress(&name("a")), "d1", 300),
            stamped(completed_snapshot(&name("b")), "d2", 100),
            stamped(failed_snapshot(&name("c")), "d1", 300),
            stamped(paused_snapshot(&name("d")), "d1", 200),
            stamped(cancelled_snapshot(&name("e")), "d2", 400),
            stamped(at_task(&name("f"), "t"), "d1", 0),
            stamped(completed_snapshot(&name("g")), "d1", u64::MAX),
        ],
    )
    .await;
    let expected = ["g", "e", "c", "a", "d", "b", "f"].map(name);
    for limit in [1, 2, 3, 7, 8, MAX_PAGE] {
        let listed = all_pages(&*h, ListRequest::default().limit(limit)).await;
        assert_eq!(ids(&listed), expected, "pages of {limit}");
    }
    let first = h.backend().list_workflows(&ListRequest::default().limit(2)).await.unwrap();
    assert_eq!(first.workflows[0].status, "Completed");
    assert_eq!(first.workflows[0].definition_hash, "d1");
    assert_eq!(first.workflows[0].updated_at, u64::MAX);
    assert_eq!(first.workflows[1].status, "Cancelled");
}

/// Status and definition filters, alone and together, with paging.
pub async fn list_filters_by_status_and_definition<H: Harness>(h: Arc<H>)
where
    H::Backend: WorkflowListing,
{
    let prefix = unique_id("filter");
    let name = |s: &str| format!("{prefix}-{s}");
    save_all(
        &*h,
        &[
            stamped(completed_snapshot(&name("c1")), "d1", 10),
            stamped(completed_snapshot(&name("c2")), "d2", 20),
            stamped(failed_snapshot(&name("f1")), "d1", 30),
            stamped(in_progress(&name("r1")), "d1", 40),
            stamped(in_progress(&name("r2")), "d2", 50),
        ],
    )
    .await;
    let finished = ListRequest::default().status("Completed").status("Failed").limit(2);
    assert_eq!(ids(&all_pages(&*h, finished.clone()).await), ["f1", "c2", "c1"].map(name));
    let finished_d1 = finished.definition("d1");
    assert_eq!(ids(&all_pages(&*h, finished_d1).await), ["f1", "c1"].map(name));
    let d2 = ListRequest::default().definition("d2").limit(1);
    assert_eq!(ids(&all_pages(&*h, d2).await), ["r2", "c2"].map(name));
    let paused = ListRequest::default().status("Paused");
    assert!(all_pages(&*h, paused).await.is_empty());
}

/// What a listing shows agrees with `load_snapshot` after every kind of write: saves, task
/// results, applied cancel and pause requests, unpause, advancement by
/// `find_available_tasks`, and delete.
pub async fn listing_follows_every_writer<H: Harness>(h: Arc<H>)
where
    H::Backend: WorkflowListing,
{
    let prefix = unique_id("follow");
    let name = |s: &str| format!("{prefix}-{s}");
    save_all(
        &*h,
        &[
            stamped(in_progress(&name("result")), "d", 5),
            stamped(in_progress(&name("cancel")), "d", 5),
            stamped(in_progress(&name("pause")), "d", 5),
            stamped(in_progress(&name("gone")), "d", 5),
            stamped(at_delay(&name("due"), "wait", -Duration::seconds(5), None), "d", 5),
        ],
    )
    .await;
    h.backend().save_task_result(&name("result"), "b", Bytes::from_static(b"out")).await.unwrap();
    h.backend().store_signal(&name("cancel"), SignalKind::Cancel, request("stop")).await.unwrap();
    assert!(h.backend().check_and_cancel(&name("cancel"), Some("b")).await.unwrap());
    h.backend().store_signal(&name("pause"), SignalKind::Pause, request("hold")).await.unwrap();
    assert!(h.backend().check_and_pause(&name("pause")).await.unwrap());
    h.backend().delete_snapshot(&name("gone")).await.unwrap();
    // The due delay has no next task: advancing it completes the workflow.
    h.backend().find_available_tasks("w", 10, Duration::seconds(300), &[]).await.unwrap();

    let check = |listed: Vec<WorkflowSummary>| {
        let h = Arc::clone(&h);
        async move {
            assert_eq!(listed.len(), 4, "every stored workflow once: {listed:?}");
            for summary in listed {
                let loaded = h.backend().load_snapshot(&summary.instance_id).await.unwrap();
                assert_eq!(summary.status, loaded.state.as_ref(), "{}", summary.instance_id);
                assert_eq!(summary.updated_at, loaded.updated_at, "{}", summary.instance_id);
                assert_eq!(summary.definition_hash, loaded.definition_hash);
            }
        }
    };
    let listed = all_pages(&*h, ListRequest::default()).await;
    let statuses: Vec<(String, String)> =
        listed.iter().map(|w| (w.instance_id.clone(), w.status.clone())).collect();
    for (id, status) in [("cancel", "Cancelled"), ("pause", "Paused"), ("due", "Completed")] {
        assert!(statuses.contains(&(name(id), status.to_string())), "{id}: {statuses:?}");
    }
    check(listed).await;
    h.backend().unpause(&name("pause")).await.unwrap();
    check(all_pages(&*h, ListRequest::default()).await).await;
    let in_progress = all_pages(&*h, ListRequest::default().status("InProgress")).await;
    assert_eq!(ids(&in_progress).len(), 2, "result and the unpaused one: {in_progress:?}");
}

/// A workflow whose stored blob does not decode is still listed, as last saved, and pruned.
pub async fn undecodable_rows_are_listed_and_pruned<H: Harness>(h: Arc<H>)
where
    H::Backend: WorkflowListing + RetentionStore,
{
    let id = unique_id("garbled");
    h.backend().save_snapshot(&stamped(completed_snapshot(&id), "d", 50)).await.unwrap();
    h.write_raw_snapshot(&id, b"\xc1\x01 not a snapshot").await;
    let listed = all_pages(&*h, ListRequest::default()).await;
    assert_eq!(ids(&listed), [id.as_str()]);
    assert_eq!((listed[0].status.as_str(), listed[0].updated_at), ("Completed", 50));
    assert_eq!(h.backend().prune_finished(&PruneRequest::finished_before(51)).await.unwrap(), 1);
    assert!(all_pages(&*h, ListRequest::default()).await.is_empty());
}

/// Invalid listing requests fail with an error that names the problem.
pub async fn list_rejects_bad_requests<H: Harness>(h: Arc<H>)
where
    H::Backend: WorkflowListing,
{
    for (request, needle) in [
        (ListRequest::default().limit(0), "limit"),
        (ListRequest::default().limit(MAX_PAGE + 1), "limit"),
        (ListRequest::default().status("Running"), "unknown status"),
        (ListRequest::default().definition(""), "definition"),
    ] {
        assert_backend_error(h.backend().list_workflows(&request).await, needle, "bad listing");
    }
}
