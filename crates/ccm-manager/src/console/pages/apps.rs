//! Applications ("Enclave OS application"): list, add, show, edit, delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ccm_api::accounts::AccessRole;
use ccm_api::apps::{
    AdvancedSettings, App, AppRequest, AppUpdateRequest, CertificateConfig, CertificateIssuer,
    KeyType,
};
use ccm_api::certificates::AppWithNodes;
use maud::{Markup, html};
use uuid::Uuid;

use super::{PageQuery, chrome, first};
use crate::AppState;
use crate::console::form::{FieldErrors, FormData};
use crate::console::html::{
    Input, Nav, badge, checkbox, confirm, csrf_input, empty, error_summary, facts, field, hex,
    page, pager, select, simulated, textarea, time,
};
use crate::console::session::{InAccount, Posted};
use crate::console::{PAGE_SIZE, PageResult, done};
use crate::extract::{Path, Query};
use crate::service;

/// `GET /console/apps`.
pub(crate) async fn list(
    State(s): State<AppState>,
    ia: InAccount,
    Query(q): Query<PageQuery>,
) -> PageResult<Markup> {
    let (page_no, list) = q.list()?;
    let chrome = chrome(&s, &ia, Nav::Apps).await?;
    let listed = service::apps::list(&s, &ia.acct, &list).await?;
    let (apps, more) = (listed.items, listed.next.is_some());
    let writer = ia.acct.role >= AccessRole::Writer;
    let content = html! {
        div.toolbar {
            p.lead { "Applications describe what is converted into an enclave image and which certificate it may obtain." }
            span.spacer {}
            @if writer { a.button href="/console/apps/new" { "Add application" } }
        }
        @if apps.is_empty() && page_no == 1 {
            (empty("No applications yet."))
        } @else {
            div.table-wrap { table {
                thead { tr {
                    th { "Name" } th { "Input → output image" } th { "ISVPRODID / ISVSVN" }
                    th { "Domains" } th { "Created" }
                } }
                tbody {
                    @for a in &apps {
                        tr {
                            td { a href=(format!("/console/apps/{}", a.app_id)) { (a.name) } }
                            td { code { (a.input_image_name) } " → " code { (a.output_image_name) } }
                            td { (a.isvprodid) " / " (a.isvsvn) }
                            td { (domains(a)) }
                            td { (time(a.created_at)) }
                        }
                    }
                }
            } }
            (pager("/console/apps", page_no, more))
        }
    };
    Ok(page(&chrome, "Applications", content))
}

fn domains(a: &App) -> Markup {
    html! {
        @for d in &a.allowed_domains {
            div {
                code { (d) } " "
                @if a.whitelisted_domains.contains(d) { (badge("APPROVED")) } @else { (badge("PENDING")) }
            }
        }
    }
}

/// The values of the application form, as typed (so a refused form shows them again).
#[derive(Debug, Clone)]
struct AppForm {
    name: String,
    description: String,
    input_image_name: String,
    output_image_name: String,
    isvprodid: String,
    isvsvn: String,
    mem_size: String,
    mem_unit: String,
    threads: String,
    domain: String,
    extra_domains: String,
    issuer: String,
    key_type: String,
    rsa_key_size: String,
    key_path: String,
    cert_path: String,
    allow_debug: bool,
    allow_simulated: bool,
}

impl AppForm {
    /// The defaults of a new application (the seed tutorial's certificate step).
    fn new_app() -> Self {
        Self {
            name: String::new(),
            description: String::new(),
            input_image_name: String::new(),
            output_image_name: String::new(),
            isvprodid: String::new(),
            isvsvn: String::new(),
            mem_size: "1".into(),
            mem_unit: "GB".into(),
            threads: "128".into(),
            domain: String::new(),
            extra_domains: String::new(),
            issuer: "MANAGER_CA".into(),
            key_type: "RSA".into(),
            rsa_key_size: "2048".into(),
            key_path: "/run/key.pem".into(),
            cert_path: "/run/cert.pem".into(),
            allow_debug: false,
            allow_simulated: false,
        }
    }

