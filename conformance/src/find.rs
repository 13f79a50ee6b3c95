//! `find_available_tasks` (§ find_available_tasks, § Filter and sort before the limit, § Results
//! survive completion): every eligibility rule in isolation, worker tags (§ Worker tags), ordering,
//! aging, worker bias, tie-breaks and the limit (§ Ordering, aging and worker bias), the returned
//! fields (§ Returned fields), the advancement of due delays and signal waits (§ Advancing parked
//! workflows), and robustness against parked backlogs and corrupted rows (§ One bad row never fails
//! the call).
//!
//! Eligibility cases do not assume an empty store: they use a large limit and look only for
//! their own instance ids, and each also checks that a plain ready control workflow is
//! returned by the same call. Ordering and limit cases (`priority_order`,
//! `aging_overtakes_priority`, `max_aging_keeps_priority_order`, `zero_and_negative_aging`,
//! `bias_sinks_failed_here`, `tie_break_*`, `limit_one_*`, `limit_truncates_*`,
//! `many_parked_*`, `due_delay_returned_with_limit_one`) call with a small limit and rely on
//! the fresh backend every case gets: the workflows they save are the only ones in it.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use sayiir_persistence::sayiir_core::snapshot::{
    ExecutionPosition, PauseRequest, SignalKind, TaskResult, WorkflowSnapshot,
};
use sayiir_persistence::sayiir_core::task_claim::AvailableTask;
use sayiir_persistence::{SignalStore, SnapshotStore, TaskClaimStore, TaskResultStore};

use crate::Harness;
use crate::fixtures::{
    ALL, aging, assert_same, at_delay, at_signal, at_task, at_task_id, at_task_with,
    cancelled_snapshot, completed, completed_snapshot, failed_once, failed_snapshot, find_all,
    hour, in_progress, order_of, paused_snapshot, position, request, status, task_of, unique_id,
    with_results, worker,
};

/// Saves a snapshot.
async fn save<H: Harness>(h: &H, snapshot: &WorkflowSnapshot) {
    h.backend().save_snapshot(snapshot).await.unwrap();
}

/// Saves a ready control workflow and asserts that one call returns it but not `id`.
async fn assert_hidden<H: Harness>(h: &H, id: &str, why: &str) {
    let control = unique_id("control");
    save(h, &at_task(&control, "t")).await;
    let found = find_all(h.backend(), &worker()).await;
    assert!(task_of(&found, &control).is_some(), "{why}: the ready control was not returned");
    assert!(task_of(&found, id).is_none(), "{why}: {id} was returned");
}

/// Asserts one call returns `id` at `task`, and gives the returned task.
async fn assert_visible<H: Harness>(h: &H, id: &str, task: &str, why: &str) -> AvailableTask {
    let found = find_all(h.backend(), &worker()).await;
    let got = task_of(&found, id).unwrap_or_else(|| panic!("{why}: {id} was not returned"));
    assert_eq!(got.task_id, task, "{why}");
    got.clone()
}

/// Calls find with explicit arguments.
async fn find<H: Harness>(
    h: &H,
    worker_id: &str,
    limit: usize,
    aging_interval: Duration,
    tags: &[&str],
) -> Vec<AvailableTask> {
    let tags: Vec<String> = tags.iter().map(|t| (*t).to_string()).collect();
    h.backend().find_available_tasks(worker_id, limit, aging_interval, &tags).await.unwrap()
}

/// A ready workflow is returned with its instance, task, input and definition hash.
pub async fn returns_ready_task<H: Harness>(h: Arc<H>) {
    let id = unique_id("ready");
    save(&*h, &at_task(&id, "t")).await;
    let got = assert_visible(&*h, &id, "t", "ready").await;
    assert_eq!(got.input, Bytes::from_static(b"input"));
    assert_eq!(got.workflow_definition_hash, "definition-hash");
}

/// Completed workflows are not returned.
pub async fn skips_completed<H: Harness>(h: Arc<H>) {
    let id = unique_id("done");
    save(&*h, &completed_snapshot(&id)).await;
    assert_hidden(&*h, &id, "Completed").await;
}

/// Failed workflows are not returned.
pub async fn skips_failed<H: Harness>(h: Arc<H>) {
    let id = unique_id("failed");
    save(&*h, &failed_snapshot(&id)).await;
    assert_hidden(&*h, &id, "Failed").await;
}

/// Cancelled workflows are not returned.
pub async fn skips_cancelled<H: Harness>(h: Arc<H>) {
    let id = unique_id("cancelled");
    save(&*h, &cancelled_snapshot(&id)).await;
    assert_hidden(&*h, &id, "Cancelled").await;
}

/// Paused workflows (standing at a task) are not returned.
pub async fn skips_paused<H: Harness>(h: Arc<H>) {
    let id = unique_id("paused");
    save(&*h, &paused_snapshot(&id)).await;
    assert_hidden(&*h, &id, "Paused").await;
}

/// A pending Cancel hides an in-progress workflow; clearing it shows the workflow again.
pub async fn skips_pending_cancel<H: Harness>(h: Arc<H>) {
    let id = unique_id("pending-cancel");
    save(&*h, &in_progress(&id)).await;
    h.backend().store_signal(&id, SignalKind::Cancel, request("c")).await.unwrap();
    assert_hidden(&*h, &id, "pending Cancel").await;
    h.backend().clear_signal(&id, SignalKind::Cancel).await.unwrap();
    assert_visible(&*h, &id, "b", "after clearing Cancel").await;
}

/// A pending Pause hides an in-progress workflow; clearing it shows the workflow again.
pub async fn skips_pending_pause<H: Harness>(h: Arc<H>) {
    let id = unique_id("pending-pause");
    save(&*h, &in_progress(&id)).await;
    h.backend().store_signal(&id, SignalKind::Pause, request("p")).await.unwrap();
    assert_hidden(&*h, &id, "pending Pause").await;
    h.backend().clear_signal(&id, SignalKind::Pause).await.unwrap();
    assert_visible(&*h, &id, "b", "after clearing Pause").await;
}

