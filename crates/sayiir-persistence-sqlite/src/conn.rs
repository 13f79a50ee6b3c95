//! Connections on threads of their own, so no SQLite call runs on a tokio worker thread.
//!
//! One writer thread owns the only connection that writes (every write is a `BEGIN
//! IMMEDIATE` transaction on it); reader threads share a queue of read jobs. A job is a
//! closure run on the connection; its result comes back through a oneshot channel.
//!
//! `busy_timeout` bounds a whole call, not each statement: a call's deadline starts when it
//! is queued, and the connection waits for another process's lock only for what is left of
//! it. Forty calls queued behind a lock held elsewhere all fail after about `busy_timeout`,
//! not one after the other; a call whose time ran out while queued still runs if the lock is
//! free (it then does not wait at all).

use std::panic::AssertUnwindSafe;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use sayiir_persistence::BackendError;

use crate::error::{context, sql_error};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The writer and reader threads of one backend. Dropping it ends the threads once their
/// queued jobs are done and waits for them, which closes the connections.
#[derive(Debug)]
pub(crate) struct Threads {
    writer: Option<Sender<Job>>,
    readers: Option<Sender<Job>>,
    handles: Vec<JoinHandle<()>>,
    busy_timeout: Duration,
}

impl Drop for Threads {
    fn drop(&mut self) {
        // Closing the queues ends each thread's loop after its last queued job.
        self.writer.take();
        self.readers.take();
        for handle in self.handles.drain(..) {
            // A thread that panicked has nothing left to close.
            let _ = handle.join();
        }
    }
}

impl Threads {
    /// Starts one thread per connection. `readers` empty sends reads to the writer.
    pub(crate) fn start(
        writer: Connection,
        readers: Vec<Connection>,
        busy_timeout: Duration,
    ) -> Result<Self, BackendError> {
        let (writer_tx, writer_rx) = crossbeam_channel::unbounded::<Job>();
        let mut handles = vec![spawn("sayiir-sqlite-writer", writer, writer_rx)?];
        let readers_tx = if readers.is_empty() {
            writer_tx.clone()
        } else {
            let (tx, rx) = crossbeam_channel::unbounded::<Job>();
            for (i, conn) in readers.into_iter().enumerate() {
                handles.push(spawn(&format!("sayiir-sqlite-reader-{i}"), conn, rx.clone())?);
            }
            tx
        };
        Ok(Self { writer: Some(writer_tx), readers: Some(readers_tx), handles, busy_timeout })
    }

    /// Runs `work` in one `BEGIN IMMEDIATE` transaction on the writer, committed if it
    /// returns `Ok`, rolled back otherwise.
    pub(crate) async fn write<R, F>(
        &self,
        operation: &'static str,
        instance_id: &str,
        work: F,
    ) -> Result<R, BackendError>
    where
        R: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<R, BackendError> + Send + 'static,
    {
        run(self.writer.as_ref(), self.busy_timeout, operation, instance_id, move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| sql_error(operation, "begin", &e))?;
            let result = work(&tx)?;
            tx.commit().map_err(|e| sql_error(operation, "commit", &e))?;
            Ok(result)
        })
        .await
    }

    /// Runs `work` in one read transaction on a reader, so that it sees one consistent state.
    pub(crate) async fn read<R, F>(
        &self,
        operation: &'static str,
        instance_id: &str,
        work: F,
    ) -> Result<R, BackendError>
    where
        R: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<R, BackendError> + Send + 'static,
    {
        run(self.readers.as_ref(), self.busy_timeout, operation, instance_id, move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Deferred)
                .map_err(|e| sql_error(operation, "begin", &e))?;
            let result = work(&tx);
            // Nothing was written: ending the read transaction cannot lose anything.
            drop(tx.rollback());
            result
        })
        .await
    }
}

async fn run<R, F>(
    queue: Option<&Sender<Job>>,
    busy_timeout: Duration,
    operation: &'static str,
    instance_id: &str,
    work: F,
) -> Result<R, BackendError>
where
    R: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<R, BackendError> + Send + 'static,
{
    let (reply, answer) = tokio::sync::oneshot::channel();
    let deadline = Instant::now() + busy_timeout;
    let job: Job = Box::new(move |conn| {
        // Wait for another process's lock only for what is left of this call's time.
        let left = deadline.saturating_duration_since(Instant::now());
        let outcome = conn
            .busy_timeout(left)
            .map_err(|e| sql_error(operation, "busy_timeout", &e))
            .and_then(|()| work(conn));
        // The caller may have given up (its future was dropped): nothing to tell it then.
        let _ = reply.send(outcome);
    });
    let stopped = || {
        context(operation).instance(instance_id).backend(format_args!(
            "the operation did not complete (it panicked, or the backend \
             is shutting down); nothing of it was committed"
        ))
    };
    queue.ok_or_else(stopped)?.send(job).map_err(|_| stopped())?;
    answer
        .await
        .map_err(|_| stopped())?
        .map_err(|error| name_instance(error, operation, instance_id))
}

/// Adds the instance to the context of a database error (`SQLite <operation> ...`), so a
/// user can tell which workflow the failure was about.
fn name_instance(error: BackendError, operation: &str, instance_id: &str) -> BackendError {
    let bare = context(operation).to_string();
    match error {
        BackendError::Backend(message) if !instance_id.is_empty() && message.starts_with(&bare) => {
            let named = context(operation).instance(instance_id).to_string();
            BackendError::Backend(message.replacen(&bare, &named, 1))
        }
        other => other,
    }
}

fn spawn(
    name: &str,
    mut conn: Connection,
    jobs: Receiver<Job>,
) -> Result<JoinHandle<()>, BackendError> {
    // More statements than rusqlite's default cache of 16 run on each connection.
    conn.set_prepared_statement_cache_capacity(64);
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            for job in jobs {
                // A panicking job must not take the connection down with it: its transaction
                // rolls back as it unwinds, its caller gets an error, the thread goes on.
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn)));
            }
        })
        .map_err(|e| {
            BackendError::Backend(format!("sqlite: cannot start a connection thread: {e}"))
        })
}
