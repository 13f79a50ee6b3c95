//! What the integration tests share: a backend in a fresh schema of the test server.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};

use sayiir_persistence_conformance::servers::postgres_url;
use sayiir_persistence_postgres::{PostgresBackend, PostgresOptions};

/// A schema name no other test, run or process uses.
pub fn unique_schema(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// A backend on the test server, in a fresh schema named after `prefix`.
pub async fn backend(prefix: &str) -> PostgresBackend {
    connect(&unique_schema(prefix)).await
}

/// A backend (a pool of its own) on `schema` of the test server.
pub async fn connect(schema: &str) -> PostgresBackend {
    PostgresBackend::connect_with(
        &postgres_url(),
        PostgresOptions::default().schema(schema).max_connections(8),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", postgres_url()))
}

/// Drops the backend's schema and closes its pool.
pub async fn drop_backend(backend: &PostgresBackend) {
    let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", backend.schema());
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(backend.pool())
        .await
        .expect("cannot drop the test schema");
    backend.close().await;
}

/// Runs `test` on a fresh backend and drops its schema afterwards, also when `test` panics
/// (the panic is then resumed).
pub async fn with_backend<F, Fut>(prefix: &str, test: F)
where
    F: FnOnce(PostgresBackend) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use futures::FutureExt;
    let backend = backend(prefix).await;
    let outcome = std::panic::AssertUnwindSafe(test(backend.clone())).catch_unwind().await;
    drop_backend(&backend).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
