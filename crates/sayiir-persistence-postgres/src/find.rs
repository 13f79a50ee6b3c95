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
//!
//! A row whose blob does not decode (or that turns out to have no input) is logged, taken out
//! of the indexes under a revision check, and replaced by the next candidates, so it can never
//! take the place of healthy rows; the next save of that instance puts it back.

use std::collections::HashMap;

use bytes::Bytes;
use chrono::{Duration, Utc};
use sqlx::Row;
use sqlx::postgres::PgPool;

use crate::codec::decode_snapshot;
use crate::error::{db, db_all};
use crate::results::held_results;
use crate::row::{
    COLUMNS_PARAMS, QUARANTINE, RESULTS_LATERAL, SNAPSHOT_COLUMNS, SnapshotRow, StoredRow, assemble,
};
use crate::sayiir_core::snapshot::{TaskResult, WorkflowSnapshot, WorkflowSnapshotState};
use crate::sayiir_core::task_claim::AvailableTask;
use crate::schedule::{Advance, advance_parked, aging_seconds, task_input, unix_seconds};
use crate::validation::{IdKind, validate_id};
use crate::{BackendError, PostgresBackend};
use sayiir_persistence::operation::Call;

/// Most parked workflows advanced by one call, per kind (due, woken); the rest wait for the
/// next call.
const ADVANCE_BATCH: i64 = 100;

/// Most pick statements of one call: the first, plus one more each time picked rows turned
/// out undecodable and the result is short of `limit`.
const MAX_PICK_ROUNDS: usize = 8;

/// Clears the woken mark of a signal wait whose queue is empty (function of migration 0002).
const SETTLE_WOKEN: &str = "SELECT {schema}.settle_woken($1)";

/// Rows of `workflows w` whose current task may run, as far as the snapshot alone says. The
/// same predicate as the partial indexes, so the planner uses them.
const READY: &str = "w.status = 'InProgress' AND w.position_kind = 'AtTask' \
    AND NOT w.current_done AND w.has_input AND NOT w.signal_pending";

/// The checks that depend on other tables, the clock and the worker: no pending signal, no
/// live claim (database clock), backoff over (application clock `$4`), tags (`$3`), not among
/// the instances already picked by this call (`$7`).
const ELIGIBLE: &str =
    "NOT EXISTS (SELECT 1 FROM {schema}.signals s WHERE s.instance_id = w.instance_id)
    AND NOT (w.instance_id = ANY ($7::text[]))
    AND NOT EXISTS (
        SELECT 1 FROM {schema}.claims c
        WHERE c.instance_id = w.instance_id AND c.task_id = w.current_task_id
          AND (c.expires_ms IS NULL OR c.expires_ms > (SELECT now_ms FROM clock)))
    AND (w.retry_not_before IS NULL OR w.retry_not_before <= $4)
    AND (cardinality($3::text[]) = 0 OR w.tags <@ $3::text[])";

/// `priority - (now - updated_at) / aging`, with the same float operations as
/// `schedule::effective_priority`. `updated_at` is stored with its sign bit flipped (`seconds_to_column`): the real seconds
/// are the column plus 2^63.
const EFFECTIVE: &str = "(w.priority::float8 \
    - ($5::float8 - (w.updated_at::numeric + 9223372036854775808)::float8) / $6::float8)";

/// The pick. `$1` worker, `$2` limit, `$3` worker tags, `$4` now (application clock, ms),
/// `$5` now (application clock, fractional seconds), `$6` aging interval in seconds, `$7`
/// instances to leave out. Expired claims are purged in the same statement.
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
        SELECT b.instance_id, b.current_task_id, w.blob, w.trace_parent, w.revision,
            b.last_completed_task_id,
            EXISTS (SELECT 1 FROM {{schema}}.task_results r WHERE r.instance_id = b.instance_id),
            (SELECT r.output FROM {{schema}}.task_results r
             WHERE r.instance_id = b.instance_id AND r.task_id = b.last_completed_task_id)
        FROM best b JOIN {{schema}}.workflows w ON w.instance_id = b.instance_id
        ORDER BY b.biased, b.effective, b.updated_at, b.instance_id"
    )
}

