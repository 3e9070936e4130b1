//! The store's own PostgreSQL connections, beside sqlx's pool: the issuance writer's
//! (`writer`) and the hot-path reads' (`pg_reads`).
//!
//! They skip the pool's ping before and after each use, so the store checks them itself: one
//! idle for [`PG_IDLE_CHECK`] is pinged before it is used again, and a statement that finds a
//! connection the server ended more recently (a restart, a terminated backend) is asked again
//! on a new one when asking twice is harmless ([`Dedicated::retrying`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{AnyConnection, Connection as _};

use super::ReadFuture;
use crate::{Error, Result};

/// A dedicated connection unused for this long is pinged before use: the server or a firewall
/// may have closed it meanwhile.
const PG_IDLE_CHECK: Duration = Duration::from_secs(10);

/// What a dedicated connection serves, which decides its session settings.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Role {
    /// The issuance writer. Its statements are inserts and key updates, whose plans do not
    /// depend on the values: planning them for each execution (PostgreSQL's default for a
    /// prepared statement's first five, and for any whose generic plan it estimates dearer)
    /// is wasted, so they use generic plans.
    Writer,
    /// The hot-path reads. They are lookups by key and never plan a sequential scan: a
    /// prepared statement's generic plan, made while the tables were small (a new database),
    /// scanned `certificates` whole for each batch once it grew, until the next `ANALYZE`
    /// replaced it. Forcing generic or custom plans instead cost more server CPU (BENCHMARKS.md).
    Reads,
}

impl Role {
    fn setting(self) -> &'static str {
        match self {
            Role::Writer => "SET plan_cache_mode = force_generic_plan",
            Role::Reads => "SET enable_seqscan = off",
        }
    }
}

/// A connection of the store's own, with when its last statement finished.
#[derive(Debug)]
pub(crate) struct Dedicated {
    conn: AnyConnection,
    url: Arc<str>,
    role: Role,
    idle_since: Instant,
    /// Whether a statement finished on it before (and the server may have ended it since).
    reused: bool,
}

impl Dedicated {
    /// Opens a connection to `url` for `role`.
    pub(crate) async fn open(url: Arc<str>, role: Role) -> Result<Self> {
        Ok(Self {
            conn: connect(&url, role).await?,
            url,
            role,
            idle_since: Instant::now(),
            reused: false,
        })
    }

    /// The connection when it may still be used: one idle for [`PG_IDLE_CHECK`] is pinged
    /// first, and is `None` when that fails.
    pub(crate) async fn checked(mut self) -> Option<Self> {
        if self.idle_since.elapsed() >= PG_IDLE_CHECK && self.conn.ping().await.is_err() {
            return None;
        }
        Some(self)
    }

    /// The connection.
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }

    /// Notes that the connection's statements finished, for the idle check.
    pub(crate) fn finished(&mut self) {
        self.idle_since = Instant::now();
        self.reused = true;
    }

    /// Closes the connection.
    pub(crate) async fn close(self) -> Result<()> {
        self.conn.close().await?;
        Ok(())
    }

    /// Replaces the connection with a new one.
    pub(crate) async fn reopen(&mut self) -> Result<()> {
        self.conn = connect(&self.url, self.role).await?;
        self.reused = false;
        Ok(())
    }

    /// Runs `op`; when it fails because the server ended this reused connection since its
    /// last statement, runs it again on a new connection. Only for what may be asked twice:
    /// a read, or the first statement of a transaction.
    pub(crate) async fn retrying<T>(
        &mut self,
        op: impl Fn(&mut AnyConnection) -> ReadFuture<'_, T>,
    ) -> Result<T> {
        match op(&mut self.conn).await {
            Err(e) if self.reused && connection_lost(&e) => {
                self.reopen().await?;
                op(&mut self.conn).await
            }
            other => other,
        }
    }
}

async fn connect(url: &str, role: Role) -> Result<AnyConnection> {
    let mut c = AnyConnection::connect(url).await?;
    sqlx::query(role.setting()).execute(&mut c).await?;
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
