//! Servers and network faults of a test's own, for fault tests: a Redis server and a PostgreSQL
//! cluster on free loopback ports that the test may kill and restart, and a TCP proxy that can cut
//! or stall every connection through it. Shared servers are never stopped, restarted or stalled.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// A port nobody listens on right now, on 127.0.0.1.
///
/// # Panics
/// When no port can be bound.
#[must_use]
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `redis-server` of the test's own on a free loopback port, killed when dropped.
#[derive(Debug)]
pub struct PrivateRedis {
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
    /// The server's working directory (its append-only file, when enabled), removed on drop.
    dir: std::path::PathBuf,
}

impl PrivateRedis {
    /// Starts `redis-server` with `args` added to its command line (e.g.
    /// `["--proto-max-bulk-len", "1mb"]`), in a working directory of its own. It keeps nothing
    /// on disk unless `args` say so (`["--appendonly", "yes", "--appendfsync", "always"]`).
    ///
    /// # Panics
    /// When `redis-server` is not installed (`scripts/services.sh` installs it) or does not
    /// start.
    #[must_use]
    pub fn start(args: &[&str]) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("sayiir-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a working directory for the private redis-server");
        let mut server =
            Self { port, args: args.iter().map(|a| (*a).to_string()).collect(), child: None, dir };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let dir = &self.dir;
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): install it with scripts/services.sh \
                     (repository root) or your package manager"
                )
            });
        self.child = Some(child);
        wait_for_port(self.port, "the private redis-server");
    }

    /// The server's URL.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL), then starts it again on the same port with the same
    /// arguments: every connection a client held is broken.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A PostgreSQL server of the test's own: a fresh cluster (`initdb`) in a temporary
/// directory, on a free loopback port, with trust authentication for user `postgres`;
/// stopped and removed when dropped. When the test runs as root, the cluster runs as the
/// `postgres` system user (PostgreSQL refuses root).
#[derive(Debug)]
pub struct PrivatePostgres {
    port: u16,
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
}

impl PrivatePostgres {
    /// Creates and starts the cluster.
    ///
    /// # Panics
    /// When PostgreSQL's server binaries are not installed (`scripts/services.sh` installs
    /// them; `SAYIIR_PG_BINDIR` names their directory if it is not under
    /// `/usr/lib/postgresql/*/bin`) or the cluster does not start.
    #[must_use]
    pub fn start() -> Self {
        let bin = pg_bindir();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("sayiir-pg-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a directory for the private cluster");
        if running_as_root() {
            run(Command::new("chown").args(["postgres:postgres"]).arg(&dir), "chown");
        }
        let data = dir.join("data");
        let mut initdb = as_postgres(&bin.join("initdb"));
        initdb.arg("-D").arg(&data).args(["-A", "trust", "-U", "postgres", "--no-sync"]);
        run(&mut initdb, "initdb");
        let server = Self { port, dir, bin };
        server.pg_ctl_start();
        server
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            self.port,
            self.dir.display()
        );
        let mut start = as_postgres(&self.bin.join("pg_ctl"));
        start
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-o", &options, "-w", "-t", "60", "-l"])
            .arg(self.dir.join("log"))
            .arg("start");
        run(&mut start, "pg_ctl start");
        wait_for_port(self.port, "the private PostgreSQL");
    }

    fn pg_ctl_stop(&self, mode: &str) {
        let mut stop = as_postgres(&self.bin.join("pg_ctl"));
        stop.arg("-D").arg(self.dir.join("data")).args(["-m", mode, "-w", "stop"]);
        let _ = stop.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }

    /// The URL of database `postgres` on the server.
    #[must_use]
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Crashes the server (`pg_ctl stop -m immediate`: no checkpoint, as a power cut leaves
    /// it to the write-ahead log) and starts it again on the same port; every connection a
    /// client held is broken.
    pub fn crash_and_restart(&self) {
        self.pg_ctl_stop("immediate");
        self.pg_ctl_start();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.pg_ctl_stop("immediate");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pg_bindir() -> std::path::PathBuf {
    if let Ok(dir) = std::env::var("SAYIIR_PG_BINDIR") {
        return dir.into();
    }
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    found.retain(|bin| bin.join("initdb").exists());
    found.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: run \
             scripts/services.sh (repository root), or set SAYIIR_PG_BINDIR"
        )
    })
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.starts_with(b"0"))
}

