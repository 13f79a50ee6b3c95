//! The runtime baseline: Sayiir 0.4.0's own backends (`sayiir-postgres` and the in-memory
//! backend of `sayiir-persistence`) through the real `sayiir-runtime` 0.4.0, with the same
//! workloads as `benches/benches/runtime.rs`:
//! `cargo bench --manifest-path benches/upstream/Cargo.toml --bench upstream_runtime`.
//!
//! `sayiir-postgres` 0.4.0 is built without a TLS feature, so it always talks to the server in
//! plain text; compare it with our `postgres (sslmode=disable)` row.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sayiir_persistence_benches::runtime::{
    Drain, Results, RuntimeTarget, bench_runtime, measure_round, publish, rounds,
};
use sayiir_persistence_conformance::fixtures::unique_id;
use sayiir_persistence_conformance::servers::postgres_url;
use sayiir_runtime::serialization::JsonCodec;
use sqlx::Connection;

struct Memory(upstream::InMemoryBackend);

impl RuntimeTarget for Memory {
    type Backend = upstream::InMemoryBackend;
    const NAME: &'static str = "memory";
    async fn open() -> Self {
        Memory(upstream::InMemoryBackend::new())
    }
    async fn connect(&self) -> upstream::InMemoryBackend {
        self.0.clone()
    }
    async fn cleanup(self) {}
}

/// `sayiir-postgres` in a schema of its own: the URL's `search_path` puts its tables (and
/// its `_sqlx_migrations`) there.
struct Postgres {
    schema: String,
}

impl Postgres {
    fn url(&self) -> String {
        let url = postgres_url();
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}options=-c%20search_path%3D{}", self.schema)
    }
}

impl RuntimeTarget for Postgres {
    type Backend = sayiir_postgres::PostgresBackend<JsonCodec>;
    const NAME: &'static str = "sayiir-postgres 0.4.0";
    // It ran a task twice in this drain during our runs (2026-12-01): the report notes it
    // instead of stopping.
    const EXACTLY_ONCE: bool = false;
    async fn open() -> Self {
        let schema = unique_id("bench_upstream").replace('-', "_");
        let mut conn = sqlx::PgConnection::connect(&postgres_url()).await.unwrap();
        let create = format!("CREATE SCHEMA \"{schema}\"");
        sqlx::query(&create).execute(&mut conn).await.unwrap();
        let store = Postgres { schema };
        // Migrated before the measured time, as in a running deployment.
        sayiir_postgres::PostgresBackend::<JsonCodec>::connect(&store.url()).await.unwrap();
        store
    }
    async fn connect(&self) -> Self::Backend {
        sayiir_postgres::PostgresBackend::<JsonCodec>::connect(&self.url()).await.unwrap()
    }
    async fn cleanup(self) {
        let mut conn = sqlx::PgConnection::connect(&postgres_url()).await.unwrap();
        let drop = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        sqlx::query(&drop).execute(&mut conn).await.unwrap();
    }
}

fn main() {
    let shape = Drain::default();
    let Some(runtime) = bench_runtime(&shape) else { return };
    let mut results = Results::default();
    runtime.block_on(async {
        for round in 0..rounds() {
            measure_round::<Memory>(&shape, round, &mut results).await;
            measure_round::<Postgres>(&shape, round, &mut results).await;
        }
    });
    publish("upstream_runtime", &results.report("memory", &[]));
}
