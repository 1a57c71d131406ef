//! What went wrong, as facts and as a sentence.

use std::fmt;

use serde::Serialize;
use trusttime_core::{Human, Provenance, SignedDuration, UnixTime};

use crate::clock::ClockReading;

/// Where a certificate sits in the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertRole {
    /// The server's own certificate.
    Leaf,
    /// An intermediate CA, counted from the leaf (1 = the leaf's issuer).
    Intermediate(u8),
    /// The trust anchor.
    Root,
    /// A certificate the server sent that is not on the path judged (its place in what the
    /// server sent, 1 = the first after the server certificate).
    Sent(u8),
}

impl fmt::Display for CertRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertRole::Leaf => f.write_str("server certificate"),
            CertRole::Intermediate(n) => write!(f, "intermediate CA certificate #{n}"),
            CertRole::Root => f.write_str("root CA certificate"),
            CertRole::Sent(n) => write!(f, "certificate #{n} sent by the server"),
        }
    }
}

/// A time as written in a certificate: whole seconds since the Unix epoch, over the whole
/// X.509 range (UTCTime 1950-2049, GeneralizedTime 0000-9999).
///
/// X.509 times have one-second precision and validity is inclusive (RFC 5280 4.1.2.5): a
/// certificate whose notAfter is `23:59:59Z` is valid through `23:59:59.999...`, one whose
/// notBefore is `00:00:00Z` from `00:00:00.000`. So an instant is inside a validity period
/// exactly when its whole second (rounded down) is: see [`CertInfo::valid_at`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CertTime(i64);

impl CertTime {
    /// `99991231235959Z`: RFC 5280's "no well-defined expiration date".
    pub const NO_EXPIRY: CertTime = CertTime(253_402_300_799);

    /// From whole seconds since the Unix epoch.
    #[must_use]
    pub const fn from_secs(s: i64) -> Self {
        CertTime(s)
    }
    /// Whole seconds since the Unix epoch.
    #[must_use]
    pub const fn as_secs(self) -> i64 {
        self.0
    }
    /// True for `99991231235959Z`.
    #[must_use]
    pub const fn is_no_expiry(self) -> bool {
        self.0 == Self::NO_EXPIRY.0
    }
    /// The first instant of this second as a [`UnixTime`] (saturating outside 1678-2262).
    #[must_use]
    pub const fn to_unix(self) -> UnixTime {
        UnixTime::from_secs(self.0)
    }
    /// The date alone, `YYYY-MM-DD`.
    #[must_use]
    pub fn date(self) -> String {
        let (y, m, d, _) = civil(self.0);
        format!("{y:04}-{m:02}-{d:02}")
    }
}

/// Civil date and second of day of Unix seconds (proleptic Gregorian, any year).
fn civil(secs: i64) -> (i64, u32, u32, i64) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, sod)
}

impl fmt::Display for CertTime {
    /// RFC 3339 UTC, e.g. `9999-12-31T23:59:59Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d, sod) = civil(self.0);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            sod / 3600,
            (sod % 3600) / 60,
            sod % 60
        )
    }
}

impl Serialize for CertTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One certificate's facts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// Its place in the chain.
    pub role: CertRole,
    /// Subject, as an RFC 4514 string.
    pub subject: String,
    /// Issuer, as an RFC 4514 string.
    pub issuer: String,
    /// Not valid before (inclusive).
    pub not_before: CertTime,
    /// Not valid after (inclusive, through the last nanosecond of that second).
    pub not_after: CertTime,
}

impl CertInfo {
    /// True when the instant `t` lies in the validity period (RFC 5280: inclusive, to the
    /// second: `notAfter 23:59:59Z` is valid through `23:59:59.999999999`).
    #[must_use]
    pub fn valid_at(&self, t: UnixTime) -> bool {
        self.valid_at_secs(t.as_secs())
    }
    /// The same for a whole second.
    #[must_use]
    pub fn valid_at_secs(&self, s: i64) -> bool {
        self.not_before.as_secs() <= s && s <= self.not_after.as_secs()
    }
    /// `valid from A to B`, with "no expiry" for `99991231235959Z`.
    #[must_use]
    pub fn validity_words(&self) -> String {
        if self.not_after.is_no_expiry() {
            format!("valid from {} with no expiry date", self.not_before.date())
        } else {
            format!(
                "valid from {} to {}",
                self.not_before.date(),
                self.not_after.date()
            )
        }
    }
    /// How it is named in a sentence: the role, and the subject for CA certificates.
    #[must_use]
    pub fn named(&self, server: &str) -> String {
        match self.role {
            CertRole::Leaf => format!("{} for {server}", self.role),
            _ => format!("{} \"{}\"", self.role, self.subject),
        }
    }
}

