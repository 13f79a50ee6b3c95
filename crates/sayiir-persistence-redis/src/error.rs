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
    carries(error, &["READONLY"])
}

/// Whether a cluster node refused the call without running it: a redirection (`MOVED`, `ASK`:
/// the slot is served elsewhere now, or is migrating), a slot or cluster not ready (`TRYAGAIN`,
/// `CLUSTERDOWN`, `MASTERDOWN`), or a write that reached a demoted master (`READONLY`); also
/// inside an aborted transaction. Nothing was applied, so any call may be sent again.
pub(crate) fn refused_by_cluster(error: &RedisError) -> bool {
    carries(error, &["MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY"])
}

/// Whether a refusal ([`refused_by_cluster`]) came inside an aborted transaction: redis-rs then
/// leaves its slot map as it is, so the connection that met it should be replaced.
pub(crate) fn refused_in_transaction(error: &RedisError) -> bool {
    matches!(error.kind(), redis::ErrorKind::Server(redis::ServerErrorKind::ExecAbort))
        && refused_by_cluster(error)
}

/// Whether the server answered `error` (or, for an aborted transaction, one of its commands)
/// with one of the error `codes`, or with a script error wrapping one of them (Redis before 7:
/// `ERR Error running script … -READONLY …`). Only errors the server sent count: a client-side
/// message that quotes a reply never does.
fn carries(error: &RedisError, codes: &[&str]) -> bool {
    if let redis::ErrorKind::Server(kind) = error.kind()
        && kind_code(kind).is_some_and(|code| codes.contains(&code))
    {
        return true;
    }
    let Some(errors) = error.clone().into_server_errors() else { return false };
    errors.iter().any(|(_, server)| {
        codes.contains(&server.code())
            || (server.code() == "ERR"
                && server.details().is_some_and(|details| {
                    details.starts_with("Error running script")
                        && codes.iter().any(|code| details.contains(&format!("-{code} ")))
                }))
    })
}

/// The wire code of the server error kinds [`carries`] looks for.
fn kind_code(kind: redis::ServerErrorKind) -> Option<&'static str> {
    use redis::ServerErrorKind::{Ask, ClusterDown, MasterDown, Moved, ReadOnly, TryAgain};
    match kind {
        Moved => Some("MOVED"),
        Ask => Some("ASK"),
        TryAgain => Some("TRYAGAIN"),
        ClusterDown => Some("CLUSTERDOWN"),
        MasterDown => Some("MASTERDOWN"),
        ReadOnly => Some("READONLY"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error a server reply `wire` (RESP) makes.
    fn server_error(wire: &str) -> RedisError {
        match redis::parse_redis_value(wire.as_bytes()) {
            Ok(value) => value.extract_error().err().unwrap_or_else(|| {
                RedisError::from((redis::ErrorKind::Client, "not an error reply"))
            }),
            Err(error) => error,
        }
    }

    #[test]
    fn refusals_are_told_by_the_server_code_only() {
        assert!(refused_by_cluster(&server_error("-MOVED 3999 127.0.0.1:7001\r\n")));
        assert!(refused_by_cluster(&server_error("-ASK 3999 127.0.0.1:7001\r\n")));
        assert!(refused_by_cluster(&server_error("-TRYAGAIN Multiple keys request\r\n")));
        assert!(refused_by_cluster(&server_error("-CLUSTERDOWN The cluster is down\r\n")));
        let readonly = server_error("-READONLY You can't write against a read only replica.\r\n");
        assert!(read_only(&readonly) && refused_by_cluster(&readonly));
        // Redis before 7 wraps a script's refused write.
        let wrapped = server_error(
            "-ERR Error running script (call to f_0): @user_script:5: @user_script: 5: \
             -READONLY You can't write against a read only replica. \r\n",
        );
        assert!(read_only(&wrapped) && refused_by_cluster(&wrapped));
        // Text that merely mentions a code is not a refusal: a script error, a client error.
        let mentions = server_error("-ERR claim of TASK MOVED READONLY refused\r\n");
        assert!(!read_only(&mentions) && !refused_by_cluster(&mentions));
        let client = RedisError::from((redis::ErrorKind::Client, "reply was MOVED 1 READONLY"));
        assert!(!read_only(&client) && !refused_by_cluster(&client));
        assert!(!refused_by_cluster(&server_error("-NOSCRIPT No matching script\r\n")));
    }
}
