//! What the Redis bench binaries share (a module, not a bench target: cargo only discovers
//! `benches/*.rs`).
#![allow(dead_code)]

use sayiir_persistence_conformance::servers::redis_url;
use sayiir_persistence_redis::redis::{self, AsyncCommands, aio::MultiplexedConnection};

/// A connection of its own to the test Redis.
pub async fn connection() -> MultiplexedConnection {
    redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap()
}

/// Every key matching `pattern` (SCAN, never KEYS: the server is shared).
pub async fn keys(pattern: &str) -> Vec<String> {
    scan(&mut connection().await, pattern).await
}

/// Every key matching `pattern` on the server `conn` leads to.
async fn scan(conn: &mut MultiplexedConnection, pattern: &str) -> Vec<String> {
    let (mut cursor, mut keys) = (0u64, Vec::new());
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        keys.extend(page);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// Removes every key matching `pattern`.
pub async fn unlink_all(pattern: &str) {
    let mut conn = connection().await;
    for chunk in keys(pattern).await.chunks(500) {
        let _: () = conn.unlink(chunk).await.unwrap();
    }
}

/// The nodes of the test Redis Cluster.
pub fn cluster_nodes() -> Vec<String> {
    sayiir_persistence_conformance::servers::redis_cluster()
}

/// A cluster connection of its own to the test Redis Cluster.
pub async fn cluster_connection() -> redis::cluster_async::ClusterConnection {
    let client = redis::cluster::ClusterClient::new(cluster_nodes()).unwrap();
    client.get_async_connection().await.unwrap()
}

/// A plain connection to each master of the test cluster.
pub async fn cluster_masters() -> Vec<MultiplexedConnection> {
    let mut masters = Vec::new();
    for url in cluster_nodes() {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await.unwrap();
        if matches!(role.first(), Some(redis::Value::BulkString(role)) if role == b"master") {
            masters.push(conn);
        }
    }
    masters
}

/// Every key matching `pattern` on every master of the test cluster.
pub async fn cluster_keys(pattern: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for mut conn in cluster_masters().await {
        keys.extend(scan(&mut conn, pattern).await);
    }
    keys
}

/// The raw limit on a held connection `C` (one server's, or a cluster's): `SET` and `GET` of
/// keys under a prefix of its own.
pub struct Raw<C>(pub C, pub String);

impl<C> sayiir_persistence_benches::RawLimit for Raw<C>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn write(&self, key: &str, value: &[u8]) {
        let mut conn = self.0.clone();
        let _: () = conn.set(format!("{}:{key}", self.1), value).await.unwrap();
    }
    async fn read(&self, key: &str) -> usize {
        let mut conn = self.0.clone();
        let v: Vec<u8> = conn.get(format!("{}:{key}", self.1)).await.unwrap();
        v.len()
    }
}

/// The memory `MEMORY USAGE` reports for `keys`, in bytes, asked on `conn`.
pub async fn memory_usage<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    keys: &[String],
) -> u64 {
    let mut total = 0u64;
    for key in keys {
        let bytes: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .arg("SAMPLES")
            .arg(0)
            .query_async(conn)
            .await
            .unwrap();
        total += bytes.unwrap_or(0);
    }
    total
}

/// Removes every key matching `pattern` from the test cluster, one key per `UNLINK` (the keys
/// of one master are in several slots).
pub async fn cluster_unlink_all(pattern: &str) {
    let mut conn = cluster_connection().await;
    for key in cluster_keys(pattern).await {
        let _: () = conn.unlink(&key).await.unwrap();
    }
}
