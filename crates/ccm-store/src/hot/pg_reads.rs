//! Connections of their own for the point reads of the issuance hot path on PostgreSQL.
//!
//! Through the pool, each of the three reads of every node-agent batch (the node certificate
//! and its node, the task ids already used, the image and its app) is followed by a second
//! round trip: sqlx pings a connection when it goes back to the pool, as a query cut short may
//! have left it mid-answer. Under issuance load that ping woke a server process and a runtime
//! task for every read. Here a connection goes back to the idle list only after its query
//! finished; one whose query failed, or was cancelled, is closed instead. They are checked
//! like the writer's (`pg_conn`): pinged after being idle long, and a read that finds one the
//! server ended is asked again on a new connection (`Store::hot_read`: reads can be repeated).
//!
//! What this saves per issuance is measured in BENCHMARKS.md (attested certificate issuance).
//!
//! At most [`MAX_CONNECTIONS`] are open at once; a read waits for one like a pool acquire.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use super::pg_conn::{Dedicated, Role};
use crate::{Error, Result};

/// Most connections open at once (and kept idle).
pub(crate) const MAX_CONNECTIONS: usize = 8;

/// The read connections of a PostgreSQL database.
#[derive(Debug)]
pub(crate) struct PgReads {
    url: Arc<str>,
    /// How long a read waits for a connection.
    acquire_timeout: Duration,
    permits: Semaphore,
    idle: std::sync::Mutex<Vec<Dedicated>>,
    closed: AtomicBool,
}

/// A connection taken for one read: [`PgRead::done`] gives it back, dropping it closes it.
pub(crate) struct PgRead<'a> {
    reads: &'a PgReads,
    conn: Dedicated,
    _permit: SemaphorePermit<'a>,
}

impl PgReads {
    /// Reads of the database at `url`.
    pub(crate) fn new(url: String, acquire_timeout: Duration) -> Self {
        Self {
            url: url.into(),
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
            let conn = match taken {
                Some(c) => match c.checked().await {
                    Some(c) => c,
                    None => continue,
                },
                None => Dedicated::open(self.url.clone(), Role::Reads).await?,
            };
            return Ok(PgRead {
                reads: self,
                conn,
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
    pub(crate) fn conn(&mut self) -> &mut Dedicated {
        &mut self.conn
    }

    /// Gives the connection back for the next read, its query having finished.
    pub(crate) fn done(self) {
        let PgRead {
            reads, mut conn, ..
        } = self;
        if !reads.closed.load(Ordering::Acquire) {
            conn.finished();
            reads
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
        }
    }
}
