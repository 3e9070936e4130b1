//! `/v1/registry`: container registries whose credentials the selected account stores. The
//! password is write-only: no answer carries it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ccm_api::registries::{
    AppRegistryResponse, ImageRegistryResponse, PatchDocument, Registry, RegistryRequest,
};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Acct;
use crate::error::ApiResult;
use crate::extract::{Json as Body, Path, Query};
use crate::service::registries;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_registries, create_registry))
        .routes(routes!(get_registry, update_registry, delete_registry))
        .routes(routes!(registry_for_app))
        .routes(routes!(registry_for_image))
}

/// The stored registries an app's input and output images use (any member).
#[utoipa::path(get, path = "/v1/registry/app/{app_id}", tag = "registries", security(("bearer" = [])),
    params(("app_id" = Uuid, Path)),
    responses((status = 200, body = AppRegistryResponse), (status = 404, body = ccm_api::ErrorBody)))]
async fn registry_for_app(
    State(s): State<AppState>,
    acct: Acct,
    Path(app_id): Path<Uuid>,
) -> ApiResult<Json<AppRegistryResponse>> {
    Ok(Json(registries::for_app(&s, &acct, app_id).await?))
}

/// `?image_name=` of [`registry_for_image`].
#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct ImageQuery {
    /// An image reference, e.g. `registry.example.com/team/app:1`.
    image_name: String,
}

/// The stored registry an image uses (any member).
#[utoipa::path(get, path = "/v1/image/registry", tag = "registries", security(("bearer" = [])),
    params(ImageQuery),
    responses((status = 200, body = ImageRegistryResponse), (status = 422, body = ccm_api::ErrorBody)))]
async fn registry_for_image(
    State(s): State<AppState>,
    acct: Acct,
    Query(q): Query<ImageQuery>,
) -> ApiResult<Json<ImageRegistryResponse>> {
    Ok(Json(registries::for_image(&s, &acct, &q.image_name).await?))
}

/// Stores a registry's credentials in the selected account (MANAGER only). `url` is the
/// registry's host (`host[:port]`, optionally with `https://`); one registry per host. Image
/// creation uses it for images on that host that come without credentials.
#[utoipa::path(post, path = "/v1/registry", tag = "registries", security(("bearer" = [])), request_body = RegistryRequest,
    responses((status = 200, body = Registry), (status = 403, body = ccm_api::ErrorBody), (status = 409, body = ccm_api::ErrorBody), (status = 422, body = ccm_api::ErrorBody)))]
async fn create_registry(
    State(s): State<AppState>,
    acct: Acct,
    Body(req): Body<RegistryRequest>,
) -> ApiResult<Json<Registry>> {
    Ok(Json(registries::create(&s, &acct, req).await?))
}

/// The selected account's registries, without their passwords (any member). A bare array, not a
/// paged list: the reference's client (`get_all_registries`) reads it so.
#[utoipa::path(get, path = "/v1/registry", tag = "registries", security(("bearer" = [])),
    responses((status = 200, body = [Registry]), (status = 401, body = ccm_api::ErrorBody)))]
async fn list_registries(State(s): State<AppState>, acct: Acct) -> ApiResult<Json<Vec<Registry>>> {
    Ok(Json(registries::list(&s, &acct).await?))
}

/// A registry of the selected account, without its password (any member).
#[utoipa::path(get, path = "/v1/registry/{registry_id}", tag = "registries", security(("bearer" = [])),
    params(("registry_id" = Uuid, Path)),
    responses((status = 200, body = Registry), (status = 404, body = ccm_api::ErrorBody)))]
async fn get_registry(
    State(s): State<AppState>,
    acct: Acct,
    Path(registry_id): Path<Uuid>,
) -> ApiResult<Json<Registry>> {
    Ok(Json(registries::get(&s, &acct, registry_id).await?))
}

/// Changes a registry with a JSON Patch (MANAGER only): `replace` (or `add`) of `/url`,
/// `/description`, `/credential` or `/credential/default`; `remove` of `/description`.
#[utoipa::path(patch, path = "/v1/registry/{registry_id}", tag = "registries", security(("bearer" = [])), request_body = Vec<PatchDocument>,
    params(("registry_id" = Uuid, Path)),
    responses((status = 200, body = Registry), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody),
        (status = 409, body = ccm_api::ErrorBody), (status = 422, body = ccm_api::ErrorBody)))]
async fn update_registry(
    State(s): State<AppState>,
    acct: Acct,
    Path(registry_id): Path<Uuid>,
    Body(patch): Body<Vec<PatchDocument>>,
) -> ApiResult<Json<Registry>> {
    Ok(Json(
        registries::update(&s, &acct, registry_id, patch).await?,
    ))
}

/// Deletes a registry (MANAGER only).
#[utoipa::path(delete, path = "/v1/registry/{registry_id}", tag = "registries", security(("bearer" = [])),
    params(("registry_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody)))]
async fn delete_registry(
    State(s): State<AppState>,
    acct: Acct,
    Path(registry_id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    registries::delete(&s, &acct, registry_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
