//! Sessions (bearer tokens) and API keys. Only SHA-256 hashes of the secrets are stored.

use ccm_api::accounts::AccessRole;
use ccm_api::auth::ApiKey;
use serde_json::json;
use uuid::Uuid;

use crate::error::on_unique;
use crate::paging::{Bind, Key, ListSpec, only_account};
use crate::util::{enum_value, opt_uuid, uuid};
use crate::{Actor, Error, Page, PageRequest, Result, Store, audit};

/// A session to create.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Session id.
    pub session_id: Uuid,
    /// Hex SHA-256 of the bearer token.
    pub token_hash: String,
    /// The user.
    pub user_id: Uuid,
    /// Token expiry.
    pub token_expires_at: i64,
    /// Session expiry.
    pub session_expires_at: i64,
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Session id.
    pub session_id: Uuid,
    /// The user.
    pub user_id: Uuid,
    /// The selected account.
    pub selected_acct_id: Option<Uuid>,
    /// Token expiry.
    pub token_expires_at: i64,
    /// Session expiry.
    pub session_expires_at: i64,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    session_id: String,
    user_id: String,
    selected_acct_id: Option<String>,
    token_expires_at: i64,
    session_expires_at: i64,
}

impl SessionRow {
    fn into_record(self) -> Result<SessionRecord> {
        Ok(SessionRecord {
            session_id: uuid("sessions.session_id", &self.session_id)?,
            user_id: uuid("sessions.user_id", &self.user_id)?,
            selected_acct_id: opt_uuid(
                "sessions.selected_acct_id",
                self.selected_acct_id.as_deref(),
            )?,
            token_expires_at: self.token_expires_at,
            session_expires_at: self.session_expires_at,
        })
    }
}

const SESSION_COLS: &str =
    "session_id, user_id, selected_acct_id, token_expires_at, session_expires_at";

/// An API key to create.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// The key's metadata.
    pub key: ApiKey,
    /// Hex SHA-256 of the secret.
    pub secret_hash: String,
}

/// A stored API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// The key's metadata.
    pub key: ApiKey,
}

#[derive(sqlx::FromRow)]
struct ApiKeyRow {
    api_key_id: String,
    name: String,
    user_id: String,
    acct_id: String,
    role: String,
    created_at: i64,
    expires_at: Option<i64>,
}

impl ApiKeyRow {
    fn into_key(self) -> Result<ApiKey> {
        Ok(ApiKey {
            api_key_id: uuid("api_keys.api_key_id", &self.api_key_id)?,
            name: self.name,
            acct_id: uuid("api_keys.acct_id", &self.acct_id)?,
            user_id: uuid("api_keys.user_id", &self.user_id)?,
            role: enum_value("api_keys.role", &self.role, AccessRole::parse)?,
            created_at: self.created_at,
            expires_at: self.expires_at,
        })
    }
}

const API_KEY_COLS: &str = "api_key_id, name, user_id, acct_id, role, created_at, expires_at";

impl Store {
    /// Creates a session (a login) and records the login time.
    pub async fn create_session(&self, s: &NewSession, actor: &Actor, now: i64) -> Result<()> {
        let mut w = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO sessions (session_id, token_hash, user_id, created_at, token_expires_at, \
             session_expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(s.session_id.to_string())
        .bind(&s.token_hash)
        .bind(s.user_id.to_string())
        .bind(now)
        .bind(s.token_expires_at)
        .bind(s.session_expires_at)
        .execute(&mut *w.tx)
        .await?;
        sqlx::query("UPDATE users SET last_logged_in_at = $1 WHERE user_id = $2")
            .bind(now)
            .bind(s.user_id.to_string())
            .execute(&mut *w.tx)
            .await?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            None,
            "session.create",
            "session",
            Some(s.session_id),
            json!({}),
        )
        .await?;
        w.commit().await
    }

    /// Finds the session of a token hash (expiry is checked by the caller against its clock).
    pub async fn session_by_token_hash(&self, token_hash: &str) -> Result<Option<SessionRecord>> {
        let row: Option<SessionRow> = sqlx::query_as(&format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(SessionRow::into_record).transpose()
    }

    /// Replaces a session's token (refresh): only if `old_hash` is still its token. Returns the
    /// updated session, or `None` if the token was already replaced or the session ended.
    pub async fn rotate_session_token(
        &self,
        session_id: Uuid,
        old_hash: &str,
        new_hash: &str,
        token_expires_at: i64,
        actor: &Actor,
        now: i64,
    ) -> Result<Option<SessionRecord>> {
        let mut w = self.begin_write().await?;
        let row: Option<SessionRow> = sqlx::query_as(&format!(
            "UPDATE sessions SET token_hash = $1, token_expires_at = $2 \
             WHERE session_id = $3 AND token_hash = $4 RETURNING {SESSION_COLS}"
        ))
        .bind(new_hash)
        .bind(token_expires_at)
        .bind(session_id.to_string())
        .bind(old_hash)
        .fetch_optional(&mut *w.tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        audit::append(
            &mut w.tx,
            now,
            actor,
            None,
            "session.refresh",
            "session",
            Some(session_id),
            json!({}),
        )
        .await?;
        w.commit().await?;
        row.into_record().map(Some)
    }

    /// Ends a session at once.
    pub async fn delete_session(&self, session_id: Uuid, actor: &Actor, now: i64) -> Result<()> {
        let mut w = self.begin_write().await?;
        sqlx::query("DELETE FROM sessions WHERE session_id = $1")
            .bind(session_id.to_string())
            .execute(&mut *w.tx)
            .await?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            None,
            "session.terminate",
            "session",
            Some(session_id),
            json!({}),
        )
        .await?;
        w.commit().await
    }

    /// Records a failed login in the audit log: the e-mail tried, the client address, and the
    /// user when the e-mail names one. Never the password.
    pub async fn record_login_failure(
        &self,
        email: &str,
        user_id: Option<Uuid>,
        client_address: Option<&str>,
        reason: &str,
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
            "session.login_failed",
            "user",
            user_id,
            json!({"user_email": email, "client_address": client_address, "reason": reason}),
        )
        .await?;
        w.commit().await
    }

