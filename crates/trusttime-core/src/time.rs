//! Time types.
//!
//! - [`UnixTime`]: a wall-clock instant (UTC, nanoseconds since 1970-01-01, signed).
//! - [`MonoInstant`]: a monotonic instant (nanoseconds since some unspecified start, e.g. boot).
//!   It cannot be mixed with wall-clock time: the types have no operators in common.
//! - [`SignedDuration`]: a signed span of time in nanoseconds.
//! - [`NtpTimestamp`]: the 64-bit NTP wire timestamp, whose era is resolved against a pivot.
//! - [`TimeInterval`]: what the device knows about "now": `earliest..=latest`.
//! - [`TrustedTime`]: an interval plus its [`Provenance`].
//!
//! Wall-clock and monotonic time cannot be confused:
//!
//! ```compile_fail
//! use trusttime_core::time::{MonoInstant, UnixTime};
//! let wall = UnixTime::from_secs(1_700_000_000);
//! let mono = MonoInstant::from_nanos(5);
//! let _ = wall - mono; // no such operator: a monotonic reading is not a date
//! ```
//!
//! ```compile_fail
//! use trusttime_core::time::{MonoInstant, UnixTime};
//! fn deadline(_: MonoInstant) {}
//! deadline(UnixTime::from_secs(0)); // a date is not a deadline
//! ```

use core::fmt;
use core::ops::{Add, AddAssign, Neg, Sub, SubAssign};

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// A signed span of time, in nanoseconds (±292 years).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SignedDuration(i64);

impl SignedDuration {
    /// Zero.
    pub const ZERO: SignedDuration = SignedDuration(0);
    /// The largest representable span.
    pub const MAX: SignedDuration = SignedDuration(i64::MAX);

    /// From nanoseconds.
    #[must_use]
    pub const fn from_nanos(n: i64) -> Self {
        SignedDuration(n)
    }
    /// From microseconds (saturating).
    #[must_use]
    pub const fn from_micros(n: i64) -> Self {
        SignedDuration(n.saturating_mul(1_000))
    }
    /// From milliseconds (saturating).
    #[must_use]
    pub const fn from_millis(n: i64) -> Self {
        SignedDuration(n.saturating_mul(1_000_000))
    }
    /// From whole seconds (saturating).
    #[must_use]
    pub const fn from_secs(n: i64) -> Self {
        SignedDuration(n.saturating_mul(NANOS_PER_SEC))
    }
    /// From fractional seconds (saturating; NaN gives zero).
    #[must_use]
    pub fn from_secs_f64(s: f64) -> Self {
        let n = s * 1e9;
        if n.is_nan() {
            SignedDuration(0)
        } else if n >= i64::MAX as f64 {
            SignedDuration(i64::MAX)
        } else if n <= i64::MIN as f64 {
            SignedDuration(i64::MIN)
        } else {
            SignedDuration(n as i64)
        }
    }
    /// Nanoseconds.
    #[must_use]
    pub const fn as_nanos(self) -> i64 {
        self.0
    }
    /// Whole milliseconds, rounded toward zero.
    #[must_use]
    pub const fn as_millis(self) -> i64 {
        self.0 / 1_000_000
    }
    /// Whole seconds, rounded toward zero.
    #[must_use]
    pub const fn as_secs(self) -> i64 {
        self.0 / NANOS_PER_SEC
    }
    /// Seconds as a float.
    #[must_use]
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
    /// The absolute value (saturating).
    #[must_use]
    pub const fn abs(self) -> Self {
        SignedDuration(self.0.saturating_abs())
    }
    /// True when negative.
    #[must_use]
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }
    /// Saturating addition.
    #[must_use]
    pub const fn saturating_add(self, o: Self) -> Self {
        SignedDuration(self.0.saturating_add(o.0))
    }
    /// Saturating subtraction.
    #[must_use]
    pub const fn saturating_sub(self, o: Self) -> Self {
        SignedDuration(self.0.saturating_sub(o.0))
    }
    /// Multiplies by parts per million (e.g. drift over an elapsed span), rounding up in
    /// magnitude so an error bound is never understated.
    #[must_use]
    pub const fn mul_ppm(self, ppm: u32) -> Self {
        // In i64 only (a 32-bit core has no i128 division routine, so each would be expanded
        // inline): split the duration at a million so no product overflows, then round the
        // remainder up in magnitude. Equal to the exact result, saturated at the i64 range.
        let p = ppm as i64;
        let hi = (self.0 / 1_000_000).saturating_mul(p);
        let lo = (self.0 % 1_000_000) * p; // |lo| < 1e6 * 2^32: no overflow
        let q = hi.saturating_add(lo / 1_000_000);
        let r = lo % 1_000_000;
        SignedDuration(if r > 0 {
            q.saturating_add(1)
        } else if r < 0 {
            q.saturating_sub(1)
        } else {
            q
        })
    }
    /// The most a clock whose rate is within `ppm` of true time can be off after counting
    /// this span: the span is the clock's own count, itself short by up to `ppm`, so the true
    /// span is up to `self / (1 - ppm)` and the error up to `self * ppm / (1 - ppm)` (`ppm` of
    /// it, plus `ppm` of that, and so on), computed exactly and rounded up in magnitude. A
    /// rate error of a million ppm or more has no bound (saturates). Every drift bound in the
    /// crate is this one.
    #[must_use]
    pub const fn drift_bound(self, ppm: u32) -> Self {
        if ppm >= 1_000_000 {
            return SignedDuration(if self.0 > 0 {
                i64::MAX
            } else if self.0 < 0 {
                i64::MIN
            } else {
                0
            });
        }
        // As in `mul_ppm`, in i64 only: split the span at the divisor so no product overflows.
        let p = ppm as i64;
        let d = 1_000_000 - p;
        let hi = (self.0 / d).saturating_mul(p);
        let lo = (self.0 % d) * p; // |lo| < 1e6 * 2^32: no overflow
        let q = hi.saturating_add(lo / d);
        let r = lo % d;
        SignedDuration(if r > 0 {
            q.saturating_add(1)
        } else if r < 0 {
            q.saturating_sub(1)
        } else {
            q
        })
    }
    /// Halves, rounding toward negative infinity.
    #[must_use]
    pub const fn half(self) -> Self {
        // An arithmetic shift is floor division by 2, exactly `div_euclid(2)`, with no
        // 64-bit division routine on a 32-bit core.
        SignedDuration(self.0 >> 1)
    }
    /// Converts to `core::time::Duration`; negative spans give `None`.
    #[must_use]
    pub fn to_std(self) -> Option<core::time::Duration> {
        u64::try_from(self.0)
            .ok()
            .map(core::time::Duration::from_nanos)
    }
    /// From `core::time::Duration` (saturating).
    #[must_use]
    pub fn from_std(d: core::time::Duration) -> Self {
        SignedDuration(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }
}

