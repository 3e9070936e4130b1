//! Platform collateral (system administrators): each current set, how fresh it is, where it came
//! from and why its last refresh failed.

use axum::extract::State;
use maud::{Markup, html};

use super::chrome_user;
use crate::AppState;
use crate::console::PageResult;
use crate::console::html::{Nav, empty, page, time};
use crate::console::session::Authed;
use crate::service;

/// `GET /console/collateral`.
pub(crate) async fn list(State(s): State<AppState>, a: Authed) -> PageResult<Markup> {
    let sets = service::collateral::list(&s, &a.caller).await?;
    let chrome = chrome_user(&s, &a, Nav::Accounts).await?;
    let now = s.clock.now();
    let source = match s.attest.collateral.pccs_url() {
        Some(url) => html! { "Fetched from " code { (url) } " and refreshed before it expires." },
        None => {
            html! { "Offline (no " code { "pccs_url" } "): collateral comes from node uploads and " code { "ccm collateral import" } " only, and nothing refreshes it." }
        }
    };
    let content = html! {
        p.lead { "Quotes are verified with the current collateral of their platform. " (source) }
        @if sets.is_empty() {
            (empty("No collateral yet: it arrives with the first node of each platform."))
        } @else {
            div.table-wrap { table {
                thead { tr {
                    th { "FMSPC" } th { "TEE / PCK CA" } th { "Set" } th { "TCB evaluation" }
                    th { "Issued" } th { "Valid until" } th { "Source" } th { "Last refresh" }
                } }
                tbody {
                    @for c in &sets {
                        tr {
                            td { code.hex { (c.fmspc) } @if c.simulated { " " span.badge { "SIMULATED" } } }
                            td { (c.tee.as_str()) " / " (c.ca_type.as_str()) }
                            td { (c.update.as_str()) }
                            td { (c.tcb_evaluation_data_number) }
                            td { (time(c.tcb_info_issued)) }
                            td { (time(c.valid_until)) @if c.valid_until < now { " " span.badge.bad { "EXPIRED" } } }
                            td { (c.source.as_str()) }
                            td {
                                @if let Some(t) = c.last_attempt_at { (time(t)) }
                                @if let Some(e) = &c.last_error { br; span.badge.bad { "FAILED" } " " (e) }
                            }
                        }
                    }
                }
            } }
        }
    };
    Ok(page(&chrome, "Collateral", content))
}
