//! Users (system administrators): every user, and issuing a password reset token.

use axum::extract::State;
use maud::{Markup, html};
use uuid::Uuid;

use super::{chrome_user, first};
use crate::AppState;
use crate::console::PageResult;
use crate::console::html::{Nav, csrf_input, facts, page, time};
use crate::console::session::{Authed, Posted};
use crate::extract::Path;
use crate::service::{self, ServiceError};
use ccm_api::list::MAX_LIMIT;

fn require_admin(a: &Authed) -> Result<(), ServiceError> {
    if a.caller.is_sysadmin {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(
            "the users page is for system administrators".into(),
        ))
    }
}

/// `GET /console/users`: every user, each with a button that issues a reset token.
pub(crate) async fn list(State(s): State<AppState>, a: Authed) -> PageResult<Markup> {
    require_admin(&a)?;
    let chrome = chrome_user(&s, &a, Nav::Accounts).await?;
    let users = service::users::list(&s, a.caller.clone(), &first(MAX_LIMIT))
        .await?
        .items;
    let content = html! {
        p.lead { "A user who lost their password gets a single-use reset token from here; pass the link on (it is e-mailed too when the manager has SMTP)." }
        div.table-wrap { table {
            thead { tr { th { "E-mail" } th { "Name" } th { "Created" } th { "Last login" } th { span.visually-hidden { "Actions" } } } }
            tbody {
                @for u in &users {
                    tr {
                        td { (u.user_email) @if u.is_sysadmin { " " span.badge { "ADMIN" } } }
                        td { (u.first_name.as_deref().unwrap_or_default()) " " (u.last_name.as_deref().unwrap_or_default()) }
                        td { (time(u.created_at)) }
                        td { @if let Some(t) = u.last_logged_in_at { (time(t)) } @else { "never" } }
                        td.actions {
                            form.inline method="post" action=(format!("/console/users/{}/reset-token", u.user_id)) {
                                (csrf_input(&a.auth.csrf))
                                button.small.secondary type="submit" aria-label=(format!("Issue a reset token for {}", u.user_email)) { "Issue reset token" }
                            }
                        }
                    }
                }
            }
        } }
    };
    Ok(page(&chrome, "Users", content))
}

/// `POST /console/users/{id}/reset-token`: issues the token and shows it once.
pub(crate) async fn reset_token(
    State(s): State<AppState>,
    a: Authed,
    Path(id): Path<Uuid>,
    Posted(_): Posted,
) -> PageResult<Markup> {
    require_admin(&a)?;
    let issued = service::passwords::issue_reset_token(&s, &a.caller, id).await?;
    let chrome = chrome_user(&s, &a, Nav::Accounts).await?;
    let content = html! {
        p.notice { "Shown once. Give the link (or the token) to " strong { (issued.user_email) } " by a channel you trust; it works once." }
        (facts(&[
            ("Reset link", html! { code { (issued.reset_url) } }),
            ("Token", html! { code { (issued.reset_token) } }),
            ("Expires", time(issued.expires_at)),
            ("E-mailed", html! { @if issued.emailed { "yes" } @else { "no" } }),
        ]))
        p { a href="/console/users" { "Back to the users" } }
    };
    Ok(page(&chrome, "Password reset token", content))
}
