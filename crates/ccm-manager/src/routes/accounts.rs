//! `/v1/accounts`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ccm_api::accounts::{
    AccessRole, Account, AccountRequest, AccountUpdateRequest, ApprovalPolicy, ZoneCaKeyType,
};
use ccm_pki::{CaKeyType, ZoneCa};
use ccm_store::{AccountRecord, NewAccount, NewZone};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Caller, CallerAuth};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json as Body, Path};
use crate::validate::Checker;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_accounts, create_account))
        .routes(routes!(get_account, update_account, delete_account))
}

pub(crate) use crate::secrets::zone_key_context;

async fn view(s: &AppState, rec: AccountRecord, role: AccessRole) -> ApiResult<Account> {
    let totals = s.store.account_counts(rec.acct_id).await?;
    Ok(Account {
        acct_id: rec.acct_id,
        name: rec.name,
        created_at: rec.created_at,
        updated_at: rec.updated_at,
        roles: vec![role],
        status: "ACTIVE".into(),
        approval_policy: rec.approval_policy,
        allow_simulated: rec.allow_simulated,
        zone_id: rec.zone_id,
        totals,
    })
}

/// The account and the caller's role, or 404 if the caller is no member (or, for an API key,
/// it is not the key's account).
pub(crate) async fn member_account(
    s: &AppState,
    caller: &Caller,
    acct_id: Uuid,
) -> ApiResult<(AccountRecord, AccessRole)> {
    if let CallerAuth::ApiKey(k) = &caller.auth
        && k.acct_id != acct_id
    {
        return Err(ApiError::not_found("account"));
    }
    let (rec, role) = s
        .store
        .account_for_user(acct_id, caller.user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    let role = match &caller.auth {
        CallerAuth::ApiKey(k) => role.min(k.role),
        CallerAuth::Session { .. } => role,
    };
    Ok((rec, role))
}

/// The caller's accounts.
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = [Account]), (status = 401, body = ccm_api::ErrorBody)))]
async fn list_accounts(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<Account>>> {
    let mut out = Vec::new();
    for (rec, role) in s.store.accounts_for_user(caller.user_id).await? {
        match &caller.auth {
            CallerAuth::ApiKey(k) if k.acct_id != rec.acct_id => continue,
            CallerAuth::ApiKey(k) => out.push(view(&s, rec, role.min(k.role)).await?),
            CallerAuth::Session { .. } => out.push(view(&s, rec, role).await?),
        }
    }
    Ok(Json(out))
}

/// Validates and creates an account with its zone and zone CA (key sealed with the master key);
/// the caller becomes its MANAGER. Shared by the API and the console.
pub(crate) async fn create(
    s: &AppState,
    caller: &Caller,
    req: AccountRequest,
) -> ApiResult<AccountRecord> {
    caller.session()?;
    let mut c = Checker::new();
    c.text("name", &req.name, 1, 128, false);
    c.finish()?;
    let now = s.clock.now();
    let key_type = req.zone_ca_key_type.unwrap_or_default();
    let zone_id = Uuid::new_v4();
    let cn = format!(
        "ccm zone CA {}",
        req.name.chars().take(40).collect::<String>()
    );
    let validity = s.config.zone_ca_validity_days;
    let ca = super::blocking(move || {
        ZoneCa::generate(
            &cn,
            match key_type {
                ZoneCaKeyType::EcP256 => CaKeyType::P256,
                ZoneCaKeyType::EcP384 => CaKeyType::P384,
            },
            now,
            validity,
        )
    })
    .await?
    .map_err(crate::Error::from)?;
    let sealed = s
        .master_key
        .seal(&zone_key_context(zone_id), &ca.key_pkcs8_der())?;
    Ok(s.store
        .create_account(
            &NewAccount {
                acct_id: Uuid::new_v4(),
                name: req.name.clone(),
                approval_policy: req.approval_policy.unwrap_or(ApprovalPolicy::Manual),
                allow_simulated: req.allow_simulated.unwrap_or(false),
                creator: caller.user_id,
                zone: NewZone {
                    zone_id,
                    name: format!("{} zone", req.name),
                    ca_cert_pem: ca.certificate_pem().to_string(),
                    ca_key_sealed: sealed,
                    ca_key_type: key_type,
                },
            },
            &caller.actor(),
            now,
        )
        .await?)
}

/// Creates an account with its zone and zone CA; the caller becomes its MANAGER.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", security(("bearer" = [])), request_body = AccountRequest,
    responses((status = 201, body = Account), (status = 409, body = ccm_api::ErrorBody), (status = 422, body = ccm_api::ErrorBody)))]
async fn create_account(
    State(s): State<AppState>,
    caller: Caller,
    Body(req): Body<AccountRequest>,
) -> ApiResult<(StatusCode, Json<Account>)> {
    let rec = create(&s, &caller, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(view(&s, rec, AccessRole::Manager).await?),
    ))
}

/// An account the caller belongs to.
#[utoipa::path(get, path = "/v1/accounts/{acct_id}", tag = "accounts", security(("bearer" = [])),
    params(("acct_id" = Uuid, Path)),
    responses((status = 200, body = Account), (status = 404, body = ccm_api::ErrorBody)))]
async fn get_account(
    State(s): State<AppState>,
    caller: Caller,
    Path(acct_id): Path<Uuid>,
) -> ApiResult<Json<Account>> {
    let (rec, role) = member_account(&s, &caller, acct_id).await?;
    Ok(Json(view(&s, rec, role).await?))
}

/// Renames an account, changes its approval policy or its trust in simulated platforms
/// (`allow_simulated`, off by default: nodes and application quotes resting on a simulated root
/// are refused unless it is on). MANAGER; audited.
#[utoipa::path(patch, path = "/v1/accounts/{acct_id}", tag = "accounts", security(("bearer" = [])), request_body = AccountUpdateRequest,
    params(("acct_id" = Uuid, Path)),
    responses((status = 200, body = Account), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody), (status = 409, body = ccm_api::ErrorBody)))]
async fn update_account(
    State(s): State<AppState>,
    caller: Caller,
    Path(acct_id): Path<Uuid>,
    Body(req): Body<AccountUpdateRequest>,
) -> ApiResult<Json<Account>> {
    let (_, role) = member_account(&s, &caller, acct_id).await?;
    crate::auth::require_role(role, AccessRole::Manager)?;
    let mut c = Checker::new();
    if let Some(n) = &req.name {
        c.text("name", n, 1, 128, false);
    }
    c.finish()?;
    let rec = s
        .store
        .update_account(
            acct_id,
            req.name.as_deref(),
            req.approval_policy,
            req.allow_simulated,
            &caller.actor(),
            s.clock.now(),
        )
        .await?;
    Ok(Json(view(&s, rec, role).await?))
}

/// Deletes an account and everything it owns, in one transaction (MANAGER; 404 for
/// non-members). Shared by the API and the console.
pub(crate) async fn delete(s: &AppState, caller: &Caller, acct_id: Uuid) -> ApiResult<()> {
    let (_, role) = member_account(s, caller, acct_id).await?;
    crate::auth::require_role(role, AccessRole::Manager)?;
    s.store
        .delete_account(acct_id, &caller.actor(), s.clock.now())
        .await?;
    Ok(())
}

/// Deletes an account and everything it owns, in one transaction (MANAGER).
#[utoipa::path(delete, path = "/v1/accounts/{acct_id}", tag = "accounts", security(("bearer" = [])),
    params(("acct_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody)))]
async fn delete_account(
    State(s): State<AppState>,
    caller: Caller,
    Path(acct_id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    delete(&s, &caller, acct_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
