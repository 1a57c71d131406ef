//! Roughtime sources over UDP, driving the sans-IO [`trusttime_core::roughtime`] codec.
//!
//! Several Roughtime servers are asked one after another as a *chain*: each request's nonce
//! is derived from the previous server's whole response (and fresh random bytes), so the
//! responses prove the order they were obtained in. When a later server signs a time that
//! ends before an earlier server's time begins, the chain is signed evidence that one of them
//! lies; the report says so.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use trusttime_core::ntp::{ClientConfig, LeapIndicator, Sample};
use trusttime_core::roughtime::{
    chain_nonce, encode_request_for_server, verify_response, Verified, Version, REQUEST_LEN,
};
use trusttime_core::{Now, SignedDuration};

use crate::clock::LocalClock;
use crate::sync::{Event, ServerSpec, Verdict};

/// A Roughtime server and its long-term public key: `HOST:PORT=KEY`, the key in hex (64
/// digits) or base64 (44 characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoughtimeSpec {
    /// Where it listens (UDP).
    pub server: ServerSpec,
    /// Its Ed25519 long-term public key.
    pub key: [u8; 32],
    /// The wire version spoken.
    pub version: Version,
}

/// A Roughtime specification that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid Roughtime server `{input}`: {why} (expected HOST:PORT=KEY, the key in hex or base64)"
)]
pub struct BadRoughtimeSpec {
    input: String,
    why: String,
}

/// The Roughtime wire format by name: `draft` or `google`.
///
/// # Errors
/// For any other name.
pub fn parse_protocol(s: &str) -> Result<Version, String> {
    match s {
        "draft" => Ok(Version::Draft),
        "google" => Ok(Version::Google),
        other => Err(format!(
            "unknown Roughtime protocol `{other}` (expected draft or google)"
        )),
    }
}

/// Decodes a 32-byte key from hex or base64.
///
/// # Errors
/// When it is neither.
pub fn parse_key(s: &str) -> Result<[u8; 32], String> {
    let s = s.trim();
    let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string()))
            .collect::<Result<Vec<u8>, String>>()?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| format!("the key is neither 64 hex digits nor base64 ({e})"))?
    };
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("the key has {} bytes; an Ed25519 key has 32", bytes.len()))
}

impl FromStr for RoughtimeSpec {
    type Err = BadRoughtimeSpec;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: String| BadRoughtimeSpec {
            input: s.to_owned(),
            why,
        };
        let (addr, key) = s
            .split_once('=')
            .ok_or_else(|| bad("missing `=KEY`".into()))?;
        let key = parse_key(key).map_err(bad)?;
        let server =
            ServerSpec::parse_with_default_port(addr, 2002).map_err(|e| bad(e.to_string()))?;
        Ok(RoughtimeSpec {
            server,
            key,
            version: Version::Draft,
        })
    }
}

/// One verified answer, with what was sent and received (the chain's evidence).
#[derive(Clone, Debug)]
pub struct Answer {
    /// The verified claim.
    pub verified: Verified,
    /// The measurement, in NTP terms, for source selection.
    pub sample: Sample,
    /// The response datagram.
    pub response: Vec<u8>,
}

/// Asks one server (up to three tries within `timeout`) with `nonce`.
///
/// # Errors
/// A sentence: unreachable, no reply, or why the reply failed verification.
pub async fn query(
    spec: &RoughtimeSpec,
    nonce: &[u8; 64],
    clock: &Arc<dyn LocalClock>,
    timeout: Duration,
) -> Result<(SocketAddr, Answer), (Option<SocketAddr>, Verdict, String)> {
    let addr = tokio::net::lookup_host((spec.server.host.as_str(), spec.server.port))
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            (
                None,
                Verdict::NoReply,
                format!("DNS: no address for {}", spec.server.host),
            )
        })?;
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let fail = |v, why: String| (Some(addr), v, why);
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| fail(Verdict::NoReply, format!("cannot open a UDP socket: {e}")))?;
    sock.connect(addr)
        .await
        .map_err(|e| fail(Verdict::NoReply, format!("cannot reach {addr}: {e}")))?;
    let mut req = [0u8; REQUEST_LEN];
    let n = encode_request_for_server(spec.version, nonce, &spec.key, &mut req)
        .map_err(|e| fail(Verdict::Invalid, e.to_string()))?;
    let mut buf = vec![0u8; 4096];
    // Three tries, and for the draft a probe without SRV after them (see below), all within
    // `timeout` with room to spare for the caller's own deadline.
    let per_try = match spec.version {
        Version::Draft => timeout / 5,
        Version::Google => timeout / 3,
    };
    let mut last_invalid = None;
    for _ in 0..3 {
        let t1: Now = clock.now();
        if let Err(e) = sock.send(&req[..n]).await {
            tracing::debug!(%addr, error = %e, "Roughtime send failed");
        }
        let deadline = tokio::time::Instant::now() + per_try;
        loop {
            let r = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await;
            let Ok(Ok(len)) = r else { break };
            let t4 = clock.now();
            match verify_response(spec.version, &buf[..len], nonce, &req[..n], &spec.key) {
                Ok(v) => {
                    let rtt = t4.mono.since(t1.mono).abs();
                    // The server read its clock somewhere in the round trip: offset against
                    // the middle of it, error = half the round trip plus the server's radius.
                    let mid_local = t1.wall + rtt.half();
                    let sample = Sample {
                        offset: v.midpoint - mid_local,
                        delay: rtt,
                        root_delay: SignedDuration::ZERO,
                        root_dispersion: v.radius,
                        precision: SignedDuration::ZERO,
                        stratum: 1,
                        leap: LeapIndicator::NoWarning,
                        reference_id: *b"ROUG",
                        server_time: v.midpoint,
                        received_at: Now {
                            mono: t4.mono,
                            wall: t1.wall + rtt,
                        },
                    };
                    return Ok((
                        addr,
                        Answer {
                            verified: v,
                            sample,
                            response: buf[..len].to_vec(),
                        },
                    ));
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "Roughtime reply failed verification; dropped");
                    last_invalid = Some(e.to_string());
                }
            }
        }
    }
    if let Some(why) = last_invalid {
        return Err(fail(
            Verdict::Invalid,
            format!("reply failed verification (spoofed, corrupted or malformed): {why}"),
        ));
    }
    // A draft request names the server's key (SRV), and a server whose key differs stays
    // silent. Ask once more without it: an answer now means the server is there and the
    // configured key is not its key.
    if spec.version == Version::Draft {
        if let Some(why) = probe_without_srv(&sock, spec, nonce, per_try, &mut buf).await {
            return Err(fail(Verdict::Invalid, why));
        }
    }
    Err(fail(Verdict::NoReply, "no reply to 3 requests".into()))
}

