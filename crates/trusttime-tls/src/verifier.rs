//! The verifier and the judgement behind it.
//!
//! A verdict is a function of the certification path that verification builds and of the
//! whole trusted interval `[earliest, latest]`:
//!
//! - **valid**: one path (server certificate, intermediates, trust anchor) verifies
//!   (signatures, name, usage, constraints) and every certificate on it, the trust anchor
//!   included, is within its validity at every instant of the interval;
//! - **invalid**: no path verifies at any instant of the interval (this includes every
//!   failure that does not depend on time: wrong name, unknown issuer, missing intermediate,
//!   bad signature);
//! - **undetermined**: some instant of the interval makes a path valid, but no path is valid
//!   over all of it.
//!
//! Paths are built by webpki (`verify_for_usage`), whose `verify_path` callback rejects a
//! candidate path that does not cover the instants asked for: path building then tries the
//! alternatives, so a path valid over the whole interval is preferred, and certificates the
//! server sent that are not on it play no part. A path's validity is the intersection of its
//! certificates' periods, so it changes only at a certificate's `notBefore` or just after its
//! `notAfter`: whether *some* instant of an interval has a valid path is decided by trying the
//! interval's start and every `notBefore` inside it.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{CertificateError, DigitallySignedStruct, Error, OtherError, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor};
use trusttime_core::{Human, Purpose, SignedDuration, TimeInterval, UnixTime};
use webpki::{EndEntityCert, KeyUsage, VerifiedPath};

use crate::clock::{ClockReading, TrustedClock};
use crate::diagnosis::{clock_words, date, secs, CertInfo, CertRole, Diagnosis, Finding, Verdict};

/// What to do when the trusted interval straddles a validity boundary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UndeterminedPolicy {
    /// Fail the handshake (default): the certificate may already have expired.
    #[default]
    Reject,
    /// Accept: a path is valid for part of the interval.
    Accept,
}

/// How strict the verifier is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The largest uncertainty of the trusted time that still counts as trusted.
    pub max_error: SignedDuration,
    /// What to do with an interval that straddles a validity boundary.
    pub undetermined: UndeterminedPolicy,
}

impl Policy {
    /// The purpose's default maximum error (TLS 1 hour, SigV4 5 minutes), rejecting
    /// undetermined verdicts.
    #[must_use]
    pub fn for_purpose(p: Purpose) -> Self {
        Policy {
            max_error: p.default_max_error(),
            undetermined: UndeterminedPolicy::Reject,
        }
    }
}

/// At most this many instants are tried when looking for one with a valid path (a server
/// sending hundreds of certificates gets "invalid" rather than unbounded work; both fail
/// closed).
const MAX_PROBES: usize = 32;

/// The trust anchors and, for those given as certificates, their facts (dates included).
#[derive(Debug)]
pub(crate) struct Anchors {
    list: Vec<TrustAnchor<'static>>,
    /// Aligned with `list`; `None` for the built-in Mozilla anchors, which carry no dates.
    certs: Vec<Option<CertInfo>>,
}

impl Anchors {
    /// `roots` (full certificates, so their dates are checked), then the Mozilla roots of
    /// `webpki-roots` when `mozilla`.
    pub(crate) fn new(roots: &[CertificateDer<'_>], mozilla: bool) -> Result<Self, Error> {
        let mut list = Vec::new();
        let mut certs = Vec::new();
        for (i, r) in roots.iter().enumerate() {
            let a = webpki::anchor_from_trusted_cert(r).map_err(|e| {
                Error::General(format!("trust anchor #{} cannot be used: {e:?}", i + 1))
            })?;
            // A root whose dates cannot be read would escape the date check: refuse it.
            let info = parse(r, CertRole::Root).ok_or_else(|| {
                Error::General(format!("trust anchor #{} is not valid X.509 DER", i + 1))
            })?;
            list.push(a.to_owned());
            certs.push(Some(info));
        }
        if mozilla {
            for a in webpki_roots::TLS_SERVER_ROOTS {
                list.push(a.clone());
                certs.push(None);
            }
        }
        Ok(Anchors { list, certs })
    }

    fn dated(&self) -> Vec<CertInfo> {
        self.certs.iter().flatten().cloned().collect()
    }
}

/// What the server sent, parsed once.
struct Sent<'a> {
    ee: EndEntityCert<'a>,
    leaf: CertInfo,
    inter: &'a [CertificateDer<'a>],
    /// Aligned with `inter`; `None` when a certificate does not parse.
    infos: Vec<Option<CertInfo>>,
}

