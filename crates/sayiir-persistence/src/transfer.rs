//! Export and import: reading everything stored for a workflow without changing it, and
//! writing it into another store.
//!
//! [`WorkflowTransfer`] is an extension beside the 0.4.0 traits (which stay as they were):
//! the runtime never calls it; the admin tooling does, to copy a store into another backend
//! and to show what a workflow holds. Its behaviour is written down in
//! [`behaviour`](crate::behaviour), § Transfer; the portable file it feeds is described in
//! [`export_file`](crate::export_file).

use std::collections::BTreeMap;
use std::future::Future;

use bytes::Bytes;
use sayiir_core::snapshot::{SignalRequest, WorkflowSnapshot};
use sayiir_core::task_claim::TaskClaim;

use crate::BackendError;
use crate::results::reads_archive;
use crate::validation::{IdKind, validate_id, validate_signal_request, validate_snapshot};

/// The page size of [`WorkflowTransfer::list_unstarted_queues`] unless set: 500 ids.
pub const DEFAULT_QUEUE_PAGE: usize = 500;

/// Everything a store holds for one workflow instance, except its claims (leases of the
/// workers running it now, which mean nothing in another store).
///
/// An instance may have buffered events and no snapshot: `send_event` accepts events for a
/// workflow that has not started yet. Such a record has `snapshot: None` and only `events`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkflowRecord {
    /// The workflow instance.
    pub instance_id: String,
    /// The stored snapshot, with its `trace_parent` and (for InProgress, Paused, Cancelled)
    /// its `completed_tasks`; `None` for an instance that only has buffered events.
    pub snapshot: Option<WorkflowSnapshot>,
    /// The results archive of a Completed or Failed workflow, task id → output (§ Results
    /// survive completion); empty for the other states.
    pub archived_results: BTreeMap<String, Bytes>,
    /// The pending cancel request, if any.
    pub cancel_request: Option<SignalRequest>,
    /// The pending pause request, if any.
    pub pause_request: Option<SignalRequest>,
    /// The buffered events, signal name → payloads, oldest first. Queues are never empty.
    pub events: BTreeMap<String, Vec<Bytes>>,
}

impl WorkflowRecord {
    /// A record of `snapshot` alone: no archive, requests or events.
    #[must_use]
    pub fn of_snapshot(snapshot: WorkflowSnapshot) -> Self {
        Self {
            instance_id: snapshot.instance_id.clone(),
            snapshot: Some(snapshot),
            archived_results: BTreeMap::new(),
            cancel_request: None,
            pause_request: None,
            events: BTreeMap::new(),
        }
    }

    /// A record of buffered events for an instance that has no snapshot.
    #[must_use]
    pub fn of_events(instance_id: impl Into<String>, events: BTreeMap<String, Vec<Bytes>>) -> Self {
        Self {
            instance_id: instance_id.into(),
            snapshot: None,
            archived_results: BTreeMap::new(),
            cancel_request: None,
            pause_request: None,
            events,
        }
    }

    /// What an export returns for an instance without a snapshot: its buffered events, or
    /// `None` when it has none either (nothing is stored for it).
    #[must_use]
    pub fn unstarted(
        instance_id: impl Into<String>,
        events: BTreeMap<String, Vec<Bytes>>,
    ) -> Option<Self> {
        (!events.is_empty()).then(|| Self::of_events(instance_id, events))
    }

    /// Whether the record holds nothing at all (no snapshot and no event): such an instance
    /// is not stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.events.is_empty()
    }

    /// Checks the record before any I/O, with the rules the 0.4.0 methods apply to the same
    /// data, plus its consistency: the snapshot's instance id is the record's; an archive only
    /// beside a Completed or Failed snapshot; requests only beside a snapshot; no empty event
    /// queue.
    ///
    /// # Errors
    /// `Backend` naming the instance and what is wrong; nothing has been stored.
    pub fn check(&self) -> Result<(), BackendError> {
        let fail = |what: String| {
            Err(BackendError::Backend(format!(
                "import_workflow of {:?}: {what}; nothing was stored",
                self.instance_id
            )))
        };
        validate_id(IdKind::Instance, &self.instance_id)?;
        match &self.snapshot {
            Some(snapshot) => {
                if snapshot.instance_id != self.instance_id {
                    return fail(format!(
                        "the snapshot belongs to instance {:?}",
                        snapshot.instance_id
                    ));
                }
                validate_snapshot(snapshot)?;
                if !self.archived_results.is_empty() && !reads_archive(&snapshot.state) {
                    return fail(format!(
                        "archived results beside a {} snapshot, which holds its own results",
                        snapshot.state.as_ref()
                    ));
                }
            }
            None if self.events.is_empty() => {
                return fail("it holds neither a snapshot nor events".to_string());
            }
            None => {
                if !self.archived_results.is_empty()
                    || self.cancel_request.is_some()
                    || self.pause_request.is_some()
                {
                    return fail(
                        "archived results or pending requests without a snapshot".to_string(),
                    );
                }
            }
        }
        for task_id in self.archived_results.keys() {
            validate_id(IdKind::Task, task_id)?;
        }
        for request in [&self.cancel_request, &self.pause_request].into_iter().flatten() {
            validate_signal_request(&self.instance_id, request)?;
        }
        for (signal_name, queue) in &self.events {
            validate_id(IdKind::SignalName, signal_name)?;
            if queue.is_empty() {
                return fail(format!("the event queue {signal_name:?} is empty"));
            }
        }
        Ok(())
    }

    /// How many buffered events the record holds.
    #[must_use]
    pub fn event_count(&self) -> usize {
        self.events.values().map(Vec::len).sum()
    }
}

