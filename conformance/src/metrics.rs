//! Whether a backend's calls show up in a metrics recorder (cargo feature `metrics`): the
//! core records them for every backend (`sayiir_persistence::metrics`), and this check runs a
//! few calls inside a recorder of its own to see the numbers move with the backend's labels.

use std::panic::{AssertUnwindSafe, resume_unwind};

use futures::FutureExt;
use metrics_util::CompositeKey;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use sayiir_persistence::SnapshotStore;
use sayiir_persistence::metrics::{ERRORS, OPERATION_DURATION, OPERATIONS};

use crate::Harness;
use crate::fixtures::{at_task, unique_id};

/// Runs `calls` on a fresh backend of `H` (set up and torn down here) with a recorder of
/// its own installed, and returns what the recorder saw.
fn recorded<H: Harness>(calls: impl AsyncFnOnce(&H)) -> Vec<(CompositeKey, DebugValue)> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // One thread, so that every call runs where the local recorder is installed.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot build the tokio runtime for the metrics check");
    let outcome = metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let harness = H::setup().await;
            let outcome = AssertUnwindSafe(calls(&harness)).catch_unwind().await;
            harness.teardown().await;
            outcome
        })
    });
    if let Err(panic) = outcome {
        resume_unwind(panic);
    }
    snapshotter.snapshot().into_vec().into_iter().map(|(key, _, _, value)| (key, value)).collect()
}

/// On a fresh backend of `H` (set up and torn down inside the check), one `save_snapshot`,
/// one `load_snapshot` that finds it and one that does not; then asserts that the recorder
/// saw two `load_snapshot` calls, one `NotFound` error, and durations for both operations,
/// all labelled `db.system.name = system`.
///
/// # Panics
/// When a metric is missing or wrong, or a call fails.
pub fn calls_are_measured<H: Harness>(system: &str) {
    let metrics = recorded::<H>(async |harness| {
        let id = unique_id("metrics");
        harness.backend().save_snapshot(&at_task(&id, "t")).await.unwrap();
        harness.backend().load_snapshot(&id).await.unwrap();
        let missing = harness.backend().load_snapshot(&unique_id("missing")).await;
        assert!(missing.is_err(), "a missing instance is not found");
    });
    let find = |name: &str, operation: &str, error: Option<&str>| {
        metrics.iter().find_map(|(key, value)| {
            let key = key.key();
            let label = |wanted: &str| {
                key.labels().find(|l| l.key() == wanted).map(|l| l.value().to_string())
            };
            (key.name() == name
                && label("db.system.name").as_deref() == Some(system)
                && label("db.operation.name").as_deref() == Some(operation)
                && label("error.type").as_deref() == error)
                .then_some(value)
        })
    };
    let counted =
        |name: &str, operation: &str, error: Option<&str>| match find(name, operation, error) {
            Some(DebugValue::Counter(n)) => *n,
            other => panic!("{name} for {operation} ({error:?}): {other:?} in {metrics:#?}"),
        };
    let samples =
        |operation: &str, error: Option<&str>| match find(OPERATION_DURATION, operation, error) {
            Some(DebugValue::Histogram(values)) => values.len(),
            other => panic!("{OPERATION_DURATION} for {operation}: {other:?} in {metrics:#?}"),
        };
    assert_eq!(counted(OPERATIONS, "load_snapshot", None), 2, "load_snapshot calls");
    assert_eq!(counted(OPERATIONS, "save_snapshot", None), 1, "save_snapshot calls");
    assert_eq!(counted(ERRORS, "load_snapshot", Some("NotFound")), 1, "load_snapshot errors");
    assert_eq!(samples("load_snapshot", None), 1, "successful load_snapshot durations");
    assert_eq!(samples("load_snapshot", Some("NotFound")), 1, "failed load_snapshot durations");
    assert_eq!(samples("save_snapshot", None), 1, "save_snapshot durations");
}

/// On a fresh backend of `H`, saves one runnable workflow and claims nothing, calls
/// `store_counts`, and asserts that the recorder saw the gauges `sayiir.workflows` (1 for
/// `InProgress`, 0 for the others), `sayiir.tasks.ready` (1) and `sayiir.claims.live` (0),
/// labelled `db.system.name = system`.
///
/// # Panics
/// When a gauge is missing or wrong, or a call fails.
pub fn counts_are_gauged<H: Harness>(system: &str)
where
    H::Backend: sayiir_persistence::StoreStatistics,
{
    use sayiir_persistence::StoreStatistics as _;
    use sayiir_persistence::metrics::{LIVE_CLAIMS, READY_TASKS, WORKFLOWS};

    let metrics = recorded::<H>(async |harness| {
        let id = unique_id("gauged");
        harness.backend().save_snapshot(&at_task(&id, "t")).await.unwrap();
        harness.backend().store_counts().await.unwrap();
    });
    let gauge = |name: &str, status: Option<&str>| {
        let found = metrics.iter().find_map(|(key, value)| {
            let key = key.key();
            let label = |wanted: &str| {
                key.labels().find(|l| l.key() == wanted).map(|l| l.value().to_string())
            };
            (key.name() == name
                && label("db.system.name").as_deref() == Some(system)
                && label("sayiir.workflow.status").as_deref() == status)
                .then_some(value)
        });
        match found {
            Some(DebugValue::Gauge(value)) => value.into_inner(),
            other => panic!("{name} ({status:?}): {other:?} in {metrics:#?}"),
        }
    };
    assert!((gauge(WORKFLOWS, Some("InProgress")) - 1.0).abs() < f64::EPSILON);
    assert!(gauge(WORKFLOWS, Some("Completed")).abs() < f64::EPSILON);
    assert!((gauge(READY_TASKS, None) - 1.0).abs() < f64::EPSILON);
    assert!(gauge(LIVE_CLAIMS, None).abs() < f64::EPSILON);
}