/// `NotStarted` workflows are not returned.
pub async fn skips_not_started<H: Harness>(h: Arc<H>) {
    let id = unique_id("not-started");
    let snapshot =
        WorkflowSnapshot::with_initial_input(id.clone(), "h".to_string(), Bytes::from_static(b"i"));
    save(&*h, &snapshot).await;
    assert_hidden(&*h, &id, "NotStarted").await;
    assert_same(&h.backend().load_snapshot(&id).await.unwrap(), &snapshot);
}

/// Workflows parked at a fork (even with a past wake time) are neither returned nor moved.
pub async fn skips_at_fork<H: Harness>(h: Arc<H>) {
    let id = unique_id("fork");
    let mut snapshot = in_progress(&id);
    snapshot.update_position(ExecutionPosition::AtFork {
        fork_id: "f".to_string(),
        completed_branches: std::collections::HashMap::new(),
        wake_at: Utc::now() - hour(),
    });
    save(&*h, &snapshot).await;
    assert_hidden(&*h, &id, "AtFork").await;
    assert_same(&h.backend().load_snapshot(&id).await.unwrap(), &snapshot);
}

/// Workflows at a join are not returned.
pub async fn skips_at_join<H: Harness>(h: Arc<H>) {
    let id = unique_id("join");
    let mut snapshot = in_progress(&id);
    let branch = TaskResult { task_id: "x".to_string(), output: Bytes::from_static(b"x") };
    snapshot.update_position(ExecutionPosition::AtJoin {
        join_id: "j".to_string(),
        completed_branches: std::collections::HashMap::from([("x".to_string(), branch)]),
    });
    save(&*h, &snapshot).await;
    assert_hidden(&*h, &id, "AtJoin").await;
}

/// Workflows inside a loop position are not returned.
pub async fn skips_in_loop<H: Harness>(h: Arc<H>) {
    let id = unique_id("loop");
    let mut snapshot = in_progress(&id);
    snapshot.update_position(ExecutionPosition::InLoop {
        loop_id: "l".to_string(),
        iteration: 2,
        next_task_id: Some("body".to_string()),
    });
    save(&*h, &snapshot).await;
    assert_hidden(&*h, &id, "InLoop").await;
}

/// A workflow whose current task already has a result is not returned.
pub async fn skips_completed_current_task<H: Harness>(h: Arc<H>) {
    let id = unique_id("current-done");
    save(&*h, &with_results(&id, &[("t", b"done")], "t")).await;
    assert_hidden(&*h, &id, "current task completed").await;
}

/// A result stored by `save_task_result` for the current task hides it too.
pub async fn skips_task_completed_by_save_task_result<H: Harness>(h: Arc<H>) {
    let id = unique_id("current-done-str");
    save(&*h, &in_progress(&id)).await;
    h.backend().save_task_result(&id, "b", Bytes::from_static(b"done")).await.unwrap();
    assert_hidden(&*h, &id, "current task completed by save_task_result").await;
}

/// A live claim on the current task hides the workflow; a claim on another task does not;
/// after release the workflow is back.
pub async fn live_claim_hides<H: Harness>(h: Arc<H>) {
    let id = unique_id("claimed");
    save(&*h, &at_task(&id, "t")).await;
    h.backend().claim_task(&id, "other", "w", None).await.unwrap().unwrap();
    assert_visible(&*h, &id, "t", "claim on another task").await;
    h.backend().claim_task(&id, "t", "w", Some(hour())).await.unwrap().unwrap();
    assert_hidden(&*h, &id, "live claim").await;
    h.backend().release_task_claim(&id, "t", "w").await.unwrap();
    assert_visible(&*h, &id, "t", "after release").await;
}

/// A claim without TTL hides the workflow (it never expires).
pub async fn no_ttl_claim_hides<H: Harness>(h: Arc<H>) {
    let id = unique_id("claimed-forever");
    save(&*h, &at_task(&id, "t")).await;
    h.backend().claim_task(&id, "t", "w", None).await.unwrap().unwrap();
    assert_hidden(&*h, &id, "claim without TTL").await;
}

/// An expired claim (TTL in the past) does not hide the workflow.
pub async fn expired_claim_does_not_hide<H: Harness>(h: Arc<H>) {
    let id = unique_id("claim-expired");
    save(&*h, &at_task(&id, "t")).await;
    h.backend().claim_task(&id, "t", "w", Some(-hour())).await.unwrap().unwrap();
    assert_visible(&*h, &id, "t", "expired claim").await;
    let zero = unique_id("claim-zero");
    save(&*h, &at_task(&zero, "t")).await;
    h.backend().claim_task(&zero, "t", "w", Some(Duration::zero())).await.unwrap().unwrap();
    assert_visible(&*h, &zero, "t", "TTL-0 claim").await;
}

/// A task whose retry backoff ends in the future is hidden from every worker.
pub async fn backoff_pending_hides<H: Harness>(h: Arc<H>) {
    let id = unique_id("backoff");
    save(&*h, &failed_once(&id, "t", "w-failed", Utc::now() + hour())).await;
    assert_hidden(&*h, &id, "backoff pending").await;
    let found = find(&*h, "w-failed", ALL, aging(), &[]).await;
    assert!(task_of(&found, &id).is_none(), "returned to the failed worker");
}

/// A task whose retry backoff has elapsed is returned.
pub async fn backoff_elapsed_shows<H: Harness>(h: Arc<H>) {
    let id = unique_id("backoff-over");
    save(&*h, &failed_once(&id, "t", "w-failed", Utc::now() - hour())).await;
    assert_visible(&*h, &id, "t", "backoff elapsed").await;
}

