//! The page layout and the components every page uses: form fields with their errors, status
//! badges, the SIMULATED label, times, pagination. maud escapes every interpolated value, so
//! names and descriptions users typed are always text, never markup.

use maud::{DOCTYPE, Markup, html};

use super::assets;
use super::form::FieldErrors;

/// Which navigation entry is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Apps,
    Images,
    Tasks,
    Nodes,
    Running,
    Certificates,
    Audit,
    Accounts,
}

/// What the frame around a signed-in page shows.
#[derive(Debug, Clone)]
pub(crate) struct Chrome {
    /// The user's e-mail.
    pub(crate) email: String,
    /// The selected account's name and the user's role in it.
    pub(crate) account: Option<(String, &'static str)>,
    /// Tasks waiting for a decision (badge in the navigation).
    pub(crate) pending_tasks: i64,
    /// CSRF token for the logout form (and any form on the page).
    pub(crate) csrf: String,
    /// One-shot message.
    pub(crate) flash: Option<String>,
    /// Current navigation entry.
    pub(crate) nav: Nav,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="color-scheme" content="light dark";
            title { (title) " · ccm" }
            link rel="stylesheet" href=(assets::css_url());
            script src=(assets::js_url()) defer {}
        }
    }
}

/// A page for signed-in users: header with account and logout, navigation, main content.
pub(crate) fn page(c: &Chrome, title: &str, content: Markup) -> Markup {
    let entry = |nav: Nav, href: &str, label: &str, badge: Option<i64>| {
        html! {
            li {
                a href=(href) aria-current=[(c.nav == nav).then_some("page")] {
                    (label)
                    @if let Some(n) = badge.filter(|n| *n > 0) {
                        " " span.count aria-label=(format!("{n} pending")) { (n) }
                    }
                }
            }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/console" { span.logo aria-hidden="true" { "◆" } " ccm" }
                    span.product { "Confidential Computing Manager" }
                    div.who {
                        @if let Some((name, role)) = &c.account {
                            a.account href="/console/accounts" title="Switch account" {
                                span.visually-hidden { "Account: " }
                                (name) " " span.role { (role) }
                            }
                        } @else {
                            a.account href="/console/accounts" { "No account selected" }
                        }
                        span.email { (c.email) }
                        form.inline method="post" action="/console/logout" {
                            (csrf_input(&c.csrf))
                            button.link type="submit" { "Log out" }
                        }
                    }
                }
                div.shell {
                    nav.side aria-label="Main" {
                        ul {
                            (entry(Nav::Overview, "/console", "Overview", None))
                            (entry(Nav::Apps, "/console/apps", "Applications", None))
                            (entry(Nav::Images, "/console/images", "Images", None))
                            (entry(Nav::Tasks, "/console/tasks", "Tasks", Some(c.pending_tasks)))
                            (entry(Nav::Nodes, "/console/nodes", "Compute nodes", None))
                            (entry(Nav::Running, "/console/running", "Running apps", None))
                            (entry(Nav::Certificates, "/console/certificates", "Certificates", None))
                            (entry(Nav::Audit, "/console/audit", "Audit log", None))
                            (entry(Nav::Accounts, "/console/accounts", "Accounts", None))
                        }
                    }
                    main #main tabindex="-1" {
                        (flash(c.flash.as_deref()))
                        h1 { (title) }
                        (content)
                    }
                }
            }
        }
    }
}

/// A page without a session (login, sign-up, errors before login).
pub(crate) fn bare_page(title: &str, flash_msg: Option<&str>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                main #main.narrow {
                    p.brand-big { span.logo aria-hidden="true" { "◆" } " ccm" }
                    p.product { "Confidential Computing Manager" }
                    (flash(flash_msg))
                    h1 { (title) }
                    (content)
                }
            }
        }
    }
}

fn flash(msg: Option<&str>) -> Markup {
    html! {
        @if let Some(m) = msg {
            div.flash role="status" { (m) }
        }
    }
}

