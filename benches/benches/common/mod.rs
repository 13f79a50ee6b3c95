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
    let mut conn = connection().await;
    let (mut cursor, mut keys) = (0u64, Vec::new());
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
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