const fn clamp_i128(v: i128) -> i64 {
    if v > i64::MAX as i128 {
        i64::MAX
    } else if v < i64::MIN as i128 {
        i64::MIN
    } else {
        v as i64
    }
}

impl Add for SignedDuration {
    type Output = SignedDuration;
    fn add(self, o: Self) -> Self {
        self.saturating_add(o)
    }
}
impl Sub for SignedDuration {
    type Output = SignedDuration;
    fn sub(self, o: Self) -> Self {
        self.saturating_sub(o)
    }
}
impl Neg for SignedDuration {
    type Output = SignedDuration;
    fn neg(self) -> Self {
        SignedDuration(self.0.saturating_neg())
    }
}
impl AddAssign for SignedDuration {
    fn add_assign(&mut self, o: Self) {
        *self = *self + o;
    }
}
impl SubAssign for SignedDuration {
    fn sub_assign(&mut self, o: Self) {
        *self = *self - o;
    }
}

impl fmt::Display for SignedDuration {
    /// Human form: `+1.234567s`, `-3h 2m`, `26y 14d`, chosen by magnitude.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "+" };
        let n = self.0.unsigned_abs();
        let s = n / 1_000_000_000;
        if s < 60 {
            let ms = n as f64 / 1e6;
            if ms < 1000.0 {
                return write!(f, "{sign}{ms:.3}ms");
            }
            return write!(f, "{sign}{:.3}s", n as f64 / 1e9);
        }
        let (y, rem) = (s / 31_556_952, s % 31_556_952);
        let (d, rem) = (rem / 86_400, rem % 86_400);
        let (h, rem) = (rem / 3600, rem % 3600);
        let (m, sec) = (rem / 60, rem % 60);
        if y > 0 {
            write!(f, "{sign}{y}y {d}d")
        } else if d > 0 {
            write!(f, "{sign}{d}d {h}h")
        } else if h > 0 {
            write!(f, "{sign}{h}h {m}m")
        } else {
            write!(f, "{sign}{m}m {sec}s")
        }
    }
}

/// A wall-clock instant: UTC nanoseconds since 1970-01-01T00:00:00Z (years 1678 to 2262).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(i64);

impl UnixTime {
    /// 1970-01-01T00:00:00Z.
    pub const EPOCH: UnixTime = UnixTime(0);
    /// The latest representable instant.
    pub const MAX: UnixTime = UnixTime(i64::MAX);
    /// The earliest representable instant.
    pub const MIN: UnixTime = UnixTime(i64::MIN);

