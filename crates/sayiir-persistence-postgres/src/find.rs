//! `find_available_tasks`: advance due parks, then pick the best ready tasks in SQL.
//!
//! The pick reads O(`limit`) index entries per priority level whatever the number of stored
//! workflows. For one aging interval, effective priority `priority - (now - updated_at) / A`
//! orders the tasks of one level by `updated_at` alone, so the best `limit` tasks overall are
//! among the first `limit` of each level in the partial index `workflows_ready (priority,
//! updated_at, instance_id)`. A recursive CTE skips from level to level (any `u8` priority
//! may occur), a `LATERAL` subquery takes the first `limit` eligible rows of each, and that
//! small set is sorted by the real key. Tasks that last failed on the asking worker sort after
//! all others; they come from a second, small index scan.

use std::collections::HashMap;

use bytes::Bytes;
use chrono::{Duration, Utc};
use sqlx::Row;
use sqlx::postgres::PgPool;

use crate::codec::decode_snapshot;
use crate::error::{db, db_all};
use crate::results::held_results;
use crate::row::{
    COLUMNS_PARAMS, RESULTS_LATERAL, SNAPSHOT_COLUMNS, SnapshotRow, StoredRow, assemble,
};
use crate::sayiir_core::snapshot::WorkflowSnapshot;
use crate::sayiir_core::task_claim::AvailableTask;
use crate::schedule::{Advance, advance_parked, aging_seconds, unix_seconds};
use crate::validation::{IdKind, validate_id};
use crate::{BackendError, PostgresBackend};

/// Most parked workflows advanced by one call; the rest wait for the next call.
const ADVANCE_BATCH: i64 = 100;

/// Rows of `workflows w` whose current task may run, as far as the snapshot alone says. The
/// same predicate as the partial indexes, so the planner uses them.
const READY: &str = "w.status = 'InProgress' AND w.position_kind = 'AtTask' \
    AND NOT w.current_done AND w.has_input";

/// The checks that depend on other tables, the clock and the worker: no pending signal, no
/// live claim (database clock), backoff over (application clock `$4`), tags (`$3`).
const ELIGIBLE: &str =
    "NOT EXISTS (SELECT 1 FROM {schema}.signals s WHERE s.instance_id = w.instance_id)
    AND NOT EXISTS (
        SELECT 1 FROM {schema}.claims c
        WHERE c.instance_id = w.instance_id AND c.task_id = w.current_task_id
          AND (c.expires_ms IS NULL OR c.expires_ms > (SELECT now_ms FROM clock)))
    AND (w.retry_not_before IS NULL OR w.retry_not_before <= $4)
    AND (cardinality($3::text[]) = 0 OR w.tags <@ $3::text[])";

/// `priority - (now - updated_at) / aging`, with the same float operations as
/// `schedule::effective_priority`.
const EFFECTIVE: &str = "(w.priority::float8 - ($5::float8 - w.updated_at::float8) / $6::float8)";

