//! Accounts, memberships and the account's zone.

use ccm_api::accounts::{AccessRole, ApprovalPolicy, ObjectCounts, ZoneCaKeyType};
use serde_json::json;
use uuid::Uuid;

use crate::error::on_unique;
use crate::paging::{Bind, Key, ListSpec, only_account};
use crate::util::{enum_value, uuid};
use crate::{Actor, Error, Page, PageRequest, Result, Store, audit};

/// The zone created with an account.
#[derive(Clone)]
pub struct NewZone {
    /// Zone id.
    pub zone_id: Uuid,
    /// Zone name.
    pub name: String,
    /// The CA certificate (PEM).
    pub ca_cert_pem: String,
    /// The CA private key, sealed by the manager's secrets module.
    pub ca_key_sealed: Vec<u8>,
    /// The CA key type.
    pub ca_key_type: ZoneCaKeyType,
}

impl std::fmt::Debug for NewZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewZone")
            .field("zone_id", &self.zone_id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// An account to create.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Account id.
    pub acct_id: Uuid,
    /// Unique name.
    pub name: String,
    /// Task approval policy.
    pub approval_policy: ApprovalPolicy,
    /// Whether the account trusts simulated platforms.
    pub allow_simulated: bool,
    /// The creating user, who becomes its MANAGER.
    pub creator: Uuid,
    /// The account's zone.
    pub zone: NewZone,
}

/// A stored account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// Account id.
    pub acct_id: Uuid,
    /// Name.
    pub name: String,
    /// Approval policy.
    pub approval_policy: ApprovalPolicy,
    /// Whether the account trusts simulated SGX platforms.
    pub allow_simulated: bool,
    /// Creation time.
    pub created_at: i64,
    /// Last update.
    pub updated_at: i64,
    /// The account's zone.
    pub zone_id: Uuid,
}

#[derive(sqlx::FromRow)]
struct AccountRow {
    acct_id: String,
    name: String,
    approval_policy: String,
    allow_simulated: i64,
    created_at: i64,
    updated_at: i64,
    zone_id: String,
}

impl AccountRow {
    fn into_record(self) -> Result<AccountRecord> {
        Ok(AccountRecord {
            acct_id: uuid("accounts.acct_id", &self.acct_id)?,
            name: self.name,
            approval_policy: enum_value(
                "accounts.approval_policy",
                &self.approval_policy,
                ApprovalPolicy::parse,
            )?,
            allow_simulated: self.allow_simulated != 0,
            created_at: self.created_at,
            updated_at: self.updated_at,
            zone_id: uuid("zones.zone_id", &self.zone_id)?,
        })
    }
}

const ACCOUNT_SELECT: &str = "SELECT accounts.acct_id, accounts.name, accounts.approval_policy, \
     accounts.allow_simulated, accounts.created_at, accounts.updated_at, zones.zone_id FROM accounts \
     JOIN zones ON zones.acct_id = accounts.acct_id";

const ACCOUNT_WITH_ROLE: &str = "SELECT accounts.acct_id, accounts.name, accounts.approval_policy, \
     accounts.allow_simulated, accounts.created_at, accounts.updated_at, zones.zone_id, memberships.role FROM accounts \
     JOIN zones ON zones.acct_id = accounts.acct_id \
     JOIN memberships ON memberships.acct_id = accounts.acct_id";

