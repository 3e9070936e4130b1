//! Tasks: pending approvals with approve and deny (with a reason), history, details.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use ccm_api::accounts::AccessRole;
use ccm_api::tasks::{ApprovalStatus, Task, TaskStatusType, TaskType, TaskUpdateRequest};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::chrome;
use crate::AppState;
use crate::console::form::FieldErrors;
use crate::console::html::{
    Nav, badge, csrf_input, empty, error_summary, facts, page, pager, time,
};
use crate::console::session::{InAccount, Posted, safe_next};
use crate::console::{ConsoleError, PageResult, done};
use crate::extract::{Path, Query};
use crate::service;

/// `?status=&page=`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TasksQuery {
    status: Option<String>,
    page: Option<i64>,
}

/// Whether a task of this type can be approved by a person (certificate requests are issued
/// when their image and domain are approved).
fn approvable(t: &Task) -> bool {
    t.task_type != TaskType::CertificateIssuance
}

/// The approve and deny controls of a pending task.
fn actions(csrf: &str, t: &Task, back: &str, errors: &FieldErrors) -> Markup {
    let deny_id = format!("deny-{}", t.task_id);
    let reason_errors = errors.of("denial_reason");
    html! {
        @if approvable(t) {
            form.inline method="post" action=(format!("/console/tasks/{}/approve", t.task_id)) {
                (csrf_input(csrf))
                input type="hidden" name="back" value=(back);
                button.small type="submit" aria-label=(format!("Approve: {}", t.description)) { "Approve" }
            }
            " "
        }
        details.deny open[!reason_errors.is_empty()] {
            summary { "Deny…" }
            form method="post" action=(format!("/console/tasks/{}/deny", t.task_id)) {
                (csrf_input(csrf))
                input type="hidden" name="back" value=(back);
                label for=(deny_id) { "Reason " span.optional { "(optional, shown to the requester)" } }
                @for m in reason_errors { p.field-error id=(format!("{deny_id}-error")) { (m) } }
                input id=(deny_id) type="text" name="denial_reason" maxlength="1024"
                    aria-invalid=[(!reason_errors.is_empty()).then_some("true")];
                button.small.danger type="submit" { "Deny" }
            }
        }
    }
}

/// `GET /console/tasks`: pending tasks first; tabs for the decided ones.
pub(crate) async fn list(
    State(s): State<AppState>,
    ia: InAccount,
    Query(q): Query<TasksQuery>,
) -> PageResult<Markup> {
    let (page_no, list) = super::PageQuery { page: q.page }.list()?;
    let tab = q.status.as_deref().unwrap_or("INPROGRESS");
    let status = match tab {
        "ALL" => None,
        other => Some(TaskStatusType::parse(other).ok_or_else(|| {
            ConsoleError::Api(crate::ApiError::bad_request(
                "invalid_query",
                "status must be INPROGRESS, SUCCESS, DENIED, FAILED or ALL",
            ))
        })?),
    };
    let chrome = chrome(&s, &ia, Nav::Tasks).await?;
    let filter = ccm_store::TaskFilter {
        status,
        ..Default::default()
    };
    let listed = service::tasks::list(&s, &ia.acct, &filter, &list).await?;
    let (tasks, more) = (listed.items, listed.next.is_some());
    let manager = ia.acct.role >= AccessRole::Manager;
    let base = format!("/console/tasks?status={tab}");
    let back = if page_no > 1 {
        format!("{base}&page={page_no}")
    } else {
        base.clone()
    };
    let tabs = [
        ("INPROGRESS", "Pending"),
        ("SUCCESS", "Approved"),
        ("DENIED", "Denied"),
        ("ALL", "All"),
    ];
    let none = FieldErrors::default();
    let content = html! {
        nav.tabs aria-label="Task status" {
            @for (v, l) in tabs {
                a href=(format!("/console/tasks?status={v}")) aria-current=[(v == tab).then_some("page")] { (l) }
            }
        }
        @if !manager {
            p.notice { "Approving and denying tasks needs the MANAGER role; you have " (ia.acct.role.as_str()) "." }
        }
        @if tasks.is_empty() && page_no == 1 {
            (empty(if tab == "INPROGRESS" { "Nothing is waiting for approval." } else { "No tasks." }))
        } @else {
            div.table-wrap { table {
                thead { tr { th { "Task" } th { "Requested by" } th { "Created" } th { "Status" }
                    @if manager && tab == "INPROGRESS" { th { span.visually-hidden { "Decision" } } } } }
                tbody {
                    @for t in &tasks {
                        tr {
                            td.wrap {
                                (badge(t.task_type.as_str())) br;
                                a href=(format!("/console/tasks/{}", t.task_id)) { (t.description) }
                                @if !t.domains_added.is_empty() {
                                    br; span.muted { "Domains: " }
                                    @for d in &t.domains_added { code { (d) } " " }
                                }
                            }
                            td { (t.requester_info.requester_name) }
                            td.nowrap { (time(t.status.created_at)) }
                            td { (badge(t.status.status.as_str())) }
                            @if manager && tab == "INPROGRESS" {
                                td.actions {
                                    @if t.status.status == TaskStatusType::Inprogress {
                                        (actions(&ia.auth.csrf, t, &back, &none))
                                    }
                                }
                            }
                        }
                    }
                }
            } }
            (pager(&base, page_no, more))
        }
    };
    Ok(page(&chrome, "Tasks", content))
}

