//! The storage traits called by hand: what the Sayiir runtime does with a store, one call at a
//! time, on the embedded SQLite backend. (To run a real workflow, see `durable_workflow`.)
//!
//! Run it with `cargo run --example storage_calls` from the repository root.

use bytes::Bytes;
use chrono::Duration;
use sayiir_persistence_sqlite::sayiir_core::snapshot::{
    ExecutionPosition, SignalKind, SignalRequest, WorkflowSnapshot,
};
use sayiir_persistence_sqlite::{
    BackendError, SignalStore, SnapshotStore, SqliteBackend, TaskClaimStore, TaskResultStore,
};

#[tokio::main]
async fn main() -> Result<(), BackendError> {
    let path = std::env::temp_dir().join("sayiir-storage-calls.db");
    for suffix in ["", "-wal", "-shm"] {
        // A fresh start on every run; a missing file is fine.
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let backend = SqliteBackend::open(&path).await?;
    println!("opened   {}", path.display());

    // A workflow "order-42" about to run its first task, "charge".
    let mut snapshot = WorkflowSnapshot::with_initial_input(
        "order-42".into(),
        "checkout-v1".into(),
        Bytes::from_static(b"{\"amount\": 42}"),
    );
    snapshot.update_position(ExecutionPosition::AtTask { task_id: "charge".into() });
    backend.save_snapshot(&snapshot).await?;
    println!("saved    workflow order-42, next task: charge");

    // A worker finds the task, claims it, runs it, records the result, releases the claim.
    let found = backend.find_available_tasks("worker-1", 1, Duration::minutes(5), &[]).await?;
    let task = found.first().ok_or_else(|| BackendError::Backend("no task found".into()))?;
    let claim = backend
        .claim_task(&task.instance_id, &task.task_id, "worker-1", Some(Duration::minutes(5)))
        .await?
        .ok_or_else(|| BackendError::Backend("claim refused".into()))?;
    let until = claim
        .expires_at
        .and_then(|secs| chrono::DateTime::from_timestamp(i64::try_from(secs).ok()?, 0));
    println!(
        "claimed  {}/{} by {} until {}",
        claim.instance_id,
        claim.task_id,
        claim.worker_id,
        until.map_or("forever".to_string(), |t| t.to_rfc3339())
    );
    backend.save_task_result("order-42", "charge", Bytes::from_static(b"paid")).await?;
    backend.release_task_claim("order-42", "charge", "worker-1").await?;
    let result = backend.load_task_result("order-42", "charge").await?;
    println!(
        "recorded charge -> {:?}, claim released",
        result.as_deref().map(String::from_utf8_lossy)
    );

    // An external event for the workflow, buffered until the workflow consumes it.
    backend.send_event("order-42", "shipped", Bytes::from_static(b"tracking-123")).await?;
    let event = backend.consume_event("order-42", "shipped").await?;
    println!("event    shipped -> {:?}", event.as_deref().map(String::from_utf8_lossy));

    // Pause at the next task boundary, then resume.
    backend
        .store_signal(
            "order-42",
            SignalKind::Pause,
            SignalRequest::new(Some("audit".into()), Some("ops".into())),
        )
        .await?;
    let paused = backend.check_and_pause("order-42").await?;
    println!(
        "paused   {paused} (state {})",
        backend.load_snapshot("order-42").await?.state.as_ref()
    );
    let resumed = backend.unpause("order-42").await?;
    println!("resumed  state {}", resumed.state.as_ref());
    Ok(())
}
