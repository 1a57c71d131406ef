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

/// A time as written in a certificate, RFC 3339 UTC to the second, over the whole X.509
/// range (`0000-01-01T00:00:00Z` .. `9999-12-31T23:59:59Z`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CertTime(pub String);

impl<'de> Deserialize<'de> for CertTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // YYYY-MM-DDTHH:MM:SSZ
        let b = s.as_bytes();
        let digits =
            |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
        let ok = b.len() == 20
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && b[10] == b'T'
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19)
            && b[19] == b'Z';
        if !ok {
            return Err(serde::de::Error::custom(format!(
                "`{s}` is not a certificate time (YYYY-MM-DDTHH:MM:SSZ)"
            )));
        }
        Ok(CertTime(s))
    }
}

/// How a source took part in a round: the same three words in `sync`, `sources` and the
/// daemon's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// It gave a usable reply (whether or not it then agreed with the others).
    Answered,
    /// It replied, and the reply was refused (`rejected_why` says why).
    Rejected,
    /// Nothing came back (lost, unreachable, no address, or not needed once the majority had
    /// decided).
    Silent,
}

/// How the HTTPS Date constraints were combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintDecisionKind {
    /// None were configured.
    NotAsked,
    /// None gave a usable answer: no constraint applied.
    NoneAnswered,
    /// A strict majority agree: their common interval was applied.
    Applied,
    /// They contradict each other with no majority: plain NTP is refused.
    Refused,
}

/// The combined HTTPS Date constraint (`sync`'s and `status`'s `constraint`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstraintDecision {
    /// What was decided.
    pub decision: ConstraintDecisionKind,
    /// `applied`: the lowest offset the agreeing constraints allow together, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_lo_s: Option<f64>,
    /// `applied`: the highest offset they allow together, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_hi_s: Option<f64>,
    /// `applied`: how many constraints agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreeing: Option<u32>,
    /// `applied`: how many answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered: Option<u32>,
    /// `applied`: the URLs outside the agreeing group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outvoted: Option<Vec<String>>,
    /// `refused`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
    /// The same server as another source of the same kind (same address): counted once.
    Duplicate,
}

impl SourceVerdict {
    /// Its name in the JSON.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            SourceVerdict::Agreed => "agreed",
            SourceVerdict::Falseticker => "falseticker",
            SourceVerdict::Unconfirmed => "unconfirmed",
            SourceVerdict::NoReply => "no_reply",
            SourceVerdict::KissOfDeath => "kiss_of_death",
            SourceVerdict::Invalid => "invalid",
            SourceVerdict::Duplicate => "duplicate",
        }
    }
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
    /// How the sources took part, in words (`3 sources: 2 answered, 0 rejected, 1 silent`).
    pub answers: String,
    /// Why a result is refused by the authentication policy (`null` when it is not).
    pub refused: Option<String>,
    /// HTTPS Date constraints, one per URL.
    pub constraints: Vec<Constraint>,
    /// How they were combined.
    pub constraint: ConstraintDecision,
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
    /// How it took part.
    pub answer: Answer,
    /// Why its reply was refused (`answer` `rejected`), else `null`.
    pub rejected_why: Option<String>,
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
    pub drift_bound_ppm: u32,
    /// Sources in the last consensus.
    pub agreed: u32,
    /// Sources whose last answer lay outside the consensus (or outside the authenticated
    /// consensus, for plain NTP beside NTS/Roughtime).
    pub falsetickers: u32,
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
    /// The last poll round's answers, in words (`null` before the first round).
    pub last_round: Option<String>,
    /// The last time hint (RTC, saved state, hand-set time) a network consensus overrode.
    pub hint_overridden: Option<String>,
    /// Signed Roughtime evidence that a server lies (the last 20, oldest first).
    pub chain_violations: Vec<ChainViolation>,
    /// How the HTTPS Date constraints were combined in the last round that asked them.
    pub constraint: Option<ConstraintDecision>,
    /// One line in words.
    pub verdict: String,
}

