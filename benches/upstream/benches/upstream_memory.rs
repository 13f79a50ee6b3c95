//! The baseline for the in-memory backend: Sayiir 0.4.0's own `InMemoryBackend`, run through the
//! same workloads. Its own workspace (see `Cargo.toml` beside it), so no patch redirects `upstream`
//! to our core: `cargo bench --manifest-path benches/upstream/Cargo.toml --bench upstream_memory`.

use bytes::Bytes;
use chrono::Duration;
use sayiir_persistence::sayiir_core::snapshot::{SignalKind, SignalRequest, WorkflowSnapshot};
use sayiir_persistence::sayiir_core::task_claim::{AvailableTask, TaskClaim};
use sayiir_persistence::{
    BackendError, SignalStore, SnapshotStore, TaskClaimStore, TaskResultStore,
};
use sayiir_persistence_benches::{NoRaw, Target, run};
use upstream::{SignalStore as _, SnapshotStore as _, TaskClaimStore as _, TaskResultStore as _};

/// Upstream's backend behind this workspace's traits (the same sayiir-core types).
#[derive(Clone, Default)]
struct Upstream(upstream::InMemoryBackend);

fn convert(error: upstream::BackendError) -> BackendError {
    match error {
        upstream::BackendError::NotFound(m) => BackendError::NotFound(m),
        upstream::BackendError::Serialization(m) => BackendError::Serialization(m),
        upstream::BackendError::Backend(m) => BackendError::Backend(m),
        upstream::BackendError::CannotCancel(m) => BackendError::CannotCancel(m),
        upstream::BackendError::CannotPause(m) => BackendError::CannotPause(m),
    }
}

impl SnapshotStore for Upstream {
    async fn save_snapshot(&self, snapshot: &WorkflowSnapshot) -> Result<(), BackendError> {
        self.0.save_snapshot(snapshot).await.map_err(convert)
    }
    async fn save_task_result(
        &self,
        id: &str,
        task: &str,
        output: Bytes,
    ) -> Result<(), BackendError> {
        self.0.save_task_result(id, task, output).await.map_err(convert)
    }
    async fn load_snapshot(&self, id: &str) -> Result<WorkflowSnapshot, BackendError> {
        self.0.load_snapshot(id).await.map_err(convert)
    }
    async fn delete_snapshot(&self, id: &str) -> Result<(), BackendError> {
        self.0.delete_snapshot(id).await.map_err(convert)
    }
    async fn list_snapshots(&self) -> Result<Vec<String>, BackendError> {
        self.0.list_snapshots().await.map_err(convert)
    }
}

impl SignalStore for Upstream {
    async fn store_signal(
        &self,
        id: &str,
        kind: SignalKind,
        request: SignalRequest,
    ) -> Result<(), BackendError> {
        self.0.store_signal(id, kind, request).await.map_err(convert)
    }
    async fn get_signal(
        &self,
        id: &str,
        kind: SignalKind,
    ) -> Result<Option<SignalRequest>, BackendError> {
        self.0.get_signal(id, kind).await.map_err(convert)
    }
    async fn clear_signal(&self, id: &str, kind: SignalKind) -> Result<(), BackendError> {
        self.0.clear_signal(id, kind).await.map_err(convert)
    }
    async fn send_event(&self, id: &str, name: &str, payload: Bytes) -> Result<(), BackendError> {
        self.0.send_event(id, name, payload).await.map_err(convert)
    }
    async fn consume_event(&self, id: &str, name: &str) -> Result<Option<Bytes>, BackendError> {
        self.0.consume_event(id, name).await.map_err(convert)
    }
    async fn check_and_cancel(&self, id: &str, at: Option<&str>) -> Result<bool, BackendError> {
        self.0.check_and_cancel(id, at).await.map_err(convert)
    }
    async fn check_and_pause(&self, id: &str) -> Result<bool, BackendError> {
        self.0.check_and_pause(id).await.map_err(convert)
    }
    async fn unpause(&self, id: &str) -> Result<WorkflowSnapshot, BackendError> {
        self.0.unpause(id).await.map_err(convert)
    }
}

impl TaskClaimStore for Upstream {
    async fn claim_task(
        &self,
        id: &str,
        task: &str,
        worker: &str,
        ttl: Option<Duration>,
    ) -> Result<Option<TaskClaim>, BackendError> {
        self.0.claim_task(id, task, worker, ttl).await.map_err(convert)
    }
    async fn release_task_claim(
        &self,
        id: &str,
        task: &str,
        worker: &str,
    ) -> Result<(), BackendError> {
        self.0.release_task_claim(id, task, worker).await.map_err(convert)
    }
    async fn extend_task_claim(
        &self,
        id: &str,
        task: &str,
        worker: &str,
        more: Duration,
    ) -> Result<(), BackendError> {
        self.0.extend_task_claim(id, task, worker, more).await.map_err(convert)
    }
    async fn find_available_tasks(
        &self,
        worker: &str,
        limit: usize,
        aging: Duration,
        tags: &[String],
    ) -> Result<Vec<AvailableTask>, BackendError> {
        self.0.find_available_tasks(worker, limit, aging, tags).await.map_err(convert)
    }
}

impl TaskResultStore for Upstream {
    async fn load_task_result(&self, id: &str, task: &str) -> Result<Option<Bytes>, BackendError> {
        self.0.load_task_result(id, task).await.map_err(convert)
    }
}

struct Baseline(Upstream);

impl Target for Baseline {
    type Backend = Upstream;
    type Raw = NoRaw;
    const NAME: &'static str = "upstream-memory";

    async fn open() -> Self {
        Baseline(Upstream::default())
    }
    fn backend(&self) -> &Upstream {
        &self.0
    }
    async fn raw(&self) -> Option<NoRaw> {
        None
    }
    async fn storage_bytes(&self, _: &[String]) -> Option<u64> {
        None
    }
    async fn describe(&self) -> String {
        "Sayiir 0.4.0's own InMemoryBackend (crates.io), the baseline of the memory backend.".into()
    }
    async fn cleanup(&self) {}
}

fn main() {
    run::<Baseline>(None);
}
