//! The scheduling rules of `find_available_tasks` (§ find_available_tasks), as pure functions.
//!
//! Backends denormalise [`schedule_of`] into indexed columns, sorted sets or maps, and may
//! re-express these rules in SQL or Lua for speed; the conformance suite checks that they
//! agree with this module.
//!
//! Ordering (§ Ordering, aging and worker bias; § Filter and sort before the limit): tasks that
//! last failed on the asking worker come after all others; then by effective priority `priority -
//! wait / aging` ascending; then by the snapshot's `updated_at`; then by instance id. For one aging
//! interval the order of two tasks of the same priority never depends on the clock, so the best
//! task of each priority level is the oldest of that level: a backend can read the first `limit`
//! ready tasks of each level from an index ordered by `(priority, updated_at, instance_id)` and
//! merge them with [`RankKey`].

use std::cmp::Ordering;
use std::collections::HashMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sayiir_core::snapshot::{
    ExecutionPosition, TaskResult, WorkflowSnapshot, WorkflowSnapshotState,
};

/// The priority a snapshot without `task_priority` runs at (Normal).
pub const DEFAULT_PRIORITY: u8 = 3;

/// Where a stored workflow stands for the scheduler. Pending signals, claims and the clock
/// are not part of it: they change without the snapshot being saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// `find_available_tasks` never returns or advances it: terminal, paused, not started,
    /// at a fork, join or loop, current task already completed, or no input to give.
    Idle,
    /// At a task a worker can run (once `not_before` has passed, if set).
    Ready(ReadyTask),
    /// Parked at a delay until `wake_at`.
    Delay {
        /// When the delay is due.
        wake_at: DateTime<Utc>,
    },
    /// Parked until an event named `signal_name` arrives, or until `wake_at` if set.
    Signal {
        /// The event queue that wakes it.
        signal_name: String,
        /// The timeout, if any.
        wake_at: Option<DateTime<Utc>>,
    },
}

/// The fields of a runnable task that filtering and ordering need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyTask {
    /// The task to run.
    pub task_id: String,
    /// `task_priority`, or [`DEFAULT_PRIORITY`].
    pub priority: u8,
    /// The task's affinity tags.
    pub tags: Vec<String>,
    /// The snapshot's `updated_at`: the aging clock.
    pub updated_at: u64,
    /// End of the retry backoff, if the task has failed before.
    pub not_before: Option<DateTime<Utc>>,
    /// The worker the task last failed on, if any.
    pub failed_worker: Option<String>,
}

/// Classifies a snapshot for the scheduler (§ Eligibility rules 1, 3, 4 and 8; § Advancing parked
/// workflows).
#[must_use]
pub fn schedule_of(snapshot: &WorkflowSnapshot) -> Schedule {
    let WorkflowSnapshotState::InProgress { position, completed_tasks, .. } = &snapshot.state
    else {
        return Schedule::Idle;
    };
    match position {
        ExecutionPosition::AtTask { task_id } => {
            if completed_tasks.contains_key(task_id) || task_input(snapshot).is_none() {
                return Schedule::Idle;
            }
            let retry = snapshot.task_retries.get(task_id);
            Schedule::Ready(ReadyTask {
                task_id: task_id.clone(),
                priority: snapshot.task_priority.unwrap_or(DEFAULT_PRIORITY),
                tags: snapshot.task_tags.clone(),
                updated_at: snapshot.updated_at,
                not_before: retry.map(|r| r.next_retry_at),
                failed_worker: retry.and_then(|r| r.last_failed_worker.clone()),
            })
        }
        ExecutionPosition::AtDelay { wake_at, .. } => Schedule::Delay { wake_at: *wake_at },
        ExecutionPosition::AtSignal { signal_name, wake_at, .. } => {
            Schedule::Signal { signal_name: signal_name.clone(), wake_at: *wake_at }
        }
        _ => Schedule::Idle,
    }
}

/// A time as every scheduling index stores it: Unix milliseconds, **rounded up**.
///
/// Indexes compare stored times with "now" in whole milliseconds (`stored <= now_ms`). Rounded
/// up, a time read off an index is never earlier than the exact one, so nothing is handed out
/// or woken before it is due (§ Clocks and rounding); rounded down, a task could be handed out
/// up to 1 ms before its retry backoff ends.
#[must_use]
pub fn index_millis(time: DateTime<Utc>) -> i64 {
    let floor = time.timestamp_millis();
    if time.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        floor
    } else {
        floor.saturating_add(1)
    }
}