    /// From nanoseconds since the Unix epoch.
    #[must_use]
    pub const fn from_nanos(n: i64) -> Self {
        UnixTime(n)
    }
    /// From whole seconds since the Unix epoch (saturating).
    #[must_use]
    pub const fn from_secs(s: i64) -> Self {
        UnixTime(s.saturating_mul(NANOS_PER_SEC))
    }
    /// From milliseconds since the Unix epoch (saturating).
    #[must_use]
    pub const fn from_millis(ms: i64) -> Self {
        UnixTime(ms.saturating_mul(1_000_000))
    }
    /// Nanoseconds since the Unix epoch.
    #[must_use]
    pub const fn as_nanos(self) -> i64 {
        self.0
    }
    /// Whole seconds since the Unix epoch (floor).
    #[must_use]
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(NANOS_PER_SEC)
    }
    /// Milliseconds since the Unix epoch (floor).
    #[must_use]
    pub const fn as_millis(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }
    /// Nanoseconds within the second, `0..1e9`.
    #[must_use]
    pub const fn subsec_nanos(self) -> u32 {
        self.0.rem_euclid(NANOS_PER_SEC) as u32
    }
    /// Seconds since the epoch as a float.
    #[must_use]
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
    /// `self - earlier` as a signed span.
    #[must_use]
    pub const fn since(self, earlier: UnixTime) -> SignedDuration {
        SignedDuration(self.0.saturating_sub(earlier.0))
    }
    /// The midpoint between two instants.
    #[must_use]
    pub const fn midpoint(self, other: UnixTime) -> UnixTime {
        UnixTime(clamp_i128((self.0 as i128 + other.0 as i128).div_euclid(2)))
    }
    /// Civil date and time (proleptic Gregorian, UTC).
    #[must_use]
    pub const fn to_civil(self) -> Civil {
        let secs = self.as_secs();
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: (sod / 3600) as u8,
            minute: ((sod % 3600) / 60) as u8,
            second: (sod % 60) as u8,
            nanos: self.subsec_nanos(),
        }
    }
    /// From a civil UTC date and time; `None` when a field is out of range.
    #[must_use]
    pub const fn from_civil(c: Civil) -> Option<UnixTime> {
        if c.month < 1 || c.month > 12 || c.day < 1 || c.day > days_in_month(c.year, c.month) {
            return None;
        }
        if c.hour > 23 || c.minute > 59 || c.second > 60 || c.nanos >= 1_000_000_000 {
            return None;
        }
        if c.year < 1678 || c.year > 2261 {
            return None;
        }
        let days = days_from_civil(c.year, c.month, c.day);
        let secs = days * 86_400 + c.hour as i64 * 3600 + c.minute as i64 * 60 + c.second as i64;
        Some(UnixTime(secs * NANOS_PER_SEC + c.nanos as i64))
    }

    /// Parses an RFC 3339 timestamp such as `2026-03-01T12:00:00Z`,
    /// `2026-03-01T12:00:00.25+01:00` or `2026-03-01 12:00:00Z`. A date alone
    /// (`2026-03-01`) means midnight UTC.
    pub fn parse_rfc3339(s: &str) -> Result<UnixTime, ParseTimeError> {
        let b = s.trim().as_bytes();
        let err = ParseTimeError;
        let num = |from: usize, len: usize| -> Result<i64, ParseTimeError> {
            let part = b.get(from..from + len).ok_or(err)?;
            let mut v = 0i64;
            for &d in part {
                if !d.is_ascii_digit() {
                    return Err(err);
                }
                v = v * 10 + (d - b'0') as i64;
            }
            Ok(v)
        };
        let year = num(0, 4)?;
        if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
            return Err(err);
        }
        let month = num(5, 2)? as u8;
        let day = num(8, 2)? as u8;
        let mut c = Civil {
            year: year as i32,
            month,
            day,
            hour: 0,
            minute: 0,
            second: 0,
            nanos: 0,
        };
        if b.len() == 10 {
            return UnixTime::from_civil(c).ok_or(err);
        }
        if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
            return Err(err);
        }
        c.hour = num(11, 2)? as u8;
        c.minute = num(14, 2)? as u8;
        if b.get(16) != Some(&b':') {
            return Err(err);
        }
        c.second = num(17, 2)? as u8;
        let mut i = 19;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            let mut nanos: u32 = 0;
            let mut digits = 0;
            while let Some(&d) = b.get(i) {
                if !d.is_ascii_digit() {
                    break;
                }
                if digits < 9 {
                    nanos = nanos * 10 + (d - b'0') as u32;
                    digits += 1;
                }
                i += 1;
            }
            if i == start {
                return Err(err);
            }
            while digits < 9 {
                nanos *= 10;
                digits += 1;
            }
            c.nanos = nanos;
        }
        let offset_secs: i64 = match b.get(i) {
            Some(b'Z' | b'z') if b.len() == i + 1 => 0,
            Some(&sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
                let h = num(i + 1, 2)?;
                let m = num(i + 4, 2)?;
                if h > 23 || m > 59 {
                    return Err(err);
                }
                let o = h * 3600 + m * 60;
                if sign == b'+' {
                    o
                } else {
                    -o
                }
            }
            _ => return Err(err),
        };
        let t = UnixTime::from_civil(c).ok_or(err)?;
        Ok(t - SignedDuration::from_secs(offset_secs))
    }

    /// Saturating addition of a span.
    #[must_use]
    pub const fn saturating_add(self, d: SignedDuration) -> Self {
        UnixTime(self.0.saturating_add(d.0))
    }
}