/// The clock-health report (`clock` of the Device Shadow document the daemon publishes):
/// a subset of [`Status`], the same names with the same meanings, plus its `schema` version
/// (`SCHEMA` in `report.rs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// The version of these fields.
    pub schema: u32,
    /// As [`Status::state`].
    pub state: String,
    /// As [`Status::provenance`].
    pub provenance: Provenance,
    /// As [`Status::authenticated`].
    pub authenticated: bool,
    /// As [`Status::offset_s`].
    pub offset_s: Option<f64>,
    /// As [`Status::uncertainty_s`].
    pub uncertainty_s: Option<f64>,
    /// As [`Status::earliest`].
    pub earliest: Option<Time>,
    /// As [`Status::latest`].
    pub latest: Option<Time>,
    /// As [`Status::last_sync`].
    pub last_sync: Option<Time>,
    /// As [`Status::agreed`].
    pub agreed: u32,
    /// As [`Status::falsetickers`].
    pub falsetickers: u32,
    /// As [`Status::verdict`].
    pub verdict: String,
}

/// Signed Roughtime evidence that one of two servers lies (`status`'s `chain_violations`):
/// the later server's request carried a nonce derived from the earlier server's response, yet
/// the time it signed ends before the earlier one's begins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainViolation {
    /// When it was seen (system clock).
    pub at: Time,
    /// The server asked first, and what it signed.
    pub earlier: SignedTime,
    /// The server asked after it, and what it signed.
    pub later: SignedTime,
    /// In words.
    pub text: String,
}

/// What one Roughtime server signed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTime {
    /// The source as configured (`host:port`).
    pub server: String,
    /// Its signed time (`MIDP`).
    pub midpoint: Time,
    /// Its signed radius (`RADI`), seconds.
    pub radius_s: f64,
}

/// One manual change in `status` (and `set`'s or `reset-floor`'s reply).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ManualChange {
    /// The time was set by hand.
    Set(ManualSet),
    /// The floor was reset to the build time.
    ResetFloor(FloorReset),
}

/// The floor reset by hand.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloorReset {
    /// When (system clock).
    pub at: Time,
    /// Who: the control socket and the peer's uid.
    pub who: String,
    /// The floor before and after.
    pub reset_floor: FloorChange,
}

/// A floor before and after a reset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloorChange {
    /// The floor before.
    pub old: Time,
    /// The floor after (the build time).
    pub new: Time,
}

/// The time set by hand.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualSet {
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
    /// The trusted interval that resulted, in words.
    pub trusted: String,
    /// True when it overrode a network-trusted interval.
    pub forced: bool,
}

/// The daemon's reply to `set` (and to a floor reset).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Changed {
    /// Always `true` (a refusal is `{"error": "..."}`).
    pub ok: bool,
    /// What changed, as `status` lists it in `manual_changes`.
    pub change: ManualChange,
}

/// `trusttime sources --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    /// One entry per configured source (pools expanded).
    pub sources: Vec<DaemonSource>,
    /// The last poll round's answers, in words (`null` before the first round).
    pub last_round: Option<String>,
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
    /// How it took part in its last poll.
    pub answer: Answer,
    /// Why its last reply was refused (`answer` `rejected`), else `null`.
    pub rejected_why: Option<String>,
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
    /// Always 4.
    pub exit_code: u8,
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
    /// True when an `undetermined` verdict was accepted by policy (then the exit status is 0).
    pub accepted_undetermined: bool,
    /// The exit status that goes with it (0, 1 or 3).
    pub exit_code: u8,
    /// The time judged by.
    pub time: CheckTime,
    /// The path judged (server certificate, intermediates, trust anchor), then what the
    /// server sent that is not on it.
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
    /// Sent by the server but not on the path judged (its place in what was sent, 1 = the
    /// first after the server certificate).
    Sent(u8),
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
    pub not_before: CertTime,
    /// Not valid after.
    pub not_after: CertTime,
    /// True when `not_after` is `9999-12-31T23:59:59Z` (no expiry date).
    pub no_expiry: bool,
    /// Seconds from the time judged by to `not_after` (negative: expired; `null` with no
    /// expiry date).
    pub expires_in_s: Option<i64>,
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
    pub not_before: CertTime,
    /// Not valid after.
    pub not_after: CertTime,
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
    /// The path judged (server certificate, intermediates, trust anchor); when no path
    /// verifies at any time, the certificates as the server sent them.
    pub chain: Vec<DiagnosedCert>,
    /// Certificates the server sent that are not on that path: they play no part.
    pub also_sent: Vec<DiagnosedCert>,
    /// The explanation.
    pub message: String,
    /// What to do.
    pub advice: String,
}