impl<'a> Sent<'a> {
    fn read(
        end_entity: &'a CertificateDer<'a>,
        inter: &'a [CertificateDer<'a>],
    ) -> Result<Self, String> {
        let leaf = parse(end_entity, CertRole::Leaf)
            .ok_or("the server certificate is not valid X.509 DER")?;
        let ee = EndEntityCert::try_from(end_entity)
            .map_err(|e| format!("the server certificate cannot be used: {e:?}"))?;
        let infos = inter
            .iter()
            .enumerate()
            .map(|(i, d)| parse(d, CertRole::Sent(u8::try_from(i + 1).unwrap_or(u8::MAX))))
            .collect();
        Ok(Sent {
            ee,
            leaf,
            inter,
            infos,
        })
    }

    /// Which sent certificate this is (webpki hands back slices of what it was given).
    fn index_of(&self, der: &[u8]) -> Option<usize> {
        self.inter
            .iter()
            .position(|c| std::ptr::eq(c.as_ref().as_ptr(), der.as_ptr()) && c.len() == der.len())
            .or_else(|| self.inter.iter().position(|c| c.as_ref() == der))
    }
}

/// A path webpki built and verified, with the facts of its certificates.
#[derive(Clone, Debug)]
struct Found {
    /// Leaf, intermediates in path order, the trust anchor when it has dates.
    chain: Vec<CertInfo>,
    /// Which of the sent certificates are on the path.
    used: Vec<bool>,
    /// The seconds at which every certificate on it is valid: `[lo, hi]`.
    lo: i64,
    hi: i64,
}

/// Over an interval: one path covers it, some instant has a path, or none.
enum Over {
    Covered(Found),
    Partly(Found),
    Never,
}

/// The judging engine: anchors and signature algorithms.
#[derive(Debug)]
pub(crate) struct Engine {
    anchors: Anchors,
    provider: Arc<CryptoProvider>,
}

