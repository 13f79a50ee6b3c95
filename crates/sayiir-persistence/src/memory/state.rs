//! The backend's data, and the indexes `find_available_tasks` reads, kept in step.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::BackendError;
use crate::codec::decode_snapshot;
use crate::schedule::{Schedule, index_millis, schedule_of};
use bytes::Bytes;
use sayiir_core::snapshot::{SignalRequest, TaskResult, WorkflowSnapshot};

/// One stored workflow.
#[derive(Debug)]
pub(crate) struct Workflow {
    pub(crate) stored: Stored,
    /// Results kept after a transition to Completed/Failed (§ Results survive completion).
    pub(crate) archive: HashMap<String, TaskResult>,
    /// What a listing shows of it: from the snapshot, or, for bytes that do not decode, what
    /// the snapshot they replaced said (as the other backends keep their columns).
    pub(crate) listed: Option<Listed>,
    /// The index entries made for it, so removing them needs no recomputation.
    indexed: Indexed,
}

/// The listing and retention key of a workflow (§ Listing, § Retention).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub(crate) status: &'static str,
    pub(crate) definition_hash: String,
    pub(crate) updated_at: u64,
}

impl Listed {
    fn of(snapshot: &WorkflowSnapshot) -> Option<Self> {
        let status = crate::status::ALL.into_iter().find(|s| *s == snapshot.state.as_ref())?;
        Some(Self {
            status,
            definition_hash: snapshot.definition_hash.clone(),
            updated_at: snapshot.updated_at,
        })
    }
}

/// Where [`State::index`] put a workflow.
#[derive(Debug, Default)]
struct Indexed {
    ready: Option<(u8, u64)>,
    timer: Option<i64>,
    woken: bool,
}

/// A snapshot, or bytes that did not decode (written through the raw test hook).
#[derive(Debug)]
pub(crate) enum Stored {
    Snapshot(Box<WorkflowSnapshot>),
    Undecodable(Vec<u8>),
}

impl Workflow {
    /// A workflow not yet in any index.
    pub(crate) fn new(stored: Stored, archive: HashMap<String, TaskResult>) -> Self {
        let listed = match &stored {
            Stored::Snapshot(snapshot) => Listed::of(snapshot),
            Stored::Undecodable(_) => None,
        };
        Self { stored, archive, listed, indexed: Indexed::default() }
    }

    /// The snapshot, or the `Serialization` error of the bytes that stand in for it.
    pub(crate) fn snapshot(&self, instance_id: &str) -> Result<&WorkflowSnapshot, BackendError> {
        match &self.stored {
            Stored::Snapshot(snapshot) => Ok(snapshot),
            Stored::Undecodable(blob) => Err(decode_snapshot(instance_id, blob)
                .err()
                .unwrap_or_else(|| BackendError::Serialization(instance_id.to_string()))),
        }
    }

    fn schedule(&self) -> Schedule {
        match &self.stored {
            Stored::Snapshot(snapshot) => schedule_of(snapshot),
            Stored::Undecodable(_) => Schedule::Idle,
        }
    }
}

/// Pending cancel and pause requests of one instance.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    pub(crate) cancel: Option<SignalRequest>,
    pub(crate) pause: Option<SignalRequest>,
}

impl Signals {
    pub(crate) fn any(&self) -> bool {
        self.cancel.is_some() || self.pause.is_some()
    }
}

/// A live or expired claim; times in Unix milliseconds.
#[derive(Debug, Clone)]
pub(crate) struct Claim {
    pub(crate) worker_id: String,
    pub(crate) claimed_ms: i64,
    pub(crate) expires_ms: Option<i64>,
}

