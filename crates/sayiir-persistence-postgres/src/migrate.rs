//! Schema creation, migrations and the server version check.

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::{BackendError, MIN_SERVER_VERSION_NUM};

/// The migrations of `migrations/`, embedded at compile time. Their SQL uses unqualified
/// names and runs with `search_path` set to the backend's schema.
static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The table, inside the backend's schema, that records applied migrations.
const MIGRATIONS_TABLE: &str = "_sayiir_migrations";

/// Longest identifier PostgreSQL keeps without truncating it.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Checks that `schema` is a plain identifier and returns it double-quoted.
///
/// Only ASCII letters, digits and `_`, not starting with a digit, not `pg_`-prefixed (reserved
/// by PostgreSQL), at most 63 bytes. Quoting keeps its case exactly as given.
pub(crate) fn check_schema_name(schema: &str) -> Result<String, BackendError> {
    let valid = !schema.is_empty()
        && schema.len() <= MAX_IDENTIFIER_BYTES
        && schema.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit()
        && !schema.to_ascii_lowercase().starts_with("pg_");
    if valid {
        Ok(format!("\"{schema}\""))
    } else {
        Err(BackendError::Backend(format!(
            "invalid schema name {schema:?}: use 1 to {MAX_IDENTIFIER_BYTES} ASCII letters, \
             digits or underscores, not starting with a digit or \"pg_\""
        )))
    }
}

/// Fails with a clear message when the server is older than [`MIN_SERVER_VERSION_NUM`].
pub(crate) async fn check_server_version(pool: &PgPool) -> Result<(), BackendError> {
    let version: String = sqlx::query_scalar("SELECT current_setting('server_version_num')")
        .fetch_one(pool)
        .await
        .map_err(|e| BackendError::Backend(format!("cannot read the server version: {e}")))?;
    let number: i32 = version
        .trim()
        .parse()
        .map_err(|_| BackendError::Backend(format!("unexpected server_version_num {version:?}")))?;
    if number < MIN_SERVER_VERSION_NUM {
        return Err(BackendError::Backend(format!(
            "PostgreSQL server version {number} is too old: sayiir-persistence-postgres needs \
             {MIN_SERVER_VERSION_NUM} (PostgreSQL 14) or newer"
        )));
    }
    Ok(())
}

/// Creates `schema` if missing and applies the pending migrations, holding an advisory lock
/// per schema so that concurrent callers take turns.
pub(crate) async fn run(pool: &PgPool, schema: &str, quoted: &str) -> Result<(), BackendError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        BackendError::Backend(format!("migrating schema {schema:?}: {what}: {e}"))
    };
    // A one-connection pool of its own, with `search_path` set to the schema: the migrations
    // use unqualified names, and that setting must not leak into the caller's pool (possibly
    // the application's own). One connection, so the advisory lock (held by the session)
    // covers every statement below.
    let options = (*pool.connect_options()).clone().options([("search_path", quoted)]);
    let conn = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| fail("cannot connect", &e))?;
    let outcome = async {
        sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
            .bind(format!("sayiir-persistence-postgres:{schema}"))
            .execute(&conn)
            .await
            .map_err(|e| fail("cannot take the migration lock", &e))?;
        // Under the lock, so concurrent first starts do not race on the schema's creation.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {quoted}")))
            .execute(&conn)
            .await
            .map_err(|e| fail("cannot create the schema", &e))?;
        let mut migrator = Migrator::with_migrations(MIGRATIONS.migrations.to_vec());
        migrator.dangerous_set_table_name(format!("{quoted}.{MIGRATIONS_TABLE}"));
        // Our advisory lock is per schema; sqlx's own is per database and would also wait for
        // the application's migrations.
        migrator.set_locking(false);
        migrator.run(&conn).await.map_err(|e| fail("a migration failed", &e))
    }
    .await;
    // Closing the session releases the advisory lock, also when a step above failed.
    conn.close().await;
    outcome
}
