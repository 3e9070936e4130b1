//! Sign-up, login and logout.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Response};
use ccm_api::users::SignupRequest;
use maud::{Markup, html};
use serde::Deserialize;

use crate::AppState;
use crate::auth::CallerAuth;
use crate::console::form::{FieldErrors, FormData};
use crate::console::html::{Input, bare_page, csrf_input, error_summary, field};
use crate::console::session::{Authed, ConsoleAuth, Posted, safe_next};
use crate::console::{PageResult, done, see_other};
use crate::extract::Query;
use crate::ratelimit::ClientIp;
use crate::service::{self, ServiceError};

/// `?invitation=` of the sign-up page (the link of an invitation).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SignupQuery {
    invitation: Option<String>,
}

/// `?user=&token=` of the password reset page (the link of a reset token).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ResetQuery {
    user: Option<String>,
    token: Option<String>,
}

/// `?next=` of the login page.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

fn login_page(auth: &ConsoleAuth, email: &str, next: &str, errors: &FieldErrors) -> Markup {
    bare_page(
        "Log in",
        auth.flash.as_deref(),
        html! {
            (error_summary(errors))
            form.stack method="post" action="/console/login" {
                (csrf_input(&auth.csrf))
                input type="hidden" name="next" value=(next);
                (field("user_email", "E-mail", email, errors, Input {
                    kind: "email", required: true, autocomplete: Some("username"), ..Input::default()
                }))
                (field("user_password", "Password", "", errors, Input {
                    kind: "password", required: true, autocomplete: Some("current-password"), ..Input::default()
                }))
                button type="submit" { "Log in" }
            }
            p { "No user yet? " a href="/console/signup" { "Sign up" } }
        },
    )
}

/// `GET /console/login`.
pub(crate) async fn login_form(auth: ConsoleAuth, Query(q): Query<NextQuery>) -> Response {
    if auth.caller.is_some() {
        return see_other("/console");
    }
    let next = q.next.filter(|n| safe_next(n)).unwrap_or_default();
    login_page(&auth, "", &next, &FieldErrors::default()).into_response()
}

fn session_cookie(auth: &ConsoleAuth, token: &str, max_age: i64) -> axum::http::HeaderValue {
    auth.names.cookie(auth.names.session(), token, max_age)
}

/// Logs in and answers with the session cookie and a redirect to `next`.
async fn open_session(
    s: &AppState,
    auth: &ConsoleAuth,
    login: (&str, String, Option<std::net::IpAddr>),
    next: &str,
    message: Option<&str>,
) -> Result<Response, ServiceError> {
    let (email, password, client) = login;
    let (token, resp) = service::auth::password_login(s, email, password, client).await?;
    let to = if safe_next(next) { next } else { "/console" };
    let mut r = match message {
        Some(m) => done(auth, to, m),
        None => see_other(to),
    };
    let max_age = resp
        .session_info
        .session_expires_at
        .saturating_sub(s.clock.now());
    r.headers_mut()
        .append(SET_COOKIE, session_cookie(auth, &token, max_age));
    Ok(r)
}

/// A refusal that the login and sign-up forms show on the page: the status, the message and a
/// `Retry-After` for limits. Anything else is an error page.
fn form_refusal(e: &ServiceError) -> Option<(StatusCode, String, Option<u64>)> {
    match e {
        ServiceError::Unauthenticated { code, message } => Some((
            StatusCode::UNAUTHORIZED,
            if *code == "invalid_credentials" {
                "Wrong e-mail or password.".into()
            } else {
                message.clone()
            },
            None,
        )),
        ServiceError::RateLimited { retry_after_secs } => Some((
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many attempts. Try again in {retry_after_secs} s."),
            Some(*retry_after_secs),
        )),
        ServiceError::Busy { retry_after_secs } => Some((
            StatusCode::SERVICE_UNAVAILABLE,
            format!("The manager is busy. Try again in {retry_after_secs} s."),
            Some(*retry_after_secs),
        )),
        ServiceError::Forbidden(m) => Some((StatusCode::FORBIDDEN, m.clone(), None)),
        _ => None,
    }
}

fn with_retry_after(mut r: Response, retry_after: Option<u64>) -> Response {
    if let Some(secs) = retry_after {
        r.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(secs),
        );
    }
    r
}

