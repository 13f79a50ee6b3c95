#![deny(missing_docs)]
#![doc = include_str!("../README.md")]

/// Runs `$body`, one statement, on the executor `$conn`: the held connection when it is free
/// (`held`), otherwise the pool. Evaluates to the statement's result.
macro_rules! on_held {
    ($backend:expr, |$conn:ident| $body:expr) => {{
        let backend: &$crate::PostgresBackend = &$backend;
        let options = &backend.inner.options;
        let (idle, timeout) = (options.ping_idle_after, options.acquire_timeout);
        match backend.inner.held.checkout(&backend.pool, idle, timeout).await {
            Some((mut connection, ticket)) => {
                let outcome = {
                    let $conn = &mut connection;
                    $body.await
                };
                ticket.give_back(connection, &outcome);
                outcome
            }
            None => {
                let $conn = &backend.pool;
                $body.await
            }
        }
    }};
}
pub(crate) use on_held;

/// Runs `$body`, an idempotent statement (a read, or a write whose repetition leaves the same
/// state) on the executor `$conn`, as [`on_held`] does; if it fails because its connection
/// was lost (for example an idle connection the server closed while it restarted), runs it
/// once more on a fresh connection. Evaluates to the statement's result.
///
/// One round trip on the happy path: neither the held connection nor the pool pings before a
/// statement.
macro_rules! retry_read {
    ($backend:expr, |$conn:ident| $body:expr) => {{
        let backend: &$crate::PostgresBackend = &$backend;
        let first = $crate::on_held!(backend, |$conn| $body);
        match first {
            // Boxed: the retry (a fresh connection, TLS included) is rare, and kept inline
            // its state would make every call's future several KiB larger, copied at each
            // move.
            Err(error) if $crate::error::is_connection_error(&error) => {
                Box::pin(async {
                    tracing::debug!(%error, "connection lost; retrying on a fresh connection");
                    match backend.fresh_connection().await {
                        Ok(mut fresh) => {
                            let second = {
                                let $conn = &mut fresh;
                                $body.await
                            };
                            backend.discard_connection(fresh).await;
                            second
                        }
                        Err(_) => Err(error),
                    }
                })
                .await
            }
            other => other,
        }
    }};
}
pub(crate) use retry_read;

mod advance;
mod catalog;
mod claim;
mod counts;
mod error;
mod explain;
mod find;
mod held;
mod migrate;
mod options;
mod records;
mod result;
mod row;
mod signal;
mod snapshot;
mod statements;

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use sayiir_persistence::operation::{Call, Instrumentation};

pub use options::PostgresOptions;

use crate::migrate::SchemaState;
use crate::statements::Statements;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

pub use sayiir_persistence::*;
/// The sqlx version this crate uses, to build a pool for [`PostgresBackend::from_pool`].
pub use sqlx;

/// The oldest PostgreSQL server this backend runs on (`server_version_num`): 14, for per-column
/// lz4 compression and the exact `extract(epoch ...)` of claim times.
pub const MIN_SERVER_VERSION_NUM: i32 = 140_000;

/// A Sayiir storage backend on PostgreSQL. Cheap to clone: clones share one pool.
#[derive(Debug, Clone)]
pub struct PostgresBackend {
    pool: PgPool,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The schema name, quoted as an identifier, ready to splice into SQL.
    quoted_schema: String,
    options: PostgresOptions,
    /// `host:port` of the server, for error messages.
    server: String,
    /// The core's call shell, with `db.namespace` = `database|schema`.
    calls: Instrumentation,
    /// Every statement, with the schema in place.
    statements: Statements,
    /// The connection calls made one at a time use (`held`).
    held: Arc<held::Held>,
}

