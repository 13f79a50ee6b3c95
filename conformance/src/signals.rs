//! `SignalStore` cancel/pause primitives (§ SignalStore): the
//! validation table of `store_signal` (all ten cells and the missing snapshot), overwrite,
//! get/clear, the guards `check_and_cancel` and `check_and_pause`, and `unpause`.
//! Events have their own group; concurrent guards are in `concurrency`.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use sayiir_persistence::sayiir_core::snapshot::{
    ExecutionPosition, SignalKind, SignalRequest, WorkflowSnapshot, WorkflowSnapshotState,
};
use sayiir_persistence::{BackendError, SignalStore, SnapshotStore};

use crate::Harness;
use crate::fixtures::{
    assert_not_found, assert_same, at_delay, at_task, at_task_id, cancelled_snapshot, completed,
    completed_snapshot, failed_snapshot, hour, in_progress, json, paused_snapshot, position,
    request, status, unique_id, with_results,
};

/// Saves `snapshot` and stores `kind`, returning the result of `store_signal`.
async fn store_on<H: Harness>(
    h: &H,
    snapshot: &WorkflowSnapshot,
    kind: SignalKind,
) -> Result<(), BackendError> {
    h.backend().save_snapshot(snapshot).await.unwrap();
    h.backend().store_signal(&snapshot.instance_id, kind, request("why")).await
}

/// The pending request of `kind`, unwrapped.
async fn pending<H: Harness>(h: &H, id: &str, kind: SignalKind) -> Option<SignalRequest> {
    h.backend().get_signal(id, kind).await.unwrap()
}

/// Asserts a stored request equals `expected` field by field.
#[track_caller]
fn assert_request(actual: Option<SignalRequest>, expected: &SignalRequest) {
    let actual = actual.expect("a pending signal was expected");
    assert_eq!(actual.reason, expected.reason);
    assert_eq!(actual.requested_by, expected.requested_by);
    assert_eq!(actual.requested_at, expected.requested_at);
}

/// Cell InProgress × Cancel: stored.
pub async fn cancel_in_progress_is_stored<H: Harness>(h: Arc<H>) {
    let id = unique_id("sig");
    store_on(&*h, &in_progress(&id), SignalKind::Cancel).await.unwrap();
    assert_request(pending(&*h, &id, SignalKind::Cancel).await, &request("why"));
}

/// Cell InProgress × Pause: stored.
pub async fn pause_in_progress_is_stored<H: Harness>(h: Arc<H>) {
    let id = unique_id("sig");
    store_on(&*h, &in_progress(&id), SignalKind::Pause).await.unwrap();
    assert_request(pending(&*h, &id, SignalKind::Pause).await, &request("why"));
}

/// Cell Paused × Cancel: stored (applied after unpause).
pub async fn cancel_paused_is_stored<H: Harness>(h: Arc<H>) {
    let id = unique_id("sig");
    store_on(&*h, &paused_snapshot(&id), SignalKind::Cancel).await.unwrap();
    assert_request(pending(&*h, &id, SignalKind::Cancel).await, &request("why"));
}

/// Cell Paused × Pause (§ Repeated pause or cancel stores nothing): `Ok`, nothing stored.
pub async fn pause_paused_is_idempotent<H: Harness>(h: Arc<H>) {
    let id = unique_id("sig");
    store_on(&*h, &paused_snapshot(&id), SignalKind::Pause).await.unwrap();
    assert!(pending(&*h, &id, SignalKind::Pause).await.is_none());
}

/// Cell Cancelled × Cancel (§ Repeated pause or cancel stores nothing): `Ok`, nothing stored.
pub async fn cancel_cancelled_is_idempotent<H: Harness>(h: Arc<H>) {
    let id = unique_id("sig");
    store_on(&*h, &cancelled_snapshot(&id), SignalKind::Cancel).await.unwrap();
    assert!(pending(&*h, &id, SignalKind::Cancel).await.is_none());
}

