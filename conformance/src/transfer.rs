//! `WorkflowTransfer` (§ Transfer): exporting everything stored for a workflow without
//! changing it, and importing it back whole.
//!
//! Not part of `conformance_suite!(H)` without a group list: the trait is an extension a
//! third-party backend may not implement. Name the group to run it:
//! `conformance_suite!(H; transfer)`.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use chrono::Duration;
use sayiir_persistence::sayiir_core::snapshot::SignalKind;
use sayiir_persistence::transfer::{ImportOutcome, WorkflowRecord, WorkflowTransfer};
use sayiir_persistence::{
    BackendError, SignalStore, SnapshotStore, TaskClaimStore, TaskResultStore,
};

use crate::Harness;
use crate::fixtures::{
    assert_backend_error, assert_same, assert_same_record, at_signal, at_task, completed_snapshot,
    find_all, request, seed_every_state, task_of, unique_id, worker,
};

/// Exports `id`, which must be stored.
async fn export<H: Harness>(h: &H, id: &str) -> WorkflowRecord
where
    H::Backend: WorkflowTransfer,
{
    h.backend().export_workflow(id).await.unwrap().unwrap_or_else(|| panic!("{id} not exported"))
}

/// A workflow in every state (with archive, requests and events) exported, deleted and
/// imported again exports the same record, and the 0.4.0 reads give what they gave before.
pub async fn every_state_survives_export_and_import<H: Harness>(h: Arc<H>)
where
    H::Backend: WorkflowTransfer,
{
    let b = h.backend();
    for id in seed_every_state(h.backend()).await {
        let before = export(&*h, &id).await;
        let loaded = b.load_snapshot(&id).await.unwrap();
        assert_same(before.snapshot.as_ref().unwrap(), &loaded);
        b.delete_snapshot(&id).await.unwrap();
        assert!(b.export_workflow(&id).await.unwrap().is_none(), "{id}: deleted, still exported");
        assert_eq!(b.import_workflow(&before).await.unwrap(), ImportOutcome::Imported, "{id}");
        let after = export(&*h, &id).await;
        assert_same_record(&after, &before);
        assert_same(&b.load_snapshot(&id).await.unwrap(), &loaded);
        for (task, output) in &before.archived_results {
            let served = b.load_task_result(&id, task).await.unwrap();
            assert_eq!(served.as_ref(), Some(output), "{id}: archived result {task}");
        }
        for kind in [SignalKind::Cancel, SignalKind::Pause] {
            let expected = match kind {
                SignalKind::Cancel => &before.cancel_request,
                SignalKind::Pause => &before.pause_request,
            };
            let got = b.get_signal(&id, kind).await.unwrap();
            assert_eq!(got.map(|r| r.reason), expected.as_ref().map(|r| r.reason.clone()), "{id}");
        }
        for (name, queue) in &before.events {
            for payload in queue {
                let consumed = b.consume_event(&id, name).await.unwrap();
                assert_eq!(consumed.as_ref(), Some(payload), "{id}: events of {name} in order");
            }
            assert_eq!(b.consume_event(&id, name).await.unwrap(), None, "{id}: {name} drained");
        }
    }
}

/// An export reads without changing anything: no event is consumed, two exports agree, and an
/// instance with nothing stored exports as `None`.
pub async fn export_leaves_the_store_unchanged<H: Harness>(h: Arc<H>)
where
    H::Backend: WorkflowTransfer,
{
    let b = h.backend();
    let ids = seed_every_state(h.backend()).await;
    for id in &ids {
        let first = export(&*h, id).await;
        let second = export(&*h, id).await;
        assert_same_record(&second, &first);
    }
    let waiting = ids.iter().find(|id| id.starts_with("waiting")).unwrap();
    let consumed = b.consume_event(waiting, "approve").await.unwrap();
    assert_eq!(consumed.as_deref(), Some(&b"first"[..]), "the export consumed an event");
    assert!(b.export_workflow(&unique_id("nothing")).await.unwrap().is_none());
}