/// What a backend's scheduling indexes store for one snapshot, computed in one place so that
/// every backend stores the same values with the same rounding ([`index_millis`]).
///
/// Position fields are filled for an `InProgress` or `Paused` workflow (a paused one keeps them
/// for when it resumes); a backend that indexes in-progress workflows only checks
/// [`IndexProjection::in_progress`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexProjection<'a> {
    /// The state is `InProgress`.
    pub in_progress: bool,
    /// `task_priority`, or [`DEFAULT_PRIORITY`].
    pub priority: u8,
    /// The aging stamp: the snapshot's `updated_at` (Unix s).
    pub updated_at: u64,
    /// The snapshot's task tags.
    pub tags: &'a [String],
    /// The task at the position (`AtTask`).
    pub task: Option<TaskProjection<'a>>,
    /// When a delay or a signal wait with a timeout is due, Unix ms rounded up.
    pub wake_ms: Option<i64>,
    /// The event queue a signal wait listens to.
    pub signal_name: Option<&'a str>,
    /// [`schedule_of`] says [`Schedule::Ready`]: a worker may run the task now or once its
    /// backoff has ended.
    pub ready: bool,
}

/// What the indexes store about one task of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskProjection<'a> {
    /// The task.
    pub task_id: &'a str,
    /// End of the task's retry backoff, Unix ms rounded up; `None` when it never failed.
    pub not_before_ms: Option<i64>,
    /// The worker the task last failed on.
    pub failed_worker: Option<&'a str>,
}

impl<'a> IndexProjection<'a> {
    /// The projection of `snapshot`.
    #[must_use]
    pub fn of(snapshot: &'a WorkflowSnapshot) -> Self {
        let position = match &snapshot.state {
            WorkflowSnapshotState::InProgress { position, .. }
            | WorkflowSnapshotState::Paused { position, .. } => Some(position),
            _ => None,
        };
        let (task, wake_at, signal_name) = match position {
            Some(ExecutionPosition::AtTask { task_id }) => {
                (Some(Self::task(snapshot, task_id)), None, None)
            }
            Some(ExecutionPosition::AtDelay { wake_at, .. }) => (None, Some(*wake_at), None),
            Some(ExecutionPosition::AtSignal { wake_at, signal_name, .. }) => {
                (None, *wake_at, Some(signal_name.as_str()))
            }
            _ => (None, None, None),
        };
        Self {
            in_progress: snapshot.state.is_in_progress(),
            priority: snapshot.task_priority.unwrap_or(DEFAULT_PRIORITY),
            updated_at: snapshot.updated_at,
            tags: &snapshot.task_tags,
            task,
            wake_ms: wake_at.map(index_millis),
            signal_name,
            ready: matches!(schedule_of(snapshot), Schedule::Ready(_)),
        }
    }

    /// The projection of `task_id` as the current task of `snapshot`.
    #[must_use]
    pub fn task(snapshot: &'a WorkflowSnapshot, task_id: &'a str) -> TaskProjection<'a> {
        let retry = snapshot.task_retries.get(task_id);
        TaskProjection {
            task_id,
            not_before_ms: retry.map(|retry| index_millis(retry.next_retry_at)),
            failed_worker: retry.and_then(|retry| retry.last_failed_worker.as_deref()),
        }
    }

    /// The task at the position of an in-progress workflow.
    #[must_use]
    pub fn current_task(&self) -> Option<TaskProjection<'a>> {
        self.task.filter(|_| self.in_progress)
    }

    /// The wake time and event queue of an in-progress parked workflow.
    #[must_use]
    pub fn parked(&self) -> (Option<i64>, Option<&'a str>) {
        if self.in_progress { (self.wake_ms, self.signal_name) } else { (None, None) }
    }
}

/// The input a worker runs the current task with (§ Returned fields): the initial input while no
/// task has completed, else the output of the last completed task.
#[must_use]
pub fn task_input(snapshot: &WorkflowSnapshot) -> Option<Bytes> {
    let WorkflowSnapshotState::InProgress { completed_tasks, .. } = &snapshot.state else {
        return None;
    };
    if completed_tasks.is_empty() {
        snapshot.initial_input.clone()
    } else {
        snapshot.get_last_task_output()
    }
}

/// Whether a worker with `worker_tags` accepts a task tagged `task_tags` (§ Worker tags): a worker
/// without tags accepts everything; otherwise the task's tags must be a subset of its own.
#[must_use]
pub fn tags_accepted(task_tags: &[String], worker_tags: &[String]) -> bool {
    worker_tags.is_empty() || task_tags.iter().all(|tag| worker_tags.contains(tag))
}

/// Whether a task whose backoff ends at `not_before` may run at `now` (§ Eligibility rules, rule
/// 6).
#[must_use]
pub fn backoff_elapsed(not_before: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    not_before.is_none_or(|t| now >= t)
}

/// The aging interval in seconds, clamped to at least one second (`Duration::MAX` and other
/// huge values effectively disable aging).
#[must_use]
pub fn aging_seconds(aging_interval: chrono::Duration) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let secs = aging_interval.num_milliseconds() as f64 / 1000.0;
    secs.max(1.0)
}

