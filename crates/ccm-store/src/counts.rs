//! List counts kept by the database: the `list_counts` table and the triggers that maintain it.
//!
//! A list page reports how many rows its scope holds (`total_count`) and how many match its
//! filter (`filtered_count`). Counting them per page scans every row of the scope (4.6 ms on
//! SQLite and 33 ms on PostgreSQL for 100,000 rows, BENCHMARKS.md "Paged lists"), so each
//! [`Counted`] list keeps one row per scope value with its count, and one per facet value (a
//! filter column the list's clients use). Triggers on the counted table add and subtract in the
//! transaction that inserts, deletes or moves a row, whatever code (or hand-written SQL) does it,
//! so a count cannot drift from the rows it counts.
//!
//! The triggers are applied after the migrations, as their text differs between the databases
//! (SQLite: statements in the trigger body; PostgreSQL: a PL/pgSQL function per list). They are
//! named after their list and a digest of the generated SQL, recorded in `meta`: starting with
//! unchanged definitions does nothing; changed ones (a list or facet added) replace the old
//! triggers and recount every list from its rows, in one transaction that holds the counted
//! tables against writes, so no write falls between the recount and the new triggers.

use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Connection};

use crate::{Backend, Result};

/// A list whose counts the database keeps.
#[derive(Debug)]
pub(crate) struct Counted {
    /// The counter's name (`list_counts.list`).
    pub list: &'static str,
    /// The table whose rows are counted.
    pub table: &'static str,
    /// The column whose value is the scope (an account, a user); `None`: the whole table.
    pub scope: Option<&'static str>,
    /// Filter columns counted per value (facet `column=value`; NULL values are not counted).
    pub facets: &'static [&'static str],
}

/// An account's apps.
pub(crate) const APPS: Counted = Counted {
    list: "apps",
    table: "apps",
    scope: Some("acct_id"),
    facets: &[],
};
/// An account's tasks, per status and per type.
pub(crate) const TASKS: Counted = Counted {
    list: "tasks",
    table: "tasks",
    scope: Some("acct_id"),
    facets: &["status", "task_type"],
};
/// An account's images, per status and per app.
pub(crate) const BUILDS: Counted = Counted {
    list: "builds",
    table: "builds",
    scope: Some("acct_id"),
    facets: &["status", "app_id"],
};
/// An account's nodes.
pub(crate) const NODES: Counted = Counted {
    list: "nodes",
    table: "nodes",
    scope: Some("acct_id"),
    facets: &[],
};
/// An account's certificates (and pending requests), per app and per node.
pub(crate) const CERTIFICATES: Counted = Counted {
    list: "certificates",
    table: "certificates",
    scope: Some("acct_id"),
    facets: &["app_id", "node_id"],
};
/// An account's members.
pub(crate) const MEMBERS: Counted = Counted {
    list: "members",
    table: "memberships",
    scope: Some("acct_id"),
    facets: &[],
};
/// A user's accounts.
pub(crate) const ACCOUNTS: Counted = Counted {
    list: "accounts",
    table: "memberships",
    scope: Some("user_id"),
    facets: &[],
};
/// Every user.
pub(crate) const USERS: Counted = Counted {
    list: "users",
    table: "users",
    scope: None,
    facets: &[],
};

/// Every counted list.
const COUNTED: &[&Counted] = &[
    &APPS,
    &TASKS,
    &BUILDS,
    &NODES,
    &CERTIFICATES,
    &MEMBERS,
    &ACCOUNTS,
    &USERS,
];

/// The facet of a filter value, as `list_counts.facet` holds it.
pub(crate) fn facet(column: &str, value: &str) -> String {
    format!("{column}={value}")
}

impl Counted {
    /// The counter rows one table row adds to: `(scope, facet)` SQL expressions over `row`
    /// (`NEW` or `OLD`), with the condition under which each applies.
    fn targets(&self, row: &str) -> Vec<(String, String, Option<String>)> {
        let scope = match self.scope {
            Some(col) => format!("{row}.{col}"),
            None => "''".to_string(),
        };
        let mut out = vec![(scope.clone(), "''".to_string(), None)];
        for f in self.facets {
            out.push((
                scope.clone(),
                format!("'{f}=' || {row}.{f}"),
                Some(format!("{row}.{f} IS NOT NULL")),
            ));
        }
        out
    }

    /// Statements adding one to the counts of `NEW`.
    fn add_new(&self) -> Vec<String> {
        self.targets("NEW")
            .into_iter()
            .map(|(scope, facet, cond)| {
                let insert = "INSERT INTO list_counts (list, scope, facet, n)";
                let upsert = "ON CONFLICT (list, scope, facet) DO UPDATE SET n = list_counts.n + 1";
                match cond {
                    None => format!(
                        "{insert} VALUES ('{}', {scope}, {facet}, 1) {upsert}",
                        self.list
                    ),
                    Some(c) => {
                        format!(
                            "{insert} SELECT '{}', {scope}, {facet}, 1 WHERE {c} {upsert}",
                            self.list
                        )
                    }
                }
            })
            .collect()
    }

