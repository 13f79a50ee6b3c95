//! The `sayiir-admin` binary end to end, as a person or a script runs it, against a store of
//! each backend on real servers: seeded with the libraries, then driven through the binary,
//! its output and exit status checked, and the store checked through the libraries again.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use sayiir_persistence::sayiir_core::snapshot::SignalKind;
use sayiir_persistence::{SignalStore, SnapshotStore, TaskClaimStore};
use sayiir_persistence_conformance::fixtures::{
    completed_snapshot, failed_snapshot, in_progress, unique_id,
};
use sayiir_persistence_conformance::servers::{postgres_url, redis_url};
use serde_json::Value;

mod common;
use common::{admin, ok, stderr, stdout};

/// `list --json` and the instance ids it printed, with the next cursor.
fn listed(store: &[String], args: &[&str]) -> (Vec<String>, Option<String>) {
    let mut all = vec!["list", "--json"];
    all.extend_from_slice(args);
    let page: Value = serde_json::from_str(&ok(store, &all)).expect("list --json prints JSON");
    let ids = page["workflows"]
        .as_array()
        .expect("a workflows array")
        .iter()
        .map(|w| w["instance_id"].as_str().unwrap().to_string())
        .collect();
    (ids, page["next"].as_str().map(str::to_string))
}

