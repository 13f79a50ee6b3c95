//! Export and import stream: a store far larger than the memory the binary uses goes through
//! both, and the largest resident set of the processes stays well under the store's size.
#![allow(clippy::expect_used, clippy::unwrap_used)]
#![cfg(target_os = "linux")]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::ok;
use sayiir_persistence::{SnapshotStore, WorkflowTransfer};
use sayiir_persistence_conformance::fixtures::{in_progress, unique_id};
use sayiir_persistence_sqlite::SqliteBackend;

/// Workflows in the store, and the bytes of results each holds: 100 MiB in all.
const WORKFLOWS: usize = 640;
const RESULT_BYTES: usize = 160 * 1024;

/// Runs the binary like `common::ok`, watching its peak resident set (`VmHWM` of
/// `/proc/<pid>/status`, read every few milliseconds until it exits); returns stdout and the
/// peak in bytes.
fn run_watched(store: &[String], args: &[&str]) -> (String, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sayiir-admin"))
        .args(store)
        .args(args)
        .env_remove("SAYIIR_STORE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the sayiir-admin binary runs");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            let hwm = status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            peak = peak.max(hwm.unwrap_or(0) * 1024);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    assert!(peak > 0, "the peak resident set was read");
    (stdout, peak)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_larger_than_the_processes_memory_streams_through() {
    let dir = tempfile::tempdir().unwrap();
    let source = SqliteBackend::open(dir.path().join("big.db")).await.unwrap();
    let output = Bytes::from(vec![7_u8; RESULT_BYTES]);
    let mut ids = Vec::new();
    for _ in 0..WORKFLOWS {
        let id = unique_id("big");
        let mut snapshot = in_progress(&id);
        snapshot.mark_task_completed("large".into(), output.clone());
        source.save_snapshot(&snapshot).await.unwrap();
        ids.push(id);
    }
    let store_bytes = (WORKFLOWS * RESULT_BYTES) as u64;
    let big = vec!["--url".to_string(), format!("sqlite:{}", dir.path().join("big.db").display())];
    let file = dir.path().join("big.jsonl").display().to_string();
    let (_, export_peak) = run_watched(&big, &["export", &file]);
    let copy =
        vec!["--url".to_string(), format!("sqlite:{}", dir.path().join("copy.db").display())];
    ok(&copy, &["migrate"]);
    let (imported, import_peak) = run_watched(&copy, &["import", &file]);
    assert!(imported.contains(&format!("imported {WORKFLOWS} record(s)")), "{imported}");

    for (command, peak) in [("export", export_peak), ("import", import_peak)] {
        eprintln!(
            "{command}: peak resident set {} KiB, store {} KiB",
            peak / 1024,
            store_bytes / 1024
        );
        assert!(
            peak < store_bytes / 2,
            "{command} reached a resident set of {peak} bytes for a store of {store_bytes}"
        );
    }
    let copy_store = SqliteBackend::open(dir.path().join("copy.db")).await.unwrap();
    let last = ids.last().unwrap();
    let record = copy_store.export_workflow(last).await.unwrap().unwrap();
    let snapshot = record.snapshot.unwrap();
    assert_eq!(snapshot.get_task_result_bytes("large").map(|b| b.len()), Some(RESULT_BYTES));
}
