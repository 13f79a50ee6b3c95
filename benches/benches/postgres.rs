//! Benchmarks of the PostgreSQL backend: `cargo bench -p sayiir-persistence-benches --bench
//! postgres`. The server is found as the tests find it (`SAYIIR_POSTGRES_URL`, then
//! localhost:5432).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sayiir_persistence_benches::{RawLimit, Target, run};
use sayiir_persistence_conformance::fixtures::unique_id;
use sayiir_persistence_conformance::servers::postgres_url;
use sayiir_persistence_postgres::{PostgresBackend, PostgresOptions};
use sqlx::{Connection, PgConnection};
use tokio::sync::Mutex;

struct Postgres(PostgresBackend);

/// One held sqlx connection; a one-row upsert and a select by primary key.
struct Raw(Mutex<PgConnection>, String);

impl RawLimit for Raw {
    async fn write(&self, key: &str, value: &[u8]) {
        let sql = format!(
            "INSERT INTO \"{}\".raw_kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
            self.1
        );
        let mut conn = self.0.lock().await;
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .bind(value)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    async fn read(&self, key: &str) -> usize {
        let sql = format!("SELECT v FROM \"{}\".raw_kv WHERE k = $1", self.1);
        let mut conn = self.0.lock().await;
        let (v,): (Vec<u8>,) =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(key).fetch_one(&mut *conn).await.unwrap();
        v.len()
    }
}

impl Target for Postgres {
    type Backend = PostgresBackend;
    type Raw = Raw;
    const NAME: &'static str = "postgres";

    async fn open() -> Self {
        let schema = unique_id("bench").replace('-', "_");
        let options = PostgresOptions::default().schema(&schema).max_connections(16);
        Postgres(PostgresBackend::connect_with(&postgres_url(), options).await.unwrap())
    }
    fn backend(&self) -> &PostgresBackend {
        &self.0
    }
    async fn raw(&self) -> Option<Raw> {
        let mut conn = PgConnection::connect(&postgres_url()).await.unwrap();
        let schema = self.0.schema().to_string();
        // Same storage settings as the backend's large values, for a like-for-like write.
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS \"{schema}\".raw_kv (k TEXT PRIMARY KEY, v BYTEA NOT NULL)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
        Some(Raw(Mutex::new(conn), schema))
    }
    async fn storage_bytes(&self, _: &[String]) -> Option<u64> {
        // Tables, TOAST and indexes of the backend's schema (the raw table is not there yet).
        let (bytes,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind = 'r'",
        )
        .bind(self.0.schema())
        .fetch_one(self.0.pool())
        .await
        .unwrap();
        u64::try_from(bytes).ok()
    }
    async fn describe(&self) -> String {
        let (version,): (String,) =
            sqlx::query_as("SHOW server_version").fetch_one(self.0.pool()).await.unwrap();
        format!("PostgreSQL {version} on localhost (TCP loopback), sqlx 0.9, pool of 16.")
    }
    async fn cleanup(&self) {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.0.schema());
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(self.0.pool()).await.unwrap();
        self.0.close().await;
    }
}

fn main() {
    run::<Postgres>(Some(0.8));
}