/// Cell Cancelled × Pause: `CannotPause("Cancelled")`, nothing stored.
pub async fn pause_cancelled_cannot_pause<H: Harness>(h: Arc<H>) {
    let id = unique_id("sig");
    let result = store_on(&*h, &cancelled_snapshot(&id), SignalKind::Pause).await;
    assert!(matches!(&result, Err(BackendError::CannotPause(s)) if s == "Cancelled"), "{result:?}");
    assert!(pending(&*h, &id, SignalKind::Pause).await.is_none());
}

/// Cell Completed × Cancel: `CannotCancel("Completed")`, nothing stored.
pub async fn cancel_completed_cannot_cancel<H: Harness>(h: Arc<H>) {
    let id = unique_id("sig");
    let result = store_on(&*h, &completed_snapshot(&id), SignalKind::Cancel).await;
    assert!(
        matches!(&result, Err(BackendError::CannotCancel(s)) if s == "Completed"),
        "{result:?}"
    );
    assert!(pending(&*h, &id, SignalKind::Cancel).await.is_none());
}

/// Cell Completed × Pause: `CannotPause("Completed")`, nothing stored.
pub async fn pause_completed_cannot_pause<H: Harness>(h: Arc<H>) {
    let id = unique_id("sig");
    let result = store_on(&*h, &completed_snapshot(&id), SignalKind::Pause).await;
    assert!(matches!(&result, Err(BackendError::CannotPause(s)) if s == "Completed"), "{result:?}");
    assert!(pending(&*h, &id, SignalKind::Pause).await.is_none());
}

/// Cell Failed × Cancel: `CannotCancel("Failed")`, nothing stored.
pub async fn cancel_failed_cannot_cancel<H: Harness>(h: Arc<H>) {
    let id = unique_id("sig");
    let result = store_on(&*h, &failed_snapshot(&id), SignalKind::Cancel).await;
    assert!(matches!(&result, Err(BackendError::CannotCancel(s)) if s == "Failed"), "{result:?}");
    assert!(pending(&*h, &id, SignalKind::Cancel).await.is_none());
}

/// Cell Failed × Pause: `CannotPause("Failed")`, nothing stored.
pub async fn pause_failed_cannot_pause<H: Harness>(h: Arc<H>) {
    let id = unique_id("sig");
    let result = store_on(&*h, &failed_snapshot(&id), SignalKind::Pause).await;
    assert!(matches!(&result, Err(BackendError::CannotPause(s)) if s == "Failed"), "{result:?}");
    assert!(pending(&*h, &id, SignalKind::Pause).await.is_none());
}

/// `store_signal` of either kind on a missing snapshot is `NotFound` and stores nothing.
pub async fn store_signal_missing_not_found<H: Harness>(h: Arc<H>) {
    let id = unique_id("sig-missing");
    for kind in [SignalKind::Cancel, SignalKind::Pause] {
        assert_not_found(h.backend().store_signal(&id, kind, request("x")).await, "store_signal");
        assert!(pending(&*h, &id, kind).await.is_none());
    }
}

/// Storing again overwrites reason, requester and time with the latest request.
pub async fn store_overwrites_previous<H: Harness>(h: Arc<H>) {
    let id = unique_id("sig-over");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    for kind in [SignalKind::Cancel, SignalKind::Pause] {
        h.backend().store_signal(&id, kind, request("first")).await.unwrap();
        let mut second = request("second");
        second.requested_at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        h.backend().store_signal(&id, kind, second.clone()).await.unwrap();
        assert_request(pending(&*h, &id, kind).await, &second);
    }
}

/// `requested_at` round-trips as given (microsecond precision, far from now), and absent
/// reason and requester stay absent.
pub async fn requested_at_round_trips<H: Harness>(h: Arc<H>) {
    let id = unique_id("sig-at");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    let given = SignalRequest {
        reason: None,
        requested_by: None,
        requested_at: DateTime::from_timestamp(1_234_567_890, 123_456_000).unwrap(),
    };
    h.backend().store_signal(&id, SignalKind::Pause, given.clone()).await.unwrap();
    assert_request(pending(&*h, &id, SignalKind::Pause).await, &given);
}

