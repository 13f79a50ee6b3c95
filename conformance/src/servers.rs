//! Finding the PostgreSQL and Redis servers that network backends are tested against.
//!
//! Order: the environment variable (`SAYIIR_POSTGRES_URL`, `SAYIIR_REDIS_URL`); then the
//! ports `docker-compose.yml` publishes on localhost, if a server answers there; then, with
//! the cargo feature `containers`, a container started with testcontainers. With none of
//! these the call panics with instructions: a test without its server fails, it never skips.

use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

/// The variable that names the PostgreSQL server to test against.
pub const POSTGRES_URL_VAR: &str = "SAYIIR_POSTGRES_URL";
/// The variable that names the Redis server to test against.
pub const REDIS_URL_VAR: &str = "SAYIIR_REDIS_URL";
/// The PostgreSQL URL of the docker-compose service (also the CI machine's local server).
pub const COMPOSE_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The Redis URL of the docker-compose service (also the CI machine's local server).
pub const COMPOSE_REDIS_URL: &str = "redis://127.0.0.1:6379";

const HOW_TO_START: &str = "either start Docker (the tests then start their own containers, \
with the `containers` feature of sayiir-persistence-conformance, on for this workspace's \
backends), or run `scripts/services.sh` from the repository root (it installs and starts \
PostgreSQL and Redis on loopback, no Docker needed), or point the variable at a server you have";

/// The PostgreSQL URL to test against.
///
/// # Panics
/// When no server can be found, with a message that says how to start one.
pub fn postgres_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| resolve(POSTGRES_URL_VAR, COMPOSE_POSTGRES_URL, 5432, Service::Postgres))
        .clone()
}

/// The Redis URL to test against.
///
/// # Panics
/// When no server can be found, with a message that says how to start one.
pub fn redis_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| resolve(REDIS_URL_VAR, COMPOSE_REDIS_URL, 6379, Service::Redis)).clone()
}

/// The variable that names the Redis sentinels to test against: comma-separated URLs.
pub const REDIS_SENTINELS_VAR: &str = "SAYIIR_REDIS_SENTINELS";
/// The variable that names the master the sentinels monitor (default `sayiir`).
pub const REDIS_SENTINEL_MASTER_VAR: &str = "SAYIIR_REDIS_SENTINEL_MASTER";
/// The first sentinel port `scripts/redis-topologies.sh` uses (then the next two).
pub const TOPOLOGY_SENTINEL_PORT: u16 = 7020;

/// The Redis sentinels to test against, and the master name they monitor: from
/// `SAYIIR_REDIS_SENTINELS` (and `SAYIIR_REDIS_SENTINEL_MASTER`), else the three sentinels
/// `scripts/redis-topologies.sh` starts (127.0.0.1:7020-7022, master `sayiir`) if they answer.
///
/// # Panics
/// When no sentinel can be found, with a message that says how to start them.
pub fn redis_sentinels() -> (Vec<String>, String) {
    let master = std::env::var(REDIS_SENTINEL_MASTER_VAR)
        .ok()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| "sayiir".to_string());
    if let Ok(urls) = std::env::var(REDIS_SENTINELS_VAR)
        && !urls.trim().is_empty()
    {
        return (urls.split(',').map(|url| url.trim().to_string()).collect(), master);
    }
    if answers(TOPOLOGY_SENTINEL_PORT) {
        let urls =
            (0..3).map(|i| format!("redis://127.0.0.1:{}", TOPOLOGY_SENTINEL_PORT + i)).collect();
        return (urls, master);
    }
    panic!(
        "no Redis sentinels for the tests: {REDIS_SENTINELS_VAR} is not set and nothing answers \
         on 127.0.0.1:{TOPOLOGY_SENTINEL_PORT}. To fix: run `scripts/redis-topologies.sh start \
         sentinel` (or `scripts/services.sh`) from the repository root, or point the variable at \
         sentinels you have"
    );
}

/// The variable that names the Redis Cluster to test against: comma-separated URLs of some of
/// its nodes (`?protocol=resp3` on each for RESP3).
pub const REDIS_CLUSTER_VAR: &str = "SAYIIR_REDIS_CLUSTER";
/// The first port of the cluster `scripts/redis-topologies.sh` starts (then the next five).
pub const TOPOLOGY_CLUSTER_PORT: u16 = 7000;

