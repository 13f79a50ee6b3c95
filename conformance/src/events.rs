//! External events: `send_event` / `consume_event` (§ External events): FIFO per
//! (instance, signal name), isolation, unknown and terminal instances, empty queues,
//! duplicates and payload bytes. Concurrent consumers are in `concurrency`.

use std::sync::Arc;

use bytes::Bytes;
use sayiir_persistence::{SignalStore, SnapshotStore};

use crate::Harness;
use crate::fixtures::{
    assert_same, at_signal, binary_payload, cancelled_snapshot, completed_snapshot,
    failed_snapshot, in_progress, unique_id,
};

/// Sends `payloads` in order to `(id, name)`.
async fn send_all<H: Harness>(h: &H, id: &str, name: &str, payloads: &[&[u8]]) {
    for payload in payloads {
        h.backend().send_event(id, name, Bytes::copy_from_slice(payload)).await.unwrap();
    }
}

/// Consumes until empty and returns what came out, in order.
async fn drain<H: Harness>(h: &H, id: &str, name: &str) -> Vec<Bytes> {
    let mut out = Vec::new();
    while let Some(event) = h.backend().consume_event(id, name).await.unwrap() {
        out.push(event);
        assert!(out.len() <= 100_000, "queue never empties");
    }
    out
}

/// Events come out in the order they were sent.
pub async fn fifo_order<H: Harness>(h: Arc<H>) {
    let id = unique_id("ev-fifo");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    send_all(&*h, &id, "go", &[b"1", b"2", b"3"]).await;
    assert_eq!(drain(&*h, &id, "go").await, [&b"1"[..], b"2", b"3"]);
}

/// FIFO holds over many events.
pub async fn fifo_over_many_events<H: Harness>(h: Arc<H>) {
    let id = unique_id("ev-many");
    for i in 0..500u32 {
        h.backend().send_event(&id, "n", Bytes::from(i.to_be_bytes().to_vec())).await.unwrap();
    }
    let out = drain(&*h, &id, "n").await;
    let expected: Vec<Bytes> = (0..500u32).map(|i| Bytes::from(i.to_be_bytes().to_vec())).collect();
    assert_eq!(out, expected);
}

/// Interleaved sends and consumes keep FIFO order.
pub async fn fifo_interleaved<H: Harness>(h: Arc<H>) {
    let id = unique_id("ev-inter");
    send_all(&*h, &id, "go", &[b"a", b"b"]).await;
    assert_eq!(h.backend().consume_event(&id, "go").await.unwrap().as_deref(), Some(&b"a"[..]));
    send_all(&*h, &id, "go", &[b"c"]).await;
    assert_eq!(drain(&*h, &id, "go").await, [&b"b"[..], b"c"]);
}

/// Queues are isolated by signal name.
pub async fn isolated_by_name<H: Harness>(h: Arc<H>) {
    let id = unique_id("ev-name");
    send_all(&*h, &id, "approve", &[b"yes"]).await;
    send_all(&*h, &id, "reject", &[b"no"]).await;
    assert_eq!(drain(&*h, &id, "reject").await, [&b"no"[..]]);
    assert_eq!(drain(&*h, &id, "approve").await, [&b"yes"[..]]);
    assert_eq!(h.backend().consume_event(&id, "Approve").await.unwrap(), None, "case matters");
}

/// Queues are isolated by instance.
pub async fn isolated_by_instance<H: Harness>(h: Arc<H>) {
    let one = unique_id("ev-one");
    let two = unique_id("ev-two");
    send_all(&*h, &one, "go", &[b"one"]).await;
    assert_eq!(h.backend().consume_event(&two, "go").await.unwrap(), None);
    assert_eq!(drain(&*h, &one, "go").await, [&b"one"[..]]);
}

/// Names and instance ids containing ':' do not share a queue (instance `a:b` + name `c` vs
/// instance `a` + name `b:c`).
pub async fn colon_ids_do_not_collide<H: Harness>(h: Arc<H>) {
    let base = unique_id("ev-colon");
    let (one, two) = (format!("{base}:b"), base.clone());
    send_all(&*h, &one, "c", &[b"first"]).await;
    assert_eq!(h.backend().consume_event(&two, "b:c").await.unwrap(), None);
    send_all(&*h, &two, "b:c", &[b"second"]).await;
    assert_eq!(drain(&*h, &one, "c").await, [&b"first"[..]]);
    assert_eq!(drain(&*h, &two, "b:c").await, [&b"second"[..]]);
}

