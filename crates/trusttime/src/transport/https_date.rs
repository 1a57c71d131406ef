//! HTTPS Date constraints (as OpenNTPD has them): the `Date` header of an HTTPS response,
//! whose certificate chain verified, bounds the time coarsely (to a second plus the round
//! trip). NTP answers that fall outside every constraint are falsetickers. The certificate is
//! checked by a [`BootstrapVerifier`] and must have been valid at the time the constraint
//! gives, or the constraint is thrown away.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use trusttime_core::select::OffsetInterval;
use trusttime_core::{SignedDuration, TimeInterval, UnixTime};
use trusttime_tls::{confirm, BootstrapVerifier};

use crate::clock::LocalClock;

/// The most header bytes read.
const MAX_HEAD: usize = 16 * 1024;

pub use crate::spec::HttpsDateSpec;

/// A constraint: what one HTTPS server's `Date` says about the local clock's offset.
#[derive(Clone, Copy, Debug)]
pub struct Constraint {
    /// True time minus local time lies in here.
    pub offset: OffsetInterval,
}

/// Parses the `Date` header out of a response head.
///
/// # Errors
/// When there is none or it is not an HTTP date.
pub fn date_header(head: &[u8]) -> Result<UnixTime, String> {
    let text =
        std::str::from_utf8(head).map_err(|_| "the response head is not UTF-8".to_owned())?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if !status.starts_with("HTTP/1.") {
        return Err(format!(
            "not an HTTP/1.x response: `{}`",
            status.chars().take(40).collect::<String>()
        ));
    }
    let value = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("date"))
        .map(|(_, v)| v.trim())
        .ok_or_else(|| "the response has no Date header".to_owned())?;
    let t = httpdate::parse_http_date(value)
        .map_err(|_| format!("unreadable Date header `{value}`"))?;
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "Date before 1970".to_owned())?
        .as_secs();
    i64::try_from(secs)
        .map(UnixTime::from_secs)
        .map_err(|_| "Date out of range".to_owned())
}

/// Fetches `spec` (a HEAD request) and turns its `Date` into a constraint.
///
/// # Errors
/// A sentence: connection, certificate, HTTP, or a Date outside the certificate's validity.
pub async fn query(
    spec: &HttpsDateSpec,
    verifier: Arc<BootstrapVerifier>,
    clock: &Arc<dyn LocalClock>,
    timeout: Duration,
) -> Result<Constraint, String> {
    tokio::time::timeout(timeout, fetch(spec, verifier, clock))
        .await
        .map_err(|_| format!("{} did not answer within {timeout:?}", spec.url))?
}

async fn fetch(
    spec: &HttpsDateSpec,
    verifier: Arc<BootstrapVerifier>,
    clock: &Arc<dyn LocalClock>,
) -> Result<Constraint, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(spec.host.clone()).map_err(|e| format!("{}: {e}", spec.url))?;
    let tcp = TcpStream::connect((spec.host.as_str(), spec.port))
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", spec.url))?;
    let _ = tcp.set_nodelay(true);
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {} failed: {e}", spec.url))?;
    let req = format!(
        "HEAD {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: trusttime/{}\r\nConnection: close\r\n\r\n",
        spec.path,
        spec.host,
        env!("CARGO_PKG_VERSION")
    );
    let t1 = clock.now();
    tls.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("{}: {e}", spec.url))?;
    let mut head = Vec::new();
    let mut chunk = [0u8; 2048];
    let t4 = loop {
        let n = tls
            .read(&mut chunk)
            .await
            .map_err(|e| format!("{}: {e}", spec.url))?;
        if n == 0 {
            return Err(format!(
                "{} closed the connection before the response head",
                spec.url
            ));
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end + 2);
            break clock.now();
        }
        if head.len() > MAX_HEAD {
            return Err(format!(
                "{} sent a response head over {MAX_HEAD} bytes",
                spec.url
            ));
        }
    };
    let date = date_header(&head).map_err(|e| format!("{}: {e}", spec.url))?;
    // The server wrote Date (truncated to the second) between our request and its arrival.
    let rtt = t4.mono.since(t1.mono).abs();
    let t1w = t1.wall;
    let lo = date - (t1w + rtt);
    let hi = (date + SignedDuration::from_secs(1)) - t1w;
    let constraint = Constraint {
        offset: OffsetInterval { lo, hi },
    };
    if let Some(window) = verifier.window() {
        let at = TimeInterval {
            earliest: date,
            latest: date + SignedDuration::from_secs(1),
        };
        confirm(window, &at).map_err(|why| format!("{}: {why}", spec.url))?;
    }
    Ok(constraint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let s: HttpsDateSpec = "https://example.com".parse().unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.path.as_str()),
            ("example.com", 443, "/")
        );
        let s: HttpsDateSpec = "https://localhost:8443/time?x=1".parse().unwrap();
        assert_eq!((s.port, s.path.as_str()), (8443, "/time?x=1"));
        for bad in [
            "http://example.com",
            "https://",
            "https://a b/",
            "https://h:0/",
            "https://h/a b",
        ] {
            assert!(bad.parse::<HttpsDateSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn date_headers_parse_and_garbage_is_refused() {
        let ok = b"HTTP/1.1 200 OK\r\nServer: x\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n";
        assert_eq!(date_header(ok).unwrap(), UnixTime::from_secs(784_111_777));
        assert!(date_header(b"HTTP/1.1 200 OK\r\n")
            .unwrap_err()
            .contains("no Date"));
        assert!(date_header(b"SSH-2.0\r\n").is_err());
        assert!(date_header(b"HTTP/1.1 200 OK\r\nDate: yesterday\r\n").is_err());
        assert!(date_header(&[0xff, 0xfe]).is_err());
    }
}
