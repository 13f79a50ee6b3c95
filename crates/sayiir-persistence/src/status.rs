//! The status texts of a workflow, as every backend stores them: the names of
//! `WorkflowSnapshotState`'s variants (its `AsRef<str>`), written once here so no backend
//! spells them in Rust. The database-side code (SQL statements and migrations, Lua scripts)
//! spells the same texts in its own language; the conformance suite stores, reads and
//! transitions workflows in every status, so a drift between the two fails it.

/// Running, or parked at a delay or signal wait.
pub const IN_PROGRESS: &str = "InProgress";
/// Finished successfully.
pub const COMPLETED: &str = "Completed";
/// Finished with an error.
pub const FAILED: &str = "Failed";
/// Cancelled (terminal).
pub const CANCELLED: &str = "Cancelled";
/// Paused (not terminal: `unpause` resumes it).
pub const PAUSED: &str = "Paused";

/// Every status, in the order of `WorkflowSnapshotState`'s variants.
pub const ALL: [&str; 5] = [IN_PROGRESS, COMPLETED, FAILED, CANCELLED, PAUSED];

/// The statuses a workflow never leaves: no claim, no request and no advancement applies.
pub const TERMINAL: [&str; 3] = [COMPLETED, FAILED, CANCELLED];

/// Whether `status` is terminal.
#[must_use]
pub fn is_terminal(status: &str) -> bool {
    TERMINAL.contains(&status)
}

#[cfg(test)]
mod tests {
    use sayiir_core::snapshot::WorkflowSnapshot;

    use super::*;

    /// The texts are those `WorkflowSnapshotState::as_ref` gives.
    #[test]
    fn texts_are_the_state_names() {
        let mut snapshot = WorkflowSnapshot::new("i".into(), "h".into());
        assert_eq!(snapshot.state.as_ref(), IN_PROGRESS);
        snapshot.mark_paused(&sayiir_core::snapshot::PauseRequest::new(None, None));
        assert_eq!(snapshot.state.as_ref(), PAUSED);
        let mut done = WorkflowSnapshot::new("i".into(), "h".into());
        done.mark_completed(bytes::Bytes::new());
        assert_eq!(done.state.as_ref(), COMPLETED);
        let mut failed = WorkflowSnapshot::new("i".into(), "h".into());
        failed.mark_failed("boom".into());
        assert_eq!(failed.state.as_ref(), FAILED);
        let mut cancelled = WorkflowSnapshot::new("i".into(), "h".into());
        cancelled.mark_cancelled(None, None, None);
        assert_eq!(cancelled.state.as_ref(), CANCELLED);
        assert!(TERMINAL.iter().all(|status| ALL.contains(status)));
    }
}
