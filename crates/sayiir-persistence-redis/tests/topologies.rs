//! Redis deployments beyond one server, started by the project's own script
//! (`scripts/redis-topologies.sh`) on free loopback ports of this test, never the shared ones:
//! a 3-master cluster with a replica each, and a Sentinel setup (a master, a replica, three
//! sentinels). The backend runs on the master; it refuses, at connect and with an error that
//! says what to do, a cluster node, a sentinel and a replica, instead of failing at the
//! first script.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sayiir_persistence_conformance::fixtures::{at_task, unique_id};
use sayiir_persistence_redis::redis::sentinel::{SentinelClient, SentinelServerType};
use sayiir_persistence_redis::{BackendError, RedisBackend, RedisOptions, SnapshotStore};

/// The topologies of `scripts/redis-topologies.sh`, on ports of their own; stopped when
/// dropped.
struct Topologies {
    first: u16,
    dir: tempfile::TempDir,
}

/// Whether `port` (and its cluster bus port, 10000 above) can be bound now.
fn bindable(port: u16) -> bool {
    [port, port + 10_000].iter().all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
}

impl Topologies {
    fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/redis-topologies.sh")
    }

    fn run(&self, args: &[&str]) {
        let output = Command::new("bash")
            .arg(Self::script())
            .args(args)
            .env("SAYIIR_TOPOLOGY_PORT", self.first.to_string())
            .env("SAYIIR_TOPOLOGY_DIR", self.dir.path())
            .output()
            .expect("bash runs scripts/redis-topologies.sh");
        assert!(
            output.status.success(),
            "redis-topologies.sh {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts `what` (`all`, `cluster` or `sentinel`) on 23 consecutive free ports between
    /// 20,000 and 22,722, so that their cluster bus ports (10,000 above) stay below the
    /// ephemeral range (32,768 and up), where the ports of client connections come from.
    fn start(what: &str) -> Self {
        // Each start in this process from a range of its own: tests run in parallel, and
        // another start's servers may not answer yet when the ports are checked.
        static STARTS: AtomicU32 = AtomicU32::new(0);
        let offset = std::process::id() % 2_700 + STARTS.fetch_add(1, Ordering::Relaxed) * 900;
        let first = (0..73)
            .map(|attempt| 20_000 + u16::try_from((offset + attempt * 37) % 2_700).unwrap_or(0))
            .find(|first| (0..23).all(|i| bindable(first + i)))
            .expect("23 consecutive free loopback ports");
        let topologies = Self { first, dir: tempfile::tempdir().unwrap() };
        topologies.run(&["start", what]);
        topologies
    }

    fn url(&self, offset: u16) -> String {
        format!("redis://127.0.0.1:{}", self.first + offset)
    }
}

impl Drop for Topologies {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Self::script())
            .args(["stop", "all"])
            .env("SAYIIR_TOPOLOGY_PORT", self.first.to_string())
            .env("SAYIIR_TOPOLOGY_DIR", self.dir.path())
            .output();
    }
}

async fn refused(url: &str) -> String {
    let options = RedisOptions::default().key_prefix(unique_id("topology"));
    match RedisBackend::connect_with(url, options).await {
        Err(BackendError::Backend(message)) => message,
        other => panic!("connecting to {url} must be refused, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_master_is_accepted() {
    let topologies = Topologies::start("all");
    // Idempotent: started again, nothing changes.
    topologies.run(&["start", "all"]);

    let cluster = refused(&topologies.url(0)).await;
    assert!(cluster.contains("Redis Cluster node") && cluster.contains("standalone"), "{cluster}");
    let sentinel = refused(&topologies.url(20)).await;
    assert!(
        sentinel.contains("Sentinel") && sentinel.contains("GET-MASTER-ADDR-BY-NAME"),
        "{sentinel}"
    );
    let replica = refused(&topologies.url(11)).await;
    let master = format!("127.0.0.1:{}", topologies.first + 10);
    assert!(replica.contains("read-only replica") && replica.contains(&master), "{replica}");

    let options = RedisOptions::default().key_prefix(unique_id("topology"));
    let backend = RedisBackend::connect_with(&topologies.url(10), options).await.unwrap();
    let id = unique_id("on-master");
    backend.save_snapshot(&at_task(&id, "t")).await.unwrap();
    assert_eq!(backend.load_snapshot(&id).await.unwrap().instance_id, id);
}

/// Under a steady stream of saves, the master is killed (`SIGKILL`); the sentinels promote
/// the replica, and the same backend, connected through them, carries on by itself: the saves
/// that fail meanwhile fail with an error naming the call, and succeed once sent again. How
/// many acknowledged saves the failover lost is printed (Redis replicates asynchronously);
/// every save acknowledged after it is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_through_sentinel_needs_no_rebuild() {
    let topologies = Topologies::start("sentinel");
    let sentinels: Vec<String> = (20..23).map(|offset| topologies.url(offset)).collect();
    let client =
        SentinelClient::build(sentinels, "sayiir", None, SentinelServerType::Master).unwrap();
    let options = RedisOptions::default()
        .key_prefix(unique_id("failover"))
        .response_timeout(Duration::from_secs(2));
    let backend = RedisBackend::connect_sentinel(client, options).await.unwrap();
    let master_pid = std::fs::read_to_string(
        topologies.dir.path().join(format!("sentinel/{}/redis.pid", topologies.first + 10)),
    )
    .unwrap();

    let (mut before, mut after, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..300 {
        if i == 100 {
            let killed = Command::new("kill").args(["-9", master_pid.trim()]).status().unwrap();
            assert!(killed.success(), "the master was killed");
        }
        let id = format!("saved-{i}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match backend.save_snapshot(&at_task(&id, "t")).await {
                Ok(()) => break,
                Err(error) => {
                    let message = error.to_string();
                    assert!(
                        message.contains("save_snapshot"),
                        "the error names the call: {message}"
                    );
                    assert!(Instant::now() < deadline, "no new master within 60 s: {message}");
                    errors.push(message);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        if i < 100 { before.push(id) } else { after.push(id) }
    }
    assert!(!errors.is_empty(), "the saves met the failover");
    let mut lost = 0;
    for id in &before {
        match backend.load_snapshot(id).await {
            Ok(_) => {}
            Err(BackendError::NotFound(_)) => lost += 1,
            Err(other) => panic!("{id}: {other}"),
        }
    }
    for id in &after {
        backend.load_snapshot(id).await.unwrap_or_else(|e| panic!("{id}, saved after: {e}"));
    }
    eprintln!(
        "failover through Sentinel: {lost} of {} saves acknowledged before the kill were lost; \
         {} calls failed during the switch",
        before.len(),
        errors.len()
    );
}
