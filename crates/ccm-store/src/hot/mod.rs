//! The store's hot paths: where issuance leaves sqlx's pool for connections of its own.
//!
//! Everything else in the store runs on the pool. Certificate issuance does not, because a
//! benchmark showed the pool's hand-overs and pings costing more than the queries on a machine
//! whose cores are busy checking signatures. Each path names the benchmark that justifies it
//! (`cargo bench -p ccm-agent --bench issuance -- --db sqlite|postgres`; the figures are in
//! BENCHMARKS.md, "Attested certificate issuance"):
//!
//! - `writer`: issuance batches commit on a thread of its own with one connection (rusqlite
//!   on SQLite, sqlx on a single-threaded runtime on PostgreSQL). Justified by the second
//!   session's row "issuance batches run on a dedicated SQLite writer thread", the fourth's "the
//!   issuance writer thread also serves PostgreSQL" and the sixth's "one-statement commits".
//! - `sqlite_reads`: the point reads of every node-agent batch run in place on read-only
//!   rusqlite connections. Justified by the fourth session's row "SQLite: the three reads of
//!   each node-agent batch ... run in place".
//! - `pg_reads`: the same reads on PostgreSQL connections without the pool's ping after every
//!   query. Justified by the fifth session's row "the three reads of each node-agent batch on
//!   up to 8 connections of their own".
//! - `pg_conn`: the connection type both PostgreSQL paths use (idle check, reconnect, session
//!   settings); it exists for them and goes with them.
//!
//! [`HotPaths`] holds what one store runs; the store's query modules reach the reads through
//! [`HotPaths::read`] and the writer through [`HotPaths::writer`]. The tests
//! of these paths are `tests/hot_paths.rs`, each run on SQLite and on PostgreSQL.

mod pg_conn;
mod pg_reads;
mod sqlite_reads;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

pub(crate) use sqlite_reads::Columns;
pub(crate) use writer::Writer;

use crate::Result;

/// The future of a read on a borrowed connection (see [`HotPaths::read`]).
pub(crate) type ReadFuture<'c, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send + 'c>>;

/// The hot paths of one store; cheap to clone (the clones share them).
#[derive(Debug, Clone, Default)]
pub(crate) struct HotPaths {
    /// Runs issuance batches; `None` for an in-memory SQLite database.
    writer: Option<Arc<writer::Writer>>,
    /// Runs the issuance path's point reads on SQLite files.
    sqlite_reads: Option<Arc<sqlite_reads::SqliteReads>>,
    /// Runs the issuance path's point reads on PostgreSQL.
    pg_reads: Option<Arc<pg_reads::PgReads>>,
}

impl HotPaths {
    /// The hot paths of an SQLite database: none for an in-memory one (`file` is `None`), whose
    /// data only the pool's connections share.
    pub(crate) fn sqlite(file: Option<PathBuf>, write_lock: Arc<Mutex<()>>) -> Self {
        let Some(path) = file else {
            return Self::default();
        };
        Self {
            sqlite_reads: Some(Arc::new(sqlite_reads::SqliteReads::new(path.clone()))),
            writer: Some(Arc::new(writer::Writer::new(writer::Target::Sqlite {
                path,
                write_lock,
            }))),
            pg_reads: None,
        }
    }

    /// The hot paths of the PostgreSQL database at `url`; a read waits up to `acquire_timeout`
    /// for a connection.
    pub(crate) fn postgres(url: &str, acquire_timeout: Duration) -> Self {
        Self {
            writer: Some(Arc::new(writer::Writer::new(writer::Target::Postgres {
                url: url.to_string(),
            }))),
            sqlite_reads: None,
            pg_reads: Some(Arc::new(pg_reads::PgReads::new(
                url.to_string(),
                acquire_timeout,
            ))),
        }
    }

    /// The issuance writer, when the database has one.
    pub(crate) fn writer(&self) -> Option<&Arc<writer::Writer>> {
        self.writer.as_ref()
    }

    /// Runs a point read of the issuance path: `sqlite` on an SQLite file's read connection,
    /// else `sqlx` on a PostgreSQL read connection or, for an in-memory SQLite database, on one
    /// of `pool`'s.
    ///
    /// `sqlx` may run twice (a PostgreSQL connection the server ended is replaced and the read
    /// asked again), so it owns what its future needs; a boxed future keeps the callers'
    /// futures `Send` where an async closure's would not be provably so.
    pub(crate) async fn read<T>(
        &self,
        pool: &sqlx::AnyPool,
        sqlite: impl FnOnce(&rusqlite::Connection) -> Result<T>,
        sqlx: impl Fn(&mut sqlx::AnyConnection) -> ReadFuture<'_, T>,
    ) -> Result<T> {
        if let Some(reads) = &self.sqlite_reads {
            return reads.read(sqlite);
        }
        let Some(reads) = &self.pg_reads else {
            return sqlx(&mut *pool.acquire().await?).await;
        };
        let mut c = reads.get().await?;
        let value = c.conn().retrying(sqlx).await?;
        c.done();
        Ok(value)
    }

    /// Stops the writer once the writes handed to it are done and closes the read
    /// connections; later hot reads and writes fail.
    pub(crate) fn close(&self) {
        if let Some(writer) = &self.writer {
            writer.close();
        }
        if let Some(reads) = &self.sqlite_reads {
            reads.close();
        }
        if let Some(reads) = &self.pg_reads {
            reads.close();
        }
    }
}
