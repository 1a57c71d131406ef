//! The floor: the earliest time the clock may ever show.
//!
//! The build time is compiled in (from `SOURCE_DATE_EPOCH` when set, else the time of the
//! build). A device cannot be running software before that software was built, so any time
//! below it is certainly wrong: a server that claims such a time is a falseticker, and an RTC
//! that reads below it has lost its battery. The daemon raises the floor further with the last
//! persisted good time.

use crate::time::UnixTime;

/// Unix seconds of the build, as compiled in by `build.rs`.
const BUILD_UNIX_SECS: &str = env!("TRUSTTIME_BUILD_UNIX");

/// The compiled-in build time.
#[must_use]
pub fn build_time() -> UnixTime {
    UnixTime::from_secs(parse_decimal(BUILD_UNIX_SECS))
}

/// Parses a decimal, possibly negative, integer at compile-time-known input; garbage gives 0.
const fn parse_decimal(s: &str) -> i64 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut neg = false;
    if !b.is_empty() && b[0] == b'-' {
        neg = true;
        i = 1;
    }
    let mut v: i64 = 0;
    while i < b.len() {
        let d = b[i];
        if d < b'0' || d > b'9' {
            return 0;
        }
        v = v.saturating_mul(10).saturating_add((d - b'0') as i64);
        i += 1;
    }
    if neg {
        -v
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_time_is_after_2024() {
        // 2024-01-01T00:00:00Z
        assert!(build_time() > UnixTime::from_secs(1_704_067_200));
    }

    #[test]
    fn parses_decimal() {
        assert_eq!(parse_decimal("1700000000"), 1_700_000_000);
        assert_eq!(parse_decimal("-5"), -5);
        assert_eq!(parse_decimal("12x"), 0);
    }
}
