//! Canonical JSON: object keys sorted by their UTF-8 bytes, no insignificant whitespace, integers
//! only, strings escaped exactly as `serde_json` escapes them (`"`, `\`, and control characters;
//! everything else verbatim UTF-8).
//!
//! The encoder sorts keys itself, so the output does not depend on how `serde_json::Map` orders
//! keys (which changes with its `preserve_order` feature).

use serde_json::Value;

use crate::error::ManifestError;

/// Encodes `value` canonically.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, ManifestError> {
    let mut out = Vec::new();
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), ManifestError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else {
                return Err(ManifestError::Field {
                    field: "number".into(),
                    reason: format!("{n} is not an integer (canonical JSON has integers only)"),
                });
            }
        }
        Value::String(s) => write_str(s, out)?,
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out)?;
                out.push(b':');
                write(v, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_str(s: &str, out: &mut Vec<u8>) -> Result<(), ManifestError> {
    serde_json::to_writer(&mut *out, s).map_err(ManifestError::Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_and_compacts() {
        let v: Value = serde_json::from_str(
            r#"{ "b": [1, {"z": null, "a": true}], "a": "x\"\n\u00e9", "B": -3 }"#,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(to_vec(&v).unwrap()).unwrap(),
            r#"{"B":-3,"a":"x\"\né","b":[1,{"a":true,"z":null}]}"#
        );
        assert!(to_vec(&serde_json::json!({"f": 1.5})).is_err());
    }
}
