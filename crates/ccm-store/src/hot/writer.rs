//! The dedicated issuance writer, the manager's hot write path: one thread that owns one
//! connection and runs whole issuance transactions on it.
//!
//! Through the pool, every statement is a round trip that ends with the waiting task being
//! scheduled again, and under issuance load both cores are busy verifying signatures. On
//! SQLite, each of a batch's seven statements waited for the scheduler (sqlx hands every
//! statement to the connection's worker thread), and SQLite's own work was a fraction of a
//! commit. On PostgreSQL, the round trips of a commit (begin, the audit head's lock, the
//! inserts, the audit head, commit) kept the one writer busy most of the time, which capped the
//! issuance rate (BENCHMARKS.md has the figures). A thread of its own answers at once:
//!
//! - **SQLite**: a rusqlite connection to the same file runs `BEGIN IMMEDIATE`, the inserts,
//!   the audit chain and `COMMIT` without leaving the thread, behind the store's writer lock
//!   like every other SQLite writer. The same thread runs the checkpoint that lets the
//!   write-ahead log start over (see `spawn_checkpointer`): other writers then wait exactly as
//!   long as SQLite works.
//! - **PostgreSQL**: an sqlx connection driven by the thread's own single-threaded runtime
//!   commits a group of write sets with one statement: every row as data-modifying `WITH`
//!   clauses (see [`pg_group_statements`](crate::sql::pg_group_statements)), behind an update
//!   that moves the audit head on from where the writer's last commit left it. When another
//!   writer moved the head meanwhile, the group takes four round trips instead: `BEGIN`, the
//!   head moved on by all its entries (the writers' lock, taken first as every writer does),
//!   the rows and the head's new hash, and `COMMIT` (see `PgWriter::apply`).
//!
//! The rows are the same [`WriteSet`]s everywhere. The thread starts with the first write
//! and ends, closing its connection, when the store is closed or the last
//! [`Store`](crate::Store) clone is dropped. A connection that failed is opened afresh for the
//! next write.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, oneshot};

use super::pg_conn::{Dedicated, Role, connection_lost};
use crate::sql::{self, HeadMove, Insert, Param, WriteSet};
use crate::{Backend, Error, Result, SQLITE_PRAGMAS, WAL_CHECKPOINT, audit};

/// Most write sets (of up to `MAX_ISSUANCE_BATCH` records each) one transaction takes.
const MAX_GROUP: usize = 8;

/// A write set and who waits for it.
type Queued = (WriteSet, oneshot::Sender<Result<()>>);

/// What the thread does next.
enum Next {
    /// Commit these write sets together.
    Writes(Vec<Queued>),
    /// Run the log-restart checkpoint (SQLite).
    Checkpoint(oneshot::Sender<Result<()>>),
}

/// The thread's jobs: the write sets queued behind one are taken with it (group commit), so a
/// commit follows the last at once, without waiting for the runtime to hand over the next.
struct Queue<'a> {
    jobs: &'a mpsc::Receiver<Job>,
    held: Option<Job>,
}

impl<'a> Queue<'a> {
    fn new(jobs: &'a mpsc::Receiver<Job>) -> Self {
        Self { jobs, held: None }
    }

