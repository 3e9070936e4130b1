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
use crate::routes;

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
    email: &str,
    password: String,
    next: &str,
    message: Option<&str>,
) -> Result<Response, crate::ApiError> {
    let (token, resp) = routes::sys::password_login(s, email, password).await?;
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

/// `POST /console/login`.
pub(crate) async fn login(
    State(s): State<AppState>,
    auth: ConsoleAuth,
    Posted(form): Posted,
) -> PageResult {
    let email = form.text("user_email").trim().to_string();
    let next = form.text("next");
    match open_session(&s, &auth, &email, form.text("user_password"), &next, None).await {
        Ok(r) => Ok(r),
        Err(e) if e.status() == StatusCode::UNAUTHORIZED => {
            let mut errors = FieldErrors::default();
            errors.general("Wrong e-mail or password.");
            let next = if safe_next(&next) {
                next
            } else {
                String::new()
            };
            Ok((
                StatusCode::UNAUTHORIZED,
                login_page(&auth, &email, &next, &errors),
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}

fn signup_page(auth: &ConsoleAuth, form: &FormData, errors: &FieldErrors) -> Markup {
    bare_page(
        "Sign up",
        auth.flash.as_deref(),
        html! {
            p.lead { "The first user to sign up administers this manager." }
            (error_summary(errors))
            form.stack method="post" action="/console/signup" {
                (csrf_input(&auth.csrf))
                (field("user_email", "E-mail", &form.text("user_email"), errors, Input {
                    kind: "email", required: true, autocomplete: Some("username"), ..Input::default()
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
pub(crate) async fn signup_form(auth: ConsoleAuth) -> Response {
    if auth.caller.is_some() {
        return see_other("/console");
    }
    signup_page(&auth, &FormData::default(), &FieldErrors::default()).into_response()
}

/// `POST /console/signup`: creates the user, logs them in and sends them to the accounts page.
pub(crate) async fn signup(
    State(s): State<AppState>,
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
    };
    if errors.is_empty() {
        match routes::users::signup_user(&s, req).await {
            Ok(_) => {
                return Ok(open_session(
                    &s,
                    &auth,
                    &email,
                    password,
                    "/console/accounts",
                    Some("Welcome! Create an account to start."),
                )
                .await?);
            }
            Err(e) => errors.absorb_api(e, |_| None)?,
        }
    }
    Ok((
        StatusCode::UNPROCESSABLE_ENTITY,
        signup_page(&auth, &form, &errors),
    )
        .into_response())
}

/// `POST /console/logout`: ends the session everywhere and clears the cookie.
pub(crate) async fn logout(State(s): State<AppState>, a: Authed, Posted(_): Posted) -> PageResult {
    if let CallerAuth::Session { session, .. } = &a.caller.auth {
        s.store
            .delete_session(session.session_id, &a.caller.actor(), s.clock.now())
            .await?;
    }
    let mut r = done(&a.auth, "/console/login", "You have been logged out.");
    r.headers_mut()
        .append(SET_COOKIE, session_cookie(&a.auth, "", 0));
    Ok(r)
}
