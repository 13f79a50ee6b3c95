//! Settings of a [`SqliteBackend`](crate::SqliteBackend).

use std::time::Duration;

/// SQLite's journal mode (`PRAGMA journal_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JournalMode {
    /// Write-ahead log: readers never wait for the writer. The default.
    Wal,
    /// Rollback journal, deleted after each transaction.
    Delete,
    /// Rollback journal, truncated after each transaction.
    Truncate,
}

impl JournalMode {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            JournalMode::Wal => "WAL",
            JournalMode::Delete => "DELETE",
            JournalMode::Truncate => "TRUNCATE",
        }
    }
}

/// SQLite's `PRAGMA synchronous`: how hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Synchronous {
    /// A write that returned survives a power loss. The default.
    Full,
    /// With WAL, a write that returned survives a crash of the process but the last
    /// transactions may roll back after a power loss; commits are much faster.
    Normal,
}

impl Synchronous {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Options for [`SqliteBackend::open_with`](crate::SqliteBackend::open_with).
///
/// ```
/// use std::time::Duration;
/// use sayiir_persistence_sqlite::{SqliteOptions, Synchronous};
///
/// let options = SqliteOptions::default()
///     .synchronous(Synchronous::Normal)
///     .busy_timeout(Duration::from_secs(10))
///     .readers(4);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// The journal mode (default [`JournalMode::Wal`]).
    pub journal_mode: JournalMode,
    /// The durability of commits (default [`Synchronous::Full`]).
    pub synchronous: Synchronous,
    /// How long one call may wait for a lock held by another connection or process
    /// (default 5 s); see [`SqliteOptions::busy_timeout`](Self::busy_timeout).
    pub busy_timeout: Duration,
    /// Read-only connections beside the one writer (default 2).
    pub readers: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            journal_mode: JournalMode::Wal,
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            readers: 2,
        }
    }
}

impl SqliteOptions {
    /// The journal mode (default [`JournalMode::Wal`]).
    #[must_use]
    pub fn journal_mode(mut self, mode: JournalMode) -> Self {
        self.journal_mode = mode;
        self
    }

    /// The durability of commits (default [`Synchronous::Full`]).
    #[must_use]
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// How long a call may wait for a lock held by another connection or process before it
    /// fails (default 5 s). It bounds the whole call, time queued behind this backend's other
    /// calls included: concurrent calls blocked by one lock all fail after about this long.
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How many read-only connections serve reads beside the one writer (default 2; 0 sends
    /// reads to the writer too).
    #[must_use]
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers;
        self
    }
}
