#![deny(missing_docs)]
//! In-process backend for [`sayiir_persistence`]: every trait, atomic, indexed.
//!
//! [`InMemoryBackend`] keeps everything in one map behind one mutex, so every operation,
//! composites included, is atomic. Nothing survives the process: use it for tests and for
//! single-process runs that need no durability. `find_available_tasks` reads an index of
//! runnable tasks ordered by `(priority, updated_at, instance_id)` and a timer index of parked
//! workflows, so its cost follows `limit` and the number of due parks, not the number of
//! stored workflows.
//!
//! The backend's code lives in the core crate (sayiir-persistence 0.4.0 exports
//! `InMemoryBackend` from there, and the Sayiir runtime relies on it); this crate re-exports the
//! core, so it is the one dependency a user of the in-memory backend needs, like every other
//! backend crate.
//!
//! ```
//! use sayiir_persistence_memory::{InMemoryBackend, SnapshotStore};
//! use sayiir_persistence_memory::sayiir_core::snapshot::WorkflowSnapshot;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let backend = InMemoryBackend::new();
//! let snapshot = WorkflowSnapshot::new("order-42".into(), "definition-hash".into());
//! backend.save_snapshot(&snapshot).await?;
//! assert_eq!(backend.list_snapshots().await?, vec!["order-42".to_string()]);
//! # Ok::<(), sayiir_persistence_memory::BackendError>(())
//! # }).unwrap();
//! ```

pub use sayiir_persistence::*;
