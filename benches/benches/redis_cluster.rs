//! Benchmarks of the Redis backend on a Redis Cluster (3 masters with a replica each, the
//! sharded key layout with the default 16 index shards):
//! `cargo bench -p sayiir-persistence-benches --bench redis_cluster`. The cluster is found as
//! the tests find it (`SAYIIR_REDIS_CLUSTER`, then 127.0.0.1:7000-7005, which
//! `scripts/redis-topologies.sh start cluster` starts). The raw limit is SET / GET through
//! redis-rs's cluster connection on the same cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    Raw, cluster_connection, cluster_keys, cluster_masters, cluster_nodes, cluster_unlink_all,
    memory_usage,
};
use sayiir_persistence_benches::{Target, run};
use sayiir_persistence_conformance::fixtures::unique_id;
use sayiir_persistence_redis::redis;
use sayiir_persistence_redis::redis::cluster_async::ClusterConnection;
use sayiir_persistence_redis::{RedisBackend, RedisOptions};

struct RedisCluster {
    backend: RedisBackend,
    /// Prefix of the raw-limit keys, removed with the backend's own keys.
    raw_prefix: String,
}

impl Target for RedisCluster {
    type Backend = RedisBackend;
    type Raw = Raw<ClusterConnection>;
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
    async fn raw(&self) -> Option<Self::Raw> {
        Some(Raw(cluster_connection().await, self.raw_prefix.clone()))
    }
    async fn storage_bytes(&self, _: &[String]) -> Option<u64> {
        let keys = cluster_keys(&self.backend.key_pattern()).await;
        Some(memory_usage(&mut cluster_connection().await, &keys).await)
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
