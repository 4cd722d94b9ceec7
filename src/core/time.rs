//! Wall-clock helpers. Stored times are microseconds since the Unix epoch (UTC), which sort
//! and compare as integers; times shown to people and clients are RFC 3339 in UTC.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

/// Now as RFC 3339 in UTC, e.g. `2026-11-26T11:16:18.123456Z`.
pub fn now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

pub fn format_rfc3339(t: OffsetDateTime) -> String {
    // Formatting a valid UTC datetime as RFC 3339 cannot fail for years 0..=9999.
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    OffsetDateTime::now_utc().unix_timestamp().max(0) as u64
}

/// Now, in microseconds since the epoch.
pub fn now_micros() -> Micros {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as Micros
}

/// RFC 3339 (UTC) for stored microseconds.
pub fn micros_to_rfc3339(micros: Micros) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .map(format_rfc3339)
        .unwrap_or_else(|_| micros.to_string())
}

/// Parses RFC 3339 (any offset) into microseconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Result<Micros, String> {
    let t = OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map_err(|e| format!("not an RFC 3339 time ({e}), e.g. 2026-11-26T12:00:00Z"))?;
    Ok((t.unix_timestamp_nanos() / 1_000) as Micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip_in_micros() {
        let m = parse_rfc3339("2026-11-26T12:00:00.000001Z").unwrap();
        assert_eq!(m, 1_795_694_400_000_001);
        assert_eq!(micros_to_rfc3339(m), "2026-11-26T12:00:00.000001Z");
        assert_eq!(parse_rfc3339("2026-11-26T13:00:00+01:00").unwrap(), m - 1);
        assert!(parse_rfc3339("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
