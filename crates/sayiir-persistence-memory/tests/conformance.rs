//! The whole conformance suite against `InMemoryBackend`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use sayiir_persistence_conformance::{Harness, RuntimeHarness};
use sayiir_persistence_memory::InMemoryBackend;

/// A fresh backend per case; nothing to clean up beyond dropping it.
struct MemoryHarness(InMemoryBackend);

impl Harness for MemoryHarness {
    type Backend = InMemoryBackend;

    async fn setup() -> Self {
        Self(InMemoryBackend::new())
    }

    fn backend(&self) -> &InMemoryBackend {
        &self.0
    }

    async fn write_raw_snapshot(&self, instance_id: &str, blob: &[u8]) {
        self.0.write_raw_snapshot(instance_id, blob).expect("the instance to corrupt must exist");
    }

    async fn teardown(&self) {}
}

impl RuntimeHarness for MemoryHarness {
    /// Another handle on the same data: a clone (the data lives in this process).
    async fn open_handle(&self) -> InMemoryBackend {
        self.0.clone()
    }
}

sayiir_persistence_conformance::conformance_suite!(MemoryHarness);
sayiir_persistence_conformance::conformance_suite!(MemoryHarness; retention, transfer, statistics);

/// Every call shows up in a metrics recorder, labelled with this backend (feature `metrics`).
#[test]
fn calls_are_measured() {
    sayiir_persistence_conformance::metrics::calls_are_measured::<MemoryHarness>("memory");
}

/// `store_counts` sets the store gauges, labelled with this backend (feature `metrics`).
#[test]
fn counts_are_gauged() {
    sayiir_persistence_conformance::metrics::counts_are_gauged::<MemoryHarness>("memory");
}