/// URLs of the nodes of the Redis Cluster to test against: from `SAYIIR_REDIS_CLUSTER`, else the
/// six nodes `scripts/redis-topologies.sh` starts (127.0.0.1:7000-7005) if they answer.
///
/// # Panics
/// When no cluster can be found, with a message that says how to start one.
pub fn redis_cluster() -> Vec<String> {
    if let Ok(urls) = std::env::var(REDIS_CLUSTER_VAR)
        && !urls.trim().is_empty()
    {
        return urls.split(',').map(|url| url.trim().to_string()).collect();
    }
    if answers(TOPOLOGY_CLUSTER_PORT) {
        return (0..6)
            .map(|i| format!("redis://127.0.0.1:{}", TOPOLOGY_CLUSTER_PORT + i))
            .collect();
    }
    panic!(
        "no Redis Cluster for the tests: {REDIS_CLUSTER_VAR} is not set and nothing answers on \
         127.0.0.1:{TOPOLOGY_CLUSTER_PORT}. To fix: run `scripts/redis-topologies.sh start \
         cluster` (or `scripts/services.sh`) from the repository root, or point the variable at \
         nodes of a cluster you have"
    );
}

#[derive(Debug, Clone, Copy)]
enum Service {
    Postgres,
    Redis,
}

fn resolve(var: &str, compose_url: &str, port: u16, service: Service) -> String {
    if let Ok(url) = std::env::var(var)
        && !url.trim().is_empty()
    {
        return url;
    }
    if answers(port) {
        return compose_url.to_string();
    }
    match containers::start(service) {
        Ok(url) => url,
        Err(why) => panic!(
            "no {service:?} server for the tests: {var} is not set, nothing answers on \
             127.0.0.1:{port}, and {why}. To fix: {HOW_TO_START}."
        ),
    }
}

fn answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

#[cfg(not(feature = "containers"))]
mod containers {
    pub(super) fn start(_: super::Service) -> Result<String, String> {
        Err("the `containers` feature is off".to_string())
    }
}

#[cfg(feature = "containers")]
mod containers {
    use testcontainers_modules::testcontainers::runners::SyncRunner;
    use testcontainers_modules::testcontainers::{Container, ImageExt};
    use testcontainers_modules::{postgres::Postgres, redis::Redis};

    /// Containers live as long as the test process.
    static KEEP: std::sync::Mutex<Vec<Box<dyn std::any::Any + Send>>> =
        std::sync::Mutex::new(Vec::new());

    pub(super) fn start(service: super::Service) -> Result<String, String> {
        // The sync runner builds its own runtime, which cannot nest inside the test's one.
        std::thread::spawn(move || start_here(service))
            .join()
            .map_err(|_| "starting the container panicked".to_string())?
    }

    fn start_here(service: super::Service) -> Result<String, String> {
        let failed = |e: &dyn std::fmt::Display| format!("starting a container failed: {e}");
        let (url, container): (String, Box<dyn std::any::Any + Send>) = match service {
            super::Service::Postgres => {
                let c: Container<Postgres> = Postgres::default()
                    .with_db_name("test")
                    .with_user("postgres")
                    .with_password("postgres")
                    .with_tag("18.1")
                    .start()
                    .map_err(|e| failed(&e))?;
                let port = c.get_host_port_ipv4(5432).map_err(|e| failed(&e))?;
                (format!("postgres://postgres:postgres@127.0.0.1:{port}/test"), Box::new(c))
            }
            super::Service::Redis => {
                let c: Container<Redis> =
                    Redis::default().with_tag("7.4.2").start().map_err(|e| failed(&e))?;
                let port = c.get_host_port_ipv4(6379).map_err(|e| failed(&e))?;
                (format!("redis://127.0.0.1:{port}"), Box::new(c))
            }
        };
        KEEP.lock().map_err(|e| e.to_string())?.push(container);
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With no variable and nothing on the port, the lookup either starts a container (Docker
    /// running) or fails saying what to do: start Docker, or run the project's script.
    #[test]
    fn no_server_starts_a_container_or_says_what_to_do() {
        let port = crate::private::free_port();
        let unset = "SAYIIR_TEST_VARIABLE_THAT_IS_NEVER_SET";
        let found = std::panic::catch_unwind(|| {
            resolve(unset, "postgres://unused", port, Service::Postgres)
        });
        match found {
            Ok(url) => assert!(url.starts_with("postgres://"), "{url}"),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_default();
                assert!(message.contains("start Docker"), "{message}");
                assert!(message.contains("scripts/services.sh"), "{message}");
                assert!(message.contains(unset), "{message}");
            }
        }
    }
}