/// A retried task is not handed out before its backoff has ended, to the millisecond: a backoff
/// that ends 999 µs into some millisecond is still running at the start of that millisecond
/// (§ Clocks and rounding). A backend that keeps the time in whole milliseconds must round it
/// up. Each attempt waits for the start of a millisecond and polls at once. A poll that
/// returned before the backoff's end and handed the task out fails the case. A poll that left
/// the task out shows the backoff held at the time the backend read its clock, which was after
/// the poll began, inside that millisecond. A poll that handed it out after the backoff's end
/// proves nothing (the backend may have read its clock late), so attempts go on, for up to
/// 90 s, until two polls have left the task out.
pub async fn backoff_holds_to_the_millisecond<H: Harness>(h: Arc<H>) {
    const WANTED: usize = 2;
    const BUDGET: std::time::Duration = std::time::Duration::from_secs(90);
    let began = std::time::Instant::now();
    let (mut attempts, mut held) = (0_usize, 0_usize);
    while began.elapsed() < BUDGET {
        attempts += 1;
        let id = unique_id("backoff-ms");
        // A millisecond boundary far enough ahead for the save.
        let boundary = Utc::now() + Duration::milliseconds(5);
        let boundary = DateTime::from_timestamp_millis(boundary.timestamp_millis()).unwrap();
        let retry_at = boundary + Duration::microseconds(999);
        save(&*h, &failed_once(&id, "t", "w-failed", retry_at)).await;
        let start = boundary + Duration::microseconds(20);
        if Utc::now() >= start {
            h.backend().delete_snapshot(&id).await.unwrap();
            continue;
        }
        while Utc::now() < start {
            std::hint::spin_loop();
        }
        let found = find(&*h, "w-other", ALL, aging(), &[]).await;
        let returned_at = Utc::now();
        h.backend().delete_snapshot(&id).await.unwrap();
        let handed_out = task_of(&found, &id).is_some();
        assert!(
            !handed_out || returned_at >= retry_at,
            "a task whose backoff ends at {retry_at} was handed out by a poll that returned at \
             {returned_at}, before the backoff ended"
        );
        if !handed_out {
            held += 1;
            if held == WANTED {
                return;
            }
        }
    }
    panic!(
        "every one of {attempts} polls begun in the millisecond where a backoff ends, 999 µs \
         before its end, handed the task out ({held} left it out in {BUDGET:?}): the backend \
         rounds the backoff's end down to the millisecond, or reads its clock only after \
         about a millisecond"
    );
}

/// A task with no input (no initial input and no completed task) is not returned.
pub async fn no_input_hides<H: Harness>(h: Arc<H>) {
    let id = unique_id("no-input");
    let mut snapshot = WorkflowSnapshot::new(id.clone(), "h".to_string());
    snapshot.update_position(ExecutionPosition::AtTask { task_id: "t".to_string() });
    save(&*h, &snapshot).await;
    assert_hidden(&*h, &id, "no input").await;
}

/// An empty initial input is an input: the task is returned with empty bytes.
pub async fn empty_initial_input_is_an_input<H: Harness>(h: Arc<H>) {
    let id = unique_id("empty-input");
    let mut snapshot = WorkflowSnapshot::with_initial_input(id.clone(), "h".into(), Bytes::new());
    snapshot.update_position(ExecutionPosition::AtTask { task_id: "t".to_string() });
    save(&*h, &snapshot).await;
    assert_eq!(assert_visible(&*h, &id, "t", "empty input").await.input, Bytes::new());
}

/// The input is the initial input while no task has completed.
pub async fn input_is_initial_input<H: Harness>(h: Arc<H>) {
    let id = unique_id("input-initial");
    let mut snapshot = at_task(&id, "t");
    snapshot.initial_input = Some(Bytes::from_static(&[0, 1, 2, 255]));
    save(&*h, &snapshot).await;
    let got = assert_visible(&*h, &id, "t", "initial input").await;
    assert_eq!(got.input, Bytes::from_static(&[0, 1, 2, 255]));
}

/// The input is the output of the last completed task (by `last_completed_task_id`, not
/// by name or insertion order).
pub async fn input_is_last_output<H: Harness>(h: Arc<H>) {
    let id = unique_id("input-last");
    save(&*h, &with_results(&id, &[("z", b"first"), ("m", b"second"), ("a", b"third")], "n")).await;
    let got = assert_visible(&*h, &id, "n", "last output").await;
    assert_eq!(got.input, Bytes::from_static(b"third"));
}

/// The input follows `save_task_result`: the last stored result becomes the input.
pub async fn input_follows_save_task_result<H: Harness>(h: Arc<H>) {
    let id = unique_id("input-str");
    save(&*h, &with_results(&id, &[("a", b"1")], "c")).await;
    h.backend().save_task_result(&id, "b", Bytes::from_static(b"2")).await.unwrap();
    assert_eq!(assert_visible(&*h, &id, "c", "after save_task_result").await.input, &b"2"[..]);
}

/// The definition hash and the stored trace parent are returned; no trace parent → `None`.
pub async fn hash_and_trace_parent_returned<H: Harness>(h: Arc<H>) {
    let id = unique_id("trace");
    let mut snapshot = at_task(&id, "t");
    snapshot.definition_hash = "hash-xyz".to_string();
    snapshot.trace_parent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    save(&*h, &snapshot).await;
    let plain = unique_id("no-trace");
    save(&*h, &at_task(&plain, "t")).await;
    let found = find_all(h.backend(), &worker()).await;
    let got = task_of(&found, &id).expect("not returned");
    assert_eq!(got.workflow_definition_hash, "hash-xyz");
    assert_eq!(got.trace_parent, snapshot.trace_parent);
    assert_eq!(task_of(&found, &plain).expect("not returned").trace_parent, None);
}

/// § Worker tags: a worker without tags accepts tagged tasks.
pub async fn untagged_worker_accepts_tagged<H: Harness>(h: Arc<H>) {
    let id = unique_id("tags");
    let mut snapshot = at_task(&id, "t");
    snapshot.task_tags = vec!["gpu".to_string(), "eu".to_string()];
    save(&*h, &snapshot).await;
    assert!(task_of(&find(&*h, "w", ALL, aging(), &[]).await, &id).is_some());
}

