//! Running applications (with their nodes), application certificates (view, download) and the
//! zone CA certificate peers trust them with (download).

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use ccm_api::certificates::{Certificate, CertificateStatusType};
use maud::{Markup, html};
use uuid::Uuid;

use super::{chrome, first};
use crate::AppState;
use crate::console::html::{Nav, badge, empty, facts, hex, page, simulated, time};
use crate::console::session::InAccount;
use crate::console::{ConsoleError, PAGE_SIZE, PageResult};
use crate::extract::Path;
use crate::service::certificates;

/// `GET /console/running`: application instances reported by (or recently certified through)
/// compute nodes.
pub(crate) async fn running(State(s): State<AppState>, ia: InAccount) -> PageResult<Markup> {
    let chrome = chrome(&s, &ia, Nav::Running).await?;
    let instances = certificates::instances(&s, &ia.acct).await?;
    let content = html! {
        p.lead { "An application instance appears here once it has obtained its certificate through a compute node; it is RUNNING while the node reports it." }
        @if instances.is_empty() {
            (empty("No application is running."))
        } @else {
            div.table-wrap { table {
                thead { tr { th { "Application" } th { "Node" } th { "Status" } th { "MRENCLAVE" } th { "Certificate" } th { "Since" } } }
                tbody {
                    @for i in &instances {
                        tr {
                            td { a href=(format!("/console/apps/{}", i.app_id)) { (i.app_name) }
                                @if i.is_debug { " " span.badge.wait { "DEBUG" } } }
                            td { a href=(format!("/console/nodes/{}", i.node_id)) { (i.node_name) } }
                            td { (badge(i.status.status.as_str())) @if i.certificate.simulated { " " (simulated()) } }
                            td { (hex(&i.mrenclave)) }
                            td { a href=(format!("/console/certificates/{}", i.certificate.certificate_id)) {
                                (i.certificate.domains.join(", "))
                            } }
                            td { (time(i.created_at)) }
                        }
                    }
                }
            } }
        }
    };
    Ok(page(&chrome, "Running applications", content))
}

/// `GET /console/certificates`: the most recent application certificates.
pub(crate) async fn list(State(s): State<AppState>, ia: InAccount) -> PageResult<Markup> {
    let chrome = chrome(&s, &ia, Nav::Certificates).await?;
    let certs = certificates::list(&s, &ia.acct, Default::default(), &first(PAGE_SIZE))
        .await?
        .items;
    let content = html! {
        div.toolbar {
            p.lead { "Certificates the zone CA issued to attested applications (the " (PAGE_SIZE) " most recent). Clients of the applications trust them through the zone CA certificate." }
            span.spacer {}
            a.button.secondary href="/console/zone/certificate" download { "Download zone CA certificate" }
        }
        @if certs.is_empty() {
            (empty("No certificate has been requested yet."))
        } @else {
            div.table-wrap { table {
                thead { tr { th { "Domains" } th { "Status" } th { "Valid until" } th { "Requested" } } }
                tbody {
                    @for c in &certs {
                        tr {
                            td { a href=(format!("/console/certificates/{}", c.certificate_id)) { (c.domains.join(", ")) } }
                            td { (badge(c.status.as_str())) @if c.simulated { " " (simulated()) } }
                            td { @match c.valid_until { Some(t) => (time(t)), None => span.muted { "—" } } }
                            td { (time(c.created_at)) }
                        }
                    }
                }
            } }
        }
    };
    Ok(page(&chrome, "Certificates", content))
}

async fn load(s: &AppState, ia: &InAccount, id: Uuid) -> PageResult<Certificate> {
    Ok(certificates::get(s, &ia.acct, id).await?)
}

/// `GET /console/certificates/{id}`.
pub(crate) async fn show(
    State(s): State<AppState>,
    ia: InAccount,
    Path(id): Path<Uuid>,
) -> PageResult<Markup> {
    let c = load(&s, &ia, id).await?;
    let chrome = chrome(&s, &ia, Nav::Certificates).await?;
    let content = html! {
        @if c.simulated {
            p.banner-sim { strong { "SIMULATED." } " This certificate rests on a quote from a simulated SGX platform and says so in its subject; peers must not trust it for confidential data." }
        }
        div.panel {
            (facts(&[
                ("Status", badge(c.status.as_str())),
                ("Domains", html! { @for d in &c.domains { code { (d) } " " } }),
                ("Application", html! { @match c.app_id { Some(a) => a href=(format!("/console/apps/{a}")) { "view" }, None => "—" } }),
                ("Image", html! { @match c.build_id { Some(b) => a href=(format!("/console/images/{b}")) { "view" }, None => "—" } }),
                ("Node", html! { a href=(format!("/console/nodes/{}", c.node_id)) { "view" } }),
                ("MRENCLAVE", html! { @match &c.enclave_info { Some(e) => (hex(&e.mrenclave)), None => "—" } }),
                ("MRSIGNER", html! { @match &c.enclave_info { Some(e) => (hex(&e.mrsigner)), None => "—" } }),
                ("ISVPRODID / ISVSVN", html! { @match &c.enclave_info { Some(e) => { (e.isvprodid) " / " (e.isvsvn) }, None => "—" } }),
                ("Serial", html! { @match &c.serial { Some(v) => code { (v) }, None => "—" } }),
                ("Valid from", html! { @match c.valid_from { Some(t) => (time(t)), None => "—" } }),
                ("Valid until", html! { @match c.valid_until { Some(t) => (time(t)), None => "—" } }),
                ("Requested", time(c.created_at)),
                ("Note", html! { (c.message.as_deref().unwrap_or("—")) }),
                ("Task", html! { a href=(format!("/console/tasks/{}", c.task_id)) { "view" } }),
            ]))
        }
        @if let Some(pem) = &c.certificate {
            p { a.button href=(format!("/console/certificates/{id}/pem")) download { "Download PEM" } }
            pre { (pem) }
        }
    };
    Ok(page(&chrome, &c.domains.join(", "), content))
}

/// A PEM file download named `name.pem`.
fn pem_file(pem: String, name: &str) -> Response {
    let mut r = pem.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.pem\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// `GET /console/zone/certificate`: the selected account's zone CA certificate as a file.
pub(crate) async fn zone_ca(State(s): State<AppState>, ia: InAccount) -> PageResult<Response> {
    let zone = crate::service::zones::list(&s, &ia.acct)
        .await?
        .into_iter()
        .next()
        .ok_or(ConsoleError::NotFound("zone"))?;
    Ok(pem_file(zone.certificate, "zone-ca"))
}

/// `GET /console/certificates/{id}/pem`: the chain (leaf, zone CA) as a file.
pub(crate) async fn pem(
    State(s): State<AppState>,
    ia: InAccount,
    Path(id): Path<Uuid>,
) -> PageResult<Response> {
    let c = load(&s, &ia, id).await?;
    let pem = match (&c.certificate, c.status) {
        (
            Some(p),
            CertificateStatusType::Issued
            | CertificateStatusType::Expired
            | CertificateStatusType::Revoked,
        ) => p.clone(),
        _ => return Err(ConsoleError::NotFound("issued certificate")),
    };
    let name: String = c
        .domains
        .first()
        .map_or("certificate", String::as_str)
        .chars()
        .filter(|ch| ch.is_ascii_alphanumeric() || *ch == '.' || *ch == '-')
        .collect();
    Ok(pem_file(pem, &name))
}
