//! What each command does and prints.

use std::time::Duration;

use chrono::Utc;
use clap::Args;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use indicatif::{ProgressBar, ProgressStyle};
use sayiir_persistence::listing::{DEFAULT_PAGE, MAX_PAGE};
use sayiir_persistence::results::{held_results, reads_archive};
use sayiir_persistence::retention::DEFAULT_PRUNE_BATCH;
use sayiir_persistence::sayiir_core::snapshot::{SignalKind, SignalRequest, WorkflowSnapshotState};
use sayiir_persistence::sayiir_core::task_claim::TaskClaim;
use sayiir_persistence::{BackendError, ListCursor, ListRequest, PruneRequest, WorkflowRecord};
use serde_json::{Value, json};

use crate::Command;
use crate::store::{Store, Target};
use crate::when;

/// Who the requests this tool stores say they come from.
const REQUESTED_BY: &str = "sayiir-admin";

/// Why a command failed, for the exit status.
#[derive(Debug)]
pub enum Failure {
    /// The workflow asked for does not exist.
    NotFound(String),
    /// The arguments make no sense.
    Usage(String),
    /// The store refused the call or could not be reached.
    Store(BackendError),
    /// A file could not be read or written, or is not a complete export.
    File(String),
}

impl From<BackendError> for Failure {
    fn from(error: BackendError) -> Self {
        Self::Store(error)
    }
}

/// `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only these statuses (repeat or comma-separate): InProgress, Paused, Completed, Failed,
    /// Cancelled.
    #[arg(long = "status", value_delimiter = ',')]
    statuses: Vec<String>,
    /// Only this workflow definition (its definition hash).
    #[arg(long)]
    definition: Option<String>,
    /// Workflows per page (1 to 1000).
    #[arg(long, default_value_t = DEFAULT_PAGE)]
    limit: usize,
    /// Start after this cursor (printed at the end of the previous page).
    #[arg(long)]
    after: Option<String>,
    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    json: bool,
}

/// `show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The workflow instance id.
    instance_id: String,
    /// Print JSON for scripts instead of text.
    #[arg(long)]
    json: bool,
}

/// `stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    json: bool,
}

/// `cancel` and `pause`.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The workflow instance id.
    instance_id: String,
    /// Why, stored with the request.
    #[arg(long)]
    reason: Option<String>,
}

/// `resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The workflow instance id.
    instance_id: String,
}

/// `prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove workflows that finished before this: an age (30d, 12h), an RFC 3339 time or
    /// Unix seconds.
    #[arg(long)]
    before: String,
    /// Only this workflow definition (its definition hash).
    #[arg(long)]
    definition: Option<String>,
    /// Workflows removed per batch (1 to 10000).
    #[arg(long, default_value_t = DEFAULT_PRUNE_BATCH)]
    batch_size: usize,
}

/// Runs `command` on the store `target` names. Arguments are checked before the store is
/// opened: a mistake costs no connection and changes nothing.
pub async fn run(target: &Target, command: Command) -> Result<(), Failure> {
    target.backend().map_err(Failure::Usage)?;
    match &command {
        Command::List(args) => drop(list_request(args)?),
        Command::Prune(args) => drop(prune_request(args)?),
        Command::Export(args) => crate::transfer::check_export(args)?,
        Command::Import(args) => crate::transfer::check_import(args)?,
        _ => {}
    }
    let store = Store::open(target, matches!(command, Command::Migrate)).await?;
    let outcome = match command {
        Command::List(args) => list(&store, args).await,
        Command::Show(args) => show(&store, args).await,
        Command::Cancel(args) => request(&store, SignalKind::Cancel, args).await,
        Command::Pause(args) => request(&store, SignalKind::Pause, args).await,
        Command::Resume(args) => resume(&store, args).await,
        Command::Prune(args) => prune(&store, args).await,
        Command::Stats(args) => stats(&store, args).await,
        Command::Export(args) => crate::transfer::export(&store, args).await,
        Command::Import(args) => crate::transfer::import(&store, args).await,
        Command::Migrate => store.migrate().await.map_err(Failure::from).map(|()| {
            say!("the {} store is up to date", store.backend_name());
        }),
    };
    store.close().await;
    outcome
}

/// A `NotFound` error as the failure that names the workflow.
fn not_found(instance_id: &str) -> impl FnOnce(BackendError) -> Failure {
    move |error| match error {
        BackendError::NotFound(_) => Failure::NotFound(format!("no workflow {instance_id:?}")),
        other => Failure::Store(other),
    }
}

