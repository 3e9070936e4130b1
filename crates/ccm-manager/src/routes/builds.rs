//! `/v1/builds`: images.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ccm_api::builds::{Build, BuildStatusType, CreateBuildRequest};
use ccm_api::list::{ListResponse, PageQuery};
use ccm_store::BuildFilter;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::list_response;
use crate::AppState;
use crate::auth::Acct;
use crate::error::ApiResult;
use crate::extract::{Json as Body, ListQuery, Path};
use crate::service::images;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_builds, create_build))
        .routes(routes!(get_build, delete_build))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct BuildQuery {
    /// Only images of this app.
    app_id: Option<Uuid>,
    /// Only images in this status.
    status: Option<BuildStatusType>,
}

/// One page of the selected account's images, newest first.
#[utoipa::path(get, path = "/v1/builds", tag = "builds", security(("bearer" = [])), params(BuildQuery, PageQuery),
    responses((status = 200, body = ListResponse<Build>), (status = 400, body = ccm_api::ErrorBody), (status = 401, body = ccm_api::ErrorBody)))]
async fn list_builds(
    State(s): State<AppState>,
    acct: Acct,
    ListQuery(page, q): ListQuery<BuildQuery>,
) -> ApiResult<Json<ListResponse<Build>>> {
    let filter = BuildFilter {
        app_id: q.app_id,
        status: q.status,
    };
    Ok(list_response(
        images::list(&s, &acct, &filter, &page).await?,
    ))
}

/// Creates an image (WRITER); answers 200 (as the reference does) with the image. Two forms:
/// - a conversion request (`ConvertAppBuildRequest`, no `mrenclave`/`mrsigner`/`docker_info`):
///   the manager converts the app's input image in the background and answers with the image,
///   its `conversion` QUEUED; the BUILD_WHITELIST task is raised when the conversion succeeds;
/// - known values (`CreateBuildRequest`): records the image at once and raises its
///   BUILD_WHITELIST task. ISVPRODID, ISVSVN, memory and threads default to the app's;
///   `docker_info` is optional.
#[utoipa::path(post, path = "/v1/builds", tag = "builds", security(("bearer" = [])),
    request_body = super::conversions::CreateBuildBody,
    responses((status = 200, body = Build), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody), (status = 409, body = ccm_api::ErrorBody), (status = 422, body = ccm_api::ErrorBody)))]
async fn create_build(
    State(s): State<AppState>,
    acct: Acct,
    Body(body): Body<serde_json::Value>,
) -> ApiResult<Json<Build>> {
    if super::conversions::is_conversion_request(&body) {
        let req = super::conversions::parse_conversion_request(&body)?;
        return Ok(Json(
            crate::service::conversions::start(&s, &acct, req).await?,
        ));
    }
    let req = crate::extract::parse_json::<CreateBuildRequest>(body.to_string().as_bytes())?;
    Ok(Json(images::create(&s, &acct, req).await?))
}

/// An image of the selected account.
#[utoipa::path(get, path = "/v1/builds/{build_id}", tag = "builds", security(("bearer" = [])),
    params(("build_id" = Uuid, Path)),
    responses((status = 200, body = Build), (status = 404, body = ccm_api::ErrorBody)))]
async fn get_build(
    State(s): State<AppState>,
    acct: Acct,
    Path(build_id): Path<Uuid>,
) -> ApiResult<Json<Build>> {
    Ok(Json(images::get(&s, &acct, build_id).await?))
}

/// Deletes an image and its tasks (WRITER).
#[utoipa::path(delete, path = "/v1/builds/{build_id}", tag = "builds", security(("bearer" = [])),
    params(("build_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody)))]
async fn delete_build(
    State(s): State<AppState>,
    acct: Acct,
    Path(build_id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    images::delete(&s, &acct, build_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
