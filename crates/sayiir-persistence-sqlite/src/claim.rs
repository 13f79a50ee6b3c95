//! Claims for SQLite: each operation is one transaction on the writer.

use chrono::{Duration, Utc};
use rusqlite::{OptionalExtension, params};
use sayiir_persistence::BackendError;
use sayiir_persistence::claims::{
    claim_held_by_other, claim_not_found, claim_refused, expiry_millis, extended_millis, task_claim,
};
use sayiir_persistence::sayiir_core::task_claim::TaskClaim;
use sayiir_persistence::validation::validate_claim_ids;
use tracing::Instrument;

use crate::error::SqlResultExt;
use crate::{SqliteBackend, span};

fn owned(ids: (&str, &str, &str)) -> (String, String, String) {
    (ids.0.to_string(), ids.1.to_string(), ids.2.to_string())
}

impl SqliteBackend {
    pub(crate) async fn claim(
        &self,
        instance_id: &str,
        task_id: &str,
        worker_id: &str,
        ttl: Option<Duration>,
    ) -> Result<Option<TaskClaim>, BackendError> {
        validate_claim_ids(instance_id, task_id, worker_id)?;
        let (id, task, worker) = owned((instance_id, task_id, worker_id));
        self.threads
            .write("claim_task", instance_id, move |tx| {
                const OP: &str = "claim_task";
                // D12: never hand out a task of a finished workflow, or one already done.
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
            .instrument(span("claim_task", instance_id))
            .await
    }

    pub(crate) async fn release(
        &self,
        instance_id: &str,
        task_id: &str,
        worker_id: &str,
    ) -> Result<(), BackendError> {
        validate_claim_ids(instance_id, task_id, worker_id)?;
        let (id, task, worker) = owned((instance_id, task_id, worker_id));
        self.threads
            .write("release_task_claim", instance_id, move |tx| {
                const OP: &str = "release_task_claim";
                owner_check(tx, OP, &id, &task, &worker)?;
                tx.prepare_cached("DELETE FROM claims WHERE instance_id = ?1 AND task_id = ?2")
                    .and_then(|mut s| s.execute([&id, &task]))
                    .during(OP, "delete claim")
                    .map(drop)
            })
            .instrument(span("release_task_claim", instance_id))
            .await
    }

    pub(crate) async fn extend(
        &self,
        instance_id: &str,
        task_id: &str,
        worker_id: &str,
        additional: Duration,
    ) -> Result<(), BackendError> {
        validate_claim_ids(instance_id, task_id, worker_id)?;
        let (id, task, worker) = owned((instance_id, task_id, worker_id));
        self.threads
            .write("extend_task_claim", instance_id, move |tx| {
                const OP: &str = "extend_task_claim";
                let expires_ms = owner_check(tx, OP, &id, &task, &worker)?;
                tx.prepare_cached(
                    "UPDATE claims SET expires_ms = ?3 WHERE instance_id = ?1 AND task_id = ?2",
                )
                .and_then(|mut s| {
                    s.execute(params![id, task, extended_millis(expires_ms, additional)])
                })
                .during(OP, "update claim")
                .map(drop)
            })
            .instrument(span("extend_task_claim", instance_id))
            .await
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
    let (owner, expires_ms): (String, Option<i64>) = tx
        .prepare_cached(
            "SELECT worker_id, expires_ms FROM claims WHERE instance_id = ?1 AND task_id = ?2",
        )
        .and_then(|mut s| s.query_row([id, task], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .during(operation, "read claim")?
        .ok_or_else(|| claim_not_found(id, task))?;
    if owner != worker {
        return Err(claim_held_by_other(id, task, &owner));
    }
    Ok(expires_ms)
}
