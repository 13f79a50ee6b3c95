//! Atomicity under real parallelism (§ What must be atomic): claim races, concurrent
//! `save_task_result`, concurrent event consumers, the guards and `unpause` racing, owner
//! checks on release, torn reads of `save_snapshot`, and concurrent advancement in
//! `find_available_tasks` (conditional, once, never regressing a position).
//!
//! Every racer is a separate tokio task on the multi-threaded runtime, and all of a race's
//! racers are released together by a `tokio::sync::Barrier`. No case sleeps.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use sayiir_persistence::sayiir_core::snapshot::SignalKind;
use sayiir_persistence::{BackendError, SignalStore, SnapshotStore, TaskClaimStore};
use tokio::sync::Barrier;

use crate::Harness;
use crate::fixtures::{
    at_delay, at_signal, at_task, at_task_id, completed, find_all, hour, in_progress,
    paused_snapshot, request, status, task_of, unique_id, with_results,
};

/// Runs `n` racers `f(h, i)` as separate tokio tasks released together by a barrier, and
/// returns their outputs in racer order (a racer's panic is resumed here).
async fn race<H, T, F, Fut>(h: &Arc<H>, n: usize, f: F) -> Vec<T>
where
    H: Harness,
    T: Send + 'static,
    F: Fn(Arc<H>, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let f = Arc::new(f);
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (h, barrier, f) = (Arc::clone(h), Arc::clone(&barrier), Arc::clone(&f));
            tokio::spawn(async move {
                barrier.wait().await;
                f(h, i).await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for handle in handles {
        match handle.await {
            Ok(value) => out.push(value),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    out
}

/// 64 workers race `claim_task` on one task: exactly one `Some`, held by the worker it names;
/// repeated over 20 rounds with a fresh task each round (alternating TTL and no TTL).
pub async fn claim_race_one_winner<H: Harness>(h: Arc<H>) {
    let id = unique_id("race-claim");
    for round in 0..20 {
        let task = format!("task-{round}");
        let ttl = (round % 2 == 0).then(hour);
        let (id2, task2) = (id.clone(), task.clone());
        let results = race(&h, 64, move |h, i| {
            let (id, task) = (id2.clone(), task2.clone());
            async move { h.backend().claim_task(&id, &task, &format!("w{i}"), ttl).await }
        })
        .await;
        let mut winners = Vec::new();
        for (i, result) in results.into_iter().enumerate() {
            if let Some(claim) = result.unwrap() {
                assert_eq!(claim.worker_id, format!("w{i}"), "round {round}");
                winners.push(claim.worker_id);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        h.backend().release_task_claim(&id, &task, &winners[0]).await.unwrap();
    }
}

/// 32 workers race to replace an expired claim: exactly one wins.
pub async fn claim_race_over_expired_claim<H: Harness>(h: Arc<H>) {
    let id = unique_id("race-expired");
    h.backend().claim_task(&id, "t", "old", Some(-hour())).await.unwrap().unwrap();
    let id2 = id.clone();
    let results = race(&h, 32, move |h, i| {
        let id = id2.clone();
        async move { h.backend().claim_task(&id, "t", &format!("w{i}"), Some(hour())).await }
    })
    .await;
    let winners = results.into_iter().filter(|r| r.as_ref().unwrap().is_some()).count();
    assert_eq!(winners, 1);
}

/// 32 workers claiming 32 different tasks at once all succeed.
pub async fn concurrent_claims_of_distinct_tasks_all_win<H: Harness>(h: Arc<H>) {
    let id = unique_id("race-distinct");
    let id2 = id.clone();
    let results = race(&h, 32, move |h, i| {
        let id = id2.clone();
        async move { h.backend().claim_task(&id, &format!("t{i}"), "w", Some(hour())).await }
    })
    .await;
    for (i, result) in results.into_iter().enumerate() {
        assert!(result.unwrap().is_some(), "task t{i} not claimed");
    }
}

/// 32 concurrent `save_task_result` calls with distinct task ids on one instance all
/// survive (no lost update), next to the results saved before.
pub async fn concurrent_save_task_result_all_kept<H: Harness>(h: Arc<H>) {
    let id = unique_id("race-str");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    let id2 = id.clone();
    let results = race(&h, 32, move |h, i| {
        let id = id2.clone();
        async move {
            let output = Bytes::from(format!("out-{i}"));
            h.backend().save_task_result(&id, &format!("branch-{i}"), output).await
        }
    })
    .await;
    results.into_iter().for_each(|r| r.unwrap());
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    let results = completed(&loaded.state);
    for i in 0..32 {
        let got = results.get(&format!("branch-{i}"));
        assert_eq!(got, Some(&Bytes::from(format!("out-{i}"))), "branch-{i} lost");
    }
    assert_eq!(results.get("a"), Some(&Bytes::from_static(b"out-a")));
    assert_eq!(at_task_id(&loaded), "b", "position moved");
}

/// 8 consumers drain 200 events concurrently: no event twice, none lost, and each
/// consumer sees its events in send order.
pub async fn concurrent_consumers_no_duplicates_no_loss<H: Harness>(h: Arc<H>) {
    let id = unique_id("race-consume");
    for i in 0..200u32 {
        h.backend().send_event(&id, "go", Bytes::from(i.to_be_bytes().to_vec())).await.unwrap();
    }
    let id2 = id.clone();
    let per_consumer = race(&h, 8, move |h, _| {
        let id = id2.clone();
        async move {
            let mut got = Vec::new();
            while let Some(event) = h.backend().consume_event(&id, "go").await.unwrap() {
                got.push(u32::from_be_bytes(event[..].try_into().unwrap()));
            }
            got
        }
    })
    .await;
    let mut all = Vec::new();
    for got in &per_consumer {
        assert!(got.windows(2).all(|w| w[0] < w[1]), "a consumer saw events out of order");
        all.extend_from_slice(got);
    }
    while let Some(event) = h.backend().consume_event(&id, "go").await.unwrap() {
        all.push(u32::from_be_bytes(event[..].try_into().unwrap()));
    }
    let unique: HashSet<u32> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "an event was delivered twice");
    assert_eq!(unique, (0..200).collect::<HashSet<u32>>(), "an event was lost");
}

/// 4 senders and 4 consumers at once: every event is delivered exactly once and each
/// sender's events reach any one consumer in send order.
pub async fn concurrent_senders_and_consumers<H: Harness>(h: Arc<H>) {
    let id = unique_id("race-sendrecv");
    let id2 = id.clone();
    let outputs = race(&h, 8, move |h, i| {
        let id = id2.clone();
        async move {
            let mut got = Vec::new();
            if i < 4 {
                for n in 0..50u32 {
                    let payload = Bytes::from(vec![u8::try_from(i).unwrap(), n as u8]);
                    h.backend().send_event(&id, "go", payload).await.unwrap();
                }
            } else {
                for _ in 0..100 {
                    if let Some(e) = h.backend().consume_event(&id, "go").await.unwrap() {
                        got.push((e[0], e[1]));
                    }
                }
            }
            got
        }
    })
    .await;
    let mut all = Vec::new();
    for got in &outputs {
        for sender in 0..4u8 {
            let seq: Vec<u8> = got.iter().filter(|e| e.0 == sender).map(|e| e.1).collect();
            assert!(seq.windows(2).all(|w| w[0] < w[1]), "sender {sender} out of order");
        }
        all.extend_from_slice(got);
    }
    while let Some(e) = h.backend().consume_event(&id, "go").await.unwrap() {
        all.push((e[0], e[1]));
    }
    let unique: HashSet<(u8, u8)> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "an event was delivered twice");
    assert_eq!(unique.len(), 200, "an event was lost");
}

/// 16 concurrent `check_and_cancel` calls: exactly one `true`; the workflow is Cancelled
/// and the signal is gone.
pub async fn concurrent_check_and_cancel_one_winner<H: Harness>(h: Arc<H>) {
    let id = unique_id("race-cancel");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Cancel, request("c")).await.unwrap();
    let id2 = id.clone();
    let results = race(&h, 16, move |h, _| {
        let id = id2.clone();
        async move { h.backend().check_and_cancel(&id, Some("b")).await }
    })
    .await;
    let wins = results.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(wins, 1);
    assert_eq!(status(&h.backend().load_snapshot(&id).await.unwrap()), "Cancelled");
    assert!(h.backend().get_signal(&id, SignalKind::Cancel).await.unwrap().is_none());
}

/// 16 concurrent `check_and_pause` calls: exactly one `true`; the workflow is Paused at its
/// position and the signal is gone.
pub async fn concurrent_check_and_pause_one_winner<H: Harness>(h: Arc<H>) {
    let id = unique_id("race-pause");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Pause, request("p")).await.unwrap();
    let id2 = id.clone();
    let results = race(&h, 16, move |h, _| {
        let id = id2.clone();
        async move { h.backend().check_and_pause(&id).await }
    })
    .await;
    let wins = results.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(wins, 1);
    assert_eq!(status(&h.backend().load_snapshot(&id).await.unwrap()), "Paused");
    assert!(h.backend().get_signal(&id, SignalKind::Pause).await.unwrap().is_none());
}

/// 8 `check_and_cancel` and 8 `check_and_pause` race with both signals pending: exactly one
/// call wins, the state matches the winner, and the loser's signal is still pending.
pub async fn cancel_and_pause_race_one_transition<H: Harness>(h: Arc<H>) {
    let id = unique_id("race-both");
    h.backend().save_snapshot(&in_progress(&id)).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Cancel, request("c")).await.unwrap();
    h.backend().store_signal(&id, SignalKind::Pause, request("p")).await.unwrap();
    let id2 = id.clone();
    let results = race(&h, 16, move |h, i| {
        let id = id2.clone();
        async move {
            if i % 2 == 0 {
                h.backend().check_and_cancel(&id, None).await.map(|w| (w, "Cancelled"))
            } else {
                h.backend().check_and_pause(&id).await.map(|w| (w, "Paused"))
            }
        }
    })
    .await;
    let winners: Vec<&str> =
        results.into_iter().map(Result::unwrap).filter(|(w, _)| *w).map(|(_, s)| s).collect();
    assert_eq!(winners.len(), 1, "winners {winners:?}");
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    assert_eq!(status(&loaded), winners[0]);
    let (gone, kept) = if winners[0] == "Cancelled" {
        (SignalKind::Cancel, SignalKind::Pause)
    } else {
        (SignalKind::Pause, SignalKind::Cancel)
    };
    assert!(h.backend().get_signal(&id, gone).await.unwrap().is_none());
    assert!(h.backend().get_signal(&id, kept).await.unwrap().is_some());
}

/// 16 concurrent `unpause` calls: exactly one `Ok`, every other one `CannotPause`; the
/// workflow ends InProgress.
pub async fn concurrent_unpause_one_winner<H: Harness>(h: Arc<H>) {
    let id = unique_id("race-unpause");
    h.backend().save_snapshot(&paused_snapshot(&id)).await.unwrap();
    let id2 = id.clone();
    let results = race(&h, 16, move |h, _| {
        let id = id2.clone();
        async move { h.backend().unpause(&id).await.map(|_| ()) }
    })
    .await;
    let mut ok = 0;
    for result in results {
        match result {
            Ok(()) => ok += 1,
            Err(BackendError::CannotPause(_)) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(status(&h.backend().load_snapshot(&id).await.unwrap()), "InProgress");
}

/// 16 concurrent releases by the owner: exactly one `Ok`, the rest `NotFound`. Ten rounds: a
/// release that waited for the winner's must still see that the claim is gone.
pub async fn concurrent_release_one_winner<H: Harness>(h: Arc<H>) {
    for round in 0..10 {
        let id = unique_id("race-release");
        h.backend().claim_task(&id, "t", "owner", None).await.unwrap().unwrap();
        let id2 = id.clone();
        let results = race(&h, 16, move |h, _| {
            let id = id2.clone();
            async move { h.backend().release_task_claim(&id, "t", "owner").await }
        })
        .await;
        let mut ok = 0;
        for result in results {
            match result {
                Ok(()) => ok += 1,
                Err(BackendError::NotFound(_)) => {}
                Err(other) => panic!("unexpected error {other:?}"),
            }
        }
        assert_eq!(ok, 1, "round {round}: releases that returned Ok");
    }
}

/// A release by another worker racing with 15 owner-side extends never deletes the claim.
pub async fn release_by_other_never_deletes_under_contention<H: Harness>(h: Arc<H>) {
    let id = unique_id("race-other");
    h.backend().claim_task(&id, "t", "owner", Some(hour())).await.unwrap().unwrap();
    let id2 = id.clone();
    let results = race(&h, 16, move |h, i| {
        let id = id2.clone();
        async move {
            if i == 0 {
                h.backend().release_task_claim(&id, "t", "intruder").await
            } else {
                h.backend().extend_task_claim(&id, "t", "owner", chrono::Duration::seconds(1)).await
            }
        }
    })
    .await;
    assert!(matches!(results[0], Err(BackendError::Backend(_))), "{:?}", results[0]);
    results[1..].iter().for_each(|r| assert!(r.is_ok(), "{r:?}"));
    assert!(h.backend().claim_task(&id, "t", "w", None).await.unwrap().is_none());
    h.backend().release_task_claim(&id, "t", "owner").await.unwrap();
}

/// 16 concurrent finds over one due delay: no errors, at least one returns the next task,
/// and the workflow was advanced to `AtTask{next}` (the delay's results intact).
pub async fn concurrent_find_advances_delay_once<H: Harness>(h: Arc<H>) {
    let id = unique_id("race-delay");
    h.backend().save_snapshot(&at_delay(&id, "d", -hour(), Some("next"))).await.unwrap();
    let id2 = id.clone();
    let results = race(&h, 16, move |h, i| {
        let id = id2.clone();
        async move {
            let found = find_all(h.backend(), &format!("w{i}")).await;
            task_of(&found, &id).map(|t| t.task_id.clone())
        }
    })
    .await;
    let returned: Vec<String> = results.into_iter().flatten().collect();
    assert!(!returned.is_empty(), "no call returned the advanced task");
    assert!(returned.iter().all(|t| t == "next"), "{returned:?}");
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    assert_eq!(at_task_id(&loaded), "next");
    assert_eq!(completed(&loaded.state).len(), 1);
}

/// Concurrent finds over one signal wait with two buffered events advance it once: exactly
/// one event is consumed and stored under the signal id, the other stays queued.
pub async fn concurrent_find_advances_signal_once<H: Harness>(h: Arc<H>) {
    let id = unique_id("race-signal");
    h.backend().save_snapshot(&at_signal(&id, "sig", "go", None, Some("next"))).await.unwrap();
    h.backend().send_event(&id, "go", Bytes::from_static(b"first")).await.unwrap();
    h.backend().send_event(&id, "go", Bytes::from_static(b"second")).await.unwrap();
    let results = race(&h, 16, move |h, i| async move {
        h.backend().find_available_tasks(&format!("w{i}"), 100, crate::fixtures::aging(), &[]).await
    })
    .await;
    results.into_iter().for_each(|r| {
        r.unwrap();
    });
    let loaded = h.backend().load_snapshot(&id).await.unwrap();
    assert_eq!(at_task_id(&loaded), "next");
    assert_eq!(completed(&loaded.state).get("sig"), Some(&Bytes::from_static(b"first")));
    let left = h.backend().consume_event(&id, "go").await.unwrap();
    assert_eq!(left.as_deref(), Some(&b"second"[..]), "advanced more than once");
    assert_eq!(h.backend().consume_event(&id, "go").await.unwrap(), None);
}

/// Advancement is a compare-and-set: finders racing with a worker's save that already moved
/// the workflow past the delay never move it back (10 rounds).
pub async fn find_never_regresses_position<H: Harness>(h: Arc<H>) {
    for round in 0..10 {
        let id = unique_id("race-regress");
        h.backend().save_snapshot(&at_delay(&id, "d", -hour(), Some("next"))).await.unwrap();
        let mut later = with_results(&id, &[("before", b"before-out"), ("next", b"n")], "later");
        later.task_priority = Some(4);
        let id2 = id.clone();
        let results = race(&h, 9, move |h, i| {
            let (id, later) = (id2.clone(), later.clone());
            async move {
                if i == 0 {
                    h.backend().save_snapshot(&later).await.map(|()| 0)
                } else {
                    h.backend()
                        .find_available_tasks("w", 100, crate::fixtures::aging(), &[])
                        .await
                        .map(|found| found.iter().filter(|t| t.instance_id == id).count())
                }
            }
        })
        .await;
        results.into_iter().for_each(|r| {
            r.unwrap();
        });
        let loaded = h.backend().load_snapshot(&id).await.unwrap();
        assert_eq!(at_task_id(&loaded), "later", "round {round}: position regressed");
        assert_eq!(completed(&loaded.state).len(), 2, "round {round}");
    }
}

/// Concurrent saves of one id never produce a torn snapshot: every load sees one whole
/// version (hash, trace parent, tags, priority and result agree), and the last save wins.
pub async fn concurrent_saves_never_torn<H: Harness>(h: Arc<H>) {
    let id = unique_id("race-torn");
    let version = |id: &str, k: u32| {
        let mut snapshot = at_task(id, &format!("t{k}"));
        snapshot.mark_task_completed("v".to_string(), Bytes::from(k.to_string()));
        snapshot.definition_hash = k.to_string();
        snapshot.trace_parent = Some(k.to_string());
        snapshot.task_tags = vec![k.to_string()];
        snapshot.task_priority = Some(u8::try_from(k % 5 + 1).unwrap());
        snapshot
    };
    h.backend().save_snapshot(&version(&id, 0)).await.unwrap();
    let id2 = id.clone();
    race(&h, 8, move |h, i| {
        let id = id2.clone();
        async move {
            for n in 0..40u32 {
                if i < 4 {
                    let k = u32::try_from(i).unwrap() * 1000 + n;
                    h.backend().save_snapshot(&version(&id, k)).await.unwrap();
                } else {
                    let s = h.backend().load_snapshot(&id).await.unwrap();
                    let k: u32 = s.definition_hash.parse().unwrap();
                    assert_eq!(s.trace_parent, Some(k.to_string()), "torn trace_parent");
                    assert_eq!(s.task_tags, [k.to_string()], "torn tags");
                    assert_eq!(s.task_priority, Some(u8::try_from(k % 5 + 1).unwrap()));
                    assert_eq!(completed(&s.state)["v"], Bytes::from(k.to_string()));
                    assert_eq!(at_task_id(&s), format!("t{k}"));
                }
            }
        }
    })
    .await;
    let last = h.backend().load_snapshot(&id).await.unwrap();
    let k: u32 = last.definition_hash.parse().unwrap();
    assert_eq!(k % 1000, 39, "the final snapshot is not one of the last saves: {k}");
}
