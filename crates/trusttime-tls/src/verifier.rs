//! The verifier and the analysis behind it.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{
    CertificateError, DigitallySignedStruct, Error, OtherError, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName};
use trusttime_core::{Human, Purpose, SignedDuration, UnixTime};

use crate::clock::{ClockReading, TrustedClock};
use crate::diagnosis::{clock_words, date, secs, CertInfo, CertRole, Diagnosis, Finding, Verdict};

/// What to do when the trusted interval straddles a validity boundary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UndeterminedPolicy {
    /// Fail the handshake (default): the certificate may already have expired.
    #[default]
    Reject,
    /// Accept: the certificate was valid for part of the interval.
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

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls [`ServerCertVerifier`] that judges validity against a [`TrustedClock`].
#[derive(Debug)]
pub struct TrustedTimeVerifier {
    inner: Arc<WebPkiServerVerifier>,
    /// The roots' facts, parsed once here rather than on every handshake.
    roots: Vec<CertInfo>,
    clock: Arc<dyn TrustedClock>,
    policy: Policy,
}

impl TrustedTimeVerifier {
    /// A verifier trusting these root certificates (full certificates, so their own validity
    /// is checked too).
    ///
    /// # Errors
    /// When no root is usable.
    pub fn new(
        roots: Vec<CertificateDer<'static>>,
        clock: Arc<dyn TrustedClock>,
        policy: Policy,
    ) -> Result<Self, Error> {
        let mut store = RootCertStore::empty();
        for r in &roots {
            store.add(r.clone())?;
        }
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider())
            .build()
            .map_err(|e| Error::General(format!("cannot build the certificate verifier: {e}")))?;
        Ok(TrustedTimeVerifier {
            inner,
            roots: root_infos(&roots),
            clock,
            policy,
        })
    }

    /// A verifier trusting the Mozilla roots of `webpki-roots`. Those are trust anchors
    /// without validity dates, so a root's own expiry cannot be checked with them.
    ///
    /// # Errors
    /// Only if the verifier cannot be built.
    pub fn with_webpki_roots(clock: Arc<dyn TrustedClock>, policy: Policy) -> Result<Self, Error> {
        let store = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider())
            .build()
            .map_err(|e| Error::General(format!("cannot build the certificate verifier: {e}")))?;
        Ok(TrustedTimeVerifier {
            inner,
            roots: Vec::new(),
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
        analyze(
            &self.inner,
            &self.roots,
            end_entity,
            intermediates,
            server_name,
            self.clock.read(),
            self.policy,
        )
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
            &self.inner,
            &self.roots,
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
        let d = self.diagnose(end_entity, intermediates, server_name);
        let accept = d.verdict == Verdict::Valid
            || (d.finding == Finding::Straddles
                && self.policy.undetermined == UndeterminedPolicy::Accept);
        if accept {
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
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn parse(der: &CertificateDer<'_>, role: CertRole) -> Option<CertInfo> {
    let (_, c) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let v = c.validity();
    Some(CertInfo {
        role,
        subject: c.subject().to_string(),
        issuer: c.issuer().to_string(),
        not_before: UnixTime::from_secs(v.not_before.timestamp()),
        not_after: UnixTime::from_secs(v.not_after.timestamp()),
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

/// The chain's facts: leaf, intermediates, and the root among `roots` (see [`root_infos`])
/// whose subject is the last certificate's issuer.
///
/// # Errors
/// A certificate that does not parse, with its place in the chain.
pub fn chain_info(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    roots: &[CertInfo],
) -> Result<Vec<CertInfo>, String> {
    let mut out =
        vec![parse(end_entity, CertRole::Leaf)
            .ok_or("the server certificate is not valid X.509 DER")?];
    for (i, der) in intermediates.iter().enumerate() {
        let role = CertRole::Intermediate(u8::try_from(i + 1).unwrap_or(u8::MAX));
        out.push(parse(der, role).ok_or_else(|| format!("{role} is not valid X.509 DER"))?);
    }
    // Walk up from the last certificate to a root we hold (a chain may or may not include it).
    let issuer = out.last().map(|c| c.issuer.clone()).unwrap_or_default();
    let already = out
        .iter()
        .any(|c| c.subject == c.issuer && c.role != CertRole::Leaf);
    if !already {
        if let Some(root) = roots.iter().find(|r| r.subject == issuer) {
            out.push(root.clone());
        }
    } else if let Some(last) = out.last_mut() {
        last.role = CertRole::Root;
    }
    Ok(out)
}

fn to_pki(t: UnixTime) -> rustls_pki_types::UnixTime {
    let secs = u64::try_from(t.as_secs()).unwrap_or(0);
    rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs))
}

fn is_date_error(e: &Error) -> bool {
    matches!(
        e,
        Error::InvalidCertificate(
            CertificateError::Expired
                | CertificateError::NotValidYet
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYetContext { .. }
        )
    )
}

fn openssl_for(e: &Error) -> Option<&'static str> {
    match e {
        Error::InvalidCertificate(c) => Some(match c {
            CertificateError::UnknownIssuer => "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
            CertificateError::BadSignature => "X509_V_ERR_CERT_SIGNATURE_FAILURE",
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "X509_V_ERR_HOSTNAME_MISMATCH"
            }
            CertificateError::Revoked => "X509_V_ERR_CERT_REVOKED",
            _ => return None,
        }),
        _ => None,
    }
}

/// Judges a chain against a clock reading: the core of the verifier and of `trusttime check`.
///
/// Never blames the clock without proof: when a date check fails, the chain is re-verified at
/// the failing certificate's own dates; only if the signatures hold there is the clock said
/// to be behind. "Ahead" is only ever said by a trusted clock, never derived from certificate
/// dates, and nothing here adjusts any clock.
#[must_use]
pub fn analyze(
    inner: &WebPkiServerVerifier,
    roots: &[CertInfo],
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    reading: ClockReading,
    policy: Policy,
) -> Diagnosis {
    let mut d = judge(
        inner,
        roots,
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

#[allow(clippy::too_many_lines)]
fn judge(
    inner: &WebPkiServerVerifier,
    roots: &[CertInfo],
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    reading: ClockReading,
    policy: Policy,
) -> Diagnosis {
    let trusted = reading.is_trusted_within(policy.max_error);
    let at = if trusted {
        reading.trusted.interval.midpoint()
    } else {
        reading.device
    };
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
        message: String::new(),
        advice: String::new(),
    };
    let chain = match chain_info(end_entity, intermediates, roots) {
        Ok(c) => c,
        Err(why) => {
            return Diagnosis {
                message: format!("the certificate chain of {name} cannot be read: {why}."),
                ..base
            };
        }
    };
    let verify_at = |t: UnixTime| {
        inner.verify_server_cert(end_entity, intermediates, server_name, &[], to_pki(t))
    };
    let clock = clock_words(&reading, trusted);
    let sync_advice = "Run `trusttime sync` (or start the trusttime daemon and `trusttime wait`), or set the time by hand.".to_owned();

    match verify_at(at) {
        Ok(_) => {
            if trusted {
                let iv = reading.trusted.interval;
                if let Some(root) = chain
                    .iter()
                    .find(|c| c.role == CertRole::Root && !c.valid_at(at))
                {
                    return Diagnosis {
                        finding: Finding::RootExpired,
                        certificate: Some(root.clone()),
                        openssl_error: Some("X509_V_ERR_CERT_HAS_EXPIRED"),
                        message: format!(
                            "the root CA certificate \"{}\" is valid from {} to {}, and {clock}: the root itself is outside its validity (X509_V_ERR_CERT_HAS_EXPIRED). webpki does not check trust anchors' dates; trusttime does.",
                            root.subject, date(root.not_before), date(root.not_after)
                        ),
                        advice: "Update the device's trusted roots.".into(),
                        ..base
                    };
                }
                if let Some(c) = chain
                    .iter()
                    .find(|c| !(c.valid_at(iv.earliest) && c.valid_at(iv.latest)))
                {
                    let boundary = if c.valid_at(iv.latest) {
                        c.not_before
                    } else {
                        c.not_after
                    };
                    return Diagnosis {
                        verdict: Verdict::Undetermined,
                        finding: Finding::Straddles,
                        certificate: Some(c.clone()),
                        message: format!(
                            "the {} for {name} is valid from {} to {}, and {clock}: the time could lie on either side of {boundary}, so validity cannot be decided.",
                            c.role, c.not_before, c.not_after
                        ),
                        advice: "Sync again for a narrower interval.".into(),
                        ..base
                    };
                }
                Diagnosis {
                    verdict: Verdict::Valid,
                    finding: Finding::Valid,
                    message: format!("the certificate chain of {name} is valid over the whole trusted interval ({clock})."),
                    ..base
                }
            } else {
                Diagnosis {
                    verdict: Verdict::Undetermined,
                    finding: Finding::ClockNotTrusted,
                    message: format!(
                        "the certificate chain of {name} would be valid at {}, but {clock}. trusttime does not accept certificates on an untrusted clock: a clock in the past can accept a certificate that expired long ago.",
                        date(reading.device)
                    ),
                    advice: sync_advice,
                    ..base
                }
            }
        }
        Err(e) if is_date_error(&e) => {
            let Some(bad) = chain.iter().find(|c| !c.valid_at(at)).cloned() else {
                return Diagnosis {
                    message: format!("the certificate chain of {name} failed a date check ({e}) that trusttime cannot place in the chain."),
                    ..base
                };
            };
            let behind = at < bad.not_before;
            // Re-verify inside the failing certificate's own window: its signatures are
            // only worth believing if the chain verifies there.
            let probe = if behind {
                bad.not_before
            } else {
                bad.not_after
            };
            let genuine = verify_at(probe).is_ok();
            let window = format!(
                "valid from {} to {}",
                date(bad.not_before),
                date(bad.not_after)
            );
            let subject = if bad.role == CertRole::Leaf {
                format!("{} for {name}", bad.role)
            } else {
                format!("{} \"{}\"", bad.role, bad.subject)
            };
            let code = if behind {
                "X509_V_ERR_CERT_NOT_YET_VALID"
            } else {
                "X509_V_ERR_CERT_HAS_EXPIRED"
            };
            let off = if behind {
                bad.not_before - at
            } else {
                bad.not_after - at
            };
            let base = Diagnosis {
                certificate: Some(bad.clone()),
                clock_off_by_s: Some(secs(off)),
                openssl_error: Some(code),
                chain_verified_at_own_dates: genuine,
                ..base
            };
            if !genuine {
                return Diagnosis {
                    finding: Finding::Unverifiable,
                    message: format!(
                        "the {subject} is {window}, and {clock}; but the chain does not verify at the certificate's own dates either, so its dates cannot be believed and the clock is not blamed ({code})."
                    ),
                    advice: "Check the server's certificate chain.".into(),
                    ..base
                };
            }
            match (behind, trusted) {
                (true, false) => Diagnosis {
                    verdict: Verdict::Undetermined,
                    finding: Finding::ClockBehind,
                    message: format!(
                        "the {subject} is {window}, but {clock}. The clock is {} behind, not the certificate ({code}).",
                        Human(off)
                    ),
                    advice: sync_advice,
                    ..base
                },
                (false, false) => Diagnosis {
                    verdict: Verdict::Undetermined,
                    finding: Finding::ExpiredByUntrustedClock,
                    message: format!(
                        "the {subject} is {window}, but {clock}. By that clock it expired {} ago; either the clock is ahead or the certificate really expired, and only a trusted time can tell ({code}).",
                        Human(off)
                    ),
                    advice: sync_advice,
                    ..base
                },
                (true, true) => Diagnosis {
                    finding: Finding::NotYetValid,
                    message: format!(
                        "the {subject} is {window}, and {clock}: the certificate is not valid yet for another {}; the clock is right ({code}).",
                        Human(off)
                    ),
                    advice: "Fix the certificate's validity on the server.".into(),
                    ..base
                },
                (false, true) => Diagnosis {
                    finding: Finding::Expired,
                    message: format!(
                        "the {subject} is {window}, and {clock}: the certificate really expired {} ago; the clock is right ({code}).",
                        Human(off)
                    ),
                    advice: "Renew the certificate on the server.".into(),
                    ..base
                },
            }
        }
        Err(e) => Diagnosis {
            openssl_error: openssl_for(&e),
            message: format!(
                "the certificate chain of {name} is not valid: {e}. This is not a clock problem."
            ),
            certificate: chain.first().cloned(),
            ..base
        },
    }
}
