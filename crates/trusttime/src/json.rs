//! The JSON that `sync --json`, `status --json`, `sources --json` and `check --json` print,
//! as types. Documented field by field in `docs/json.md`.
//!
//! Every struct refuses unknown fields, times must be RFC 3339 and names come from closed
//! sets, so a test that parses real output (and the README's examples) through these types
//! fails the moment the output and its documentation part ways. Consumers in Rust can use
//! them to read the output.

use serde::{Deserialize, Deserializer, Serialize};

/// An RFC 3339 UTC time as trusttime prints it (`2026-11-23T08:00:00.001Z`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Time(pub String);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        trusttime_core::UnixTime::parse_rfc3339(&s)
            .map_err(|e| serde::de::Error::custom(format!("`{s}` is not an RFC 3339 time: {e}")))?;
        Ok(Time(s))
    }
}

/// How a source was judged (`sync` and `sources`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceVerdict {
    /// Its interval overlaps the majority's.
    Agreed,
    /// It answered with a time the majority (or the floor) contradicts.
    Falseticker,
    /// It answered, but no majority formed.
    Unconfirmed,
    /// No reply.
    NoReply,
    /// It sent a Kiss-o'-Death.
    KissOfDeath,
    /// Its reply was malformed or unusable.
    Invalid,
}

/// What kind of source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Plain NTP (unauthenticated).
    Ntp,
    /// NTS (RFC 8915).
    Nts,
    /// Roughtime.
    Roughtime,
}

/// Where a time came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// Only the floor (build time) is known.
    Floor,
    /// The real-time clock.
    Rtc,
    /// The persisted state of an earlier run.
    Persisted,
    /// Set by hand.
    Manual,
    /// A plain NTP consensus.
    Ntp,
    /// Authenticated sources (NTS, Roughtime).
    Authenticated,
}

/// `trusttime sync --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sync {
    /// True when enough sources agreed.
    pub consensus: bool,
    /// True time minus the local clock, seconds (`null` without consensus).
    pub offset_s: Option<f64>,
    /// The trusted interval's start.
    pub earliest: Option<Time>,
    /// The trusted interval's end.
    pub latest: Option<Time>,
    /// Half the interval's width, seconds.
    pub error_s: Option<f64>,
    /// How many sources agreed.
    pub agreed: u32,
    /// How many had to.
    pub min_agree: u32,
    /// True when the result rests on authenticated sources.
    pub authenticated: bool,
    /// `ntp` or `authenticated` (`null` without consensus).
    pub provenance: Option<Provenance>,
    /// From start to decision, milliseconds.
    pub elapsed_ms: f64,
    /// What certificates were checked against before the time was known: `floor`,
    /// `roughtime` or `given`.
    pub bootstrap: String,
    /// A caution about the result (e.g. plain NTP is unauthenticated).
    pub warning: Option<String>,
    /// Why there is no consensus.
    #[serde(default)]
    pub error: Option<String>,
    /// HTTPS Date constraints.
    pub constraints: Vec<Constraint>,
    /// Signed Roughtime evidence that a server lies.
    pub chain_violations: Vec<String>,
    /// Every source asked.
    pub sources: Vec<SyncSource>,
}

/// One HTTPS Date constraint of `sync`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraint {
    /// The URL asked.
    pub url: String,
    /// The lowest offset it allows, seconds.
    #[serde(default)]
    pub offset_lo_s: Option<f64>,
    /// The highest offset it allows, seconds.
    #[serde(default)]
    pub offset_hi_s: Option<f64>,
    /// Why it gave no constraint.
    #[serde(default)]
    pub error: Option<String>,
}

/// One source of `sync`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSource {
    /// As given.
    pub server: String,
    /// Its kind.
    pub kind: SourceKind,
    /// True for NTS and Roughtime.
    pub authenticated: bool,
    /// Replies that failed authentication.
    pub auth_failures: u32,
    /// The address asked (`null` when the name did not resolve).
    pub address: Option<String>,
    /// Its offset, seconds.
    pub offset_s: Option<f64>,
    /// Round-trip delay, seconds.
    pub delay_s: Option<f64>,
    /// Its error bound, seconds.
    pub error_s: Option<f64>,
    /// NTP stratum.
    pub stratum: Option<u8>,
    /// The verdict.
    pub verdict: SourceVerdict,
    /// The Kiss-o'-Death code, if one.
    pub kiss_code: Option<String>,
    /// The reason in words.
    pub reason: String,
}