    /// Statements taking one from the counts of `OLD` (dropping counts that reach zero).
    fn remove_old(&self) -> Vec<String> {
        let facets = self
            .targets("OLD")
            .into_iter()
            .map(|(_, facet, _)| facet)
            .collect::<Vec<_>>()
            .join(", ");
        let scope = match self.scope {
            Some(col) => format!("OLD.{col}"),
            None => "''".to_string(),
        };
        let rows = format!(
            "list = '{}' AND scope = {scope} AND facet IN ({facets})",
            self.list
        );
        vec![
            format!("UPDATE list_counts SET n = n - 1 WHERE {rows}"),
            format!("DELETE FROM list_counts WHERE {rows} AND n <= 0"),
        ]
    }

    /// The columns whose change moves a row between counts.
    fn moving_columns(&self) -> Vec<&'static str> {
        self.scope.iter().chain(self.facets).copied().collect()
    }

    /// The statement recounting this list from its rows.
    fn recount(&self) -> Vec<String> {
        let insert = "INSERT INTO list_counts (list, scope, facet, n)";
        let (scope, group) = match self.scope {
            Some(col) => (col.to_string(), format!(" GROUP BY {col}")),
            None => ("''".to_string(), String::new()),
        };
        let mut out = vec![format!(
            "{insert} SELECT '{}', {scope}, '', COUNT(*) FROM {}{group}",
            self.list, self.table
        )];
        for f in self.facets {
            let group = match self.scope {
                Some(col) => format!("GROUP BY {col}, {f}"),
                None => format!("GROUP BY {f}"),
            };
            out.push(format!(
                "{insert} SELECT '{}', {scope}, '{f}=' || {f}, COUNT(*) FROM {} \
                 WHERE {f} IS NOT NULL {group}",
                self.list, self.table
            ));
        }
        out
    }

    /// The trigger definitions for `backend`. SQLite: row triggers (it updates a row in place,
    /// so one update per row costs the same however many rows a statement touches). PostgreSQL:
    /// statement triggers over transition tables, as each update of a row makes a new version
    /// of it and updating one count once per row of a 100,000-row statement walks ever longer
    /// chains of versions (measured: 810 s to insert 100,000 tasks in one statement).
    fn triggers(&self, backend: Backend, tag: &str) -> Vec<String> {
        let (name, table) = (format!("lc_{}_{tag}", self.list), self.table);
        match backend {
            Backend::Sqlite => {
                let body = |stmts: Vec<String>| stmts.join("; ") + ";";
                let (add, remove) = (body(self.add_new()), body(self.remove_old()));
                let moving = self.moving_columns();
                let changed = moving
                    .iter()
                    .map(|c| format!("OLD.{c} IS NOT NEW.{c}"))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                let mut out = vec![
                    format!("CREATE TRIGGER {name}_i AFTER INSERT ON {table} BEGIN {add} END"),
                    format!("CREATE TRIGGER {name}_d AFTER DELETE ON {table} BEGIN {remove} END"),
                ];
                if !moving.is_empty() {
                    out.push(format!(
                        "CREATE TRIGGER {name}_u AFTER UPDATE OF {} ON {table} \
                         WHEN {changed} BEGIN {remove} {add} END",
                        moving.join(", ")
                    ));
                }
                out
            }
            Backend::Postgres => {
                let f = format!(
                    "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN \
                     IF TG_OP = 'INSERT' THEN {} \
                     ELSIF TG_OP = 'DELETE' THEN {} \
                     ELSE {} END IF; RETURN NULL; END $fn$",
                    self.apply_deltas(&[("new_rows", 1)]),
                    self.apply_deltas(&[("old_rows", -1)]),
                    self.apply_deltas(&[("new_rows", 1), ("old_rows", -1)]),
                );
                let each = |event: &str, tables: &str| {
                    format!(
                        "CREATE TRIGGER {name}_{} AFTER {event} ON {table} REFERENCING {tables} \
                         FOR EACH STATEMENT EXECUTE FUNCTION {name}()",
                        &event[..1].to_lowercase()
                    )
                };
                vec![
                    f,
                    each("INSERT", "NEW TABLE AS new_rows"),
                    each("DELETE", "OLD TABLE AS old_rows"),
                    each("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
                ]
            }
        }
    }

    /// PostgreSQL: the statements that add the rows of transition tables to the counts (each
    /// row counted with its sign), one upsert per statement whatever the number of rows, then
    /// drop the counts that reached zero. A count untouched on balance (an update that moved
    /// no row) is not written, so it takes no lock.
    fn apply_deltas(&self, tables: &[(&str, i32)]) -> String {
        let scope = self.scope.unwrap_or("''");
        let mut parts = Vec::new();
        for (t, sign) in tables {
            parts.push(format!(
                "SELECT {scope} AS s, '' AS f, {sign} AS d FROM {t}"
            ));
            for f in self.facets {
                parts.push(format!(
                    "SELECT {scope}, '{f}=' || {f}, {sign} FROM {t} WHERE {f} IS NOT NULL"
                ));
            }
        }
        let list = self.list;
        let deltas = parts.join(" UNION ALL ");
        format!(
            "INSERT INTO list_counts (list, scope, facet, n) \
             SELECT '{list}', s, f, SUM(d) FROM ({deltas}) x GROUP BY s, f HAVING SUM(d) <> 0 \
             ON CONFLICT (list, scope, facet) DO UPDATE SET n = list_counts.n + excluded.n; \
             DELETE FROM list_counts WHERE list = '{list}' AND n <= 0;"
        )
    }
}