    /// The next thing to do; `None` once the store let go of the thread.
    fn next(&mut self) -> Option<Next> {
        let first = match self.held.take() {
            Some(job) => job,
            None => self.jobs.recv().ok()?,
        };
        let (write, done) = match first {
            Job::Checkpoint { done } => return Some(Next::Checkpoint(done)),
            Job::Write { write, done } => (write, done),
        };
        let mut group = vec![(write, done)];
        while group.len() < MAX_GROUP {
            match self.jobs.try_recv() {
                Ok(Job::Write { write, done }) => group.push((write, done)),
                Ok(other) => {
                    self.held = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        Some(Next::Writes(group))
    }
}

/// Commits `group` in one transaction through `apply`. When that fails and `rolled_back` says
/// the failure left nothing written, one write set may be at fault (a record of an account
/// deleted meanwhile, say): each is then tried alone, so that the others are not refused with
/// it. After a failure that may have committed (a connection lost during `COMMIT`), everyone
/// gets the error: trying again could write the audit entries twice. Answers everyone; returns
/// whether anything failed.
fn commit_group(
    group: Vec<Queued>,
    rolled_back: impl Fn(&Error) -> bool,
    mut apply: impl FnMut(&[WriteSet]) -> Result<()>,
) -> bool {
    let (writes, waiting): (Vec<WriteSet>, Vec<_>) = group.into_iter().unzip();
    let e = match apply(&writes) {
        Ok(()) => {
            for done in waiting {
                let _ = done.send(Ok(()));
            }
            return false;
        }
        Err(e) => e,
    };
    if writes.len() > 1 && rolled_back(&e) {
        for (write, done) in writes.iter().zip(waiting) {
            let _ = done.send(apply(std::slice::from_ref(write)));
        }
    } else {
        let message = e.to_string();
        let mut first = Some(e);
        for done in waiting {
            let e = first
                .take()
                .unwrap_or_else(|| Error::Connection(message.clone()));
            let _ = done.send(Err(e));
        }
    }
    true
}

/// Whether a PostgreSQL write failed with nothing written: the server refused a statement or
/// the commit, so the transaction was rolled back.
fn pg_rolled_back(e: &Error) -> bool {
    matches!(e, Error::Database(sqlx::Error::Database(_)))
}

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

/// The database the writer thread writes to.
pub(crate) enum Target {
    /// An SQLite file, serialised with the store's other writers by `write_lock`.
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The store's writer lock.
        write_lock: Arc<Mutex<()>>,
    },
    /// A PostgreSQL database.
    Postgres {
        /// Its URL (with credentials: never logged).
        url: String,
    },
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite { path, .. } => f.debug_struct("Sqlite").field("path", path).finish(),
            Self::Postgres { url } => f
                .debug_struct("Postgres")
                .field("url", &crate::redact_url(url))
                .finish(),
        }
    }
}

/// Handle to the writer thread (started on first use).
#[derive(Debug)]
pub(crate) struct Writer {
    target: Arc<Target>,
    state: std::sync::Mutex<State>,
}

#[derive(Debug)]
enum State {
    NotStarted,
    Running(mpsc::Sender<Job>),
    Closed,
}

