#![deny(missing_docs)]
//! Redis backend for [sayiir-persistence](sayiir_persistence): durable workflow state of the
//! Sayiir engine in Redis (standalone or Sentinel; not Cluster).
//!
//! ```no_run
//! use sayiir_persistence_redis::{RedisBackend, RedisOptions, SnapshotStore};
//!
//! # async fn run() -> Result<(), sayiir_persistence_redis::BackendError> {
//! let backend = RedisBackend::connect_with(
//!     "redis://127.0.0.1:6379",
//!     RedisOptions::default().key_prefix("billing"),
//! )
//! .await?;
//! let ids = backend.list_snapshots().await?;
//! # let _ = ids;
//! # Ok(())
//! # }
//! ```
//!
//! Every atomic operation is one Lua script (`lua/*.lua`); secondary indexes keep
//! `find_available_tasks` proportional to its `limit`, not to the number of workflows.
//! The crate README describes the key layout, durability and the connection setup.

mod claim;
mod error;
mod find;
mod keys;
mod packed;
mod reply;
mod result;
mod scripts;
mod signal;
mod snapshot;
mod transition;

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisResult, ServerErrorKind, Value};

/// The pool crate, re-exported to build a pool for [`RedisBackend::from_pool`].
pub use deadpool_redis;
/// The Redis client crate, re-exported for connection settings and raw access.
pub use redis;
pub use sayiir_persistence::{
    self, BackendError, PersistentBackend, SignalStore, SnapshotStore, TaskClaimStore,
    TaskResultStore, sayiir_core,
};

use sayiir_persistence::operation::Instrumentation;

use crate::error::{At, at};
use crate::keys::{KeySpace, WorkflowKeys};
use crate::scripts::{Lua, Scripts};

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(Scripts::new);

/// Settings of a [`RedisBackend`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    key_prefix: String,
    pool_size: usize,
    connection_timeout: Duration,
    response_timeout: Duration,
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

    /// The key prefix.
    #[must_use]
    pub fn get_key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The number of connections.
    #[must_use]
    pub fn get_pool_size(&self) -> usize {
        self.pool_size
    }

    /// The connection timeout.
    #[must_use]
    pub fn get_connection_timeout(&self) -> Duration {
        self.connection_timeout
    }

    /// The response timeout.
    #[must_use]
    pub fn get_response_timeout(&self) -> Duration {
        self.response_timeout
    }
}

/// Workflow storage in Redis, implementing the four sayiir-persistence traits.
///
/// Cheap to clone: clones share the connections.
#[derive(Debug, Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    keys: KeySpace,
    lanes: Lanes,
    /// The server's `proto-max-bulk-len`, in bytes: the largest argument it accepts.
    max_bulk_len: AtomicU64,
    /// How long a destructive call keeps asking for its answer ([`Retry::UntilAnswered`]).
    patience: Duration,
    /// `host:port` of the server (or its socket path), for error messages.
    server: String,
    /// The shell every call runs in.
    calls: Instrumentation,
}

/// Redis's default `proto-max-bulk-len` (512 MiB), assumed until the server says otherwise.
const DEFAULT_MAX_BULK_LEN: u64 = 512 * 1024 * 1024;

