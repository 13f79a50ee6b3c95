//! `find_available_tasks`: pick the best ready tasks in SQL; the same statement says whether
//! parked workflows are due, and only then are they advanced (`advance`) and the pick taken
//! again. A call with nothing to advance, the common one, is one round trip.
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

use bytes::Bytes;
use chrono::{Duration, Utc};
use sayiir_persistence::operation::FindRequest;

use crate::codec::decode_snapshot;
use crate::error::{db, db_all};
use crate::sayiir_core::snapshot::{TaskResult, WorkflowSnapshotState};
use crate::sayiir_core::task_claim::AvailableTask;
use crate::schedule::{aging_seconds, task_input, unix_seconds};
use crate::{BackendError, PostgresBackend};

/// Most pick statements of one call: the first, plus one more each time picked rows turned
/// out undecodable and the result is short of `limit`.
pub(crate) const MAX_PICK_ROUNDS: usize = 8;

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
/// `schedule::effective_priority`. `updated_at` is stored with its sign bit flipped
/// (`seconds_to_column`): the real seconds are the column plus 2^63.
const EFFECTIVE: &str = "(w.priority::float8 \
    - ($5::float8 - (w.updated_at::numeric + 9223372036854775808)::float8) / $6::float8)";

/// Whether any parked workflow may move on at `$4` (application clock, ms): a due delay or
/// timed signal wait, or a signal wait woken by an event. The same predicates as the partial
/// indexes `workflows_parked` and `workflows_woken`, so each is one index probe. A superset of
/// what `advance::due_sql` advances (it also leaves out workflows with a stored request, which
/// `signal_pending` marks too): when this is false there is nothing to advance.
const PARKS_DUE: &str = "EXISTS (SELECT 1 FROM {schema}.workflows w
        WHERE w.status = 'InProgress' AND w.position_kind IN ('AtDelay', 'AtSignal')
          AND w.wake_at IS NOT NULL AND NOT w.signal_pending AND w.wake_at <= $4)
    OR EXISTS (SELECT 1 FROM {schema}.workflows w
        WHERE w.woken AND w.status = 'InProgress' AND w.position_kind = 'AtSignal'
          AND NOT w.signal_pending)";

/// The pick. `$1` worker, `$2` limit, `$3` worker tags, `$4` now (application clock, ms),
/// `$5` now (application clock, fractional seconds), `$6` aging interval in seconds, `$7`
/// instances to leave out. Expired claims are purged in the same statement.
///
/// It also answers whether parks are due ([`PARKS_DUE`]), so that the common call, with
/// nothing to advance, is this one round trip: the answer always has at least one row, whose
/// pick columns are NULL when no task is ready.
pub(crate) fn pick_sql() -> String {
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
        ), picked AS (
            SELECT b.biased, b.effective, b.updated_at, b.instance_id, b.current_task_id, w.blob,
                w.trace_parent, w.revision, b.last_completed_task_id,
                EXISTS (SELECT 1 FROM {{schema}}.task_results r
                        WHERE r.instance_id = b.instance_id) AS has_results,
                (SELECT r.output FROM {{schema}}.task_results r
                 WHERE r.instance_id = b.instance_id AND r.task_id = b.last_completed_task_id)
                    AS last_output
            FROM best b JOIN {{schema}}.workflows w ON w.instance_id = b.instance_id
        )
        SELECT f.parks_due, p.instance_id, p.current_task_id, p.blob, p.trace_parent,
            p.revision, p.last_completed_task_id, p.has_results, p.last_output
        FROM (SELECT {PARKS_DUE} AS parks_due) f LEFT JOIN picked p ON TRUE
        ORDER BY p.biased, p.effective, p.updated_at, p.instance_id"
    )
}

/// Runs the statements of `find_available_tasks` once on a new connection (a limit of 0; the
/// park search at the epoch, so nothing is due), with the parameter types the real calls
/// bind, so that the server has parsed and planned them before the first real call: on a
/// fresh server process that first planning takes most of the call (17 ms against 1.7 ms for
/// the next one, measured by the `runtime` benchmark's cold start). Best effort: on a schema
/// not yet migrated the statements fail, and the connection is used cold.
pub(crate) async fn warm(conn: &mut sqlx::PgConnection, due: sqlx::SqlStr, pick: sqlx::SqlStr) {
    let due = crate::advance::due_rows(&mut *conn, due, 0).await.map(drop);
    let pick = sqlx::query_as::<_, PickRow>(pick)
        .bind("")
        .bind(0_i64)
        .bind(Vec::<String>::new())
        .bind(0_i64)
        .bind(0.0_f64)
        .bind(1.0_f64)
        .bind(Vec::<String>::new())
        .fetch_all(conn)
        .await
        .map(drop);
    if let Err(error) = due.and(pick) {
        tracing::debug!(%error, "warming a new connection's statements failed; it starts cold");
    }
}

