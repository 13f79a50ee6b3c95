//! Several Sayiir `PooledWorker`s, each with its own connection pool, draining a batch of
//! workflows from PostgreSQL: every task runs exactly once, whichever worker claims it.
//!
//! ```text
//! cargo run --example pooled_workers                    # 4 workers, 200 workflows × 4 tasks
//! cargo run --example pooled_workers -- --workers 8 --workflows 1000 --tasks 3
//! ```
//!
//! The server is `SAYIIR_POSTGRES_URL`, or `postgres://postgres@127.0.0.1:5432/test` (start one
//! with `scripts/services.sh` from the repository root, or `docker compose up -d --wait`).
//! The run uses a schema of its own, dropped at the end (`--keep` keeps it).
//!
//! Options: `--workers N`, `--workflows N`, `--tasks N` (per workflow), `--poll-ms N` (how
//! often an idle worker asks for work, default 5), `--task-ms N` (how long each task works,
//! default 1), `--keep`.

use std::collections::HashMap;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sayiir_persistence_postgres::sayiir_core::context::WorkflowContext;
use sayiir_persistence_postgres::sayiir_core::registry::TaskRegistry;
use sayiir_persistence_postgres::sayiir_core::snapshot::WorkflowSnapshotState;
use sayiir_persistence_postgres::sayiir_core::workflow::{Workflow, WorkflowBuilder};
use sayiir_persistence_postgres::{PostgresBackend, PostgresOptions, SnapshotStore};
use sayiir_runtime::serialization::JsonCodec;
use sayiir_runtime::{PooledWorker, WorkflowClient};
use serde::{Deserialize, Serialize};

/// What flows from task to task: the instance it belongs to and a running total.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    instance: String,
    total: u64,
}

struct Options {
    url: String,
    workers: usize,
    workflows: usize,
    tasks: usize,
    poll: Duration,
    task: Duration,
    keep: bool,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        url: std::env::var("SAYIIR_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string()),
        workers: 4,
        workflows: 200,
        tasks: 4,
        poll: Duration::from_millis(5),
        task: Duration::from_millis(1),
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--keep" {
            options.keep = true;
            continue;
        }
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        let number = || value.parse::<usize>().map_err(|e| format!("{arg} {value}: {e}"));
        match arg.as_str() {
            "--workers" => options.workers = number()?.max(1),
            "--workflows" => options.workflows = number()?,
            "--tasks" => options.tasks = number()?.max(1),
            "--poll-ms" => options.poll = Duration::from_millis(number()? as u64),
            "--task-ms" => options.task = Duration::from_millis(number()? as u64),
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: pooled_workers [--workers N] \
                     [--workflows N] [--tasks N] [--poll-ms N] [--task-ms N] [--keep]"
                ));
            }
        }
    }
    Ok(options)
}

/// Which tasks ran, per `"<instance>/<task>"`.
type Runs = Arc<Mutex<HashMap<String, u32>>>;

fn batch_workflow(tasks: usize, work: Duration, runs: &Runs) -> Workflow<JsonCodec, Job, ()> {
    let step = |name: String| {
        let runs = Arc::clone(runs);
        move |job: Job| {
            let key = format!("{}/{name}", job.instance);
            let runs = Arc::clone(&runs);
            async move {
                tokio::time::sleep(work).await;
                *runs
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(key)
                    .or_default() += 1;
                Ok(Job { total: job.total + 1, ..job })
            }
        }
    };
    let context = WorkflowContext::new("batch", Arc::new(JsonCodec), Arc::new(()));
    let mut builder = WorkflowBuilder::new(context).then("task-1", step("task-1".into()));
    for i in 2..=tasks {
        let name = format!("task-{i}");
        builder = builder.then(&name, step(name.clone()));
    }
    builder.build().unwrap_or_else(|e| panic!("the batch workflow is well formed: {e}"))
}