/// A row of [`pick_sql`]: instance, task, blob, trace parent, revision, last completed task,
/// whether any result is stored, the last completed task's output.
type PickRow =
    (String, Option<String>, Vec<u8>, Option<String>, i64, Option<String>, bool, Option<Vec<u8>>);

/// Parked workflows that may move on: delays and timed signal waits that are due
/// (application clock `$1`, in O(due) through `workflows_parked`), and signal waits marked
/// woken by an event (in O(woken) through `workflows_woken`, with the oldest event of their
/// queue; the events table is read only for them). Workflows with a pending cancel or pause
/// stay parked (§ Requests for unclaimed workflows are never applied); they are filtered out inside
/// each branch, before its limit, so however many of them accumulate they never hide a park that can move.
fn due_sql() -> String {
    let lateral = &*RESULTS_LATERAL;
    format!(
        "WITH due AS (
            (SELECT w.instance_id, FALSE AS woken, NULL::bigint AS event_id,
                    NULL::bytea AS payload
             FROM {{schema}}.workflows w
             WHERE w.status = 'InProgress' AND w.position_kind IN ('AtDelay', 'AtSignal')
               AND w.wake_at IS NOT NULL AND w.wake_at <= $1 AND NOT w.signal_pending
               AND NOT EXISTS (SELECT 1 FROM {{schema}}.signals s
                               WHERE s.instance_id = w.instance_id)
             ORDER BY w.wake_at
             LIMIT $2)
            UNION ALL
            (SELECT w.instance_id, TRUE AS woken, e.id, e.payload
             FROM {{schema}}.workflows w
             LEFT JOIN LATERAL (
                SELECT e.id, e.payload FROM {{schema}}.events e
                WHERE e.instance_id = w.instance_id AND e.signal_name = w.signal_name
                ORDER BY e.id LIMIT 1
             ) e ON TRUE
             WHERE w.woken AND w.status = 'InProgress' AND w.position_kind = 'AtSignal'
               AND NOT w.signal_pending
               AND NOT EXISTS (SELECT 1 FROM {{schema}}.signals s
                               WHERE s.instance_id = w.instance_id)
             ORDER BY w.updated_at, w.instance_id
             LIMIT $2)
        )
        SELECT d.instance_id, d.woken, d.event_id, d.payload, w.revision, {SNAPSHOT_COLUMNS}
        FROM due d JOIN {{schema}}.workflows w ON w.instance_id = d.instance_id
        {lateral}"
    )
}

/// A row of [`due_sql`].
type DueRow = (
    String,
    bool,
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
    /// Found through its woken mark.
    woken: bool,
    event: Option<(i64, Bytes)>,
    revision: i64,
    row: SnapshotRow,
}

/// Why a picked row yields no task.
enum Unusable {
    /// The blob does not decode.
    Undecodable(BackendError),
    /// The row says ready, the snapshot has no task or no input.
    Inconsistent,
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
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        self.advance_due(now).await?;

