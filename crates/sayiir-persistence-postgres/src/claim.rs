//! `TaskClaimStore`: leases on tasks, timed by the database clock in milliseconds so that
//! every worker machine agrees on expiry whatever its own clock says.

use std::sync::LazyLock;

use chrono::{DateTime, Duration, Utc};

use crate::claims::{check_holder, claim_refused, claim_ttl_millis, extension_millis, task_claim};
use crate::error::db;
use crate::sayiir_core::task_claim::{AvailableTask, TaskClaim};
use crate::{BackendError, PostgresBackend, TaskClaimStore};
use sayiir_persistence::operation::{Call, ClaimIds, FindRequest};
use sayiir_persistence::status::ALL as ALL_STATUSES;

/// Claims a task in one round trip (function `claim_task` of migration 0002): inserts the claim, or
/// replaces an expired one, unless the workflow is terminal or already holds the task's result (§
/// No claim on finished work). The workflow row is share-locked before the refusal is read, so the
/// refusal and the claim are one atomic step: no result can be committed in between. `$4` is the
/// TTL in milliseconds as `claims::claim_ttl_millis` decides it (NULL: no expiry; 0 for any TTL of
/// zero or less); an expiry outside `$5..=$6` (the range of `DateTime<Utc>`) means "never expires",
/// as in `TaskClaim::new`. `$7` and `$8` are the statuses that refuse, from [`claim_refused`].
pub(crate) const CLAIM: &str = "SELECT out_claimed_ms, out_expires_ms \
    FROM {schema}.claim_task($1, $2, $3, $4, $5, $6, $7, $8)";

/// The statuses for which [`claim_refused`] refuses every claim, and those for which it
/// refuses a task whose result is stored: the rule's inputs, for the claim statement.
static REFUSING_STATUSES: LazyLock<(Vec<&'static str>, Vec<&'static str>)> = LazyLock::new(|| {
    let always: Vec<&str> =
        ALL_STATUSES.into_iter().filter(|status| claim_refused(status, false)).collect();
    let if_done = ALL_STATUSES
        .into_iter()
        .filter(|status| claim_refused(status, true) && !always.contains(status))
        .collect();
    (always, if_done)
});

/// Deletes the caller's claim and, from the same snapshot, reads who held it otherwise.
pub(crate) const RELEASE: &str = "WITH released AS (
        DELETE FROM {schema}.claims
        WHERE instance_id = $1 AND task_id = $2 AND worker_id = $3
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM released),
        (SELECT worker_id FROM {schema}.claims WHERE instance_id = $1 AND task_id = $2)";

/// Pushes the caller's expiry back by `$4` ms from the previous expiry; no expiry stays none,
/// and an overflow means "never expires" (as `extended_millis`). Owner check and write are
/// one statement.
pub(crate) const EXTEND: &str = "WITH extended AS (
        UPDATE {schema}.claims SET expires_ms = CASE
            WHEN expires_ms IS NULL THEN NULL
            WHEN expires_ms::numeric + $4 NOT BETWEEN -9223372036854775808 AND 9223372036854775807
                THEN NULL
            ELSE expires_ms + $4 END
        WHERE instance_id = $1 AND task_id = $2 AND worker_id = $3
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM extended),
        (SELECT worker_id FROM {schema}.claims WHERE instance_id = $1 AND task_id = $2)";

/// The claim's holder, read by a statement of its own (a snapshot taken now).
pub(crate) const HOLDER: &str =
    "SELECT worker_id FROM {schema}.claims WHERE instance_id = $1 AND task_id = $2";

impl PostgresBackend {
    /// `Ok` after a release or extend that matched; otherwise the outcome for who holds the
    /// claim.
    ///
    /// The holder that RELEASE and EXTEND return was read with the statement's snapshot, taken
    /// before it waited for a concurrent writer of the row. When that stale holder is the
    /// caller although the write matched nothing, the row was released or taken over in the
    /// meantime (two releases racing: only one may succeed), so the holder is read again.
    async fn owner_outcome(
        &self,
        ids: ClaimIds<'_>,
        done: bool,
        stale_owner: Option<String>,
        operation: &'static str,
    ) -> Result<(), BackendError> {
        if done {
            return Ok(());
        }
        let owner = if stale_owner.as_deref() == Some(ids.worker_id) {
            crate::on_held!(self, |conn| sqlx::query_scalar(self.statement(|s| &s.claim_holder))
                .bind(ids.instance_id)
                .bind(ids.task_id)
                .fetch_optional(conn))
            .map_err(db(operation, ids.instance_id))?
        } else {
            stale_owner
        };
        check_holder(ids.instance_id, ids.task_id, ids.worker_id, owner.as_deref())
    }
}

impl TaskClaimStore for PostgresBackend {
    async fn claim_task(
        &self,
        instance_id: &str,
        task_id: &str,
        worker_id: &str,
        ttl: Option<Duration>,
    ) -> Result<Option<TaskClaim>, BackendError> {
        let ids = ClaimIds { instance_id, task_id, worker_id };
        self.calls()
            .run(Call::ClaimTask(ids), async {
                let (refused, refused_if_done) = &*REFUSING_STATUSES;
                let ttl_ms = claim_ttl_millis(Utc::now(), ttl);
                let claimed: Option<(i64, Option<i64>)> = crate::on_held!(self, |conn| {
                    sqlx::query_as(self.statement(|s| &s.claim_task))
                        .bind(instance_id)
                        .bind(task_id)
                        .bind(worker_id)
                        .bind(ttl_ms)
                        .bind(DateTime::<Utc>::MIN_UTC.timestamp_millis())
                        .bind(DateTime::<Utc>::MAX_UTC.timestamp_millis())
                        .bind(refused)
                        .bind(refused_if_done)
                        .fetch_optional(conn)
                })
                .map_err(db("claim_task", instance_id))?;
                Ok(claimed.map(|(claimed_ms, expires_ms)| {
                    task_claim(instance_id, task_id, worker_id, claimed_ms, expires_ms)
                }))
            })
            .await
    }

    async fn release_task_claim(
        &self,
        instance_id: &str,
        task_id: &str,
        worker_id: &str,
    ) -> Result<(), BackendError> {
        let ids = ClaimIds { instance_id, task_id, worker_id };
        self.calls()
            .run(Call::ReleaseTaskClaim(ids), async {
                let (released, owner): (bool, Option<String>) = crate::on_held!(self, |conn| {
                    sqlx::query_as(self.statement(|s| &s.release_task_claim))
                        .bind(instance_id)
                        .bind(task_id)
                        .bind(worker_id)
                        .fetch_one(conn)
                })
                .map_err(db("release_task_claim", instance_id))?;
                self.owner_outcome(ids, released, owner, "release_task_claim").await
            })
            .await
    }

    async fn extend_task_claim(
        &self,
        instance_id: &str,
        task_id: &str,
        worker_id: &str,
        additional_duration: Duration,
    ) -> Result<(), BackendError> {
        let ids = ClaimIds { instance_id, task_id, worker_id };
        self.calls()
            .run(Call::ExtendTaskClaim(ids), async {
                let (extended, owner): (bool, Option<String>) = crate::on_held!(self, |conn| {
                    sqlx::query_as(self.statement(|s| &s.extend_task_claim))
                        .bind(instance_id)
                        .bind(task_id)
                        .bind(worker_id)
                        .bind(extension_millis(additional_duration))
                        .fetch_one(conn)
                })
                .map_err(db("extend_task_claim", instance_id))?;
                self.owner_outcome(ids, extended, owner, "extend_task_claim").await
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