/// § Worker tags: a tagged worker accepts untagged tasks.
pub async fn tagged_worker_accepts_untagged<H: Harness>(h: Arc<H>) {
    let id = unique_id("tags");
    save(&*h, &at_task(&id, "t")).await;
    assert!(task_of(&find(&*h, "w", ALL, aging(), &["gpu"]).await, &id).is_some());
}

/// § Worker tags: a task whose tags are a subset of the worker's is accepted (order and
/// duplicates irrelevant).
pub async fn subset_tags_accepted<H: Harness>(h: Arc<H>) {
    let id = unique_id("tags");
    let mut snapshot = at_task(&id, "t");
    snapshot.task_tags = ["gpu", "eu", "gpu"].map(String::from).to_vec();
    save(&*h, &snapshot).await;
    assert!(task_of(&find(&*h, "w", ALL, aging(), &["x", "eu", "gpu"]).await, &id).is_some());
    assert!(task_of(&find(&*h, "w", ALL, aging(), &["eu", "gpu"]).await, &id).is_some());
}

/// § Worker tags: a task with a tag the worker lacks is rejected.
pub async fn non_subset_tags_rejected<H: Harness>(h: Arc<H>) {
    let id = unique_id("tags");
    let mut snapshot = at_task(&id, "t");
    snapshot.task_tags = ["gpu", "us"].map(String::from).to_vec();
    save(&*h, &snapshot).await;
    let found = find(&*h, "w", ALL, aging(), &["gpu"]).await;
    assert!(task_of(&found, &id).is_none());
}

/// § Worker tags: disjoint tags are rejected, while an untagged control is still accepted.
pub async fn disjoint_tags_rejected<H: Harness>(h: Arc<H>) {
    let id = unique_id("tags");
    let control = unique_id("tags-control");
    let mut snapshot = at_task(&id, "t");
    snapshot.task_tags = vec!["gpu".to_string()];
    save(&*h, &snapshot).await;
    save(&*h, &at_task(&control, "t")).await;
    let found = find(&*h, "w", ALL, aging(), &["cpu"]).await;
    assert!(task_of(&found, &id).is_none());
    assert!(task_of(&found, &control).is_some());
}

/// § Worker tags: matching is exact and case-sensitive.
pub async fn tags_case_sensitive<H: Harness>(h: Arc<H>) {
    let id = unique_id("tags");
    let mut snapshot = at_task(&id, "t");
    snapshot.task_tags = vec!["GPU".to_string()];
    save(&*h, &snapshot).await;
    assert!(task_of(&find(&*h, "w", ALL, aging(), &["gpu"]).await, &id).is_none());
    assert!(task_of(&find(&*h, "w", ALL, aging(), &["gpu "]).await, &id).is_none());
    assert!(task_of(&find(&*h, "w", ALL, aging(), &["GPU"]).await, &id).is_some());
}

/// Lower priority numbers come first; no priority counts as Normal (3). Fresh backend.
pub async fn priority_order<H: Harness>(h: Arc<H>) {
    let stamp = crate::fixtures::now_secs() - 10;
    let mut ids = Vec::new();
    for priority in [Some(4), Some(1), Some(5), None, Some(2)] {
        let id = unique_id("prio");
        let mut snapshot = at_task_with(&id, "t", priority, 0);
        snapshot.updated_at = stamp;
        save(&*h, &snapshot).await;
        ids.push((priority.unwrap_or(3), id));
    }
    ids.sort();
    let expected: Vec<String> = ids.into_iter().map(|(_, id)| id).collect();
    let mine: Vec<&str> = expected.iter().map(String::as_str).collect();
    let found = find(&*h, "w", 10, aging(), &[]).await;
    assert_eq!(order_of(&found, &mine), expected);
    assert_eq!(found.len(), 5);
}

/// Aging: a Minimal task that waited 600 s beats a fresh Critical one with a 60 s interval
/// (ages by the snapshot's own `updated_at`). Fresh backend.
pub async fn aging_overtakes_priority<H: Harness>(h: Arc<H>) {
    let old = unique_id("old-minimal");
    let fresh = unique_id("fresh-critical");
    save(&*h, &at_task_with(&fresh, "t", Some(1), 0)).await;
    save(&*h, &at_task_with(&old, "t", Some(5), 600)).await;
    let found = find(&*h, "w", 2, Duration::seconds(60), &[]).await;
    assert_eq!(order_of(&found, &[&old, &fresh]), [old.clone(), fresh]);
    let best = find(&*h, "w", 1, Duration::seconds(60), &[]).await;
    assert_eq!(best.len(), 1);
    assert_eq!(best[0].instance_id, old);
}

/// `Duration::MAX` aging disables aging: priority order holds. Fresh backend.
pub async fn max_aging_keeps_priority_order<H: Harness>(h: Arc<H>) {
    let old = unique_id("old-minimal");
    let fresh = unique_id("fresh-critical");
    save(&*h, &at_task_with(&old, "t", Some(5), 6000)).await;
    save(&*h, &at_task_with(&fresh, "t", Some(1), 0)).await;
    let found = find(&*h, "w", 2, Duration::MAX, &[]).await;
    assert_eq!(order_of(&found, &[&old, &fresh]), [fresh, old]);
}

/// Zero and negative aging intervals do not panic and count as one second (so a task that
/// waited 600 s is far ahead). Fresh backend.
pub async fn zero_and_negative_aging<H: Harness>(h: Arc<H>) {
    let old = unique_id("old-minimal");
    let fresh = unique_id("fresh-critical");
    save(&*h, &at_task_with(&old, "t", Some(5), 600)).await;
    save(&*h, &at_task_with(&fresh, "t", Some(1), 0)).await;
    for interval in [Duration::zero(), Duration::seconds(-5), Duration::MIN] {
        let found = find(&*h, "w", 2, interval, &[]).await;
        assert_eq!(order_of(&found, &[&old, &fresh]), [old.clone(), fresh.clone()], "{interval}");
    }
}

