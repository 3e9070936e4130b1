//! Users: sign-up and the setup token of a new manager; the current user; members' roles.
//!
//! A new manager (no system administrator yet) does not hand administration to whoever signs
//! up first. On start, [`ensure_setup_token`] makes a one-time setup token, records its SHA-256
//! in the store (so every replica sharing the database accepts the same token) and writes the
//! token to `setup-token` (mode 0600) in the data directory, logging where it is. The sign-up
//! that presents it becomes system administrator; the store consumes the token in the same
//! transaction, and the file is removed. With an invitation token (`invitation_token`, see
//! [`crate::service::invitations`]) for the address signing up, the user is created and joins the
//! inviting account in one transaction, whatever the sign-up setting. Without either token,
//! sign-up needs the open sign-up setting (`open_signup`, off by default) and makes an ordinary
//! user.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ccm_api::accounts::AccessRole;
use ccm_api::list::PageQuery;
use ccm_api::users::{SignupRequest, UpdateUserRequest, User};
use ccm_store::{NewUser, Page, SetupTokenState, Store};
use uuid::Uuid;

use super::caller::{self, Acct, Caller, CallerAuth};
use crate::AppState;
use crate::service::auth::{admit, charge_failure};
use crate::service::validate::Checker;
use crate::service::{ServiceError, ServiceResult, paging};

/// The setup token's file name in the data directory.
pub const SETUP_TOKEN_FILE: &str = "setup-token";

/// The prefix of setup tokens.
pub const SETUP_TOKEN_PREFIX: &str = "ccmsetup1_";

/// The setup token file of a data directory.
pub fn setup_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SETUP_TOKEN_FILE)
}