/// The hidden CSRF input of every form.
pub(crate) fn csrf_input(token: &str) -> Markup {
    html! { input type="hidden" name="_csrf" value=(token); }
}

/// The list of problems at the top of a form that was refused, linking to each field.
pub(crate) fn error_summary(errors: &FieldErrors) -> Markup {
    html! {
        @if !errors.is_empty() {
            div.error-summary role="alert" tabindex="-1" {
                h2 { "Please correct the following" }
                ul {
                    @for m in errors.general_messages() { li { (m) } }
                    @for (f, m) in errors.all() {
                        li { a href=(format!("#f-{}", field_id(f))) { (field_label(f)) ": " (m) } }
                    }
                }
            }
        }
    }
}

/// An element id for a field name (`certificate.subject` → `certificate-subject`).
pub(crate) fn field_id(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// A readable label for an input name in the error summary.
fn field_label(name: &str) -> String {
    let known = match name {
        "isvprodid" => Some("ISVPRODID"),
        "isvsvn" => Some("ISVSVN"),
        "mrenclave" => Some("MRENCLAVE"),
        "mrsigner" => Some("MRSIGNER"),
        "mem_size" => Some("Memory size"),
        "threads" => Some("Thread count"),
        "user_email" => Some("E-mail"),
        "user_password" => Some("Password"),
        "password_confirm" => Some("Repeated password"),
        "input_image_name" => Some("Input image"),
        "output_image_name" => Some("Output image"),
        "cert_path" => Some("Certificate path"),
        "extra_domains" => Some("More allowed domains"),
        "docker_version" | "docker_info.docker_version" => Some("Tag"),
        "docker_info.docker_image_name" => Some("Image"),
        "docker_info.docker_image_sha" => Some("Digest"),
        "app_id" | "known_app_id" => Some("Application"),
        "out_username" | "out_password" => Some("Output registry credentials"),
        "in_username" | "in_password" => Some("Input registry credentials"),
        "expires_in" => Some("Valid for"),
        "confirm_name" => Some("Account name"),
        _ => None,
    };
    if let Some(k) = known {
        return k.to_string();
    }
    let s = name.replace(['_', '.'], " ");
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// How an input is drawn.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Input<'a> {
    /// `type` attribute (default `text`).
    pub(crate) kind: &'a str,
    /// Whether it is required.
    pub(crate) required: bool,
    /// Help text under the label.
    pub(crate) hint: Option<&'a str>,
    /// `placeholder`.
    pub(crate) placeholder: Option<&'a str>,
    /// `autocomplete`.
    pub(crate) autocomplete: Option<&'a str>,
    /// `min` for numbers.
    pub(crate) min: Option<i64>,
    /// `max` for numbers.
    pub(crate) max: Option<i64>,
}

fn messages(id: &str, errs: &[String]) -> Markup {
    html! {
        @if !errs.is_empty() {
            p.field-error id=(format!("{id}-error")) {
                @for (i, m) in errs.iter().enumerate() {
                    @if i > 0 { br; }
                    (m)
                }
            }
        }
    }
}

fn described_by(id: &str, hint: bool, error: bool) -> Option<String> {
    let mut v = Vec::new();
    if hint {
        v.push(format!("{id}-hint"));
    }
    if error {
        v.push(format!("{id}-error"));
    }
    (!v.is_empty()).then(|| v.join(" "))
}

/// A labelled input with its hint and errors.
pub(crate) fn field(
    name: &str,
    label: &str,
    value: &str,
    errors: &FieldErrors,
    opts: Input<'_>,
) -> Markup {
    let id = format!("f-{}", field_id(name));
    let errs = errors.of(name);
    let kind = if opts.kind.is_empty() {
        "text"
    } else {
        opts.kind
    };
    html! {
        div.field.invalid[!errs.is_empty()] {
            label for=(id) { (label) @if !opts.required { " " span.optional { "(optional)" } } }
            @if let Some(h) = opts.hint { p.hint id=(format!("{id}-hint")) { (h) } }
            (messages(&id, errs))
            input id=(id) name=(name) type=(kind) value=(value)
                required[opts.required]
                placeholder=[opts.placeholder]
                autocomplete=[opts.autocomplete]
                min=[opts.min] max=[opts.max]
                aria-invalid=[(!errs.is_empty()).then_some("true")]
                aria-describedby=[described_by(&id, opts.hint.is_some(), !errs.is_empty())];
        }
    }
}

/// A labelled select with its hint and errors; `options` are (value, label).
pub(crate) fn select(
    name: &str,
    label: &str,
    selected: &str,
    options: &[(&str, &str)],
    errors: &FieldErrors,
    hint: Option<&str>,
) -> Markup {
    let id = format!("f-{}", field_id(name));
    let errs = errors.of(name);
    html! {
        div.field.invalid[!errs.is_empty()] {
            label for=(id) { (label) }
            @if let Some(h) = hint { p.hint id=(format!("{id}-hint")) { (h) } }
            (messages(&id, errs))
            select id=(id) name=(name)
                aria-invalid=[(!errs.is_empty()).then_some("true")]
                aria-describedby=[described_by(&id, hint.is_some(), !errs.is_empty())] {
                @for (v, l) in options {
                    option value=(v) selected[*v == selected] { (l) }
                }
            }
        }
    }
}

/// A labelled textarea.
pub(crate) fn textarea(
    name: &str,
    label: &str,
    value: &str,
    errors: &FieldErrors,
    hint: Option<&str>,
) -> Markup {
    let id = format!("f-{}", field_id(name));
    let errs = errors.of(name);
    html! {
        div.field.invalid[!errs.is_empty()] {
            label for=(id) { (label) " " span.optional { "(optional)" } }
            @if let Some(h) = hint { p.hint id=(format!("{id}-hint")) { (h) } }
            (messages(&id, errs))
            textarea id=(id) name=(name) rows="3"
                aria-invalid=[(!errs.is_empty()).then_some("true")]
                aria-describedby=[described_by(&id, hint.is_some(), !errs.is_empty())] { (value) }
        }
    }
}

/// A checkbox with its label.
pub(crate) fn checkbox(name: &str, label: &str, checked: bool, hint: Option<&str>) -> Markup {
    let id = format!("f-{}", field_id(name));
    html! {
        div.field.check {
            input id=(id) type="checkbox" name=(name) value="on" checked[checked]
                aria-describedby=[hint.map(|_| format!("{id}-hint"))];
            label for=(id) { (label) }
            @if let Some(h) = hint { p.hint id=(format!("{id}-hint")) { (h) } }
        }
    }
}

/// A coloured status label (text always present, colour only reinforces it).
pub(crate) fn badge(status: &str) -> Markup {
    let class = match status {
        "WHITELISTED" | "SUCCESS" | "RUNNING" | "ISSUED" | "SUCCEEDED" | "APPROVED"
        | "UpToDate" | "PROVISIONED" => "ok",
        "PENDING"
        | "INPROGRESS"
        | "QUEUED"
        | "PENDING_WHITELIST"
        | "SWHardeningNeeded"
        | "ConfigurationNeeded"
        | "ConfigurationAndSWHardeningNeeded"
        | "STOPPED" => "wait",
        "REJECTED"
        | "DENIED"
        | "FAILED"
        | "REVOKED"
        | "OutOfDate"
        | "OutOfDateConfigurationNeeded"
        | "Revoked"
        | "EXPIRED" => "bad",
        _ => "neutral",
    };
    html! { span class=(format!("badge {class}")) { (status) } }
}

/// The label every simulated platform, node and certificate carries.
pub(crate) fn simulated() -> Markup {
    html! {
        span.badge.sim title="Attested by a simulated SGX platform: nothing is isolated, anyone with the platform secret can forge evidence. For development and tests only." {
            "SIMULATED"
        }
    }
}

/// A UTC time, machine-readable too.
pub(crate) fn time(ts: i64) -> Markup {
    let (iso, text) = format_time(ts);
    html! { time datetime=(iso) { (text) } }
}

/// `(ISO 8601, "YYYY-MM-DD HH:MM UTC")` of Unix seconds.
pub(crate) fn format_time(ts: i64) -> (String, String) {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, min, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    (
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}Z"),
        format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02} UTC"),
    )
}

