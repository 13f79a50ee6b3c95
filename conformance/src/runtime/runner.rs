//! `CheckpointingRunner` and `WorkflowClient` on the backend under test: every node kind, the
//! client's entry points, retries, and a process that dies in the middle of a step.

use std::sync::Arc;
use std::time::Duration;

use sayiir_persistence::sayiir_core::LoopResult;
use sayiir_persistence::sayiir_core::branch_key::BranchKey;
use sayiir_persistence::sayiir_core::error::BoxError;
use sayiir_persistence::sayiir_core::snapshot::{ExecutionPosition, WorkflowSnapshotState};
use sayiir_persistence::sayiir_core::task::{BranchEnvelope, BranchOutputs, RetryPolicy};
use sayiir_persistence::sayiir_core::workflow::{Workflow, WorkflowBuilder, WorkflowStatus};
use sayiir_persistence::{SignalStore, SnapshotStore};
use sayiir_runtime::serialization::JsonCodec;
use sayiir_runtime::{CheckpointingRunner, RuntimeError, WorkflowClient};
use tokio::sync::Semaphore;

use super::{
    Flaky, FlakyKind, Job, Runs, RuntimeHarness, checkout, context, decode, final_output, step,
    wait_for_run,
};

async fn runner<H: RuntimeHarness>(h: &H) -> CheckpointingRunner<H::Backend> {
    CheckpointingRunner::new(h.open_handle().await)
}

async fn client<H: RuntimeHarness>(h: &H) -> WorkflowClient<H::Backend> {
    WorkflowClient::new(h.open_handle().await)
}

/// A `CheckpointingRunner::run` in a thread and runtime of its own, as in a process of its
/// own, that can be killed mid-step.
struct Process {
    kill: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Option<Result<WorkflowStatus, RuntimeError>>>,
}

impl Process {
    fn start<H: RuntimeHarness>(
        h: &Arc<H>,
        workflow: Arc<Workflow<JsonCodec, Job, ()>>,
        instance_id: &str,
    ) -> Self {
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let h = Arc::clone(h);
        let id = instance_id.to_string();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the runner's process");
            runtime.block_on(async move {
                let runner = runner(&*h).await;
                tokio::select! {
                    status = runner.run(&workflow, id.clone(), Job::new(&id, 0)) => Some(status),
                    _ = killed => None,
                }
            })
        });
        Self { kill, thread }
    }

    /// Kills the process: the run is dropped wherever it is. `None` if it was killed,
    /// else what the run returned.
    async fn kill(self) -> Option<Result<WorkflowStatus, RuntimeError>> {
        let Self { kill, thread } = self;
        let _ = kill.send(());
        Self::join(thread).await
    }

    /// Waits for the run to end by itself.
    async fn wait(self) -> Option<Result<WorkflowStatus, RuntimeError>> {
        // Dropping the sender would kill the run: keep it until the thread has ended.
        let Self { kill, thread } = self;
        let ended = Self::join(thread).await;
        drop(kill);
        ended
    }

    async fn join(
        thread: std::thread::JoinHandle<Option<Result<WorkflowStatus, RuntimeError>>>,
    ) -> Option<Result<WorkflowStatus, RuntimeError>> {
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .expect("joining the runner's thread")
            .expect("the runner's thread did not panic")
    }
}

#[track_caller]
fn assert_completed(status: &WorkflowStatus) {
    assert!(matches!(status, WorkflowStatus::Completed), "expected Completed, got {status:?}");
}