impl Store {
    /// Creates an account with its zone; the creator becomes MANAGER.
    pub async fn create_account(
        &self,
        a: &NewAccount,
        actor: &Actor,
        now: i64,
    ) -> Result<AccountRecord> {
        let mut w = self.begin_write().await?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(a.acct_id),
            "account.create",
            "account",
            Some(a.acct_id),
            json!({"name": a.name, "approval_policy": a.approval_policy.as_str(),
                   "allow_simulated": a.allow_simulated, "zone_id": a.zone.zone_id}),
        )
        .await?;
        sqlx::query(
            "INSERT INTO accounts (acct_id, name, approval_policy, allow_simulated, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(a.acct_id.to_string())
        .bind(&a.name)
        .bind(a.approval_policy.as_str())
        .bind(i64::from(a.allow_simulated))
        .bind(now)
        .execute(&mut *w.tx)
        .await
        .map_err(on_unique("account", "name"))?;
        sqlx::query(
            "INSERT INTO memberships (acct_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(a.acct_id.to_string())
        .bind(a.creator.to_string())
        .bind(AccessRole::Manager.as_str())
        .bind(now)
        .execute(&mut *w.tx)
        .await?;
        let key_type = match a.zone.ca_key_type {
            ZoneCaKeyType::EcP256 => "EC_P256",
            ZoneCaKeyType::EcP384 => "EC_P384",
        };
        sqlx::query(
            "INSERT INTO zones (zone_id, acct_id, name, ca_cert_pem, ca_key_sealed, ca_key_type, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(a.zone.zone_id.to_string())
        .bind(a.acct_id.to_string())
        .bind(&a.zone.name)
        .bind(&a.zone.ca_cert_pem)
        .bind(&a.zone.ca_key_sealed)
        .bind(key_type)
        .bind(now)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        Ok(AccountRecord {
            acct_id: a.acct_id,
            name: a.name.clone(),
            approval_policy: a.approval_policy,
            allow_simulated: a.allow_simulated,
            created_at: now,
            updated_at: now,
            zone_id: a.zone.zone_id,
        })
    }

    /// An account and the user's role in it; `None` if it does not exist or the user is no member.
    pub async fn account_for_user(
        &self,
        acct_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<(AccountRecord, AccessRole)>> {
        #[derive(sqlx::FromRow)]
        struct RoleRow {
            #[sqlx(flatten)]
            a: AccountRow,
            role: String,
        }
        let row: Option<RoleRow> = sqlx::query_as(&format!(
            "{ACCOUNT_WITH_ROLE} WHERE accounts.acct_id = $1 AND memberships.user_id = $2"
        ))
        .bind(acct_id.to_string())
        .bind(user_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                r.a.into_record()?,
                enum_value("memberships.role", &r.role, AccessRole::parse)?,
            ))
        })
        .transpose()
    }

