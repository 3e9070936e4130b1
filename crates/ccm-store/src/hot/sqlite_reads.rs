//! Point reads of the issuance hot path on an SQLite file, run on the calling thread.
//!
//! Through sqlx, a query is a hand-over to the connection's worker thread and back: the worker
//! is woken, the answer crosses a channel, and the waiting task is scheduled again on a runtime
//! whose cores are busy checking signatures. For the three reads of every node-agent batch
//! (the node certificate and its node, the task ids already used, the image and its app) that
//! hand-over cost more than the index lookups themselves. Here they run on a rusqlite
//! connection of a small idle list, on the thread that asks (figures: BENCHMARKS.md, attested
//! certificate issuance).
//!
//! Running them in place is sound because a reader does not wait for writers in WAL mode (only
//! for the recovery of a log left by a crash, under `busy_timeout`): a read transaction sees
//! the last commit and does not take the write lock. The statements are the same text the sqlx
//! path runs on PostgreSQL (cached per connection); the connections have the store's settings
//! (`SQLITE_PRAGMAS`) and are `query_only`.

use std::path::PathBuf;

use crate::{Error, Result};

/// Idle connections kept for the next reads; more are opened when more threads read at once.
const MAX_IDLE: usize = 8;

/// The read connections of an SQLite file.
#[derive(Debug)]
pub(crate) struct SqliteReads {
    path: PathBuf,
    idle: std::sync::Mutex<Option<Vec<rusqlite::Connection>>>,
}

impl SqliteReads {
    /// Reads of the database file at `path` (which exists: the pool created it).
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: std::sync::Mutex::new(Some(Vec::new())),
        }
    }

    /// Runs `read` on an idle connection (or a new one); a connection whose read failed is
    /// closed rather than reused.
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> Result<T>,
    ) -> Result<T> {
        let taken = match self.idle.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(idle) => idle.pop(),
            None => return Err(Error::Connection("the store is closed".into())),
        };
        let conn = match taken {
            Some(c) => c,
            None => open(&self.path)?,
        };
        let value = read(&conn)?;
        if let Some(idle) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
            && idle.len() < MAX_IDLE
        {
            idle.push(conn);
        }
        Ok(value)
    }

    /// Closes the idle connections; later reads fail.
    pub(crate) fn close(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// A value both paths decode: from a rusqlite column and from an sqlx `Any` column.
pub(crate) trait Column:
    rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>
{
}

impl<T> Column for T where
    T: rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>
{
}

/// A result row of either path, read by column name, so that a row type is decoded once.
pub(crate) trait Columns {
    /// Column `name` as `T`.
    fn get<T: Column>(&self, name: &str) -> Result<T>;
}

impl Columns for rusqlite::Row<'_> {
    fn get<T: Column>(&self, name: &str) -> Result<T> {
        Ok(rusqlite::Row::get(self, name)?)
    }
}

impl Columns for sqlx::any::AnyRow {
    fn get<T: Column>(&self, name: &str) -> Result<T> {
        Ok(sqlx::Row::try_get(self, name)?)
    }
}

fn open(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = super::writer::open(path)?;
    conn.execute_batch("PRAGMA query_only = ON")?;
    // `issuance_lookup` has one statement per batch size.
    conn.set_prepared_statement_cache_capacity(2 * crate::MAX_ISSUANCE_BATCH);
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_share_connections_and_refuse_writes_and_closing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (7)",
            )
            .unwrap();
        }
        let reads = SqliteReads::new(path);
        let v: i64 = reads
            .read(|c| Ok(c.query_row("SELECT v FROM t", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(v, 7);
        assert_eq!(reads.idle.lock().unwrap().as_ref().unwrap().len(), 1);
        // query_only: a write through a read connection is refused and the connection dropped.
        let err = reads
            .read(|c| Ok(c.execute("INSERT INTO t VALUES (8)", [])?))
            .unwrap_err();
        assert!(err.to_string().contains("readonly"), "{err}");
        assert_eq!(reads.idle.lock().unwrap().as_ref().unwrap().len(), 0);
        reads.close();
        let err = reads.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?));
        assert!(err.unwrap_err().to_string().contains("closed"));
    }
}
