#![deny(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks: a failed call aborts the run
//! The workloads every backend is benchmarked with, so each backend runs identical work.
//!
//! Each bench target (`benches/<backend>.rs`) implements [`Target`] for its backend and calls
//! [`run`]. Every operation is measured with criterion, and its per-call latencies are kept to
//! report p50/p99, throughput, and the ratio to the database's raw limit measured in the same
//! run (see [`RawLimit`]). The report is printed and written to
//! `target/sayiir-bench/<backend>.md`.

pub mod profile;
mod record;
pub mod runtime;
mod suite;
mod workload;

use std::future::Future;

use sayiir_persistence::sayiir_core::snapshot::WorkflowSnapshot;
use sayiir_persistence_conformance::FullBackend;

pub use suite::run;

/// A backend under benchmark, on a fresh, isolated store.
pub trait Target: Sized + Send + Sync + 'static {
    /// The backend type.
    type Backend: FullBackend + Clone;
    /// The raw-limit client of the same database.
    type Raw: RawLimit;

    /// Short name, used in benchmark ids and the report file name.
    const NAME: &'static str;

    /// A fresh, isolated store (schema, key prefix, file).
    fn open() -> impl Future<Output = Self> + Send;

    /// The backend.
    fn backend(&self) -> &Self::Backend;

    /// Stores many snapshots fast (used to fill the store for `find_available_tasks`).
    fn seed(&self, snapshots: Vec<WorkflowSnapshot>) -> impl Future<Output = ()> + Send {
        workload::seed_through(self.backend().clone(), snapshots)
    }

    /// The raw-limit client on one held connection, if the backend has a database.
    fn raw(&self) -> impl Future<Output = Option<Self::Raw>> + Send;

    /// Bytes the store uses for the given workflows (tables and indexes, key memory, file
    /// growth), if measurable.
    fn storage_bytes(&self, instance_ids: &[String]) -> impl Future<Output = Option<u64>> + Send;

    /// What the report should say about the database (versions, settings).
    fn describe(&self) -> impl Future<Output = String> + Send;

    /// Removes everything `open` created.
    fn cleanup(&self) -> impl Future<Output = ()> + Send;
}

/// The minimal equivalent statements sent with the backend's own client library on one held
/// connection: the fastest any backend on this database could be.
pub trait RawLimit: Send + Sync + 'static {
    /// Writes `value` under `key` (a one-row upsert, a SET).
    fn write(&self, key: &str, value: &[u8]) -> impl Future<Output = ()> + Send;
    /// Reads the value under `key` (a select by primary key, a GET); returns its length.
    fn read(&self, key: &str) -> impl Future<Output = usize> + Send;
}

/// The raw limit of a backend that has no database (in-memory).
#[derive(Debug)]
pub enum NoRaw {}

impl RawLimit for NoRaw {
    async fn write(&self, _: &str, _: &[u8]) {
        match *self {}
    }
    async fn read(&self, _: &str) -> usize {
        match *self {}
    }
}
