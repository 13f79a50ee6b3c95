//! Retention: removing finished workflows, so a store does not grow forever.
//!
//! [`RetentionStore`] is an extension beside the 0.4.0 traits (which stay as they were): the
//! runtime never calls it; operators and the admin tooling do. Its behaviour is written down
//! in [`behaviour`](crate::behaviour), § Retention.

use std::future::Future;

use crate::BackendError;

/// The batch size of a [`PruneRequest`] unless set: 500 workflows.
pub const DEFAULT_PRUNE_BATCH: usize = 500;

/// The largest batch a [`PruneRequest`] may ask for: 10,000 workflows. One batch is one
/// transaction (PostgreSQL, SQLite) or one script (Redis), so it bounds how long a prune
/// holds locks or blocks the server.
pub const MAX_PRUNE_BATCH: usize = 10_000;

/// Which finished workflows a prune removes.
///
/// A workflow is finished when its status is `Completed`, `Failed` or `Cancelled`
/// (`status::TERMINAL`); its finish time is the `updated_at` of its stored snapshot (Unix
/// seconds), which the runtime stamps when it saves the terminal state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PruneRequest {
    /// Only workflows whose `updated_at` (Unix seconds) is strictly before this.
    pub finished_before: u64,
    /// Only workflows of this definition (`WorkflowSnapshot::definition_hash`); all when
    /// `None`.
    pub definition_hash: Option<String>,
    /// The most workflows one [`RetentionStore::prune_finished_batch`] removes (default
    /// [`DEFAULT_PRUNE_BATCH`], between 1 and [`MAX_PRUNE_BATCH`]).
    pub batch_size: usize,
}

impl PruneRequest {
    /// Finished workflows whose `updated_at` (Unix seconds) is before `finished_before`, of
    /// every definition, [`DEFAULT_PRUNE_BATCH`] at a time.
    #[must_use]
    pub fn finished_before(finished_before: u64) -> Self {
        Self { finished_before, definition_hash: None, batch_size: DEFAULT_PRUNE_BATCH }
    }

    /// Only workflows of the definition `definition_hash`.
    #[must_use]
    pub fn definition(mut self, definition_hash: impl Into<String>) -> Self {
        self.definition_hash = Some(definition_hash.into());
        self
    }

    /// At most `batch_size` workflows per batch.
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Checks the request before any I/O.
    ///
    /// # Errors
    /// `BackendError::Backend` when `batch_size` is 0 or above [`MAX_PRUNE_BATCH`], or the
    /// definition hash is empty.
    pub fn check(&self) -> Result<(), BackendError> {
        if self.batch_size == 0 || self.batch_size > MAX_PRUNE_BATCH {
            return Err(BackendError::Backend(format!(
                "prune_finished: batch_size {} is out of range; use 1 to {MAX_PRUNE_BATCH}",
                self.batch_size
            )));
        }
        crate::validation::check_definition_filter(
            "prune_finished",
            self.definition_hash.as_deref(),
        )
    }
}

/// Removes finished workflows. Implemented by every backend of this project.
///
/// A pruned workflow is gone as after `SnapshotStore::delete_snapshot`: its snapshot, task
/// results and their archive, pending requests, buffered events and claims. A workflow that
/// is not finished is never touched, whatever its `updated_at`. Each batch costs in proportion
/// to the workflows it removes, not to the number stored: backends read an index of finished
/// workflows ordered by finish time.
pub trait RetentionStore: Send + Sync {
    /// Removes at most `request.batch_size` finished workflows that match `request`, oldest
    /// `updated_at` first, and returns how many it removed (0 when none is left). Each
    /// workflow goes whole or stays; PostgreSQL and SQLite remove the batch in one
    /// transaction, Redis one workflow per script.
    ///
    /// # Errors
    /// `Backend` for an invalid request (see [`PruneRequest::check`]; nothing is removed) or a
    /// storage failure (on Redis, the workflows removed before it stay removed).
    fn prune_finished_batch(
        &self,
        request: &PruneRequest,
    ) -> impl Future<Output = Result<u64, BackendError>> + Send;

    /// Removes every finished workflow that matches `request`, batch after batch until one
    /// removes none, and returns how many it removed. Workflows that finish meanwhile with an
    /// older `updated_at` may or may not be included.
    ///
    /// # Errors
    /// As [`RetentionStore::prune_finished_batch`]; the batches before the failing one stay
    /// removed.
    fn prune_finished(
        &self,
        request: &PruneRequest,
    ) -> impl Future<Output = Result<u64, BackendError>> + Send {
        async move {
            let mut total = 0;
            loop {
                // Until a batch removes nothing: a batch may remove fewer than it found (Redis
                // skips a workflow saved again meanwhile) while more are left behind it.
                let removed = self.prune_finished_batch(request).await?;
                total += removed;
                if removed == 0 {
                    return Ok(total);
                }
            }
        }
    }
}
