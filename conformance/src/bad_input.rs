//! Unusual input (§ Id rules, § Payloads are opaque bytes, § One snapshot format for every
//! backend): ids that must be rejected (empty, NUL, over 1024 bytes) by every method with a
//! `Backend` error naming the parameter and nothing written; ids that must work verbatim (1024
//! bytes, quotes, `%`, `*`, `{}`, `:`, spaces, emoji, newlines, SQL and Lua syntax); payloads that
//! must round-trip exactly (empty, binary, 16 MiB); and corrupted stored snapshots (`Serialization`
//! naming the instance, others unaffected).

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use sayiir_persistence::sayiir_core::snapshot::{
    SignalKind, SignalRequest, TaskResult, WorkflowSnapshot, WorkflowSnapshotState,
};
use sayiir_persistence::{
    BackendError, SignalStore, SnapshotStore, TaskClaimStore, TaskResultStore,
};

use crate::Harness;
use crate::fixtures::{
    ALL, aging, assert_backend_error, assert_bytes, assert_not_found, assert_same, at_delay,
    at_signal, at_task, bad_ids, binary_payload, completed, find_all, hour, in_progress, json,
    large_payload, request, special_ids, task_of, unique_id, with_results,
};

/// A valid snapshot saved under a fresh id, returned for "nothing changed" checks.
async fn saved<H: Harness>(h: &H, prefix: &str) -> WorkflowSnapshot {
    let snapshot = in_progress(&unique_id(prefix));
    h.backend().save_snapshot(&snapshot).await.unwrap();
    snapshot
}

/// `save_snapshot` with a bad `instance_id` fails naming `instance_id`; nothing is listed.
pub async fn save_snapshot_rejects_bad_instance_id<H: Harness>(h: Arc<H>) {
    for (label, bad) in bad_ids() {
        let result = h.backend().save_snapshot(&in_progress(&bad)).await;
        assert_backend_error(result, "instance_id", label);
    }
    let listed: HashSet<String> = h.backend().list_snapshots().await.unwrap().into_iter().collect();
    for (label, bad) in bad_ids() {
        assert!(!listed.contains(&bad), "{label} id was stored");
    }
}

/// `save_task_result` with a bad instance or task id fails naming it; the snapshot is
/// unchanged.
pub async fn save_task_result_rejects_bad_ids<H: Harness>(h: Arc<H>) {
    let snapshot = saved(&*h, "bad-str").await;
    let id = &snapshot.instance_id;
    for (label, bad) in bad_ids() {
        let r = h.backend().save_task_result(&bad, "t", Bytes::from_static(b"x")).await;
        assert_backend_error(r, "instance_id", label);
        let r = h.backend().save_task_result(id, &bad, Bytes::from_static(b"x")).await;
        assert_backend_error(r, "task_id", label);
    }
    assert_same(&h.backend().load_snapshot(id).await.unwrap(), &snapshot);
}

/// `load_snapshot` and `delete_snapshot` with a bad id fail naming `instance_id`.
pub async fn load_and_delete_reject_bad_ids<H: Harness>(h: Arc<H>) {
    for (label, bad) in bad_ids() {
        assert_backend_error(h.backend().load_snapshot(&bad).await, "instance_id", label);
        assert_backend_error(h.backend().delete_snapshot(&bad).await, "instance_id", label);
    }
}

/// `store_signal`, `get_signal` and `clear_signal` with a bad id fail naming `instance_id`.
pub async fn signal_methods_reject_bad_ids<H: Harness>(h: Arc<H>) {
    for (label, bad) in bad_ids() {
        for kind in [SignalKind::Cancel, SignalKind::Pause] {
            let r = h.backend().store_signal(&bad, kind, request("x")).await;
            assert_backend_error(r, "instance_id", label);
            assert_backend_error(h.backend().get_signal(&bad, kind).await, "instance_id", label);
            assert_backend_error(h.backend().clear_signal(&bad, kind).await, "instance_id", label);
        }
    }
}

/// `send_event` with a bad instance id or signal name fails naming it; nothing is queued
/// under the valid half.
pub async fn send_event_rejects_bad_ids<H: Harness>(h: Arc<H>) {
    let id = unique_id("bad-send");
    for (label, bad) in bad_ids() {
        let r = h.backend().send_event(&bad, "go", Bytes::from_static(b"x")).await;
        assert_backend_error(r, "instance_id", label);
        let r = h.backend().send_event(&id, &bad, Bytes::from_static(b"x")).await;
        assert_backend_error(r, "signal_name", label);
    }
    assert_eq!(h.backend().consume_event(&id, "go").await.unwrap(), None);
}

