//! Behaviour specific to the Redis backend: key-space isolation, script reloading, large
//! payloads, storage overhead and key encoding.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;

use bytes::Bytes;
use futures::FutureExt;
use sayiir_persistence_conformance::fixtures::{at_task, unique_id, with_results};
use sayiir_persistence_redis::redis;
use sayiir_persistence_redis::sayiir_core::snapshot::{SignalKind, SignalRequest};
use sayiir_persistence_redis::{
    BackendError, RedisBackend, SignalStore, SnapshotStore, TaskClaimStore, TaskResultStore,
};

/// Runs `body`, then deletes the keys of `backends`, also when the body panics.
async fn guarded<Fut: Future<Output = ()>>(backends: &[&RedisBackend], body: Fut) {
    let outcome = std::panic::AssertUnwindSafe(body).catch_unwind().await;
    for backend in backends {
        common::cleanup(backend).await;
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn aging() -> chrono::Duration {
    chrono::Duration::seconds(60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_are_isolated() {
    let a = common::backend("iso-a").await;
    let b = common::backend("iso-b").await;
    guarded(&[&a, &b], async {
        let id = unique_id("shared-id");
        a.save_snapshot(&at_task(&id, "t")).await.unwrap();
        a.store_signal(&id, SignalKind::Pause, SignalRequest::new(None, None)).await.unwrap();
        a.send_event(&id, "evt", Bytes::from_static(b"x")).await.unwrap();
        a.claim_task(&id, "other", "w", None).await.unwrap().expect("claim in a");

        assert!(matches!(b.load_snapshot(&id).await, Err(BackendError::NotFound(_))));
        assert!(b.list_snapshots().await.unwrap().is_empty());
        assert!(b.get_signal(&id, SignalKind::Pause).await.unwrap().is_none());
        assert!(b.consume_event(&id, "evt").await.unwrap().is_none());
        assert!(b.claim_task(&id, "other", "w", None).await.unwrap().is_some());
        assert!(matches!(b.load_task_result(&id, "t").await, Err(BackendError::NotFound(_))));
        assert!(matches!(b.delete_snapshot(&id).await, Err(BackendError::NotFound(_))));

        // b's ready task is invisible to a (a's own workflow is paused).
        let only_b = unique_id("only-b");
        b.save_snapshot(&at_task(&only_b, "t")).await.unwrap();
        assert!(a.find_available_tasks("w", 10, aging(), &[]).await.unwrap().is_empty());
        let in_b = b.find_available_tasks("w", 10, aging(), &[]).await.unwrap();
        assert_eq!(in_b.len(), 1);
        assert_eq!(in_b[0].instance_id, only_b);

        // What a holds is untouched by b.
        assert_eq!(a.list_snapshots().await.unwrap(), vec![id.clone()]);
        assert_eq!(a.consume_event(&id, "evt").await.unwrap(), Some(Bytes::from_static(b"x")));
        assert!(a.claim_task(&id, "other", "w2", None).await.unwrap().is_none());

        // Neither key pattern matches the other's keys.
        let keys_a = common::keys_of(&a).await;
        let keys_b = common::keys_of(&b).await;
        assert!(!keys_a.is_empty() && !keys_b.is_empty());
        assert!(keys_a.iter().all(|k| !keys_b.contains(k)));
    })
    .await;
}

/// Prefixes where one is the start of the other still do not overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_prefixes_are_isolated() {
    let prefix = common::fresh_prefix("nest");
    let connect = |p: String| async move {
        let options = sayiir_persistence_redis::RedisOptions::default().key_prefix(p);
        RedisBackend::connect_with(&common::url(), options).await.unwrap()
    };
    let short = connect(prefix.clone()).await;
    let long = connect(format!("{prefix}:x")).await;
    let longer = connect(format!("{prefix}x")).await;
    guarded(&[&short, &long, &longer], async {
        short.save_snapshot(&at_task("i", "t")).await.unwrap();
        long.save_snapshot(&at_task("j", "t")).await.unwrap();
        longer.save_snapshot(&at_task("k", "t")).await.unwrap();
        assert_eq!(short.list_snapshots().await.unwrap(), vec!["i".to_string()]);
        assert_eq!(long.list_snapshots().await.unwrap(), vec!["j".to_string()]);
        let short_keys = common::keys_of(&short).await;
        let long_keys = common::keys_of(&long).await;
        let longer_keys = common::keys_of(&longer).await;
        assert!(short_keys.iter().all(|k| !long_keys.contains(k) && !longer_keys.contains(k)));
    })
    .await;
}

/// `SCRIPT FLUSH` (or a restart) drops the server's script cache; the next call reloads
/// the script and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_succeed_after_script_flush() {
    let backend = common::backend("flush").await;
    guarded(&[&backend], async {
        let id = unique_id("flush");
        backend.save_snapshot(&at_task(&id, "t")).await.unwrap();
        let mut raw = common::raw().await;
        let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut raw).await.unwrap();
        backend.save_task_result(&id, "a", Bytes::from_static(b"out")).await.unwrap();
        let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut raw).await.unwrap();
        let loaded = backend.load_snapshot(&id).await.unwrap();
        assert_eq!(loaded.get_task_result_bytes("a"), Some(Bytes::from_static(b"out")));
        // A save with results runs its script inside a transaction: the fallback resends it.
        let mut with_results = loaded.clone();
        with_results.mark_task_completed("x".to_string(), Bytes::from_static(b"out-x"));
        let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut raw).await.unwrap();
        backend.save_snapshot(&with_results).await.unwrap();
        let loaded = backend.load_snapshot(&id).await.unwrap();
        assert_eq!(loaded.get_task_result_bytes("x"), Some(Bytes::from_static(b"out-x")));
        let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut raw).await.unwrap();
        let found = backend.find_available_tasks("w", 1, aging(), &[]).await.unwrap();
        assert_eq!(found.len(), 1);
    })
    .await;
}

