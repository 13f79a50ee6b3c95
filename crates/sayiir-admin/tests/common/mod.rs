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

/// Deletes every key matching `pattern` (a backend's `key_pattern()`) on the Redis server at
/// `url`, one key per `UNLINK` (on a cluster node the keys are in several slots).
pub async fn unlink_redis_keys(url: &str, pattern: &str) {
    use sayiir_persistence_redis::redis;
    let client = redis::Client::open(url).expect("Redis URL");
    let mut conn = client.get_multiplexed_async_connection().await.expect("Redis connection");
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(pattern).query_async(&mut conn).await.expect("KEYS");
    for key in keys {
        let _: () = redis::cmd("UNLINK").arg(&key).query_async(&mut conn).await.expect("UNLINK");
    }
}