/// Four steps run in order, each exactly once; the output and every intermediate result are
/// readable afterwards, also through a second handle.
pub async fn sequence_runs_each_step_once<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let workflow = WorkflowBuilder::new(context("sequence"))
        .then("reserve", step(&runs, "reserve", 1))
        .then("charge", step(&runs, "charge", 10))
        .then("ship", step(&runs, "ship", 100))
        .then("notify", step(&runs, "notify", 1000))
        .build()
        .unwrap();
    let status = runner(&*h).await.run(&workflow, "seq-1", Job::new("seq-1", 0)).await.unwrap();
    assert_completed(&status);
    let snapshot = h.backend().load_snapshot("seq-1").await.unwrap();
    assert_eq!(final_output::<Job>(&snapshot), Job::new("seq-1", 1111));
    for task in ["reserve", "charge", "ship", "notify"] {
        assert_eq!(runs.count("seq-1", task), 1, "{task} ran {:?}", runs.all());
    }
    let client = client(&*h).await;
    assert!(matches!(client.status("seq-1").await.unwrap(), WorkflowStatus::Completed));
    let charged = client.get_task_result("seq-1", "charge").await.unwrap();
    let charged = charged.expect("the result of charge is kept after completion");
    assert_eq!(decode::<Job>(&charged), Job::new("seq-1", 11));
}

/// The process dies while `charge` runs: the same workflow resumed by a new runner on a new
/// handle skips `reserve`, runs `charge` again from its input and completes.
pub async fn crash_mid_step_resumes_from_checkpoint<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let never_opened = Arc::new(Semaphore::new(0));
    let doomed = Arc::new(checkout(&runs, Some(&never_opened)));
    let process = Process::start(&h, doomed, "crash-1");
    wait_for_run(&runs, "crash-1", "charge:start").await;
    assert!(process.kill().await.is_none(), "the run must have died mid-step");

    let checkpoint = h.backend().load_snapshot("crash-1").await.unwrap();
    assert!(checkpoint.get_task_result("reserve").is_some(), "reserve was checkpointed");
    assert!(checkpoint.get_task_result("charge").is_none(), "charge never finished");

    let status = runner(&*h).await.resume(&checkout(&runs, None), "crash-1").await.unwrap();
    assert_completed(&status);
    let snapshot = h.backend().load_snapshot("crash-1").await.unwrap();
    assert_eq!(final_output::<Job>(&snapshot), Job::new("crash-1", 111));
    assert_eq!(runs.count("crash-1", "reserve"), 1, "a checkpointed step never runs again");
    assert_eq!(runs.count("crash-1", "charge:start"), 1);
    assert_eq!(runs.count("crash-1", "charge"), 1);
    assert_eq!(runs.count("crash-1", "ship"), 1);
}

/// Both branches of a fork run once, the join sees both outputs.
pub async fn fork_join_runs_each_branch_once<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let join_runs = runs.clone();
    let workflow = WorkflowBuilder::new(context("fork"))
        .then("prepare", step(&runs, "prepare", 1))
        .branches(|b| {
            b.add("left", step(&runs, "left", 10));
            b.add("right", step(&runs, "right", 100));
        })
        .join("combine", move |outputs: BranchOutputs<JsonCodec>| {
            let runs = join_runs.clone();
            async move {
                let left: Job = outputs.get_by_id("left")?;
                let right: Job = outputs.get_by_id("right")?;
                runs.record(&left.id, "combine");
                Ok::<_, BoxError>(Job { n: left.n + right.n, ..left })
            }
        })
        .build()
        .unwrap();
    let status = runner(&*h).await.run(&workflow, "fork-1", Job::new("fork-1", 0)).await.unwrap();
    assert_completed(&status);
    let snapshot = h.backend().load_snapshot("fork-1").await.unwrap();
    assert_eq!(final_output::<Job>(&snapshot), Job::new("fork-1", 11 + 101));
    for task in ["prepare", "left", "right", "combine"] {
        assert_eq!(runs.count("fork-1", task), 1, "{task} ran {:?}", runs.all());
    }
}