fn payload(len: usize, seed: u8) -> Bytes {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<u8>>().into()
}

/// 16 MiB task outputs, inputs and events round-trip exactly (§ Payloads are opaque bytes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_payloads_round_trip() {
    let backend = common::backend("big").await;
    guarded(&[&backend], async {
        const MIB16: usize = 16 * 1024 * 1024;
        let id = unique_id("big");
        let input = payload(MIB16, 1);
        let mut snapshot = at_task(&id, "t");
        snapshot.initial_input = Some(input.clone());
        backend.save_snapshot(&snapshot).await.unwrap();
        let found = backend.find_available_tasks("w", 1, aging(), &[]).await.unwrap();
        assert_eq!(found.len(), 1);
        assert!(found[0].input == input, "initial input differs");

        let output = payload(MIB16, 2);
        backend.save_task_result(&id, "t", output.clone()).await.unwrap();
        let loaded = backend.load_snapshot(&id).await.unwrap();
        assert!(loaded.initial_input.as_ref() == Some(&input));
        assert!(loaded.get_task_result_bytes("t").as_ref() == Some(&output));
        let result = backend.load_task_result(&id, "t").await.unwrap();
        assert!(result.as_ref() == Some(&output), "task result differs");

        // A whole-snapshot save carrying the big result.
        backend.save_snapshot(&loaded).await.unwrap();
        let again = backend.load_task_result(&id, "t").await.unwrap();
        assert!(again.as_ref() == Some(&output));

        let event = payload(MIB16, 3);
        backend.send_event(&id, "big", event.clone()).await.unwrap();
        let consumed = backend.consume_event(&id, "big").await.unwrap();
        assert!(consumed.as_ref() == Some(&event), "event differs");
    })
    .await;
}

/// A workflow of 10 results of 1 KiB takes at most 1.5 times its payload in Redis memory,
/// every key of the prefix (indexes and listing included) counted, in a store of 20 such
/// workflows (the global indexes are shared by every workflow of a store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_is_at_most_one_and_a_half_times_the_payload() {
    const WORKFLOWS: u64 = 20;
    let backend = common::backend("size").await;
    guarded(&[&backend], async {
        let outputs: Vec<(String, Vec<u8>)> =
            (0..10).map(|i| (format!("task-{i}"), payload(1024, i).to_vec())).collect();
        let done: Vec<(&str, &[u8])> =
            outputs.iter().map(|(t, o)| (t.as_str(), o.as_slice())).collect();
        for _ in 0..WORKFLOWS {
            let id = unique_id("size");
            backend.save_snapshot(&with_results(&id, &done, "next")).await.unwrap();
        }
        let mut raw = common::raw().await;
        let mut total = 0_u64;
        for key in common::keys_of(&backend).await {
            let usage: Option<u64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .arg("SAMPLES")
                .arg(0)
                .query_async(&mut raw)
                .await
                .unwrap();
            println!("{key}: {usage:?}");
            total += usage.unwrap_or(0);
        }
        let payload_bytes = WORKFLOWS * 10 * 1024;
        println!(
            "{WORKFLOWS} workflows of 10 x 1 KiB results: {total} bytes in Redis ({:.2}x)",
            total as f64 / payload_bytes as f64
        );
        assert!(total * 2 <= payload_bytes * 3, "{total} bytes for {payload_bytes} of payload");
    })
    .await;
}

/// Ids made of the characters that structure keys never collide or escape the prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structural_characters_in_ids() {
    let backend = common::backend("chars").await;
    guarded(&[&backend], async {
        let ids = ["a:b", "a", "{a}", "a}:{b", "%7B", "%", "a%3Ab", "}", "{", "*?[]\\"];
        for id in ids {
            backend.save_snapshot(&at_task(id, id)).await.unwrap();
            backend.send_event(id, id, Bytes::from(id.to_string())).await.unwrap();
        }
        let mut listed = backend.list_snapshots().await.unwrap();
        listed.sort();
        let mut expected: Vec<String> = ids.iter().map(|s| (*s).to_string()).collect();
        expected.sort();
        assert_eq!(listed, expected);
        for id in ids {
            assert_eq!(backend.load_snapshot(id).await.unwrap().instance_id, id);
            let event = backend.consume_event(id, id).await.unwrap();
            assert_eq!(event, Some(Bytes::from(id.to_string())));
        }
        // (a:b, c) and (a, b:c) are distinct claims.
        assert!(backend.claim_task("a:b", "c", "w", None).await.unwrap().is_some());
        assert!(backend.claim_task("a", "b:c", "w", None).await.unwrap().is_some());
        // Every key stays in the prefix's key space: after deleting every workflow only
        // the global revision counter and the marker of indexed claims may remain.
        for id in ids {
            backend.delete_snapshot(id).await.unwrap();
        }
        let left = common::keys_of(&backend).await;
        assert!(
            left.iter().all(|k| k.ends_with("}:revision") || k.ends_with("}:claims-indexed")),
            "{left:?}"
        );
    })
    .await;
}

