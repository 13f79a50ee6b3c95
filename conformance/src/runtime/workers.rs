//! `PooledWorker`s on the backend under test, each on its own handle: contention, priorities,
//! worker tags, retries, cancel and pause while a task runs, and a worker that crashes
//! mid-task.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use sayiir_persistence::SnapshotStore;
use sayiir_persistence::sayiir_core::priority::Priority;
use sayiir_persistence::sayiir_core::registry::TaskRegistry;
use sayiir_persistence::sayiir_core::task::{
    CoreTask, RegisterableTask, RetryPolicy, TaskMetadata,
};
use sayiir_persistence::sayiir_core::workflow::{Workflow, WorkflowBuilder};
use sayiir_runtime::serialization::JsonCodec;
use sayiir_runtime::{PooledWorker, WorkerHandle, WorkflowClient};
use tokio::sync::Semaphore;

use super::{
    Flaky, FlakyKind, Job, PATIENCE, Runs, RuntimeHarness, StepFuture, checkout, context,
    final_output, step, wait_for_run, wait_until,
};
use crate::FullBackend;

/// How often the workers poll, as a real deployment might configure it.
const POLL: Duration = Duration::from_millis(10);

/// A shared list of the workflows a worker can run, keyed by definition hash.
type Workflows = Vec<Arc<Workflow<JsonCodec, Job, ()>>>;

/// Starts a pooled worker on `backend`.
fn start_worker<B: FullBackend>(
    worker_id: &str,
    backend: B,
    tags: &[&str],
    claim_ttl: Duration,
    batch_size: usize,
    workflows: &Workflows,
) -> WorkerHandle<B> {
    let registry = workflows.iter().map(|w| (w.definition_hash().to_string(), Arc::clone(w)));
    PooledWorker::new(worker_id, backend, TaskRegistry::new())
        .with_claim_ttl(Some(claim_ttl))
        .with_batch_size(NonZeroUsize::new(batch_size).unwrap_or(NonZeroUsize::MIN))
        .with_tags(tags.iter().map(|t| (*t).to_string()).collect())
        .spawn(POLL, registry.collect())
}

/// Stops a worker and checks that its loop ended cleanly (a storage error ends it with `Err`).
async fn stop<B>(worker: WorkerHandle<B>) {
    worker.shutdown();
    let ended = tokio::time::timeout(PATIENCE, worker.join()).await;
    ended.expect("the worker stops").expect("the worker's poll loop ended without a storage error");
}

/// Three workers, each on its own handle with its own batch size, drain 24 workflows of three
/// tasks: every workflow completes and every task ran exactly once.
pub async fn contending_workers_run_each_task_once<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let workflow = Arc::new(checkout(&runs, None));
    let workflows: Workflows = vec![Arc::clone(&workflow)];
    let mut workers = Vec::new();
    for (i, batch) in [1, 2, 4].into_iter().enumerate() {
        let backend = h.open_handle().await;
        let id = format!("contender-{i}");
        workers.push(start_worker(&id, backend, &[], Duration::from_secs(30), batch, &workflows));
    }
    let client = WorkflowClient::new(h.open_handle().await);
    let ids: Vec<String> = (0..24).map(|i| format!("drain-{i:02}")).collect();
    for id in &ids {
        client.submit(&*workflow, id.clone(), Job::new(id, 0)).await.unwrap();
    }
    for id in &ids {
        let done = wait_until(h.backend(), id, "completion", |s| s.state.is_completed()).await;
        assert_eq!(final_output::<Job>(&done), Job::new(id, 111));
    }
    for worker in workers {
        stop(worker).await;
    }
    let counts = runs.counts();
    assert_eq!(counts.len(), ids.len() * 3, "every task ran: {counts:?}");
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "tasks that ran more than once: {twice:?}");
}