/// A durable delay parks the workflow (`Waiting`, stored `AtDelay`); resumed after its wake
/// time from another handle, the workflow goes on without running the first step again.
pub async fn delay_parks_then_resumes<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let workflow = WorkflowBuilder::new(context("delay"))
        .then("before", step(&runs, "before", 1))
        .delay("cool-off", Duration::from_millis(300))
        .then("after", step(&runs, "after", 10))
        .build()
        .unwrap();
    let status = runner(&*h).await.run(&workflow, "delay-1", Job::new("delay-1", 0)).await.unwrap();
    let WorkflowStatus::Waiting { wake_at, delay_id } = status else {
        panic!("expected Waiting, got {status:?}");
    };
    assert_eq!(delay_id, "cool-off");
    let parked = h.backend().load_snapshot("delay-1").await.unwrap();
    assert!(
        matches!(
            &parked.state,
            WorkflowSnapshotState::InProgress { position: ExecutionPosition::AtDelay { .. }, .. }
        ),
        "stored parked: {:?}",
        parked.state
    );
    assert!(matches!(
        client(&*h).await.status("delay-1").await.unwrap(),
        WorkflowStatus::Waiting { .. }
    ));

    let until_wake = (wake_at - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(until_wake + Duration::from_millis(50)).await;
    let status = runner(&*h).await.resume(&workflow, "delay-1").await.unwrap();
    assert_completed(&status);
    let snapshot = h.backend().load_snapshot("delay-1").await.unwrap();
    assert_eq!(final_output::<Job>(&snapshot), Job::new("delay-1", 11));
    assert_eq!(runs.count("delay-1", "before"), 1);
    assert_eq!(runs.count("delay-1", "after"), 1);
}

fn approval(runs: &Runs) -> Workflow<JsonCodec, Job, ()> {
    WorkflowBuilder::new(context("approval"))
        .then("prepare", step(runs, "prepare", 1))
        .wait_for_signal("await-approval", "approval", None)
        .then("finish", step(runs, "finish", 10))
        .build()
        .unwrap()
}

/// A workflow waits for an external event (`AwaitingSignal`); the event sent through the
/// client becomes the next step's input.
pub async fn signal_waits_then_event_resumes<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let workflow = approval(&runs);
    let status = runner(&*h).await.run(&workflow, "sig-1", Job::new("sig-1", 0)).await.unwrap();
    let WorkflowStatus::AwaitingSignal { signal_name, .. } = &status else {
        panic!("expected AwaitingSignal, got {status:?}");
    };
    assert_eq!(signal_name, "approval");
    // Resuming before the event arrives waits again and runs nothing.
    let again = runner(&*h).await.resume(&workflow, "sig-1").await.unwrap();
    assert!(matches!(again, WorkflowStatus::AwaitingSignal { .. }), "{again:?}");

    let payload = serde_json::to_vec(&Job::new("sig-1", 500)).unwrap();
    client(&*h).await.send_event("sig-1", "approval", payload.into()).await.unwrap();
    let status = runner(&*h).await.resume(&workflow, "sig-1").await.unwrap();
    assert_completed(&status);
    let snapshot = h.backend().load_snapshot("sig-1").await.unwrap();
    assert_eq!(final_output::<Job>(&snapshot), Job::new("sig-1", 510));
    assert_eq!(runs.count("sig-1", "prepare"), 1);
    assert_eq!(runs.count("sig-1", "finish"), 1);
}

/// An event sent before the workflow reaches its wait is buffered and consumed there.
pub async fn event_sent_early_is_consumed<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let payload = serde_json::to_vec(&Job::new("sig-2", 7)).unwrap();
    client(&*h).await.send_event("sig-2", "approval", payload.into()).await.unwrap();
    let status =
        runner(&*h).await.run(&approval(&runs), "sig-2", Job::new("sig-2", 0)).await.unwrap();
    assert_completed(&status);
    let snapshot = h.backend().load_snapshot("sig-2").await.unwrap();
    assert_eq!(final_output::<Job>(&snapshot), Job::new("sig-2", 17));
    assert_eq!(h.backend().consume_event("sig-2", "approval").await.unwrap(), None);
}

fn held(runs: &Runs, hold: Duration) -> Workflow<JsonCodec, Job, ()> {
    WorkflowBuilder::new(context("held"))
        .then("reserve", step(runs, "reserve", 1))
        .delay("hold", hold)
        .then("ship", step(runs, "ship", 10))
        .build()
        .unwrap()
}

