//! Multi-row inserts, modelled once and run by either driver: sqlx (every backend) or the
//! dedicated issuance writer (`writer`).

use sqlx::AnyConnection;

use crate::{Backend, Result, audit};

/// One parameter value. NULLs keep their type: PostgreSQL refuses a text NULL for a `BIGINT`.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    /// `BIGINT` (booleans are 0/1).
    Int(Option<i64>),
    /// `TEXT`.
    Text(Option<String>),
    /// `BLOB` / `BYTEA`.
    Blob(Vec<u8>),
}

impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}

impl From<Option<i64>> for Param {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}

impl From<String> for Param {
    fn from(v: String) -> Self {
        Self::Text(Some(v))
    }
}

impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Self::Text(Some(v.to_string()))
    }
}

impl From<Option<String>> for Param {
    fn from(v: Option<String>) -> Self {
        Self::Text(v)
    }
}

impl From<Vec<u8>> for Param {
    fn from(v: Vec<u8>) -> Self {
        Self::Blob(v)
    }
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Self::Int(v) => v.to_sql(),
            Self::Text(v) => v.to_sql(),
            Self::Blob(v) => v.to_sql(),
        }
    }
}

/// One cell of a `VALUES` row: the next parameter, or SQL literal text.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cell {
    /// A parameter (the row's next value).
    Param,
    /// Literal SQL, the same in every row.
    Lit(&'static str),
}

/// `INSERT INTO ... VALUES (row), (row)... [tail]` with the rows' parameters.
#[derive(Debug)]
pub(crate) struct Insert {
    /// Up to and including `VALUES`.
    pub head: &'static str,
    /// One row's cells.
    pub cells: &'static [Cell],
    /// What follows the rows (`ON CONFLICT ...`), or empty.
    pub tail: &'static str,
    /// One parameter list per row, as many values as `cells` has [`Cell::Param`]s.
    pub rows: Vec<Vec<Param>>,
}

impl Insert {
    /// The statement text for `rows` rows: parameters numbered in order on PostgreSQL, anonymous
    /// on SQLite (see `Backend::param`).
    pub fn sql(&self, backend: Backend, rows: usize) -> String {
        let mut n = 0;
        let rows: Vec<String> = (0..rows)
            .map(|_| {
                let cells: Vec<String> = self
                    .cells
                    .iter()
                    .map(|c| match c {
                        Cell::Param => {
                            n += 1;
                            backend.param(n)
                        }
                        Cell::Lit(sql) => (*sql).to_string(),
                    })
                    .collect();
                format!("({})", cells.join(", "))
            })
            .collect();
        format!("{} {} {}", self.head, rows.join(", "), self.tail)
    }

    /// Runs the insert as one multi-row statement through sqlx.
    pub async fn execute(&self, conn: &mut AnyConnection, backend: Backend) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let sql = self.sql(backend, self.rows.len());
        let mut q = sqlx::query(&sql);
        for p in self.rows.iter().flatten() {
            q = match p {
                Param::Int(v) => q.bind(*v),
                Param::Text(v) => q.bind(v.as_deref()),
                Param::Blob(v) => q.bind(v.as_slice()),
            };
        }
        q.execute(&mut *conn).await?;
        Ok(())
    }

    /// Runs the insert on a rusqlite connection: one cached single-row statement, executed per
    /// row (no round trips to amortise there).
    pub fn execute_sqlite(&self, conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let mut stmt = conn.prepare_cached(&self.sql(Backend::Sqlite, 1))?;
        for row in &self.rows {
            stmt.execute(rusqlite::params_from_iter(row))?;
        }
        Ok(())
    }
}

/// What one write transaction adds: its inserts, in order, then its audit entries, chained.
#[derive(Debug)]
pub(crate) struct WriteSet {
    /// The inserts.
    pub inserts: Vec<Insert>,
    /// The audit entries.
    pub audit: Vec<audit::PendingEntry>,
    /// The time of the change.
    pub now: i64,
}

impl WriteSet {
    /// Runs the statements in the caller's transaction through sqlx, the audit entries first:
    /// advancing the audit head takes the row lock that orders writers on PostgreSQL
    /// (`PG_WRITE_ORDER`), so a transaction that starts with a write set takes that lock before
    /// any other, as every writer must.
    pub async fn execute(&self, conn: &mut AnyConnection, backend: Backend) -> Result<()> {
        audit::append_many(conn, backend, self.now, &self.audit).await?;
        for insert in &self.inserts {
            insert.execute(conn, backend).await?;
        }
        Ok(())
    }

    /// Runs the statements in the caller's transaction on a rusqlite connection.
    pub fn execute_sqlite(&self, conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        for insert in &self.inserts {
            insert.execute_sqlite(conn)?;
        }
        audit::append_many_sqlite(conn, self.now, &self.audit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_numbers_parameters_across_rows_and_keeps_literals() {
        let insert = Insert {
            head: "INSERT INTO t (a, b, c) VALUES",
            cells: &[Cell::Param, Cell::Lit("'x'"), Cell::Param],
            tail: "ON CONFLICT (a) DO NOTHING",
            rows: vec![],
        };
        assert_eq!(
            insert.sql(Backend::Postgres, 2),
            "INSERT INTO t (a, b, c) VALUES ($1, 'x', $2), ($3, 'x', $4) ON CONFLICT (a) DO NOTHING"
        );
        assert_eq!(
            insert.sql(Backend::Sqlite, 1),
            "INSERT INTO t (a, b, c) VALUES (?, 'x', ?) ON CONFLICT (a) DO NOTHING"
        );
    }
}
