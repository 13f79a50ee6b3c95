//! The search of `find_available_tasks` for the in-memory backend.

use std::collections::BTreeSet;
use std::ops::Bound::{Excluded, Included, Unbounded};

use crate::BackendError;
use crate::operation::FindRequest;
use crate::schedule::{
    Advance, RankKey, Schedule, advance_parked, aging_seconds, backoff_elapsed, best_by_rank,
    schedule_of, tags_accepted, task_input, unix_seconds,
};
use chrono::{DateTime, Utc};
use sayiir_core::task_claim::AvailableTask;

use super::InMemoryBackend;
use super::state::{State, Stored};

impl InMemoryBackend {
    /// The search of `find_available_tasks`: purge expired claims, wake what is due, then
    /// the best `limit` ready tasks for this worker.
    pub(super) fn find(
        &self,
        request: FindRequest<'_>,
    ) -> Result<Vec<AvailableTask>, BackendError> {
        let FindRequest { worker_id, limit, aging_interval, worker_tags } = request;
        let now = Utc::now();
        let mut state = self.lock()?;
        state.purge_expired_claims(now.timestamp_millis());
        state.advance_due(now);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let query = Query {
            worker_id,
            worker_tags,
            limit,
            now,
            now_secs: unix_seconds(now),
            aging_secs: aging_seconds(aging_interval),
        };
        Ok(state.best_ready(&query))
    }
}

struct Query<'a> {
    worker_id: &'a str,
    worker_tags: &'a [String],
    limit: usize,
    now: DateTime<Utc>,
    now_secs: f64,
    aging_secs: f64,
}

impl State {
    /// Advances every parked workflow that is due: timers that have passed and signal waits
    /// whose event has arrived (§ Advancing parked workflows). Workflows with a pending signal stay
    /// parked.
    fn advance_due(&mut self, now: DateTime<Utc>) {
        let now_ms = now.timestamp_millis();
        let due: BTreeSet<String> = self
            .timers
            .range(..(now_ms.saturating_add(1), String::new()))
            .map(|(_, id)| id.clone())
            .chain(self.woken.iter().cloned())
            .collect();
        for instance_id in due {
            if self.has_signal(&instance_id) {
                continue;
            }
            let event = match self.workflows.get(&instance_id).map(|w| &w.stored) {
                Some(Stored::Snapshot(snapshot)) => match schedule_of(snapshot) {
                    Schedule::Signal { signal_name, .. } => self
                        .events
                        .get(&instance_id)
                        .and_then(|q| q.get(&signal_name))
                        .and_then(|q| q.front().cloned())
                        .map(|event| (signal_name, event)),
                    _ => None,
                },
                _ => continue,
            };
            let (signal_name, payload) = event.unzip();
            let Some(advance) =
                self.modify(&instance_id, |snapshot| advance_parked(snapshot, now, payload))
            else {
                continue;
            };
            let consumed = match advance {
                Advance::NotDue => false,
                Advance::ToTask { consumed_event } => consumed_event,
                Advance::Completed { consumed_event, archive } => {
                    if let Some(workflow) = self.workflows.get_mut(&instance_id) {
                        workflow.archive = archive;
                    }
                    consumed_event
                }
            };
            if consumed && let Some(name) = signal_name {
                self.pop_event(&instance_id, &name);
            }
        }
    }

    /// The best `limit` eligible tasks. For each priority level it reads ready entries
    /// oldest first and stops once it holds `limit` eligible tasks that did not fail on this
    /// worker: for a fixed aging interval no later entry of the level can rank better, and
    /// tasks that failed here only count when fewer than `limit` others exist.
    fn best_ready(&self, query: &Query<'_>) -> Vec<AvailableTask> {
        let mut candidates = Vec::new();
        let mut level = self.ready.first().map(|(p, _, _)| *p);
        while let Some(priority) = level {
            let upper = match priority.checked_add(1) {
                Some(next) => Excluded((next, 0, String::new())),
                None => Unbounded,
            };
            let (mut fair, mut biased) = (0, 0);
            for (_, _, instance_id) in
                self.ready.range((Included((priority, 0, String::new())), upper.clone()))
            {
                if fair >= query.limit {
                    break;
                }
                let Some(candidate) = self.candidate(instance_id, query) else {
                    continue;
                };
                let count = if candidate.0.biased { &mut biased } else { &mut fair };
                if *count < query.limit {
                    *count += 1;
                    candidates.push(candidate);
                }
            }
            level = match upper {
                Excluded(bound) => self.ready.range(bound..).next().map(|(p, _, _)| *p),
                _ => None,
            };
        }
        best_by_rank(candidates, query.limit)
    }

    /// The rank and task of a ready workflow, if every one of § Eligibility rules lets `query` have
    /// it.
    fn candidate<'s>(
        &'s self,
        instance_id: &'s str,
        query: &Query<'_>,
    ) -> Option<(RankKey<'s>, AvailableTask)> {
        let Stored::Snapshot(snapshot) = &self.workflows.get(instance_id)?.stored else {
            return None;
        };
        let Schedule::Ready(task) = schedule_of(snapshot) else {
            return None;
        };
        if self.has_signal(instance_id)
            || self.live_claim(instance_id, &task.task_id, query.now.timestamp_millis()).is_some()
            || !backoff_elapsed(task.not_before, query.now)
            || !tags_accepted(&task.tags, query.worker_tags)
        {
            return None;
        }
        let rank =
            RankKey::new(instance_id, &task, query.worker_id, query.now_secs, query.aging_secs);
        let available = AvailableTask {
            instance_id: instance_id.to_string(),
            input: task_input(snapshot)?,
            task_id: task.task_id,
            workflow_definition_hash: snapshot.definition_hash.clone(),
            trace_parent: snapshot.trace_parent.clone(),
        };
        Some((rank, available))
    }
}
