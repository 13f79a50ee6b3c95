//! The `runtime` group (cargo feature `runtime`): the real Sayiir runtime, `sayiir-runtime`
//! 0.4.0, driving the backend under test through its public API.
//!
//! The other groups call the storage traits one method at a time; this one runs workflows the
//! way users do. [`CheckpointingRunner`](sayiir_runtime::CheckpointingRunner) runs every node
//! kind (tasks, fork/join, delays, signals, routes, loops, child workflows) and
//! [`WorkflowClient`](sayiir_runtime::WorkflowClient) submits, cancels, pauses, unpauses and
//! sends events; several [`PooledWorker`](sayiir_runtime::PooledWorker)s, each on its own
//! handle, contend for tasks, honour priorities and worker tags, retry with backoff and take
//! over the task of a worker that crashed. Every case asserts the final state, the outputs,
//! and how many times each task ran.
//!
//! A harness for this group also implements [`RuntimeHarness`], so that workers can have
//! handles of their own on the same store, as separate processes would.
//!
//! What the runtime itself cannot do is not asked of the backend: 0.4.0's `PooledWorker` runs
//! chains of tasks only (a delay, signal, fork, route or loop after a task is left to
//! `CheckpointingRunner`), does not mark a workflow failed when a task fails for good, and
//! applies a cancel or pause at its guards around a running task, not to a queued one.

mod runner;
mod workers;

pub use runner::*;
pub use workers::*;

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use sayiir_persistence::sayiir_core::context::WorkflowContext;
use sayiir_persistence::sayiir_core::error::BoxError;
use sayiir_persistence::sayiir_core::snapshot::{WorkflowSnapshot, WorkflowSnapshotState};
use sayiir_persistence::sayiir_core::task::{
    CoreTask, RegisterableTask, RetryPolicy, TaskMetadata,
};
use sayiir_persistence::sayiir_core::workflow::{Workflow, WorkflowBuilder};
use sayiir_persistence::{BackendError, SnapshotStore};
use sayiir_runtime::serialization::JsonCodec;
use serde::{Deserialize, Serialize};

use crate::Harness;

/// A harness whose store can be opened a second time, as another process would open it.
pub trait RuntimeHarness: Harness {
    /// Another handle on the store [`Harness::setup`] made: its own connections (pool, client,
    /// file handle), the same data. Workers in the `runtime` group each get one.
    fn open_handle(&self) -> impl Future<Output = Self::Backend> + Send;
}

/// The value every test workflow carries from task to task: the instance it belongs to (so a
/// task body knows which instance runs it) and a number the tasks compute with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The workflow instance id.
    pub id: String,
    /// The payload the tasks transform.
    pub n: u64,
}

impl Job {
    /// A job for instance `id` starting at `n`.
    #[must_use]
    pub fn new(id: &str, n: u64) -> Self {
        Self { id: id.to_string(), n }
    }
}

/// The future a task body returns.
pub type StepFuture = Pin<Box<dyn Future<Output = Result<Job, BoxError>> + Send>>;

/// Which task ran for which instance, in order: `"<instance>/<task>"`.
#[derive(Debug, Clone, Default)]
pub struct Runs(Arc<Mutex<Vec<String>>>);

impl Runs {
    /// Records one execution.
    pub fn record(&self, instance_id: &str, what: &str) {
        self.lock().push(format!("{instance_id}/{what}"));
    }

    /// How many times `what` ran for `instance_id`.
    #[must_use]
    pub fn count(&self, instance_id: &str, what: &str) -> usize {
        let key = format!("{instance_id}/{what}");
        self.lock().iter().filter(|k| **k == key).count()
    }

    /// Every execution, in order.
    #[must_use]
    pub fn all(&self) -> Vec<String> {
        self.lock().clone()
    }

    /// Executions per `"<instance>/<task>"`.
    #[must_use]
    pub fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for key in self.lock().iter() {
            *counts.entry(key.clone()).or_default() += 1;
        }
        counts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A task body that records its run as `name` and adds `add` to the job's number.
pub fn step(
    runs: &Runs,
    name: &'static str,
    add: u64,
) -> impl Fn(Job) -> StepFuture + Send + Sync + 'static {
    let runs = runs.clone();
    move |job: Job| {
        runs.record(&job.id, name);
        Box::pin(async move { Ok(Job { n: job.n + add, ..job }) })
    }
}

/// A task body that records `"<name>:start"`, waits until `gate` hands out a permit, then
/// records `name` and adds `add`. A gate never opened stands for a step that is still running
/// when its process dies.
pub fn gated_step(
    runs: &Runs,
    name: &'static str,
    add: u64,
    gate: &Arc<tokio::sync::Semaphore>,
) -> impl Fn(Job) -> StepFuture + Send + Sync + 'static {
    let runs = runs.clone();
    let gate = Arc::clone(gate);
    move |job: Job| {
        let runs = runs.clone();
        let gate = Arc::clone(&gate);
        Box::pin(async move {
            runs.record(&job.id, &format!("{name}:start"));
            gate.acquire().await.map_err(|e| -> BoxError { e.to_string().into() })?.forget();
            runs.record(&job.id, name);
            Ok(Job { n: job.n + add, ..job })
        })
    }
}

