//! Shared by the integration tests: a backend on a fresh key prefix, raw access to the
//! server, and cleanup of the prefix's keys.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};

use sayiir_persistence_redis::redis::AsyncCommands;
use sayiir_persistence_redis::redis::aio::MultiplexedConnection;
use sayiir_persistence_redis::{RedisBackend, RedisOptions, redis};

/// A key prefix no other test, run or process uses.
pub fn fresh_prefix(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = chrono_nanos();
    format!("test-{label}-{}-{n}-{nanos}", std::process::id())
}

fn chrono_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// The server URL, as the conformance suite finds it.
pub fn url() -> String {
    sayiir_persistence_conformance::servers::redis_url()
}

/// A backend on a fresh prefix.
pub async fn backend(label: &str) -> RedisBackend {
    connect(&fresh_prefix(label)).await
}

/// A backend (a client of its own) on `prefix`.
pub async fn connect(prefix: &str) -> RedisBackend {
    let options = RedisOptions::default().key_prefix(prefix);
    RedisBackend::connect_with(&url(), options).await.unwrap_or_else(|e| {
        panic!("cannot connect to Redis at {}: {e}; start it with scripts/services.sh (repository root)", url())
    })
}

/// A plain connection for raw commands.
pub async fn raw() -> MultiplexedConnection {
    let client = redis::Client::open(url()).expect("Redis URL");
    client.get_multiplexed_async_connection().await.expect("Redis connection")
}

/// Every key of the backend's prefix.
pub async fn keys_of(backend: &RedisBackend) -> Vec<String> {
    let mut conn = raw().await;
    let mut keys = Vec::new();
    let mut cursor = 0_u64;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(backend.key_pattern())
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("SCAN");
        keys.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys
}

/// Deletes every key of the backend's prefix (never the whole database: it is shared).
pub async fn cleanup(backend: &RedisBackend) {
    let keys = keys_of(backend).await;
    let mut conn = raw().await;
    for chunk in keys.chunks(500) {
        let _: () = conn.unlink(chunk).await.expect("UNLINK");
    }
}
