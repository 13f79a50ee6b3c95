//! The runtime's own workloads, through the real `sayiir-runtime` 0.4.0: a pooled drain
//! (`PooledWorker`s, each on its own backend handle, draining a batch of workflows) and
//! `CheckpointingRunner` workflows of 10 steps.
//!
//! Written against `sayiir_runtime::persistence`, the storage traits the runtime was compiled
//! with: in this workspace those are ours (the `[patch.crates-io]`), in `benches/upstream`
//! they are crates.io's 0.4.0, so the same code measures upstream's own backends there.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sayiir_core::context::WorkflowContext;
use sayiir_core::registry::TaskRegistry;
use sayiir_core::workflow::{Workflow, WorkflowBuilder, WorkflowStatus};
use sayiir_runtime::persistence::{PersistentBackend, TaskClaimStore};
use sayiir_runtime::serialization::JsonCodec;
use sayiir_runtime::{CheckpointingRunner, PooledWorker, WorkflowClient};
use serde::{Deserialize, Serialize};

/// The shape of a pooled drain.
#[derive(Debug, Clone)]
pub struct Drain {
    /// `PooledWorker`s, each on its own backend handle (its own pool, as on its own machine).
    pub workers: usize,
    /// Workflows submitted.
    pub workflows: usize,
    /// Sequential tasks per workflow.
    pub tasks: usize,
    /// The workers' poll interval.
    pub poll: Duration,
    /// How long each task body works (a `tokio::time::sleep`).
    pub work: Duration,
}

impl Default for Drain {
    /// 3 workers × 60 workflows × 4 tasks, poll 5 ms, 1 ms task bodies.
    fn default() -> Self {
        Self {
            workers: 3,
            workflows: 60,
            tasks: 4,
            poll: Duration::from_millis(5),
            work: Duration::from_millis(1),
        }
    }
}

impl Drain {
    /// Tasks run by one drain.
    pub fn total_tasks(&self) -> usize {
        self.workflows * self.tasks
    }
}

/// What flows from task to task.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    instance: String,
    step: u32,
}

/// Runs per `"<instance>/<task>"`, and the total.
#[derive(Default)]
struct Runs {
    per_task: Mutex<HashMap<String, u32>>,
    total: AtomicUsize,
}

fn workflow(
    name: &str,
    tasks: usize,
    work: Duration,
    runs: &Arc<Runs>,
) -> Workflow<JsonCodec, Job, ()> {
    let step = |task: String| {
        let runs = Arc::clone(runs);
        move |job: Job| {
            let runs = Arc::clone(&runs);
            let key = format!("{}/{task}", job.instance);
            async move {
                if !work.is_zero() {
                    tokio::time::sleep(work).await;
                }
                *runs
                    .per_task
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(key)
                    .or_default() += 1;
                runs.total.fetch_add(1, Ordering::AcqRel);
                Ok(Job { step: job.step + 1, ..job })
            }
        }
    };
    let context = WorkflowContext::new(name, Arc::new(JsonCodec), Arc::new(()));
    let mut builder = WorkflowBuilder::new(context).then("task-1", step("task-1".into()));
    for i in 2..=tasks {
        let task = format!("task-{i}");
        builder = builder.then(&task, step(task.clone()));
    }
    builder.build().unwrap_or_else(|e| panic!("the benchmark workflow is well formed: {e}"))
}