/// An RFC 3339 timestamp could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseTimeError;

impl fmt::Display for ParseTimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an RFC 3339 time (expected e.g. 2026-03-01T12:00:00Z)")
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ParseTimeError {}

impl Add<SignedDuration> for UnixTime {
    type Output = UnixTime;
    fn add(self, d: SignedDuration) -> UnixTime {
        self.saturating_add(d)
    }
}
impl Sub<SignedDuration> for UnixTime {
    type Output = UnixTime;
    fn sub(self, d: SignedDuration) -> UnixTime {
        UnixTime(self.0.saturating_sub(d.0))
    }
}
impl Sub for UnixTime {
    type Output = SignedDuration;
    fn sub(self, o: UnixTime) -> SignedDuration {
        self.since(o)
    }
}

impl fmt::Display for UnixTime {
    /// RFC 3339 UTC with microseconds dropped when zero: `2026-03-01T12:00:00.123456Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.to_civil();
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            c.year, c.month, c.day, c.hour, c.minute, c.second
        )?;
        let micros = c.nanos / 1000;
        if micros != 0 {
            write!(f, ".{micros:06}")?;
        }
        f.write_str("Z")
    }
}

/// A broken-down UTC date and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Civil {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub nanos: u32,
}

impl Civil {
    /// `YYYY-MM-DD`.
    #[must_use]
    pub fn date(&self) -> DateOnly {
        DateOnly(*self)
    }
}

/// Displays only the date part of a [`Civil`].
#[derive(Clone, Copy, Debug)]
pub struct DateOnly(Civil);

impl fmt::Display for DateOnly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.0.year, self.0.month, self.0.day
        )
    }
}

const fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

const fn days_in_month(y: i32, m: u8) -> u8 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days.
const fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    let y = if m <= 2 { y as i64 - 1 } else { y as i64 };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

const fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = if m <= 2 { y + 1 } else { y };
    (y as i32, m, d)
}

/// A monotonic instant: nanoseconds since an unspecified start (boot, process start, or the
/// simulator's zero). Only differences between two `MonoInstant`s mean anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonoInstant(u64);

impl MonoInstant {
    /// The start of the monotonic timescale.
    pub const ZERO: MonoInstant = MonoInstant(0);

    /// From nanoseconds since the start of the timescale.
    #[must_use]
    pub const fn from_nanos(n: u64) -> Self {
        MonoInstant(n)
    }
    /// Nanoseconds since the start of the timescale.
    #[must_use]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    /// `self - earlier`; negative if `earlier` is in fact later.
    #[must_use]
    pub const fn since(self, earlier: MonoInstant) -> SignedDuration {
        SignedDuration(clamp_i128(self.0 as i128 - earlier.0 as i128))
    }
    /// Adds a span, saturating at the ends of the timescale.
    #[must_use]
    pub const fn saturating_add(self, d: SignedDuration) -> Self {
        if d.0 >= 0 {
            MonoInstant(self.0.saturating_add(d.0 as u64))
        } else {
            MonoInstant(self.0.saturating_sub(d.0.unsigned_abs()))
        }
    }
}

impl Add<SignedDuration> for MonoInstant {
    type Output = MonoInstant;
    fn add(self, d: SignedDuration) -> MonoInstant {
        self.saturating_add(d)
    }
}
impl Sub for MonoInstant {
    type Output = SignedDuration;
    fn sub(self, o: MonoInstant) -> SignedDuration {
        self.since(o)
    }
}

/// One reading of both clocks, taken once per turn of a driver loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// The monotonic clock: for deadlines and elapsed time.
    pub mono: MonoInstant,
    /// The local wall clock (possibly very wrong): for NTP's T1 and T4.
    pub wall: UnixTime,
}

/// Seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
pub const NTP_UNIX_OFFSET_SECS: i64 = 2_208_988_800;

/// A 64-bit NTP timestamp: 32 bits of seconds and 32 bits of fraction (units of 2^-32 s).
///
/// The seconds field wraps every 2^32 s (136 years); era 1 starts on 2036-02-07T06:28:16Z. The
/// era is not on the wire, so converting to [`UnixTime`] needs a *pivot*: a time known to be
/// within 68 years of the true one. trusttime uses the floor (build time or last trusted time),
/// so a device in 2037 reads an era-1 timestamp as 2037, not 1901.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NtpTimestamp(u64);

impl NtpTimestamp {
    /// The all-zero timestamp, which NTP uses for "unknown".
    pub const ZERO: NtpTimestamp = NtpTimestamp(0);

    /// From the raw 64 bits.
    #[must_use]
    pub const fn from_bits(bits: u64) -> Self {
        NtpTimestamp(bits)
    }
    /// The raw 64 bits.
    #[must_use]
    pub const fn to_bits(self) -> u64 {
        self.0
    }
    /// The seconds field.
    #[must_use]
    pub const fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// The fraction field (units of 2^-32 s).
    #[must_use]
    pub const fn fraction(self) -> u32 {
        self.0 as u32
    }
    /// True for the all-zero timestamp.
    #[must_use]
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Encodes a Unix time (era dropped, as on the wire). The fraction is
    /// `nanos * 2^32 / 1e9`, rounded to nearest.
    #[must_use]
    pub const fn from_unix(t: UnixTime) -> Self {
        let secs = t.as_secs() + NTP_UNIX_OFFSET_SECS;
        let frac = ((t.subsec_nanos() as u64) << 32).saturating_add(500_000_000) / 1_000_000_000;
        // `frac` can round up to exactly 2^32; carry into the seconds.
        let bits = ((secs as u64) << 32).wrapping_add(frac);
        NtpTimestamp(bits)
    }

    /// Decodes to the Unix time within 2^31 s (68 years) of `pivot`. The fraction is converted
    /// with 2^32 (`frac * 1e9 / 2^32`), never with `u32::MAX`.
    #[must_use]
    pub const fn to_unix(self, pivot: UnixTime) -> UnixTime {
        let pivot_ntp = pivot.as_secs() + NTP_UNIX_OFFSET_SECS;
        // Seconds modulo 2^32 of the pivot; the signed 32-bit difference picks the nearest era.
        let diff = (self.seconds().wrapping_sub(pivot_ntp as u32)) as i32 as i64;
        let secs_ntp = pivot_ntp + diff;
        let nanos = ((self.fraction() as u64 * 1_000_000_000) >> 32) as i64;
        UnixTime((secs_ntp - NTP_UNIX_OFFSET_SECS) * NANOS_PER_SEC + nanos)
    }
}

/// What the device knows about the current time: it lies in `earliest..=latest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimeInterval {
    /// No earlier than this.
    pub earliest: UnixTime,
    /// No later than this.
    pub latest: UnixTime,
}

impl TimeInterval {
    /// An interval from its ends; `None` when `earliest > latest`.
    #[must_use]
    pub fn new(earliest: UnixTime, latest: UnixTime) -> Option<Self> {
        (earliest <= latest).then_some(TimeInterval { earliest, latest })
    }
    /// `center ± radius` (radius taken in absolute value).
    #[must_use]
    pub fn around(center: UnixTime, radius: SignedDuration) -> Self {
        let r = radius.abs();
        TimeInterval {
            earliest: center - r,
            latest: center + r,
        }
    }
    /// The midpoint: the best single guess.
    #[must_use]
    pub fn midpoint(&self) -> UnixTime {
        self.earliest.midpoint(self.latest)
    }
    /// Half the width: the error of the midpoint.
    #[must_use]
    pub fn radius(&self) -> SignedDuration {
        (self.latest - self.earliest).half()
    }
    /// The full width.
    #[must_use]
    pub fn width(&self) -> SignedDuration {
        self.latest - self.earliest
    }
    /// True when `t` lies inside (ends included).
    #[must_use]
    pub fn contains(&self, t: UnixTime) -> bool {
        self.earliest <= t && t <= self.latest
    }
    /// True when `other` lies entirely inside `self`.
    #[must_use]
    pub fn contains_interval(&self, other: &TimeInterval) -> bool {
        self.earliest <= other.earliest && other.latest <= self.latest
    }
    /// The overlap of two intervals, if any.
    #[must_use]
    pub fn intersect(&self, other: &TimeInterval) -> Option<TimeInterval> {
        TimeInterval::new(
            self.earliest.max(other.earliest),
            self.latest.min(other.latest),
        )
    }
    /// Shifts both ends.
    #[must_use]
    pub fn shift(&self, d: SignedDuration) -> TimeInterval {
        TimeInterval {
            earliest: self.earliest + d,
            latest: self.latest + d,
        }
    }
    /// Widens both ends by `by` (taken in absolute value).
    #[must_use]
    pub fn widen(&self, by: SignedDuration) -> TimeInterval {
        let b = by.abs();
        TimeInterval {
            earliest: self.earliest - b,
            latest: self.latest + b,
        }
    }
    /// Raises the lower end to `floor` (and the upper end too, if the whole interval was below).
    #[must_use]
    pub fn clamp_to_floor(&self, floor: UnixTime) -> TimeInterval {
        TimeInterval {
            earliest: self.earliest.max(floor),
            latest: self.latest.max(floor),
        }
    }
}

