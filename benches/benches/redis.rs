//! Benchmarks of the Redis backend: `cargo bench -p sayiir-persistence-benches --bench redis`.
//! The server is found as the tests find it (`SAYIIR_REDIS_URL`, then localhost:6379).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Raw, connection, keys, memory_usage, unlink_all};
use sayiir_persistence_benches::{Target, run};
use sayiir_persistence_conformance::fixtures::unique_id;
use sayiir_persistence_conformance::servers::redis_url;
use sayiir_persistence_redis::redis;
use sayiir_persistence_redis::redis::aio::MultiplexedConnection;
use sayiir_persistence_redis::{RedisBackend, RedisOptions};

struct Redis {
    backend: RedisBackend,
    /// Prefix of the raw-limit keys, removed with the backend's own keys.
    raw_prefix: String,
}

impl Target for Redis {
    type Backend = RedisBackend;
    type Raw = Raw<MultiplexedConnection>;
    const NAME: &'static str = "redis";

    async fn open() -> Self {
        let prefix = unique_id("bench");
        let options = RedisOptions::default().key_prefix(&prefix);
        let backend = RedisBackend::connect_with(&redis_url(), options).await.unwrap();
        Redis { backend, raw_prefix: format!("sayiir-bench-raw:{prefix}") }
    }
    fn backend(&self) -> &RedisBackend {
        &self.backend
    }
    async fn raw(&self) -> Option<Self::Raw> {
        Some(Raw(connection().await, self.raw_prefix.clone()))
    }
    async fn storage_bytes(&self, _: &[String]) -> Option<u64> {
        let keys = keys(&self.backend.key_pattern()).await;
        Some(memory_usage(&mut connection().await, &keys).await)
    }
    async fn describe(&self) -> String {
        let mut conn = connection().await;
        let info: String = redis::cmd("INFO").arg("server").query_async(&mut conn).await.unwrap();
        let version =
            info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").to_string();
        format!(
            "Redis {version} on localhost (TCP loopback), no persistence; redis-rs, backend pool of 2 multiplexed connections."
        )
    }
    async fn cleanup(&self) {
        unlink_all(&self.backend.key_pattern()).await;
        unlink_all(&format!("{}:*", self.raw_prefix)).await;
    }
}

fn main() {
    run::<Redis>(Some(0.7));
}
