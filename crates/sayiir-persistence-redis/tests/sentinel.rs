//! The whole conformance suite through Redis Sentinel: each case asks the sentinels for the
//! master and runs there, on a key prefix of its own. The sentinels are found by
//! `servers::redis_sentinels` (`scripts/redis-topologies.sh start sentinel` starts them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use sayiir_persistence_conformance::servers::redis_sentinels;
use sayiir_persistence_conformance::{Harness, RuntimeHarness};
use sayiir_persistence_redis::redis::aio::MultiplexedConnection;
use sayiir_persistence_redis::redis::sentinel::{SentinelClient, SentinelServerType};
use sayiir_persistence_redis::redis::{self, AsyncCommands};
use sayiir_persistence_redis::{RedisBackend, RedisOptions};

/// A backend through the sentinels, on `prefix`.
async fn connect(prefix: &str) -> RedisBackend {
    let (sentinels, master) = redis_sentinels();
    let client = SentinelClient::build(sentinels.clone(), master, None, SentinelServerType::Master)
        .expect("sentinel URLs");
    let options = RedisOptions::default().key_prefix(prefix);
    RedisBackend::connect_sentinel(client, options).await.unwrap_or_else(|e| {
        panic!("cannot connect through the sentinels {sentinels:?}: {e}; start them with scripts/redis-topologies.sh start sentinel")
    })
}

/// A plain connection to the master the sentinels name now.
async fn master() -> MultiplexedConnection {
    let (sentinels, name) = redis_sentinels();
    let client = redis::Client::open(sentinels[0].as_str()).expect("sentinel URL");
    let mut sentinel = client.get_multiplexed_async_connection().await.expect("a sentinel");
    let (host, port): (String, u16) = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(&name)
        .query_async(&mut sentinel)
        .await
        .expect("the master's address");
    let client = redis::Client::open(format!("redis://{host}:{port}")).expect("master URL");
    client.get_multiplexed_async_connection().await.expect("the master")
}

struct SentinelHarness {
    backend: RedisBackend,
    prefix: String,
}

impl Harness for SentinelHarness {
    type Backend = RedisBackend;

    async fn setup() -> Self {
        let prefix = common::fresh_prefix("sentinel");
        Self { backend: connect(&prefix).await, prefix }
    }

    fn backend(&self) -> &RedisBackend {
        &self.backend
    }

    async fn write_raw_snapshot(&self, instance_id: &str, blob: &[u8]) {
        let _: () = master()
            .await
            .set(self.backend.snapshot_blob_key(instance_id), blob)
            .await
            .expect("SET of the raw blob");
    }

    async fn teardown(&self) {
        let mut conn = master().await;
        let keys = common::scan(&mut conn, &self.backend.key_pattern()).await;
        for chunk in keys.chunks(500) {
            let _: () = conn.unlink(chunk).await.expect("UNLINK");
        }
    }
}

impl RuntimeHarness for SentinelHarness {
    /// A second client through the sentinels, on the same key prefix.
    async fn open_handle(&self) -> RedisBackend {
        connect(&self.prefix).await
    }
}

sayiir_persistence_conformance::conformance_suite!(SentinelHarness);
sayiir_persistence_conformance::conformance_suite!(SentinelHarness; retention, transfer, statistics);
