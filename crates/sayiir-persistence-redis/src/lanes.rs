//! The connections every call runs on.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::sentinel::SentinelClient;
use redis::{
    AsyncConnectionConfig, Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value,
};
use sayiir_persistence::BackendError;

use crate::error::{self, At};

/// A few long-lived multiplexed connections taken from a deadpool pool.
///
/// A deadpool-redis checkout sends `UNWATCH` + `PING` before handing out a connection
/// (its recycle check), a second round trip per operation. Multiplexed connections carry
/// any number of concurrent requests, so the backend checks a few out once, keeps them,
/// and spreads requests over them round-robin: an operation costs exactly its own round
/// trip. A connection that fails with an I/O error is handed back and replaced on the
/// next request (deadpool's recycle check then discards it), so the backend recovers by
/// itself once the server is back.
pub(crate) struct Lanes {
    source: Source,
    slots: Vec<Mutex<Option<Held>>>,
    /// One per slot: only one request at a time fetches a connection for a slot, so
    /// requests never queue on the pool for connections the slots already hold.
    filling: Vec<futures::lock::Mutex<()>>,
    next: AtomicUsize,
    /// Source of connection generations: every connection put in a slot gets a new one.
    generations: AtomicU64,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes").field("connections", &self.slots.len()).finish_non_exhaustive()
    }
}

/// Where new connections come from.
#[allow(clippy::large_enum_variant)] // one per backend, never moved after connect
pub(crate) enum Source {
    /// A deadpool pool of connections to one server.
    Pool(deadpool_redis::Pool),
    /// Cluster connections: each follows the cluster's slot map by itself (redirections,
    /// failovers), with a connection per node it sends to.
    Cluster(ClusterClient),
    /// New connections to the master the sentinels name when each is made: after a
    /// failover, the next connection goes to the promoted replica.
    Sentinel {
        /// Asks the sentinels for the master, and connects to it.
        client: futures::lock::Mutex<SentinelClient>,
        /// Timeouts of each connection.
        config: AsyncConnectionConfig,
    },
}

/// A connection kept for the backend's lifetime, and a handle on it.
pub(crate) struct Held {
    /// The pool's object, for a pooled connection: returned to the pool when dropped.
    object: Option<deadpool_redis::Connection>,
    conn: Conn,
    generation: u64,
}

/// A connection to send one operation on.
pub(crate) struct Lane {
    pub(crate) index: usize,
    generation: u64,
    pub(crate) conn: Conn,
}

/// A multiplexed connection to one server, or a cluster connection.
#[derive(Clone)]
pub(crate) enum Conn {
    /// To one server.
    Single(MultiplexedConnection),
    /// To a Redis Cluster: each command goes to the master of its keys' slot.
    Cluster(ClusterConnection),
}