impl Engine {
    pub(crate) fn new(anchors: Anchors) -> Self {
        Engine {
            anchors,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    /// The window `[lo, hi]` (seconds) of a candidate path; empty when a certificate on it
    /// cannot be placed (fails closed).
    fn window(&self, s: &Sent<'_>, p: &VerifiedPath<'_>) -> (i64, i64) {
        let mut lo = s.leaf.not_before.as_secs();
        let mut hi = s.leaf.not_after.as_secs();
        for c in p.intermediate_certificates() {
            match s
                .index_of(c.der().as_ref())
                .and_then(|i| s.infos[i].as_ref())
            {
                Some(i) => {
                    lo = lo.max(i.not_before.as_secs());
                    hi = hi.min(i.not_after.as_secs());
                }
                None => return (1, 0),
            }
        }
        match self.anchor_index(p) {
            Some(i) => {
                if let Some(Some(a)) = self.anchors.certs.get(i) {
                    lo = lo.max(a.not_before.as_secs());
                    hi = hi.min(a.not_after.as_secs());
                }
            }
            None => return (1, 0),
        }
        (lo, hi)
    }

    fn anchor_index(&self, p: &VerifiedPath<'_>) -> Option<usize> {
        let a = p.anchor();
        self.anchors.list.iter().position(|x| std::ptr::eq(x, a))
    }

    fn found(&self, s: &Sent<'_>, p: &VerifiedPath<'_>) -> Found {
        let (lo, hi) = self.window(s, p);
        let mut chain = vec![s.leaf.clone()];
        let mut used = vec![false; s.inter.len()];
        for (k, c) in p.intermediate_certificates().enumerate() {
            if let Some(i) = s.index_of(c.der().as_ref()) {
                used[i] = true;
                if let Some(info) = &s.infos[i] {
                    chain.push(CertInfo {
                        role: CertRole::Intermediate(u8::try_from(k + 1).unwrap_or(u8::MAX)),
                        ..info.clone()
                    });
                }
            }
        }
        if let Some(Some(root)) = self.anchor_index(p).and_then(|i| self.anchors.certs.get(i)) {
            chain.push(root.clone());
        }
        Found {
            chain,
            used,
            lo,
            hi,
        }
    }

    /// A verified path whose every certificate is valid at every second of `[lo, hi]`.
    fn build(&self, s: &Sent<'_>, lo: i64, hi: i64) -> Result<Found, webpki::Error> {
        // webpki reads no date before 1970, so no path is valid then.
        let Ok(t) = u64::try_from(lo) else {
            let zero = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::ZERO);
            return Err(webpki::Error::CertNotValidYet {
                time: zero,
                not_before: zero,
            });
        };
        let time = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(t));
        let covers = |p: &VerifiedPath<'_>| -> Result<(), webpki::Error> {
            let (a, b) = self.window(s, p);
            if a <= lo && hi <= b {
                Ok(())
            } else {
                Err(webpki::Error::CertExpired {
                    time,
                    not_after: time,
                })
            }
        };
        let path = s.ee.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &self.anchors.list,
            s.inter,
            time,
            KeyUsage::server_auth(),
            None,
            Some(&covers),
        )?;
        Ok(self.found(s, &path))
    }

    /// The `notBefore`s (seconds) of every certificate that may be on a path, sorted.
    fn starts(&self, s: &Sent<'_>) -> Vec<i64> {
        let mut issuers: Vec<&str> = vec![s.leaf.issuer.as_str()];
        issuers.extend(s.infos.iter().flatten().map(|c| c.issuer.as_str()));
        let mut v: Vec<i64> = std::iter::once(&s.leaf)
            .chain(s.infos.iter().flatten())
            .chain(
                self.anchors
                    .certs
                    .iter()
                    .flatten()
                    .filter(|a| issuers.contains(&a.subject.as_str())),
            )
            .map(|c| c.not_before.as_secs())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Judges the seconds `[lo, hi]`.
    fn over(&self, s: &Sent<'_>, lo: i64, hi: i64) -> Over {
        if let Ok(f) = self.build(s, lo, hi) {
            return Over::Covered(f);
        }
        self.first_in(s, lo, hi).map_or(Over::Never, Over::Partly)
    }

    /// A path valid at some second of `[lo, hi]`, trying `lo` and every `notBefore` inside.
    fn first_in(&self, s: &Sent<'_>, lo: i64, hi: i64) -> Option<Found> {
        std::iter::once(lo)
            .chain(self.starts(s).into_iter().filter(|&t| lo < t && t <= hi))
            .take(MAX_PROBES)
            .find_map(|t| self.build(s, t, t).ok())
    }

    /// Every path found at some instant (one per `notBefore`), and the errors elsewhere.
    fn anywhere(&self, s: &Sent<'_>) -> (Vec<Found>, Vec<webpki::Error>) {
        let mut found = Vec::new();
        let mut errors = Vec::new();
        let mut probes = self.starts(s);
        probes.retain(|&t| t >= 0);
        if probes.is_empty() {
            probes.push(0);
        }
        for t in probes.into_iter().take(MAX_PROBES) {
            match self.build(s, t, t) {
                Ok(f) => found.push(f),
                Err(e) => errors.push(e),
            }
        }
        (found, errors)
    }

    /// The paths valid at some instant of `interval`, one per instant tried.
    pub(crate) fn paths_in(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        interval: TimeInterval,
    ) -> Vec<TimeInterval> {
        let Ok(s) = Sent::read(end_entity, intermediates) else {
            return Vec::new();
        };
        if s.ee.verify_is_valid_for_subject_name(server_name).is_err() {
            return Vec::new();
        }
        let (lo, hi) = (interval.earliest.as_secs(), interval.latest.as_secs());
        if let Ok(f) = self.build(&s, lo, hi) {
            return vec![window_interval(f.lo, f.hi)];
        }
        std::iter::once(lo)
            .chain(self.starts(&s).into_iter().filter(|&t| lo < t && t <= hi))
            .take(MAX_PROBES)
            .filter_map(|t| self.build(&s, t, t).ok())
            .map(|f| window_interval(f.lo, f.hi))
            .collect()
    }

    /// The fast check of a handshake: valid over the whole interval, name included.
    fn covers(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        interval: TimeInterval,
    ) -> bool {
        let Ok(s) = Sent::read(end_entity, intermediates) else {
            return false;
        };
        s.ee.verify_is_valid_for_subject_name(server_name).is_ok()
            && self
                .build(&s, interval.earliest.as_secs(), interval.latest.as_secs())
                .is_ok()
    }
}

