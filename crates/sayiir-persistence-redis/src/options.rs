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
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            key_prefix: "sayiir".to_string(),
            pool_size: 2,
            connection_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(10),
            wait_for_replicas: None,
        }
    }
}

impl RedisOptions {
    /// Namespace of every key this backend writes (default `sayiir`). Backends with
    /// different prefixes on one server never see each other's data.
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Number of multiplexed connections (default 2, at least 1). Each carries any number
    /// of concurrent requests; more than one helps when large payloads would otherwise
    /// queue small requests behind them.
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
    /// at most `timeout` (Redis `WAIT replicas timeout`, on the same connection: one more
    /// round trip per write). Redis replicates asynchronously, so without it a write the
    /// master acknowledged just before it failed can be lost in a failover; with it, a call
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

    /// Checks the settings together, when a backend connects.
    pub(crate) fn check(&self) -> Result<(), String> {
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
