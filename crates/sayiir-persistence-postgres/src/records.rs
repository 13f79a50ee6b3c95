//! `WorkflowTransfer` for PostgreSQL: an export reads in one read-only `REPEATABLE READ`
//! transaction (one snapshot of the database), an import writes in one transaction that
//! first takes the instance's `wake_lock`, so two imports of one id take turns.

use std::collections::BTreeMap;

use bytes::Bytes;
use sqlx::{Postgres, Transaction};

use crate::error::{corrupt, db};
use crate::row::{SnapshotRow, StoredRow, assemble};
use crate::sayiir_core::snapshot::SignalKind;
use crate::sayiir_core::task_claim::TaskClaim;
use crate::signal::{SignalRow, request_of, request_time};
use crate::{BackendError, PostgresBackend};
use sayiir_persistence::claims::task_claim;
use sayiir_persistence::operation::Call;
use sayiir_persistence::results::{reads_archive, status_holds_results};
use sayiir_persistence::status::ALL as ALL_STATUSES;
use sayiir_persistence::transfer::{ImportOutcome, QueuePage, WorkflowRecord, WorkflowTransfer};

/// What an export reads beside the snapshot, in one row: the archive (the result rows of a
/// workflow whose state holds none of its own, `$2`: Completed, Failed; the snapshot read
/// already carries the others' results) and the buffered events in queue order.
pub(crate) const EXPORT_REST: &str = "SELECT
    ARRAY(SELECT r.task_id FROM {schema}.task_results r JOIN {schema}.workflows w USING (instance_id)
          WHERE r.instance_id = $1 AND w.status = ANY ($2) ORDER BY r.task_id)
        AS result_ids,
    ARRAY(SELECT r.output FROM {schema}.task_results r JOIN {schema}.workflows w USING (instance_id)
          WHERE r.instance_id = $1 AND w.status = ANY ($2) ORDER BY r.task_id)
        AS result_outputs,
    ARRAY(SELECT signal_name FROM {schema}.events WHERE instance_id = $1 ORDER BY id)
        AS event_names,
    ARRAY(SELECT payload FROM {schema}.events WHERE instance_id = $1 ORDER BY id)
        AS event_payloads";

/// Whether anything is stored for the instance: a workflow row or an event.
pub(crate) const IMPORT_STORED: &str = "SELECT
    EXISTS (SELECT 1 FROM {schema}.workflows WHERE instance_id = $1)
    OR EXISTS (SELECT 1 FROM {schema}.events WHERE instance_id = $1)";

/// Queues the events `$2` (signal names) / `$3` (payloads) in array order: the serial ids
/// are drawn in the order the rows are inserted.
pub(crate) const IMPORT_EVENTS: &str =
    "INSERT INTO {schema}.events (instance_id, signal_name, payload)
    SELECT $1, e.name, e.payload
    FROM unnest($2::text[], $3::bytea[]) WITH ORDINALITY AS e (name, payload, n)
    ORDER BY e.n";

/// Writes the archive `$2` (task ids) / `$3` (outputs) of a Completed or Failed workflow.
pub(crate) const IMPORT_ARCHIVE: &str =
    "INSERT INTO {schema}.task_results (instance_id, task_id, output)
    SELECT $1, r.task_id, r.output FROM unnest($2::text[], $3::bytea[]) AS r (task_id, output)";

/// Writes one pending request and takes the workflow out of the scheduling indexes
/// (migration 0003).
pub(crate) const IMPORT_SIGNAL: &str = "WITH stored AS (
        INSERT INTO {schema}.signals
            (instance_id, kind, reason, requested_by, requested_secs, requested_nanos)
        VALUES ($1, $2, $3, $4, $5, $6)
    )
    UPDATE {schema}.workflows SET signal_pending = TRUE WHERE instance_id = $1";

/// The instances with events and no workflow row, in id order, after `$1` when not NULL.
pub(crate) const UNSTARTED: &str = "SELECT DISTINCT e.instance_id FROM {schema}.events e
    WHERE ($1::text IS NULL OR e.instance_id > $1)
      AND NOT EXISTS (SELECT 1 FROM {schema}.workflows w WHERE w.instance_id = e.instance_id)
    ORDER BY e.instance_id LIMIT $2";