/// `trusttime status --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// `unknown`, `holdover`, `synced` or `authenticated`.
    pub state: String,
    /// Where the time came from.
    pub provenance: Provenance,
    /// True when the time rests on authenticated sources.
    pub authenticated: bool,
    /// The trusted interval's start (`null` while unknown).
    pub earliest: Option<Time>,
    /// The trusted interval's end.
    pub latest: Option<Time>,
    /// True time minus the system clock, seconds.
    pub offset_s: Option<f64>,
    /// Half the interval's width, seconds.
    pub uncertainty_s: Option<f64>,
    /// The floor: the time never goes below it.
    pub floor: Time,
    /// The system clock when the daemon answered.
    pub system_time: Time,
    /// The system clock at the last consensus.
    pub last_sync: Option<Time>,
    /// Seconds until the next poll.
    pub next_poll_in_s: Option<f64>,
    /// The local oscillator's measured frequency error, ppm.
    pub freq_ppm: Option<f64>,
    /// The configured drift bound, ppm.
    pub drift_bound_ppm: f64,
    /// Sources in the last consensus.
    pub agreed: u32,
    /// Purposes for which only authenticated time counts.
    pub require_authenticated: Vec<String>,
    /// Unauthenticated sources that disagree with the authenticated consensus.
    pub unauthenticated_disagree: Vec<String>,
    /// True when the daemon never changes the clock.
    pub observe_only: bool,
    /// Start-up notes (state file, RTC).
    pub notes: Vec<String>,
    /// Manual changes since the daemon started, oldest first (at most 20).
    pub manual_changes: Vec<ManualChange>,
    /// One line in words.
    pub verdict: String,
}

/// One manual change (in `status`, and `set`'s reply).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualChange {
    /// When (system clock).
    pub at: Time,
    /// Who: the control socket and the peer's uid, or the web page and the address.
    pub who: String,
    /// The time before (`null` when none was known).
    pub old: Option<Time>,
    /// The time set.
    pub new: Time,
    /// Its uncertainty, milliseconds.
    pub uncertainty_ms: i64,
    /// True when it overrode a network-trusted interval.
    pub forced: bool,
}

/// `trusttime sources --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    /// One entry per configured source (pools expanded).
    pub sources: Vec<DaemonSource>,
}

/// One source of the daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSource {
    /// As configured.
    pub address: String,
    /// Its kind.
    pub kind: SourceKind,
    /// True for NTS and Roughtime.
    pub authenticated: bool,
    /// Replies that failed authentication.
    pub auth_failures: u32,
    /// The last verdict.
    pub verdict: SourceVerdict,
    /// The reason in words.
    pub reason: String,
    /// The reach register, octal (`377` = the last 8 polls answered).
    pub reach: String,
    /// The last sample's offset, seconds.
    pub offset_s: Option<f64>,
    /// The last sample's error bound, seconds.
    pub error_s: Option<f64>,
    /// The last sample's round-trip delay, seconds.
    pub delay_s: Option<f64>,
    /// Seconds since the last sample.
    pub age_s: Option<f64>,
    /// Poll exponent (log2 seconds).
    pub poll: i8,
    /// Seconds until the next poll (`null` once a Kiss-o'-Death stopped it).
    pub next_poll_in_s: Option<f64>,
    /// The Kiss-o'-Death code that stopped it.
    pub kiss_code: Option<String>,
    /// Requests sent.
    pub requests: u64,
}

/// `trusttime check --json`: a verdict, or (exit status 4) a network error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Check {
    /// The chain was fetched and judged.
    Judged(Box<CheckJudged>),
    /// No chain: the connection or handshake failed.
    Failed(CheckFailed),
}

/// `check` when the server could not be reached.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckFailed {
    /// As given.
    pub server: String,
    /// What went wrong.
    pub error: String,
    /// Always `null`.
    pub verdict: Option<CertVerdict>,
}

/// The verdict on a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertVerdict {
    /// Valid over the whole trusted interval.
    Valid,
    /// Invalid whatever the time.
    Invalid,
    /// Cannot be decided because of the clock.
    Undetermined,
}

/// `check` with a verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckJudged {
    /// As given.
    pub server: String,
    /// The name verified.
    pub servername: String,
    /// The verdict.
    pub verdict: CertVerdict,
    /// The exit status that goes with it (0, 1 or 3).
    pub exit_code: u8,
    /// The time judged by.
    pub time: CheckTime,
    /// The chain as presented, leaf first, then the root it chains to.
    pub chain: Vec<CheckCert>,
    /// The diagnosis.
    pub diagnosis: Diagnosis,
}

