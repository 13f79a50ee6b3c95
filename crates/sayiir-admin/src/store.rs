//! The store a URL names, on the backend its scheme picks, with the same options as the
//! libraries.

use sayiir_persistence::sayiir_core::snapshot::{SignalKind, SignalRequest, WorkflowSnapshot};
use sayiir_persistence::{
    BackendError, ListRequest, PruneRequest, RetentionStore, SignalStore, SnapshotStore,
    WorkflowListing, WorkflowPage,
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
    /// Opens the store `target` names. Opening brings its schema up to date, as the
    /// libraries do when they connect (SQLite file version, PostgreSQL migrations, Redis
    /// listing indexes).
    ///
    /// # Errors
    /// `Backend` for a URL no backend takes, an option that does not apply to the backend,
    /// or a store that cannot be opened.
    pub async fn open(target: &Target) -> Result<Self, BackendError> {
        let url = target.url.as_str();
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        let unused = |option: &str, backend: &str| {
            BackendError::Backend(format!(
                "{option} does not apply to {backend} stores; leave it out or use a URL of the \
                 backend it belongs to"
            ))
        };
        match scheme {
            "sqlite" => {
                if target.schema.is_some() {
                    return Err(unused("--schema", "SQLite"));
                }
                if target.key_prefix.is_some() {
                    return Err(unused("--key-prefix", "SQLite"));
                }
                let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
                if path.is_empty() {
                    return Err(BackendError::Backend(
                        "the SQLite URL names no file; write sqlite:<path>, e.g. \
                         sqlite:./workflows.db"
                            .into(),
                    ));
                }
                Ok(Self::Sqlite(SqliteBackend::open(path).await?))
            }
            "postgres" | "postgresql" => {
                if target.key_prefix.is_some() {
                    return Err(unused("--key-prefix", "PostgreSQL"));
                }
                let mut options = PostgresOptions::default().min_connections(1);
                if let Some(schema) = &target.schema {
                    options = options.schema(schema);
                }
                Ok(Self::Postgres(PostgresBackend::connect_with(url, options).await?))
            }
            "redis" | "rediss" => {
                if target.schema.is_some() {
                    return Err(unused("--schema", "Redis"));
                }
                let mut options = RedisOptions::default();
                if let Some(prefix) = &target.key_prefix {
                    options = options.key_prefix(prefix);
                }
                Ok(Self::Redis(RedisBackend::connect_with(url, options).await?))
            }
            _ => Err(BackendError::Backend(format!(
                "no backend for the URL {url:?}: use sqlite:<path>, postgres://…, redis:// or \
                 rediss://…"
            ))),
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

    /// `WorkflowListing::list_workflows`.
    pub async fn list(&self, request: &ListRequest) -> Result<WorkflowPage, BackendError> {
        on_backend!(self, |backend| backend.list_workflows(request).await)
    }

    /// `SnapshotStore::load_snapshot`.
    pub async fn load(&self, instance_id: &str) -> Result<WorkflowSnapshot, BackendError> {
        on_backend!(self, |backend| backend.load_snapshot(instance_id).await)
    }

    /// `SignalStore::get_signal`.
    pub async fn pending(
        &self,
        instance_id: &str,
        kind: SignalKind,
    ) -> Result<Option<SignalRequest>, BackendError> {
        on_backend!(self, |backend| backend.get_signal(instance_id, kind).await)
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
