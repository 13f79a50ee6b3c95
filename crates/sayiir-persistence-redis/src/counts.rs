//! `StoreStatistics` for Redis: set sizes read by one script (`lua/counts.lua`) per index
//! shard, O(statuses × shards).
//!
//! The ready index and the claim-expiry index are brought up to date by the scripts that
//! write a workflow and by each poll of `find_available_tasks`; between two polls, a task
//! whose backoff ended or whose claim expired is counted once a poll has seen it.

use futures::future::join_all;
use sayiir_persistence::operation::Call;
use sayiir_persistence::statistics::{StoreCounts, StoreStatistics};
use sayiir_persistence::status::ALL as ALL_STATUSES;

use crate::error::{self, at};
use crate::reply::Items;
use crate::{BackendError, RedisBackend, Retry, scripts};

impl StoreStatistics for RedisBackend {
    async fn store_counts(&self) -> Result<StoreCounts, BackendError> {
        self.calls()
            .run(Call::StoreCounts, async {
                let at = at("store_counts");
                let statuses: Vec<&[u8]> = ALL_STATUSES.iter().map(|s| s.as_bytes()).collect();
                let keys = self.keys();
                // One script per index shard, sent concurrently; the counts add up.
                let replies = join_all(keys.shard_numbers().map(|shard| {
                    let keys = [keys.listed(shard), keys.ready(shard), keys.claim_expiry(shard)];
                    let statuses = &statuses;
                    async move {
                        self.eval(&at, &scripts().counts, &keys, statuses, Retry::OnReconnect).await
                    }
                }))
                .await;
                let mut counts = StoreCounts::empty();
                for reply in replies {
                    let mut items = Items::new(reply?, at)?;
                    let mut count = || -> Result<u64, BackendError> {
                        let n = items.int()?.ok_or_else(|| error::reply(&at, "a count is nil"))?;
                        Ok(u64::try_from(n).unwrap_or(0))
                    };
                    for status in ALL_STATUSES {
                        *counts.workflows.entry(status.to_string()).or_default() += count()?;
                    }
                    counts.ready_tasks += count()?;
                    counts.live_claims += count()?;
                }
                self.calls().record_store_counts(&counts);
                Ok(counts)
            })
            .await
    }
}
