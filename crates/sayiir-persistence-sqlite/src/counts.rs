//! `StoreStatistics` for SQLite: three counts in one read transaction, each on an index
//! (`workflows_by_status`, `workflows_ready`, the claims' primary key): O(rows counted).

use rusqlite::params;
use sayiir_persistence::BackendError;
use sayiir_persistence::operation::Call;
use sayiir_persistence::statistics::{StoreCounts, StoreStatistics};

use crate::SqliteBackend;
use crate::error::SqlResultExt;

/// Runnable, no pending request, backoff over (`?1`, Unix ms), no live claim on the task.
const READY: &str = "SELECT count(*) FROM workflows w INDEXED BY workflows_ready
    WHERE w.ready_priority IS NOT NULL AND w.signal_pending = 0
      AND (w.retry_not_before_ms IS NULL OR w.retry_not_before_ms <= ?1)
      AND NOT EXISTS (SELECT 1 FROM claims c
                      WHERE c.instance_id = w.instance_id AND c.task_id = w.current_task_id
                        AND (c.expires_ms IS NULL OR c.expires_ms > ?1))";

impl StoreStatistics for SqliteBackend {
    async fn store_counts(&self) -> Result<StoreCounts, BackendError> {
        const OP: &str = "store_counts";
        let counts = self
            .read(Call::StoreCounts, |tx| {
                let now_ms = chrono::Utc::now().timestamp_millis();
                let mut counts = StoreCounts::empty();
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT status, count(*) FROM workflows INDEXED BY workflows_by_status
                         GROUP BY status",
                    )
                    .during(OP, "prepare")?;
                let rows = stmt
                    .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))
                    .during(OP, "count workflows")?;
                for row in rows {
                    let (status, count) = row.during(OP, "count workflows")?;
                    counts.workflows.insert(status, u64::try_from(count).unwrap_or(0));
                }
                let count = |sql: &str| -> Result<u64, BackendError> {
                    let n: i64 = tx
                        .prepare_cached(sql)
                        .and_then(|mut s| s.query_row(params![now_ms], |r| r.get(0)))
                        .during(OP, sql)?;
                    Ok(u64::try_from(n).unwrap_or(0))
                };
                counts.ready_tasks = count(READY)?;
                counts.live_claims = count(
                    "SELECT count(*) FROM claims WHERE expires_ms IS NULL OR expires_ms > ?1",
                )?;
                Ok(counts)
            })
            .await?;
        self.calls().record_store_counts(&counts);
        Ok(counts)
    }
}
