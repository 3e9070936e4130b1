//! The dedicated SQLite writer for certificate issuance, the manager's hot write path.
//!
//! Through sqlx, every statement is a round trip to the connection's worker thread, and the
//! task waiting for the answer has to be scheduled again. Under issuance load both cores are
//! busy verifying signatures, so each of a batch's seven statements waited for the scheduler:
//! a commit took ~4.5 ms, of which SQLite's own work was a fraction, and as the one writer it
//! capped the whole issuance rate. Here one thread owns a rusqlite connection to the same file
//! and runs a whole transaction (`BEGIN IMMEDIATE`, the inserts, the audit chain, `COMMIT`)
//! without leaving it: one hand-over per batch instead of fourteen.
//!
//! The same thread runs the checkpoint that lets the write-ahead log start over (see
//! `spawn_checkpointer`): other writers then wait exactly as long as SQLite works.
//!
//! The thread takes the store's writer lock like every other SQLite writer, its connection
//! has the same settings as the pool's (`SQLITE_PRAGMAS`), and the statements are the same
//! [`WriteSet`] the sqlx path runs on PostgreSQL. The thread starts with the first write and
//! ends, closing its connection, when the store is closed or the last
//! [`Store`](crate::Store) clone is dropped.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, oneshot};

use crate::sql::WriteSet;
use crate::{Error, Result, SQLITE_PRAGMAS, WAL_CHECKPOINT};

/// A write taking longer than this is logged (with where its time went).
const SLOW_WRITE: Duration = Duration::from_millis(100);

enum Job {
    Write {
        write: WriteSet,
        done: oneshot::Sender<Result<()>>,
    },
    Checkpoint {
        done: oneshot::Sender<Result<()>>,
    },
}

/// Handle to the writer thread (started on first use).
#[derive(Debug)]
pub(crate) struct SqliteWriter {
    path: PathBuf,
    write_lock: Arc<Mutex<()>>,
    state: std::sync::Mutex<State>,
}

#[derive(Debug)]
enum State {
    NotStarted,
    Running(mpsc::Sender<Job>),
    Closed,
}

impl SqliteWriter {
    /// A writer for the database file at `path`, serialised with the store's other writers by
    /// `write_lock`.
    pub(crate) fn new(path: PathBuf, write_lock: Arc<Mutex<()>>) -> Self {
        Self {
            path,
            write_lock,
            state: std::sync::Mutex::new(State::NotStarted),
        }
    }

    /// Runs `write` in one transaction on the writer thread; returns once it is durable.
    pub(crate) async fn write(&self, write: WriteSet) -> Result<()> {
        let (done, result) = oneshot::channel();
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if matches!(*state, State::NotStarted) {
                *state = State::Running(self.start());
            }
            let State::Running(jobs) = &*state else {
                return Err(Error::Sqlite("the store is closed".into()));
            };
            jobs.send(Job::Write { write, done })
                .map_err(|_| Error::Sqlite("the SQLite writer thread is gone".into()))?;
        }
        result
            .await
            .map_err(|_| Error::Sqlite("the SQLite writer thread stopped".into()))?
    }

    /// Copies the whole write-ahead log into the database file on the writer thread, holding
    /// the writer lock, so that the next write starts the log over; `None` when the thread is
    /// not running (no issuance yet, or closed), and the caller does it on its own connection.
    ///
    /// Other writers wait for exactly as long as SQLite works: a task on the runtime holding
    /// the lock would hold it, after its checkpoint, until a busy core schedules it again.
    pub(crate) async fn restart_checkpoint(&self) -> Option<Result<()>> {
        let (done, result) = oneshot::channel();
        {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let State::Running(jobs) = &*state else {
                return None;
            };
            jobs.send(Job::Checkpoint { done }).ok()?;
        }
        result.await.ok()
    }

    /// Stops the thread once the writes already handed to it are done; later writes fail.
    pub(crate) fn close(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = State::Closed;
    }

    fn start(&self) -> mpsc::Sender<Job> {
        let (tx, rx) = mpsc::channel::<Job>();
        let path = self.path.clone();
        let lock = self.write_lock.clone();
        let spawned = std::thread::Builder::new()
            .name("ccm-sqlite-writer".into())
            .spawn(move || run(&path, &lock, &rx));
        if let Err(e) = spawned {
            // `rx` is gone with the closure, so every write reports the failure.
            tracing::error!(error = %e, "could not start the SQLite writer thread");
        }
        tx
    }
}

/// Opens a connection to the existing database file with the store's settings.
pub(crate) fn open(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    // The file exists: the pool created it and ran the migrations.
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    for pragma in SQLITE_PRAGMAS {
        // Some pragmas answer with a row (journal_mode), others with none.
        conn.query_row(pragma, [], |_| Ok(()))
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(()),
                e => Err(e),
            })?;
    }
    Ok(conn)
}

fn run(path: &std::path::Path, write_lock: &Mutex<()>, jobs: &mpsc::Receiver<Job>) {
    let mut conn: Option<rusqlite::Connection> = None;
    while let Ok(job) = jobs.recv() {
        let c = match &mut conn {
            Some(c) => Ok(c),
            None => open(path).map(|c| conn.insert(c)),
        };
        match job {
            Job::Write { write, done } => {
                let result = c.and_then(|c| apply(c, write_lock, &write)).map_err(|e| {
                    // A connection that failed is opened afresh for the next write.
                    conn = None;
                    Error::Sqlite(format!("SQLite write failed: {e}"))
                });
                let _ = done.send(result);
            }
            Job::Checkpoint { done } => {
                let result = c.and_then(|c| checkpoint(c, write_lock)).map_err(|e| {
                    conn = None;
                    Error::Sqlite(format!("SQLite checkpoint failed: {e}"))
                });
                let _ = done.send(result);
            }
        }
    }
}

fn checkpoint(conn: &rusqlite::Connection, write_lock: &Mutex<()>) -> rusqlite::Result<()> {
    let _writers_wait = write_lock.blocking_lock();
    let started = Instant::now();
    let (_busy, frames, copied): (i64, i64, i64) = conn.query_row(WAL_CHECKPOINT, [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    tracing::debug!(
        frames,
        copied,
        millis = started.elapsed().as_secs_f64() * 1e3,
        "WAL checkpoint with writers held"
    );
    Ok(())
}

fn apply(
    conn: &mut rusqlite::Connection,
    write_lock: &Mutex<()>,
    write: &WriteSet,
) -> rusqlite::Result<()> {
    let started = Instant::now();
    let _writers_wait = write_lock.blocking_lock();
    let locked = Instant::now();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    write.execute_sqlite(&tx)?;
    let written = Instant::now();
    tx.commit()?;
    let total = started.elapsed();
    if total >= SLOW_WRITE {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::warn!(
            lock_wait_ms = ms(locked - started),
            statements_ms = ms(written - locked),
            commit_ms = ms(written.elapsed()),
            "slow SQLite issuance write"
        );
    }
    Ok(())
}
