//! `/v1/builds`: images.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ccm_api::accounts::AccessRole;
use ccm_api::builds::{
    Build, BuildStatus, BuildStatusType, CreateBuildRequest, DockerInfo, EnclaveInfo,
};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Acct;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json as Body, Path, Query};
use crate::validate::{self, Checker};

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
}

/// The selected account's images, newest first.
#[utoipa::path(get, path = "/v1/builds", tag = "builds", security(("bearer" = [])), params(BuildQuery),
    responses((status = 200, body = [Build]), (status = 401, body = ccm_api::ErrorBody)))]
async fn list_builds(
    State(s): State<AppState>,
    acct: Acct,
    Query(q): Query<BuildQuery>,
) -> ApiResult<Json<Vec<Build>>> {
    Ok(Json(s.store.list_builds(acct.acct_id, q.app_id).await?))
}

/// Creates an image (WRITER). Two forms:
/// - a conversion request (`ConvertAppBuildRequest`, no `mrenclave`/`docker_info`): the manager
///   converts the app's input image in the background and answers 202 with the image, its
///   `conversion` QUEUED; the BUILD_WHITELIST task is raised when the conversion succeeds;
/// - known values (`CreateBuildRequest`): records the image at once (201) and raises its
///   BUILD_WHITELIST task. ISVPRODID, ISVSVN, memory and threads default to the app's.
#[utoipa::path(post, path = "/v1/builds", tag = "builds", security(("bearer" = [])),
    request_body = super::conversions::CreateBuildBody,
    responses((status = 201, body = Build), (status = 202, body = Build), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody), (status = 409, body = ccm_api::ErrorBody), (status = 422, body = ccm_api::ErrorBody)))]
async fn create_build(
    State(s): State<AppState>,
    acct: Acct,
    Body(body): Body<serde_json::Value>,
) -> ApiResult<(StatusCode, Json<Build>)> {
    if super::conversions::is_conversion_request(&body) {
        acct.require(AccessRole::Writer)?;
        let req = super::conversions::parse_conversion_request(&body)?;
        let build = crate::conversion::request::create(&s, &acct, req).await?;
        return Ok((StatusCode::ACCEPTED, Json(build)));
    }
    let req = crate::extract::parse_json::<CreateBuildRequest>(body.to_string().as_bytes())?;
    Ok((StatusCode::CREATED, Json(create(&s, &acct, req).await?)))
}

/// Validates and records an image from known values (WRITER) and raises its BUILD_WHITELIST
/// task. Shared by the API and the console.
pub(crate) async fn create(s: &AppState, acct: &Acct, req: CreateBuildRequest) -> ApiResult<Build> {
    acct.require(AccessRole::Writer)?;
    let mut c = Checker::new();
    c.image(
        "docker_info.docker_image_name",
        &req.docker_info.docker_image_name,
    );
    validate::tag(
        &mut c,
        "docker_info.docker_version",
        &req.docker_info.docker_version,
    );
    if let Some(sha) = &req.docker_info.docker_image_sha {
        match sha.strip_prefix("sha256:") {
            Some(h) => c.hex32("docker_info.docker_image_sha", h),
            None => c.err(
                "docker_info.docker_image_sha",
                "must be sha256:<64 hex digits>",
            ),
        }
    }
    if let Some(size) = req.docker_info.docker_image_size {
        c.range("docker_info.docker_image_size", size, 0, 1 << 40);
    }
    c.hex32("mrenclave", &req.mrenclave);
    c.hex32("mrsigner", &req.mrsigner);
    for (field, value, min, max) in [
        ("isvprodid", req.isvprodid, 0, 65535),
        ("isvsvn", req.isvsvn, 0, 65535),
        ("mem_size", req.mem_size, 16, 262_144),
        ("threads", req.threads, 1, 4096),
    ] {
        if let Some(v) = value {
            c.range(field, v, min, max);
        }
    }
    c.finish()?;
    let app = s
        .store
        .get_app(acct.acct_id, req.app_id)
        .await?
        .ok_or_else(|| ApiError::not_found("app").with_field("app_id"))?;
    let now = s.clock.now();
    let build = Build {
        build_id: Uuid::new_v4(),
        acct_id: acct.acct_id,
        app_id: app.app_id,
        app_name: app.name,
        docker_info: DockerInfo {
            docker_image_sha: req
                .docker_info
                .docker_image_sha
                .map(|s| s.to_ascii_lowercase()),
            ..req.docker_info
        },
        enclave_info: EnclaveInfo {
            mrenclave: req.mrenclave.to_ascii_lowercase(),
            mrsigner: req.mrsigner.to_ascii_lowercase(),
            isvprodid: req.isvprodid.unwrap_or(app.isvprodid),
            isvsvn: req.isvsvn.unwrap_or(app.isvsvn),
        },
        mem_size: req.mem_size.unwrap_or(app.mem_size),
        threads: req.threads.unwrap_or(app.threads),
        status: BuildStatus {
            status: BuildStatusType::Pending,
            status_updated_at: now,
        },
        pending_task_id: None,
        conversion: None,
        created_at: now,
        updated_at: now,
    };
    Ok(s.store.create_build(&build, &acct.actor(), now).await?)
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
    s.store
        .get_build(acct.acct_id, build_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("image"))
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
    delete(&s, &acct, build_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes an image and its tasks (WRITER). Shared by the API and the console.
pub(crate) async fn delete(s: &AppState, acct: &Acct, build_id: Uuid) -> ApiResult<()> {
    acct.require(AccessRole::Writer)?;
    s.store
        .delete_build(acct.acct_id, build_id, &acct.actor(), s.clock.now())
        .await?;
    Ok(())
}
