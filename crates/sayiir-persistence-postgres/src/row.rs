//! A snapshot as stored: the `workflows` row (codec blob plus denormalised columns) and its
//! `task_results` rows, and back.

use std::sync::LazyLock;

use crate::sayiir_core::snapshot::{WorkflowSnapshot, WorkflowSnapshotState};
use bytes::Bytes;
use sayiir_persistence::codec::{decode_snapshot_with_results, encode_snapshot_without_results};
use sayiir_persistence::results::{held_results, status_holds_results};
use sayiir_persistence::schedule::{
    IndexProjection, seconds_from_column, seconds_to_column, task_input,
};
use sayiir_persistence::status::ALL as ALL_STATUSES;
use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;

use crate::BackendError;

/// The stored form of one snapshot.
#[derive(Debug)]
pub(crate) struct StoredRow {
    pub(crate) status: String,
    /// The codec blob of the snapshot without its completed task results.
    pub(crate) blob: Vec<u8>,
    pub(crate) trace_parent: Option<String>,
    pub(crate) updated_at: i64,
    pub(crate) last_completed_task_id: Option<String>,
    pub(crate) position_kind: Option<String>,
    /// The task of an in-progress `AtTask` position, whether or not it can run.
    pub(crate) current_task_id: Option<String>,
    pub(crate) current_done: bool,
    pub(crate) has_input: bool,
    pub(crate) priority: i16,
    pub(crate) tags: Vec<String>,
    /// End of the current task's retry backoff, Unix milliseconds.
    pub(crate) retry_not_before: Option<i64>,
    pub(crate) failed_worker: Option<String>,
    /// Wake-up time of an in-progress delay or timed signal wait, Unix milliseconds.
    pub(crate) wake_at: Option<i64>,
    pub(crate) signal_name: Option<String>,
    /// `Some` (possibly empty) when the state holds results: the rows to keep.
    pub(crate) results: Option<Vec<(String, Bytes)>>,
}

impl StoredRow {
    /// Splits `snapshot` into its stored form.
    pub(crate) fn of(snapshot: &WorkflowSnapshot) -> Result<Self, BackendError> {
        let blob = encode_snapshot_without_results(snapshot)?;
        let results = held_results(&snapshot.state).map(|held| {
            held.values().map(|r| (r.task_id.clone(), r.output.clone())).collect::<Vec<_>>()
        });

        let last_completed_task_id = match &snapshot.state {
            WorkflowSnapshotState::InProgress { last_completed_task_id, .. }
            | WorkflowSnapshotState::Paused { last_completed_task_id, .. } => {
                last_completed_task_id.clone()
            }
            _ => None,
        };
        let index = IndexProjection::of(snapshot);
        let current = index.current_task();
        let current_task_id = current.map(|task| task.task_id.to_string());
        let current_done = current.is_some_and(|task| {
            held_results(&snapshot.state).is_some_and(|held| held.contains_key(task.task_id))
        });
        let (wake_at, signal_name) = index.parked();
        Ok(Self {
            status: snapshot.state.as_ref().to_string(),
            blob,
            trace_parent: snapshot.trace_parent.clone(),
            updated_at: seconds_to_column(snapshot.updated_at),
            last_completed_task_id,
            position_kind: snapshot.position_kind().map(String::from),
            current_task_id,
            current_done,
            has_input: task_input(snapshot).is_some(),
            priority: i16::from(index.priority),
            tags: index.tags.to_vec(),
            retry_not_before: current.and_then(|task| task.not_before_ms),
            failed_worker: current.and_then(|task| task.failed_worker.map(String::from)),
            wake_at,
            signal_name: signal_name.map(String::from),
            results,
        })
    }

    /// Binds the `workflows` columns, in the order of [`COLUMNS_PARAMS`], after the
    /// parameters already bound.
    pub(crate) fn bind_columns<'q>(
        &'q self,
        query: Query<'q, Postgres, PgArguments>,
    ) -> Query<'q, Postgres, PgArguments> {
        query
            .bind(&self.status)
            .bind(&self.blob)
            .bind(&self.trace_parent)
            .bind(self.updated_at)
            .bind(&self.last_completed_task_id)
            .bind(&self.position_kind)
            .bind(&self.current_task_id)
            .bind(self.current_done)
            .bind(self.has_input)
            .bind(self.priority)
            .bind(&self.tags)
            .bind(self.retry_not_before)
            .bind(&self.failed_worker)
            .bind(self.wake_at)
            .bind(&self.signal_name)
    }
}