/// The pick. `$1` worker, `$2` limit, `$3` worker tags, `$4` now (application clock, ms),
/// `$5` now (application clock, fractional seconds), `$6` aging interval in seconds. Expired
/// claims are purged in the same statement.
fn pick_sql() -> String {
    format!(
        "WITH RECURSIVE clock AS (
            SELECT floor(extract(epoch FROM now()) * 1000)::bigint AS now_ms
        ), purged AS (
            DELETE FROM {{schema}}.claims WHERE expires_ms <= (SELECT now_ms FROM clock)
        ), levels AS (
            (SELECT w.priority FROM {{schema}}.workflows w WHERE {READY}
             ORDER BY w.priority LIMIT 1)
            UNION ALL
            SELECT (SELECT w.priority FROM {{schema}}.workflows w
                    WHERE {READY} AND w.priority > l.priority
                    ORDER BY w.priority LIMIT 1)
            FROM levels l WHERE l.priority IS NOT NULL
        ), candidates AS (
            SELECT c.* FROM levels l CROSS JOIN LATERAL (
                SELECT w.instance_id, w.current_task_id, w.last_completed_task_id, w.updated_at,
                       FALSE AS biased, {EFFECTIVE} AS effective
                FROM {{schema}}.workflows w
                WHERE {READY} AND w.priority = l.priority
                  AND w.failed_worker IS DISTINCT FROM $1 AND {ELIGIBLE}
                ORDER BY w.updated_at, w.instance_id
                LIMIT $2
            ) c
            WHERE l.priority IS NOT NULL
            UNION ALL
            (SELECT w.instance_id, w.current_task_id, w.last_completed_task_id, w.updated_at,
                    TRUE AS biased, {EFFECTIVE} AS effective
             FROM {{schema}}.workflows w
             WHERE {READY} AND w.failed_worker IS NOT NULL AND w.failed_worker = $1
               AND {ELIGIBLE}
             ORDER BY effective, w.updated_at, w.instance_id
             LIMIT $2)
        ), best AS (
            SELECT * FROM candidates
            ORDER BY biased, effective, updated_at, instance_id
            LIMIT $2
        )
        SELECT b.instance_id, b.current_task_id, w.blob, w.trace_parent,
            EXISTS (SELECT 1 FROM {{schema}}.task_results r WHERE r.instance_id = b.instance_id),
            (SELECT r.output FROM {{schema}}.task_results r
             WHERE r.instance_id = b.instance_id AND r.task_id = b.last_completed_task_id)
        FROM best b JOIN {{schema}}.workflows w ON w.instance_id = b.instance_id
        ORDER BY b.biased, b.effective, b.updated_at, b.instance_id"
    )
}

/// A row of [`pick_sql`].
type PickRow = (String, Option<String>, Vec<u8>, Option<String>, bool, Option<Vec<u8>>);

/// Parked workflows that may move on: delays and timed signal waits that are due
/// (application clock `$1`, in O(due) through `workflows_parked`), and signal waits whose
/// event queue is not empty, with the oldest event. Workflows with a pending cancel or pause
/// stay parked.
fn due_sql() -> String {
    format!(
        "WITH due AS (
            (SELECT w.instance_id, NULL::bigint AS event_id, NULL::bytea AS payload
             FROM {{schema}}.workflows w
             WHERE w.status = 'InProgress' AND w.position_kind IN ('AtDelay', 'AtSignal')
               AND w.wake_at IS NOT NULL AND w.wake_at <= $1
             ORDER BY w.wake_at
             LIMIT $2)
            UNION ALL
            (SELECT w.instance_id, e.id, e.payload
             FROM (SELECT DISTINCT instance_id, signal_name FROM {{schema}}.events) q
             JOIN {{schema}}.workflows w
               ON w.instance_id = q.instance_id AND w.signal_name = q.signal_name
             CROSS JOIN LATERAL (
                SELECT e.id, e.payload FROM {{schema}}.events e
                WHERE e.instance_id = q.instance_id AND e.signal_name = q.signal_name
                ORDER BY e.id LIMIT 1
             ) e
             WHERE w.status = 'InProgress' AND w.position_kind = 'AtSignal'
             LIMIT $2)
        )
        SELECT d.instance_id, d.event_id, d.payload, w.revision, {SNAPSHOT_COLUMNS}
        FROM due d JOIN {{schema}}.workflows w ON w.instance_id = d.instance_id
        {RESULTS_LATERAL}
        WHERE NOT EXISTS (SELECT 1 FROM {{schema}}.signals s WHERE s.instance_id = w.instance_id)"
    )
}

/// A row of [`due_sql`].
type DueRow = (
    String,
    Option<i64>,
    Option<Vec<u8>>,
    i64,
    String,
    Vec<u8>,
    Option<String>,
    i64,
    Option<String>,
    Option<Vec<String>>,
    Option<Vec<Vec<u8>>>,
);

/// Writes an advanced park if the row is still at the revision it was read at
/// (compare-and-set), consumes the event it used (`$18`, if any) and adds the results the
/// advance created (`$19`, `$20`). The caller commits only if both the row and the event were
/// there.
fn advance_sql() -> String {
    format!(
        "WITH moved AS (
            UPDATE {{schema}}.workflows SET {COLUMNS_PARAMS}
            WHERE instance_id = $1 AND revision = $17
            RETURNING instance_id
        ), consumed AS (
            DELETE FROM {{schema}}.events
            WHERE id = $18 AND EXISTS (SELECT 1 FROM moved)
            RETURNING id
        ), added AS (
            INSERT INTO {{schema}}.task_results (instance_id, task_id, output)
            SELECT m.instance_id, t.task_id, t.output
            FROM moved m, unnest($19::text[], $20::bytea[]) AS t (task_id, output)
            ON CONFLICT (instance_id, task_id) DO UPDATE SET output = EXCLUDED.output
        )
        SELECT EXISTS (SELECT 1 FROM moved), EXISTS (SELECT 1 FROM consumed)"
    )
}

