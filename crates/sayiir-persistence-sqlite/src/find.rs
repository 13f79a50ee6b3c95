//! The search of `find_available_tasks` for SQLite: purge, wake, then pick by rank.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction, params};
use sayiir_persistence::BackendError;
use sayiir_persistence::operation::FindRequest;
use sayiir_persistence::sayiir_core::task_claim::AvailableTask;
use sayiir_persistence::schedule::{
    Advance, RankKey, ReadyTask, Schedule, advance_parked, aging_seconds, backoff_elapsed,
    best_by_rank, schedule_of, seconds_from_column, tags_accepted, task_input, unix_seconds,
};

use crate::SqliteBackend;
use crate::error::SqlResultExt;
use crate::row::{read_snapshot, write_snapshot};
use crate::signal::pop_event;

const OP: &str = "find_available_tasks";

/// Parked workflows that are due: a passed wake time, or an event for their signal wait.
///
/// `signal_pending = 0` keeps workflows with a pending request out of the indexes read here;
/// the `NOT EXISTS`, one probe per row read, also covers a process of schema version 1 that
/// still has the file open and stores requests without setting the flag.
const DUE_WORKFLOWS: &str = "
SELECT instance_id FROM workflows w
WHERE w.wake_ms <= ?1 AND w.signal_pending = 0
  AND NOT EXISTS (SELECT 1 FROM signals s WHERE s.instance_id = w.instance_id)
UNION
SELECT instance_id FROM workflows w
WHERE w.woken = 1 AND w.signal_pending = 0
  AND NOT EXISTS (SELECT 1 FROM signals s WHERE s.instance_id = w.instance_id)";

/// The next priority level that has a runnable workflow (one index probe).
const NEXT_LEVEL: &str =
    "SELECT min(ready_priority) FROM workflows WHERE ready_priority > ?1 AND signal_pending = 0";

/// The runnable workflows of one level, oldest first, without a signal or a live claim;
/// read lazily, so only as many index entries as needed are visited.
const LEVEL_ROWS: &str = "
SELECT w.instance_id, w.current_task_id, w.updated_at, w.task_tags,
       w.retry_not_before_ms, w.failed_worker
FROM workflows w
WHERE w.ready_priority = ?1 AND w.signal_pending = 0
  AND NOT EXISTS (SELECT 1 FROM signals s WHERE s.instance_id = w.instance_id)
  AND NOT EXISTS (SELECT 1 FROM claims c
                  WHERE c.instance_id = w.instance_id
                    AND c.task_id = w.current_task_id
                    AND (c.expires_ms IS NULL OR c.expires_ms > ?2))
ORDER BY w.updated_at, w.instance_id";

/// Now in whole Unix seconds, the clock snapshots carry.
pub(crate) fn now_secs() -> i64 {
    Utc::now().timestamp()
}

impl SqliteBackend {
    /// The search of `find_available_tasks`.
    pub(crate) async fn find(
        &self,
        request: FindRequest<'_>,
    ) -> Result<Vec<AvailableTask>, BackendError> {
        let FindRequest { worker_id, limit, aging_interval, worker_tags } = request;
        let worker_id = worker_id.to_string();
        let worker_tags = worker_tags.to_vec();
        let aging_secs = aging_seconds(aging_interval);
        self.threads
            .write(OP, "", move |tx| {
                let now = Utc::now();
                tx.prepare_cached(
                    "DELETE FROM claims WHERE expires_ms IS NOT NULL AND expires_ms <= ?1",
                )
                .and_then(|mut s| s.execute([now.timestamp_millis()]))
                .during(OP, "purge expired claims")?;
                advance_due(tx, now)?;
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let query = Query {
                    worker_id: &worker_id,
                    worker_tags: &worker_tags,
                    limit,
                    now,
                    aging_secs,
                };
                best_available(tx, &query)
            })
            .await
    }
}

struct Query<'a> {
    worker_id: &'a str,
    worker_tags: &'a [String],
    limit: usize,
    now: DateTime<Utc>,
    aging_secs: f64,
}