    fn of(a: &App) -> Self {
        let (mem_size, mem_unit) = if a.mem_size % 1024 == 0 {
            ((a.mem_size / 1024).to_string(), "GB")
        } else {
            (a.mem_size.to_string(), "MB")
        };
        let cert = a.certificate.as_ref();
        let (key_type, rsa_key_size) = match cert.map(|c| c.key_type) {
            Some(KeyType::Rsa3072) => ("RSA", "3072"),
            Some(KeyType::EcP256) => ("EC_P256", "2048"),
            Some(KeyType::EcP384) => ("EC_P384", "2048"),
            Some(KeyType::Rsa2048) | None => ("RSA", "2048"),
        };
        let subject = cert.map(|c| c.subject.clone()).unwrap_or_default();
        Self {
            name: a.name.clone(),
            description: a.description.clone().unwrap_or_default(),
            input_image_name: a.input_image_name.clone(),
            output_image_name: a.output_image_name.clone(),
            isvprodid: a.isvprodid.to_string(),
            isvsvn: a.isvsvn.to_string(),
            mem_size,
            mem_unit: mem_unit.into(),
            threads: a.threads.to_string(),
            extra_domains: a
                .allowed_domains
                .iter()
                .filter(|d| **d != subject)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n"),
            domain: subject,
            issuer: "MANAGER_CA".into(),
            key_type: key_type.into(),
            rsa_key_size: rsa_key_size.into(),
            key_path: cert.map_or_else(|| "/run/key.pem".into(), |c| c.key_path.clone()),
            cert_path: cert.map_or_else(|| "/run/cert.pem".into(), |c| c.cert_path.clone()),
            allow_debug: a.advanced_settings.allow_debug,
            allow_simulated: a.advanced_settings.allow_simulated,
        }
    }

    fn from_form(f: &FormData) -> Self {
        Self {
            name: f.text("name"),
            description: f.text("description"),
            input_image_name: f.text("input_image_name"),
            output_image_name: f.text("output_image_name"),
            isvprodid: f.text("isvprodid"),
            isvsvn: f.text("isvsvn"),
            mem_size: f.text("mem_size"),
            mem_unit: f.text("mem_unit"),
            threads: f.text("threads"),
            domain: f.text("domain"),
            extra_domains: f.text("extra_domains"),
            issuer: f.text("issuer"),
            key_type: f.text("key_type"),
            rsa_key_size: f.text("rsa_key_size"),
            key_path: f.text("key_path"),
            cert_path: f.text("cert_path"),
            allow_debug: f.checked("allow_debug"),
            allow_simulated: f.checked("allow_simulated"),
        }
    }
}

/// What a valid form describes.
struct Parsed {
    name: String,
    description: Option<String>,
    input_image_name: String,
    output_image_name: String,
    isvprodid: i64,
    isvsvn: i64,
    mem_size: i64,
    threads: i64,
    allowed_domains: Vec<String>,
    certificate: Option<CertificateConfig>,
    allow_debug: bool,
    allow_simulated: bool,
}

