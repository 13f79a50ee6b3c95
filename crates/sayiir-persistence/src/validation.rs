//! Input and state checks that every backend applies the same way.
//!
//! - Ids (§ Id rules): non-empty UTF-8 without NUL, at most [`MAX_ID_BYTES`] bytes. Checked
//!   before any I/O, so a bad id never reaches storage.
//! - Everything a snapshot or a signal request carries that a backend stores beside the blob
//!   ([`validate_snapshot`], [`validate_signal_request`]): the ids in it follow the id rules,
//!   and free text (trace parent, tags, reasons) holds no NUL character, which PostgreSQL's
//!   `text` cannot store. One rule for every backend, checked before any I/O, so a value one
//!   backend would store and another refuse is refused by all, with the same error.
//! - Signals against workflow status (§ store_signal with § Repeated pause or cancel stores
//!   nothing): [`signal_decision`].

use std::str::FromStr;

use std::collections::HashMap;

use sayiir_core::snapshot::{
    ExecutionPosition, SignalKind, SignalRequest, SnapshotStatus, TaskResult, WorkflowSnapshot,
    WorkflowSnapshotState,
};

use crate::BackendError;

/// Longest id, in bytes, that every backend accepts.
pub const MAX_ID_BYTES: usize = 1024;

/// Which id a value is, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// A workflow instance id.
    Instance,
    /// A task id.
    Task,
    /// A worker id.
    Worker,
    /// An event's signal name.
    SignalName,
}

impl IdKind {
    /// The parameter name, as the trait methods spell it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::Instance => "instance_id",
            IdKind::Task => "task_id",
            IdKind::Worker => "worker_id",
            IdKind::SignalName => "signal_name",
        }
    }
}

/// Checks one id against the rules of § Id rules.
///
/// # Errors
/// `BackendError::Backend` naming the id (a long one shortened) and what is wrong with it.
pub fn validate_id(kind: IdKind, id: &str) -> Result<(), BackendError> {
    let problem = if id.is_empty() {
        "must not be empty".to_string()
    } else if id.len() > MAX_ID_BYTES {
        format!("is {} bytes long; the limit is {MAX_ID_BYTES} bytes", id.len())
    } else if id.contains('\0') {
        "must not contain a NUL character".to_string()
    } else {
        return Ok(());
    };
    Err(BackendError::Backend(format!("invalid {} {}: {problem}", kind.as_str(), shorten(id))))
}

/// Checks several ids at once, in order.
///
/// # Errors
/// The error of the first invalid id, as [`validate_id`] gives it.
pub fn validate_ids(ids: &[(IdKind, &str)]) -> Result<(), BackendError> {
    ids.iter().try_for_each(|(kind, id)| validate_id(*kind, id))
}

/// Checks the three ids every claim operation takes.
///
/// # Errors
/// As [`validate_id`], for the first invalid one.
pub fn validate_claim_ids(
    instance_id: &str,
    task_id: &str,
    worker_id: &str,
) -> Result<(), BackendError> {
    validate_ids(&[
        (IdKind::Instance, instance_id),
        (IdKind::Task, task_id),
        (IdKind::Worker, worker_id),
    ])
}

/// Checks the ids `check_and_cancel` takes: the instance, and the interrupted task if any.
///
/// # Errors
/// As [`validate_id`], for the first invalid one.
pub fn validate_cancel_ids(
    instance_id: &str,
    interrupted_at_task: Option<&str>,
) -> Result<(), BackendError> {
    validate_id(IdKind::Instance, instance_id)?;
    interrupted_at_task.map_or(Ok(()), |task_id| validate_id(IdKind::Task, task_id))
}

/// Checks a free-text value (`field` names it in the error): any length, no NUL character.
///
/// # Errors
/// `BackendError::Backend` naming the field and the value when it holds a NUL.
pub fn validate_text(field: &str, value: &str) -> Result<(), BackendError> {
    if value.contains('\0') {
        return Err(BackendError::Backend(format!(
            "invalid {field} {}: must not contain a NUL character",
            shorten(value)
        )));
    }
    Ok(())
}

/// Checks every id and free-text field of `snapshot` that backends store beside the blob or
/// hand back to workers: the instance id; the task ids of its results, position, retries,
/// deadline and loops; the signal name it waits for; the worker a retry failed on (id rules);
/// its trace parent, tags, definition hash and cancel or pause reasons (no NUL). Ids the
/// runtime derives from several task ids (fork and join ids) are free text, since they can be
/// longer than one id. `save_snapshot` calls it before any I/O.
///
/// # Errors
/// `BackendError::Backend` naming the instance, the field and the value, and saying that
/// nothing was stored.
pub fn validate_snapshot(snapshot: &WorkflowSnapshot) -> Result<(), BackendError> {
    validate_id(IdKind::Instance, &snapshot.instance_id)?;
    snapshot_fields(snapshot).map_err(|error| {
        let message = match error {
            BackendError::Backend(message) => message,
            other => other.to_string(),
        };
        BackendError::Backend(format!(
            "save_snapshot of {}: {message}; nothing was stored",
            shorten(&snapshot.instance_id)
        ))
    })
}

