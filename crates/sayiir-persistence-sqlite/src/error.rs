//! SQLite errors as `BackendError`s that name what failed.

use rusqlite::ErrorCode;
use sayiir_persistence::BackendError;
use sayiir_persistence::context::ErrorContext;

/// A SQLite error during `operation` (`step` says which part), with SQLite's own text.
pub(crate) fn sql_error(operation: &str, step: &str, error: &rusqlite::Error) -> BackendError {
    let hint = match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            " (the database stayed locked by another connection or process for the whole \
             busy_timeout of this call; nothing of it was written: retry later, or raise \
             SqliteOptions::busy_timeout)"
        }
        Some(ErrorCode::DiskFull) => " (the disk is full)",
        Some(ErrorCode::ReadOnly) => " (the database file is read-only)",
        Some(ErrorCode::NotADatabase) => " (the file is not a SQLite database)",
        _ => "",
    };
    context(operation).step(step).backend(format_args!("{error}{hint}"))
}

/// The context of a SQLite `operation`.
pub(crate) const fn context(operation: &str) -> ErrorContext<'_> {
    ErrorContext::new("SQLite", operation)
}

/// Extension to name the operation of a rusqlite result in one call.
pub(crate) trait SqlResultExt<T> {
    /// Maps the error with [`sql_error`].
    fn during(self, operation: &str, step: &str) -> Result<T, BackendError>;
}

impl<T> SqlResultExt<T> for rusqlite::Result<T> {
    fn during(self, operation: &str, step: &str) -> Result<T, BackendError> {
        self.map_err(|e| sql_error(operation, step, &e))
    }
}
