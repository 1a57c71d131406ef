//! Roughtime sources over UDP, driving the sans-IO [`trusttime_core::roughtime`] codec.
//!
//! Several Roughtime servers are asked one after another as a *chain*: each request's nonce
//! is derived from the previous server's whole response (and fresh random bytes), so the
//! responses prove the order they were obtained in. When a later server signs a time that
//! ends before an earlier server's time begins, the chain is signed evidence that one of them
//! lies; the report says so. The chain itself is the core's
//! [`RoughtimeChain`](trusttime_core::roughtime_source::RoughtimeChain), driven here for one
//! round (the daemon drives it across polls).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use trusttime_core::ntp::{ClientConfig, Sample};
use trusttime_core::roughtime::{
    encode_request_for_server, verify_response, Verified, Version, REQUEST_LEN,
};
use trusttime_core::roughtime_source::{
    ChainConfig, ChainFailure, RoughtimeChain, RoughtimeEvent, ServerKey, MAX_SERVERS,
    RAND_LEN as RT_RAND_LEN, TRIES,
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
                    let sample = trusttime_core::roughtime_source::sample_of(&v, t1, t4);
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
///
/// The chain is the core's [`RoughtimeChain`] (the daemon's too), driven for one round: names
/// first, then one connected socket per server, each request's nonce derived from the
/// previous response. More than [`MAX_SERVERS`] servers are asked as consecutive chains.
pub(crate) async fn run_chain(
    first: usize,
    specs: Vec<RoughtimeSpec>,
    cfg: ClientConfig,
    clock: Arc<dyn LocalClock>,
    timeout: Duration,
    tx: mpsc::Sender<ChainEvent>,
) {
    for (c, chunk) in specs.chunks(MAX_SERVERS).enumerate() {
        one_chain(first + c * MAX_SERVERS, chunk, cfg, &clock, timeout, &tx).await;
    }
}

/// One round of a chain of at most [`MAX_SERVERS`] servers.
async fn one_chain(
    first: usize,
    specs: &[RoughtimeSpec],
    cfg: ClientConfig,
    clock: &Arc<dyn LocalClock>,
    timeout: Duration,
    tx: &mpsc::Sender<ChainEvent>,
) {
    // Three tries, and for the draft a probe without SRV after them (see
    // `probe_without_srv`), all within `timeout` with room to spare for the caller's own
    // deadline.
    let draft = specs.iter().any(|s| s.version == Version::Draft);
    let per_try = if draft { timeout / 5 } else { timeout / 3 };
    let keys: Vec<ServerKey> = specs
        .iter()
        .map(|s| ServerKey {
            version: s.version,
            key: s.key,
        })
        .collect();
    let config = ChainConfig {
        min_poll: 6,
        max_poll: 6,
        drift_ppm: 0,
        max_age: SignedDuration::from_secs(3600),
        reply_timeout: SignedDuration::from_std(per_try),
        floor: cfg.floor,
    };
    let Ok(mut chain) = RoughtimeChain::new(config, &keys, clock.now().mono) else {
        return;
    };
    let mut socks: Vec<Option<UdpSocket>> = Vec::new();
    for (k, spec) in specs.iter().enumerate() {
        let i = first + k;
        let sock = match connect(spec).await {
            Ok((addr, sock)) => {
                let _ = tx.send(ChainEvent::Resolved(i, addr)).await;
                chain.address_resolved(k, clock.now().mono, false);
                Some(sock)
            }
            Err((addr, why)) => {
                if let Some(addr) = addr {
                    let _ = tx.send(ChainEvent::Resolved(i, addr)).await;
                }
                let _ = tx.send(ChainEvent::Failed(i, Verdict::NoReply, why)).await;
                chain.address_failed(k, clock.now().mono);
                None
            }
        };
        socks.push(sock);
    }
    let mut buf = vec![0u8; 4096];
    let mut req = [0u8; REQUEST_LEN];
    // (Servers whose name failed sit the round out; the round ends after the last server.)
    loop {
        let now = clock.now();
        if chain.poll_timeout().is_some_and(|t| t <= now.mono) {
            chain.handle_timeout(now, rand::random());
        }
        while let Some(e) = chain.poll_event() {
            let finished = matches!(e, RoughtimeEvent::RoundFinished { .. });
            report(first, specs, &socks, e, cfg, per_try, &mut buf, tx).await;
            if finished {
                return;
            }
        }
        let mut blind = [0u8; RT_RAND_LEN];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut blind);
        while let Some((k, n)) = chain.poll_transmit(clock.now(), &blind, &mut req) {
            if let Some(Some(sock)) = socks.get(k) {
                if let Err(e) = sock.send(&req[..n]).await {
                    tracing::debug!(error = %e, "Roughtime send failed");
                }
            }
        }
        let Some(deadline) = chain.poll_timeout() else {
            return;
        };
        let wait = deadline
            .since(clock.now().mono)
            .to_std()
            .unwrap_or(Duration::ZERO);
        let asked = chain
            .asking()
            .and_then(|k| Some((k, socks.get(k)?.as_ref()?)));
        let Some((k, sock)) = asked else {
            tokio::time::sleep(wait).await;
            continue;
        };
        if let Ok(Ok(len)) = tokio::time::timeout(wait, sock.recv(&mut buf)).await {
            let at = clock.now();
            if let Err(why) = chain.handle_datagram(k, &buf[..len], at) {
                tracing::warn!(server = %specs[k].server, ?why, "Roughtime reply not used; dropped");
            }
        }
    }
}

