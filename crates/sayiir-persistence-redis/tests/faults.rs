//! Faults on a Redis server of the test's own (never the shared one): a value larger than
//! the server accepts, and a server restart under concurrent writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use sayiir_persistence_conformance::fixtures::{at_task, unique_id};
use sayiir_persistence_conformance::private::{PrivateRedis, acknowledged_writes_survive};
use sayiir_persistence_redis::{
    BackendError, RedisBackend, RedisOptions, SignalStore, SnapshotStore,
};

async fn backend(server: &PrivateRedis) -> RedisBackend {
    let options = RedisOptions::default().key_prefix(unique_id("faults"));
    RedisBackend::connect_with(&server.url(), options).await.expect("connect to the private Redis")
}

/// With `proto-max-bulk-len` at 1 MB, a 2 MiB event fails by itself with an error naming the
/// limit, before anything is sent; the 39 saves running beside it on the same connections
/// and the next call all succeed (sent, the value would make the server drop the connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_value_fails_alone() {
    let server = PrivateRedis::start(&["--proto-max-bulk-len", "1mb"]);
    let backend = backend(&server).await;
    let id = unique_id("big");
    backend.save_snapshot(&at_task(&id, "t")).await.unwrap();

    let big = Bytes::from(vec![7_u8; 2 * 1024 * 1024]);
    let event = {
        let backend = backend.clone();
        let id = id.clone();
        tokio::spawn(async move { backend.send_event(&id, "upload", big).await })
    };
    let saves: Vec<_> = (0..39)
        .map(|i| {
            let backend = backend.clone();
            tokio::spawn(async move {
                backend.save_snapshot(&at_task(&unique_id(&format!("beside-{i}")), "t")).await
            })
        })
        .collect();
    match event.await.unwrap() {
        Err(BackendError::Backend(message)) => {
            assert!(message.contains("proto-max-bulk-len"), "{message}");
            assert!(message.contains(&id), "the error names the instance: {message}");
            let server = format!("127.0.0.1:{}", server.port());
            assert!(message.contains(&server), "the error names the server: {message}");
        }
        other => panic!("a 2 MiB value over a 1 MB limit must fail, got {other:?}"),
    }
    for save in saves {
        save.await.unwrap().expect("a save beside the oversized call");
    }
    assert_eq!(backend.consume_event(&id, "upload").await.unwrap(), None, "nothing was stored");
    backend.load_snapshot(&id).await.unwrap();
}

/// After the server restarts, every connection the backend held is stale: ten concurrent
/// `save_snapshot`s (an overwrite, safe to send again) all succeed on fresh connections,
/// with the same backend object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_survive_a_server_restart() {
    let mut server = PrivateRedis::start(&[]);
    let backend = backend(&server).await;
    let ids: Vec<String> = (0..10).map(|i| unique_id(&format!("restart-{i}"))).collect();
    for id in &ids {
        backend.save_snapshot(&at_task(id, "t")).await.unwrap();
    }
    server.restart();
    let saves: Vec<_> = ids
        .iter()
        .map(|id| {
            let backend = backend.clone();
            let snapshot = at_task(id, "after");
            tokio::spawn(async move { backend.save_snapshot(&snapshot).await })
        })
        .collect();
    for save in saves {
        save.await.unwrap().expect("a save after the restart");
    }
    for id in &ids {
        backend.load_snapshot(id).await.expect("a load after the restart");
    }
}

/// The server stalls (a proxy of the test's own holds every byte) longer than
/// `response_timeout` while `consume_event` runs: the call asks again with the same request
/// id until answered, so the event the server took reaches the caller exactly once; it is
/// neither lost nor delivered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumed_event_reaches_the_caller_across_a_stall() {
    let server = PrivateRedis::start(&[]);
    let proxy = sayiir_persistence_conformance::private::Proxy::start(&format!(
        "127.0.0.1:{}",
        server.port()
    ))
    .await;
    let options = RedisOptions::default()
        .key_prefix(unique_id("stall"))
        .response_timeout(std::time::Duration::from_millis(300));
    let backend = RedisBackend::connect_with(&format!("redis://{}", proxy.addr()), options)
        .await
        .expect("connect through the proxy");
    let id = unique_id("stalled");
    backend.send_event(&id, "go", Bytes::from_static(b"first")).await.unwrap();
    backend.send_event(&id, "go", Bytes::from_static(b"second")).await.unwrap();

    proxy.stall();
    let consume = {
        let backend = backend.clone();
        let id = id.clone();
        tokio::spawn(async move { backend.consume_event(&id, "go").await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    proxy.resume();
    let got = consume.await.unwrap().expect("consume_event is answered once the server is back");
    assert_eq!(got.as_deref(), Some(&b"first"[..]));
    assert_eq!(backend.consume_event(&id, "go").await.unwrap().as_deref(), Some(&b"second"[..]));
    assert_eq!(backend.consume_event(&id, "go").await.unwrap(), None, "nothing delivered twice");
}

/// With `appendfsync always`, the server is killed (SIGKILL) in the middle of a load of saves
/// and claims and started again: every save and claim acknowledged before the kill is there
/// afterwards, no claim has two holders, and the same backend object works again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let mut server = PrivateRedis::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let backend = backend(&server).await;
    acknowledged_writes_survive(&backend, 200, || async { server.restart() }).await;
}