/// The statements that create every trigger on `backend`, and their digest.
fn definitions(backend: Backend) -> (Vec<String>, String) {
    let mut first = Vec::new();
    for c in COUNTED {
        first.extend(c.triggers(backend, ""));
    }
    let digest = Sha256::digest(first.join("\n").as_bytes());
    let tag = hex::encode(digest.get(..4).unwrap_or_default());
    let mut stmts = Vec::new();
    for c in COUNTED {
        stmts.extend(c.triggers(backend, &tag));
    }
    (stmts, tag)
}

const META_KEY: &str = "list_counts_triggers";

/// Installs the triggers unless the ones in place are these, recounting every list.
pub(crate) async fn apply(conn: &mut AnyConnection, backend: Backend) -> Result<()> {
    let (stmts, tag) = definitions(backend);
    let current: Option<(String,)> = sqlx::query_as("SELECT value FROM meta WHERE key = $1")
        .bind(META_KEY)
        .fetch_optional(&mut *conn)
        .await?;
    if current.as_ref().map(|(v,)| v.as_str()) == Some(tag.as_str()) {
        return Ok(());
    }
    let mut tx = match backend {
        Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => conn.begin().await?,
    };
    if backend == Backend::Postgres {
        let tables = COUNTED
            .iter()
            .map(|c| c.table)
            .collect::<std::collections::BTreeSet<_>>();
        let tables = tables.into_iter().collect::<Vec<_>>().join(", ");
        sqlx::query(&format!("LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE"))
            .execute(&mut *tx)
            .await?;
    }
    drop_old(&mut tx, backend).await?;
    for s in &stmts {
        sqlx::query(s).execute(&mut *tx).await?;
    }
    sqlx::query("DELETE FROM list_counts")
        .execute(&mut *tx)
        .await?;
    for c in COUNTED {
        for s in c.recount() {
            sqlx::query(&s).execute(&mut *tx).await?;
        }
    }
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(META_KEY)
    .bind(&tag)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Drops every list-count trigger (and PostgreSQL trigger function) in place.
async fn drop_old(conn: &mut AnyConnection, backend: Backend) -> Result<()> {
    match backend {
        Backend::Sqlite => {
            let names: Vec<(String,)> = sqlx::query_as(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'lc\\_%' ESCAPE '\\'",
            )
            .fetch_all(&mut *conn)
            .await?;
            for (n,) in names {
                sqlx::query(&format!("DROP TRIGGER {n}"))
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Backend::Postgres => {
            let names: Vec<(String,)> = sqlx::query_as(
                "SELECT proname::text FROM pg_proc WHERE proname LIKE 'lc\\_%' \
                 AND pronamespace = current_schema()::regnamespace",
            )
            .fetch_all(&mut *conn)
            .await?;
            for (n,) in names {
                sqlx::query(&format!("DROP FUNCTION {n}() CASCADE"))
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Reads a count: `facet` `None` for the whole scope. A scope with no rows has no count row.
pub(crate) async fn read(
    pool: &sqlx::AnyPool,
    list: &Counted,
    scope: &str,
    facet: Option<&str>,
) -> Result<i64> {
    let n: Option<(i64,)> =
        sqlx::query_as("SELECT n FROM list_counts WHERE list = $1 AND scope = $2 AND facet = $3")
            .bind(list.list)
            .bind(scope)
            .bind(facet.unwrap_or(""))
            .fetch_optional(pool)
            .await?;
    Ok(n.map_or(0, |(n,)| n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_names_the_definitions_and_differs_by_backend() {
        let (a, tag_a) = definitions(Backend::Sqlite);
        let (b, tag_b) = definitions(Backend::Postgres);
        assert_eq!(tag_a, definitions(Backend::Sqlite).1);
        assert_ne!(tag_a, tag_b);
        assert!(a.iter().all(|s| s.contains(&tag_a)));
        assert!(b.iter().any(|s| s.contains(&format!("lc_tasks_{tag_b}()"))));
    }

    #[test]
    fn facets_skip_null_values_and_removals_drop_empty_counts() {
        let add = TASKS.add_new();
        assert_eq!(add.len(), 3);
        assert!(add[1].contains("WHERE NEW.status IS NOT NULL"));
        let remove = TASKS.remove_old();
        assert!(remove[1].starts_with("DELETE FROM list_counts"));
        assert!(USERS.recount()[0].ends_with("FROM users"));
    }
}