/// Worker bias: a task that last failed on this worker (backoff elapsed) goes after every
/// other task for that worker, even a lower-priority one; another worker gets it first.
/// Fresh backend.
pub async fn bias_sinks_failed_here<H: Harness>(h: Arc<H>) {
    let failed = unique_id("failed-here");
    let other = unique_id("other");
    let mut snapshot = failed_once(&failed, "t", "w1", Utc::now() - hour());
    snapshot.task_priority = Some(1);
    save(&*h, &snapshot).await;
    save(&*h, &at_task_with(&other, "t", Some(5), 0)).await;
    let for_w1 = find(&*h, "w1", 2, aging(), &[]).await;
    assert_eq!(order_of(&for_w1, &[&failed, &other]), [other.clone(), failed.clone()]);
    let best_w1 = find(&*h, "w1", 1, aging(), &[]).await;
    assert_eq!(best_w1.first().map(|t| t.instance_id.as_str()), Some(other.as_str()));
    let for_w2 = find(&*h, "w2", 1, aging(), &[]).await;
    assert_eq!(for_w2.first().map(|t| t.instance_id.as_str()), Some(failed.as_str()));
}

/// Worker bias only sinks: a task that failed here is still returned when it is the only one.
pub async fn bias_still_returns_lone_task<H: Harness>(h: Arc<H>) {
    let id = unique_id("failed-here-alone");
    save(&*h, &failed_once(&id, "t", "w1", Utc::now() - hour())).await;
    let found = find(&*h, "w1", ALL, aging(), &[]).await;
    assert!(task_of(&found, &id).is_some());
}

/// Ties of effective priority break by `updated_at` (older first), then by instance id.
/// Fresh backend.
pub async fn tie_break_updated_at_then_instance_id<H: Harness>(h: Arc<H>) {
    let base = unique_id("tie");
    let stamp = crate::fixtures::now_secs();
    let mk = |suffix: &str, updated_at: u64| {
        let mut snapshot = at_task(&format!("{base}-{suffix}"), "t");
        snapshot.updated_at = updated_at;
        snapshot
    };
    // Saved in an order that is neither the expected one nor its reverse.
    for snapshot in [mk("b", stamp - 50), mk("z", stamp - 100), mk("a", stamp - 50)] {
        save(&*h, &snapshot).await;
    }
    let ids = [format!("{base}-z"), format!("{base}-a"), format!("{base}-b")];
    let mine: Vec<&str> = ids.iter().map(String::as_str).collect();
    for interval in [aging(), Duration::MAX] {
        let found = find(&*h, "w", 3, interval, &[]).await;
        assert_eq!(order_of(&found, &mine), ids, "aging {interval}");
    }
}

/// Limit 1 returns the best task, every time, not an arbitrary one. Fresh backend.
pub async fn limit_one_returns_best<H: Harness>(h: Arc<H>) {
    let stamp = crate::fixtures::now_secs() - 5;
    let mut best = String::new();
    for priority in [3, 4, 1, 5, 2] {
        let id = unique_id("limit1");
        let mut snapshot = at_task_with(&id, "t", Some(priority), 0);
        snapshot.updated_at = stamp;
        save(&*h, &snapshot).await;
        if priority == 1 {
            best = id;
        }
    }
    for _ in 0..5 {
        let found = find(&*h, "w", 1, aging(), &[]).await;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].instance_id, best);
    }
}

/// `limit` truncates after sorting: limit 2 of 4 gives the best two, in order. Fresh backend.
pub async fn limit_truncates_after_sorting<H: Harness>(h: Arc<H>) {
    let stamp = crate::fixtures::now_secs() - 5;
    let mut ids = Vec::new();
    for priority in [5, 2, 4, 1] {
        let id = unique_id("limit2");
        let mut snapshot = at_task_with(&id, "t", Some(priority), 0);
        snapshot.updated_at = stamp;
        save(&*h, &snapshot).await;
        ids.push((priority, id));
    }
    ids.sort();
    let found = find(&*h, "w", 2, aging(), &[]).await;
    let got: Vec<&str> = found.iter().map(|t| t.instance_id.as_str()).collect();
    assert_eq!(got, [ids[0].1.as_str(), ids[1].1.as_str()]);
}

/// `limit = 0` returns nothing, even with ready tasks.
pub async fn limit_zero_is_empty<H: Harness>(h: Arc<H>) {
    save(&*h, &at_task(&unique_id("limit0"), "t")).await;
    assert!(find(&*h, "w", 0, aging(), &[]).await.is_empty());
}

/// A due delay with a next task is advanced (position `AtTask{next}`, persisted, priority and
/// tags kept) and that task is returned in the same call, with the last output as input.
pub async fn due_delay_advanced_and_returned<H: Harness>(h: Arc<H>) {
    let id = unique_id("delay-due");
    let mut snapshot = at_delay(&id, "d", -hour(), Some("next"));
    snapshot.task_priority = Some(2);
    snapshot.task_tags = vec!["x".to_string()];
    save(&*h, &snapshot).await;
    let found = find(&*h, "w", ALL, aging(), &["x"]).await;
    let got = task_of(&found, &id).expect("due delay not returned in the same call");
    assert_eq!(got.task_id, "next");
    assert_eq!(got.input, Bytes::from_static(b"before-out"));
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    assert_eq!(at_task_id(&loaded), "next");
    assert_eq!(loaded.task_priority, Some(2));
    assert_eq!(loaded.task_tags, ["x"]);
}

/// The advanced task is returned even with limit 1. Fresh backend.
pub async fn due_delay_returned_with_limit_one<H: Harness>(h: Arc<H>) {
    let id = unique_id("delay-due-1");
    save(&*h, &at_delay(&id, "d", -hour(), Some("next"))).await;
    let found = find(&*h, "w", 1, aging(), &[]).await;
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].instance_id.as_str(), found[0].task_id.as_str()), (id.as_str(), "next"));
}

