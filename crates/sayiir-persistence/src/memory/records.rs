//! `WorkflowTransfer` for the in-memory backend: every read and the import under the one
//! lock, so each is atomic.

use std::collections::BTreeMap;

use chrono::Utc;
use sayiir_core::snapshot::TaskResult;
use sayiir_core::task_claim::TaskClaim;

use crate::BackendError;
use crate::claims::task_claim;
use crate::operation::Call;
use crate::results::reads_archive;
use crate::transfer::{ImportOutcome, QueuePage, WorkflowRecord, WorkflowTransfer};

use super::InMemoryBackend;
use super::state::{Signals, State, Stored, Workflow};

impl State {
    /// The non-empty event queues of `instance_id`, oldest event first.
    fn queues(&self, instance_id: &str) -> BTreeMap<String, Vec<bytes::Bytes>> {
        self.events
            .get(instance_id)
            .into_iter()
            .flatten()
            .filter(|(_, queue)| !queue.is_empty())
            .map(|(name, queue)| (name.clone(), queue.iter().cloned().collect()))
            .collect()
    }
}

impl WorkflowTransfer for InMemoryBackend {
    async fn export_workflow(
        &self,
        instance_id: &str,
    ) -> Result<Option<WorkflowRecord>, BackendError> {
        self.calls()
            .run(Call::ExportWorkflow(instance_id), async {
                let state = self.lock()?;
                let events = state.queues(instance_id);
                let Some(workflow) = state.workflows.get(instance_id) else {
                    return Ok(WorkflowRecord::unstarted(instance_id, events));
                };
                let snapshot = workflow.snapshot(instance_id)?.clone();
                let mut record = WorkflowRecord::of_snapshot(snapshot);
                if record.snapshot.as_ref().is_some_and(|s| reads_archive(&s.state)) {
                    record.archived_results = workflow
                        .archive
                        .iter()
                        .map(|(task, result)| (task.clone(), result.output.clone()))
                        .collect();
                }
                if let Some(signals) = state.signals.get(instance_id) {
                    record.cancel_request.clone_from(&signals.cancel);
                    record.pause_request.clone_from(&signals.pause);
                }
                record.events = events;
                Ok(Some(record))
            })
            .await
    }

    async fn import_workflow(
        &self,
        record: &WorkflowRecord,
    ) -> Result<ImportOutcome, BackendError> {
        self.calls()
            .run(Call::ImportWorkflow(record), async {
                let mut state = self.lock()?;
                let id = record.instance_id.as_str();
                if state.workflows.contains_key(id) || !state.queues(id).is_empty() {
                    return Ok(ImportOutcome::AlreadyStored);
                }
                // Requests and events first: `put` indexes the workflow by them.
                let queues = record
                    .events
                    .iter()
                    .map(|(name, queue)| (name.clone(), queue.iter().cloned().collect()))
                    .collect();
                if !record.events.is_empty() {
                    state.events.insert(id.to_string(), queues);
                }
                let Some(snapshot) = &record.snapshot else {
                    return Ok(ImportOutcome::Imported);
                };
                let signals = Signals {
                    cancel: record.cancel_request.clone(),
                    pause: record.pause_request.clone(),
                };
                if signals.any() {
                    state.signals.insert(id.to_string(), signals);
                }
                let archive = record
                    .archived_results
                    .iter()
                    .map(|(task, output)| {
                        (task.clone(), TaskResult { task_id: task.clone(), output: output.clone() })
                    })
                    .collect();
                let stored = Stored::Snapshot(Box::new(snapshot.clone()));
                state.put(id, Workflow::new(stored, archive));
                Ok(ImportOutcome::Imported)
            })
            .await
    }

    async fn list_unstarted_queues(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<QueuePage, BackendError> {
        self.calls()
            .run(Call::ListUnstartedQueues(limit), async {
                let state = self.lock()?;
                let mut ids: Vec<&String> = state
                    .events
                    .iter()
                    .filter(|(id, queues)| {
                        cursor.is_none_or(|after| id.as_str() > after)
                            && !state.workflows.contains_key(id.as_str())
                            && queues.values().any(|q| !q.is_empty())
                    })
                    .map(|(id, _)| id)
                    .collect();
                ids.sort_unstable();
                ids.truncate(QueuePage::fetch_size(limit));
                Ok(QueuePage::from_fetched(ids.into_iter().cloned().collect(), limit))
            })
            .await
    }

    async fn task_claims(&self, instance_id: &str) -> Result<Vec<TaskClaim>, BackendError> {
        self.calls()
            .run(Call::TaskClaims(instance_id), async {
                let state = self.lock()?;
                let now_ms = Utc::now().timestamp_millis();
                let mut claims: Vec<TaskClaim> = state
                    .claims
                    .get(instance_id)
                    .into_iter()
                    .flatten()
                    .filter(|(_, c)| crate::claims::is_live(c.expires_ms, now_ms))
                    .map(|(task, c)| {
                        task_claim(instance_id, task, &c.worker_id, c.claimed_ms, c.expires_ms)
                    })
                    .collect();
                claims.sort_by(|a, b| a.task_id.cmp(&b.task_id));
                Ok(claims)
            })
            .await
    }
}
