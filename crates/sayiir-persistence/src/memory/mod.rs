//! [`InMemoryBackend`]: every storage trait, in process memory.
//!
//! It keeps everything in one map behind one mutex, so every operation, composites included,
//! is atomic. Nothing survives the process: use it for tests and for single-process runs that
//! need no durability. `find_available_tasks` reads an index of runnable tasks ordered by
//! `(priority, updated_at, instance_id)` and a timer index of parked workflows, so its cost
//! follows `limit` and the number of due parks, not the number of stored workflows.
//!
//! It lives in the core crate because sayiir-persistence 0.4.0 exports it from there and the
//! Sayiir runtime re-exports it as `sayiir_persistence::InMemoryBackend`; the
//! `sayiir-persistence-memory` crate re-exports it for users who pick backends by crate.

mod catalog;
mod claim;
mod counts;
mod find;
mod records;
mod result;
mod signal;
mod snapshot;
mod state;

use std::sync::{Arc, Mutex, MutexGuard};

use state::{State, Stored, Workflow};

use crate::operation::Instrumentation;
use crate::{BackendError, codec};

/// Keeps workflow state in process memory. Cloning gives another handle on the same data.
///
/// ```
/// use sayiir_persistence::{InMemoryBackend, SnapshotStore};
/// use sayiir_persistence::sayiir_core::snapshot::WorkflowSnapshot;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let backend = InMemoryBackend::new();
/// let snapshot = WorkflowSnapshot::new("order-42".into(), "definition-hash".into());
/// backend.save_snapshot(&snapshot).await?;
/// assert_eq!(backend.list_snapshots().await?, vec!["order-42".to_string()]);
/// # Ok::<(), sayiir_persistence::BackendError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct InMemoryBackend {
    state: Arc<Mutex<State>>,
}

impl InMemoryBackend {
    /// An empty backend.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `blob` as the snapshot of an existing instance as if it had been read from
    /// storage: decoded with the shared codec, or kept as undecodable bytes that make
    /// `load_snapshot` fail with `Serialization`. For tests of corrupted data.
    #[doc(hidden)]
    pub fn write_raw_snapshot(&self, instance_id: &str, blob: &[u8]) -> Result<(), BackendError> {
        let mut state = self.lock()?;
        let (archive, listed) = state
            .workflows
            .get_mut(instance_id)
            .map(|w| (std::mem::take(&mut w.archive), w.listed.clone()))
            .ok_or_else(|| BackendError::NotFound(instance_id.to_string()))?;
        let stored = match codec::decode_snapshot(instance_id, blob) {
            Ok(snapshot) => Stored::Snapshot(Box::new(snapshot)),
            Err(_) => Stored::Undecodable(blob.to_vec()),
        };
        let mut workflow = Workflow::new(stored, archive);
        // Bytes that do not decode keep what the listing knew, as a column would.
        workflow.listed = workflow.listed.or(listed);
        state.put(instance_id, workflow);
        Ok(())
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, BackendError> {
        // A panic while the lock was held cannot leave the maps half-updated in a way that
        // breaks them (every change is a plain insert/remove), so keep serving.
        Ok(self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// The spans of every in-memory call.
static CALLS: Instrumentation = Instrumentation::new("memory");

impl InMemoryBackend {
    /// The shell every call runs in.
    fn calls(&self) -> &'static Instrumentation {
        &CALLS
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use chrono::{Duration, Utc};
    use sayiir_core::snapshot::{ExecutionPosition, SignalKind, SignalRequest, WorkflowSnapshot};

    use super::*;
    use crate::{SignalStore, SnapshotStore};

    /// Ready to run `task_id` (a task is only ready once it has an input).
    fn at_task(instance_id: &str, task_id: &str) -> WorkflowSnapshot {
        let input = bytes::Bytes::from_static(b"input");
        let mut snapshot = WorkflowSnapshot::with_initial_input(
            instance_id.into(),
            "definition-hash".into(),
            input,
        );
        snapshot.update_position(ExecutionPosition::AtTask { task_id: task_id.into() });
        snapshot
    }

    fn parked_for_an_hour(instance_id: &str) -> WorkflowSnapshot {
        let mut snapshot = WorkflowSnapshot::new(instance_id.into(), "definition-hash".into());
        let now = Utc::now();
        snapshot.update_position(ExecutionPosition::AtDelay {
            delay_id: "d".into(),
            entered_at: now,
            wake_at: now + Duration::hours(1),
            next_task_id: Some("next".into()),
        });
        snapshot
    }

    fn indexed(backend: &InMemoryBackend) -> (usize, usize) {
        let state = backend.lock().unwrap();
        (state.ready.len(), state.timers.len())
    }

    /// Workflows with a pending cancel or pause leave the indexes, so polls do not skip them
    /// again and again (a request can stay pending for good: the runtime only applies it at a
    /// task boundary), and come back when the request is cleared.
    #[tokio::test]
    async fn pending_requests_leave_the_indexes() {
        let backend = InMemoryBackend::new();
        for i in 0..50 {
            backend.save_snapshot(&at_task(&format!("ready-{i}"), "t")).await.unwrap();
            let parked = parked_for_an_hour(&format!("parked-{i}"));
            backend.save_snapshot(&parked).await.unwrap();
        }
        assert_eq!(indexed(&backend), (50, 50));
        for i in 0..50 {
            for id in [format!("ready-{i}"), format!("parked-{i}")] {
                let request = SignalRequest::new(Some("stop".into()), None);
                backend.store_signal(&id, SignalKind::Cancel, request).await.unwrap();
            }
        }
        assert_eq!(indexed(&backend), (0, 0));
        backend.clear_signal("ready-0", SignalKind::Cancel).await.unwrap();
        backend.clear_signal("parked-0", SignalKind::Cancel).await.unwrap();
        assert_eq!(indexed(&backend), (1, 1));
        // A save while the request is pending keeps the workflow out.
        backend.save_snapshot(&at_task("ready-1", "t")).await.unwrap();
        assert_eq!(indexed(&backend), (1, 1));
    }
}