/// A delay that is not due is neither returned nor changed.
pub async fn delay_not_due_untouched<H: Harness>(h: Arc<H>) {
    let id = unique_id("delay-later");
    let snapshot = at_delay(&id, "d", hour(), Some("next"));
    save(&*h, &snapshot).await;
    assert_hidden(&*h, &id, "delay not due").await;
    assert_same(&h.backend().load_snapshot(&id).await.unwrap(), &snapshot);
}

/// A due delay that is the last node completes the workflow with the delay's passthrough
/// output, and `load_task_result` still serves the earlier results (§ Results survive completion).
pub async fn last_node_delay_completes_with_passthrough<H: Harness>(h: Arc<H>) {
    let id = unique_id("delay-last");
    let mut snapshot = at_delay(&id, "d", -hour(), None);
    snapshot.mark_task_completed("d".to_string(), Bytes::from_static(b"pass"));
    save(&*h, &snapshot).await;
    let found = find_all(h.backend(), &worker()).await;
    assert!(task_of(&found, &id).is_none());
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    assert_eq!(status(&loaded), "Completed");
    assert_eq!(loaded.final_output_bytes(), Some(Bytes::from_static(b"pass")));
    let before = h.backend().load_task_result(&id, "before").await.unwrap();
    assert_eq!(
        before,
        Some(Bytes::from_static(b"before-out")),
        "archive lost (§ Results survive completion)"
    );
    assert_eq!(
        h.backend().load_task_result(&id, "d").await.unwrap().as_deref(),
        Some(&b"pass"[..])
    );
}

/// A due last-node delay without a passthrough result completes with an empty output.
pub async fn last_node_delay_completes_empty<H: Harness>(h: Arc<H>) {
    let id = unique_id("delay-last-empty");
    save(&*h, &at_delay(&id, "d", -hour(), None)).await;
    find_all(h.backend(), &worker()).await;
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    assert_eq!(status(&loaded), "Completed");
    assert_eq!(loaded.final_output_bytes(), Some(Bytes::new()));
    assert!(
        h.backend().load_task_result(&id, "before").await.unwrap().is_some(),
        "§ Results survive completion"
    );
}

/// A signal wait with a buffered event is advanced: the payload is stored as the result of
/// the node's `signal_id` (not its name), the event is consumed, and the next task is
/// returned in the same call with the payload as input.
pub async fn signal_event_advances<H: Harness>(h: Arc<H>) {
    let id = unique_id("signal-event");
    save(&*h, &at_signal(&id, "sig-node", "approval", None, Some("next"))).await;
    h.backend().send_event(&id, "approval", Bytes::from_static(b"approved!")).await.unwrap();
    let got = assert_visible(&*h, &id, "next", "signal with event").await;
    assert_eq!(got.input, Bytes::from_static(b"approved!"));
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    assert_eq!(at_task_id(&loaded), "next");
    let results = completed(&loaded.state);
    assert_eq!(results.get("sig-node"), Some(&Bytes::from_static(b"approved!")));
    assert!(
        !results.contains_key("approval"),
        "payload stored under signal_name (§ Signal payloads are keyed by the node id)"
    );
    assert_eq!(h.backend().consume_event(&id, "approval").await.unwrap(), None, "not consumed");
}

/// Advancing a signal wait consumes only the oldest event; later ones stay queued.
pub async fn signal_event_consumes_only_oldest<H: Harness>(h: Arc<H>) {
    let id = unique_id("signal-two");
    save(&*h, &at_signal(&id, "sig-node", "go", None, Some("next"))).await;
    h.backend().send_event(&id, "go", Bytes::from_static(b"1")).await.unwrap();
    h.backend().send_event(&id, "go", Bytes::from_static(b"2")).await.unwrap();
    assert_eq!(assert_visible(&*h, &id, "next", "signal").await.input, &b"1"[..]);
    assert_eq!(h.backend().consume_event(&id, "go").await.unwrap().as_deref(), Some(&b"2"[..]));
}

/// A signal wait whose timeout passed without an event is advanced with an empty result
/// under `signal_id`.
pub async fn signal_timeout_advances<H: Harness>(h: Arc<H>) {
    let id = unique_id("signal-timeout");
    save(&*h, &at_signal(&id, "sig-node", "approval", Some(-hour()), Some("next"))).await;
    let got = assert_visible(&*h, &id, "next", "timed-out signal").await;
    assert_eq!(got.input, Bytes::new());
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    assert_eq!(completed(&loaded.state).get("sig-node"), Some(&Bytes::new()));
}

/// A signal wait as last node completes the workflow with the payload as final output; the
/// payload stays readable through `load_task_result` (§ Results survive completion).
pub async fn signal_last_node_completes<H: Harness>(h: Arc<H>) {
    let id = unique_id("signal-last");
    save(&*h, &at_signal(&id, "sig-node", "approval", None, None)).await;
    h.backend().send_event(&id, "approval", Bytes::from_static(b"final")).await.unwrap();
    let found = find_all(h.backend(), &worker()).await;
    assert!(task_of(&found, &id).is_none());
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    assert_eq!(status(&loaded), "Completed");
    assert_eq!(loaded.final_output_bytes(), Some(Bytes::from_static(b"final")));
    let stored = h.backend().load_task_result(&id, "sig-node").await.unwrap();
    assert_eq!(stored.as_deref(), Some(&b"final"[..]));
    assert!(h.backend().load_task_result(&id, "before").await.unwrap().is_some());
}

