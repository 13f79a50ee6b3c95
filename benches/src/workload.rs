//! Snapshots and call sequences of the workloads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use sayiir_persistence::sayiir_core::snapshot::{ExecutionPosition, WorkflowSnapshot};
use sayiir_persistence_conformance::FullBackend;
use sayiir_persistence_conformance::fixtures::at_task;

/// Size of every task output in the workloads.
pub(crate) const OUTPUT_BYTES: usize = 1024;

/// A number never handed out before in this process (fresh ids across criterion batches).
pub(crate) fn next_seq() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// A task output of [`OUTPUT_BYTES`] that does not compress to nothing.
pub(crate) fn output(seed: usize) -> Bytes {
    Bytes::from((0..OUTPUT_BYTES).map(|j| ((seed * 31 + j * 7) % 251) as u8).collect::<Vec<_>>())
}

/// An in-progress snapshot at `AtTask{next}` holding `tasks` completed 1 KiB results.
pub(crate) fn with_tasks(id: &str, tasks: usize) -> WorkflowSnapshot {
    let mut snapshot = at_task(id, "next");
    for i in 0..tasks {
        snapshot.mark_task_completed(format!("task-{i}"), output(i));
    }
    snapshot
}

/// A ready workflow at a task, tagged for one worker.
pub(crate) fn ready(id: &str, priority: u8, tags: &[String]) -> WorkflowSnapshot {
    let mut snapshot = at_task(id, "task-0");
    snapshot.task_priority = Some(priority);
    snapshot.task_tags = tags.to_vec();
    snapshot
}

/// A workflow parked at a delay that wakes in a year.
pub(crate) fn parked(id: &str) -> WorkflowSnapshot {
    let mut snapshot = at_task(id, "task-0");
    let now = chrono::Utc::now();
    snapshot.update_position(ExecutionPosition::AtDelay {
        delay_id: "wait".into(),
        entered_at: now,
        wake_at: now + chrono::Duration::days(365),
        next_task_id: Some("task-1".into()),
    });
    snapshot
}

/// Saves snapshots through the backend, 64 at a time.
pub(crate) async fn seed_through<B: FullBackend>(backend: B, snapshots: Vec<WorkflowSnapshot>) {
    futures::stream::iter(snapshots)
        .for_each_concurrent(64, |snapshot| {
            let backend = &backend;
            async move { backend.save_snapshot(&snapshot).await.unwrap() }
        })
        .await;
}

/// Times one future.
pub(crate) async fn timed<F: Future>(future: F) -> (F::Output, Duration) {
    let start = Instant::now();
    let out = future.await;
    (out, start.elapsed())
}

/// The calls of `CheckpointingRunner::run` for a workflow of `tasks` sequential tasks
/// (§ Checkpointing runner calls: 1 load, tasks + 2 saves, 2·tasks cancel checks, 2·tasks pause
/// checks).
pub(crate) async fn checkpointing_run<B: FullBackend>(backend: &B, id: &str, tasks: usize) {
    assert!(backend.load_snapshot(id).await.is_err(), "{id} must be new");
    let mut snapshot = at_task(id, "task-0");
    backend.save_snapshot(&snapshot).await.unwrap();
    for i in 0..tasks {
        let task = format!("task-{i}");
        assert!(!backend.check_and_cancel(id, Some(&task)).await.unwrap());
        assert!(!backend.check_and_pause(id).await.unwrap());
        snapshot.mark_task_completed(task, output(i));
        if i + 1 < tasks {
            snapshot
                .update_position(ExecutionPosition::AtTask { task_id: format!("task-{}", i + 1) });
        }
        backend.save_snapshot(&snapshot).await.unwrap();
        assert!(!backend.check_and_cancel(id, None).await.unwrap());
        assert!(!backend.check_and_pause(id).await.unwrap());
    }
    snapshot.mark_completed(output(tasks));
    backend.save_snapshot(&snapshot).await.unwrap();
}

/// The calls of a `PooledWorker` running one task (§ Pooled worker calls): find, load, claim, two
/// guards, save (result and next position), release, two guards. The workflow moves on to a
/// next task and keeps only its last result, so every call does the same work.
pub(crate) async fn pooled_worker_task<B: FullBackend>(backend: &B, worker: &str, tags: &[String]) {
    let found = backend
        .find_available_tasks(worker, 1, chrono::Duration::seconds(300), tags)
        .await
        .unwrap();
    let task = found.into_iter().next().expect("the worker's workflow has a ready task");
    let mut snapshot = backend.load_snapshot(&task.instance_id).await.unwrap();
    let ttl = Some(chrono::Duration::minutes(5));
    backend.claim_task(&task.instance_id, &task.task_id, worker, ttl).await.unwrap().unwrap();
    assert!(!backend.check_and_cancel(&task.instance_id, Some(&task.task_id)).await.unwrap());
    assert!(!backend.check_and_pause(&task.instance_id).await.unwrap());
    let step: usize = task.task_id.trim_start_matches("task-").parse().unwrap_or(0);
    if let Some(results) = sayiir_persistence::results::held_results_mut(&mut snapshot.state) {
        results.clear();
    }
    snapshot.mark_task_completed(task.task_id.clone(), output(step));
    snapshot.update_position(ExecutionPosition::AtTask { task_id: format!("task-{}", step + 1) });
    backend.save_snapshot(&snapshot).await.unwrap();
    backend.release_task_claim(&task.instance_id, &task.task_id, worker).await.unwrap();
    assert!(!backend.check_and_cancel(&task.instance_id, None).await.unwrap());
    assert!(!backend.check_and_pause(&task.instance_id).await.unwrap());
}