fn snapshot_fields(snapshot: &WorkflowSnapshot) -> Result<(), BackendError> {
    let task = |id: &str| validate_id(IdKind::Task, id);
    validate_text("definition_hash", &snapshot.definition_hash)?;
    if let Some(trace_parent) = &snapshot.trace_parent {
        validate_text("trace_parent", trace_parent)?;
    }
    snapshot.task_tags.iter().try_for_each(|tag| validate_text("task tag", tag))?;
    for (task_id, retry) in &snapshot.task_retries {
        task(task_id)?;
        if let Some(worker) = &retry.last_failed_worker {
            validate_id(IdKind::Worker, worker)?;
        }
    }
    snapshot.loop_iterations.keys().try_for_each(|id| task(id))?;
    if let Some(deadline) = &snapshot.task_deadline {
        task(&deadline.task_id)?;
    }
    match &snapshot.state {
        WorkflowSnapshotState::InProgress { position, completed_tasks, last_completed_task_id } => {
            results(completed_tasks)?;
            last_completed_task_id.as_deref().map_or(Ok(()), task)?;
            position_ids(position)
        }
        WorkflowSnapshotState::Paused {
            reason,
            paused_by,
            completed_tasks,
            position,
            last_completed_task_id,
            ..
        } => {
            reasons(reason.as_deref(), paused_by.as_deref())?;
            results(completed_tasks)?;
            last_completed_task_id.as_deref().map_or(Ok(()), task)?;
            position_ids(position)
        }
        WorkflowSnapshotState::Cancelled {
            reason,
            cancelled_by,
            completed_tasks,
            interrupted_at_task,
            ..
        } => {
            reasons(reason.as_deref(), cancelled_by.as_deref())?;
            results(completed_tasks)?;
            interrupted_at_task.as_deref().map_or(Ok(()), task)
        }
        WorkflowSnapshotState::Completed { .. } | WorkflowSnapshotState::Failed { .. } => Ok(()),
    }
}

/// The task ids of stored results: the map's keys and the ids the results carry.
fn results(results: &HashMap<String, TaskResult>) -> Result<(), BackendError> {
    results.iter().try_for_each(|(key, result)| {
        validate_id(IdKind::Task, key)?;
        validate_id(IdKind::Task, &result.task_id)
    })
}

fn position_ids(position: &ExecutionPosition) -> Result<(), BackendError> {
    let task = |id: &str| validate_id(IdKind::Task, id);
    let next = |id: &Option<String>| id.as_deref().map_or(Ok(()), task);
    match position {
        ExecutionPosition::NotStarted => Ok(()),
        ExecutionPosition::AtTask { task_id } => task(task_id),
        ExecutionPosition::AtFork { fork_id, completed_branches, .. } => {
            validate_text("fork_id", fork_id)?;
            results(completed_branches)
        }
        ExecutionPosition::AtJoin { join_id, completed_branches } => {
            validate_text("join_id", join_id)?;
            results(completed_branches)
        }
        ExecutionPosition::AtDelay { delay_id, next_task_id, .. } => {
            task(delay_id)?;
            next(next_task_id)
        }
        ExecutionPosition::AtSignal { signal_id, signal_name, next_task_id, .. } => {
            task(signal_id)?;
            validate_id(IdKind::SignalName, signal_name)?;
            next(next_task_id)
        }
        ExecutionPosition::InLoop { loop_id, next_task_id, .. } => {
            task(loop_id)?;
            next(next_task_id)
        }
    }
}

fn reasons(reason: Option<&str>, by: Option<&str>) -> Result<(), BackendError> {
    reason.map_or(Ok(()), |r| validate_text("reason", r))?;
    by.map_or(Ok(()), |b| validate_text("requested_by", b))
}

/// Checks the free text of a cancel or pause request (reason, requested by): no NUL.
/// `store_signal` calls it, with the instance id, before any I/O.
///
/// # Errors
/// `BackendError::Backend` naming the field and the value.
pub fn validate_signal_request(
    instance_id: &str,
    request: &SignalRequest,
) -> Result<(), BackendError> {
    validate_id(IdKind::Instance, instance_id)?;
    reasons(request.reason.as_deref(), request.requested_by.as_deref()).map_err(|error| {
        BackendError::Backend(format!(
            "store_signal of {}: {}; nothing was stored",
            shorten(instance_id),
            match error {
                BackendError::Backend(message) => message,
                other => other.to_string(),
            }
        ))
    })
}

/// A quoted, escaped id, cut to its first 64 characters when longer.
fn shorten(id: &str) -> String {
    const SHOWN: usize = 64;
    match id.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}…", &id[..cut]),
        None => format!("{id:?}"),
    }
}