/// Reads numbers and choices; the API's validation checks the rest.
fn parse(f: &FormData, errors: &mut FieldErrors) -> Option<Parsed> {
    let isvprodid = errors.int(f, "isvprodid");
    let isvsvn = errors.int(f, "isvsvn");
    let threads = errors.int(f, "threads");
    let mem = errors.int(f, "mem_size");
    let factor = match f.get("mem_unit").unwrap_or("MB") {
        "MB" => Some(1),
        "GB" => Some(1024),
        _ => {
            errors.add("mem_size", "choose MB or GB");
            None
        }
    };
    let mem_size = mem.zip(factor).map(|(m, k)| m.saturating_mul(k));
    let domain = f.text("domain").trim().to_string();
    let mut allowed: Vec<String> = Vec::new();
    if !domain.is_empty() {
        allowed.push(domain.clone());
    }
    for d in f.text("extra_domains").split(['\n', ',', ' ']) {
        let d = d.trim();
        if !d.is_empty() && !allowed.iter().any(|x| x == d) {
            allowed.push(d.to_string());
        }
    }
    let key_type = match (
        f.get("key_type").unwrap_or("RSA"),
        f.get("rsa_key_size").unwrap_or("2048"),
    ) {
        ("RSA", "2048") => Some(KeyType::Rsa2048),
        ("RSA", "3072") => Some(KeyType::Rsa3072),
        ("RSA", _) => {
            errors.add("rsa_key_size", "choose 2048 or 3072 bits");
            None
        }
        ("EC_P256", _) => Some(KeyType::EcP256),
        ("EC_P384", _) => Some(KeyType::EcP384),
        _ => {
            errors.add("key_type", "choose one of the listed key types");
            None
        }
    };
    if f.get("issuer").unwrap_or("MANAGER_CA") != "MANAGER_CA" {
        errors.add("issuer", "choose one of the listed issuers");
    }
    let certificate = if domain.is_empty() {
        None
    } else {
        key_type.map(|key_type| CertificateConfig {
            issuer: CertificateIssuer::ManagerCa,
            subject: domain.clone(),
            key_type,
            key_path: f.text("key_path").trim().to_string(),
            cert_path: f.text("cert_path").trim().to_string(),
            chain_path: None,
        })
    };
    if !errors.is_empty() {
        return None;
    }
    Some(Parsed {
        name: f.text("name").trim().to_string(),
        description: f.opt("description"),
        input_image_name: f.text("input_image_name").trim().to_string(),
        output_image_name: f.text("output_image_name").trim().to_string(),
        isvprodid: isvprodid?,
        isvsvn: isvsvn?,
        mem_size: mem_size?,
        threads: threads?,
        allowed_domains: allowed,
        certificate,
        allow_debug: f.checked("allow_debug"),
        allow_simulated: f.checked("allow_simulated"),
    })
}

/// Where an API field's message is shown.
fn input_of(field: &str) -> Option<&'static str> {
    match field {
        "certificate.subject" | "allowed_domains[0]" | "certificate" => Some("domain"),
        "certificate.key_path" => Some("key_path"),
        "certificate.cert_path" | "certificate.chain_path" => Some("cert_path"),
        "certificate.key_type" => Some("key_type"),
        f if f.starts_with("allowed_domains") => Some("extra_domains"),
        f if f.starts_with("advanced_settings") => Some("allow_debug"),
        _ => None,
    }
}

fn form_markup(
    csrf: &str,
    action: &str,
    v: &AppForm,
    errors: &FieldErrors,
    submit: &str,
) -> Markup {
    html! {
        (error_summary(errors))
        form.stack method="post" action=(action) novalidate {
            (csrf_input(csrf))
            fieldset {
                legend { "Application" }
                (field("name", "Name", &v.name, errors, Input { required: true, ..Input::default() }))
                (textarea("description", "Description", &v.description, errors, None))
                (field("input_image_name", "Input image", &v.input_image_name, errors, Input {
                    required: true, placeholder: Some("registry/python-flask"),
                    hint: Some("The container image to convert, without its tag (e.g. registry/python-flask)."),
                    ..Input::default()
                }))
                (field("output_image_name", "Output image", &v.output_image_name, errors, Input {
                    required: true, placeholder: Some("registry/python-flask-sgx"),
                    hint: Some("Where the converted enclave image is pushed (e.g. registry/python-flask-sgx)."),
                    ..Input::default()
                }))
                div.row {
                    (field("isvprodid", "ISVPRODID", &v.isvprodid, errors, Input {
                        kind: "number", required: true, min: Some(0), max: Some(65535),
                        hint: Some("ISV product id, 0–65535."), ..Input::default()
                    }))
                    (field("isvsvn", "ISVSVN", &v.isvsvn, errors, Input {
                        kind: "number", required: true, min: Some(0), max: Some(65535),
                        hint: Some("Security version, 0–65535."), ..Input::default()
                    }))
                }
                div.row {
                    (field("mem_size", "Memory size", &v.mem_size, errors, Input {
                        kind: "number", required: true, min: Some(1),
                        hint: Some("Enclave heap; stored in MB (1 GB = 1024 MB)."), ..Input::default()
                    }))
                    (select("mem_unit", "Unit", &v.mem_unit, &[("GB", "GB"), ("MB", "MB")], errors, None))
                    (field("threads", "Thread count", &v.threads, errors, Input {
                        kind: "number", required: true, min: Some(1), max: Some(4096), ..Input::default()
                    }))
                }
                (checkbox("allow_debug", "Allow debug enclaves", v.allow_debug,
                    Some("Debug enclaves can be inspected by the host. Leave off for production.")))
                (checkbox("allow_simulated", "Trust simulated platforms", v.allow_simulated,
                    Some("SIMULATED platforms prove nothing; effective only if the account trusts them too. Changing the attestation policy needs a manager's approval.")))
            }
            fieldset {
                legend { "Certificate" }
                p.hint { "The application obtains a TLS certificate for this domain from the account's zone CA once its image and domain are approved and its node is attested. Leave the domain empty for no certificate." }
                (field("domain", "Domain", &v.domain, errors, Input {
                    placeholder: Some("myapp.domain.dom"), ..Input::default()
                }))
                (select("issuer", "Issuer", &v.issuer, &[("MANAGER_CA", "Issued by the manager (zone CA)")], errors, None))
                div.row {
                    (select("key_type", "Key type", &v.key_type, &[
                        ("RSA", "RSA"), ("EC_P256", "EC P-256"), ("EC_P384", "EC P-384"),
                    ], errors, None))
                    (select("rsa_key_size", "RSA key size", &v.rsa_key_size, &[("2048", "2048 bits"), ("3072", "3072 bits")], errors, None))
                }
                (field("key_path", "Key path", &v.key_path, errors, Input {
                    hint: Some("Where the launcher writes the private key inside the application."), ..Input::default()
                }))
                (field("cert_path", "Certificate path", &v.cert_path, errors, Input {
                    hint: Some("Where the launcher writes the certificate chain."), ..Input::default()
                }))
                (textarea("extra_domains", "More allowed domains", &v.extra_domains, errors,
                    Some("One per line. Every domain needs a manager's approval.")))
            }
            button type="submit" { (submit) }
        }
    }
}