    /// Deletes sessions whose session lifetime is over.
    pub async fn purge_expired_sessions(&self, now: i64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM sessions WHERE session_expires_at <= $1")
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    /// Selects an account for a session; the caller has checked membership.
    pub async fn select_account(
        &self,
        session_id: Uuid,
        acct_id: Uuid,
        actor: &Actor,
        now: i64,
    ) -> Result<SessionRecord> {
        let mut w = self.begin_write().await?;
        let row: Option<SessionRow> = sqlx::query_as(&format!(
            "UPDATE sessions SET selected_acct_id = $1 WHERE session_id = $2 RETURNING {SESSION_COLS}"
        ))
        .bind(acct_id.to_string())
        .bind(session_id.to_string())
        .fetch_optional(&mut *w.tx)
        .await?;
        let rec = row
            .map(SessionRow::into_record)
            .transpose()?
            .ok_or(Error::NotFound("session"))?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(acct_id),
            "session.select_account",
            "session",
            Some(session_id),
            json!({}),
        )
        .await?;
        w.commit().await?;
        Ok(rec)
    }

    /// Stores a new API key.
    pub async fn create_api_key(&self, k: &NewApiKey, actor: &Actor, now: i64) -> Result<()> {
        let mut w = self.begin_write().await?;
        sqlx::query(&format!(
            "INSERT INTO api_keys ({API_KEY_COLS}, secret_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(k.key.api_key_id.to_string())
        .bind(&k.key.name)
        .bind(k.key.user_id.to_string())
        .bind(k.key.acct_id.to_string())
        .bind(k.key.role.as_str())
        .bind(k.key.created_at)
        .bind(k.key.expires_at)
        .bind(&k.secret_hash)
        .execute(&mut *w.tx)
        .await
        .map_err(on_unique("api key", "secret"))?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(k.key.acct_id),
            "apikey.create",
            "api_key",
            Some(k.key.api_key_id),
            json!({"name": k.key.name, "role": k.key.role.as_str(), "expires_at": k.key.expires_at}),
        )
        .await?;
        w.commit().await
    }

    /// Finds an API key by the hash of its secret.
    pub async fn api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKeyRecord>> {
        let row: Option<ApiKeyRow> = sqlx::query_as(&format!(
            "SELECT {API_KEY_COLS} FROM api_keys WHERE secret_hash = $1"
        ))
        .bind(secret_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .map(ApiKeyRow::into_key)
            .transpose()?
            .map(|key| ApiKeyRecord { key }))
    }

    /// One page of a user's API keys, oldest first; with `only`, just the keys of that account.
    pub async fn list_api_keys(
        &self,
        user_id: Uuid,
        only: Option<Uuid>,
        req: &PageRequest,
    ) -> Result<Page<ApiKey>> {
        let spec = ListSpec {
            name: "apikeys",
            select: format!("SELECT {API_KEY_COLS} FROM api_keys"),
            count_from: "api_keys",
            key: "created_at",
            text_key: false,
            id: "api_key_id",
            desc: false,
            scope: only_account(
                vec![("user_id", Bind::Text(user_id.to_string()))],
                "acct_id",
                only,
            ),
            filters: Vec::new(),
            counts: None,
        };
        let page = spec
            .fetch::<ApiKeyRow>(&self.pool, req, |r| {
                (Key::Int(r.created_at), r.api_key_id.clone())
            })
            .await?;
        page.try_map(ApiKeyRow::into_key)
    }

    /// Deletes one of a user's API keys (with `only`, only a key of that account).
    pub async fn delete_api_key(
        &self,
        user_id: Uuid,
        api_key_id: Uuid,
        only: Option<Uuid>,
        actor: &Actor,
        now: i64,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        let acct: Option<(String,)> = sqlx::query_as(
            "DELETE FROM api_keys WHERE api_key_id = $1 AND user_id = $2 \
             AND ($3 = '' OR acct_id = $3) RETURNING acct_id",
        )
        .bind(api_key_id.to_string())
        .bind(user_id.to_string())
        .bind(only.map(|a| a.to_string()).unwrap_or_default())
        .fetch_optional(&mut *w.tx)
        .await?;
        let (acct,) = acct.ok_or(Error::NotFound("api key"))?;
        let acct = uuid("api_keys.acct_id", &acct)?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(acct),
            "apikey.delete",
            "api_key",
            Some(api_key_id),
            json!({}),
        )
        .await?;
        w.commit().await
    }
}