/// One parked workflow to try to advance.
struct Parked {
    instance_id: String,
    event: Option<(i64, Bytes)>,
    revision: i64,
    row: SnapshotRow,
}

impl PostgresBackend {
    /// See the module documentation.
    pub(crate) async fn find(
        &self,
        worker_id: &str,
        limit: usize,
        aging_interval: Duration,
        worker_tags: &[String],
    ) -> Result<Vec<AvailableTask>, BackendError> {
        validate_id(IdKind::Worker, worker_id)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        self.advance_due(now).await?;

        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<PickRow> = sqlx::query_as(self.sql(&pick_sql()))
            .bind(worker_id)
            .bind(limit)
            .bind(worker_tags)
            .bind(now.timestamp_millis())
            .bind(unix_seconds(now))
            .bind(aging_seconds(aging_interval))
            .fetch_all(&self.pool)
            .await
            .map_err(db_all("find_available_tasks"))?;
        Ok(rows.into_iter().filter_map(available_task).collect())
    }

    /// The plans PostgreSQL runs for `find_available_tasks` with these arguments, as
    /// `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` documents: first the search for due parks,
    /// then the pick of ready tasks. The statements are executed (expired claims are purged)
    /// but nothing is advanced.
    ///
    /// Meant for operators and benchmarks checking that the index plans are used.
    ///
    /// # Errors
    /// `Backend` if a statement fails.
    pub async fn explain_find_available_tasks(
        &self,
        worker_id: &str,
        limit: usize,
        aging_interval: Duration,
        worker_tags: &[String],
    ) -> Result<Vec<String>, BackendError> {
        validate_id(IdKind::Worker, worker_id)?;
        let explain = |sql: String| format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}");
        let now = Utc::now();
        let due = sqlx::query(self.sql(&explain(due_sql())))
            .bind(now.timestamp_millis())
            .bind(ADVANCE_BATCH)
            .fetch_one(&self.pool)
            .await
            .map_err(db_all("explain find_available_tasks"))?;
        let pick = sqlx::query(self.sql(&explain(pick_sql())))
            .bind(worker_id)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(worker_tags)
            .bind(now.timestamp_millis())
            .bind(unix_seconds(now))
            .bind(aging_seconds(aging_interval))
            .fetch_one(&self.pool)
            .await
            .map_err(db_all("explain find_available_tasks"))?;
        // The plan is of type `json`, whose wire format is its text.
        [due, pick]
            .iter()
            .map(|row| row.try_get_unchecked::<String, _>(0))
            .collect::<Result<_, _>>()
            .map_err(db_all("explain find_available_tasks"))
    }

    /// Advances every due park it finds (up to [`ADVANCE_BATCH`]). A row that cannot be
    /// decoded or written is logged and left for a later call.
    async fn advance_due(&self, now: chrono::DateTime<Utc>) -> Result<(), BackendError> {
        let rows: Vec<DueRow> = sqlx::query_as(self.sql(&due_sql()))
            .bind(now.timestamp_millis())
            .bind(ADVANCE_BATCH)
            .fetch_all(&self.pool)
            .await
            .map_err(db_all("find_available_tasks (due parks)"))?;
        // A signal wait can be both timed out and woken by an event: the event wins.
        let mut parked: HashMap<String, Parked> = HashMap::new();
        for (instance_id, event_id, payload, revision, s, b, t, u, l, i, o) in rows {
            let event = event_id.zip(payload).map(|(id, p)| (id, Bytes::from(p)));
            let keep_existing = parked.get(&instance_id).is_some_and(|p| p.event.is_some());
            if !keep_existing {
                let row = (s, b, t, u, l, i, o);
                parked.insert(instance_id.clone(), Parked { instance_id, event, revision, row });
            }
        }
        for park in parked.into_values() {
            if let Err(error) = self.advance_one(now, park).await {
                tracing::warn!(%error, "a parked workflow could not be advanced; skipped");
            }
        }
        Ok(())
    }

    /// Advances one park with a compare-and-set; losing the race to another writer is not an
    /// error.
    async fn advance_one(
        &self,
        now: chrono::DateTime<Utc>,
        park: Parked,
    ) -> Result<(), BackendError> {
        let mut snapshot = assemble(&park.instance_id, park.row)?;
        let before = results_of(&snapshot);
        let (event_id, payload) = park.event.unzip();
        // The results the advanced workflow keeps: held, or archived if it completed (D5).
        let (consumed_event, after) = match advance_parked(&mut snapshot, now, payload) {
            Advance::NotDue => return Ok(()),
            Advance::ToTask { consumed_event } => (consumed_event, results_of(&snapshot)),
            Advance::Completed { consumed_event, archive } => {
                (consumed_event, archive.into_values().map(|r| (r.task_id, r.output)).collect())
            }
        };
        // Only the results the advance added (a signal's payload) are written.
        let (task_ids, outputs): (Vec<&str>, Vec<&[u8]>) = after
            .iter()
            .filter(|(task, output)| before.get(*task) != Some(*output))
            .map(|(task, output)| (task.as_str(), output.as_ref()))
            .unzip();
        let event_id = event_id.filter(|_| consumed_event);
        write_advance(
            &self.pool,
            self.sql(&advance_sql()),
            &snapshot,
            park.revision,
            event_id,
            task_ids,
            outputs,
        )
        .await
    }
}

