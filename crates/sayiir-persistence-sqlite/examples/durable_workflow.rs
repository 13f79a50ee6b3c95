//! A durable workflow: an order checkout of four steps, written with Sayiir's own API and run
//! by Sayiir's `CheckpointingRunner` on the embedded SQLite backend.
//!
//! ```text
//! cargo run --example durable_workflow
//! ```
//!
//! Each step takes about a second. Stop the program in the middle of one (Ctrl-C, `kill -9`,
//! pull the plug) and run the same command again: the steps that finished are not run again,
//! the order picks up at the step that was interrupted, and completes. When no order is left
//! unfinished, a run starts a new one.
//!
//! Options:
//! - `--db PATH`: the SQLite file (default: `sayiir-durable-workflow.db` in the system's
//!   temporary directory). Delete it to start from nothing.
//! - `--crash-in STEP`: exit abruptly in the middle of `STEP` (`reserve-stock`, `charge-card`,
//!   `ship` or `send-receipt`), to try a crash without a keyboard.
//! - `--step-ms N`: how long each step works, in milliseconds (default 1000).

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sayiir_persistence_sqlite::sayiir_core::context::WorkflowContext;
use sayiir_persistence_sqlite::sayiir_core::snapshot::WorkflowSnapshotState;
use sayiir_persistence_sqlite::sayiir_core::workflow::{Workflow, WorkflowBuilder, WorkflowStatus};
use sayiir_persistence_sqlite::{SnapshotStore, SqliteBackend};
use sayiir_runtime::CheckpointingRunner;
use sayiir_runtime::serialization::JsonCodec;
use serde::{Deserialize, Serialize};

/// The steps, in order.
const STEPS: [&str; 4] = ["reserve-stock", "charge-card", "ship", "send-receipt"];

/// What flows from step to step.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: String,
    items: u32,
    total_cents: u64,
    reserved: bool,
    payment: Option<String>,
    tracking: Option<String>,
    receipt: Option<String>,
}

struct Options {
    db: PathBuf,
    crash_in: Option<String>,
    step: Duration,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        db: std::env::temp_dir().join("sayiir-durable-workflow.db"),
        crash_in: None,
        step: Duration::from_millis(1000),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--db" => options.db = PathBuf::from(value()?),
            "--crash-in" => {
                let step = value()?;
                if !STEPS.contains(&step.as_str()) {
                    return Err(format!("--crash-in {step}: the steps are {}", STEPS.join(", ")));
                }
                options.crash_in = Some(step);
            }
            "--step-ms" => {
                let ms = value()?.parse().map_err(|e| format!("--step-ms: {e}"))?;
                options.step = Duration::from_millis(ms);
            }
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: durable_workflow [--db PATH] \
                     [--crash-in STEP] [--step-ms N]"
                ));
            }
        }
    }
    Ok(options)
}

/// One step's work: announce it, work for `step` (crashing half-way through if asked to),
/// then hand the order on.
async fn work(
    name: &'static str,
    step: Duration,
    crash_in: Option<&str>,
    order: Order,
    change: impl FnOnce(Order) -> Order,
) -> Order {
    println!("  running  {name} ({})", order.id);
    tokio::time::sleep(step / 2).await;
    if crash_in == Some(name) {
        println!("  CRASH    in the middle of {name} (--crash-in): the process exits now");
        std::process::exit(101);
    }
    tokio::time::sleep(step / 2).await;
    println!("  done     {name}");
    change(order)
}

