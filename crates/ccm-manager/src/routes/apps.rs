//! `/v1/apps`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ccm_api::accounts::AccessRole;
use ccm_api::apps::{App, AppRequest, AppUpdateRequest};
use ccm_api::certificates::AppWithNodes;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Acct;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json as Body, Path};
use crate::service::{self, ServiceResult};
use crate::validate::Checker;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_apps, create_app))
        .routes(routes!(get_app, update_app, delete_app))
}

/// Every field of an app, checked together (cross-field rules included).
fn check_app(app: &App) -> ServiceResult<()> {
    let mut c = Checker::new();
    c.text("name", &app.name, 1, 128, false);
    if let Some(d) = &app.description {
        c.text("description", d, 0, 1024, true);
    }
    c.image("input_image_name", &app.input_image_name);
    c.image("output_image_name", &app.output_image_name);
    c.range("isvprodid", app.isvprodid, 0, 65535);
    c.range("isvsvn", app.isvsvn, 0, 65535);
    c.range("mem_size", app.mem_size, 16, 262_144);
    c.range("threads", app.threads, 1, 4096);
    c.domains("allowed_domains", &app.allowed_domains);
    if let Some(cert) = &app.certificate {
        c.certificate("certificate", cert, &app.allowed_domains);
    }
    c.advanced("advanced_settings", &app.advanced_settings);
    c.labels("labels", &app.labels);
    c.finish()
}

/// The selected account's apps, by name.
#[utoipa::path(get, path = "/v1/apps", tag = "apps", security(("bearer" = [])),
    responses((status = 200, body = [App]), (status = 401, body = ccm_api::ErrorBody)))]
async fn list_apps(State(s): State<AppState>, acct: Acct) -> ApiResult<Json<Vec<App>>> {
    Ok(Json(s.store.list_apps(acct.acct_id).await?))
}

/// Adds an app (WRITER). Allowed domains raise a DOMAIN_WHITELIST task.
#[utoipa::path(post, path = "/v1/apps", tag = "apps", security(("bearer" = [])), request_body = AppRequest,
    responses((status = 201, body = App), (status = 403, body = ccm_api::ErrorBody), (status = 409, body = ccm_api::ErrorBody), (status = 422, body = ccm_api::ErrorBody)))]
async fn create_app(
    State(s): State<AppState>,
    acct: Acct,
    Body(req): Body<AppRequest>,
) -> ApiResult<(StatusCode, Json<App>)> {
    Ok((StatusCode::CREATED, Json(create(&s, &acct, req).await?)))
}

/// Validates and adds an app (WRITER); allowed domains raise a DOMAIN_WHITELIST task, a WRITER's
/// non-default attestation policy a POLICY_CHANGE task (see `service::apps`). Shared by the API
/// and the console.
pub(crate) async fn create(s: &AppState, acct: &Acct, req: AppRequest) -> ApiResult<App> {
    Ok(service::apps::create(s, acct, req, check_app).await?)
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
    let app = s
        .store
        .get_app(acct.acct_id, app_id)
        .await?
        .ok_or_else(|| ApiError::not_found("app"))?;
    let nodes = s
        .store
        .app_instances(
            acct.acct_id,
            Some(app_id),
            None,
            s.config.node_stale_after_secs,
            s.clock.now(),
        )
        .await?;
    Ok(Json(AppWithNodes { app, nodes }))
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
    Ok(Json(update(&s, &acct, app_id, p).await?))
}

/// Applies a partial update to an app (WRITER), validating the result as a whole; nothing
/// changes when it is invalid. A changed attestation policy is governed (`service::apps`).
/// Shared by the API and the console.
pub(crate) async fn update(
    s: &AppState,
    acct: &Acct,
    app_id: Uuid,
    p: AppUpdateRequest,
) -> ApiResult<App> {
    Ok(service::apps::update(s, acct, app_id, p, check_app).await?)
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
    delete(&s, &acct, app_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes an app with its images and their tasks (WRITER). Shared by the API and the console.
pub(crate) async fn delete(s: &AppState, acct: &Acct, app_id: Uuid) -> ApiResult<()> {
    acct.require(AccessRole::Writer)?;
    s.store
        .delete_app(acct.acct_id, app_id, &acct.actor(), s.clock.now())
        .await?;
    Ok(())
}
