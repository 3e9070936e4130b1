//! Accounts: list, create (and select), select, delete with confirmation.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use ccm_api::accounts::{AccessRole, AccountRequest, ApprovalPolicy};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::{chrome_user, first};
use crate::AppState;
use crate::auth::CallerAuth;
use crate::console::form::{FieldErrors, FormData};
use crate::console::html::{
    Input, Nav, checkbox, csrf_input, error_summary, facts, field, page, select as choice, time,
};
use crate::console::session::{Authed, Posted};
use crate::console::{PageResult, done};
use crate::extract::{Path, Query};
use crate::service;
use ccm_api::list::MAX_LIMIT;

/// `?select=1`: the user was sent here because a page needs an account.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AccountsQuery {
    select: Option<String>,
}

async fn list_page(
    s: &AppState,
    a: &Authed,
    form: &FormData,
    errors: &FieldErrors,
    needs_account: bool,
) -> PageResult<Markup> {
    let chrome = chrome_user(s, a, Nav::Accounts).await?;
    let accounts = service::accounts::list(s, &a.caller, &first(MAX_LIMIT))
        .await?
        .items;
    let selected = match &a.caller.auth {
        CallerAuth::Session { session, .. } => session.selected_acct_id,
        CallerAuth::ApiKey(_) => None,
    };
    let content = html! {
        @if needs_account && !accounts.is_empty() {
            p.notice { "Select the account to work in." }
        }
        @if accounts.is_empty() {
            p.notice { "You are not a member of any account yet. Create one below: it gets its own zone, zone CA, applications, images and compute nodes." }
        } @else {
            div.table-wrap { table {
                thead { tr { th { "Account" } th { "Your role" } th { "Approvals" } th { "Simulated platforms" } th { "Created" } th { span.visually-hidden { "Actions" } } } }
                tbody {
                    @for rec in &accounts {
                        @let role = rec.roles.first().copied().unwrap_or(AccessRole::Reader);
                        tr {
                            td {
                                strong { (rec.name) }
                                @if selected == Some(rec.acct_id) { " " span.badge.ok { "SELECTED" } }
                            }
                            td { (role.as_str()) }
                            td { (rec.approval_policy.as_str()) }
                            td { @if rec.allow_simulated { span.badge { "TRUSTED" } } @else { "refused" } }
                            td { (time(rec.created_at)) }
                            td.actions {
                                @if selected != Some(rec.acct_id) {
                                    form.inline method="post" action=(format!("/console/accounts/{}/select", rec.acct_id)) {
                                        (csrf_input(&a.auth.csrf))
                                        button.small type="submit" aria-label=(format!("Select {}", rec.name)) { "Select" }
                                    }
                                    " "
                                }
                                @if role == AccessRole::Manager {
                                    a.button.small.secondary href=(format!("/console/accounts/{}/delete", rec.acct_id))
                                        aria-label=(format!("Delete {}", rec.name)) { "Delete…" }
                                }
                            }
                        }
                    }
                }
            } }
        }
        @if a.caller.is_sysadmin {
            p { "As system administrator you can also see every user and issue password reset tokens: " a href="/console/users" { "Users" } ", and the platform collateral quotes are verified with: " a href="/console/collateral" { "Collateral" } "." }
        }
        h2 #new { "Add an account" }
        (error_summary(errors))
        form.stack.panel method="post" action="/console/accounts" {
            (csrf_input(&a.auth.csrf))
            (field("name", "Account name", &form.text("name"), errors, Input {
                required: true, hint: Some("Unique on this manager, e.g. the team or environment."), ..Input::default()
            }))
            (choice("approval_policy", "Approvals", form.get("approval_policy").unwrap_or("MANUAL"), &[
                ("MANUAL", "A manager approves each domain, image and node"),
                ("AUTO_APPROVE", "Approve automatically (development only)"),
            ], errors, None))
            (checkbox("allow_simulated", "Trust simulated platforms", form.checked("allow_simulated"),
                Some("SIMULATED SGX platforms prove nothing about hardware: development and tests only.")))
            button type="submit" { "Add account" }
        }
    };
    Ok(page(&chrome, "Accounts", content))
}

/// `GET /console/accounts`.
pub(crate) async fn list(
    State(s): State<AppState>,
    a: Authed,
    Query(q): Query<AccountsQuery>,
) -> PageResult<Markup> {
    list_page(
        &s,
        &a,
        &FormData::default(),
        &FieldErrors::default(),
        q.select.is_some(),
    )
    .await
}

