//! Sending commands, scripts and transactions: size checks, the connection to use, and
//! what happens when a connection is lost.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::{ErrorKind, RedisResult, ServerErrorKind, Value};
use sayiir_persistence::BackendError;

use crate::error::{self, At};
use crate::keys::WorkflowKeys;
use crate::lanes::Conn;
use crate::scripts::Lua;
use crate::{RedisBackend, now_millis};

impl RedisBackend {
    /// Reads the server's `proto-max-bulk-len`, the largest argument it accepts: a larger
    /// one makes the server close the connection, failing every call that shares it. Kept at
    /// Redis's default (512 MiB) where `CONFIG` is not allowed (managed services often rename
    /// it); `connect_with` calls it, a backend made with `from_pool` keeps the default.
    pub(crate) async fn read_max_bulk_len(&self, at: &At<'_>) {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("proto-max-bulk-len");
        let limit = match self.query::<Value>(at, &cmd, Retry::OnReconnect).await {
            Ok(Value::Array(items)) => items.into_iter().nth(1),
            Ok(Value::Map(pairs)) => pairs.into_iter().next().map(|(_, value)| value),
            Ok(_) => None,
            Err(error) => {
                tracing::debug!(%error, "CONFIG GET proto-max-bulk-len refused; assuming 512 MiB");
                None
            }
        };
        let limit = limit.and_then(|value| match value {
            Value::BulkString(raw) => String::from_utf8(raw).ok()?.parse::<u64>().ok(),
            Value::SimpleString(text) => text.parse::<u64>().ok(),
            Value::Int(n) => u64::try_from(n).ok(),
            _ => None,
        });
        if let Some(limit) = limit {
            self.inner.max_bulk_len.store(limit, Ordering::Relaxed);
        }
    }

    /// Refuses a server this backend cannot run on, before anything is written: a Redis
    /// Cluster node reached by a single-server `connect` (it serves only its slots; the cluster
    /// is what to connect to), a Sentinel (it stores nothing; its master is what to connect to)
    /// or a read-only replica. A cluster connection is not checked: it only sends to masters.
    pub(crate) async fn refuse_unsupported_server(&self, at: &At<'_>) -> Result<(), BackendError> {
        if self.inner.lanes.is_cluster() {
            return Ok(());
        }
        // Plain `INFO`: naming several sections needs Redis 7. Sentinel answers it too.
        let cmd = redis::cmd("INFO");
        let info: String = match self.query(at, &cmd, Retry::OnReconnect).await {
            Ok(info) => info,
            // A user without the right to run INFO (an ACL without @dangerous): the check is a
            // courtesy, so go on without it.
            Err(error) => {
                tracing::debug!(%error, "INFO refused; the kind of server is not checked");
                return Ok(());
            }
        };
        let field = |name: &str| {
            info.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
        };
        let server = &self.inner.server;
        if field("redis_mode") == Some("sentinel") {
            return Err(at.backend(format_args!(
                "{server} is a Redis Sentinel, which stores no data; connect to the master it \
                 monitors (`SENTINEL GET-MASTER-ADDR-BY-NAME <name>` gives its address)"
            )));
        }
        if field("cluster_enabled") == Some("1") || field("redis_mode") == Some("cluster") {
            return Err(at.backend(format_args!(
                "{server} is a Redis Cluster node, which serves only its own hash slots; \
                 connect to the cluster with RedisBackend::connect_cluster and the URLs of \
                 some of its nodes"
            )));
        }
        if field("role") == Some("slave") {
            let master = match (field("master_host"), field("master_port")) {
                (Some(host), Some(port)) => format!("its master, {host}:{port}"),
                _ => "its master".to_string(),
            };
            return Err(
                at.backend(format_args!("{server} is a read-only replica; connect to {master}"))
            );
        }
        Ok(())
    }