/// `GET /console/apps/new`.
pub(crate) async fn new_form(State(s): State<AppState>, ia: InAccount) -> PageResult<Markup> {
    ia.acct.require(AccessRole::Writer)?;
    let chrome = chrome(&s, &ia, Nav::Apps).await?;
    Ok(page(
        &chrome,
        "Add Enclave OS application",
        form_markup(
            &ia.auth.csrf,
            "/console/apps",
            &AppForm::new_app(),
            &FieldErrors::default(),
            "Add application",
        ),
    ))
}

async fn refused(
    s: &AppState,
    ia: &InAccount,
    title: &str,
    action: &str,
    form: &FormData,
    errors: &FieldErrors,
    submit: &str,
) -> PageResult {
    let chrome = chrome(s, ia, Nav::Apps).await?;
    let body = page(
        &chrome,
        title,
        form_markup(
            &ia.auth.csrf,
            action,
            &AppForm::from_form(form),
            errors,
            submit,
        ),
    );
    Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
}

/// `POST /console/apps`.
pub(crate) async fn create(
    State(s): State<AppState>,
    ia: InAccount,
    Posted(form): Posted,
) -> PageResult {
    let mut errors = FieldErrors::default();
    if let Some(p) = parse(&form, &mut errors) {
        let req = AppRequest {
            name: p.name,
            description: p.description,
            input_image_name: p.input_image_name,
            output_image_name: p.output_image_name,
            isvprodid: p.isvprodid,
            isvsvn: p.isvsvn,
            mem_size: p.mem_size,
            threads: p.threads,
            allowed_domains: p.allowed_domains,
            certificate: p.certificate,
            advanced_settings: Some(AdvancedSettings {
                allow_debug: p.allow_debug,
                allow_simulated: p.allow_simulated,
                ..AdvancedSettings::default()
            }),
            labels: Default::default(),
        };
        match service::apps::create(&s, &ia.acct, req).await {
            Ok(app) => {
                let note = if app.allowed_domains.is_empty() || app.pending_task_id.is_none() {
                    ""
                } else {
                    " Its domain waits for approval under Tasks."
                };
                return Ok(done(
                    &ia.auth,
                    &format!("/console/apps/{}", app.app_id),
                    &format!("Application “{}” added.{note}", app.name),
                ));
            }
            Err(e) => errors.absorb_api(e, input_of)?,
        }
    }
    refused(
        &s,
        &ia,
        "Add Enclave OS application",
        "/console/apps",
        &form,
        &errors,
        "Add application",
    )
    .await
}