/// The time `check` judged by.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckTime {
    /// The device clock.
    pub device: Time,
    /// True when a trusted interval within --max-error was available.
    pub trusted: bool,
    /// The trusted interval (when trusted).
    pub earliest: Option<Time>,
    /// The trusted interval (when trusted).
    pub latest: Option<Time>,
    /// Where the time came from.
    pub provenance: Provenance,
    /// True for authenticated time.
    pub authenticated: bool,
    /// How the time was obtained: a sync's outcome, or the daemon's trusted time.
    pub sync: Option<String>,
}

/// Where a certificate sits in the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertRole {
    /// The server's certificate.
    Leaf,
    /// An intermediate CA, counted from the leaf.
    Intermediate(u8),
    /// The trust anchor.
    Root,
}

/// One certificate of `check`'s chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckCert {
    /// Its place.
    pub role: CertRole,
    /// Subject (RFC 4514).
    pub subject: String,
    /// Issuer (RFC 4514).
    pub issuer: String,
    /// Not valid before.
    pub not_before: Time,
    /// Not valid after.
    pub not_after: Time,
    /// Seconds from the time judged by to `not_after` (negative: expired).
    pub expires_in_s: i64,
}

/// The certificate concerned by a diagnosis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiagnosedCert {
    /// Its place.
    pub role: CertRole,
    /// Subject.
    pub subject: String,
    /// Issuer.
    pub issuer: String,
    /// Not valid before.
    pub not_before: Time,
    /// Not valid after.
    pub not_after: Time,
}

/// What was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// All good.
    Valid,
    /// The chain verifies at the device clock, which is not trusted.
    ClockNotTrusted,
    /// The device clock is provably behind.
    ClockBehind,
    /// Expired by an untrusted clock.
    ExpiredByUntrustedClock,
    /// Expired by a trusted clock.
    Expired,
    /// Not valid yet by a trusted clock.
    NotYetValid,
    /// The trusted interval straddles a validity boundary.
    Straddles,
    /// The root is outside its own validity.
    RootExpired,
    /// A date problem, but the chain does not verify at its own dates either.
    Unverifiable,
    /// Not time-related.
    Other,
}

/// `{"kind": ...}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// What was found.
    pub kind: FindingKind,
}

/// `check`'s diagnosis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Diagnosis {
    /// The verdict.
    pub verdict: CertVerdict,
    /// What was found.
    pub finding: Finding,
    /// The certificate concerned.
    pub certificate: Option<DiagnosedCert>,
    /// The device clock.
    pub device_time: Time,
    /// Where the trusted time came from.
    pub provenance: String,
    /// The trusted interval's half-width, seconds.
    pub uncertainty_s: Option<f64>,
    /// How far the clock would have to be off for the certificate to be valid (seconds,
    /// positive = clock behind).
    pub clock_off_by_s: Option<f64>,
    /// The matching OpenSSL error name.
    pub openssl_error: Option<String>,
    /// True when the chain was re-verified at the certificate's own dates.
    pub chain_verified_at_own_dates: bool,
    /// The explanation.
    pub message: String,
    /// What to do.
    pub advice: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's JSON examples are what the schema says.
    #[test]
    fn the_readme_examples_parse() {
        let readme = include_str!("../../../README.md");
        let docs = include_str!("../../../docs/json.md");
        let mut seen = 0;
        for text in [readme, docs] {
            for block in text.split("```json").skip(1) {
                let body = block.split("```").next().unwrap_or_default();
                let v: serde_json::Value = serde_json::from_str(body)
                    .unwrap_or_else(|e| panic!("not JSON ({e}):\n{body}"));
                let ok = if v.get("consensus").is_some() {
                    serde_json::from_value::<Sync>(v.clone()).map(|_| ())
                } else if v.get("state").is_some() {
                    serde_json::from_value::<Status>(v.clone()).map(|_| ())
                } else if v.get("sources").is_some() {
                    serde_json::from_value::<Sources>(v.clone()).map(|_| ())
                } else if v.get("servername").is_some() || v.get("error").is_some() {
                    serde_json::from_value::<Check>(v.clone()).map(|_| ())
                } else {
                    panic!("a JSON example of no known command:\n{body}");
                };
                ok.unwrap_or_else(|e| panic!("{e}:\n{body}"));
                seen += 1;
            }
        }
        assert!(seen >= 5, "only {seen} examples");
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        let good = serde_json::json!({"sources": []});
        assert!(serde_json::from_value::<Sources>(good).is_ok());
        let extra = serde_json::json!({"sources": [], "surprise": 1});
        assert!(serde_json::from_value::<Sources>(extra).is_err());
        let t: Result<Time, _> = serde_json::from_value(serde_json::json!("yesterday"));
        assert!(t.is_err());
        let t: Result<Time, _> = serde_json::from_value(serde_json::json!("2026-11-23T08:00:00Z"));
        assert!(t.is_ok());
    }
}
