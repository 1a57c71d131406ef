//! Certificates before the time is known: the bootstrap verifier.
//!
//! NTS-KE and HTTPS run over TLS, and TLS needs the time to check certificates: the
//! chicken-and-egg problem of authenticated time. With only a floor known, the
//! [`BootstrapVerifier`] accepts a chain (signatures, name, and every other check of webpki)
//! if there is a moment within the *bootstrap interval* (by default `[floor, floor +
//! horizon]`, or better an interval from Roughtime, which needs no certificate) at which
//! every certificate of the chain, the root included, is valid. It remembers that chain's
//! common validity window; once time has been obtained through the connection, the caller
//! must [`confirm`] that the obtained time lies inside the window, and throw the time away if
//! it does not. An attacker holding the key of a certificate that expired before the floor
//! cannot get past the first check; one whose certificate is still valid is no better off
//! than against a device that knows the time.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName};
use trusttime_core::{Human, SignedDuration, TimeInterval, UnixTime};

use crate::diagnosis::{date, CertInfo};
use crate::verifier::{chain_info, root_infos};

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
#[derive(Debug)]
pub struct BootstrapVerifier {
    inner: Arc<WebPkiServerVerifier>,
    roots: Vec<CertInfo>,
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
        let mut store = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for r in &roots {
            store.add(r.clone())?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
            .build()
            .map_err(|e| Error::General(format!("cannot build the certificate verifier: {e}")))?;
        Ok(BootstrapVerifier {
            inner,
            roots: root_infos(&roots),
            interval,
            window: Mutex::new(None),
        })
    }

    /// The interval certificates were checked against.
    #[must_use]
    pub fn interval(&self) -> TimeInterval {
        self.interval
    }

    /// The common validity window of the last chain accepted (within the interval).
    #[must_use]
    pub fn window(&self) -> Option<TimeInterval> {
        self.window.lock().ok().and_then(|w| *w)
    }

    /// The common window of a chain: from the latest `not_before` to the earliest
    /// `not_after`, or `None` when the certificates were never valid together.
    fn common_window(chain: &[CertInfo]) -> Option<TimeInterval> {
        let from = chain.iter().map(|c| c.not_before).max()?;
        let to = chain.iter().map(|c| c.not_after).min()?;
        TimeInterval::new(from, to)
    }
}

/// Checks, once time is known, that the certificate used to obtain it was valid over the
/// whole obtained interval. Returns a sentence saying why not.
///
/// # Errors
/// When `time` is not inside `window`.
pub fn confirm(window: TimeInterval, time: &TimeInterval) -> Result<(), String> {
    if window.contains_interval(time) {
        return Ok(());
    }
    Err(format!(
        "the certificate used to obtain the time is valid from {} to {}, but the time obtained through it is {} .. {}: the result is thrown away (a certificate cannot vouch for a time outside its own validity)",
        date(window.earliest),
        date(window.latest),
        time.earliest,
        time.latest
    ))
}

impl ServerCertVerifier for BootstrapVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let chain = chain_info(end_entity, intermediates, &self.roots)
            .map_err(|why| Error::General(format!("certificate chain: {why}")))?;
        let Some(common) = Self::common_window(&chain) else {
            return Err(Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(BootstrapError(
                    "the certificates of the chain were never valid at the same time".into(),
                ))),
            )));
        };
        let Some(usable) = common.intersect(&self.interval) else {
            let why = if common.latest < self.interval.earliest {
                format!(
                    "the certificate chain stopped being valid on {}, before the earliest time this device can be at ({}): it is expired",
                    date(common.latest),
                    date(self.interval.earliest)
                )
            } else {
                format!(
                    "the certificate chain is valid only from {}, {} after the latest time accepted before the time is known ({}); sync from a source that needs no certificate (Roughtime, NTP) first, or raise the bootstrap horizon",
                    date(common.earliest),
                    Human(common.earliest - self.interval.latest),
                    date(self.interval.latest)
                )
            };
            return Err(Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(BootstrapError(why))),
            )));
        };
        // Every other check (signatures, name, usage) by webpki, at a moment inside the window.
        let at = usable.midpoint();
        let secs = u64::try_from(at.as_secs()).unwrap_or(0);
        let pki_at =
            rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
        self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            pki_at,
        )?;
        if let Ok(mut w) = self.window.lock() {
            *w = Some(common);
        }
        Ok(ServerCertVerified::assertion())
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

/// Why a chain was refused at bootstrap.
#[derive(Debug)]
pub struct BootstrapError(pub String);

impl std::fmt::Display for BootstrapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BootstrapError {}