/// `get_signal` on an unknown instance is `Ok(None)` for both kinds.
pub async fn get_signal_unknown_is_none<H: Harness>(h: Arc<H>) {
    let id = unique_id("sig-unknown");
    assert!(pending(&*h, &id, SignalKind::Cancel).await.is_none());
    assert!(pending(&*h, &id, SignalKind::Pause).await.is_none());
}

/// `clear_signal` is `Ok` on an unknown instance, and when nothing is pending (twice).
pub async fn clear_signal_is_idempotent<H: Harness>(h: Arc<H>) {
    let unknown = unique_id("sig-unknown");
    h.backend().clear_signal(&unknown, SignalKind::Cancel).await.unwrap();
    h.backend().clear_signal(&unknown, SignalKind::Pause).await.unwrap();
    let id = unique_id("sig-clear");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Cancel, request("x")).await.unwrap();
    h.backend().clear_signal(&id, SignalKind::Cancel).await.unwrap();
    assert!(pending(&*h, &id, SignalKind::Cancel).await.is_none());
    h.backend().clear_signal(&id, SignalKind::Cancel).await.unwrap();
}

/// Clearing Cancel keeps a pending Pause, and clearing Pause keeps a pending Cancel.
pub async fn clear_one_kind_keeps_other<H: Harness>(h: Arc<H>) {
    let id = unique_id("sig-kinds");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Cancel, request("c")).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Pause, request("p")).await.unwrap();
    h.backend().clear_signal(&id, SignalKind::Cancel).await.unwrap();
    assert_request(pending(&*h, &id, SignalKind::Pause).await, &request("p"));
    h.backend().store_signal(&id, SignalKind::Cancel, request("c")).await.unwrap();
    h.backend().clear_signal(&id, SignalKind::Pause).await.unwrap();
    assert_request(pending(&*h, &id, SignalKind::Cancel).await, &request("c"));
    assert!(pending(&*h, &id, SignalKind::Pause).await.is_none());
}

/// Signals are per instance: a request stored for one is invisible to another.
pub async fn signals_isolated_per_instance<H: Harness>(h: Arc<H>) {
    let one = unique_id("sig-one");
    let two = unique_id("sig-two");
    h.backend().save_snapshot(&in_progress(&one)).await.unwrap();
    h.backend().save_snapshot(&in_progress(&two)).await.unwrap();
    h.backend().store_signal(&one, SignalKind::Cancel, request("x")).await.unwrap();
    assert!(pending(&*h, &two, SignalKind::Cancel).await.is_none());
    assert!(!h.backend().check_and_cancel(&two, None).await.unwrap());
    assert!(pending(&*h, &one, SignalKind::Cancel).await.is_some());
}

/// Storing a signal does not change the snapshot.
pub async fn store_signal_leaves_snapshot_alone<H: Harness>(h: Arc<H>) {
    let id = unique_id("sig-snap");
    let snapshot = in_progress(&id);
    h.backend().save_snapshot(&snapshot).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Cancel, request("x")).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Pause, request("y")).await.unwrap();
    assert_same(&h.backend().load_snapshot(&id).await.unwrap(), &snapshot);
}

/// check_and_cancel case 1: no pending Cancel → `false`, even without a snapshot.
pub async fn check_and_cancel_without_signal_or_snapshot<H: Harness>(h: Arc<H>) {
    let id = unique_id("cac-none");
    assert!(!h.backend().check_and_cancel(&id, Some("t")).await.unwrap());
    assert!(!h.backend().check_and_cancel(&id, None).await.unwrap());
}

/// check_and_cancel case 1: no pending Cancel → `false`, snapshot untouched (a pending
/// Pause does not count).
pub async fn check_and_cancel_without_signal_touches_nothing<H: Harness>(h: Arc<H>) {
    let id = unique_id("cac-none");
    let snapshot = in_progress(&id);
    h.backend().save_snapshot(&snapshot).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Pause, request("p")).await.unwrap();
    assert!(!h.backend().check_and_cancel(&id, Some("b")).await.unwrap());
    assert_same(&h.backend().load_snapshot(&id).await.unwrap(), &snapshot);
    assert!(pending(&*h, &id, SignalKind::Pause).await.is_some());
}