impl fmt::Display for TimeInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ± {}", self.midpoint(), DisplayAbs(self.radius()))
    }
}

/// Displays a span without its sign.
struct DisplayAbs(SignedDuration);
impl fmt::Display for DisplayAbs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.abs();
        let mut buf = FmtBuf::<32>::new();
        let _ = fmt::write(&mut buf, format_args!("{s}"));
        f.write_str(buf.as_str().trim_start_matches('+'))
    }
}

/// A tiny fixed-capacity formatting buffer for no_std code.
#[derive(Debug)]
pub struct FmtBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> FmtBuf<N> {
    /// An empty buffer.
    #[must_use]
    pub const fn new() -> Self {
        FmtBuf {
            buf: [0; N],
            len: 0,
        }
    }
    /// What has been written (truncated at capacity, on a character boundary).
    #[must_use]
    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(&self.buf[..self.len]) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.buf[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl<const N: usize> Default for FmtBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for FmtBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// Where a time came from. Ordered roughly from least to most trustworthy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provenance {
    /// Only the floor (build time or last persisted good time) is known.
    Floor,
    /// The real-time clock, within its drift bound since it was last set.
    Rtc,
    /// Persisted state from before a reboot, carried forward with drift.
    Persisted,
    /// Set by a person (web page or `trusttime set`), with their stated uncertainty.
    Manual,
    /// A consensus of unauthenticated NTP sources.
    Ntp,
    /// A consensus that rests on authenticated sources (NTS, Roughtime).
    Authenticated,
}

impl Provenance {
    /// A short lowercase word for logs and JSON.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Provenance::Floor => "floor",
            Provenance::Rtc => "rtc",
            Provenance::Persisted => "persisted",
            Provenance::Manual => "manual",
            Provenance::Ntp => "ntp",
            Provenance::Authenticated => "authenticated",
        }
    }
    /// A phrase for sentences: "from the RTC", "from an NTP consensus".
    #[must_use]
    pub const fn describe(self) -> &'static str {
        match self {
            Provenance::Floor => "only the build-time floor; no time source has synced",
            Provenance::Rtc => "from the RTC; no time source has synced",
            Provenance::Persisted => "carried over from the last good time before a reboot",
            Provenance::Manual => "set by hand",
            Provenance::Ntp => "from an NTP consensus (unauthenticated)",
            Provenance::Authenticated => "from authenticated time sources",
        }
    }
    /// True for network consensus (NTP or authenticated).
    #[must_use]
    pub const fn is_synced(self) -> bool {
        matches!(self, Provenance::Ntp | Provenance::Authenticated)
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The device's answer to "what time is it": an interval and where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedTime {
    /// The true time lies in here.
    pub interval: TimeInterval,
    /// Where the interval came from.
    pub provenance: Provenance,
}

impl TrustedTime {
    /// The error of the best guess (half the interval width).
    #[must_use]
    pub fn uncertainty(&self) -> SignedDuration {
        self.interval.radius()
    }
    /// True when the uncertainty is within `max_error`.
    #[must_use]
    pub fn is_within(&self, max_error: SignedDuration) -> bool {
        self.uncertainty() <= max_error.abs()
    }
}

/// What a trusted time is needed for, and so how large an error it may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Checking TLS certificate validity: certificates live for months, an hour of error is
    /// harmless (AWS IoT Core's MQTT over TLS tolerates a few hours).
    Tls,
    /// Signing requests with AWS SigV4: AWS rejects signatures more than 15 minutes off; we
    /// keep a margin and ask for 5 minutes.
    SigV4,
    /// Any other purpose, with its own maximum error.
    MaxError(SignedDuration),
}

impl Purpose {
    /// The default maximum error for TLS: 1 hour.
    pub const TLS_DEFAULT_MAX_ERROR: SignedDuration = SignedDuration::from_secs(3600);
    /// The default maximum error for SigV4: 5 minutes.
    pub const SIGV4_DEFAULT_MAX_ERROR: SignedDuration = SignedDuration::from_secs(300);

