//! Opening a database file: identity check, pragmas, migrations (`PRAGMA user_version`).

use rusqlite::{Connection, OpenFlags};
use sayiir_persistence::BackendError;

use crate::error::SqlResultExt;
use crate::options::{JournalMode, SqliteOptions};

/// `PRAGMA application_id` of a Sayiir database ("SYIR").
pub(crate) const APPLICATION_ID: i32 = 0x5359_4952;

/// The migrations, in order; migration `i` brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_initial.sql"),
    include_str!("../migrations/0002_pending_requests.sql"),
    include_str!("../migrations/0003_ordered_updated_at.sql"),
    include_str!("../migrations/0004_listing_indexes.sql"),
];

/// The schema version this library writes.
pub(crate) fn latest_version() -> i32 {
    i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX)
}

/// Where the database lives.
#[derive(Debug, Clone)]
pub(crate) enum Location {
    File(std::path::PathBuf),
    /// A private in-memory database shared by this backend's connections.
    Memory(String),
}

impl Location {
    /// The `db.namespace` of the spans: the file's path, or the in-memory database's name.
    pub(crate) fn namespace(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Memory(name) => name.clone(),
        }
    }

    fn open(&self, flags: OpenFlags) -> rusqlite::Result<Connection> {
        match self {
            Location::File(path) => Connection::open_with_flags(path, flags),
            Location::Memory(name) => {
                // memdb databases named with a leading '/' are shared by every connection
                // of the process that opens the same name.
                let uri = format!("file:/{name}?vfs=memdb");
                Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Location::File(path) => path.display().to_string(),
            Location::Memory(name) => format!("in-memory database {name}"),
        }
    }
}

/// Opens the writer connection: checks that the file is a Sayiir database (or empty),
/// applies the pragmas, and migrates it to the latest schema.
pub(crate) fn open_writer(
    location: &Location,
    options: &SqliteOptions,
) -> Result<Connection, BackendError> {
    let what = location.describe();
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = location.open(flags).during("open", &what)?;
    conn.busy_timeout(options.busy_timeout).during("open", "busy_timeout")?;
    check_identity(&conn, &what)?;
    apply_pragmas(&conn, location, options)?;
    migrate(&conn, &what)?;
    Ok(conn)
}

/// Opens a read-only connection to a database the writer has already prepared.
pub(crate) fn open_reader(
    location: &Location,
    options: &SqliteOptions,
) -> Result<Connection, BackendError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = location.open(flags).during("open reader", &location.describe())?;
    conn.busy_timeout(options.busy_timeout).during("open reader", "busy_timeout")?;
    Ok(conn)
}

/// Refuses, without writing anything, a file that is neither empty nor a Sayiir database,
/// or one written by a newer version of this library.
fn check_identity(conn: &Connection, what: &str) -> Result<(), BackendError> {
    let not_ours = |detail: String| {
        BackendError::Backend(format!(
            "{what} is not a Sayiir database ({detail}); it was left unchanged"
        ))
    };
    let application_id: i32 = conn
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(|e| not_ours(e.to_string()))?;
    let version: i32 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .during("open", "user_version")?;
    if application_id == 0 {
        let objects: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .during("open", "inspect schema")?;
        if objects > 0 || version != 0 {
            return Err(not_ours(format!("it holds {objects} other tables or indexes")));
        }
        return Ok(());
    }
    if application_id != APPLICATION_ID {
        return Err(not_ours(format!("application_id is {application_id:#x}")));
    }
    if version > latest_version() {
        return Err(BackendError::Backend(format!(
            "{what} has schema version {version}, written by a newer sayiir-persistence-sqlite; \
             this version understands up to {}: upgrade the library",
            latest_version()
        )));
    }
    Ok(())
}

fn apply_pragmas(
    conn: &Connection,
    location: &Location,
    options: &SqliteOptions,
) -> Result<(), BackendError> {
    // memdb cannot keep a write-ahead log; its rollback journal lives in memory anyway.
    let journal = match location {
        Location::Memory(_) => "MEMORY",
        Location::File(_) => options.journal_mode.pragma(),
    };
    let applied: String = conn
        .pragma_update_and_check(None, "journal_mode", journal, |row| row.get(0))
        .during("open", "journal_mode")?;
    if matches!(location, Location::File(_))
        && options.journal_mode == JournalMode::Wal
        && !applied.eq_ignore_ascii_case("wal")
    {
        return Err(BackendError::Backend(format!(
            "sqlite open: journal_mode WAL was refused (got {applied}); the file system may not \
             support it"
        )));
    }
    conn.pragma_update(None, "synchronous", options.synchronous.pragma())
        .during("open", "synchronous")?;
    conn.pragma_update(None, "foreign_keys", "OFF").during("open", "foreign_keys")?;
    Ok(())
}

fn migrate(conn: &Connection, what: &str) -> Result<(), BackendError> {
    // IMMEDIATE: two processes opening a new file at once migrate one after the other.
    conn.execute_batch("BEGIN IMMEDIATE").during("migrate", what)?;
    let result = (|| {
        let version: i32 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .during("migrate", "user_version")?;
        let start = usize::try_from(version).unwrap_or(0);
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(start) {
            conn.execute_batch(sql).during("migrate", &format!("schema version {}", i + 1))?;
        }
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .during("migrate", "application_id")?;
        conn.pragma_update(None, "user_version", latest_version())
            .during("migrate", "user_version")?;
        Ok(())
    })();
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    conn.execute_batch(end).during("migrate", end)?;
    result
}
