//! `/v1/audit`: the hash-chained audit log.

use axum::Json;
use axum::extract::State;
use ccm_api::audit::AuditPage;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::Query;
use crate::service::audit;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// Return entries with `seq` greater than this (default 0).
    after: Option<i64>,
    /// Page size (default 100, at most 1000).
    limit: Option<i64>,
}

/// Audit entries in ascending order. A system administrator (with a session) gets the whole
/// chain; an account MANAGER gets the selected account's entries.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 403, body = ccm_api::ErrorBody)))]
async fn list_audit(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    let page = audit::page(&s, caller, q.after.unwrap_or(0), q.limit.unwrap_or(100)).await?;
    Ok(Json(page))
}