/// `send_event` to an instance that has no snapshot is accepted and kept.
pub async fn unknown_instance_accepted<H: Harness>(h: Arc<H>) {
    let id = unique_id("ev-unknown");
    send_all(&*h, &id, "go", &[b"early"]).await;
    assert_eq!(drain(&*h, &id, "go").await, [&b"early"[..]]);
}

/// Events sent before the snapshot exists survive its first save (they wait for the run).
pub async fn events_survive_first_save<H: Harness>(h: Arc<H>) {
    let id = unique_id("ev-early");
    send_all(&*h, &id, "go", &[b"early"]).await;
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    assert_eq!(drain(&*h, &id, "go").await, [&b"early"[..]]);
}

/// `send_event` to Completed, Failed and Cancelled instances is accepted and kept.
pub async fn terminal_instance_accepted<H: Harness>(h: Arc<H>) {
    for snapshot in [
        completed_snapshot(&unique_id("ev-done")),
        failed_snapshot(&unique_id("ev-failed")),
        cancelled_snapshot(&unique_id("ev-cancelled")),
    ] {
        h.backend().save_snapshot(&snapshot).await.unwrap();
        send_all(&*h, &snapshot.instance_id, "go", &[b"late"]).await;
        assert_eq!(drain(&*h, &snapshot.instance_id, "go").await, [&b"late"[..]]);
    }
}

/// An empty queue, an unknown name and an unknown instance all give `None`.
pub async fn empty_queue_is_none<H: Harness>(h: Arc<H>) {
    let id = unique_id("ev-empty");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    assert_eq!(h.backend().consume_event(&id, "go").await.unwrap(), None);
    assert_eq!(h.backend().consume_event(&unique_id("ev-nobody"), "go").await.unwrap(), None);
}

/// A drained queue gives `None`, then works again for new events.
pub async fn drained_queue_is_reusable<H: Harness>(h: Arc<H>) {
    let id = unique_id("ev-reuse");
    send_all(&*h, &id, "go", &[b"1"]).await;
    assert_eq!(drain(&*h, &id, "go").await.len(), 1);
    assert_eq!(h.backend().consume_event(&id, "go").await.unwrap(), None);
    send_all(&*h, &id, "go", &[b"2"]).await;
    assert_eq!(drain(&*h, &id, "go").await, [&b"2"[..]]);
}

/// Duplicate payloads are all kept.
pub async fn duplicates_kept<H: Harness>(h: Arc<H>) {
    let id = unique_id("ev-dup");
    send_all(&*h, &id, "go", &[b"same", b"same", b"same"]).await;
    assert_eq!(drain(&*h, &id, "go").await, [&b"same"[..], b"same", b"same"]);
}

/// An empty payload comes back as `Some(empty)`, distinct from `None`.
pub async fn empty_payload_kept<H: Harness>(h: Arc<H>) {
    let id = unique_id("ev-emptypayload");
    send_all(&*h, &id, "go", &[b"", b"x"]).await;
    assert_eq!(h.backend().consume_event(&id, "go").await.unwrap(), Some(Bytes::new()));
    assert_eq!(drain(&*h, &id, "go").await, [&b"x"[..]]);
}

/// A payload of every byte value comes back intact.
pub async fn binary_payload_intact<H: Harness>(h: Arc<H>) {
    let id = unique_id("ev-bin");
    h.backend().send_event(&id, "go", binary_payload()).await.unwrap();
    assert_eq!(h.backend().consume_event(&id, "go").await.unwrap(), Some(binary_payload()));
}

/// Sending an event does not touch the snapshot (even one waiting for that signal); only
/// `find_available_tasks` or the runtime consumes it.
pub async fn send_event_leaves_snapshot_alone<H: Harness>(h: Arc<H>) {
    let id = unique_id("ev-snap");
    let snapshot = at_signal(&id, "sid", "go", None, Some("next"));
    h.backend().save_snapshot(&snapshot).await.unwrap();
    send_all(&*h, &id, "go", &[b"payload"]).await;
    assert_same(&h.backend().load_snapshot(&id).await.unwrap(), &snapshot);
    assert_eq!(drain(&*h, &id, "go").await, [&b"payload"[..]]);
}