macro_rules! task_with_metadata {
    ($(#[$doc:meta])* $name:ident, $id:literal, $metadata:expr) => {
        $(#[$doc])*
        struct $name(Runs);

        impl CoreTask for $name {
            type Input = Job;
            type Output = Job;
            type Future = StepFuture;

            fn run(&self, job: Job) -> StepFuture {
                self.0.record(&job.id, $id);
                Box::pin(async move { Ok(Job { n: job.n + 1, ..job }) })
            }
        }

        impl RegisterableTask for $name {
            fn task_id() -> &'static str {
                $id
            }
            fn metadata() -> TaskMetadata {
                $metadata
            }
        }
    };
}

task_with_metadata!(
    /// A task of high priority.
    Urgent,
    "urgent",
    TaskMetadata { priority: Some(Priority::High), ..TaskMetadata::default() }
);
task_with_metadata!(
    /// A task of low priority.
    Routine,
    "routine",
    TaskMetadata { priority: Some(Priority::Low), ..TaskMetadata::default() }
);
task_with_metadata!(
    /// A task only a worker tagged `gpu` may run.
    Render,
    "render",
    TaskMetadata { tags: vec!["gpu".to_string()], ..TaskMetadata::default() }
);

/// A worker polling one task at a time takes the high-priority workflow first, although it
/// was submitted after four low-priority ones.
pub async fn priority_decides_the_order<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let routine = Arc::new(
        WorkflowBuilder::new(context("routine"))
            .then_task_with(Routine(runs.clone()))
            .build()
            .unwrap(),
    );
    let urgent = Arc::new(
        WorkflowBuilder::new(context("urgent"))
            .then_task_with(Urgent(runs.clone()))
            .build()
            .unwrap(),
    );
    let client = WorkflowClient::new(h.open_handle().await);
    for i in 0..4 {
        let id = format!("routine-{i}");
        client.submit(&*routine, id.clone(), Job::new(&id, 0)).await.unwrap();
    }
    client.submit(&*urgent, "urgent-0", Job::new("urgent-0", 0)).await.unwrap();
    let workflows: Workflows = vec![routine, urgent];
    let worker =
        start_worker("sorter", h.open_handle().await, &[], Duration::from_secs(30), 1, &workflows);
    for id in ["urgent-0", "routine-0", "routine-1", "routine-2", "routine-3"] {
        wait_until(h.backend(), id, "completion", |s| s.state.is_completed()).await;
    }
    stop(worker).await;
    let order = runs.all();
    assert_eq!(order.first().map(String::as_str), Some("urgent-0/urgent"), "order: {order:?}");
    assert_eq!(order.len(), 5, "each workflow ran once: {order:?}");
}

/// A task tagged `gpu` is left alone by a worker tagged `cpu` (which runs the untagged work
/// submitted after it) and run by a worker tagged `gpu`.
pub async fn worker_tags_route_tasks<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let render = Arc::new(
        WorkflowBuilder::new(context("render"))
            .then_task_with(Render(runs.clone()))
            .build()
            .unwrap(),
    );
    let plain = Arc::new(
        WorkflowBuilder::new(context("plain"))
            .then("plain", step(&runs, "plain", 1))
            .build()
            .unwrap(),
    );
    let client = WorkflowClient::new(h.open_handle().await);
    // Submitted first and sorting first on ties, so a worker allowed to run it would.
    client.submit(&*render, "a-render", Job::new("a-render", 0)).await.unwrap();
    client.submit(&*plain, "b-plain", Job::new("b-plain", 0)).await.unwrap();
    let workflows: Workflows = vec![render, plain];
    let cpu = start_worker(
        "cpu-worker",
        h.open_handle().await,
        &["cpu"],
        Duration::from_secs(30),
        1,
        &workflows,
    );
    wait_until(h.backend(), "b-plain", "completion", |s| s.state.is_completed()).await;
    stop(cpu).await;
    assert_eq!(
        runs.count("a-render", "render"),
        0,
        "a cpu worker ran a gpu task: {:?}",
        runs.all()
    );
    let waiting = h.backend().load_snapshot("a-render").await.unwrap();
    assert!(waiting.state.is_in_progress(), "{:?}", waiting.state);

    let gpu = start_worker(
        "gpu-worker",
        h.open_handle().await,
        &["gpu"],
        Duration::from_secs(30),
        1,
        &workflows,
    );
    wait_until(h.backend(), "a-render", "completion", |s| s.state.is_completed()).await;
    stop(gpu).await;
    assert_eq!(runs.count("a-render", "render"), 1);
}