impl PostgresBackend {
    /// Connects with default options (schema `sayiir`, migrations run).
    ///
    /// The URL is a libpq-style URL; `sslmode=require` works out of the box (rustls).
    ///
    /// # Errors
    /// `Backend` if the URL is invalid, the server is unreachable or too old, or a migration
    /// fails.
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects with the given options.
    ///
    /// # Errors
    /// As [`PostgresBackend::connect`], and `Backend` for an invalid schema name.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, BackendError> {
        let mut connect = PgConnectOptions::from_str(url)
            .map_err(|e| BackendError::Backend(format!("invalid PostgreSQL URL: {e}")))?;
        if let Some(name) = &options.application_name {
            connect = connect.application_name(name);
        }
        if let Some(timeout) = options.statement_timeout {
            connect = connect.options([("statement_timeout", timeout.as_millis().to_string())]);
        }
        // Every statement of this backend is prepared once per connection and reached through
        // indexes whatever its parameters, so one generic plan serves every execution. Left to
        // choose, PostgreSQL keeps planning `find_available_tasks`' pick for each call (about
        // 1.4 ms of planning against 0.15 ms of execution, measured with EXPLAIN ANALYZE).
        connect = connect.options([("plan_cache_mode", "force_generic_plan")]);
        // No ping before each checkout: every hot path is one round trip. A connection idle for
        // `ping_idle_after` is pinged first (the server may have closed it meanwhile); one
        // closed in between fails its statement once and is replaced by the pool, and reads,
        // `find_available_tasks` and the idempotent writes retry such a failure on a fresh
        // connection.
        let ping_idle_after = options.ping_idle_after;
        let quoted_schema = migrate::check_schema_name(&options.schema)?;
        let statements = Statements::render(&quoted_schema);
        let (due, pick) = (statements.due.clone(), statements.pick.clone());
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .min_connections(options.min_connections)
            .acquire_timeout(options.acquire_timeout)
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= ping_idle_after {
                        // A failed ping makes the pool close this one and use another.
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(move |conn, _| {
                let (due, pick) = (due.clone(), pick.clone());
                Box::pin(async move {
                    find::warm(conn, due, pick).await;
                    Ok(())
                })
            })
            .connect_lazy_with(connect);
        let warm = options.min_connections.clamp(1, options.max_connections.max(1));
        let (state, held) = warm_up(&pool, warm, options.hold_connection, &options.schema).await?;
        let backend = Self::start(pool, options, state, quoted_schema, statements).await?;
        if let Some(connection) = held {
            backend.inner.held.fill(connection);
        }
        Ok(backend)
    }

    /// Uses a pool the caller built. The pool settings of `options` are ignored; schema,
    /// `auto_migrate` and `hold_connection` apply (the held connection is taken from this
    /// pool when first needed and detached from it, so the pool may open one more).
    ///
    /// # Errors
    /// `Backend` for an invalid schema name, a server that is too old, or a failed migration.
    pub async fn from_pool(pool: PgPool, options: PostgresOptions) -> Result<Self, BackendError> {
        let quoted_schema = migrate::check_schema_name(&options.schema)?;
        let idle = pool.num_idle();
        let mut conn = pool.acquire().await.map_err(|e| cannot_connect(&pool, &e))?;
        let state = SchemaState::read(&mut conn, &options.schema).await;
        drop(conn);
        settle(&pool, idle.max(1)).await;
        let statements = Statements::render(&quoted_schema);
        Self::start(pool, options, state?, quoted_schema, statements).await
    }

    /// The backend on `pool`, once the schema's state is known: checks the server version
    /// and migrates if needed. `quoted_schema` and `statements` are those of
    /// `options.schema`.
    async fn start(
        pool: PgPool,
        options: PostgresOptions,
        state: SchemaState,
        quoted_schema: String,
        statements: Statements,
    ) -> Result<Self, BackendError> {
        state.check_server_version()?;
        let connect = pool.connect_options();
        let server = format!("{}:{}", connect.get_host(), connect.get_port());
        let database = connect.get_database().unwrap_or(connect.get_username());
        let calls = Instrumentation::new("postgresql")
            .with_namespace(format!("{database}|{}", options.schema));
        let held = held::Held::new(options.hold_connection);
        let inner = Inner { quoted_schema, options, server, calls, statements, held };
        let backend = Self { pool, inner: Arc::new(inner) };
        // Up to date, the usual case: no lock, no extra connection, no statement beyond the
        // two reads of `SchemaState::read`.
        if backend.inner.options.auto_migrate && !state.up_to_date {
            backend.migrate().await?;
        }
        Ok(backend)
    }

    /// Creates the schema if missing and applies pending migrations. Safe to call from many
    /// processes at once; a no-op when up to date.
    ///
    /// The applied migrations are recorded in `_sayiir_migrations` inside the backend's own
    /// schema, never in the application's `_sqlx_migrations`.
    ///
    /// # Errors
    /// `Backend` naming the schema if a migration fails.
    pub async fn migrate(&self) -> Result<(), BackendError> {
        let migrate =
            migrate::run(&self.pool, &self.inner.options.schema, &self.inner.quoted_schema);
        self.calls().run(Call::Maintenance { operation: "migrate", instance_id: "" }, migrate).await
    }

    /// The connection pool, for callers that want to share it.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema that holds the backend's tables.
    #[must_use]
    pub fn schema(&self) -> &str {
        &self.inner.options.schema
    }

    /// Closes every connection: the pooled ones and the held one
    /// ([`PostgresOptions::hold_connection`]).
    pub async fn close(&self) {
        self.inner.held.close().await;
        self.pool.close().await;
    }

