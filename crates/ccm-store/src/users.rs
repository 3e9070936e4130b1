//! Users.

use ccm_api::accounts::AccessRole;
use ccm_api::users::User;
use serde_json::json;
use uuid::Uuid;

use crate::error::on_unique;
use crate::paging::{Bind, Key, ListSpec};
use crate::util::{enum_value, uuid};
use crate::{Actor, Page, PageRequest, Result, Store, audit};

/// A user to create.
#[derive(Clone)]
pub struct NewUser {
    /// New id.
    pub user_id: Uuid,
    /// E-mail as given (validated by the caller).
    pub email: String,
    /// PHC-format password hash.
    pub password_hash: String,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("user_id", &self.user_id)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// A stored user with its password hash.
#[derive(Clone)]
pub struct UserRecord {
    /// The user as the API shows it (roles empty).
    pub user: User,
    /// PHC-format password hash.
    pub password_hash: String,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    user_id: String,
    email: String,
    password_hash: String,
    first_name: Option<String>,
    last_name: Option<String>,
    is_sysadmin: i64,
    created_at: i64,
    last_logged_in_at: Option<i64>,
}

pub(crate) const USER_COLS: &str = "users.user_id, users.email, users.password_hash, users.first_name, \
     users.last_name, users.is_sysadmin, users.created_at, users.last_logged_in_at";

impl UserRow {
    pub(crate) fn into_record(self) -> Result<UserRecord> {
        Ok(UserRecord {
            user: User {
                user_id: uuid("users.user_id", &self.user_id)?,
                user_email: self.email,
                first_name: self.first_name,
                last_name: self.last_name,
                created_at: self.created_at,
                last_logged_in_at: self.last_logged_in_at,
                is_sysadmin: self.is_sysadmin != 0,
                status: "ACTIVE".into(),
                roles: Vec::new(),
            },
            password_hash: self.password_hash,
        })
    }
}

/// Where a manager's first sign-up stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupTokenState {
    /// A system administrator exists; no setup token is needed or valid.
    AdminExists,
    /// A setup token is waiting to be used; this is its recorded hash (it may be another
    /// replica's).
    Pending {
        /// Hex SHA-256 of the token in force.
        stored_hash: String,
    },
}

