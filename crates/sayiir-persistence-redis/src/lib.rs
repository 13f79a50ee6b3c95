#![deny(missing_docs)]
#![doc = include_str!("../README.md")]

mod catalog;
mod claim;
mod command;
mod counts;
mod error;
mod find;
mod keys;
mod lanes;
mod layout;
mod options;
mod packed;
mod records;
mod reply;
mod result;
mod scripts;
mod signal;
mod snapshot;
mod transition;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::AsyncConnectionConfig;

/// The pool crate, re-exported to build a pool for [`RedisBackend::from_pool`].
pub use deadpool_redis;
/// The Redis client crate, re-exported for connection settings and raw access.
pub use redis;
pub use sayiir_persistence::{
    self, BackendError, ImportOutcome, ListCursor, ListRequest, PersistentBackend, PruneRequest,
    QueuePage, RetentionStore, SignalStore, SnapshotStore, StoreCounts, StoreStatistics,
    TaskClaimStore, TaskResultStore, WorkflowListing, WorkflowPage, WorkflowRecord,
    WorkflowSummary, WorkflowTransfer, sayiir_core,
};

use sayiir_persistence::operation::Instrumentation;

pub use options::RedisOptions;

pub(crate) use command::Retry;

use crate::error::{At, at};
use crate::keys::KeySpace;
use crate::lanes::{Lanes, Source};
use crate::scripts::Scripts;

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(Scripts::new);

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
    /// [`RedisOptions::wait_for_replicas`].
    wait_for_replicas: Option<(u32, Duration)>,
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
        let info = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(|e| error::redis(&at("connect"), "the URL's server", &e))?;
        Self::connect_info(info, options).await
    }

    /// Connects to the server `client` points at (its address, database, credentials and
    /// TLS settings), with `options`: for applications that build their `redis::Client`
    /// themselves. The backend opens its own connections from the client's settings.
    ///
    /// # Errors
    /// `Backend` if the server does not answer.
    pub async fn connect_client(
        client: &redis::Client,
        options: RedisOptions,
    ) -> Result<Self, BackendError> {
        Self::connect_info(client.get_connection_info().clone(), options).await
    }

    async fn connect_info(
        info: redis::ConnectionInfo,
        options: RedisOptions,
    ) -> Result<Self, BackendError> {
        let at = at("connect");
        options.check().map_err(|problem| at.backend(format_args!("{problem}")))?;
        let server = info.addr().to_string();
        let database = info.redis_settings().db().to_string();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connection_timeout))
            .set_response_timeout(Some(options.response_timeout));
        let manager = deadpool_redis::Manager::new_with_config(info, config)
            .map_err(|e| error::redis(&at, &server, &e))?;
        let pool = deadpool_redis::Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(deadpool_redis::Runtime::Tokio1)
            .wait_timeout(Some(options.connection_timeout))
            .create_timeout(Some(options.connection_timeout))
            .build()
            .map_err(|e| at.backend(format_args!("cannot build the pool: {e}")))?;
        let backend = Self::with_pool(pool, options, server, Some(database));
        backend.start(&at).await?;
        Ok(backend)
    }

    /// Checks the server and the store, and brings the store's indexes up to date: what every
    /// `connect_*` does before handing the backend out.
    async fn start(&self, at: &At<'_>) -> Result<(), BackendError> {
        self.ping(at).await?;
        self.refuse_unsupported_server(at).await?;
        self.read_max_bulk_len(at).await;
        self.check_layout(at).await?;
        self.build_listing_indexes().await
    }

    /// Connects to the Redis Cluster that `nodes` belong to (`redis://host:port` URLs of some of
    /// its nodes, with the same credentials, TLS and protocol, e.g. `?protocol=resp3`), with
    /// `options`. The store uses the sharded key layout ([`RedisOptions::index_shards`],
    /// [`RedisOptions::DEFAULT_CLUSTER_SHARDS`] unless set): every script's keys are in one
    /// hash slot. Each connection keeps the cluster's slot map and refreshes it when a node
    /// redirects a call, and the backend sends every call a node refused without running it
    /// again (after a resharding or a failover) until the cluster has settled; calls that may
    /// have run on a master that died fail with the error of the call. With
    /// [`RedisOptions::wait_for_replicas`], `WAIT` goes to the master that ran the write.
    ///
    /// ```no_run
    /// use sayiir_persistence_redis::{RedisBackend, RedisOptions};
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let nodes = ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379"];
    /// let backend = RedisBackend::connect_cluster(nodes, RedisOptions::default().index_shards(32)).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `Backend` if a URL is invalid, no node answers, the options do not fit together, or the
    /// store was written with another key layout or shard count.
    pub async fn connect_cluster<I, U>(
        nodes: I,
        options: RedisOptions,
    ) -> Result<Self, BackendError>
    where
        I: IntoIterator<Item = U>,
        U: AsRef<str>,
    {
        let at = at("connect");
        let nodes: Vec<String> = nodes.into_iter().map(|url| url.as_ref().to_string()).collect();
        if nodes.is_empty() {
            return Err(at.backend(format_args!(
                "no cluster node given; pass the URLs of some of the cluster's nodes, e.g. \
                 [\"redis://10.0.0.1:6379\", \"redis://10.0.0.2:6379\"]"
            )));
        }
        // Addresses only: a URL may carry a password, and messages end up in logs.
        let mut addresses = Vec::with_capacity(nodes.len());
        for url in &nodes {
            let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())
                .map_err(|e| error::redis(&at, "a cluster node the URLs name", &e))?;
            addresses.push(info.addr().to_string());
        }
        let server = format!("a node of the cluster of {}", addresses.join(", "));
        // No retries in the client: it would send a call again after a lost connection, and a
        // write the master ran before the loss would be applied twice. The backend sends calls
        // again itself, by the same rules as on one server, and every call refused unrun
        // (redirections, a slot not served yet).
        let client = redis::cluster::ClusterClientBuilder::new(nodes.iter().map(String::as_str))
            .connection_timeout(options.connection_timeout)
            .response_timeout(options.response_timeout)
            .retries(0)
            .build()
            .map_err(|e| error::redis(&at, &server, &e))?;
        Self::start_cluster(client, options, server).await
    }

    /// [`RedisBackend::connect_cluster`] with a `ClusterClient` built by the caller (its nodes,
    /// credentials, TLS and timeouts; `connection_timeout` and `response_timeout` of `options`
    /// then bound only the backend's own waits: `wait_for_replicas` and how long a call refused
    /// by a node is sent again). Build it with `.retries(0)`, as `connect_cluster` does: with
    /// retries, redis-rs sends a command again after a lost connection, and a write the master
    /// ran before the loss (a claim, an event) would be applied twice. The backend itself
    /// sends again every call a node refused without running it.
    ///
    /// # Errors
    /// As [`RedisBackend::connect_cluster`].
    pub async fn connect_cluster_client(
        client: redis::cluster::ClusterClient,
        options: RedisOptions,
    ) -> Result<Self, BackendError> {
        let server = "a node of the cluster the ClusterClient names".to_string();
        Self::start_cluster(client, options, server).await
    }

    async fn start_cluster(
        client: redis::cluster::ClusterClient,
        mut options: RedisOptions,
        server: String,
    ) -> Result<Self, BackendError> {
        let at = at("connect");
        options.check().map_err(|problem| at.backend(format_args!("{problem}")))?;
        options.index_shards =
            Some(options.index_shards.unwrap_or(RedisOptions::DEFAULT_CLUSTER_SHARDS));
        let lanes = options.pool_size.max(1);
        let backend = Self::with_source(Source::Cluster(client), lanes, options, server, None);
        backend.start(&at).await?;
        Ok(backend)
    }

    /// Connects through Redis Sentinel: `client` asks its sentinels for the master of the
    /// name it was built with, and every connection the backend opens goes to the master
    /// they name at that moment. After a failover, calls on connections to the old master
    /// fail (the connection drops, or the demoted server answers `READONLY`, which this backend
    /// treats the same) and the connection is replaced by one to the promoted replica; the
    /// calls that are safe to send again are sent again once, as after a lost connection
    /// (see the crate README, "Reliability"). The database, credentials and TLS of the master
    /// connections are the client's (`SentinelClientBuilder::set_client_to_redis_*`). The
    /// timeouts of `options` apply to every master connection.
    ///
    /// ```no_run
    /// use sayiir_persistence_redis::redis::sentinel::{SentinelClient, SentinelServerType};
    /// use sayiir_persistence_redis::{RedisBackend, RedisOptions};
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let sentinels = vec!["redis://10.0.0.1:26379", "redis://10.0.0.2:26379", "redis://10.0.0.3:26379"];
    /// let client = SentinelClient::build(sentinels, "mymaster", None, SentinelServerType::Master)?;
    /// let backend = RedisBackend::connect_sentinel(client, RedisOptions::default()).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `Backend` if no sentinel names a master that answers, or the server named is not a
    /// master.
    pub async fn connect_sentinel(
        client: redis::sentinel::SentinelClient,
        options: RedisOptions,
    ) -> Result<Self, BackendError> {
        let at = at("connect");
        options.check().map_err(|problem| at.backend(format_args!("{problem}")))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connection_timeout))
            .set_response_timeout(Some(options.response_timeout));
        let source = Source::Sentinel { client: futures::lock::Mutex::new(client), config };
        let lanes = options.pool_size.max(1);
        let server = "the master the sentinels name".to_string();
        let backend = Self::with_source(source, lanes, options, server, None);
        backend.start(&at).await?;
        Ok(backend)
    }

    /// Uses connections of `pool` (a `deadpool_redis::Pool` built by the caller, e.g. shared with
    /// the rest of the application). The backend keeps up to `options.pool_size` of them checked
    /// out for its lifetime and multiplexes every request over them; the timeouts of `options` do
    /// not apply (the pool's connections carry their own). It makes no call, so the store's key
    /// layout is neither checked nor recorded: use it only on a store of the single-node layout,
    /// without [`RedisOptions::index_shards`].
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
        Self::with_source(Source::Pool(pool), lanes, options, server, database)
    }

    fn with_source(
        source: Source,
        lanes: usize,
        options: RedisOptions,
        server: String,
        database: Option<String>,
    ) -> Self {
        let calls = Instrumentation::new("redis");
        let calls = match database {
            Some(database) => calls.with_namespace(database),
            None => calls,
        };
        Self {
            inner: Arc::new(Inner {
                keys: KeySpace::new(&options.key_prefix, options.index_shards),
                lanes: Lanes::new(source, lanes),
                max_bulk_len: AtomicU64::new(DEFAULT_MAX_BULK_LEN),
                patience: (options.response_timeout * 10).max(Duration::from_secs(30)),
                server,
                calls,
                wait_for_replicas: options.wait_for_replicas,
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