/// Makes sure a manager without a system administrator has a setup token: creates one (store
/// and file) on first start, keeps a valid one across restarts, removes a used or stale file.
/// Returns the file when it holds the token in force.
pub async fn ensure_setup_token(
    store: &Store,
    data_dir: &Path,
) -> Result<Option<PathBuf>, crate::Error> {
    let path = setup_token_path(data_dir);
    let io = |e| crate::Error::Io {
        path: path.clone(),
        source: e,
    };
    let existing = match std::fs::read_to_string(&path) {
        Ok(t) => Some(t.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let candidate = match &existing {
        Some(t) => t.clone(),
        None => caller::new_token(SETUP_TOKEN_PREFIX)?,
    };
    let hash = caller::token_hash(&candidate);
    match store.init_setup_token(&hash).await? {
        SetupTokenState::AdminExists => {
            if existing.is_some() {
                remove_token_file(data_dir);
            }
            Ok(None)
        }
        SetupTokenState::Pending { stored_hash } if stored_hash == hash => {
            if existing.is_none() {
                write_private(&path, &candidate).map_err(io)?;
                tracing::warn!(
                    file = %path.display(),
                    setup_token = %candidate,
                    "no system administrator yet: the first sign-up must present this setup token \
                     (POST /v1/users with \"setup_token\", or the console's sign-up form)"
                );
            } else {
                tracing::warn!(
                    file = %path.display(),
                    "no system administrator yet: the first sign-up must present the setup token \
                     in this file"
                );
            }
            Ok(Some(path))
        }
        SetupTokenState::Pending { .. } => {
            if existing.is_some() {
                remove_token_file(data_dir);
            }
            tracing::warn!(
                "no system administrator yet: another replica created the setup token; find \
                 setup-token in its data directory"
            );
            Ok(None)
        }
    }
}

fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(format!("{token}\n").as_bytes())?;
    f.sync_all()
}

fn remove_token_file(data_dir: &Path) {
    let path = setup_token_path(data_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::info!(file = %path.display(), "setup token used; file removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "could not remove the setup token")
        }
    }
}

/// Whether the sign-up form should ask for the setup token (no system administrator yet).
pub async fn setup_pending(s: &AppState) -> ServiceResult<bool> {
    Ok(s.store.setup_pending().await?)
}

/// Validates a sign-up and creates the user: the system administrator when it presents the
/// setup token, an ordinary user when open sign-up is on, else refused. Rate limited like a
/// login (per client address and per e-mail). Shared by the API and the console.
pub async fn signup(
    s: &AppState,
    req: SignupRequest,
    client: Option<IpAddr>,
) -> ServiceResult<User> {
    let mut c = Checker::new();
    c.email("user_email", &req.user_email);
    c.password("user_password", &req.user_password);
    if let Some(f) = &req.first_name {
        c.text("first_name", f, 1, 128, false);
    }
    if let Some(l) = &req.last_name {
        c.text("last_name", l, 1, 128, false);
    }
    if let Some(t) = &req.setup_token {
        c.text("setup_token", t.trim(), 1, 256, false);
    }
    if let Some(t) = &req.invitation_token {
        c.text("invitation_token", t.trim(), 1, 256, false);
        if req.setup_token.is_some() {
            c.err(
                "invitation_token",
                "give either setup_token or invitation_token, not both",
            );
        }
    }
    c.finish()?;
    admit(s, client, &req.user_email)?;
    let token_hash = req
        .setup_token
        .as_deref()
        .map(|t| caller::token_hash(t.trim()));
    let invitation_hash = req
        .invitation_token
        .as_deref()
        .map(|t| caller::token_hash(t.trim()));
    // A wrong token, or none where one is needed, is refused before any password work.
    let refusal = match (&token_hash, &invitation_hash) {
        (Some(h), _) => (s.store.get_meta("setup_token_hash").await?.as_deref()
            != Some(h.as_str()))
        .then(bad_setup_token),
        (None, Some(h)) => (!s
            .store
            .invitation_matches(h, &req.user_email, s.clock.now())
            .await?)
            .then(bad_invitation_token),
        (None, None) => (!s.config.open_signup).then(|| {
            ServiceError::Forbidden(
                "sign-up is closed on this manager: the first sign-up presents the setup token \
                 (the file setup-token in the manager's data directory), and further users \
                 need open sign-up (open_signup) or an administrator"
                    .into(),
            )
        }),
    };
    if let Some(e) = refusal {
        charge_failure(s, &req.user_email);
        return Err(e);
    }
    let password_hash = s.passwords.hash_from(client, &req.user_password).await?;
    let new = NewUser {
        user_id: Uuid::new_v4(),
        email: req.user_email.clone(),
        password_hash,
        first_name: req.first_name,
        last_name: req.last_name,
    };
    let now = s.clock.now();
    let created = match (&token_hash, &invitation_hash) {
        (Some(h), _) => s
            .store
            .create_admin_with_setup_token(new, h, now)
            .await
            .map_err(ServiceError::from)
            .and_then(|u| u.ok_or_else(bad_setup_token)),
        (None, Some(h)) => s
            .store
            .create_user_with_invitation(new, h, now)
            .await
            .map_err(ServiceError::from)
            .and_then(|u| u.ok_or_else(bad_invitation_token)),
        (None, None) => s
            .store
            .create_user(new, now)
            .await
            .map_err(ServiceError::from),
    };
    match created {
        Ok(u) => {
            if u.is_sysadmin {
                tracing::info!(user = %u.user_email, "system administrator signed up with the setup token");
                remove_token_file(&s.config.data_dir);
            }
            Ok(u)
        }
        Err(e) => {
            charge_failure(s, &req.user_email);
            Err(e)
        }
    }
}

fn bad_invitation_token() -> ServiceError {
    ServiceError::invalid(
        "invitation_token",
        "is not an unexpired invitation to this e-mail address, or it was used",
    )
}

fn bad_setup_token() -> ServiceError {
    ServiceError::invalid(
        "setup_token",
        "is not this manager's setup token, or it was used",
    )
}

/// The caller's roles in the account it works in (the session's selected account, or the API
/// key's); none without one.
async fn roles_in_selected(s: &AppState, caller: &Caller) -> ServiceResult<Vec<AccessRole>> {
    let acct = match &caller.auth {
        CallerAuth::Session { session, .. } => session.selected_acct_id,
        CallerAuth::ApiKey(k) => Some(k.acct_id),
    };
    Ok(match acct {
        Some(a) => s
            .store
            .role_of(caller.user_id, a)
            .await?
            .into_iter()
            .collect(),
        None => Vec::new(),
    })
}

/// The calling user, with their roles in the account they work in.
pub async fn me(s: &AppState, caller: &Caller) -> ServiceResult<User> {
    let mut user = s
        .store
        .get_user(caller.user_id)
        .await?
        .ok_or(ServiceError::NotFound("user"))?
        .user;
    user.roles = roles_in_selected(s, caller).await?;
    Ok(user)
}

/// A user the caller may see: themself, a member of the account they work in, or anyone for a
/// system administrator logged in with a session. Others look absent.
pub async fn get(s: &AppState, caller: &Caller, user_id: Uuid) -> ServiceResult<User> {
    if user_id == caller.user_id {
        return me(s, caller).await;
    }
    let sysadmin = caller.administers();
    if let Ok(acct) = Acct::of(caller.clone(), s).await
        && let Some(u) = member(s, &acct, user_id).await?
    {
        return Ok(u);
    }
    if sysadmin {
        return Ok(s
            .store
            .get_user(user_id)
            .await?
            .ok_or(ServiceError::NotFound("user"))?
            .user);
    }
    Err(ServiceError::NotFound("user"))
}

/// A member of the caller's account, if the user is one.
async fn member(s: &AppState, acct: &Acct, user_id: Uuid) -> ServiceResult<Option<User>> {
    let Some(role) = s.store.role_of(user_id, acct.acct_id).await? else {
        return Ok(None);
    };
    Ok(s.store.get_user(user_id).await?.map(|rec| {
        let mut u = rec.user;
        u.roles = vec![role];
        u
    }))
}

/// Users the caller may list: every user for a system administrator with a session, else the
/// selected account's members with their roles.
pub async fn list(s: &AppState, caller: Caller, q: &PageQuery) -> ServiceResult<Page<User>> {
    let req = paging::page_request(q)?;
    if caller.administers() {
        return Ok(s.store.list_users(&req).await?);
    }
    let acct = Acct::of(caller, s).await?;
    Ok(s.store.list_members(acct.acct_id, &req).await?)
}

/// Changes a member's role in the caller's account (MANAGER): the highest of `roles` (or the
/// single `role`).
pub async fn set_role(
    s: &AppState,
    acct: &Acct,
    user_id: Uuid,
    req: UpdateUserRequest,
) -> ServiceResult<User> {
    acct.require(AccessRole::Manager)?;
    let role = super::invitations::granted_role(req.roles.as_deref(), req.role)?;
    s.store
        .set_member_role(acct.acct_id, user_id, role, &acct.actor(), s.clock.now())
        .await?;
    member(s, acct, user_id)
        .await?
        .ok_or(ServiceError::NotFound("user"))
}

/// Removes a user from the caller's account: a MANAGER may remove anyone, others only
/// themselves.
pub async fn remove_from_account(s: &AppState, acct: &Acct, user_id: Uuid) -> ServiceResult<()> {
    if user_id != acct.caller.user_id {
        acct.require(AccessRole::Manager)?;
    }
    s.store
        .remove_member(acct.acct_id, user_id, &acct.actor(), s.clock.now())
        .await?;
    Ok(())
}