/// One pooled drain: connects `shape.workers` handles and a client handle with `connect` (at
/// once, inside the measured time, as a deployment starting up), submits the workflows, and
/// returns the time until every workflow is Completed, and the tasks that ran more than once
/// (`"<instance>/<task>"`). Panics if a task never ran.
///
/// `run` keeps instance ids apart when several drains share a store.
pub async fn pooled_drain<B, F, Fut>(
    shape: &Drain,
    run: &str,
    connect: F,
) -> (Duration, Vec<String>)
where
    B: PersistentBackend + TaskClaimStore + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = B>,
{
    let runs = Arc::new(Runs::default());
    let workflow = Arc::new(workflow("drain", shape.tasks, shape.work, &runs));
    let started = Instant::now();
    let handles = futures::future::join_all((0..=shape.workers).map(|_| connect())).await;
    let mut handles = handles.into_iter();
    let client = WorkflowClient::new(handles.next().expect("one handle per worker and the client"));
    let workers: Vec<_> = handles
        .enumerate()
        .map(|(i, backend)| {
            let registry = vec![(workflow.definition_hash().to_string(), Arc::clone(&workflow))];
            PooledWorker::new(format!("{run}-worker-{i}"), backend, TaskRegistry::new())
                .with_claim_ttl(Some(Duration::from_secs(30)))
                .spawn(shape.poll, registry)
        })
        .collect();
    let ids: Vec<String> = (0..shape.workflows).map(|i| format!("{run}-{i:05}")).collect();
    for id in &ids {
        let job = Job { instance: id.clone(), step: 0 };
        client.submit(&*workflow, id.clone(), job).await.expect("submit");
    }
    // Every task ran, then every workflow's final save landed.
    let deadline = Instant::now() + Duration::from_secs(300);
    while runs.total.load(Ordering::Acquire) < shape.total_tasks() {
        assert!(Instant::now() < deadline, "the drain did not finish within 300 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for id in &ids {
        loop {
            match client.status(id).await.expect("status") {
                WorkflowStatus::Completed => break,
                WorkflowStatus::InProgress => {
                    assert!(Instant::now() < deadline, "{id} did not complete within 300 s");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                other => panic!("{id} ended as {other:?}"),
            }
        }
    }
    let elapsed = started.elapsed();
    for worker in &workers {
        worker.shutdown();
    }
    for worker in workers {
        worker.join().await.expect("the worker's loop ended without a storage error");
    }
    let per_task = runs.per_task.lock().unwrap_or_else(PoisonError::into_inner);
    assert_eq!(per_task.len(), shape.total_tasks(), "every task ran");
    let twice = per_task.iter().filter(|(_, n)| **n > 1).map(|(task, _)| task.clone()).collect();
    (elapsed, twice)
}

/// Steps of a [`checkpointing`] workflow.
pub const CHECKPOINTING_STEPS: usize = 10;

/// `workflows` `CheckpointingRunner` runs of a 10-step workflow (no-op steps), `concurrency`
/// at a time, on one backend handle; returns the time they took. Panics unless every run
/// completes and every step ran once.
pub async fn checkpointing<B>(
    backend: B,
    run: &str,
    workflows: usize,
    concurrency: usize,
) -> Duration
where
    B: PersistentBackend + 'static,
{
    let runs = Arc::new(Runs::default());
    let workflow = workflow("checkpointing", CHECKPOINTING_STEPS, Duration::ZERO, &runs);
    let runner = CheckpointingRunner::new(backend);
    let started = Instant::now();
    let ids: Vec<String> = (0..workflows).map(|i| format!("{run}-{i:05}")).collect();
    for batch in ids.chunks(concurrency.max(1)) {
        let outcomes =
            futures::future::join_all(batch.iter().map(|id| {
                runner.run(&workflow, id.clone(), Job { instance: id.clone(), step: 0 })
            }))
            .await;
        for (id, outcome) in batch.iter().zip(outcomes) {
            match outcome.expect("the checkpointing run") {
                WorkflowStatus::Completed => {}
                other => panic!("{id} ended as {other:?}"),
            }
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(runs.total.load(Ordering::Acquire), workflows * CHECKPOINTING_STEPS);
    elapsed
}

/// Tasks per second of `tasks` run in `elapsed`.
pub fn tasks_per_second(tasks: usize, elapsed: Duration) -> f64 {
    tasks as f64 / elapsed.as_secs_f64()
}

/// The median of `values` (sorted in place); 0 for none.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// A store the runtime workloads run on.
pub trait RuntimeTarget: Sized {
    /// The backend type.
    type Backend: PersistentBackend + TaskClaimStore + Clone + 'static;
    /// Name in the report.
    const NAME: &'static str;
    /// Whether a task run twice fails the benchmark (`true` for every backend of ours; the
    /// report only notes it for a backend that does not promise it).
    const EXACTLY_ONCE: bool = true;
    /// A fresh, isolated store, its schema already in place (as in a running deployment).
    fn open() -> impl Future<Output = Self>;
    /// A new handle on the store (its own pool or connection), as a new process would open.
    fn connect(&self) -> impl Future<Output = Self::Backend>;
    /// Removes what `open` created.
    fn cleanup(self) -> impl Future<Output = ()>;
}

/// Tasks/s of every run, per backend and workload, in the order first measured.
#[derive(Debug, Default)]
pub struct Results {
    rows: Vec<(String, String, Vec<f64>)>,
    notes: Vec<String>,
}

impl Results {
    fn push(&mut self, backend: &str, workload: &str, tasks_per_second: f64) {
        match self.rows.iter_mut().find(|(b, w, _)| b == backend && w == workload) {
            Some((_, _, values)) => values.push(tasks_per_second),
            None => self.rows.push((backend.into(), workload.into(), vec![tasks_per_second])),
        }
    }

    /// The median tasks/s of `backend` on `workload`.
    pub fn median(&self, backend: &str, workload: &str) -> Option<f64> {
        let (_, _, values) = self.rows.iter().find(|(b, w, _)| b == backend && w == workload)?;
        Some(median(&mut values.clone()))
    }

    /// A markdown table: per workload and backend, the median tasks/s, every run, the ratio
    /// to `reference` on the same workload, and the target from `targets` (backend, workload
    /// → least ratio) marked met or missed.
    pub fn report(&self, reference: &str, targets: &[(&str, &str, f64)]) -> String {
        let mut out = String::from(
            "| workload | backend | median tasks/s | runs (tasks/s) | ratio to memory | target |\n\
             |---|---|---:|---|---:|---|\n",
        );
        for (backend, workload, values) in &self.rows {
            let median = median(&mut values.clone());
            let runs: Vec<String> = values.iter().map(|v| format!("{v:.0}")).collect();
            let ratio = self.median(reference, workload).map(|r| median / r);
            let target = targets.iter().find(|(b, w, _)| b == backend && w == workload);
            let verdict = match (target, ratio) {
                (Some((_, _, least)), Some(ratio)) if ratio >= *least => format!("≥ {least}: met"),
                (Some((_, _, least)), Some(_)) => format!("≥ {least}: **missed**"),
                _ => String::new(),
            };
            let ratio = ratio.map(|r| format!("{r:.2}")).unwrap_or_default();
            out.push_str(&format!(
                "| {workload} | {backend} | {median:.0} | {} | {ratio} | {verdict} |\n",
                runs.join(", ")
            ));
        }
        for note in &self.notes {
            out.push_str(&format!("\n{note}\n"));
        }
        out
    }
}

/// The drain workload's name in [`Results`].
pub const DRAIN: &str = "pooled drain";

/// One round on `T`, on a fresh store: a pooled drain of `shape`, then 20 checkpointing runs
/// one at a time and 64 sixteen at a time, each batch on a new handle. Prints each result as
/// it comes.
///
/// With `SAYIIR_BENCH_PROFILE` set, prints where the drain's time went ([`crate::profile`]);
/// with `SAYIIR_BENCH_BACKENDS` set (comma-separated names), rounds on other backends are
/// skipped.
pub async fn measure_round<T: RuntimeTarget>(shape: &Drain, round: usize, results: &mut Results) {
    if !selected(T::NAME) {
        return;
    }
    let store = T::open().await;
    crate::profile::take(1);
    let (elapsed, twice) = pooled_drain(shape, &format!("r{round}"), || store.connect()).await;
    if crate::profile::enabled() {
        println!(
            "round {round} {}: drain spans (ms per unit = per task)\n{}",
            T::NAME,
            crate::profile::take(shape.total_tasks())
        );
    }
    assert!(
        twice.is_empty() || !T::EXACTLY_ONCE,
        "{}: each task runs exactly once; more than once: {twice:?}",
        T::NAME
    );
    if !twice.is_empty() {
        let note = format!("{}, round {round}: tasks run twice: {twice:?}", T::NAME);
        println!("{note}");
        results.notes.push(note);
    }
    let rate = tasks_per_second(shape.total_tasks(), elapsed);
    println!("round {round} {:>8} {DRAIN}: {elapsed:.2?}, {rate:.0} tasks/s", T::NAME);
    results.push(T::NAME, DRAIN, rate);
    for (workflows, concurrency) in [(20, 1), (64, 16)] {
        let backend = store.connect().await;
        let run = format!("r{round}-c{concurrency}");
        let elapsed = checkpointing(backend, &run, workflows, concurrency).await;
        let rate = tasks_per_second(workflows * CHECKPOINTING_STEPS, elapsed);
        let workload = format!("checkpointing, concurrency {concurrency}");
        println!("round {round} {:>8} {workload}: {elapsed:.2?}, {rate:.0} tasks/s", T::NAME);
        results.push(T::NAME, &workload, rate);
    }
    store.cleanup().await;
}

/// The runtime a runtime bench runs on, after printing the drain's shape; `None` unless the
/// binary was started by `cargo bench` (which passes `--bench`): under `cargo test --benches`
/// a bench only checks that it builds and starts.
pub fn bench_runtime(shape: &Drain) -> Option<tokio::runtime::Runtime> {
    if !std::env::args().any(|a| a == "--bench") {
        return None;
    }
    println!(
        "pooled drain: {} workers × {} workflows × {} tasks, poll {:?}, task bodies {:?}; {} rounds",
        shape.workers,
        shape.workflows,
        shape.tasks,
        shape.poll,
        shape.work,
        rounds()
    );
    crate::profile::install();
    Some(tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime"))
}

/// Whether `SAYIIR_BENCH_BACKENDS` (comma-separated backend names; all when unset) selects
/// the backend `name`.
pub fn selected(name: &str) -> bool {
    std::env::var("SAYIIR_BENCH_BACKENDS")
        .map_or(true, |names| names.split(',').any(|n| n.trim() == name))
}

/// How many rounds to run: `SAYIIR_BENCH_ROUNDS`, default 5.
pub fn rounds() -> usize {
    std::env::var("SAYIIR_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5)
}

/// Prints `report` and writes it to `target/sayiir-bench/<name>.md`.
pub fn publish(name: &str, report: &str) {
    println!("\n{report}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/sayiir-bench");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{name}.md")), report);
}