/// A long hex value: abbreviated, with the whole value in a copyable code element.
pub(crate) fn hex(value: &str) -> Markup {
    html! { code.hex title=(value) { (value) } }
}

/// Previous/next links for a list (`page` starts at 1).
pub(crate) fn pager(base: &str, page: i64, has_next: bool) -> Markup {
    let sep = if base.contains('?') { '&' } else { '?' };
    html! {
        @if page > 1 || has_next {
            nav.pager aria-label="Pagination" {
                @if page > 1 {
                    a rel="prev" href=(format!("{base}{sep}page={}", page - 1)) { "← Previous" }
                }
                span { "Page " (page) }
                @if has_next {
                    a rel="next" href=(format!("{base}{sep}page={}", page + 1)) { "Next →" }
                }
            }
        }
    }
}

/// A confirmation form for a destructive action.
pub(crate) fn confirm(
    csrf: &str,
    action: &str,
    what: Markup,
    button: &str,
    cancel: &str,
) -> Markup {
    html! {
        div.confirm {
            (what)
            form method="post" action=(action) {
                (csrf_input(csrf))
                button.danger type="submit" { (button) }
                " "
                a.button.secondary href=(cancel) { "Cancel" }
            }
        }
    }
}

/// An empty-list message.
pub(crate) fn empty(text: &str) -> Markup {
    html! { p.empty { (text) } }
}