/// A connection killed by the server is replaced by the backend itself (§ Transient faults and
/// recovery), through a pool the caller built; reads and `find_available_tasks` are sent once more
/// on the fresh connection, so not even the first call after the kill fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_after_the_server_drops_its_connection() {
    use sayiir_persistence_redis::deadpool_redis::{self, Hook, HookError, Runtime};

    let prefix = common::fresh_prefix("recover");
    let name = prefix.replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let manager = deadpool_redis::Manager::new(common::url()).unwrap();
    let hook_name = name.clone();
    let pool = deadpool_redis::Pool::builder(manager)
        .max_size(2)
        .runtime(Runtime::Tokio1)
        .post_create(Hook::async_fn(move |conn, _| {
            let name = hook_name.clone();
            Box::pin(async move {
                redis::cmd("CLIENT")
                    .arg("SETNAME")
                    .arg(name)
                    .query_async::<()>(conn)
                    .await
                    .map_err(HookError::Backend)
            })
        }))
        .build()
        .unwrap();
    let options = sayiir_persistence_redis::RedisOptions::default().key_prefix(prefix).pool_size(1);
    let backend = RedisBackend::from_pool(pool, options);
    guarded(&[&backend], async {
        let id = unique_id("recover");
        backend.save_snapshot(&at_task(&id, "t")).await.unwrap();

        let mut raw = common::raw().await;
        let kill = |raw: &mut redis::aio::MultiplexedConnection| {
            let name = name.clone();
            let mut raw = raw.clone();
            async move {
                let list: String =
                    redis::cmd("CLIENT").arg("LIST").query_async(&mut raw).await.unwrap();
                let ids: Vec<String> = list
                    .lines()
                    .filter(|line| line.split(' ').any(|field| field == format!("name={name}")))
                    .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
                    .map(String::from)
                    .collect();
                assert_eq!(ids.len(), 1, "the backend should hold exactly one connection: {ids:?}");
                let _: () = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("ID")
                    .arg(&ids[0])
                    .query_async(&mut raw)
                    .await
                    .unwrap();
            }
        };

        // Reads are sent once more on a fresh connection: the first call after the kill
        // succeeds.
        kill(&mut raw).await;
        assert_eq!(backend.load_snapshot(&id).await.unwrap().instance_id, id);
        kill(&mut raw).await;
        assert!(!backend.check_and_cancel(&id, Some("t")).await.unwrap());
        kill(&mut raw).await;
        assert!(backend.get_signal(&id, SignalKind::Pause).await.unwrap().is_none());
        kill(&mut raw).await;
        assert!(backend.load_task_result(&id, "t").await.unwrap().is_none());
        // An error from find_available_tasks would end a worker's loop (§ One bad row never fails
        // the call).
        kill(&mut raw).await;
        let found = backend.find_available_tasks("w", 1, aging(), &[]).await.unwrap();
        assert_eq!(found.len(), 1);
        kill(&mut raw).await;
        assert_eq!(backend.list_snapshots().await.unwrap(), vec![id.clone()]);

        // A write whose repetition could apply it twice is not repeated: it may fail, with a
        // message that names the operation and the instance.
        kill(&mut raw).await;
        if let Err(e) = backend.save_task_result(&id, "t", Bytes::from_static(b"x")).await {
            let BackendError::Backend(message) = e else { panic!("unexpected error {e:?}") };
            assert!(message.contains("save_task_result") && message.contains(&id), "{message}");
        }
        // The next one runs on a fresh connection.
        backend.save_task_result(&id, "t", Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(
            backend.load_task_result(&id, "t").await.unwrap(),
            Some(Bytes::from_static(b"x"))
        );
    })
    .await;
}

