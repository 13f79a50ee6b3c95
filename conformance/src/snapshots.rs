//! `SnapshotStore`: save, load, delete, list and `save_task_result` (§ SnapshotStore), and
//! the delete cascade of § Delete removes everything (signals, claims, events and the results
//! archive go with the snapshot).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use sayiir_persistence::sayiir_core::snapshot::{
    ExecutionPosition, SignalKind, TaskResult, WorkflowSnapshot, WorkflowSnapshotState,
};
use sayiir_persistence::{SignalStore, SnapshotStore, TaskClaimStore, TaskResultStore};

use crate::Harness;
use crate::fixtures::{
    assert_not_found, assert_same, at_delay, at_signal, at_task, at_task_id, cancelled_snapshot,
    completed, completed_snapshot, failed_snapshot, fully_populated, hour, in_progress, json,
    now_secs, paused_snapshot, position, request, status, unique_id, with_results,
};

/// Saves `snapshot`, loads it back and asserts both are equal.
async fn round_trip<H: Harness>(h: &H, snapshot: &WorkflowSnapshot) {
    h.backend().save_snapshot(snapshot).await.unwrap();
    let loaded = h.backend().load_snapshot(&snapshot.instance_id).await.unwrap();
    assert_same(&loaded, snapshot);
}

/// A snapshot with every optional field, a trace parent and backdated timestamps loads back
/// exactly as saved.
pub async fn round_trip_fully_populated<H: Harness>(h: Arc<H>) {
    let id = unique_id("round-trip");
    let snapshot = fully_populated(&id);
    h.backend().save_snapshot(&snapshot).await.unwrap();
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    assert_same(&loaded, &snapshot);
}

/// A fresh `NotStarted` snapshot without input round-trips (`initial_input` stays `None`).
pub async fn round_trip_not_started<H: Harness>(h: Arc<H>) {
    let id = unique_id("not-started");
    let snapshot = WorkflowSnapshot::new(id.clone(), "hash".to_string());
    round_trip(&*h, &snapshot).await;
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    assert!(loaded.initial_input.is_none());
    assert!(matches!(
        loaded.state,
        WorkflowSnapshotState::InProgress { position: ExecutionPosition::NotStarted, .. }
    ));
}

/// An in-progress snapshot parked at a fork (with branch results and a wake time) round-trips.
pub async fn round_trip_at_fork<H: Harness>(h: Arc<H>) {
    let id = unique_id("at-fork");
    let mut snapshot = in_progress(&id);
    let branch = TaskResult { task_id: "branch-1".to_string(), output: Bytes::from_static(b"b1") };
    snapshot.update_position(ExecutionPosition::AtFork {
        fork_id: "fork".to_string(),
        completed_branches: HashMap::from([("branch-1".to_string(), branch)]),
        wake_at: Utc::now() + hour(),
    });
    round_trip(&*h, &snapshot).await;
}

/// An in-progress snapshot at a join round-trips.
pub async fn round_trip_at_join<H: Harness>(h: Arc<H>) {
    let id = unique_id("at-join");
    let mut snapshot = in_progress(&id);
    let branch = TaskResult { task_id: "x".to_string(), output: Bytes::from_static(&[0, 1, 2]) };
    snapshot.update_position(ExecutionPosition::AtJoin {
        join_id: "join".to_string(),
        completed_branches: HashMap::from([("x".to_string(), branch)]),
    });
    round_trip(&*h, &snapshot).await;
}

/// Snapshots parked at a delay, with and without a next task, round-trip.
pub async fn round_trip_at_delay<H: Harness>(h: Arc<H>) {
    round_trip(&*h, &at_delay(&unique_id("at-delay"), "d", hour(), Some("next"))).await;
    round_trip(&*h, &at_delay(&unique_id("at-delay"), "d", -hour(), None)).await;
}

/// Snapshots parked at a signal wait, with and without timeout and next task, round-trip.
pub async fn round_trip_at_signal<H: Harness>(h: Arc<H>) {
    round_trip(&*h, &at_signal(&unique_id("at-sig"), "sid", "sname", Some(hour()), Some("n")))
        .await;
    round_trip(&*h, &at_signal(&unique_id("at-sig"), "sid", "sname", None, None)).await;
}

/// An in-progress snapshot inside a loop, with loop counters, round-trips.
pub async fn round_trip_in_loop<H: Harness>(h: Arc<H>) {
    let id = unique_id("in-loop");
    let mut snapshot = in_progress(&id);
    snapshot.set_loop_iteration("loop", 4);
    snapshot.update_position(ExecutionPosition::InLoop {
        loop_id: "loop".to_string(),
        iteration: 4,
        next_task_id: Some("body".to_string()),
    });
    round_trip(&*h, &snapshot).await;
}