/// The instants of the seconds `[lo, hi]`: from `lo` to the last nanosecond of `hi`.
fn window_interval(lo: i64, hi: i64) -> TimeInterval {
    let end = UnixTime::from_secs(hi.saturating_add(1)) - SignedDuration::from_nanos(1);
    TimeInterval {
        earliest: UnixTime::from_secs(lo),
        latest: end.max(UnixTime::from_secs(lo)),
    }
}

/// A rustls [`ServerCertVerifier`] that judges validity against a [`TrustedClock`].
#[derive(Debug)]
pub struct TrustedTimeVerifier {
    engine: Engine,
    /// The roots' facts, parsed once here rather than on every handshake.
    roots: Vec<CertInfo>,
    clock: Arc<dyn TrustedClock>,
    policy: Policy,
}

impl TrustedTimeVerifier {
    /// A verifier trusting only these root certificates (full certificates, so their own
    /// validity is checked too).
    ///
    /// # Errors
    /// When a root is not usable.
    pub fn new(
        roots: Vec<CertificateDer<'static>>,
        clock: Arc<dyn TrustedClock>,
        policy: Policy,
    ) -> Result<Self, Error> {
        Self::build(&roots, false, clock, policy)
    }

    /// A verifier trusting the Mozilla roots of `webpki-roots`. Those are trust anchors
    /// without validity dates, so a root's own expiry cannot be checked with them.
    ///
    /// # Errors
    /// Only if the verifier cannot be built.
    pub fn with_webpki_roots(clock: Arc<dyn TrustedClock>, policy: Policy) -> Result<Self, Error> {
        Self::build(&[], true, clock, policy)
    }

    /// A verifier trusting the Mozilla roots of `webpki-roots` and, beside them, these root
    /// certificates (whose own validity is checked).
    ///
    /// # Errors
    /// When a root is not usable.
    pub fn with_webpki_roots_and(
        roots: Vec<CertificateDer<'static>>,
        clock: Arc<dyn TrustedClock>,
        policy: Policy,
    ) -> Result<Self, Error> {
        Self::build(&roots, true, clock, policy)
    }