/// The listing `args` ask for, checked.
fn list_request(args: &ListArgs) -> Result<ListRequest, Failure> {
    if args.limit == 0 || args.limit > MAX_PAGE {
        return Err(Failure::Usage(format!("--limit must be 1 to {MAX_PAGE}")));
    }
    let mut request = ListRequest::default().limit(args.limit);
    for status in &args.statuses {
        request = request.status(status.clone());
    }
    if let Some(definition) = &args.definition {
        request = request.definition(definition.clone());
    }
    if let Some(after) = &args.after {
        request = request.after(ListCursor::from_token(after).map_err(usage)?);
    }
    request.check().map_err(usage)?;
    Ok(request)
}

/// A request the library refused before any I/O, as a usage error.
fn usage(error: BackendError) -> Failure {
    Failure::Usage(error.to_string())
}

async fn list(store: &Store, args: ListArgs) -> Result<(), Failure> {
    let request = list_request(&args)?;
    let page = store.list(&request).await?;
    let next = page.next.as_ref().map(ListCursor::to_token);
    if args.json {
        let workflows: Vec<Value> = page
            .workflows
            .iter()
            .map(|w| {
                json!({
                    "instance_id": w.instance_id,
                    "status": w.status,
                    "definition_hash": w.definition_hash,
                    "updated_at": w.updated_at,
                })
            })
            .collect();
        say!("{}", json!({ "workflows": workflows, "next": next }));
        return Ok(());
    }
    if page.workflows.is_empty() {
        say!("no workflows");
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header([
        "instance",
        "status",
        "definition",
        "updated",
    ]);
    for w in &page.workflows {
        table.add_row([
            w.instance_id.clone(),
            w.status.clone(),
            w.definition_hash.clone(),
            when::rfc3339(w.updated_at),
        ]);
    }
    say!("{table}");
    if let Some(next) = next {
        say!("more: --after {next}");
    }
    Ok(())
}

async fn show(store: &Store, args: ShowArgs) -> Result<(), Failure> {
    let id = args.instance_id.as_str();
    let record = store.export(id).await?;
    let Some(record) = record else {
        return Err(Failure::NotFound(format!("no workflow {id:?}")));
    };
    let claims = store.claims(id).await?;
    let described = describe(&record, &claims);
    if args.json {
        say!("{described}");
        return Ok(());
    }
    let text = |key: &str| described[key].as_str().map(str::to_string);
    say!("instance    {id}");
    match &record.snapshot {
        Some(snapshot) => {
            say!("status      {}", text("status").unwrap_or_default());
            say!("definition  {}", snapshot.definition_hash);
            say!("created     {}", when::rfc3339(snapshot.created_at));
            say!("updated     {}", when::rfc3339(snapshot.updated_at));
        }
        None => say!("status      not started: only buffered events are stored for it"),
    }
    if let Some(position) = text("position") {
        let task = text("current_task").map(|t| format!(" ({t})")).unwrap_or_default();
        say!("position    {position}{task}");
    }
    if let Some(error) = text("error") {
        say!("error       {error}");
    }
    for (key, label) in [("results", "results "), ("archived_results", "archived")] {
        if let Some(results) = described[key].as_array() {
            say!("{label}    {} task(s)", results.len());
            for result in results {
                let task = result["task_id"].as_str().unwrap_or("");
                say!("  {task:<30} {} bytes", result["bytes"]);
            }
        }
    }
    for (kind, request) in [("cancel", &record.cancel_request), ("pause", &record.pause_request)] {
        if let Some(request) = request {
            say!(
                "pending     {kind} requested by {} ({})",
                request.requested_by.as_deref().unwrap_or("unknown"),
                request.reason.as_deref().unwrap_or("no reason given")
            );
        }
    }
    for (name, queue) in &record.events {
        let bytes: usize = queue.iter().map(|payload| payload.len()).sum();
        say!("events      {name}: {} buffered ({bytes} bytes)", queue.len());
    }
    for claim in &claims {
        let expires = claim
            .expires_at
            .map_or("never expires".to_string(), |at| format!("expires {}", when::rfc3339(at)));
        say!(
            "claim       {} held by {} since {}, {expires}",
            claim.task_id,
            claim.worker_id,
            when::rfc3339(claim.claimed_at)
        );
    }
    Ok(())
}

/// Task id and size of each output, by task id.
fn sizes<'a>(outputs: impl Iterator<Item = (&'a String, usize)>) -> Vec<Value> {
    let mut sizes: Vec<(&String, usize)> = outputs.collect();
    sizes.sort();
    sizes.iter().map(|(task, bytes)| json!({ "task_id": task, "bytes": bytes })).collect()
}