    /// The default maximum error (half-width of the trusted interval) for this purpose.
    #[must_use]
    pub const fn default_max_error(self) -> SignedDuration {
        match self {
            Purpose::Tls => Self::TLS_DEFAULT_MAX_ERROR,
            Purpose::SigV4 => Self::SIGV4_DEFAULT_MAX_ERROR,
            Purpose::MaxError(d) => d.abs(),
        }
    }
    /// A short lowercase word: `tls`, `sigv4`, `max-error`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Purpose::Tls => "tls",
            Purpose::SigV4 => "sigv4",
            Purpose::MaxError(_) => "max-error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 5000 durations spread over every magnitude and both signs (xorshift, fixed seed).
    fn spread_durations() -> impl Iterator<Item = i64> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..5000).map(move |_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as i64 >> (x % 63)
        })
    }

    #[test]
    fn mul_ppm_equals_the_exact_product_rounded_up_in_magnitude() {
        fn exact(d: i64, ppm: u32) -> i64 {
            let wide = i128::from(d) * i128::from(ppm);
            let (q, r) = (wide / 1_000_000, wide % 1_000_000);
            let q = q + r.signum();
            q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
        }
        let check = |d: i64| {
            for ppm in [0, 1, 50, 500, 999_999, 1_000_000, 123_456_789, u32::MAX] {
                let got = SignedDuration::from_nanos(d).mul_ppm(ppm).as_nanos();
                assert_eq!(got, exact(d, ppm), "{d} x {ppm}");
            }
        };
        for d in [
            0,
            1,
            -1,
            999_999,
            -999_999,
            1_000_000,
            -1_000_001,
            i64::MAX,
            i64::MIN,
        ] {
            check(d);
        }
        spread_durations().for_each(check);
    }

    /// The drift bound is exactly `span * ppm / (1e6 - ppm)` rounded up in magnitude: a clock
    /// at the rate bound, counting `span`, is off by that much and no more.
    #[test]
    fn drift_bound_equals_the_exact_quotient_rounded_up_in_magnitude() {
        fn exact(d: i64, ppm: u32) -> i64 {
            if ppm >= 1_000_000 {
                return if d > 0 {
                    i64::MAX
                } else if d < 0 {
                    i64::MIN
                } else {
                    0
                };
            }
            let div = 1_000_000 - i128::from(ppm);
            let wide = i128::from(d) * i128::from(ppm);
            let (q, r) = (wide / div, wide % div);
            let q = q + r.signum();
            q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
        }
        let check = |d: i64| {
            for ppm in [0, 1, 50, 500, 999_999, 1_000_000, u32::MAX] {
                let got = SignedDuration::from_nanos(d).drift_bound(ppm).as_nanos();
                assert_eq!(got, exact(d, ppm), "{d} at {ppm} ppm");
            }
        };
        for d in [0, 1, -1, 999_950, -999_950, i64::MAX, i64::MIN] {
            check(d);
        }
        spread_durations().for_each(check);
        // Six months at 50 ppm: the slow clock counted 15,551,222.4 s of 15,552,000 s.
        let counted = SignedDuration::from_nanos(15_551_222_400_000_000);
        assert_eq!(
            counted.drift_bound(50),
            SignedDuration::from_nanos(777_600_000_000)
        );
    }

    #[test]
    fn ntp_round_trips_through_unix_in_era_0() {
        let t = UnixTime::from_nanos(1_700_000_000_123_456_789);
        let ntp = NtpTimestamp::from_unix(t);
        let back = ntp.to_unix(t);
        assert!((back - t).abs() <= SignedDuration::from_nanos(1));
    }

    #[test]
    fn era_rollover_is_decided_by_the_pivot() {
        // 2037-01-01T00:00:00Z lies in NTP era 1: its seconds field is small.
        let t2037 = UnixTime::parse_rfc3339("2037-01-01T00:00:00Z").unwrap_or_default();
        let ntp = NtpTimestamp::from_unix(t2037);
        assert!(ntp.seconds() < 100_000_000);
        let floor = UnixTime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap_or_default();
        assert_eq!(ntp.to_unix(floor), t2037);
        // With a pivot far in the past, the same bits read as 1900.
        let old = UnixTime::parse_rfc3339("1950-01-01T00:00:00Z").unwrap_or_default();
        assert_eq!(ntp.to_unix(old).to_civil().year, 1900);
    }

    #[test]
    fn fraction_uses_two_to_the_32() {
        // 0x8000_0000 is exactly half a second.
        let ts = NtpTimestamp::from_bits((NTP_UNIX_OFFSET_SECS as u64) << 32 | 0x8000_0000);
        assert_eq!(
            ts.to_unix(UnixTime::EPOCH),
            UnixTime::from_nanos(500_000_000)
        );
        // The largest fraction is just under a second, never a full one.
        let ts = NtpTimestamp::from_bits((NTP_UNIX_OFFSET_SECS as u64) << 32 | 0xFFFF_FFFF);
        assert_eq!(ts.to_unix(UnixTime::EPOCH).as_nanos(), 999_999_999);
    }

    #[test]
    fn rfc3339_round_trip() {
        let t = UnixTime::parse_rfc3339("2026-03-01T12:34:56.5+01:00").unwrap_or_default();
        let mut b = FmtBuf::<40>::new();
        let _ = fmt::write(&mut b, format_args!("{t}"));
        assert_eq!(b.as_str(), "2026-03-01T11:34:56.500000Z");
        assert!(UnixTime::parse_rfc3339("2026-02-30T00:00:00Z").is_err());
        assert!(UnixTime::parse_rfc3339("garbage").is_err());
        assert_eq!(
            UnixTime::parse_rfc3339("2000-01-01").unwrap_or_default(),
            UnixTime::from_secs(946_684_800)
        );
    }

    #[test]
    fn civil_round_trip_over_centuries() {
        let mut s = -5_000_000_000i64;
        while s < 9_000_000_000 {
            let t = UnixTime::from_secs(s);
            assert_eq!(UnixTime::from_civil(t.to_civil()), Some(t));
            s += 86_400 * 37 + 12_345;
        }
    }

    #[test]
    fn drift_rounds_up() {
        assert_eq!(
            SignedDuration::from_secs(1).mul_ppm(50),
            SignedDuration::from_micros(50)
        );
        assert_eq!(
            SignedDuration::from_nanos(1).mul_ppm(1),
            SignedDuration::from_nanos(1)
        );
    }

    #[test]
    fn interval_ops() {
        let a = TimeInterval::around(UnixTime::from_secs(100), SignedDuration::from_secs(10));
        let b = TimeInterval::around(UnixTime::from_secs(105), SignedDuration::from_secs(10));
        let i = a.intersect(&b);
        assert_eq!(
            i,
            TimeInterval::new(UnixTime::from_secs(95), UnixTime::from_secs(110))
        );
        assert_eq!(a.radius(), SignedDuration::from_secs(10));
        let floored = a.clamp_to_floor(UnixTime::from_secs(200));
        assert_eq!(floored.earliest, UnixTime::from_secs(200));
    }
}

