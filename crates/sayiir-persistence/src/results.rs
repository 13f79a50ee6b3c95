//! Which task results a snapshot holds, and the archive kept after completion (§ Results survive
//! completion).
//!
//! `Completed` and `Failed` snapshots discard their `completed_tasks`; `load_task_result` must
//! still serve them. So when a save turns a snapshot that held results into `Completed` or
//! `Failed`, backends copy those results into an archive; they serve it while the snapshot is
//! `Completed`/`Failed`, and drop it on delete.

use std::collections::HashMap;

use sayiir_core::snapshot::{TaskResult, WorkflowSnapshotState};

use crate::status;

/// The `completed_tasks` of a state that holds them (InProgress, Paused, Cancelled).
#[must_use]
pub fn held_results(state: &WorkflowSnapshotState) -> Option<&HashMap<String, TaskResult>> {
    match state {
        WorkflowSnapshotState::InProgress { completed_tasks, .. }
        | WorkflowSnapshotState::Paused { completed_tasks, .. }
        | WorkflowSnapshotState::Cancelled { completed_tasks, .. } => Some(completed_tasks),
        WorkflowSnapshotState::Completed { .. } | WorkflowSnapshotState::Failed { .. } => None,
    }
}

/// Mutable access to the `completed_tasks` of a state that holds them.
pub fn held_results_mut(
    state: &mut WorkflowSnapshotState,
) -> Option<&mut HashMap<String, TaskResult>> {
    match state {
        WorkflowSnapshotState::InProgress { completed_tasks, .. }
        | WorkflowSnapshotState::Paused { completed_tasks, .. }
        | WorkflowSnapshotState::Cancelled { completed_tasks, .. } => Some(completed_tasks),
        WorkflowSnapshotState::Completed { .. } | WorkflowSnapshotState::Failed { .. } => None,
    }
}

/// Whether `load_task_result` reads the archive rather than the snapshot for this state.
#[must_use]
pub fn reads_archive(state: &WorkflowSnapshotState) -> bool {
    held_results(state).is_none()
}

/// What a save does to the archive of its instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveAction {
    /// Leave it as it is (terminal re-save, or nothing stored before).
    Keep,
    /// Replace it with the results the previous state held (the transition to
    /// Completed/Failed).
    ArchivePrevious,
    /// Drop it: the new state holds its own results.
    Clear,
}

/// Whether a state with status text `status` holds its own `completed_tasks`
/// (InProgress, Paused, Cancelled).
#[must_use]
pub fn status_holds_results(status: &str) -> bool {
    [status::IN_PROGRESS, status::PAUSED, status::CANCELLED].contains(&status)
}

/// The archive action of saving `new` over a stored snapshot whose status text is
/// `previous_status` (`None`: nothing stored before, or a status that cannot be read).
#[must_use]
pub fn archive_action(previous_status: Option<&str>, new: &WorkflowSnapshotState) -> ArchiveAction {
    let previous_held = previous_status.is_some_and(status_holds_results);
    match (previous_held, reads_archive(new)) {
        (_, false) => ArchiveAction::Clear,
        (true, true) => ArchiveAction::ArchivePrevious,
        (false, true) => ArchiveAction::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn archive_rules() {
        let completed = WorkflowSnapshotState::Completed { final_output: Bytes::new() };
        let failed = WorkflowSnapshotState::Failed { error: "e".into() };
        assert_eq!(archive_action(Some("InProgress"), &completed), ArchiveAction::ArchivePrevious);
        assert_eq!(archive_action(Some("Paused"), &failed), ArchiveAction::ArchivePrevious);
        assert_eq!(archive_action(Some("Completed"), &completed), ArchiveAction::Keep);
        assert_eq!(archive_action(None, &failed), ArchiveAction::Keep);
        let running = WorkflowSnapshotState::InProgress {
            position: sayiir_core::snapshot::ExecutionPosition::NotStarted,
            completed_tasks: HashMap::new(),
            last_completed_task_id: None,
        };
        assert_eq!(archive_action(Some("Completed"), &running), ArchiveAction::Clear);
    }
}