impl From<trusttime_core::UnixTime> for Time {
    fn from(t: trusttime_core::UnixTime) -> Self {
        Time(t.to_string())
    }
}

impl From<trusttime_core::Provenance> for Provenance {
    fn from(p: trusttime_core::Provenance) -> Self {
        use trusttime_core::Provenance as P;
        match p {
            P::Floor => Provenance::Floor,
            P::Rtc => Provenance::Rtc,
            P::Persisted => Provenance::Persisted,
            P::Manual => Provenance::Manual,
            P::Ntp => Provenance::Ntp,
            P::Authenticated => Provenance::Authenticated,
        }
    }
}

impl From<crate::spec::SourceKind> for SourceKind {
    fn from(k: crate::spec::SourceKind) -> Self {
        use crate::spec::SourceKind as K;
        match k {
            K::Ntp => SourceKind::Ntp,
            K::Nts => SourceKind::Nts,
            K::Roughtime => SourceKind::Roughtime,
        }
    }
}

impl From<crate::spec::Verdict> for SourceVerdict {
    fn from(v: crate::spec::Verdict) -> Self {
        use crate::spec::Verdict as V;
        match v {
            V::Agreed => SourceVerdict::Agreed,
            V::Falseticker => SourceVerdict::Falseticker,
            V::Unconfirmed => SourceVerdict::Unconfirmed,
            V::NoReply => SourceVerdict::NoReply,
            V::KissOfDeath => SourceVerdict::KissOfDeath,
            V::Invalid => SourceVerdict::Invalid,
            V::Duplicate => SourceVerdict::Duplicate,
        }
    }
}

impl From<&crate::tally::Answer> for Answer {
    fn from(a: &crate::tally::Answer) -> Self {
        match a {
            crate::tally::Answer::Answered => Answer::Answered,
            crate::tally::Answer::Rejected(_) => Answer::Rejected,
            crate::tally::Answer::Silent => Answer::Silent,
        }
    }
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

    /// The verdict's words are its JSON names, and the daemon's and `sync`'s names agree.
    #[test]
    fn verdict_words_are_the_json_names() {
        use crate::spec::Verdict as V;
        for v in [
            V::Agreed,
            V::Falseticker,
            V::Unconfirmed,
            V::NoReply,
            V::KissOfDeath,
            V::Invalid,
            V::Duplicate,
        ] {
            let ours = SourceVerdict::from(v);
            assert_eq!(serde_json::to_value(ours).unwrap(), ours.as_str());
            assert_eq!(ours.as_str(), v.as_str());
        }
    }

    /// A chain violation in `status` has the fields docs/json.md gives, and no others.
    #[test]
    fn a_chain_violation_has_the_documented_fields() {
        let v: ChainViolation = serde_json::from_value(serde_json::json!({
            "at": "2026-12-02T03:16:00Z",
            "earlier": {"server": "a.example:2002", "midpoint": "2026-12-02T05:16:00Z", "radius_s": 5.0},
            "later": {"server": "b.example:2002", "midpoint": "2026-12-02T04:16:01Z", "radius_s": 5.0},
            "text": "b.example:2002 signed ... one of the two lies"
        }))
        .unwrap();
        assert_eq!(v.later.server, "b.example:2002");
        let docs = include_str!("../../../docs/json.md");
        let row = docs
            .lines()
            .find(|l| l.starts_with("| `chain_violations[]`"))
            .unwrap();
        for field in [
            "`at`",
            "`earlier`",
            "`later`",
            "`text`",
            "\"server\", \"midpoint\", \"radius_s\"",
        ] {
            assert!(row.contains(field), "{field} not documented: {row}");
        }
        let mut extra = serde_json::to_value(&v).unwrap();
        extra["later"]["signature"] = "x".into();
        assert!(serde_json::from_value::<ChainViolation>(extra).is_err());
    }

