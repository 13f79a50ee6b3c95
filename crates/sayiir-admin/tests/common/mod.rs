//! Running the binary, shared by the end-to-end tests.
#![allow(dead_code, clippy::expect_used)] // each test file uses its own part

use std::process::{Command, Output};

/// Runs the binary with `args` (the store's arguments first).
pub fn admin(store: &[String], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sayiir-admin"))
        .args(store)
        .args(args)
        .env_remove("SAYIIR_STORE_URL")
        .output()
        .expect("the sayiir-admin binary runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs and expects success; returns stdout.
pub fn ok(store: &[String], args: &[&str]) -> String {
    let output = admin(store, args);
    assert!(output.status.success(), "{args:?} failed: {}", stderr(&output));
    stdout(&output)
}
