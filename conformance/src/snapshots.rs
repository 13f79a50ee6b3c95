//! `SnapshotStore`: save, load, delete, list and `save_task_result` (contract section 3).

use std::sync::Arc;

use sayiir_persistence::{SnapshotStore};

use crate::Harness;
use crate::fixtures::{assert_same, fully_populated, unique_id};

/// A snapshot with every optional field, a trace parent and backdated timestamps loads back
/// exactly as saved.
pub async fn round_trip_fully_populated<H: Harness>(h: Arc<H>) {
    let id = unique_id("round-trip");
    let snapshot = fully_populated(&id);
    h.backend().save_snapshot(&snapshot).await.unwrap();
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    assert_same(&loaded, &snapshot);
}
