//! The value domains of the status-like columns, enforced by the database itself.
//!
//! Every column that holds an enum of `ccm-api` (statuses, task types, roles, policies) accepts
//! only that enum's wire spellings, so a bug or a hand-made `UPDATE` cannot store a value that
//! the code would later misread: reading such a row fails closed instead of, say, counting an
//! unknown image status as approved.
//!
//! The allowed values come from the Rust enums (one list per enum, checked against the enum by an
//! exhaustive `match` at compile time), so the database and the code cannot drift apart. They are
//! applied after the migrations, as the migrations' text must run unchanged on both databases and
//! SQLite cannot add a constraint to an existing table:
//! - PostgreSQL: a `CHECK (column IN (...))` constraint per column;
//! - SQLite: a `BEFORE INSERT` and a `BEFORE UPDATE OF column` trigger per column that abort the
//!   statement with the same message a CHECK constraint would give.
//!
//! Each constraint or trigger is named after its table, column and a digest of the allowed set
//! (`ck_<table>_<column>_<digest>`). Starting with an unchanged set does nothing; a changed set
//! (an enum gained a variant) replaces the old one. On PostgreSQL a new constraint validates the
//! existing rows, so a database holding a value outside the domain refuses to start with an
//! error that names the constraint, rather than serving it.

use ccm_api::accounts::{AccessRole, ApprovalPolicy, ZoneCaKeyType};
use ccm_api::apps::TcbStatus;
use ccm_api::builds::{BuildStatusType, ConversionStatus};
use ccm_api::certificates::CertificateStatusType;
use ccm_api::collateral::{CollateralSource, PckCaType, TcbUpdate, TeeType};
use ccm_api::nodes::NodeStatusType;
use ccm_api::tasks::{ApprovalStatus, RequesterType, TaskStatusType, TaskType};
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;

use crate::{Backend, Result};

/// Every variant of an enum, in one list that an exhaustive `match` checks: adding a variant to
/// the enum is a compile error here until the variant is listed.
macro_rules! every {
    ($ty:ident: $($v:ident),+ $(,)?) => {{
        #[allow(dead_code)]
        fn exhaustive(x: $ty) {
            match x {
                $($ty::$v)|+ => {}
            }
        }
        wire(&[$($ty::$v),+])
    }};
}

/// The wire spellings of `values` (their serde names, which the store writes).
fn wire<T: serde::Serialize>(values: &[T]) -> Vec<String> {
    values
        .iter()
        .filter_map(|v| match serde_json::to_value(v) {
            Ok(serde_json::Value::String(s)) => Some(s),
            _ => None,
        })
        .collect()
}

/// One constrained column and the values it may hold (NULL stays allowed where the column's
/// own definition allows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Domain {
    table: &'static str,
    column: &'static str,
    values: Vec<String>,
}

impl Domain {
    fn new(table: &'static str, column: &'static str, values: Vec<String>) -> Self {
        Self {
            table,
            column,
            values,
        }
    }

    /// `ck_<table>_<column>_` : the prefix every version of this domain's name shares.
    fn prefix(&self) -> String {
        format!("ck_{}_{}_", self.table, self.column)
    }

    /// The name of this version: the prefix and 8 hex digits of SHA-256 over the sorted values.
    fn name(&self) -> String {
        let mut sorted = self.values.clone();
        sorted.sort();
        let digest = Sha256::digest(sorted.join("\n").as_bytes());
        format!("{}{}", self.prefix(), hex::encode(&digest[..4]))
    }

