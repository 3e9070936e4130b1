//! The crate's error type and the API's error responses.
//!
//! [`Error`] covers everything that can fail in the manager (configuration, files, database,
//! cryptography). [`ApiError`] is what a request handler returns: a status, a stable `code`, a
//! message and optionally the offending field, rendered as [`ccm_api::ErrorBody`]. The mapping
//! from failures to statuses lives in this file only. Server-side failures (5xx) get a generic
//! body; the real error is logged with the request's method and path.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ccm_api::{ErrorBody, FieldError};

/// Errors of the manager.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is wrong.
    #[error("configuration: {field}: {message}")]
    Config {
        /// The setting.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] ccm_store::Error),
    /// A certificate operation failed.
    #[error(transparent)]
    Pki(#[from] ccm_pki::Error),
    /// Sealing or opening a secret failed.
    #[error("secrets: {0}")]
    Crypto(&'static str),
    /// Password hashing failed.
    #[error("password hashing: {0}")]
    PasswordHash(String),
    /// TLS setup failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The master key does not match the database.
    #[error(
        "the master key {found} does not match the key {expected} this database was created with \
         (replicas must share master_key_file)"
    )]
    MasterKeyMismatch {
        /// The key id recorded in the database.
        expected: String,
        /// The id of the key file in use.
        found: String,
    },
    /// A blocking task failed.
    #[error("background task failed: {0}")]
    Join(String),
}

/// An error response of the API (boxed: handlers return it on every error path).
#[derive(Debug)]
pub struct ApiError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    status: StatusCode,
    body: ErrorBody,
    internal: Option<String>,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            status,
            body: ErrorBody {
                code: code.into(),
                message: message.into(),
                field: None,
                errors: Vec::new(),
            },
            internal: None,
            retry_after_secs: None,
        }))
    }

    /// Adds the field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.0.body.field = Some(field.into());
        self
    }

    /// Replaces the status code.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.0.status = status;
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The body.
    pub fn body(&self) -> &ErrorBody {
        &self.0.body
    }

    /// 400 with a specific code.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no credentials, or ones that are not (or no longer) valid.
    pub fn unauthorized(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 403: authenticated, but the role does not allow this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404: no such object (or not in the caller's account).
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 409: the request conflicts with the current state.
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 413.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body exceeds {limit} bytes"),
        )
    }

    /// 415.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected a request body with Content-Type: application/json",
        )
    }

    /// 422 with the field-level problems.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let first = errors.first().cloned();
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            first
                .as_ref()
                .map(|f| format!("{}: {}", f.field, f.message))
                .unwrap_or_else(|| "invalid request".into()),
        );
        e.0.body.field = first.map(|f| f.field);
        e.0.body.errors = errors;
        e
    }

    /// 422 for JSON that is well-formed but does not fit the request type (wrong type, missing
    /// or unknown field).
    pub fn invalid_field(field: Option<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message);
        e.0.body.field = field;
        e
    }

    /// 422 for a field of the reference's schema that ccm refuses because it does not implement
    /// the (security) behaviour the field asks for.
    pub fn unsupported_field(field: String, message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_field",
            message,
        );
        e.0.body.field = Some(field);
        e
    }

    /// 429 with `Retry-After`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests; retry after {retry_after_secs} s"),
        );
        e.0.retry_after_secs = Some(retry_after_secs);
        e
    }

    /// 503.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 503 with `Retry-After`: a bounded queue is full.
    pub fn busy(retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("the manager is busy; retry after {retry_after_secs} s"),
        );
        e.0.retry_after_secs = Some(retry_after_secs);
        e
    }

    /// 500: the real error is logged, the client gets a generic message.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal server error",
        );
        e.0.internal = Some(err.to_string());
        e
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(s) => s.into(),
            other => Self::internal(other),
        }
    }
}

impl From<ccm_store::Error> for ApiError {
    fn from(e: ccm_store::Error) -> Self {
        match e {
            ccm_store::Error::NotFound(what) => Self::not_found(what),
            ccm_store::Error::Conflict { what, field } => Self::conflict(
                "conflict",
                format!("{what} with this {field} already exists"),
            )
            .with_field(field),
            ccm_store::Error::InvalidState(message) => Self::conflict("invalid_state", message),
            other => Self::internal(other),
        }
    }
}

impl From<crate::service::ServiceError> for ApiError {
    fn from(e: crate::service::ServiceError) -> Self {
        use crate::service::ServiceError as S;
        match e {
            S::NotFound(what) => Self::not_found(what),
            S::MissingReference { what, field } => Self::not_found(what).with_field(field),
            S::Forbidden(message) => Self::forbidden(message),
            S::ForbiddenValue { field, message } => Self::forbidden(message).with_field(field),
            S::Unauthenticated { code, message } => Self::unauthorized(code, message),
            S::BadRequest { code, message } => Self::bad_request(code, message),
            S::Refused { code, message } => {
                Self::bad_request(code, message).with_status(StatusCode::FORBIDDEN)
            }
            S::Invalid(errors) => Self::validation(errors),
            S::Conflict {
                code,
                message,
                field,
            } => {
                let e = Self::conflict(code, message);
                match field {
                    Some(f) => e.with_field(f),
                    None => e,
                }
            }
            S::RateLimited { retry_after_secs } => Self::too_many_requests(retry_after_secs),
            S::Unavailable(message) => Self::unavailable(message),
            S::Busy { retry_after_secs } => Self::busy(retry_after_secs),
            S::Internal(cause) => Self::internal(cause),
        }
    }
}

/// The logged cause of a 5xx response, kept in the response extensions for the logging layer.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Inner {
            status,
            body,
            internal,
            retry_after_secs,
        } = *self.0;
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(cause) = internal {
            resp.extensions_mut().insert(InternalCause(cause));
        }
        resp
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