fn checkout(options: &Options) -> Workflow<JsonCodec, Order, ()> {
    let crash_in: Option<Arc<str>> = options.crash_in.as_deref().map(Arc::from);
    let step = options.step;
    let crash = move || crash_in.clone();
    let context = WorkflowContext::new("checkout", Arc::new(JsonCodec), Arc::new(()));
    let (c1, c2, c3, c4) = (crash(), crash(), crash(), crash());
    WorkflowBuilder::new(context)
        .then("reserve-stock", move |order: Order| {
            let crash = c1.clone();
            async move {
                let order = work("reserve-stock", step, crash.as_deref(), order, |o| Order {
                    reserved: true,
                    ..o
                });
                Ok(order.await)
            }
        })
        .then("charge-card", move |order: Order| {
            let crash = c2.clone();
            async move {
                let order = work("charge-card", step, crash.as_deref(), order, |o| Order {
                    payment: Some(format!("pay_{}_{}", o.id, o.total_cents)),
                    ..o
                });
                Ok(order.await)
            }
        })
        .then("ship", move |order: Order| {
            let crash = c3.clone();
            async move {
                let order = work("ship", step, crash.as_deref(), order, |o| Order {
                    tracking: Some(format!("TRK-{}", o.id.to_uppercase())),
                    ..o
                });
                Ok(order.await)
            }
        })
        .then("send-receipt", move |order: Order| {
            let crash = c4.clone();
            async move {
                let order = work("send-receipt", step, crash.as_deref(), order, |o| Order {
                    receipt: Some(format!(
                        "receipt for {} item(s), {} cents",
                        o.items, o.total_cents
                    )),
                    ..o
                });
                Ok(order.await)
            }
        })
        .build()
        .map_err(|e| e.to_string())
        .unwrap_or_else(|e| panic!("the checkout workflow is well formed: {e}"))
}

/// The first order of this workflow that has not finished, with the number of orders seen.
async fn unfinished_order(
    backend: &SqliteBackend,
    workflow: &Workflow<JsonCodec, Order, ()>,
) -> Result<(Option<String>, usize), Box<dyn Error>> {
    let mut ids = backend.list_snapshots().await?;
    ids.sort();
    let mut unfinished = None;
    for id in &ids {
        let snapshot = backend.load_snapshot(id).await?;
        if snapshot.definition_hash == workflow.definition_hash()
            && !snapshot.state.is_terminal()
            && unfinished.is_none()
        {
            unfinished = Some(id.clone());
        }
    }
    Ok((unfinished, ids.len()))
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
    let backend = SqliteBackend::open(&options.db).await?;
    println!("store    {} (SQLite; delete it to start from nothing)", options.db.display());
    let workflow = checkout(&options);
    let runner = CheckpointingRunner::new(backend.clone());

    let (unfinished, seen) = unfinished_order(&backend, &workflow).await?;
    let (id, status) = match unfinished {
        Some(id) => {
            let snapshot = backend.load_snapshot(&id).await?;
            println!("resuming {id}, interrupted in an earlier run");
            for step in STEPS {
                if snapshot.get_task_result(step).is_some() {
                    println!("  skipped  {step} (finished before the interruption, not run again)");
                }
            }
            let status = runner.resume(&workflow, &id).await?;
            (id, status)
        }
        None => {
            let id = format!("order-{}", seen + 1);
            println!("starting {id}");
            let order = Order {
                id: id.clone(),
                items: 3,
                total_cents: 4_200,
                reserved: false,
                payment: None,
                tracking: None,
                receipt: None,
            };
            let status = runner.run(&workflow, id.clone(), order).await?;
            (id, status)
        }
    };

    match status {
        WorkflowStatus::Completed => {
            let snapshot = backend.load_snapshot(&id).await?;
            if let WorkflowSnapshotState::Completed { final_output } = &snapshot.state {
                let order: Order = serde_json::from_slice(final_output)?;
                println!(
                    "completed {id}: payment {}, tracking {}, {}",
                    order.payment.as_deref().unwrap_or("-"),
                    order.tracking.as_deref().unwrap_or("-"),
                    order.receipt.as_deref().unwrap_or("-"),
                );
            }
            println!("run the same command again to start another order");
            Ok(())
        }
        other => Err(format!("{id} ended as {other:?}").into()),
    }
}