/// A snapshot saved `Completed` for a brand-new id round-trips with its final output.
pub async fn round_trip_completed<H: Harness>(h: Arc<H>) {
    let snapshot = completed_snapshot(&unique_id("completed"));
    round_trip(&*h, &snapshot).await;
    let loaded = h.backend().load_snapshot(&snapshot.instance_id).await.unwrap();
    assert_eq!(loaded.final_output_bytes().as_deref(), Some(&b"final"[..]));
}

/// A `Failed` snapshot round-trips with its error text.
pub async fn round_trip_failed<H: Harness>(h: Arc<H>) {
    let snapshot = failed_snapshot(&unique_id("failed"));
    round_trip(&*h, &snapshot).await;
    let loaded = h.backend().load_snapshot(&snapshot.instance_id).await.unwrap();
    assert_eq!(loaded.error_message(), Some("boom"));
}

/// A `Cancelled` snapshot round-trips with reason, requester, results and interrupted task.
pub async fn round_trip_cancelled<H: Harness>(h: Arc<H>) {
    let snapshot = cancelled_snapshot(&unique_id("cancelled"));
    round_trip(&*h, &snapshot).await;
}

/// A `Paused` snapshot round-trips with its saved position and results.
pub async fn round_trip_paused<H: Harness>(h: Arc<H>) {
    let mut snapshot = paused_snapshot(&unique_id("paused"));
    snapshot.trace_parent = Some("tp-paused".to_string());
    round_trip(&*h, &snapshot).await;
}

/// An empty initial input and no initial input are stored as two different things.
pub async fn empty_and_missing_input_are_distinct<H: Harness>(h: Arc<H>) {
    let empty = WorkflowSnapshot::with_initial_input(
        unique_id("empty-input"),
        "hash".to_string(),
        Bytes::new(),
    );
    let none = WorkflowSnapshot::new(unique_id("no-input"), "hash".to_string());
    round_trip(&*h, &empty).await;
    round_trip(&*h, &none).await;
    let empty = h.backend().load_snapshot(&empty.instance_id).await.unwrap();
    let none = h.backend().load_snapshot(&none.instance_id).await.unwrap();
    assert_eq!(empty.initial_input, Some(Bytes::new()));
    assert_eq!(none.initial_input, None);
}

/// `created_at`/`updated_at` are stored verbatim (even nonsense values): the backend never
/// restamps them.
pub async fn timestamps_stored_verbatim<H: Harness>(h: Arc<H>) {
    let mut snapshot = in_progress(&unique_id("stamps"));
    snapshot.created_at = 7;
    snapshot.updated_at = 3;
    round_trip(&*h, &snapshot).await;
    let loaded = h.backend().load_snapshot(&snapshot.instance_id).await.unwrap();
    assert_eq!((loaded.created_at, loaded.updated_at), (7, 3));
}

/// The extreme timestamps (0 and `u64::MAX`) are stored verbatim too, also by backends that
/// keep `updated_at` beside the blob for scheduling.
pub async fn extreme_timestamps_stored_verbatim<H: Harness>(h: Arc<H>) {
    for (created_at, updated_at) in [(0, u64::MAX), (u64::MAX, 0)] {
        let mut snapshot = in_progress(&unique_id("extreme-stamps"));
        snapshot.created_at = created_at;
        snapshot.updated_at = updated_at;
        round_trip(&*h, &snapshot).await;
        let loaded = h.backend().load_snapshot(&snapshot.instance_id).await.unwrap();
        assert_eq!((loaded.created_at, loaded.updated_at), (created_at, updated_at));
    }
}

/// Priority, tag order (duplicates included) and an unusual priority value are kept.
pub async fn priority_and_tag_order_kept<H: Harness>(h: Arc<H>) {
    let mut snapshot = in_progress(&unique_id("tags"));
    snapshot.task_priority = Some(200);
    snapshot.task_tags = ["z", "a", "m", "a"].map(String::from).to_vec();
    round_trip(&*h, &snapshot).await;
    let loaded = h.backend().load_snapshot(&snapshot.instance_id).await.unwrap();
    assert_eq!(loaded.task_priority, Some(200));
    assert_eq!(loaded.task_tags, ["z", "a", "m", "a"]);
}

