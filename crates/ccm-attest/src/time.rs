//! Time as an input: Unix seconds in, RFC 3339 text in the collateral.
//!
//! Nothing in this crate reads the clock; callers pass `now` explicitly. Intel's collateral writes
//! dates as `YYYY-MM-DDTHH:MM:SSZ`, which is what [`format_rfc3339`] produces and [`parse_rfc3339`]
//! accepts (any RFC 3339 offset is accepted on input).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
#[cfg(feature = "sim")]
use time::macros::format_description;

/// Formats Unix seconds the way Intel's PCS does (`2025-06-19T10:56:11Z`); `None` if the value is
/// beyond what a calendar date can hold.
#[cfg(feature = "sim")]
pub(crate) fn format_rfc3339(secs: u64) -> Option<String> {
    let secs = i64::try_from(secs).ok()?;
    let dt = OffsetDateTime::from_unix_timestamp(secs).ok()?;
    dt.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .ok()
}

/// Parses an RFC 3339 date to Unix seconds; `None` for malformed text or dates before 1970.
pub(crate) fn parse_rfc3339(text: &str) -> Option<u64> {
    let dt = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    u64::try_from(dt.unix_timestamp()).ok()
}

/// Converts Unix seconds to an `OffsetDateTime` (for certificate and CRL generation).
#[cfg(feature = "sim")]
pub(crate) fn to_datetime(secs: u64) -> Option<OffsetDateTime> {
    let secs = i64::try_from(secs).ok()?;
    OffsetDateTime::from_unix_timestamp(secs).ok()
}

/// Unix seconds from a signed timestamp, clamping dates before 1970 to 0.
pub(crate) fn clamp_unix(secs: i64) -> u64 {
    u64::try_from(secs).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_intel_format() {
        let text = "2025-06-19T10:56:11Z";
        let secs = parse_rfc3339(text).unwrap();
        assert_eq!(secs, 1_750_330_571);
        assert_eq!(format_rfc3339(secs).unwrap(), text);
    }

    #[test]
    fn rejects_malformed_dates() {
        assert_eq!(parse_rfc3339("2025-06-19"), None);
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), None);
        assert_eq!(parse_rfc3339(""), None);
    }
}
