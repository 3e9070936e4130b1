//! Password logins: rate limits, the bounded hashing queue, failed-login audit, sessions.
//!
//! The steps of [`password_login`], in order, each refusing before the next costs anything:
//! 1. the client address has a token in its bucket (every attempt takes one), else 429;
//! 2. the e-mail has had fewer failures than its limit, else 429 (only failures take tokens,
//!    so a user's own successful logins never lock them out);
//! 3. the password is checked on the hashing thread; an address holding its share of the
//!    queue is 429, a full queue is 503, both with `Retry-After`;
//!    an unknown e-mail costs the same verification as a wrong password;
//! 4. a failure takes a token from the e-mail's bucket and is audited (`session.login_failed`:
//!    the e-mail, the client address, the user if the e-mail names one; never the password);
//! 5. a success opens a session.

use std::net::IpAddr;
use std::time::Instant;

use ccm_api::auth::{AuthResponse, SESSION_TOKEN_PREFIX, SessionInfo};
use ccm_store::{Actor, NewSession, SessionRecord};
use uuid::Uuid;

use super::caller::{self, Caller};
use crate::AppState;
use crate::service::{ServiceError, ServiceResult};

/// The key of the per-e-mail limits: the address lower-cased (as the store compares them).
pub(crate) fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Step 1 and 2 of a login or sign-up: the address's attempt (taken) and the e-mail's failure
/// budget (looked at, not taken).
pub(crate) fn admit(s: &AppState, client: Option<IpAddr>, email: &str) -> ServiceResult<()> {
    let now = Instant::now();
    if let Some(ip) = client
        && let Err(l) = s.auth_limits.per_address.check(&ip, now)
    {
        tracing::debug!(%ip, "login or sign-up refused: address rate limit");
        return Err(ServiceError::RateLimited {
            retry_after_secs: l.retry_after_secs(),
        });
    }
    if let Err(l) = s.auth_limits.per_email.peek(&email_key(email), now) {
        tracing::debug!("login or sign-up refused: e-mail rate limit");
        return Err(ServiceError::RateLimited {
            retry_after_secs: l.retry_after_secs(),
        });
    }
    Ok(())
}

/// Counts a failed attempt against the e-mail.
pub(crate) fn charge_failure(s: &AppState, email: &str) {
    s.auth_limits
        .per_email
        .charge(&email_key(email), Instant::now());
}

/// Checks an e-mail and password and opens a session; returns the bearer token and the
/// session. `client` is the peer address (absent for requests that did not come through the
/// server loop). Shared by the API login and the console's login form.
pub async fn password_login(
    s: &AppState,
    email: &str,
    password: String,
    client: Option<IpAddr>,
) -> ServiceResult<(String, AuthResponse)> {
    admit(s, client, email)?;
    let user = s.store.user_by_email(email).await?;
    let hash = user
        .as_ref()
        .map_or_else(|| s.dummy_hash.clone(), |u| u.password_hash.clone());
    let ok = s.passwords.verify_from(client, &password, &hash).await?;
    let user = match (ok, user) {
        (true, Some(u)) => u.user,
        (_, user) => {
            charge_failure(s, email);
            let reason = if user.is_some() {
                "wrong_password"
            } else {
                "unknown_user"
            };
            let addr = client.map(|ip| ip.to_string());
            if let Err(e) = s
                .store
                .record_login_failure(
                    email,
                    user.map(|u| u.user.user_id),
                    addr.as_deref(),
                    reason,
                    s.clock.now(),
                )
                .await
            {
                tracing::warn!(error = %e, "could not audit a failed login");
            }
            return Err(ServiceError::Unauthenticated {
                code: "invalid_credentials",
                message: "wrong e-mail or password".into(),
            });
        }
    };
    let now = s.clock.now();
    let token = caller::new_token(SESSION_TOKEN_PREFIX)?;
    let session_expires_at = now.saturating_add(s.config.session_ttl_secs);
    let new = NewSession {
        session_id: Uuid::new_v4(),
        token_hash: caller::token_hash(&token),
        user_id: user.user_id,
        token_expires_at: now
            .saturating_add(s.config.token_ttl_secs)
            .min(session_expires_at),
        session_expires_at,
    };
    let actor = Actor {
        user_id: Some(user.user_id),
        name: user.user_email.clone(),
    };
    s.store.create_session(&new, &actor, now).await?;
    Ok((
        token.clone(),
        AuthResponse {
            access_token: token,
            session_info: SessionInfo {
                subject_id: user.user_id,
                session_expires_at,
                session_token_expires_at: new.token_expires_at,
                selected_account_id: None,
            },
        },
    ))
}

/// A session as the API shows it.
pub fn session_info(s: &SessionRecord) -> SessionInfo {
    SessionInfo {
        subject_id: s.user_id,
        session_expires_at: s.session_expires_at,
        session_token_expires_at: s.token_expires_at,
        selected_account_id: s.selected_acct_id,
    }
}

/// Whether a session's token is due for rotation: half its lifetime (`ttl`) has passed and the
/// session lasts longer than the token.
pub fn rotation_due(session: &SessionRecord, ttl: i64, now: i64) -> bool {
    session.token_expires_at.saturating_sub(now) < ttl / 2
        && session.session_expires_at > session.token_expires_at
}

/// Replaces a session's token (hashed `old_hash`) with a new one that expires after the token
/// lifetime, but never after the session. Of two rotations at once one wins: the loser gets
/// `None` and its (still valid) token keeps working.
pub async fn rotate_token(
    s: &AppState,
    session: &SessionRecord,
    old_hash: &str,
    actor: &Actor,
) -> ServiceResult<Option<(String, SessionRecord)>> {
    let now = s.clock.now();
    let token = caller::new_token(SESSION_TOKEN_PREFIX)?;
    let expires = now
        .saturating_add(s.config.token_ttl_secs)
        .min(session.session_expires_at);
    let updated = s
        .store
        .rotate_session_token(
            session.session_id,
            old_hash,
            &caller::token_hash(&token),
            expires,
            actor,
            now,
        )
        .await?;
    Ok(updated.map(|u| (token, u)))
}

/// The API's session refresh: the caller's session gets a new token; the old one stops
/// working at once.
pub async fn refresh(s: &AppState, caller: &Caller) -> ServiceResult<AuthResponse> {
    let (session, old_hash) = caller.session()?;
    let (token, updated) = rotate_token(s, session, old_hash, &caller.actor())
        .await?
        .ok_or_else(|| ServiceError::Unauthenticated {
            code: "invalid_token",
            message: "the token is not valid".into(),
        })?;
    Ok(AuthResponse {
        access_token: token,
        session_info: session_info(&updated),
    })
}

/// Ends the caller's session; its token stops working at once, on every replica. A caller
/// with an API key has no session: refused.
pub async fn logout(s: &AppState, caller: &Caller) -> ServiceResult<()> {
    let (session, _) = caller.session()?;
    s.store
        .delete_session(session.session_id, &caller.actor(), s.clock.now())
        .await?;
    Ok(())
}