/// The walk-through every backend must pass; `store` is the store's arguments, `backend` the
/// same store through the library.
async fn walk_through<B: SnapshotStore + SignalStore + TaskClaimStore>(
    store: &[String],
    backend: &B,
) {
    let (old_done, old_failed) = (unique_id("done"), unique_id("failed"));
    let (running, to_pause) = (unique_id("running"), unique_id("pause"));
    let mut done = completed_snapshot(&old_done);
    done.updated_at = 100;
    let mut failed = failed_snapshot(&old_failed);
    failed.updated_at = 200;
    let mut running_snapshot = in_progress(&running);
    running_snapshot.updated_at = 400;
    let mut pausing = in_progress(&to_pause);
    pausing.updated_at = 300;
    for snapshot in [&done, &failed, &running_snapshot, &pausing] {
        backend.save_snapshot(snapshot).await.unwrap();
    }

    // list: everything, newest first; filters; pages with a cursor; a table for people.
    let (ids, next) = listed(store, &[]);
    assert_eq!(ids, [running.clone(), to_pause.clone(), old_failed.clone(), old_done.clone()]);
    assert_eq!(next, None);
    assert_eq!(listed(store, &["--status", "Failed"]).0, [old_failed.as_str()]);
    let (first, next) = listed(store, &["--limit", "3"]);
    assert_eq!(first.len(), 3);
    let next = next.expect("a full page has a cursor");
    assert_eq!(listed(store, &["--limit", "3", "--after", &next]).0, [old_done.as_str()]);
    let table = ok(store, &["list", "--limit", "2"]);
    assert!(table.contains(&running) && table.contains("InProgress"), "{table}");
    assert!(table.contains("more: --after"), "{table}");

    // show: text and JSON; a missing workflow exits 3.
    let shown = ok(store, &["show", &running]);
    assert!(shown.contains("InProgress") && shown.contains("results     1 task(s)"), "{shown}");
    let json: Value = serde_json::from_str(&ok(store, &["show", &running, "--json"])).unwrap();
    assert_eq!(json["status"], "InProgress");
    assert_eq!(json["results"][0]["task_id"], "a");
    // show: who holds a claim, and the events waiting to be consumed.
    backend.claim_task(&running, "b", "worker-7", None).await.unwrap().unwrap();
    backend.send_event(&running, "approve", bytes::Bytes::from_static(b"yes")).await.unwrap();
    let shown = ok(store, &["show", &running]);
    assert!(shown.contains("claim       b held by worker-7"), "{shown}");
    assert!(shown.contains("never expires"), "{shown}");
    assert!(shown.contains("events      approve: 1 buffered (3 bytes)"), "{shown}");
    let json: Value = serde_json::from_str(&ok(store, &["show", &running, "--json"])).unwrap();
    assert_eq!(json["claims"][0]["worker_id"], "worker-7");
    assert_eq!(json["events"]["approve"]["count"], 1);
    let json: Value = serde_json::from_str(&ok(store, &["show", &old_done, "--json"])).unwrap();
    assert_eq!(json["status"], "Completed");
    assert!(json["archived_results"].is_array(), "{json}");
    let missing = admin(store, &["show", "no-such-workflow"]);
    assert_eq!(missing.status.code(), Some(3), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("no-such-workflow"));

    // cancel stores a request the runtime applies; pause, then resume once applied.
    ok(store, &["cancel", &running, "--reason", "customer left"]);
    let request = backend.get_signal(&running, SignalKind::Cancel).await.unwrap().unwrap();
    assert_eq!(request.reason.as_deref(), Some("customer left"));
    assert_eq!(request.requested_by.as_deref(), Some("sayiir-admin"));
    ok(store, &["pause", &to_pause]);
    assert!(backend.check_and_pause(&to_pause).await.unwrap(), "the pause request was stored");
    assert!(ok(store, &["show", &to_pause]).contains("Paused"));
    ok(store, &["resume", &to_pause]);
    assert_eq!(backend.load_snapshot(&to_pause).await.unwrap().state.as_ref(), "InProgress");

    // prune: the two finished workflows before the cut-off go, the others stay.
    let pruned = ok(store, &["prune", "--before", "150", "--batch-size", "1"]);
    assert!(pruned.contains("removed 1 workflow"), "{pruned}");
    let pruned = ok(store, &["prune", "--before", "1970-01-01T00:10:00Z"]);
    assert!(pruned.contains("removed 1 workflow"), "{pruned}");
    let mut left = listed(store, &[]).0;
    left.sort();
    let mut expected = vec![running.clone(), to_pause.clone()];
    expected.sort();
    assert_eq!(left, expected);
    let bad = admin(store, &["prune", "--before", "last tuesday"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("30d"), "{}", stderr(&bad));

    // stats: per status, ready tasks and live claims, as a table and as JSON.
    let stats: Value = serde_json::from_str(&ok(store, &["stats", "--json"])).unwrap();
    assert_eq!(stats["workflows"]["InProgress"], 2, "{stats}");
    assert_eq!(stats["workflows"]["Completed"], 0, "{stats}");
    assert_eq!(stats["live_claims"], 1, "{stats}");
    assert!(ok(store, &["stats"]).contains("live claims"));

    assert!(ok(store, &["migrate"]).contains("up to date"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_walk_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflows.db");
    let backend = sayiir_persistence_sqlite::SqliteBackend::open(&path).await.unwrap();
    let store = vec!["--url".to_string(), format!("sqlite:{}", path.display())];
    walk_through(&store, &backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_walk_through() {
    use sayiir_persistence_postgres::{PostgresBackend, PostgresOptions};
    let schema = unique_id("admin_cli").replace('-', "_");
    let options = PostgresOptions::default().schema(&schema);
    let backend = PostgresBackend::connect_with(&postgres_url(), options).await.unwrap();
    let store = vec!["--url".to_string(), postgres_url(), "--schema".to_string(), schema.clone()];
    walk_through(&store, &backend).await;
    let drop = format!("DROP SCHEMA \"{schema}\" CASCADE");
    sayiir_persistence_postgres::sqlx::query(sayiir_persistence_postgres::sqlx::AssertSqlSafe(
        drop,
    ))
    .execute(backend.pool())
    .await
    .unwrap();
    backend.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_walk_through() {
    use sayiir_persistence_redis::{RedisBackend, RedisOptions};
    let prefix = unique_id("admin-cli");
    let options = RedisOptions::default().key_prefix(&prefix);
    let backend = RedisBackend::connect_with(&redis_url(), options).await.unwrap();
    let store = vec!["--url".to_string(), redis_url(), "--key-prefix".to_string(), prefix.clone()];
    walk_through(&store, &backend).await;
    common::unlink_redis_keys(&redis_url(), &backend.key_pattern()).await;
}

/// Errors a person can act on: no store, an unknown scheme, an option of another backend,
/// and `--help` with examples.
#[test]
fn usage_errors_say_what_to_do() {
    let none = admin(&[], &["list"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(stderr(&none).contains("SAYIIR_STORE_URL"), "{}", stderr(&none));
    let scheme = admin(&["--url".into(), "mysql://x".into()], &["list"]);
    assert_eq!(scheme.status.code(), Some(2));
    assert!(stderr(&scheme).contains("sqlite:PATH"), "{}", stderr(&scheme));
    let option = admin(
        &["--url".into(), "sqlite:/tmp/x.db".into(), "--schema".into(), "s".into()],
        &["list"],
    );
    assert_eq!(option.status.code(), Some(2));
    assert!(stderr(&option).contains("--schema does not apply"), "{}", stderr(&option));
    // Bad requests are refused before any store is opened: nothing is created.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.db");
    let store = vec!["--url".to_string(), format!("sqlite:{}", path.display())];
    let refused_requests: [&[&str]; 3] = [
        &["list", "--status", "Running"],
        &["list", "--after", "nonsense"],
        &["prune", "--before", "30d", "--batch-size", "0"],
    ];
    for args in refused_requests {
        let refused = admin(&store, args);
        assert_eq!(refused.status.code(), Some(2), "{args:?}: {}", stderr(&refused));
    }
    // A mistyped SQLite path is an error, not an empty store; `migrate` creates one.
    let missing = admin(&store, &["list"]);
    assert_eq!(missing.status.code(), Some(1), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("no SQLite file"), "{}", stderr(&missing));
    assert!(!path.exists(), "nothing was created");
    assert!(ok(&store, &["migrate"]).contains("up to date"));
    assert!(ok(&store, &["list"]).contains("no workflows"));
    let help = admin(&[], &["--help"]);
    assert!(help.status.success());
    assert!(stdout(&help).contains("Examples:") && stdout(&help).contains("prune --before 30d"));
}