fn ser_time<S: serde::Serializer>(t: &UnixTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_string())
}

/// The verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// One path (server certificate, intermediates, trust anchor) verifies, and every
    /// certificate on it is valid at every instant of the trusted interval.
    Valid,
    /// No path verifies at any instant of the interval the time is known to lie in: a
    /// certificate (the trust anchor included) expired before it or is valid only after it,
    /// or a failure that does not depend on the time (wrong name, unknown issuer, missing
    /// intermediate, bad signature).
    Invalid,
    /// Cannot be decided because of the clock: it is not trusted, or some instant of the
    /// interval makes a path valid but no path is valid over all of it.
    Undetermined,
}

/// What was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// All good.
    Valid,
    /// The chain verifies at the device clock, but that clock is not trusted.
    ClockNotTrusted,
    /// The device clock is before a certificate's notBefore, and the chain verifies at that
    /// notBefore: the clock is provably behind.
    ClockBehind,
    /// By an untrusted device clock a certificate has expired; the clock may be ahead, or the
    /// certificate expired: only a trusted time can tell.
    ExpiredByUntrustedClock,
    /// A trusted clock says the certificate has expired.
    Expired,
    /// A trusted clock says the certificate is not valid yet.
    NotYetValid,
    /// The trusted interval straddles a validity boundary.
    Straddles,
    /// The trust anchor of every path that verifies is outside its own validity (webpki does
    /// not check trust anchors' dates; trusttime does).
    RootExpired,
    /// A date problem, but the chain does not verify at the certificate's own dates either:
    /// the dates may be forged. The clock is not blamed.
    Unverifiable,
    /// Not time-related: bad signature, unknown issuer, wrong name, malformed.
    Other,
}

/// A full diagnosis: facts and words.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diagnosis {
    /// The verdict.
    pub verdict: Verdict,
    /// What was found.
    pub finding: Finding,
    /// The certificate concerned, if one.
    pub certificate: Option<CertInfo>,
    /// What the device clock said.
    #[serde(serialize_with = "ser_time")]
    pub device_time: UnixTime,
    /// Where the trusted time came from.
    pub provenance: &'static str,
    /// The trusted interval's half-width, seconds (`null` when nothing is trusted).
    pub uncertainty_s: Option<f64>,
    /// How far the clock would have to be off for the certificate to be valid (seconds,
    /// positive = clock behind).
    pub clock_off_by_s: Option<f64>,
    /// The OpenSSL error this corresponds to, for people searching for it.
    pub openssl_error: Option<&'static str>,
    /// True when the chain was re-verified at the certificate's own dates (signatures good).
    pub chain_verified_at_own_dates: bool,
    /// The path judged: server certificate, intermediates in path order, trust anchor. When
    /// no path verifies at any time, the certificates as the server sent them.
    pub chain: Vec<CertInfo>,
    /// Certificates the server sent that are not on that path: they play no part.
    pub also_sent: Vec<CertInfo>,
    /// The explanation.
    pub message: String,
    /// What to do.
    pub advice: String,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if !self.advice.is_empty() {
            write!(f, " {}", self.advice)?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnosis {}

/// The date of an instant, `YYYY-MM-DD`.
pub(crate) fn date(t: UnixTime) -> String {
    t.to_civil().date().to_string()
}

pub(crate) fn clock_words(r: &ClockReading, trusted: bool) -> String {
    if trusted {
        format!(
            "this device's trusted time is {} ± {} ({})",
            r.trusted.interval.midpoint(),
            Human(r.trusted.uncertainty()),
            r.trusted.provenance.describe()
        )
    } else {
        let src = match r.trusted.provenance {
            Provenance::Floor => "no time source has synced".to_owned(),
            p => format!("{}, not trusted to the error TLS needs", p.describe()),
        };
        format!("this device's clock says {} ({src})", date(r.device))
    }
}

pub(crate) fn secs(d: SignedDuration) -> f64 {
    d.as_secs_f64()
}
