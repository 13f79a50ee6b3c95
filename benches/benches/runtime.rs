//! The runtime's own workloads through the real `sayiir-runtime` 0.4.0, on every backend, the
//! in-memory backend as the in-run reference: `cargo bench -p sayiir-persistence-benches
//! --bench runtime`. Backends take turns within each round (`SAYIIR_BENCH_ROUNDS`, default 5),
//! so a noisy moment on the machine hits them alike. See `benches/README.md`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::Instant;

use sayiir_persistence_benches::runtime::{
    DRAIN, Drain, Results, RuntimeTarget, bench_runtime, measure_round, median, publish, rounds,
    selected,
};
use sayiir_persistence_conformance::fixtures::unique_id;
use sayiir_persistence_conformance::servers::{postgres_url, redis_url};
use sayiir_persistence_memory::InMemoryBackend;
use sayiir_persistence_postgres::{PostgresBackend, PostgresOptions};
use sayiir_persistence_redis::{RedisBackend, RedisOptions};
use sayiir_persistence_sqlite::SqliteBackend;

struct Memory(InMemoryBackend);

impl RuntimeTarget for Memory {
    type Backend = InMemoryBackend;
    const NAME: &'static str = "memory";
    async fn open() -> Self {
        Memory(InMemoryBackend::new())
    }
    /// One process's memory: every handle is the same store.
    async fn connect(&self) -> InMemoryBackend {
        self.0.clone()
    }
    async fn cleanup(self) {}
}

struct Sqlite {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl RuntimeTarget for Sqlite {
    type Backend = SqliteBackend;
    const NAME: &'static str = "sqlite";
    async fn open() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime.db");
        SqliteBackend::open(&path).await.unwrap();
        Sqlite { path, _dir: dir }
    }
    async fn connect(&self) -> SqliteBackend {
        SqliteBackend::open(&self.path).await.unwrap()
    }
    async fn cleanup(self) {}
}

/// PostgreSQL at the URL the tests use (`PLAIN`: with `sslmode=disable` added, for the
/// comparison with `sayiir-postgres` 0.4.0, which has no TLS).
struct Postgres<const PLAIN: bool> {
    schema: String,
    admin: PostgresBackend,
}

impl<const PLAIN: bool> Postgres<PLAIN> {
    fn url() -> String {
        let url = postgres_url();
        if !PLAIN {
            return url;
        }
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}sslmode=disable")
    }

    /// The backend's options; `SAYIIR_BENCH_PG_HOLD=0` turns the held connection off, to
    /// measure what it brings.
    fn options(schema: &str) -> PostgresOptions {
        let hold = std::env::var("SAYIIR_BENCH_PG_HOLD").map_or(true, |v| v != "0");
        PostgresOptions::default().schema(schema).hold_connection(hold)
    }
}

impl<const PLAIN: bool> RuntimeTarget for Postgres<PLAIN> {
    type Backend = PostgresBackend;
    const NAME: &'static str = if PLAIN { "postgres (sslmode=disable)" } else { "postgres" };
    async fn open() -> Self {
        let schema = unique_id("bench_runtime").replace('-', "_");
        let admin =
            PostgresBackend::connect_with(&Self::url(), Self::options(&schema)).await.unwrap();
        Postgres { schema, admin }
    }
    async fn connect(&self) -> PostgresBackend {
        PostgresBackend::connect_with(&Self::url(), Self::options(&self.schema)).await.unwrap()
    }
    async fn cleanup(self) {
        let drop = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        sqlx::query(sqlx::AssertSqlSafe(drop)).execute(self.admin.pool()).await.unwrap();
        self.admin.close().await;
    }
}

struct Redis {
    prefix: String,
    admin: RedisBackend,
}

impl RuntimeTarget for Redis {
    type Backend = RedisBackend;
    const NAME: &'static str = "redis";
    async fn open() -> Self {
        let prefix = unique_id("bench-runtime");
        let options = RedisOptions::default().key_prefix(&prefix);
        let admin = RedisBackend::connect_with(&redis_url(), options).await.unwrap();
        Redis { prefix, admin }
    }
    async fn connect(&self) -> RedisBackend {
        let options = RedisOptions::default().key_prefix(&self.prefix);
        RedisBackend::connect_with(&redis_url(), options).await.unwrap()
    }
    async fn cleanup(self) {
        common::unlink_all(&self.admin.key_pattern()).await;
    }
}

