//! Images (builds): list, create (conversion, or known values), show with live conversion
//! progress, delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ccm_api::accounts::AccessRole;
use ccm_api::builds::{
    AuthConfig, Build, ConversionStatus, ConvertAppBuildRequest, CreateBuildRequest, DockerInfo,
};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::{PageQuery, chrome, first};
use crate::AppState;
use crate::console::form::{FieldErrors, FormData};
use crate::console::html::{
    Input, Nav, badge, checkbox, confirm, csrf_input, empty, error_summary, facts, field, hex,
    page, pager, time,
};
use crate::console::session::{InAccount, Posted};
use crate::console::{PageResult, done};
use crate::extract::{Path, Query};
use crate::service::{self, images};

/// Most applications offered in the image form's list (the application page links to the form
/// with its own id, which works for any number of applications).
const APP_CHOICES: i64 = 500;

/// `GET /console/images`.
pub(crate) async fn list(
    State(s): State<AppState>,
    ia: InAccount,
    Query(q): Query<PageQuery>,
) -> PageResult<Markup> {
    let (page_no, list) = q.list()?;
    let chrome = chrome(&s, &ia, Nav::Images).await?;
    let listed = images::list(&s, &ia.acct, &Default::default(), &list).await?;
    let (builds, more) = (listed.items, listed.next.is_some());
    let writer = ia.acct.role >= AccessRole::Writer;
    let content = html! {
        div.toolbar {
            p.lead { "Enclave images: converted by the manager, or recorded from known measurements." }
            span.spacer {}
            @if writer { a.button href="/console/images/new" { "Create image" } }
        }
        @if builds.is_empty() && page_no == 1 {
            (empty("No images yet."))
        } @else {
            div.table-wrap { table {
                thead { tr { th { "Image" } th { "Application" } th { "Status" } th { "MRENCLAVE" } th { "Created" } } }
                tbody {
                    @for b in &builds {
                        tr {
                            td { a href=(format!("/console/images/{}", b.build_id)) {
                                code { (b.image_label()) }
                            } }
                            td { a href=(format!("/console/apps/{}", b.app_id)) { (b.app_name) } }
                            td { (status(b)) }
                            td { @if b.enclave_info.mrenclave.is_empty() { span.muted { "—" } } @else { (hex(&b.enclave_info.mrenclave)) } }
                            td { (time(b.created_at)) }
                        }
                    }
                }
            } }
            (pager("/console/images", page_no, more))
        }
    };
    Ok(page(&chrome, "Images", content))
}

/// The image's whitelisting status, or its conversion while that has not succeeded.
fn status(b: &Build) -> Markup {
    match &b.conversion {
        Some(c) if c.status != ConversionStatus::Succeeded => html! {
            (badge(c.status.as_str()))
            @if c.status == ConversionStatus::Running { " " span.muted { (c.progress) "%" } }
        },
        _ => badge(b.status.status.as_str()),
    }
}

/// `?app_id=` of the form.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct NewQuery {
    app_id: Option<Uuid>,
}

/// Which of the two forms was submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Convert,
    Known,
}