    /// A constraint decision shows only the fields of its kind, as `sync --json` does.
    #[test]
    fn a_constraint_decision_shows_only_its_fields() {
        let refused = ConstraintDecision {
            decision: ConstraintDecisionKind::Refused,
            offset_lo_s: None,
            offset_hi_s: None,
            agreeing: None,
            answered: None,
            outvoted: None,
            reason: Some("no majority".into()),
        };
        assert_eq!(
            serde_json::to_string(&refused).unwrap(),
            r#"{"decision":"refused","reason":"no majority"}"#
        );
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
        // Certificate times span the whole X.509 range, to the second.
        for ok in ["9999-12-31T23:59:59Z", "0000-01-01T00:00:00Z"] {
            assert!(serde_json::from_value::<CertTime>(serde_json::json!(ok)).is_ok());
        }
        for bad in [
            "9999-12-31",
            "2026-11-23T08:00:00.5Z",
            "2026-11-23 08:00:00Z",
            "",
        ] {
            assert!(serde_json::from_value::<CertTime>(serde_json::json!(bad)).is_err());
        }
    }

    /// The shapes a field can take: both kinds of manual change, every certificate role,
    /// each constraint decision, and nothing else.
    #[test]
    fn each_shape_parses_and_strays_are_refused() {
        let reset = serde_json::json!({"at": "2026-12-01T21:31:00Z", "who": "control socket, uid 0",
            "reset_floor": {"old": "2027-01-01T00:00:00Z", "new": "2026-12-01T21:11:29Z"}});
        assert!(matches!(
            serde_json::from_value::<ManualChange>(reset).unwrap(),
            ManualChange::ResetFloor(_)
        ));
        // A reset with a set's fields mixed in is neither.
        let mixed = serde_json::json!({"at": "2026-12-01T21:31:00Z", "who": "x", "forced": true,
            "reset_floor": {"old": "2027-01-01T00:00:00Z", "new": "2026-12-01T21:11:29Z"}});
        assert!(serde_json::from_value::<ManualChange>(mixed).is_err());
        for (role, want) in [
            (serde_json::json!("leaf"), CertRole::Leaf),
            (
                serde_json::json!({"intermediate": 2}),
                CertRole::Intermediate(2),
            ),
            (serde_json::json!("root"), CertRole::Root),
            (serde_json::json!({"sent": 1}), CertRole::Sent(1)),
        ] {
            assert_eq!(serde_json::from_value::<CertRole>(role).unwrap(), want);
        }
        assert!(serde_json::from_value::<CertRole>(serde_json::json!("sent")).is_err());
        // The roles serialise as the verifier's do.
        for (ours, theirs) in [
            (
                CertRole::Intermediate(1),
                trusttime_tls::CertRole::Intermediate(1),
            ),
            (CertRole::Sent(3), trusttime_tls::CertRole::Sent(3)),
            (CertRole::Root, trusttime_tls::CertRole::Root),
        ] {
            assert_eq!(
                serde_json::to_value(ours).unwrap(),
                serde_json::to_value(theirs).unwrap()
            );
        }
        let refused = serde_json::json!({"decision": "refused", "reason": "no majority"});
        let c: ConstraintDecision = serde_json::from_value(refused).unwrap();
        assert_eq!(c.decision, ConstraintDecisionKind::Refused);
        let stray = serde_json::json!({"decision": "applied", "why": 1});
        assert!(serde_json::from_value::<ConstraintDecision>(stray).is_err());
        let unknown = serde_json::json!({"decision": "maybe"});
        assert!(serde_json::from_value::<ConstraintDecision>(unknown).is_err());
    }
}