    fn build(
        roots: &[CertificateDer<'_>],
        mozilla: bool,
        clock: Arc<dyn TrustedClock>,
        policy: Policy,
    ) -> Result<Self, Error> {
        let anchors = Anchors::new(roots, mozilla)?;
        Ok(TrustedTimeVerifier {
            roots: anchors.dated(),
            engine: Engine::new(anchors),
            clock,
            policy,
        })
    }

    /// Diagnoses a chain at the clock's current reading, without a connection.
    #[must_use]
    pub fn diagnose(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
    ) -> Diagnosis {
        self.diagnose_at(end_entity, intermediates, server_name, self.clock.read())
    }

    /// Diagnoses a chain at a given reading.
    #[must_use]
    pub fn diagnose_at(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        reading: ClockReading,
    ) -> Diagnosis {
        analyze(
            &self.engine,
            end_entity,
            intermediates,
            server_name,
            reading,
            self.policy,
        )
    }

    /// The facts of the root certificates this verifier was built with (empty for the
    /// built-in Mozilla anchors, which carry no validity dates).
    #[must_use]
    pub fn roots(&self) -> &[CertInfo] {
        &self.roots
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> Policy {
        self.policy
    }
}

impl ServerCertVerifier for TrustedTimeVerifier {
    /// Ignores rustls' `now`: the time comes from the trusted clock.
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let reading = self.clock.read();
        // The common case costs one path building, as plain webpki.
        if reading.is_trusted_within(self.policy.max_error)
            && self.engine.covers(
                end_entity,
                intermediates,
                server_name,
                reading.trusted.interval,
            )
        {
            return Ok(ServerCertVerified::assertion());
        }
        let d = self.diagnose_at(end_entity, intermediates, server_name, reading);
        if d.verdict == Verdict::Valid || accepts_undetermined(&d, self.policy) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(d)),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.engine.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.engine.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.engine
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// True when `policy` accepts this diagnosis although it is not valid: an undetermined verdict
/// because the trusted interval straddles a validity boundary, under
/// [`UndeterminedPolicy::Accept`].
#[must_use]
pub fn accepts_undetermined(d: &Diagnosis, policy: Policy) -> bool {
    d.verdict == Verdict::Undetermined
        && d.finding == Finding::Straddles
        && policy.undetermined == UndeterminedPolicy::Accept
}

pub(crate) fn parse(der: &[u8], role: CertRole) -> Option<CertInfo> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = c.validity();
    Some(CertInfo {
        role,
        subject: c.subject().to_string(),
        issuer: c.issuer().to_string(),
        not_before: crate::diagnosis::CertTime::from_secs(v.not_before.timestamp()),
        not_after: crate::diagnosis::CertTime::from_secs(v.not_after.timestamp()),
    })
}

/// The facts of root certificates (those that do not parse are left out).
#[must_use]
pub fn root_infos(roots: &[CertificateDer<'_>]) -> Vec<CertInfo> {
    roots
        .iter()
        .filter_map(|r| parse(r, CertRole::Root))
        .collect()
}

fn is_date_error(e: &webpki::Error) -> bool {
    matches!(
        e,
        webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. }
    )
}

/// A time-independent failure in words, and the OpenSSL error it corresponds to.
fn failure_words(e: &webpki::Error, leaf: &CertInfo) -> (String, Option<&'static str>) {
    use webpki::Error as E;
    match e {
        E::UnknownIssuer => (
            format!(
                "no path leads from it to a trusted root: its issuer \"{}\" (or that certificate's issuer) is not a trusted root and was not sent by the server (an unknown CA or a missing intermediate)",
                leaf.issuer
            ),
            Some("X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY"),
        ),
        E::InvalidSignatureForPublicKey => (
            "a signature on the chain does not verify with its issuer's key (bad signature)".into(),
            Some("X509_V_ERR_CERT_SIGNATURE_FAILURE"),
        ),
        E::CaUsedAsEndEntity | E::EndEntityUsedAsCa => (
            "a certificate is used in the wrong role (a CA as the server certificate, or a server certificate as a CA)".into(),
            Some("X509_V_ERR_INVALID_CA"),
        ),
        E::PathLenConstraintViolated => (
            "the path is longer than a CA's path length constraint allows".into(),
            Some("X509_V_ERR_PATH_LENGTH_EXCEEDED"),
        ),
        E::NameConstraintViolation => (
            "a name is outside a CA's name constraints".into(),
            Some("X509_V_ERR_PERMITTED_VIOLATION"),
        ),
        #[allow(deprecated)]
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => (
            "a certificate is not for TLS server authentication (extended key usage)".into(),
            Some("X509_V_ERR_INVALID_PURPOSE"),
        ),
        E::BadDerTime => (
            "a certificate's validity dates cannot be read (webpki reads no date before 1970)".into(),
            Some("X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD"),
        ),
        E::InvalidCertValidity => (
            "a certificate's notBefore is after its notAfter".into(),
            None,
        ),
        E::CertDistrusted => ("a certificate's key is distrusted".into(), None),
        other => (format!("{other:?}"), None),
    }
}

/// How much a failure says (higher first): the most telling time-independent error.
fn telling(e: &webpki::Error) -> u32 {
    match e {
        webpki::Error::UnknownIssuer => 1,
        e if is_date_error(e) => 0,
        _ => 2,
    }
}

/// Judges a chain against a clock reading: the core of the verifier and of `trusttime check`.
///
/// Never blames the clock without proof: a certificate's dates are only cited after a path
/// through it has been verified (at its own dates). "Ahead" is only ever said by a trusted
/// clock, never derived from certificate dates, and nothing here adjusts any clock.
#[must_use]
pub(crate) fn analyze(
    engine: &Engine,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    reading: ClockReading,
    policy: Policy,
) -> Diagnosis {
    let mut d = judge(
        engine,
        end_entity,
        intermediates,
        server_name,
        reading,
        policy,
    );
    if let Some(first) = d.message.get(..1) {
        d.message = first.to_uppercase() + &d.message[1..];
    }
    d
}

fn human_secs(s: i64) -> Human {
    Human(SignedDuration::from_secs(s))
}

/// "Also sent: …, not used." for the certificates off the path.
fn also_sent_words(also: &[CertInfo], judge_at: i64) -> String {
    if also.is_empty() {
        return String::new();
    }
    let list: Vec<String> = also
        .iter()
        .map(|c| {
            let state = if judge_at > c.not_after.as_secs() {
                ", expired"
            } else if judge_at < c.not_before.as_secs() {
                ", not yet valid"
            } else {
                ""
            };
            format!("\"{}\" ({}{state})", c.subject, c.validity_words())
        })
        .collect();
    format!(
        " Also sent by the server, not used: {} (they play no part in the verdict).",
        list.join("; ")
    )
}

/// Of the paths found, the one whose window is nearest to the seconds `[lo, hi]`.
fn nearest(found: Vec<Found>, lo: i64, hi: i64) -> Option<Found> {
    found.into_iter().min_by_key(|f| {
        if f.hi < lo {
            lo.saturating_sub(f.hi)
        } else if f.lo > hi {
            f.lo.saturating_sub(hi)
        } else {
            0
        }
    })
}

/// The certificate of a path whose `notBefore` (`start`) or `notAfter` decides its window.
fn decider(f: &Found, start: bool) -> CertInfo {
    f.chain
        .iter()
        .find(|c| {
            if start {
                c.not_before.as_secs() == f.lo
            } else {
                c.not_after.as_secs() == f.hi
            }
        })
        .or_else(|| f.chain.first())
        .cloned()
        .unwrap_or_else(|| CertInfo {
            role: CertRole::Leaf,
            subject: String::new(),
            issuer: String::new(),
            not_before: crate::diagnosis::CertTime::from_secs(f.lo),
            not_after: crate::diagnosis::CertTime::from_secs(f.hi),
        })
}

#[allow(clippy::too_many_lines)]
fn judge(
    engine: &Engine,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    reading: ClockReading,
    policy: Policy,
) -> Diagnosis {
    let trusted = reading.is_trusted_within(policy.max_error);
    let iv = reading.trusted.interval;
    let at = if trusted {
        iv.midpoint()
    } else {
        reading.device
    };
    let (lo, hi) = (iv.earliest.as_secs(), iv.latest.as_secs());
    let name = server_name.to_str().into_owned();
    let base = Diagnosis {
        verdict: Verdict::Invalid,
        finding: Finding::Other,
        certificate: None,
        device_time: reading.device,
        provenance: reading.trusted.provenance.as_str(),
        uncertainty_s: trusted.then(|| secs(reading.trusted.uncertainty())),
        clock_off_by_s: None,
        openssl_error: None,
        chain_verified_at_own_dates: false,
        chain: Vec::new(),
        also_sent: Vec::new(),
        message: String::new(),
        advice: String::new(),
    };
    let s = match Sent::read(end_entity, intermediates) {
        Ok(s) => s,
        Err(why) => {
            return Diagnosis {
                message: format!("the certificate chain of {name} cannot be read: {why}."),
                advice: "Check the server's certificate chain.".into(),
                ..base
            };
        }
    };
    let as_sent: Vec<CertInfo> = std::iter::once(s.leaf.clone())
        .chain(s.infos.iter().flatten().cloned())
        .collect();
    let clock = clock_words(&reading, trusted);
    let sync_advice = "Run `trusttime sync` (or start the trusttime daemon and `trusttime wait`), or set the time by hand.".to_owned();
    let with_path = |f: &Found, base: Diagnosis| -> Diagnosis {
        let also: Vec<CertInfo> = s
            .infos
            .iter()
            .zip(&f.used)
            .filter(|(_, u)| !**u)
            .filter_map(|(c, _)| c.clone())
            .collect();
        Diagnosis {
            chain: f.chain.clone(),
            also_sent: also,
            ..base
        }
    };
    let judge_secs = at.as_secs();

    // 1. What does not depend on time: the name.
    if s.ee.verify_is_valid_for_subject_name(server_name).is_err() {
        let names: Vec<&str> = s.ee.valid_dns_names().collect();
        let listed = if names.is_empty() {
            "it names no DNS name".to_owned()
        } else {
            format!("it is for {}", names.join(", "))
        };
        let d = Diagnosis {
            openssl_error: Some("X509_V_ERR_HOSTNAME_MISMATCH"),
            certificate: Some(s.leaf.clone()),
            chain: as_sent.clone(),
            message: format!(
                "the server certificate is not valid for the name {name} ({listed}): wrong host name, whatever the time. This is not a clock problem."
            ),
            advice: "Connect with the name the certificate was issued for (--servername), or fix the server's certificate.".into(),
            ..base
        };
        // Then what depends on time, in a sentence.
        let (f, then) = match engine.over(&s, lo, hi) {
            Over::Covered(f) if trusted => (Some(f), "Apart from the name, the chain is valid over the whole trusted interval."),
            Over::Covered(f) | Over::Partly(f) if trusted => (Some(f), "Apart from the name, a path is valid for part of the trusted interval only."),
            Over::Covered(f) | Over::Partly(f) => (Some(f), "Apart from the name, a path verifies at some time this device can be at, but its clock is not trusted."),
            Over::Never => (None, "Apart from the name, no path is valid at any time this device can be at either."),
        };
        let d = Diagnosis {
            message: format!("{} {then}", d.message),
            ..d
        };
        return match f {
            Some(f) => with_path(&f, d),
            None => d,
        };
    }

    // 2. Over the interval the time is known to lie in.
    let over = engine.over(&s, lo, hi);
    if let Over::Covered(f) = &over {
        if trusted {
            let also = with_path(f, base.clone());
            let note = also_sent_words(&also.also_sent, judge_secs);
            return Diagnosis {
                verdict: Verdict::Valid,
                finding: Finding::Valid,
                chain_verified_at_own_dates: true,
                message: format!("the certificate chain of {name} is valid over the whole trusted interval ({clock}).{note}"),
                ..also
            };
        }
    }
    match over {
        Over::Covered(f) | Over::Partly(f) => {
            let d = with_path(&f, base);
            let note = also_sent_words(&d.also_sent, judge_secs);
            if trusted {
                // Some instant has a valid path, no path covers all of them.
                let starts_inside = f.lo > lo;
                let c = decider(&f, starts_inside);
                let boundary = if starts_inside {
                    c.not_before.to_string()
                } else {
                    format!("{} (valid through its last second)", c.not_after)
                };
                return Diagnosis {
                    verdict: Verdict::Undetermined,
                    finding: Finding::Straddles,
                    certificate: Some(c.clone()),
                    chain_verified_at_own_dates: true,
                    message: format!(
                        "the {} is {}, and {clock}: the time could lie on either side of {boundary}, so validity cannot be decided.{note}",
                        c.named(&name),
                        c.validity_words()
                    ),
                    advice: "Sync again for a narrower interval.".into(),
                    ..d
                };
            }
            // Untrusted: judged at the device clock, in words only.
            let device = reading.device.as_secs();
            if let Ok(g) = engine.build(&s, device, device) {
                let d = with_path(&g, d);
                return Diagnosis {
                    verdict: Verdict::Undetermined,
                    finding: Finding::ClockNotTrusted,
                    chain_verified_at_own_dates: true,
                    message: format!(
                        "the certificate chain of {name} would be valid at {}, but {clock}. trusttime does not accept certificates on an untrusted clock: a clock in the past can accept a certificate that expired long ago.{note}",
                        date(reading.device)
                    ),
                    advice: sync_advice,
                    ..d
                };
            }
            let (found, _) = engine.anywhere(&s);
            let g = nearest(found, device, device).unwrap_or(f);
            let d = with_path(&g, d);
            let behind = device < g.lo;
            let c = decider(&g, behind);
            let (code, off) = if behind {
                ("X509_V_ERR_CERT_NOT_YET_VALID", g.lo.saturating_sub(device))
            } else {
                ("X509_V_ERR_CERT_HAS_EXPIRED", g.hi.saturating_sub(device))
            };
            let (finding, message) = if behind {
                (
                    Finding::ClockBehind,
                    format!(
                        "the {} is {}, but {clock}. The clock is {} behind, not the certificate ({code}).{note}",
                        c.named(&name),
                        c.validity_words(),
                        human_secs(off)
                    ),
                )
            } else {
                (
                    Finding::ExpiredByUntrustedClock,
                    format!(
                        "the {} is {}, but {clock}. By that clock it expired {} ago; either the clock is ahead or the certificate really expired, and only a trusted time can tell ({code}).{note}",
                        c.named(&name),
                        c.validity_words(),
                        human_secs(off)
                    ),
                )
            };
            Diagnosis {
                verdict: Verdict::Undetermined,
                finding,
                certificate: Some(c),
                clock_off_by_s: Some(off as f64),
                openssl_error: Some(code),
                chain_verified_at_own_dates: true,
                message,
                advice: sync_advice,
                ..d
            }
        }
        Over::Never => {
            // 3. No instant of the interval has a valid path: invalid. Is it time at all?
            let (found, errors) = engine.anywhere(&s);
            let Some(f) = nearest(found, lo, hi) else {
                // No path at any time: what does not depend on time.
                let d = Diagnosis {
                    chain: as_sent.clone(),
                    certificate: Some(s.leaf.clone()),
                    ..base
                };
                let e = errors.iter().max_by_key(|e| telling(e));
                let (why, code) = match e {
                    Some(e) if telling(e) > 0 => failure_words(e, &s.leaf),
                    _ => (
                        "its certificates are never all valid at the same time, whichever path is taken".to_owned(),
                        None,
                    ),
                };
                let leaf_ok = if trusted {
                    s.leaf.valid_at(iv.earliest) && s.leaf.valid_at(iv.latest)
                } else {
                    s.leaf.valid_at(reading.device)
                };
                if !leaf_ok {
                    return Diagnosis {
                        finding: Finding::Unverifiable,
                        openssl_error: code,
                        message: format!(
                            "the certificate chain of {name} does not verify at any time: {why}. So the dates of the server certificate ({}) cannot be believed, and {clock}: the clock is not blamed.",
                            s.leaf.validity_words()
                        ),
                        advice: "Check the server's certificate chain and the device's trusted roots.".into(),
                        ..d
                    };
                }
                return Diagnosis {
                    openssl_error: code,
                    message: format!(
                        "the certificate chain of {name} is not valid: {why}. This does not depend on the time; it is not a clock problem."
                    ),
                    advice: "Check the server's certificate chain and the device's trusted roots.".into(),
                    ..d
                };
            };
            // A path verifies at its own dates, all outside the interval: provably invalid.
            let d = with_path(&f, base);
            let note = also_sent_words(&d.also_sent, judge_secs);
            let early = f.lo > hi;
            let c = decider(&f, early);
            let (finding, code, off) = if early {
                (
                    Finding::NotYetValid,
                    "X509_V_ERR_CERT_NOT_YET_VALID",
                    f.lo.saturating_sub(judge_secs),
                )
            } else {
                (
                    if c.role == CertRole::Root {
                        Finding::RootExpired
                    } else {
                        Finding::Expired
                    },
                    "X509_V_ERR_CERT_HAS_EXPIRED",
                    f.hi.saturating_sub(judge_secs),
                )
            };
            let root_note = if c.role == CertRole::Root {
                " webpki does not check trust anchors' dates; trusttime does."
            } else {
                ""
            };
            let (what, advice) = if !trusted {
                // The interval is still a bound the time cannot leave (the floor at least).
                let w = if early {
                    format!(
                        "it is valid only from {}, after the latest time this device can be at ({}): not valid yet, whatever the clock says",
                        c.not_before, iv.latest
                    )
                } else {
                    format!(
                        "it expired on {}, before the earliest time this device can be at ({}): expired, whatever the clock says",
                        c.not_after.date(), iv.earliest
                    )
                };
                (
                    w,
                    if early {
                        "Fix the certificate's validity on the server."
                    } else if c.role == CertRole::Root {
                        "Update the device's trusted roots."
                    } else {
                        "Renew the certificate on the server."
                    },
                )
            } else if early {
                (
                    format!(
                        "the certificate is not valid yet for another {}; the clock is right",
                        human_secs(off)
                    ),
                    "Fix the certificate's validity on the server.",
                )
            } else if c.role == CertRole::Root {
                (
                    format!(
                        "the root itself expired {} ago; the clock is right",
                        human_secs(-off)
                    ),
                    "Update the device's trusted roots.",
                )
            } else {
                (
                    format!(
                        "the certificate really expired {} ago; the clock is right",
                        human_secs(-off)
                    ),
                    "Renew the certificate on the server.",
                )
            };
            Diagnosis {
                finding,
                certificate: Some(c.clone()),
                clock_off_by_s: Some(off as f64),
                openssl_error: Some(code),
                chain_verified_at_own_dates: true,
                message: format!(
                    "the {} is {}, and {clock}: {what} ({code}).{root_note}{note}",
                    c.named(&name),
                    c.validity_words(),
                ),
                advice: advice.into(),
                ..d
            }
        }
    }
}