/// `POST /console/accounts`: creates the account and selects it.
pub(crate) async fn create(
    State(s): State<AppState>,
    a: Authed,
    Posted(form): Posted,
) -> PageResult {
    let mut errors = FieldErrors::default();
    let policy = ApprovalPolicy::parse(form.get("approval_policy").unwrap_or("MANUAL"));
    if policy.is_none() {
        errors.add("approval_policy", "choose one of the listed policies");
    }
    if errors.is_empty() {
        let req = AccountRequest {
            name: form.text("name").trim().to_string(),
            approval_policy: policy,
            zone_ca_key_type: None,
            allow_simulated: Some(form.checked("allow_simulated")),
        };
        match service::accounts::create(&s, &a.caller, req).await {
            Ok(rec) => {
                service::accounts::select(&s, &a.caller, rec.acct_id).await?;
                return Ok(done(
                    &a.auth,
                    "/console",
                    &format!("Account “{}” created and selected.", rec.name),
                ));
            }
            Err(e) => errors.absorb_api(e, |_| None)?,
        }
    }
    let body = list_page(&s, &a, &form, &errors, false).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
}

/// `POST /console/accounts/{id}/select`.
pub(crate) async fn select(
    State(s): State<AppState>,
    a: Authed,
    Path(id): Path<Uuid>,
    Posted(_): Posted,
) -> PageResult {
    service::accounts::select(&s, &a.caller, id).await?;
    let name = service::accounts::get(&s, &a.caller, id).await?.name;
    Ok(done(
        &a.auth,
        "/console",
        &format!("Working in account “{name}”."),
    ))
}

async fn delete_page(
    s: &AppState,
    a: &Authed,
    id: Uuid,
    errors: &FieldErrors,
) -> PageResult<Markup> {
    let rec = service::accounts::deletable(s, &a.caller, id).await?;
    let counts = service::accounts::get(s, &a.caller, id).await?.totals;
    let chrome = chrome_user(s, a, Nav::Accounts).await?;
    let content = html! {
        div.confirm {
            p { "Deleting the account removes everything it owns, at once and for good:" }
            (facts(&[
                ("Applications", html! { (counts.apps) }),
                ("Images", html! { (counts.builds) }),
                ("Pending tasks", html! { (counts.pending_tasks) }),
                ("Members", html! { (counts.users) }),
            ]))
            p { "Its zone CA, join tokens, compute nodes and certificates go with it; nodes enrolled in it can no longer obtain certificates." }
            (error_summary(errors))
            form.stack method="post" action=(format!("/console/accounts/{id}/delete")) {
                (csrf_input(&a.auth.csrf))
                (field("confirm_name", &format!("Type the account name “{}” to confirm", rec.name), "", errors, Input {
                    required: true, autocomplete: Some("off"), ..Input::default()
                }))
                button.danger type="submit" { "Delete account" }
                " "
                a.button.secondary href="/console/accounts" { "Cancel" }
            }
        }
    };
    Ok(page(
        &chrome,
        &format!("Delete account “{}”", rec.name),
        content,
    ))
}

/// `GET /console/accounts/{id}/delete`: the confirmation page.
pub(crate) async fn confirm_delete(
    State(s): State<AppState>,
    a: Authed,
    Path(id): Path<Uuid>,
) -> PageResult<Markup> {
    delete_page(&s, &a, id, &FieldErrors::default()).await
}

/// `POST /console/accounts/{id}/delete`: deletes when the typed name matches.
pub(crate) async fn delete(
    State(s): State<AppState>,
    a: Authed,
    Path(id): Path<Uuid>,
    Posted(form): Posted,
) -> PageResult {
    let rec = service::accounts::deletable(&s, &a.caller, id).await?;
    if form.text("confirm_name").trim() != rec.name {
        let mut errors = FieldErrors::default();
        errors.add(
            "confirm_name",
            "does not match the account name; nothing was deleted",
        );
        let body = delete_page(&s, &a, id, &errors).await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response());
    }
    service::accounts::delete(&s, &a.caller, id).await?;
    Ok(done(
        &a.auth,
        "/console/accounts",
        &format!(
            "Account “{}” and everything it owned were deleted.",
            rec.name
        ),
    ))
}