/// A workflow advanced past a signal wait, then cancelled, then loaded: the signal's
/// payload, the earlier results and the cancel all show (the advancement and the cancel
/// compose, whatever way a backend applies them).
pub async fn advanced_then_cancelled_keeps_the_signal_result<H: Harness>(h: Arc<H>) {
    let id = unique_id("advanced-cancelled");
    save(&*h, &at_signal(&id, "sig-node", "approval", None, Some("next"))).await;
    h.backend().send_event(&id, "approval", Bytes::from_static(b"yes")).await.unwrap();
    assert_visible(&*h, &id, "next", "signal with event").await;
    h.backend().store_signal(&id, SignalKind::Cancel, request("stop")).await.unwrap();
    assert!(h.backend().check_and_cancel(&id, Some("next")).await.unwrap());
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    assert_eq!(status(&loaded), "Cancelled");
    let results = completed(&loaded.state);
    assert_eq!(results.get("sig-node"), Some(&Bytes::from_static(b"yes")));
    assert_eq!(results.get("before"), Some(&Bytes::from_static(b"before-out")));
    assert_hidden(&*h, &id, "cancelled").await;
}

/// A signal wait without event and without timeout, or with a future timeout, is neither
/// returned nor changed; an event for another name does not wake it and stays queued.
pub async fn signal_wait_not_due_untouched<H: Harness>(h: Arc<H>) {
    let forever = unique_id("signal-forever");
    let later = unique_id("signal-later");
    let s1 = at_signal(&forever, "sig-node", "approval", None, Some("next"));
    let s2 = at_signal(&later, "sig-node", "approval", Some(hour()), Some("next"));
    save(&*h, &s1).await;
    save(&*h, &s2).await;
    h.backend().send_event(&forever, "other", Bytes::from_static(b"x")).await.unwrap();
    h.backend().send_event(&unique_id("elsewhere"), "approval", Bytes::new()).await.unwrap();
    assert_hidden(&*h, &forever, "signal without event").await;
    assert_hidden(&*h, &later, "signal with future timeout").await;
    assert_same(&h.backend().load_snapshot(&forever).await.unwrap(), &s1);
    assert_same(&h.backend().load_snapshot(&later).await.unwrap(), &s2);
    assert!(h.backend().consume_event(&forever, "other").await.unwrap().is_some());
}

/// A pending Cancel blocks the advancement of a due delay: nothing returned, nothing moved.
pub async fn pending_cancel_blocks_advancement<H: Harness>(h: Arc<H>) {
    let id = unique_id("delay-cancel");
    let snapshot = at_delay(&id, "d", -hour(), Some("next"));
    save(&*h, &snapshot).await;
    h.backend().store_signal(&id, SignalKind::Cancel, request("c")).await.unwrap();
    assert_hidden(&*h, &id, "due delay with pending Cancel").await;
    assert_same(&h.backend().load_snapshot(&id).await.unwrap(), &snapshot);
}

/// A pending Pause blocks the advancement of a signal wait: the event stays queued.
pub async fn pending_pause_blocks_advancement<H: Harness>(h: Arc<H>) {
    let id = unique_id("signal-pause");
    let snapshot = at_signal(&id, "sig-node", "go", Some(-hour()), Some("next"));
    save(&*h, &snapshot).await;
    h.backend().send_event(&id, "go", Bytes::from_static(b"e")).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Pause, request("p")).await.unwrap();
    assert_hidden(&*h, &id, "signal wait with pending Pause").await;
    assert_same(&h.backend().load_snapshot(&id).await.unwrap(), &snapshot);
    assert_eq!(h.backend().consume_event(&id, "go").await.unwrap().as_deref(), Some(&b"e"[..]));
}

/// A Paused workflow whose saved position is a due delay is not advanced.
pub async fn paused_due_delay_not_advanced<H: Harness>(h: Arc<H>) {
    let id = unique_id("paused-delay");
    let mut snapshot = at_delay(&id, "d", -hour(), Some("next"));
    snapshot.mark_paused(&PauseRequest::new(None, None));
    save(&*h, &snapshot).await;
    assert_hidden(&*h, &id, "paused at a due delay").await;
    assert_same(&h.backend().load_snapshot(&id).await.unwrap(), &snapshot);
}

/// A workflow saved Paused and resumed by `unpause` is scheduled like one saved in
/// progress: its task is returned to a worker its tags accept and to no other, and a due
/// delay it was paused at is advanced.
pub async fn unpaused_workflow_is_scheduled<H: Harness>(h: Arc<H>) {
    let id = unique_id("unpaused-task");
    let mut snapshot = paused_snapshot(&id);
    snapshot.task_tags = vec!["gpu".to_string()];
    save(&*h, &snapshot).await;
    assert_hidden(&*h, &id, "paused").await;
    h.backend().unpause(&id).await.unwrap();
    assert!(task_of(&find(&*h, "w", ALL, aging(), &["cpu"]).await, &id).is_none(), "tags");
    let found = find(&*h, "w", ALL, aging(), &["gpu"]).await;
    assert_eq!(task_of(&found, &id).map(|t| t.task_id.as_str()), Some("b"), "unpaused at a task");

    let delayed = unique_id("unpaused-delay");
    let mut snapshot = at_delay(&delayed, "d", -hour(), Some("next"));
    snapshot.mark_paused(&PauseRequest::new(None, None));
    save(&*h, &snapshot).await;
    h.backend().unpause(&delayed).await.unwrap();
    assert_visible(&*h, &delayed, "next", "unpaused at a due delay").await;
}

/// An advanced task is claimable, and once claimed the next call does not return it.
pub async fn advanced_task_then_claimed_is_hidden<H: Harness>(h: Arc<H>) {
    let id = unique_id("delay-claim");
    save(&*h, &at_delay(&id, "d", -hour(), Some("next"))).await;
    assert_visible(&*h, &id, "next", "advanced").await;
    h.backend().claim_task(&id, "next", "w", Some(hour())).await.unwrap().expect("claim");
    assert_hidden(&*h, &id, "advanced and claimed").await;
}

