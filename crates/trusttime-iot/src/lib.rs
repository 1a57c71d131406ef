//! # trusttime-iot
//!
//! Connect to AWS IoT Core (or any MQTT broker) only when the time is trusted.
//!
//! [`publish_once`] refuses to start a TLS handshake until the [`TrustedClock`] is trusted to
//! the TLS purpose's error; the rustls configuration it uses ([`client_config`]) checks the
//! broker's certificate with [`TrustedTimeVerifier`] (validity over the whole trusted interval)
//! and presents the device's client certificate (mutual TLS, as AWS IoT Core requires).
//!
//! ```no_run
//! # async fn f(clock: std::sync::Arc<dyn trusttime_tls::TrustedClock>, m: trusttime_iot::MqttTls) {
//! match trusttime_iot::publish_once(&m, clock, "devices/42/hello", b"hi".to_vec(), std::time::Duration::from_secs(10)).await {
//!     Ok(()) => println!("published"),
//!     Err(e) => eprintln!("{e}"), // e.g. "time not trusted: ..." with the reason
//! }
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod sigv4;

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use trusttime_core::{Human, Purpose};
use trusttime_tls::{Policy, TrustedClock, TrustedTimeProvider, TrustedTimeVerifier};

/// The ALPN protocol AWS IoT Core accepts for MQTT over TLS on port 443.
pub const ALPN_AWS_MQTT: &[u8] = b"x-amzn-mqtt-ca";

/// Where and as whom to connect.
#[derive(Debug)]
pub struct MqttTls {
    /// Broker host (AWS IoT: `xxxxxxxx-ats.iot.REGION.amazonaws.com`).
    pub endpoint: String,
    /// 8883, or 443 with [`ALPN_AWS_MQTT`].
    pub port: u16,
    /// The name to verify when it differs from `endpoint` (e.g. connecting by address).
    pub servername: Option<String>,
    /// MQTT client ID (AWS IoT: usually the thing name).
    pub client_id: String,
    /// The device certificate chain (empty: no client certificate, as for SigV4 WebSockets).
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The device key (with `cert_chain`).
    pub key: Option<PrivateKeyDer<'static>>,
    /// Root CAs for the broker (AWS: the Amazon Root CAs).
    pub roots: Vec<CertificateDer<'static>>,
    /// ALPN protocol, if any.
    pub alpn: Option<Vec<u8>>,
    /// MQTT over WebSocket with a SigV4-presigned URL instead of MQTT over TLS.
    pub websocket: Option<WebSocket>,
}

/// MQTT over WebSocket (`wss://ENDPOINT[:PORT]/mqtt`), the URL presigned with SigV4 at the
/// trusted time, as AWS IoT Core accepts it.
#[derive(Debug, Clone)]
pub struct WebSocket {
    /// AWS region of the endpoint.
    pub region: String,
    /// Credentials to sign with.
    pub credentials: sigv4::AwsCredentials,
}

/// Why nothing was published.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The time is not trusted to the error TLS needs: no handshake was attempted.
    #[error("time not trusted: {0}")]
    NotTrusted(String),
    /// Bad certificate, key or name.
    #[error("configuration: {0}")]
    Config(String),
    /// The connection or the MQTT exchange failed.
    #[error("connection: {0}")]
    Connection(String),
    /// No answer in time.
    #[error("no answer from the broker within {0:?}")]
    Timeout(Duration),
}