impl Writer {
    /// A writer for `target`.
    pub(crate) fn new(target: Target) -> Self {
        Self {
            target: Arc::new(target),
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
                return Err(Error::Connection("the store is closed".into()));
            };
            jobs.send(Job::Write { write, done })
                .map_err(|_| Error::Connection("the issuance writer thread is gone".into()))?;
        }
        result
            .await
            .map_err(|_| Error::Connection("the issuance writer thread stopped".into()))?
    }

    /// Copies the whole SQLite write-ahead log into the database file on the writer thread,
    /// holding the writer lock, so that the next write starts the log over; `None` when the
    /// thread is not running (no issuance yet, or closed), and the caller does it on its own
    /// connection.
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
        let target = self.target.clone();
        let spawned = std::thread::Builder::new()
            .name("ccm-issuance-writer".into())
            .spawn(move || match &*target {
                Target::Sqlite { path, write_lock } => run_sqlite(path, write_lock, &rx),
                Target::Postgres { url } => run_postgres(url, &rx),
            });
        if let Err(e) = spawned {
            // `rx` is gone with the closure, so every write reports the failure.
            tracing::error!(error = %e, "could not start the issuance writer thread");
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

fn run_sqlite(path: &std::path::Path, write_lock: &Mutex<()>, jobs: &mpsc::Receiver<Job>) {
    let mut conn: Option<rusqlite::Connection> = None;
    let mut queue = Queue::new(jobs);
    while let Some(next) = queue.next() {
        let c = match &mut conn {
            Some(c) => Ok(c),
            None => open(path).map(|c| conn.insert(c)),
        };
        let failed = match next {
            Next::Writes(group) => match c {
                // SQLite's failures are local: a transaction that failed was rolled back.
                Ok(c) => commit_group(
                    group,
                    |_| true,
                    |writes| apply_sqlite(c, write_lock, writes).map_err(sqlite_write_error),
                ),
                Err(e) => {
                    let e = format!("SQLite write failed: {e}");
                    commit_group(group, |_| false, |_| Err(Error::Connection(e.clone())))
                }
            },
            Next::Checkpoint(done) => {
                let result = c
                    .and_then(|c| checkpoint(c, write_lock))
                    .map_err(|e| Error::Connection(format!("SQLite checkpoint failed: {e}")));
                let failed = result.is_err();
                let _ = done.send(result);
                failed
            }
        };
        if failed {
            // A connection that failed is opened afresh for the next write.
            conn = None;
        }
    }
}

/// A failed SQLite write as the store reports it: a unique-constraint violation (a task id or
/// nonce stored meanwhile) as [`Error::Conflict`], so that the caller can tell it apart.
fn sqlite_write_error(e: rusqlite::Error) -> Error {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            Error::Conflict {
                what: "certificate request",
                field: "task_id or nonce",
            }
        }
        _ => Error::Connection(format!("SQLite write failed: {e}")),
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

fn apply_sqlite(
    conn: &mut rusqlite::Connection,
    write_lock: &Mutex<()>,
    writes: &[WriteSet],
) -> rusqlite::Result<()> {
    let started = Instant::now();
    let _writers_wait = write_lock.blocking_lock();
    let locked = Instant::now();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for write in writes {
        write.execute_sqlite(&tx)?;
    }
    let written = Instant::now();
    tx.commit()?;
    warn_if_slow(Backend::Sqlite, started, locked, written);
    Ok(())
}

/// Logs a write that took longer than [`SLOW_WRITE`], with where its time went.
fn warn_if_slow(backend: Backend, started: Instant, locked: Instant, written: Instant) {
    if started.elapsed() >= SLOW_WRITE {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::warn!(
            database = backend.as_str(),
            lock_wait_ms = ms(locked - started),
            statements_ms = ms(written - locked),
            commit_ms = ms(written.elapsed()),
            "slow issuance write"
        );
    }
}

fn run_postgres(url: &str, jobs: &mpsc::Receiver<Job>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            // Returning drops `jobs`, so every write reports the failure.
            tracing::error!(error = %e, "could not start the issuance writer's runtime");
            return;
        }
    };
    let mut writer = PgWriter {
        url: url.into(),
        conn: None,
        head: None,
        alone: true,
    };
    let mut queue = Queue::new(jobs);
    while let Some(next) = queue.next() {
        match next {
            Next::Writes(group) => {
                commit_group(group, pg_rolled_back, |writes| {
                    let result = runtime.block_on(writer.apply(writes));
                    if result.is_err() {
                        // Opened afresh for the next attempt.
                        writer.conn = None;
                    }
                    result
                });
            }
            // The write-ahead log is SQLite's.
            Next::Checkpoint(done) => {
                let _ = done.send(Ok(()));
            }
        }
    }
    if let Some(c) = writer.conn {
        let _ = runtime.block_on(c.close());
    }
}

/// An audit chain head: the last entry's sequence number and hash.
type Head = (i64, String);

/// The issuance writer's PostgreSQL connection, and the audit chain's head as its last commit
/// left it.
struct PgWriter {
    url: std::sync::Arc<str>,
    conn: Option<Dedicated>,
    head: Option<Head>,
    /// Whether the last commit that took the locked way found the head where this writer's
    /// previous commit had left it. While other writers keep moving the head (another busy
    /// replica), the one-statement commit would fail each time, and the server would log each
    /// failure: the writer takes the locked way until it finds the head undisturbed again.
    alone: bool,
}