async fn load(s: &AppState, ia: &InAccount, id: Uuid) -> PageResult<App> {
    Ok(service::apps::find(s, &ia.acct, id).await?)
}

/// `GET /console/apps/{id}`.
pub(crate) async fn show(
    State(s): State<AppState>,
    ia: InAccount,
    Path(id): Path<Uuid>,
) -> PageResult<Markup> {
    let AppWithNodes {
        app,
        nodes: instances,
    } = service::apps::get(&s, &ia.acct, id).await?;
    let chrome = chrome(&s, &ia, Nav::Apps).await?;
    let filter = ccm_store::BuildFilter {
        app_id: Some(id),
        status: None,
    };
    let listed = service::images::list(&s, &ia.acct, &filter, &first(10.min(PAGE_SIZE))).await?;
    let (images, more_images) = (listed.items, listed.next.is_some());
    let writer = ia.acct.role >= AccessRole::Writer;
    let cert = app.certificate.as_ref();
    let content = html! {
        @if writer {
            div.toolbar {
                a.button href=(format!("/console/images/new?app_id={}", app.app_id)) { "Create image" }
                a.button.secondary href=(format!("/console/apps/{}/edit", app.app_id)) { "Edit" }
                a.button.secondary href=(format!("/console/apps/{}/delete", app.app_id)) { "Delete…" }
            }
        }
        @if let Some(t) = app.pending_task_id {
            p.notice { "Domains wait for approval: " a href=(format!("/console/tasks/{t}")) { "see the task" } "." }
        }
        @if let Some(t) = app.pending_policy_task_id {
            p.notice { "An attestation policy change waits for approval: " a href=(format!("/console/tasks/{t}")) { "see the task" } "." }
        }
        div.panel {
            (facts(&[
                ("Description", html! { (app.description.as_deref().unwrap_or("—")) }),
                ("Input image", html! { code { (app.input_image_name) } }),
                ("Output image", html! { code { (app.output_image_name) } }),
                ("ISVPRODID", html! { (app.isvprodid) }),
                ("ISVSVN", html! { (app.isvsvn) }),
                ("Memory size", html! { (app.mem_size) " MB" }),
                ("Threads", html! { (app.threads) }),
                ("Debug enclaves", html! { @if app.advanced_settings.allow_debug { "allowed" } @else { "refused" } }),
                ("Simulated platforms", html! { @if app.advanced_settings.allow_simulated { "trusted (if the account trusts them)" } @else { "refused" } }),
                ("Created", time(app.created_at)),
                ("Application id", html! { code { (app.app_id) } }),
            ]))
        }
        h2 { "Certificate" }
        div.panel {
            @if let Some(c) = cert {
                (facts(&[
                    ("Domain", html! { code { (c.subject) } }),
                    ("Issuer", html! { "Issued by the manager (zone CA)" }),
                    ("Key type", html! { (key_label(c.key_type)) }),
                    ("Key path", html! { code { (c.key_path) } }),
                    ("Certificate path", html! { code { (c.cert_path) } }),
                    ("Allowed domains", domains(&app)),
                ]))
            } @else {
                p.empty { "No certificate is configured." }
            }
        }
        h2 { "Images" }
        @if images.is_empty() {
            (empty("No images yet."))
        } @else {
            ul {
                @for b in &images {
                    li {
                        a href=(format!("/console/images/{}", b.build_id)) {
                            code { (b.image_label()) }
                        }
                        " " (badge(b.status.status.as_str()))
                    }
                }
            }
            @if more_images { p { a href="/console/images" { "All images" } } }
        }
        h2 { "Running on" }
        @if instances.is_empty() {
            (empty("Not running on any compute node."))
        } @else {
            ul {
                @for i in &instances {
                    li {
                        a href=(format!("/console/nodes/{}", i.node_id)) { (i.node_name) } " "
                        (badge(i.status.status.as_str())) " "
                        @if i.certificate.simulated { (simulated()) " " }
                        "MRENCLAVE " (hex(&i.mrenclave)) " · "
                        a href=(format!("/console/certificates/{}", i.certificate.certificate_id)) { "certificate" }
                    }
                }
            }
        }
    };
    Ok(page(&chrome, &app.name, content))
}