/// Signal transitions do not depend on results recorded meanwhile (fork branches): with 8
/// tasks recording results on the instance as fast as they can, a pending Cancel or Pause
/// is applied at the first attempt, without error, and every result recorded before the
/// transition is kept (a result recorded after it is a no-op: the workflow is no longer in
/// progress).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transitions_do_not_lose_to_concurrent_results() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use sayiir_persistence_conformance::fixtures::completed;

    const BRANCHES: usize = 8;
    let backend = common::backend("contention").await;
    guarded(&[&backend], async {
        for kind in [SignalKind::Cancel, SignalKind::Pause, SignalKind::Cancel, SignalKind::Pause] {
            let id = unique_id("hammer");
            backend.save_snapshot(&at_task(&id, "join")).await.unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let done: Arc<Vec<AtomicU32>> =
                Arc::new((0..BRANCHES).map(|_| AtomicU32::new(0)).collect());
            let branches: Vec<_> = (0..BRANCHES)
                .map(|branch| {
                    let (backend, id, stop, done) =
                        (backend.clone(), id.clone(), stop.clone(), done.clone());
                    tokio::spawn(async move {
                        let mut n = 0_u32;
                        while !stop.load(Ordering::Relaxed) {
                            let output = Bytes::from(format!("{branch}:{n}"));
                            backend
                                .save_task_result(&id, &format!("b{branch}-{n}"), output)
                                .await
                                .expect("save_task_result under contention");
                            n += 1;
                            done[branch].store(n, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            // Let every branch get going.
            while done.iter().any(|d| d.load(Ordering::Relaxed) < 10) {
                tokio::task::yield_now().await;
            }
            backend
                .store_signal(&id, kind, SignalRequest::new(Some("stop".into()), None))
                .await
                .unwrap();
            let before: Vec<u32> = done.iter().map(|d| d.load(Ordering::Relaxed)).collect();
            let applied = match kind {
                SignalKind::Cancel => backend.check_and_cancel(&id, Some("join")).await,
                SignalKind::Pause => backend.check_and_pause(&id).await,
            };
            // Branches keep recording for a while after the transition.
            let target: Vec<u32> = done.iter().map(|d| d.load(Ordering::Relaxed) + 10).collect();
            while done.iter().zip(&target).any(|(d, t)| d.load(Ordering::Relaxed) < *t) {
                tokio::task::yield_now().await;
            }
            stop.store(true, Ordering::Relaxed);
            for branch in branches {
                branch.await.unwrap();
            }
            assert!(applied.expect("the transition must not fail under contention"), "{kind:?}");

            let loaded = backend.load_snapshot(&id).await.unwrap();
            let expected_status = match kind {
                SignalKind::Cancel => "Cancelled",
                SignalKind::Pause => "Paused",
            };
            assert_eq!(loaded.state.as_ref(), expected_status);
            let results = completed(&loaded.state);
            let mut last_of_branch = Vec::new();
            for (branch, recorded) in before.iter().enumerate() {
                // Each branch records in order, so what is kept is a prefix of its results,
                // and it covers at least what was recorded before the transition started.
                let kept = results.keys().filter(|k| k.starts_with(&format!("b{branch}-"))).count();
                let kept = u32::try_from(kept).unwrap();
                assert!(kept >= *recorded, "branch {branch}: {kept} kept < {recorded} recorded");
                for n in 0..kept {
                    let output = results.get(&format!("b{branch}-{n}"));
                    assert_eq!(
                        output,
                        Some(&Bytes::from(format!("{branch}:{n}"))),
                        "branch {branch} lost result {n}"
                    );
                }
                last_of_branch.push(format!("b{branch}-{}", kept.saturating_sub(1)));
            }
            if kind == SignalKind::Pause {
                // Paused keeps the last completed task: the last result recorded, never an
                // older one.
                let sayiir_persistence_redis::sayiir_core::snapshot::WorkflowSnapshotState::Paused {
                    last_completed_task_id,
                    ..
                } = &loaded.state
                else {
                    panic!("not paused");
                };
                let last = last_completed_task_id.clone().expect("a last completed task");
                assert!(last_of_branch.contains(&last), "{last} is not the newest of its branch");
            }
            assert!(backend.get_signal(&id, kind).await.unwrap().is_none(), "request not consumed");
        }
    })
    .await;
}

/// § No claim on finished work in `claim.lua` mirrors `claims::claim_refused` of the core crate:
/// for every status, a task whose result the state holds and one it does not, and no snapshot at
/// all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_refusal_mirrors_the_core_rule() {
    use sayiir_persistence_conformance::fixtures::{
        cancelled_snapshot, completed, completed_snapshot, failed_snapshot, in_progress,
        paused_snapshot,
    };
    use sayiir_persistence_redis::sayiir_persistence::claims::claim_refused;

    type Build = fn(&str) -> sayiir_persistence_redis::sayiir_core::snapshot::WorkflowSnapshot;
    let backend = common::backend("claim-rule").await;
    guarded(&[&backend], async {
        let builders: [(&str, Build); 5] = [
            ("InProgress", in_progress),
            ("Paused", paused_snapshot),
            ("Cancelled", cancelled_snapshot),
            ("Completed", completed_snapshot),
            ("Failed", failed_snapshot),
        ];
        for (status, build) in builders {
            // Each fixture holds (or, terminal, held) the result of "a" and stands at "b".
            for task in ["a", "b", "z"] {
                let id = unique_id("rule");
                // Saved in progress first, so Completed/Failed keep "a" in the archive.
                backend.save_snapshot(&in_progress(&id)).await.unwrap();
                let snapshot = build(&id);
                assert_eq!(snapshot.state.as_ref(), status);
                backend.save_snapshot(&snapshot).await.unwrap();
                let has_result = completed(&snapshot.state).contains_key(task);
                let claimed = backend.claim_task(&id, task, "w", None).await.unwrap();
                assert_eq!(
                    claimed.is_none(),
                    claim_refused(status, has_result),
                    "{status}, task {task} (has result: {has_result})"
                );
            }
        }
        let id = unique_id("rule-none");
        assert!(backend.claim_task(&id, "a", "w", None).await.unwrap().is_some());
    })
    .await;
}

/// Undecodable workflows ranked first do not hide a good one, and are taken out of the
/// index until they are saved again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_rows_are_unindexed() {
    use sayiir_persistence_conformance::fixtures::at_task_with;
    use sayiir_persistence_redis::redis::AsyncCommands;

    let backend = common::backend("corrupt").await;
    guarded(&[&backend], async {
        let mut raw = common::raw().await;
        let mut bad = Vec::new();
        for i in 0..5 {
            let id = unique_id(&format!("bad{i}"));
            backend.save_snapshot(&at_task_with(&id, "t", Some(1), 600)).await.unwrap();
            let _: () = raw.set(backend.snapshot_blob_key(&id), b"\x00garbage").await.unwrap();
            bad.push(id);
        }
        let good = unique_id("good");
        backend.save_snapshot(&at_task_with(&good, "t", Some(5), 0)).await.unwrap();

        let found = backend.find_available_tasks("w", 1, aging(), &[]).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].instance_id, good);
        let ready: Vec<String> =
            raw.zrange(format!("{{{}}}:ready", key_prefix_of(&backend)), 0, -1).await.unwrap();
        assert_eq!(ready, vec![good.clone()], "undecodable rows are still indexed");

        // A save puts a repaired workflow back.
        backend.save_snapshot(&at_task_with(&bad[0], "t", Some(1), 600)).await.unwrap();
        let found = backend.find_available_tasks("w", 1, aging(), &[]).await.unwrap();
        assert_eq!(found[0].instance_id, bad[0]);
    })
    .await;
}

/// A transition record that contradicts itself (here: a pause whose request was removed by
/// hand) makes `load_snapshot` fail with a `Serialization` error that names the instance;
/// nothing else is lost, and the next whole save replaces the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inconsistent_transition_records_are_reported() {
    use sayiir_persistence_conformance::fixtures::{in_progress, request};
    use sayiir_persistence_redis::redis::AsyncCommands;

    let backend = common::backend("record").await;
    guarded(&[&backend], async {
        let mut raw = common::raw().await;
        let id = unique_id("record");
        backend.save_snapshot(&in_progress(&id)).await.unwrap();
        backend.store_signal(&id, SignalKind::Pause, request("hold")).await.unwrap();
        assert!(backend.check_and_pause(&id).await.unwrap());
        let blob_key = backend.snapshot_blob_key(&id);
        let snap_key = format!("{}snap", blob_key.strip_suffix("blob").unwrap());
        let _: () = raw.hdel(&snap_key, "xq").await.unwrap();

        match backend.load_snapshot(&id).await {
            Err(BackendError::Serialization(message)) => {
                assert!(message.contains(&id), "{message}");
                assert!(message.contains("request is missing"), "{message}");
            }
            other => panic!("expected a Serialization error, got {other:?}"),
        }
        assert_eq!(
            backend.load_task_result(&id, "a").await.unwrap().as_deref(),
            Some(&b"out-a"[..])
        );
        backend.save_snapshot(&in_progress(&id)).await.unwrap();
        assert_eq!(backend.load_snapshot(&id).await.unwrap().state.as_ref(), "InProgress");
    })
    .await;
}