/// check_and_cancel case 2 can only arise with an orphaned signal; § Delete removes everything
/// makes delete cascade, so after a delete the guard sees no signal at all: `false`, not an error.
pub async fn check_and_cancel_after_delete_is_false<H: Harness>(h: Arc<H>) {
    let id = unique_id("cac-deleted");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Cancel, request("x")).await.unwrap();
    h.backend().delete_snapshot(&id).await.unwrap();
    assert!(!h.backend().check_and_cancel(&id, None).await.unwrap());
    assert!(!h.backend().check_and_pause(&id).await.unwrap());
}

/// check_and_cancel case 3: pending Cancel on a Paused workflow → `false`; the signal stays
/// pending and the snapshot is untouched.
pub async fn check_and_cancel_paused_keeps_signal<H: Harness>(h: Arc<H>) {
    let id = unique_id("cac-paused");
    let snapshot = paused_snapshot(&id);
    store_on(&*h, &snapshot, SignalKind::Cancel).await.unwrap();
    assert!(!h.backend().check_and_cancel(&id, Some("b")).await.unwrap());
    assert!(pending(&*h, &id, SignalKind::Cancel).await.is_some());
    assert_same(&h.backend().load_snapshot(&id).await.unwrap(), &snapshot);
}

/// check_and_cancel case 3: a Cancel stored while running, then the workflow completed →
/// `false`, the snapshot stays Completed.
pub async fn check_and_cancel_completed_is_false<H: Harness>(h: Arc<H>) {
    let id = unique_id("cac-done");
    store_on(&*h, &in_progress(&id), SignalKind::Cancel).await.unwrap();
    let done = completed_snapshot(&id);
    h.backend().save_snapshot(&done).await.unwrap();
    assert!(!h.backend().check_and_cancel(&id, None).await.unwrap());
    assert_same(&h.backend().load_snapshot(&id).await.unwrap(), &done);
}

/// check_and_cancel case 4: an in-progress workflow becomes Cancelled with the request's
/// reason, `cancelled_by` = requester, results kept, `interrupted_at_task` = argument, the
/// deadline cleared and `updated_at` bumped; the Cancel signal is gone, Pause untouched.
pub async fn check_and_cancel_cancels<H: Harness>(h: Arc<H>) {
    let id = unique_id("cac");
    let mut snapshot = with_results(&id, &[("a", b"1"), ("b", b"2")], "c");
    snapshot.set_task_deadline("c".to_string(), std::time::Duration::from_secs(60));
    snapshot.updated_at = 1_000;
    snapshot.trace_parent = Some("tp".to_string());
    h.backend().save_snapshot(&snapshot).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Cancel, request("cancel")).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Pause, request("pause")).await.unwrap();
    let before = Utc::now() - Duration::seconds(2);

    assert!(h.backend().check_and_cancel(&id, Some("c")).await.unwrap());

    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    let WorkflowSnapshotState::Cancelled {
        reason,
        cancelled_by,
        cancelled_at,
        completed_tasks,
        interrupted_at_task,
    } = &loaded.state
    else {
        panic!("expected Cancelled, got {}", status(&loaded));
    };
    assert_eq!(reason.as_deref(), Some("cancel"));
    assert_eq!(cancelled_by.as_deref(), Some("cancel-by"));
    assert!(*cancelled_at >= before && *cancelled_at <= Utc::now() + Duration::seconds(2));
    assert_eq!(completed_tasks.len(), 2);
    assert_eq!(completed(&loaded.state)["b"], Bytes::from_static(b"2"));
    assert_eq!(interrupted_at_task.as_deref(), Some("c"));
    assert!(loaded.task_deadline.is_none(), "deadline not cleared");
    assert!(loaded.updated_at > 1_000, "updated_at not bumped");
    assert_eq!(loaded.trace_parent.as_deref(), Some("tp"));
    assert!(pending(&*h, &id, SignalKind::Cancel).await.is_none(), "cancel signal left");
    assert_request(pending(&*h, &id, SignalKind::Pause).await, &request("pause"));
}

