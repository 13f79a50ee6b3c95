//! sqlx errors to [`BackendError`], in one place.

use sayiir_persistence::context::ErrorContext;

use crate::BackendError;

/// Maps a driver error of `operation` on `instance_id` into a `Backend` error that names both
/// and keeps the driver's text (and the SQLSTATE code, when the server sent one).
///
/// Never `NotFound`: a missing row is decided by the caller from the query's answer, so a
/// connection or timeout fault can never look like a missing workflow.
pub(crate) fn db(
    operation: &'static str,
    instance_id: &str,
) -> impl FnOnce(sqlx::Error) -> BackendError {
    let instance_id = instance_id.to_string();
    move |error| driver_error(&context(operation).instance(&instance_id), &error)
}

/// The context of a PostgreSQL `operation`.
pub(crate) const fn context(operation: &'static str) -> ErrorContext<'static> {
    ErrorContext::new("PostgreSQL", operation)
}

/// A driver error in `context`, with what a user can do about it.
fn driver_error(context: &ErrorContext<'_>, error: &sqlx::Error) -> BackendError {
    if matches!(error, sqlx::Error::PoolTimedOut) {
        return context.backend(
            "timed out waiting for a pooled connection (acquire_timeout): the server did not \
             answer a new connection, or every pooled connection stayed busy; nothing was \
             sent, so the call can be repeated",
        );
    }
    let code = error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|code| format!(" (SQLSTATE {code})"))
        .unwrap_or_default();
    context.backend(format_args!("failed{code}: {error}{}", lost_connection_note(error)))
}

/// What a user should know when `error` means the connection was lost mid-call.
fn lost_connection_note(error: &sqlx::Error) -> &'static str {
    if is_connection_error(error) {
        " (the connection to the server was lost during the call: it may or may not have been \
         applied, so check before repeating it; the pool replaces the connection)"
    } else {
        ""
    }
}

/// As [`db`], for operations that concern no single instance.
pub(crate) fn db_all(operation: &'static str) -> impl FnOnce(sqlx::Error) -> BackendError {
    move |error| driver_error(&context(operation), &error)
}

/// `Serialization` for a stored value that is out of range or inconsistent.
pub(crate) fn corrupt(instance_id: &str, what: &str) -> BackendError {
    BackendError::Serialization(format!(
        "stored data of instance {instance_id:?} is inconsistent: {what}"
    ))
}

/// Whether `error` means the connection was lost rather than that the statement failed: an
/// I/O or protocol error, or a server error of class 08 (connection exception), 57P01..03
/// (the server shut the session down), 57P05 (`idle_session_timeout` closed the idle
/// session) or 25P03 (`idle_in_transaction_session_timeout`). Such a statement may be retried
/// on another connection.
pub(crate) fn is_connection_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            code.starts_with("08")
                || matches!(&*code, "57P01" | "57P02" | "57P03" | "57P05" | "25P03")
        }),
        _ => false,
    }
}