/// Fails its first attempt; retried after 300 ms.
struct FlakyShip;

impl FlakyKind for FlakyShip {
    const ID: &'static str = "ship";
    const FAILURES: u32 = 1;
    const ADD: u64 = 100;
    fn retries() -> RetryPolicy {
        RetryPolicy {
            max_retries: 2,
            initial_delay: Duration::from_millis(300),
            backoff_multiplier: 2.0,
            max_delay: None,
        }
    }
}

/// A task that fails once is retried by the workers after its backoff (the store hides it
/// until then), and the workflow completes.
pub async fn workers_retry_with_backoff<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let flaky = Flaky::<FlakyShip>::new(&runs);
    let at = flaky.attempt_times();
    let workflow = Arc::new(
        WorkflowBuilder::new(context("retrying"))
            .then("reserve", step(&runs, "reserve", 1))
            .then_task_with(flaky)
            .build()
            .unwrap(),
    );
    let workflows: Workflows = vec![Arc::clone(&workflow)];
    let workers = [
        start_worker("retry-a", h.open_handle().await, &[], Duration::from_secs(30), 1, &workflows),
        start_worker("retry-b", h.open_handle().await, &[], Duration::from_secs(30), 1, &workflows),
    ];
    WorkflowClient::new(h.open_handle().await)
        .submit(&*workflow, "retry-w", Job::new("retry-w", 0))
        .await
        .unwrap();
    let done = wait_until(h.backend(), "retry-w", "completion", |s| s.state.is_completed()).await;
    for worker in workers {
        stop(worker).await;
    }
    assert_eq!(final_output::<Job>(&done), Job::new("retry-w", 101));
    assert_eq!(runs.count("retry-w", "ship:attempt"), 2, "{:?}", runs.all());
    assert_eq!(runs.count("retry-w", "ship"), 1);
    assert_eq!(runs.count("retry-w", "reserve"), 1);
    let at = at.lock().unwrap().clone();
    // The store compares the retry time, in whole milliseconds of the wall clock, with its
    // own clock; this measures a monotonic clock: allow a few milliseconds between the two.
    assert!(at[1] - at[0] >= Duration::from_millis(290), "backoff honoured: {at:?}");
}

/// A cancel sent through the client while a worker runs a task stops the workflow right after
/// that task: `Cancelled`, and the next task never runs.
pub async fn cancel_while_a_worker_runs_a_task<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let gate = Arc::new(Semaphore::new(0));
    let workflow = Arc::new(checkout(&runs, Some(&gate)));
    let workflows: Workflows = vec![Arc::clone(&workflow)];
    let worker = start_worker(
        "canceller",
        h.open_handle().await,
        &[],
        Duration::from_secs(30),
        1,
        &workflows,
    );
    let client = WorkflowClient::new(h.open_handle().await);
    client.submit(&*workflow, "cancel-w", Job::new("cancel-w", 0)).await.unwrap();
    wait_for_run(&runs, "cancel-w", "charge:start").await;
    client.cancel("cancel-w", Some("out of stock".into()), Some("ops".into())).await.unwrap();
    gate.add_permits(1);
    let cancelled =
        wait_until(h.backend(), "cancel-w", "cancellation", |s| s.state.is_cancelled()).await;
    stop(worker).await;
    let (reason, by) = cancelled.state.cancellation_details().expect("cancelled details");
    assert_eq!((reason.as_deref(), by.as_deref()), (Some("out of stock"), Some("ops")));
    assert_eq!(runs.count("cancel-w", "charge"), 1);
    assert_eq!(runs.count("cancel-w", "ship"), 0);
}

