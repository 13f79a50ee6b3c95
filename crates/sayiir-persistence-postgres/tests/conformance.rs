//! The shared conformance suite, each case in a fresh schema dropped afterwards.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use sayiir_persistence_conformance::{Harness, RuntimeHarness};
use sayiir_persistence_postgres::PostgresBackend;

struct PgHarness {
    backend: PostgresBackend,
}

impl Harness for PgHarness {
    type Backend = PostgresBackend;

    async fn setup() -> Self {
        Self { backend: common::backend("conformance").await }
    }

    fn backend(&self) -> &PostgresBackend {
        &self.backend
    }

    async fn write_raw_snapshot(&self, instance_id: &str, blob: &[u8]) {
        let sql = format!(
            "UPDATE \"{}\".workflows SET blob = $2 WHERE instance_id = $1",
            self.backend.schema()
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(instance_id)
            .bind(blob)
            .execute(self.backend.pool())
            .await
            .expect("cannot overwrite the stored blob");
        assert_eq!(done.rows_affected(), 1, "no stored snapshot {instance_id:?} to overwrite");
    }

    async fn teardown(&self) {
        common::drop_backend(&self.backend).await;
    }
}

impl RuntimeHarness for PgHarness {
    /// A second pool on the same schema.
    async fn open_handle(&self) -> PostgresBackend {
        common::connect(self.backend.schema()).await
    }
}

sayiir_persistence_conformance::conformance_suite!(PgHarness);
sayiir_persistence_conformance::conformance_suite!(PgHarness; retention, transfer, statistics);

/// Every call shows up in a metrics recorder, labelled with this backend (feature `metrics`).
#[test]
fn calls_are_measured() {
    sayiir_persistence_conformance::metrics::calls_are_measured::<PgHarness>("postgresql");
}

/// `store_counts` sets the store gauges, labelled with this backend (feature `metrics`).
#[test]
fn counts_are_gauged() {
    sayiir_persistence_conformance::metrics::counts_are_gauged::<PgHarness>("postgresql");
}
