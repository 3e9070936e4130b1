//! Changing a password, and resetting one without e-mail.
//!
//! - **Change** (`POST /v1/users/change_password`): the logged-in user gives the current and
//!   the new password. The current one is verified on the bounded hashing queue, rate limited
//!   like a login (a wrong one counts as a failed login of the address); the new one is hashed
//!   on the same queue; the user's other sessions end. Audited (`user.password_change`).
//! - **Reset**: a system administrator issues a reset token for a user
//!   (`POST /v1/users/{user_id}/reset_token`, `ccm user reset-token`, or the console's user
//!   page). It is single use, expires after `password_reset_ttl_secs`, is stored as SHA-256 and
//!   replaces an earlier one; the administrator passes it on (it is also e-mailed as a console
//!   link when SMTP is configured). The user sets a new password with it
//!   (`POST /v1/users/{user_id}/reset_password`, the reference's call, or the console's reset
//!   page); attempts are rate limited like logins, per client address and per user, and all the
//!   user's sessions end. Audited (`user.password_reset_issue`, `user.password_reset`).

use std::net::IpAddr;

use ccm_api::users::{
    PasswordChangeRequest, PasswordResetRequest, ResetTokenResponse, ValidateTokenResponse,
};
use uuid::Uuid;

use super::auth::{admit, charge_failure};
use super::caller::{self as auth, Caller, CallerAuth};
use super::validate::Checker;
use super::{ServiceError, ServiceResult, notify};
use crate::AppState;

/// The prefix of password reset tokens.
pub const RESET_TOKEN_PREFIX: &str = "ccmreset1_";

/// Changes the caller's password (a login session is needed; API keys cannot).
pub async fn change(
    s: &AppState,
    caller: &Caller,
    req: PasswordChangeRequest,
    client: Option<IpAddr>,
) -> ServiceResult<()> {
    let CallerAuth::Session { session, .. } = &caller.auth else {
        return Err(ServiceError::Forbidden(
            "changing a password needs a login session, not an API key".into(),
        ));
    };
    let mut c = Checker::new();
    if req.current_password.is_empty() || req.current_password.chars().count() > 1024 {
        c.err("current_password", "must be 1-1024 characters");
    }
    c.password("new_password", &req.new_password);
    if req.new_password == req.current_password {
        c.err("new_password", "must differ from the current password");
    }
    c.finish()?;
    admit(s, client, &caller.email)?;
    let user = s
        .store
        .get_user(caller.user_id)
        .await?
        .ok_or(ServiceError::NotFound("user"))?;
    if !s
        .passwords
        .verify(&req.current_password, &user.password_hash)
        .await?
    {
        charge_failure(s, &caller.email);
        return Err(ServiceError::invalid(
            "current_password",
            "is not your current password",
        ));
    }
    let hash = s.passwords.hash(&req.new_password).await?;
    s.store
        .change_password(
            caller.user_id,
            &hash,
            Some(session.session_id),
            &caller.actor(),
            s.clock.now(),
        )
        .await?;
    Ok(())
}

/// The console's reset link for a token.
pub fn reset_url(s: &AppState, user_id: Uuid, token: &str) -> String {
    format!(
        "{}/console/reset-password?user={user_id}&token={token}",
        s.config.public_base_url()
    )
}

/// Issues a password reset token for a user (system administrators, with a login session).
pub async fn issue_reset_token(
    s: &AppState,
    caller: &Caller,
    user_id: Uuid,
) -> ServiceResult<ResetTokenResponse> {
    if !(caller.is_sysadmin && matches!(caller.auth, CallerAuth::Session { .. })) {
        return Err(ServiceError::Forbidden(
            "issuing a password reset token needs a system administrator's login session".into(),
        ));
    }
    let user = s
        .store
        .get_user(user_id)
        .await?
        .ok_or(ServiceError::NotFound("user"))?
        .user;
    let token = auth::new_token(RESET_TOKEN_PREFIX)?;
    let now = s.clock.now();
    let expires_at = now.saturating_add(s.config.password_reset_ttl_secs);
    s.store
        .issue_password_reset(
            user_id,
            &auth::token_hash(&token),
            expires_at,
            &caller.actor(),
            now,
        )
        .await?;
    let url = reset_url(s, user_id, &token);
    let body = format!(
        "An administrator of ccm ({}) issued a password reset for your user {}.\n\nSet a new \
         password with this link:\n\n  {url}\n\nIt can be used once and expires at {expires_at} \
         (Unix time).\n",
        caller.email, user.user_email
    );
    let emailed = notify::send(s, &user.user_email, "ccm password reset", &body).await;
    Ok(ResetTokenResponse {
        user_id,
        user_email: user.user_email,
        reset_token: token,
        reset_url: url,
        expires_at,
        emailed,
    })
}

fn bad_reset_token() -> ServiceError {
    ServiceError::Unauthenticated {
        code: "invalid_reset_token",
        message: "the reset token is not valid for this user, or it expired or was used; ask an \
                  administrator for a new one"
            .into(),
    }
}

/// Admits a reset attempt (rate limits per address and per user) and checks the token.
async fn check_token(
    s: &AppState,
    user_id: Uuid,
    token: &str,
    client: Option<IpAddr>,
) -> ServiceResult<String> {
    let mut c = Checker::new();
    c.text("reset_token", token.trim(), 1, 256, false);
    c.finish()?;
    let key = format!("reset:{user_id}");
    admit(s, client, &key)?;
    let hash = auth::token_hash(token.trim());
    if !s
        .store
        .password_reset_valid(user_id, &hash, s.clock.now())
        .await?
    {
        charge_failure(s, &key);
        return Err(bad_reset_token());
    }
    Ok(hash)
}

/// Whether a reset token is valid for a user, without using it: the user's e-mail if so.
pub async fn validate_reset_token(
    s: &AppState,
    user_id: Uuid,
    token: &str,
    client: Option<IpAddr>,
) -> ServiceResult<ValidateTokenResponse> {
    check_token(s, user_id, token, client).await?;
    let user = s
        .store
        .get_user(user_id)
        .await?
        .ok_or_else(bad_reset_token)?
        .user;
    Ok(ValidateTokenResponse {
        user_email: user.user_email,
    })
}

/// Sets a user's password with their reset token; all their sessions end.
pub async fn reset(
    s: &AppState,
    user_id: Uuid,
    req: PasswordResetRequest,
    client: Option<IpAddr>,
) -> ServiceResult<()> {
    let mut c = Checker::new();
    c.password("new_password", &req.new_password);
    c.finish()?;
    let token_hash = check_token(s, user_id, &req.reset_token, client).await?;
    let user = s
        .store
        .get_user(user_id)
        .await?
        .ok_or_else(bad_reset_token)?
        .user;
    let hash = s.passwords.hash(&req.new_password).await?;
    let actor = ccm_store::Actor {
        user_id: Some(user_id),
        name: user.user_email,
    };
    if !s
        .store
        .reset_password_with_token(user_id, &token_hash, &hash, &actor, s.clock.now())
        .await?
    {
        return Err(bad_reset_token());
    }
    Ok(())
}
