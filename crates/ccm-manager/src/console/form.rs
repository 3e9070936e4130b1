//! Submitted forms and field-level errors.
//!
//! Forms are parsed as `application/x-www-form-urlencoded` pairs. Numbers are read here (with an
//! error naming the field when they are not numbers); everything else is checked by the same
//! validation the API uses ([`crate::service::validate`], through the shared service functions), whose
//! errors name fields by their API path (`mem_size`, `certificate.subject`, ...). The console's
//! inputs carry those same names, so [`FieldErrors::absorb_api`] puts each message next to its
//! input.

use std::collections::BTreeMap;

use axum::http::StatusCode;

use crate::error::ApiError;

/// Most pairs a console form may have.
const MAX_PAIRS: usize = 200;

/// The pairs of a submitted form.
#[derive(Debug, Default, Clone)]
pub(crate) struct FormData {
    pairs: Vec<(String, String)>,
}

impl FormData {
    /// Parses a urlencoded body.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded_pairs(body)?;
        if pairs.len() > MAX_PAIRS {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!("a form has at most {MAX_PAIRS} fields"),
            ));
        }
        Ok(Self { pairs })
    }

    /// A form prefilled with one pair (e.g. a token from a link).
    pub(crate) fn with(name: &str, value: &str) -> Self {
        Self {
            pairs: vec![(name.to_string(), value.to_string())],
        }
    }

    /// Adds a pair.
    pub(crate) fn push(&mut self, name: &str, value: &str) {
        self.pairs.push((name.to_string(), value.to_string()));
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`, or "" when absent.
    pub(crate) fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().to_string()
    }

    /// The trimmed value of `name`, `None` when absent or blank.
    pub(crate) fn opt(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
    }

    /// Whether a checkbox named `name` was ticked.
    pub(crate) fn checked(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| !v.is_empty())
    }
}

/// Decodes `a=b&c=d` with `+` as space and percent escapes; refuses invalid UTF-8.
fn serde_urlencoded_pairs(body: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    let bad = || ApiError::bad_request("invalid_body", "the form is not valid urlencoded UTF-8");
    let decode = |s: &[u8]| -> Result<String, ApiError> {
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while let Some(&b) = s.get(i) {
            match b {
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b'%' => {
                    let hex = s.get(i + 1..i + 3).ok_or_else(bad)?;
                    let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                    out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                    i += 3;
                }
                _ => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| bad())
    };
    body.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut it = p.splitn(2, |&b| b == b'=');
            let name = decode(it.next().unwrap_or_default())?;
            let value = decode(it.next().unwrap_or_default())?;
            Ok((name, value))
        })
        .collect()
}

/// Field errors of a form, by input name, plus errors that belong to no input.
#[derive(Debug, Default, Clone)]
pub(crate) struct FieldErrors {
    by_field: BTreeMap<String, Vec<String>>,
    general: Vec<String>,
}

impl FieldErrors {
    /// Adds a message for an input.
    pub(crate) fn add(&mut self, field: &str, message: impl Into<String>) {
        let message = message.into();
        let list = self.by_field.entry(field.to_string()).or_default();
        // Two API fields shown by one input may report the same problem.
        if !list.contains(&message) {
            list.push(message);
        }
    }

    /// Adds a message that belongs to no single input.
    pub(crate) fn general(&mut self, message: impl Into<String>) {
        self.general.push(message.into());
    }

    /// Whether nothing is wrong.
    pub(crate) fn is_empty(&self) -> bool {
        self.by_field.is_empty() && self.general.is_empty()
    }

    /// The messages of one input.
    pub(crate) fn of(&self, field: &str) -> &[String] {
        self.by_field.get(field).map_or(&[], Vec::as_slice)
    }

    /// Every (field, message), in field order.
    pub(crate) fn all(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_field
            .iter()
            .flat_map(|(f, ms)| ms.iter().map(move |m| (f.as_str(), m.as_str())))
    }

    /// The messages that belong to no input.
    pub(crate) fn general_messages(&self) -> &[String] {
        &self.general
    }

    /// Reads an integer input; records an error naming the field when it is not one.
    pub(crate) fn int(&mut self, form: &FormData, field: &str) -> Option<i64> {
        let raw = form.text(field);
        let raw = raw.trim();
        if raw.is_empty() {
            self.add(field, "is required");
            return None;
        }
        match raw.parse::<i64>() {
            Ok(v) => Some(v),
            Err(_) => {
                self.add(field, "must be a whole number");
                None
            }
        }
    }

    /// Reads an optional integer input (blank means absent).
    pub(crate) fn opt_int(&mut self, form: &FormData, field: &str) -> Option<i64> {
        let raw = form.text(field);
        if raw.trim().is_empty() {
            return None;
        }
        self.int(form, field)
    }

    /// Turns an API error into form errors when it is about the submitted values (422 with
    /// fields, or a conflict naming a field); other errors are passed back unchanged. `rename`
    /// maps an API field path to the input that shows it (identity when it returns `None`).
    pub(crate) fn absorb_api(
        &mut self,
        e: impl Into<ApiError>,
        rename: impl Fn(&str) -> Option<&'static str>,
    ) -> Result<(), ApiError> {
        let e: ApiError = e.into();
        let status = e.status();
        if status != StatusCode::UNPROCESSABLE_ENTITY && status != StatusCode::CONFLICT {
            return Err(e);
        }
        let body = e.body();
        let field_name = |f: &str| rename(f).map_or_else(|| f.to_string(), String::from);
        if body.errors.is_empty() {
            match &body.field {
                Some(f) => self.add(&field_name(f), body.message.clone()),
                None => self.general(body.message.clone()),
            }
        } else {
            for fe in &body.errors {
                self.add(&field_name(&fe.field), fe.message.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urlencoded_pairs() {
        let f = FormData::parse(b"a=1&b=x+y%21&c=&d&e=%C3%BC").unwrap();
        assert_eq!(f.get("a"), Some("1"));
        assert_eq!(f.get("b"), Some("x y!"));
        assert_eq!(f.get("c"), Some(""));
        assert_eq!(f.get("d"), Some(""));
        assert_eq!(f.get("e"), Some("ü"));
        assert_eq!(f.opt("c"), None);
        assert!(!f.checked("c"));
        for bad in [&b"a=%zz"[..], b"a=%C3", b"a=%4"] {
            assert_eq!(
                FormData::parse(bad).unwrap_err().body().code,
                "invalid_body",
                "{bad:?}"
            );
        }
        let many = "a=1&".repeat(MAX_PAIRS + 1);
        assert!(FormData::parse(many.as_bytes()).is_err());
    }

    #[test]
    fn numbers_name_the_field() {
        let f = FormData::parse(b"n=12&x=1.5&e=").unwrap();
        let mut e = FieldErrors::default();
        assert_eq!(e.int(&f, "n"), Some(12));
        assert_eq!(e.int(&f, "x"), None);
        assert_eq!(e.int(&f, "e"), None);
        assert_eq!(e.opt_int(&f, "e"), None);
        assert_eq!(e.of("x"), ["must be a whole number"]);
        assert_eq!(e.of("e"), ["is required"]);
    }

    #[test]
    fn api_errors_land_on_fields() {
        let mut e = FieldErrors::default();
        let api = ApiError::validation(vec![
            ccm_api::FieldError {
                field: "mem_size".into(),
                message: "must be between 16 and 262144".into(),
            },
            ccm_api::FieldError {
                field: "certificate.subject".into(),
                message: "bad".into(),
            },
        ]);
        e.absorb_api(api, |f| (f == "certificate.subject").then_some("domain"))
            .unwrap();
        assert_eq!(e.of("mem_size"), ["must be between 16 and 262144"]);
        assert_eq!(e.of("domain"), ["bad"]);
        let conflict =
            ApiError::conflict("conflict", "app with this name already exists").with_field("name");
        e.absorb_api(conflict, |_| None).unwrap();
        assert_eq!(e.of("name"), ["app with this name already exists"]);
        assert!(e.absorb_api(ApiError::forbidden("no"), |_| None).is_err());
    }
}