    /// `column IN ('A', 'B')` (the values are enum spellings: letters, digits and `_` only).
    fn condition(&self) -> String {
        let list = self
            .values
            .iter()
            .map(|v| format!("'{}'", v.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ");
        format!("{} IN ({list})", self.column)
    }
}

/// Every constrained column of the schema.
pub(crate) fn domains() -> Vec<Domain> {
    vec![
        Domain::new(
            "accounts",
            "approval_policy",
            every!(ApprovalPolicy: Manual, AutoApprove),
        ),
        Domain::new(
            "memberships",
            "role",
            every!(AccessRole: Reader, Writer, Manager),
        ),
        Domain::new(
            "api_keys",
            "role",
            every!(AccessRole: Reader, Writer, Manager),
        ),
        Domain::new(
            "invitations",
            "role",
            every!(AccessRole: Reader, Writer, Manager),
        ),
        Domain::new(
            "zones",
            "ca_key_type",
            every!(ZoneCaKeyType: EcP256, EcP384),
        ),
        Domain::new(
            "builds",
            "status",
            every!(BuildStatusType: Pending, Whitelisted, Rejected),
        ),
        Domain::new(
            "tasks",
            "task_type",
            every!(
                TaskType: NodeAttestation,
                CertificateIssuance,
                BuildWhitelist,
                DomainWhitelist,
                PolicyChange
            ),
        ),
        Domain::new(
            "tasks",
            "requester_type",
            every!(RequesterType: User, App, System),
        ),
        Domain::new(
            "tasks",
            "status",
            every!(TaskStatusType: Inprogress, Failed, Success, Denied),
        ),
        Domain::new(
            "task_approvals",
            "status",
            every!(ApprovalStatus: Approved, Denied),
        ),
        Domain::new(
            "nodes",
            "status",
            every!(NodeStatusType: Running, Stopped, Failed, Deactivated, Inprogress, Provisioned),
        ),
        Domain::new(
            "certificates",
            "status",
            every!(CertificateStatusType: Pending, Rejected, Issued, Revoked, Expired),
        ),
        Domain::new(
            "certificates",
            "tcb_status",
            every!(
                TcbStatus: UpToDate,
                SWHardeningNeeded,
                ConfigurationNeeded,
                ConfigurationAndSWHardeningNeeded,
                OutOfDate,
                OutOfDateConfigurationNeeded,
                Revoked
            ),
        ),
        Domain::new(
            "conversions",
            "status",
            every!(ConversionStatus: Queued, Running, Succeeded, Failed),
        ),
        Domain::new(
            "collateral_sets",
            "ca_type",
            every!(PckCaType: Processor, Platform),
        ),
        Domain::new("collateral_sets", "tee", every!(TeeType: Sgx, Tdx)),
        Domain::new(
            "collateral_sets",
            "tcb_update",
            every!(TcbUpdate: Standard, Early),
        ),
        Domain::new(
            "collateral_sets",
            "source",
            every!(CollateralSource: Pccs, Upload, Import),
        ),
    ]
}

/// Puts every domain in place (after the migrations; on PostgreSQL under the migration lock).
pub(crate) async fn apply(conn: &mut AnyConnection, backend: Backend) -> Result<()> {
    for d in domains() {
        match backend {
            Backend::Postgres => apply_postgres(conn, &d).await?,
            Backend::Sqlite => apply_sqlite(conn, &d).await?,
        }
    }
    Ok(())
}

async fn apply_postgres(conn: &mut AnyConnection, d: &Domain) -> Result<()> {
    let name = d.name();
    let existing: Vec<(String,)> = sqlx::query_as(
        "SELECT conname::text FROM pg_constraint \
         WHERE conrelid = $1::regclass AND contype = 'c' AND starts_with(conname::text, $2)",
    )
    .bind(d.table)
    .bind(d.prefix())
    .fetch_all(&mut *conn)
    .await?;
    if existing.iter().any(|(n,)| *n == name) {
        return Ok(());
    }
    for (old,) in &existing {
        sqlx::query(&format!("ALTER TABLE {} DROP CONSTRAINT {old}", d.table))
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(&format!(
        "ALTER TABLE {} ADD CONSTRAINT {name} CHECK ({})",
        d.table,
        d.condition()
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn apply_sqlite(conn: &mut AnyConnection, d: &Domain) -> Result<()> {
    let name = d.name();
    let existing: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = $1 \
         AND substr(name, 1, length($2)) = $2",
    )
    .bind(d.table)
    .bind(d.prefix())
    .fetch_all(&mut *conn)
    .await?;
    let (insert, update) = (format!("{name}_insert"), format!("{name}_update"));
    if existing.iter().any(|(n,)| *n == insert) && existing.iter().any(|(n,)| *n == update) {
        return Ok(());
    }
    for (old,) in &existing {
        sqlx::query(&format!("DROP TRIGGER {old}"))
            .execute(&mut *conn)
            .await?;
    }
    // The same words as SQLite's own CHECK failure, so both databases report alike.
    let fail = format!("SELECT RAISE(ABORT, 'CHECK constraint failed: {name}'); END",);
    let (table, column, ok) = (d.table, d.column, d.condition());
    sqlx::query(&format!(
        "CREATE TRIGGER {insert} BEFORE INSERT ON {table} \
         WHEN NEW.{column} IS NOT NULL AND NOT (NEW.{ok}) BEGIN {fail}"
    ))
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!(
        "CREATE TRIGGER {update} BEFORE UPDATE OF {column} ON {table} \
         WHEN NEW.{column} IS NOT NULL AND NOT (NEW.{ok}) BEGIN {fail}"
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_the_wire_spellings() {
        let tasks = domains()
            .into_iter()
            .find(|d| d.table == "tasks" && d.column == "status")
            .unwrap();
        assert_eq!(tasks.values, ["INPROGRESS", "FAILED", "SUCCESS", "DENIED"]);
        let tcb = domains()
            .into_iter()
            .find(|d| d.column == "tcb_status")
            .unwrap();
        assert!(tcb.values.contains(&"SWHardeningNeeded".to_string()));
        assert!(domains().iter().all(|d| {
            !d.values.is_empty()
                && d.values
                    .iter()
                    .all(|v| v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        }));
    }

    #[test]
    fn the_name_follows_the_set_not_its_order() {
        let a = Domain::new("t", "c", vec!["A".into(), "B".into()]);
        let b = Domain::new("t", "c", vec!["B".into(), "A".into()]);
        let c = Domain::new("t", "c", vec!["A".into(), "B".into(), "C".into()]);
        assert_eq!(a.name(), b.name());
        assert_ne!(a.name(), c.name());
        assert!(a.name().starts_with("ck_t_c_"));
        assert_eq!(a.condition(), "c IN ('A', 'B')");
    }
}
