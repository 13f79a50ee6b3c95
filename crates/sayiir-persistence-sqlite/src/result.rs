//! `TaskResultStore` for SQLite: result rows serve both running workflows and the archive.

use bytes::Bytes;
use rusqlite::OptionalExtension;
use sayiir_persistence::{BackendError, TaskResultStore};

use crate::SqliteBackend;
use crate::error::SqlResultExt;
use crate::row::not_found;
use sayiir_persistence::operation::Call;

impl TaskResultStore for SqliteBackend {
    async fn load_task_result(
        &self,
        instance_id: &str,
        task_id: &str,
    ) -> Result<Option<Bytes>, BackendError> {
        let (id, task) = (instance_id.to_string(), task_id.to_string());
        self
            .read(Call::LoadTaskResult { instance_id, task_id }, move |tx| {
                // The rows mirror completed_tasks while the state holds results, and are the
                // archive once it is Completed/Failed: one lookup serves both.
                let row: Option<Option<Vec<u8>>> = tx
                    .prepare_cached(
                        "SELECT r.output FROM workflows w
                         LEFT JOIN task_results r ON r.instance_id = w.instance_id AND r.task_id = ?2
                         WHERE w.instance_id = ?1",
                    )
                    .and_then(|mut s| s.query_row([&id, &task], |row| row.get(0)).optional())
                    .during("load_task_result", "query")?;
                row.map(|output| output.map(Bytes::from)).ok_or_else(|| not_found(&id))
            })
            .await
    }
}