/// A span in words, rounded to its largest unit and without sign: "24 years", "3 days",
/// "2 hours", "15 minutes", "42 s", "3.2 ms". Used to explain clock problems to people.
#[derive(Clone, Copy, Debug)]
pub struct Human(pub SignedDuration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos().unsigned_abs();
        const S: u64 = 1_000_000_000;
        let unit = |f: &mut fmt::Formatter<'_>, n: u64, one: &str| {
            write!(f, "{n} {one}{}", if n == 1 { "" } else { "s" })
        };
        if ns >= 31_557_600 * S {
            unit(f, ns / (31_557_600 * S), "year")
        } else if ns >= 86_400 * S {
            unit(f, ns / (86_400 * S), "day")
        } else if ns >= 3600 * S {
            unit(f, ns / (3600 * S), "hour")
        } else if ns >= 60 * S {
            unit(f, ns / (60 * S), "minute")
        } else if ns >= S {
            write!(f, "{}.{:01} s", ns / S, (ns % S) / (S / 10))
        } else if ns >= 1_000_000 {
            write!(f, "{}.{:01} ms", ns / 1_000_000, (ns % 1_000_000) / 100_000)
        } else {
            write!(f, "{} µs", ns / 1000)
        }
    }
}

#[cfg(test)]
mod human_tests {
    use super::*;
    extern crate std;
    use std::string::ToString;

    #[test]
    fn spans_in_words() {
        let h = |s: i64| Human(SignedDuration::from_secs(s)).to_string();
        assert_eq!(h(24 * 31_557_600 + 100), "24 years");
        assert_eq!(h(-3 * 86_400), "3 days");
        assert_eq!(h(7200), "2 hours");
        assert_eq!(h(3600), "1 hour");
        assert_eq!(h(3599), "59 minutes");
        assert_eq!(h(42), "42.0 s");
        assert_eq!(
            Human(SignedDuration::from_micros(3200)).to_string(),
            "3.2 ms"
        );
        assert_eq!(Human(SignedDuration::from_micros(12)).to_string(), "12 µs");
    }
}
