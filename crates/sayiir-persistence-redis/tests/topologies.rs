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

use sayiir_persistence_conformance::fixtures::{at_task, unique_id};
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

    /// Starts both topologies on 23 consecutive free ports (their cluster bus ports, 10,000
    /// above, free too).
    fn start() -> Self {
        let first = (0..200)
            .map(|attempt| {
                let spread = u16::try_from(std::process::id() % 250).unwrap_or(0);
                20_000 + spread * 100 + attempt * 37
            })
            .find(|first| (0..23).all(|i| bindable(first + i)))
            .expect("23 consecutive free loopback ports");
        let topologies = Self { first, dir: tempfile::tempdir().unwrap() };
        topologies.run(&["start", "all"]);
        // Idempotent: started again, nothing changes.
        topologies.run(&["start", "all"]);
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
    let topologies = Topologies::start();

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
