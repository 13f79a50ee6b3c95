//! Benchmarks of the SQLite backend: `cargo bench -p sayiir-persistence-benches --bench sqlite`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Mutex;

use rusqlite::Connection;
use sayiir_persistence::sayiir_core::snapshot::WorkflowSnapshot;
use sayiir_persistence_benches::{RawLimit, Target, run};
use sayiir_persistence_sqlite::{SqliteBackend, SqliteOptions, Synchronous};

struct Sqlite {
    backend: SqliteBackend,
    path: PathBuf,
    /// Pages in use right after opening (the empty schema).
    baseline_pages: u64,
    _dir: tempfile::TempDir,
}

/// One held rusqlite connection in the backend's own journal and synchronous mode.
struct Raw(Mutex<Connection>);

impl RawLimit for Raw {
    async fn write(&self, key: &str, value: &[u8]) {
        let conn = self.0.lock().unwrap();
        conn.prepare_cached(
            "INSERT INTO raw_kv (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        )
        .unwrap()
        .execute(rusqlite::params![key, value])
        .unwrap();
    }
    async fn read(&self, key: &str) -> usize {
        let conn = self.0.lock().unwrap();
        let v: Vec<u8> = conn
            .prepare_cached("SELECT v FROM raw_kv WHERE k = ?1")
            .unwrap()
            .query_row([key], |r| r.get(0))
            .unwrap();
        v.len()
    }
}

fn used_pages(path: &PathBuf) -> u64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0)).unwrap();
    u64::try_from(pages - free).unwrap()
}

impl Target for Sqlite {
    type Backend = SqliteBackend;
    type Raw = Raw;
    const NAME: &'static str = "sqlite";

    async fn open() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.db");
        let backend = SqliteBackend::open(&path).await.unwrap();
        let baseline_pages = used_pages(&path);
        Sqlite { backend, path, baseline_pages, _dir: dir }
    }
    fn backend(&self) -> &SqliteBackend {
        &self.backend
    }
    async fn seed(&self, snapshots: Vec<WorkflowSnapshot>) {
        // Filling a store with 100,000 workflows at one fsync each would take minutes; the
        // data is the same whatever the durability of the handle that wrote it.
        let fast = SqliteOptions::default().synchronous(Synchronous::Normal);
        let seeder = SqliteBackend::open_with(&self.path, fast).await.unwrap();
        for snapshot in snapshots {
            sayiir_persistence::SnapshotStore::save_snapshot(&seeder, &snapshot).await.unwrap();
        }
    }
    async fn raw(&self) -> Option<Raw> {
        let conn = Connection::open(&self.path).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        conn.execute("CREATE TABLE IF NOT EXISTS raw_kv (k TEXT PRIMARY KEY, v BLOB NOT NULL)", [])
            .unwrap();
        Some(Raw(Mutex::new(conn)))
    }
    async fn storage_bytes(&self, _: &[String]) -> Option<u64> {
        let conn = Connection::open(&self.path).unwrap();
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        Some((used_pages(&self.path) - self.baseline_pages) * u64::try_from(page_size).unwrap())
    }
    async fn describe(&self) -> String {
        let version = rusqlite::version();
        format!("SQLite {version} (bundled), WAL, synchronous FULL, one file on the local disk.")
    }
    async fn cleanup(&self) {}
}

fn main() {
    run::<Sqlite>(Some(0.8));
}
