//! Route modules, one per resource; each returns an [`OpenApiRouter`] of its handlers.

pub(crate) mod accounts;
mod apikeys;
pub(crate) mod apps;
mod audit;
pub(crate) mod builds;
mod certificates;
mod collateral;
mod conversions;
mod node_agent;
mod nodes;
pub(crate) mod pccs;
mod registries;
pub(crate) mod sys;
pub(crate) mod tasks;
pub(crate) mod users;
pub(crate) mod zones;

use ccm_api::list::{ListMetadata, ListResponse};
use utoipa::Modify;
use utoipa::OpenApi as _;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use crate::error::ApiError;

/// One page of a list in the API's list shape (`{"items", "metadata"}`).
pub(crate) fn list_response<T>(p: ccm_store::Page<T>) -> axum::Json<ListResponse<T>> {
    axum::Json(ListResponse {
        metadata: ListMetadata::new(p.limit, p.offset, p.total_count, p.filtered_count, p.next),
        items: p.items,
    })
}

/// The filters of a list that has none: any parameter besides the paging ones is refused.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoFilters {}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "ccm manager API",
        description = "Confidential Computing Manager REST API. Authenticate with `POST /v1/sys/auth` \
            (HTTP Basic) to obtain a bearer token, select an account with \
            `POST /v1/sys/session/select_account/{acct_id}`; account-scoped endpoints act in the \
            selected account (or the API key's account). Roles per account: READER (read), \
            WRITER (also create/update/delete apps and images), MANAGER (also approve tasks, manage \
            members, join tokens and the account). Objects of other accounts answer 404. Errors \
            have the body `{\"code\", \"message\", \"field\"?, \"errors\"?}`."
    ),
    modifiers(&SecurityAddon),
    components(schemas(ccm_api::ErrorBody, ccm_api::FieldError))
)]
struct ApiDoc;

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(sys::router())
        .merge(users::router())
        .merge(accounts::router())
        .merge(apikeys::router())
        .merge(registries::router())
        .merge(apps::router())
        .merge(builds::router())
        .merge(conversions::router())
        .merge(tasks::router())
        .merge(zones::router())
        .merge(audit::router())
        .merge(nodes::router())
        // Each node gets `node_requests_per_second` on the agent-facing routes.
        .merge(
            node_agent::router().route_layer(axum::middleware::from_fn(crate::ratelimit::per_node)),
        )
        .merge(certificates::router())
        .merge(collateral::router())
}

/// Whether a request asks for a certificate as PEM (`Accept: application/x-pem-file` or
/// `application/pem-certificate-chain`) rather than JSON, the reference's default.
pub(crate) fn wants_pem(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .any(|v| v == "application/x-pem-file" || v == "application/pem-certificate-chain")
}

/// A PEM text as a response (`application/x-pem-file`).
pub(crate) fn pem_response(pem: String) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-pem-file")],
        pem,
    )
        .into_response()
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("endpoint")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    let mut e = ApiError::bad_request(
        "method_not_allowed",
        "this method is not allowed on this endpoint",
    );
    e = e.with_status(axum::http::StatusCode::METHOD_NOT_ALLOWED);
    e
}
