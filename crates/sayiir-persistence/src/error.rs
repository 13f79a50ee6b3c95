//! The one error type every storage operation returns.

/// Error returned by every storage operation.
///
/// The variants and their `Display` texts are those of sayiir-persistence 0.4.0: the Sayiir
/// runtime matches [`BackendError::NotFound`] by variant, so a missing snapshot must always be
/// reported as `NotFound`.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The snapshot (or, for claims, the claim `"{instance}:{task}"`) does not exist.
    #[error("Snapshot not found: {0}")]
    NotFound(String),
    /// A value could not be encoded, or stored bytes could not be decoded.
    #[error("Serialization error: {0}")]
    Serialization(String),
    /// Anything else: invalid ids, I/O and database failures, a claim held by another worker.
    #[error("Backend error: {0}")]
    Backend(String),
    /// A cancel signal was refused because of the workflow's state (the payload names it).
    #[error("Cannot cancel workflow in state: {0}")]
    CannotCancel(String),
    /// A pause signal or an unpause was refused because of the workflow's state.
    #[error("Cannot pause workflow in state: {0}")]
    CannotPause(String),
}