/// A pause sent while a worker runs a task holds the workflow after that task; after
/// `unpause` the workers finish it, each task having run once.
pub async fn pause_and_unpause_with_workers<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let gate = Arc::new(Semaphore::new(0));
    let workflow = Arc::new(checkout(&runs, Some(&gate)));
    let workflows: Workflows = vec![Arc::clone(&workflow)];
    let worker =
        start_worker("pauser", h.open_handle().await, &[], Duration::from_secs(30), 1, &workflows);
    let client = WorkflowClient::new(h.open_handle().await);
    client.submit(&*workflow, "pause-w", Job::new("pause-w", 0)).await.unwrap();
    wait_for_run(&runs, "pause-w", "charge:start").await;
    client.pause("pause-w", Some("inventory check".into()), None).await.unwrap();
    gate.add_permits(1);
    wait_until(h.backend(), "pause-w", "pause", |s| s.state.is_paused()).await;
    assert_eq!(runs.count("pause-w", "ship"), 0);

    client.unpause("pause-w").await.unwrap();
    let done = wait_until(h.backend(), "pause-w", "completion", |s| s.state.is_completed()).await;
    stop(worker).await;
    assert_eq!(final_output::<Job>(&done), Job::new("pause-w", 111));
    for task in ["reserve", "charge", "ship"] {
        assert_eq!(runs.count("pause-w", task), 1, "{task} ran {:?}", runs.all());
    }
}

/// A worker process dies while running `charge` (its runtime is torn down, heartbeats stop);
/// once its claim expires another worker, on its own handle, takes the task over and
/// finishes the workflow. Tasks finished before the crash do not run again.
pub async fn crashed_worker_task_is_taken_over<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let never_opened = Arc::new(Semaphore::new(0));
    let doomed_workflows: Workflows = vec![Arc::new(checkout(&runs, Some(&never_opened)))];
    let (crash, crashed) = std::sync::mpsc::channel::<()>();
    let doomed = std::thread::spawn({
        let h = Arc::clone(&h);
        move || {
            // The doomed worker lives in a runtime of its own, as in a process of its own.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime for the doomed worker");
            let worker = runtime.block_on(async {
                let backend = h.open_handle().await;
                start_worker("doomed", backend, &[], Duration::from_secs(2), 1, &doomed_workflows)
            });
            let _ = crashed.recv();
            runtime.shutdown_background();
            drop(worker);
        }
    });
    let client = WorkflowClient::new(h.open_handle().await);
    let workflow = Arc::new(checkout(&runs, None));
    client.submit(&*workflow, "takeover-1", Job::new("takeover-1", 0)).await.unwrap();
    wait_for_run(&runs, "takeover-1", "charge:start").await;
    let _ = crash.send(());
    tokio::task::spawn_blocking(move || doomed.join())
        .await
        .unwrap()
        .expect("the doomed thread ends");
    let workflows: Workflows = vec![workflow];
    let rescuer =
        start_worker("rescuer", h.open_handle().await, &[], Duration::from_secs(30), 1, &workflows);
    let done =
        wait_until(h.backend(), "takeover-1", "completion", |s| s.state.is_completed()).await;
    stop(rescuer).await;
    assert_eq!(final_output::<Job>(&done), Job::new("takeover-1", 111));
    assert_eq!(runs.count("takeover-1", "reserve"), 1, "{:?}", runs.all());
    assert_eq!(runs.count("takeover-1", "charge:start"), 1);
    assert_eq!(runs.count("takeover-1", "charge"), 1);
    assert_eq!(runs.count("takeover-1", "ship"), 1);
}
