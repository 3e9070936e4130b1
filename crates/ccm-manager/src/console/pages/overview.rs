//! The overview of the selected account: counts, what waits for a decision, and the steps of
//! the seed tutorial with their progress.

use axum::extract::State;
use ccm_api::accounts::AccessRole;
use ccm_api::tasks::TaskStatusType;
use ccm_store::TaskFilter;
use maud::{Markup, html};

use super::{chrome, first};
use crate::AppState;
use crate::console::PageResult;
use crate::console::html::{Nav, badge, page, simulated, time};
use crate::console::session::InAccount;
use crate::service;
use ccm_api::list::MAX_LIMIT;

/// `GET /console`.
pub(crate) async fn show(State(s): State<AppState>, ia: InAccount) -> PageResult<Markup> {
    let chrome = chrome(&s, &ia, Nav::Overview).await?;
    let acct = &ia.acct;
    let counts = service::accounts::get(&s, &acct.caller, acct.acct_id)
        .await?
        .totals;
    let nodes = service::nodes::list(&s, acct, None, &first(MAX_LIMIT))
        .await?
        .items;
    let waiting = TaskFilter {
        status: Some(TaskStatusType::Inprogress),
        ..Default::default()
    };
    let pending = service::tasks::list(&s, acct, &waiting, &first(5))
        .await?
        .items;
    let active_nodes = nodes.iter().filter(|n| n.status.status.may_issue()).count();
    let any_simulated = nodes.iter().any(|n| n.sgx_info.simulated);
    let steps: [(&str, &str, bool); 4] = [
        (
            "Add an Enclave OS application",
            "/console/apps/new",
            counts.apps > 0,
        ),
        (
            "Create an image of it",
            "/console/images/new",
            counts.builds > 0,
        ),
        (
            "Approve the domain and image tasks",
            "/console/tasks",
            counts.builds > 0 && counts.pending_tasks == 0,
        ),
        (
            "Enroll a compute node",
            "/console/nodes/enroll",
            !nodes.is_empty(),
        ),
    ];
    let content = html! {
        @if any_simulated {
            p.banner-sim { "This account has nodes on " strong { "SIMULATED" } " SGX platforms: their attestation proves nothing about isolation. Use them for development only." }
        }
        div.cards {
            a.card href="/console/apps" { strong { (counts.apps) } span { "Applications" } }
            a.card href="/console/images" { strong { (counts.builds) } span { "Images" } }
            a.card href="/console/tasks" { strong { (counts.pending_tasks) } span { "Tasks to decide" } }
            a.card href="/console/nodes" { strong { (active_nodes) " / " (nodes.len()) } span { "Active compute nodes" } }
        }
        div.panel {
            h2 { "Getting started" }
            ol {
                @for (text, href, done) in steps {
                    li {
                        @if done { span.badge.ok { "DONE" } " " }
                        a href=(href) { (text) }
                    }
                }
                li { "Run the converted image on the node (" code { "ccm run" } " or Docker), then find it under " a href="/console/running" { "Running apps" } "." }
            }
        }
        h2 { "Waiting for a decision" }
        @if pending.is_empty() {
            p.empty { "Nothing is waiting for approval." }
        } @else {
            ul {
                @for t in &pending {
                    li {
                        (badge(t.task_type.as_str())) " "
                        a href=(format!("/console/tasks/{}", t.task_id)) { (t.description) }
                        " · " span.muted { (time(t.status.created_at)) }
                    }
                }
            }
            @if acct.role >= AccessRole::Manager {
                p { a href="/console/tasks" { "Review all pending tasks" } }
            } @else {
                p.muted { "Approving tasks needs the MANAGER role." }
            }
        }
        @if !nodes.is_empty() {
            h2 { "Compute nodes" }
            ul {
                @for n in nodes.iter().take(10) {
                    li {
                        a href=(format!("/console/nodes/{}", n.node_id)) { (n.name) } " "
                        (badge(n.status.status.as_str()))
                        @if n.sgx_info.simulated { " " (simulated()) }
                    }
                }
            }
        }
    };
    Ok(page(&chrome, "Overview", content))
}
