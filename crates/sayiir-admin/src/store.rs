//! The store a URL names, on the backend its scheme picks, with the same options as the
//! libraries.

use sayiir_persistence::sayiir_core::snapshot::{SignalKind, SignalRequest, WorkflowSnapshot};
use sayiir_persistence::sayiir_core::task_claim::TaskClaim;
use sayiir_persistence::{
    BackendError, ImportOutcome, ListRequest, PruneRequest, QueuePage, RetentionStore, SignalStore,
    StoreCounts, StoreStatistics, WorkflowListing, WorkflowPage, WorkflowRecord, WorkflowTransfer,
};
use sayiir_persistence_postgres::{PostgresBackend, PostgresOptions};
use sayiir_persistence_redis::{RedisBackend, RedisOptions};
use sayiir_persistence_sqlite::SqliteBackend;

/// Where the store is, and how to address it.
#[derive(Debug, Clone)]
pub struct Target {
    /// `sqlite:<path>`, `postgres://…`, `postgresql://…`, `redis://…` or `rediss://…`.
    pub url: String,
    /// PostgreSQL schema (the library's default: `sayiir`).
    pub schema: Option<String>,
    /// Redis key prefix (the library's default: `sayiir`).
    pub key_prefix: Option<String>,
    /// Redis: the URL names nodes of a Redis Cluster (several, comma-separated).
    pub cluster: bool,
    /// Redis: the store's index shards (`RedisOptions::index_shards`; the library's default on
    /// a cluster: 16, elsewhere the single-node layout).
    pub index_shards: Option<u16>,
}

/// Which backend a [`Target`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend<'a> {
    /// An SQLite file at this path.
    Sqlite(&'a str),
    /// PostgreSQL.
    Postgres,
    /// Redis.
    Redis,
}

impl Target {
    /// The backend the URL's scheme picks, with the options checked against it.
    ///
    /// # Errors
    /// A message for an unknown scheme, an SQLite URL without a path, or an option of
    /// another backend.
    pub fn backend(&self) -> Result<Backend<'_>, String> {
        let url = self.url.as_str();
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        let unused = |option: &str, backend: &str| {
            format!(
                "{option} does not apply to {backend} stores; leave it out or use a URL of the \
                 backend it belongs to"
            )
        };
        let backend = match scheme {
            "sqlite" => {
                let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
                if path.is_empty() {
                    return Err("the SQLite URL names no file; write sqlite:PATH, e.g. \
                                sqlite:./workflows.db"
                        .into());
                }
                Backend::Sqlite(path)
            }
            "postgres" | "postgresql" => Backend::Postgres,
            "redis" | "rediss" => Backend::Redis,
            _ => {
                return Err(format!(
                    "no backend for the URL {url:?}: use sqlite:PATH, postgres://…, redis://… or \
                     rediss://…"
                ));
            }
        };
        let name = match backend {
            Backend::Sqlite(_) => "SQLite",
            Backend::Postgres => "PostgreSQL",
            Backend::Redis => "Redis",
        };
        if self.schema.is_some() && backend != Backend::Postgres {
            return Err(unused("--schema", name));
        }
        if self.key_prefix.is_some() && backend != Backend::Redis {
            return Err(unused("--key-prefix", name));
        }
        if self.cluster && backend != Backend::Redis {
            return Err(unused("--cluster", name));
        }
        if self.index_shards.is_some() && backend != Backend::Redis {
            return Err(unused("--index-shards", name));
        }
        if !self.cluster && url.contains(',') && backend == Backend::Redis {
            return Err("several Redis URLs name the nodes of a cluster: add --cluster".into());
        }
        Ok(backend)
    }
}

/// An open store, on one of the backends.
#[derive(Debug)]
pub enum Store {
    /// An SQLite file.
    Sqlite(SqliteBackend),
    /// A PostgreSQL schema.
    Postgres(PostgresBackend),
    /// A Redis key prefix.
    Redis(RedisBackend),
}

/// Runs the same call on whichever backend the store is.
macro_rules! on_backend {
    ($store:expr, |$backend:ident| $call:expr) => {
        match $store {
            Store::Sqlite($backend) => $call,
            Store::Postgres($backend) => $call,
            Store::Redis($backend) => $call,
        }
    };
}