async fn form_page(
    s: &AppState,
    ia: &InAccount,
    app_id: Option<Uuid>,
    form: &FormData,
    mode: Mode,
    errors: &FieldErrors,
) -> PageResult<Markup> {
    let chrome = chrome(s, ia, Nav::Images).await?;
    let Some(app_id) = app_id else {
        return choose_app_page(s, ia, chrome).await;
    };
    let chosen = service::apps::find(s, &ia.acct, app_id).await?;
    let none = FieldErrors::default();
    let (conv_errors, known_errors) = match mode {
        Mode::Convert => (errors, &none),
        Mode::Known => (&none, errors),
    };
    let app_field = |name: &str, errs: &FieldErrors| {
        html! {
            input type="hidden" name=(name) value=(chosen.app_id);
            @for m in errs.of(name) { p.field-error { (m) } }
        }
    };
    let default_image = chosen.output_image_name.clone();
    let registries = service::registries::list(s, &ia.acct).await?;
    let chosen_registry = form.text("registry_id");
    let content = html! {
        p.lead { "Application " a href=(format!("/console/apps/{}", chosen.app_id)) { (chosen.name) }
            ": input " code { (chosen.input_image_name) } ", output " code { (chosen.output_image_name) } "." }
        div.alternatives {
            section.panel aria-labelledby="convert-h" {
                h2 #convert-h { "Convert the input image" }
                p.hint { "The manager pulls the application's input image, converts it into an enclave image with the application's settings, pushes it to the output image and records MRENCLAVE and MRSIGNER. Progress is shown on the image's page." }
                (error_summary(conv_errors))
                form method="post" action="/console/images" novalidate {
                    (csrf_input(&ia.auth.csrf))
                    input type="hidden" name="mode" value="convert";
                    (app_field("app_id", conv_errors))
                    (field("docker_version", "Tag", &form.text("docker_version"), conv_errors, Input {
                        required: true, placeholder: Some("1.0"),
                        hint: Some("Tag of the output image (the input is pulled at its own tag, else this one)."), ..Input::default()
                    }))
                    @if !registries.is_empty() {
                        div.field {
                            label for="registry_id" { "Stored registry" }
                            select #registry_id name="registry_id" {
                                option value="" { "Automatic: each image uses the stored registry of its host, if any" }
                                @for r in &registries {
                                    option value=(r.registry_id) selected[chosen_registry == r.registry_id.to_string()] {
                                        (r.host) @if let Some(u) = &r.username { " (" (u) ")" }
                                    }
                                }
                            }
                            p.hint { "Credentials typed below win over stored ones." }
                            @for m in conv_errors.of("registry_id") { p.field-error { (m) } }
                        }
                    }
                    fieldset {
                        legend { "Output registry credentials" }
                        (field("out_username", "User name", &form.text("out_username"), conv_errors, Input {
                            autocomplete: Some("off"), ..Input::default()
                        }))
                        (field("out_password", "Password or token", "", conv_errors, Input {
                            kind: "password", autocomplete: Some("new-password"),
                            hint: Some("Stored encrypted only while the conversion needs it; never shown again."), ..Input::default()
                        }))
                    }
                    details {
                        summary { "Input registry credentials and enclave overrides" }
                        (field("in_username", "Input registry user name", &form.text("in_username"), conv_errors, Input {
                            autocomplete: Some("off"), hint: Some("When the input registry needs other credentials than the output registry."), ..Input::default()
                        }))
                        (field("in_password", "Input registry password or token", "", conv_errors, Input {
                            kind: "password", autocomplete: Some("new-password"), ..Input::default()
                        }))
                        div.row {
                            (field("mem_size", "Memory size (MB)", &form.text("mem_size"), conv_errors, Input {
                                kind: "number", hint: Some("Default: the application's."), ..Input::default()
                            }))
                            (field("threads", "Threads", &form.text("threads"), conv_errors, Input {
                                kind: "number", hint: Some("Default: the application's."), ..Input::default()
                            }))
                        }
                        (checkbox("debug", "Build a debug enclave", form.checked("debug"), Some("Only if the application allows debug enclaves.")))
                    }
                    p { button type="submit" { "Convert and create image" } }
                }
            }
            section.panel aria-labelledby="known-h" {
                h2 #known-h { "Record an image built elsewhere" }
                p.hint { "For an enclave image converted outside this manager: enter its coordinates and measurements as they are." }
                (error_summary(known_errors))
                form method="post" action="/console/images" novalidate {
                    (csrf_input(&ia.auth.csrf))
                    input type="hidden" name="mode" value="known";
                    (app_field("known_app_id", known_errors))
                    (field("docker_info.docker_image_name", "Image", form.get("docker_info.docker_image_name").unwrap_or(&default_image), known_errors, Input {
                        required: true, placeholder: Some("registry/python-flask-sgx"), ..Input::default()
                    }))
                    (field("docker_info.docker_version", "Tag", &form.text("docker_info.docker_version"), known_errors, Input {
                        required: true, placeholder: Some("1.0"), ..Input::default()
                    }))
                    (field("docker_info.docker_image_sha", "Digest", &form.text("docker_info.docker_image_sha"), known_errors, Input {
                        placeholder: Some("sha256:…"), ..Input::default()
                    }))
                    (field("mrenclave", "MRENCLAVE", &form.text("mrenclave"), known_errors, Input {
                        required: true, hint: Some("64 hexadecimal digits."), ..Input::default()
                    }))
                    (field("mrsigner", "MRSIGNER", &form.text("mrsigner"), known_errors, Input {
                        required: true, hint: Some("64 hexadecimal digits."), ..Input::default()
                    }))
                    div.row {
                        (field("isvprodid", "ISVPRODID", &form.text("isvprodid"), known_errors, Input {
                            kind: "number", hint: Some("Default: the application's."), ..Input::default()
                        }))
                        (field("isvsvn", "ISVSVN", &form.text("isvsvn"), known_errors, Input {
                            kind: "number", hint: Some("Default: the application's."), ..Input::default()
                        }))
                    }
                    p { button type="submit" { "Record image" } }
                }
            }
        }
    };
    Ok(page(&chrome, "Create image", content))
}