    /// Whether an account trusts simulated platforms (`false` when there is no such account).
    pub async fn account_allows_simulated(&self, acct_id: Uuid) -> Result<bool> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT allow_simulated FROM accounts WHERE acct_id = $1")
                .bind(acct_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some_and(|(v,)| v != 0))
    }

    /// The user's role in an account, if a member.
    pub async fn role_of(&self, user_id: Uuid, acct_id: Uuid) -> Result<Option<AccessRole>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT role FROM memberships WHERE acct_id = $1 AND user_id = $2")
                .bind(acct_id.to_string())
                .bind(user_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(r,)| enum_value("memberships.role", &r, AccessRole::parse))
            .transpose()
    }

    /// One page of the accounts a user belongs to, with the user's role, by name; with `only`,
    /// just that account (what an API key of the account may see).
    pub async fn accounts_for_user(
        &self,
        user_id: Uuid,
        only: Option<Uuid>,
        req: &PageRequest,
    ) -> Result<Page<(AccountRecord, AccessRole)>> {
        #[derive(sqlx::FromRow)]
        struct RoleRow {
            #[sqlx(flatten)]
            a: AccountRow,
            role: String,
        }
        let spec = ListSpec {
            name: "accounts",
            select: ACCOUNT_WITH_ROLE.to_string(),
            count_from: "memberships",
            key: "accounts.name",
            text_key: true,
            id: "accounts.acct_id",
            desc: false,
            scope: only_account(
                vec![("memberships.user_id", Bind::Text(user_id.to_string()))],
                "memberships.acct_id",
                only,
            ),
            filters: Vec::new(),
            counts: Some(&crate::counts::ACCOUNTS),
        };
        let page = spec
            .fetch::<RoleRow>(&self.pool, req, |r| {
                (Key::Text(r.a.name.clone()), r.a.acct_id.clone())
            })
            .await?;
        page.try_map(|r| {
            Ok((
                r.a.into_record()?,
                enum_value("memberships.role", &r.role, AccessRole::parse)?,
            ))
        })
    }

    /// Counts the objects an account owns.
    pub async fn account_counts(&self, acct_id: Uuid) -> Result<ObjectCounts> {
        let (apps, builds, pending_tasks, users): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM apps WHERE acct_id = $1), \
                    (SELECT COUNT(*) FROM builds WHERE acct_id = $1), \
                    (SELECT COUNT(*) FROM tasks WHERE acct_id = $1 AND status = 'INPROGRESS'), \
                    (SELECT COUNT(*) FROM memberships WHERE acct_id = $1)",
        )
        .bind(acct_id.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(ObjectCounts {
            apps,
            builds,
            pending_tasks,
            users,
        })
    }

    /// Renames an account, changes its approval policy and/or its trust in simulated platforms
    /// (audited with the values before and after).
    pub async fn update_account(
        &self,
        acct_id: Uuid,
        name: Option<&str>,
        approval_policy: Option<ApprovalPolicy>,
        allow_simulated: Option<bool>,
        actor: &Actor,
        now: i64,
    ) -> Result<AccountRecord> {
        let mut w = self.begin_write().await?;
        let before: Option<AccountRow> =
            sqlx::query_as(&format!("{ACCOUNT_SELECT} WHERE accounts.acct_id = $1"))
                .bind(acct_id.to_string())
                .fetch_optional(&mut *w.tx)
                .await?;
        let before = before.ok_or(Error::NotFound("account"))?.into_record()?;
        let new_name = name.unwrap_or(&before.name);
        let new_policy = approval_policy.unwrap_or(before.approval_policy);
        let new_simulated = allow_simulated.unwrap_or(before.allow_simulated);
        sqlx::query(
            "UPDATE accounts SET name = $1, approval_policy = $2, allow_simulated = $3, \
             updated_at = $4 WHERE acct_id = $5",
        )
        .bind(new_name)
        .bind(new_policy.as_str())
        .bind(i64::from(new_simulated))
        .bind(now)
        .bind(acct_id.to_string())
        .execute(&mut *w.tx)
        .await
        .map_err(on_unique("account", "name"))?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(acct_id),
            "account.update",
            "account",
            Some(acct_id),
            json!({
                "before": {"name": before.name, "approval_policy": before.approval_policy.as_str(),
                           "allow_simulated": before.allow_simulated},
                "after": {"name": new_name, "approval_policy": new_policy.as_str(),
                          "allow_simulated": new_simulated},
            }),
        )
        .await?;
        w.commit().await?;
        Ok(AccountRecord {
            name: new_name.to_string(),
            approval_policy: new_policy,
            allow_simulated: new_simulated,
            updated_at: now,
            ..before
        })
    }

    /// Deletes an account and everything it owns (apps, images, tasks, zone, join tokens, API
    /// keys, memberships) in one transaction. Sessions that had it selected lose the selection.
    pub async fn delete_account(&self, acct_id: Uuid, actor: &Actor, now: i64) -> Result<()> {
        let mut w = self.begin_write().await?;
        let counts = {
            let (apps, builds, tasks): (i64, i64, i64) = sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM apps WHERE acct_id = $1), \
                        (SELECT COUNT(*) FROM builds WHERE acct_id = $1), \
                        (SELECT COUNT(*) FROM tasks WHERE acct_id = $1)",
            )
            .bind(acct_id.to_string())
            .fetch_one(&mut *w.tx)
            .await?;
            json!({"apps": apps, "builds": builds, "tasks": tasks})
        };
        let deleted: Option<(String,)> =
            sqlx::query_as("DELETE FROM accounts WHERE acct_id = $1 RETURNING name")
                .bind(acct_id.to_string())
                .fetch_optional(&mut *w.tx)
                .await?;
        let (name,) = deleted.ok_or(Error::NotFound("account"))?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(acct_id),
            "account.delete",
            "account",
            Some(acct_id),
            json!({"name": name, "deleted": counts}),
        )
        .await?;
        w.commit().await
    }

    /// Adds a user to an account with a role.
    pub async fn add_member(
        &self,
        acct_id: Uuid,
        user_id: Uuid,
        role: AccessRole,
        actor: &Actor,
        now: i64,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO memberships (acct_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(acct_id.to_string())
        .bind(user_id.to_string())
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *w.tx)
        .await
        .map_err(on_unique("membership", "user_email"))?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(acct_id),
            "member.add",
            "user",
            Some(user_id),
            json!({"role": role.as_str()}),
        )
        .await?;
        w.commit().await
    }

    /// Changes a member's role; refuses to leave the account without a MANAGER.
    pub async fn set_member_role(
        &self,
        acct_id: Uuid,
        user_id: Uuid,
        role: AccessRole,
        actor: &Actor,
        now: i64,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        let before = member_role(&mut w.tx, acct_id, user_id)
            .await?
            .ok_or(Error::NotFound("user"))?;
        if before == AccessRole::Manager && role != AccessRole::Manager {
            ensure_other_manager(&mut w.tx, acct_id, user_id).await?;
        }
        sqlx::query("UPDATE memberships SET role = $1 WHERE acct_id = $2 AND user_id = $3")
            .bind(role.as_str())
            .bind(acct_id.to_string())
            .bind(user_id.to_string())
            .execute(&mut *w.tx)
            .await?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(acct_id),
            "member.update",
            "user",
            Some(user_id),
            json!({"before": {"role": before.as_str()}, "after": {"role": role.as_str()}}),
        )
        .await?;
        w.commit().await
    }

    /// Removes a member; refuses to remove the last MANAGER. Their API keys for the account go too.
    pub async fn remove_member(
        &self,
        acct_id: Uuid,
        user_id: Uuid,
        actor: &Actor,
        now: i64,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        let before = member_role(&mut w.tx, acct_id, user_id)
            .await?
            .ok_or(Error::NotFound("user"))?;
        if before == AccessRole::Manager {
            ensure_other_manager(&mut w.tx, acct_id, user_id).await?;
        }
        for sql in [
            "DELETE FROM memberships WHERE acct_id = $1 AND user_id = $2",
            "DELETE FROM api_keys WHERE acct_id = $1 AND user_id = $2",
            "UPDATE sessions SET selected_acct_id = NULL WHERE selected_acct_id = $1 AND user_id = $2",
        ] {
            sqlx::query(sql)
                .bind(acct_id.to_string())
                .bind(user_id.to_string())
                .execute(&mut *w.tx)
                .await?;
        }
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(acct_id),
            "member.remove",
            "user",
            Some(user_id),
            json!({"role": before.as_str()}),
        )
        .await?;
        w.commit().await
    }
}

async fn member_role(
    conn: &mut sqlx::AnyConnection,
    acct_id: Uuid,
    user_id: Uuid,
) -> Result<Option<AccessRole>> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT role FROM memberships WHERE acct_id = $1 AND user_id = $2")
            .bind(acct_id.to_string())
            .bind(user_id.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    row.map(|(r,)| enum_value("memberships.role", &r, AccessRole::parse))
        .transpose()
}

async fn ensure_other_manager(
    conn: &mut sqlx::AnyConnection,
    acct_id: Uuid,
    user_id: Uuid,
) -> Result<()> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM memberships WHERE acct_id = $1 AND role = 'MANAGER' AND user_id <> $2",
    )
    .bind(acct_id.to_string())
    .bind(user_id.to_string())
    .fetch_one(&mut *conn)
    .await?;
    if n == 0 {
        return Err(Error::InvalidState(
            "an account must keep at least one MANAGER".into(),
        ));
    }
    Ok(())
}