/// `program`, run as the `postgres` system user when this process is root.
fn as_postgres(program: &std::path::Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A TCP proxy on a free loopback port to `target`, with faults on demand: [`Proxy::cut`]
/// closes every connection through it, [`Proxy::stall`] stops forwarding while keeping the
/// sockets open (a network black hole), [`Proxy::resume`] forwards again. It runs on the
/// tokio runtime it was started on and stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    stalled: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    cuts: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `target` (`host:port`).
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("the proxy's address").port();
        let stalled = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0_u64);
        let cuts = Arc::new(AtomicU64::new(0));
        let target = target.to_string();
        let accept = tokio::spawn({
            let stalled = Arc::clone(&stalled);
            let generation = generation.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                        continue;
                    };
                    let cut = generation.subscribe();
                    tokio::spawn(pipe(client, server, Arc::clone(&stalled), cut));
                }
            }
        });
        Self { port, stalled, generation, cuts, accept }
    }

    /// `host:port` of the proxy.
    #[must_use]
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Closes every connection open through the proxy; new ones are accepted.
    pub fn cut(&self) {
        let next = self.cuts.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.generation.send(next);
    }

    /// Stops forwarding in both directions; connections stay open and new ones are accepted
    /// but hear nothing back.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    /// Forwards again after [`Proxy::stall`].
    pub fn resume(&self) {
        self.stalled.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

async fn pipe(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    stalled: Arc<AtomicBool>,
    mut cut: watch::Receiver<u64>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = copy(&mut client_read, &mut server_write, &stalled);
    let down = copy(&mut server_read, &mut client_write, &stalled);
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = cut.changed() => {}
    }
}

/// Copies until either side closes; while stalled, holds what it read and sends nothing.
async fn copy<R, W>(from: &mut R, to: &mut W, stalled: &AtomicBool)
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buffer = vec![0_u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// Runs a load of saves and claims on `backend` (8 writers, `per_writer` workflows each: a
/// save, then a claim of its task by `w1`), calls `fault` once the load is under way, and
/// checks after the load that every save and claim acknowledged to a writer is still there:
/// each workflow loads, and no second worker can claim an acknowledged claim. Writes that
/// failed during the fault are not counted. For fault tests of any backend.
///
/// # Panics
/// When an acknowledged write is lost, or nothing was acknowledged at all.
pub async fn acknowledged_writes_survive<B, F, Fut>(backend: &B, per_writer: usize, fault: F)
where
    B: crate::FullBackend + Clone,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
    let claimed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (backend, acknowledged, claimed) =
                (backend.clone(), Arc::clone(&acknowledged), Arc::clone(&claimed));
            tokio::spawn(async move {
                for i in 0..per_writer {
                    let id = format!("ack-{w}-{i}");
                    let snapshot = crate::fixtures::at_task(&id, "t");
                    if backend.save_snapshot(&snapshot).await.is_ok() {
                        acknowledged.lock().unwrap_or_else(|p| p.into_inner()).push(id.clone());
                        if let Ok(Some(_)) = backend.claim_task(&id, "t", "w1", None).await {
                            claimed.lock().unwrap_or_else(|p| p.into_inner()).push(id);
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    fault().await;
    for writer in writers {
        writer.await.expect("a writer of the load panicked");
    }
    let acknowledged = acknowledged.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(!acknowledged.is_empty(), "no save was acknowledged");
    for id in &acknowledged {
        backend.load_snapshot(id).await.unwrap_or_else(|e| panic!("acknowledged {id} lost: {e}"));
    }
    let claimed = claimed.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for id in &claimed {
        let again = backend.claim_task(id, "t", "w2", None).await.expect("a claim after the fault");
        assert!(again.is_none(), "{id}: an acknowledged claim was lost, a second worker got it");
    }
}