/// The live claims of an instance, by the database clock (as `claim_task` times them).
pub(crate) const TASK_CLAIMS: &str = "SELECT task_id, worker_id, claimed_ms, expires_ms
    FROM {schema}.claims
    WHERE instance_id = $1
      AND (expires_ms IS NULL
           OR expires_ms > floor(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT)
    ORDER BY task_id";

/// The row of [`EXPORT_REST`].
#[derive(Debug, sqlx::FromRow)]
struct RestRow {
    result_ids: Vec<String>,
    result_outputs: Vec<Vec<u8>>,
    event_names: Vec<String>,
    event_payloads: Vec<Vec<u8>>,
}

impl PostgresBackend {
    /// The reads of [`WorkflowTransfer::export_workflow`], inside `tx`.
    async fn read_record(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        id: &str,
    ) -> Result<Option<WorkflowRecord>, BackendError> {
        const OP: &str = "export_workflow";
        let row: Option<SnapshotRow> = sqlx::query_as(self.load_statement())
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db(OP, id))?;
        let archived_statuses: Vec<&str> =
            ALL_STATUSES.into_iter().filter(|status| !status_holds_results(status)).collect();
        let rest: RestRow = sqlx::query_as(self.statement(|s| &s.export_rest))
            .bind(id)
            .bind(archived_statuses)
            .fetch_one(&mut **tx)
            .await
            .map_err(db(OP, id))?;
        if rest.event_names.len() != rest.event_payloads.len()
            || rest.result_ids.len() != rest.result_outputs.len()
        {
            return Err(corrupt(id, "event or result arrays of different lengths"));
        }
        let mut events: BTreeMap<String, Vec<Bytes>> = BTreeMap::new();
        for (name, payload) in rest.event_names.into_iter().zip(rest.event_payloads) {
            events.entry(name).or_default().push(Bytes::from(payload));
        }
        let Some(row) = row else {
            return Ok(WorkflowRecord::unstarted(id, events));
        };
        let snapshot = assemble(id, row)?;
        let archived = reads_archive(&snapshot.state);
        let mut record = WorkflowRecord::of_snapshot(snapshot);
        if archived {
            record.archived_results = rest
                .result_ids
                .into_iter()
                .zip(rest.result_outputs)
                .map(|(task, output)| (task, Bytes::from(output)))
                .collect();
        }
        for kind in [SignalKind::Cancel, SignalKind::Pause] {
            let signal: Option<SignalRow> = sqlx::query_as(self.statement(|s| &s.get_signal))
                .bind(id)
                .bind(kind.as_ref())
                .fetch_optional(&mut **tx)
                .await
                .map_err(db(OP, id))?;
            let request = signal.map(|row| request_of(id, row)).transpose()?;
            match kind {
                SignalKind::Cancel => record.cancel_request = request,
                SignalKind::Pause => record.pause_request = request,
            }
        }
        record.events = events;
        Ok(Some(record))
    }

    /// The writes of [`WorkflowTransfer::import_workflow`], inside `tx`.
    async fn write_record(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        record: &WorkflowRecord,
    ) -> Result<ImportOutcome, BackendError> {
        const OP: &str = "import_workflow";
        let id = record.instance_id.as_str();
        sqlx::query(self.statement(|s| &s.wake_lock))
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db(OP, id))?;
        let stored: bool = sqlx::query_scalar(self.statement(|s| &s.import_stored))
            .bind(id)
            .fetch_one(&mut **tx)
            .await
            .map_err(db(OP, id))?;
        if stored {
            return Ok(ImportOutcome::AlreadyStored);
        }
        // Events first: `save_snapshot` marks a signal wait woken from the queued events.
        let (names, payloads): (Vec<&str>, Vec<&[u8]>) = record
            .events
            .iter()
            .flat_map(|(name, queue)| queue.iter().map(move |p| (name.as_str(), p.as_ref())))
            .unzip();
        if !names.is_empty() {
            sqlx::query(self.statement(|s| &s.import_events))
                .bind(id)
                .bind(names)
                .bind(payloads)
                .execute(&mut **tx)
                .await
                .map_err(db(OP, id))?;
        }
        let Some(snapshot) = &record.snapshot else {
            return Ok(ImportOutcome::Imported);
        };
        let row = StoredRow::of(snapshot)?;
        self.save_query(&row, snapshot).execute(&mut **tx).await.map_err(db(OP, id))?;
        if !record.archived_results.is_empty() {
            let (tasks, outputs): (Vec<&str>, Vec<&[u8]>) = record
                .archived_results
                .iter()
                .map(|(task, output)| (task.as_str(), output.as_ref()))
                .unzip();
            sqlx::query(self.statement(|s| &s.import_archive))
                .bind(id)
                .bind(tasks)
                .bind(outputs)
                .execute(&mut **tx)
                .await
                .map_err(db(OP, id))?;
        }
        let requests = [
            (SignalKind::Cancel, &record.cancel_request),
            (SignalKind::Pause, &record.pause_request),
        ];
        for (kind, request) in requests {
            let Some(request) = request else { continue };
            let (secs, nanos) = request_time(request);
            sqlx::query(self.statement(|s| &s.import_signal))
                .bind(id)
                .bind(kind.as_ref())
                .bind(&request.reason)
                .bind(&request.requested_by)
                .bind(secs)
                .bind(nanos)
                .execute(&mut **tx)
                .await
                .map_err(db(OP, id))?;
        }
        Ok(ImportOutcome::Imported)
    }
}

