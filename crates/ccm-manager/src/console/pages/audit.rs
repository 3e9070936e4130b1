//! The audit log, newest first, one page at a time.

use axum::extract::State;
use maud::{Markup, html};
use serde::Deserialize;

use super::chrome;
use crate::AppState;
use crate::console::html::{Nav, empty, page, time};
use crate::console::session::InAccount;
use crate::console::{ConsoleError, PAGE_SIZE, PageResult};
use crate::extract::Query;
use crate::service;

/// `?before=SEQ&scope=all`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditQuery {
    before: Option<i64>,
    scope: Option<String>,
}

/// Longest details text shown in the table.
const DETAILS_CHARS: usize = 240;

/// `GET /console/audit`: the selected account's entries (MANAGER); a system administrator can
/// switch to the whole manager's log.
pub(crate) async fn list(
    State(s): State<AppState>,
    ia: InAccount,
    Query(q): Query<AuditQuery>,
) -> PageResult<Markup> {
    let sysadmin = ia.acct.caller.is_sysadmin;
    let all = q.scope.as_deref() == Some("all");
    if q.before.is_some_and(|b| b < 1) {
        return Err(ConsoleError::Api(crate::ApiError::bad_request(
            "invalid_query",
            "before must be at least 1",
        )));
    }
    let (entries, more) = service::audit::newest(&s, &ia.acct, all, q.before, PAGE_SIZE).await?;
    let chrome = chrome(&s, &ia, Nav::Audit).await?;
    let scope_q = if all { "&scope=all" } else { "" };
    let content = html! {
        @if sysadmin {
            nav.tabs aria-label="Scope" {
                a href="/console/audit" aria-current=[(!all).then_some("page")] { "This account" }
                a href="/console/audit?scope=all" aria-current=[all.then_some("page")] { "Whole manager" }
            }
        }
        p.lead { "Every change is recorded in a hash-chained log; " code { "ccm audit verify" } " checks the chain." }
        @if entries.is_empty() {
            (empty("No entries."))
        } @else {
            div.table-wrap { table {
                thead { tr { th { "#" } th { "Time" } th { "Actor" } th { "Action" } th { "Object" } th { "Details" } } }
                tbody {
                    @for e in &entries {
                        tr {
                            td { (e.seq) }
                            td { (time(e.at)) }
                            td { (e.actor) }
                            td { code { (e.action) } }
                            td { (e.object_type) @if let Some(id) = e.object_id { br; code.hex { (id) } } }
                            td { code { (truncate(&e.details.to_string())) } }
                        }
                    }
                }
            } }
            nav.pager aria-label="Pagination" {
                @if q.before.is_some() {
                    a href=(if all { "/console/audit?scope=all" } else { "/console/audit" }) { "← Newest" }
                }
                @if more {
                    @if let Some(last) = entries.last() {
                        a rel="next" href=(format!("/console/audit?before={}{scope_q}", last.seq)) { "Older →" }
                    }
                }
            }
        }
    };
    Ok(page(&chrome, "Audit log", content))
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= DETAILS_CHARS {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(DETAILS_CHARS).collect();
        t.push('…');
        t
    }
}