/// The workflow as `show --json` prints it.
fn describe(record: &WorkflowRecord, claims: &[TaskClaim]) -> Value {
    let request = |r: Option<&SignalRequest>| {
        r.map(|r| json!({ "reason": r.reason, "requested_by": r.requested_by }))
    };
    let events: serde_json::Map<String, Value> = record
        .events
        .iter()
        .map(|(name, queue)| {
            let bytes: usize = queue.iter().map(|payload| payload.len()).sum();
            (name.clone(), json!({ "count": queue.len(), "bytes": bytes }))
        })
        .collect();
    let claims: Vec<Value> = claims
        .iter()
        .map(|c| {
            json!({
                "task_id": c.task_id,
                "worker_id": c.worker_id,
                "claimed_at": c.claimed_at,
                "expires_at": c.expires_at,
            })
        })
        .collect();
    let mut described = json!({
        "instance_id": record.instance_id,
        "status": Value::Null,
        "pending_cancel": request(record.cancel_request.as_ref()),
        "pending_pause": request(record.pause_request.as_ref()),
        "events": events,
        "claims": claims,
    });
    let Some(snapshot) = &record.snapshot else { return described };
    let final_output = match &snapshot.state {
        WorkflowSnapshotState::Completed { final_output } => Some(final_output.len()),
        _ => None,
    };
    let results = held_results(&snapshot.state)
        .map(|held| sizes(held.iter().map(|(task, r)| (task, r.output.len()))));
    let archived = reads_archive(&snapshot.state)
        .then(|| sizes(record.archived_results.iter().map(|(task, out)| (task, out.len()))));
    let fields = json!({
        "status": snapshot.state.as_ref(),
        "definition_hash": snapshot.definition_hash,
        "created_at": snapshot.created_at,
        "updated_at": snapshot.updated_at,
        "position": snapshot.position_kind(),
        "current_task": snapshot.current_task_id(),
        "error": snapshot.error_message(),
        "final_output_bytes": final_output,
        "results": results,
        "archived_results": archived,
    });
    if let (Some(all), Value::Object(fields)) = (described.as_object_mut(), fields) {
        all.extend(fields);
    }
    described
}

async fn stats(store: &Store, args: StatsArgs) -> Result<(), Failure> {
    let counts = store.counts().await?;
    if args.json {
        say!(
            "{}",
            json!({
                "workflows": counts.workflows,
                "ready_tasks": counts.ready_tasks,
                "live_claims": counts.live_claims,
            })
        );
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header(["", "count"]);
    for (status, count) in &counts.workflows {
        table.add_row([status.clone(), count.to_string()]);
    }
    table.add_row(["ready tasks".to_string(), counts.ready_tasks.to_string()]);
    table.add_row(["live claims".to_string(), counts.live_claims.to_string()]);
    say!("{table}");
    Ok(())
}

async fn request(store: &Store, kind: SignalKind, args: RequestArgs) -> Result<(), Failure> {
    let id = args.instance_id.as_str();
    let request = SignalRequest::new(args.reason, Some(REQUESTED_BY.to_string()));
    store.request(id, kind, request).await.map_err(not_found(id))?;
    let what = if matches!(kind, SignalKind::Cancel) { "cancel" } else { "pause" };
    say!("{what} requested for {id}: a worker applies it at the workflow's next task boundary");
    Ok(())
}

async fn resume(store: &Store, args: ResumeArgs) -> Result<(), Failure> {
    let id = args.instance_id.as_str();
    store.unpause(id).await.map_err(not_found(id))?;
    say!("{id} resumed");
    Ok(())
}

/// The prune `args` ask for, checked.
fn prune_request(args: &PruneArgs) -> Result<PruneRequest, Failure> {
    let before = when::unix_seconds(&args.before, Utc::now()).map_err(Failure::Usage)?;
    let mut request = PruneRequest::finished_before(before).batch_size(args.batch_size);
    if let Some(definition) = &args.definition {
        request = request.definition(definition.clone());
    }
    request.check().map_err(usage)?;
    Ok(request)
}

/// A spinner with a message and the time elapsed, on stderr and drawn only on a terminal.
pub(crate) fn spinner() -> ProgressBar {
    let progress = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        progress.set_style(style);
    }
    progress.enable_steady_tick(Duration::from_millis(200));
    progress
}

async fn prune(store: &Store, args: PruneArgs) -> Result<(), Failure> {
    let request = prune_request(&args)?;
    let before = request.finished_before;
    let progress = spinner();
    let mut total = 0_u64;
    loop {
        progress.set_message(format!("{total} finished workflows removed"));
        let removed = match store.prune_batch(&request).await {
            Ok(removed) => removed,
            Err(error) => {
                progress.finish_and_clear();
                eprintln!("{total} finished workflows were removed before the failure");
                return Err(Failure::Store(error));
            }
        };
        total += removed;
        if removed == 0 {
            break;
        }
    }
    progress.finish_and_clear();
    say!(
        "removed {total} workflow(s) that finished before {} from the {} store",
        when::rfc3339(before),
        store.backend_name()
    );
    Ok(())
}
