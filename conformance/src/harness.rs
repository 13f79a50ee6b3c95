//! How the suite gets a fresh backend for each case, and runs the case.

use std::future::Future;
use std::panic::{AssertUnwindSafe, resume_unwind};
use std::sync::Arc;

use futures::FutureExt;
use sayiir_persistence::{SignalStore, SnapshotStore, TaskClaimStore, TaskResultStore};

/// Everything a backend must implement to run the whole suite.
pub trait FullBackend:
    SnapshotStore + SignalStore + TaskClaimStore + TaskResultStore + Send + Sync + 'static
{
}

impl<T> FullBackend for T where
    T: SnapshotStore + SignalStore + TaskClaimStore + TaskResultStore + Send + Sync + 'static
{
}

/// A backend under test, isolated from every other case.
///
/// `setup` makes a fresh backend (a fresh schema, key prefix or file); `teardown` removes what
/// it made. Cases run on a multi-threaded runtime and share the harness through an `Arc`.
pub trait Harness: Send + Sync + Sized + 'static {
    /// The backend type.
    type Backend: FullBackend;

    /// A fresh, isolated backend. Panics with a message that says how to start the database
    /// when none is reachable: a missing server is a failure, never a skip.
    fn setup() -> impl Future<Output = Self> + Send;

    /// The backend the cases call.
    fn backend(&self) -> &Self::Backend;

    /// Overwrites the stored snapshot blob of an existing instance with `blob`, bypassing the
    /// codec, so the suite can check how corrupted data is handled.
    fn write_raw_snapshot(&self, instance_id: &str, blob: &[u8])
    -> impl Future<Output = ()> + Send;

    /// Removes everything `setup` created. Runs even when the case panicked.
    fn teardown(&self) -> impl Future<Output = ()> + Send;
}

/// Runs one case on a fresh harness, on its own multi-threaded runtime, and tears the harness
/// down afterwards whatever happened. The macro calls this; it can also be called by hand.
///
/// # Panics
/// When the case fails (the case's own panic is resumed after teardown).
#[allow(clippy::expect_used)]
pub fn run_case<H, F, Fut>(case: F)
where
    H: Harness,
    F: FnOnce(Arc<H>) -> Fut,
    Fut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("cannot build the tokio runtime for a conformance case");
    runtime.block_on(async {
        let harness = Arc::new(H::setup().await);
        let outcome = AssertUnwindSafe(case(Arc::clone(&harness))).catch_unwind().await;
        harness.teardown().await;
        if let Err(panic) = outcome {
            resume_unwind(panic);
        }
    });
}
