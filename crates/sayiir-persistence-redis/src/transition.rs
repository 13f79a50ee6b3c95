//! State transitions applied by scripts, replayed when a snapshot is read.
//!
//! `check_and_cancel`, `check_and_pause`, `unpause` and the advancement of a due park must
//! each be one atomic script, and scripts cannot decode the codec blob. So a script changes
//! the small fields it reads and indexes (status, position kind, current task, results, the
//! index entries) and records in the `snap` hash what it did; the blob stays as the last
//! whole save wrote it. Reading replays the record on the decoded blob with the sayiir-core
//! mutators themselves (`mark_unpaused`, `schedule::advance_parked`, `mark_paused`,
//! `mark_cancelled`), so a load returns exactly what those mutators would have saved. The
//! next whole save stores a new blob and drops the record.
//!
//! Scripts apply a transition only to a workflow in progress, except `unpause`, so the
//! transitions since a whole save always run: an `unpause` first if the blob is Paused; then
//! pause/unpause pairs, which change nothing but clear the task deadline; at most one
//! advancement (after it the workflow is at a task or Completed); and at most one final
//! pause or cancel. The record therefore fits in a few fields:
//!
//! | field | set by | meaning |
//! |---|---|---|
//! | `xt` | every transition | the blob is older than the stored status |
//! | `xd` | pause, cancel | the task deadline was cleared |
//! | `xv` | advancement | application clock (Unix ms) when the park was advanced |
//! | `xe` | advancement | the signal's head event was consumed (the payload is the result of the signal node) |
//! | `xq` | pause, cancel | the request applied, as stored by `store_signal` |
//! | `xa` | pause, cancel | when it was applied (Unix µs) |
//! | `xi` | cancel | the interrupted task |
//!
//! The final status is the stored `st`; the replay checks that it arrives there.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sayiir_persistence::sayiir_core::snapshot::{
    ExecutionPosition, PauseRequest, SignalRequest, WorkflowSnapshot, WorkflowSnapshotState,
};
use sayiir_persistence::schedule::{Advance, advance_parked};
use sayiir_persistence::status;

/// The transition record of one snapshot, as read from its `snap` hash.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// `xt`: a script changed the state since the blob was saved.
    pub(crate) transitioned: bool,
    /// `xd`: a pause or cancel cleared the task deadline.
    pub(crate) deadline_cleared: bool,
    /// `xv`: when the park was advanced (Unix ms, application clock).
    pub(crate) advanced_at_ms: Option<i64>,
    /// `xe`: the advancement consumed the head event of the awaited signal.
    pub(crate) event_consumed: bool,
    /// `xq`: the pause or cancel request applied, encoded.
    pub(crate) request: Option<Bytes>,
    /// `xa`: when the request was applied (Unix µs).
    pub(crate) applied_at_us: Option<i64>,
    /// `xi`: the task a cancel interrupted.
    pub(crate) interrupted_at_task: Option<String>,
}

/// Why a record cannot be replayed: the stored data contradicts itself.
pub(crate) type Inconsistent = String;

impl Record {
    /// Replays the record on `snapshot` (decoded from the blob, results included) so that it
    /// reaches `status`, the stored one.
    pub(crate) fn replay(
        &self,
        snapshot: &mut WorkflowSnapshot,
        status: &str,
    ) -> Result<(), Inconsistent> {
        if !self.transitioned {
            return Ok(());
        }
        if snapshot.state.is_paused() {
            snapshot.mark_unpaused();
        }
        if !matches!(snapshot.state, WorkflowSnapshotState::InProgress { .. }) {
            return Err(format!(
                "a transition to {status} is recorded on a {} snapshot",
                snapshot.state.as_ref()
            ));
        }
        if self.deadline_cleared {
            snapshot.task_deadline = None;
        }
        if let Some(ms) = self.advanced_at_ms {
            self.advance(snapshot, ms)?;
        }
        match status {
            status::PAUSED => {
                let (request, at) = self.applied_request()?;
                snapshot.mark_paused(&PauseRequest::from(request));
                if let WorkflowSnapshotState::Paused { paused_at, .. } = &mut snapshot.state {
                    *paused_at = at;
                }
            }
            status::CANCELLED => {
                let (request, at) = self.applied_request()?;
                snapshot.mark_cancelled(
                    request.reason,
                    request.requested_by,
                    self.interrupted_at_task.clone(),
                );
                if let WorkflowSnapshotState::Cancelled { cancelled_at, .. } = &mut snapshot.state {
                    *cancelled_at = at;
                }
            }
            _ => {}
        }
        if snapshot.state.as_ref() == status {
            Ok(())
        } else {
            Err(format!(
                "replaying the recorded transitions gives {}, the stored status is {status}",
                snapshot.state.as_ref()
            ))
        }
    }