/// `consume_event` with a bad instance id or signal name fails naming it.
pub async fn consume_event_rejects_bad_ids<H: Harness>(h: Arc<H>) {
    let id = unique_id("bad-consume");
    h.backend().send_event(&id, "go", Bytes::from_static(b"kept")).await.unwrap();
    for (label, bad) in bad_ids() {
        assert_backend_error(h.backend().consume_event(&bad, "go").await, "instance_id", label);
        assert_backend_error(h.backend().consume_event(&id, &bad).await, "signal_name", label);
    }
    let kept = h.backend().consume_event(&id, "go").await.unwrap();
    assert_eq!(kept.as_deref(), Some(&b"kept"[..]));
}

/// `check_and_cancel`, `check_and_pause` and `unpause` with a bad id fail naming
/// `instance_id`.
pub async fn guards_reject_bad_ids<H: Harness>(h: Arc<H>) {
    for (label, bad) in bad_ids() {
        let r = h.backend().check_and_cancel(&bad, Some("t")).await;
        assert_backend_error(r, "instance_id", label);
        assert_backend_error(h.backend().check_and_pause(&bad).await, "instance_id", label);
        assert_backend_error(h.backend().unpause(&bad).await, "instance_id", label);
    }
}

/// `claim_task` with a bad instance, task or worker id fails naming it; no claim is made.
pub async fn claim_rejects_bad_ids<H: Harness>(h: Arc<H>) {
    let id = unique_id("bad-claim");
    for (label, bad) in bad_ids() {
        let r = h.backend().claim_task(&bad, "t", "w", None).await;
        assert_backend_error(r, "instance_id", label);
        let r = h.backend().claim_task(&id, &bad, "w", None).await;
        assert_backend_error(r, "task_id", label);
        let r = h.backend().claim_task(&id, "t", &bad, None).await;
        assert_backend_error(r, "worker_id", label);
    }
    let claim = h.backend().claim_task(&id, "t", "w", Some(hour())).await.unwrap();
    assert!(claim.is_some(), "a rejected call left a claim behind");
}

/// `release_task_claim` with bad ids fails naming them; the existing claim is kept.
pub async fn release_rejects_bad_ids<H: Harness>(h: Arc<H>) {
    let id = unique_id("bad-release");
    h.backend().claim_task(&id, "t", "w", None).await.unwrap().unwrap();
    for (label, bad) in bad_ids() {
        let r = h.backend().release_task_claim(&bad, "t", "w").await;
        assert_backend_error(r, "instance_id", label);
        let r = h.backend().release_task_claim(&id, &bad, "w").await;
        assert_backend_error(r, "task_id", label);
        let r = h.backend().release_task_claim(&id, "t", &bad).await;
        assert_backend_error(r, "worker_id", label);
    }
    assert!(h.backend().claim_task(&id, "t", "w2", None).await.unwrap().is_none());
    h.backend().release_task_claim(&id, "t", "w").await.unwrap();
}

/// `extend_task_claim` with bad ids fails naming them; the existing claim is unchanged.
pub async fn extend_rejects_bad_ids<H: Harness>(h: Arc<H>) {
    let id = unique_id("bad-extend");
    h.backend().claim_task(&id, "t", "w", Some(hour())).await.unwrap().unwrap();
    for (label, bad) in bad_ids() {
        let r = h.backend().extend_task_claim(&bad, "t", "w", -hour() * 3).await;
        assert_backend_error(r, "instance_id", label);
        let r = h.backend().extend_task_claim(&id, &bad, "w", -hour() * 3).await;
        assert_backend_error(r, "task_id", label);
        let r = h.backend().extend_task_claim(&id, "t", &bad, -hour() * 3).await;
        assert_backend_error(r, "worker_id", label);
    }
    assert!(h.backend().claim_task(&id, "t", "w2", None).await.unwrap().is_none());
}

/// `find_available_tasks` with a bad worker id fails naming `worker_id`.
pub async fn find_rejects_bad_worker_id<H: Harness>(h: Arc<H>) {
    for (label, bad) in bad_ids() {
        let r = h.backend().find_available_tasks(&bad, 10, aging(), &[]).await;
        assert_backend_error(r, "worker_id", label);
    }
}

