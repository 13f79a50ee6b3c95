//! Connections on threads of their own, so no SQLite call runs on a tokio worker thread.
//!
//! One writer thread owns the only connection that writes (every write is a `BEGIN
//! IMMEDIATE` transaction on it); reader threads share a queue of read jobs. A job is a
//! closure run on the connection; its result comes back through a oneshot channel.

use crossbeam_channel::{Receiver, Sender};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use sayiir_persistence::BackendError;

use crate::error::sql_error;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The writer and reader threads of one backend. Dropping it ends the threads once their
/// queued jobs are done, which closes the connections.
#[derive(Debug)]
pub(crate) struct Threads {
    writer: Sender<Job>,
    readers: Sender<Job>,
}

impl Threads {
    /// Starts one thread per connection. `readers` empty sends reads to the writer.
    pub(crate) fn start(
        writer: Connection,
        readers: Vec<Connection>,
    ) -> Result<Self, BackendError> {
        let (writer_tx, writer_rx) = crossbeam_channel::unbounded::<Job>();
        spawn("sayiir-sqlite-writer", writer, writer_rx)?;
        let readers_tx = if readers.is_empty() {
            writer_tx.clone()
        } else {
            let (tx, rx) = crossbeam_channel::unbounded::<Job>();
            for (i, conn) in readers.into_iter().enumerate() {
                spawn(&format!("sayiir-sqlite-reader-{i}"), conn, rx.clone())?;
            }
            tx
        };
        Ok(Self { writer: writer_tx, readers: readers_tx })
    }

    /// Runs `work` in one `BEGIN IMMEDIATE` transaction on the writer, committed if it
    /// returns `Ok`, rolled back otherwise.
    pub(crate) async fn write<R, F>(
        &self,
        operation: &'static str,
        work: F,
    ) -> Result<R, BackendError>
    where
        R: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<R, BackendError> + Send + 'static,
    {
        run(&self.writer, operation, move |conn| {
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
        work: F,
    ) -> Result<R, BackendError>
    where
        R: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<R, BackendError> + Send + 'static,
    {
        run(&self.readers, operation, move |conn| {
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

async fn run<R, F>(queue: &Sender<Job>, operation: &'static str, work: F) -> Result<R, BackendError>
where
    R: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<R, BackendError> + Send + 'static,
{
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move |conn| {
        // The caller may have given up (its future was dropped): nothing to tell it then.
        let _ = reply.send(work(conn));
    });
    let stopped =
        || BackendError::Backend(format!("sqlite {operation}: the connection thread has stopped"));
    queue.send(job).map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

fn spawn(name: &str, mut conn: Connection, jobs: Receiver<Job>) -> Result<(), BackendError> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            for job in jobs {
                job(&mut conn);
            }
        })
        .map(drop)
        .map_err(|e| {
            BackendError::Backend(format!("sqlite: cannot start a connection thread: {e}"))
        })
}
