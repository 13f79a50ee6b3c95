//! `SnapshotStore` for the in-memory backend.

use crate::results::{ArchiveAction, archive_action, held_results};
use crate::validation::{IdKind, validate_id, validate_ids, validate_snapshot};
use crate::{BackendError, SnapshotStore};
use bytes::Bytes;
use sayiir_core::snapshot::WorkflowSnapshot;

use super::state::{Stored, Workflow};
use super::{InMemoryBackend, span};

impl SnapshotStore for InMemoryBackend {
    async fn save_snapshot(&self, snapshot: &WorkflowSnapshot) -> Result<(), BackendError> {
        let id = snapshot.instance_id.as_str();
        let _span = span("save_snapshot", id).entered();
        validate_snapshot(snapshot)?;
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
    }

    async fn save_task_result(
        &self,
        instance_id: &str,
        task_id: &str,
        output: Bytes,
    ) -> Result<(), BackendError> {
        let _span = span("save_task_result", instance_id).entered();
        validate_ids(&[(IdKind::Instance, instance_id), (IdKind::Task, task_id)])?;
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
    }

    async fn load_snapshot(&self, instance_id: &str) -> Result<WorkflowSnapshot, BackendError> {
        let _span = span("load_snapshot", instance_id).entered();
        validate_id(IdKind::Instance, instance_id)?;
        let state = self.lock()?;
        state
            .workflows
            .get(instance_id)
            .ok_or_else(|| BackendError::NotFound(instance_id.to_string()))?
            .snapshot(instance_id)
            .cloned()
    }

    async fn delete_snapshot(&self, instance_id: &str) -> Result<(), BackendError> {
        let _span = span("delete_snapshot", instance_id).entered();
        validate_id(IdKind::Instance, instance_id)?;
        if self.lock()?.delete(instance_id) {
            Ok(())
        } else {
            Err(BackendError::NotFound(instance_id.to_string()))
        }
    }

    async fn list_snapshots(&self) -> Result<Vec<String>, BackendError> {
        let _span = span("list_snapshots", "").entered();
        Ok(self.lock()?.workflows.keys().cloned().collect())
    }
}
