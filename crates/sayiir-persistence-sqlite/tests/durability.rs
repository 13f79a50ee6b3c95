//! What SQLite-specific users rely on beyond the conformance suite: data survives a reopen
//! and a killed process, two handles on one file stay atomic, and foreign files are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use chrono::Duration;
use sayiir_persistence_conformance::fixtures::{at_task, request, unique_id, with_results};
use sayiir_persistence_sqlite::sayiir_core::snapshot::SignalKind;
use sayiir_persistence_sqlite::{
    BackendError, SignalStore, SnapshotStore, SqliteBackend, SqliteOptions, TaskClaimStore,
    TaskResultStore,
};

fn temp_db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("durability.db");
    (dir, path)
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_survives_a_reopen() {
    let (_dir, path) = temp_db();
    let running = unique_id("running");
    let done = unique_id("done");
    {
        let backend = SqliteBackend::open(&path).await.unwrap();
        let mut snapshot = with_results(&running, &[("a", b"out-a")], "b");
        snapshot.trace_parent = Some("00-trace-01".into());
        backend.save_snapshot(&snapshot).await.unwrap();
        backend.save_task_result(&running, "side", Bytes::from_static(b"side-out")).await.unwrap();
        backend.store_signal(&running, SignalKind::Pause, request("hold")).await.unwrap();
        backend.send_event(&running, "approval", Bytes::from_static(b"yes")).await.unwrap();
        backend.claim_task(&running, "b", "worker-1", None).await.unwrap().unwrap();

        let mut finished = with_results(&done, &[("x", b"out-x")], "y");
        backend.save_snapshot(&finished).await.unwrap();
        finished.mark_completed(Bytes::from_static(b"final"));
        backend.save_snapshot(&finished).await.unwrap();
    }
    let backend = SqliteBackend::open(&path).await.unwrap();
    let loaded = backend.load_snapshot(&running).await.unwrap();
    assert_eq!(loaded.trace_parent.as_deref(), Some("00-trace-01"));
    assert_eq!(loaded.get_task_result_bytes("a"), Some(Bytes::from_static(b"out-a")));
    assert_eq!(loaded.get_task_result_bytes("side"), Some(Bytes::from_static(b"side-out")));
    let pause = backend.get_signal(&running, SignalKind::Pause).await.unwrap().unwrap();
    assert_eq!(pause.reason.as_deref(), Some("hold"));
    assert_eq!(
        backend.consume_event(&running, "approval").await.unwrap(),
        Some(Bytes::from_static(b"yes"))
    );
    assert!(backend.claim_task(&running, "b", "worker-2", None).await.unwrap().is_none());
    assert_eq!(
        backend.load_task_result(&done, "x").await.unwrap(),
        Some(Bytes::from_static(b"out-x"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_backends_on_one_file_race_for_a_claim() {
    let (_dir, path) = temp_db();
    let first = SqliteBackend::open(&path).await.unwrap();
    let second = SqliteBackend::open(&path).await.unwrap();
    for round in 0..20 {
        let instance = unique_id("race");
        let task = format!("task-{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let racers = (0..16).map(|i| {
            let backend = if i % 2 == 0 { first.clone() } else { second.clone() };
            let (instance, task, barrier) = (instance.clone(), task.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                backend
                    .claim_task(
                        &instance,
                        &task,
                        &format!("worker-{i}"),
                        Some(Duration::minutes(5)),
                    )
                    .await
            })
        });
        let mut winners = 0;
        for racer in racers.collect::<Vec<_>>() {
            if racer.await.unwrap().unwrap().is_some() {
                winners += 1;
            }
        }
        assert_eq!(winners, 1, "round {round}: {winners} winners");
    }
}

const CHILD_DB: &str = "SAYIIR_SQLITE_CRASH_CHILD_DB";

/// Two roles: run normally, it starts itself as a child that writes in a loop, kills it with
/// SIGKILL in the middle, and checks the file; run with `SAYIIR_SQLITE_CRASH_CHILD_DB`, it is
/// that child.
#[test]
fn a_killed_process_keeps_every_acknowledged_write() {
    if let Ok(path) = std::env::var(CHILD_DB) {
        return write_until_killed(&path);
    }
    let (_dir, path) = temp_db();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_killed_process_keeps_every_acknowledged_write", "--nocapture"])
        .env(CHILD_DB, &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acknowledged = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("ack ") {
            acknowledged.push(n.parse::<u64>().unwrap());
            if acknowledged.len() == 150 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no flush, mid-transaction
    child.wait().unwrap();
    assert_eq!(acknowledged.len(), 150, "the child stopped before writing enough");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let backend = SqliteBackend::open(&path).await.unwrap();
        for n in acknowledged {
            let id = format!("crash-{n}");
            let snapshot = backend.load_snapshot(&id).await.unwrap();
            assert_eq!(
                snapshot.get_task_result_bytes("t"),
                Some(Bytes::from(n.to_be_bytes().to_vec())),
                "{id} lost its result"
            );
        }
    });
}

fn write_until_killed(path: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let backend = SqliteBackend::open(path).await.unwrap();
        for n in 0u64.. {
            let id = format!("crash-{n}");
            backend.save_snapshot(&at_task(&id, "t")).await.unwrap();
            backend
                .save_task_result(&id, "t", Bytes::from(n.to_be_bytes().to_vec()))
                .await
                .unwrap();
            println!("ack {n}");
        }
    });
}

