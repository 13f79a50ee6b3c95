//! Builders the cases share: unique ids and snapshots in every shape.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use sayiir_persistence::sayiir_core::snapshot::{
    ExecutionPosition, SignalRequest, TaskDeadline, TaskRetryState, WorkflowSnapshot,
    WorkflowSnapshotState,
};
use sayiir_persistence::sayiir_core::task::RetryPolicy;

/// An id no other case, run or process uses: `prefix`, the process id, a counter and the
/// clock in nanoseconds.
#[must_use]
pub fn unique_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// Now in whole Unix seconds, as snapshots count time.
#[must_use]
pub fn now_secs() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or_default()
}

/// A fresh in-progress snapshot at `AtTask{task_id}` with input `b"input"`.
#[must_use]
pub fn at_task(instance_id: &str, task_id: &str) -> WorkflowSnapshot {
    let mut snapshot = WorkflowSnapshot::with_initial_input(
        instance_id.to_string(),
        "definition-hash".to_string(),
        Bytes::from_static(b"input"),
    );
    snapshot.update_position(ExecutionPosition::AtTask { task_id: task_id.to_string() });
    snapshot
}

/// [`at_task`] with priority and a backdated `updated_at` (seconds in the past).
#[must_use]
pub fn at_task_with(
    instance_id: &str,
    task_id: &str,
    priority: Option<u8>,
    age_secs: u64,
) -> WorkflowSnapshot {
    let mut snapshot = at_task(instance_id, task_id);
    snapshot.task_priority = priority;
    snapshot.updated_at = snapshot.updated_at.saturating_sub(age_secs);
    snapshot
}

/// An in-progress snapshot that completed `done` (id, output) pairs in order and now stands
/// at `AtTask{next}`.
#[must_use]
pub fn with_results(instance_id: &str, done: &[(&str, &[u8])], next: &str) -> WorkflowSnapshot {
    let mut snapshot = at_task(instance_id, next);
    for (task_id, output) in done {
        snapshot.mark_task_completed((*task_id).to_string(), Bytes::copy_from_slice(output));
    }
    snapshot
}

/// An in-progress snapshot parked at a delay that wakes `wake_in` from now (negative: due).
#[must_use]
pub fn at_delay(
    instance_id: &str,
    delay_id: &str,
    wake_in: Duration,
    next_task_id: Option<&str>,
) -> WorkflowSnapshot {
    let mut snapshot = with_results(instance_id, &[("before", b"before-out")], "unused");
    let now = Utc::now();
    snapshot.update_position(ExecutionPosition::AtDelay {
        delay_id: delay_id.to_string(),
        entered_at: now,
        wake_at: now + wake_in,
        next_task_id: next_task_id.map(String::from),
    });
    snapshot
}

/// An in-progress snapshot parked at a signal wait.
#[must_use]
pub fn at_signal(
    instance_id: &str,
    signal_id: &str,
    signal_name: &str,
    wake_in: Option<Duration>,
    next_task_id: Option<&str>,
) -> WorkflowSnapshot {
    let mut snapshot = with_results(instance_id, &[("before", b"before-out")], "unused");
    snapshot.update_position(ExecutionPosition::AtSignal {
        signal_id: signal_id.to_string(),
        signal_name: signal_name.to_string(),
        wake_at: wake_in.map(|d| Utc::now() + d),
        next_task_id: next_task_id.map(String::from),
    });
    snapshot
}

/// `at_task` after a failed attempt on `worker`, retryable at `retry_at`.
#[must_use]
pub fn failed_once(
    instance_id: &str,
    task_id: &str,
    worker: &str,
    retry_at: DateTime<Utc>,
) -> WorkflowSnapshot {
    let mut snapshot = at_task(instance_id, task_id);
    snapshot.task_retries.insert(
        task_id.to_string(),
        TaskRetryState {
            attempts: 1,
            policy: RetryPolicy {
                max_retries: 3,
                initial_delay: std::time::Duration::from_millis(10),
                backoff_multiplier: 2.0,
                max_delay: None,
            },
            last_error: "boom".to_string(),
            last_failed_worker: Some(worker.to_string()),
            next_retry_at: retry_at,
        },
    );
    snapshot
}

/// A snapshot with every optional field set, backdated timestamps and a trace parent.
#[must_use]
pub fn fully_populated(instance_id: &str) -> WorkflowSnapshot {
    let mut snapshot =
        with_results(instance_id, &[("a", b"out-a"), ("b", &[0, 159, 255, 0])], "c");
    let base = failed_once(instance_id, "c", "worker-9", Utc::now() + Duration::seconds(30));
    snapshot.task_retries = base.task_retries;
    snapshot.task_deadline = Some(TaskDeadline {
        task_id: "c".to_string(),
        deadline: Utc::now() + Duration::milliseconds(1500),
        timeout_ms: 1500,
    });
    snapshot.loop_iterations = HashMap::from([("loop-1".to_string(), 7)]);
    snapshot.task_priority = Some(2);
    snapshot.task_tags = vec!["gpu".to_string(), "eu".to_string(), "a b:c".to_string()];
    snapshot.trace_parent =
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string());
    snapshot.created_at = 1_000_000;
    snapshot.updated_at = 1_000_500;
    snapshot
}

/// The snapshot as a JSON value, for equality (snapshots do not implement `PartialEq`).
#[must_use]
pub fn json(snapshot: &WorkflowSnapshot) -> serde_json::Value {
    serde_json::to_value(snapshot).unwrap_or_default()
}

/// Asserts that two snapshots are equal, `trace_parent` included.
///
/// # Panics
/// When they differ.
#[track_caller]
pub fn assert_same(actual: &WorkflowSnapshot, expected: &WorkflowSnapshot) {
    assert_eq!(json(actual), json(expected), "snapshots differ");
    assert_eq!(actual.trace_parent, expected.trace_parent, "trace_parent differs");
}

/// A signal request with a recognisable reason and requester.
#[must_use]
pub fn request(reason: &str) -> SignalRequest {
    SignalRequest {
        reason: Some(reason.to_string()),
        requested_by: Some(format!("{reason}-by")),
        requested_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
    }
}

/// The status name of a snapshot's state.
#[must_use]
pub fn status(snapshot: &WorkflowSnapshot) -> &str {
    snapshot.state.as_ref()
}

/// The `completed_tasks` of a state that holds them (empty otherwise).
#[must_use]
pub fn completed(state: &WorkflowSnapshotState) -> HashMap<String, Bytes> {
    sayiir_persistence::results::held_results(state)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.output.clone())).collect())
        .unwrap_or_default()
}
