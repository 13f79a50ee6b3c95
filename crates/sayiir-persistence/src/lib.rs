#![deny(missing_docs)]
#![doc = include_str!("../README.md")]

mod error;
mod traits;

/// The behaviour every backend gives each trait method (`docs/behaviour.md` in the
/// repository). Comments across the workspace cite its sections as `§ Section name`.
pub mod behaviour {
    #![doc = include_str!("../behaviour.md")]
}

pub mod claims;
pub mod codec;
pub mod context;
pub mod export_file;
pub mod listing;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod operation;
pub mod requests;
pub mod results;
pub mod retention;
pub mod schedule;
pub mod statistics;
pub mod status;
pub mod transfer;
pub mod validation;

#[cfg(feature = "in-memory")]
pub mod memory;
#[cfg(test)]
mod testing;

pub use error::BackendError;
pub use listing::{ListCursor, ListRequest, WorkflowListing, WorkflowPage, WorkflowSummary};
#[cfg(feature = "in-memory")]
pub use memory::InMemoryBackend;
pub use retention::{PruneRequest, RetentionStore};
pub use statistics::{StoreCounts, StoreStatistics};
pub use traits::{PersistentBackend, SignalStore, SnapshotStore, TaskClaimStore, TaskResultStore};
pub use transfer::{ImportOutcome, QueuePage, WorkflowRecord, WorkflowTransfer};

/// The Sayiir core types the traits speak in, re-exported so one dependency is enough.
pub use sayiir_core;
