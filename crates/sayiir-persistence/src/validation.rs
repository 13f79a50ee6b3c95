//! Input and state checks that every backend applies the same way.
//!
//! - Ids (contract D7): non-empty UTF-8 without NUL, at most [`MAX_ID_BYTES`] bytes. Checked
//!   before any I/O, so a bad id never reaches storage.
//! - Signals against workflow status (contract 4.1 with D2): [`signal_decision`].

use std::str::FromStr;

use sayiir_core::snapshot::{SignalKind, SnapshotStatus, WorkflowSnapshotState};

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

/// Checks one id against the rules of contract D7.
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
/// `status` (contract 4.1 and D2). Unknown status texts are permissive, as in 0.4.0.
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