/// Once Completed, a workflow's results live in its archive key, not in the results key
/// that `load_snapshot` reads beside its script: loading a completed workflow does not
/// fetch its archive, while `load_task_result` still serves it (§ Results survive completion). The
/// staging hash a save writes its results into never outlives the save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_results_move_to_the_archive_key() {
    use sayiir_persistence_conformance::fixtures::{completed_snapshot, in_progress};
    use sayiir_persistence_redis::redis::AsyncCommands;

    let backend = common::backend("archive").await;
    guarded(&[&backend], async {
        let mut raw = common::raw().await;
        let id = unique_id("archive");
        let blob_key = backend.snapshot_blob_key(&id);
        let base = blob_key.strip_suffix("blob").unwrap();
        let (results_key, archive_key) = (format!("{base}results"), format!("{base}archive"));
        backend.save_snapshot(&in_progress(&id)).await.unwrap();
        assert!(raw.exists::<_, bool>(&results_key).await.unwrap());
        backend.save_snapshot(&completed_snapshot(&id)).await.unwrap();
        assert!(!raw.exists::<_, bool>(&results_key).await.unwrap(), "results left in place");
        let archived: Vec<String> = raw.hkeys(&archive_key).await.unwrap();
        assert_eq!(archived, vec!["a".to_string()]);
        assert_eq!(backend.load_snapshot(&id).await.unwrap().state.as_ref(), "Completed");
        let output = backend.load_task_result(&id, "a").await.unwrap();
        assert_eq!(output.as_deref(), Some(&b"out-a"[..]));
        // Saved in progress again: the state holds results, there is no archive.
        backend.save_snapshot(&in_progress(&id)).await.unwrap();
        assert!(!raw.exists::<_, bool>(&archive_key).await.unwrap(), "stale archive kept");
        let staging_key = format!("{base}staging");
        assert!(!raw.exists::<_, bool>(&staging_key).await.unwrap(), "staged results left");
    })
    .await;
}