/// A readable key type.
pub(crate) fn key_label(k: KeyType) -> &'static str {
    match k {
        KeyType::Rsa2048 => "RSA, 2048 bits",
        KeyType::Rsa3072 => "RSA, 3072 bits",
        KeyType::EcP256 => "EC P-256",
        KeyType::EcP384 => "EC P-384",
    }
}

/// `GET /console/apps/{id}/edit`.
pub(crate) async fn edit_form(
    State(s): State<AppState>,
    ia: InAccount,
    Path(id): Path<Uuid>,
) -> PageResult<Markup> {
    ia.acct.require(AccessRole::Writer)?;
    let app = load(&s, &ia, id).await?;
    let chrome = chrome(&s, &ia, Nav::Apps).await?;
    Ok(page(
        &chrome,
        &format!("Edit “{}”", app.name),
        form_markup(
            &ia.auth.csrf,
            &format!("/console/apps/{id}/edit"),
            &AppForm::of(&app),
            &FieldErrors::default(),
            "Save changes",
        ),
    ))
}

/// `POST /console/apps/{id}/edit`: replaces every field the form shows (labels stay).
pub(crate) async fn update(
    State(s): State<AppState>,
    ia: InAccount,
    Path(id): Path<Uuid>,
    Posted(form): Posted,
) -> PageResult {
    let app = load(&s, &ia, id).await?;
    let mut errors = FieldErrors::default();
    if let Some(p) = parse(&form, &mut errors) {
        let req = AppUpdateRequest {
            name: Some(p.name),
            description: Some(p.description.unwrap_or_default()),
            input_image_name: Some(p.input_image_name),
            output_image_name: Some(p.output_image_name),
            isvprodid: Some(p.isvprodid),
            isvsvn: Some(p.isvsvn),
            mem_size: Some(p.mem_size),
            threads: Some(p.threads),
            allowed_domains: Some(p.allowed_domains),
            certificate: p.certificate,
            advanced_settings: Some(AdvancedSettings {
                allow_debug: p.allow_debug,
                allow_simulated: p.allow_simulated,
                ..app.advanced_settings.clone()
            }),
            labels: None,
        };
        match service::apps::update(&s, &ia.acct, id, req).await {
            Ok(app) => {
                let note = if app.pending_policy_task_id.is_some() {
                    " Its attestation policy change waits for approval under Tasks."
                } else {
                    ""
                };
                return Ok(done(
                    &ia.auth,
                    &format!("/console/apps/{id}"),
                    &format!("Application “{}” saved.{note}", app.name),
                ));
            }
            Err(e) => errors.absorb_api(e, input_of)?,
        }
    }
    refused(
        &s,
        &ia,
        &format!("Edit “{}”", app.name),
        &format!("/console/apps/{id}/edit"),
        &form,
        &errors,
        "Save changes",
    )
    .await
}

/// `GET /console/apps/{id}/delete`.
pub(crate) async fn confirm_delete(
    State(s): State<AppState>,
    ia: InAccount,
    Path(id): Path<Uuid>,
) -> PageResult<Markup> {
    ia.acct.require(AccessRole::Writer)?;
    let app = load(&s, &ia, id).await?;
    let chrome = chrome(&s, &ia, Nav::Apps).await?;
    let content = confirm(
        &ia.auth.csrf,
        &format!("/console/apps/{id}/delete"),
        html! {
            p { "Delete the application " strong { (app.name) } "? Its images and their tasks are deleted, and certificates issued to it are revoked. This cannot be undone." }
        },
        "Delete application",
        &format!("/console/apps/{id}"),
    );
    Ok(page(&chrome, &format!("Delete “{}”", app.name), content))
}

/// `POST /console/apps/{id}/delete`.
pub(crate) async fn delete(
    State(s): State<AppState>,
    ia: InAccount,
    Path(id): Path<Uuid>,
    Posted(_): Posted,
) -> PageResult<Response> {
    let app = load(&s, &ia, id).await?;
    service::apps::delete(&s, &ia.acct, id).await?;
    Ok(done(
        &ia.auth,
        "/console/apps",
        &format!("Application “{}” deleted.", app.name),
    ))
}
