//! `TaskResultStore::load_task_result` (§ TaskResultStore, § Results survive completion): results
//! of running, paused and cancelled workflows come from the current snapshot; those of completed
//! and failed workflows from the archive made at the terminal transition.

use std::sync::Arc;

use bytes::Bytes;
use sayiir_persistence::{SignalStore, SnapshotStore, TaskResultStore};

use crate::Harness;
use crate::fixtures::{
    assert_not_found, cancelled_snapshot, completed_snapshot, failed_snapshot, in_progress,
    paused_snapshot, request, unique_id, with_results,
};
use sayiir_persistence::sayiir_core::snapshot::SignalKind;

/// `load_task_result`, unwrapped.
async fn result<H: Harness>(h: &H, id: &str, task: &str) -> Option<Bytes> {
    h.backend().load_task_result(id, task).await.unwrap()
}

/// Saves the in-progress fixture, then `terminal` over it (the terminal transition).
async fn run_then<H: Harness>(
    h: &H,
    terminal: &sayiir_persistence::sayiir_core::snapshot::WorkflowSnapshot,
) {
    h.backend().save_snapshot(&in_progress(&terminal.instance_id)).await.unwrap();
    h.backend().save_snapshot(terminal).await.unwrap();
}

/// In progress: results come from the current snapshot; an unknown task is `None`.
pub async fn in_progress_reads_snapshot<H: Harness>(h: Arc<H>) {
    let id = unique_id("tr-running");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    assert_eq!(result(&*h, &id, "a").await.as_deref(), Some(&b"out-a"[..]));
    assert_eq!(result(&*h, &id, "b").await, None);
    assert_eq!(result(&*h, &id, "nope").await, None);
}

/// Results written by `save_task_result` are readable at once.
pub async fn save_task_result_is_readable<H: Harness>(h: Arc<H>) {
    let id = unique_id("tr-str");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    h.backend().save_task_result(&id, "b", Bytes::from_static(b"out-b")).await.unwrap();
    assert_eq!(result(&*h, &id, "b").await.as_deref(), Some(&b"out-b"[..]));
}

/// Paused: results come from the current snapshot.
pub async fn paused_reads_snapshot<H: Harness>(h: Arc<H>) {
    let id = unique_id("tr-paused");
    h.backend().save_snapshot(&paused_snapshot(&id)).await.unwrap();
    assert_eq!(result(&*h, &id, "a").await.as_deref(), Some(&b"out-a"[..]));
    assert_eq!(result(&*h, &id, "b").await, None);
}

/// Cancelled (by a save): results come from the snapshot.
pub async fn cancelled_reads_snapshot<H: Harness>(h: Arc<H>) {
    let id = unique_id("tr-cancelled");
    h.backend().save_snapshot(&cancelled_snapshot(&id)).await.unwrap();
    assert_eq!(result(&*h, &id, "a").await.as_deref(), Some(&b"out-a"[..]));
}

/// Cancelled through `check_and_cancel`: the results held before are still readable.
pub async fn cancelled_by_guard_reads_snapshot<H: Harness>(h: Arc<H>) {
    let id = unique_id("tr-guard");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Cancel, request("c")).await.unwrap();
    assert!(h.backend().check_and_cancel(&id, Some("b")).await.unwrap());
    assert_eq!(result(&*h, &id, "a").await.as_deref(), Some(&b"out-a"[..]));
}

/// Completed: results come from the archive made at the transition; unknown tasks are `None`.
pub async fn completed_reads_archive<H: Harness>(h: Arc<H>) {
    let id = unique_id("tr-done");
    run_then(&*h, &completed_snapshot(&id)).await;
    assert_eq!(result(&*h, &id, "a").await.as_deref(), Some(&b"out-a"[..]));
    assert_eq!(result(&*h, &id, "nope").await, None);
}

/// Failed: results come from the archive.
pub async fn failed_reads_archive<H: Harness>(h: Arc<H>) {
    let id = unique_id("tr-failed");
    run_then(&*h, &failed_snapshot(&id)).await;
    assert_eq!(result(&*h, &id, "a").await.as_deref(), Some(&b"out-a"[..]));
}

/// Results stored by `save_task_result` before the terminal save are archived too.
pub async fn save_task_result_results_are_archived<H: Harness>(h: Arc<H>) {
    let id = unique_id("tr-str-arch");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    h.backend().save_task_result(&id, "b", Bytes::from_static(b"out-b")).await.unwrap();
    h.backend().save_snapshot(&completed_snapshot(&id)).await.unwrap();
    assert_eq!(result(&*h, &id, "b").await.as_deref(), Some(&b"out-b"[..]));
    assert_eq!(result(&*h, &id, "a").await.as_deref(), Some(&b"out-a"[..]));
}

/// A terminal re-save (Completed again, then Failed) keeps the archive.
pub async fn archive_survives_terminal_resave<H: Harness>(h: Arc<H>) {
    let id = unique_id("tr-resave");
    run_then(&*h, &completed_snapshot(&id)).await;
    h.backend().save_snapshot(&completed_snapshot(&id)).await.unwrap();
    assert_eq!(result(&*h, &id, "a").await.as_deref(), Some(&b"out-a"[..]));
    h.backend().save_snapshot(&failed_snapshot(&id)).await.unwrap();
    assert_eq!(result(&*h, &id, "a").await.as_deref(), Some(&b"out-a"[..]));
}

