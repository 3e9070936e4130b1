//! Field-level validation. A [`Checker`] collects every problem of a request, so one 422
//! response lists them all (`errors`), each naming its field.

use std::collections::{BTreeMap, HashSet};

use ccm_api::FieldError;
use ccm_api::apps::{AdvancedSettings, CertificateConfig, TcbStatus};

use crate::service::{ServiceError, ServiceResult};

#[derive(Debug, Default)]
pub(crate) struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// The problems found, as a service error.
    pub(crate) fn finish(self) -> ServiceResult<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::Invalid(self.errors))
        }
    }

    /// Free text: length in characters within `min..=max`, no control characters (except
    /// newline and tab when `multiline`), no leading/trailing whitespace for one-line values.
    pub(crate) fn text(
        &mut self,
        field: &str,
        value: &str,
        min: usize,
        max: usize,
        multiline: bool,
    ) {
        let n = value.chars().count();
        if n < min {
            self.err(
                field,
                if min == 1 {
                    "must not be empty".to_string()
                } else {
                    format!("must be at least {min} characters")
                },
            );
        } else if n > max {
            self.err(field, format!("must be at most {max} characters"));
        } else if value
            .chars()
            .any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t')))
        {
            self.err(field, "must not contain control characters");
        } else if !multiline && value.trim() != value {
            self.err(field, "must not start or end with whitespace");
        }
    }

    pub(crate) fn range(&mut self, field: &str, value: i64, min: i64, max: i64) {
        if !(min..=max).contains(&value) {
            self.err(field, format!("must be between {min} and {max}"));
        }
    }

    pub(crate) fn email(&mut self, field: &str, value: &str) {
        let ok = value.len() <= 254
            && value.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
            })
            && !value.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            self.err(field, "must be an e-mail address like name@example.com");
        }
    }

    pub(crate) fn password(&mut self, field: &str, value: &str) {
        let n = value.chars().count();
        if n < 8 {
            self.err(field, "must be at least 8 characters");
        } else if n > 1024 {
            self.err(field, "must be at most 1024 characters");
        }
    }

    /// A container image reference: `[host[:port]/]path[:tag][@sha256:digest]`, lowercase path.
    pub(crate) fn image(&mut self, field: &str, value: &str) {
        if let Err(m) = image_reference(value) {
            self.err(field, m);
        }
    }

    pub(crate) fn domain(&mut self, field: &str, value: &str) {
        if !is_dns_name(value) {
            self.err(field, "must be a lowercase DNS name like app.example.com");
        }
    }

    pub(crate) fn abs_path(&mut self, field: &str, value: &str) {
        if !value.starts_with('/')
            || value.len() > 4096
            || value.contains('\0')
            || value.ends_with('/')
        {
            self.err(field, "must be an absolute file path");
        } else if value.split('/').any(|c| c == ".." || c == ".") {
            self.err(field, "must not contain . or .. components");
        }
    }

    pub(crate) fn hex32(&mut self, field: &str, value: &str) {
        if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.err(field, "must be 64 hexadecimal digits");
        }
    }

    pub(crate) fn domains(&mut self, field: &str, domains: &[String]) {
        if domains.len() > 100 {
            self.err(field, "at most 100 domains");
            return;
        }
        let mut seen = HashSet::new();
        for (i, d) in domains.iter().enumerate() {
            self.domain(&format!("{field}[{i}]"), d);
            if !seen.insert(d) {
                self.err(format!("{field}[{i}]"), "is listed twice");
            }
        }
    }

    pub(crate) fn labels(&mut self, field: &str, labels: &BTreeMap<String, String>) {
        if labels.len() > 64 {
            self.err(field, "at most 64 labels");
        }
        for (k, v) in labels {
            let key_ok = !k.is_empty()
                && k.len() <= 63
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
            if !key_ok {
                self.err(
                    format!("{field}.{k}"),
                    "label keys are 1-63 characters of A-Z a-z 0-9 . _ - /",
                );
            }
            self.text(&format!("{field}.{k}"), v, 0, 256, false);
        }
    }

    pub(crate) fn certificate(&mut self, field: &str, c: &CertificateConfig, allowed: &[String]) {
        self.domain(&format!("{field}.subject"), &c.subject);
        if !allowed.contains(&c.subject) {
            self.err(format!("{field}.subject"), "must be one of allowed_domains");
        }
        self.abs_path(&format!("{field}.key_path"), &c.key_path);
        self.abs_path(&format!("{field}.cert_path"), &c.cert_path);
        if c.key_path == c.cert_path {
            self.err(format!("{field}.cert_path"), "must differ from key_path");
        }
        if let Some(chain) = &c.chain_path {
            self.abs_path(&format!("{field}.chain_path"), chain);
            if chain == &c.key_path || chain == &c.cert_path {
                self.err(
                    format!("{field}.chain_path"),
                    "must differ from key_path and cert_path",
                );
            }
        }
    }

    pub(crate) fn advanced(&mut self, field: &str, a: &AdvancedSettings) {
        if a.accepted_tcb_statuses.is_empty() {
            self.err(
                format!("{field}.accepted_tcb_statuses"),
                "must not be empty",
            );
        }
        if a.accepted_tcb_statuses.contains(&TcbStatus::Revoked) {
            self.err(
                format!("{field}.accepted_tcb_statuses"),
                "Revoked platforms are never accepted",
            );
        }
        if let Some(m) = a.min_isvsvn {
            self.range(&format!("{field}.min_isvsvn"), m, 0, 65535);
        }
    }
}