/// check_and_cancel with `interrupted_at_task = None` records `None`; a second call is
/// `false` (the signal was consumed).
pub async fn check_and_cancel_without_task_then_false<H: Harness>(h: Arc<H>) {
    let id = unique_id("cac-none-task");
    store_on(&*h, &in_progress(&id), SignalKind::Cancel).await.unwrap();
    assert!(h.backend().check_and_cancel(&id, None).await.unwrap());
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    assert!(matches!(
        loaded.state,
        WorkflowSnapshotState::Cancelled { interrupted_at_task: None, .. }
    ));
    assert!(!h.backend().check_and_cancel(&id, None).await.unwrap());
}

/// check_and_pause case 1: no pending Pause → `false`, even without a snapshot.
pub async fn check_and_pause_without_signal_or_snapshot<H: Harness>(h: Arc<H>) {
    assert!(!h.backend().check_and_pause(&unique_id("cap-none")).await.unwrap());
}

/// check_and_pause case 1: no pending Pause → `false`; a pending Cancel neither counts nor
/// changes.
pub async fn check_and_pause_without_signal_touches_nothing<H: Harness>(h: Arc<H>) {
    let id = unique_id("cap-none");
    let snapshot = in_progress(&id);
    store_on(&*h, &snapshot, SignalKind::Cancel).await.unwrap();
    assert!(!h.backend().check_and_pause(&id).await.unwrap());
    assert_same(&h.backend().load_snapshot(&id).await.unwrap(), &snapshot);
    assert!(pending(&*h, &id, SignalKind::Cancel).await.is_some());
}

/// check_and_pause case 4: Paused with reason and `paused_by`, position, last completed id
/// and results preserved exactly, deadline cleared; the Pause signal is gone, Cancel kept.
pub async fn check_and_pause_pauses_and_preserves<H: Harness>(h: Arc<H>) {
    let id = unique_id("cap");
    let mut snapshot = with_results(&id, &[("a", b"1"), ("b", b"2")], "c");
    snapshot.set_task_deadline("c".to_string(), std::time::Duration::from_secs(60));
    h.backend().save_snapshot(&snapshot).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Pause, request("pause")).await.unwrap();

    assert!(h.backend().check_and_pause(&id).await.unwrap());

    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    let WorkflowSnapshotState::Paused {
        reason,
        paused_by,
        position,
        last_completed_task_id,
        completed_tasks,
        ..
    } = &loaded.state
    else {
        panic!("expected Paused, got {}", status(&loaded));
    };
    assert_eq!(reason.as_deref(), Some("pause"));
    assert_eq!(paused_by.as_deref(), Some("pause-by"));
    assert!(matches!(position, ExecutionPosition::AtTask { task_id } if task_id == "c"));
    assert_eq!(last_completed_task_id.as_deref(), Some("b"));
    assert_eq!(completed_tasks.len(), 2);
    assert!(loaded.task_deadline.is_none(), "deadline not cleared");
    assert!(pending(&*h, &id, SignalKind::Pause).await.is_none());
    assert!(!h.backend().check_and_pause(&id).await.unwrap(), "second pause");
}

/// check_and_pause keeps a parked position (a delay) exactly.
pub async fn check_and_pause_preserves_parked_position<H: Harness>(h: Arc<H>) {
    let id = unique_id("cap-delay");
    let snapshot = at_delay(&id, "d", hour(), Some("next"));
    store_on(&*h, &snapshot, SignalKind::Pause).await.unwrap();
    assert!(h.backend().check_and_pause(&id).await.unwrap());
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    let WorkflowSnapshotState::Paused { position: paused_at, .. } = &loaded.state else {
        panic!("expected Paused, got {}", status(&loaded));
    };
    assert_eq!(
        serde_json::to_value(paused_at).unwrap(),
        serde_json::to_value(position(&snapshot)).unwrap()
    );
}

