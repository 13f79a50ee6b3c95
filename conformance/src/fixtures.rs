//! Builders the cases share: unique ids and snapshots in every shape.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use sayiir_persistence::sayiir_core::snapshot::{
    ExecutionPosition, PauseRequest, SignalKind, SignalRequest, TaskDeadline, TaskRetryState,
    WorkflowSnapshot, WorkflowSnapshotState,
};
use sayiir_persistence::sayiir_core::task::RetryPolicy;
use sayiir_persistence::sayiir_core::task_claim::AvailableTask;
use sayiir_persistence::transfer::WorkflowRecord;
use sayiir_persistence::{BackendError, SignalStore, TaskClaimStore};

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
    let mut snapshot = with_results(instance_id, &[("a", b"out-a"), ("b", &[0, 159, 255, 0])], "c");
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

/// One hour: the offset used for far-future and far-past times (delays, backoff, timeouts).
#[must_use]
pub fn hour() -> Duration {
    Duration::hours(1)
}

/// The runtime's default aging interval (300 s).
#[must_use]
pub fn aging() -> Duration {
    Duration::seconds(300)
}

/// A `limit` large enough to return every ready task a case can have made.
pub const ALL: usize = 100_000;

/// A worker id no case shares.
#[must_use]
pub fn worker() -> String {
    unique_id("worker")
}

/// Calls `find_available_tasks(worker, ALL, aging(), [])` and unwraps it.
///
/// A plain `fn` on purpose: `pub async fn` marks the cases of the group modules.
#[allow(clippy::manual_async_fn)]
pub fn find_all<'a, B: TaskClaimStore>(
    backend: &'a B,
    worker_id: &'a str,
) -> impl Future<Output = Vec<AvailableTask>> + Send + 'a {
    async move {
        backend
            .find_available_tasks(worker_id, ALL, aging(), &[])
            .await
            .expect("find_available_tasks failed")
    }
}

/// The returned task of `instance_id`, if any (panics if it was returned twice).
#[must_use]
pub fn task_of<'a>(found: &'a [AvailableTask], instance_id: &str) -> Option<&'a AvailableTask> {
    let mut hits = found.iter().filter(|t| t.instance_id == instance_id);
    let first = hits.next();
    assert!(hits.next().is_none(), "instance {instance_id:?} returned more than once");
    first
}

/// The instance ids of `found`, in order, keeping only those in `mine`.
#[must_use]
pub fn order_of(found: &[AvailableTask], mine: &[&str]) -> Vec<String> {
    found
        .iter()
        .filter(|t| mine.contains(&t.instance_id.as_str()))
        .map(|t| t.instance_id.clone())
        .collect()
}

/// An in-progress snapshot that completed task `a` (output `out-a`) and is at `AtTask{b}`.
#[must_use]
pub fn in_progress(instance_id: &str) -> WorkflowSnapshot {
    with_results(instance_id, &[("a", b"out-a")], "b")
}

/// [`in_progress`] after `mark_completed(b"final")` (its results are discarded).
#[must_use]
pub fn completed_snapshot(instance_id: &str) -> WorkflowSnapshot {
    let mut snapshot = in_progress(instance_id);
    snapshot.mark_completed(Bytes::from_static(b"final"));
    snapshot
}

/// [`in_progress`] after `mark_failed("boom")`.
#[must_use]
pub fn failed_snapshot(instance_id: &str) -> WorkflowSnapshot {
    let mut snapshot = in_progress(instance_id);
    snapshot.mark_failed("boom".to_string());
    snapshot
}

/// [`in_progress`] after `mark_cancelled` (keeps result `a`, interrupted at `b`).
#[must_use]
pub fn cancelled_snapshot(instance_id: &str) -> WorkflowSnapshot {
    let mut snapshot = in_progress(instance_id);
    snapshot.mark_cancelled(
        Some("stop".to_string()),
        Some("admin".to_string()),
        Some("b".to_string()),
    );
    snapshot
}

