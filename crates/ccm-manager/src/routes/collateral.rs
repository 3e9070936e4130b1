//! `/v1/collateral`: the platform collateral the manager holds (system administrators).

use axum::Json;
use axum::extract::State;
use ccm_api::collateral::{CollateralBundle, CollateralSet, ImportOutcome, ImportResponse};
use ccm_attest::Collateral;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::Json as JsonBody;
use crate::service::collateral::{self, Offered};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_collateral, import_collateral))
        .routes(routes!(export_collateral))
}

/// The current collateral sets: per platform and root, their evaluation number, age, expiry,
/// source and the last refresh attempt.
#[utoipa::path(get, path = "/v1/collateral", tag = "collateral", security(("bearer" = [])),
    responses((status = 200, body = Vec<CollateralSet>), (status = 403, body = ccm_api::ErrorBody)))]
async fn list_collateral(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<CollateralSet>>> {
    Ok(Json(collateral::list(&s, &caller).await?))
}

/// Imports collateral (an air-gapped site's, or a PCS response saved elsewhere). Each set is
/// verified under the trusted roots and becomes current only if newer; one that does not verify
/// refuses the whole import (422) and changes nothing.
#[utoipa::path(post, path = "/v1/collateral", tag = "collateral", security(("bearer" = [])),
    request_body = CollateralBundle,
    responses((status = 200, body = ImportResponse), (status = 403, body = ccm_api::ErrorBody),
        (status = 422, body = ccm_api::ErrorBody)))]
async fn import_collateral(
    State(s): State<AppState>,
    caller: Caller,
    JsonBody(bundle): JsonBody<CollateralBundle>,
) -> ApiResult<Json<ImportResponse>> {
    let mut sets = Vec::with_capacity(bundle.collateral.len());
    for (i, v) in bundle.collateral.iter().enumerate() {
        let c = Collateral::from_json(v.to_string().as_bytes()).map_err(|e| {
            ApiError::validation(vec![ccm_api::FieldError {
                field: format!("collateral[{i}]"),
                message: format!("not QuoteCollateralV3: {e}"),
            }])
        })?;
        sets.push(c);
    }
    let results = collateral::import(&s, &caller, sets)
        .await?
        .into_iter()
        .map(|o| match o {
            Offered::Current => ImportOutcome::Current,
            Offered::Unchanged => ImportOutcome::Unchanged,
        })
        .collect();
    Ok(Json(ImportResponse { results }))
}

/// Every current standard set, as a bundle `POST /v1/collateral` (or `ccm collateral import`)
/// takes.
#[utoipa::path(get, path = "/v1/collateral/export", tag = "collateral", security(("bearer" = [])),
    responses((status = 200, body = CollateralBundle), (status = 403, body = ccm_api::ErrorBody)))]
async fn export_collateral(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<CollateralBundle>> {
    let texts = collateral::export(&s, &caller).await?;
    let collateral = texts
        .iter()
        .map(|t| serde_json::from_str(t).map_err(ApiError::internal))
        .collect::<ApiResult<Vec<serde_json::Value>>>()?;
    Ok(Json(CollateralBundle { collateral }))
}
