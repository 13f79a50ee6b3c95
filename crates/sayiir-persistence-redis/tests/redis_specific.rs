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
        let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut raw).await.unwrap();
        let found = backend.find_available_tasks("w", 1, aging(), &[]).await.unwrap();
        assert_eq!(found.len(), 1);
    })
    .await;
}

fn payload(len: usize, seed: u8) -> Bytes {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<u8>>().into()
}

/// 16 MiB task outputs, inputs and events round-trip exactly (contract D8).
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
/// every key of the prefix (indexes included) counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_is_at_most_one_and_a_half_times_the_payload() {
    let backend = common::backend("size").await;
    guarded(&[&backend], async {
        let id = unique_id("size");
        let outputs: Vec<(String, Vec<u8>)> =
            (0..10).map(|i| (format!("task-{i}"), payload(1024, i).to_vec())).collect();
        let done: Vec<(&str, &[u8])> =
            outputs.iter().map(|(t, o)| (t.as_str(), o.as_slice())).collect();
        backend.save_snapshot(&with_results(&id, &done, "next")).await.unwrap();
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
        let payload_bytes = 10 * 1024;
        println!("10 x 1 KiB results: {total} bytes in Redis ({:.2}x)", total as f64 / 10240.0);
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
        // the global revision counter may remain.
        for id in ids {
            backend.delete_snapshot(id).await.unwrap();
        }
        let left = common::keys_of(&backend).await;
        assert!(left.iter().all(|k| k.ends_with("}:revision")), "{left:?}");
    })
    .await;
}

/// A connection killed by the server fails at most the call that finds it broken; the
/// backend replaces it by itself (contract D11), through a pool the caller built.
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
        let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut raw).await.unwrap();
        let ids: Vec<&str> = list
            .lines()
            .filter(|line| line.split(' ').any(|field| field == format!("name={name}")))
            .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
            .collect();
        assert_eq!(ids.len(), 1, "the backend should hold exactly one connection: {ids:?}");
        let _: () = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(ids[0])
            .query_async(&mut raw)
            .await
            .unwrap();

        // The first call may meet the dead connection; it fails with a message that names it.
        if let Err(e) = backend.load_snapshot(&id).await {
            let BackendError::Backend(message) = e else { panic!("unexpected error {e:?}") };
            assert!(message.contains("load_snapshot") && message.contains(&id), "{message}");
        }
        // The next one runs on a fresh connection.
        assert_eq!(backend.load_snapshot(&id).await.unwrap().instance_id, id);
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

/// The encoded key prefix, read back from the backend's key pattern.
fn key_prefix_of(backend: &RedisBackend) -> String {
    let pattern = backend.key_pattern();
    pattern.trim_start_matches("\\{").trim_end_matches("[:}]*").to_string()
}