/// An import of an instance the store already holds (a snapshot, or only events) stores
/// nothing and says so; the stored data is left as it was.
pub async fn import_skips_what_is_stored<H: Harness>(h: Arc<H>)
where
    H::Backend: WorkflowTransfer,
{
    let b = h.backend();
    let id = unique_id("stored");
    b.save_snapshot(&at_task(&id, "t")).await.unwrap();
    let mut other = WorkflowRecord::of_snapshot(completed_snapshot(&id));
    other.events.insert("e".into(), vec![Bytes::from_static(b"x")]);
    assert_eq!(b.import_workflow(&other).await.unwrap(), ImportOutcome::AlreadyStored);
    assert_eq!(b.load_snapshot(&id).await.unwrap().state.as_ref(), "InProgress");
    assert_eq!(b.consume_event(&id, "e").await.unwrap(), None, "nothing of the record stored");

    let early = unique_id("early");
    b.send_event(&early, "go", Bytes::from_static(b"1")).await.unwrap();
    let record = WorkflowRecord::of_snapshot(at_task(&early, "t"));
    assert_eq!(b.import_workflow(&record).await.unwrap(), ImportOutcome::AlreadyStored);
    assert!(b.load_snapshot(&early).await.is_err(), "no snapshot stored beside existing events");
    assert_eq!(b.consume_event(&early, "go").await.unwrap().as_deref(), Some(&b"1"[..]));
}

/// Events sent to an instance that has no snapshot are listed by `list_unstarted_queues`,
/// export as a record without snapshot, and import back; instances with a snapshot are not
/// listed.
pub async fn unstarted_queues_are_listed_and_carried<H: Harness>(h: Arc<H>)
where
    H::Backend: WorkflowTransfer,
{
    let b = h.backend();
    let early: Vec<String> = (0..3).map(|i| unique_id(&format!("early-{i}"))).collect();
    for id in &early {
        b.send_event(id, "go", Bytes::from_static(b"1")).await.unwrap();
        b.send_event(id, "go", Bytes::from_static(b"2")).await.unwrap();
    }
    let started = unique_id("started");
    b.save_snapshot(&at_signal(&started, "s", "go", None, None)).await.unwrap();
    b.send_event(&started, "go", Bytes::from_static(b"1")).await.unwrap();
    let drained = unique_id("drained");
    b.send_event(&drained, "go", Bytes::from_static(b"1")).await.unwrap();
    b.consume_event(&drained, "go").await.unwrap();

    let listed = all_unstarted(b).await;
    for id in &early {
        assert!(listed.contains(id), "{id} has events and no snapshot: listed");
    }
    assert!(!listed.contains(&started), "an instance with a snapshot is not listed");
    assert!(!listed.contains(&drained), "an instance whose queue is drained is not listed");

    let record = export(&*h, &early[0]).await;
    assert!(record.snapshot.is_none());
    let payloads = vec![Bytes::from_static(b"1"), Bytes::from_static(b"2")];
    assert_eq!(record.events.get("go"), Some(&payloads));
    for _ in 0..2 {
        b.consume_event(&early[0], "go").await.unwrap();
    }
    assert!(b.export_workflow(&early[0]).await.unwrap().is_none(), "drained: nothing to export");
    assert_eq!(b.import_workflow(&record).await.unwrap(), ImportOutcome::Imported);
    assert_same_record(&export(&*h, &early[0]).await, &record);
    assert!(all_unstarted(b).await.contains(&early[0]), "imported queue listed again");
}

/// Every instance `list_unstarted_queues` lists, page after page: pages of 1 first, so paging is
/// exercised, then pages of 1,000 (on Redis a page follows one `SCAN` call over a shared
/// keyspace, or one shard's part of it, so any page may hold none of ours).
async fn all_unstarted<B: WorkflowTransfer>(b: &B) -> BTreeSet<String> {
    let mut listed = BTreeSet::new();
    let mut cursor: Option<String> = None;
    for page_number in 0.. {
        let limit = if page_number < 3 { 1 } else { 1000 };
        let page = b.list_unstarted_queues(cursor.as_deref(), limit).await.unwrap();
        listed.extend(page.instance_ids);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(page_number < 1_000_000, "the pages never ended");
    }
    listed
}

/// An imported workflow is scheduled as it was: a runnable one is found, one with a pending
/// request is not, a signal wait with a buffered event is advanced.
pub async fn imported_workflows_are_scheduled_as_before<H: Harness>(h: Arc<H>)
where
    H::Backend: WorkflowTransfer,
{
    let b = h.backend();
    let ready = unique_id("ready");
    let held = unique_id("held");
    let woken = unique_id("woken");
    let mut records = vec![
        WorkflowRecord::of_snapshot(at_task(&ready, "t")),
        WorkflowRecord::of_snapshot(at_task(&held, "t")),
        WorkflowRecord::of_snapshot(at_signal(&woken, "s", "go", None, Some("after"))),
    ];
    records[1].pause_request = Some(request("hold"));
    records[2].events.insert("go".into(), vec![Bytes::from_static(b"payload")]);
    for record in &records {
        assert_eq!(b.import_workflow(record).await.unwrap(), ImportOutcome::Imported);
    }
    let found = find_all(b, &worker()).await;
    assert!(task_of(&found, &ready).is_some(), "imported runnable workflow found");
    assert!(task_of(&found, &held).is_none(), "a pending pause keeps it out");
    let advanced = task_of(&found, &woken).map(|t| t.task_id.clone());
    assert_eq!(advanced.as_deref(), Some("after"), "the buffered event advanced the wait");
}