/// Says what one chain event means to the sync.
#[allow(clippy::too_many_arguments)]
async fn report(
    first: usize,
    specs: &[RoughtimeSpec],
    socks: &[Option<UdpSocket>],
    e: RoughtimeEvent,
    cfg: ClientConfig,
    per_try: Duration,
    buf: &mut [u8],
    tx: &mpsc::Sender<ChainEvent>,
) {
    match e {
        RoughtimeEvent::Sample { server, sample } => {
            let _ = tx.send(ChainEvent::Done(first + server, sample)).await;
        }
        RoughtimeEvent::Failed { server, failure } => {
            let (verdict, why) = match failure {
                // Reported when the name failed.
                ChainFailure::NoAddress => return,
                ChainFailure::BelowFloor { .. } => (
                    Verdict::Falseticker,
                    format!("signed a time below the floor ({})", cfg.floor),
                ),
                ChainFailure::NoReply {
                    last_invalid: Some(e),
                } => (
                    Verdict::Invalid,
                    format!("reply failed verification (spoofed, corrupted or malformed): {e}"),
                ),
                ChainFailure::NoReply { last_invalid: None } => {
                    // A draft request names the server's key (SRV), and a server whose key
                    // differs stays silent. Ask once more without it: an answer now means the
                    // server is there and the configured key is not its key.
                    let spec = &specs[server];
                    let probe = match socks.get(server) {
                        Some(Some(sock)) if spec.version == Version::Draft => {
                            let nonce: [u8; 64] = std::array::from_fn(|_| rand::random());
                            probe_without_srv(sock, spec, &nonce, per_try, buf).await
                        }
                        _ => None,
                    };
                    match probe {
                        Some(why) => (Verdict::Invalid, why),
                        None => (Verdict::NoReply, format!("no reply to {TRIES} requests")),
                    }
                }
            };
            let _ = tx
                .send(ChainEvent::Failed(first + server, verdict, why))
                .await;
        }
        RoughtimeEvent::Violation(v) => {
            let why = format!(
                "{} signed {} ± {} after {} had signed {} ± {} (its nonce was derived from that response): one of the two lies",
                specs[v.later].server,
                v.later_time.midpoint(),
                trusttime_core::Human(v.later_time.radius()),
                specs[v.earlier].server,
                v.earlier_time.midpoint(),
                trusttime_core::Human(v.earlier_time.radius()),
            );
            tracing::warn!("Roughtime chain violation: {why}");
            let _ = tx.send(ChainEvent::ChainViolation(why)).await;
        }
        RoughtimeEvent::Resolve { .. } | RoughtimeEvent::RoundFinished { .. } => {}
    }
}

/// Resolves a server's name and opens a UDP socket connected to its first address.
async fn connect(
    spec: &RoughtimeSpec,
) -> Result<(SocketAddr, UdpSocket), (Option<SocketAddr>, String)> {
    let addr = tokio::net::lookup_host((spec.server.host.as_str(), spec.server.port))
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| (None, format!("DNS: no address for {}", spec.server.host)))?;
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| (Some(addr), format!("cannot open a UDP socket: {e}")))?;
    sock.connect(addr)
        .await
        .map_err(|e| (Some(addr), format!("cannot reach {addr}: {e}")))?;
    Ok((addr, sock))
}
