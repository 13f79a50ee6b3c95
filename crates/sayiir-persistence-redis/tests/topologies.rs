//! Redis deployments beyond one server, started by the project's own script
//! (`scripts/redis-topologies.sh`) on free loopback ports of this test, never the shared ones:
//! a 3-master cluster with a replica each, and a Sentinel setup (a master, a replica, three
//! sentinels). A single-server backend refuses, at connect and with an error that says what to
//! do, a cluster node, a sentinel and a replica, instead of failing at the first script. Under a
//! steady load of saves and claims, masters are killed (Sentinel and cluster failovers, with and
//! without `wait_for_replicas`), a replica is stopped (`WAIT` reaches the master that wrote) and
//! a cluster is resharded; the same backend carries on each time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sayiir_persistence_conformance::fixtures::{at_task, unique_id, with_results};
use sayiir_persistence_redis::redis::sentinel::{SentinelClient, SentinelServerType};
use sayiir_persistence_redis::{
    BackendError, RedisBackend, RedisOptions, SnapshotStore, TaskClaimStore,
};

/// Taken by the tests that kill, stop or reshard servers: they run one at a time, so that on a
/// small machine (CI has 2 cores) a promotion is not delayed past a test's patience by the
/// other tests' servers.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
        let offset = std::process::id() % 2_700 + STARTS.fetch_add(1, Ordering::Relaxed) * 600;
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

    /// The port of the master `deployment` writes the watched data to now: the master the
    /// sentinels name, or the master of the cluster's slot 0 (the first slot range).
    fn master_port(&self, deployment: Deployment) -> u16 {
        match deployment {
            Deployment::Sentinel => self.sentinel_master_port(),
            Deployment::Cluster => self.slot_zero_master_port(),
        }
    }

    /// The port of the healthy master that serves slot 0, as a live node of the cluster sees it.
    fn slot_zero_master_port(&self) -> u16 {
        for offset in 0..6 {
            let output = Command::new("redis-cli")
                .args(["-p", &(self.first + offset).to_string(), "CLUSTER", "NODES"])
                .output()
                .expect("redis-cli runs");
            let text = String::from_utf8_lossy(&output.stdout);
            // `<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slots>…`
            let port = text.lines().find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let flags = fields.get(2)?;
                let healthy = flags.contains("master") && !flags.contains("fail");
                let serves =
                    fields.iter().skip(8).any(|range| range.starts_with("0-") || *range == "0");
                let address = fields.get(1)?.split('@').next()?;
                (healthy && serves).then(|| address.rsplit(':').next()?.parse().ok()).flatten()
            });
            if let Some(port) = port {
                return port;
            }
        }
        0
    }

    /// Whether the node on `port` is a replica whose link to its master is up.
    fn replica_in_sync(&self, port: u16) -> bool {
        let output = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "INFO", "replication"])
            .output()
            .expect("redis-cli runs");
        let text = String::from_utf8_lossy(&output.stdout);
        text.contains("role:slave") && text.contains("master_link_status:up")
    }

    /// The port of the master the sentinels name now.
    fn sentinel_master_port(&self) -> u16 {
        let output = Command::new("redis-cli")
            .args(["-p", &(self.first + 20).to_string()])
            .args(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "sayiir"])
            .output()
            .expect("redis-cli runs");
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines().nth(1).and_then(|port| port.trim().parse().ok()).expect("the master's port")
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
    assert!(
        cluster.contains("Redis Cluster node") && cluster.contains("connect_cluster"),
        "{cluster}"
    );
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

/// Where the failovers happen.
#[derive(Debug, Clone, Copy)]
enum Deployment {
    /// A master and a replica watched by three sentinels.
    Sentinel,
    /// A cluster of three masters with a replica each: the master of slot 0 is killed.
    Cluster,
}

