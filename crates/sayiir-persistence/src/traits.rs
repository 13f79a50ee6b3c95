//! The storage traits the Sayiir runtime checkpoints through.
//!
//! Signatures and default bodies are exactly those of sayiir-persistence 0.4.0, so runtime code
//! written against 0.4.0 compiles unchanged. What every method must do is written down in
//! [`behaviour`](crate::behaviour) (`docs/behaviour.md` in the repository); the conformance
//! crate checks it.

use std::future::Future;

use chrono::Duration;
use sayiir_core::snapshot::{PauseRequest, SignalKind, SignalRequest, WorkflowSnapshot};
use sayiir_core::task_claim::{AvailableTask, TaskClaim};

use crate::BackendError;
use crate::validation::not_paused_error;

/// Create, read, replace and delete workflow snapshots.
pub trait SnapshotStore: Send + Sync {
    /// Stores `snapshot`, replacing every field of any snapshot stored under the same
    /// instance id (no merge: results absent from `snapshot` are gone afterwards).
    fn save_snapshot(
        &self,
        snapshot: &WorkflowSnapshot,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Records one task output in the stored snapshot, atomically.
    ///
    /// Concurrent calls for different tasks of one instance (fork branches) all survive.
    /// A missing snapshot is `NotFound`; a snapshot that is not in progress is left unchanged.
    fn save_task_result(
        &self,
        instance_id: &str,
        task_id: &str,
        output: bytes::Bytes,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Returns the stored snapshot, `trace_parent` included; `NotFound` if there is none.
    fn load_snapshot(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<WorkflowSnapshot, BackendError>> + Send;

    /// Deletes the snapshot and everything stored for the instance; `NotFound` if absent.
    fn delete_snapshot(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Returns the instance id of every stored snapshot, in no particular order.
    fn list_snapshots(&self) -> impl Future<Output = Result<Vec<String>, BackendError>> + Send;
}

/// Cancel and pause requests, and external events, for workflow instances.
///
/// Backends implement the primitives; `check_and_cancel`, `check_and_pause` and `unpause` have
/// default bodies built from them that are correct but not atomic, so every backend of this
/// project overrides them.
pub trait SignalStore: SnapshotStore {
    /// Records a cancel or pause request, after checking it against the workflow's state.
    fn store_signal(
        &self,
        instance_id: &str,
        kind: SignalKind,
        request: SignalRequest,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Returns the pending request of `kind`, if any.
    fn get_signal(
        &self,
        instance_id: &str,
        kind: SignalKind,
    ) -> impl Future<Output = Result<Option<SignalRequest>, BackendError>> + Send;

    /// Removes the pending request of `kind`, if any.
    fn clear_signal(
        &self,
        instance_id: &str,
        kind: SignalKind,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Appends an event to the FIFO queue of `(instance_id, signal_name)`.
    ///
    /// The instance need not exist, and may be terminal.
    fn send_event(
        &self,
        instance_id: &str,
        signal_name: &str,
        payload: bytes::Bytes,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Removes and returns the oldest event of `(instance_id, signal_name)`, if any.
    fn consume_event(
        &self,
        instance_id: &str,
        signal_name: &str,
    ) -> impl Future<Output = Result<Option<bytes::Bytes>, BackendError>> + Send;

    /// Applies a pending cancel request to an in-progress workflow.
    ///
    /// Returns `true` if the workflow is now cancelled (and the request consumed), `false` if
    /// no request was pending or the workflow is not in progress.
    fn check_and_cancel(
        &self,
        instance_id: &str,
        interrupted_at_task: Option<&str>,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send {
        async move {
            let Some(request) = self.get_signal(instance_id, SignalKind::Cancel).await? else {
                return Ok(false);
            };
            let mut snapshot = self.load_snapshot(instance_id).await?;
            if !snapshot.state.is_in_progress() {
                return Ok(false);
            }
            snapshot.mark_cancelled(
                request.reason,
                request.requested_by,
                interrupted_at_task.map(String::from),
            );
            self.save_snapshot(&snapshot).await?;
            self.clear_signal(instance_id, SignalKind::Cancel).await?;
            Ok(true)
        }
    }

    /// Applies a pending pause request to an in-progress workflow.
    ///
    /// Returns `true` if the workflow is now paused (and the request consumed), `false` if no
    /// request was pending or the workflow is not in progress.
    fn check_and_pause(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send {
        async move {
            let Some(request) = self.get_signal(instance_id, SignalKind::Pause).await? else {
                return Ok(false);
            };
            let mut snapshot = self.load_snapshot(instance_id).await?;
            if !snapshot.state.is_in_progress() {
                return Ok(false);
            }
            let pause_request: PauseRequest = request.into();
            snapshot.mark_paused(&pause_request);
            self.save_snapshot(&snapshot).await?;
            self.clear_signal(instance_id, SignalKind::Pause).await?;
            Ok(true)
        }
    }

    /// Returns a paused workflow to in-progress and returns the stored result.
    ///
    /// `CannotPause` naming the current state if the workflow is not paused.
    fn unpause(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<WorkflowSnapshot, BackendError>> + Send {
        async move {
            let mut snapshot = self.load_snapshot(instance_id).await?;
            if !snapshot.state.is_paused() {
                return Err(not_paused_error(&snapshot.state));
            }
            snapshot.mark_unpaused();
            self.save_snapshot(&snapshot).await?;
            Ok(snapshot)
        }
    }
}

/// Leases on tasks, so that only one of many distributed workers runs a task.
pub trait TaskClaimStore: Send + Sync {
    /// Claims `(instance_id, task_id)` for `worker_id`.
    ///
    /// `Ok(None)` if a live claim exists (even the caller's own). `ttl = None` never expires.
    fn claim_task(
        &self,
        instance_id: &str,
        task_id: &str,
        worker_id: &str,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<Option<TaskClaim>, BackendError>> + Send;

    /// Releases a claim held by `worker_id`.
    ///
    /// `NotFound` if there is no claim; `Backend` if another worker holds it.
    fn release_task_claim(
        &self,
        instance_id: &str,
        task_id: &str,
        worker_id: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Pushes the expiry of a claim held by `worker_id` back by `additional_duration`,
    /// counted from its previous expiry.
    fn extend_task_claim(
        &self,
        instance_id: &str,
        task_id: &str,
        worker_id: &str,
        additional_duration: Duration,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Returns up to `limit` tasks that `worker_id` may run now, best first.
    ///
    /// A task's priority improves by one level per `aging_interval` it has waited
    /// (`Duration::MAX` disables aging; intervals under one second count as one second).
    /// Workflows parked at a due delay or at a signal wait are advanced first.
    fn find_available_tasks(
        &self,
        worker_id: &str,
        limit: usize,
        aging_interval: Duration,
        worker_tags: &[String],
    ) -> impl Future<Output = Result<Vec<AvailableTask>, BackendError>> + Send;
}

/// Reads single task outputs, also after the workflow has completed or failed.
pub trait TaskResultStore: SnapshotStore {
    /// Returns the output of `task_id`, `None` if it has none; `NotFound` if the instance
    /// does not exist.
    fn load_task_result(
        &self,
        instance_id: &str,
        task_id: &str,
    ) -> impl Future<Output = Result<Option<bytes::Bytes>, BackendError>> + Send;
}

/// What the Sayiir runtime's checkpointing runner needs: snapshots plus signals.
///
/// Implemented for every type that implements both; backends never implement it directly.
pub trait PersistentBackend: SnapshotStore + SignalStore {}

impl<T: SnapshotStore + SignalStore> PersistentBackend for T {}