/// Saving again replaces `completed_tasks` wholesale: a result removed (as a loop does) is
/// gone after the next save, never merged back.
pub async fn overwrite_replaces_completed_tasks<H: Harness>(h: Arc<H>) {
    let id = unique_id("overwrite");
    let mut snapshot = with_results(&id, &[("a", b"1"), ("b", b"2")], "c");
    h.backend().save_snapshot(&snapshot).await.unwrap();
    snapshot.remove_task_result("a");
    h.backend().save_snapshot(&snapshot).await.unwrap();
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    let results = completed(&loaded.state);
    assert!(!results.contains_key("a"), "removed result came back: {results:?}");
    assert_eq!(results.get("b").map(|b| &b[..]), Some(&b"2"[..]));
    assert_same(&loaded, &snapshot);
}

/// Saving again replaces every field: a smaller snapshot does not keep old tags, priority,
/// retries, deadline, loop counters or hash.
pub async fn overwrite_replaces_every_field<H: Harness>(h: Arc<H>) {
    let id = unique_id("overwrite-all");
    h.backend().save_snapshot(&fully_populated(&id)).await.unwrap();
    let mut plain = at_task(&id, "other");
    plain.definition_hash = "new-hash".to_string();
    round_trip(&*h, &plain).await;
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    assert!(loaded.task_tags.is_empty() && loaded.task_priority.is_none());
    assert!(loaded.task_retries.is_empty() && loaded.task_deadline.is_none());
    assert_eq!(loaded.definition_hash, "new-hash");
    assert_eq!(at_task_id(&loaded), "other");
}

/// Saving again replaces `trace_parent`, also with `None`.
pub async fn overwrite_replaces_trace_parent<H: Harness>(h: Arc<H>) {
    let id = unique_id("trace");
    let mut snapshot = in_progress(&id);
    snapshot.trace_parent = Some("first".to_string());
    round_trip(&*h, &snapshot).await;
    snapshot.trace_parent = Some("second".to_string());
    round_trip(&*h, &snapshot).await;
    snapshot.trace_parent = None;
    round_trip(&*h, &snapshot).await;
    assert_eq!(h.backend().load_snapshot(&id).await.unwrap().trace_parent, None);
}

/// A terminal snapshot can be replaced by an in-progress one under the same id (upsert).
pub async fn overwrite_terminal_with_in_progress<H: Harness>(h: Arc<H>) {
    let id = unique_id("reopen");
    h.backend().save_snapshot(&completed_snapshot(&id)).await.unwrap();
    round_trip(&*h, &in_progress(&id)).await;
}

/// Loading an id that was never saved is `NotFound`.
pub async fn load_missing_not_found<H: Harness>(h: Arc<H>) {
    assert_not_found(h.backend().load_snapshot(&unique_id("missing")).await, "load missing");
}

/// After `delete_snapshot`, load is `NotFound` and the id is not listed.
pub async fn delete_then_load_not_found<H: Harness>(h: Arc<H>) {
    let id = unique_id("delete");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    h.backend().delete_snapshot(&id).await.unwrap();
    assert_not_found(h.backend().load_snapshot(&id).await, "load after delete");
    assert!(!h.backend().list_snapshots().await.unwrap().contains(&id));
}

/// Deleting an id that was never saved is `NotFound`.
pub async fn delete_missing_not_found<H: Harness>(h: Arc<H>) {
    assert_not_found(h.backend().delete_snapshot(&unique_id("missing")).await, "delete missing");
}

/// Deleting twice: the second delete is `NotFound`.
pub async fn delete_twice_not_found<H: Harness>(h: Arc<H>) {
    let id = unique_id("delete-twice");
    h.backend().save_snapshot(&completed_snapshot(&id)).await.unwrap();
    h.backend().delete_snapshot(&id).await.unwrap();
    assert_not_found(h.backend().delete_snapshot(&id).await, "second delete");
}

/// Deleting one instance leaves other instances (and their signals) alone.
pub async fn delete_leaves_others_alone<H: Harness>(h: Arc<H>) {
    let gone = unique_id("gone");
    let kept = unique_id("kept");
    h.backend().save_snapshot(&in_progress(&gone)).await.unwrap();
    let kept_snapshot = in_progress(&kept);
    h.backend().save_snapshot(&kept_snapshot).await.unwrap();
    h.backend().store_signal(&kept, SignalKind::Cancel, request("keep")).await.unwrap();
    h.backend().delete_snapshot(&gone).await.unwrap();
    assert_same(&h.backend().load_snapshot(&kept).await.unwrap(), &kept_snapshot);
    assert!(h.backend().get_signal(&kept, SignalKind::Cancel).await.unwrap().is_some());
}

