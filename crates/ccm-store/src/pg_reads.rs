//! Connections of their own for the point reads of the issuance hot path on PostgreSQL.
//!
//! Through the pool, each of the three reads of every node-agent batch (the node certificate
//! and its node, the task ids already used, the image and its app) is followed by a second
//! round trip: sqlx pings a connection when it goes back to the pool, as a query cut short may
//! have left it mid-answer. Under issuance load that ping woke a server process and a runtime
//! task for every read. Here a connection goes back to the idle list only after its query
//! finished; one whose query failed, or was cancelled, is closed instead. A connection idle for
//! [`PG_IDLE_CHECK`] is pinged before use; one the server closed more recently (a restart, a
//! terminated backend) fails its read, which is then asked again on a new connection
//! (`Store::hot_read`: reads can be repeated).
//!
//! In the issuance bench (32 clients), this took ~25 µs per issuance off the server's CPU and
//! ~30 µs off the manager's, for 5% more issuances per second.
//!
//! At most [`MAX_CONNECTIONS`] are open at once; a read waits for one like a pool acquire.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::{AnyConnection, Connection as _};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::{Error, PG_IDLE_CHECK, Result};

/// Most connections open at once (and kept idle).
pub(crate) const MAX_CONNECTIONS: usize = 8;

/// The read connections of a PostgreSQL database.
#[derive(Debug)]
pub(crate) struct PgReads {
    url: String,
    /// How long a read waits for a connection.
    acquire_timeout: Duration,
    permits: Semaphore,
    idle: std::sync::Mutex<Vec<(AnyConnection, Instant)>>,
    closed: AtomicBool,
}

/// A connection taken for one read: [`PgRead::done`] gives it back, dropping it closes it.
pub(crate) struct PgRead<'a> {
    reads: &'a PgReads,
    conn: AnyConnection,
    /// Whether `conn` served reads before (and the server may have closed it since).
    reused: bool,
    _permit: SemaphorePermit<'a>,
}

impl PgReads {
    /// Reads of the database at `url`.
    pub(crate) fn new(url: String, acquire_timeout: Duration) -> Self {
        Self {
            url,
            acquire_timeout,
            permits: Semaphore::new(MAX_CONNECTIONS),
            idle: std::sync::Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        }
    }

    /// An idle connection, checked first when it was idle long, or a new one.
    pub(crate) async fn get(&self) -> Result<PgRead<'_>> {
        let closed = || Error::Connection("the store is closed".into());
        if self.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        let permit = tokio::time::timeout(self.acquire_timeout, self.permits.acquire())
            .await
            .map_err(|_| {
                Error::Connection(format!(
                    "no database connection for a read within {} s",
                    self.acquire_timeout.as_secs()
                ))
            })?
            .map_err(|_| closed())?;
        loop {
            let taken = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let (conn, reused) = match taken {
                Some((mut c, idle_since)) => {
                    if idle_since.elapsed() >= PG_IDLE_CHECK && c.ping().await.is_err() {
                        continue;
                    }
                    (c, true)
                }
                None => (connect(&self.url).await?, false),
            };
            return Ok(PgRead {
                reads: self,
                conn,
                reused,
                _permit: permit,
            });
        }
    }

    /// Closes the idle connections; later reads fail.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.permits.close();
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl PgRead<'_> {
    /// The connection.
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }

    /// Whether the connection served reads before.
    pub(crate) fn reused(&self) -> bool {
        self.reused
    }

    /// Replaces the connection with a new one.
    pub(crate) async fn reconnect(&mut self) -> Result<()> {
        self.conn = connect(&self.reads.url).await?;
        self.reused = false;
        Ok(())
    }

    /// Gives the connection back for the next read, its query having finished.
    pub(crate) fn done(self) {
        let PgRead { reads, conn, .. } = self;
        if !reads.closed.load(Ordering::Acquire) {
            reads
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((conn, Instant::now()));
        }
    }
}

/// A read connection. Its reads are lookups by key, and it never plans a sequential scan for
/// them: a prepared statement's generic plan, made while the tables were small (a new
/// database), scanned `certificates` whole for each batch once it held 20,000 rows (1.6 ms
/// instead of ~40 µs a call), until the next `ANALYZE` replaced it.
async fn connect(url: &str) -> Result<AnyConnection> {
    let mut c = AnyConnection::connect(url).await?;
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut c)
        .await?;
    Ok(c)
}

/// Whether `e` says the connection is gone, rather than that the server refused a statement:
/// an I/O or protocol failure, or the server ending the session (SQLSTATE class 08, connection
/// exception, or 57P, operator intervention such as a terminated backend or a shutdown).
pub(crate) fn connection_lost(e: &Error) -> bool {
    match e {
        Error::Database(sqlx::Error::Io(_) | sqlx::Error::Protocol(_)) => true,
        Error::Database(sqlx::Error::Database(db)) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}
