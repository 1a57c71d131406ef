//! Durations as people write them in flags and config files: `250ms`, `5s`, `10m`, `1h`, `90d`,
//! combinations such as `1h30m`, and a leading `-` where a signed span makes sense.

use trusttime_core::SignedDuration;

/// A duration that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{0}`: use a number and a unit (ns, us, ms, s, m, h, d), e.g. 500ms, 5s, 1h30m, -90d")]
pub struct BadDuration(pub String);

/// Parses a signed duration.
///
/// # Errors
/// [`BadDuration`] for anything but `[-+]?(NUMBER UNIT)+`.
pub fn parse_signed(s: &str) -> Result<SignedDuration, BadDuration> {
    let bad = || BadDuration(s.to_owned());
    let t = s.trim();
    let (neg, mut rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if rest.is_empty() || t.len() > 64 {
        return Err(bad());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let (num, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" | "sec" => 1e9,
            "m" | "min" => 60e9,
            "h" => 3600e9,
            "d" => 86400e9,
            _ => return Err(bad()),
        };
        let v: f64 = num.parse().map_err(|_| bad())?;
        let ns = v * scale;
        if !ns.is_finite() || ns > 9.0e18 {
            return Err(bad());
        }
        total += ns.round() as i128;
        rest = next;
    }
    let total = if neg { -total } else { total };
    i64::try_from(total)
        .map(SignedDuration::from_nanos)
        .map_err(|_| bad())
}

/// Parses an RFC 3339 time for a command-line flag, with a message that shows the format.
///
/// # Errors
/// A message naming the input and an example.
pub fn parse_time(s: &str) -> Result<trusttime_core::UnixTime, String> {
    trusttime_core::UnixTime::parse_rfc3339(s)
        .map_err(|_| format!("`{s}` is not an RFC 3339 time such as 2026-01-31T12:00:00Z"))
}

/// Parses a non-negative duration.
///
/// # Errors
/// [`BadDuration`] when it does not parse or is negative.
pub fn parse(s: &str) -> Result<std::time::Duration, BadDuration> {
    parse_signed(s)?
        .to_std()
        .ok_or_else(|| BadDuration(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_people_write() {
        assert_eq!(parse("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse("5s").unwrap().as_secs(), 5);
        assert_eq!(parse("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse("1.5s").unwrap().as_millis(), 1500);
        assert_eq!(
            parse_signed("-90d").unwrap(),
            SignedDuration::from_secs(-7_776_000)
        );
        assert_eq!(
            parse_signed("+1h").unwrap(),
            SignedDuration::from_secs(3600)
        );
        for bad in [
            "",
            "5",
            "s",
            "-",
            "5x",
            "1e400s",
            "99999999999d",
            "5s-",
            "--5s",
            "-5s",
            "..s",
        ] {
            if bad == "-5s" {
                assert!(parse(bad).is_err());
                continue;
            }
            assert!(parse_signed(bad).is_err(), "{bad:?}");
        }
    }
}
