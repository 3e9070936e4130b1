//! Compute nodes: list with status and attestation, enrollment (join token and the exact agent
//! command), join tokens, node details, deactivation.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use ccm_api::accounts::AccessRole;
use ccm_api::list::MAX_LIMIT;
use ccm_api::nodes::{Node, NodeStatusType};
use ccm_api::zones::{JoinTokenInfo, JoinTokenRequest};
use maud::{Markup, html};
use uuid::Uuid;

use super::chrome;
use crate::AppState;
use crate::console::form::{FieldErrors, FormData};
use crate::console::html::{
    Input, Nav, badge, checkbox, copyable, csrf_input, empty, error_summary, facts, field, hex,
    page, select, simulated, time,
};
use crate::console::session::{InAccount, Posted};
use crate::console::{ConsoleError, PageResult, done};
use crate::extract::Path;
use crate::service;

/// The platform column: SIMULATED or SGX, always visible.
fn platform(n: &Node) -> Markup {
    html! {
        @if n.sgx_info.simulated { (simulated()) } @else { span.badge.neutral { "SGX" } }
    }
}

async fn zone_id(s: &AppState, ia: &InAccount) -> PageResult<Uuid> {
    match service::accounts::get(s, &ia.acct.caller, ia.acct.acct_id).await {
        Ok(account) => Ok(account.zone_id),
        Err(service::ServiceError::NotFound(_)) => Err(ConsoleError::NoAccount),
        Err(e) => Err(e.into()),
    }
}

fn token_state(t: &JoinTokenInfo, now: i64) -> &'static str {
    if t.revoked_at.is_some() {
        "REVOKED"
    } else if t.expires_at <= now {
        "EXPIRED"
    } else if t.single_use && t.use_count > 0 {
        "USED"
    } else {
        "ACTIVE"
    }
}