pub(crate) fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').count() >= 2
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn image_reference(value: &str) -> Result<(), &'static str> {
    if value.is_empty() || value.len() > 512 {
        return Err("must be an image reference of 1-512 characters");
    }
    let (rest, digest) = match value.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (value, None),
    };
    if let Some(d) = digest {
        let ok = d
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !ok {
            return Err("the digest must be sha256:<64 hex digits>");
        }
    }
    let mut components: Vec<&str> = rest.split('/').collect();
    // A first component with a dot, colon or "localhost" is a registry host[:port].
    if components.len() > 1
        && (components[0].contains('.')
            || components[0].contains(':')
            || components[0] == "localhost")
    {
        let host = components.remove(0);
        let (h, port) = host
            .split_once(':')
            .map_or((host, None), |(h, p)| (h, Some(p)));
        if h.is_empty()
            || !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return Err("the registry host is not valid");
        }
        if port
            .is_some_and(|p| p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err("the registry port is not valid");
        }
    }
    let last = components.len().saturating_sub(1);
    for (i, c) in components.iter().enumerate() {
        let name = if i == last {
            match c.split_once(':') {
                Some((n, tag)) => {
                    let tag_ok = !tag.is_empty()
                        && tag.len() <= 128
                        && tag
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                        && !tag.starts_with(['.', '-']);
                    if !tag_ok {
                        return Err("the tag is not valid");
                    }
                    n
                }
                None => c,
            }
        } else {
            c
        };
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && name
                .bytes()
                .last()
                .is_some_and(|b| b.is_ascii_alphanumeric());
        if !ok {
            return Err(
                "repository path components are lowercase letters, digits and . _ - separators",
            );
        }
    }
    Ok(())
}

/// Checks an image tag (`docker_version`).
pub(crate) fn tag(c: &mut Checker, field: &str, value: &str) {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && !value.starts_with(['.', '-']);
    if !ok {
        c.err(
            field,
            "must be an image tag: up to 128 of A-Z a-z 0-9 _ . - (not starting with . or -)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        for ok in [
            "python",
            "registry/python-flask",
            "registry.example.com:5000/team/app:1.0",
            "localhost/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(image_reference(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "UPPER/case",
            "a//b",
            "app:",
            "app:-x",
            "'; DROP TABLE apps; --",
            "a b",
            "host:99999999/x",
        ] {
            assert!(image_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_name("myapp.domain.dom"));
        for bad in [
            "localhost",
            "-a.example",
            "a..example",
            "A.example",
            "a_b.example",
            "x.example'--",
        ] {
            assert!(!is_dns_name(bad), "{bad}");
        }
    }
}