/// A snapshot created already Completed has no archive: every task reads `None`.
pub async fn created_completed_has_no_results<H: Harness>(h: Arc<H>) {
    let id = unique_id("tr-born-done");
    h.backend().save_snapshot(&completed_snapshot(&id)).await.unwrap();
    assert_eq!(result(&*h, &id, "a").await, None);
}

/// An unknown instance is `NotFound`.
pub async fn unknown_instance_not_found<H: Harness>(h: Arc<H>) {
    let result = h.backend().load_task_result(&unique_id("tr-missing"), "a").await;
    assert_not_found(result, "load_task_result of an unknown instance");
}

/// A result removed by a loop (`remove_task_result` + save) reads `None`.
pub async fn loop_removed_result_is_none<H: Harness>(h: Arc<H>) {
    let id = unique_id("tr-loop");
    let mut snapshot = with_results(&id, &[("body", b"iter-1"), ("x", b"x")], "body");
    h.backend().save_snapshot(&snapshot).await.unwrap();
    assert_eq!(result(&*h, &id, "body").await.as_deref(), Some(&b"iter-1"[..]));
    snapshot.remove_task_result("body");
    h.backend().save_snapshot(&snapshot).await.unwrap();
    assert_eq!(result(&*h, &id, "body").await, None);
    assert_eq!(result(&*h, &id, "x").await.as_deref(), Some(&b"x"[..]));
}

/// A result removed before the terminal save is not archived (the archive is the last
/// stored non-terminal state).
pub async fn archive_is_last_stored_state<H: Harness>(h: Arc<H>) {
    let id = unique_id("tr-last");
    let mut snapshot = with_results(&id, &[("a", b"1"), ("b", b"2")], "c");
    h.backend().save_snapshot(&snapshot).await.unwrap();
    snapshot.remove_task_result("a");
    snapshot.mark_task_completed("b".to_string(), Bytes::from_static(b"2-again"));
    h.backend().save_snapshot(&snapshot).await.unwrap();
    snapshot.mark_completed(Bytes::from_static(b"end"));
    h.backend().save_snapshot(&snapshot).await.unwrap();
    assert_eq!(result(&*h, &id, "a").await, None);
    assert_eq!(result(&*h, &id, "b").await.as_deref(), Some(&b"2-again"[..]));
}

/// Cancelled then Completed (by a save) archives the results the Cancelled state held.
pub async fn cancelled_then_completed_archives<H: Harness>(h: Arc<H>) {
    let id = unique_id("tr-c-then-done");
    h.backend().save_snapshot(&cancelled_snapshot(&id)).await.unwrap();
    h.backend().save_snapshot(&completed_snapshot(&id)).await.unwrap();
    assert_eq!(result(&*h, &id, "a").await.as_deref(), Some(&b"out-a"[..]));
}

/// Reopening a completed id in progress serves the new snapshot's results, not the old
/// archive.
pub async fn reopened_reads_new_snapshot<H: Harness>(h: Arc<H>) {
    let id = unique_id("tr-reopen");
    run_then(&*h, &completed_snapshot(&id)).await;
    h.backend().save_snapshot(&with_results(&id, &[("z", b"new")], "y")).await.unwrap();
    assert_eq!(result(&*h, &id, "a").await, None);
    assert_eq!(result(&*h, &id, "z").await.as_deref(), Some(&b"new"[..]));
}

/// After delete the archive is gone (`NotFound`), and a re-created id does not see it.
pub async fn archive_gone_after_delete<H: Harness>(h: Arc<H>) {
    let id = unique_id("tr-delete");
    run_then(&*h, &completed_snapshot(&id)).await;
    h.backend().delete_snapshot(&id).await.unwrap();
    assert_not_found(h.backend().load_task_result(&id, "a").await, "after delete");
    h.backend().save_snapshot(&completed_snapshot(&id)).await.unwrap();
    assert_eq!(result(&*h, &id, "a").await, None, "old archive resurfaced");
}

/// Empty and binary outputs are served exactly, from the snapshot and from the archive.
pub async fn empty_and_binary_results_exact<H: Harness>(h: Arc<H>) {
    let id = unique_id("tr-bytes");
    let binary = crate::fixtures::binary_payload();
    let mut snapshot = with_results(&id, &[("empty", b"")], "next");
    snapshot.mark_task_completed("bin".to_string(), binary.clone());
    h.backend().save_snapshot(&snapshot).await.unwrap();
    assert_eq!(result(&*h, &id, "empty").await, Some(Bytes::new()));
    assert_eq!(result(&*h, &id, "bin").await, Some(binary.clone()));
    snapshot.mark_completed(Bytes::new());
    h.backend().save_snapshot(&snapshot).await.unwrap();
    assert_eq!(result(&*h, &id, "empty").await, Some(Bytes::new()));
    assert_eq!(result(&*h, &id, "bin").await, Some(binary));
}