/// `list_snapshots` contains every saved id, whatever its state.
pub async fn list_contains_every_state<H: Harness>(h: Arc<H>) {
    let snapshots = [
        in_progress(&unique_id("list")),
        completed_snapshot(&unique_id("list")),
        failed_snapshot(&unique_id("list")),
        cancelled_snapshot(&unique_id("list")),
        paused_snapshot(&unique_id("list")),
        at_delay(&unique_id("list"), "d", hour(), None),
        WorkflowSnapshot::new(unique_id("list"), "h".to_string()),
    ];
    for snapshot in &snapshots {
        h.backend().save_snapshot(snapshot).await.unwrap();
    }
    let listed: HashSet<String> = h.backend().list_snapshots().await.unwrap().into_iter().collect();
    for snapshot in &snapshots {
        assert!(
            listed.contains(&snapshot.instance_id),
            "{} ({}) missing from list_snapshots",
            snapshot.instance_id,
            status(snapshot)
        );
    }
}

/// An id saved several times is listed once.
pub async fn list_has_each_id_once<H: Harness>(h: Arc<H>) {
    let id = unique_id("list-once");
    for _ in 0..3 {
        h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    }
    h.backend().save_snapshot(&completed_snapshot(&id)).await.unwrap();
    let listed = h.backend().list_snapshots().await.unwrap();
    assert_eq!(listed.iter().filter(|l| **l == id).count(), 1);
}

/// `save_task_result` on a missing instance is `NotFound` and creates nothing.
pub async fn save_task_result_missing_not_found<H: Harness>(h: Arc<H>) {
    let id = unique_id("str-missing");
    let result = h.backend().save_task_result(&id, "t", Bytes::from_static(b"x")).await;
    assert_not_found(result, "save_task_result on a missing instance");
    assert_not_found(h.backend().load_snapshot(&id).await, "load after failed save_task_result");
    assert!(!h.backend().list_snapshots().await.unwrap().contains(&id));
}

/// `save_task_result` records the result and the last completed id, bumps `updated_at`, and
/// keeps position, priority, tags, trace parent, input and every other field.
pub async fn save_task_result_updates_only_result<H: Harness>(h: Arc<H>) {
    let id = unique_id("str");
    let mut snapshot = fully_populated(&id);
    snapshot.updated_at = 1_000;
    h.backend().save_snapshot(&snapshot).await.unwrap();
    let before = now_secs();
    h.backend().save_task_result(&id, "c", Bytes::from_static(b"out-c")).await.unwrap();
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    assert!(loaded.updated_at >= before, "updated_at not bumped: {}", loaded.updated_at);
    assert!(loaded.updated_at <= now_secs() + 1, "updated_at is not now: {}", loaded.updated_at);
    let WorkflowSnapshotState::InProgress { last_completed_task_id, .. } = &loaded.state else {
        panic!("state changed: {}", status(&loaded));
    };
    assert_eq!(last_completed_task_id.as_deref(), Some("c"));
    let mut expected = snapshot.clone();
    expected.mark_task_completed("c".to_string(), Bytes::from_static(b"out-c"));
    expected.updated_at = loaded.updated_at;
    assert_same(&loaded, &expected);
    assert_eq!(at_task_id(&loaded), "c", "position must not move");
}

/// `save_task_result` overwrites an earlier result of the same task.
pub async fn save_task_result_overwrites_same_task<H: Harness>(h: Arc<H>) {
    let id = unique_id("str-again");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    h.backend().save_task_result(&id, "a", Bytes::from_static(b"second")).await.unwrap();
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    assert_eq!(completed(&loaded.state)["a"], Bytes::from_static(b"second"));
}

/// `save_task_result` on a `Completed` snapshot is `Ok` and changes nothing.
pub async fn save_task_result_on_completed_is_noop<H: Harness>(h: Arc<H>) {
    let id = unique_id("str-done");
    let snapshot = completed_snapshot(&id);
    h.backend().save_snapshot(&snapshot).await.unwrap();
    h.backend().save_task_result(&id, "late", Bytes::from_static(b"x")).await.unwrap();
    assert_same(&h.backend().load_snapshot(&id).await.unwrap(), &snapshot);
}

/// `save_task_result` on `Paused`, `Cancelled` and `Failed` snapshots is `Ok` and changes
/// nothing.
pub async fn save_task_result_on_other_states_is_noop<H: Harness>(h: Arc<H>) {
    for snapshot in [
        paused_snapshot(&unique_id("str-p")),
        cancelled_snapshot(&unique_id("str-c")),
        failed_snapshot(&unique_id("str-f")),
    ] {
        let id = &snapshot.instance_id;
        h.backend().save_snapshot(&snapshot).await.unwrap();
        h.backend().save_task_result(id, "late", Bytes::from_static(b"x")).await.unwrap();
        let loaded = h.backend().load_snapshot(id).await.unwrap();
        assert_eq!(json(&loaded), json(&snapshot), "{} changed", status(&snapshot));
    }
}

