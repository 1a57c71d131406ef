//! Roughtime sources over UDP, driving the sans-IO [`trusttime_core::roughtime`] codec.
//!
//! Several Roughtime servers are asked one after another as a *chain*: each request's nonce
//! is derived from the previous server's whole response (and fresh random bytes), so the
//! responses prove the order they were obtained in. When a later server signs a time that
//! ends before an earlier server's time begins, the chain is signed evidence that one of them
//! lies; the report says so.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use trusttime_core::ntp::{ClientConfig, LeapIndicator, Sample};
use trusttime_core::roughtime::{
    chain_nonce, encode_request_for_server, verify_response, Verified, Version, REQUEST_LEN,
};
use trusttime_core::{Now, SignedDuration};

use crate::clock::LocalClock;
use crate::spec::Verdict;

pub use crate::spec::{parse_key, parse_protocol, BadRoughtimeSpec, RoughtimeSpec};

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

/// What the chain reports as it goes; `usize` is the source's index in the sync.
#[derive(Debug)]
pub(crate) enum ChainEvent {
    /// The server's name resolved to this address.
    Resolved(usize, SocketAddr),
    /// It failed (no reply, an invalid reply, a time below the floor).
    Failed(usize, Verdict, String),
    /// The chain proves that one of two servers lies.
    ChainViolation(String),
    /// A verified answer.
    Done(usize, Sample),
}

/// Runs the Roughtime sources of a sync as one chain, in order; reports each as it answers.
pub(crate) async fn run_chain(
    first: usize,
    specs: Vec<RoughtimeSpec>,
    cfg: ClientConfig,
    clock: Arc<dyn LocalClock>,
    timeout: Duration,
    tx: mpsc::Sender<ChainEvent>,
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
                let _ = tx.send(ChainEvent::Resolved(i, addr)).await;
                if a.sample.server_time < cfg.floor {
                    let _ = tx
                        .send(ChainEvent::Failed(
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
                        let _ = tx.send(ChainEvent::ChainViolation(why)).await;
                    }
                }
                let _ = tx.send(ChainEvent::Done(i, a.sample)).await;
                previous = Some((i, a.response, a.verified));
            }
            Err((addr, verdict, why)) => {
                if let Some(addr) = addr {
                    let _ = tx.send(ChainEvent::Resolved(i, addr)).await;
                }
                let _ = tx.send(ChainEvent::Failed(i, verdict, why)).await;
            }
        }
    }
}