impl RedisBackend {
    /// Connects to the server at `url` (`redis://` or `rediss://` for TLS) with default
    /// options.
    ///
    /// # Errors
    /// `Backend` if the URL is invalid or the server does not answer.
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects to the server at `url` with `options`.
    ///
    /// # Errors
    /// `Backend` if the URL is invalid or the server does not answer.
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self, BackendError> {
        let at = at("connect");
        let info = redis::IntoConnectionInfo::into_connection_info(url).ok();
        let server = info.as_ref().map_or("the server".to_string(), |i| i.addr().to_string());
        let database = info.map(|i| i.redis_settings().db().to_string());
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connection_timeout))
            .set_response_timeout(Some(options.response_timeout));
        let manager = deadpool_redis::Manager::new_with_config(url, config)
            .map_err(|e| error::redis(&at, &server, &e))?;
        let pool = deadpool_redis::Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(deadpool_redis::Runtime::Tokio1)
            .wait_timeout(Some(options.connection_timeout))
            .create_timeout(Some(options.connection_timeout))
            .build()
            .map_err(|e| at.backend(format_args!("cannot build the pool: {e}")))?;
        let backend = Self::with_pool(pool, options, server, database);
        backend.ping(&at).await?;
        backend.read_max_bulk_len(&at).await;
        Ok(backend)
    }

    /// Uses connections of `pool` (built by the caller, e.g. with TLS or Sentinel
    /// settings). The backend keeps up to `options.pool_size` of them checked out for its
    /// lifetime and multiplexes every request over them; the timeouts of `options` do not
    /// apply (the pool's connections carry their own).
    #[must_use]
    pub fn from_pool(pool: deadpool_redis::Pool, options: RedisOptions) -> Self {
        Self::with_pool(pool, options, "the pool's server".to_string(), None)
    }

    fn with_pool(
        pool: deadpool_redis::Pool,
        options: RedisOptions,
        server: String,
        database: Option<String>,
    ) -> Self {
        let lanes = options.pool_size.min(pool.status().max_size).max(1);
        let calls = Instrumentation::new("redis");
        let calls = match database {
            Some(database) => calls.with_namespace(database),
            None => calls,
        };
        Self {
            inner: Arc::new(Inner {
                keys: KeySpace::new(&options.key_prefix),
                lanes: Lanes::new(pool, lanes),
                max_bulk_len: AtomicU64::new(DEFAULT_MAX_BULK_LEN),
                patience: (options.response_timeout * 10).max(Duration::from_secs(30)),
                server,
                calls,
            }),
        }
    }

    /// The key of the string holding the encoded snapshot of `instance_id` (the codec blob
    /// without task results; the README lists the other keys), for inspection and tooling.
    #[must_use]
    pub fn snapshot_blob_key(&self, instance_id: &str) -> String {
        self.inner.keys.workflow(instance_id).blob()
    }

    /// A `SCAN MATCH` pattern that matches every key of this backend's prefix, and no key
    /// of another prefix.
    #[must_use]
    pub fn key_pattern(&self) -> String {
        self.inner.keys.pattern()
    }

    async fn ping(&self, at: &At<'_>) -> Result<(), BackendError> {
        let cmd = redis::cmd("PING");
        self.query::<String>(at, &cmd, Retry::OnReconnect).await.map(|_| ())
    }

    fn keys(&self) -> &KeySpace {
        &self.inner.keys
    }

    /// The shell every call runs in (argument checks, span, error recording).
    fn calls(&self) -> &Instrumentation {
        &self.inner.calls
    }

    /// Reads the server's `proto-max-bulk-len`, the largest argument it accepts: a larger
    /// one makes the server close the connection, failing every call that shares it. Kept at
    /// Redis's default (512 MiB) where `CONFIG` is not allowed (managed services often rename
    /// it); `connect_with` calls it, a backend made with `from_pool` keeps the default.
    async fn read_max_bulk_len(&self, at: &At<'_>) {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("proto-max-bulk-len");
        let limit = match self.query::<Value>(at, &cmd, Retry::OnReconnect).await {
            Ok(Value::Array(items)) => items.into_iter().nth(1),
            Ok(Value::Map(pairs)) => pairs.into_iter().next().map(|(_, value)| value),
            Ok(_) => None,
            Err(error) => {
                tracing::debug!(%error, "CONFIG GET proto-max-bulk-len refused; assuming 512 MiB");
                None
            }
        };
        let limit = limit.and_then(|value| match value {
            Value::BulkString(raw) => String::from_utf8(raw).ok()?.parse::<u64>().ok(),
            Value::SimpleString(text) => text.parse::<u64>().ok(),
            Value::Int(n) => u64::try_from(n).ok(),
            _ => None,
        });
        if let Some(limit) = limit {
            self.inner.max_bulk_len.store(limit, Ordering::Relaxed);
        }
    }

    /// Refuses, before anything is sent, a command with an argument larger than the server
    /// accepts: sent, it would make the server drop the connection it shares with other calls.
    fn check_sizes<'c>(
        &self,
        at: &At<'_>,
        commands: impl IntoIterator<Item = &'c redis::Cmd>,
    ) -> Result<(), BackendError> {
        let limit = self.inner.max_bulk_len.load(Ordering::Relaxed);
        let largest = commands
            .into_iter()
            .flat_map(redis::Cmd::args_iter)
            .map(|arg| match arg {
                redis::Arg::Simple(bytes) => bytes.len(),
                // A cursor placeholder carries no data of ours.
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        if u64::try_from(largest).unwrap_or(u64::MAX) > limit {
            return Err(at.backend(format_args!(
                "a value of {largest} bytes is larger than the server at {} accepts \
                 (proto-max-bulk-len = {limit} bytes); nothing was sent. Store a smaller \
                 value, or raise proto-max-bulk-len on the server",
                self.inner.server
            )));
        }
        Ok(())
    }

    /// Runs a per-workflow script: KEYS are the workflow's keys, ARGV starts with the
    /// application clock and the instance id, then `args`.
    async fn run_workflow_script(
        &self,
        at: &At<'_>,
        lua: &Lua,
        keys: &WorkflowKeys,
        instance_id: &str,
        args: &[&[u8]],
        retry: Retry,
    ) -> Result<Value, BackendError> {
        let mut cmd = self.workflow_script_command(lua, keys, instance_id);
        cmd.arg(args);
        self.run_script(at, lua, &cmd, retry).await
    }

    /// The `EVALSHA` of a per-workflow script up to its own arguments: the workflow's keys,
    /// then the application clock and the instance id as the first two ARGV.
    fn workflow_script_command(
        &self,
        lua: &Lua,
        keys: &WorkflowKeys,
        instance_id: &str,
    ) -> redis::Cmd {
        // Sized for the keys and a few arguments, so that building it does not reallocate.
        let data = lua.sha.len() + keys.script_keys_len(self.keys()) + instance_id.len() + 128;
        let mut cmd = redis::Cmd::with_capacity(crate::keys::SCRIPT_KEYS + 12, data);
        cmd.arg("EVALSHA").arg(lua.sha.as_str()).arg(crate::keys::SCRIPT_KEYS);
        keys.push_script_keys(&mut cmd, self.keys());
        cmd.arg(now_millis()).arg(instance_id);
        cmd
    }

    /// Runs a script on global keys only.
    async fn eval(
        &self,
        at: &At<'_>,
        lua: &Lua,
        keys: &[&str],
        args: &[&[u8]],
        retry: Retry,
    ) -> Result<Value, BackendError> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(lua.sha.as_str()).arg(keys.len()).arg(keys).arg(args);
        self.run_script(at, lua, &cmd, retry).await
    }

    /// Sends an `EVALSHA` command built by the caller, and once as `EVAL` with the source if
    /// the server does not have the script cached.
    async fn run_script(
        &self,
        at: &At<'_>,
        lua: &Lua,
        evalsha: &redis::Cmd,
        retry: Retry,
    ) -> Result<Value, BackendError> {
        self.check_sizes(at, [evalsha])?;
        self.on_connection(at, retry, |mut conn| async move {
            match evalsha.query_async::<Value>(&mut conn).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    lua.eval_command(evalsha).query_async::<Value>(&mut conn).await
                }
                other => other,
            }
        })
        .await
    }

    /// Sends `commands` in one transaction (`MULTI`/`EXEC`: one round trip, and nothing
    /// runs in between), the one at `script` being the `EVALSHA` of `lua`; sends the whole
    /// transaction again with `EVAL` if the server does not have the script cached. Gives
    /// every reply.
    async fn run_transaction(
        &self,
        at: &At<'_>,
        lua: &Lua,
        commands: Vec<redis::Cmd>,
        script: usize,
        retry: Retry,
    ) -> Result<Vec<Value>, BackendError> {
        self.check_sizes(at, &commands)?;
        let count = commands.len();
        let mut transaction = redis::Pipeline::with_capacity(count);
        transaction.atomic().ignore_errors();
        for cmd in commands {
            transaction.add_command(cmd);
        }
        let replies = self
            .on_connection(at, retry, |mut conn| {
                let transaction = &transaction;
                async move {
                    let replies: Vec<Value> = transaction.query_async(&mut conn).await?;
                    let no_script = matches!(
                        replies.get(script),
                        Some(Value::ServerError(e)) if e.kind() == Some(ServerErrorKind::NoScript)
                    );
                    if !no_script {
                        return Ok(replies);
                    }
                    let mut again = redis::Pipeline::with_capacity(count);
                    again.atomic().ignore_errors();
                    for (index, cmd) in transaction.cmd_iter().enumerate() {
                        again.add_command(if index == script {
                            lua.eval_command(cmd)
                        } else {
                            cmd.clone()
                        });
                    }
                    again.query_async(&mut conn).await
                }
            })
            .await?;
        if replies.len() != count {
            return Err(error::reply(
                at,
                "the transaction returned a reply per command but not all",
            ));
        }
        replies
            .into_iter()
            .map(|reply| {
                reply.extract_error().map_err(|e| error::redis(at, &self.inner.server, &e))
            })
            .collect()
    }

    /// Runs one plain command.
    async fn query<T: redis::FromRedisValue>(
        &self,
        at: &At<'_>,
        cmd: &redis::Cmd,
        retry: Retry,
    ) -> Result<T, BackendError> {
        self.check_sizes(at, [cmd])?;
        self.on_connection(
            at,
            retry,
            |mut conn| async move { cmd.query_async::<T>(&mut conn).await },
        )
        .await
    }

    /// Runs `call` on one of the held connections. A connection that turns out broken is
    /// replaced; with [`Retry::OnReconnect`] a call that failed because of it is sent once
    /// more, on a fresh connection (after a server restart every held connection is stale,
    /// and each would otherwise fail one call). The happy path is one attempt.
    async fn on_connection<T, F, Fut>(
        &self,
        at: &At<'_>,
        retry: Retry,
        call: F,
    ) -> Result<T, BackendError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let lanes = &self.inner.lanes;
        let lane = lanes.get(at).await?;
        let error = match call(lane.conn.clone()).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        lanes.observe(&lane, &error);
        match retry {
            Retry::No => Err(error::redis(at, &self.inner.server, &error)),
            Retry::OnReconnect if !error::worth_reconnecting(&error) => {
                Err(error::redis(at, &self.inner.server, &error))
            }
            Retry::OnReconnect => {
                tracing::debug!(error = %error, "redis connection lost; retrying once on a fresh one");
                let fresh = lanes.get_slot(at, lane.index).await?;
                match call(fresh.conn.clone()).await {
                    Ok(value) => Ok(value),
                    Err(error) => {
                        lanes.observe(&fresh, &error);
                        Err(error::redis(at, &self.inner.server, &error))
                    }
                }
            }
            Retry::UntilAnswered => self.ask_again(at, &call, lane.index, error).await,
        }
    }

    /// Sends `call` again, on a fresh connection when the last one broke, until it gets an
    /// answer or [`Inner::patience`] runs out: for calls that carry their own request id, so
    /// that asking again returns the first answer instead of applying the call twice.
    async fn ask_again<T, F, Fut>(
        &self,
        at: &At<'_>,
        call: &F,
        index: usize,
        mut error: redis::RedisError,
    ) -> Result<T, BackendError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let lanes = &self.inner.lanes;
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(20);
        while (error.is_timeout() || error::worth_reconnecting(&error))
            && started.elapsed() < self.inner.patience
        {
            tracing::debug!(error = %error, "no answer from redis; asking again");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
            let lane = match lanes.get_slot(at, index).await {
                Ok(lane) => lane,
                Err(_) => continue,
            };
            match call(lane.conn.clone()).await {
                Ok(value) => return Ok(value),
                Err(next) => {
                    lanes.observe(&lane, &next);
                    error = next;
                }
            }
        }
        Err(at.backend(format_args!(
            "the server at {} gave no answer within {:?} of asking ({error}); the call may \
             have been applied on the server without its answer reaching this process",
            self.inner.server, self.inner.patience
        )))
    }
}