/// check_and_pause case 3: a pending Pause on a workflow that is no longer in progress
/// (Cancelled by a save) → `false`, the signal stays, the snapshot is untouched.
pub async fn check_and_pause_not_in_progress_keeps_signal<H: Harness>(h: Arc<H>) {
    let id = unique_id("cap-cancelled");
    store_on(&*h, &in_progress(&id), SignalKind::Pause).await.unwrap();
    let cancelled = cancelled_snapshot(&id);
    h.backend().save_snapshot(&cancelled).await.unwrap();
    assert!(!h.backend().check_and_pause(&id).await.unwrap());
    assert!(pending(&*h, &id, SignalKind::Pause).await.is_some());
    assert_same(&h.backend().load_snapshot(&id).await.unwrap(), &cancelled);
}

/// Cancel wins over pause: with both pending, the runtime calls check_and_cancel first; the
/// workflow is Cancelled, the Pause signal stays orphaned and check_and_pause is `false`.
pub async fn cancel_wins_over_pause<H: Harness>(h: Arc<H>) {
    let id = unique_id("cancel-wins");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Pause, request("p")).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Cancel, request("c")).await.unwrap();
    assert!(h.backend().check_and_cancel(&id, Some("b")).await.unwrap());
    assert!(!h.backend().check_and_pause(&id).await.unwrap());
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    assert_eq!(status(&loaded), "Cancelled");
    assert!(pending(&*h, &id, SignalKind::Pause).await.is_some(), "pause should stay orphaned");
}

/// `unpause` of a missing instance is `NotFound`.
pub async fn unpause_missing_not_found<H: Harness>(h: Arc<H>) {
    assert_not_found(h.backend().unpause(&unique_id("unpause-missing")).await, "unpause");
}

/// `unpause` of an in-progress workflow is `CannotPause` naming the state; nothing changes.
pub async fn unpause_in_progress_cannot_pause<H: Harness>(h: Arc<H>) {
    let id = unique_id("unpause-running");
    let snapshot = in_progress(&id);
    h.backend().save_snapshot(&snapshot).await.unwrap();
    let result = h.backend().unpause(&id).await;
    assert!(
        matches!(&result, Err(BackendError::CannotPause(m)) if m.contains("InProgress")),
        "{result:?}"
    );
    assert_same(&h.backend().load_snapshot(&id).await.unwrap(), &snapshot);
}

/// `unpause` of a Completed workflow is `CannotPause` naming the state.
pub async fn unpause_completed_cannot_pause<H: Harness>(h: Arc<H>) {
    let id = unique_id("unpause-done");
    h.backend().save_snapshot(&completed_snapshot(&id)).await.unwrap();
    let result = h.backend().unpause(&id).await;
    assert!(
        matches!(&result, Err(BackendError::CannotPause(m)) if m.contains("Completed")),
        "{result:?}"
    );
}

/// `unpause` of Cancelled and Failed workflows is `CannotPause` naming the state.
pub async fn unpause_cancelled_or_failed_cannot_pause<H: Harness>(h: Arc<H>) {
    for snapshot in [cancelled_snapshot(&unique_id("u-c")), failed_snapshot(&unique_id("u-f"))] {
        h.backend().save_snapshot(&snapshot).await.unwrap();
        let result = h.backend().unpause(&snapshot.instance_id).await;
        let state = status(&snapshot).to_string();
        assert!(
            matches!(&result, Err(BackendError::CannotPause(m)) if m.contains(&state)),
            "{state}: {result:?}"
        );
    }
}

/// `unpause` restores InProgress with position, results and last id; the returned snapshot
/// equals the stored one, trace parent included, and `updated_at` is bumped.
pub async fn unpause_restores_and_returns_stored<H: Harness>(h: Arc<H>) {
    let id = unique_id("unpause");
    let mut snapshot = paused_snapshot(&id);
    snapshot.trace_parent = Some("00-trace-01".to_string());
    snapshot.updated_at = 1_000;
    h.backend().save_snapshot(&snapshot).await.unwrap();

    let returned = h.backend().unpause(&id).await.unwrap();
    let stored = h.backend().load_snapshot(&id).await.unwrap();
    assert_same(&returned, &stored);
    assert_eq!(returned.trace_parent.as_deref(), Some("00-trace-01"));
    assert!(stored.updated_at > 1_000, "updated_at not bumped");
    let mut expected = in_progress(&id);
    expected.created_at = stored.created_at;
    expected.updated_at = stored.updated_at;
    expected.trace_parent = stored.trace_parent.clone();
    assert_eq!(json(&stored), json(&expected));
}

