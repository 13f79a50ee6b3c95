//! One connection held beside the pool, for calls made one at a time.
//!
//! sqlx's pool tests every connection it takes back with a ping (sqlx-core 0.9.0,
//! `Floating::return_to_pool`), from a task it spawns: each call through the pool costs the
//! server a second round trip, and a call made just after another often finds no idle
//! connection and waits for a new one to open (with TLS, a handshake of about 90 ms under
//! sqlx 0.9.0). A worker makes its calls one after another, so nearly every call finds the
//! held connection free and costs one round trip. A call that finds it taken (several calls
//! at once on one backend) goes through the pool as before.
//!
//! The connection is owned by the call using it. If that call is dropped (its `call_timeout`
//! ran out, the caller gave up), the connection is dropped with it, which closes it: it is
//! never reused in the middle of a statement. A connection error discards it too. Either way
//! a replacement is taken from the pool in the background and detached from it (the pool
//! stops counting it, and may open another in its place: the held connection is one beyond
//! `max_connections`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::{PgConnection, PgPool};

/// Where the held connection is.
#[derive(Debug)]
enum Slot {
    /// Free for the next call; last used at the instant given.
    Free(PgConnection, Instant),
    /// A call is using it.
    InUse,
    /// Lost (dropped with its call, or broken); no replacement asked for yet.
    Lost,
    /// A replacement is being taken from the pool.
    Refilling,
    /// Not used: switched off in the options, or the backend was closed.
    Off,
}

/// The held connection of one backend (shared by its clones).
#[derive(Debug)]
pub(crate) struct Held {
    slot: Mutex<Slot>,
}

impl Held {
    /// A held connection taken from the pool when first wanted; `enabled = false` never
    /// holds one.
    pub(crate) fn new(enabled: bool) -> Arc<Self> {
        Arc::new(Self { slot: Mutex::new(if enabled { Slot::Lost } else { Slot::Off }) })
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds `connection` (detached from its pool) if no connection is held yet.
    pub(crate) fn fill(&self, connection: PgConnection) {
        let mut slot = self.slot();
        if matches!(*slot, Slot::Lost | Slot::Refilling) {
            *slot = Slot::Free(connection, Instant::now());
        }
    }

    /// The held connection if it is free, with the ticket that gives it back; pinged first
    /// if it was idle for `ping_idle_after` or longer (the server or a middlebox may have
    /// closed it meanwhile: see `PostgresOptions::ping_idle_after`). When it was lost or
    /// fails the ping, a replacement is taken from `pool` in the background and this call
    /// goes without.
    ///
    /// The ping waits at most `ping_timeout` (the pool's `acquire_timeout`: what a call
    /// through the pool would wait for a connection).
    pub(crate) async fn checkout(
        self: &Arc<Self>,
        pool: &PgPool,
        ping_idle_after: Duration,
        ping_timeout: Duration,
    ) -> Option<(PgConnection, Ticket)> {
        let (mut connection, ticket, idle_since) = self.take(pool)?;
        if idle_since.elapsed() >= ping_idle_after {
            match tokio::time::timeout(ping_timeout, connection.ping()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::debug!(%error, "the held connection was closed while idle; replacing it");
                    return None;
                }
                Err(_) => {
                    tracing::debug!("the held connection did not answer a ping; replacing it");
                    return None;
                }
            }
        }
        Some((connection, ticket))
    }

    /// The held connection if it is free, with its ticket and when it was last used. When
    /// it was lost, a replacement is taken from `pool` in the background.
    fn take(self: &Arc<Self>, pool: &PgPool) -> Option<(PgConnection, Ticket, Instant)> {
        let mut slot = self.slot();
        match std::mem::replace(&mut *slot, Slot::InUse) {
            Slot::Free(connection, used) => {
                Some((connection, Ticket { held: Arc::clone(self), returned: false }, used))
            }
            Slot::Lost => {
                *slot = Slot::Refilling;
                drop(slot);
                let (refill, pool) = (Refill(Arc::clone(self)), pool.clone());
                tokio::spawn(async move {
                    match pool.acquire().await {
                        Ok(connection) => refill.0.fill(connection.detach()),
                        Err(error) => {
                            tracing::debug!(%error, "no connection to hold; calls use the pool");
                        }
                    }
                    // Dropping `refill` marks the slot lost again unless it was filled.
                    drop(refill);
                });
                None
            }
            other => {
                *slot = other;
                None
            }
        }
    }

    /// Stops holding a connection and closes the one held, if free.
    pub(crate) async fn close(&self) {
        let previous = std::mem::replace(&mut *self.slot(), Slot::Off);
        if let Slot::Free(connection, _) = previous
            && let Err(error) = connection.close().await
        {
            tracing::debug!(%error, "closing the held connection failed");
        }
    }
}

/// A refill under way. Dropped with the slot still refilling (the pool had no connection,
/// or the task was cancelled with its runtime), it marks the slot lost, so that a later call
/// asks again instead of the slot staying empty for good.
struct Refill(Arc<Held>);

impl Drop for Refill {
    fn drop(&mut self) {
        let mut slot = self.0.slot();
        if matches!(*slot, Slot::Refilling) {
            *slot = Slot::Lost;
        }
    }
}

/// The claim of one call on the held connection, which the call owns meanwhile. Dropped
/// without [`Ticket::give_back`] (the call was dropped mid-way, and the connection with it),
/// the slot is marked lost.
#[derive(Debug)]
pub(crate) struct Ticket {
    held: Arc<Held>,
    returned: bool,
}

impl Ticket {
    /// Returns `connection` after a call that ended with `outcome`; a connection error
    /// discards it.
    pub(crate) fn give_back<T>(
        mut self,
        connection: PgConnection,
        outcome: &Result<T, sqlx::Error>,
    ) {
        self.returned = true;
        let broken = matches!(outcome, Err(error) if crate::error::is_connection_error(error));
        let mut slot = self.held.slot();
        if matches!(*slot, Slot::InUse) {
            *slot = if broken { Slot::Lost } else { Slot::Free(connection, Instant::now()) };
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.returned {
            let mut slot = self.held.slot();
            if matches!(*slot, Slot::InUse) {
                *slot = Slot::Lost;
            }
        }
    }
}