/// What [`WorkflowTransfer::import_workflow`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    /// The record is stored.
    Imported,
    /// The store already held a snapshot or buffered events for the instance: it was left
    /// as it was, and nothing of the record was stored.
    AlreadyStored,
}

/// A page of [`WorkflowTransfer::list_unstarted_queues`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueuePage {
    /// Instances that have buffered events and no snapshot.
    pub instance_ids: Vec<String>,
    /// Where the next page starts; `None` after the last page.
    pub next: Option<String>,
}

impl QueuePage {
    /// How many ids a backend that pages by instance id reads for a page of `limit`: one
    /// more, which only says whether a next page exists.
    #[must_use]
    pub fn fetch_size(limit: usize) -> usize {
        limit.saturating_add(1)
    }

    /// The page of `limit` ids out of `fetched` (ids in ascending order, read with
    /// [`QueuePage::fetch_size`]); `next` is the last id kept when more were read.
    #[must_use]
    pub fn from_fetched(mut fetched: Vec<String>, limit: usize) -> Self {
        let more = fetched.len() > limit;
        fetched.truncate(limit);
        let next = if more { fetched.last().cloned() } else { None };
        Self { instance_ids: fetched, next }
    }
}

/// Non-destructive reads of everything stored for a workflow, and the write that puts it
/// into another store. Implemented by every backend of this project.
pub trait WorkflowTransfer: Send + Sync {
    /// Everything stored for `instance_id` except claims, read in one consistent step (one
    /// transaction, or one Redis `MULTI`) and left unchanged: no event is consumed. `None`
    /// when the instance has neither a snapshot nor buffered events.
    ///
    /// # Errors
    /// `Serialization` naming the instance when its stored snapshot or a pending request
    /// cannot be decoded; `Backend` for an invalid id or a storage failure.
    fn export_workflow(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<Option<WorkflowRecord>, BackendError>> + Send;

    /// Stores `record` whole, in one step (one transaction, or one Lua script): afterwards
    /// the instance loads, serves its results, answers `get_signal` and `consume_event`, and
    /// is scheduled as it was where it was exported. `AlreadyStored` (and nothing written)
    /// when the store holds a snapshot or buffered events for the instance, so an import run
    /// again after an interruption skips what the first run stored.
    ///
    /// # Errors
    /// `Backend` when the record fails [`WorkflowRecord::check`] (nothing is stored) or on a
    /// storage failure (the record is stored whole or not at all).
    fn import_workflow(
        &self,
        record: &WorkflowRecord,
    ) -> impl Future<Output = Result<ImportOutcome, BackendError>> + Send;

    /// Up to about `limit` instances that have buffered events but no snapshot, starting at
    /// `cursor` (the previous page's `next`; from the start when `None`). The listing of
    /// stored workflows ([`WorkflowListing`](crate::WorkflowListing)) does not show them.
    /// On Redis, pages follow `SCAN`: a page may hold more or fewer than `limit` ids, and an
    /// id may come twice when the keyspace is resized meanwhile.
    ///
    /// # Errors
    /// `Backend` for a `limit` outside 1 to 1,000, a cursor this backend did not write, or a
    /// storage failure.
    fn list_unstarted_queues(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<QueuePage, BackendError>> + Send;

    /// The claims held on the tasks of `instance_id` that are live now, by task id. Exports
    /// leave claims out; this read is for tooling that shows who runs a workflow.
    ///
    /// # Errors
    /// `Backend` for an invalid id, a stored claim that cannot be read, or a storage failure.
    fn task_claims(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<Vec<TaskClaim>, BackendError>> + Send;
}

/// Checks the `limit` of [`WorkflowTransfer::list_unstarted_queues`].
///
/// # Errors
/// `Backend` when `limit` is 0 or above [`crate::listing::MAX_PAGE`].
pub fn check_queue_limit(limit: usize) -> Result<(), BackendError> {
    if limit == 0 || limit > crate::listing::MAX_PAGE {
        return Err(BackendError::Backend(format!(
            "list_unstarted_queues: limit {limit} is out of range; use 1 to {}",
            crate::listing::MAX_PAGE
        )));
    }
    Ok(())
}