/// § Unpause drops a pending pause: `unpause` removes a pending Pause signal (one stored while the
/// workflow was still running, before a save made it Paused), so the unpause is not undone at once.
pub async fn unpause_removes_pending_pause<H: Harness>(h: Arc<H>) {
    let id = unique_id("unpause-d3");
    store_on(&*h, &in_progress(&id), SignalKind::Pause).await.unwrap();
    h.backend().save_snapshot(&paused_snapshot(&id)).await.unwrap();
    assert!(pending(&*h, &id, SignalKind::Pause).await.is_some());
    h.backend().unpause(&id).await.unwrap();
    assert!(pending(&*h, &id, SignalKind::Pause).await.is_none());
    assert!(!h.backend().check_and_pause(&id).await.unwrap());
    assert_eq!(status(&h.backend().load_snapshot(&id).await.unwrap()), "InProgress");
}

/// A Cancel stored on a Paused workflow survives `unpause` and is applied afterwards.
pub async fn unpause_keeps_pending_cancel<H: Harness>(h: Arc<H>) {
    let id = unique_id("unpause-cancel");
    store_on(&*h, &paused_snapshot(&id), SignalKind::Cancel).await.unwrap();
    h.backend().unpause(&id).await.unwrap();
    assert!(pending(&*h, &id, SignalKind::Cancel).await.is_some());
    assert!(h.backend().check_and_cancel(&id, Some("b")).await.unwrap());
    assert_eq!(status(&h.backend().load_snapshot(&id).await.unwrap()), "Cancelled");
}

/// A second `unpause` after a successful one is `CannotPause` (the workflow is running).
pub async fn unpause_twice_cannot_pause<H: Harness>(h: Arc<H>) {
    let id = unique_id("unpause-twice");
    h.backend().save_snapshot(&paused_snapshot(&id)).await.unwrap();
    h.backend().unpause(&id).await.unwrap();
    assert!(matches!(h.backend().unpause(&id).await, Err(BackendError::CannotPause(_))));
}

/// A full cycle: pause request → check_and_pause → unpause → pause again works, and Pause on
/// the Paused workflow in between stores nothing.
pub async fn pause_unpause_cycle<H: Harness>(h: Arc<H>) {
    let id = unique_id("cycle");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    for round in 0..2 {
        h.backend().store_signal(&id, SignalKind::Pause, request("p")).await.unwrap();
        assert!(h.backend().check_and_pause(&id).await.unwrap(), "round {round}");
        h.backend().store_signal(&id, SignalKind::Pause, request("again")).await.unwrap();
        assert!(pending(&*h, &id, SignalKind::Pause).await.is_none(), "round {round}");
        let back = h.backend().unpause(&id).await.unwrap();
        assert_eq!(status(&back), "InProgress");
    }
}

/// Transitions chain without losing anything: a Paused save, `unpause`, a result recorded
/// by `save_task_result`, then a cancel keeps every result (the earlier ones and the new
/// one) and the deadline the unpause left alone is cleared by the cancel.
pub async fn cancel_after_unpause_keeps_every_result<H: Harness>(h: Arc<H>) {
    let id = unique_id("unpause-then-cancel");
    let mut snapshot = paused_snapshot(&id);
    snapshot.set_task_deadline("b".to_string(), std::time::Duration::from_secs(60));
    h.backend().save_snapshot(&snapshot).await.unwrap();
    let resumed = h.backend().unpause(&id).await.unwrap();
    assert!(resumed.task_deadline.is_some(), "unpause cleared the deadline");
    assert_eq!(at_task_id(&resumed), "b");
    h.backend().save_task_result(&id, "b", Bytes::from_static(b"out-b")).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Cancel, request("stop")).await.unwrap();

    assert!(h.backend().check_and_cancel(&id, Some("c")).await.unwrap());

    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    let WorkflowSnapshotState::Cancelled { reason, interrupted_at_task, .. } = &loaded.state else {
        panic!("expected Cancelled, got {}", status(&loaded));
    };
    assert_eq!(reason.as_deref(), Some("stop"));
    assert_eq!(interrupted_at_task.as_deref(), Some("c"));
    let results = completed(&loaded.state);
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results["a"], Bytes::from_static(b"out-a"));
    assert_eq!(results["b"], Bytes::from_static(b"out-b"));
    assert!(loaded.task_deadline.is_none(), "deadline not cleared");
}

