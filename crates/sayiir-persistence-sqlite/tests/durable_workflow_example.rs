//! The README's first command, `cargo run --example durable_workflow`, killed in the middle of
//! a step and run again: it resumes from the checkpoint, the steps that had finished do not
//! run again, and the workflow completes.
//!
//! These tests run the example's binary, which `cargo test` builds with the tests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sayiir_persistence_sqlite::{SnapshotStore, SqliteBackend};

/// `target/<profile>/examples/durable_workflow`, beside this test's own binary.
fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let path = profile_dir
        .join("examples")
        .join(format!("durable_workflow{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "the example binary is missing at {}: run `cargo test` (which builds examples) or \
         `cargo build --examples` first",
        path.display()
    );
    path
}

fn run(db: &Path, args: &[&str]) -> (Output, String) {
    let output = Command::new(example())
        .arg("--db")
        .arg(db)
        .args(["--step-ms", "40"])
        .args(args)
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, stdout)
}

fn lines_with(stdout: &str, prefix: &str) -> usize {
    stdout.lines().filter(|l| l.trim_start().starts_with(prefix)).count()
}

/// Killed with SIGKILL while `charge-card` runs, then run again: `reserve-stock` is skipped,
/// `charge-card` runs again from its input, the order completes, and every step finished
/// exactly once over the two runs.
#[test]
fn killed_mid_step_resumes_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("orders.db");

    let mut child = Command::new(example())
        .arg("--db")
        .arg(&db)
        .args(["--step-ms", "4000"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the example");
    let mut first = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        first.push_str(&line);
        first.push('\n');
        if line.trim_start().starts_with("running  charge-card") {
            break;
        }
    }
    child.kill().expect("kill -9 the example mid-step");
    child.wait().unwrap();
    assert_eq!(lines_with(&first, "done     reserve-stock"), 1, "{first}");
    assert_eq!(lines_with(&first, "done     charge-card"), 0, "killed before it finished: {first}");

    let (output, second) = run(&db, &[]);
    assert!(
        output.status.success(),
        "second run failed: {second}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(second.contains("resuming order-1"), "{second}");
    assert_eq!(lines_with(&second, "skipped  reserve-stock"), 1, "{second}");
    assert_eq!(
        lines_with(&second, "running  reserve-stock"),
        0,
        "a finished step ran again: {second}"
    );
    for step in ["charge-card", "ship", "send-receipt"] {
        assert_eq!(lines_with(&second, &format!("done     {step}")), 1, "{step}: {second}");
    }
    assert!(
        second.contains(&db.display().to_string()),
        "the output says where the file is: {second}"
    );
    assert!(
        second.contains("completed order-1: payment pay_order-1_4200, tracking TRK-ORDER-1"),
        "{second}"
    );

    let backend =
        tokio::runtime::Runtime::new().unwrap().block_on(SqliteBackend::open(&db)).unwrap();
    let snapshot =
        tokio::runtime::Runtime::new().unwrap().block_on(backend.load_snapshot("order-1")).unwrap();
    assert!(snapshot.state.is_completed(), "{:?}", snapshot.state);
}

/// `--crash-in` exits abruptly in the middle of the named step; the next run resumes there,
/// and the run after that starts a new order from the first step.
#[test]
fn crash_flag_then_resume_then_new_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("orders.db");

    let (output, first) = run(&db, &["--crash-in", "ship"]);
    assert_eq!(output.status.code(), Some(101), "{first}");
    assert_eq!(lines_with(&first, "done     charge-card"), 1, "{first}");
    assert_eq!(lines_with(&first, "done     ship"), 0, "{first}");

    let (output, second) = run(&db, &[]);
    assert!(output.status.success(), "{second}");
    for step in ["reserve-stock", "charge-card"] {
        assert_eq!(lines_with(&second, &format!("skipped  {step}")), 1, "{second}");
        assert_eq!(lines_with(&second, &format!("running  {step}")), 0, "{second}");
    }
    assert_eq!(lines_with(&second, "done     ship"), 1, "{second}");
    assert_eq!(lines_with(&second, "done     send-receipt"), 1, "{second}");

    let (output, third) = run(&db, &[]);
    assert!(output.status.success(), "{third}");
    assert!(third.contains("starting order-2"), "{third}");
    assert_eq!(lines_with(&third, "skipped"), 0, "{third}");
    assert_eq!(lines_with(&third, "done     "), 4, "{third}");
}

/// A bad argument is a clear error, not a panic, and nothing is written.
#[test]
fn bad_argument_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (output, _) = run(&dir.path().join("orders.db"), &["--crash-in", "nowhere"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the steps are reserve-stock, charge-card, ship, send-receipt"),
        "{stderr}"
    );
}
