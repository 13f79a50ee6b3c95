//! Redis and pool errors mapped to `BackendError`, with the operation and ids they concern.

use std::fmt;

use redis::RedisError;
use sayiir_persistence::BackendError;

/// What an operation was working on, for error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct At<'a> {
    pub(crate) operation: &'static str,
    pub(crate) instance: Option<&'a str>,
    pub(crate) task: Option<&'a str>,
    pub(crate) worker: Option<&'a str>,
}

impl<'a> At<'a> {
    pub(crate) fn new(operation: &'static str) -> Self {
        Self { operation, instance: None, task: None, worker: None }
    }

    pub(crate) fn instance(mut self, instance: &'a str) -> Self {
        self.instance = Some(instance);
        self
    }

    pub(crate) fn task(mut self, task: &'a str) -> Self {
        self.task = Some(task);
        self
    }

    pub(crate) fn worker(mut self, worker: &'a str) -> Self {
        self.worker = Some(worker);
        self
    }
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.operation)?;
        let mut sep = " (";
        for (name, value) in
            [("instance", self.instance), ("task", self.task), ("worker", self.worker)]
        {
            if let Some(value) = value {
                write!(f, "{sep}{name} {value:?}")?;
                sep = ", ";
            }
        }
        if sep == ", " {
            write!(f, ")")?;
        }
        Ok(())
    }
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
    BackendError::Backend(format!("redis {at} at {server} {kind} ({error})"))
}

/// No connection could be taken from the pool.
pub(crate) fn pool(at: &At<'_>, error: &deadpool_redis::PoolError) -> BackendError {
    BackendError::Backend(format!("redis {at}: no connection from the pool: {error}"))
}

/// A script answered something this library never returns: a bug or a foreign key.
pub(crate) fn reply(at: &At<'_>, what: &str) -> BackendError {
    BackendError::Backend(format!("redis {at}: unexpected reply: {what}"))
}

/// A stored value that is not in the format this library writes.
pub(crate) fn corrupt(at: &At<'_>, what: &str) -> BackendError {
    BackendError::Serialization(format!(
        "redis {at}: stored value cannot be decoded: {what}; save the workflow again \
         (save_snapshot) or delete it"
    ))
}

/// Whether the connection that returned `error` should be replaced.
pub(crate) fn breaks_connection(error: &RedisError) -> bool {
    error.is_io_error() || error.is_connection_dropped() || error.is_unrecoverable_error()
}

/// Whether a call that failed with `error` may succeed on a fresh connection: the
/// connection was lost or refused (a server restart, a killed client), not a timeout.
pub(crate) fn worth_reconnecting(error: &RedisError) -> bool {
    (error.is_connection_dropped() || error.is_io_error() || error.is_connection_refusal())
        && !error.is_timeout()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_operation_and_ids() {
        let at = At::new("claim_task").instance("i").task("t");
        assert_eq!(at.to_string(), "claim_task (instance \"i\", task \"t\")");
        assert_eq!(At::new("list_snapshots").to_string(), "list_snapshots");
    }
}
