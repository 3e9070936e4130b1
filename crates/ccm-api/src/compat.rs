//! Fields of the reference's request schemas that ccm does not implement, in one place.
//!
//! Clients written for the reference API (Fortanix's `em-client`, operators' scripts) fill
//! optional fields ccm has no use for. ccm's request types still reject unknown fields, so a typo
//! is an error naming the field; the exceptions are the fields a request type lists in
//! [`ReferenceFields::reference_fields`], each with a [`Disposition`]:
//!
//! - [`Disposition::Ignore`]: accepted and dropped before the request is parsed. For fields that
//!   are cosmetic or do not apply to ccm (`custom_logo`, `group_id`, `java_runtime`, ...).
//! - [`Disposition::Refuse`]: the field asks for security behaviour ccm does not implement
//!   (per-account authentication methods, encrypted directories, unmeasured read-write
//!   directories, ...). Silently ignoring it would let the caller believe it took effect, so a
//!   request that gives it (with any value but `null`) is refused: the manager answers 422
//!   `unsupported_field` naming the field and saying why ([`Unsupported`]).
//!
//! Every other unknown field stays refused (422 `invalid_field`). An object that only held
//! ignored fields is dropped with them, so `"advanced_settings": {"entrypoint": [...]}` means
//! the same as no `advanced_settings` at all (and does not, for example, reset an app's
//! attestation policy to its defaults).
//!
//! The manager's JSON extractor applies [`apply`] to every request body before parsing it
//! ([`ReferenceFields`] is implemented, empty where nothing applies, by every request type);
//! `docs/api-compatibility.md` lists the fields.

use serde_json::Value;

/// What ccm does with a field of a reference schema it does not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Accepted and dropped: the field does not change what ccm does.
    Ignore,
    /// Refused (422 `unsupported_field`) unless `null`: the field would change security
    /// behaviour that ccm does not implement. The text says what ccm does instead.
    Refuse(&'static str),
}

/// One field of a reference request schema that ccm does not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferenceField {
    /// Dotted path from the request body's top level, e.g. `advanced_settings.entrypoint`.
    pub path: &'static str,
    /// What ccm does with it.
    pub disposition: Disposition,
}

impl ReferenceField {
    /// A field accepted and dropped.
    pub const fn ignore(path: &'static str) -> Self {
        Self {
            path,
            disposition: Disposition::Ignore,
        }
    }

    /// A field refused, with the reason.
    pub const fn refuse(path: &'static str, why: &'static str) -> Self {
        Self {
            path,
            disposition: Disposition::Refuse(why),
        }
    }
}

/// A request type's reference fields that ccm does not implement.
pub trait ReferenceFields {
    /// The fields; none by default.
    fn reference_fields() -> &'static [ReferenceField] {
        &[]
    }
}

/// A refused field: the request gave a field whose behaviour ccm does not implement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The field's dotted path.
    pub field: String,
    /// Why it is refused and what ccm does instead.
    pub reason: &'static str,
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: not supported by ccm: {}", self.field, self.reason)
    }
}

/// Applies a request type's reference fields to a request body: refuses the first refused field
/// present (not `null`), then drops the others (ignored ones, and refused ones that are `null`)
/// and the objects they leave empty. A body
/// that is not an object, and paths that do not lead through objects, are left alone (parsing
/// reports those).
pub fn apply(body: &mut Value, fields: &[ReferenceField]) -> Result<(), Unsupported> {
    for f in fields {
        if let Disposition::Refuse(reason) = f.disposition
            && lookup(body, f.path).is_some_and(|v| !v.is_null())
        {
            return Err(Unsupported {
                field: f.path.to_string(),
                reason,
            });
        }
    }
    // What is left of the refused fields is `null`: as good as absent.
    for f in fields {
        remove(body, f.path);
    }
    Ok(())
}

fn lookup<'a>(body: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(body, |v, key| v.as_object()?.get(key))
}

/// Removes the field at `path`; a parent object left empty by the removal goes with it.
fn remove(body: &mut Value, path: &str) {
    let (parent_path, key) = match path.rsplit_once('.') {
        Some((p, k)) => (Some(p), k),
        None => (None, path),
    };
    let parent = match parent_path {
        None => body.as_object_mut(),
        Some(p) => p
            .split('.')
            .try_fold(&mut *body, |v, k| v.as_object_mut()?.get_mut(k))
            .and_then(Value::as_object_mut),
    };
    let Some(parent) = parent else { return };
    if parent.remove(key).is_none() || !parent.is_empty() {
        return;
    }
    if let Some(p) = parent_path {
        remove(body, p);
    }
}

/// Implements [`ReferenceFields`] without fields for request types.
macro_rules! no_reference_fields {
    ($($ty:ty),* $(,)?) => {
        $(impl $crate::compat::ReferenceFields for $ty {})*
    };
}

pub(crate) use no_reference_fields;

// Bodies parsed as raw JSON are checked where they are turned into a request type.
no_reference_fields!(Value);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIELDS: &[ReferenceField] = &[
        ReferenceField::ignore("custom_logo"),
        ReferenceField::ignore("advanced_settings.entrypoint"),
        ReferenceField::ignore("advanced_settings.java_runtime"),
        ReferenceField::refuse("advanced_settings.encryptedDirs", "not implemented"),
        ReferenceField::refuse("auth_configs", "passwords only"),
    ];

    #[test]
    fn ignored_fields_go_with_the_objects_they_leave_empty() {
        let mut v = json!({"name": "a", "custom_logo": "x",
            "advanced_settings": {"entrypoint": ["/bin/sh"], "java_runtime": "OPENJDK"}});
        apply(&mut v, FIELDS).unwrap();
        assert_eq!(v, json!({"name": "a"}));

        let mut v = json!({"advanced_settings": {"entrypoint": [], "allow_debug": true}});
        apply(&mut v, FIELDS).unwrap();
        assert_eq!(v, json!({"advanced_settings": {"allow_debug": true}}));

        // An empty object the client sent itself stays: it means what it says.
        let mut v = json!({"advanced_settings": {}});
        apply(&mut v, FIELDS).unwrap();
        assert_eq!(v, json!({"advanced_settings": {}}));
    }

    #[test]
    fn refused_fields_are_named_unless_null() {
        let mut v = json!({"advanced_settings": {"encryptedDirs": ["/data"]}});
        let e = apply(&mut v, FIELDS).unwrap_err();
        assert_eq!(e.field, "advanced_settings.encryptedDirs");
        assert!(e.to_string().contains("not implemented"));

        let mut v = json!({"auth_configs": [], "custom_logo": "x"});
        assert_eq!(apply(&mut v, FIELDS).unwrap_err().field, "auth_configs");

        let mut v = json!({"auth_configs": null, "name": "a"});
        apply(&mut v, FIELDS).unwrap();
        assert_eq!(v, json!({"name": "a"}));
    }

    #[test]
    fn bodies_of_other_shapes_are_left_to_the_parser() {
        for mut v in [
            json!([1, 2]),
            json!("text"),
            json!({"advanced_settings": 3}),
        ] {
            let before = v.clone();
            apply(&mut v, FIELDS).unwrap();
            assert_eq!(v, before);
        }
    }
}