/// The first step without an application: choose one (a GET form, so it needs no token).
async fn choose_app_page(
    s: &AppState,
    ia: &InAccount,
    chrome: crate::console::html::Chrome,
) -> PageResult<Markup> {
    let apps = service::apps::list(s, &ia.acct, &first(APP_CHOICES))
        .await?
        .items;
    let content = html! {
        @if apps.is_empty() {
            p.notice { "Add an application first: " a href="/console/apps/new" { "Add application" } }
        } @else {
            form.stack.panel method="get" action="/console/images/new" {
                div.field {
                    label for="f-app-id" { "Application" }
                    p.hint #f-app-id-hint { "Images are made of an application. Any application's page also has a “Create image” button." }
                    select #f-app-id name="app_id" required aria-describedby="f-app-id-hint" {
                        @for a in &apps { option value=(a.app_id) { (a.name) } }
                    }
                }
                button type="submit" { "Continue" }
            }
        }
    };
    Ok(page(&chrome, "Create image", content))
}

/// `GET /console/images/new`.
pub(crate) async fn new_form(
    State(s): State<AppState>,
    ia: InAccount,
    Query(q): Query<NewQuery>,
) -> PageResult<Markup> {
    ia.acct.require(AccessRole::Writer)?;
    form_page(
        &s,
        &ia,
        q.app_id,
        &FormData::default(),
        Mode::Convert,
        &FieldErrors::default(),
    )
    .await
}

fn uuid_field(form: &FormData, name: &str, errors: &mut FieldErrors) -> Option<Uuid> {
    match Uuid::try_parse(form.text(name).trim()) {
        Ok(u) => Some(u),
        Err(_) => {
            errors.add(name, "choose an application");
            None
        }
    }
}

fn credentials(form: &FormData, user: &str, pass: &str) -> Option<AuthConfig> {
    let username = form.text(user).trim().to_string();
    let password = form.text(pass);
    (!username.is_empty() || !password.is_empty()).then_some(AuthConfig { username, password })
}

async fn create_converted(
    s: &AppState,
    ia: &InAccount,
    form: &FormData,
    errors: &mut FieldErrors,
) -> PageResult<Option<Build>> {
    let app_id = uuid_field(form, "app_id", errors);
    let mem_size = errors.opt_int(form, "mem_size");
    let threads = errors.opt_int(form, "threads");
    let registry_id = match form.text("registry_id").trim() {
        "" => None,
        r => match Uuid::try_parse(r) {
            Ok(u) => Some(u),
            Err(_) => {
                errors.add("registry_id", "choose a stored registry");
                None
            }
        },
    };
    let tag = form.text("docker_version").trim().to_string();
    if tag.is_empty() {
        errors.add("docker_version", "is required");
    }
    let Some(app_id) = app_id.filter(|_| errors.is_empty()) else {
        return Ok(None);
    };
    let req = ConvertAppBuildRequest {
        app_id,
        docker_version: Some(tag),
        input_docker_version: None,
        output_docker_version: None,
        input_auth_config: credentials(form, "in_username", "in_password"),
        output_auth_config: credentials(form, "out_username", "out_password"),
        auth_config: None,
        debug: form.checked("debug"),
        mem_size,
        threads,
        registry_id,
    };
    ia.acct.require(AccessRole::Writer)?;
    match crate::service::conversions::request::create(s, &ia.acct, req).await {
        Ok(b) => Ok(Some(b)),
        Err(e) => {
            errors.absorb_api(e, |f| match f {
                f if f.starts_with("outputAuthConfig.password") => Some("out_password"),
                f if f.starts_with("outputAuthConfig") => Some("out_username"),
                f if f.starts_with("inputAuthConfig.password") => Some("in_password"),
                f if f.starts_with("inputAuthConfig") || f.starts_with("authConfig") => {
                    Some("in_username")
                }
                "memSize" => Some("mem_size"),
                "output_docker_version" | "input_docker_version" => Some("docker_version"),
                _ => None,
            })?;
            Ok(None)
        }
    }
}