/// A connection that speaks RESP3 (`?protocol=resp3`) works too: `HGETALL` then replies
/// with a map, not an array.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_connections_work() {
    use sayiir_persistence_conformance::fixtures::with_results;
    use sayiir_persistence_redis::RedisOptions;

    let url = common::url();
    let separator = if url.contains('?') { '&' } else { '?' };
    let options = RedisOptions::default().key_prefix(common::fresh_prefix("resp3"));
    let backend = RedisBackend::connect_with(&format!("{url}{separator}protocol=resp3"), options)
        .await
        .unwrap();
    guarded(&[&backend], async {
        let id = unique_id("resp3");
        let snapshot = with_results(&id, &[("a", b"out-a"), ("b", b"out-b")], "c");
        backend.save_snapshot(&snapshot).await.unwrap();
        let loaded = backend.load_snapshot(&id).await.unwrap();
        assert_eq!(loaded.get_task_result_bytes("b"), Some(Bytes::from_static(b"out-b")));
        assert!(!backend.check_and_cancel(&id, None).await.unwrap());
        let found = backend.find_available_tasks("w", 1, aging(), &[]).await.unwrap();
        assert_eq!(found.len(), 1);
        assert!(backend.claim_task(&id, "c", "w", None).await.unwrap().is_some());
        assert_eq!(backend.list_snapshots().await.unwrap(), vec![id.clone()]);
        // The transfer reads: hashes of results, requests, events and claims as maps.
        use sayiir_persistence_redis::WorkflowTransfer;
        let request = sayiir_persistence_conformance::fixtures::request("hold");
        backend.store_signal(&id, SignalKind::Pause, request).await.unwrap();
        backend.send_event(&id, "go", Bytes::from_static(b"e1")).await.unwrap();
        let record = backend.export_workflow(&id).await.unwrap().unwrap();
        assert_eq!(record.pause_request.and_then(|r| r.reason).as_deref(), Some("hold"));
        assert_eq!(record.events.get("go"), Some(&vec![Bytes::from_static(b"e1")]));
        let claims = backend.task_claims(&id).await.unwrap();
        assert_eq!(claims.iter().map(|c| c.worker_id.as_str()).collect::<Vec<_>>(), ["w"]);
        backend.send_event("early", "go", Bytes::from_static(b"e")).await.unwrap();
        let (mut listed, mut cursor) = (Vec::new(), None::<String>);
        loop {
            let page = backend.list_unstarted_queues(cursor.as_deref(), 1000).await.unwrap();
            listed.extend(page.instance_ids);
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(listed, ["early"], "SCAN pages over RESP3");
    })
    .await;
}

/// The encoded key prefix, read back from the backend's key pattern.
fn key_prefix_of(backend: &RedisBackend) -> String {
    let pattern = backend.key_pattern();
    pattern.trim_start_matches("\\{").trim_end_matches("[:}]*").to_string()
}

/// Claims that never expire, made by a version that did not index them, are indexed once
/// at connect (`build_listing_indexes`), so `store_counts` counts them as live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lasting_claims_of_an_older_store_are_counted() {
    use sayiir_persistence_redis::StoreStatistics;
    let prefix = common::fresh_prefix("lasting");
    let backend = common::connect(&prefix).await;
    guarded(&[&backend], async {
        let id = unique_id("lasting");
        backend.save_snapshot(&at_task(&id, "t")).await.unwrap();
        backend.claim_task(&id, "t", "w", None).await.unwrap().unwrap();
        backend.claim_task(&id, "u", "w", Some(chrono::Duration::hours(1))).await.unwrap();
        assert_eq!(backend.store_counts().await.unwrap().live_claims, 2);
        // As an older version left the store: the lasting claim outside the index, no marker.
        let mut raw = common::raw().await;
        for key in common::keys_of(&backend).await {
            if key.ends_with("}:claim-expiry") {
                let member = format!("{}:{id}t", id.len());
                let _: () =
                    redis::cmd("ZREM").arg(&key).arg(member).query_async(&mut raw).await.unwrap();
            } else if key.ends_with("}:claims-indexed") {
                let _: () = redis::cmd("DEL").arg(&key).query_async(&mut raw).await.unwrap();
            }
        }
        assert_eq!(backend.store_counts().await.unwrap().live_claims, 1);
        backend.build_listing_indexes().await.unwrap();
        assert_eq!(backend.store_counts().await.unwrap().live_claims, 2);
        backend.build_listing_indexes().await.unwrap();
        assert_eq!(backend.store_counts().await.unwrap().live_claims, 2, "indexed once");
    })
    .await;
}

