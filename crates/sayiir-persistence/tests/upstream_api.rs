//! Every public item of sayiir-persistence 0.4.0's `lib.rs`, used the way code written for
//! 0.4.0 uses it: if this file compiles, such code (the Sayiir runtime included) compiles
//! against this crate unchanged.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use sayiir_persistence::sayiir_core::snapshot::{SignalKind, WorkflowSnapshot};
use sayiir_persistence::validation::validate_signal_allowed;
use sayiir_persistence::{
    BackendError, InMemoryBackend, PersistentBackend, SignalStore, SnapshotStore, TaskClaimStore,
    TaskResultStore,
};

/// The bounds the runtime puts on a backend: `CheckpointingRunner` needs `PersistentBackend`,
/// `PooledWorker` adds `TaskClaimStore`, `WorkflowClient::get_task_result` adds
/// `TaskResultStore`; handles are cloned and shared across tasks.
fn runtime_bounds<B>(_: &B)
where
    B: PersistentBackend
        + TaskClaimStore
        + TaskResultStore
        + Clone
        + Default
        + Send
        + Sync
        + 'static,
{
}

#[test]
fn in_memory_backend_has_upstreams_shape() {
    let backend = InMemoryBackend::new();
    runtime_bounds(&backend);
    let _default: InMemoryBackend = InMemoryBackend::default();
    let _clone: InMemoryBackend = backend.clone();
}

#[test]
fn backend_error_has_upstreams_variants() {
    let errors = [
        BackendError::NotFound("i".into()),
        BackendError::Serialization("s".into()),
        BackendError::Backend("b".into()),
        BackendError::CannotCancel("c".into()),
        BackendError::CannotPause("p".into()),
    ];
    for error in errors {
        // Exhaustive: a variant added or removed fails to compile here.
        match &error {
            BackendError::NotFound(m)
            | BackendError::Serialization(m)
            | BackendError::Backend(m)
            | BackendError::CannotCancel(m)
            | BackendError::CannotPause(m) => assert!(!m.is_empty()),
        }
        let _: &dyn std::error::Error = &error;
    }
}

#[test]
fn validation_module_has_upstreams_function() {
    let check: fn(&str, SignalKind) -> Result<(), BackendError> = validate_signal_allowed;
    assert!(check("InProgress", SignalKind::Cancel).is_ok());
    assert!(matches!(check("Completed", SignalKind::Cancel), Err(BackendError::CannotCancel(_))));
}

#[test]
fn clones_share_the_data_as_upstreams_do() {
    let backend = InMemoryBackend::new();
    let other = backend.clone();
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
        backend.save_snapshot(&WorkflowSnapshot::new("i-1".into(), "hash".into())).await.unwrap();
        assert_eq!(other.list_snapshots().await.unwrap(), vec!["i-1".to_string()]);
        assert!(other.get_signal("i-1", SignalKind::Cancel).await.unwrap().is_none());
    });
}