/// Inconsistent records are refused before any I/O, with an error naming the instance; nothing
/// is stored.
pub async fn bad_records_are_refused<H: Harness>(h: Arc<H>)
where
    H::Backend: WorkflowTransfer,
{
    let b = h.backend();
    let id = unique_id("bad");
    let mut wrong_id = WorkflowRecord::of_snapshot(at_task(&unique_id("other"), "t"));
    wrong_id.instance_id.clone_from(&id);
    let mut archive_in_progress = WorkflowRecord::of_snapshot(at_task(&id, "t"));
    archive_in_progress.archived_results.insert("a".into(), Bytes::new());
    let mut request_alone =
        WorkflowRecord::of_events(&id, [("e".to_string(), vec![Bytes::new()])].into());
    request_alone.cancel_request = Some(request("x"));
    let empty_queue = WorkflowRecord::of_events(&id, [("e".to_string(), vec![])].into());
    let nothing = WorkflowRecord::of_events(&id, Default::default());
    let mut nul_task = WorkflowRecord::of_snapshot(completed_snapshot(&id));
    nul_task.archived_results.insert("a\0b".into(), Bytes::new());
    for (record, needle) in [
        (&wrong_id, "belongs to"),
        (&archive_in_progress, "archived results"),
        (&request_alone, "without a snapshot"),
        (&empty_queue, "empty"),
        (&nothing, "neither"),
        (&nul_task, "NUL"),
    ] {
        assert_backend_error(b.import_workflow(record).await, needle, needle);
        assert!(b.export_workflow(&id).await.unwrap().is_none(), "{needle}: something was stored");
    }
    assert_backend_error(b.list_unstarted_queues(None, 0).await, "limit", "limit 0");
    assert_backend_error(b.export_workflow("").await, "instance_id", "empty id");
}

/// `task_claims` lists the live claims of an instance, with their worker and times, and
/// leaves out expired and released ones.
pub async fn task_claims_lists_live_claims<H: Harness>(h: Arc<H>)
where
    H::Backend: WorkflowTransfer,
{
    let b = h.backend();
    let id = unique_id("claimed");
    b.save_snapshot(&at_task(&id, "t")).await.unwrap();
    assert!(b.task_claims(&id).await.unwrap().is_empty());
    let held = b.claim_task(&id, "t", "worker-a", Some(Duration::hours(1))).await.unwrap().unwrap();
    b.claim_task(&id, "u", "worker-b", None).await.unwrap().unwrap();
    b.claim_task(&id, "gone", "worker-c", Some(Duration::zero())).await.unwrap();
    let claims = b.task_claims(&id).await.unwrap();
    let seen: Vec<(&str, &str, bool)> = claims
        .iter()
        .map(|c| (c.task_id.as_str(), c.worker_id.as_str(), c.expires_at.is_some()))
        .collect();
    assert_eq!(seen, vec![("t", "worker-a", true), ("u", "worker-b", false)]);
    assert_eq!(claims[0].expires_at, held.expires_at);
    assert!(claims[0].claimed_at.abs_diff(held.claimed_at) <= 1, "claimed_at as claim_task said");
    b.release_task_claim(&id, "t", "worker-a").await.unwrap();
    let left: Vec<String> =
        b.task_claims(&id).await.unwrap().into_iter().map(|c| c.task_id).collect();
    assert_eq!(left, vec!["u".to_string()]);
    assert!(b.task_claims(&unique_id("none")).await.unwrap().is_empty());
}

/// A snapshot that cannot be decoded fails its export with `Serialization` naming the
/// instance, rather than exporting something else.
pub async fn undecodable_snapshot_fails_its_export<H: Harness>(h: Arc<H>)
where
    H::Backend: WorkflowTransfer,
{
    let id = unique_id("corrupt");
    h.backend().save_snapshot(&at_task(&id, "t")).await.unwrap();
    h.write_raw_snapshot(&id, b"\xc1\x01 not a snapshot").await;
    match h.backend().export_workflow(&id).await {
        Err(BackendError::Serialization(message)) => assert!(message.contains(&id), "{message}"),
        other => panic!("expected Serialization naming {id}, got {other:?}"),
    }
}