/// Entry of the ready index: best first within a priority level.
pub(crate) type ReadyKey = (u8, u64, String);

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) workflows: HashMap<String, Workflow>,
    pub(crate) signals: HashMap<String, Signals>,
    /// instance → signal name → FIFO queue.
    pub(crate) events: HashMap<String, HashMap<String, VecDeque<Bytes>>>,
    /// instance → task → claim.
    pub(crate) claims: HashMap<String, HashMap<String, Claim>>,
    /// Claims with an expiry, by expiry, to purge without a scan.
    pub(crate) claim_expiries: BTreeSet<(i64, String, String)>,
    /// Workflows at a runnable task, ordered `(priority, updated_at, instance_id)`.
    pub(crate) ready: BTreeSet<ReadyKey>,
    /// Parked workflows with a wake time (delays, signal timeouts), by wake time in ms.
    pub(crate) timers: BTreeSet<(i64, String)>,
    /// Workflows waiting at a signal whose event queue is not empty.
    pub(crate) woken: BTreeSet<String>,
    /// Every workflow, per status, by `(updated_at, instance_id)`: listings, and prunes of
    /// every definition.
    pub(crate) by_status: HashMap<&'static str, BTreeSet<CatalogKey>>,
    /// Every workflow, per status and definition, by `(updated_at, instance_id)`: listings
    /// and prunes of one definition.
    pub(crate) by_definition: HashMap<(&'static str, String), BTreeSet<CatalogKey>>,
}

/// Entry of the listing indexes: `(updated_at, instance_id)`.
pub(crate) type CatalogKey = (u64, String);

impl State {
    /// Stores `workflow` under `instance_id`, replacing any previous one, and re-indexes it.
    pub(crate) fn put(&mut self, instance_id: &str, workflow: Workflow) {
        self.unindex(instance_id);
        self.uncatalog(instance_id);
        match self.workflows.get_mut(instance_id) {
            Some(slot) => *slot = workflow,
            None => {
                self.workflows.insert(instance_id.to_string(), workflow);
            }
        }
        self.catalog(instance_id);
        self.index(instance_id);
    }

    /// Adds the workflow to the listing indexes.
    fn catalog(&mut self, instance_id: &str) {
        let Some(Listed { status, definition_hash, updated_at }) =
            self.workflows.get(instance_id).and_then(|w| w.listed.clone())
        else {
            return;
        };
        let key = (updated_at, instance_id.to_string());
        self.by_status.entry(status).or_default().insert(key.clone());
        self.by_definition.entry((status, definition_hash)).or_default().insert(key);
    }

    /// Removes the workflow from the listing indexes.
    fn uncatalog(&mut self, instance_id: &str) {
        let Some(Listed { status, definition_hash, updated_at }) =
            self.workflows.get(instance_id).and_then(|w| w.listed.clone())
        else {
            return;
        };
        let key = (updated_at, instance_id.to_string());
        if let Some(set) = self.by_status.get_mut(status) {
            set.remove(&key);
        }
        let by_definition = (status, definition_hash);
        if let Some(set) = self.by_definition.get_mut(&by_definition) {
            set.remove(&key);
            if set.is_empty() {
                self.by_definition.remove(&by_definition);
            }
        }
    }

    /// Removes the workflow from every index (before it changes or goes).
    pub(crate) fn unindex(&mut self, instance_id: &str) {
        let Some(workflow) = self.workflows.get_mut(instance_id) else { return };
        let Indexed { ready, timer, woken } = std::mem::take(&mut workflow.indexed);
        if ready.is_none() && timer.is_none() && !woken {
            return;
        }
        let id = instance_id.to_string();
        if let Some((priority, updated_at)) = ready {
            self.ready.remove(&(priority, updated_at, id));
        } else if let Some(wake_ms) = timer {
            self.timers.remove(&(wake_ms, id));
        }
        if woken {
            self.woken.remove(instance_id);
        }
    }

