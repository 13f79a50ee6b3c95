//! The whole conformance suite, each case on its own key prefix.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use sayiir_persistence_conformance::{Harness, RuntimeHarness};
use sayiir_persistence_redis::RedisBackend;
use sayiir_persistence_redis::redis::AsyncCommands;

/// A backend on a fresh key prefix; teardown deletes the prefix's keys.
struct RedisHarness {
    backend: RedisBackend,
    prefix: String,
}

impl Harness for RedisHarness {
    type Backend = RedisBackend;

    async fn setup() -> Self {
        let prefix = common::fresh_prefix("conformance");
        Self { backend: common::connect(&prefix).await, prefix }
    }

    fn backend(&self) -> &RedisBackend {
        &self.backend
    }

    async fn write_raw_snapshot(&self, instance_id: &str, blob: &[u8]) {
        let mut conn = common::raw().await;
        let _: () = conn
            .set(self.backend.snapshot_blob_key(instance_id), blob)
            .await
            .expect("SET of the raw blob");
    }

    async fn teardown(&self) {
        common::cleanup(&self.backend).await;
    }
}

impl RuntimeHarness for RedisHarness {
    /// A second client with its own connections, on the same key prefix.
    async fn open_handle(&self) -> RedisBackend {
        common::connect(&self.prefix).await
    }
}

sayiir_persistence_conformance::conformance_suite!(RedisHarness);
sayiir_persistence_conformance::conformance_suite!(RedisHarness; retention, transfer, statistics);

/// Every call shows up in a metrics recorder, labelled with this backend (feature `metrics`).
#[test]
fn calls_are_measured() {
    sayiir_persistence_conformance::metrics::calls_are_measured::<RedisHarness>("redis");
}

/// `store_counts` sets the store gauges, labelled with this backend (feature `metrics`).
#[test]
fn counts_are_gauged() {
    sayiir_persistence_conformance::metrics::counts_are_gauged::<RedisHarness>("redis");
}