/// A cancel sent through the client while the workflow is parked stops it at its next
/// boundary: `Cancelled` with the reason, and the step after never runs.
pub async fn cancel_through_client<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let workflow = held(&runs, Duration::from_secs(3600));
    let status =
        runner(&*h).await.run(&workflow, "cancel-1", Job::new("cancel-1", 0)).await.unwrap();
    assert!(matches!(status, WorkflowStatus::Waiting { .. }), "{status:?}");
    let client = client(&*h).await;
    client
        .cancel("cancel-1", Some("customer changed their mind".into()), Some("support".into()))
        .await
        .unwrap();
    let status = runner(&*h).await.resume(&workflow, "cancel-1").await.unwrap();
    let WorkflowStatus::Cancelled { reason, cancelled_by } = status else {
        panic!("expected Cancelled, got {status:?}");
    };
    assert_eq!(reason.as_deref(), Some("customer changed their mind"));
    assert_eq!(cancelled_by.as_deref(), Some("support"));
    assert!(matches!(client.status("cancel-1").await.unwrap(), WorkflowStatus::Cancelled { .. }));
    assert_eq!(runs.count("cancel-1", "reserve"), 1);
    assert_eq!(runs.count("cancel-1", "ship"), 0);
}

/// A cancel that arrives while a step runs lets the step finish and stops the workflow right
/// after it.
pub async fn cancel_during_a_step_stops_after_it<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let gate = Arc::new(Semaphore::new(0));
    let workflow = Arc::new(checkout(&runs, Some(&gate)));
    let process = Process::start(&h, workflow, "cancel-2");
    wait_for_run(&runs, "cancel-2", "charge:start").await;
    client(&*h).await.cancel("cancel-2", Some("fraud".into()), None).await.unwrap();
    gate.add_permits(1);
    let status = process.wait().await.expect("the run ends by itself").unwrap();
    assert!(matches!(status, WorkflowStatus::Cancelled { .. }), "{status:?}");
    let snapshot = h.backend().load_snapshot("cancel-2").await.unwrap();
    assert!(snapshot.state.is_cancelled(), "{:?}", snapshot.state);
    assert_eq!(runs.count("cancel-2", "charge"), 1);
    assert_eq!(runs.count("cancel-2", "ship"), 0);
}

/// Pause through the client holds a parked workflow (resume answers `Paused` and runs
/// nothing); after `unpause` it completes, each step having run once.
pub async fn pause_and_unpause_through_client<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let workflow = held(&runs, Duration::from_millis(200));
    let status = runner(&*h).await.run(&workflow, "pause-1", Job::new("pause-1", 0)).await.unwrap();
    assert!(matches!(status, WorkflowStatus::Waiting { .. }), "{status:?}");
    let client = client(&*h).await;
    client.pause("pause-1", Some("audit".into()), Some("ops".into())).await.unwrap();
    let status = runner(&*h).await.resume(&workflow, "pause-1").await.unwrap();
    let WorkflowStatus::Paused { reason, paused_by } = status else {
        panic!("expected Paused, got {status:?}");
    };
    assert_eq!((reason.as_deref(), paused_by.as_deref()), (Some("audit"), Some("ops")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = runner(&*h).await.resume(&workflow, "pause-1").await.unwrap();
    assert!(matches!(still, WorkflowStatus::Paused { .. }), "a paused workflow stays: {still:?}");
    assert_eq!(runs.count("pause-1", "ship"), 0);

    client.unpause("pause-1").await.unwrap();
    let status = runner(&*h).await.resume(&workflow, "pause-1").await.unwrap();
    assert_completed(&status);
    let snapshot = h.backend().load_snapshot("pause-1").await.unwrap();
    assert_eq!(final_output::<Job>(&snapshot), Job::new("pause-1", 11));
    assert_eq!(runs.count("pause-1", "reserve"), 1);
    assert_eq!(runs.count("pause-1", "ship"), 1);
}

/// Fails twice; retried after 100 ms, then 200 ms.
struct FlakyCharge;

impl FlakyKind for FlakyCharge {
    const ID: &'static str = "flaky";
    const FAILURES: u32 = 2;
    const ADD: u64 = 10;
    fn retries() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            initial_delay: Duration::from_millis(100),
            backoff_multiplier: 2.0,
            max_delay: None,
        }
    }
}