impl Conn {
    /// Sends `cmd` to the master that serves the slot of `key` (on one server, to it): for
    /// commands without keys that must reach a given node (`WAIT` after a write, `SCAN` of one
    /// index shard).
    pub(crate) async fn query_at<T: FromRedisValue>(
        &mut self,
        cmd: &Cmd,
        key: &[u8],
    ) -> RedisResult<T> {
        match self {
            Self::Single(conn) => cmd.query_async(conn).await,
            Self::Cluster(conn) => {
                let route = Route::with_key(key, SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                let value = conn.route_command(cmd.clone(), routing).await?;
                redis::from_redis_value(value).map_err(Into::into)
            }
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

impl Lanes {
    pub(crate) fn new(source: Source, count: usize) -> Self {
        Self {
            source,
            slots: (0..count).map(|_| Mutex::new(None)).collect(),
            filling: (0..count).map(|_| futures::lock::Mutex::new(())).collect(),
            next: AtomicUsize::new(0),
            generations: AtomicU64::new(0),
        }
    }

    /// Whether the connections go to a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.source, Source::Cluster(_))
    }

    pub(crate) fn slot(&self, index: usize) -> MutexGuard<'_, Option<Held>> {
        // A panic while the lock was held cannot leave the slot inconsistent: it holds a
        // whole value or nothing.
        self.slots[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection of the next slot, round-robin.
    pub(crate) async fn get(&self, at: &At<'_>) -> Result<Lane, BackendError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        self.get_slot(at, index).await
    }

    /// The connection of slot `index`, fetched from the pool if the slot is empty.
    pub(crate) async fn get_slot(&self, at: &At<'_>, index: usize) -> Result<Lane, BackendError> {
        if let Some(lane) = self.cached(index) {
            return Ok(lane);
        }
        let _filling = self.filling[index].lock().await;
        if let Some(lane) = self.cached(index) {
            return Ok(lane);
        }
        let (object, conn) = match &self.source {
            Source::Pool(pool) => {
                let object = pool.get().await.map_err(|e| error::pool(at, &e))?;
                let conn = MultiplexedConnection::clone(&object);
                (Some(object), Conn::Single(conn))
            }
            Source::Cluster(client) => {
                let conn = client
                    .get_async_connection()
                    .await
                    .map_err(|e| error::redis(at, "a node of the cluster", &e))?;
                (None, Conn::Cluster(conn))
            }
            Source::Sentinel { client, config } => {
                let conn = client
                    .lock()
                    .await
                    .get_async_connection_with_config(config)
                    .await
                    .map_err(|e| error::redis(at, "the master the sentinels name", &e))?;
                (None, Conn::Single(conn))
            }
        };
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        *self.slot(index) = Some(Held { object, conn: conn.clone(), generation });
        Ok(Lane { index, generation, conn })
    }

    pub(crate) fn cached(&self, index: usize) -> Option<Lane> {
        self.slot(index).as_ref().map(|held| Lane {
            index,
            generation: held.generation,
            conn: held.conn.clone(),
        })
    }

    /// Drops the lane's connection if `error` shows it is broken; unless the slot already
    /// holds another connection (a concurrent request met the same error and refilled it).
    /// After `READONLY` (a failover demoted the server) every connection is dropped: the
    /// others lead to the same server, where reads would be stale. A pooled connection is
    /// taken out of its pool rather than handed back: a demoted master still answers the
    /// pool's `PING`.
    pub(crate) fn observe(&self, lane: &Lane, error: &redis::RedisError) {
        let cluster = self.is_cluster();
        // After a refusal inside an aborted transaction a cluster connection keeps its stale slot
        // map (redis-rs acts only on a refused command): a fresh connection reads the map anew.
        let stale_map = cluster && error::refused_in_transaction(error);
        if !error::breaks_connection(error) && !stale_map {
            return;
        }
        // A cluster connection follows the slot map itself: a demoted node's `READONLY` makes
        // it refresh the map, and its other node connections are fine.
        let dropped: Vec<Held> = if error::read_only(error) && !cluster {
            (0..self.slots.len()).filter_map(|index| self.slot(index).take()).collect()
        } else {
            let mut slot = self.slot(lane.index);
            let same = slot.as_ref().is_some_and(|held| held.generation == lane.generation);
            if same { slot.take().into_iter().collect() } else { Vec::new() }
        };
        for object in dropped.into_iter().filter_map(|held| held.object) {
            drop(deadpool_redis::Connection::take(object));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::at;

    /// A late report of a broken connection never drops the healthy connection a
    /// concurrent request has already put in the slot.
    #[tokio::test]
    pub(crate) async fn observe_keeps_a_slot_refilled_meanwhile() {
        let url = sayiir_persistence_conformance::servers::redis_url();
        let Ok(manager) = deadpool_redis::Manager::new(url) else { panic!("bad Redis URL") };
        let pool = deadpool_redis::Pool::builder(manager)
            .max_size(2)
            .runtime(deadpool_redis::Runtime::Tokio1)
            .build();
        let Ok(pool) = pool else { panic!("cannot build the pool") };
        let lanes = Lanes::new(Source::Pool(pool), 1);
        let at = at("test");
        let broken = redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "connection closed",
        ));
        let Ok(stale) = lanes.get(&at).await else { panic!("no connection") };
        // A first request meets the broken connection and the slot is refilled.
        lanes.observe(&stale, &broken);
        assert!(lanes.cached(0).is_none());
        let Ok(fresh) = lanes.get(&at).await else { panic!("no connection") };
        assert_ne!(fresh.generation, stale.generation);
        // A second request that was in flight on the old connection reports late.
        lanes.observe(&stale, &broken);
        assert_eq!(lanes.cached(0).map(|lane| lane.generation), Some(fresh.generation));
        // The fresh connection itself breaking does empty the slot.
        lanes.observe(&fresh, &broken);
        assert!(lanes.cached(0).is_none());
        // Errors that leave the connection usable do not.
        let Ok(again) = lanes.get(&at).await else { panic!("no connection") };
        let script_error = redis::RedisError::from((redis::ErrorKind::Client, "script failed"));
        lanes.observe(&again, &script_error);
        assert_eq!(lanes.cached(0).map(|lane| lane.generation), Some(again.generation));
    }
}