impl Deployment {
    fn name(self) -> &'static str {
        match self {
            Self::Sentinel => "sentinel",
            Self::Cluster => "cluster",
        }
    }

    async fn connect(self, topologies: &Topologies, options: RedisOptions) -> RedisBackend {
        match self {
            Self::Sentinel => {
                let sentinels: Vec<String> =
                    (20..23).map(|offset| topologies.url(offset)).collect();
                let client =
                    SentinelClient::build(sentinels, "sayiir", None, SentinelServerType::Master)
                        .unwrap();
                RedisBackend::connect_sentinel(client, options).await.unwrap()
            }
            Self::Cluster => {
                let nodes: Vec<String> = (0..6).map(|offset| topologies.url(offset)).collect();
                RedisBackend::connect_cluster(nodes, options).await.unwrap()
            }
        }
    }
}

/// What a run of failovers under load saw.
#[derive(Debug, Default)]
struct Outcome {
    acknowledged: usize,
    lost: usize,
    errors: Vec<String>,
}

/// Four writers saving workflows and claiming their tasks, without pause.
struct Load {
    backend: RedisBackend,
    acknowledged: Arc<Mutex<Vec<String>>>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(backend: &RedisBackend) -> Self {
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let writers = (0..4)
            .map(|writer| {
                let (backend, acknowledged, errors, stop) =
                    (backend.clone(), acknowledged.clone(), errors.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let id = format!("w{writer}-{n}");
                        // Every other save carries a result, so it goes through a transaction
                        // (`MULTI`), and is read back through one.
                        let with_result = n % 2 == 1;
                        let snapshot = if with_result {
                            with_results(&id, &[("a", b"1")], "t")
                        } else {
                            at_task(&id, "t")
                        };
                        match backend.save_snapshot(&snapshot).await {
                            Ok(()) => {
                                acknowledged.lock().unwrap().push(id.clone());
                                n += 1;
                                if with_result {
                                    match backend.load_snapshot(&id).await {
                                        Ok(loaded)
                                            if loaded.get_task_result_bytes("a").is_some() => {}
                                        Ok(_) => errors
                                            .lock()
                                            .unwrap()
                                            .push(format!("load_snapshot of {id} lost its result")),
                                        // A save lost in a failover (without waiting for
                                        // replicas) is not found: the error names no call.
                                        Err(BackendError::NotFound(_)) => errors
                                            .lock()
                                            .unwrap()
                                            .push(format!("load_snapshot of {id}: not found")),
                                        Err(error) => {
                                            errors.lock().unwrap().push(error.to_string())
                                        }
                                    }
                                }
                                match backend.claim_task(&id, "t", "w", None).await {
                                    Ok(Some(_)) => {}
                                    Ok(None) => errors.lock().unwrap().push(format!(
                                        "claim_task of {id} refused to its only claimer"
                                    )),
                                    Err(error) => errors.lock().unwrap().push(error.to_string()),
                                }
                            }
                            Err(error) => {
                                errors.lock().unwrap().push(error.to_string());
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Self { backend: backend.clone(), acknowledged, errors, stop, writers }
    }

    /// Waits until `count` more saves were acknowledged, failing the test past `deadline`.
    async fn more(&self, count: usize, deadline: Instant) {
        let before = self.acknowledged.lock().unwrap().len();
        while self.acknowledged.lock().unwrap().len() < before + count {
            assert!(Instant::now() < deadline, "no write succeeded in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the writers and looks for every save that was acknowledged.
    async fn finish(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        for writer in self.writers {
            writer.await.unwrap();
        }
        let acknowledged = std::mem::take(&mut *self.acknowledged.lock().unwrap());
        let mut lost = 0;
        for id in &acknowledged {
            match self.backend.load_snapshot(id).await {
                Ok(_) => {}
                Err(BackendError::NotFound(_)) => lost += 1,
                Err(other) => panic!("{id}: {other}"),
            }
        }
        let errors = std::mem::take(&mut *self.errors.lock().unwrap());
        Outcome { acknowledged: acknowledged.len(), lost, errors }
    }
}

/// Under [`Load`], the master is killed (`SIGKILL`) three times, each time after the writes
/// have resumed on the promoted replica and the killed server is back as a replica. Then every
/// save that was acknowledged is looked for.
async fn three_failovers_under_load(deployment: Deployment, options: RedisOptions) -> Outcome {
    let _turn = ONE_AT_A_TIME.lock().await;
    let topologies = Topologies::start(deployment.name());
    let backend = deployment.connect(&topologies, options).await;
    let load = Load::start(&backend);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let master = topologies.master_port(deployment);
        let pid = std::fs::read_to_string(
            topologies.dir.path().join(format!("{}/{master}/redis.pid", deployment.name())),
        )
        .unwrap();
        let killed = Command::new("kill").args(["-9", pid.trim()]).status().unwrap();
        assert!(killed.success(), "the master on {master} was killed");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = tokio::task::block_in_place(|| topologies.master_port(deployment));
            if now != master && now != 0 {
                break;
            }
            assert!(Instant::now() < deadline, "no replica was promoted within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The killed server comes back as a replica of the promoted one (for Sentinel the
        // script waits for its first sync; for the cluster, this test does: the next kill
        // needs a replica to promote).
        tokio::task::block_in_place(|| topologies.run(&["start", deployment.name()]));
        if matches!(deployment, Deployment::Cluster) {
            let synced_by = Instant::now() + Duration::from_secs(60);
            while !tokio::task::block_in_place(|| topologies.replica_in_sync(master)) {
                assert!(Instant::now() < synced_by, "the old master did not sync as a replica");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        // The writes resume on the promoted replica, by themselves.
        load.more(50, deadline).await;
    }
    load.finish().await
}

/// A resharding under load: a third of the slots (those of slot 0's master) moves to another
/// master with `redis-cli --cluster reshard` while four writers save and claim. Calls that meet
/// a slot on the move (`ASK`, `MOVED`, `TRYAGAIN`) are sent again by the backend until the
/// slot has settled: no call fails, none is applied twice (every claim is granted to its only
/// claimer), and every acknowledged save is found afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resharding_under_load_is_invisible_to_callers() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let topologies = Topologies::start("cluster");
    let options = RedisOptions::default().key_prefix(unique_id("reshard"));
    let backend = Deployment::Cluster.connect(&topologies, options).await;
    let load = Load::start(&backend);
    let deadline = Instant::now() + Duration::from_secs(120);
    load.more(100, deadline).await;
    let id_of = |port: u16| {
        let output = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "CLUSTER", "MYID"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    let from = topologies.master_port(Deployment::Cluster);
    let to = (0..6)
        .map(|offset| topologies.first + offset)
        .find(|port| {
            *port != from && {
                let output = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "ROLE"])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&output.stdout).starts_with("master")
            }
        })
        .expect("another master");
    let (from_id, to_id) = (id_of(from), id_of(to));
    let moved = tokio::task::block_in_place(|| {
        Command::new("redis-cli")
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args(["--cluster-from", &from_id, "--cluster-to", &to_id])
            .args(["--cluster-slots", "5461", "--cluster-yes"])
            .output()
            .unwrap()
    });
    assert!(moved.status.success(), "reshard: {}", String::from_utf8_lossy(&moved.stderr));
    // Every node learns the new owner (through the cluster bus): wait for the one asked.
    while tokio::task::block_in_place(|| topologies.master_port(Deployment::Cluster)) != to {
        assert!(Instant::now() < deadline, "slot 0 did not move to {to}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    load.more(100, deadline).await;
    let outcome = load.finish().await;
    assert!(outcome.errors.is_empty(), "calls failed during the resharding: {:?}", outcome.errors);
    assert_eq!(outcome.lost, 0, "{outcome:?}");
    eprintln!(
        "resharding 5,461 slots under load: {} saves acknowledged, none failed or lost",
        outcome.acknowledged
    );
}

/// A manual failover (`SENTINEL FAILOVER`): the old master stays up and becomes a replica, so
/// calls may meet `READONLY` (inside a transaction too) rather than a dropped connection. The
/// same backend follows the promoted master: a save with results (a transaction) and a read
/// after it see the new master, never the demoted one's stale data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_failover_is_followed() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let topologies = Topologies::start("sentinel");
    let sentinels: Vec<String> = (20..23).map(|offset| topologies.url(offset)).collect();
    let client =
        SentinelClient::build(sentinels, "sayiir", None, SentinelServerType::Master).unwrap();
    let options = RedisOptions::default().key_prefix(unique_id("manual"));
    let backend = RedisBackend::connect_sentinel(client, options).await.unwrap();
    let id = unique_id("followed");
    backend.save_snapshot(&with_results(&id, &[("a", b"1")], "b")).await.unwrap();

    let master = topologies.sentinel_master_port();
    let output = Command::new("redis-cli")
        .args(["-p", &(topologies.first + 20).to_string(), "SENTINEL", "FAILOVER", "sayiir"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("OK"), "{output:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while topologies.sentinel_master_port() == master {
        assert!(Instant::now() < deadline, "the sentinels promoted no replica within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Saves with results go through a transaction; each is retried until the backend has
    // found the new master.
    for round in 0..20 {
        let snapshot = with_results(&id, &[("a", b"1"), ("b", format!("{round}").as_bytes())], "c");
        loop {
            match backend.save_snapshot(&snapshot).await {
                Ok(()) => break,
                Err(error) => {
                    assert!(Instant::now() < deadline, "no save succeeded within 60 s: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let loaded = backend.load_snapshot(&id).await.unwrap();
        let b = loaded.get_task_result_bytes("b");
        assert_eq!(
            b.as_deref(),
            Some(format!("{round}").as_bytes()),
            "a read after the save sees it"
        );
    }
}

/// On a cluster, `WAIT` goes to the master that ran the write: with the replica of slot 0's
/// master stopped (`SIGSTOP`), exactly the saves whose keys that master serves fail, saying
/// the write is on the master; the others are acknowledged by their own masters' replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_wait_asks_the_master_that_ran_the_write() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let topologies = Topologies::start("cluster");
    let options = RedisOptions::default()
        .key_prefix(unique_id("cluster-wait-route"))
        .wait_for_replicas(1, Duration::from_millis(300));
    let backend = Deployment::Cluster.connect(&topologies, options).await;
    let master = topologies.master_port(Deployment::Cluster);
    let replica = (0..6)
        .map(|offset| topologies.first + offset)
        .find(|port| {
            let output = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "INFO", "replication"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&output.stdout);
            text.contains("role:slave") && text.contains(&format!("master_port:{master}"))
        })
        .expect("the replica of slot 0's master");
    let slot_range = |port: u16| -> Vec<(u16, u16)> {
        let output = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "CLUSTER", "NODES"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let line =
            text.lines().find(|line| line.contains(&format!(":{port}@"))).unwrap().to_string();
        line.split_whitespace()
            .skip(8)
            .filter_map(|range| {
                let (low, high) = range.split_once('-').unwrap_or((range, range));
                Some((low.parse().ok()?, high.parse().ok()?))
            })
            .collect()
    };
    let served = slot_range(master);
    let pid =
        std::fs::read_to_string(topologies.dir.path().join(format!("cluster/{replica}/redis.pid")))
            .unwrap();
    /// Lets the stopped replica go on, also when an assertion fails.
    struct Continue(String);
    impl Drop for Continue {
        fn drop(&mut self) {
            let _ = Command::new("kill").args(["-CONT", &self.0]).status();
        }
    }
    assert!(Command::new("kill").args(["-STOP", pid.trim()]).status().unwrap().success());
    let stopped = Continue(pid.trim().to_string());
    let (mut failed, mut acknowledged) = (0, 0);
    for n in 0..30 {
        let id = unique_id(&format!("routed-{n}"));
        let output = Command::new("redis-cli")
            .args([
                "-p",
                &master.to_string(),
                "CLUSTER",
                "KEYSLOT",
                &backend.snapshot_blob_key(&id),
            ])
            .output()
            .unwrap();
        let slot: u16 = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap();
        let on_stopped = served.iter().any(|(low, high)| (*low..=*high).contains(&slot));
        match backend.save_snapshot(&at_task(&id, "t")).await {
            Ok(()) => {
                assert!(
                    !on_stopped,
                    "{id} (slot {slot}) acknowledged without its master's replica"
                );
                acknowledged += 1;
            }
            Err(BackendError::Backend(message)) => {
                assert!(
                    on_stopped,
                    "{id} (slot {slot}) failed on a master with its replica: {message}"
                );
                assert!(message.contains("0 of the 1 replicas"), "{message}");
                failed += 1;
            }
            Err(other) => panic!("{other}"),
        }
    }
    drop(stopped);
    assert!(failed > 0 && acknowledged > 0, "{failed} failed, {acknowledged} acknowledged");
}

/// Three failovers under load without waiting for replicas: the same backend carries on by
/// itself each time, and the calls that fail meanwhile name the call. How many acknowledged
/// saves were lost is printed (Redis replicates asynchronously; on loopback few or none).
async fn failovers_need_no_rebuild(deployment: Deployment) {
    let options = RedisOptions::default()
        .key_prefix(unique_id("failover"))
        .response_timeout(Duration::from_secs(2));
    let outcome = three_failovers_under_load(deployment, options).await;
    if matches!(deployment, Deployment::Sentinel) {
        // Sentinel failovers drop the clients' connections: some calls always meet them. (On a
        // cluster, calls refused unrun wait for the promotion, so none may fail.)
        assert!(!outcome.errors.is_empty(), "the calls met the failovers");
    }
    for message in &outcome.errors {
        assert!(
            ["save_snapshot", "claim_task", "load_snapshot"]
                .iter()
                .any(|call| message.contains(call)),
            "an error names its call: {message}"
        );
    }
    eprintln!(
        "{}: 3 failovers without waiting for replicas: {} of {} acknowledged saves lost; {} \
         calls failed during the switches",
        deployment.name(),
        outcome.lost,
        outcome.acknowledged,
        outcome.errors.len()
    );
}

/// With `wait_for_replicas(1, …)`, no save acknowledged before a failover is lost, over three
/// failovers under load.
async fn waiting_for_a_replica_loses_nothing(deployment: Deployment) {
    let options = RedisOptions::default()
        .key_prefix(unique_id("failover-wait"))
        .response_timeout(Duration::from_secs(2))
        .wait_for_replicas(1, Duration::from_secs(1));
    let outcome = three_failovers_under_load(deployment, options).await;
    assert!(outcome.acknowledged > 150, "{outcome:?}");
    assert_eq!(
        outcome.lost, 0,
        "acknowledged saves lost: {} of {}",
        outcome.lost, outcome.acknowledged
    );
    eprintln!(
        "{}: 3 failovers waiting for 1 replica: 0 of {} acknowledged saves lost; {} calls \
         failed during the switches",
        deployment.name(),
        outcome.acknowledged,
        outcome.errors.len()
    );
}

/// Three failovers through Sentinel (the master killed, the replica promoted, the old master
/// back as a replica) under a load of saves and claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failovers_through_sentinel_need_no_rebuild() {
    failovers_need_no_rebuild(Deployment::Sentinel).await;
}

/// Through Sentinel, waiting for a replica loses no acknowledged save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_replica_loses_no_acknowledged_write() {
    waiting_for_a_replica_loses_nothing(Deployment::Sentinel).await;
}

/// Three failovers of the master of one slot range of a cluster (killed with `SIGKILL`, its
/// replica promoted by the cluster, the killed server back as a replica) under a load of saves
/// and claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failovers_need_no_rebuild() {
    failovers_need_no_rebuild(Deployment::Cluster).await;
}

/// On a cluster, waiting for a replica (`WAIT` sent with each write to the master that ran it)
/// loses no acknowledged save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_waiting_for_a_replica_loses_no_acknowledged_write() {
    waiting_for_a_replica_loses_nothing(Deployment::Cluster).await;
}
