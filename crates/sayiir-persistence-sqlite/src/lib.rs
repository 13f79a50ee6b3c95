#![deny(missing_docs)]
#![doc = include_str!("../README.md")]

/// The repository README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct RepositoryReadme;

mod catalog;
mod claim;
mod conn;
mod counts;
mod error;
mod find;
mod migrate;
mod options;
mod records;
mod result;
mod row;
mod signal;
mod snapshot;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use options::{JournalMode, SqliteOptions, Synchronous};
pub use sayiir_persistence::*;

use conn::Threads;
use migrate::Location;
use sayiir_persistence::operation::{Call, Instrumentation};

/// Workflow state in one SQLite database. Cloning gives another handle on the same
/// connections; the connections close when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    threads: Arc<Threads>,
    calls: Instrumentation,
}

impl SqliteBackend {
    /// Opens (creating if absent) the database file at `path`, with default options.
    ///
    /// # Errors
    /// When the file cannot be opened or created, is not a Sayiir database, or was written
    /// by a newer version of this crate.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, BackendError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens (creating if absent) the database file at `path`.
    ///
    /// # Errors
    /// As [`SqliteBackend::open`].
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, BackendError> {
        Self::start(Location::File(path.as_ref().to_path_buf()), options).await
    }

    /// A private database in memory, gone when the backend is dropped. Its connections
    /// (the writer and `options.readers` readers) all see the same data.
    ///
    /// # Errors
    /// When SQLite cannot create it.
    pub async fn in_memory() -> Result<Self, BackendError> {
        Self::in_memory_with(SqliteOptions::default()).await
    }

    /// [`SqliteBackend::in_memory`] with options (the journal mode is always in memory).
    ///
    /// # Errors
    /// When SQLite cannot create it.
    pub async fn in_memory_with(options: SqliteOptions) -> Result<Self, BackendError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name =
            format!("sayiir-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        Self::start(Location::Memory(name), options).await
    }

    async fn start(location: Location, options: SqliteOptions) -> Result<Self, BackendError> {
        let calls = Instrumentation::new("sqlite").with_namespace(location.namespace());
        // Opening touches the disk: keep it off the async worker threads.
        let open = move || -> Result<Threads, BackendError> {
            let writer = migrate::open_writer(&location, &options)?;
            let readers = (0..options.readers)
                .map(|_| migrate::open_reader(&location, &options))
                .collect::<Result<Vec<_>, _>>()?;
            Threads::start(writer, readers, options.busy_timeout)
        };
        let threads = tokio::task::spawn_blocking(open).await.map_err(|e| {
            BackendError::Backend(format!("sqlite open: the opening thread failed: {e}"))
        })??;
        Ok(Self { threads: Arc::new(threads), calls })
    }

    /// Overwrites the stored snapshot blob of an existing instance with `blob`, as corrupted
    /// storage would. For tests of corrupted data.
    ///
    /// # Errors
    /// `NotFound` when the instance does not exist.
    #[doc(hidden)]
    pub async fn write_raw_snapshot(
        &self,
        instance_id: &str,
        blob: &[u8],
    ) -> Result<(), BackendError> {
        let id = instance_id.to_string();
        let blob = blob.to_vec();
        self.threads
            .write("write_raw_snapshot", instance_id, move |tx| {
                let changed = tx
                    .execute(
                        "UPDATE workflows SET blob = ?2 WHERE instance_id = ?1",
                        rusqlite::params![id, blob],
                    )
                    .map_err(|e| error::sql_error("write_raw_snapshot", "update", &e))?;
                if changed == 0 { Err(row::not_found(&id)) } else { Ok(()) }
            })
            .await
    }
}

impl SqliteBackend {
    /// The shell every call runs in (argument checks, span, error recording).
    fn calls(&self) -> &Instrumentation {
        &self.calls
    }

    /// Runs `call` in the shell as one write transaction (see [`Threads::write`]).
    async fn write<R, F>(&self, call: Call<'_>, work: F) -> Result<R, BackendError>
    where
        R: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<R, BackendError> + Send + 'static,
    {
        self.calls.run(call, self.threads.write(call.name(), call.instance_id(), work)).await
    }

    /// Runs `call` in the shell as one read transaction (see [`Threads::read`]).
    async fn read<R, F>(&self, call: Call<'_>, work: F) -> Result<R, BackendError>
    where
        R: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<R, BackendError> + Send + 'static,
    {
        self.calls.run(call, self.threads.read(call.name(), call.instance_id(), work)).await
    }
}
