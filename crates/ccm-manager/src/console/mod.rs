//! The web console: server-rendered HTML pages for people, under `/console`.
//!
//! Design:
//! - **No JavaScript build step.** Pages are HTML rendered with [`maud`] (compile-time
//!   templates that escape every interpolated value) and styled by one stylesheet. One small
//!   script adds copy buttons and live conversion progress; every page works without it.
//! - **Same business logic as the API.** Forms are turned into the API's request types and
//!   handed to the same service functions the REST handlers call (`routes::*::create`,
//!   `update`, `decide`, ...), so validation, roles, workflows and the audit trail are
//!   identical. Validation errors come back naming API fields; form inputs carry those names,
//!   so each message appears next to its input.
//! - **Sessions and CSRF** are described in [`session`]: the API's session store with the token
//!   in an `HttpOnly`, `SameSite=Strict` (and, over HTTPS, `Secure`, `__Host-`) cookie; every
//!   form carries a token checked before the handler runs, so a refused post changes nothing.
//! - **Post/redirect/get.** A successful form answers `303 See Other` with a one-shot message;
//!   a refused one answers 422 with the form, the values entered and the errors.
//! - **Roles and accounts.** Pages act in the session's selected account with the user's role
//!   in it ([`crate::auth::Acct`]); objects of other accounts answer 404 and actions above the
//!   user's role 403, exactly as in the API. Buttons a role may not use are not shown.
//! - **Bounded pages.** Lists are paginated in the database (50 rows), so a page costs the same
//!   with 10 or 100,000 objects in the account.
//! - **SIMULATED** platforms, nodes and certificates always carry a visible label.

mod assets;
mod form;
mod html;
mod pages;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::html;

use crate::AppState;
use crate::error::{ApiError, InternalCause};
use session::{ConsoleAuth, ConsoleKeys};

/// Rows per list page.
pub(crate) const PAGE_SIZE: i64 = 50;

/// The console's routes (`/`, `/console/...`), ready to merge into the manager's router.
pub(crate) fn router(state: &AppState) -> Router<AppState> {
    use pages::{
        accounts, apps, audit, auth, certs, collateral, images, nodes, overview, tasks, users,
    };
    let pages = Router::new()
        .route("/console", get(overview::show))
        .route("/console/signup", get(auth::signup_form).post(auth::signup))
        .route("/console/login", get(auth::login_form).post(auth::login))
        .route(
            "/console/reset-password",
            get(auth::reset_form).post(auth::reset),
        )
        .route("/console/logout", post(auth::logout))
        .route(
            "/console/accounts",
            get(accounts::list).post(accounts::create),
        )
        .route("/console/accounts/{id}/select", post(accounts::select))
        .route(
            "/console/accounts/{id}/delete",
            get(accounts::confirm_delete).post(accounts::delete),
        )
        .route("/console/apps", get(apps::list).post(apps::create))
        .route("/console/apps/new", get(apps::new_form))
        .route("/console/apps/{id}", get(apps::show))
        .route(
            "/console/apps/{id}/edit",
            get(apps::edit_form).post(apps::update),
        )
        .route(
            "/console/apps/{id}/delete",
            get(apps::confirm_delete).post(apps::delete),
        )
        .route("/console/images", get(images::list).post(images::create))
        .route("/console/images/new", get(images::new_form))
        .route("/console/images/{id}", get(images::show))
        .route("/console/images/{id}/progress", get(images::progress))
        .route(
            "/console/images/{id}/delete",
            get(images::confirm_delete).post(images::delete),
        )
        .route("/console/tasks", get(tasks::list))
        .route("/console/tasks/{id}", get(tasks::show))
        .route("/console/tasks/{id}/approve", post(tasks::approve))
        .route("/console/tasks/{id}/deny", post(tasks::deny))
        .route("/console/nodes", get(nodes::list))
        .route(
            "/console/nodes/enroll",
            get(nodes::enroll_form).post(nodes::enroll),
        )
        .route(
            "/console/nodes/tokens/{id}/revoke",
            post(nodes::revoke_token),
        )
        .route("/console/nodes/{id}", get(nodes::show))
        .route("/console/nodes/{id}/deactivate", post(nodes::deactivate))
        .route("/console/running", get(certs::running))
        .route("/console/certificates", get(certs::list))
        .route("/console/certificates/{id}", get(certs::show))
        .route("/console/certificates/{id}/pem", get(certs::pem))
        .route("/console/zone/certificate", get(certs::zone_ca))
        .route("/console/audit", get(audit::list))
        .route("/console/users", get(users::list))
        .route("/console/collateral", get(collateral::list))
        .route("/console/users/{id}/reset-token", post(users::reset_token))
        .route("/console/{*rest}", get(not_found).post(not_found))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            session::middleware,
        ))
        .layer(axum::Extension(Arc::new(ConsoleKeys::default())));
    Router::new()
        .route("/", get(|| async { see_other("/console") }))
        .route("/console/", get(|| async { see_other("/console") }))
        .route("/console/static/{name}", get(assets::serve))
        .merge(pages)
}