/// Asks without naming a key; `Some(why)` when a reply comes back (its signature is checked
/// against the configured key for the message).
async fn probe_without_srv(
    sock: &UdpSocket,
    spec: &RoughtimeSpec,
    nonce: &[u8; 64],
    wait: Duration,
    buf: &mut [u8],
) -> Option<String> {
    let mut req = [0u8; REQUEST_LEN];
    let n = trusttime_core::roughtime::encode_request(spec.version, nonce, &mut req).ok()?;
    sock.send(&req[..n]).await.ok()?;
    let len = tokio::time::timeout(wait, sock.recv(buf))
        .await
        .ok()?
        .ok()?;
    Some(
        match verify_response(spec.version, &buf[..len], nonce, &req[..n], &spec.key) {
            Ok(_) => "the server ignores requests that name the configured key (SRV) but answers without it; check the key".into(),
            Err(e) => format!(
                "wrong key: the server answers, but not for the configured public key, and its reply does not verify with it ({e})"
            ),
        },
    )
}

/// Runs the Roughtime sources of a sync as one chain, in order; reports each as it answers.
pub(crate) async fn run_chain(
    first: usize,
    specs: Vec<RoughtimeSpec>,
    cfg: ClientConfig,
    clock: Arc<dyn LocalClock>,
    timeout: Duration,
    tx: mpsc::Sender<Event>,
) {
    let mut previous: Option<(usize, Vec<u8>, Verified)> = None;
    for (k, spec) in specs.iter().enumerate() {
        let i = first + k;
        let blind: [u8; 64] = std::array::from_fn(|_| rand::random());
        let nonce = match &previous {
            Some((_, resp, _)) => chain_nonce(resp, &blind),
            None => blind,
        };
        match query(spec, &nonce, &clock, timeout).await {
            Ok((addr, a)) => {
                let _ = tx.send(Event::Resolved(i, addr)).await;
                if a.sample.server_time < cfg.floor {
                    let _ = tx
                        .send(Event::Failed(
                            i,
                            Verdict::Falseticker,
                            format!("signed a time below the floor ({})", cfg.floor),
                        ))
                        .await;
                    continue;
                }
                if let Some((j, _, before)) = &previous {
                    if a.verified.interval.latest < before.interval.earliest {
                        let why = format!(
                            "{} signed {} ± {} after {} had signed {} ± {} (its nonce was derived from that response): one of the two lies",
                            spec.server,
                            a.verified.midpoint,
                            trusttime_core::Human(a.verified.radius),
                            specs[*j - first].server,
                            before.midpoint,
                            trusttime_core::Human(before.radius),
                        );
                        tracing::warn!("Roughtime chain violation: {why}");
                        let _ = tx.send(Event::ChainViolation(why)).await;
                    }
                }
                let _ = tx.send(Event::Done(i, Ok(a.sample))).await;
                previous = Some((i, a.response, a.verified));
            }
            Err((addr, verdict, why)) => {
                if let Some(addr) = addr {
                    let _ = tx.send(Event::Resolved(i, addr)).await;
                }
                let _ = tx.send(Event::Failed(i, verdict, why)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_hex_and_base64_keys() {
        let hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let s: RoughtimeSpec = format!("127.0.0.1:2002={hex}").parse().unwrap();
        assert_eq!(s.server.port, 2002);
        assert_eq!(s.key[0], 0x01);
        let b64 = base64::engine::general_purpose::STANDARD.encode(s.key);
        assert!(
            b64.ends_with('='),
            "padding must not be mistaken for the separator"
        );
        let t: RoughtimeSpec = format!("localhost={b64}").parse().unwrap();
        assert_eq!(t.key, s.key);
        assert_eq!(t.server.port, 2002);
        for bad in [
            "127.0.0.1:2002",
            "h:1=abc",
            "h:1=",
            "=00",
            &format!("h:0={hex}"),
        ] {
            assert!(bad.parse::<RoughtimeSpec>().is_err(), "{bad:?}");
        }
    }
}
