//! The advancement part of `find_available_tasks`: parked workflows (delays, signal waits) that
//! are due or were woken by an event move on to their next task, each with a compare-and-set
//! on the row's revision, before the pick.

use std::collections::HashMap;

use bytes::Bytes;
use chrono::Utc;
use sqlx::Row;
use sqlx::postgres::PgPool;

use crate::error::{db, db_all};
use crate::results::held_results;
use crate::row::{
    COLUMNS_PARAMS, RESULTS_LATERAL, SNAPSHOT_COLUMNS, SnapshotRow, StoredRow, assemble,
};
use crate::sayiir_core::snapshot::WorkflowSnapshot;
use crate::schedule::{Advance, advance_parked};
use crate::{BackendError, PostgresBackend};

use crate::find::MAX_PICK_ROUNDS;

/// Most parked workflows advanced by one call, per kind (due, woken); the rest wait for the
/// next call.
pub(crate) const ADVANCE_BATCH: i64 = 100;

/// Clears the woken mark of a signal wait whose queue is empty (function of migration 0002).
pub(crate) const SETTLE_WOKEN: &str = "SELECT {schema}.settle_woken($1)";

/// Parked workflows that may move on: delays and timed signal waits that are due (application clock
/// `$1`, in O(due) through `workflows_parked`), and signal waits marked woken by an event (in
/// O(woken) through `workflows_woken`, with the oldest event of their queue; the events table is
/// read only for them). Workflows with a pending cancel or pause stay parked (§ Requests for
/// unclaimed workflows are never applied); they are filtered out inside each branch, before its
/// limit, so however many of them accumulate they never hide a park that can move.
pub(crate) fn due_sql() -> String {
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

/// The due and woken parks at `now_ms` (at most [`ADVANCE_BATCH`] of each).
pub(crate) async fn due_rows<'c, E>(
    conn: E,
    due: sqlx::SqlStr,
    now_ms: i64,
) -> Result<Vec<DueRow>, sqlx::Error>
where
    E: sqlx::PgExecutor<'c>,
{
    sqlx::query_as(due).bind(now_ms).bind(ADVANCE_BATCH).fetch_all(conn).await
}

/// A row of [`due_sql`].
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DueRow {
    instance_id: String,
    /// Found through the woken mark (an event arrived) rather than the wake time.
    woken: bool,
    /// The oldest event of the signal wait's queue, if any.
    event_id: Option<i64>,
    payload: Option<Vec<u8>>,
    /// The row's revision, for the compare-and-set of the advance.
    revision: i64,
    #[sqlx(flatten)]
    snapshot: SnapshotRow,
}

/// Writes an advanced park if the row is still at the revision it was read at
/// (compare-and-set), consumes the event it used (`$18`, if any) and adds the results the
/// advance created (`$19`, `$20`). The caller commits only if both the row and the event were
/// there.
pub(crate) fn advance_sql() -> String {
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

impl PostgresBackend {
    /// Advances every due or woken park it finds (up to [`ADVANCE_BATCH`] of each). A row
    /// that cannot be decoded is logged and taken out of the parked indexes; one that cannot be
    /// written is logged and left for a later call.
    ///
    /// When a full batch held rows that had to be taken out, the search runs again (at most
    /// [`MAX_PICK_ROUNDS`] times): the rows behind them are advanced in this same call.
    pub(crate) async fn advance_due(&self, now: chrono::DateTime<Utc>) -> Result<(), BackendError> {
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
        let rows: Vec<DueRow> = crate::retry_read!(self, |conn| {
            due_rows(conn, self.statement(|s| &s.due), now.timestamp_millis())
        })
        .map_err(db_all("find_available_tasks (due parks)"))?;
        let woken_rows = rows.iter().filter(|row| row.woken).count();
        let fetched = woken_rows.max(rows.len() - woken_rows);
        // A signal wait can be both timed out and woken by an event: the event wins.
        let mut parked: HashMap<String, Parked> = HashMap::new();
        for DueRow { instance_id, woken, event_id, payload, revision, snapshot } in rows {
            let event = event_id.zip(payload).map(|(id, p)| (id, Bytes::from(p)));
            match parked.get_mut(&instance_id) {
                Some(existing) => {
                    existing.woken |= woken;
                    if existing.event.is_none() {
                        existing.event = event;
                    }
                }
                None => {
                    let park = Parked {
                        instance_id: instance_id.clone(),
                        woken,
                        event,
                        revision,
                        row: snapshot,
                    };
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
                    sqlx::query(self.statement(|s| &s.settle_woken))
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
            self.statement(|s| &s.advance),
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
    sql: sqlx::SqlStr,
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
