//! Invitations to accounts and administrator-issued password reset tokens. Only SHA-256 hashes
//! of the tokens are stored; each token is used up in the transaction that uses it.

use ccm_api::accounts::AccessRole;
use ccm_api::users::{Invitation, User};
use serde_json::json;
use uuid::Uuid;

use crate::error::on_unique;
use crate::users::insert_user;
use crate::util::{enum_value, uuid};
use crate::{Actor, Error, NewUser, Result, Store, audit};

/// An invitation to record.
#[derive(Debug, Clone)]
pub struct NewInvitation {
    /// New id.
    pub invitation_id: Uuid,
    /// The inviting account.
    pub acct_id: Uuid,
    /// The invited address (validated by the caller).
    pub email: String,
    /// The role granted on acceptance.
    pub role: AccessRole,
    /// First name, for the invitee's sign-up.
    pub first_name: Option<String>,
    /// Last name, for the invitee's sign-up.
    pub last_name: Option<String>,
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// Expiry.
    pub expires_at: i64,
}

#[derive(sqlx::FromRow)]
struct InvitationRow {
    invitation_id: String,
    acct_id: String,
    account_name: String,
    email: String,
    role: String,
    inviter_name: String,
    created_at: i64,
    expires_at: i64,
}

impl InvitationRow {
    fn into_api(self) -> Result<Invitation> {
        Ok(Invitation {
            invitation_id: uuid("invitations.invitation_id", &self.invitation_id)?,
            acct_id: uuid("invitations.acct_id", &self.acct_id)?,
            account_name: self.account_name,
            user_email: self.email,
            role: enum_value("invitations.role", &self.role, AccessRole::parse)?,
            invited_by: self.inviter_name,
            created_at: self.created_at,
            expires_at: self.expires_at,
        })
    }
}

const INVITATION_SELECT: &str = "SELECT invitations.invitation_id, invitations.acct_id, \
     accounts.name AS account_name, invitations.email, invitations.role, invitations.inviter_name, \
     invitations.created_at, invitations.expires_at FROM invitations \
     JOIN accounts ON accounts.acct_id = invitations.acct_id";

async fn fetch_invitations(
    conn: &mut sqlx::AnyConnection,
    filter: &str,
    bind: &str,
    now: i64,
) -> Result<Vec<Invitation>> {
    let rows: Vec<InvitationRow> = sqlx::query_as(&format!(
        "{INVITATION_SELECT} WHERE {filter} = $1 AND invitations.expires_at > $2 \
         ORDER BY invitations.created_at, invitations.invitation_id"
    ))
    .bind(bind)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(InvitationRow::into_api).collect()
}

