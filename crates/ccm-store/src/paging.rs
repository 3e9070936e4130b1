//! Bounded list pages: a limit, a start (an offset or the opaque cursor of the page before),
//! the counts of the list, and the cursor of the next page.
//!
//! Every list is ordered by a key and the row id (unique), so a cursor — the key and id of the
//! last row a page returned — names a position that stays put while rows are added or removed
//! elsewhere, and the next page is an index range scan whose cost does not grow with the
//! position (keyset paging). Offsets are served too, as the reference API's clients send them;
//! their cost grows with the offset.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, FromRow};

use crate::counts::{self, Counted};
use crate::{Error, Result};

/// The largest page a list returns.
pub const MAX_LIMIT: i64 = 1000;

/// Where a page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// After skipping this many rows (0: the first page).
    Offset(i64),
    /// After the row a previous page's `next` cursor names.
    After(String),
}

/// Which page of a list to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many rows (clamped to 1..=[`MAX_LIMIT`]).
    pub limit: i64,
    /// Where the page starts.
    pub start: Start,
}

impl PageRequest {
    /// The first `limit` rows.
    pub fn first(limit: i64) -> Self {
        Self {
            limit,
            start: Start::Offset(0),
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The rows of the page, in the list's order.
    pub items: Vec<T>,
    /// Rows in the list's scope (an account's, a user's), before filters.
    pub total_count: i64,
    /// Rows matching the filters.
    pub filtered_count: i64,
    /// The position of the first item in the filtered list, when the page was asked for by
    /// offset (a cursor names a row, not a position).
    pub offset: Option<i64>,
    /// The page size used.
    pub limit: i64,
    /// The cursor of the next page; `None` on the last page.
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// The same page (counts, cursor) holding `items` instead, converted from its own.
    pub fn with_items<U>(self, items: Vec<U>) -> Page<U> {
        Page {
            items,
            total_count: self.total_count,
            filtered_count: self.filtered_count,
            offset: self.offset,
            limit: self.limit,
            next: self.next,
        }
    }

    /// The same page with each item converted.
    pub fn try_map<U, E>(
        mut self,
        f: impl FnMut(T) -> std::result::Result<U, E>,
    ) -> std::result::Result<Page<U>, E> {
        let items = std::mem::take(&mut self.items);
        let items = items
            .into_iter()
            .map(f)
            .collect::<std::result::Result<_, E>>()?;
        Ok(self.with_items(items))
    }
}

/// A sort key value, as a cursor carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Key {
    /// An integer column (timestamps).
    Int(i64),
    /// A text column (names).
    Text(String),
}

/// What a cursor encodes: the list it belongs to and the last row's key and id.
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    /// The list (so that one list's cursor is not taken for another's).
    l: String,
    k: Key,
    i: String,
}

fn encode(list: &str, key: Key, id: String) -> String {
    let c = Cursor {
        l: list.to_string(),
        k: key,
        i: id,
    };
    // A struct of strings and integers always serializes.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap_or_default())
}

fn decode(list: &str, text_key: bool, cursor: &str) -> Result<(Key, String)> {
    let bad = || Error::InvalidCursor;
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.as_bytes())
        .map_err(|_| bad())?;
    let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let key_fits = matches!(
        (&c.k, text_key),
        (Key::Text(_), true) | (Key::Int(_), false)
    );
    if c.l != list || !key_fits || c.i.len() > 64 {
        return Err(bad());
    }
    Ok((c.k, c.i))
}

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

impl From<Key> for Bind {
    fn from(k: Key) -> Self {
        match k {
            Key::Int(i) => Bind::Int(i),
            Key::Text(t) => Bind::Text(t),
        }
    }
}

/// How a list is read: its tables, order and conditions. The conditions are equalities on
/// columns the store names (never on caller text), their values bound.
pub(crate) struct ListSpec {
    /// Cursor tag.
    pub name: &'static str,
    /// `SELECT columns FROM tables` of the page.
    pub select: String,
    /// `FROM tables` for the counts (without the joins only the page needs).
    pub count_from: &'static str,
    /// The sort key column.
    pub key: &'static str,
    /// Whether the key is a text column (else an integer).
    pub text_key: bool,
    /// The unique id column, the tie-break.
    pub id: &'static str,
    /// Descending order (newest first) when true.
    pub desc: bool,
    /// The list's scope (`column = value`): counted as `total_count`.
    pub scope: Vec<(&'static str, Bind)>,
    /// Filters on top of the scope: counted as `filtered_count`.
    pub filters: Vec<(&'static str, Bind)>,
    /// The counts the database keeps for this list ([`counts`]): read instead of counting rows
    /// when the scope is the counter's (one condition, or none for a whole-table counter) and
    /// the filters are none or one counted facet (matched by column name, without a table
    /// alias). Other shapes are counted.
    pub counts: Option<&'static Counted>,
}

/// `scope` narrowed to one account when `only` names one.
pub(crate) fn only_account(
    mut scope: Vec<(&'static str, Bind)>,
    column: &'static str,
    only: Option<uuid::Uuid>,
) -> Vec<(&'static str, Bind)> {
    if let Some(acct) = only {
        scope.push((column, Bind::Text(acct.to_string())));
    }
    scope
}

fn push(conds: &mut Vec<String>, binds: &mut Vec<Bind>, column: &str, value: Bind) {
    binds.push(value);
    conds.push(format!("{column} = ${}", binds.len()));
}

fn where_clause(conds: &[String]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b {
                Bind::Text(t) => q.bind(t.clone()),
                Bind::Int(i) => q.bind(*i),
            };
        }
        q
    }};
}