/// Advances every parked workflow that is due (§ Advancing parked workflows), inside find's
/// transaction, so the compare-and-set is implicit: no other writer can move it in between.
fn advance_due(tx: &Transaction<'_>, now: DateTime<Utc>) -> Result<(), BackendError> {
    let due: Vec<String> = {
        let mut stmt = tx.prepare_cached(DUE_WORKFLOWS).during(OP, "find due workflows")?;
        let rows = stmt
            .query_map([now.timestamp_millis()], |r| r.get(0))
            .during(OP, "find due workflows")?;
        rows.collect::<rusqlite::Result<_>>().during(OP, "find due workflows")?
    };
    for id in due {
        // Each park advances all or nothing; one broken row must not stop every worker.
        tx.execute_batch("SAVEPOINT park").during(OP, "savepoint")?;
        match advance_one(tx, now, &id) {
            Ok(()) => tx.execute_batch("RELEASE park").during(OP, "release savepoint")?,
            Err(error) => {
                tx.execute_batch("ROLLBACK TO park; RELEASE park").during(OP, "roll back park")?;
                if !matches!(error, BackendError::Serialization(_)) {
                    return Err(error);
                }
                tracing::warn!(instance_id = %id, %error, "cannot advance a parked workflow; skipped");
                set_aside(tx, &id)?;
            }
        }
    }
    Ok(())
}

/// Takes a workflow that cannot be decoded out of the scheduling indexes, so that it does
/// not hide others call after call; saving it again puts it back.
fn set_aside(tx: &Transaction<'_>, id: &str) -> Result<(), BackendError> {
    tx.prepare_cached(
        "UPDATE workflows SET ready_priority = NULL, wake_ms = NULL, woken = 0
         WHERE instance_id = ?1",
    )
    .and_then(|mut s| s.execute([id]))
    .during(OP, "set aside an undecodable workflow")
    .map(drop)
}

fn advance_one(tx: &Transaction<'_>, now: DateTime<Utc>, id: &str) -> Result<(), BackendError> {
    let Some(mut snapshot) = read_snapshot(tx, OP, id)? else {
        return Ok(());
    };
    let signal_name = match schedule_of(&snapshot) {
        Schedule::Signal { signal_name, .. } => Some(signal_name),
        _ => None,
    };
    let event = match &signal_name {
        Some(name) => tx
            .prepare_cached(
                "SELECT payload FROM events WHERE instance_id = ?1 AND signal_name = ?2
                 ORDER BY seq LIMIT 1",
            )
            .and_then(|mut s| s.query_row([id, name], |r| r.get::<_, Vec<u8>>(0)).optional())
            .during(OP, "peek event")?
            .map(bytes::Bytes::from),
        None => None,
    };
    let consumed = match advance_parked(&mut snapshot, now, event) {
        Advance::NotDue => return Ok(()),
        Advance::ToTask { consumed_event } => consumed_event,
        Advance::Completed { consumed_event, archive } => {
            // The completed snapshot no longer holds its results: the rows are its archive,
            // and must include what the advancement itself just recorded.
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO task_results (instance_id, task_id, output) VALUES (?1, ?2, ?3)
                     ON CONFLICT (instance_id, task_id) DO UPDATE SET output = excluded.output",
                )
                .during(OP, "archive results")?;
            for (task_id, result) in &archive {
                upsert
                    .execute(params![id, task_id, result.output.as_ref()])
                    .during(OP, "archive")?;
            }
            consumed_event
        }
    };
    if consumed && let Some(name) = &signal_name {
        pop_event(tx, OP, id, name)?;
    }
    write_snapshot(tx, OP, &snapshot)
}

/// The best `limit` eligible tasks, reading each priority level oldest first and stopping
/// once `limit` tasks that did not fail on this worker are found in it.
fn best_ready(tx: &Transaction<'_>, query: &Query<'_>) -> Result<Vec<String>, BackendError> {
    let now_ms = query.now.timestamp_millis();
    let now_secs = unix_seconds(query.now);
    let mut next_level = tx.prepare_cached(NEXT_LEVEL).during(OP, "prepare")?;
    let mut level_rows = tx.prepare_cached(LEVEL_ROWS).during(OP, "prepare")?;
    let mut ranked: Vec<(String, ReadyTask)> = Vec::new();
    let mut level: i64 = -1;
    while let Some(priority) = next_level
        .query_row([level], |r| r.get::<_, Option<i64>>(0))
        .during(OP, "next priority level")?
    {
        level = priority;
        let mut rows = level_rows.query(params![priority, now_ms]).during(OP, "read level")?;
        let mut fair = 0;
        while fair < query.limit {
            let Some(row) = rows.next().during(OP, "read level")? else {
                break;
            };
            let (id, task) = match ready_task(row, priority) {
                Ok(found) => found,
                Err(error) => {
                    tracing::warn!(%error, "skipping an unreadable workflow row");
                    continue;
                }
            };
            if !backoff_elapsed(task.not_before, query.now)
                || !tags_accepted(&task.tags, query.worker_tags)
            {
                continue;
            }
            if task.failed_worker.as_deref() != Some(query.worker_id) {
                fair += 1;
            }
            ranked.push((id, task));
        }
    }
    let keyed = ranked
        .iter()
        .map(|(id, task)| (RankKey::new(id, task, query.worker_id, now_secs, query.aging_secs), id))
        .collect();
    Ok(best_by_rank(keyed, query.limit).into_iter().cloned().collect())
}