    /// Refuses, before anything is sent, a command with an argument larger than the server
    /// accepts: sent, it would make the server drop the connection it shares with other calls.
    pub(crate) fn check_sizes<'c>(
        &self,
        at: &At<'_>,
        commands: impl IntoIterator<Item = &'c redis::Cmd>,
    ) -> Result<(), BackendError> {
        let limit = self.inner.max_bulk_len.load(Ordering::Relaxed);
        let largest = commands
            .into_iter()
            .flat_map(redis::Cmd::args_iter)
            .map(|arg| match arg {
                redis::Arg::Simple(bytes) => bytes.len(),
                // A cursor placeholder carries no data of ours.
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        if u64::try_from(largest).unwrap_or(u64::MAX) > limit {
            return Err(at.backend(format_args!(
                "a value of {largest} bytes is larger than the server at {} accepts \
                 (proto-max-bulk-len = {limit} bytes); nothing was sent. Store a smaller \
                 value, or raise proto-max-bulk-len on the server",
                self.inner.server
            )));
        }
        Ok(())
    }

    /// Runs a per-workflow script: KEYS are the workflow's keys, ARGV starts with the
    /// application clock and the instance id, then `args`.
    pub(crate) async fn run_workflow_script(
        &self,
        at: &At<'_>,
        lua: &Lua,
        keys: &WorkflowKeys,
        instance_id: &str,
        args: &[&[u8]],
        retry: Retry,
    ) -> Result<Value, BackendError> {
        let mut cmd = self.workflow_script_command(lua, keys, instance_id);
        cmd.arg(args);
        self.run_script(at, lua, &cmd, retry).await
    }

    /// The `EVALSHA` of a per-workflow script up to its own arguments: the workflow's keys,
    /// then the application clock and the instance id as the first two ARGV.
    pub(crate) fn workflow_script_command(
        &self,
        lua: &Lua,
        keys: &WorkflowKeys,
        instance_id: &str,
    ) -> redis::Cmd {
        // Sized for the keys and a few arguments, so that building it does not reallocate.
        let data = lua.sha.len() + keys.script_keys_len(self.keys()) + instance_id.len() + 128;
        let mut cmd = redis::Cmd::with_capacity(crate::keys::SCRIPT_KEYS + 12, data);
        cmd.arg("EVALSHA").arg(lua.sha.as_str()).arg(crate::keys::SCRIPT_KEYS);
        keys.push_script_keys(&mut cmd, self.keys());
        cmd.arg(now_millis()).arg(instance_id);
        cmd
    }

    /// Runs a script on global keys only.
    pub(crate) async fn eval(
        &self,
        at: &At<'_>,
        lua: &Lua,
        keys: &[&str],
        args: &[&[u8]],
        retry: Retry,
    ) -> Result<Value, BackendError> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(lua.sha.as_str()).arg(keys.len()).arg(keys).arg(args);
        self.run_script(at, lua, &cmd, retry).await
    }

    /// Sends an `EVALSHA` command built by the caller, and once as `EVAL` with the source if
    /// the server does not have the script cached.
    pub(crate) async fn run_script(
        &self,
        at: &At<'_>,
        lua: &Lua,
        evalsha: &redis::Cmd,
        retry: Retry,
    ) -> Result<Value, BackendError> {
        self.check_sizes(at, [evalsha])?;
        let Some((replicas, millis)) = self.wait_after(lua) else {
            return self
                .on_connection(at, retry, |mut conn| async move {
                    match evalsha.query_async::<Value>(&mut conn).await {
                        Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                            lua.eval_command(evalsha).query_async::<Value>(&mut conn).await
                        }
                        other => other,
                    }
                })
                .await;
        };
        // The script and its `WAIT` in one pipeline: one round trip, and on a cluster both go
        // to the node that runs the script (`WAIT` has no key to route by).
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(millis);
        let waited = |script: redis::Cmd| {
            let mut pipeline = redis::Pipeline::with_capacity(2);
            pipeline.ignore_errors().add_command(script).add_command(wait.clone());
            pipeline
        };
        let first = waited(evalsha.clone());
        let (reply, acknowledged) = self
            .on_connection(at, retry, |mut conn| {
                let first = &first;
                async move {
                    let mut replies: Vec<Value> = first.query_async(&mut conn).await?;
                    let no_script = matches!(
                        replies.first(),
                        Some(Value::ServerError(e)) if e.kind() == Some(ServerErrorKind::NoScript)
                    );
                    if no_script {
                        replies = waited(lua.eval_command(evalsha)).query_async(&mut conn).await?;
                    }
                    let mut replies = replies.into_iter();
                    let (Some(reply), Some(waited)) = (replies.next(), replies.next()) else {
                        return Err(redis::RedisError::from((
                            ErrorKind::Client,
                            "the script and its WAIT got fewer than two replies",
                        )));
                    };
                    let acknowledged = waited.extract_error().and_then(|count| {
                        redis::from_redis_value::<i64>(count).map_err(Into::into)
                    });
                    Ok((reply.extract_error()?, acknowledged))
                }
            })
            .await?;
        self.check_acknowledged(at, Some((replicas, millis)), Some(acknowledged))?;
        Ok(reply)
    }

    /// The `WAIT` to send after `lua`, if the options ask for one and it writes.
    fn wait_after(&self, lua: &Lua) -> Option<(u32, u64)> {
        let (replicas, timeout) = self.inner.wait_for_replicas?;
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1);
        lua.writes.then_some((replicas, millis))
    }

    /// `Backend` when fewer replicas than asked acknowledged the call's writes in time, or
    /// `WAIT` failed.
    fn check_acknowledged(
        &self,
        at: &At<'_>,
        wait: Option<(u32, u64)>,
        acknowledged: Option<RedisResult<i64>>,
    ) -> Result<(), BackendError> {
        let (Some((replicas, millis)), Some(acknowledged)) = (wait, acknowledged) else {
            return Ok(());
        };
        let what = match acknowledged {
            Ok(count) if count >= i64::from(replicas) => return Ok(()),
            Ok(count) => format!(
                "{count} of the {replicas} replicas asked for acknowledged its writes within \
                 {millis} ms"
            ),
            Err(error) => format!("WAIT for {replicas} replicas failed ({error})"),
        };
        Err(at.backend(format_args!(
            "the call ran on the master at {}, but {what}: whatever it wrote (a claim it \
             granted included) is on the master and could be lost if it fails over now. Check \
             the replicas (INFO replication) or ask for fewer (RedisOptions::wait_for_replicas)",
            self.inner.server
        )))
    }

    /// Sends `commands` in one transaction (`MULTI`/`EXEC`: one round trip, and nothing
    /// runs in between), the one at `script` being the `EVALSHA` of `lua`; sends the whole
    /// transaction again with `EVAL` if the server does not have the script cached. Gives
    /// every reply.
    pub(crate) async fn run_transaction(
        &self,
        at: &At<'_>,
        lua: &Lua,
        commands: Vec<redis::Cmd>,
        script: usize,
        retry: Retry,
    ) -> Result<Vec<Value>, BackendError> {
        self.check_sizes(at, &commands)?;
        let count = commands.len();
        let mut transaction = redis::Pipeline::with_capacity(count);
        transaction.atomic().ignore_errors();
        for cmd in commands {
            transaction.add_command(cmd);
        }
        let wait = self.wait_after(lua);
        let (replies, acknowledged) = self
            .on_connection(at, retry, |mut conn| {
                let transaction = &transaction;
                async move {
                    let replies: Vec<Value> = transaction.query_async(&mut conn).await?;
                    let no_script = matches!(
                        replies.get(script),
                        Some(Value::ServerError(e)) if e.kind() == Some(ServerErrorKind::NoScript)
                    );
                    let replies = if no_script {
                        let mut again = redis::Pipeline::with_capacity(count);
                        again.atomic().ignore_errors();
                        for (index, cmd) in transaction.cmd_iter().enumerate() {
                            again.add_command(if index == script {
                                lua.eval_command(cmd)
                            } else {
                                cmd.clone()
                            });
                        }
                        again.query_async(&mut conn).await?
                    } else {
                        replies
                    };
                    let written = transaction.cmd_iter().nth(script);
                    let acknowledged = match written {
                        Some(evalsha) => replicas_acknowledged(&mut conn, wait, evalsha).await,
                        None => None,
                    };
                    Ok((replies, acknowledged))
                }
            })
            .await?;
        self.check_acknowledged(at, wait, acknowledged)?;
        if replies.len() != count {
            return Err(error::reply(
                at,
                "the transaction returned a reply per command but not all",
            ));
        }
        replies
            .into_iter()
            .map(|reply| {
                reply.extract_error().map_err(|e| error::redis(at, &self.inner.server, &e))
            })
            .collect()
    }

    /// Runs one plain command.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        at: &At<'_>,
        cmd: &redis::Cmd,
        retry: Retry,
    ) -> Result<T, BackendError> {
        self.check_sizes(at, [cmd])?;
        self.on_connection(
            at,
            retry,
            |mut conn| async move { cmd.query_async::<T>(&mut conn).await },
        )
        .await
    }

    /// Runs `call` on one of the held connections. A connection that turns out broken is
    /// replaced; with [`Retry::OnReconnect`] a call that failed because of it is sent once
    /// more, on a fresh connection (after a server restart every held connection is stale,
    /// and each would otherwise fail one call). The happy path is one attempt.
    pub(crate) async fn on_connection<T, F, Fut>(
        &self,
        at: &At<'_>,
        retry: Retry,
        call: F,
    ) -> Result<T, BackendError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let lanes = &self.inner.lanes;
        let lane = lanes.get(at).await?;
        let error = match call(lane.conn.clone()).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        lanes.observe(&lane, &error);
        // A cluster node refused the call without running it (a redirection during a failover
        // or a resharding, a slot not served yet): safe for every call, it is sent again until a
        // node runs it, the cluster connection having refreshed its slot map meanwhile. (The
        // cluster client itself never resends: after a lost connection it could apply a write
        // twice.) `UntilAnswered` calls ask again by their own, wider rule.
        if self.inner.lanes.is_cluster()
            && retry != Retry::UntilAnswered
            && error::refused_by_cluster(&error)
        {
            return self
                .send_again(at, &call, lane.index, error, error::refused_by_cluster)
                .await
                .map_err(|error| error::redis(at, &self.inner.server, &error));
        }
        match retry {
            Retry::No => Err(error::redis(at, &self.inner.server, &error)),
            Retry::OnReconnect if !error::worth_reconnecting(&error) => {
                Err(error::redis(at, &self.inner.server, &error))
            }
            Retry::OnReconnect => {
                tracing::debug!(error = %error, "redis connection lost; retrying once on a fresh one");
                let fresh = lanes.get_slot(at, lane.index).await?;
                match call(fresh.conn.clone()).await {
                    Ok(value) => Ok(value),
                    Err(error) => {
                        lanes.observe(&fresh, &error);
                        Err(error::redis(at, &self.inner.server, &error))
                    }
                }
            }
            Retry::UntilAnswered => self.ask_again(at, &call, lane.index, error).await,
        }
    }

    /// Sends `call` again, on a fresh connection when the last one broke, until it gets an
    /// answer or [`Inner::patience`] runs out: for calls that carry their own request id, so
    /// that asking again returns the first answer instead of applying the call twice.
    pub(crate) async fn ask_again<T, F, Fut>(
        &self,
        at: &At<'_>,
        call: &F,
        index: usize,
        error: redis::RedisError,
    ) -> Result<T, BackendError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let unanswered = |error: &redis::RedisError| {
            error.is_timeout()
                || error::worth_reconnecting(error)
                || error::refused_by_cluster(error)
        };
        self.send_again(at, call, index, error, unanswered).await.map_err(|error| {
            if !unanswered(&error) {
                // An answer after all, an error one: the call was refused, not left unanswered.
                return error::redis(at, &self.inner.server, &error);
            }
            at.backend(format_args!(
                "the server at {} gave no answer within {:?} of asking ({error}); the call may \
                 have been applied on the server without its answer reaching this process",
                self.inner.server, self.inner.patience
            ))
        })
    }

    /// Sends `call` again on lane `index` (refilled when its connection broke), pausing 10 ms,
    /// then twice as long each time up to 1 s, while `error` is one `worth` sending again for
    /// and [`Inner::patience`] lasts: the first answer, or the last error.
    async fn send_again<T, F, Fut>(
        &self,
        at: &At<'_>,
        call: &F,
        index: usize,
        mut error: redis::RedisError,
        worth: impl Fn(&redis::RedisError) -> bool,
    ) -> Result<T, redis::RedisError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let lanes = &self.inner.lanes;
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(10);
        while worth(&error) && started.elapsed() < self.inner.patience {
            tracing::debug!(error = %error, "no answer from redis, or refused unrun; sending again");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
            let Ok(lane) = lanes.get_slot(at, index).await else { continue };
            match call(lane.conn.clone()).await {
                Ok(value) => return Ok(value),
                Err(next) => {
                    lanes.observe(&lane, &next);
                    error = next;
                }
            }
        }
        Err(error)
    }
}

