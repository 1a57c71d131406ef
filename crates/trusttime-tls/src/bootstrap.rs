//! Certificates before the time is known: the bootstrap verifier.
//!
//! NTS-KE and HTTPS run over TLS, and TLS needs the time to check certificates: the
//! chicken-and-egg problem of authenticated time. With only a floor known, the
//! [`BootstrapVerifier`] accepts a chain (signatures, name, and every other check of webpki)
//! if there is a moment within the *bootstrap interval* (by default `[floor, floor +
//! horizon]`, or better an interval from Roughtime, which needs no certificate) at which a
//! path webpki builds is valid, every certificate on it, the trust anchor included
//! (certificates sent but not on the path play no part). It remembers that path's validity
//! window; once time has been obtained through the connection, the caller
//! must [`confirm`] that the obtained time lies inside the window, and throw the time away if
//! it does not. An attacker holding the key of a certificate that expired before the floor
//! cannot get past the first check; one whose certificate is still valid is no better off
//! than against a device that knows the time.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName};
use trusttime_core::{Human, Provenance, SignedDuration, TimeInterval, TrustedTime, UnixTime};

use crate::clock::ClockReading;
use crate::diagnosis::{date, Finding};
use crate::verifier::{analyze, Anchors, Engine, Policy, UndeterminedPolicy};

/// The default bootstrap horizon: how far past the floor a certificate may start to be valid
/// and still be accepted before the time is known (5 years: a device may sit in a warehouse
/// for a long time, and private CAs issue long-lived certificates).
pub const DEFAULT_HORIZON: SignedDuration = SignedDuration::from_secs(5 * 365 * 86_400);

/// The bootstrap interval for a floor: `[floor, floor + horizon]`.
#[must_use]
pub fn bootstrap_interval(floor: UnixTime, horizon: SignedDuration) -> TimeInterval {
    TimeInterval {
        earliest: floor,
        latest: floor + horizon.abs(),
    }
}

/// A rustls verifier for connections that obtain the time (NTS-KE, HTTPS Date).
///
/// It judges with the same engine as [`crate::TrustedTimeVerifier`] (the path webpki builds,
/// the trust anchor's dates included), over the bootstrap interval: a chain is accepted when
/// some instant of the interval makes a path valid.
#[derive(Debug)]
pub struct BootstrapVerifier {
    engine: Engine,
    provider: Arc<CryptoProvider>,
    interval: TimeInterval,
    window: Mutex<Option<TimeInterval>>,
}

impl BootstrapVerifier {
    /// Trusting the Mozilla roots of `webpki-roots` plus the extra trust anchors `roots`, for
    /// time known to lie in `interval`.
    ///
    /// # Errors
    /// When a root cannot be used.
    pub fn new(roots: Vec<CertificateDer<'static>>, interval: TimeInterval) -> Result<Self, Error> {
        Ok(BootstrapVerifier {
            engine: Engine::new(Anchors::new(&roots, true)?),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            interval,
            window: Mutex::new(None),
        })
    }

    /// The interval certificates were checked against.
    #[must_use]
    pub fn interval(&self) -> TimeInterval {
        self.interval
    }

    /// The validity window of the path accepted last (the instants at which every
    /// certificate on it, the trust anchor included, is valid). Of the paths valid somewhere
    /// in the interval, the one valid over the largest part of it.
    #[must_use]
    pub fn window(&self) -> Option<TimeInterval> {
        self.window.lock().ok().and_then(|w| *w)
    }
}

/// A time obtained through a certificate that was not valid over all of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the certificate used to obtain the time is valid from {} to {}, but the time obtained through it is {} .. {}: the result is thrown away (a certificate cannot vouch for a time outside its own validity)",
    date(window.earliest),
    date(window.latest),
    time.earliest,
    time.latest
)]
pub struct OutsideValidity {
    /// The instants at which every certificate of the path is valid.
    pub window: TimeInterval,
    /// The time obtained through it.
    pub time: TimeInterval,
}

/// Checks, once time is known, that the certificate used to obtain it was valid over the
/// whole obtained interval.
///
/// # Errors
/// [`OutsideValidity`] when `time` is not inside `window`.
pub fn confirm(window: TimeInterval, time: &TimeInterval) -> Result<(), OutsideValidity> {
    if window.contains_interval(time) {
        return Ok(());
    }
    Err(OutsideValidity {
        window,
        time: *time,
    })
}

impl ServerCertVerifier for BootstrapVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let iv = self.interval;
        let windows = self
            .engine
            .paths_in(end_entity, intermediates, server_name, iv);
        let overlap =
            |w: &TimeInterval| w.intersect(&iv).map_or(SignedDuration::ZERO, |i| i.width());
        if let Some(best) = windows.into_iter().max_by_key(overlap) {
            if let Ok(mut w) = self.window.lock() {
                *w = Some(best);
            }
            return Ok(ServerCertVerified::assertion());
        }
        // Refused: the same diagnosis as everywhere, over the bootstrap interval.
        let reading = ClockReading {
            device: iv.earliest,
            trusted: TrustedTime {
                interval: iv,
                provenance: Provenance::Floor,
            },
        };
        let policy = Policy {
            max_error: SignedDuration::ZERO,
            undetermined: UndeterminedPolicy::Reject,
        };
        let d = analyze(
            &self.engine,
            end_entity,
            intermediates,
            server_name,
            reading,
            policy,
        );
        let why = match (&d.finding, &d.certificate) {
            (Finding::NotYetValid, Some(c)) => format!(
                "the {} \"{}\" is valid only from {}, {} after the latest time accepted before the time is known ({}); sync from a source that needs no certificate (Roughtime, NTP) first, or raise the bootstrap horizon",
                c.role,
                c.subject,
                c.not_before.date(),
                Human(c.not_before.to_unix() - iv.latest),
                date(iv.latest)
            ),
            (Finding::Expired | Finding::RootExpired, Some(c)) => format!(
                "the {} \"{}\" stopped being valid on {}, before the earliest time this device can be at ({}): it is expired",
                c.role,
                c.subject,
                c.not_after.date(),
                date(iv.earliest)
            ),
            _ => format!(
                "before the time is known, certificates are checked against {} .. {}: {}",
                date(iv.earliest),
                date(iv.latest),
                d.message
            ),
        };
        Err(Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(BootstrapError(why))),
        )))
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why a chain was refused at bootstrap.
#[derive(Debug)]
pub struct BootstrapError(pub String);

impl std::fmt::Display for BootstrapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BootstrapError {}