async fn connect(options: &Options, schema: &str) -> Result<PostgresBackend, Box<dyn Error>> {
    let pg = PostgresOptions::default()
        .schema(schema)
        .max_connections(4)
        .application_name("pooled_workers");
    PostgresBackend::connect_with(&options.url, pg).await.map_err(|e| {
        format!(
            "{e}\nIs PostgreSQL running at {}? Start one with scripts/services.sh, or set \
             SAYIIR_POSTGRES_URL.",
            options.url
        )
        .into()
    })
}

#[tokio::main]
async fn main() {
    if let Err(error) = run().await {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let options = options()?;
    let schema = format!("sayiir_pooled_workers_{}", std::process::id());
    let admin = connect(&options, &schema).await?;
    println!(
        "PostgreSQL {}, schema {schema}: {} workers, {} workflows × {} tasks, poll every {:?}",
        options.url, options.workers, options.workflows, options.tasks, options.poll
    );
    let outcome = drain(&options, &schema, &admin).await;
    if options.keep {
        println!("kept schema {schema}");
    } else {
        let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        sqlx::query(sqlx::AssertSqlSafe(drop)).execute(admin.pool()).await?;
    }
    admin.close().await;
    outcome
}

async fn drain(
    options: &Options,
    schema: &str,
    admin: &PostgresBackend,
) -> Result<(), Box<dyn Error>> {
    let runs: Runs = Arc::default();
    let workflow = Arc::new(batch_workflow(options.tasks, options.task, &runs));
    let expected_total = options.workflows * options.tasks;

    let started = Instant::now();
    // Each worker on its own pool, as on its own machine.
    let mut workers = Vec::new();
    for i in 0..options.workers {
        let backend = connect(options, schema).await?;
        let registry = vec![(workflow.definition_hash().to_string(), Arc::clone(&workflow))];
        let worker = PooledWorker::new(format!("worker-{i}"), backend, TaskRegistry::new())
            .with_claim_ttl(Some(Duration::from_secs(30)))
            .spawn(options.poll, registry);
        workers.push(worker);
    }
    let client = WorkflowClient::new(connect(options, schema).await?);
    let ids: Vec<String> = (0..options.workflows).map(|i| format!("batch-{i:06}")).collect();
    for id in &ids {
        client.submit(&*workflow, id.clone(), Job { instance: id.clone(), total: 0 }).await?;
    }
    println!("submitted {} workflows in {:.2?}", ids.len(), started.elapsed());

    let mut last_report = Instant::now();
    let mut pending: Vec<&String> = ids.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::with_capacity(pending.len());
        for id in pending {
            match &admin.load_snapshot(id).await?.state {
                WorkflowSnapshotState::Completed { .. } => {}
                WorkflowSnapshotState::InProgress { .. } => still.push(id),
                other => return Err(format!("{id} ended as {other:?}").into()),
            }
        }
        pending = still;
        if last_report.elapsed() >= Duration::from_millis(500) || pending.is_empty() {
            let tasks_done: u32 = runs.lock().map(|r| r.values().sum()).unwrap_or_default();
            println!(
                "  {:>6.2?}  workflows done {:>5}/{}  tasks run {:>6}/{}",
                started.elapsed(),
                ids.len() - pending.len(),
                ids.len(),
                tasks_done,
                expected_total
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    for worker in &workers {
        worker.shutdown();
    }
    for worker in workers {
        worker.join().await?;
    }

    let runs = runs.lock().map(|r| r.clone()).unwrap_or_default();
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
    if runs.len() != expected_total || !twice.is_empty() {
        return Err(format!(
            "expected each of {expected_total} tasks to run exactly once; {} ran, more than once: {twice:?}",
            runs.len()
        )
        .into());
    }
    println!(
        "drained {} workflows × {} tasks = {expected_total} tasks in {elapsed:.2?}: {:.0} tasks/s; \
         each task ran exactly once",
        options.workflows,
        options.tasks,
        expected_total as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