async fn create_known(
    s: &AppState,
    ia: &InAccount,
    form: &FormData,
    errors: &mut FieldErrors,
) -> PageResult<Option<Build>> {
    let app_id = uuid_field(form, "known_app_id", errors);
    let isvprodid = errors.opt_int(form, "isvprodid");
    let isvsvn = errors.opt_int(form, "isvsvn");
    let Some(app_id) = app_id.filter(|_| errors.is_empty()) else {
        return Ok(None);
    };
    let name = form
        .text("docker_info.docker_image_name")
        .trim()
        .to_string();
    let version = form.text("docker_info.docker_version").trim().to_string();
    let digest = form.opt("docker_info.docker_image_sha");
    // Without image coordinates the image is known by its enclave identity alone.
    let docker_info =
        (!(name.is_empty() && version.is_empty() && digest.is_none())).then_some(DockerInfo {
            docker_image_name: name,
            docker_version: version,
            docker_image_sha: digest,
            docker_image_size: None,
        });
    let req = CreateBuildRequest {
        app_id: Some(app_id),
        app_name: None,
        docker_info,
        mrenclave: form.text("mrenclave").trim().to_string(),
        mrsigner: form.text("mrsigner").trim().to_string(),
        isvprodid,
        isvsvn,
        mem_size: None,
        threads: None,
    };
    match images::create(s, &ia.acct, req).await {
        Ok(b) => Ok(Some(b)),
        Err(e) => {
            errors.absorb_api(e, |f| match f {
                "app_id" => Some("known_app_id"),
                "docker_version" => Some("docker_info.docker_version"),
                _ => None,
            })?;
            Ok(None)
        }
    }
}

/// `POST /console/images`: `mode=convert` queues a conversion; `mode=known` records an image.
pub(crate) async fn create(
    State(s): State<AppState>,
    ia: InAccount,
    Posted(form): Posted,
) -> PageResult {
    let mode = match form.get("mode") {
        Some("known") => Mode::Known,
        _ => Mode::Convert,
    };
    let mut errors = FieldErrors::default();
    let created = match mode {
        Mode::Convert => create_converted(&s, &ia, &form, &mut errors).await?,
        Mode::Known => create_known(&s, &ia, &form, &mut errors).await?,
    };
    if let Some(b) = created {
        let what = b.image_label();
        let message = match mode {
            Mode::Convert => format!("Conversion of {what} queued."),
            Mode::Known => format!("Image {what} recorded; it waits for approval under Tasks."),
        };
        return Ok(done(
            &ia.auth,
            &format!("/console/images/{}", b.build_id),
            &message,
        ));
    }
    let app_id = Uuid::try_parse(
        form.text(match mode {
            Mode::Convert => "app_id",
            Mode::Known => "known_app_id",
        })
        .trim(),
    )
    .ok();
    let body = form_page(&s, &ia, app_id, &form, mode, &errors).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
}

async fn load(s: &AppState, ia: &InAccount, id: Uuid) -> PageResult<Build> {
    Ok(service::images::get(s, &ia.acct, id).await?)
}

/// The conversion panel: polls itself while the job runs; asks for a reload when it ends.
fn conversion_panel(b: &Build, from_poll: bool) -> Markup {
    let Some(c) = &b.conversion else {
        return html! {};
    };
    let running = !c.status.is_final();
    let url = format!("/console/images/{}/progress", b.build_id);
    html! {
        div #conversion.panel
            data-poll=[running.then_some(url.as_str())] data-poll-every="1500"
            data-reload=[(from_poll && !running).then_some("true")]
            aria-live="polite" {
            h2 { "Conversion " (badge(c.status.as_str())) }
            @if running {
                progress.progress max="100" value=(c.progress) aria-label="Conversion progress" { (c.progress) "%" }
                p { (c.phase) " · " (c.progress) "%"
                    @if let Some(total) = c.bytes_total { " · " (mib(c.bytes_done)) " of " (mib(total)) " MiB" }
                }
                p.hint { "This panel updates itself. Without JavaScript, reload the page." }
            } @else {
                p { (c.phase) }
            }
            @if let Some(e) = &c.error { p.field-error { (e) } }
            (facts(&[
                ("Input", html! { code { (c.input_image) } }),
                ("Output", html! { code { (c.output_image) } }),
                ("Debug enclave", html! { @if c.debug { "yes" } @else { "no" } }),
                ("Attempts", html! { (c.attempts) }),
                ("Queued", time(c.created_at)),
            ]))
        }
    }
}

