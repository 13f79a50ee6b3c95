//! Faults between the backend and PostgreSQL: idle connections the server closes, a network
//! black hole, connections cut. The shared server is never stopped or stalled: idle sessions
//! are closed by a setting of the test's own sessions, stalls and cuts happen in a TCP proxy of
//! the test's own on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use sayiir_persistence_conformance::fixtures::{at_task, unique_id};
use sayiir_persistence_conformance::private::{
    PrivatePostgres, Proxy, acknowledged_writes_survive,
};
use sayiir_persistence_conformance::servers::postgres_url;
use sayiir_persistence_postgres::{
    BackendError, PostgresBackend, PostgresOptions, SignalStore, SnapshotStore, TaskClaimStore,
};

/// `url` with `extra` (`key=value`) added to its query string.
fn with_parameter(url: &str, extra: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{extra}")
}

/// `url` with its `host:port` replaced by `addr`.
fn through(url: &str, addr: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let host_start = url[after_scheme..].find('@').map_or(after_scheme, |i| after_scheme + i + 1);
    let host_end = url[host_start..].find(['/', '?']).map_or(url.len(), |i| host_start + i);
    format!("{}{addr}{}", &url[..host_start], &url[host_end..])
}

/// The `host:port` of `url`.
fn host_port(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let host_start = url[after_scheme..].find('@').map_or(after_scheme, |i| after_scheme + i + 1);
    let host_end = url[host_start..].find(['/', '?']).map_or(url.len(), |i| host_start + i);
    url[host_start..host_end].to_string()
}

/// The server closes sessions idle for 1 s (`idle_session_timeout`, set for this test's
/// sessions only); after 2.5 s idle, reads, idempotent writes and a claim all succeed on the
/// same backend object: dead pooled connections never surface as errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_closed_by_the_server_are_replaced() {
    let url = with_parameter(&postgres_url(), "options=-c%20idle_session_timeout%3D1000");
    let schema = common::unique_schema("idle_closed");
    let options = PostgresOptions::default().schema(&schema).max_connections(4);
    let backend = PostgresBackend::connect_with(&url, options).await.expect("connect");
    let ids: Vec<String> = (0..4).map(|i| unique_id(&format!("idle-{i}"))).collect();
    let warm: Vec<_> = ids
        .iter()
        .map(|id| {
            let (backend, snapshot) = (backend.clone(), at_task(id, "t"));
            tokio::spawn(async move { backend.save_snapshot(&snapshot).await })
        })
        .collect();
    for save in warm {
        save.await.unwrap().unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let outcome = async {
        backend.load_snapshot(&ids[0]).await.expect("a read after the server closed idle sessions");
        backend.save_snapshot(&at_task(&ids[1], "u")).await.expect("a save after idle close");
        let claim = backend.claim_task(&ids[2], "t", "w", None).await.expect("a claim");
        assert!(claim.is_some());
        backend.find_available_tasks("w", 10, chrono::Duration::seconds(60), &[]).await.unwrap();
    };
    outcome.await;
    common::drop_backend(&common::connect(&schema).await).await;
    backend.close().await;
}

/// Behind a network black hole every call fails within about `call_timeout`, saying it may or
/// may not have been applied; once the network is back, the same backend works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_hole_calls_time_out_then_recover() {
    let proxy = Proxy::start(&host_port(&postgres_url())).await;
    let schema = common::unique_schema("black_hole");
    let options = PostgresOptions::default()
        .schema(&schema)
        .max_connections(4)
        .call_timeout(Duration::from_secs(1))
        .acquire_timeout(Duration::from_secs(1));
    let backend = PostgresBackend::connect_with(&through(&postgres_url(), &proxy.addr()), options)
        .await
        .expect("connect through the proxy");
    let id = unique_id("hole");
    backend.save_snapshot(&at_task(&id, "t")).await.unwrap();

    proxy.stall();
    for (operation, call) in [
        (
            "load_snapshot",
            Box::pin(async { backend.load_snapshot(&id).await.map(drop) })
                as std::pin::Pin<
                    Box<dyn std::future::Future<Output = Result<(), BackendError>> + Send>,
                >,
        ),
        ("save_snapshot", Box::pin(async { backend.save_snapshot(&at_task(&id, "u")).await })),
    ] {
        let started = Instant::now();
        match call.await {
            Err(BackendError::Backend(message)) => {
                // Either the statement was sent and got no answer (call_timeout), or no
                // connection could be had (acquire_timeout): each error says which.
                assert!(message.contains("timed out"), "{message}");
                assert!(
                    message.contains("may or may not have been applied")
                        || message.contains("nothing was sent"),
                    "{message}"
                );
                assert!(message.contains(&id), "{message}");
                assert!(message.contains(&proxy.addr()), "the error names the server: {message}");
            }
            other => panic!("{operation} behind a black hole: expected a timeout, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{operation} took {:?}",
            started.elapsed()
        );
    }
    proxy.resume();
    let recovered = async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match backend.load_snapshot(&id).await {
                Ok(_) => return,
                Err(error) if Instant::now() < deadline => {
                    eprintln!("while recovering: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => {
                    panic!("the backend did not recover after the network came back: {error}")
                }
            }
        }
    };
    recovered.await;
    backend.save_snapshot(&at_task(&id, "v")).await.expect("a save after recovery");
    common::drop_backend(&common::connect(&schema).await).await;
    backend.close().await;
}

