//! The whole conformance suite against `SqliteBackend`, one fresh database file per case.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use sayiir_persistence_conformance::{Harness, RuntimeHarness};
use sayiir_persistence_sqlite::SqliteBackend;

struct SqliteHarness {
    backend: SqliteBackend,
    path: std::path::PathBuf,
    // Removed (with the database file) when the harness is dropped.
    _dir: tempfile::TempDir,
}

impl Harness for SqliteHarness {
    type Backend = SqliteBackend;

    async fn setup() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory for the database file");
        let path = dir.path().join("conformance.db");
        let backend = SqliteBackend::open(&path).await.expect("open a fresh SQLite database");
        Self { backend, path, _dir: dir }
    }

    fn backend(&self) -> &SqliteBackend {
        &self.backend
    }

    async fn write_raw_snapshot(&self, instance_id: &str, blob: &[u8]) {
        self.backend
            .write_raw_snapshot(instance_id, blob)
            .await
            .expect("the instance to corrupt must exist");
    }

    async fn teardown(&self) {}
}

impl RuntimeHarness for SqliteHarness {
    /// The same file opened again, with its own writer and reader threads, as a second
    /// process would.
    async fn open_handle(&self) -> SqliteBackend {
        SqliteBackend::open(&self.path).await.expect("open the database file a second time")
    }
}

sayiir_persistence_conformance::conformance_suite!(SqliteHarness);
sayiir_persistence_conformance::conformance_suite!(SqliteHarness; retention, transfer, statistics);

/// Every call shows up in a metrics recorder, labelled with this backend (feature `metrics`).
#[test]
fn calls_are_measured() {
    sayiir_persistence_conformance::metrics::calls_are_measured::<SqliteHarness>("sqlite");
}

/// `store_counts` sets the store gauges, labelled with this backend (feature `metrics`).
#[test]
fn counts_are_gauged() {
    sayiir_persistence_conformance::metrics::counts_are_gauged::<SqliteHarness>("sqlite");
}
