//! NTS-KE over TLS 1.3 (RFC 8915 §4), driving the sans-IO records of
//! [`trusttime_core::nts`]. The authenticated NTP exchange that follows runs in
//! [`crate::sync`].
//!
//! The certificate of the NTS-KE server is checked by a [`BootstrapVerifier`]: before the time
//! is known, against the bootstrap interval; the window it was valid in comes back in
//! [`KeOutcome::window`], and the time obtained through it must fall inside that window.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use trusttime_core::nts::{
    encode_ke_request, exporter_context, parse_ke_response, Direction, KeError, Keys, NtsSession,
    EXPORTER_LABEL, KEY_LEN, KE_ALPN,
};
use trusttime_core::TimeInterval;
use trusttime_tls::BootstrapVerifier;

use crate::spec::{ServerSpec, NTP_PORT};

/// The NTS-KE port.
pub const KE_PORT: u16 = trusttime_core::nts::KE_DEFAULT_PORT;
/// The most an NTS-KE response may be (eight cookies are about 1 KiB).
const MAX_RESPONSE: usize = 16 * 1024;

/// What an NTS-KE exchange gives.
#[derive(Debug)]
pub struct KeOutcome {
    /// Keys and cookies for the NTP exchanges.
    pub session: NtsSession,
    /// The NTP server to ask (the NTS-KE server may name another host or port).
    pub ntp: ServerSpec,
    /// When the NTS-KE server's certificate chain was valid: the time obtained must lie inside.
    pub window: Option<TimeInterval>,
}

/// Runs NTS-KE with `ke` (TLS 1.3, ALPN `ntske/1`), checking its certificate with `verifier`.
///
/// # Errors
/// A sentence saying what failed: connection, TLS (with the certificate's problem), the
/// records, or the timeout.
pub async fn key_exchange(
    ke: &ServerSpec,
    verifier: Arc<BootstrapVerifier>,
    timeout: Duration,
) -> Result<KeOutcome, String> {
    tokio::time::timeout(timeout, exchange(ke, verifier))
        .await
        .map_err(|_| format!("NTS-KE with {ke} did not finish within {timeout:?}"))?
}

async fn exchange(ke: &ServerSpec, verifier: Arc<BootstrapVerifier>) -> Result<KeOutcome, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![KE_ALPN.to_vec()];
    let name = ServerName::try_from(ke.host.clone())
        .map_err(|e| format!("NTS-KE server name {}: {e}", ke.host))?;
    let tcp = TcpStream::connect((ke.host.as_str(), ke.port))
        .await
        .map_err(|e| format!("cannot connect to NTS-KE server {ke}: {e}"))?;
    // The request follows the TLS Finished at once: without this, Nagle's algorithm holds it
    // back until the server acknowledges the Finished (a delayed ACK: about 40 ms).
    let _ = tcp.set_nodelay(true);
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("NTS-KE TLS handshake with {ke} failed: {e}"))?;
    if tls.get_ref().1.alpn_protocol() != Some(KE_ALPN) {
        return Err(format!("NTS-KE server {ke} did not agree to ALPN ntske/1"));
    }
    let mut req = [0u8; 16];
    let n = encode_ke_request(&mut req).map_err(|e| e.to_string())?;
    tls.write_all(&req[..n])
        .await
        .map_err(|e| format!("NTS-KE write to {ke}: {e}"))?;
    tls.flush()
        .await
        .map_err(|e| format!("NTS-KE write: {e}"))?;
    let mut got = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    let response = loop {
        match parse_ke_response(&got) {
            Ok(r) => break r,
            Err(KeError::Incomplete) => {}
            Err(e) => return Err(format!("NTS-KE server {ke}: {e}")),
        }
        if got.len() > MAX_RESPONSE {
            return Err(format!(
                "NTS-KE server {ke} sent more than {MAX_RESPONSE} bytes"
            ));
        }
        let k = tls
            .read(&mut chunk)
            .await
            .map_err(|e| format!("NTS-KE read from {ke}: {e}"))?;
        if k == 0 {
            return Err(format!(
                "NTS-KE server {ke} closed the connection: {}",
                KeError::Incomplete
            ));
        }
        got.extend_from_slice(&chunk[..k]);
    };
    let conn = tls.get_ref().1;
    let mut keys = Keys {
        c2s: [0; KEY_LEN],
        s2c: [0; KEY_LEN],
    };
    for (dir, out) in [
        (Direction::ClientToServer, &mut keys.c2s),
        (Direction::ServerToClient, &mut keys.s2c),
    ] {
        let ctx = exporter_context(dir);
        *out = conn
            .export_keying_material([0u8; KEY_LEN], EXPORTER_LABEL, Some(&ctx))
            .map_err(|e| format!("NTS key export: {e}"))?;
    }
    let _ = tls.shutdown().await;
    let ntp = ServerSpec {
        host: response.server().unwrap_or(&ke.host).to_owned(),
        port: response.port.unwrap_or(NTP_PORT),
    };
    Ok(KeOutcome {
        session: NtsSession::new(keys, response.cookies),
        ntp,
        window: verifier.window(),
    })
}
