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
}

impl fmt::Display for CertRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertRole::Leaf => f.write_str("server certificate"),
            CertRole::Intermediate(n) => write!(f, "intermediate CA certificate #{n}"),
            CertRole::Root => f.write_str("root CA certificate"),
        }
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
    /// Not valid before.
    #[serde(serialize_with = "ser_time")]
    pub not_before: UnixTime,
    /// Not valid after.
    #[serde(serialize_with = "ser_time")]
    pub not_after: UnixTime,
}

impl CertInfo {
    /// True when `t` lies in the validity window.
    #[must_use]
    pub fn valid_at(&self, t: UnixTime) -> bool {
        self.not_before <= t && t <= self.not_after
    }
}

fn ser_time<S: serde::Serializer>(t: &UnixTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_string())
}

/// The verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Valid over the whole trusted interval.
    Valid,
    /// Invalid whatever the time: a really expired or not-yet-valid certificate (by a trusted
    /// clock), a bad signature, an unknown issuer, a wrong name, an expired root.
    Invalid,
    /// Cannot be decided because of the clock: not trusted, or the interval straddles a
    /// validity boundary.
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
    /// The root is outside its own validity (webpki does not check this).
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