/// `POST /console/login`.
pub(crate) async fn login(
    State(s): State<AppState>,
    ClientIp(client): ClientIp,
    auth: ConsoleAuth,
    Posted(form): Posted,
) -> PageResult {
    let email = form.text("user_email").trim().to_string();
    let next = form.text("next");
    let attempt = (email.as_str(), form.text("user_password"), client);
    match open_session(&s, &auth, attempt, &next, None).await {
        Ok(r) => Ok(r),
        Err(e) => match form_refusal(&e) {
            Some((status, message, retry_after)) => {
                let mut errors = FieldErrors::default();
                errors.general(message);
                let next = if safe_next(&next) {
                    next
                } else {
                    String::new()
                };
                Ok(with_retry_after(
                    (status, login_page(&auth, &email, &next, &errors)).into_response(),
                    retry_after,
                ))
            }
            None => Err(crate::ApiError::from(e).into()),
        },
    }
}

fn signup_page(
    auth: &ConsoleAuth,
    form: &FormData,
    errors: &FieldErrors,
    setup_pending: bool,
    open_signup: bool,
) -> Markup {
    bare_page(
        "Sign up",
        auth.flash.as_deref(),
        html! {
            @if setup_pending {
                p.lead {
                    "This manager has no administrator yet. The user who signs up with its setup \
                     token (the file setup-token in the manager's data directory) administers it."
                }
            }
            (error_summary(errors))
            form.stack method="post" action="/console/signup" {
                (csrf_input(&auth.csrf))
                @if setup_pending {
                    (field("setup_token", "Setup token", "", errors, Input {
                        kind: "password", required: !open_signup, autocomplete: Some("off"),
                        hint: Some("Printed by the manager on its first start and kept in the file setup-token of its data directory."),
                        ..Input::default()
                    }))
                }
                (field("user_email", "E-mail", &form.text("user_email"), errors, Input {
                    kind: "email", required: true, autocomplete: Some("username"), ..Input::default()
                }))
                (field("invitation_token", "Invitation token", &form.text("invitation_token"), errors, Input {
                    autocomplete: Some("off"),
                    hint: Some("From an invitation to an account: signing up with it makes you a member. Sign up with the invited e-mail address."),
                    ..Input::default()
                }))
                div.row {
                    (field("first_name", "First name", &form.text("first_name"), errors, Input {
                        autocomplete: Some("given-name"), ..Input::default()
                    }))
                    (field("last_name", "Last name", &form.text("last_name"), errors, Input {
                        autocomplete: Some("family-name"), ..Input::default()
                    }))
                }
                (field("user_password", "Password", "", errors, Input {
                    kind: "password", required: true, autocomplete: Some("new-password"),
                    hint: Some("At least 8 characters."), ..Input::default()
                }))
                (field("password_confirm", "Repeat the password", "", errors, Input {
                    kind: "password", required: true, autocomplete: Some("new-password"), ..Input::default()
                }))
                button type="submit" { "Sign up" }
            }
            p { "Already registered? " a href="/console/login" { "Log in" } }
        },
    )
}

/// `GET /console/signup`.
pub(crate) async fn signup_form(
    State(s): State<AppState>,
    auth: ConsoleAuth,
    Query(q): Query<SignupQuery>,
) -> PageResult {
    if auth.caller.is_some() {
        return Ok(see_other("/console"));
    }
    let pending = service::users::setup_pending(&s)
        .await
        .map_err(crate::ApiError::from)?;
    let form = q.invitation.map_or_else(FormData::default, |t| {
        FormData::with("invitation_token", &t)
    });
    Ok(signup_page(
        &auth,
        &form,
        &FieldErrors::default(),
        pending,
        s.config.open_signup,
    )
    .into_response())
}

/// `POST /console/signup`: creates the user, logs them in and sends them to the accounts page.
pub(crate) async fn signup(
    State(s): State<AppState>,
    ClientIp(client): ClientIp,
    auth: ConsoleAuth,
    Posted(form): Posted,
) -> PageResult {
    let mut errors = FieldErrors::default();
    let password = form.text("user_password");
    if password != form.text("password_confirm") {
        errors.add("password_confirm", "does not match the password");
    }
    let email = form.text("user_email").trim().to_string();
    let req = SignupRequest {
        user_email: email.clone(),
        user_password: password.clone(),
        first_name: form.opt("first_name"),
        last_name: form.opt("last_name"),
        setup_token: form.opt("setup_token"),
        invitation_token: form.opt("invitation_token"),
    };
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    let mut retry_after = None;
    if errors.is_empty() {
        match service::users::signup(&s, req, client).await {
            Ok(_) => {
                return open_session(
                    &s,
                    &auth,
                    (email.as_str(), password, client),
                    "/console/accounts",
                    Some("Welcome! Create an account to start."),
                )
                .await
                .map_err(|e| crate::ApiError::from(e).into());
            }
            Err(e) => match form_refusal(&e) {
                Some((st, message, retry)) => {
                    status = st;
                    retry_after = retry;
                    errors.general(message);
                }
                None => errors.absorb_api(crate::ApiError::from(e), |_| None)?,
            },
        }
    }
    let pending = service::users::setup_pending(&s)
        .await
        .map_err(crate::ApiError::from)?;
    Ok(with_retry_after(
        (
            status,
            signup_page(&auth, &form, &errors, pending, s.config.open_signup),
        )
            .into_response(),
        retry_after,
    ))
}

