//! Extractors whose rejections use the API's error format.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use bytes::Bytes;
use ccm_api::compat::ReferenceFields;
use ccm_api::list::PageQuery;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body. Content type must be `application/json`; a body above the configured
/// limit is 413; malformed JSON is 400 `invalid_json`; a field of the reference's schema that
/// would change security behaviour ccm does not implement is 422 `unsupported_field` naming it,
/// while the reference's fields ccm ignores are dropped ([`ccm_api::compat`]); JSON of the
/// wrong shape (wrong type, missing or unknown field) is 422 `invalid_field` naming the field's
/// path.
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + ReferenceFields, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim().to_ascii_lowercase();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::unsupported_media_type());
        }
        let limit = req.extensions().get::<BodyLimit>().map_or(0, |l| l.0);
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large(limit)
            } else if is_body_timeout(&rejection) {
                ApiError::bad_request(
                    "body_timeout",
                    "the request body did not arrive within the time allowed",
                )
                .with_status(axum::http::StatusCode::REQUEST_TIMEOUT)
            } else {
                ApiError::bad_request("invalid_body", "the request body could not be read")
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

/// Whether a body read failed because the server's body deadline passed.
fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<crate::BodyTimeout>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The configured body limit, put into request extensions so rejections can name it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Parses JSON with the error classification of [`Json`].
pub fn parse_json<T: DeserializeOwned + ReferenceFields>(bytes: &[u8]) -> Result<T, ApiError> {
    let fields = T::reference_fields();
    if fields.is_empty() {
        return parse_exact(bytes);
    }
    let mut value: serde_json::Value = parse_exact(bytes)?;
    ccm_api::compat::apply(&mut value, fields).map_err(|u| {
        let message = u.to_string();
        ApiError::unsupported_field(u.field, message)
    })?;
    let bytes = serde_json::to_vec(&value).map_err(ApiError::internal)?;
    parse_exact(&bytes)
}

/// [`parse_json`] without the reference's fields.
fn parse_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let malformed = |e: serde_json::Error| {
        ApiError::bad_request("invalid_json", format!("malformed JSON: {e}"))
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        // The whole body must be this one value.
        Ok(v) => de.end().map(|()| v).map_err(malformed),
        Err(e) => {
            // A syntax error anywhere in the body is reported as such, before a shape error
            // that the parse came across first.
            serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(malformed)?;
            let path = e.path().to_string();
            let inner = e.into_inner();
            use serde_json::error::Category;
            match inner.classify() {
                Category::Syntax | Category::Eof | Category::Io => Err(malformed(inner)),
                Category::Data => {
                    let mut field = (path != ".").then_some(path);
                    // serde reports a missing field at the enclosing object; name the field itself.
                    let text = inner.to_string();
                    for marker in ["missing field `"] {
                        if let Some(rest) = text.strip_prefix(marker)
                            && let Some((name, _)) = rest.split_once('`')
                        {
                            field = Some(match field {
                                Some(p) => format!("{p}.{name}"),
                                None => name.to_string(),
                            });
                        }
                    }
                    let msg = match &field {
                        Some(f) => format!("{f}: {inner}"),
                        None => inner.to_string(),
                    };
                    Err(ApiError::invalid_field(field, msg))
                }
            }
        }
    }
}

/// Path parameters; a malformed value (e.g. an id that is not a UUID) is 400 `invalid_path`.
#[derive(Debug, Clone)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|r| ApiError::bad_request("invalid_path", r.body_text()))
    }
}

/// Query parameters; malformed ones are 400 `invalid_query`.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|r| ApiError::bad_request("invalid_query", r.body_text()))
    }
}

/// A list's query string: the paging parameters every list shares (`limit`, `offset`, `next`)
/// and the list's own filters `F`, whose fields are text (ids, statuses) and which refuse names
/// they do not know. Malformed or unknown parameters are 400 `invalid_query` naming them.
#[derive(Debug, Clone)]
pub struct ListQuery<F>(pub PageQuery, pub F);

impl<F: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ListQuery<F> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|r| ApiError::bad_request("invalid_query", r.body_text()))?
            .0;
        let mut page = PageQuery::default();
        let mut filters = serde_json::Map::new();
        for (name, value) in pairs {
            match name.as_str() {
                "limit" => page.limit = Some(integer("limit", &value)?),
                "offset" => page.offset = Some(integer("offset", &value)?),
                "next" => page.next = Some(value),
                _ => {
                    filters.insert(name, serde_json::Value::String(value));
                }
            }
        }
        let filters = serde_json::from_value(serde_json::Value::Object(filters)).map_err(|e| {
            ApiError::bad_request("invalid_query", format!("invalid query parameter: {e}"))
        })?;
        Ok(ListQuery(page, filters))
    }
}

fn integer(name: &str, value: &str) -> Result<i64, ApiError> {
    value.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            format!("query parameter `{name}` must be an integer, not {value:?}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[allow(dead_code)]
        a: u32,
    }

    impl ReferenceFields for Body {
        fn reference_fields() -> &'static [ccm_api::compat::ReferenceField] {
            const FIELDS: &[ccm_api::compat::ReferenceField] = &[
                ccm_api::compat::ReferenceField::ignore("logo"),
                ccm_api::compat::ReferenceField::refuse("auth", "passwords only"),
            ];
            FIELDS
        }
    }

    fn code(body: &str) -> String {
        parse_json::<Body>(body.as_bytes())
            .map(|_| "ok".to_string())
            .unwrap_or_else(|e| e.body().code.clone())
    }

    #[test]
    fn syntax_errors_come_before_shape_errors_and_trailing_text_is_refused() {
        assert_eq!(code(r#"{"a": 1}"#), "ok");
        // A well-formed value followed by more text.
        assert_eq!(code(r#"{"a": 1} x"#), "invalid_json");
        assert_eq!(code(r#"{"a": 1} {}"#), "invalid_json");
        // The wrong type comes first in the text, the syntax error later: still malformed.
        assert_eq!(code(r#"{"a": "x", "b": [1,}"#), "invalid_json");
        assert_eq!(code(r#"{"a": "x"}"#), "invalid_field");
        assert_eq!(code(r#"{"a": 1, "b": 2}"#), "invalid_field");
    }

    #[test]
    fn reference_fields_are_dropped_or_refused_before_the_shape_is_checked() {
        assert_eq!(code(r#"{"a": 1, "logo": "x"}"#), "ok");
        assert_eq!(code(r#"{"a": 1, "auth": []}"#), "unsupported_field");
        assert_eq!(code(r#"{"a": 1, "auth": null}"#), "ok");
        assert_eq!(code(r#"{"a": 1, "logo": "x", "b": 2}"#), "invalid_field");
        assert_eq!(code(r#"{"a": 1, "logo": "x"} x"#), "invalid_json");
        let e = parse_json::<Body>(br#"{"a": "x", "auth": [1]}"#).unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.body().field.as_deref(), Some("auth"));
        assert!(
            e.body().message.contains("passwords only"),
            "{}",
            e.body().message
        );
    }
}
