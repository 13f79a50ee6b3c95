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
    scan(&mut raw().await, &backend.key_pattern()).await
}

/// Every key matching `pattern` on the server `conn` leads to (`SCAN`, never `KEYS`: servers
/// are shared).
pub async fn scan(conn: &mut MultiplexedConnection, pattern: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor = 0_u64;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .expect("SCAN");
        keys.extend(page);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// Deletes every key of the backend's prefix (never the whole database: it is shared).
pub async fn cleanup(backend: &RedisBackend) {
    let keys = keys_of(backend).await;
    let mut conn = raw().await;
    for chunk in keys.chunks(500) {
        let _: () = conn.unlink(chunk).await.expect("UNLINK");
    }
}

/// URLs of the test cluster's nodes, as the conformance suite finds them.
pub fn cluster_nodes() -> Vec<String> {
    sayiir_persistence_conformance::servers::redis_cluster()
}

/// A backend on the test cluster, on `prefix`, with `options`.
pub async fn connect_cluster(prefix: &str, options: RedisOptions) -> RedisBackend {
    let nodes = cluster_nodes();
    RedisBackend::connect_cluster(&nodes, options.key_prefix(prefix)).await.unwrap_or_else(|e| {
        panic!("cannot connect to the Redis Cluster {nodes:?}: {e}; start it with scripts/redis-topologies.sh start cluster")
    })
}

/// A cluster connection for raw commands.
pub async fn raw_cluster() -> redis::cluster_async::ClusterConnection {
    let client = redis::cluster::ClusterClient::new(cluster_nodes()).expect("cluster URLs");
    client.get_async_connection().await.expect("cluster connection")
}

/// Deletes every key of the backend's prefix on every master of the test cluster.
pub async fn cleanup_cluster(backend: &RedisBackend) {
    for url in cluster_nodes() {
        let client = redis::Client::open(url.as_str()).expect("node URL");
        let mut conn = client.get_multiplexed_async_connection().await.expect("node connection");
        let role: Vec<redis::Value> =
            redis::cmd("ROLE").query_async(&mut conn).await.expect("ROLE");
        if !matches!(role.first(), Some(redis::Value::BulkString(role)) if role == b"master") {
            continue;
        }
        // One key per UNLINK: the keys of one node are in several slots.
        let keys = scan(&mut conn, &backend.key_pattern()).await;
        let mut unlink = redis::pipe();
        for key in &keys {
            unlink.cmd("UNLINK").arg(key).ignore();
        }
        if !keys.is_empty() {
            let () = unlink.query_async(&mut conn).await.expect("UNLINK");
        }
    }
}
