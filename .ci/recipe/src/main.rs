//! The README's "Use with sayiir-runtime" example, built outside the workspace.

use std::sync::Arc;

use sayiir_persistence_sqlite::SqliteBackend;
use sayiir_runtime::WorkflowClient;
use sayiir_runtime::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("sayiir-recipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let backend = SqliteBackend::open(dir.join("workflows.db")).await?;

    let context = WorkflowContext::new("greeting", Arc::new(JsonCodec), Arc::new(()));
    let workflow = WorkflowBuilder::new(context)
        .then("greet", |name: String| async move { Ok(format!("hello, {name}")) })
        .then("shout", |text: String| async move { Ok(text.to_uppercase()) })
        .build()?;

    let runner = CheckpointingRunner::new(backend.clone());
    let status = runner.run(&workflow, "greeting-1", "sayiir".to_string()).await?;
    assert!(matches!(status, WorkflowStatus::Completed), "{status:?}");

    // The other entry points type-check on the same backend, with no adapter.
    let _client: WorkflowClient<SqliteBackend> = WorkflowClient::new(backend.clone());
    let _worker: PooledWorker<SqliteBackend> =
        PooledWorker::new("worker-1", backend, TaskRegistry::new());
    // And the runtime's own in-memory backend, re-exported from our core.
    let _memory = CheckpointingRunner::new(InMemoryBackend::new());

    std::fs::remove_dir_all(&dir)?;
    println!("recipe ok: greeting-1 completed on SQLite through sayiir-runtime 0.4.0");
    Ok(())
}
