//! `/v1/audit`: the hash-chained audit log.

use axum::Json;
use axum::extract::State;
use ccm_api::accounts::AccessRole;
use ccm_api::audit::AuditPage;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{Acct, Caller, CallerAuth};
use crate::error::ApiResult;
use crate::extract::Query;
use crate::validate::Checker;

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
    let mut c = Checker::new();
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(100);
    c.range("after", after, 0, i64::MAX);
    c.range("limit", limit, 1, 1000);
    c.finish()?;
    let sysadmin = caller.is_sysadmin && matches!(caller.auth, CallerAuth::Session { .. });
    let scope = if sysadmin {
        None
    } else {
        let acct = Acct::of(caller, &s).await?;
        acct.require(AccessRole::Manager)?;
        Some(acct.acct_id)
    };
    let entries = s.store.list_audit(scope, after, limit).await?;
    let next_after = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(AuditPage {
        entries,
        next_after,
        complete_chain: scope.is_none(),
    }))
}
