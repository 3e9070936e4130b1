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
//! - **Forgotten password** (`POST /v1/users/forgot_password`, the reference's call): anyone
//!   may ask for a reset link for an e-mail address. The answer is always the same 204, whether
//!   the address names a user or not, and comes before any work is done (so neither its content
//!   nor its timing tells who has an account); requests are rate limited per client address
//!   (the login budget) and per e-mail address (`forgot_password_per_hour_per_email`), 429
//!   alike for every address. Afterwards, when SMTP is configured and the address names a user,
//!   a reset token is issued (replacing an earlier one) and its console link e-mailed to the
//!   user; without SMTP nothing visible happens. Every request is audited
//!   (`user.password_forgot`, with its outcome).

use std::net::IpAddr;

use ccm_api::users::{
    ForgotPasswordRequest, PasswordChangeRequest, PasswordResetRequest, ResetTokenResponse,
    ValidateTokenResponse,
};
use uuid::Uuid;

use super::auth::{admit, charge_failure, email_key};
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
    if !caller.administers() {
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

/// A request for a password reset link by e-mail: checked and rate limited here; the rest
/// ([`forgotten`]) runs after the answer. See the module documentation.
pub async fn forgot(
    s: &AppState,
    req: ForgotPasswordRequest,
    client: Option<IpAddr>,
) -> ServiceResult<()> {
    let mut c = Checker::new();
    c.email("user_email", &req.user_email);
    c.finish()?;
    let now = std::time::Instant::now();
    if let Some(ip) = client
        && let Err(l) = s.auth_limits.per_address.check(&ip, now)
    {
        return Err(ServiceError::RateLimited {
            retry_after_secs: l.retry_after_secs(),
        });
    }
    let email = email_key(&req.user_email);
    if let Err(l) = s.auth_limits.forgot_per_email.check(&email, now) {
        return Err(ServiceError::RateLimited {
            retry_after_secs: l.retry_after_secs(),
        });
    }
    let s = s.clone();
    tokio::spawn(async move {
        if let Err(e) = forgotten(&s, &email, client).await {
            tracing::warn!(error = ?e, "a password reset request could not be handled");
        }
    });
    Ok(())
}

/// What a password reset request does, after the answer: with SMTP configured and a user of that
/// e-mail, a new reset token is e-mailed to them; the request is audited with its outcome.
async fn forgotten(s: &AppState, email: &str, client: Option<IpAddr>) -> ServiceResult<()> {
    let user = s.store.user_by_email(email).await?.map(|u| u.user);
    let outcome = match (&user, &s.mailer) {
        (None, _) => "unknown_user",
        (Some(_), None) => "not_emailed_no_smtp",
        (Some(user), Some(_)) => {
            let token = auth::new_token(RESET_TOKEN_PREFIX)?;
            let now = s.clock.now();
            let expires_at = now.saturating_add(s.config.password_reset_ttl_secs);
            let actor = ccm_store::Actor {
                user_id: None,
                name: "forgot_password".into(),
            };
            s.store
                .issue_password_reset(
                    user.user_id,
                    &auth::token_hash(&token),
                    expires_at,
                    &actor,
                    now,
                )
                .await?;
            let url = reset_url(s, user.user_id, &token);
            let body = format!(
                "Someone (hopefully you) asked to reset the password of your ccm user {}.\n\n\
                 Set a new password with this link:\n\n  {url}\n\nIt can be used once and \
                 expires at {expires_at} (Unix time). If you did not ask for it, ignore this \
                 e-mail: your password stays as it is.\n",
                user.user_email
            );
            if notify::send(s, &user.user_email, "ccm password reset", &body).await {
                "emailed"
            } else {
                "not_emailed_delivery_failed"
            }
        }
    };
    let addr = client.map(|ip| ip.to_string());
    s.store
        .record_password_forgot(
            email,
            user.map(|u| u.user_id),
            addr.as_deref(),
            outcome,
            s.clock.now(),
        )
        .await?;
    Ok(())
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
