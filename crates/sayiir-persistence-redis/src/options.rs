//! [`RedisOptions`]: the settings of a backend.

use std::time::Duration;

/// Settings of a [`RedisBackend`](crate::RedisBackend).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Namespace of every key this backend writes (default `sayiir`).
    pub key_prefix: String,
    /// Number of multiplexed connections kept (default 2, at least 1).
    pub pool_size: usize,
    /// How long opening a connection may take (default 5 s).
    pub connection_timeout: Duration,
    /// How long one request may wait for its reply (default 10 s).
    pub response_timeout: Duration,
    /// After each write, wait until this many replicas acknowledged it, at most this long
    /// (`WAIT`); `None` (the default) does not wait. See [`RedisOptions::wait_for_replicas`].
    pub wait_for_replicas: Option<(u32, Duration)>,
    /// The number of index shards of the sharded key layout; `None` (the default) keeps the
    /// single-node layout, except on a cluster, where it means
    /// [`RedisOptions::DEFAULT_CLUSTER_SHARDS`]. See [`RedisOptions::index_shards`].
    pub index_shards: Option<u16>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            key_prefix: "sayiir".to_string(),
            pool_size: 2,
            connection_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(10),
            wait_for_replicas: None,
            index_shards: None,
        }
    }
}

impl RedisOptions {
    /// The index shards a cluster store gets when [`RedisOptions::index_shards`] is not set.
    pub const DEFAULT_CLUSTER_SHARDS: u16 = 16;

    /// Namespace of every key this backend writes (default `sayiir`). Backends with
    /// different prefixes on one server never see each other's data.
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Number of multiplexed connections (default 2, at least 1). Each carries any number
    /// of concurrent requests; more than one helps when large payloads would otherwise
    /// queue small requests behind them. On a cluster each is a cluster connection, which
    /// holds a socket to every node it sends to.
    #[must_use]
    pub fn pool_size(mut self, connections: usize) -> Self {
        self.pool_size = connections.max(1);
        self
    }

    /// How long opening a connection may take (default 5 s).
    #[must_use]
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How long one request may wait for its reply (default 10 s).
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// After each call that writes, wait until `replicas` replicas have acknowledged the write,
    /// at most `timeout` (Redis `WAIT replicas timeout`, pipelined with the write's script on
    /// the same connection, so on a cluster it reaches the master that ran it; after a save with
    /// results, a transaction, in a round trip of its own). Redis replicates asynchronously, so
    /// without it a write the master acknowledged just before it failed can be lost in a
    /// failover; with it, a call
    /// returns `Ok` only once the write is on `replicas` replicas as well. When fewer
    /// acknowledge in time, the call fails with `Backend` saying the write was applied on the
    /// master but may be lost in a failover (sending it again is safe for saves). Off by
    /// default. `timeout` is rounded to whole milliseconds, at least 1 ms (`WAIT` reads 0 as
    /// "forever"), and must be shorter than [`RedisOptions::response_timeout`] (connecting
    /// fails otherwise). While a `WAIT` blocks, the server answers nothing else on that
    /// connection, so with slow replicas the calls sharing it (reads included) wait too: keep
    /// `timeout` short.
    #[must_use]
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait_for_replicas = Some((replicas, timeout.max(Duration::from_millis(1))));
        self
    }

    /// Splits the store's indexes into `shards` index shards (1 to 1024), each under a hash tag
    /// of its own, and keeps every key of a workflow in the hash slot of its shard (shard =
    /// the Redis Cluster hash slot of its percent-encoded instance id, CRC16 modulo 16384,
    /// modulo `shards`): the sharded key layout, which a Redis Cluster needs, since a script
    /// may only touch keys of one slot.
    ///
    /// The trade-off: on a cluster, each shard lives on one master, so more shards spread the
    /// indexes (and the scripts that update them) over more masters, while
    /// `find_available_tasks`, `list_workflows`, `prune_finished` and `store_counts` read every
    /// shard (one script or pipeline per shard, sent concurrently: their cost grows as
    /// `limit × shards`). Pick at least the number of masters, a few times it to spread the
    /// load evenly; the default on a cluster is [`RedisOptions::DEFAULT_CLUSTER_SHARDS`]. The
    /// count is recorded in the store (key `{<prefix>}:layout`) when it is created: connecting
    /// with another count, or with the single-node layout, fails with an error that names
    /// both; moving a store to another layout is an export and an import (`sayiir-admin`).
    /// On a single server the sharded layout works too, but gains nothing.
    #[must_use]
    pub fn index_shards(mut self, shards: u16) -> Self {
        self.index_shards = Some(shards);
        self
    }

    /// Checks the settings together, when a backend connects.
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some(shards) = self.index_shards
            && !(1..=crate::keys::MAX_SHARDS).contains(&shards)
        {
            return Err(format!(
                "index_shards is {shards}; it must be between 1 and {}",
                crate::keys::MAX_SHARDS
            ));
        }
        match self.wait_for_replicas {
            Some((_, wait)) if wait >= self.response_timeout => Err(format!(
                "wait_for_replicas waits up to {wait:?}, not shorter than response_timeout \
                 ({:?}): every write would time out first; wait less or raise response_timeout",
                self.response_timeout
            )),
            _ => Ok(()),
        }
    }
}