/// `load_task_result` with a bad instance or task id fails naming it.
pub async fn load_task_result_rejects_bad_ids<H: Harness>(h: Arc<H>) {
    let snapshot = saved(&*h, "bad-ltr").await;
    for (label, bad) in bad_ids() {
        let r = h.backend().load_task_result(&bad, "a").await;
        assert_backend_error(r, "instance_id", label);
        let r = h.backend().load_task_result(&snapshot.instance_id, &bad).await;
        assert_backend_error(r, "task_id", label);
    }
}

/// A rejected id never turns into `NotFound`, even for methods that would answer
/// `NotFound` for a valid unknown id (validation comes before any lookup).
pub async fn validation_comes_before_lookup<H: Harness>(h: Arc<H>) {
    let r = h.backend().release_task_claim("", "t", "w").await;
    assert!(matches!(r, Err(BackendError::Backend(_))), "{r:?}");
    let r = h.backend().unpause("").await;
    assert!(matches!(r, Err(BackendError::Backend(_))), "{r:?}");
    let r = h.backend().store_signal("a\0", SignalKind::Cancel, request("x")).await;
    assert!(matches!(r, Err(BackendError::Backend(_))), "{r:?}");
}

/// Ids of exactly 1024 bytes (ASCII, and 4-byte characters) work in every method family.
pub async fn max_length_ids_work<H: Harness>(h: Arc<H>) {
    for long in ["i".repeat(1024), "🦀".repeat(256)] {
        let task = "t".repeat(1024);
        let worker = "w".repeat(1024);
        let name = "n".repeat(1024);
        let id = long.clone();
        h.backend().save_snapshot(&at_task(&id, &task)).await.unwrap();
        assert_eq!(h.backend().load_snapshot(&id).await.unwrap().instance_id, id);
        assert!(h.backend().list_snapshots().await.unwrap().contains(&id));
        let found = find_all(h.backend(), &worker).await;
        assert_eq!(task_of(&found, &id).expect("not found").task_id, task);
        let claim = h.backend().claim_task(&id, &task, &worker, None).await.unwrap().unwrap();
        assert_eq!(claim.worker_id, worker);
        h.backend().extend_task_claim(&id, &task, &worker, hour()).await.unwrap();
        h.backend().release_task_claim(&id, &task, &worker).await.unwrap();
        h.backend().save_task_result(&id, &task, Bytes::from_static(b"r")).await.unwrap();
        assert!(h.backend().load_task_result(&id, &task).await.unwrap().is_some());
        h.backend().send_event(&id, &name, Bytes::from_static(b"e")).await.unwrap();
        assert!(h.backend().consume_event(&id, &name).await.unwrap().is_some());
        h.backend().store_signal(&id, SignalKind::Cancel, request("x")).await.unwrap();
        assert!(h.backend().check_and_cancel(&id, Some(&task)).await.unwrap());
        h.backend().delete_snapshot(&id).await.unwrap();
    }
}

/// Special-character instance ids are saved, loaded and listed verbatim.
pub async fn special_ids_snapshots_verbatim<H: Harness>(h: Arc<H>) {
    let ids = special_ids("snap");
    for id in &ids {
        let mut snapshot = with_results(id, &[(id.as_str(), b"out")], id);
        snapshot.task_tags = vec![id.clone()];
        snapshot.trace_parent = Some(id.clone());
        h.backend().save_snapshot(&snapshot).await.unwrap();
        let loaded = h.backend().load_snapshot(id).await.unwrap();
        assert_same(&loaded, &snapshot);
        assert_eq!(&loaded.instance_id, id);
    }
    let listed: HashSet<String> = h.backend().list_snapshots().await.unwrap().into_iter().collect();
    for id in &ids {
        assert!(listed.contains(id), "{id:?} not listed verbatim");
    }
}

/// Special-character ids work for claims (returned verbatim, and release/extend find them)
/// and never collide with each other.
pub async fn special_ids_claims_verbatim<H: Harness>(h: Arc<H>) {
    let ids = special_ids("claim");
    for id in &ids {
        let claim = h.backend().claim_task(id, id, id, Some(hour())).await.unwrap().unwrap();
        assert_eq!((&claim.instance_id, &claim.task_id, &claim.worker_id), (id, id, id));
    }
    for id in &ids {
        assert!(h.backend().claim_task(id, id, "other", None).await.unwrap().is_none());
        h.backend().extend_task_claim(id, id, id, hour()).await.unwrap();
        h.backend().release_task_claim(id, id, id).await.unwrap();
    }
}