/// What `store_signal` must do for a workflow in a given status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalDecision {
    /// Record (or overwrite) the pending request.
    Store,
    /// The workflow already is in the requested state: answer `Ok` and store nothing
    /// (Pause on Paused, Cancel on Cancelled).
    AlreadyApplied,
}

/// Decides whether a signal of `kind` may be stored for a workflow whose status text is
/// `status` (§ store_signal and § Repeated pause or cancel stores nothing). Unknown status texts
/// are permissive, as in 0.4.0.
///
/// # Errors
/// `CannotCancel` / `CannotPause` with the status name when the signal is refused.
pub fn signal_decision(status: &str, kind: SignalKind) -> Result<SignalDecision, BackendError> {
    let Ok(status) = SnapshotStatus::from_str(status) else {
        return Ok(SignalDecision::Store);
    };
    match (kind, status) {
        (SignalKind::Cancel, SnapshotStatus::Completed | SnapshotStatus::Failed) => {
            Err(BackendError::CannotCancel(status.as_ref().to_string()))
        }
        (
            SignalKind::Pause,
            SnapshotStatus::Completed | SnapshotStatus::Failed | SnapshotStatus::Cancelled,
        ) => Err(BackendError::CannotPause(status.as_ref().to_string())),
        (SignalKind::Cancel, SnapshotStatus::Cancelled)
        | (SignalKind::Pause, SnapshotStatus::Paused) => Ok(SignalDecision::AlreadyApplied),
        _ => Ok(SignalDecision::Store),
    }
}

/// Whether a signal of `kind` may be delivered to a workflow in `status` (0.4.0 API).
///
/// # Errors
/// As [`signal_decision`]; the idempotent cells count as allowed.
pub fn validate_signal_allowed(status: &str, kind: SignalKind) -> Result<(), BackendError> {
    signal_decision(status, kind).map(|_| ())
}

/// The error `unpause` returns for a workflow that is not paused.
#[must_use]
pub fn not_paused_error(state: &WorkflowSnapshotState) -> BackendError {
    not_paused_status_error(state.as_ref())
}

/// [`not_paused_error`] for a backend that knows only the stored status name.
#[must_use]
pub fn not_paused_status_error(status: &str) -> BackendError {
    BackendError::CannotPause(format!("Workflow is not paused (current state: {status:?})"))
}

/// Checks an optional definition-hash filter of `operation`: absent, or not empty.
///
/// # Errors
/// `Backend` naming `operation` when the hash is empty.
pub(crate) fn check_definition_filter(
    operation: &str,
    definition_hash: Option<&str>,
) -> Result<(), BackendError> {
    if definition_hash.is_some_and(str::is_empty) {
        return Err(BackendError::Backend(format!(
            "{operation}: the definition hash is empty; leave it unset to include every definition"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_table() {
        use SignalDecision::{AlreadyApplied, Store};
        let cases = [
            ("InProgress", SignalKind::Cancel, Ok(Store)),
            ("InProgress", SignalKind::Pause, Ok(Store)),
            ("Paused", SignalKind::Cancel, Ok(Store)),
            ("Paused", SignalKind::Pause, Ok(AlreadyApplied)),
            ("Cancelled", SignalKind::Cancel, Ok(AlreadyApplied)),
            ("Cancelled", SignalKind::Pause, Err("CannotPause")),
            ("Completed", SignalKind::Cancel, Err("CannotCancel")),
            ("Completed", SignalKind::Pause, Err("CannotPause")),
            ("Failed", SignalKind::Cancel, Err("CannotCancel")),
            ("Failed", SignalKind::Pause, Err("CannotPause")),
            ("SomethingNew", SignalKind::Pause, Ok(Store)),
        ];
        for (status, kind, expected) in cases {
            let got = signal_decision(status, kind);
            match (got, expected) {
                (Ok(g), Ok(e)) => assert_eq!(g, e, "{status} {kind:?}"),
                (Err(BackendError::CannotCancel(s)), Err("CannotCancel"))
                | (Err(BackendError::CannotPause(s)), Err("CannotPause")) => {
                    assert_eq!(s, status);
                }
                (g, e) => panic!("{status} {kind:?}: got {g:?}, expected {e:?}"),
            }
        }
    }

    #[test]
    fn ids() {
        assert!(validate_id(IdKind::Instance, "a:b {x} 'y' % * 🦀").is_ok());
        assert!(validate_id(IdKind::Instance, &"x".repeat(MAX_ID_BYTES)).is_ok());
        for bad in ["", "a\0b", &"y".repeat(MAX_ID_BYTES + 1)] {
            let Err(BackendError::Backend(msg)) = validate_id(IdKind::Task, bad) else {
                panic!("{bad:?} accepted");
            };
            assert!(msg.starts_with("invalid task_id"), "{msg}");
            assert!(msg.len() < 200, "message too long: {msg}");
        }
    }
}
