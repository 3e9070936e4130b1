//! Column conversions shared by the query modules.

use uuid::Uuid;

use crate::{Error, Result};

pub(crate) fn uuid(column: &'static str, s: &str) -> Result<Uuid> {
    Uuid::try_parse(s).map_err(|e| Error::corrupt(column, e))
}

pub(crate) fn opt_uuid(column: &'static str, s: Option<&str>) -> Result<Option<Uuid>> {
    s.map(|s| uuid(column, s)).transpose()
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(column: &'static str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::corrupt(column, e))
}

pub(crate) fn to_json<T: serde::Serialize>(column: &'static str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::corrupt(column, e))
}

pub(crate) fn enum_value<T>(
    column: &'static str,
    s: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T> {
    parse(s).ok_or_else(|| Error::corrupt(column, format!("unknown value {s:?}")))
}