/// § Delete removes everything: deleting a snapshot drops its pending Cancel and Pause signals.
pub async fn delete_cascades_signals<H: Harness>(h: Arc<H>) {
    let id = unique_id("cascade-sig");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Cancel, request("c")).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Pause, request("p")).await.unwrap();
    h.backend().delete_snapshot(&id).await.unwrap();
    assert!(h.backend().get_signal(&id, SignalKind::Cancel).await.unwrap().is_none());
    assert!(h.backend().get_signal(&id, SignalKind::Pause).await.unwrap().is_none());
    assert!(!h.backend().check_and_cancel(&id, None).await.unwrap());
}

/// § Delete removes everything: deleting a snapshot drops its claims, even a live one without TTL:
/// the task can be claimed again at once, and the old owner's release finds nothing.
pub async fn delete_cascades_claims<H: Harness>(h: Arc<H>) {
    let id = unique_id("cascade-claim");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    let old = h.backend().claim_task(&id, "b", "old-worker", None).await.unwrap();
    assert!(old.is_some());
    h.backend().delete_snapshot(&id).await.unwrap();
    let new = h.backend().claim_task(&id, "b", "new-worker", Some(hour())).await.unwrap();
    assert_eq!(new.map(|c| c.worker_id).as_deref(), Some("new-worker"));
    assert!(h.backend().release_task_claim(&id, "b", "old-worker").await.is_err());
}

/// § Delete removes everything: deleting a snapshot drops its buffered events.
pub async fn delete_cascades_events<H: Harness>(h: Arc<H>) {
    let id = unique_id("cascade-ev");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    h.backend().send_event(&id, "go", Bytes::from_static(b"1")).await.unwrap();
    h.backend().send_event(&id, "other", Bytes::from_static(b"2")).await.unwrap();
    h.backend().delete_snapshot(&id).await.unwrap();
    assert_eq!(h.backend().consume_event(&id, "go").await.unwrap(), None);
    assert_eq!(h.backend().consume_event(&id, "other").await.unwrap(), None);
}

/// § Delete removes everything: deleting a completed snapshot drops its results archive
/// (`load_task_result` is `NotFound`).
pub async fn delete_cascades_archive<H: Harness>(h: Arc<H>) {
    let id = unique_id("cascade-arch");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    h.backend().save_snapshot(&completed_snapshot(&id)).await.unwrap();
    assert!(h.backend().load_task_result(&id, "a").await.unwrap().is_some());
    h.backend().delete_snapshot(&id).await.unwrap();
    assert_not_found(h.backend().load_task_result(&id, "a").await, "archive after delete");
}

/// Re-saving a deleted id starts clean: no old signals, claims, events or archived results.
pub async fn resave_after_delete_starts_clean<H: Harness>(h: Arc<H>) {
    let id = unique_id("reuse");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Cancel, request("old")).await.unwrap();
    h.backend().send_event(&id, "go", Bytes::from_static(b"old")).await.unwrap();
    h.backend().claim_task(&id, "b", "w", None).await.unwrap().unwrap();
    h.backend().save_snapshot(&completed_snapshot(&id)).await.unwrap();
    h.backend().delete_snapshot(&id).await.unwrap();

    h.backend().save_snapshot(&at_task(&id, "b")).await.unwrap();
    assert!(h.backend().get_signal(&id, SignalKind::Cancel).await.unwrap().is_none());
    assert!(!h.backend().check_and_cancel(&id, Some("b")).await.unwrap());
    assert_eq!(h.backend().consume_event(&id, "go").await.unwrap(), None);
    assert!(h.backend().claim_task(&id, "b", "w2", Some(hour())).await.unwrap().is_some());
    assert_eq!(h.backend().load_task_result(&id, "a").await.unwrap(), None);
}

/// A saved snapshot whose delay lies an hour in the past is stored as given (save does not
/// advance anything) and `updated_at` in the future is kept.
pub async fn save_does_not_advance<H: Harness>(h: Arc<H>) {
    let mut snapshot = at_delay(&unique_id("no-adv"), "d", -hour(), Some("n"));
    snapshot.updated_at = now_secs() + 3600;
    round_trip(&*h, &snapshot).await;
    let loaded = h.backend().load_snapshot(&snapshot.instance_id).await.unwrap();
    assert!(matches!(position(&loaded), ExecutionPosition::AtDelay { .. }));
}