fn reset_page(auth: &ConsoleAuth, form: &FormData, errors: &FieldErrors) -> Markup {
    bare_page(
        "Set a new password",
        auth.flash.as_deref(),
        html! {
            p.lead { "Set a new password with the reset token an administrator gave you. The token works once; your sessions end." }
            (error_summary(errors))
            form.stack method="post" action="/console/reset-password" {
                (csrf_input(&auth.csrf))
                input type="hidden" name="user" value=(form.text("user"));
                (field("reset_token", "Reset token", &form.text("reset_token"), errors, Input {
                    required: true, autocomplete: Some("off"), ..Input::default()
                }))
                (field("new_password", "New password", "", errors, Input {
                    kind: "password", required: true, autocomplete: Some("new-password"),
                    hint: Some("At least 8 characters."), ..Input::default()
                }))
                (field("password_confirm", "Repeat the password", "", errors, Input {
                    kind: "password", required: true, autocomplete: Some("new-password"), ..Input::default()
                }))
                button type="submit" { "Set the password" }
            }
            p { a href="/console/login" { "Log in" } }
        },
    )
}

/// `GET /console/reset-password?user=&token=`: the form of a reset link.
pub(crate) async fn reset_form(auth: ConsoleAuth, Query(q): Query<ResetQuery>) -> PageResult {
    let mut form = FormData::with("user", q.user.as_deref().unwrap_or_default());
    form.push("reset_token", q.token.as_deref().unwrap_or_default());
    Ok(reset_page(&auth, &form, &FieldErrors::default()).into_response())
}

/// `POST /console/reset-password`: sets the password with the token, then on to the login.
pub(crate) async fn reset(
    State(s): State<AppState>,
    ClientIp(client): ClientIp,
    auth: ConsoleAuth,
    Posted(form): Posted,
) -> PageResult {
    let mut errors = FieldErrors::default();
    let password = form.text("new_password");
    if password != form.text("password_confirm") {
        errors.add("password_confirm", "does not match the password");
    }
    let user_id = uuid::Uuid::try_parse(form.text("user").trim()).ok();
    if user_id.is_none() {
        errors.general("this reset link is incomplete: ask the administrator for a new one");
    }
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    let mut retry_after = None;
    if let (Some(user_id), true) = (user_id, errors.is_empty()) {
        let req = ccm_api::users::PasswordResetRequest {
            reset_token: form.text("reset_token").trim().to_string(),
            new_password: password,
        };
        match service::passwords::reset(&s, user_id, req, client).await {
            Ok(()) => {
                return Ok(done(
                    &auth,
                    "/console/login",
                    "Your password was changed. Log in with the new one.",
                ));
            }
            Err(e) => match form_refusal(&e) {
                Some((st, message, retry)) => {
                    status = st;
                    retry_after = retry;
                    errors.general(message);
                }
                None => errors.absorb_api(crate::ApiError::from(e), |_| None)?,
            },
        }
    }
    Ok(with_retry_after(
        (status, reset_page(&auth, &form, &errors)).into_response(),
        retry_after,
    ))
}

/// `POST /console/logout`: ends the session everywhere and clears the cookie.
pub(crate) async fn logout(State(s): State<AppState>, a: Authed, Posted(_): Posted) -> PageResult {
    if matches!(a.caller.auth, CallerAuth::Session { .. }) {
        service::auth::logout(&s, &a.caller).await?;
    }
    let mut r = done(&a.auth, "/console/login", "You have been logged out.");
    r.headers_mut()
        .append(SET_COOKIE, session_cookie(&a.auth, "", 0));
    Ok(r)
}
