//! Invitations: a MANAGER invites an e-mail address, signed up or not, to the selected account.
//!
//! The invitation records the account, the address, the role, the inviter and the SHA-256 of a
//! single-use token, and expires after `invitation_ttl_secs`. The token goes to the inviter (and
//! by e-mail to the invitee when SMTP is configured) as a console sign-up link. It is accepted
//! - at sign-up: `invitation_token` in the sign-up body (or the console's sign-up link) makes
//!   the new user a member; this works even where open sign-up is off, and the address signed
//!   up must be the invited one;
//! - by a user who has signed up: `POST /v1/users/process_invite` with the account's id in
//!   `accepts` (or `rejects` to decline), for invitations to their own address.
//!
//! Inviting an address again replaces its pending invitation (and its token). Every step is
//! audited (`invitation.create`, `invitation.accept`, `invitation.decline`).

use ccm_api::accounts::AccessRole;
use ccm_api::users::{
    Invitation, InviteUserRequest, InvitedUser, ProcessInviteRequest, UserAccountStatus,
};
use ccm_store::NewInvitation;
use uuid::Uuid;

use super::caller::{self as auth, Acct, Caller, CallerAuth};
use super::validate::Checker;
use super::{ServiceError, ServiceResult, notify};
use crate::AppState;

/// The prefix of invitation tokens.
pub const INVITATION_TOKEN_PREFIX: &str = "ccminv1_";

/// The role an invitation or role change grants: the highest of `roles`, or ccm's older single
/// `role`; at least one must be given.
pub fn granted_role(
    roles: Option<&[AccessRole]>,
    role: Option<AccessRole>,
) -> ServiceResult<AccessRole> {
    roles
        .and_then(|r| r.iter().copied().max())
        .or(role)
        .ok_or_else(|| {
            ServiceError::invalid("roles", "give the role to grant: READER, WRITER or MANAGER")
        })
}

/// The console's sign-up link for an invitation token.
pub fn signup_url(s: &AppState, token: &str) -> String {
    format!(
        "{}/console/signup?invitation={token}",
        s.config.public_base_url()
    )
}

/// Invites an address to the caller's account (MANAGER only). Conflict when the address
/// already is a member.
pub async fn invite(
    s: &AppState,
    acct: &Acct,
    req: InviteUserRequest,
) -> ServiceResult<InvitedUser> {
    acct.require(AccessRole::Manager)?;
    let mut c = Checker::new();
    c.email("user_email", &req.user_email);
    for (field, v) in [
        ("first_name", &req.first_name),
        ("last_name", &req.last_name),
    ] {
        if let Some(v) = v {
            c.text(field, v, 1, 128, false);
        }
    }
    c.finish()?;
    let role = granted_role(
        Some(&req.roles)
            .filter(|r| !r.is_empty())
            .map(|r| r.as_slice()),
        req.role,
    )?;
    let token = auth::new_token(INVITATION_TOKEN_PREFIX)?;
    let now = s.clock.now();
    let new = NewInvitation {
        invitation_id: Uuid::new_v4(),
        acct_id: acct.acct_id,
        email: req.user_email.clone(),
        role,
        first_name: req.first_name.clone(),
        last_name: req.last_name.clone(),
        token_hash: auth::token_hash(&token),
        expires_at: now.saturating_add(s.config.invitation_ttl_secs),
    };
    let invitation = s.store.create_invitation(&new, &acct.actor(), now).await?;
    let existing = s.store.user_by_email(&new.email).await?.map(|u| u.user);
    let url = signup_url(s, &token);
    let emailed = notify::send(
        s,
        &new.email,
        "Invitation to a ccm account",
        &invitation_text(&invitation, &url, existing.is_some()),
    )
    .await;
    Ok(InvitedUser {
        user_id: existing
            .as_ref()
            .map_or(invitation.invitation_id, |u| u.user_id),
        user_email: invitation.user_email.clone(),
        first_name: existing
            .as_ref()
            .and_then(|u| u.first_name.clone())
            .or(req.first_name),
        last_name: existing
            .as_ref()
            .and_then(|u| u.last_name.clone())
            .or(req.last_name),
        user_account_status: UserAccountStatus::Pending,
        roles: vec![role],
        invitation,
        invitation_token: token,
        signup_url: url,
        emailed,
    })
}

fn invitation_text(inv: &Invitation, url: &str, signed_up: bool) -> String {
    let how = if signed_up {
        format!(
            "You already have a ccm user: log in and accept the invitation to account {} \
             (POST /v1/users/process_invite with {{\"accepts\": [\"{}\"]}}).",
            inv.acct_id, inv.acct_id
        )
    } else {
        format!("Sign up with this link to accept it:\n\n  {url}")
    };
    format!(
        "{} invited you to the account \"{}\" with the role {}.\n\n{how}\n\nThe invitation \
         expires at {} (Unix time).\n",
        inv.invited_by,
        inv.account_name,
        inv.role.as_str(),
        inv.expires_at
    )
}

/// The unexpired invitations to the caller's own address.
pub async fn my_invitations(s: &AppState, caller: &Caller) -> ServiceResult<Vec<Invitation>> {
    Ok(s.store
        .invitations_for_email(&caller.email, s.clock.now())
        .await?)
}

/// The unexpired invitations of the caller's account (MANAGER only).
pub async fn account_invitations(s: &AppState, acct: &Acct) -> ServiceResult<Vec<Invitation>> {
    acct.require(AccessRole::Manager)?;
    Ok(s.store
        .account_invitations(acct.acct_id, s.clock.now())
        .await?)
}

/// Accepts and declines invitations to the caller's own address, by account id. Every named
/// account must have an unexpired invitation, else nothing changes. Needs a login session (an
/// API key belongs to one account and cannot join others).
pub async fn process(
    s: &AppState,
    caller: &Caller,
    req: ProcessInviteRequest,
) -> ServiceResult<()> {
    if !matches!(caller.auth, CallerAuth::Session { .. }) {
        return Err(ServiceError::Forbidden(
            "accepting invitations needs a login session, not an API key".into(),
        ));
    }
    let accepts = req.accepts.unwrap_or_default();
    let rejects = req.rejects.unwrap_or_default();
    let mut c = Checker::new();
    if accepts.is_empty() && rejects.is_empty() {
        c.err("accepts", "name at least one account to accept or reject");
    }
    if accepts.len() + rejects.len() > 100 {
        c.err("accepts", "at most 100 accounts at a time");
    }
    if accepts.iter().any(|a| rejects.contains(a)) {
        c.err("rejects", "an account cannot be both accepted and rejected");
    }
    c.finish()?;
    let now = s.clock.now();
    let pending = s.store.invitations_for_email(&caller.email, now).await?;
    for (field, ids) in [("accepts", &accepts), ("rejects", &rejects)] {
        if let Some(missing) = ids
            .iter()
            .find(|id| !pending.iter().any(|i| i.acct_id == **id))
        {
            return Err(ServiceError::invalid(
                field,
                format!("no pending invitation to account {missing}"),
            ));
        }
    }
    let actor = caller.actor();
    for (ids, accept) in [(&accepts, true), (&rejects, false)] {
        for id in ids {
            s.store
                .process_invitation(*id, caller.user_id, accept, &actor, now)
                .await?;
        }
    }
    Ok(())
}