/// Preformatted text that may be copied with a button (progressive enhancement: without
/// JavaScript the button is hidden and the text can be selected as usual).
pub(crate) fn copyable(id: &str, text: &str, label: &str) -> Markup {
    html! {
        div.copyable {
            pre { code id=(id) { (text) } }
            button.copy type="button" data-copy=(id) hidden { (label) }
            span.copied role="status" aria-live="polite" {}
        }
    }
}

/// A definition list of (term, value) rows.
pub(crate) fn facts(rows: &[(&str, Markup)]) -> Markup {
    html! {
        dl.facts {
            @for (k, v) in rows {
                dt { (k) }
                dd { (v) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_in_utc() {
        assert_eq!(format_time(0).1, "1970-01-01 00:00 UTC");
        assert_eq!(format_time(1_800_000_000).0, "2027-01-15T08:00:00Z");
        assert_eq!(format_time(951_782_400).1, "2000-02-29 00:00 UTC");
        assert_eq!(format_time(-86_400).1, "1969-12-31 00:00 UTC");
    }

    #[test]
    fn user_text_is_escaped() {
        let e = FieldErrors::default();
        let m = field("name", "Name", "<script>x</script>\"", &e, Input::default()).into_string();
        assert!(m.contains("&lt;script&gt;x&lt;/script&gt;&quot;"), "{m}");
        assert!(!m.contains("<script>x"));
    }

    #[test]
    fn field_errors_are_linked_to_inputs() {
        let mut e = FieldErrors::default();
        e.add("certificate.subject", "must be a lowercase DNS name");
        let m = field("certificate.subject", "Domain", "X", &e, Input::default()).into_string();
        assert!(m.contains(r#"aria-invalid="true""#), "{m}");
        assert!(
            m.contains(r#"aria-describedby="f-certificate-subject-error""#),
            "{m}"
        );
        assert!(m.contains(r#"id="f-certificate-subject-error""#), "{m}");
        let s = error_summary(&e).into_string();
        assert!(s.contains(r##"href="#f-certificate-subject""##), "{s}");
    }
}
