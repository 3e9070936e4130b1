//! The typed error of the service layer.

use ccm_api::FieldError;

/// Why a service call did not do what was asked. Adapters map it to a status (API) or a message
/// (console) in one place each; [`ServiceError::Internal`] never reaches a client as text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// No such object, or not one the caller may see (other accounts' objects look absent).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// An object a request field refers to does not exist (or is in another account).
    #[error("{what} not found")]
    MissingReference {
        /// The kind of object.
        what: &'static str,
        /// The request field naming it.
        field: &'static str,
    },
    /// The caller is known but its role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// The caller's role does not allow this value of a request field (e.g. a role above their
    /// own).
    #[error("{message}")]
    ForbiddenValue {
        /// The request field.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// No, or no longer valid, credentials.
    #[error("{message}")]
    Unauthenticated {
        /// A stable machine-readable code.
        code: &'static str,
        /// What to do about it.
        message: String,
    },
    /// The request is malformed as a whole (a stable code and a message).
    #[error("{message}")]
    BadRequest {
        /// A stable machine-readable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Field-level validation problems.
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    /// The request was refused for a stated reason (a stable code and what was checked), e.g.
    /// an enrollment whose quote or platform is not accepted.
    #[error("{message}")]
    Refused {
        /// A stable machine-readable code.
        code: &'static str,
        /// Why.
        message: String,
    },
    /// The request conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// A stable machine-readable code.
        code: &'static str,
        /// What conflicts.
        message: String,
        /// The field whose value conflicts, when one does.
        field: Option<&'static str>,
    },
    /// Too many requests from this caller: try again after the given time.
    #[error("too many requests; retry after {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a new request may succeed.
        retry_after_secs: u64,
    },
    /// The service is saturated or a dependency is away; retrying later may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// A bounded queue is full (password hashing under a flood): retry after the given time.
    #[error("busy; retry after {retry_after_secs} s")]
    Busy {
        /// Seconds to wait before retrying.
        retry_after_secs: u64,
    },
    /// A failure on the manager's side; logged, never shown to the client.
    #[error("internal: {0}")]
    Internal(String),
}

impl ServiceError {
    /// A bad request with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// A conflict with a code.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
            field: None,
        }
    }

    /// One invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// An internal failure (its text is logged only).
    pub fn internal(err: impl std::fmt::Display) -> Self {
        Self::Internal(err.to_string())
    }
}

impl From<ccm_store::Error> for ServiceError {
    fn from(e: ccm_store::Error) -> Self {
        match e {
            ccm_store::Error::NotFound(what) => Self::NotFound(what),
            ccm_store::Error::Conflict { what, field } => Self::Conflict {
                code: "conflict",
                message: format!("{what} with this {field} already exists"),
                field: Some(field),
            },
            ccm_store::Error::InvalidState(message) => Self::conflict("invalid_state", message),
            e @ ccm_store::Error::InvalidCursor => Self::invalid("next", e.to_string()),
            other => Self::internal(other),
        }
    }
}

impl From<crate::Error> for ServiceError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Store(s) => s.into(),
            other => Self::internal(other),
        }
    }
}

/// The result of a service call.
pub type ServiceResult<T> = Result<T, ServiceError>;