/// `priority - (now - updated_at) / aging`: lower runs first.
#[must_use]
pub fn effective_priority(priority: u8, updated_at: u64, now_secs: f64, aging_secs: f64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let wait = now_secs - updated_at as f64;
    f64::from(priority) - wait / aging_secs
}

/// Now as fractional Unix seconds, the clock [`effective_priority`] takes.
#[must_use]
pub fn unix_seconds(now: DateTime<Utc>) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let micros = now.timestamp_micros() as f64;
    micros / 1e6
}

/// The total order of candidate tasks for one call; smaller is better.
#[derive(Debug, Clone)]
pub struct RankKey<'a> {
    /// The task last failed on the asking worker.
    pub biased: bool,
    /// See [`effective_priority`].
    pub effective: f64,
    /// The snapshot's `updated_at`.
    pub updated_at: u64,
    /// Final tie-break.
    pub instance_id: &'a str,
}

impl<'a> RankKey<'a> {
    /// The key of `task` of `instance_id` for a call by `worker_id` at `now_secs`.
    #[must_use]
    pub fn new(
        instance_id: &'a str,
        task: &ReadyTask,
        worker_id: &str,
        now_secs: f64,
        aging_secs: f64,
    ) -> Self {
        Self {
            biased: task.failed_worker.as_deref() == Some(worker_id),
            effective: effective_priority(task.priority, task.updated_at, now_secs, aging_secs),
            updated_at: task.updated_at,
            instance_id,
        }
    }
}

impl Ord for RankKey<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.biased
            .cmp(&other.biased)
            .then_with(|| self.effective.total_cmp(&other.effective))
            .then_with(|| self.updated_at.cmp(&other.updated_at))
            .then_with(|| self.instance_id.cmp(other.instance_id))
    }
}

impl PartialOrd for RankKey<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for RankKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for RankKey<'_> {}