/// 10,000 parked workflows (far-future delays and signal waits, old and high priority) do not
/// hide one ready Minimal-priority task from a call with limit 1. Fresh backend.
pub async fn many_parked_do_not_hide_ready<H: Harness>(h: Arc<H>) {
    let base = unique_id("parked");
    futures::stream::iter(0..10_000u32)
        .map(|i| {
            let h = Arc::clone(&h);
            let id = format!("{base}-{i}");
            async move {
                let mut snapshot = if i % 2 == 0 {
                    at_delay(&id, "d", hour() * 24, Some("next"))
                } else {
                    at_signal(&id, "s", "never", Some(hour() * 24), Some("next"))
                };
                snapshot.task_priority = Some(1);
                snapshot.updated_at -= 86_400;
                h.backend().save_snapshot(&snapshot).await.unwrap();
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    let ready = unique_id("ready");
    save(&*h, &at_task_with(&ready, "t", Some(5), 0)).await;
    let found = find(&*h, "w", 1, aging(), &[]).await;
    assert_eq!(found.len(), 1, "a ready task was hidden by parked workflows");
    assert_eq!(found[0].instance_id, ready);
}

/// One corrupted row does not fail the call: another ready workflow is still returned.
pub async fn corrupted_row_does_not_fail_find<H: Harness>(h: Arc<H>) {
    let good = unique_id("good");
    let bad = unique_id("corrupt");
    save(&*h, &at_task(&good, "t")).await;
    save(&*h, &at_task(&bad, "t")).await;
    h.write_raw_snapshot(&bad, b"\x00garbage that is no snapshot").await;
    let found = h
        .backend()
        .find_available_tasks("w", ALL, aging(), &[])
        .await
        .expect("one corrupted row failed the whole call");
    assert!(task_of(&found, &good).is_some());
    let again = h.backend().find_available_tasks("w", 1, aging(), &[]).await;
    assert!(again.is_ok(), "{again:?}");
}

/// A corrupted row that ranks first does not hide the healthy task behind it: with the
/// runtime's default `limit = 1`, every poll still returns work, call after call.
pub async fn corrupted_best_row_does_not_hide_the_next<H: Harness>(h: Arc<H>) {
    let good = unique_id("good");
    let bad = unique_id("corrupt-first");
    // Older and more urgent: the corrupted row would be the first choice.
    save(&*h, &at_task_with(&bad, "t", Some(1), 3600)).await;
    save(&*h, &at_task_with(&good, "t", Some(5), 0)).await;
    h.write_raw_snapshot(&bad, b"\x00garbage that is no snapshot").await;
    for call in ["first", "second", "third"] {
        let found = h.backend().find_available_tasks("w", 1, aging(), &[]).await.unwrap();
        assert_eq!(
            found.first().map(|t| t.instance_id.as_str()),
            Some(good.as_str()),
            "{call} call: the healthy task must be returned"
        );
    }
}

/// Many corrupted parked rows that are due do not stop other parks from advancing.
pub async fn corrupted_parked_rows_do_not_block_advancement<H: Harness>(h: Arc<H>) {
    for i in 0..120 {
        let bad = unique_id(&format!("corrupt-park-{i}"));
        save(&*h, &at_delay(&bad, "d", -hour() - hour(), Some("next"))).await;
        h.write_raw_snapshot(&bad, b"\x00garbage").await;
    }
    let id = unique_id("due");
    save(&*h, &at_delay(&id, "d", -hour(), Some("next"))).await;
    let found = h.backend().find_available_tasks("w", ALL, aging(), &[]).await.unwrap();
    assert!(task_of(&found, &id).is_some(), "the healthy due delay was not advanced");
}

/// A corrupted parked row does not fail the call either (advancement must skip it).
pub async fn corrupted_parked_row_does_not_fail_find<H: Harness>(h: Arc<H>) {
    let good = unique_id("good");
    let bad = unique_id("corrupt-delay");
    save(&*h, &at_task(&good, "t")).await;
    save(&*h, &at_delay(&bad, "d", -hour(), Some("next"))).await;
    h.write_raw_snapshot(&bad, b"{\"not\": \"a snapshot\"}").await;
    let found = h
        .backend()
        .find_available_tasks("w", ALL, aging(), &[])
        .await
        .expect("one corrupted parked row failed the whole call");
    assert!(task_of(&found, &good).is_some());
}

/// A snapshot at a task keeps its position when found: find does not mark anything (no
/// implicit claim); two calls return the same task.
pub async fn find_has_no_side_effect_on_ready_task<H: Harness>(h: Arc<H>) {
    let id = unique_id("pure");
    let snapshot = at_task(&id, "t");
    save(&*h, &snapshot).await;
    assert_visible(&*h, &id, "t", "first call").await;
    assert_visible(&*h, &id, "t", "second call").await;
    assert_same(&h.backend().load_snapshot(&id).await.unwrap(), &snapshot);
    assert!(matches!(position(&snapshot), ExecutionPosition::AtTask { .. }));
}

/// `updated_at` is an unsigned number of seconds: a stamp at or past 2^63 (`u64::MAX` here)
/// lies in the future, so at equal priority it sorts after a workflow stamped now, however
/// the backend stores it.
pub async fn future_stamp_sorts_last<H: Harness>(h: Arc<H>) {
    let backend = h.backend();
    let now = at_task_with(&unique_id("stamp-now"), "t", Some(5), 0);
    let mut far = at_task_with(&unique_id("stamp-far"), "t", Some(5), 0);
    for stamp in [u64::MAX, 1 << 63] {
        far.updated_at = stamp;
        backend.save_snapshot(&far).await.unwrap();
        backend.save_snapshot(&now).await.unwrap();
        let first = backend.find_available_tasks(&worker(), 1, aging(), &[]).await.unwrap();
        assert_eq!(
            first.first().map(|t| t.instance_id.as_str()),
            Some(now.instance_id.as_str()),
            "a stamp of {stamp} s sorts before now"
        );
        let both = backend.find_available_tasks(&worker(), ALL, aging(), &[]).await.unwrap();
        assert_eq!(
            order_of(&both, &[&now.instance_id, &far.instance_id]),
            [now.instance_id.clone(), far.instance_id.clone()]
        );
    }
}