#[tokio::test]
async fn a_foreign_database_is_refused_and_left_unchanged() {
    let (_dir, path) = temp_db();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE invoices (id INTEGER PRIMARY KEY); INSERT INTO invoices VALUES (1);",
        )
        .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = SqliteBackend::open(&path).await.unwrap_err();
    assert!(
        matches!(&err, BackendError::Backend(m) if m.contains("not a Sayiir database")),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file was modified");

    let garbage = path.with_extension("txt");
    std::fs::write(&garbage, b"this is not sqlite at all, just some text in a file.....").unwrap();
    let before = std::fs::read(&garbage).unwrap();
    let err = SqliteBackend::open(&garbage).await.unwrap_err();
    assert!(
        matches!(&err, BackendError::Backend(m) if m.contains("not a Sayiir database")),
        "{err}"
    );
    assert_eq!(std::fs::read(&garbage).unwrap(), before, "the file was modified");
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let (_dir, path) = temp_db();
    drop(SqliteBackend::open(&path).await.unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
    }
    let err = SqliteBackend::open(&path).await.unwrap_err();
    assert!(matches!(&err, BackendError::Backend(m) if m.contains("newer")), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn in_memory_connections_share_one_database() {
    let backend = SqliteBackend::in_memory_with(SqliteOptions::default().readers(3)).await.unwrap();
    let other = SqliteBackend::in_memory().await.unwrap();
    for i in 0..20 {
        let id = format!("mem-{i}");
        backend.save_snapshot(&at_task(&id, "t")).await.unwrap();
        // Reads go to the reader connections: they must see the writer's data at once.
        assert!(backend.load_snapshot(&id).await.is_ok());
        assert!(matches!(other.load_snapshot(&id).await, Err(BackendError::NotFound(_))));
    }
    assert_eq!(backend.list_snapshots().await.unwrap().len(), 20);
}

/// A version-1 file is migrated in place: a workflow whose cancel was pending when the file
/// was written leaves the scheduling indexes (schema 0002) and comes back once the request
/// is cleared; the listing (schema 0004) shows its rows.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_1_file_is_migrated_with_its_pending_requests() {
    let (_dir, path) = temp_db();
    let (waiting, free) = (unique_id("waiting"), unique_id("free"));
    {
        let backend = SqliteBackend::open(&path).await.unwrap();
        backend.save_snapshot(&at_task(&waiting, "t")).await.unwrap();
        backend.save_snapshot(&at_task(&free, "t")).await.unwrap();
        backend.store_signal(&waiting, SignalKind::Cancel, request("stop")).await.unwrap();
    }
    let stamp =
        SqliteBackend::open(&path).await.unwrap().load_snapshot(&free).await.unwrap().updated_at;
    {
        // Back to the shape of version 1: its indexes (none of version 4's), no
        // signal_pending column, updated_at as a plain cast (migration 3 flips its sign bit).
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "UPDATE workflows SET updated_at = CASE
                 WHEN updated_at >= 0 THEN updated_at - 9223372036854775807 - 1
                 ELSE updated_at + 9223372036854775807 + 1 END;
             DROP INDEX workflows_ready; DROP INDEX workflows_wake; DROP INDEX workflows_woken;
             DROP INDEX workflows_by_status; DROP INDEX workflows_by_definition;
             ALTER TABLE workflows DROP COLUMN signal_pending;
             CREATE INDEX workflows_ready ON workflows (ready_priority, updated_at, instance_id)
                 WHERE ready_priority IS NOT NULL;
             CREATE INDEX workflows_wake ON workflows (wake_ms) WHERE wake_ms IS NOT NULL;
             CREATE INDEX workflows_woken ON workflows (instance_id) WHERE woken = 1;
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let backend = SqliteBackend::open(&path).await.unwrap();
    let migrated = backend.load_snapshot(&free).await.unwrap().updated_at;
    assert_eq!(migrated, stamp, "migration 3 keeps updated_at exactly");
    let found = |tasks: Vec<sayiir_persistence_sqlite::sayiir_core::task_claim::AvailableTask>| {
        tasks.into_iter().map(|t| t.instance_id).collect::<Vec<_>>()
    };
    let all = backend.find_available_tasks("w", 10, Duration::seconds(60), &[]).await.unwrap();
    assert_eq!(found(all), vec![free.clone()], "the workflow with a pending cancel is offered");
    backend.clear_signal(&waiting, SignalKind::Cancel).await.unwrap();
    let all = backend.find_available_tasks("w", 10, Duration::seconds(60), &[]).await.unwrap();
    let mut ids = found(all);
    ids.sort();
    let mut expected = vec![free, waiting];
    expected.sort();
    assert_eq!(ids, expected);
    // Migration 4's listing indexes serve the rows stored before it.
    use sayiir_persistence_sqlite::{ListRequest, WorkflowListing};
    let mut listed: Vec<String> = backend
        .list_workflows(&ListRequest::default().status("InProgress"))
        .await
        .unwrap()
        .workflows
        .into_iter()
        .map(|w| w.instance_id)
        .collect();
    listed.sort();
    assert_eq!(listed, expected);
}

/// `busy_timeout` bounds each call: with another process holding the write lock for longer,
/// forty concurrent saves all fail after about `busy_timeout` (not one after the other, the
/// last after forty of them), with an error that says what happened and that nothing was
/// written; once the lock is released, writes work again.
#[tokio::test(flavor = "multi_thread")]
async fn busy_timeout_bounds_each_call() {
    let (_dir, path) = temp_db();
    let timeout = std::time::Duration::from_millis(400);
    let backend = SqliteBackend::open_with(&path, SqliteOptions::default().busy_timeout(timeout))
        .await
        .unwrap();
    backend.save_snapshot(&at_task(&unique_id("before"), "t")).await.unwrap();

    // "Another process": a connection of its own that takes the write lock and holds it.
    let (locked, is_locked) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn({
        let path = path.clone();
        move || {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked.send(()).unwrap();
            let _ = released.recv();
            conn.execute_batch("ROLLBACK").unwrap();
        }
    });
    is_locked.recv().unwrap();

    let ids: Vec<String> = (0..40).map(|i| unique_id(&format!("blocked-{i}"))).collect();
    let calls = ids.iter().map(|id| {
        let backend = backend.clone();
        let snapshot = at_task(id, "t");
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            (backend.save_snapshot(&snapshot).await, started.elapsed())
        })
    });
    let outcomes = futures::future::join_all(calls).await;
    release.send(()).unwrap();
    holder.join().unwrap();

    for (result, elapsed) in outcomes.into_iter().map(Result::unwrap) {
        match result {
            Err(BackendError::Backend(message)) => {
                assert!(message.contains("busy_timeout"), "{message}");
                assert!(message.contains("nothing of it was written"), "{message}");
            }
            other => panic!("a save behind the lock should fail, got {other:?}"),
        }
        // About the timeout, not a multiple of it (generous for slow machines).
        assert!(elapsed < timeout * 5, "a call took {elapsed:?} with busy_timeout {timeout:?}");
    }
    for id in &ids {
        assert!(matches!(backend.load_snapshot(id).await, Err(BackendError::NotFound(_))));
    }
    backend.save_snapshot(&at_task(&unique_id("after"), "t")).await.unwrap();
}