/// Sorts candidates by their key and keeps the best `limit` (sort first, then truncate).
pub fn best_by_rank<T>(mut candidates: Vec<(RankKey<'_>, T)>, limit: usize) -> Vec<T> {
    candidates.sort_by(|a, b| a.0.cmp(&b.0));
    candidates.into_iter().take(limit).map(|(_, t)| t).collect()
}

/// What [`seconds_to_column`] flips: the sign bit.
pub const COLUMN_SIGN_FLIP: u64 = 1 << 63;

/// `updated_at` (Unix seconds, a `u64`) as a signed 64-bit column, for databases without an
/// unsigned 64-bit type: the value with its sign bit flipped, so the column sorts exactly as
/// the `u64` does (0 is `i64::MIN`, `u64::MAX` is `i64::MAX`) and every value round-trips
/// through [`seconds_from_column`]. A plain cast would wrap stamps at or past 2^63 to negative
/// numbers that sort before every real one. In SQL the real value is
/// `updated_at::numeric + 9223372036854775808` (PostgreSQL).
#[must_use]
#[allow(clippy::cast_possible_wrap)]
pub fn seconds_to_column(secs: u64) -> i64 {
    (secs ^ COLUMN_SIGN_FLIP) as i64
}

/// The inverse of [`seconds_to_column`].
#[must_use]
#[allow(clippy::cast_sign_loss)]
pub fn seconds_from_column(column: i64) -> u64 {
    (column as u64) ^ COLUMN_SIGN_FLIP
}

/// What advancing a parked workflow did (§ Advancing parked workflows).
#[derive(Debug, Clone)]
pub enum Advance {
    /// Not parked, or not due yet: the snapshot is unchanged.
    NotDue,
    /// Moved to `AtTask`; the task is ready now.
    ToTask {
        /// Whether the buffered event was used (the caller must consume it).
        consumed_event: bool,
    },
    /// The park was the last node: the workflow is now Completed.
    Completed {
        /// Whether the buffered event was used (the caller must consume it).
        consumed_event: bool,
        /// The results held before completion, to archive (§ Results survive completion).
        archive: HashMap<String, TaskResult>,
    },
}

/// Moves a workflow parked at a due delay or signal wait to its next task, or completes it.
///
/// `event` is the oldest buffered event of the signal's queue, if the snapshot waits for one
/// (see [`Schedule::Signal`]). A signal payload (or an empty one on timeout) is stored as the
/// result of the signal node's `signal_id`; a delay completes the workflow with the delay's
/// stored passthrough output. The caller persists the snapshot only if the stored position is
/// still the parked one (compare-and-set), and consumes the event when told to.
pub fn advance_parked(
    snapshot: &mut WorkflowSnapshot,
    now: DateTime<Utc>,
    event: Option<Bytes>,
) -> Advance {
    let WorkflowSnapshotState::InProgress { position, .. } = &snapshot.state else {
        return Advance::NotDue;
    };
    let (next, result, consumed_event) = match position {
        ExecutionPosition::AtDelay { wake_at, delay_id, next_task_id, .. } if now >= *wake_at => {
            let passthrough = snapshot.get_task_result_bytes(delay_id).unwrap_or_default();
            (next_task_id.clone(), (None, passthrough), false)
        }
        ExecutionPosition::AtSignal { signal_id, wake_at, next_task_id, .. } => match event {
            Some(payload) => (next_task_id.clone(), (Some(signal_id.clone()), payload), true),
            None if wake_at.is_some_and(|w| now >= w) => {
                (next_task_id.clone(), (Some(signal_id.clone()), Bytes::new()), false)
            }
            None => return Advance::NotDue,
        },
        _ => return Advance::NotDue,
    };
    let (result_id, output) = result;
    if let Some(result_id) = result_id {
        snapshot.mark_task_completed(result_id, output.clone());
    }
    match next {
        Some(task_id) => {
            snapshot.update_position(ExecutionPosition::AtTask { task_id });
            Advance::ToTask { consumed_event }
        }
        None => {
            let archive =
                crate::results::held_results(&snapshot.state).cloned().unwrap_or_default();
            snapshot.mark_completed(output);
            Advance::Completed { consumed_event, archive }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(priority: u8, updated_at: u64, failed: Option<&str>) -> ReadyTask {
        ReadyTask {
            task_id: "t".into(),
            priority,
            tags: vec![],
            updated_at,
            not_before: None,
            failed_worker: failed.map(String::from),
        }
    }

    #[test]
    fn index_times_round_up_to_the_millisecond() {
        let exact = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        assert_eq!(index_millis(exact), 1_700_000_000_123);
        let later = exact + chrono::Duration::nanoseconds(1);
        assert_eq!(index_millis(later), 1_700_000_000_124);
        let almost = exact + chrono::Duration::microseconds(999);
        assert_eq!(index_millis(almost), 1_700_000_000_124);
        let before_epoch =
            DateTime::from_timestamp_millis(-5).unwrap() + chrono::Duration::microseconds(1);
        assert_eq!(index_millis(before_epoch), -4);
    }

    #[test]
    fn column_seconds_round_trip_and_keep_their_order() {
        let stamps = [0, 1, 1_700_000_000, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX];
        for secs in stamps {
            assert_eq!(seconds_from_column(seconds_to_column(secs)), secs);
        }
        for pair in stamps.windows(2) {
            assert!(seconds_to_column(pair[0]) < seconds_to_column(pair[1]), "{pair:?}");
        }
        assert_eq!(seconds_to_column(0), i64::MIN);
        assert_eq!(seconds_to_column(u64::MAX), i64::MAX);
    }

    #[test]
    fn aging_overtakes_priority_and_bias_sinks() {
        let now = 10_000.0;
        let aging = aging_seconds(chrono::Duration::seconds(60));
        let old_low = RankKey::new("a", &ready(5, 10_000 - 600, None), "w", now, aging);
        let fresh_high = RankKey::new("b", &ready(1, 10_000, None), "w", now, aging);
        let biased = RankKey::new("c", &ready(1, 0, Some("w")), "w", now, aging);
        assert!(old_low < fresh_high);
        assert!(fresh_high < biased);
        let no_aging = aging_seconds(chrono::Duration::MAX);
        assert!(
            RankKey::new("b", &ready(1, 10_000, None), "w", now, no_aging)
                < RankKey::new("a", &ready(5, 0, None), "w", now, no_aging)
        );
        assert_eq!(aging_seconds(chrono::Duration::zero()), 1.0);
        assert_eq!(aging_seconds(chrono::Duration::seconds(-5)), 1.0);
    }

    #[test]
    fn ties_break_by_age_then_id() {
        let k = |id, u| RankKey::new(id, &ready(3, u, None), "w", 0.0, 1e18);
        assert!(k("z", 1) < k("a", 2));
        assert!(k("a", 1) < k("b", 1));
    }

    #[test]
    fn tag_rules() {
        let s = |v: &[&str]| v.iter().map(|t| (*t).to_string()).collect::<Vec<_>>();
        assert!(tags_accepted(&s(&["gpu"]), &[]));
        assert!(tags_accepted(&[], &s(&["gpu"])));
        assert!(tags_accepted(&s(&["gpu", "eu"]), &s(&["eu", "gpu", "x"])));
        assert!(!tags_accepted(&s(&["gpu", "us"]), &s(&["gpu"])));
        assert!(!tags_accepted(&s(&["GPU"]), &s(&["gpu"])));
    }
}
