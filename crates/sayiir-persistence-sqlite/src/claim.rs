//! `TaskClaimStore` for SQLite: each claim operation is one transaction on the writer; the
//! search of `find_available_tasks` is in `find`.

use chrono::{Duration, Utc};
use rusqlite::{OptionalExtension, params};
use sayiir_persistence::claims::{
    check_holder, claim_refused, expiry_millis, extended_millis, task_claim,
};
use sayiir_persistence::sayiir_core::task_claim::{AvailableTask, TaskClaim};
use sayiir_persistence::{BackendError, TaskClaimStore};

use crate::SqliteBackend;
use crate::error::SqlResultExt;
use sayiir_persistence::operation::{Call, ClaimIds, FindRequest};

fn owned(ids: (&str, &str, &str)) -> (String, String, String) {
    (ids.0.to_string(), ids.1.to_string(), ids.2.to_string())
}

impl TaskClaimStore for SqliteBackend {
    async fn claim_task(
        &self,
        instance_id: &str,
        task_id: &str,
        worker_id: &str,
        ttl: Option<Duration>,
    ) -> Result<Option<TaskClaim>, BackendError> {
        let (id, task, worker) = owned((instance_id, task_id, worker_id));
        self.write(Call::ClaimTask(ClaimIds { instance_id, task_id, worker_id }), move |tx| {
            const OP: &str = "claim_task";
            // § No claim on finished work: never hand out a task of a finished workflow, or one
            // already done.
            let refused: Option<(String, bool)> = tx
                .prepare_cached(
                    "SELECT status, EXISTS (SELECT 1 FROM task_results
                                                WHERE instance_id = ?1 AND task_id = ?2)
                         FROM workflows WHERE instance_id = ?1",
                )
                .and_then(|mut s| {
                    s.query_row([&id, &task], |r| Ok((r.get(0)?, r.get(1)?))).optional()
                })
                .during(OP, "check workflow")?;
            if let Some((status, done)) = refused
                && claim_refused(&status, done)
            {
                return Ok(None);
            }
            let now = Utc::now();
            let now_ms = now.timestamp_millis();
            let expires_ms = expiry_millis(now, ttl);
            let taken = tx
                .prepare_cached(
                    "INSERT INTO claims (instance_id, task_id, worker_id, claimed_ms, expires_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (instance_id, task_id) DO UPDATE SET
                             worker_id = excluded.worker_id, claimed_ms = excluded.claimed_ms,
                             expires_ms = excluded.expires_ms
                         WHERE claims.expires_ms IS NOT NULL AND claims.expires_ms <= ?4",
                )
                .and_then(|mut s| s.execute(params![id, task, worker, now_ms, expires_ms]))
                .during(OP, "write claim")?;
            Ok((taken == 1).then(|| task_claim(&id, &task, &worker, now_ms, expires_ms)))
        })
        .await
    }

    async fn release_task_claim(
        &self,
        instance_id: &str,
        task_id: &str,
        worker_id: &str,
    ) -> Result<(), BackendError> {
        let (id, task, worker) = owned((instance_id, task_id, worker_id));
        self.write(
            Call::ReleaseTaskClaim(ClaimIds { instance_id, task_id, worker_id }),
            move |tx| {
                const OP: &str = "release_task_claim";
                owner_check(tx, OP, &id, &task, &worker)?;
                tx.prepare_cached("DELETE FROM claims WHERE instance_id = ?1 AND task_id = ?2")
                    .and_then(|mut s| s.execute([&id, &task]))
                    .during(OP, "delete claim")
                    .map(drop)
            },
        )
        .await
    }

    async fn extend_task_claim(
        &self,
        instance_id: &str,
        task_id: &str,
        worker_id: &str,
        additional_duration: Duration,
    ) -> Result<(), BackendError> {
        let (id, task, worker) = owned((instance_id, task_id, worker_id));
        self.write(Call::ExtendTaskClaim(ClaimIds { instance_id, task_id, worker_id }), move |tx| {
            const OP: &str = "extend_task_claim";
            let expires_ms = owner_check(tx, OP, &id, &task, &worker)?;
            tx.prepare_cached(
                "UPDATE claims SET expires_ms = ?3 WHERE instance_id = ?1 AND task_id = ?2",
            )
            .and_then(|mut s| {
                s.execute(params![id, task, extended_millis(expires_ms, additional_duration)])
            })
            .during(OP, "update claim")
            .map(drop)
        })
        .await
    }

    async fn find_available_tasks(
        &self,
        worker_id: &str,
        limit: usize,
        aging_interval: Duration,
        worker_tags: &[String],
    ) -> Result<Vec<AvailableTask>, BackendError> {
        let request = FindRequest { worker_id, limit, aging_interval, worker_tags };
        let find = self.find(request);
        self.calls().run(Call::FindAvailableTasks(request), find).await
    }
}

/// The claim's expiry if `worker` holds it; `NotFound` or `Backend` otherwise.
fn owner_check(
    tx: &rusqlite::Transaction<'_>,
    operation: &str,
    id: &str,
    task: &str,
    worker: &str,
) -> Result<Option<i64>, BackendError> {
    let (owner, expires_ms): (Option<String>, Option<Option<i64>>) = tx
        .prepare_cached(
            "SELECT worker_id, expires_ms FROM claims WHERE instance_id = ?1 AND task_id = ?2",
        )
        .and_then(|mut s| s.query_row([id, task], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .during(operation, "read claim")?
        .unzip();
    check_holder(id, task, worker, owner.as_deref())?;
    Ok(expires_ms.flatten())
}
