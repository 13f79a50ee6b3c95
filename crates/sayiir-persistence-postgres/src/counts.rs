//! `StoreStatistics` for PostgreSQL: one statement, three counts on indexes
//! (`workflows_by_status`, the partial `workflows_ready`, the claims' primary key):
//! O(rows counted).

use sayiir_persistence::operation::Call;
use sayiir_persistence::statistics::{StoreCounts, StoreStatistics};

use crate::error::db_all;
use crate::{BackendError, PostgresBackend};

/// Rows `(key, count)`: one per stored status, then `#ready` (runnable, no pending request,
/// backoff over at `$1` in Unix ms, no live claim on the task, as `workflows_ready` and
/// `claim_task` define them) and `#claims` (live claims, by the database clock, as
/// `claim_task` times them).
pub(crate) const COUNTS: &str = "
    SELECT status AS key, count(*) AS n FROM {schema}.workflows GROUP BY status
    UNION ALL
    SELECT '#ready', count(*) FROM {schema}.workflows w
    WHERE w.status = 'InProgress' AND w.position_kind = 'AtTask' AND NOT w.current_done
      AND w.has_input AND NOT w.signal_pending
      AND (w.retry_not_before IS NULL OR w.retry_not_before <= $1)
      AND NOT EXISTS (
          SELECT 1 FROM {schema}.claims c
          WHERE c.instance_id = w.instance_id AND c.task_id = w.current_task_id
            AND (c.expires_ms IS NULL
                 OR c.expires_ms > floor(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT))
    UNION ALL
    SELECT '#claims', count(*) FROM {schema}.claims
    WHERE expires_ms IS NULL
       OR expires_ms > floor(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT";

impl StoreStatistics for PostgresBackend {
    async fn store_counts(&self) -> Result<StoreCounts, BackendError> {
        self.calls()
            .run(Call::StoreCounts, async {
                let now_ms = chrono::Utc::now().timestamp_millis();
                let rows: Vec<(String, i64)> = crate::retry_read!(self, |conn| {
                    sqlx::query_as(self.statement(|s| &s.store_counts)).bind(now_ms).fetch_all(conn)
                })
                .map_err(db_all("store_counts"))?;
                let mut counts = StoreCounts::empty();
                for (key, n) in rows {
                    let n = u64::try_from(n).unwrap_or(0);
                    match key.as_str() {
                        "#ready" => counts.ready_tasks = n,
                        "#claims" => counts.live_claims = n,
                        _ => {
                            counts.workflows.insert(key, n);
                        }
                    }
                }
                self.inner.calls.record_store_counts(&counts);
                Ok(counts)
            })
            .await
    }
}