    /// A new connection with the pool's settings, outside the pool: for the one retry of a
    /// statement whose pooled connection was lost (the pool's other idle connections may be
    /// dead too).
    async fn fresh_connection(&self) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect_with(&self.pool.connect_options()).await
    }

    /// Closes a connection of [`Self::fresh_connection`]; a failure to say goodbye is moot.
    async fn discard_connection(&self, connection: PgConnection) {
        if let Err(error) = connection.close().await {
            tracing::debug!(%error, "closing a retry connection failed");
        }
    }

    /// The statement `pick` chooses from the ones rendered at connect.
    fn statement(&self, pick: impl FnOnce(&Statements) -> &sqlx::SqlStr) -> sqlx::SqlStr {
        pick(&self.inner.statements).clone()
    }
}

impl PostgresBackend {
    /// The shell every call runs in: the core's (argument checks, span, error recording),
    /// with this backend's `call_timeout` and the server's address in driver errors.
    fn calls(&self) -> Bounded<'_> {
        Bounded(self)
    }
}

/// See [`PostgresBackend::calls`].
struct Bounded<'a>(&'a PostgresBackend);

impl<'a> Bounded<'a> {
    /// [`Instrumentation::run`] of `body` cut off after `call_timeout`. Built from
    /// combinators, so the returned future holds `body` once.
    fn run<'c, T, F>(
        &self,
        call: Call<'c>,
        body: F,
    ) -> impl Future<Output = Result<T, BackendError>> + use<'a, 'c, T, F>
    where
        F: Future<Output = Result<T, BackendError>>,
    {
        let inner: &'a Inner = &self.0.inner;
        let limit = inner.options.call_timeout;
        let bounded = tokio::time::timeout(limit, body).map(move |outcome| match outcome {
            Ok(outcome) => outcome.map_err(|error| with_server(error, &inner.server)),
            Err(_) => Err(timed_out(&call, limit, &inner.server)),
        });
        inner.calls.run(call, bounded)
    }
}

/// Opens `count` connections at once, and one more to hold if `hold` (`held`), reads the
/// schema's state on one of them, and leaves `count` idle in `pool`, so that the first calls
/// find a connection ready instead of each opening one. Returns the state and the connection
/// to hold, detached from the pool.
///
/// Opening a connection costs the server a process and, with TLS, a handshake: on a local
/// server about 5 ms without TLS and 90 ms with it under sqlx 0.9.0, which leaves Nagle's
/// algorithm on (sqlx issue 4335). Opened one after another, as the pool's own
/// `min_connections` does, the costs add up; opened together they cost about one.
async fn warm_up(
    pool: &PgPool,
    count: u32,
    hold: bool,
    schema: &str,
) -> Result<(SchemaState, Option<PgConnection>), BackendError> {
    // The held connection is one beyond the pool's size, unless the pool has no room for it
    // while connecting: then one of the `count` is held and the pool reopens it later.
    let extra = u32::from(hold && count < pool.options().get_max_connections());
    let mut connections = futures::future::try_join_all((0..count + extra).map(|_| pool.acquire()))
        .await
        .map_err(|e| cannot_connect(pool, &e))?;
    let state = match connections.first_mut() {
        Some(conn) => SchemaState::read(conn, schema).await,
        None => Err(BackendError::Backend("connecting opened no connection".into())),
    };
    let held = if hold { connections.pop().map(|conn| conn.detach()) } else { None };
    drop(connections);
    settle(pool, (count + extra - u32::from(held.is_some())) as usize).await;
    Ok((state?, held))
}

/// Waits until `pool` holds `idle` idle connections again, for at most 1 s.
///
/// A dropped connection goes back to the idle queue from a task the pool spawns (after a
/// ping); a call made before that task ran finds the queue empty and opens another
/// connection. Bounded: if a connection was closed instead, the pool reopens it by itself.
async fn settle(pool: &PgPool, idle: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while pool.num_idle() < idle && std::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
}

/// The error of a connection that could not be opened.
fn cannot_connect(pool: &PgPool, error: &sqlx::Error) -> BackendError {
    let connect = pool.connect_options();
    BackendError::Backend(format!(
        "cannot connect to PostgreSQL at {}:{}: {error}; check that the server is running and \
         the URL's host, port, user, password and database",
        connect.get_host(),
        connect.get_port()
    ))
}

/// The error of a call that outlived `call_timeout`.
fn timed_out(call: &Call<'_>, limit: Duration, server: &str) -> BackendError {
    error::context(call.name()).instance(call.instance_id()).backend(format_args!(
        "timed out after {limit:?} (call_timeout) waiting for the server at {server}: the \
         server or the network did not answer. The call may or may not have been applied: \
         check the state before repeating it"
    ))
}

/// A driver error (`error::db`: "PostgreSQL <operation> ...") with the server's address, so
/// a user running several databases can tell which one failed; other errors as they are.
fn with_server(error: BackendError, server: &str) -> BackendError {
    match error {
        BackendError::Backend(message) if message.starts_with("PostgreSQL ") => {
            BackendError::Backend(message.replacen(
                "PostgreSQL ",
                &format!("PostgreSQL at {server}: "),
                1,
            ))
        }
        other => other,
    }
}