/// `GET /console/nodes`.
pub(crate) async fn list(State(s): State<AppState>, ia: InAccount) -> PageResult<Markup> {
    let chrome = chrome(&s, &ia, Nav::Nodes).await?;
    let nodes = service::nodes::list(&s, &ia.acct, None, &super::first(MAX_LIMIT))
        .await?
        .items;
    let zone = zone_id(&s, &ia).await?;
    let tokens = service::zones::join_tokens(&s, &ia.acct, zone).await?;
    let settings = service::zones::get(&s, &ia.acct, zone).await?;
    let now = s.clock.now();
    let manager = ia.acct.role >= AccessRole::Manager;
    let content = html! {
        div.toolbar {
            p.lead { "Compute nodes prove with an SGX quote that they are genuine before they may obtain certificates for applications." }
            span.spacer {}
            @if manager { a.button href="/console/nodes/enroll" { "Enroll node" } }
        }
        @if nodes.is_empty() {
            (empty("No compute node has enrolled yet. Enroll one with a join token."))
        } @else {
            div.table-wrap { table {
                thead { tr { th { "Node" } th { "Status" } th { "Platform" } th { "FMSPC" } th { "TCB status" } th { "Address" } th { "Last seen" } } }
                tbody {
                    @for n in &nodes {
                        tr {
                            td { a href=(format!("/console/nodes/{}", n.node_id)) { (n.name) } }
                            td { (badge(n.status.status.as_str())) }
                            td { (platform(n)) }
                            td { code { (n.sgx_info.fmspc) } }
                            td { (badge(tcb(n))) }
                            td { (n.ipaddress.as_deref().unwrap_or("—")) }
                            td { @match n.status.last_seen_at { Some(t) => (time(t)), None => span.muted { "never" } } }
                        }
                    }
                }
            } }
        }
        p.muted {
            "Node agents of this zone check in every " (settings.node_refresh_interval) " s and renew their node certificate when less than "
            (settings.node_renewal_threshold) " % of its validity is left"
            @if settings.node_enrollment.require_approval { "; each enrollment needs a MANAGER's approval" }
            " (PATCH /v1/zones/" (zone) ")."
        }
        h2 { "Join tokens" }
        @if tokens.is_empty() {
            (empty("No join tokens."))
        } @else {
            div.table-wrap { table {
                thead { tr { th { "Token id" } th { "Note" } th { "State" } th { "Uses" } th { "Expires" }
                    @if manager { th { span.visually-hidden { "Actions" } } } } }
                tbody {
                    @for t in &tokens {
                        tr {
                            td { code { (t.token_id.simple()) } }
                            td { (t.description.as_deref().unwrap_or("—")) }
                            td { (badge(token_state(t, now))) @if t.single_use { " " span.muted { "single use" } } }
                            td { (t.use_count) }
                            td { (time(t.expires_at)) }
                            @if manager {
                                td.actions {
                                    @if token_state(t, now) == "ACTIVE" {
                                        form.inline method="post" action=(format!("/console/nodes/tokens/{}/revoke", t.token_id)) {
                                            (csrf_input(&ia.auth.csrf))
                                            button.small.secondary type="submit" { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            } }
        }
    };
    Ok(page(&chrome, "Compute nodes", content))
}

fn tcb(n: &Node) -> &'static str {
    match n.sgx_info.tcb_status {
        ccm_api::apps::TcbStatus::UpToDate => "UpToDate",
        ccm_api::apps::TcbStatus::SWHardeningNeeded => "SWHardeningNeeded",
        ccm_api::apps::TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
        ccm_api::apps::TcbStatus::ConfigurationAndSWHardeningNeeded => {
            "ConfigurationAndSWHardeningNeeded"
        }
        ccm_api::apps::TcbStatus::OutOfDate => "OutOfDate",
        ccm_api::apps::TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
        ccm_api::apps::TcbStatus::Revoked => "Revoked",
    }
}

const EXPIRIES: [(&str, &str); 4] = [
    ("3600", "1 hour"),
    ("86400", "1 day"),
    ("604800", "7 days"),
    ("2592000", "30 days"),
];

fn enroll_form_markup(csrf: &str, form: &FormData, errors: &FieldErrors) -> Markup {
    html! {
        p.lead { "A join token lets node agents enroll into this account's zone. Anyone holding it can try to enroll a node, so keep it secret, short-lived, and single-use where you can." }
        (error_summary(errors))
        form.stack method="post" action="/console/nodes/enroll" {
            (csrf_input(csrf))
            (select("expires_in", "Valid for", form.get("expires_in").unwrap_or("86400"), &EXPIRIES, errors, None))
            (checkbox("single_use", "Single use: the first node to enroll consumes the token", form.checked("single_use"), None))
            (field("description", "Note", &form.text("description"), errors, Input {
                hint: Some("E.g. which machine the token is for."), ..Input::default()
            }))
            button type="submit" { "Create join token" }
        }
    }
}

/// `GET /console/nodes/enroll`.
pub(crate) async fn enroll_form(State(s): State<AppState>, ia: InAccount) -> PageResult<Markup> {
    ia.acct.require(AccessRole::Manager)?;
    let chrome = chrome(&s, &ia, Nav::Nodes).await?;
    Ok(page(
        &chrome,
        "Enroll a compute node",
        enroll_form_markup(&ia.auth.csrf, &FormData::default(), &FieldErrors::default()),
    ))
}

/// The manager's URL as the browser reached it (what an agent on the same network uses).
fn manager_url(s: &AppState, headers: &HeaderMap) -> String {
    let scheme = if s.config.insecure_http {
        "http"
    } else {
        "https"
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .map_or_else(|| s.config.listen.to_string(), String::from);
    format!("{scheme}://{host}")
}

/// `POST /console/nodes/enroll`: creates a join token and shows it once, with the agent command.
pub(crate) async fn enroll(
    State(s): State<AppState>,
    ia: InAccount,
    headers: HeaderMap,
    Posted(form): Posted,
) -> PageResult {
    let mut errors = FieldErrors::default();
    let expires_in = errors.int(&form, "expires_in");
    let chrome = chrome(&s, &ia, Nav::Nodes).await?;
    if let Some(expires_in) = expires_in {
        let req = JoinTokenRequest {
            expires_in: Some(expires_in),
            single_use: form.checked("single_use"),
            description: form.opt("description"),
        };
        let zone = zone_id(&s, &ia).await?;
        match service::zones::create_join_token(&s, &ia.acct, zone, req).await {
            Ok(t) => {
                let url = manager_url(&s, &headers);
                let command = format!("ccm agent --manager {url} --join-token {}", t.token);
                let content = html! {
                    p.notice { "The token is shown only now. Copy it before leaving this page." }
                    h2 { "Run on the compute node" }
                    p { "With the quote helper (" code { "ccm aesmd" } ") running on the node, start the node agent:" }
                    (copyable("agent-command", &command, "Copy command"))
                    h2 { "Join token" }
                    (copyable("join-token", &t.token, "Copy token"))
                    (facts(&[
                        ("Valid until", time(t.info.expires_at)),
                        ("Single use", html! { @if t.info.single_use { "yes" } @else { "no" } }),
                        ("Manager", html! { code { (url) } }),
                        ("Pinned manager certificate", html! {
                            @match s.tls_fingerprint { Some(fp) => (hex(&hex::encode(fp))), None => span.muted { "none (plain HTTP)" } }
                        }),
                    ]))
                    p { "The node appears under " a href="/console/nodes" { "Compute nodes" } " once it has enrolled." }
                };
                return Ok(page(&chrome, "Enroll a compute node", content).into_response());
            }
            Err(e) => errors.absorb_api(e, |_| None)?,
        }
    }
    let body = page(
        &chrome,
        "Enroll a compute node",
        enroll_form_markup(&ia.auth.csrf, &form, &errors),
    );
    Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
}

/// `POST /console/nodes/tokens/{id}/revoke` (MANAGER).
pub(crate) async fn revoke_token(
    State(s): State<AppState>,
    ia: InAccount,
    Path(id): Path<Uuid>,
    Posted(_): Posted,
) -> PageResult {
    let zone = zone_id(&s, &ia).await?;
    service::zones::revoke_join_token(&s, &ia.acct, zone, id).await?;
    Ok(done(
        &ia.auth,
        "/console/nodes",
        &format!("Join token {} revoked.", id.simple()),
    ))
}

/// `GET /console/nodes/{id}`.
pub(crate) async fn show(
    State(s): State<AppState>,
    ia: InAccount,
    Path(id): Path<Uuid>,
) -> PageResult<Markup> {
    let mut n = service::nodes::get(&s, &ia.acct, id).await?;
    let apps = std::mem::take(&mut n.apps);
    let chrome = chrome(&s, &ia, Nav::Nodes).await?;
    let manager = ia.acct.role >= AccessRole::Manager;
    let i = &n.sgx_info;
    let content = html! {
        @if i.simulated {
            p.banner-sim { strong { "SIMULATED platform." } " This node's quote chains to a simulated SGX root that the manager was told to trust: its attestation proves nothing about isolation." }
        }
        @if let Some(t) = n.pending_task_id {
            p.notice { "The node waits for approval: " a href=(format!("/console/tasks/{t}")) { "see the task" } "." }
        }
        div.panel {
            (facts(&[
                ("Status", badge(n.status.status.as_str())),
                ("Platform", platform(&n)),
                ("Attestation", html! { (n.attestation_type) " · attested " (time(n.attested_at)) }),
                ("FMSPC", html! { code { (i.fmspc) } }),
                ("TCB status", html! { (badge(tcb(&n))) " (TCB date " (i.tcb_date) ")" }),
                ("Advisories", html! { @if i.advisory_ids.is_empty() { "none" } @else { @for a in &i.advisory_ids { code { (a) } " " } } }),
                ("PPID hash", hex(&i.ppid_hash)),
                ("Trust root", hex(&i.root_fingerprint)),
                ("Address", html! { (n.ipaddress.as_deref().unwrap_or("—")) }),
                ("Agent version", html! { (n.status.last_seen_version.as_deref().or(i.version.as_deref()).unwrap_or("—")) }),
                ("Last seen", html! { @match n.status.last_seen_at { Some(t) => (time(t)), None => "never" } }),
                ("Enrolled", time(n.status.created_at)),
                ("Node id", html! { code { (n.node_id) } }),
            ]))
        }
        h2 { "Applications on this node" }
        @if apps.is_empty() {
            (empty("No application has obtained a certificate through this node."))
        } @else {
            ul {
                @for a in &apps {
                    li {
                        a href=(format!("/console/apps/{}", a.app_id)) { (a.app_name) } " "
                        (badge(a.status.status.as_str())) " · "
                        a href=(format!("/console/certificates/{}", a.certificate.certificate_id)) { "certificate" }
                    }
                }
            }
        }
        @if manager && n.status.status != NodeStatusType::Deactivated {
            h2 { "Deactivate" }
            details.panel {
                summary { "Deactivate this node…" }
                p { "The node's certificate stops working at once and every certificate issued through it is revoked. The agent must enroll again with a new token to come back." }
                form method="post" action=(format!("/console/nodes/{id}/deactivate")) {
                    (csrf_input(&ia.auth.csrf))
                    button.danger type="submit" { "Deactivate node" }
                }
            }
        }
        @if let Some(pem) = &n.certificate {
            h2 { "Node certificate" }
            details { summary { "Show PEM" } pre { (pem) } }
        }
    };
    Ok(page(&chrome, &n.name, content))
}

/// `POST /console/nodes/{id}/deactivate` (MANAGER).
pub(crate) async fn deactivate(
    State(s): State<AppState>,
    ia: InAccount,
    Path(id): Path<Uuid>,
    Posted(_): Posted,
) -> PageResult {
    let n = service::nodes::deactivate(&s, &ia.acct, id).await?;
    Ok(done(
        &ia.auth,
        &format!("/console/nodes/{id}"),
        &format!("Node “{}” deactivated.", n.name),
    ))
}