/// Special-character instance ids and signal names work for events, each queue separate.
pub async fn special_ids_events_verbatim<H: Harness>(h: Arc<H>) {
    let ids = special_ids("event");
    for id in &ids {
        h.backend().send_event(id, id, Bytes::from(id.clone().into_bytes())).await.unwrap();
    }
    for id in &ids {
        let got = h.backend().consume_event(id, id).await.unwrap();
        assert_eq!(got.as_deref(), Some(id.as_bytes()), "queue of {id:?}");
        assert_eq!(h.backend().consume_event(id, id).await.unwrap(), None);
    }
}

/// Special-character instance ids work for signals and the guards, and requests with such
/// reasons round-trip.
pub async fn special_ids_signals_verbatim<H: Harness>(h: Arc<H>) {
    for id in special_ids("signal") {
        h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
        h.backend().store_signal(&id, SignalKind::Pause, request(&id)).await.unwrap();
        let got = h.backend().get_signal(&id, SignalKind::Pause).await.unwrap().unwrap();
        assert_eq!(got.reason.as_deref(), Some(id.as_str()));
        assert!(h.backend().check_and_pause(&id).await.unwrap());
        assert_eq!(h.backend().unpause(&id).await.unwrap().instance_id, id);
    }
}

/// Special-character instance, task, worker ids and tags come back verbatim from find, and
/// results stored under special task ids are served.
pub async fn special_ids_find_and_results_verbatim<H: Harness>(h: Arc<H>) {
    let ids = special_ids("find");
    for id in &ids {
        let mut snapshot = at_task(id, id);
        snapshot.task_tags = vec![id.clone()];
        h.backend().save_snapshot(&snapshot).await.unwrap();
    }
    for id in &ids {
        let found =
            h.backend().find_available_tasks(id, ALL, aging(), std::slice::from_ref(id)).await;
        let found = found.unwrap();
        let got = task_of(&found, id).unwrap_or_else(|| panic!("{id:?} not found"));
        assert_eq!(&got.task_id, id);
        h.backend().save_task_result(id, id, Bytes::from_static(b"r")).await.unwrap();
        assert!(h.backend().load_task_result(id, id).await.unwrap().is_some());
    }
}

/// Empty, binary and 16 MiB outputs round-trip exactly through `save_task_result` and
/// `load_task_result`.
pub async fn task_result_payloads_exact<H: Harness>(h: Arc<H>) {
    let id = unique_id("payload-str");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    let large = large_payload();
    for (task, payload) in [("empty", Bytes::new()), ("binary", binary_payload()), ("large", large)]
    {
        h.backend().save_task_result(&id, task, payload.clone()).await.unwrap();
        let got = h.backend().load_task_result(&id, task).await.unwrap().expect(task);
        assert_bytes(&got, &payload, task);
    }
}

/// Empty, binary and 16 MiB payloads round-trip exactly through events.
pub async fn event_payloads_exact<H: Harness>(h: Arc<H>) {
    let id = unique_id("payload-ev");
    let payloads = [Bytes::new(), binary_payload(), large_payload()];
    for payload in &payloads {
        h.backend().send_event(&id, "go", payload.clone()).await.unwrap();
    }
    for (i, payload) in payloads.iter().enumerate() {
        let got = h.backend().consume_event(&id, "go").await.unwrap().expect("event lost");
        assert_bytes(&got, payload, &format!("event {i}"));
    }
}

/// Binary and 16 MiB initial inputs and task outputs round-trip through `save_snapshot`.
pub async fn snapshot_payloads_exact<H: Harness>(h: Arc<H>) {
    let cases = [
        (binary_payload(), binary_payload()),
        (large_payload(), Bytes::new()),
        (Bytes::new(), large_payload()),
    ];
    for (input, output) in cases {
        let id = unique_id("payload-snap");
        let mut snapshot = with_results(&id, &[("small", b"s")], "next");
        snapshot.initial_input = Some(input.clone());
        snapshot.mark_task_completed("big".to_string(), output.clone());
        h.backend().save_snapshot(&snapshot).await.unwrap();
        let loaded = h.backend().load_snapshot(&id).await.unwrap();
        assert_bytes(loaded.initial_input.as_deref().expect("input lost"), &input, "input");
        let results = completed(&loaded.state);
        assert_bytes(&results["big"], &output, "task output");
        assert_eq!(results["small"], Bytes::from_static(b"s"));
    }
}