    /// Adds the workflow to the indexes its schedule calls for. A workflow with a pending cancel or
    /// pause is in none: it is neither returned nor advanced (§ Advancing parked workflows, §
    /// Eligibility rules), and such requests can stay pending for good (§ Requests for unclaimed
    /// workflows are never applied), so keeping it indexed would make every poll skip it again.
    pub(crate) fn index(&mut self, instance_id: &str) {
        if self.has_signal(instance_id) {
            return;
        }
        let Some(workflow) = self.workflows.get(instance_id) else { return };
        let mut indexed = Indexed::default();
        match workflow.schedule() {
            Schedule::Ready(task) => {
                self.ready.insert((task.priority, task.updated_at, instance_id.to_string()));
                indexed.ready = Some((task.priority, task.updated_at));
            }
            Schedule::Delay { wake_at } => {
                self.timers.insert((index_millis(wake_at), instance_id.to_string()));
                indexed.timer = Some(index_millis(wake_at));
            }
            Schedule::Signal { signal_name, wake_at } => {
                if let Some(wake_at) = wake_at {
                    self.timers.insert((index_millis(wake_at), instance_id.to_string()));
                    indexed.timer = Some(index_millis(wake_at));
                }
                if self.has_event(instance_id, &signal_name) {
                    self.woken.insert(instance_id.to_string());
                    indexed.woken = true;
                }
            }
            Schedule::Idle => {}
        }
        if let Some(workflow) = self.workflows.get_mut(instance_id) {
            workflow.indexed = indexed;
        }
    }

    /// Applies `change` to a stored, decodable snapshot and re-indexes it.
    pub(crate) fn modify<R>(
        &mut self,
        instance_id: &str,
        change: impl FnOnce(&mut WorkflowSnapshot) -> R,
    ) -> Option<R> {
        self.unindex(instance_id);
        self.uncatalog(instance_id);
        let result = match self.workflows.get_mut(instance_id) {
            Some(Workflow { stored: Stored::Snapshot(snapshot), listed, .. }) => {
                let result = change(snapshot);
                *listed = Listed::of(snapshot);
                Some(result)
            }
            _ => None,
        };
        self.catalog(instance_id);
        self.index(instance_id);
        result
    }

    pub(crate) fn has_event(&self, instance_id: &str, signal_name: &str) -> bool {
        self.events
            .get(instance_id)
            .and_then(|queues| queues.get(signal_name))
            .is_some_and(|q| !q.is_empty())
    }

    pub(crate) fn has_signal(&self, instance_id: &str) -> bool {
        self.signals.get(instance_id).is_some_and(Signals::any)
    }

    /// The claim on `(instance, task)` if it is live at `now_ms`.
    pub(crate) fn live_claim(
        &self,
        instance_id: &str,
        task_id: &str,
        now_ms: i64,
    ) -> Option<&Claim> {
        self.claims
            .get(instance_id)
            .and_then(|tasks| tasks.get(task_id))
            .filter(|c| crate::claims::is_live(c.expires_ms, now_ms))
    }

    pub(crate) fn insert_claim(&mut self, instance_id: &str, task_id: &str, claim: Claim) {
        self.remove_claim(instance_id, task_id);
        if let Some(ms) = claim.expires_ms {
            self.claim_expiries.insert((ms, instance_id.to_string(), task_id.to_string()));
        }
        self.claims.entry(instance_id.to_string()).or_default().insert(task_id.to_string(), claim);
    }

    pub(crate) fn remove_claim(&mut self, instance_id: &str, task_id: &str) -> Option<Claim> {
        let tasks = self.claims.get_mut(instance_id)?;
        let claim = tasks.remove(task_id)?;
        if tasks.is_empty() {
            self.claims.remove(instance_id);
        }
        if let Some(ms) = claim.expires_ms {
            self.claim_expiries.remove(&(ms, instance_id.to_string(), task_id.to_string()));
        }
        Some(claim)
    }

    /// Drops every claim that has expired at `now_ms`.
    pub(crate) fn purge_expired_claims(&mut self, now_ms: i64) {
        while let Some((ms, instance_id, task_id)) = self.claim_expiries.first().cloned() {
            if ms > now_ms {
                break;
            }
            self.remove_claim(&instance_id, &task_id);
        }
    }

    /// Removes the workflow and everything stored for the instance (§ Delete removes everything).
    pub(crate) fn delete(&mut self, instance_id: &str) -> bool {
        self.unindex(instance_id);
        self.uncatalog(instance_id);
        if self.workflows.remove(instance_id).is_none() {
            return false;
        }
        self.signals.remove(instance_id);
        self.events.remove(instance_id);
        let tasks: Vec<String> =
            self.claims.get(instance_id).map(|t| t.keys().cloned().collect()).unwrap_or_default();
        for task_id in tasks {
            self.remove_claim(instance_id, &task_id);
        }
        true
    }
}