/// The Redis backend on the test Redis Cluster, in the sharded key layout.
struct RedisCluster {
    prefix: String,
    admin: RedisBackend,
}

impl RuntimeTarget for RedisCluster {
    type Backend = RedisBackend;
    const NAME: &'static str = "redis-cluster";
    async fn open() -> Self {
        let prefix = unique_id("bench-runtime");
        let options = RedisOptions::default().key_prefix(&prefix);
        let admin = RedisBackend::connect_cluster(common::cluster_nodes(), options).await.unwrap();
        RedisCluster { prefix, admin }
    }
    async fn connect(&self) -> RedisBackend {
        let options = RedisOptions::default().key_prefix(&self.prefix);
        RedisBackend::connect_cluster(common::cluster_nodes(), options).await.unwrap()
    }
    async fn cleanup(self) {
        common::cluster_unlink_all(&self.admin.key_pattern()).await;
    }
}

/// A fresh PostgreSQL backend on an up-to-date schema holding one ready workflow: how long
/// `connect_with` takes, and then its first call (`find_available_tasks`), median of `runs`.
async fn cold_start<const PLAIN: bool>(runs: usize) -> String {
    use sayiir_persistence::{SnapshotStore, TaskClaimStore};
    if !selected(Postgres::<PLAIN>::NAME) {
        return String::new();
    }
    let store = Postgres::<PLAIN>::open().await;
    let ready = sayiir_persistence_conformance::fixtures::at_task("cold-1", "t1");
    store.admin.save_snapshot(&ready).await.unwrap();
    let (mut connects, mut firsts, mut seconds) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let began = Instant::now();
        let backend = store.connect().await;
        let connected = Instant::now();
        let found = backend
            .find_available_tasks("cold", 1, chrono::Duration::seconds(60), &[])
            .await
            .unwrap();
        let first = connected.elapsed();
        assert_eq!(found.len(), 1, "the ready workflow is found");
        // The same call again, on connections that have run it once.
        let again = Instant::now();
        backend.find_available_tasks("cold", 1, chrono::Duration::seconds(60), &[]).await.unwrap();
        let second = again.elapsed();
        connects.push((connected - began).as_secs_f64() * 1000.0);
        firsts.push(first.as_secs_f64() * 1000.0);
        seconds.push(second.as_secs_f64() * 1000.0);
        backend.close().await;
    }
    let name = Postgres::<PLAIN>::NAME;
    store.cleanup().await;
    let (connect, first, second) =
        (median(&mut connects), median(&mut firsts), median(&mut seconds));
    let verdict = if first <= 3.0 { "≤ 3 ms: met" } else { "≤ 3 ms: **missed**" };
    format!("| {name} | {connect:.1} | {first:.2} | {second:.2} | {verdict} |\n")
}

fn main() {
    let shape = Drain::default();
    let Some(runtime) = bench_runtime(&shape) else { return };
    let mut results = Results::default();
    runtime.block_on(async {
        for round in 0..rounds() {
            measure_round::<Memory>(&shape, round, &mut results).await;
            measure_round::<Sqlite>(&shape, round, &mut results).await;
            measure_round::<Postgres<false>>(&shape, round, &mut results).await;
            measure_round::<Postgres<true>>(&shape, round, &mut results).await;
            measure_round::<Redis>(&shape, round, &mut results).await;
            measure_round::<RedisCluster>(&shape, round, &mut results).await;
        }
    });
    let targets = [
        ("postgres", DRAIN, 0.8),
        ("postgres (sslmode=disable)", DRAIN, 0.8),
        ("redis", DRAIN, 0.9),
        ("redis-cluster", DRAIN, 0.9),
        ("sqlite", DRAIN, 0.8),
    ];
    let mut report = results.report("memory", &targets);
    report.push_str(
        "\nCold start (median of 10): a fresh backend on an up-to-date schema with one ready \
         workflow.\n\n| backend | connect_with (ms) | first find_available_tasks (ms) | second (ms) | \
         target (first) |\n|---|---:|---:|---:|---|\n",
    );
    runtime.block_on(async {
        report.push_str(&cold_start::<false>(10).await);
        report.push_str(&cold_start::<true>(10).await);
    });
    publish("runtime", &report);
}