impl ListSpec {
    async fn count(&self, pool: &AnyPool, with_filters: bool) -> Result<i64> {
        if let Some((counted, scope, facet)) = self.kept_count(with_filters) {
            return counts::read(pool, counted, &scope, facet.as_deref()).await;
        }
        let (mut conds, mut binds) = (Vec::new(), Vec::new());
        let filters = if with_filters { &self.filters[..] } else { &[] };
        for (c, v) in self.scope.iter().chain(filters) {
            push(&mut conds, &mut binds, c, v.clone());
        }
        let sql = format!(
            "SELECT COUNT(*) FROM {}{}",
            self.count_from,
            where_clause(&conds)
        );
        let q = bind_all!(sqlx::query_scalar::<_, i64>(&sql), &binds);
        Ok(q.fetch_one(pool).await?)
    }

    /// The kept count that answers this count, if one does: its list, scope value and facet.
    fn kept_count(&self, with_filters: bool) -> Option<(&'static Counted, String, Option<String>)> {
        let counted = self.counts?;
        let scope = match (counted.scope, self.scope.as_slice()) {
            (None, []) => String::new(),
            (Some(_), [(_, Bind::Text(v))]) => v.clone(),
            _ => return None,
        };
        let filters = if with_filters { &self.filters[..] } else { &[] };
        let facet = match filters {
            [] => None,
            [(column, Bind::Text(v))] => {
                let column = column.rsplit('.').next().unwrap_or(column);
                if !counted.facets.contains(&column) {
                    return None;
                }
                Some(counts::facet(column, v))
            }
            _ => return None,
        };
        Some((counted, scope, facet))
    }

    async fn rows<R>(&self, pool: &AnyPool, limit: i64, start: &Start) -> Result<Vec<R>>
    where
        R: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
    {
        let (mut conds, mut binds) = (Vec::new(), Vec::new());
        for (c, v) in self.scope.iter().chain(&self.filters) {
            push(&mut conds, &mut binds, c, v.clone());
        }
        let mut offset = 0;
        match start {
            Start::Offset(o) => offset = (*o).max(0),
            Start::After(cursor) => {
                let (key, id) = decode(self.name, self.text_key, cursor)?;
                binds.push(key.into());
                binds.push(Bind::Text(id));
                let op = if self.desc { "<" } else { ">" };
                conds.push(format!(
                    "({}, {}) {op} (${}, ${})",
                    self.key,
                    self.id,
                    binds.len() - 1,
                    binds.len()
                ));
            }
        }
        let dir = if self.desc { "DESC" } else { "ASC" };
        let order = format!("ORDER BY {} {dir}, {} {dir}", self.key, self.id);
        let window = format!("{order} LIMIT {} OFFSET {offset}", limit + 1);
        let sql = if offset > 0 && self.key_in_count_from() {
            // Skip the offset's rows in the (covering) index of the key and id alone, then
            // read whole rows only for the page.
            format!(
                "{} WHERE {} IN (SELECT {} FROM {}{} {window}) {order}",
                self.select,
                self.id,
                self.id,
                self.count_from,
                where_clause(&conds)
            )
        } else {
            format!("{}{} {window}", self.select, where_clause(&conds))
        };
        let q = bind_all!(sqlx::query_as::<_, R>(&sql), &binds);
        Ok(q.fetch_all(pool).await?)
    }

    /// Whether the sort key is a column of `count_from` (its table or alias), so that ids can
    /// be paged there without the page's joins.
    fn key_in_count_from(&self) -> bool {
        let alias = self
            .count_from
            .split_whitespace()
            .last()
            .unwrap_or_default();
        match self.key.split_once('.') {
            None => true,
            Some((table, _)) => table == alias,
        }
    }

    /// Reads one page: the rows (one more than asked, to know whether a next page exists) and
    /// the counts, concurrently. `key_of` gives a row's sort key and id for the next cursor.
    pub async fn fetch<R>(
        &self,
        pool: &AnyPool,
        req: &PageRequest,
        key_of: impl Fn(&R) -> (Key, String),
    ) -> Result<Page<R>>
    where
        R: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
    {
        let limit = req.limit.clamp(1, MAX_LIMIT);
        let filtered = !self.filters.is_empty();
        let (mut rows, total, filtered_count) = tokio::try_join!(
            self.rows::<R>(pool, limit, &req.start),
            self.count(pool, false),
            async {
                match filtered {
                    true => self.count(pool, true).await.map(Some),
                    false => Ok(None),
                }
            },
        )?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next = match (more, rows.last()) {
            (true, Some(last)) => {
                let (k, id) = key_of(last);
                Some(encode(self.name, k, id))
            }
            _ => None,
        };
        Ok(Page {
            items: rows,
            total_count: total,
            filtered_count: filtered_count.unwrap_or(total),
            offset: match &req.start {
                Start::Offset(o) => Some((*o).max(0)),
                Start::After(_) => None,
            },
            limit,
            next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_for_its_own_list_only() {
        let c = encode("apps", Key::Text("web".into()), "id-1".into());
        assert_eq!(
            decode("apps", true, &c).unwrap(),
            (Key::Text("web".into()), "id-1".into())
        );
        assert!(matches!(
            decode("tasks", true, &c),
            Err(Error::InvalidCursor)
        ));
        assert!(matches!(
            decode("apps", false, &c),
            Err(Error::InvalidCursor)
        ));
        let t = encode("tasks", Key::Int(1_700_000_000), "id-2".into());
        assert_eq!(
            decode("tasks", false, &t).unwrap(),
            (Key::Int(1_700_000_000), "id-2".into())
        );
    }

    #[test]
    fn junk_cursors_are_refused() {
        for junk in ["", "!!!", "e30", "bm90IGpzb24", &"A".repeat(500)] {
            assert!(
                matches!(decode("apps", true, junk), Err(Error::InvalidCursor)),
                "{junk}"
            );
        }
    }
}