        let mut found: Vec<AvailableTask> = Vec::new();
        // Instances picked already: returned ones, and unusable ones (taken out of the index,
        // but also left out in case another writer changed them in between).
        let mut seen: Vec<String> = Vec::new();
        for _ in 0..MAX_PICK_ROUNDS {
            let want = limit - found.len();
            let rows = self.pick(worker_id, want, now, aging_interval, worker_tags, &seen).await?;
            let fetched = rows.len();
            let mut unusable = 0;
            for row in rows {
                let (instance_id, revision) = (row.0.clone(), row.4);
                seen.push(instance_id.clone());
                match available_task(row) {
                    Ok(task) => found.push(task),
                    Err(why) => {
                        unusable += 1;
                        match why {
                            Unusable::Undecodable(error) => tracing::warn!(
                                %error,
                                instance_id,
                                "undecodable ready workflow skipped by find_available_tasks and \
                                 taken out of its index until it is saved again"
                            ),
                            Unusable::Inconsistent => tracing::warn!(
                                instance_id,
                                "ready workflow without task or input skipped by \
                                 find_available_tasks and taken out of its index until it is \
                                 saved again"
                            ),
                        }
                        self.quarantine(&instance_id, revision).await;
                    }
                }
            }
            // Short only because of unusable rows, with more candidates possibly behind them.
            if unusable == 0 || fetched < want || found.len() >= limit {
                break;
            }
        }
        Ok(found)
    }

    /// One pick statement: the best `limit` eligible ready tasks, leaving out `excluded`.
    async fn pick(
        &self,
        worker_id: &str,
        limit: usize,
        now: chrono::DateTime<Utc>,
        aging_interval: Duration,
        worker_tags: &[String],
        excluded: &[String],
    ) -> Result<Vec<PickRow>, BackendError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = pick_sql();
        crate::retry_read!(self, |conn| {
            sqlx::query_as(self.sql(&sql))
                .bind(worker_id)
                .bind(limit)
                .bind(worker_tags)
                .bind(now.timestamp_millis())
                .bind(unix_seconds(now))
                .bind(aging_seconds(aging_interval))
                .bind(excluded)
                .fetch_all(conn)
        })
        .map_err(db_all("find_available_tasks"))
    }

    /// Takes an unusable row out of the ready, parked and woken indexes if it is still at
    /// `revision`. A failure is logged: the row is then skipped again by the next call.
    async fn quarantine(&self, instance_id: &str, revision: i64) {
        let done = sqlx::query(self.sql(QUARANTINE))
            .bind(instance_id)
            .bind(revision)
            .execute(&self.pool)
            .await
            .map_err(db("find_available_tasks (skip unusable row)", instance_id));
        if let Err(error) = done {
            tracing::warn!(%error, "an unusable workflow could not be taken out of the index");
        }
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
        let call = Call::Maintenance { operation: "explain_find_available_tasks", instance_id: "" };
        let explain = self.explain_find(worker_id, limit, aging_interval, worker_tags);
        self.calls().run(call, explain).await
    }

    /// See [`Self::explain_find_available_tasks`].
    async fn explain_find(
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
            .bind(Vec::<String>::new())
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

    /// Advances every due or woken park it finds (up to [`ADVANCE_BATCH`] of each). A row
    /// that cannot be decoded is logged and taken out of the parked indexes; one that cannot be
    /// written is logged and left for a later call.
    ///
    /// When a full batch held rows that had to be taken out, the search runs again (at most
    /// [`MAX_PICK_ROUNDS`] times): the rows behind them are advanced in this same call.
    async fn advance_due(&self, now: chrono::DateTime<Utc>) -> Result<(), BackendError> {
        for _ in 0..MAX_PICK_ROUNDS {
            let (fetched, taken_out) = self.advance_batch(now).await?;
            let full = fetched >= usize::try_from(ADVANCE_BATCH).unwrap_or(usize::MAX);
            if taken_out == 0 || !full {
                break;
            }
        }
        Ok(())
    }

    /// One search for due and woken parks, and their advancement. Returns the number of rows
    /// found in the larger of the two branches and how many rows were taken out of the
    /// indexes.
    async fn advance_batch(
        &self,
        now: chrono::DateTime<Utc>,
    ) -> Result<(usize, usize), BackendError> {
        let sql = due_sql();
        let rows: Vec<DueRow> = crate::retry_read!(self, |conn| {
            sqlx::query_as(self.sql(&sql))
                .bind(now.timestamp_millis())
                .bind(ADVANCE_BATCH)
                .fetch_all(conn)
        })
        .map_err(db_all("find_available_tasks (due parks)"))?;
        let woken_rows = rows.iter().filter(|row| row.1).count();
        let fetched = woken_rows.max(rows.len() - woken_rows);
        // A signal wait can be both timed out and woken by an event: the event wins.
        let mut parked: HashMap<String, Parked> = HashMap::new();
        for (instance_id, woken, event_id, payload, revision, s, b, t, u, l, i, o) in rows {
            let event = event_id.zip(payload).map(|(id, p)| (id, Bytes::from(p)));
            match parked.get_mut(&instance_id) {
                Some(existing) => {
                    existing.woken |= woken;
                    if existing.event.is_none() {
                        existing.event = event;
                    }
                }
                None => {
                    let row = (s, b, t, u, l, i, o);
                    let park =
                        Parked { instance_id: instance_id.clone(), woken, event, revision, row };
                    parked.insert(instance_id, park);
                }
            }
        }
        let mut taken_out = 0;
        for park in parked.into_values() {
            match self.advance_one(now, park).await {
                Ok(true) => taken_out += 1,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "a parked workflow could not be advanced; skipped");
                }
            }
        }
        Ok((fetched, taken_out))
    }

    /// Advances one park with a compare-and-set; losing the race to another writer is not an
    /// error. `Ok(true)`: the row could not be used and was taken out of the indexes.
    async fn advance_one(
        &self,
        now: chrono::DateTime<Utc>,
        park: Parked,
    ) -> Result<bool, BackendError> {
        let id = park.instance_id.as_str();
        let mut snapshot = match assemble(id, park.row) {
            Ok(snapshot) => snapshot,
            Err(error) => {
                tracing::warn!(
                    %error,
                    instance_id = id,
                    "undecodable parked workflow skipped by find_available_tasks and taken out \
                     of its index until it is saved again"
                );
                self.quarantine(id, park.revision).await;
                return Ok(true);
            }
        };
        let before = results_of(&snapshot);
        let has_event = park.event.is_some();
        let (event_id, payload) = park.event.unzip();
        // The results the advanced workflow keeps: held, or archived if it completed (§ Results
        // survive completion).
        let (consumed_event, after) = match advance_parked(&mut snapshot, now, payload) {
            Advance::NotDue if has_event => {
                // The row waits at a signal with an event queued, the blob says otherwise.
                tracing::warn!(
                    instance_id = id,
                    "parked workflow whose snapshot is not at a signal wait skipped by \
                     find_available_tasks and taken out of its index until it is saved again"
                );
                self.quarantine(id, park.revision).await;
                return Ok(true);
            }
            Advance::NotDue => {
                if park.woken {
                    // Woken, but a consumer took the event: clear the mark.
                    sqlx::query(self.sql(SETTLE_WOKEN))
                        .bind(id)
                        .execute(&self.pool)
                        .await
                        .map_err(db("find_available_tasks (settle woken)", id))?;
                }
                return Ok(false);
            }
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
        .map(|()| false)
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

/// The task of a picked row; an error if its blob does not decode or it has no task or input
/// after all.
///
/// The input is that of `schedule::task_input`, on the snapshot rebuilt with the one result it
/// needs: the row's last completed task and its output (the blob holds no results).
fn available_task(row: PickRow) -> Result<AvailableTask, Unusable> {
    let (instance_id, task_id, blob, trace_parent, _revision, last_id, has_results, last_output) =
        row;
    let mut snapshot = decode_snapshot(&instance_id, &blob).map_err(Unusable::Undecodable)?;
    if let WorkflowSnapshotState::InProgress { completed_tasks, last_completed_task_id, .. } =
        &mut snapshot.state
    {
        completed_tasks.clear();
        if has_results {
            // Stored results but not the last one: no input (`task_input` would fall back to
            // the initial input on an empty map).
            let (Some(last_id), Some(output)) = (last_id.clone(), last_output) else {
                return Err(Unusable::Inconsistent);
            };
            let result = TaskResult { task_id: last_id.clone(), output: Bytes::from(output) };
            completed_tasks.insert(last_id, result);
        }
        *last_completed_task_id = last_id;
    }
    let (Some(task_id), Some(input)) = (task_id, task_input(&snapshot)) else {
        return Err(Unusable::Inconsistent);
    };
    Ok(AvailableTask {
        instance_id,
        task_id,
        input,
        workflow_definition_hash: snapshot.definition_hash,
        trace_parent,
    })
}
