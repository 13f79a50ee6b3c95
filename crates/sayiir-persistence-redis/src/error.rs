//! Redis and pool errors mapped to `BackendError`, with the operation and ids they concern.

use redis::RedisError;
use sayiir_persistence::BackendError;
use sayiir_persistence::context::ErrorContext;

/// What an operation was working on, for error messages: the core's one format.
pub(crate) type At<'a> = ErrorContext<'a>;

/// The context of a Redis `operation`.
pub(crate) const fn at(operation: &'static str) -> At<'static> {
    ErrorContext::new("Redis", operation)
}

/// A failed Redis command or script.
pub(crate) fn redis(at: &At<'_>, server: &str, error: &RedisError) -> BackendError {
    let kind = if error.is_timeout() {
        "got no answer within response_timeout; the call may or may not have been applied \
         (check before repeating it); is the server overloaded or unreachable?"
    } else if error.is_connection_refusal() {
        "could not connect; nothing was sent: is the server running and reachable?"
    } else if error.is_connection_dropped() || error.is_io_error() {
        "lost the connection; the call may or may not have been applied (check before \
         repeating it)"
    } else {
        "failed"
    };
    at.backend(format_args!("the server at {server} {kind} ({error})"))
}

/// No connection could be taken from the pool.
pub(crate) fn pool(at: &At<'_>, error: &deadpool_redis::PoolError) -> BackendError {
    at.backend(format_args!("no connection from the pool: {error}"))
}

/// A script answered something this library never returns: a bug or a foreign key.
pub(crate) fn reply(at: &At<'_>, what: &str) -> BackendError {
    at.backend(format_args!("unexpected reply: {what}"))
}

/// A stored value that is not in the format this library writes.
pub(crate) fn corrupt(at: &At<'_>, what: &str) -> BackendError {
    at.serialization(format_args!(
        "stored value cannot be decoded: {what}; save the workflow again (save_snapshot) or \
         delete it"
    ))
}

/// Whether the connection that returned `error` should be replaced: it is broken, or leads
/// to a server that became a read-only replica (a failover demoted it).
pub(crate) fn breaks_connection(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_unrecoverable_error()
        || read_only(error)
}

/// Whether a call that failed with `error` may succeed on a fresh connection: the
/// connection was lost or refused (a server restart, a killed client), not a timeout; or the
/// server refused the write as a read-only replica, so nothing was applied.
pub(crate) fn worth_reconnecting(error: &RedisError) -> bool {
    ((error.is_connection_dropped() || error.is_io_error() || error.is_connection_refusal())
        && !error.is_timeout())
        || read_only(error)
}

/// `READONLY`: the server is a replica now. Also found inside the error of a transaction the
/// server aborted (`EXECABORT` after a refused `MULTI` command) and of a script whose write
/// was refused (Redis before 7 wraps it in `ERR Error running script`).
pub(crate) fn read_only(error: &RedisError) -> bool {
    matches!(error.kind(), redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly))
        || error.to_string().contains("READONLY")
}

/// Whether a cluster node refused the call without running it: a redirection (`MOVED`, `ASK`:
/// the slot is served elsewhere now, or is migrating), a slot or cluster not ready (`TRYAGAIN`,
/// `CLUSTERDOWN`, `MASTERDOWN`), or a write that reached a demoted master (`READONLY`); also
/// inside an aborted transaction. Nothing was applied, so any call may be sent again.
pub(crate) fn refused_by_cluster(error: &RedisError) -> bool {
    use redis::ServerErrorKind::{Ask, ClusterDown, MasterDown, Moved, ReadOnly, TryAgain};
    if let redis::ErrorKind::Server(Moved | Ask | TryAgain | ClusterDown | MasterDown | ReadOnly) =
        error.kind()
    {
        return true;
    }
    let text = error.to_string();
    ["MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY"]
        .iter()
        .any(|code| text.contains(code))
}