impl Store {
    /// Opens the store `target` names. With `migrate`, brings its schema up to date and
    /// creates an SQLite file that does not exist; without, PostgreSQL migrations are not
    /// applied and a missing SQLite file is an error. (An SQLite file of an older version is
    /// migrated when opened, and Redis builds the listing of an older store at connect, as
    /// the libraries do.)
    ///
    /// # Errors
    /// `Backend` for a URL no backend takes, an option that does not apply to the backend,
    /// or a store that cannot be opened.
    pub async fn open(target: &Target, migrate: bool) -> Result<Self, BackendError> {
        let url = target.url.as_str();
        match target.backend().map_err(BackendError::Backend)? {
            Backend::Sqlite(path) => {
                if !migrate && !std::path::Path::new(path).exists() {
                    return Err(BackendError::Backend(format!(
                        "no SQLite file at {path}: check the path (`sayiir-admin migrate` creates \
                         a new store)"
                    )));
                }
                Ok(Self::Sqlite(SqliteBackend::open(path).await?))
            }
            Backend::Postgres => {
                // Only `migrate` changes the schema: applying a migration under workers of an
                // older version is an operator's decision.
                let mut options =
                    PostgresOptions::default().min_connections(1).auto_migrate(migrate);
                if let Some(schema) = &target.schema {
                    options = options.schema(schema);
                }
                Ok(Self::Postgres(PostgresBackend::connect_with(url, options).await?))
            }
            Backend::Redis => {
                let mut options = RedisOptions::default();
                if let Some(prefix) = &target.key_prefix {
                    options = options.key_prefix(prefix);
                }
                if let Some(shards) = target.index_shards {
                    options = options.index_shards(shards);
                }
                let backend = if target.cluster {
                    RedisBackend::connect_cluster(url.split(',').map(str::trim), options).await?
                } else {
                    RedisBackend::connect_with(url, options).await?
                };
                Ok(Self::Redis(backend))
            }
        }
    }

    /// The backend's name, for messages.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "SQLite",
            Self::Postgres(_) => "PostgreSQL",
            Self::Redis(_) => "Redis",
        }
    }

    /// The backend's `db.system.name`, as export files record their source.
    pub fn system_name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgresql",
            Self::Redis(_) => "redis",
        }
    }

    /// `StoreStatistics::store_counts`.
    pub async fn counts(&self) -> Result<StoreCounts, BackendError> {
        on_backend!(self, |backend| backend.store_counts().await)
    }

    /// `WorkflowTransfer::export_workflow`.
    pub async fn export(&self, instance_id: &str) -> Result<Option<WorkflowRecord>, BackendError> {
        on_backend!(self, |backend| backend.export_workflow(instance_id).await)
    }

    /// `WorkflowTransfer::import_workflow`.
    pub async fn import(&self, record: &WorkflowRecord) -> Result<ImportOutcome, BackendError> {
        on_backend!(self, |backend| backend.import_workflow(record).await)
    }

    /// `WorkflowTransfer::list_unstarted_queues`.
    pub async fn unstarted(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<QueuePage, BackendError> {
        on_backend!(self, |backend| backend.list_unstarted_queues(cursor, limit).await)
    }

    /// `WorkflowTransfer::task_claims`.
    pub async fn claims(&self, instance_id: &str) -> Result<Vec<TaskClaim>, BackendError> {
        on_backend!(self, |backend| backend.task_claims(instance_id).await)
    }

    /// `WorkflowListing::list_workflows`.
    pub async fn list(&self, request: &ListRequest) -> Result<WorkflowPage, BackendError> {
        on_backend!(self, |backend| backend.list_workflows(request).await)
    }

    /// `SignalStore::store_signal`.
    pub async fn request(
        &self,
        instance_id: &str,
        kind: SignalKind,
        request: SignalRequest,
    ) -> Result<(), BackendError> {
        on_backend!(self, |backend| backend.store_signal(instance_id, kind, request).await)
    }

    /// `SignalStore::unpause`.
    pub async fn unpause(&self, instance_id: &str) -> Result<WorkflowSnapshot, BackendError> {
        on_backend!(self, |backend| backend.unpause(instance_id).await)
    }

    /// `RetentionStore::prune_finished_batch`.
    pub async fn prune_batch(&self, request: &PruneRequest) -> Result<u64, BackendError> {
        on_backend!(self, |backend| backend.prune_finished_batch(request).await)
    }

    /// Brings the schema up to date: what opening did, run again explicitly (PostgreSQL
    /// migrations and the definition backfill, Redis listing indexes; an SQLite file is
    /// migrated when opened).
    pub async fn migrate(&self) -> Result<(), BackendError> {
        match self {
            Self::Sqlite(_) => Ok(()),
            Self::Postgres(backend) => backend.migrate().await,
            Self::Redis(backend) => backend.build_listing_indexes().await,
        }
    }

    /// Closes the connections.
    pub async fn close(self) {
        if let Self::Postgres(backend) = self {
            backend.close().await;
        }
    }
}