/// What a [`Flaky`] task is: its id, how many of its first attempts fail, what it adds on
/// success, and its retry policy.
pub trait FlakyKind: 'static {
    /// The task id.
    const ID: &'static str;
    /// How many attempts fail before one succeeds.
    const FAILURES: u32;
    /// What a successful attempt adds to the job's number.
    const ADD: u64;
    /// The task's retry policy.
    fn retries() -> RetryPolicy;
}

/// A task whose first [`FlakyKind::FAILURES`] attempts fail. Records `"<id>:attempt"` on every
/// attempt and `"<id>"` on success; [`Flaky::attempt_times`] gives when each attempt started.
#[derive(Debug)]
pub struct Flaky<K> {
    runs: Runs,
    attempts: Arc<AtomicU32>,
    at: Arc<Mutex<Vec<Instant>>>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Flaky<K> {
    /// A task recording into `runs`.
    #[must_use]
    pub fn new(runs: &Runs) -> Self {
        Self { runs: runs.clone(), attempts: Arc::default(), at: Arc::default(), kind: PhantomData }
    }

    /// When each attempt started (shared: still readable after the task moved into a workflow).
    #[must_use]
    pub fn attempt_times(&self) -> Arc<Mutex<Vec<Instant>>> {
        Arc::clone(&self.at)
    }
}

impl<K: FlakyKind> CoreTask for Flaky<K> {
    type Input = Job;
    type Output = Job;
    type Future = StepFuture;

    fn run(&self, job: Job) -> StepFuture {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        self.at.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Instant::now());
        self.runs.record(&job.id, &format!("{}:attempt", K::ID));
        let runs = self.runs.clone();
        Box::pin(async move {
            if attempt <= K::FAILURES {
                return Err(format!("{} attempt {attempt}: dependency unavailable", K::ID).into());
            }
            runs.record(&job.id, K::ID);
            Ok(Job { n: job.n + K::ADD, ..job })
        })
    }
}

impl<K: FlakyKind> RegisterableTask for Flaky<K> {
    fn task_id() -> &'static str {
        K::ID
    }
    fn metadata() -> TaskMetadata {
        TaskMetadata { retries: Some(K::retries()), ..TaskMetadata::default() }
    }
}

/// The workflow most cases run: reserve (+1) → charge (+10) → ship (+100); `charge` waits on
/// `gate` when one is given (see [`gated_step`]).
///
/// # Panics
/// Never: the workflow is well formed.
pub fn checkout(runs: &Runs, gate: Option<&Arc<Semaphore>>) -> Workflow<JsonCodec, Job, ()> {
    let builder =
        WorkflowBuilder::new(context("checkout")).then("reserve", step(runs, "reserve", 1));
    let builder = match gate {
        Some(gate) => builder.then("charge", gated_step(runs, "charge", 10, gate)),
        None => builder.then("charge", step(runs, "charge", 10)),
    };
    builder.then("ship", step(runs, "ship", 100)).build().expect("the checkout workflow builds")
}

/// The context of every test workflow: JSON codec, no metadata.
#[must_use]
pub fn context(workflow_id: &str) -> WorkflowContext<JsonCodec, ()> {
    WorkflowContext::new(workflow_id, Arc::new(JsonCodec), Arc::new(()))
}

/// Decodes a JSON-encoded value the runtime stored.
///
/// # Panics
/// When the bytes are not the JSON of a `T`.
#[must_use]
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("stored output is not the expected JSON ({e}): {bytes:?}"))
}

/// The final output of a completed workflow, decoded.
///
/// # Panics
/// When the workflow is not completed.
#[must_use]
pub fn final_output<T: serde::de::DeserializeOwned>(snapshot: &WorkflowSnapshot) -> T {
    match &snapshot.state {
        WorkflowSnapshotState::Completed { final_output } => decode(final_output),
        other => panic!("{} is not completed: {other:?}", snapshot.instance_id),
    }
}

/// How long a case waits for the runtime to bring a workflow where it expects it. Generous:
/// CI machines are slow and shared; a case that gets there returns as soon as it does.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `load_snapshot` until `done` holds, and returns that snapshot.
///
/// # Panics
/// After [`PATIENCE`], naming `what` and the last state seen.
pub async fn wait_until<B: SnapshotStore>(
    backend: &B,
    instance_id: &str,
    what: &str,
    done: impl Fn(&WorkflowSnapshot) -> bool,
) -> WorkflowSnapshot {
    let start = Instant::now();
    loop {
        let last: Result<WorkflowSnapshot, BackendError> = backend.load_snapshot(instance_id).await;
        if let Ok(snapshot) = &last
            && done(snapshot)
        {
            return snapshot.clone();
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{instance_id}: waited {PATIENCE:?} for {what}; last load_snapshot: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `runs` has recorded `what` for `instance_id`.
///
/// # Panics
/// After [`PATIENCE`].
pub async fn wait_for_run(runs: &Runs, instance_id: &str, what: &str) {
    let start = Instant::now();
    while runs.count(instance_id, what) == 0 {
        assert!(
            start.elapsed() < PATIENCE,
            "waited {PATIENCE:?} for {instance_id}/{what} to run; runs so far: {:?}",
            runs.all()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