/// Verifies against a fixed name (for connecting by address to a broker whose certificate
/// names its DNS name).
#[derive(Debug)]
struct NameOverride {
    inner: TrustedTimeVerifier,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NameOverride {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The rustls configuration: trusted-time provider and verifier, client certificate, ALPN.
///
/// # Errors
/// [`ConnectError::Config`] for unusable roots, certificate, key or name.
pub fn client_config(
    clock: Arc<dyn TrustedClock>,
    purpose: Purpose,
    m: &MqttTls,
) -> Result<Arc<rustls::ClientConfig>, ConnectError> {
    let policy = Policy::for_purpose(purpose);
    let verifier = TrustedTimeVerifier::new(m.roots.clone(), Arc::clone(&clock), policy)
        .map_err(|e| ConnectError::Config(e.to_string()))?;
    let name = m.servername.clone().unwrap_or_else(|| m.endpoint.clone());
    let name = ServerName::try_from(name)
        .map_err(|e| ConnectError::Config(format!("server name: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_details(
        provider,
        Arc::new(TrustedTimeProvider::new(clock, policy.max_error)),
    )
    .with_safe_default_protocol_versions()
    .map_err(|e| ConnectError::Config(e.to_string()))?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(NameOverride {
        inner: verifier,
        name,
    }));
    let mut config = match (&m.key, m.cert_chain.is_empty()) {
        (Some(key), false) => config
            .with_client_auth_cert(m.cert_chain.clone(), key.clone_key())
            .map_err(|e| ConnectError::Config(format!("device certificate or key: {e}")))?,
        (None, true) => config.with_no_client_auth(),
        _ => {
            return Err(ConnectError::Config(
                "give both a device certificate and its key, or neither".into(),
            ))
        }
    };
    if let Some(a) = &m.alpn {
        config.alpn_protocols = vec![a.clone()];
    }
    Ok(Arc::new(config))
}

/// Checks the clock is trusted for TLS; the error says why not, in words.
///
/// # Errors
/// [`ConnectError::NotTrusted`].
pub fn require_trusted(clock: &dyn TrustedClock, purpose: Purpose) -> Result<(), ConnectError> {
    let r = clock.read();
    let max = purpose.default_max_error();
    if r.is_trusted_within(max) {
        return Ok(());
    }
    let why = if r.trusted.provenance == trusttime_core::Provenance::Floor {
        format!(
            "the device clock says {} and {}",
            r.device,
            r.trusted.provenance.describe()
        )
    } else {
        format!(
            "its uncertainty is {} ({}), more than the {} {} allows",
            Human(r.trusted.uncertainty()),
            r.trusted.provenance.describe(),
            Human(max),
            purpose.as_str()
        )
    };
    Err(ConnectError::NotTrusted(format!("{why}; no TLS handshake was attempted. Sync first (trusttime sync, or the daemon and `trusttime wait --for tls`).")))
}

/// Connects with MQTT over TLS, publishes one message at QoS 1, waits for its PUBACK and
/// disconnects. Never starts a handshake on an untrusted clock.
///
/// # Errors
/// [`ConnectError`].
pub async fn publish_once(
    m: &MqttTls,
    clock: Arc<dyn TrustedClock>,
    topic: &str,
    payload: Vec<u8>,
    timeout: Duration,
) -> Result<(), ConnectError> {
    let purpose = if m.websocket.is_some() {
        Purpose::SigV4
    } else {
        Purpose::Tls
    };
    require_trusted(clock.as_ref(), purpose)?;
    let tls = client_config(Arc::clone(&clock), purpose, m)?;
    let mut opts = match &m.websocket {
        None => {
            let mut o = MqttOptions::new(m.client_id.clone(), m.endpoint.clone(), m.port);
            o.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)));
            o
        }
        Some(ws) => {
            // Signed at the trusted time, never the raw system clock.
            let url = sigv4::iot_websocket_url_on_port(
                &m.endpoint,
                m.port,
                &ws.region,
                &ws.credentials,
                clock.as_ref(),
            )?;
            let signed_at = url
                .split(['?', '&'])
                .find_map(|kv| kv.strip_prefix("X-Amz-Date="))
                .unwrap_or("?")
                .to_owned();
            tracing::info!(
                x_amz_date = %signed_at,
                "WebSocket URL presigned with SigV4 at the trusted time"
            );
            let mut o = MqttOptions::new(m.client_id.clone(), url, m.port);
            o.set_transport(Transport::Wss(TlsConfiguration::Rustls(tls)));
            o
        }
    };
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(opts, 10);
    let work = async {
        let mut published = false;
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) if !published => {
                    client
                        .publish(topic, QoS::AtLeastOnce, false, payload.clone())
                        .await
                        .map_err(|e| ConnectError::Connection(e.to_string()))?;
                    published = true;
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    let _ = client.disconnect().await;
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) => return Err(ConnectError::Connection(error_chain(&e))),
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ConnectError::Timeout(timeout))?
}

/// Reconnect delays: exponential with full jitter (a random delay between zero and
/// `min(cap, base × 2^attempt)`), so a fleet that lost its broker does not return in step.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// First ceiling.
    pub base: Duration,
    /// Largest ceiling.
    pub cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// A policy.
    #[must_use]
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }
    /// The ceiling of the next delay.
    #[must_use]
    pub fn ceiling(&self) -> Duration {
        self.base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap)
    }
    /// The next delay, from fresh randomness `rand`.
    pub fn next_delay(&mut self, rand: u64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let ns = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(if ns == 0 { 0 } else { rand % (ns + 1) })
    }
}

/// True when a failure is the clock's or the certificate's fault: retrying blindly would not
/// help; the time must be synced again (or the certificate fixed).
#[must_use]
pub fn is_time_or_certificate_failure(e: &ConnectError) -> bool {
    match e {
        ConnectError::NotTrusted(_) => true,
        ConnectError::Connection(m) => {
            m.contains("X509_V_ERR") || m.contains("certificate") || m.contains("current time")
        }
        _ => false,
    }
}

/// [`publish_once`] with up to `retries` more attempts after connection failures, spaced by
/// `backoff`. A failure caused by the clock or the certificate is returned at once (with its
/// diagnosis), not retried.
///
/// # Errors
/// The last [`ConnectError`].
pub async fn publish_with_retries(
    m: &MqttTls,
    clock: Arc<dyn TrustedClock>,
    topic: &str,
    payload: Vec<u8>,
    timeout: Duration,
    retries: u32,
    mut backoff: Backoff,
) -> Result<(), ConnectError> {
    let mut left = retries;
    loop {
        match publish_once(m, Arc::clone(&clock), topic, payload.clone(), timeout).await {
            Ok(()) => return Ok(()),
            Err(e) if is_time_or_certificate_failure(&e) || left == 0 => return Err(e),
            Err(e) => {
                let d = backoff.next_delay(rand_u64());
                tracing::warn!(error = %e, delay = ?d, "connection failed; retrying");
                left -= 1;
                tokio::time::sleep(d).await;
            }
        }
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// An error and its sources, so a certificate diagnosis inside a TLS error is shown.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_stays_under_a_doubling_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let ceilings: Vec<u128> = (0..6)
            .map(|i| {
                let c = b.ceiling().as_millis();
                let d = b.next_delay(i * 7_919_000_003);
                assert!(d <= b.base.saturating_mul(1 << i).min(b.cap));
                c
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn clock_failures_are_not_retried_blindly() {
        assert!(is_time_or_certificate_failure(&ConnectError::NotTrusted(
            "x".into()
        )));
        assert!(is_time_or_certificate_failure(&ConnectError::Connection(
            "invalid peer certificate: X509_V_ERR_CERT_NOT_YET_VALID".into()
        )));
        assert!(!is_time_or_certificate_failure(&ConnectError::Connection(
            "connection refused".into()
        )));
    }
}
