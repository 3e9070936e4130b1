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
        self.sql_from(backend, rows, &mut 0)
    }

    /// [`Insert::sql`] with the parameters numbered on from `*n` (which is left at the last).
    fn sql_from(&self, backend: Backend, rows: usize, n: &mut usize) -> String {
        let rows: Vec<String> = (0..rows)
            .map(|_| {
                let cells: Vec<String> = self
                    .cells
                    .iter()
                    .map(|c| match c {
                        Cell::Param => {
                            *n += 1;
                            backend.param(*n)
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
        run(conn, &sql, self.rows.iter().flatten()).await
    }

    /// How many parameters one row takes.
    fn row_params(&self) -> usize {
        self.cells
            .iter()
            .filter(|c| matches!(c, Cell::Param))
            .count()
    }

    /// Whether `other` inserts into the same columns in the same way, so that their rows can
    /// go in one statement.
    fn same_shape(&self, other: &Insert) -> bool {
        self.head == other.head
            && self.tail == other.tail
            && self.cells.len() == other.cells.len()
            && self.cells.iter().zip(other.cells).all(|pair| match pair {
                (Cell::Param, Cell::Param) => true,
                (Cell::Lit(a), Cell::Lit(b)) => a == b,
                _ => false,
            })
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

/// Runs `sql` through sqlx with `params` bound in order.
async fn run<'a>(
    conn: &mut AnyConnection,
    sql: &'a str,
    params: impl Iterator<Item = &'a Param>,
) -> Result<()> {
    let mut q = sqlx::query(sql);
    for p in params {
        q = match p {
            Param::Int(v) => q.bind(*v),
            Param::Text(v) => q.bind(v.as_deref()),
            Param::Blob(v) => q.bind(v.as_slice()),
        };
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// Most parameters one PostgreSQL statement can take (the protocol counts them in 16 bits).
const PG_MAX_PARAMS: usize = u16::MAX as usize;

/// One statement of [`pg_group_statements`]: its text and its parameters in order.
#[derive(Debug)]
pub(crate) struct Statement<'a> {
    /// The SQL text.
    pub sql: String,
    /// The parameters.
    pub params: Vec<&'a Param>,
}

impl Statement<'_> {
    /// Runs the statement in the caller's transaction.
    pub async fn execute(&self, conn: &mut AnyConnection) -> Result<()> {
        run(conn, &self.sql, self.params.iter().copied()).await
    }
}

/// How the statements of [`pg_group_statements`] move the audit chain's head (`audit_head`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum HeadMove<'a> {
    /// Not at all: the group appends no audit entries.
    Stay,
    /// The last statement sets its hash; the transaction has already moved its sequence number
    /// on, which took its lock.
    SetHash(&'a Param),
    /// From `from` to `to` (sequence number, hash) at the start of the one statement, which runs
    /// without a transaction around it: when the head is not at `from` (another writer appended
    /// meanwhile) the statement fails with a division by zero and writes nothing. Only for a
    /// group that fits one statement.
    Swap {
        /// Where the head is expected.
        from: [&'a Param; 2],
        /// Where the group leaves it.
        to: [&'a Param; 2],
    },
}

/// The rows of `inserts` as few PostgreSQL statements as the parameter limit allows, in
/// practice one: inserts of the same shape are merged into one multi-row insert, and the
/// inserts of a statement run together as data-modifying `WITH` clauses. The last statement
/// also moves the audit chain's head as `head` says.
///
/// The clauses of one statement see the same snapshot and run in no set order, so `inserts`
/// must not depend on each other (no foreign key from one to another's rows): the issuance
/// writer's certificates, tasks and audit entries do not. The head's update is the main
/// statement or what it reads, so PostgreSQL runs it before the clauses it does not read: the
/// head's lock is taken first, as every writer must (`PG_WRITE_ORDER`).
pub(crate) fn pg_group_statements<'a>(
    inserts: &[&'a Insert],
    head: HeadMove<'a>,
) -> Vec<Statement<'a>> {
    // Merge inserts of the same shape, keeping the first one of each as the model.
    let mut merged: Vec<(&Insert, Vec<&'a [Param]>)> = Vec::new();
    for insert in inserts.iter().copied() {
        let rows = insert.rows.iter().map(Vec::as_slice);
        match merged.iter_mut().find(|(m, _)| m.same_shape(insert)) {
            Some((_, all)) => all.extend(rows),
            None => merged.push((insert, rows.collect())),
        }
    }
    let head_params = match head {
        HeadMove::Stay => 0,
        HeadMove::SetHash(_) => 1,
        HeadMove::Swap { .. } => 4,
    };
    let mut out = Vec::new();
    let mut clauses: Vec<String> = Vec::new();
    let mut params: Vec<&'a Param> = Vec::new();
    for (model, rows) in merged {
        let per_row = model.row_params().max(1);
        let mut rest = rows.as_slice();
        while !rest.is_empty() {
            let room = PG_MAX_PARAMS.saturating_sub(params.len() + head_params) / per_row;
            if room == 0 && !params.is_empty() {
                out.push(pg_statement(
                    std::mem::take(&mut clauses),
                    std::mem::take(&mut params),
                ));
                continue;
            }
            let (now, later) = rest.split_at(room.clamp(1, rest.len()));
            let mut n = params.len();
            clauses.push(model.sql_from(Backend::Postgres, now.len(), &mut n));
            params.extend(now.iter().copied().flatten());
            rest = later;
        }
    }
    match head {
        HeadMove::Stay => {}
        HeadMove::SetHash(hash) => {
            clauses.push(audit::set_head_hash_sql(params.len() + 1));
            params.push(hash);
        }
        HeadMove::Swap { from, to } => {
            clauses.push(audit::swap_head_sql(params.len() + 1));
            params.extend(to.into_iter().chain(from));
            // Reading the swap's one row (or none) runs it first.
            clauses.push(format!("SELECT 1 / count(*) FROM w{}", clauses.len()));
        }
    }
    if !clauses.is_empty() {
        out.push(pg_statement(clauses, params));
    }
    out
}

/// One statement of `clauses`: all but the last as `WITH` clauses of the last.
fn pg_statement<'a>(mut clauses: Vec<String>, params: Vec<&'a Param>) -> Statement<'a> {
    let last = clauses.pop().unwrap_or_default();
    let sql = if clauses.is_empty() {
        last
    } else {
        let with: Vec<String> = (1..)
            .zip(&clauses)
            .map(|(i, c)| format!("w{i} AS ({c})"))
            .collect();
        format!("WITH {} {last}", with.join(", "))
    };
    Statement { sql, params }
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

    fn insert(head: &'static str, cells: &'static [Cell], rows: usize) -> Insert {
        let per_row = cells.iter().filter(|c| matches!(c, Cell::Param)).count();
        Insert {
            head,
            cells,
            tail: "",
            rows: (0..rows)
                .map(|r| {
                    (0..per_row)
                        .map(|c| Param::from((r * 100 + c) as i64))
                        .collect()
                })
                .collect(),
        }
    }

    /// A statement's parameters: the integers' values, `None` for the others.
    fn int_params(statement: &Statement<'_>) -> Vec<Option<i64>> {
        statement
            .params
            .iter()
            .map(|p| match p {
                Param::Int(v) => *v,
                _ => None,
            })
            .collect()
    }

    #[test]
    fn pg_group_merges_inserts_of_one_shape_and_sets_the_head_last() {
        let a1 = insert(
            "INSERT INTO a (x, y) VALUES",
            &[Cell::Param, Cell::Param],
            2,
        );
        let b = insert(
            "INSERT INTO b (x, k) VALUES",
            &[Cell::Param, Cell::Lit("'k'")],
            1,
        );
        let a2 = insert(
            "INSERT INTO a (x, y) VALUES",
            &[Cell::Param, Cell::Param],
            1,
        );
        // Same columns, another literal: not the same shape.
        let b2 = insert(
            "INSERT INTO b (x, k) VALUES",
            &[Cell::Param, Cell::Lit("'j'")],
            1,
        );
        let head = Param::from("h".to_string());
        let statements = pg_group_statements(&[&a1, &b, &a2, &b2], HeadMove::SetHash(&head));
        assert_eq!(statements.len(), 1);
        assert_eq!(
            statements[0].sql,
            "WITH w1 AS (INSERT INTO a (x, y) VALUES ($1, $2), ($3, $4), ($5, $6) ), \
             w2 AS (INSERT INTO b (x, k) VALUES ($7, 'k') ), \
             w3 AS (INSERT INTO b (x, k) VALUES ($8, 'j') ) \
             UPDATE audit_head SET hash = $9 WHERE id = 1"
        );
        let ints = int_params(&statements[0]);
        // a1's rows, then a2's, then b's, b2's, and the head (not an integer).
        assert_eq!(
            ints,
            [0, 1, 100, 101, 0, 1, 0, 0]
                .map(Some)
                .into_iter()
                .chain([None])
                .collect::<Vec<_>>()
        );
        // Without a head, the last insert is the statement itself.
        let alone = pg_group_statements(&[&b], HeadMove::Stay);
        assert_eq!(alone[0].sql, "INSERT INTO b (x, k) VALUES ($1, 'k') ");
        assert!(pg_group_statements(&[], HeadMove::Stay).is_empty());
    }

    #[test]
    fn pg_group_swapping_the_head_reads_the_swap_first() {
        let a = insert(
            "INSERT INTO a (x, y) VALUES",
            &[Cell::Param, Cell::Param],
            1,
        );
        let [seq, hash, new_seq, new_hash] = [
            Param::from(4i64),
            Param::from("h".to_string()),
            Param::from(5i64),
            Param::from("i".to_string()),
        ];
        let statements = pg_group_statements(
            &[&a],
            HeadMove::Swap {
                from: [&seq, &hash],
                to: [&new_seq, &new_hash],
            },
        );
        assert_eq!(statements.len(), 1);
        assert_eq!(
            statements[0].sql,
            "WITH w1 AS (INSERT INTO a (x, y) VALUES ($1, $2) ), \
             w2 AS (UPDATE audit_head SET seq = $3, hash = $4 WHERE id = 1 AND seq = $5 \
             AND hash = $6 RETURNING 1) \
             SELECT 1 / count(*) FROM w2"
        );
        let ints = int_params(&statements[0]);
        assert_eq!(ints, [Some(0), Some(1), Some(5), None, Some(4), None]);
    }

    #[test]
    fn pg_group_splits_at_the_parameter_limit() {
        const CELLS: &[Cell] = &[Cell::Param; 26];
        // 2,521 rows of 26 parameters: 65,546 parameters, 11 more than one statement takes.
        let big = insert("INSERT INTO c (...) VALUES", CELLS, 2521);
        let head = Param::from("h".to_string());
        let statements = pg_group_statements(&[&big], HeadMove::SetHash(&head));
        assert_eq!(statements.len(), 2);
        // The first takes as many whole rows as fit; the head goes with the last.
        assert_eq!(statements[0].params.len(), 2520 * 26);
        assert_eq!(statements[1].params.len(), 26 + 1);
        assert!(
            statements[1]
                .sql
                .ends_with("UPDATE audit_head SET hash = $27 WHERE id = 1")
        );
        let rows: usize = statements.iter().map(|s| s.params.len()).sum::<usize>() - 1;
        assert_eq!(rows, 2521 * 26);
    }
}
