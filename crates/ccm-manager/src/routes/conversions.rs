//! `/v1/builds/convert-app` and `/v1/builds/{build_id}/progress`: images converted by the
//! manager (see [`crate::conversion`]). `POST /v1/builds` with a conversion request ends up here
//! too.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ccm_api::builds::{Build, ConversionProgress, ConvertAppBuildRequest, CreateBuildRequest};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Acct;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json as Body, Path};
use crate::service::conversions;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(convert_app))
        .routes(routes!(get_progress))
}

/// The body of `POST /v1/builds`: a conversion request, or known values.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Documents the request body; requests are parsed by form.
pub(crate) enum CreateBuildBody {
    /// Convert the app's input image.
    Convert(ConvertAppBuildRequest),
    /// Record an image from known values.
    Known(CreateBuildRequest),
}

/// Whether a `POST /v1/builds` body is a conversion request: one without the known-values
/// fields `mrenclave`, `mrsigner` and `docker_info`.
pub(crate) fn is_conversion_request(body: &Value) -> bool {
    body.as_object().is_some_and(|o| {
        !o.contains_key("mrenclave")
            && !o.contains_key("mrsigner")
            && !o.contains_key("docker_info")
    })
}

/// Removes quoted values from a deserialisation message (`invalid type: string "...",
/// expected ...`), so that a misplaced credential is not echoed back.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("string \"") {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        out.push_str("string");
        let after = &tail["string \"".len()..];
        // Skip to the closing quote (serde_json escapes inner quotes as \").
        let mut end = None;
        let mut escaped = false;
        for (j, ch) in after.char_indices() {
            match ch {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(j);
                    break;
                }
                _ => escaped = false,
            }
        }
        rest = match end {
            Some(j) => &after[j + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// Parses a conversion request; error messages name the field but never repeat a value.
pub(crate) fn parse_conversion_request(body: &Value) -> ApiResult<ConvertAppBuildRequest> {
    crate::extract::parse_json::<ConvertAppBuildRequest>(body.to_string().as_bytes()).map_err(|e| {
        let b = e.body();
        let message = without_values(&b.message);
        if e.status() == StatusCode::UNPROCESSABLE_ENTITY {
            ApiError::invalid_field(b.field.clone(), message)
        } else {
            ApiError::bad_request(&b.code, message)
        }
    })
}

/// Converts the app's input image into an enclave image in the background (WRITER): the same
/// as `POST /v1/builds` with a conversion request. Answers 200 (as the reference does) with the
/// image, its `conversion` QUEUED.
#[utoipa::path(post, path = "/v1/builds/convert-app", tag = "builds", security(("bearer" = [])),
    request_body = ConvertAppBuildRequest,
    responses((status = 200, body = Build), (status = 403, body = ccm_api::ErrorBody), (status = 404, body = ccm_api::ErrorBody), (status = 409, body = ccm_api::ErrorBody), (status = 422, body = ccm_api::ErrorBody)))]
async fn convert_app(
    State(s): State<AppState>,
    acct: Acct,
    Body(body): Body<Value>,
) -> ApiResult<Json<Build>> {
    let req = parse_conversion_request(&body)?;
    Ok(Json(conversions::start(&s, &acct, req).await?))
}

/// The conversion job of an image: status, phase, progress and its log (the most recent 200
/// lines). 404 for images not converted by the manager.
#[utoipa::path(get, path = "/v1/builds/{build_id}/progress", tag = "builds", security(("bearer" = [])),
    params(("build_id" = Uuid, Path)),
    responses((status = 200, body = ConversionProgress), (status = 404, body = ccm_api::ErrorBody)))]
async fn get_progress(
    State(s): State<AppState>,
    acct: Acct,
    Path(build_id): Path<Uuid>,
) -> ApiResult<Json<ConversionProgress>> {
    Ok(Json(conversions::progress(&s, &acct, build_id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_not_echoed() {
        let m = r#"outputAuthConfig: invalid type: string "bob:s3cr\"et", expected struct AuthConfig at line 1"#;
        assert_eq!(
            without_values(m),
            "outputAuthConfig: invalid type: string, expected struct AuthConfig at line 1"
        );
        let e = parse_conversion_request(&serde_json::json!({
            "app_id": Uuid::nil(), "outputAuthConfig": "bob:hunter2-secret"
        }))
        .unwrap_err();
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.body().field.as_deref(), Some("outputAuthConfig"));
        assert!(
            !e.body().message.contains("hunter2"),
            "{}",
            e.body().message
        );
        assert!(is_conversion_request(&serde_json::json!({"app_id": "x"})));
        assert!(!is_conversion_request(
            &serde_json::json!({"app_id": "x", "mrenclave": "a"})
        ));
        assert!(!is_conversion_request(&serde_json::json!([1])));
    }
}
