//! `/v1/apps`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ccm_api::apps::{App, AppRequest, AppUpdateRequest};
use ccm_api::certificates::AppWithNodes;
use ccm_api::list::{ListResponse, PageQuery};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{NoFilters, list_response};
use crate::AppState;
use crate::auth::Acct;
use crate::error::ApiResult;
use crate::extract::{Json as Body, ListQuery, Path};
use crate::service::apps;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_apps, create_app))
        .routes(routes!(get_app, update_app, delete_app))
}

/// One page of the selected account's apps, by name.
#[utoipa::path(get, path = "/v1/apps", tag = "apps", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = ListResponse<App>), (status = 400, body = ccm_api::ErrorBody), (status = 401, body = ccm_api::ErrorBody)))]
async fn list_apps(
    State(s): State<AppState>,
    acct: Acct,
    ListQuery(page, NoFilters {}): ListQuery<NoFilters>,
) -> ApiResult<Json<ListResponse<App>>> {
    Ok(list_response(apps::list(&s, &acct, &page).await?))
}

/// Adds an app (WRITER); answers 200 (as the reference does) with the app. Allowed domains
/// raise a DOMAIN_WHITELIST task.
#[utoipa::path(post, path = "/v1/apps", tag = "apps", security(("bearer" = [])), request_body = AppRequest,
    responses((status = 200, body = App), (status = 403, body = ccm_api::ErrorBody), (status = 409, body = ccm_api::ErrorBody), (status = 422, body = ccm_api::ErrorBody)))]
async fn create_app(
    State(s): State<AppState>,
    acct: Acct,
    Body(req): Body<AppRequest>,
) -> ApiResult<Json<App>> {
    Ok(Json(apps::create(&s, &acct, req).await?))
}

/// An app of the selected account, with the nodes it runs on (`nodes`).
#[utoipa::path(get, path = "/v1/apps/{app_id}", tag = "apps", security(("bearer" = [])),
    params(("app_id" = Uuid, Path)),
    responses((status = 200, body = AppWithNodes), (status = 404, body = ccm_api::ErrorBody)))]
async fn get_app(
    State(s): State<AppState>,
    acct: Acct,
    Path(app_id): Path<Uuid>,
) -> ApiResult<Json<AppWithNodes>> {
    Ok(Json(apps::get(&s, &acct, app_id).await?))
}

/// Updates an app (WRITER); absent fields stay. Added domains need approval; removed ones leave
/// the whitelist at once. Changing `advanced_settings` (the attestation policy) needs a MANAGER:
/// in accounts with manual approvals it becomes a POLICY_CHANGE task (named in
/// `pending_policy_task_id`) whose approval applies it; in auto-approving accounts a MANAGER's
/// change applies at once and a WRITER's is refused (403).
#[utoipa::path(patch, path = "/v1/apps/{app_id}", tag = "apps", security(("bearer" = [])), request_body = AppUpdateRequest,
    params(("app_id" = Uuid, Path)),
    responses((status = 200, body = App), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody), (status = 409, body = ccm_api::ErrorBody), (status = 422, body = ccm_api::ErrorBody)))]
async fn update_app(
    State(s): State<AppState>,
    acct: Acct,
    Path(app_id): Path<Uuid>,
    Body(p): Body<AppUpdateRequest>,
) -> ApiResult<Json<App>> {
    Ok(Json(apps::update(&s, &acct, app_id, p).await?))
}

/// Deletes an app with its images and their tasks (WRITER).
#[utoipa::path(delete, path = "/v1/apps/{app_id}", tag = "apps", security(("bearer" = [])),
    params(("app_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody)))]
async fn delete_app(
    State(s): State<AppState>,
    acct: Acct,
    Path(app_id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    apps::delete(&s, &acct, app_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