/// A corrupted field of the per-workflow hash is a `Serialization` error naming the
/// instance, never a `Backend` error nor a wrong answer: `upd` that is not a number fails
/// `load_snapshot`; a status none of the five fails `load_task_result` (where the result
/// lives depends on it) instead of answering "no result" for a stored one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_index_fields_are_serialization_errors() {
    let backend = common::backend("corrupt-fields").await;
    guarded(&[&backend], async {
        let id = unique_id("corrupt");
        backend.save_snapshot(&with_results(&id, &[("done", b"out")], "next")).await.unwrap();
        let snap_key = backend.snapshot_blob_key(&id).replace(":blob", ":snap");
        let mut conn = common::raw().await;
        let _: () = redis::cmd("HSET")
            .arg(&snap_key)
            .arg("upd")
            .arg("not-a-number")
            .query_async(&mut conn)
            .await
            .unwrap();
        match backend.load_snapshot(&id).await {
            Err(BackendError::Serialization(message)) => {
                assert!(message.contains(&id) && message.contains("upd"), "{message}");
            }
            other => panic!("expected Serialization, got {other:?}"),
        }
        let _: () = redis::cmd("HSET")
            .arg(&snap_key)
            .arg("st")
            .arg("Bogus")
            .query_async(&mut conn)
            .await
            .unwrap();
        match backend.load_task_result(&id, "done").await {
            Err(BackendError::Serialization(message)) => {
                assert!(message.contains(&id) && message.contains("Bogus"), "{message}");
            }
            other => panic!("expected Serialization, got {other:?}"),
        }
        // The workflow is saved again: every read works.
        backend.save_snapshot(&with_results(&id, &[("done", b"out")], "next")).await.unwrap();
        assert_eq!(
            backend.load_task_result(&id, "done").await.unwrap().as_deref(),
            Some(&b"out"[..])
        );
        backend.load_snapshot(&id).await.unwrap();
    })
    .await;
}

/// A backend built from the application's own `redis::Client` stores and reads like one
/// built from a URL, on the client's database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_from_an_application_client() {
    let prefix = common::fresh_prefix("client");
    let client = redis::Client::open(common::url()).unwrap();
    let options = sayiir_persistence_redis::RedisOptions::default().key_prefix(&prefix);
    let backend = RedisBackend::connect_client(&client, options).await.unwrap();
    let by_url = common::connect(&prefix).await;
    guarded(&[&backend], async {
        let id = unique_id("from-client");
        backend.save_snapshot(&at_task(&id, "t")).await.unwrap();
        assert_eq!(by_url.load_snapshot(&id).await.unwrap().instance_id, id);
        assert_eq!(backend.list_snapshots().await.unwrap(), vec![id.clone()]);
    })
    .await;
}

/// A store written before the listing indexes existed (no listing keys, no `def` field)
/// gets them when a backend connects: every workflow is listed with its status and the
/// definition from its blob (empty for a blob that does not decode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_builds_the_listing_of_an_older_store() {
    use sayiir_persistence_redis::{ListRequest, WorkflowListing};
    let prefix = common::fresh_prefix("relist");
    let backend = common::connect(&prefix).await;
    guarded(&[&backend], async {
        let (one, two, bad) = (unique_id("v1"), unique_id("v2"), unique_id("bad"));
        for (id, definition) in [(&one, "orders-v1"), (&two, "orders-v2"), (&bad, "lost")] {
            let mut snapshot = at_task(id, "t");
            snapshot.definition_hash = definition.to_string();
            backend.save_snapshot(&snapshot).await.unwrap();
        }
        // As an older version left the store.
        let mut raw = common::raw().await;
        for key in common::keys_of(&backend).await {
            if key.contains("}:listed") {
                let _: () = redis::cmd("DEL").arg(&key).query_async(&mut raw).await.unwrap();
            } else if key.ends_with(":snap") {
                let _: () =
                    redis::cmd("HDEL").arg(&key).arg("def").query_async(&mut raw).await.unwrap();
            }
        }
        let garbled = backend.snapshot_blob_key(&bad);
        let _: () =
            redis::cmd("SET").arg(&garbled).arg(b"\xc1\xff").query_async(&mut raw).await.unwrap();
        assert!(
            backend.list_workflows(&ListRequest::default()).await.unwrap().workflows.is_empty()
        );

        backend.build_listing_indexes().await.unwrap();
        let mut listed: Vec<(String, String, String)> = backend
            .list_workflows(&ListRequest::default())
            .await
            .unwrap()
            .workflows
            .into_iter()
            .map(|w| (w.instance_id, w.status, w.definition_hash))
            .collect();
        listed.sort();
        let in_progress = "InProgress".to_string();
        let mut expected = vec![
            (one.clone(), in_progress.clone(), "orders-v1".to_string()),
            (two.clone(), in_progress.clone(), "orders-v2".to_string()),
            (bad.clone(), in_progress.clone(), String::new()),
        ];
        expected.sort();
        assert_eq!(listed, expected);
        let v1 = backend.list_workflows(&ListRequest::default().definition("orders-v1")).await;
        let ids: Vec<String> = v1.unwrap().workflows.into_iter().map(|w| w.instance_id).collect();
        assert_eq!(ids, [one.as_str()]);
        // Done once: a second run finds nothing to do, and a new connection too.
        backend.build_listing_indexes().await.unwrap();
        let again = common::connect(&prefix).await;
        assert_eq!(again.list_workflows(&ListRequest::default()).await.unwrap().workflows.len(), 3);
    })
    .await;
}

