//! `TaskResultStore`: one statement. The `task_results` rows are the held results of a
//! workflow that holds them and the archive of one that completed or failed (§ Results survive
//! completion), so both cases read the same row.

use bytes::Bytes;

use crate::error::db;
use crate::{BackendError, PostgresBackend, TaskResultStore};
use sayiir_persistence::operation::Call;

pub(crate) const LOAD: &str = "SELECT (SELECT r.output FROM {schema}.task_results r \
        WHERE r.instance_id = $1 AND r.task_id = $2) \
    FROM {schema}.workflows w WHERE w.instance_id = $1";

impl TaskResultStore for PostgresBackend {
    async fn load_task_result(
        &self,
        instance_id: &str,
        task_id: &str,
    ) -> Result<Option<Bytes>, BackendError> {
        self.calls()
            .run(Call::LoadTaskResult { instance_id, task_id }, async {
                let row: Option<Option<Vec<u8>>> = crate::retry_read!(self, |conn| {
                    sqlx::query_scalar(self.statement(|s| &s.load_task_result))
                        .bind(instance_id)
                        .bind(task_id)
                        .fetch_optional(conn)
                })
                .map_err(db("load_task_result", instance_id))?;
                let output = row.ok_or_else(|| BackendError::NotFound(instance_id.to_string()))?;
                Ok(output.map(Bytes::from))
            })
            .await
    }
}
