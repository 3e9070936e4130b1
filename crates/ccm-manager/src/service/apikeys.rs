//! API keys for automation: bound to one account and a role no higher than their owner's,
//! expiring, visible only to their owner (and, through a key, only that key's account's keys).

use ccm_api::auth::{API_KEY_PREFIX, ApiKey, ApiKeyCreated, ApiKeyRequest};
use ccm_api::list::PageQuery;
use ccm_store::{NewApiKey, Page};
use uuid::Uuid;

use super::caller::{self, Acct, Caller};
use super::validate::Checker;
use super::{ServiceError, ServiceResult, paging};
use crate::AppState;

/// Step of [`create`]: a name of 1 to 128 characters and a lifetime of at least a minute and
/// at most `max_secs`.
pub fn check_request(req: &ApiKeyRequest, max_secs: i64) -> ServiceResult<()> {
    let mut c = Checker::new();
    c.text("name", &req.name, 1, 128, false);
    if let Some(e) = req.expires_in {
        c.range("expires_in", e, 60, max_secs);
    }
    c.finish()
}

/// Creates an API key acting for the caller (a session, not another key) in the selected
/// account, with a role no higher than the caller's. The secret is returned only here.
pub async fn create(s: &AppState, acct: &Acct, req: ApiKeyRequest) -> ServiceResult<ApiKeyCreated> {
    acct.caller.session()?;
    check_request(&req, s.config.api_key_max_days.saturating_mul(86_400))?;
    if req.role > acct.role {
        return Err(ServiceError::ForbiddenValue {
            field: "role",
            message: format!(
                "an API key cannot have a higher role than yours ({})",
                acct.role.as_str()
            ),
        });
    }
    let now = s.clock.now();
    let lifetime = req
        .expires_in
        .unwrap_or(s.config.api_key_default_days.saturating_mul(86_400));
    let secret = caller::new_token(API_KEY_PREFIX)?;
    let key = ApiKey {
        api_key_id: Uuid::new_v4(),
        name: req.name,
        acct_id: acct.acct_id,
        user_id: acct.caller.user_id,
        role: req.role,
        created_at: now,
        expires_at: Some(now.saturating_add(lifetime)),
    };
    s.store
        .create_api_key(
            &NewApiKey {
                key: key.clone(),
                secret_hash: caller::token_hash(&secret),
            },
            &acct.actor(),
            now,
        )
        .await?;
    Ok(ApiKeyCreated { key, secret })
}

/// The keys a caller may see and delete: with a session, the user's keys; with an API key, the
/// user's keys of that key's account only (never another account's).
pub async fn visible(s: &AppState, caller: &Caller, q: &PageQuery) -> ServiceResult<Page<ApiKey>> {
    let req = paging::page_request(q)?;
    Ok(s.store
        .list_api_keys(caller.user_id, caller.key_account(), &req)
        .await?)
}

/// Deletes one of the keys the caller may see; it stops working at once. Others: not found.
pub async fn delete(s: &AppState, caller: &Caller, api_key_id: Uuid) -> ServiceResult<()> {
    s.store
        .delete_api_key(
            caller.user_id,
            api_key_id,
            caller.key_account(),
            &caller.actor(),
            s.clock.now(),
        )
        .await?;
    Ok(())
}
