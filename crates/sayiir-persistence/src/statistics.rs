//! Store statistics: how many workflows each status holds, how many tasks wait for a worker,
//! how many claims are live — what a dashboard shows.
//!
//! [`StoreStatistics`] is an extension beside the 0.4.0 traits (which stay as they were).
//! With the cargo feature `metrics`, every [`StoreStatistics::store_counts`] call also sets
//! the gauges of the `metrics` module: call it on a timer (every 15 to 60 s, say) to
//! feed a dashboard. Its behaviour is written down in [`behaviour`](crate::behaviour),
//! § Statistics.

use std::collections::BTreeMap;
use std::future::Future;

use crate::BackendError;

/// The counts of one store at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct StoreCounts {
    /// Stored workflows per status (`status::ALL` texts, each present, 0 when none).
    pub workflows: BTreeMap<String, u64>,
    /// Workflows whose current task a worker could take now: in progress at a runnable task
    /// (its input stored, its result not), no pending cancel or pause, no retry backoff
    /// running, no live claim on it. Parked workflows (delays, signal waits) are not counted.
    pub ready_tasks: u64,
    /// Claims that have not expired.
    pub live_claims: u64,
}

impl StoreCounts {
    /// Counts with every status at 0.
    #[must_use]
    pub fn empty() -> Self {
        Self {
            workflows: crate::status::ALL.iter().map(|s| ((*s).to_string(), 0)).collect(),
            ready_tasks: 0,
            live_claims: 0,
        }
    }

    /// Stored workflows of every status.
    #[must_use]
    pub fn total_workflows(&self) -> u64 {
        self.workflows.values().sum()
    }
}

/// Counts what a store holds. Implemented by every backend of this project.
pub trait StoreStatistics: Send + Sync {
    /// The counts now. Each backend reads indexes it keeps anyway; the cost of one call is
    /// given per backend in its README (PostgreSQL and SQLite count index entries, O(rows);
    /// Redis reads set sizes, O(statuses); memory walks its ready index and claims,
    /// O(ready + claims)). With the `metrics` feature, the counts are also set as gauges.
    ///
    /// # Errors
    /// `Backend` on a storage failure.
    fn store_counts(&self) -> impl Future<Output = Result<StoreCounts, BackendError>> + Send;
}