/// Makes the membership an invitation grants and deletes the invitation.
async fn accept(
    conn: &mut sqlx::AnyConnection,
    inv: &Invitation,
    user_id: Uuid,
    actor: &Actor,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO memberships (acct_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(inv.acct_id.to_string())
    .bind(user_id.to_string())
    .bind(inv.role.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(on_unique("membership", "user_email"))?;
    sqlx::query("DELETE FROM invitations WHERE invitation_id = $1")
        .bind(inv.invitation_id.to_string())
        .execute(&mut *conn)
        .await?;
    audit::append(
        conn,
        now,
        actor,
        Some(inv.acct_id),
        "invitation.accept",
        "user",
        Some(user_id),
        json!({"invitation_id": inv.invitation_id, "role": inv.role.as_str(),
               "invited_by": inv.invited_by}),
    )
    .await
}

impl Store {
    /// Records an invitation, replacing a pending one of the same address to the same account.
    /// Refused (conflict) when the address already is a member of the account.
    pub async fn create_invitation(
        &self,
        new: &NewInvitation,
        actor: &Actor,
        now: i64,
    ) -> Result<Invitation> {
        let mut w = self.begin_write().await?;
        let email_lower = new.email.to_lowercase();
        let member: Option<(String,)> = sqlx::query_as(
            "SELECT memberships.user_id FROM memberships JOIN users \
             ON users.user_id = memberships.user_id \
             WHERE memberships.acct_id = $1 AND users.email_lower = $2",
        )
        .bind(new.acct_id.to_string())
        .bind(&email_lower)
        .fetch_optional(&mut *w.tx)
        .await?;
        if member.is_some() {
            return Err(Error::Conflict {
                what: "membership",
                field: "user_email",
            });
        }
        sqlx::query("DELETE FROM invitations WHERE acct_id = $1 AND email_lower = $2")
            .bind(new.acct_id.to_string())
            .bind(&email_lower)
            .execute(&mut *w.tx)
            .await?;
        sqlx::query(
            "INSERT INTO invitations (invitation_id, acct_id, email, email_lower, role, first_name, \
             last_name, inviter_id, inviter_name, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(new.invitation_id.to_string())
        .bind(new.acct_id.to_string())
        .bind(&new.email)
        .bind(&email_lower)
        .bind(new.role.as_str())
        .bind(&new.first_name)
        .bind(&new.last_name)
        .bind(actor.user_id.map(|u| u.to_string()))
        .bind(&actor.name)
        .bind(&new.token_hash)
        .bind(now)
        .bind(new.expires_at)
        .execute(&mut *w.tx)
        .await?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(new.acct_id),
            "invitation.create",
            "invitation",
            Some(new.invitation_id),
            json!({"user_email": new.email, "role": new.role.as_str(),
                   "expires_at": new.expires_at}),
        )
        .await?;
        let inv = fetch_invitations(
            &mut w.tx,
            "invitations.invitation_id",
            &new.invitation_id.to_string(),
            now,
        )
        .await?
        .pop()
        .ok_or(Error::NotFound("invitation"))?;
        w.commit().await?;
        Ok(inv)
    }

    /// The unexpired invitations of an address (case-insensitive).
    pub async fn invitations_for_email(&self, email: &str, now: i64) -> Result<Vec<Invitation>> {
        let mut conn = self.pool.acquire().await?;
        fetch_invitations(
            &mut conn,
            "invitations.email_lower",
            &email.to_lowercase(),
            now,
        )
        .await
    }

    /// The unexpired invitations of an account.
    pub async fn account_invitations(&self, acct_id: Uuid, now: i64) -> Result<Vec<Invitation>> {
        let mut conn = self.pool.acquire().await?;
        fetch_invitations(&mut conn, "invitations.acct_id", &acct_id.to_string(), now).await
    }

    /// Whether `token_hash` is an unexpired invitation to `email`.
    pub async fn invitation_matches(
        &self,
        token_hash: &str,
        email: &str,
        now: i64,
    ) -> Result<bool> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT invitation_id FROM invitations WHERE token_hash = $1 AND email_lower = $2 \
             AND expires_at > $3",
        )
        .bind(token_hash)
        .bind(email.to_lowercase())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Creates a user who presents an invitation token for their address, and makes them a
    /// member as invited, in one transaction that uses the invitation up. `None`: no unexpired
    /// invitation of this address has this token; nothing was written.
    pub async fn create_user_with_invitation(
        &self,
        new: NewUser,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<User>> {
        let mut w = self.begin_write().await?;
        let mut found = fetch_invitations(&mut w.tx, "invitations.token_hash", token_hash, now)
            .await?
            .into_iter()
            .filter(|i| i.user_email.to_lowercase() == new.email.to_lowercase());
        let Some(inv) = found.next() else {
            return Ok(None);
        };
        let actor = Actor {
            user_id: Some(new.user_id),
            name: new.email.clone(),
        };
        let mut user = insert_user(&mut w.tx, new, false, now).await?;
        accept(&mut w.tx, &inv, user.user_id, &actor, now).await?;
        w.commit().await?;
        user.roles = Vec::new();
        Ok(Some(user))
    }

    /// Accepts (`accept`) or declines the unexpired invitation of the user's address to an
    /// account. Not found when there is none.
    pub async fn process_invitation(
        &self,
        acct_id: Uuid,
        user_id: Uuid,
        accept_it: bool,
        actor: &Actor,
        now: i64,
    ) -> Result<Invitation> {
        let mut w = self.begin_write().await?;
        let (email_lower,): (String,) =
            sqlx::query_as("SELECT email_lower FROM users WHERE user_id = $1")
                .bind(user_id.to_string())
                .fetch_optional(&mut *w.tx)
                .await?
                .ok_or(Error::NotFound("user"))?;
        let inv = fetch_invitations(&mut w.tx, "invitations.email_lower", &email_lower, now)
            .await?
            .into_iter()
            .find(|i| i.acct_id == acct_id)
            .ok_or(Error::NotFound("invitation"))?;
        if accept_it {
            accept(&mut w.tx, &inv, user_id, actor, now).await?;
        } else {
            sqlx::query("DELETE FROM invitations WHERE invitation_id = $1")
                .bind(inv.invitation_id.to_string())
                .execute(&mut *w.tx)
                .await?;
            audit::append(
                &mut w.tx,
                now,
                actor,
                Some(acct_id),
                "invitation.decline",
                "user",
                Some(user_id),
                json!({"invitation_id": inv.invitation_id, "role": inv.role.as_str()}),
            )
            .await?;
        }
        w.commit().await?;
        Ok(inv)
    }

    /// Audits a password reset request (`forgot_password`): the e-mail asked for, the user it
    /// names (if any), the client address and what came of it (`outcome`). Anonymous, like a
    /// failed login.
    pub async fn record_password_forgot(
        &self,
        email: &str,
        user_id: Option<Uuid>,
        client_address: Option<&str>,
        outcome: &str,
        now: i64,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        let actor = Actor {
            user_id: None,
            name: match client_address {
                Some(a) => format!("anonymous@{a}"),
                None => "anonymous".into(),
            },
        };
        audit::append(
            &mut w.tx,
            now,
            &actor,
            None,
            "user.password_forgot",
            "user",
            user_id,
            json!({"user_email": email, "client_address": client_address, "outcome": outcome}),
        )
        .await?;
        w.commit().await
    }

    /// Records a password reset token for a user, replacing any earlier one.
    pub async fn issue_password_reset(
        &self,
        user_id: Uuid,
        token_hash: &str,
        expires_at: i64,
        actor: &Actor,
        now: i64,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        let exists: Option<(String,)> =
            sqlx::query_as("SELECT user_id FROM users WHERE user_id = $1")
                .bind(user_id.to_string())
                .fetch_optional(&mut *w.tx)
                .await?;
        if exists.is_none() {
            return Err(Error::NotFound("user"));
        }
        sqlx::query("DELETE FROM password_resets WHERE user_id = $1")
            .bind(user_id.to_string())
            .execute(&mut *w.tx)
            .await?;
        sqlx::query(
            "INSERT INTO password_resets (user_id, token_hash, issued_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user_id.to_string())
        .bind(token_hash)
        .bind(&actor.name)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *w.tx)
        .await?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            None,
            "user.password_reset_issue",
            "user",
            Some(user_id),
            json!({"expires_at": expires_at}),
        )
        .await?;
        w.commit().await
    }

    /// Whether `token_hash` is the user's unexpired reset token.
    pub async fn password_reset_valid(
        &self,
        user_id: Uuid,
        token_hash: &str,
        now: i64,
    ) -> Result<bool> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT expires_at FROM password_resets WHERE user_id = $1 AND token_hash = $2 \
             AND expires_at > $3",
        )
        .bind(user_id.to_string())
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Sets a user's password with their reset token, using the token up and ending all their
    /// sessions, in one transaction. `false`: the token is not the user's, or it expired or
    /// was used; nothing was written.
    pub async fn reset_password_with_token(
        &self,
        user_id: Uuid,
        token_hash: &str,
        password_hash: &str,
        actor: &Actor,
        now: i64,
    ) -> Result<bool> {
        let mut w = self.begin_write().await?;
        let used = sqlx::query(
            "DELETE FROM password_resets WHERE user_id = $1 AND token_hash = $2 AND expires_at > $3",
        )
        .bind(user_id.to_string())
        .bind(token_hash)
        .bind(now)
        .execute(&mut *w.tx)
        .await?
        .rows_affected()
            == 1;
        if !used {
            return Ok(false);
        }
        let ended = set_password(&mut w.tx, user_id, password_hash, None).await?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            None,
            "user.password_reset",
            "user",
            Some(user_id),
            json!({"sessions_ended": ended}),
        )
        .await?;
        w.commit().await?;
        Ok(true)
    }

    /// Sets a user's password and ends their sessions other than `keep_session`, in one
    /// transaction; an outstanding reset token is withdrawn.
    pub async fn change_password(
        &self,
        user_id: Uuid,
        password_hash: &str,
        keep_session: Option<Uuid>,
        actor: &Actor,
        now: i64,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        let ended = set_password(&mut w.tx, user_id, password_hash, keep_session).await?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            None,
            "user.password_change",
            "user",
            Some(user_id),
            json!({"sessions_ended": ended}),
        )
        .await?;
        w.commit().await
    }
}

/// Stores a new password hash, withdraws reset tokens and deletes the user's sessions except
/// `keep`; returns how many sessions ended.
async fn set_password(
    conn: &mut sqlx::AnyConnection,
    user_id: Uuid,
    password_hash: &str,
    keep: Option<Uuid>,
) -> Result<u64> {
    let updated = sqlx::query("UPDATE users SET password_hash = $1 WHERE user_id = $2")
        .bind(password_hash)
        .bind(user_id.to_string())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if updated != 1 {
        return Err(Error::NotFound("user"));
    }
    sqlx::query("DELETE FROM password_resets WHERE user_id = $1")
        .bind(user_id.to_string())
        .execute(&mut *conn)
        .await?;
    let keep = keep.map(|k| k.to_string()).unwrap_or_default();
    Ok(
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND session_id <> $2")
            .bind(user_id.to_string())
            .bind(keep)
            .execute(&mut *conn)
            .await?
            .rows_affected(),
    )
}