/// The results a snapshot holds, by task id.
fn results_of(snapshot: &WorkflowSnapshot) -> HashMap<String, Bytes> {
    held_results(&snapshot.state)
        .map(|held| held.iter().map(|(k, v)| (k.clone(), v.output.clone())).collect())
        .unwrap_or_default()
}

/// Runs [`advance_sql`] in a transaction, committed only if the row was still at `revision`
/// and the event (if one was used) was still queued.
async fn write_advance(
    pool: &PgPool,
    sql: sqlx::AssertSqlSafe<String>,
    snapshot: &WorkflowSnapshot,
    revision: i64,
    event_id: Option<i64>,
    task_ids: Vec<&str>,
    outputs: Vec<&[u8]>,
) -> Result<(), BackendError> {
    let id = snapshot.instance_id.as_str();
    let row = StoredRow::of(snapshot)?;
    let mut tx = pool.begin().await.map_err(db("find_available_tasks (advance)", id))?;
    let query = sqlx::query(sql).bind(id);
    let answer = row
        .bind_columns(query)
        .bind(revision)
        .bind(event_id)
        .bind(task_ids)
        .bind(outputs)
        .fetch_one(&mut *tx)
        .await
        .map_err(db("find_available_tasks (advance)", id))?;
    let moved: bool = answer.try_get(0).map_err(db("find_available_tasks (advance)", id))?;
    let consumed: bool = answer.try_get(1).map_err(db("find_available_tasks (advance)", id))?;
    if moved && (event_id.is_none() || consumed) {
        tx.commit().await.map_err(db("find_available_tasks (advance)", id))?;
    }
    // Otherwise dropping `tx` rolls back: someone else moved the workflow or took the event.
    Ok(())
}

/// The task of a picked row, or `None` (logged) if its blob does not decode or it has no
/// input after all.
fn available_task(row: PickRow) -> Option<AvailableTask> {
    let (instance_id, task_id, blob, trace_parent, has_results, last_output) = row;
    let snapshot = match decode_snapshot(&instance_id, &blob) {
        Ok(snapshot) => snapshot,
        Err(error) => {
            tracing::warn!(%error, instance_id, "undecodable workflow skipped by find_available_tasks");
            return None;
        }
    };
    // As `schedule::task_input`: the initial input until a task has completed, then the
    // output of the last completed task.
    let input = if has_results { last_output.map(Bytes::from) } else { snapshot.initial_input };
    let (Some(task_id), Some(input)) = (task_id, input) else {
        tracing::warn!(instance_id, "ready workflow without task or input skipped");
        return None;
    };
    Some(AvailableTask {
        instance_id,
        task_id,
        input,
        workflow_definition_hash: snapshot.definition_hash,
        trace_parent,
    })
}
