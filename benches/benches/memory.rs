//! Benchmarks of the in-memory backend: `cargo bench -p sayiir-persistence-benches --bench memory`.

use sayiir_persistence_benches::{NoRaw, Target, run};
use sayiir_persistence_memory::InMemoryBackend;

struct Memory(InMemoryBackend);

impl Target for Memory {
    type Backend = InMemoryBackend;
    type Raw = NoRaw;
    const NAME: &'static str = "memory";

    async fn open() -> Self {
        Memory(InMemoryBackend::new())
    }
    fn backend(&self) -> &InMemoryBackend {
        &self.0
    }
    async fn raw(&self) -> Option<NoRaw> {
        None
    }
    async fn storage_bytes(&self, _: &[String]) -> Option<u64> {
        None
    }
    async fn describe(&self) -> String {
        "In-process maps behind one mutex; no database, so no raw limit.".to_string()
    }
    async fn cleanup(&self) {}
}

fn main() {
    run::<Memory>(None);
}