async fn not_found() -> ConsoleError {
    ConsoleError::NotFound("page")
}

/// `303 See Other` to `to`.
pub(crate) fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

/// `303 See Other` to `to`, showing `message` there once.
pub(crate) fn done(auth: &ConsoleAuth, to: &str, message: &str) -> Response {
    let mut r = see_other(to);
    let names = auth.names;
    r.headers_mut().append(
        axum::http::header::SET_COOKIE,
        names.cookie(names.flash(), &session::encode_flash(message), 60),
    );
    r
}

/// Why a console request did not produce its page.
#[derive(Debug)]
pub(crate) enum ConsoleError {
    /// Not signed in: to the login page, then back to `next`.
    Login {
        /// Where to return after login (empty: the overview).
        next: String,
    },
    /// Signed in, but no account is selected (or the user left it).
    NoAccount,
    /// A form without a valid CSRF token.
    Csrf,
    /// No such object in the account.
    NotFound(&'static str),
    /// Any other refusal or failure, as the API would answer it.
    Api(ApiError),
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        ConsoleError::Api(e)
    }
}

impl From<crate::service::ServiceError> for ConsoleError {
    fn from(e: crate::service::ServiceError) -> Self {
        match e {
            crate::service::ServiceError::NotFound(what) => ConsoleError::NotFound(what),
            other => ConsoleError::Api(other.into()),
        }
    }
}

impl From<crate::Error> for ConsoleError {
    fn from(e: crate::Error) -> Self {
        ConsoleError::Api(e.into())
    }
}

impl From<ccm_store::Error> for ConsoleError {
    fn from(e: ccm_store::Error) -> Self {
        ConsoleError::Api(e.into())
    }
}

fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = html::bare_page(
        title,
        None,
        html! {
            p { (message) }
            p { a href="/console" { "Back to the console" } }
        },
    );
    (status, body).into_response()
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self {
            ConsoleError::Login { next } => {
                let to = if next.is_empty() {
                    "/console/login".to_string()
                } else {
                    format!("/console/login?next={}", session::encode_flash(&next))
                };
                see_other(&to)
            }
            ConsoleError::NoAccount => see_other("/console/accounts?select=1"),
            ConsoleError::Csrf => error_page(
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form has expired or did not come from this console, so nothing was \
                 changed. Go back, reload the page and submit it again.",
            ),
            ConsoleError::NotFound(what) => error_page(
                StatusCode::NOT_FOUND,
                "Not found",
                &format!("This {what} does not exist in the selected account."),
            ),
            ConsoleError::Api(e) => {
                let status = e.status();
                let message = e.body().message.clone();
                let cause = e.into_response().extensions_mut().remove::<InternalCause>();
                let (title, message) = match status {
                    StatusCode::FORBIDDEN => ("Not allowed", message),
                    StatusCode::NOT_FOUND => ("Not found", message),
                    StatusCode::CONFLICT => ("Not possible now", message),
                    s if s.is_server_error() => (
                        "Something went wrong",
                        "The manager could not complete this request. It has been logged; \
                         try again in a moment."
                            .to_string(),
                    ),
                    _ => ("Request refused", message),
                };
                let mut r = error_page(status, title, &message);
                if let Some(c) = cause {
                    r.extensions_mut().insert(c);
                }
                r
            }
        }
    }
}

/// Result of a console handler.
pub(crate) type PageResult<T = Response> = Result<T, ConsoleError>;