/// Listing entries that outlived their workflows (keys removed by an older version or by
/// hand) neither stop a prune nor stay listed once a backend connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_listing_entries_do_not_block_prunes() {
    use sayiir_persistence_conformance::fixtures::completed_snapshot;
    use sayiir_persistence_redis::{ListRequest, PruneRequest, RetentionStore, WorkflowListing};
    let prefix = common::fresh_prefix("stale");
    let backend = common::connect(&prefix).await;
    guarded(&[&backend], async {
        let ids: Vec<String> = (0..4).map(|i| unique_id(&format!("stale-{i}"))).collect();
        for (i, id) in ids.iter().enumerate() {
            let mut snapshot = completed_snapshot(id);
            snapshot.updated_at = 10 + i as u64;
            backend.save_snapshot(&snapshot).await.unwrap();
        }
        // Remove the keys of the two oldest and of the newest by hand, leaving their entries.
        let mut raw = common::raw().await;
        let keys = common::keys_of(&backend).await;
        let instances = keys.iter().find(|k| k.ends_with("}:instances")).unwrap().clone();
        for id in [&ids[0], &ids[1], &ids[3]] {
            for key in keys.iter().filter(|k| k.contains(&format!(":{id}}}:"))) {
                let _: () = redis::cmd("DEL").arg(key).query_async(&mut raw).await.unwrap();
            }
            let _: () =
                redis::cmd("SREM").arg(&instances).arg(id).query_async(&mut raw).await.unwrap();
        }
        assert_eq!(
            backend.list_workflows(&ListRequest::default()).await.unwrap().workflows.len(),
            4
        );
        let request = PruneRequest::finished_before(13).batch_size(2);
        assert_eq!(backend.prune_finished(&request).await.unwrap(), 1, "the one stored workflow");
        let left = backend.list_workflows(&ListRequest::default()).await.unwrap().workflows;
        assert_eq!(
            left.iter().map(|w| w.instance_id.as_str()).collect::<Vec<_>>(),
            [ids[3].as_str()]
        );
        let again = common::connect(&prefix).await;
        assert!(again.list_workflows(&ListRequest::default()).await.unwrap().workflows.is_empty());
    })
    .await;
}

/// A store keeps the key layout it was created in: a sharded store refuses another shard count
/// and the single-node layout, a single-node store refuses the sharded layout, each with an
/// error that names both; nothing is written by a refused connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_keeps_its_key_layout() {
    use sayiir_persistence_redis::RedisOptions;
    let refused = |result: Result<RedisBackend, BackendError>| match result {
        Err(BackendError::Backend(message)) => message,
        other => panic!("the connect must be refused, got {other:?}"),
    };
    let url = common::url();
    let sharded_prefix = common::fresh_prefix("layout-sharded");
    let options = RedisOptions::default().key_prefix(&sharded_prefix);
    let sharded = RedisBackend::connect_with(&url, options.clone().index_shards(4)).await.unwrap();
    let single_prefix = common::fresh_prefix("layout-single");
    let single = common::connect(&single_prefix).await;
    guarded(&[&sharded, &single], async {
        let id = unique_id("kept");
        sharded.save_snapshot(&at_task(&id, "t")).await.unwrap();
        let other_count =
            refused(RedisBackend::connect_with(&url, options.clone().index_shards(8)).await);
        assert!(
            other_count.contains("shards=4") && other_count.contains("shards=8"),
            "{other_count}"
        );
        let unsharded = refused(RedisBackend::connect_with(&url, options.clone()).await);
        assert!(
            unsharded.contains("shards=4") && unsharded.contains("index_shards"),
            "{unsharded}"
        );
        // The same count opens it, and finds what it holds.
        let again =
            RedisBackend::connect_with(&url, options.clone().index_shards(4)).await.unwrap();
        assert_eq!(again.load_snapshot(&id).await.unwrap().instance_id, id);
        let found = again.find_available_tasks("w", 10, aging(), &[]).await.unwrap();
        assert_eq!(found.iter().map(|t| t.instance_id.as_str()).collect::<Vec<_>>(), [id.as_str()]);

        single.save_snapshot(&at_task(&unique_id("single"), "t")).await.unwrap();
        let keys_before = common::keys_of(&single).await.len();
        let options = RedisOptions::default().key_prefix(&single_prefix).index_shards(4);
        let sharded_on_single = refused(RedisBackend::connect_with(&url, options).await);
        assert!(
            sharded_on_single.contains("single-node") && sharded_on_single.contains("export"),
            "{sharded_on_single}"
        );
        assert_eq!(common::keys_of(&single).await.len(), keys_before, "nothing written");
    })
    .await;
}