/// The best `limit` tasks with their inputs. A winner that cannot be decoded is set aside
/// and the choice is made again without it, so one broken row never empties every poll.
fn best_available(
    tx: &Transaction<'_>,
    query: &Query<'_>,
) -> Result<Vec<AvailableTask>, BackendError> {
    loop {
        let mut tasks = Vec::new();
        let mut broken = false;
        for id in best_ready(tx, query)? {
            match read_snapshot(tx, OP, &id) {
                Ok(Some(snapshot)) => tasks.extend(available(snapshot)),
                Ok(None) => {}
                Err(error @ BackendError::Serialization(_)) => {
                    tracing::warn!(instance_id = %id, %error, "skipping an undecodable workflow");
                    set_aside(tx, &id)?;
                    broken = true;
                }
                Err(other) => return Err(other),
            }
        }
        // Each round sets at least one row aside for good, so this ends.
        if !broken {
            return Ok(tasks);
        }
    }
}

fn ready_task(row: &rusqlite::Row<'_>, priority: i64) -> Result<(String, ReadyTask), BackendError> {
    let read = |e: rusqlite::Error| BackendError::Serialization(format!("workflow row: {e}"));
    let id: String = row.get(0).map_err(read)?;
    let tags: String = row.get(3).map_err(read)?;
    let task = ReadyTask {
        task_id: row.get::<_, Option<String>>(1).map_err(read)?.unwrap_or_default(),
        priority: u8::try_from(priority).unwrap_or(u8::MAX),
        tags: serde_json::from_str(&tags).map_err(|e| {
            BackendError::Serialization(format!("task_tags of {id:?} are unreadable: {e}"))
        })?,
        updated_at: seconds_from_column(row.get::<_, i64>(2).map_err(read)?),
        not_before: row
            .get::<_, Option<i64>>(4)
            .map_err(read)?
            .and_then(DateTime::from_timestamp_millis),
        failed_worker: row.get(5).map_err(read)?,
    };
    Ok((id, task))
}

fn available(
    snapshot: sayiir_persistence::sayiir_core::snapshot::WorkflowSnapshot,
) -> Option<AvailableTask> {
    let task_id = snapshot.current_task_id()?.to_string();
    Some(AvailableTask {
        input: task_input(&snapshot)?,
        task_id,
        instance_id: snapshot.instance_id,
        workflow_definition_hash: snapshot.definition_hash,
        trace_parent: snapshot.trace_parent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::{Location, open_writer};
    use crate::options::SqliteOptions;

    /// The query plan of `sql`, one detail line per step.
    fn plan(conn: &rusqlite::Connection, sql: &str) -> Vec<String> {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let count = stmt.parameter_count();
        let params: Vec<i64> = vec![0; count];
        stmt.query_map(rusqlite::params_from_iter(params), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// find reads index ranges, never the whole workflows table: its cost follows `limit`
    /// and the number of due parks, not the number of stored workflows.
    #[test]
    fn find_queries_read_indexes_not_tables() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::File(dir.path().join("plan.db"));
        let conn = open_writer(&location, &SqliteOptions::default()).unwrap();
        conn.execute_batch("ANALYZE").unwrap();
        for (sql, index) in [
            (NEXT_LEVEL, "workflows_ready"),
            (LEVEL_ROWS, "workflows_ready"),
            (DUE_WORKFLOWS, "workflows_wake"),
            (DUE_WORKFLOWS, "workflows_woken"),
        ] {
            let steps = plan(&conn, sql);
            assert!(
                steps.iter().any(|s| s.contains(index)),
                "{sql}\nshould use {index}: {steps:?}"
            );
            assert!(
                !steps.iter().any(|s| s == "SCAN w" || s == "SCAN workflows"),
                "{sql}\nscans the table: {steps:?}"
            );
            assert!(
                !steps.iter().any(|s| s.contains("TEMP B-TREE FOR ORDER BY")),
                "{sql}\nsorts rows instead of reading them in index order: {steps:?}"
            );
        }
    }
}