/// Retries with backoff: the failed attempts are retried after their delay and the workflow
/// completes with the third attempt's output.
pub async fn retries_with_backoff<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let task = Flaky::<FlakyCharge>::new(&runs);
    let at = task.attempt_times();
    let workflow = WorkflowBuilder::new(context("retry"))
        .then("reserve", step(&runs, "reserve", 1))
        .then_task_with(task)
        .build()
        .unwrap();
    let status = runner(&*h).await.run(&workflow, "retry-1", Job::new("retry-1", 0)).await.unwrap();
    assert_completed(&status);
    let snapshot = h.backend().load_snapshot("retry-1").await.unwrap();
    assert_eq!(final_output::<Job>(&snapshot), Job::new("retry-1", 11));
    assert_eq!(runs.count("retry-1", "flaky:attempt"), 3);
    assert_eq!(runs.count("retry-1", "flaky"), 1);
    assert_eq!(runs.count("retry-1", "reserve"), 1, "a retry never reruns earlier steps");
    let at = at.lock().unwrap().clone();
    assert!(at[1] - at[0] >= Duration::from_millis(100), "first backoff honoured: {at:?}");
    assert!(at[2] - at[1] >= Duration::from_millis(200), "second backoff doubled: {at:?}");
}

/// A step that fails with no retry policy fails the workflow with its message, and nothing
/// after it runs.
pub async fn failing_step_fails_the_workflow<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let declined = runs.clone();
    let workflow = WorkflowBuilder::new(context("failing"))
        .then("reserve", step(&runs, "reserve", 1))
        .then("charge", move |job: Job| {
            declined.record(&job.id, "charge");
            async move { Err::<Job, BoxError>("card declined".into()) }
        })
        .then("ship", step(&runs, "ship", 100))
        .build()
        .unwrap();
    let status = runner(&*h).await.run(&workflow, "fail-1", Job::new("fail-1", 0)).await.unwrap();
    let WorkflowStatus::Failed(message) = status else {
        panic!("expected Failed, got {status:?}");
    };
    assert!(message.contains("card declined"), "{message}");
    let snapshot = h.backend().load_snapshot("fail-1").await.unwrap();
    assert!(snapshot.state.is_failed(), "{:?}", snapshot.state);
    assert_eq!(runs.count("fail-1", "charge"), 1);
    assert_eq!(runs.count("fail-1", "ship"), 0);
}

/// A loop runs its body until it says done, checkpointing every iteration.
pub async fn loop_runs_until_done<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let body_runs = runs.clone();
    let workflow = WorkflowBuilder::new(context("loop"))
        .then("start", step(&runs, "start", 1))
        .loop_task(
            "poll",
            move |job: Job| {
                body_runs.record(&job.id, "poll");
                async move {
                    let next = Job { n: job.n + 1, ..job };
                    Ok::<_, BoxError>(if next.n < 4 {
                        LoopResult::Again(next)
                    } else {
                        LoopResult::Done(next)
                    })
                }
            },
            10,
        )
        .then("finish", step(&runs, "finish", 100))
        .build()
        .unwrap();
    let status = runner(&*h).await.run(&workflow, "loop-1", Job::new("loop-1", 0)).await.unwrap();
    assert_completed(&status);
    let snapshot = h.backend().load_snapshot("loop-1").await.unwrap();
    assert_eq!(final_output::<Job>(&snapshot), Job::new("loop-1", 104));
    assert_eq!(runs.count("loop-1", "poll"), 3, "iterations 1→2→3→4");
    assert_eq!(runs.count("loop-1", "start"), 1);
    assert_eq!(runs.count("loop-1", "finish"), 1);
}