impl WorkflowTransfer for PostgresBackend {
    async fn export_workflow(
        &self,
        instance_id: &str,
    ) -> Result<Option<WorkflowRecord>, BackendError> {
        self.calls()
            .run(Call::ExportWorkflow(instance_id), async {
                let failed = || db("export_workflow", instance_id);
                let mut tx = self.pool.begin().await.map_err(failed())?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(&mut *tx)
                    .await
                    .map_err(failed())?;
                let record = self.read_record(&mut tx, instance_id).await?;
                tx.commit().await.map_err(failed())?;
                Ok(record)
            })
            .await
    }

    async fn import_workflow(
        &self,
        record: &WorkflowRecord,
    ) -> Result<ImportOutcome, BackendError> {
        let id = record.instance_id.as_str();
        self.calls()
            .run(Call::ImportWorkflow(record), async {
                let mut tx = self.pool.begin().await.map_err(db("import_workflow", id))?;
                let outcome = self.write_record(&mut tx, record).await?;
                tx.commit().await.map_err(db("import_workflow", id))?;
                Ok(outcome)
            })
            .await
    }

    async fn list_unstarted_queues(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<QueuePage, BackendError> {
        self.calls()
            .run(Call::ListUnstartedQueues(limit), async {
                let fetch = i64::try_from(QueuePage::fetch_size(limit)).unwrap_or(i64::MAX);
                let ids: Vec<String> = crate::retry_read!(self, |conn| {
                    sqlx::query_scalar(self.statement(|s| &s.unstarted))
                        .bind(cursor)
                        .bind(fetch)
                        .fetch_all(conn)
                })
                .map_err(crate::error::db_all("list_unstarted_queues"))?;
                Ok(QueuePage::from_fetched(ids, limit))
            })
            .await
    }

    async fn task_claims(&self, instance_id: &str) -> Result<Vec<TaskClaim>, BackendError> {
        self.calls()
            .run(Call::TaskClaims(instance_id), async {
                let rows: Vec<(String, String, i64, Option<i64>)> =
                    crate::retry_read!(self, |conn| {
                        sqlx::query_as(self.statement(|s| &s.task_claims))
                            .bind(instance_id)
                            .fetch_all(conn)
                    })
                    .map_err(db("task_claims", instance_id))?;
                Ok(rows
                    .into_iter()
                    .map(|(task, worker, claimed_ms, expires_ms)| {
                        task_claim(instance_id, &task, &worker, claimed_ms, expires_ms)
                    })
                    .collect())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sayiir_core::snapshot::SignalRequest;
    use chrono::DateTime;

    #[test]
    fn request_times_keep_nanoseconds() {
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap_or_default();
        let request = SignalRequest { reason: None, requested_by: None, requested_at: at };
        assert_eq!(request_time(&request), (1_700_000_000, 123_456_789));
    }
}
