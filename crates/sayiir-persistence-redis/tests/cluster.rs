//! The whole conformance suite on a Redis Cluster (3 masters with a replica each), in the
//! sharded key layout, each case on a key prefix of its own. The nodes are found by
//! `servers::redis_cluster` (`scripts/redis-topologies.sh start cluster` starts them; with
//! `SAYIIR_REDIS_CLUSTER` URLs ending in `?protocol=resp3` it runs over RESP3).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use sayiir_persistence_conformance::{Harness, RuntimeHarness};
use sayiir_persistence_redis::redis::AsyncCommands;
use sayiir_persistence_redis::{RedisBackend, RedisOptions};

/// Fewer shards than the default, so that several shards share a master and a poll reads
/// shards of every master.
const SHARDS: u16 = 5;

struct ClusterHarness {
    backend: RedisBackend,
    prefix: String,
}

impl Harness for ClusterHarness {
    type Backend = RedisBackend;

    async fn setup() -> Self {
        let prefix = common::fresh_prefix("cluster");
        let options = RedisOptions::default().index_shards(SHARDS);
        Self { backend: common::connect_cluster(&prefix, options).await, prefix }
    }

    fn backend(&self) -> &RedisBackend {
        &self.backend
    }

    async fn write_raw_snapshot(&self, instance_id: &str, blob: &[u8]) {
        let _: () = common::raw_cluster()
            .await
            .set(self.backend.snapshot_blob_key(instance_id), blob)
            .await
            .expect("SET of the raw blob");
    }

    async fn teardown(&self) {
        common::cleanup_cluster(&self.backend).await;
    }
}

impl RuntimeHarness for ClusterHarness {
    /// A second client with its own cluster connections, on the same key prefix.
    async fn open_handle(&self) -> RedisBackend {
        common::connect_cluster(&self.prefix, RedisOptions::default().index_shards(SHARDS)).await
    }
}

sayiir_persistence_conformance::conformance_suite!(ClusterHarness);
sayiir_persistence_conformance::conformance_suite!(ClusterHarness; retention, transfer, statistics);

/// `wait_for_replicas` on a cluster: `WAIT` reaches the master that ran the write, which has
/// one replica, so asking for one is met and asking for two fails with an error that says the
/// write is on the master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_replicas_asks_the_master_that_wrote() {
    use sayiir_persistence_conformance::fixtures::{at_task, unique_id};
    use sayiir_persistence_redis::{BackendError, SnapshotStore};
    use std::time::Duration;
    let prefix = common::fresh_prefix("cluster-wait");
    let one = RedisOptions::default().wait_for_replicas(1, Duration::from_secs(2));
    let two = RedisOptions::default().wait_for_replicas(2, Duration::from_millis(200));
    let met = common::connect_cluster(&prefix, one).await;
    let unmet = common::connect_cluster(&prefix, two).await;
    for n in 0..20 {
        let id = unique_id(&format!("waited-{n}"));
        met.save_snapshot(&at_task(&id, "t")).await.unwrap();
        match unmet.save_snapshot(&at_task(&id, "t")).await {
            Err(BackendError::Backend(message)) => assert!(
                message.contains("1 of the 2 replicas") && message.contains("save_snapshot"),
                "{message}"
            ),
            other => panic!("two replicas cannot acknowledge: {other:?}"),
        }
    }
    common::cleanup_cluster(&met).await;
}