/// Every connection through the proxy is cut: reads and idempotent writes retry on a fresh
/// connection and succeed, with the same backend object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connections_are_replaced() {
    let proxy = Proxy::start(&host_port(&postgres_url())).await;
    let schema = common::unique_schema("cut");
    let options = PostgresOptions::default().schema(&schema).max_connections(4);
    let backend = PostgresBackend::connect_with(&through(&postgres_url(), &proxy.addr()), options)
        .await
        .expect("connect through the proxy");
    let id = unique_id("cut");
    backend.save_snapshot(&at_task(&id, "t")).await.unwrap();
    for round in 0..3 {
        proxy.cut();
        backend.load_snapshot(&id).await.unwrap_or_else(|e| panic!("read after cut {round}: {e}"));
        proxy.cut();
        backend
            .save_snapshot(&at_task(&id, "t"))
            .await
            .unwrap_or_else(|e| panic!("save after cut {round}: {e}"));
    }
    common::drop_backend(&common::connect(&schema).await).await;
    backend.close().await;
}

/// A PostgreSQL cluster of the test's own crashes (`pg_ctl stop -m immediate`) in the middle
/// of a load of saves and claims and starts again: every save and claim acknowledged before
/// the crash is there afterwards, no claim has two holders, and the same backend object works
/// again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_crash() {
    let server = tokio::task::spawn_blocking(PrivatePostgres::start).await.unwrap();
    let options = PostgresOptions::default().schema("crash").max_connections(8);
    let backend = PostgresBackend::connect_with(&server.url(), options).await.expect("connect");
    let server = std::sync::Arc::new(server);
    let crashing = std::sync::Arc::clone(&server);
    acknowledged_writes_survive(&backend, 150, || async move {
        tokio::task::spawn_blocking(move || crashing.crash_and_restart()).await.unwrap();
    })
    .await;
    backend.close().await;
    // Stopping and removing the cluster blocks: off the async threads.
    tokio::task::spawn_blocking(move || drop(server)).await.unwrap();
}

/// The network stalls longer than one attempt of `consume_event`: the attempt whose answer is
/// lost may still take the event on the server once the network is back; the call asks again
/// with the same request id and gets that event, so it reaches the caller exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumed_event_reaches_the_caller_across_a_stall() {
    let proxy = Proxy::start(&host_port(&postgres_url())).await;
    let schema = common::unique_schema("consume_stall");
    let options = PostgresOptions::default()
        .schema(&schema)
        .max_connections(4)
        .call_timeout(Duration::from_secs(10));
    let backend = PostgresBackend::connect_with(&through(&postgres_url(), &proxy.addr()), options)
        .await
        .expect("connect through the proxy");
    let id = unique_id("stalled");
    backend.send_event(&id, "go", bytes::Bytes::from_static(b"first")).await.unwrap();
    backend.send_event(&id, "go", bytes::Bytes::from_static(b"second")).await.unwrap();

    proxy.stall();
    let consume = {
        let (backend, id) = (backend.clone(), id.clone());
        tokio::spawn(async move { backend.consume_event(&id, "go").await })
    };
    tokio::time::sleep(Duration::from_millis(3500)).await;
    proxy.resume();
    let got = consume.await.unwrap().expect("consume_event is answered once the network is back");
    assert_eq!(got.as_deref(), Some(&b"first"[..]));
    assert_eq!(backend.consume_event(&id, "go").await.unwrap().as_deref(), Some(&b"second"[..]));
    assert_eq!(backend.consume_event(&id, "go").await.unwrap(), None, "nothing delivered twice");
    common::drop_backend(&common::connect(&schema).await).await;
    backend.close().await;
}

/// The server side of a repeated `consume_event`: the same request id gets the same event
/// back however often it is sent; a new request takes the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_consume_request_gets_the_same_event() {
    common::with_backend("consume_repeat", |backend| async move {
        let id = unique_id("repeat");
        for payload in [&b"first"[..], b"second"] {
            backend.send_event(&id, "go", bytes::Bytes::copy_from_slice(payload)).await.unwrap();
        }
        let sql = format!("SELECT \"{}\".consume_event_once($1, 'go', $2)", backend.schema());
        let ask = |request: &'static str| {
            let (sql, id, pool) = (sql.clone(), id.clone(), backend.pool().clone());
            async move {
                sqlx::query_scalar::<_, Option<Vec<u8>>>(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(request)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(ask("r1").await.as_deref(), Some(&b"first"[..]));
        assert_eq!(ask("r1").await.as_deref(), Some(&b"first"[..]), "a repeat takes nothing new");
        assert_eq!(ask("r2").await.as_deref(), Some(&b"second"[..]));
        assert_eq!(ask("r3").await, None);
        // Deleting the workflow removes the receipts with everything else.
        backend.save_snapshot(&at_task(&id, "t")).await.unwrap();
        backend.delete_snapshot(&id).await.unwrap();
        let left = format!(
            "SELECT count(*) FROM \"{}\".event_receipts WHERE instance_id = $1",
            backend.schema()
        );
        let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(left))
            .bind(&id)
            .fetch_one(backend.pool())
            .await
            .unwrap();
        assert_eq!(left, 0);
    })
    .await;
}