fn mib(bytes: i64) -> String {
    format!("{:.1}", bytes as f64 / 1_048_576.0)
}

/// `GET /console/images/{id}`.
pub(crate) async fn show(
    State(s): State<AppState>,
    ia: InAccount,
    Path(id): Path<Uuid>,
) -> PageResult<Markup> {
    let b = load(&s, &ia, id).await?;
    let chrome = chrome(&s, &ia, Nav::Images).await?;
    let writer = ia.acct.role >= AccessRole::Writer;
    let measured = !b.enclave_info.mrenclave.is_empty();
    let content = html! {
        @if writer {
            div.toolbar { a.button.secondary href=(format!("/console/images/{id}/delete")) { "Delete…" } }
        }
        @if let Some(t) = b.pending_task_id {
            p.notice { "This image waits for approval: " a href=(format!("/console/tasks/{t}")) { "see the task" } "." }
        }
        (conversion_panel(&b, false))
        div.panel {
            (facts(&[
                ("Status", badge(b.status.status.as_str())),
                ("Application", html! { a href=(format!("/console/apps/{}", b.app_id)) { (b.app_name) } }),
                ("Image", html! { code { (b.image_label()) } }),
                ("Digest", html! { @match b.image_digest() { Some(d) => code { (d) }, None => span.muted { "—" } } }),
                ("MRENCLAVE", html! { @if measured { (hex(&b.enclave_info.mrenclave)) } @else { span.muted { "after conversion" } } }),
                ("MRSIGNER", html! { @if measured { (hex(&b.enclave_info.mrsigner)) } @else { span.muted { "after conversion" } } }),
                ("ISVPRODID", html! { (b.enclave_info.isvprodid) }),
                ("ISVSVN", html! { (b.enclave_info.isvsvn) }),
                ("Memory size", html! { (b.mem_size) " MB" }),
                ("Threads", html! { (b.threads) }),
                ("Created", time(b.created_at)),
                ("Image id", html! { code { (b.build_id) } }),
            ]))
        }
    };
    let title = b.image_label();
    Ok(page(&chrome, &title, content))
}

/// `GET /console/images/{id}/progress`: the conversion panel alone, for polling.
pub(crate) async fn progress(
    State(s): State<AppState>,
    ia: InAccount,
    Path(id): Path<Uuid>,
) -> PageResult<Markup> {
    let b = load(&s, &ia, id).await?;
    Ok(conversion_panel(&b, true))
}

/// `GET /console/images/{id}/delete`.
pub(crate) async fn confirm_delete(
    State(s): State<AppState>,
    ia: InAccount,
    Path(id): Path<Uuid>,
) -> PageResult<Markup> {
    ia.acct.require(AccessRole::Writer)?;
    let b = load(&s, &ia, id).await?;
    let chrome = chrome(&s, &ia, Nav::Images).await?;
    let content = confirm(
        &ia.auth.csrf,
        &format!("/console/images/{id}/delete"),
        html! {
            p { "Delete the image " code { (b.image_label()) }
                "? Its tasks are deleted and certificates issued to it are revoked. The image in the registry is not touched." }
        },
        "Delete image",
        &format!("/console/images/{id}"),
    );
    Ok(page(&chrome, "Delete image", content))
}

/// `POST /console/images/{id}/delete`.
pub(crate) async fn delete(
    State(s): State<AppState>,
    ia: InAccount,
    Path(id): Path<Uuid>,
    Posted(_): Posted,
) -> PageResult<Response> {
    let b = load(&s, &ia, id).await?;
    images::delete(&s, &ia.acct, id).await?;
    Ok(done(
        &ia.auth,
        "/console/images",
        &format!("Image {} deleted.", b.image_label()),
    ))
}
