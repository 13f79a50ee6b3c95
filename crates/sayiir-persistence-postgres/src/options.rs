//! [`PostgresOptions`]: the settings of a backend.

use std::time::Duration;

/// Settings of a [`PostgresBackend`](crate::PostgresBackend).
///
/// Every field has a default; setters chain:
/// `PostgresOptions::default().schema("jobs").max_connections(32)`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// Schema holding every table of the backend (default `sayiir`), created if missing.
    pub schema: String,
    /// Whether connecting runs the pending migrations (default `true`).
    pub auto_migrate: bool,
    /// Largest number of pooled connections (default 10).
    pub max_connections: u32,
    /// Number of connections kept open when idle (default 2). `connect_with` opens this
    /// many (at least one) together before it returns, so the first calls find them ready;
    /// see the README's "Connections" for why that matters.
    pub min_connections: u32,
    /// How long an operation waits for a free pooled connection (default 30 s). Opening a
    /// new connection happens within this wait, so it is also the connect timeout, for
    /// `connect_with` too.
    pub acquire_timeout: Duration,
    /// Server-side limit on one statement's duration (default: the server's setting).
    pub statement_timeout: Option<Duration>,
    /// `application_name` reported to the server (default `sayiir`).
    pub application_name: Option<String>,
    /// The longest one backend call may take on the client side, waiting for a connection
    /// included (default 60 s). It bounds a call whatever the network does: behind a black
    /// hole (packets dropped, sockets open) a call fails after this long with an error that
    /// says it may or may not have been applied, instead of hanging as long as the outage.
    pub call_timeout: Duration,
    /// A pooled connection idle for at least this long is pinged before it is used (default
    /// 1 s): the server or a middlebox may have closed it meanwhile (`idle_session_timeout`,
    /// a restart, a NAT timeout), and a statement sent on it would fail. Connections in use
    /// more often than that cost no extra round trip.
    pub ping_idle_after: Duration,
    /// Whether the backend holds one connection beside the pool for calls made one at a
    /// time (default `true`): such a call costs one round trip, where a call through sqlx's
    /// pool costs the server a second one (the pool pings each connection it takes back)
    /// and may wait for a new connection to open. Calls made at once on one backend use the
    /// pool. The held connection is one beyond `max_connections`. See the README's
    /// "Connections".
    pub hold_connection: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: "sayiir".to_string(),
            auto_migrate: true,
            max_connections: 10,
            min_connections: 2,
            acquire_timeout: Duration::from_secs(30),
            statement_timeout: None,
            application_name: Some("sayiir".to_string()),
            call_timeout: Duration::from_secs(60),
            ping_idle_after: Duration::from_secs(1),
            hold_connection: true,
        }
    }
}

impl PostgresOptions {
    /// Sets the schema that holds the backend's tables.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Sets whether connecting runs the pending migrations.
    #[must_use]
    pub fn auto_migrate(mut self, auto_migrate: bool) -> Self {
        self.auto_migrate = auto_migrate;
        self
    }

    /// Sets the largest number of pooled connections.
    #[must_use]
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// Sets the number of connections kept open when idle.
    #[must_use]
    pub fn min_connections(mut self, min: u32) -> Self {
        self.min_connections = min;
        self
    }

    /// Sets how long an operation waits for a free pooled connection.
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Sets the server-side limit on one statement's duration.
    #[must_use]
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = Some(timeout);
        self
    }

    /// Sets the `application_name` reported to the server.
    #[must_use]
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// Sets the longest one backend call may take on the client side.
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Sets how long a pooled connection may stay idle before it is pinged on its next use.
    #[must_use]
    pub fn ping_idle_after(mut self, idle: Duration) -> Self {
        self.ping_idle_after = idle;
        self
    }

    /// Sets whether the backend holds one connection beside the pool.
    #[must_use]
    pub fn hold_connection(mut self, hold: bool) -> Self {
        self.hold_connection = hold;
        self
    }
}