/// `SET` list writing every `workflows` column from `$2`..`$16` (`$1` is the instance id), as
/// bound by [`StoredRow::bind_columns`]; the revision moves on. `woken` is recomputed from
/// the event queue: a caller that can write a signal wait (`$16` set) must hold the
/// instance's `wake_lock` (see migration 0002); for every other state it is false.
pub(crate) const COLUMNS_PARAMS: &str = "status = $2, blob = $3, trace_parent = $4, \
    updated_at = $5, last_completed_task_id = $6, position_kind = $7, current_task_id = $8, \
    current_done = $9, has_input = $10, priority = $11, tags = $12, retry_not_before = $13, \
    failed_worker = $14, wake_at = $15, signal_name = $16, \
    woken = ($16::text IS NOT NULL AND EXISTS (SELECT 1 FROM {schema}.events e \
        WHERE e.instance_id = $1 AND e.signal_name = $16::text)), \
    revision = revision + 1";

/// Takes a row that cannot be decoded out of the ready, parked and woken indexes, if it is
/// still at the revision that was read (`$2`), so it no longer takes the place of healthy
/// rows in `find_available_tasks`. The next save of the instance puts it back.
pub(crate) const QUARANTINE: &str = "UPDATE {schema}.workflows \
    SET has_input = FALSE, wake_at = NULL, woken = FALSE \
    WHERE instance_id = $1 AND revision = $2";

/// The columns [`assemble`] needs, selected from `workflows w` joined with the lateral `r`
/// of [`RESULTS_LATERAL`].
pub(crate) const SNAPSHOT_COLUMNS: &str =
    "w.blob, w.trace_parent, w.updated_at, w.last_completed_task_id, r.ids, r.outputs";

/// The result rows of `w`, as two arrays in the same order; none for a completed or failed
/// workflow, whose rows are its archive rather than part of its state (the statuses that
/// hold results are those of `status_holds_results`).
pub(crate) static RESULTS_LATERAL: LazyLock<String> = LazyLock::new(|| {
    let holding: Vec<String> = ALL_STATUSES
        .into_iter()
        .filter(|status| status_holds_results(status))
        .map(|status| format!("'{status}'"))
        .collect();
    format!(
        "LEFT JOIN LATERAL (
            SELECT array_agg(t.task_id) AS ids, array_agg(t.output) AS outputs
            FROM {{schema}}.task_results t
            WHERE t.instance_id = w.instance_id AND w.status IN ({})
        ) r ON true",
        holding.join(", ")
    )
});

/// A row of [`SNAPSHOT_COLUMNS`].
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SnapshotRow {
    /// The codec blob, without task results.
    pub(crate) blob: Vec<u8>,
    /// The trace parent, stored beside the blob.
    pub(crate) trace_parent: Option<String>,
    /// `updated_at`, in the column's encoding (`seconds_to_column`).
    pub(crate) updated_at: i64,
    /// The last completed task, as `save_task_result` keeps it current.
    pub(crate) last_completed_task_id: Option<String>,
    /// The result rows' task ids, in the order of `outputs`.
    pub(crate) ids: Option<Vec<String>>,
    /// The result rows' outputs.
    pub(crate) outputs: Option<Vec<Vec<u8>>>,
}

/// Rebuilds the snapshot of `instance_id` from its stored form.
pub(crate) fn assemble(
    instance_id: &str,
    row: SnapshotRow,
) -> Result<WorkflowSnapshot, BackendError> {
    let SnapshotRow {
        blob,
        trace_parent,
        updated_at,
        last_completed_task_id: last_completed,
        ids,
        outputs,
        ..
    } = row;
    let ids = ids.unwrap_or_default();
    let outputs = outputs.unwrap_or_default();
    if ids.len() != outputs.len() {
        return Err(crate::error::corrupt(instance_id, "result ids and outputs differ in number"));
    }
    let results = ids.into_iter().zip(outputs.into_iter().map(Bytes::from));
    let mut snapshot = decode_snapshot_with_results(instance_id, &blob, results)?;
    snapshot.trace_parent = trace_parent;
    // `save_task_result` updates these two in the row only, for in-progress workflows.
    if let WorkflowSnapshotState::InProgress { last_completed_task_id, .. } = &mut snapshot.state {
        *last_completed_task_id = last_completed;
        snapshot.updated_at = seconds_from_column(updated_at);
    }
    Ok(snapshot)
}