/// Binary and 16 MiB final outputs of Completed snapshots round-trip, and the 16 MiB result
/// archived at completion is served exactly.
pub async fn completed_payloads_exact<H: Harness>(h: Arc<H>) {
    for payload in [Bytes::new(), binary_payload(), large_payload()] {
        let id = unique_id("payload-done");
        let mut snapshot = with_results(&id, &[], "t");
        snapshot.mark_task_completed("t".to_string(), payload.clone());
        h.backend().save_snapshot(&snapshot).await.unwrap();
        snapshot.mark_completed(payload.clone());
        h.backend().save_snapshot(&snapshot).await.unwrap();
        let loaded = h.backend().load_snapshot(&id).await.unwrap();
        assert_bytes(&loaded.final_output_bytes().expect("not completed"), &payload, "final");
        let archived = h.backend().load_task_result(&id, "t").await.unwrap().expect("archive");
        assert_bytes(&archived, &payload, "archived");
    }
}

/// A corrupted blob loads as `Serialization` naming the instance, whatever the garbage.
pub async fn corrupted_snapshot_is_serialization_error<H: Harness>(h: Arc<H>) {
    let blobs: [&[u8]; 5] =
        [b"", b"garbage", b"\xC1\x01\xFF\xFF\xFF", b"{\"instance_id\": 5}", &[0xC1, 0x7F, 1, 2]];
    for blob in blobs {
        let id = unique_id("corrupt");
        h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
        h.write_raw_snapshot(&id, blob).await;
        match h.backend().load_snapshot(&id).await {
            Err(BackendError::Serialization(message)) => {
                assert!(message.contains(&id), "message {message:?} does not name {id}");
            }
            other => panic!("blob {blob:?}: expected Serialization, got {other:?}"),
        }
    }
}

/// A corrupted snapshot does not affect other instances: they load, list and find fine.
pub async fn corruption_is_contained<H: Harness>(h: Arc<H>) {
    let good = in_progress(&unique_id("good"));
    let bad = unique_id("corrupt");
    h.backend().save_snapshot(&good).await.unwrap();
    h.backend().save_snapshot(&in_progress(&bad)).await.unwrap();
    h.write_raw_snapshot(&bad, b"\x00\x01\x02").await;
    assert_eq!(json(&h.backend().load_snapshot(&good.instance_id).await.unwrap()), json(&good));
    let listed = h.backend().list_snapshots().await.unwrap();
    assert!(listed.contains(&good.instance_id) && listed.contains(&bad));
    let found = find_all(h.backend(), "w").await;
    assert!(task_of(&found, &good.instance_id).is_some());
}

/// A corrupted snapshot can be repaired by saving over it, and deleted.
pub async fn corrupted_snapshot_can_be_overwritten_or_deleted<H: Harness>(h: Arc<H>) {
    let id = unique_id("corrupt-fix");
    let snapshot = in_progress(&id);
    h.backend().save_snapshot(&snapshot).await.unwrap();
    h.write_raw_snapshot(&id, b"junk").await;
    h.backend().save_snapshot(&snapshot).await.unwrap();
    assert_same(&h.backend().load_snapshot(&id).await.unwrap(), &snapshot);
    h.write_raw_snapshot(&id, b"junk").await;
    h.backend().delete_snapshot(&id).await.unwrap();
    assert!(matches!(h.backend().load_snapshot(&id).await, Err(BackendError::NotFound(_))));
}

/// § One snapshot format for every backend: a blob in the shared codec format, written straight
/// into storage (as another backend would have written it), loads as the snapshot it encodes.
pub async fn shared_codec_blob_loads<H: Harness>(h: Arc<H>) {
    let id = unique_id("codec");
    let mut snapshot = crate::fixtures::fully_populated(&id);
    h.backend().save_snapshot(&snapshot).await.unwrap();
    let blob = sayiir_persistence::codec::encode_snapshot(&snapshot).unwrap();
    h.write_raw_snapshot(&id, &blob).await;
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    snapshot.trace_parent = loaded.trace_parent.clone();
    assert_eq!(json(&loaded), json(&snapshot));
}