/// Whether a call may be sent a second time after it met a broken connection: only for
/// calls whose repetition is harmless (reads, and writes that check their own preconditions
/// and whose outcome the caller does not report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Send once.
    No,
    /// Send once more on a fresh connection after a connection-class error.
    OnReconnect,
    /// Ask again, after a timeout or a lost connection, until answered (within the
    /// backend's patience): for destructive calls that carry a request id, so that a repeat
    /// returns the first answer (`consume_event`).
    UntilAnswered,
}

/// The scripts, compiled once per process.
fn scripts() -> &'static Scripts {
    &SCRIPTS
}

/// The application clock in Unix milliseconds: snapshot-borne times (delays, backoff) are
/// written by the application, so they are compared with its clock.
fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A few long-lived multiplexed connections taken from a deadpool pool.
///
/// A deadpool-redis checkout sends `UNWATCH` + `PING` before handing out a connection
/// (its recycle check), a second round trip per operation. Multiplexed connections carry
/// any number of concurrent requests, so the backend checks a few out once, keeps them,
/// and spreads requests over them round-robin: an operation costs exactly its own round
/// trip. A connection that fails with an I/O error is handed back and replaced on the
/// next request (deadpool's recycle check then discards it), so the backend recovers by
/// itself once the server is back.
struct Lanes {
    pool: deadpool_redis::Pool,
    slots: Vec<Mutex<Option<Held>>>,
    /// One per slot: only one request at a time fetches a connection for a slot, so
    /// requests never queue on the pool for connections the slots already hold.
    filling: Vec<futures::lock::Mutex<()>>,
    next: AtomicUsize,
    /// Source of connection generations: every connection put in a slot gets a new one.
    generations: AtomicU64,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes").field("connections", &self.slots.len()).finish_non_exhaustive()
    }
}

