//! The hash-chained audit log.

use ccm_api::audit::{AuditEntry, entry_hash};
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::sql::{Cell, Insert};
use crate::util::{opt_uuid, uuid};
use crate::{Actor, Result, Store};

/// Appends one entry in the caller's transaction. The first statement updates the chain head, so
/// on PostgreSQL its row lock orders concurrent writers; on SQLite the writer lock already does.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn append(
    conn: &mut AnyConnection,
    now: i64,
    actor: &Actor,
    acct_id: Option<Uuid>,
    action: &str,
    object_type: &str,
    object_id: Option<Uuid>,
    details: serde_json::Value,
) -> Result<()> {
    let (seq, prev_hash): (i64, String) = sqlx::query_as(ADVANCE_HEAD)
        .bind(1i64)
        .fetch_one(&mut *conn)
        .await?;
    let entry_id = Uuid::new_v4();
    let hash = entry_hash(
        seq,
        entry_id,
        now,
        actor.user_id,
        &actor.name,
        acct_id,
        action,
        object_type,
        object_id,
        &details,
        &prev_hash,
    );
    sqlx::query(
        "INSERT INTO audit_log (seq, entry_id, at, actor_user_id, actor, acct_id, action, \
         object_type, object_id, details, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(seq)
    .bind(entry_id.to_string())
    .bind(now)
    .bind(actor.user_id.map(|u| u.to_string()))
    .bind(&actor.name)
    .bind(acct_id.map(|u| u.to_string()))
    .bind(action)
    .bind(object_type)
    .bind(object_id.map(|u| u.to_string()))
    .bind(details.to_string())
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    sqlx::query(SET_HEAD_HASH)
        .bind(&hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// An audit entry to append with [`append_many`].
#[derive(Debug)]
pub(crate) struct PendingEntry {
    pub actor: Actor,
    pub acct_id: Option<Uuid>,
    pub action: &'static str,
    pub object_type: &'static str,
    pub object_id: Option<Uuid>,
    pub details: serde_json::Value,
}

/// Moves the chain head on by `$1` entries and returns the new last sequence number and the
/// hash the first new entry chains to.
const ADVANCE_HEAD: &str = "UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash";

/// Sets the chain head's hash to `$1`, that of the last entry appended.
const SET_HEAD_HASH: &str = "UPDATE audit_head SET hash = $1 WHERE id = 1";

/// [`SET_HEAD_HASH`] with the hash as parameter `$n`, for a statement with other parameters.
pub(crate) fn set_head_hash_sql(n: usize) -> String {
    SET_HEAD_HASH.replace("$1", &format!("${n}"))
}

/// Moves the chain head from one place to another when it is there: parameters `$n` and
/// `$n+1` are the new sequence number and hash, `$n+2` and `$n+3` the expected ones. Returns
/// a row when it moved.
pub(crate) fn swap_head_sql(n: usize) -> String {
    format!(
        "UPDATE audit_head SET seq = ${}, hash = ${} WHERE id = 1 AND seq = ${} AND hash = ${} \
         RETURNING 1",
        n,
        n + 1,
        n + 2,
        n + 3
    )
}

/// On PostgreSQL, in a transaction the caller began, moves the chain head on by `count`
/// entries and returns the new last sequence number and the hash the first new entry chains
/// to. With `count` 0 it takes the writers' lock ([`PG_WRITE_ORDER`](crate::PG_WRITE_ORDER))
/// instead, and there is no head to return.
///
/// `BEGIN` goes alone, and the head's update as a prepared statement: sent together as one
/// simple query they would save a round trip, but the update would be planned every time,
/// which cost the server more than the round trip.
///
/// The caller ends the transaction with `COMMIT`, or drops the connection.
pub(crate) async fn advance_postgres(
    conn: &mut AnyConnection,
    count: usize,
) -> Result<Option<(i64, String)>> {
    if count == 0 {
        sqlx::query(crate::PG_WRITE_ORDER)
            .execute(&mut *conn)
            .await?;
        return Ok(None);
    }
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    let head = sqlx::query_as(ADVANCE_HEAD)
        .bind(count)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Some(head))
}

/// The rows of `entries`, numbered from `first_seq` and chained from `prev_hash`; and the hash of
/// the last one, the chain's new head.
pub(crate) fn chain(
    entries: &[PendingEntry],
    first_seq: i64,
    mut prev_hash: String,
    now: i64,
) -> (Insert, String) {
    let rows = (0i64..)
        .zip(entries)
        .map(|(i, e)| {
            let seq = first_seq + i;
            let entry_id = Uuid::new_v4();
            let hash = entry_hash(
                seq,
                entry_id,
                now,
                e.actor.user_id,
                &e.actor.name,
                e.acct_id,
                e.action,
                e.object_type,
                e.object_id,
                &e.details,
                &prev_hash,
            );
            vec![
                seq.into(),
                entry_id.to_string().into(),
                now.into(),
                e.actor.user_id.map(|u| u.to_string()).into(),
                e.actor.name.as_str().into(),
                e.acct_id.map(|u| u.to_string()).into(),
                e.action.into(),
                e.object_type.into(),
                e.object_id.map(|u| u.to_string()).into(),
                e.details.to_string().into(),
                std::mem::replace(&mut prev_hash, hash).into(),
                // The entry's own hash, now in `prev_hash` for the next one.
                prev_hash.clone().into(),
            ]
        })
        .collect();
    let insert = Insert {
        head: "INSERT INTO audit_log (seq, entry_id, at, actor_user_id, actor, acct_id, action, \
               object_type, object_id, details, prev_hash, hash) VALUES",
        cells: &[Cell::Param; 12],
        tail: "",
        rows,
    };
    (insert, prev_hash)
}

/// Appends several entries in the caller's transaction: the chain head is read and written once,
/// the entries go in with one multi-row insert.
pub(crate) async fn append_many(
    conn: &mut AnyConnection,
    backend: crate::Backend,
    now: i64,
    entries: &[PendingEntry],
) -> Result<()> {
    let Ok(count) = i64::try_from(entries.len()) else {
        return Ok(());
    };
    if count == 0 {
        return Ok(());
    }
    let (last_seq, prev_hash): (i64, String) = sqlx::query_as(ADVANCE_HEAD)
        .bind(count)
        .fetch_one(&mut *conn)
        .await?;
    let (insert, head) = chain(entries, last_seq - count + 1, prev_hash, now);
    insert.execute(conn, backend).await?;
    sqlx::query(SET_HEAD_HASH)
        .bind(&head)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// [`append_many`] on a rusqlite connection (the dedicated SQLite writer).
pub(crate) fn append_many_sqlite(
    conn: &rusqlite::Connection,
    now: i64,
    entries: &[PendingEntry],
) -> rusqlite::Result<()> {
    let Ok(count) = i64::try_from(entries.len()) else {
        return Ok(());
    };
    if count == 0 {
        return Ok(());
    }
    let (last_seq, prev_hash): (i64, String) = conn
        .prepare_cached(ADVANCE_HEAD)?
        .query_row([count], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (insert, head) = chain(entries, last_seq - count + 1, prev_hash, now);
    insert.execute_sqlite(conn)?;
    conn.prepare_cached(SET_HEAD_HASH)?.execute([head])?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Row {
    seq: i64,
    entry_id: String,
    at: i64,
    actor_user_id: Option<String>,
    actor: String,
    acct_id: Option<String>,
    action: String,
    object_type: String,
    object_id: Option<String>,
    details: String,
    prev_hash: String,
    hash: String,
}

impl Row {
    fn into_entry(self) -> Result<AuditEntry> {
        Ok(AuditEntry {
            seq: self.seq,
            entry_id: uuid("audit_log.entry_id", &self.entry_id)?,
            at: self.at,
            actor_user_id: opt_uuid("audit_log.actor_user_id", self.actor_user_id.as_deref())?,
            actor: self.actor,
            acct_id: opt_uuid("audit_log.acct_id", self.acct_id.as_deref())?,
            action: self.action,
            object_type: self.object_type,
            object_id: opt_uuid("audit_log.object_id", self.object_id.as_deref())?,
            details: crate::util::json("audit_log.details", &self.details)?,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

impl Store {
    /// Lists audit entries with `seq > after` in ascending order, at most `limit`; only those of
    /// `acct_id` when given.
    pub async fn list_audit(
        &self,
        acct_id: Option<Uuid>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        const COLS: &str = "seq, entry_id, at, actor_user_id, actor, acct_id, action, object_type, \
                            object_id, details, prev_hash, hash";
        let rows: Vec<Row> = match acct_id {
            Some(a) => sqlx::query_as(&format!(
                "SELECT {COLS} FROM audit_log WHERE acct_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ))
            .bind(a.to_string())
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
            None => {
                sqlx::query_as(&format!(
                    "SELECT {COLS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
                ))
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.into_iter().map(Row::into_entry).collect()
    }

    /// Lists audit entries newest first: those with `seq < before` (all when `None`), at most
    /// `limit` (1-1000); only those of `acct_id` when given. For paging back through the log.
    pub async fn list_audit_before(
        &self,
        acct_id: Option<Uuid>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        const COLS: &str = "seq, entry_id, at, actor_user_id, actor, acct_id, action, object_type, \
                            object_id, details, prev_hash, hash";
        let before = before.unwrap_or(i64::MAX);
        let limit = limit.clamp(1, 1000);
        let rows: Vec<Row> = match acct_id {
            Some(a) => sqlx::query_as(&format!(
                "SELECT {COLS} FROM audit_log WHERE acct_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
            ))
            .bind(a.to_string())
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
            None => sqlx::query_as(&format!(
                "SELECT {COLS} FROM audit_log WHERE seq < $1 ORDER BY seq DESC LIMIT $2"
            ))
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
        };
        rows.into_iter().map(Row::into_entry).collect()
    }
}
