//! `SnapshotStore` for the in-memory backend.

use crate::results::{ArchiveAction, archive_action, held_results};
use crate::{BackendError, SnapshotStore};
use bytes::Bytes;
use sayiir_core::snapshot::WorkflowSnapshot;

use super::InMemoryBackend;
use super::state::{Stored, Workflow};
use crate::operation::Call;

impl SnapshotStore for InMemoryBackend {
    async fn save_snapshot(&self, snapshot: &WorkflowSnapshot) -> Result<(), BackendError> {
        self.calls()
            .run(Call::SaveSnapshot(snapshot), async {
                let id = snapshot.instance_id.as_str();
                let mut state = self.lock()?;
                let previous = state.workflows.get_mut(id);
                let archive = match previous {
                    None => Default::default(),
                    Some(previous) => {
                        let previous_state = match &previous.stored {
                            Stored::Snapshot(s) => Some(&s.state),
                            Stored::Undecodable(_) => None,
                        };
                        match archive_action(previous_state.map(AsRef::as_ref), &snapshot.state) {
                            ArchiveAction::Keep => std::mem::take(&mut previous.archive),
                            ArchiveAction::Clear => Default::default(),
                            ArchiveAction::ArchivePrevious => {
                                previous_state.and_then(held_results).cloned().unwrap_or_default()
                            }
                        }
                    }
                };
                let stored = Stored::Snapshot(Box::new(snapshot.clone()));
                state.put(id, Workflow::new(stored, archive));
                Ok(())
            })
            .await
    }

    async fn save_task_result(
        &self,
        instance_id: &str,
        task_id: &str,
        output: Bytes,
    ) -> Result<(), BackendError> {
        self.calls()
            .run(Call::SaveTaskResult { instance_id, task_id }, async {
                let mut state = self.lock()?;
                state
                    .workflows
                    .get(instance_id)
                    .ok_or_else(|| BackendError::NotFound(instance_id.to_string()))?
                    .snapshot(instance_id)?;
                state.modify(instance_id, |snapshot| {
                    snapshot.mark_task_completed(task_id.to_string(), output);
                });
                Ok(())
            })
            .await
    }

    async fn load_snapshot(&self, instance_id: &str) -> Result<WorkflowSnapshot, BackendError> {
        self.calls()
            .run(Call::LoadSnapshot(instance_id), async {
                let state = self.lock()?;
                state
                    .workflows
                    .get(instance_id)
                    .ok_or_else(|| BackendError::NotFound(instance_id.to_string()))?
                    .snapshot(instance_id)
                    .cloned()
            })
            .await
    }

    async fn delete_snapshot(&self, instance_id: &str) -> Result<(), BackendError> {
        self.calls()
            .run(Call::DeleteSnapshot(instance_id), async {
                if self.lock()?.delete(instance_id) {
                    Ok(())
                } else {
                    Err(BackendError::NotFound(instance_id.to_string()))
                }
            })
            .await
    }

    async fn list_snapshots(&self) -> Result<Vec<String>, BackendError> {
        self.calls()
            .run(Call::ListSnapshots, async {
                Ok(self.lock()?.workflows.keys().cloned().collect())
            })
            .await
    }
}