/// A pause applied and lifted by the guards leaves a workflow that loads as in progress at
/// the same position, and a result recorded after it is the last completed task.
pub async fn pause_then_unpause_keeps_position_and_last<H: Harness>(h: Arc<H>) {
    let id = unique_id("pause-unpause-last");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Pause, request("hold")).await.unwrap();
    assert!(h.backend().check_and_pause(&id).await.unwrap());
    let paused = h.backend().load_snapshot(&id).await.unwrap();
    let WorkflowSnapshotState::Paused { reason, last_completed_task_id, .. } = &paused.state else {
        panic!("expected Paused, got {}", status(&paused));
    };
    assert_eq!(reason.as_deref(), Some("hold"));
    assert_eq!(last_completed_task_id.as_deref(), Some("a"));

    h.backend().unpause(&id).await.unwrap();
    h.backend().save_task_result(&id, "b", Bytes::from_static(b"out-b")).await.unwrap();
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    assert_eq!(at_task_id(&loaded), "b");
    let WorkflowSnapshotState::InProgress { last_completed_task_id, .. } = &loaded.state else {
        panic!("expected InProgress, got {}", status(&loaded));
    };
    assert_eq!(last_completed_task_id.as_deref(), Some("b"));
    assert_eq!(completed(&loaded.state).len(), 2);
}

/// A whole save after guarded transitions is what the next load returns, exactly: nothing
/// of the earlier transitions is applied to it again.
pub async fn save_after_transitions_is_loaded_as_saved<H: Harness>(h: Arc<H>) {
    let id = unique_id("save-after-transition");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Pause, request("hold")).await.unwrap();
    assert!(h.backend().check_and_pause(&id).await.unwrap());
    let mut resumed = h.backend().unpause(&id).await.unwrap();
    resumed.mark_task_completed("b".to_string(), Bytes::from_static(b"out-b"));
    resumed.update_position(ExecutionPosition::AtTask { task_id: "c".to_string() });
    resumed.set_task_deadline("c".to_string(), std::time::Duration::from_secs(60));
    h.backend().save_snapshot(&resumed).await.unwrap();
    assert_same(&h.backend().load_snapshot(&id).await.unwrap(), &resumed);

    let mut paused = resumed.clone();
    paused.mark_paused(&request("again").into());
    h.backend().save_snapshot(&paused).await.unwrap();
    assert_same(&h.backend().load_snapshot(&id).await.unwrap(), &paused);
}

/// Every instant a request can carry reads back exactly, from the first to the last one
/// `DateTime<Utc>` holds (years −262143 to 262142, 10000 and year 0 included), and the
/// composite that reads it back still works.
pub async fn requested_at_extremes_round_trip<H: Harness>(h: Arc<H>) {
    let instants = [
        DateTime::<Utc>::MIN_UTC,
        DateTime::<Utc>::MAX_UTC,
        DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999999999Z").unwrap().to_utc(),
        DateTime::from_timestamp(253_402_300_800, 0).unwrap(), // 10000-01-01T00:00:00Z
        DateTime::from_timestamp(-62_167_219_201, 999_999_999).unwrap(), // the last of year −1
    ];
    for at in instants {
        let id = unique_id("sig-extreme");
        h.backend().save_snapshot(&at_task(&id, "t")).await.unwrap();
        let given =
            SignalRequest { reason: Some("far".into()), requested_by: None, requested_at: at };
        for kind in [SignalKind::Pause, SignalKind::Cancel] {
            h.backend().store_signal(&id, kind, given.clone()).await.unwrap();
            assert_request(pending(&*h, &id, kind).await, &given);
        }
        assert!(h.backend().check_and_cancel(&id, Some("t")).await.unwrap(), "{at:?}");
    }
}