/// The key of [`route_runs_one_branch`].
#[derive(Debug, Clone, Copy)]
enum Size {
    Small,
    Large,
}

impl BranchKey for Size {
    fn as_key(&self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Large => "large",
        }
    }
    fn all_keys() -> &'static [&'static str] {
        &["small", "large"]
    }
}

/// A route runs exactly the branch its key picks.
pub async fn route_runs_one_branch<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let after_runs = runs.clone();
    let workflow = WorkflowBuilder::new(context("route"))
        .then("measure", step(&runs, "measure", 1))
        .route(|job: Job| async move {
            Ok::<_, BoxError>(if job.n > 100 { Size::Large } else { Size::Small })
        })
        .branch(Size::Small, |b| b.then("small", step(&runs, "small", 10)))
        .branch(Size::Large, |b| b.then("large", step(&runs, "large", 1000)))
        .done()
        .then("after", move |envelope: BranchEnvelope<Job>| {
            after_runs.record(&envelope.result.id, &format!("after:{}", envelope.branch));
            async move { Ok::<_, BoxError>(envelope.result) }
        })
        .build()
        .unwrap();
    let status = runner(&*h).await.run(&workflow, "route-1", Job::new("route-1", 0)).await.unwrap();
    assert_completed(&status);
    let snapshot = h.backend().load_snapshot("route-1").await.unwrap();
    assert_eq!(final_output::<Job>(&snapshot), Job::new("route-1", 11));
    assert_eq!(runs.count("route-1", "small"), 1);
    assert_eq!(runs.count("route-1", "large"), 0);
    assert_eq!(runs.count("route-1", "after:small"), 1);
}

/// A child workflow runs inline, each of its steps once.
pub async fn child_workflow_runs_inline<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let child = WorkflowBuilder::new(context("child"))
        .then("child-a", step(&runs, "child-a", 10))
        .then("child-b", step(&runs, "child-b", 100))
        .build()
        .unwrap();
    let workflow = WorkflowBuilder::new(context("parent"))
        .then("parent-a", step(&runs, "parent-a", 1))
        .then_flow(child)
        .then("parent-b", step(&runs, "parent-b", 1000))
        .build()
        .unwrap();
    let status = runner(&*h).await.run(&workflow, "child-1", Job::new("child-1", 0)).await.unwrap();
    assert_completed(&status);
    let snapshot = h.backend().load_snapshot("child-1").await.unwrap();
    assert_eq!(final_output::<Job>(&snapshot), Job::new("child-1", 1111));
    for task in ["parent-a", "child-a", "child-b", "parent-b"] {
        assert_eq!(runs.count("child-1", task), 1, "{task} ran {:?}", runs.all());
    }
}

/// `submit` stores the workflow without running it; a second submit of the same id is
/// refused; `resume` then runs it to the end.
pub async fn submit_then_resume<H: RuntimeHarness>(h: Arc<H>) {
    let runs = Runs::default();
    let workflow = checkout(&runs, None);
    let client = client(&*h).await;
    let (status, output) =
        client.submit(&workflow, "submit-1", Job::new("submit-1", 0)).await.unwrap();
    assert!(matches!(status, WorkflowStatus::InProgress), "{status:?}");
    assert!(output.is_none());
    assert!(runs.all().is_empty(), "submit runs nothing");
    let again = client.submit(&workflow, "submit-1", Job::new("submit-1", 0)).await;
    assert!(matches!(again, Err(RuntimeError::InstanceAlreadyExists(_))), "{again:?}");

    let status = runner(&*h).await.resume(&workflow, "submit-1").await.unwrap();
    assert_completed(&status);
    let snapshot = h.backend().load_snapshot("submit-1").await.unwrap();
    assert_eq!(final_output::<Job>(&snapshot), Job::new("submit-1", 111));
    assert_eq!(runs.all().len(), 3, "{:?}", runs.all());
}
