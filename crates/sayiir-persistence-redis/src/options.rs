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
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            key_prefix: "sayiir".to_string(),
            pool_size: 2,
            connection_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(10),
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
}
