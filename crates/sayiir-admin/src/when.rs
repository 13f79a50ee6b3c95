//! Points in time as a person writes them on a command line.

use chrono::{DateTime, Utc};

/// Reads `text` as Unix seconds: an age (`30d`, `12h`, `1h 30m`: that long before `now`), an
/// RFC 3339 time (`2026-11-01T00:00:00Z`) or plain Unix seconds (`1764547200`).
///
/// # Errors
/// A message saying which forms are accepted.
pub fn unix_seconds(text: &str, now: DateTime<Utc>) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(seconds);
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return u64::try_from(time.timestamp())
            .map_err(|_| format!("{text:?} is before 1970; give a later time"));
    }
    if let Ok(age) = humantime::parse_duration(text) {
        let age =
            chrono::Duration::from_std(age).map_err(|_| format!("the age {text:?} is too long"))?;
        let then = now.checked_sub_signed(age).map_or(0, |then| then.timestamp());
        return Ok(u64::try_from(then).unwrap_or(0));
    }
    Err(format!(
        "cannot read {text:?} as a time: write an age (30d, 12h, 1h 30m), an RFC 3339 time \
         (2026-11-01T00:00:00Z) or Unix seconds"
    ))
}

/// Unix seconds as an RFC 3339 time in UTC, or the number itself when out of chrono's range.
pub fn rfc3339(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
        .map_or_else(|| seconds.to_string(), |t| t.to_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ages_times_and_seconds() {
        let now = DateTime::<Utc>::from_timestamp(100_000_000, 0).unwrap_or_default();
        assert_eq!(unix_seconds("30d", now), Ok(100_000_000 - 30 * 86_400));
        assert_eq!(unix_seconds("1h 30m", now), Ok(100_000_000 - 5_400));
        assert_eq!(unix_seconds("1970-01-02T00:00:00Z", now), Ok(86_400));
        assert_eq!(unix_seconds("12345", now), Ok(12_345));
        assert_eq!(unix_seconds("10000d", now), Ok(0));
        assert!(unix_seconds("yesterday", now).is_err_and(|e| e.contains("30d")));
        assert_eq!(rfc3339(86_400), "1970-01-02T00:00:00+00:00");
        assert_eq!(rfc3339(u64::MAX), u64::MAX.to_string());
    }
}