pub(crate) async fn insert_user(
    conn: &mut sqlx::AnyConnection,
    new: NewUser,
    is_sysadmin: bool,
    now: i64,
) -> Result<User> {
    sqlx::query(
        "INSERT INTO users (user_id, email, email_lower, password_hash, first_name, last_name, \
         is_sysadmin, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new.user_id.to_string())
    .bind(&new.email)
    .bind(new.email.to_lowercase())
    .bind(&new.password_hash)
    .bind(&new.first_name)
    .bind(&new.last_name)
    .bind(i64::from(is_sysadmin))
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(on_unique("user", "user_email"))?;
    let actor = Actor {
        user_id: Some(new.user_id),
        name: new.email.clone(),
    };
    audit::append(
        conn,
        now,
        &actor,
        None,
        "user.create",
        "user",
        Some(new.user_id),
        json!({"user_email": new.email, "is_sysadmin": is_sysadmin}),
    )
    .await?;
    Ok(User {
        user_id: new.user_id,
        user_email: new.email,
        first_name: new.first_name,
        last_name: new.last_name,
        created_at: now,
        last_logged_in_at: None,
        is_sysadmin,
        status: "ACTIVE".into(),
        roles: Vec::new(),
    })
}

impl Store {
    /// Creates an ordinary user (never a system administrator: that takes the setup token,
    /// [`Store::create_admin_with_setup_token`]).
    pub async fn create_user(&self, new: NewUser, now: i64) -> Result<User> {
        let mut w = self.begin_write().await?;
        let user = insert_user(&mut w.tx, new, false, now).await?;
        w.commit().await?;
        Ok(user)
    }

    /// Records the hash of a new manager's setup token, unless a system administrator exists
    /// or a token was recorded before (by this or another replica).
    pub async fn init_setup_token(&self, token_hash: &str) -> Result<SetupTokenState> {
        let mut w = self.begin_write().await?;
        let admin: Option<(String,)> =
            sqlx::query_as("SELECT value FROM meta WHERE key = 'sysadmin_user_id'")
                .fetch_optional(&mut *w.tx)
                .await?;
        if admin.is_some() {
            w.commit().await?;
            return Ok(SetupTokenState::AdminExists);
        }
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('setup_token_hash', $1) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(token_hash)
        .execute(&mut *w.tx)
        .await?;
        let (stored,): (String,) =
            sqlx::query_as("SELECT value FROM meta WHERE key = 'setup_token_hash'")
                .fetch_one(&mut *w.tx)
                .await?;
        w.commit().await?;
        Ok(SetupTokenState::Pending {
            stored_hash: stored,
        })
    }

    /// Whether the setup token is still unused (no system administrator yet).
    pub async fn setup_pending(&self) -> Result<bool> {
        Ok(self.get_meta("setup_token_hash").await?.is_some()
            && self.get_meta("sysadmin_user_id").await?.is_none())
    }

    /// Creates the system administrator with the setup token: the token's hash must be the one
    /// recorded, and it is consumed in the same transaction, so of two sign-ups with the token
    /// exactly one succeeds. `None`: the token is not (or no longer) valid; nothing was written.
    pub async fn create_admin_with_setup_token(
        &self,
        new: NewUser,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<User>> {
        let mut w = self.begin_write().await?;
        let consumed =
            sqlx::query("DELETE FROM meta WHERE key = 'setup_token_hash' AND value = $1")
                .bind(token_hash)
                .execute(&mut *w.tx)
                .await?
                .rows_affected()
                == 1;
        if !consumed {
            return Ok(None);
        }
        let claimed = sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('sysadmin_user_id', $1) ON CONFLICT (key) DO NOTHING",
        )
        .bind(new.user_id.to_string())
        .execute(&mut *w.tx)
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            return Ok(None);
        }
        let user = insert_user(&mut w.tx, new, true, now).await?;
        w.commit().await?;
        Ok(Some(user))
    }

    /// Looks a user up by e-mail (case-insensitive).
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLS} FROM users WHERE email_lower = $1"
        ))
        .bind(email.to_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        row.map(UserRow::into_record).transpose()
    }

    /// Looks a user up by id.
    pub async fn get_user(&self, user_id: Uuid) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> =
            sqlx::query_as(&format!("SELECT {USER_COLS} FROM users WHERE user_id = $1"))
                .bind(user_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        row.map(UserRow::into_record).transpose()
    }

    /// One page of every user (for system administrators), by e-mail address.
    pub async fn list_users(&self, req: &PageRequest) -> Result<Page<User>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            user: UserRow,
            email_lower: String,
        }
        let spec = ListSpec {
            name: "users",
            select: format!("SELECT {USER_COLS}, users.email_lower FROM users"),
            count_from: "users",
            key: "users.email_lower",
            text_key: true,
            id: "users.user_id",
            desc: false,
            scope: Vec::new(),
            filters: Vec::new(),
            counts: Some(&crate::counts::USERS),
        };
        let page = spec
            .fetch::<Row>(&self.pool, req, |r| {
                (Key::Text(r.email_lower.clone()), r.user.user_id.clone())
            })
            .await?;
        page.try_map(|r| r.user.into_record().map(|r| r.user))
    }

    /// One page of an account's members with their role, by e-mail address.
    pub async fn list_members(&self, acct_id: Uuid, req: &PageRequest) -> Result<Page<User>> {
        #[derive(sqlx::FromRow)]
        struct RoleRow {
            #[sqlx(flatten)]
            user: UserRow,
            email_lower: String,
            role: String,
        }
        let spec = ListSpec {
            name: "members",
            select: format!(
                "SELECT {USER_COLS}, users.email_lower, memberships.role FROM users \
                 JOIN memberships ON memberships.user_id = users.user_id"
            ),
            count_from: "memberships",
            key: "users.email_lower",
            text_key: true,
            id: "users.user_id",
            desc: false,
            scope: vec![("memberships.acct_id", Bind::Text(acct_id.to_string()))],
            filters: Vec::new(),
            counts: Some(&crate::counts::MEMBERS),
        };
        let page = spec
            .fetch::<RoleRow>(&self.pool, req, |r| {
                (Key::Text(r.email_lower.clone()), r.user.user_id.clone())
            })
            .await?;
        page.try_map(|r| {
            let role = enum_value("memberships.role", &r.role, AccessRole::parse)?;
            let mut u = r.user.into_record()?.user;
            u.roles = vec![role];
            Ok(u)
        })
    }
}