/// Sends `WAIT replicas millis` on `conn` when `wait` asks for it, to the server that ran
/// `evalsha` (on a cluster, the master of its first key's slot, over the connection the script
/// went on): the number of replicas that acknowledged every write sent on that connection so
/// far, or why `WAIT` failed. Never an error of the call itself: the call has run by then, and
/// sending it again is not the answer.
async fn replicas_acknowledged(
    conn: &mut Conn,
    wait: Option<(u32, u64)>,
    evalsha: &redis::Cmd,
) -> Option<RedisResult<i64>> {
    let (replicas, millis) = wait?;
    let mut cmd = redis::cmd("WAIT");
    cmd.arg(replicas).arg(millis);
    // `EVALSHA <sha> <numkeys> <first key> ...`; a script without keys runs anywhere.
    let key = match evalsha.args_iter().nth(3) {
        Some(redis::Arg::Simple(key)) => key,
        _ => b"".as_slice(),
    };
    Some(conn.query_at(&cmd, key).await)
}

/// Whether a call may be sent a second time after it met a broken connection: only for
/// calls whose repetition is harmless (reads, and writes that check their own preconditions
/// and whose outcome the caller does not report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Send once.
    No,
    /// Send once more on a fresh connection after a connection-class error.
    OnReconnect,
    /// Ask again, after a timeout or a lost connection, until answered (within the
    /// backend's patience): for destructive calls that carry a request id, so that a repeat
    /// returns the first answer (`consume_event`).
    UntilAnswered,
}