/// [`in_progress`] after `mark_paused` (keeps result `a` and position `AtTask{b}`).
#[must_use]
pub fn paused_snapshot(instance_id: &str) -> WorkflowSnapshot {
    let mut snapshot = in_progress(instance_id);
    snapshot.mark_paused(&PauseRequest::new(Some("hold".to_string()), Some("ops".to_string())));
    snapshot
}

/// The position of an in-progress snapshot.
///
/// # Panics
/// When the snapshot is not in progress.
#[must_use]
#[track_caller]
pub fn position(snapshot: &WorkflowSnapshot) -> &ExecutionPosition {
    match &snapshot.state {
        WorkflowSnapshotState::InProgress { position, .. } => position,
        other => panic!("expected InProgress, got {}", other.as_ref()),
    }
}

/// The task id of an `AtTask` position (panics on any other position or state).
#[must_use]
#[track_caller]
pub fn at_task_id(snapshot: &WorkflowSnapshot) -> &str {
    match position(snapshot) {
        ExecutionPosition::AtTask { task_id } => task_id,
        other => panic!("expected AtTask, got {}", other.as_ref()),
    }
}

/// Asserts that `result` is `NotFound`.
///
/// # Panics
/// When it is anything else.
#[track_caller]
pub fn assert_not_found<T: Debug>(result: Result<T, BackendError>, what: &str) {
    match result {
        Err(BackendError::NotFound(_)) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

/// Asserts that `result` is a `Backend` error whose message contains `needle`.
///
/// # Panics
/// When it is anything else.
#[track_caller]
pub fn assert_backend_error<T: Debug>(result: Result<T, BackendError>, needle: &str, what: &str) {
    match result {
        Err(BackendError::Backend(message)) => assert!(
            message.contains(needle),
            "{what}: Backend error should mention {needle:?}, got {message:?}"
        ),
        other => panic!("{what}: expected a Backend error mentioning {needle:?}, got {other:?}"),
    }
}

/// Ids every backend must reject (§ Id rules), with a label: empty, containing NUL, 1025 bytes.
#[must_use]
pub fn bad_ids() -> Vec<(&'static str, String)> {
    vec![
        ("empty", String::new()),
        ("NUL", "bad\0id".to_string()),
        ("1025 bytes", "x".repeat(1025)),
        ("1025 bytes of multi-byte characters", format!("{}x", "🦀".repeat(256))),
    ]
}

/// Ids with characters that break naive key schemes, each made unique with `tag`; every
/// backend must store and return them verbatim (§ Id rules).
#[must_use]
pub fn special_ids(tag: &str) -> Vec<String> {
    [
        "a:b:c",
        ":leading and trailing:",
        "quotes ' \" `",
        "percent %s %d %%",
        "glob * ? [x]",
        "braces {x} {{y}}",
        "  spaces  ",
        "emoji 🦀 ünïcödé 中文",
        "new\nline\r\ttab",
        "'; DROP TABLE x; --",
        "]]..redis.call('FLUSHALL')..[[",
        "back\\slash /slash",
    ]
    .iter()
    .map(|s| format!("{s}|{}", unique_id(tag)))
    .collect()
}

/// Every byte value 0..=255, twice, then a NUL: a payload no text encoding survives.
#[must_use]
pub fn binary_payload() -> Bytes {
    let mut bytes: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
    bytes.push(0);
    Bytes::from(bytes)
}

/// A 16 MiB payload with a non-repeating-looking pattern (§ Payloads are opaque bytes: at least 16
/// MiB works).
#[must_use]
pub fn large_payload() -> Bytes {
    const SIZE: usize = 16 * 1024 * 1024;
    #[allow(clippy::cast_possible_truncation)]
    let bytes: Vec<u8> = (0..SIZE).map(|i| (i.wrapping_mul(31) ^ (i >> 11)) as u8).collect();
    Bytes::from(bytes)
}

/// Asserts two payloads are equal without printing megabytes on failure.
///
/// # Panics
/// When they differ.
#[track_caller]
pub fn assert_bytes(actual: &[u8], expected: &[u8], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length differs");
    if let Some(i) = actual.iter().zip(expected).position(|(a, b)| a != b) {
        panic!("{what}: first difference at byte {i}");
    }
}

/// Asserts that two records hold the same data, field by field.
///
/// # Panics
/// When they differ.
#[track_caller]
pub fn assert_same_record(actual: &WorkflowRecord, expected: &WorkflowRecord) {
    assert_eq!(actual.instance_id, expected.instance_id, "instance id");
    match (&actual.snapshot, &expected.snapshot) {
        (Some(a), Some(e)) => assert_same(a, e),
        (None, None) => {}
        (a, e) => panic!("snapshot: {:?} against {:?}", a.is_some(), e.is_some()),
    }
    assert_eq!(actual.archived_results, expected.archived_results, "archived results");
    for (what, a, e) in [
        ("cancel request", &actual.cancel_request, &expected.cancel_request),
        ("pause request", &actual.pause_request, &expected.pause_request),
    ] {
        let fields = |r: &Option<SignalRequest>| {
            r.as_ref().map(|r| (r.reason.clone(), r.requested_by.clone(), r.requested_at))
        };
        assert_eq!(fields(a), fields(e), "{what}");
    }
    assert_eq!(actual.events, expected.events, "buffered events");
}

/// Saves a workflow in each state through the 0.4.0 methods, with an archive where the state
/// has one (Completed, Failed), pending requests and buffered events, and returns their ids
/// (each starts with what it shows: `populated`, `done`, `failed`, `cancelled`, `paused`,
/// `waiting`, `running`).
///
/// # Panics
/// When a write fails.
#[allow(clippy::manual_async_fn)] // a plain `fn`: `pub async fn` marks the cases of groups
pub fn seed_every_state<B: SignalStore>(b: &B) -> impl Future<Output = Vec<String>> + Send + '_ {
    async move {
        let mut ids = Vec::new();
        let mut put = |snapshot: WorkflowSnapshot| {
            ids.push(snapshot.instance_id.clone());
            snapshot
        };
        b.save_snapshot(&put(fully_populated(&unique_id("populated")))).await.unwrap();
        for finished in
            [completed_snapshot(&unique_id("done")), failed_snapshot(&unique_id("failed"))]
        {
            // The archive comes from the results the previous save held.
            b.save_snapshot(&in_progress(&finished.instance_id)).await.unwrap();
            b.save_task_result(&finished.instance_id, "z", binary_payload()).await.unwrap();
            b.save_snapshot(&put(finished)).await.unwrap();
        }
        b.save_snapshot(&put(cancelled_snapshot(&unique_id("cancelled")))).await.unwrap();
        let paused = put(paused_snapshot(&unique_id("paused")));
        b.save_snapshot(&paused).await.unwrap();
        b.store_signal(&paused.instance_id, SignalKind::Cancel, request("later")).await.unwrap();
        let waiting = put(at_signal(
            &unique_id("waiting"),
            "s1",
            "approve",
            Some(Duration::hours(1)),
            Some("next"),
        ));
        b.save_snapshot(&waiting).await.unwrap();
        for payload in [&b"first"[..], b"", b"\x00\xff"] {
            b.send_event(&waiting.instance_id, "approve", Bytes::copy_from_slice(payload))
                .await
                .unwrap();
        }
        b.send_event(&waiting.instance_id, "other", Bytes::from_static(b"x")).await.unwrap();
        let running = put(in_progress(&unique_id("running")));
        b.save_snapshot(&running).await.unwrap();
        b.save_task_result(&running.instance_id, "b", Bytes::from_static(b"out-b")).await.unwrap();
        b.store_signal(&running.instance_id, SignalKind::Pause, request("hold")).await.unwrap();
        b.store_signal(&running.instance_id, SignalKind::Cancel, request("stop")).await.unwrap();
        ids
    }
}
