//! Schema creation, migrations and the server version check.

use sqlx::Row;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};

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

/// What connecting learns about the server and the schema, read in at most two round trips on
/// an existing pooled connection, so that an up-to-date schema costs no lock, no extra
/// connection and no migration bookkeeping.
#[derive(Debug)]
pub(crate) struct SchemaState {
    /// `server_version_num`, e.g. `150020` for 15.20.
    pub(crate) server_version: i32,
    /// Whether every embedded migration is recorded as applied, with its checksum, and
    /// nothing else is recorded.
    pub(crate) up_to_date: bool,
}

impl SchemaState {
    /// Reads the server version and, if the schema's migrations table exists, what it records.
    ///
    /// Plain (simple-protocol) queries: one round trip each, with no statement to prepare on
    /// a connection that has not seen it yet.
    pub(crate) async fn read(conn: &mut PgConnection, schema: &str) -> Result<Self, BackendError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            BackendError::Backend(format!("connecting to schema {schema:?}: {what}: {e}"))
        };
        // `schema` passed `check_schema_name`: only ASCII letters, digits and `_`, so it
        // cannot end the string literal it is spliced into.
        let table = format!("\"{schema}\".{MIGRATIONS_TABLE}");
        let probe = format!(
            "SELECT current_setting('server_version_num'), to_regclass('{table}') IS NOT NULL"
        );
        let row = sqlx::raw_sql(sqlx::AssertSqlSafe(probe))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| fail("cannot read the server version", &e))?;
        let version: String = row.try_get(0).map_err(|e| fail("reading server_version_num", &e))?;
        let server_version = version.trim().parse().map_err(|_| {
            BackendError::Backend(format!("unexpected server_version_num {version:?}"))
        })?;
        let has_table: bool = row.try_get(1).map_err(|e| fail("reading the schema state", &e))?;
        if !has_table {
            return Ok(Self { server_version, up_to_date: false });
        }
        let applied = format!(
            "SELECT version, success, encode(checksum, 'hex') FROM {table} ORDER BY version"
        );
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(applied))
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| fail("cannot read the applied migrations", &e))?;
        let mut recorded = Vec::with_capacity(rows.len());
        for row in &rows {
            let read = || -> Result<(i64, bool, String), sqlx::Error> {
                Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
            };
            recorded.push(read().map_err(|e| fail("reading the applied migrations", &e))?);
        }
        let embedded = MIGRATIONS.iter().filter(|m| m.migration_type.is_up_migration());
        let up_to_date = recorded.len() == embedded.clone().count()
            && embedded.zip(&recorded).all(|(migration, (version, success, checksum))| {
                migration.version == *version && *success && hex(&migration.checksum) == *checksum
            });
        Ok(Self { server_version, up_to_date })
    }

    /// Fails with a clear message when the server is older than [`MIN_SERVER_VERSION_NUM`].
    pub(crate) fn check_server_version(&self) -> Result<(), BackendError> {
        if self.server_version < MIN_SERVER_VERSION_NUM {
            return Err(BackendError::Backend(format!(
                "PostgreSQL server version {} is too old: sayiir-persistence-postgres needs \
                 {MIN_SERVER_VERSION_NUM} (PostgreSQL 14) or newer",
                self.server_version
            )));
        }
        Ok(())
    }
}

/// Lower-case hexadecimal, as PostgreSQL's `encode(…, 'hex')` writes it.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        // Version 7 records that the backfill of version 6 finished: applied after it.
        migrator
            .run_to(DEFINITIONS_ADDED, &conn)
            .await
            .map_err(|e| fail("a migration failed", &e))?;
        backfill_definitions(&conn, schema)
            .await
            .map_err(|e| fail("backfilling definition hashes", &e))?;
        migrator.run(&conn).await.map_err(|e| fail("a migration failed", &e))
    }
    .await;
    // Closing the session releases the advisory lock, also when a step above failed.
    conn.close().await;
    outcome
}

/// The migration that adds `definition_hash`; the next one records that its backfill
/// finished.
const DEFINITIONS_ADDED: i64 = 6;

/// Rows read per batch by [`backfill_definitions`].
const BACKFILL_BATCH: i64 = 1_000;

/// Fills the `definition_hash` column (migration 0006) of rows stored before it, decoding
/// their blobs, a batch at a time, with a progress line per batch. A blob that does not decode
/// gets an empty definition (logged). Cheap once done: the rows left are found through the
/// partial index `workflows_definition_unknown`. Runs with every migration, under the
/// migration lock, before migration 7 is applied: a schema left at version 6 has a backfill
/// to finish, and the next connect (or `migrate()`) finishes it.
async fn backfill_definitions(conn: &PgPool, schema: &str) -> Result<(), sqlx::Error> {
    let mut filled: u64 = 0;
    loop {
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT instance_id, blob FROM workflows WHERE definition_hash IS NULL \
             ORDER BY instance_id LIMIT $1",
        )
        .bind(BACKFILL_BATCH)
        .fetch_all(conn)
        .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let (ids, hashes): (Vec<String>, Vec<String>) = rows
            .into_iter()
            .map(|(id, blob)| {
                let hash = match sayiir_persistence::codec::decode_snapshot(&id, &blob) {
                    Ok(snapshot) => snapshot.definition_hash,
                    Err(error) => {
                        tracing::warn!(%error, instance_id = id, "undecodable workflow: its \
                            definition hash is recorded as empty");
                        String::new()
                    }
                };
                (id, hash)
            })
            .unzip();
        sqlx::query(
            "UPDATE workflows w SET definition_hash = d.hash \
             FROM unnest($1::text[], $2::text[]) AS d (id, hash) \
             WHERE w.instance_id = d.id AND w.definition_hash IS NULL",
        )
        .bind(&ids)
        .bind(&hashes)
        .execute(conn)
        .await?;
        filled += ids.len() as u64;
        tracing::info!(schema, filled, "definition hashes backfilled for listing and retention");
    }
}