/// A row of [`pick_sql`]: whether parks are due, and a picked task unless none is ready.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PickRow {
    parks_due: bool,
    instance_id: Option<String>,
    current_task_id: Option<String>,
    blob: Option<Vec<u8>>,
    trace_parent: Option<String>,
    revision: Option<i64>,
    last_completed_task_id: Option<String>,
    has_results: Option<bool>,
    last_output: Option<Vec<u8>>,
}

/// A picked ready task, as read by [`pick_sql`].
#[derive(Debug)]
struct Picked {
    instance_id: String,
    current_task_id: Option<String>,
    /// The codec blob, without task results.
    blob: Vec<u8>,
    trace_parent: Option<String>,
    /// The row's revision, for the compare-and-set of a quarantine.
    revision: i64,
    last_completed_task_id: Option<String>,
    /// Whether any result row is stored.
    has_results: bool,
    /// The output of the last completed task.
    last_output: Option<Vec<u8>>,
}

/// The answer of one pick statement.
struct Pick {
    /// Parked workflows may move on ([`PARKS_DUE`]).
    parks_due: bool,
    /// The picked tasks, best first.
    rows: Vec<Picked>,
}

impl Pick {
    fn of(rows: Vec<PickRow>) -> Self {
        let parks_due = rows.first().is_some_and(|row| row.parks_due);
        let rows = rows
            .into_iter()
            .filter_map(|row| {
                // The NULL row of an empty pick has no instance id (a picked row always does,
                // and its blob and revision are NOT NULL columns).
                Some(Picked {
                    instance_id: row.instance_id?,
                    current_task_id: row.current_task_id,
                    blob: row.blob?,
                    trace_parent: row.trace_parent,
                    revision: row.revision?,
                    last_completed_task_id: row.last_completed_task_id,
                    has_results: row.has_results.unwrap_or(false),
                    last_output: row.last_output,
                })
            })
            .collect();
        Self { parks_due, rows }
    }
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
        request: FindRequest<'_>,
    ) -> Result<Vec<AvailableTask>, BackendError> {
        let FindRequest { worker_id, limit, aging_interval, worker_tags } = request;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let mut found: Vec<AvailableTask> = Vec::new();
        // Instances picked already: returned ones, and unusable ones (taken out of the index,
        // but also left out in case another writer changed them in between).
        let mut seen: Vec<String> = Vec::new();
        let mut first = true;
        for _ in 0..MAX_PICK_ROUNDS {
            let want = limit - found.len();
            let mut pick =
                self.pick(worker_id, want, now, aging_interval, worker_tags, &seen).await?;
            if first && pick.parks_due {
                // Parks move on before the pick (§ Advancing parked workflows): the tasks they
                // make ready compete with the others, so the pick is taken again after them.
                self.advance_due(now).await?;
                pick = self.pick(worker_id, want, now, aging_interval, worker_tags, &seen).await?;
            }
            first = false;
            let rows = pick.rows;
            let fetched = rows.len();
            let mut unusable = 0;
            for row in rows {
                let (instance_id, revision) = (row.instance_id.clone(), row.revision);
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
    ) -> Result<Pick, BackendError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<PickRow> = crate::retry_read!(self, |conn| {
            sqlx::query_as(self.statement(|s| &s.pick))
                .bind(worker_id)
                .bind(limit)
                .bind(worker_tags)
                .bind(now.timestamp_millis())
                .bind(unix_seconds(now))
                .bind(aging_seconds(aging_interval))
                .bind(excluded)
                .fetch_all(conn)
        })
        .map_err(db_all("find_available_tasks"))?;
        Ok(Pick::of(rows))
    }

    /// Takes an unusable row out of the ready, parked and woken indexes if it is still at
    /// `revision`. A failure is logged: the row is then skipped again by the next call.
    pub(crate) async fn quarantine(&self, instance_id: &str, revision: i64) {
        let done = sqlx::query(self.statement(|s| &s.quarantine))
            .bind(instance_id)
            .bind(revision)
            .execute(&self.pool)
            .await
            .map_err(db("find_available_tasks (skip unusable row)", instance_id));
        if let Err(error) = done {
            tracing::warn!(%error, "an unusable workflow could not be taken out of the index");
        }
    }
}

/// The task of a picked row; an error if its blob does not decode or it has no task or input
/// after all.
///
/// The input is that of `schedule::task_input`, on the snapshot rebuilt with the one result it
/// needs: the row's last completed task and its output (the blob holds no results).
fn available_task(row: Picked) -> Result<AvailableTask, Unusable> {
    let Picked {
        instance_id,
        current_task_id: task_id,
        blob,
        trace_parent,
        last_completed_task_id: last_id,
        has_results,
        last_output,
        ..
    } = row;
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
