//! `TaskResultStore` for the in-memory backend.

use crate::results::reads_archive;
use crate::{BackendError, TaskResultStore};
use bytes::Bytes;

use super::InMemoryBackend;
use crate::operation::Call;

impl TaskResultStore for InMemoryBackend {
    async fn load_task_result(
        &self,
        instance_id: &str,
        task_id: &str,
    ) -> Result<Option<Bytes>, BackendError> {
        self.calls()
            .run(Call::LoadTaskResult { instance_id, task_id }, async {
                let state = self.lock()?;
                let workflow = state
                    .workflows
                    .get(instance_id)
                    .ok_or_else(|| BackendError::NotFound(instance_id.to_string()))?;
                let snapshot = workflow.snapshot(instance_id)?;
                let result = if reads_archive(&snapshot.state) {
                    workflow.archive.get(task_id)
                } else {
                    snapshot.get_task_result(task_id)
                };
                Ok(result.map(|r| r.output.clone()))
            })
            .await
    }
}