/// § One snapshot format for every backend: a JSON blob (the format Sayiir 0.4's PostgreSQL backend
/// stores) loads too.
pub async fn legacy_json_blob_loads<H: Harness>(h: Arc<H>) {
    let id = unique_id("codec-json");
    let snapshot = with_results(&id, &[("a", &[0, 255, 7])], "b");
    h.backend().save_snapshot(&snapshot).await.unwrap();
    let blob = serde_json::to_vec(&snapshot).unwrap();
    h.write_raw_snapshot(&id, &blob).await;
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    assert_eq!(json(&loaded), json(&snapshot));
}

/// Snapshots that differ from a valid one in one stored field, each with the field's name and
/// the label of what is wrong.
fn snapshots_with_bad_fields(id: &str) -> Vec<(&'static str, &'static str, WorkflowSnapshot)> {
    let mut cases = Vec::new();
    for (label, bad) in bad_ids() {
        let mut result = with_results(id, &[("ok", b"out")], "next");
        if let WorkflowSnapshotState::InProgress { completed_tasks, .. } = &mut result.state {
            completed_tasks
                .insert(bad.clone(), TaskResult { task_id: bad.clone(), output: Bytes::new() });
        }
        cases.push(("completed task_id", label, result));
        cases.push(("current task_id", label, at_task(id, &bad)));
        cases.push(("signal_name", label, at_signal(id, "s", &bad, None, Some("next"))));
        cases.push(("next task_id", label, at_delay(id, "d", hour(), Some(&bad))));
    }
    let mut traced = in_progress(id);
    traced.trace_parent = Some("00-a\0b-01".to_string());
    cases.push(("trace_parent", "NUL", traced));
    let mut tagged = in_progress(id);
    tagged.task_tags = vec!["gpu".to_string(), "g\0pu".to_string()];
    cases.push(("task tag", "NUL", tagged));
    cases
}

/// `save_snapshot` checks every id and free-text field it stores, not only the instance id:
/// a bad one anywhere is a `Backend` error naming the field, before any I/O, for every
/// backend alike; the stored snapshot is left as it was.
pub async fn save_snapshot_rejects_bad_fields_inside<H: Harness>(h: Arc<H>) {
    let fresh = unique_id("bad-fields-new");
    let kept = saved(&*h, "bad-fields-kept").await;
    for (field, label, snapshot) in snapshots_with_bad_fields(&fresh) {
        let what = format!("{field} {label} in a new instance");
        assert_backend_error(
            h.backend().save_snapshot(&snapshot).await,
            "nothing was stored",
            &what,
        );
        assert_not_found(h.backend().load_snapshot(&fresh).await, &what);
    }
    for (field, label, snapshot) in snapshots_with_bad_fields(&kept.instance_id) {
        let what = format!("{field} {label} over a stored instance");
        let result = h.backend().save_snapshot(&snapshot).await;
        let needle = if field.contains("task_id") { "task_id" } else { field };
        assert_backend_error(result, needle, &what);
        assert_same(&h.backend().load_snapshot(&kept.instance_id).await.unwrap(), &kept);
    }
}

/// A NUL in the free text of a cancel or pause request is a `Backend` error before any I/O,
/// for every backend alike; nothing is stored.
pub async fn store_signal_rejects_nul_in_free_text<H: Harness>(h: Arc<H>) {
    let snapshot = saved(&*h, "bad-signal-text").await;
    let id = &snapshot.instance_id;
    let by_reason = SignalRequest::new(Some("a\0b".to_string()), Some("ops".to_string()));
    let by_author = SignalRequest::new(Some("why".to_string()), Some("o\0ps".to_string()));
    for (field, request) in [("reason", by_reason), ("requested_by", by_author)] {
        for kind in [SignalKind::Cancel, SignalKind::Pause] {
            let result = h.backend().store_signal(id, kind, request.clone()).await;
            assert_backend_error(result, field, &format!("{kind:?} with a NUL in {field}"));
            assert!(h.backend().get_signal(id, kind).await.unwrap().is_none(), "{kind:?} stored");
        }
    }
    assert_same(&h.backend().load_snapshot(id).await.unwrap(), &snapshot);
}
