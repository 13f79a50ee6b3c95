//! Benchmarks of the Redis backend on a Redis Cluster (3 masters with a replica each, the
//! sharded key layout with the default 16 index shards):
//! `cargo bench -p sayiir-persistence-benches --bench redis_cluster`. The cluster is found as
//! the tests find it (`SAYIIR_REDIS_CLUSTER`, then 127.0.0.1:7000-7005, which
//! `scripts/redis-topologies.sh start cluster` starts). The raw limit is SET / GET through
//! redis-rs's cluster connection on the same cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    cluster_connection, cluster_keys, cluster_masters, cluster_nodes, cluster_unlink_all,
};
use sayiir_persistence_benches::{RawLimit, Target, run};
use sayiir_persistence_conformance::fixtures::unique_id;
use sayiir_persistence_redis::redis::cluster_async::ClusterConnection;
use sayiir_persistence_redis::redis::{self, AsyncCommands};
use sayiir_persistence_redis::{RedisBackend, RedisOptions};

struct RedisCluster {
    backend: RedisBackend,
    /// Prefix of the raw-limit keys, removed with the backend's own keys.
    raw_prefix: String,
}

/// One cluster connection: SET and GET, each routed to the master of its key.
struct Raw(ClusterConnection, String);

impl RawLimit for Raw {
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

impl Target for RedisCluster {
    type Backend = RedisBackend;
    type Raw = Raw;
    const NAME: &'static str = "redis-cluster";

    async fn open() -> Self {
        let prefix = unique_id("bench");
        let options = RedisOptions::default().key_prefix(&prefix);
        let backend = RedisBackend::connect_cluster(cluster_nodes(), options).await.unwrap();
        RedisCluster { backend, raw_prefix: format!("sayiir-bench-raw:{prefix}") }
    }
    fn backend(&self) -> &RedisBackend {
        &self.backend
    }
    async fn raw(&self) -> Option<Raw> {
        Some(Raw(cluster_connection().await, self.raw_prefix.clone()))
    }
    async fn storage_bytes(&self, _: &[String]) -> Option<u64> {
        let mut conn = cluster_connection().await;
        let mut total = 0u64;
        for key in cluster_keys(&self.backend.key_pattern()).await {
            let bytes: Option<u64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .arg("SAMPLES")
                .arg(0)
                .query_async(&mut conn)
                .await
                .unwrap();
            total += bytes.unwrap_or(0);
        }
        Some(total)
    }
    async fn describe(&self) -> String {
        let masters = cluster_masters().await;
        let Some(mut conn) = masters.first().cloned() else { return "no master".to_string() };
        let info: String = redis::cmd("INFO").arg("server").query_async(&mut conn).await.unwrap();
        let version =
            info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").to_string();
        format!(
            "Redis {version} Cluster on localhost (TCP loopback): {} masters with a replica each, \
             no RDB snapshots, AOF every second; redis-rs cluster connections, backend pool of 2, \
             the sharded key layout with {} index shards.",
            masters.len(),
            RedisOptions::DEFAULT_CLUSTER_SHARDS
        )
    }
    async fn cleanup(&self) {
        cluster_unlink_all(&self.backend.key_pattern()).await;
        cluster_unlink_all(&format!("{}:*", self.raw_prefix)).await;
    }
}

fn main() {
    run::<RedisCluster>(Some(0.7));
}