    fn advance(&self, snapshot: &mut WorkflowSnapshot, ms: i64) -> Result<(), Inconsistent> {
        let now = DateTime::<Utc>::from_timestamp_millis(ms)
            .ok_or_else(|| format!("advancement time {ms} ms is out of range"))?;
        let event = match &snapshot.state {
            WorkflowSnapshotState::InProgress {
                position: ExecutionPosition::AtSignal { signal_id, .. },
                completed_tasks,
                ..
            } if self.event_consumed => Some(
                completed_tasks.get(signal_id).map(|result| result.output.clone()).ok_or_else(
                    || format!("the payload of signal node {signal_id:?} is missing"),
                )?,
            ),
            _ => None,
        };
        match advance_parked(snapshot, now, event) {
            Advance::NotDue => Err("an advancement is recorded for a park that is not due".into()),
            Advance::ToTask { .. } | Advance::Completed { .. } => Ok(()),
        }
    }

    fn applied_request(&self) -> Result<(SignalRequest, DateTime<Utc>), Inconsistent> {
        let raw = self.request.as_deref().ok_or("the applied request is missing")?;
        let request: SignalRequest = rmp_serde::from_slice(raw)
            .map_err(|e| format!("the applied request does not decode: {e}"))?;
        let us = self.applied_at_us.ok_or("the time the request was applied is missing")?;
        let at = DateTime::<Utc>::from_timestamp_micros(us)
            .ok_or_else(|| format!("application time {us} µs is out of range"))?;
        Ok((request, at))
    }
}

/// Validation of the replay against the sayiir-core mutators applied directly (what the
/// other backends store).
#[cfg(test)]
mod tests {
    use chrono::Duration;
    use sayiir_persistence::sayiir_core::snapshot::TaskDeadline;
    use sayiir_persistence_conformance::fixtures::{self, with_results};

    use super::*;

    /// The request with its encoding, as `store_signal` stores it.
    fn request(reason: &str) -> (SignalRequest, Bytes) {
        let request = fixtures::request(reason);
        let raw = Bytes::from(rmp_serde::to_vec_named(&request).unwrap());
        (request, raw)
    }

    /// In progress at `position` with result `a`, and fixed times (so that two calls agree).
    fn in_progress(position: ExecutionPosition) -> WorkflowSnapshot {
        let mut snapshot = with_results("wf", &[("a", b"out-a")], "b");
        snapshot.update_position(position);
        snapshot.created_at = 1_700_000_000;
        snapshot.task_deadline = Some(TaskDeadline {
            task_id: "b".into(),
            deadline: DateTime::<Utc>::from_timestamp(2_000_000_000, 0).unwrap(),
            timeout_ms: 30_000,
        });
        snapshot
    }