async fn load(s: &AppState, ia: &InAccount, id: Uuid) -> PageResult<Task> {
    Ok(service::tasks::get(s, &ia.acct, id).await?)
}

fn entity_link(t: &Task) -> Markup {
    let (path, label) = match t.task_type {
        TaskType::BuildWhitelist => ("images", "the image"),
        TaskType::DomainWhitelist | TaskType::PolicyChange => ("apps", "the application"),
        TaskType::NodeAttestation => ("nodes", "the compute node"),
        TaskType::CertificateIssuance => ("certificates", "the certificate"),
    };
    html! { a href=(format!("/console/{path}/{}", t.entity_id)) { (label) } }
}

async fn detail_page(
    s: &AppState,
    ia: &InAccount,
    t: &Task,
    errors: &FieldErrors,
) -> PageResult<Markup> {
    let chrome = chrome(s, ia, Nav::Tasks).await?;
    let manager = ia.acct.role >= AccessRole::Manager;
    let back = format!("/console/tasks/{}", t.task_id);
    let content = html! {
        (error_summary(errors))
        div.panel {
            (facts(&[
                ("Type", badge(t.task_type.as_str())),
                ("Status", badge(t.status.status.as_str())),
                ("About", entity_link(t)),
                ("Requested by", html! { (t.requester_info.requester_name) " (" (t.requester_info.requester_type.as_str()) ")" }),
                ("Created", time(t.status.created_at)),
                ("Last change", time(t.status.status_updated_at)),
                ("Domains", html! { @for d in &t.domains_added { code { (d) } " " } }),
            ]))
        }
        @if let Some(p) = &t.proposed_policy {
            h2 { "Proposed attestation policy" }
            div.panel {
                (facts(&[
                    ("Accepted TCB statuses", html! { @for st in &p.accepted_tcb_statuses { code { (format!("{st:?}")) } " " } }),
                    ("Debug enclaves", html! { @if p.allow_debug { "allowed" } @else { "refused" } }),
                    ("Minimum ISVSVN", html! { (p.min_isvsvn.map_or_else(|| "none".to_string(), |v| v.to_string())) }),
                    ("Simulated platforms", html! { @if p.allow_simulated { "trusted" } @else { "refused" } }),
                ]))
            }
        }
        @if manager && t.status.status == TaskStatusType::Inprogress {
            div.panel { (actions(&ia.auth.csrf, t, &back, errors)) }
        }
        h2 { "Decisions" }
        @if t.approvals.is_empty() {
            (empty("No decision yet."))
        } @else {
            ul {
                @for a in &t.approvals {
                    li {
                        (badge(a.status.as_str())) " by " (a.user_name) " · " (time(a.decided_at))
                        @if let Some(r) = &a.denial_reason { " · reason: " q { (r) } }
                    }
                }
            }
        }
    };
    Ok(page(&chrome, &t.description, content))
}

/// `GET /console/tasks/{id}`.
pub(crate) async fn show(
    State(s): State<AppState>,
    ia: InAccount,
    Path(id): Path<Uuid>,
) -> PageResult<Markup> {
    let t = load(&s, &ia, id).await?;
    detail_page(&s, &ia, &t, &FieldErrors::default()).await
}

fn back_to(form: &crate::console::form::FormData) -> String {
    let b = form.text("back");
    if safe_next(&b) {
        b
    } else {
        "/console/tasks".into()
    }
}

/// `POST /console/tasks/{id}/approve` (MANAGER).
pub(crate) async fn approve(
    State(s): State<AppState>,
    ia: InAccount,
    Path(id): Path<Uuid>,
    Posted(form): Posted,
) -> PageResult {
    let t = service::tasks::decide(
        &s,
        &ia.acct,
        id,
        TaskUpdateRequest {
            status: ApprovalStatus::Approved,
            denial_reason: None,
        },
    )
    .await?;
    Ok(done(
        &ia.auth,
        &back_to(&form),
        &format!("Approved: {}", t.description),
    ))
}

/// `POST /console/tasks/{id}/deny` (MANAGER), with an optional reason.
pub(crate) async fn deny(
    State(s): State<AppState>,
    ia: InAccount,
    Path(id): Path<Uuid>,
    Posted(form): Posted,
) -> PageResult {
    let req = TaskUpdateRequest {
        status: ApprovalStatus::Denied,
        denial_reason: form.opt("denial_reason"),
    };
    match service::tasks::decide(&s, &ia.acct, id, req).await {
        Ok(t) => Ok(done(
            &ia.auth,
            &back_to(&form),
            &format!("Denied: {}", t.description),
        )),
        Err(e @ service::ServiceError::Invalid(_)) => {
            let t = load(&s, &ia, id).await?;
            let mut errors = FieldErrors::default();
            errors.absorb_api(e, |_| None)?;
            let body = detail_page(&s, &ia, &t, &errors).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
        }
        Err(e) => Err(e.into()),
    }
}