impl PgWriter {
    /// Commits `writes` (one group) and answers when they are written.
    ///
    /// Usually in one round trip: the writer knows where its last commit left the audit head,
    /// chains the group's entries on from there and sends one statement (no transaction around
    /// it) that moves the head from there and inserts every row ([`HeadMove::Swap`]). When
    /// another writer appended meanwhile (another replica, an approval) that statement writes
    /// nothing, and the group goes the locked way: `BEGIN`, the head moved on by all the
    /// entries (which takes the writers' lock), one statement with every row and the head's
    /// new hash, `COMMIT`.
    ///
    /// A one-statement commit that finds the head moved fails with an error the server logs
    /// (a division by zero); after one, the writer takes the locked way until other writers
    /// leave the head alone between two of its commits (`alone`).
    ///
    /// When the connection fails during the one statement, it may have committed: the locked
    /// way then runs on a new connection and first looks for the entries the statement would
    /// have written, so that nothing is written twice.
    async fn apply(&mut self, writes: &[WriteSet]) -> Result<()> {
        if let Some(c) = self.conn.take() {
            self.conn = c.checked().await;
        }
        let c = match &mut self.conn {
            Some(c) => c,
            None => self
                .conn
                .insert(Dedicated::open(self.url.clone(), Role::Writer).await?),
        };
        let started = Instant::now();
        let entries = writes.iter().map(|w| w.audit.len()).sum();
        let mut unsure = None;
        let expected = self.head.take();
        if let Some(from) = expected.as_ref().filter(|_| entries > 0 && self.alone) {
            let (audit, to) = chain_group(writes, from);
            let [from_seq, from_hash] = [Param::from(from.0), Param::from(from.1.clone())];
            let [to_seq, to_hash] = [Param::from(to.0), Param::from(to.1.clone())];
            let swap = HeadMove::Swap {
                from: [&from_seq, &from_hash],
                to: [&to_seq, &to_hash],
            };
            if let [statement] =
                sql::pg_group_statements(&group_inserts(&audit, writes), swap).as_slice()
            {
                match statement.execute(c.conn()).await {
                    Ok(()) => {
                        c.finished();
                        self.head = Some(to);
                        warn_if_slow(Backend::Postgres, started, started, Instant::now());
                        return Ok(());
                    }
                    // The head moved (or a row was refused): nothing was written, and the
                    // locked way below decides.
                    Err(e) if pg_rolled_back(&e) => {}
                    Err(e) if connection_lost(&e) => {
                        c.reopen().await?;
                        unsure = Some(to);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        // The locked way. On any error the caller drops the connection, and the server rolls
        // the transaction back.
        // When the server ended the connection since its last write (a restart, a terminated
        // backend), nothing was written yet: the write starts again on a new one.
        c.retrying(|conn| {
            Box::pin(async move {
                sqlx::query("BEGIN").execute(conn).await?;
                Ok(())
            })
        })
        .await?;
        let head = audit::advance_postgres(c.conn(), entries).await?;
        let locked = Instant::now();
        if let Some(to) = unsure {
            let found: Option<(String,)> =
                sqlx::query_as("SELECT hash FROM audit_log WHERE seq = $1")
                    .bind(to.0)
                    .fetch_optional(c.conn())
                    .await?;
            if found.is_some_and(|(hash,)| hash == to.1) {
                // The lost statement committed: the group is written.
                sqlx::raw_sql("ROLLBACK").execute(c.conn()).await?;
                c.finished();
                return Ok(());
            }
        }
        let (audit, new_head) = match head {
            Some((last_seq, prev_hash)) => {
                let from = (
                    last_seq - i64::try_from(entries).unwrap_or(i64::MAX),
                    prev_hash,
                );
                // (Without a head to compare, as after a failure, nothing says otherwise.)
                self.alone = expected.as_ref().is_none_or(|e| *e == from);
                let (audit, to) = chain_group(writes, &from);
                (audit, Some(to))
            }
            None => (Vec::new(), None),
        };
        let hash = new_head.as_ref().map(|(_, hash)| Param::from(hash.clone()));
        let head_move = hash.as_ref().map_or(HeadMove::Stay, HeadMove::SetHash);
        for statement in sql::pg_group_statements(&group_inserts(&audit, writes), head_move) {
            statement.execute(c.conn()).await?;
        }
        let written = Instant::now();
        sqlx::raw_sql("COMMIT").execute(c.conn()).await?;
        c.finished();
        self.head = new_head;
        warn_if_slow(Backend::Postgres, started, locked, written);
        Ok(())
    }
}

/// The audit entries of `writes` chained on from `head`: their inserts, and the new head.
fn chain_group(writes: &[WriteSet], head: &Head) -> (Vec<Insert>, Head) {
    let (mut seq, mut hash) = (head.0 + 1, head.1.clone());
    let mut inserts = Vec::new();
    for w in writes.iter().filter(|w| !w.audit.is_empty()) {
        let (insert, next) = audit::chain(&w.audit, seq, hash, w.now);
        seq += i64::try_from(w.audit.len()).unwrap_or(i64::MAX);
        hash = next;
        inserts.push(insert);
    }
    (inserts, (seq - 1, hash))
}

/// Every insert of a group: its audit entries', then the write sets' own.
fn group_inserts<'a>(audit: &'a [Insert], writes: &'a [WriteSet]) -> Vec<&'a Insert> {
    audit
        .iter()
        .chain(writes.iter().flat_map(|w| &w.inserts))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write set told apart by its time.
    fn queued(now: i64) -> (Queued, oneshot::Receiver<Result<()>>) {
        let (done, answer) = oneshot::channel();
        let write = WriteSet {
            inserts: Vec::new(),
            audit: Vec::new(),
            now,
        };
        ((write, done), answer)
    }

    fn answers(answers: Vec<oneshot::Receiver<Result<()>>>) -> Vec<bool> {
        answers
            .into_iter()
            .map(|mut a| a.try_recv().unwrap().is_ok())
            .collect()
    }

    #[test]
    fn a_failed_group_is_tried_set_by_set_when_nothing_was_written() {
        let (group, waiting): (Vec<_>, Vec<_>) = [1, 2, 3].map(queued).into_iter().unzip();
        let mut calls = Vec::new();
        let failed = commit_group(
            group,
            |_| true,
            |writes| {
                calls.push(writes.len());
                if writes.iter().any(|w| w.now == 2) {
                    Err(Error::Connection("refused".into()))
                } else {
                    Ok(())
                }
            },
        );
        assert!(failed);
        assert_eq!(calls, [3, 1, 1, 1]);
        assert_eq!(answers(waiting), [true, false, true]);
    }

    #[test]
    fn a_failure_that_may_have_committed_is_not_tried_again() {
        let (group, waiting): (Vec<_>, Vec<_>) = [1, 2].map(queued).into_iter().unzip();
        let mut calls = 0;
        let failed = commit_group(
            group,
            |_| false,
            |_| {
                calls += 1;
                Err(Error::Connection("connection lost during COMMIT".into()))
            },
        );
        assert!(failed);
        assert_eq!(calls, 1);
        assert_eq!(answers(waiting), [false, false]);
    }

    #[test]
    fn a_group_that_commits_answers_everyone() {
        let (group, waiting): (Vec<_>, Vec<_>) = [1, 2].map(queued).into_iter().unzip();
        assert!(!commit_group(group, |_| true, |_| Ok(())));
        assert_eq!(answers(waiting), [true, true]);
    }
}