/// A pool connection kept checked out, and a handle on it.
struct Held {
    /// Returned to the pool when dropped.
    _object: deadpool_redis::Connection,
    conn: MultiplexedConnection,
    generation: u64,
}

/// A connection to send one operation on.
struct Lane {
    index: usize,
    generation: u64,
    conn: MultiplexedConnection,
}

impl Lanes {
    fn new(pool: deadpool_redis::Pool, count: usize) -> Self {
        Self {
            pool,
            slots: (0..count).map(|_| Mutex::new(None)).collect(),
            filling: (0..count).map(|_| futures::lock::Mutex::new(())).collect(),
            next: AtomicUsize::new(0),
            generations: AtomicU64::new(0),
        }
    }

    fn slot(&self, index: usize) -> MutexGuard<'_, Option<Held>> {
        // A panic while the lock was held cannot leave the slot inconsistent: it holds a
        // whole value or nothing.
        self.slots[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection of the next slot, round-robin.
    async fn get(&self, at: &At<'_>) -> Result<Lane, BackendError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        self.get_slot(at, index).await
    }

    /// The connection of slot `index`, fetched from the pool if the slot is empty.
    async fn get_slot(&self, at: &At<'_>, index: usize) -> Result<Lane, BackendError> {
        if let Some(lane) = self.cached(index) {
            return Ok(lane);
        }
        let _filling = self.filling[index].lock().await;
        if let Some(lane) = self.cached(index) {
            return Ok(lane);
        }
        let object = self.pool.get().await.map_err(|e| error::pool(at, &e))?;
        let conn = MultiplexedConnection::clone(&object);
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        *self.slot(index) = Some(Held { _object: object, conn: conn.clone(), generation });
        Ok(Lane { index, generation, conn })
    }

    fn cached(&self, index: usize) -> Option<Lane> {
        self.slot(index).as_ref().map(|held| Lane {
            index,
            generation: held.generation,
            conn: held.conn.clone(),
        })
    }

    /// Drops the lane's connection if `error` shows it is broken; unless the slot already
    /// holds another connection (a concurrent request met the same error and refilled it).
    fn observe(&self, lane: &Lane, error: &redis::RedisError) {
        if error::breaks_connection(error) {
            let mut slot = self.slot(lane.index);
            if slot.as_ref().is_some_and(|held| held.generation == lane.generation) {
                *slot = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A late report of a broken connection never drops the healthy connection a
    /// concurrent request has already put in the slot.
    #[tokio::test]
    async fn observe_keeps_a_slot_refilled_meanwhile() {
        let url = sayiir_persistence_conformance::servers::redis_url();
        let Ok(manager) = deadpool_redis::Manager::new(url) else { panic!("bad Redis URL") };
        let pool = deadpool_redis::Pool::builder(manager)
            .max_size(2)
            .runtime(deadpool_redis::Runtime::Tokio1)
            .build();
        let Ok(pool) = pool else { panic!("cannot build the pool") };
        let lanes = Lanes::new(pool, 1);
        let at = at("test");
        let broken = redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "connection closed",
        ));
        let Ok(stale) = lanes.get(&at).await else { panic!("no connection") };
        // A first request meets the broken connection and the slot is refilled.
        lanes.observe(&stale, &broken);
        assert!(lanes.cached(0).is_none());
        let Ok(fresh) = lanes.get(&at).await else { panic!("no connection") };
        assert_ne!(fresh.generation, stale.generation);
        // A second request that was in flight on the old connection reports late.
        lanes.observe(&stale, &broken);
        assert_eq!(lanes.cached(0).map(|lane| lane.generation), Some(fresh.generation));
        // The fresh connection itself breaking does empty the slot.
        lanes.observe(&fresh, &broken);
        assert!(lanes.cached(0).is_none());
        // Errors that leave the connection usable do not.
        let Ok(again) = lanes.get(&at).await else { panic!("no connection") };
        let script_error = redis::RedisError::from((redis::ErrorKind::Client, "script failed"));
        lanes.observe(&again, &script_error);
        assert_eq!(lanes.cached(0).map(|lane| lane.generation), Some(again.generation));
    }
}
