//! `StoreStatistics` for the in-memory backend: set sizes, and a walk of the ready index.

use chrono::Utc;

use crate::BackendError;
use crate::claims::is_live;
use crate::operation::Call;
use crate::schedule::{Schedule, schedule_of};
use crate::statistics::{StoreCounts, StoreStatistics};

use super::InMemoryBackend;
use super::state::Stored;

impl StoreStatistics for InMemoryBackend {
    async fn store_counts(&self) -> Result<StoreCounts, BackendError> {
        self.calls()
            .run(Call::StoreCounts, async {
                let state = self.lock()?;
                let now = Utc::now();
                let now_ms = now.timestamp_millis();
                let mut counts = StoreCounts::empty();
                for (status, set) in &state.by_status {
                    counts.workflows.insert((*status).to_string(), set.len() as u64);
                }
                for (_, _, id) in &state.ready {
                    let Some(Stored::Snapshot(snapshot)) =
                        state.workflows.get(id).map(|w| &w.stored)
                    else {
                        continue;
                    };
                    let Schedule::Ready(task) = schedule_of(snapshot) else { continue };
                    let backing_off = task.not_before.is_some_and(|at| at > now);
                    if !backing_off && state.live_claim(id, &task.task_id, now_ms).is_none() {
                        counts.ready_tasks += 1;
                    }
                }
                counts.live_claims = state
                    .claims
                    .values()
                    .flat_map(|tasks| tasks.values())
                    .filter(|claim| is_live(claim.expires_ms, now_ms))
                    .count() as u64;
                self.calls().record_store_counts(&counts);
                Ok(counts)
            })
            .await
    }
}
