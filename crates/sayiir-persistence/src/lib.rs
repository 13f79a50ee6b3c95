#![deny(missing_docs)]
//! Storage traits of the [Sayiir](https://crates.io/crates/sayiir-core) durable workflow
//! engine, and the pure rules every backend shares.
//!
//! The Sayiir runtime checkpoints every workflow step through four traits:
//! [`SnapshotStore`], [`SignalStore`], [`TaskClaimStore`] and [`TaskResultStore`]
//! ([`PersistentBackend`] is implemented for every type that has the first two). Their API is
//! exactly that of sayiir-persistence 0.4.0; what each method does is written down in
//! [`behaviour`], whose sections the rest of the workspace cites as `§ Section name`.
//!
//! This crate does no I/O. It carries [`InMemoryBackend`] (feature `in-memory`, on by
//! default) because 0.4.0 exports it here and the Sayiir runtime re-exports it from here;
//! the other backends live in their own crates and re-export this one:
//!
//! | crate | backend |
//! |---|---|
//! | `sayiir-persistence-memory` | in-process, for tests and single-process runs |
//! | `sayiir-persistence-sqlite` | one embedded file (the default) |
//! | `sayiir-persistence-postgres` | PostgreSQL, for many workers on many machines |
//! | `sayiir-persistence-redis` | Redis |
//!
//! Beside the traits it holds what all backends must agree on, so they agree by construction:
//! [`validation`] (ids and signal rules), [`codec`] (the snapshot blob format),
//! [`schedule`] (the rules of `find_available_tasks`), [`results`] (the results archive) and
//! [`claims`] (claim expiry arithmetic), and [`operation`]: the shell every backend call runs
//! in (argument checks, the `tracing` span with OpenTelemetry's database attributes, error
//! recording).

mod error;
mod traits;

/// The behaviour every backend gives each trait method (`docs/behaviour.md` in the
/// repository). Comments across the workspace cite its sections as `§ Section name`.
pub mod behaviour {
    #![doc = include_str!("../behaviour.md")]
}

pub mod claims;
pub mod codec;
pub mod context;
pub mod operation;
pub mod requests;
pub mod results;
pub mod schedule;
pub mod status;
pub mod validation;

#[cfg(feature = "in-memory")]
pub mod memory;
#[cfg(test)]
mod testing;

pub use error::BackendError;
#[cfg(feature = "in-memory")]
pub use memory::InMemoryBackend;
pub use traits::{PersistentBackend, SignalStore, SnapshotStore, TaskClaimStore, TaskResultStore};

/// The Sayiir core types the traits speak in, re-exported so one dependency is enough.
pub use sayiir_core;