    /// `time` at the precision the record keeps.
    fn micros(time: DateTime<Utc>) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap()
    }

    fn at_task() -> WorkflowSnapshot {
        in_progress(ExecutionPosition::AtTask { task_id: "b".into() })
    }

    /// Equal up to `updated_at`, which the scripts store beside the blob.
    fn assert_same(mut replayed: WorkflowSnapshot, mut direct: WorkflowSnapshot) {
        replayed.updated_at = 0;
        direct.updated_at = 0;
        fixtures::assert_same(&replayed, &direct);
    }

    #[test]
    fn no_record_leaves_the_blob_as_it_is() {
        let mut snapshot = at_task();
        Record::default().replay(&mut snapshot, "Cancelled").unwrap();
        assert_same(snapshot, at_task());
    }

    #[test]
    fn cancel_replays_mark_cancelled() {
        let (signal, raw) = request("stop");
        let mut direct = at_task();
        direct.mark_cancelled(signal.reason, signal.requested_by, Some("b".into()));
        let WorkflowSnapshotState::Cancelled { cancelled_at, .. } = &mut direct.state else {
            panic!("not cancelled");
        };
        *cancelled_at = micros(*cancelled_at);
        let record = Record {
            transitioned: true,
            deadline_cleared: true,
            request: Some(raw),
            applied_at_us: Some(cancelled_at.timestamp_micros()),
            interrupted_at_task: Some("b".into()),
            ..Record::default()
        };
        let mut replayed = at_task();
        record.replay(&mut replayed, "Cancelled").unwrap();
        assert_same(replayed, direct);
    }

    #[test]
    fn pause_unpause_pause_from_a_paused_blob() {
        let (first, _) = request("first");
        let (second, raw) = request("second");
        let mut blob = at_task();
        blob.mark_paused(&PauseRequest::from(first));
        let mut direct = blob.clone();
        direct.mark_unpaused();
        direct.mark_paused(&PauseRequest::from(second.clone()));
        direct.mark_unpaused();
        direct.mark_paused(&PauseRequest::from(second));
        let WorkflowSnapshotState::Paused { paused_at, .. } = &mut direct.state else {
            panic!("not paused");
        };
        *paused_at = micros(*paused_at);
        let record = Record {
            transitioned: true,
            deadline_cleared: true,
            request: Some(raw),
            applied_at_us: Some(paused_at.timestamp_micros()),
            ..Record::default()
        };
        let mut replayed = blob;
        record.replay(&mut replayed, "Paused").unwrap();
        assert_same(replayed, direct);
    }

    #[test]
    fn unpause_keeps_the_deadline_a_pause_cleared() {
        let (signal, _) = request("p");
        let mut direct = at_task();
        direct.mark_paused(&PauseRequest::from(signal));
        direct.mark_unpaused();
        assert!(direct.task_deadline.is_none());
        let record = Record { transitioned: true, deadline_cleared: true, ..Record::default() };
        let mut replayed = at_task();
        record.replay(&mut replayed, "InProgress").unwrap();
        assert_same(replayed, direct);
    }

    #[test]
    fn advancement_replays_advance_parked() {
        let wake_at = Utc::now();
        let park = ExecutionPosition::AtSignal {
            signal_id: "s".into(),
            signal_name: "approve".into(),
            wake_at: Some(wake_at + Duration::hours(1)),
            next_task_id: Some("c".into()),
        };
        let mut direct = in_progress(park.clone());
        let payload = Bytes::from("yes");
        assert!(matches!(
            advance_parked(&mut direct, wake_at, Some(payload.clone())),
            Advance::ToTask { consumed_event: true }
        ));
        // What advance.lua stores: the payload as the result of the signal node.
        let mut replayed = in_progress(park);
        replayed.mark_task_completed("s".into(), payload);
        let record = Record {
            transitioned: true,
            advanced_at_ms: Some(wake_at.timestamp_millis()),
            event_consumed: true,
            ..Record::default()
        };
        record.replay(&mut replayed, "InProgress").unwrap();
        assert_same(replayed, direct);
    }

    #[test]
    fn a_delay_that_is_the_last_node_completes() {
        let wake_at = Utc::now();
        let park = ExecutionPosition::AtDelay {
            delay_id: "a".into(),
            entered_at: wake_at - Duration::seconds(5),
            wake_at,
            next_task_id: None,
        };
        let mut direct = in_progress(park.clone());
        assert!(matches!(
            advance_parked(&mut direct, wake_at, None),
            Advance::Completed { consumed_event: false, .. }
        ));
        let record = Record {
            transitioned: true,
            advanced_at_ms: Some(wake_at.timestamp_millis() + 1),
            ..Record::default()
        };
        let mut replayed = in_progress(park);
        record.replay(&mut replayed, "Completed").unwrap();
        assert_same(replayed, direct);
    }

    #[test]
    fn contradictions_are_reported() {
        let record = Record { transitioned: true, ..Record::default() };
        let mut snapshot = at_task();
        let error = record.replay(&mut snapshot, "Cancelled").unwrap_err();
        assert!(error.contains("request is missing"), "{error}");
        let mut completed = at_task();
        completed.mark_completed(Bytes::new());
        let error = record.replay(&mut completed, "InProgress").unwrap_err();
        assert!(error.contains("Completed snapshot"), "{error}");
        let record = Record { advanced_at_ms: Some(0), ..record };
        let error = record.replay(&mut at_task(), "InProgress").unwrap_err();
        assert!(error.contains("not due"), "{error}");
    }
}
