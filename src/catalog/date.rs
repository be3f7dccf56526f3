//! Dates given by the user (`--restore-from-date`) and shown in messages.
//!
//! freezer-agent takes `YYYY-MM-DDThh:mm:ss` in the host's local time; we also take a space for
//! the `T`, and RFC 3339 with an offset (`Z`, `+01:00`) for an unambiguous instant.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use crate::error::{Error, Result};

/// The accepted forms, for error messages.
const FORMS: &str = "YYYY-MM-DDThh:mm:ss (local time, as freezer-agent takes it; a space may \
                     replace the T) or RFC 3339 with an offset (2026-11-20T03:00:00Z, \
                     2026-11-20T03:00:00+01:00)";

/// Unix seconds of `s`; a usage error naming the accepted forms for anything else.
pub fn parse_date(s: &str) -> Result<i64> {
    let s = s.trim();
    let bad = |why: String| Error::usage(format!("cannot read the date {s:?}: {why}; use {FORMS}"));
    let jiff_why = |e: jiff::Error| plain(&e.to_string());
    // The local form is exactly 19 characters; anything longer must carry an offset.
    if s.len() == 19 {
        let format = if s.as_bytes().get(10) == Some(&b' ') {
            "%Y-%m-%d %H:%M:%S"
        } else {
            "%Y-%m-%dT%H:%M:%S"
        };
        let dt = DateTime::strptime(format, s).map_err(|e| bad(jiff_why(e)))?;
        // In a DST fold the earlier instant is taken, in a gap the later one (jiff's
        // "compatible" rule, the same as mktime and freezer-agent).
        let zoned = dt.to_zoned(TimeZone::system()).map_err(|e| bad(jiff_why(e)))?;
        return Ok(zoned.timestamp().as_second());
    }
    if !has_offset(s) {
        return Err(bad("it is neither local time nor has an offset".into()));
    }
    let ts: Timestamp = s.parse().map_err(|e: jiff::Error| bad(jiff_why(e)))?;
    Ok(ts.as_second())
}

/// The parser's message without its internals: which field is out of range, or that the
/// text does not have the form.
fn plain(parser: &str) -> String {
    if let Some(at) = parser.find("parameter '") {
        let rest = &parser[at + 11..];
        if let Some((name, tail)) = rest.split_once('\'') {
            let range = tail.split("range of ").nth(1).map(|r| r.replace("..=", " to "));
            return match range {
                Some(r) => format!("the {name} must be {}", r.trim()),
                None if name == "day" => "that day does not exist in that month".into(),
                None => format!("the {name} is out of range"),
            };
        }
    }
    "it is not a date in one of these forms".into()
}

/// Whether an RFC 3339 string ends with `Z` or `±hh:mm` (jiff alone would also take
/// ISO 8601 variants and time zone annotations, which we do not promise).
fn has_offset(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') {
        return false;
    }
    if matches!(b[b.len() - 1], b'Z' | b'z') {
        return true;
    }
    let tail = &b[b.len() - 6..];
    matches!(tail[0], b'+' | b'-')
        && tail[1..3].iter().all(u8::is_ascii_digit)
        && tail[3] == b':'
        && tail[4..].iter().all(u8::is_ascii_digit)
}

/// `YYYY-MM-DD hh:mm:ss` in local time, for messages; `@<seconds>` if out of range.
pub fn format_local(ts: i64) -> String {
    match Timestamp::from_second(ts) {
        Ok(t) => Zoned::new(t, TimeZone::system()).strftime("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => format!("@{ts}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn local(s: &str) -> i64 {
        s.parse::<DateTime>().unwrap().to_zoned(TimeZone::system()).unwrap().timestamp().as_second()
    }

    #[test]
    fn rfc3339_forms() {
        assert_eq!(parse_date("2026-11-20T03:00:00Z").unwrap(), 1795143600);
        assert_eq!(parse_date("2026-11-20t03:00:00z").unwrap(), 1795143600);
        assert_eq!(parse_date("2026-11-20 03:00:00Z").unwrap(), 1795143600);
        assert_eq!(parse_date("2026-11-20T04:00:00+01:00").unwrap(), 1795143600);
        assert_eq!(parse_date("2026-11-19T22:00:00-05:00").unwrap(), 1795143600);
        assert_eq!(parse_date("2026-11-20T03:00:00.750Z").unwrap(), 1795143600);
        assert_eq!(parse_date(" 2026-11-20T03:00:00Z\n").unwrap(), 1795143600);
    }

    #[test]
    fn agent_local_form() {
        assert_eq!(parse_date("2026-11-26T15:21:01").unwrap(), local("2026-11-26T15:21:01"));
        assert_eq!(parse_date("2026-11-26 15:21:01").unwrap(), local("2026-11-26T15:21:01"));
        let ts = parse_date("2026-11-20T03:00:00").unwrap();
        assert_eq!(format_local(ts), "2026-11-20 03:00:00");
    }

    #[test]
    fn everything_else_is_a_usage_error() {
        for bad in [
            "",
            "yesterday",
            "2026-11-20",
            "2026-11-20T03:00",
            "2026-13-20T03:00:00",
            "2026-11-20T25:00:00",
            "2026-11-20X03:00:00",
            "1795143600",
            "2026-11-20T03:00:00[Europe/Paris]",
            "2026-11-20T03:00:00+0100",
            "20261120T030000Z",
        ] {
            let err = parse_date(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Usage, "{bad:?}");
            assert!(err.to_string().contains("YYYY-MM-DDThh:mm:ss"), "{err}");
        }
    }

    #[test]
    fn format_out_of_range() {
        assert_eq!(format_local(i64::MAX), format!("@{}", i64::MAX));
    }
}
