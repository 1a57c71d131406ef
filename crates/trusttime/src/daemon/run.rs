//! The run loop: a thin driver over the core's state machines.
//!
//! Each NTP and NTS source is a core [`NtpSource`] that lives for the whole run (an NTS
//! source with its session: keys and cookies), with one connected UDP socket kept across
//! polls (a new one only when the name resolves to another server, or a key exchange names
//! another one), read by the loop itself. The loop sleeps until the earliest source timeout, a
//! datagram on any source's socket or a task's message, feeds the
//! sources, sends what they ask, and after every event that changes an estimate runs the one
//! combination policy ([`combine`]: authenticated sources first) and hands the consensus to the
//! core's [`System`]. DNS (only when a source asks: first, hourly, after a Kiss-o'-Death, an
//! unusable answer or four silent polls), NTS-KE (when an NTS source has no keys or cookies
//! left, or the server refused its cookie) and HTTPS Date constraints run as tasks on demand
//! and report back over a channel. The Roughtime sources are one core [`RoughtimeChain`] for
//! the whole run (asked in order, each nonce derived from the previous response), with one
//! connected socket per server kept across polls, like NTP's; its proven violations go to the
//! status. The clock, the RTC, the disk and systemd are touched only in `effects`.

use std::net::SocketAddr;

use tokio::sync::mpsc;
use trusttime_core::roughtime_source::{
    ChainConfig, ChainFailure, RoughtimeChain, RoughtimeEvent, ServerKey, Violation,
};
use trusttime_core::select::{combine, default_min_agree, Combination, NoConsensus};
use trusttime_core::source::{
    coalesced_wake, pick_address, NtpSource, ResolveReason, SourceConfig, SourceEvent, RAND_LEN,
    RESOLVE_AFTER_SILENT as SILENT,
};

#[allow(unused_imports)]
use super::*;
use crate::transport::udp::{poll_datagram, Link, RECV_LEN};

/// DNS about once an hour per name at most (NTP Pool vendor guidance), else only when a
/// server fails: see [`trusttime_core::source`].
pub const RESOLVE_EVERY: SignedDuration = trusttime_core::source::RESOLVE_EVERY;

/// Polls in a row without a reply after which a name is resolved again for another server.
pub const RESOLVE_AFTER_SILENT: u8 = SILENT;

/// One configured source and what the status shows of it. For NTP and NTS the state lives in
/// `ntp` (the core's [`NtpSource`]), for Roughtime in the status's [`RoughtimeRun`]; the other
/// fields mirror it for observers.
#[derive(Debug)]
pub(super) struct SourceRun {
    pub(super) spec: ServerSpec,
    pub(super) kind: SourceKind,
    pub(super) roughtime: Option<crate::transport::roughtime::RoughtimeSpec>,
    pub(super) auth_failures: u32,
    pub(super) policy: PollPolicy,
    pub(super) next_due: MonoInstant,
    /// The source's best sample (from `filter`): offset interval, when, delay.
    pub(super) last: Option<(OffsetInterval, MonoInstant, SignedDuration)>,
    /// Samples kept outside a core source (tests; the core sources keep their own).
    pub(super) filter: ClockFilter,
    /// The address that gave the samples (and so `last`).
    pub(super) last_addr: Option<SocketAddr>,
    pub(super) reach: u8,
    pub(super) verdict: Verdict,
    pub(super) reason: String,
    pub(super) kod: Option<KissCode>,
    pub(super) requests: u64,
    /// How it took part in its last poll.
    pub(super) answer: crate::tally::Answer,
    /// Plain NTP: the source that lives across polls.
    pub(super) ntp: Option<NtpSource>,
    /// The server its socket is connected to (the socket itself is the driver's; NTP, NTS
    /// and Roughtime sources each have one).
    pub(super) addr: Option<SocketAddr>,
    /// A DNS lookup for this source is running.
    pub(super) resolving: bool,
    /// It has finished at least one poll (before that it counts as pending).
    pub(super) polled: bool,
    /// NTS: when the NTS-KE server's certificate chain was valid (the time obtained must lie
    /// inside).
    pub(super) nts_window: Option<TimeInterval>,
}

impl SourceRun {
    pub(super) fn new(spec: ServerSpec, kind: SourceKind, policy: PollPolicy) -> Self {
        SourceRun {
            spec,
            kind,
            roughtime: None,
            auth_failures: 0,
            policy,
            next_due: MonoInstant::ZERO,
            last: None,
            filter: ClockFilter::new(),
            last_addr: None,
            reach: 0,
            verdict: Verdict::NoReply,
            reason: "not asked yet".into(),
            kod: None,
            requests: 0,
            answer: crate::tally::Answer::Silent,
            ntp: None,
            addr: None,
            resolving: false,
            polled: false,
            nts_window: None,
        }
    }

    /// A plain NTP source given by name (asking the name again may give another server); an
    /// NTS source's server comes from its key exchange.
    fn is_name(&self) -> bool {
        self.kind == SourceKind::Ntp && self.spec.host.parse::<std::net::IpAddr>().is_err()
    }

    /// No address (DNS or NTS-KE failed, or no socket could be made): said in the status; the
    /// source tries again after its backed-off poll interval.
    fn lost_address(&mut self, now: MonoInstant, reason: String) {
        self.reason = reason;
        if let Some(n) = self.ntp.as_mut() {
            n.address_failed(now);
        }
        self.mirror(now);
    }

    /// Copies what observers see from the core source.
    fn mirror(&mut self, now: MonoInstant) {
        let Some(n) = &self.ntp else { return };
        self.policy = *n.policy();
        self.next_due = n.next_due();
        self.reach = n.reach();
        self.kod = n.kiss();
        self.requests = n.requests();
        self.last = n.estimate(now).map(|e| (e.offset, e.at, e.delay));
        self.last_addr = self.addr;
    }

    /// The offset interval this source contributes now, or whether it is still pending.
    fn outcome(&self, now: MonoInstant, drift: u32, max_age: SignedDuration) -> Outcome {
        let est = match &self.ntp {
            Some(n) => n.estimate(now).map(|e| e.offset),
            // Roughtime: the chain's estimate, mirrored at `now` (`mirror_roughtime`).
            None if self.kind == SourceKind::Roughtime => self.last.map(|(iv, _, _)| iv),
            None => self
                .filter
                .best(now, drift, max_age)
                .map(|b| b.aged(now, drift)),
        };
        match est {
            Some(iv) => Outcome::Reply(iv),
            None if !self.polled && self.policy.stopped_by().is_none() => Outcome::Pending,
            None => Outcome::Failed,
        }
    }

    pub(super) fn stepped(&mut self, by: SignedDuration) {
        if let Some(n) = self.ntp.as_mut() {
            n.stepped(by);
        }
        self.filter.stepped(by);
        if let Some((iv, _, _)) = self.last.as_mut() {
            iv.lo -= by;
            iv.hi -= by;
        }
    }

    pub(super) fn slewed(&mut self, by: SignedDuration) {
        if let Some(n) = self.ntp.as_mut() {
            n.slewed(by);
        }
        self.filter.slewed(by);
        if let Some((iv, _, _)) = self.last.as_mut() {
            if by.is_negative() {
                iv.hi -= by;
            } else {
                iv.lo -= by;
            }
        }
    }
}

/// What tasks report to the loop (datagrams are read by the loop itself).
pub(super) enum Msg {
    /// A DNS lookup for source `i` ended.
    Resolved {
        i: usize,
        result: Result<Vec<SocketAddr>, String>,
    },
    /// An NTS-KE exchange for source `i` ended: the session, the NTP server's addresses and
    /// the certificate's validity window.
    KeyExchanged {
        i: usize,
        result: Result<Box<KeyExchanged>, String>,
    },
    /// The HTTPS Date constraints were asked and combined.
    Constraint(crate::sync::ConstraintDecision),
}

/// What an NTS-KE task brings back.
pub(super) struct KeyExchanged {
    session: trusttime_core::nts::NtsSession,
    addrs: Vec<SocketAddr>,
    window: Option<TimeInterval>,
}

/// The loop's own state (the rest is in [`Status`], shared with observers).
pub(super) struct Driver {
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    /// Source `i`'s socket, once it has an address.
    pub(super) links: Vec<Option<Link>>,
    /// Where the next datagram is read into (one buffer for every socket).
    buf: Box<[u8; RECV_LEN]>,
    /// The socket read first next time, so that a busy one cannot starve the others.
    scan_from: usize,
    /// The poll jitter for the sources due at this wake (drawn once per wake, so sources
    /// that poll together stay together: see [`coalesced_wake`]).
    jitter: u64,
    burst_left: u8,
    /// The last HTTPS Date decision, and when (it is applied to plain NTP).
    constraint: (crate::sync::ConstraintDecision, MonoInstant),
    constraint_round: bool,
    /// When a round without a majority last asked every name again.
    no_majority_at: Option<MonoInstant>,
    /// Trust anchors for NTS-KE and HTTPS Date (empty: the built-in roots).
    nts_ca: Arc<Vec<Vec<u8>>>,
    /// Every source's server sent DENY or RSTR (said once).
    all_stopped: bool,
}

impl Driver {
    pub(super) fn new() -> Self {
        let (tx, rx) = mpsc::channel(256);
        Driver {
            tx,
            rx,
            links: Vec::new(),
            buf: Box::new([0; RECV_LEN]),
            scan_from: 0,
            jitter: 0,
            burst_left: 3,
            constraint: (crate::sync::ConstraintDecision::NotAsked, MonoInstant::ZERO),
            constraint_round: false,
            no_majority_at: None,
            nts_ca: Arc::default(),
            all_stopped: false,
        }
    }
}

/// Aborts the run loop's task when the daemon's future is dropped (the daemon stops).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Daemon {
    /// Gives every plain NTP source its core [`NtpSource`], due now (resuming at the poll
    /// interval saved before a restart). False if the status is unavailable.
    pub(super) fn prepare(&self, handle: &StatusHandle) -> bool {
        let cfg = &self.config.raw;
        let max_age = SignedDuration::from_secs(2 << cfg.daemon.max_poll.clamp(0, 17));
        let now = self.local.now();
        let Ok(mut s) = handle.0.lock() else {
            return false;
        };
        let floor = s.sys.floor();
        for r in &mut s.sources {
            if matches!(r.kind, SourceKind::Ntp | SourceKind::Nts) {
                let config = SourceConfig {
                    client: trusttime_core::ntp::ClientConfig {
                        floor,
                        ..trusttime_core::ntp::ClientConfig::default()
                    },
                    min_poll: cfg.daemon.min_poll,
                    max_poll: cfg.daemon.max_poll,
                    drift_ppm: cfg.clock.drift_ppm,
                    max_age,
                };
                let mut n = NtpSource::new(config, now.mono);
                n.resume_at(r.policy.poll_exponent());
                r.ntp = Some(n);
            }
            r.next_due = now.mono;
        }
        s.roughtime = roughtime_run(&mut s.sources, cfg, floor, max_age, now.mono);
        true
    }

    /// Runs the loop as its own task: the runtime's I/O driver then wakes it through the
    /// scheduler's queue rather than by unparking the runtime, as it must for the future
    /// `block_on` polls (an eventfd write and one more `epoll_wait` for every wake).
    pub(super) async fn run(self, handle: StatusHandle, nts_ca: Vec<Vec<u8>>) {
        let task = crate::task::spawn(self.run_loop(handle, nts_ca));
        let _abort = AbortOnDrop(task.abort_handle());
        if let Err(e) = task.await {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }

    #[allow(clippy::too_many_lines)]
    async fn run_loop(self, handle: StatusHandle, nts_ca: Vec<Vec<u8>>) {
        let delay = self.config.startup_delay;
        if !delay.is_zero() {
            let d = Duration::from_nanos(rand::random::<u64>() % (delay.as_nanos() as u64 + 1));
            tracing::info!(?d, "random start-up delay (NTP Pool guidance)");
            tokio::time::sleep(d).await;
        }
        let mut d = Driver::new();
        d.nts_ca = Arc::new(nts_ca);
        if !self.prepare(&handle) {
            return;
        }
        // A timer due this soon after the earliest one is waited for (1/64 of the shortest poll
        // interval: 4 ms at 0.25 s, 1 s at 64 s).
        let min_poll = self.config.raw.daemon.min_poll.clamp(-6, 17);
        let slack = SignedDuration::from_nanos(if min_poll >= 0 {
            (1_000_000_000_i64 << min_poll) / 64
        } else {
            (1_000_000_000_i64 >> -min_poll) / 64
        });
        // Whether observers have seen the latest change, and when they were last shown one.
        let mut dirty = true;
        let mut published = MonoInstant::ZERO;
        loop {
            let now = self.local.now();
            let mut changed = false;
            let all_stopped = {
                let Ok(s) = handle.0.lock() else { return };
                s.sources.iter().all(|r| r.policy.stopped_by().is_some())
            };
            if all_stopped != d.all_stopped {
                d.all_stopped = all_stopped;
                if all_stopped {
                    // Holding over; a name still asks hourly for another server behind it.
                    tracing::error!(
                        "every source's server stopped us (Kiss-o'-Death DENY/RSTR); holding over"
                    );
                }
            }
            {
                let Ok(mut s) = handle.0.lock() else { return };
                let floor = s.sys.floor();
                d.jitter = rand::random();
                for i in 0..s.sources.len() {
                    changed |= self.drive_ntp(&mut d, &mut s, i, now, floor);
                }
                changed |= self.drive_roughtime(&mut d, &mut s, now);
                self.start_round(&mut d, &mut s, now);
            }
            if changed {
                self.decide(&mut d, &handle);
                dirty = true;
            }
            let wake = {
                let Ok(mut s) = handle.0.lock() else { return };
                let roughtime = s.roughtime.as_ref().and_then(|rt| rt.chain.poll_timeout());
                let timeouts = s
                    .sources
                    .iter()
                    .filter_map(|r| r.ntp.as_ref().and_then(NtpSource::poll_timeout))
                    .chain(roughtime);
                let next = coalesced_wake(timeouts, slack);
                s.next_poll = s
                    .sources
                    .iter()
                    .filter(|r| r.policy.stopped_by().is_none())
                    .map(|r| r.next_due)
                    .min();
                next
            };
            // Observers see every change of a source's estimate, verdict or the trusted time
            // at once, and the rest (requests sent, next poll) within a second: a snapshot per
            // datagram sent was most of the loop's work at a short poll interval.
            // (Hand-set time and floor resets publish themselves.)
            let now = self.local.now();
            if dirty || now.mono.since(published) >= SignedDuration::from_secs(1) {
                handle.publish();
                dirty = false;
                published = now.mono;
            }
            let wait = wake.map_or(Duration::from_secs(3600), |n| {
                n.since(self.local.now().mono)
                    .to_std()
                    .unwrap_or(Duration::ZERO)
            });
            let (links, buf, scan_from) = (&d.links, &mut d.buf, &mut d.scan_from);
            let clock = &*self.local;
            let woke = tokio::select! {
                m = d.rx.recv() => m.map(Woke::Msg),
                (i, len, at) = std::future::poll_fn(|cx| {
                    poll_datagram(
                        links.len(),
                        |i| links[i].as_ref(),
                        &mut buf[..],
                        scan_from,
                        clock,
                        cx,
                    )
                }) => Some(Woke::Datagram(i, len, at)),
                () = tokio::time::sleep(wait.max(Duration::from_millis(1))) => None,
            };
            let changed = match woke {
                Some(Woke::Msg(m)) => self.handle_msg(&mut d, &handle, m),
                Some(Woke::Datagram(i, len, at)) if self.is_roughtime(i) => {
                    // (One reply per server and poll: a copy is cheap.)
                    let bytes = d.buf[..len].to_vec();
                    self.roughtime_datagram(&mut d, &handle, i, at, &bytes)
                }
                Some(Woke::Datagram(i, len, at)) => {
                    let bytes = &d.buf[..len];
                    self.on_datagram(&handle, i, at, bytes)
                }
                None => false,
            };
            if changed {
                self.decide(&mut d, &handle);
                dirty = true;
            }
        }
    }

    /// Feeds one plain NTP source its timeout, sends what it asks, takes its events. True when
    /// an estimate may have changed.
    fn drive_ntp(
        &self,
        d: &mut Driver,
        s: &mut Status,
        i: usize,
        now: trusttime_core::Now,
        floor: UnixTime,
    ) -> bool {
        let r = &mut s.sources[i];
        let Some(n) = r.ntp.as_mut() else {
            return false;
        };
        n.set_floor(floor);
        if n.poll_timeout().is_some_and(|t| t <= now.mono) {
            n.handle_timeout(now, d.jitter);
        }
        let mut rnd = [0u8; RAND_LEN];
        let mut buf = [0u8; 4096];
        loop {
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut rnd);
            // Read the clock right before the send: the request's transmit time starts the
            // measurement, and the sends before this one (other sources in this wake) took time.
            let now = self.local.now();
            let Some(len) = n.poll_transmit(now, &rnd, &mut buf) else {
                break;
            };
            if let Some(Some(l)) = d.links.get(i) {
                if let Err(e) = l.send(&buf[..len]) {
                    tracing::debug!(addr = %l.addr, error = %e, "send failed; counts as lost");
                }
            }
        }
        let changed = self.take_events(s, i, now);
        let r = &mut s.sources[i];
        if let (Some(why), false) = (
            r.ntp.as_ref().and_then(NtpSource::wants_address),
            r.resolving,
        ) {
            r.resolving = true;
            tracing::debug!(server = %r.spec, ?why, "resolving");
            if r.kind == SourceKind::Nts {
                // An NTS source's address (and keys) come from a key exchange.
                let bootstrap = {
                    let t = s.sys.trust().current(now.mono);
                    (t.provenance == Provenance::Authenticated
                        && s.sys.trust().state(now.mono) != TrustState::Unknown)
                        .then(|| t.interval.widen(SignedDuration::from_secs(2)))
                };
                let spec = s.sources[i].spec.clone();
                spawn_key_exchange(
                    i,
                    spec,
                    floor,
                    bootstrap,
                    Arc::clone(&d.nts_ca),
                    d.tx.clone(),
                );
                return changed;
            }
            spawn_lookup(i, r.spec.clone(), d.tx.clone());
        }
        changed
    }

    /// Takes a plain NTP source's events into the status words. True when an estimate may
    /// have changed (a sample, or a poll that ended).
    fn take_events(&self, s: &mut Status, i: usize, now: trusttime_core::Now) -> bool {
        let mut changed = false;
        let r = &mut s.sources[i];
        let Some(n) = r.ntp.as_mut() else {
            return false;
        };
        while let Some(e) = n.poll_event() {
            match e {
                SourceEvent::Sample(sample) => {
                    r.polled = true;
                    changed = true;
                    // NTS: the certificate that vouched for the keys must have been valid at
                    // the time obtained; if not, nothing this session gave is used.
                    #[cfg(feature = "tls")]
                    if let Some(window) = r.nts_window {
                        if let Err(why) =
                            trusttime_tls::confirm(window, &sample.interval_at_receipt())
                        {
                            n.forget_samples();
                            n.resolve_again();
                            r.verdict = Verdict::Invalid;
                            r.answer = crate::tally::Answer::Rejected(
                                "NTS-KE certificate not valid then".into(),
                            );
                            r.reason = why.to_string();
                            continue;
                        }
                    }
                    let _ = sample;
                    r.answer = crate::tally::Answer::Answered;
                }
                SourceEvent::Failed(f) => {
                    r.polled = true;
                    changed = true;
                    (r.verdict, r.answer) = match f {
                        trusttime_core::ntp::Failure::NoReply { .. } => {
                            (Verdict::NoReply, crate::tally::Answer::Silent)
                        }
                        trusttime_core::ntp::Failure::Rejected(rej) => (
                            if rej.is_falseticker() {
                                Verdict::Falseticker
                            } else {
                                Verdict::Invalid
                            },
                            crate::tally::Answer::rejected(&rej),
                        ),
                    };
                    r.reason = f.to_string();
                }
                SourceEvent::Kiss(k) => {
                    r.polled = true;
                    changed = true;
                    r.verdict = Verdict::KissOfDeath;
                    r.answer = crate::tally::Answer::rejected(
                        &trusttime_core::ntp::Reject::KissOfDeath(k),
                    );
                    r.reason = format!("Kiss-o'-Death {k}: {}", k.description());
                    if k.is_fatal() && r.spec.host.parse::<std::net::IpAddr>().is_err() {
                        r.reason
                            .push_str("; the name will be resolved again for another server");
                    }
                }
                SourceEvent::Resolve(why) if why != ResolveReason::Hourly => {
                    tracing::debug!(server = %r.spec, ?why, "name to be resolved again");
                }
                SourceEvent::NeedsKeyExchange => {
                    tracing::debug!(server = %r.spec, "NTS: a new key exchange is needed");
                    n.resolve_again();
                }
                SourceEvent::Resolve(_) => {}
            }
        }
        r.mirror(now.mono);
        changed
    }

    /// A datagram that arrived at `at` on source `i`'s socket. True when an estimate may have
    /// changed.
    pub(super) fn on_datagram(
        &self,
        handle: &StatusHandle,
        i: usize,
        at: trusttime_core::Now,
        bytes: &[u8],
    ) -> bool {
        let Ok(mut s) = handle.0.lock() else {
            return false;
        };
        // (A reply to a request sent before a step is moved by the source itself.)
        let Some(r) = s.sources.get_mut(i) else {
            return false;
        };
        let Some(n) = r.ntp.as_mut() else {
            return false;
        };
        match n.handle_datagram(at, bytes) {
            Ok(()) => {}
            Err(trusttime_core::source::Ignored::Nts(
                trusttime_core::nts::NtsError::NotRequested,
            )) => {}
            Err(trusttime_core::source::Ignored::Nts(e)) => {
                r.auth_failures += 1;
                tracing::warn!(server = %r.spec, reason = %e, "dropped a reply that failed authentication");
            }
            Err(why) => tracing::debug!(server = %r.spec, ?why, "ignored a datagram"),
        }
        self.take_events(&mut s, i, at)
    }

    /// Handles one message. True when an estimate may have changed.
    pub(super) fn handle_msg(&self, d: &mut Driver, handle: &StatusHandle, m: Msg) -> bool {
        let Ok(mut s) = handle.0.lock() else {
            return false;
        };
        match m {
            Msg::Resolved { i, result } => {
                let now = self.local.now();
                if s.sources.get(i).map(|r| r.kind) == Some(SourceKind::Roughtime) {
                    return self.roughtime_resolved(d, &mut s, i, result, now);
                }
                // Another name of this kind keeping an address: ask another one if there is.
                let taken = addresses_in_use(&s.sources, i, SourceKind::Ntp);
                let Some(r) = s.sources.get_mut(i) else {
                    return false;
                };
                r.resolving = false;
                let addrs = match result {
                    Ok(a) if !a.is_empty() => a,
                    Ok(_) | Err(_) => {
                        r.verdict = Verdict::NoReply;
                        r.answer = crate::tally::Answer::Silent;
                        r.polled = true;
                        let why = format!("DNS: no address for {}", r.spec.host);
                        r.lost_address(now.mono, why);
                        return true;
                    }
                };
                // Hourly: keep the server while the name still lists it; after a failure: another
                // one that no other source asks, where the name has one.
                let keep = r.addr;
                let why = r.ntp.as_ref().and_then(NtpSource::wants_address);
                let pick = pick_address(why, keep, &addrs, &taken).unwrap_or(addrs[0]);
                self.use_address(d, s, i, pick, now)
            }
            Msg::KeyExchanged { i, result } => {
                let now = self.local.now();
                let Some(r) = s.sources.get_mut(i) else {
                    return false;
                };
                r.resolving = false;
                let ke = match result {
                    Ok(k) if !k.addrs.is_empty() => k,
                    other => {
                        r.verdict = Verdict::Invalid;
                        r.answer = crate::tally::Answer::Rejected("NTS-KE failed".into());
                        r.polled = true;
                        r.lost_address(
                            now.mono,
                            match other {
                                Err(why) => why,
                                Ok(_) => "NTS-KE named an NTP server with no address".into(),
                            },
                        );
                        return true;
                    }
                };
                r.nts_window = ke.window;
                let pick = ke.addrs[0];
                if let Some(n) = r.ntp.as_mut() {
                    n.set_nts_session(ke.session);
                }
                self.use_address(d, s, i, pick, now)
            }
            Msg::Constraint(c) => {
                let now = self.local.now();
                d.constraint_round = false;
                s.constraint = Some(c.clone());
                d.constraint = (c, now.mono);
                true
            }
        }
    }

    /// Points source `i` at `addr` (a new socket unless it is the one in use) and lets it
    /// poll at once. True when an estimate may have changed.
    fn use_address(
        &self,
        d: &mut Driver,
        mut s: std::sync::MutexGuard<'_, Status>,
        i: usize,
        addr: SocketAddr,
        now: trusttime_core::Now,
    ) -> bool {
        let Some(r) = s.sources.get_mut(i) else {
            return false;
        };
        let same = r.addr == Some(addr);
        if !same {
            if let Err(why) = relink(d, r, i, addr) {
                r.addr = None;
                r.lost_address(now.mono, why);
                return true;
            }
        }
        if let Some(n) = r.ntp.as_mut() {
            n.address_resolved(now.mono, same);
        }
        r.mirror(now.mono);
        let floor = s.sys.floor();
        self.drive_ntp(d, &mut s, i, now, floor)
    }

    /// Asks the HTTPS Date constraints, when configured and stale, as a task.
    fn start_round(&self, d: &mut Driver, s: &mut Status, now: trusttime_core::Now) {
        // HTTPS Date constraints for plain NTP: asked again once per minimum poll interval.
        let https = !self.config.https_date.is_empty()
            && !d.constraint_round
            && (d.constraint.0 == crate::sync::ConstraintDecision::NotAsked
                || now.mono.since(d.constraint.1)
                    >= SignedDuration::from_secs(
                        1 << self.config.raw.daemon.min_poll.clamp(0, 17),
                    ));
        if !https {
            return;
        }
        let mut opts = SyncOptions::new(Vec::new());
        opts.ca = d.nts_ca.to_vec();
        opts.min_agree = Some(1);
        opts.wait_for_all = true;
        opts.timeout = Duration::from_secs(3);
        opts.client.floor = s.sys.floor();
        // Once the time rests on authenticated sources, HTTPS Date certificates are checked
        // against that interval (2 s wider, for the certificates' one-second resolution), not
        // [floor, floor + 5 years].
        let t = s.sys.trust().current(now.mono);
        if t.provenance == Provenance::Authenticated
            && s.sys.trust().state(now.mono) != TrustState::Unknown
        {
            opts.bootstrap = Some(t.interval.widen(SignedDuration::from_secs(2)));
        }
        d.constraint_round = true;
        opts.https_date.clone_from(&self.config.https_date);
        let (tx, local) = (d.tx.clone(), Arc::clone(&self.local));
        crate::task::spawn(async move {
            let (_, decision) = crate::sync::https_constraints(&opts, &local).await;
            let _ = tx.send(Msg::Constraint(decision)).await;
        });
    }

    /// Feeds the Roughtime chain its timeout, sends what it asks, takes its events. True when
    /// an estimate may have changed.
    fn drive_roughtime(&self, d: &mut Driver, s: &mut Status, now: trusttime_core::Now) -> bool {
        let floor = s.sys.floor();
        let Some(rt) = s.roughtime.as_mut() else {
            return false;
        };
        rt.chain.set_floor(floor);
        if rt.chain.poll_timeout().is_some_and(|t| t <= now.mono) {
            // (The wake's jitter, shared with the NTP sources served in it.)
            rt.chain.handle_timeout(now, d.jitter);
        }
        roughtime_transmit(&d.links, s, now);
        self.roughtime_events(d, s, now)
    }

    /// Whether source `i` is a Roughtime source (the sources are the configured ones, in
    /// order).
    fn is_roughtime(&self, i: usize) -> bool {
        self.config
            .sources
            .get(i)
            .is_some_and(|c| c.kind == SourceKind::Roughtime)
    }

    /// A datagram from Roughtime source `i`'s socket: the chain checks it, and the next
    /// request of the chain (its nonce derived from this response) leaves at once.
    fn roughtime_datagram(
        &self,
        d: &mut Driver,
        handle: &StatusHandle,
        i: usize,
        at: trusttime_core::Now,
        bytes: &[u8],
    ) -> bool {
        let Ok(mut guard) = handle.0.lock() else {
            return false;
        };
        let s = &mut *guard;
        let Some(rt) = s.roughtime.as_mut() else {
            return false;
        };
        let Some(k) = rt.sources.iter().position(|&j| j == i) else {
            return false;
        };
        match rt.chain.handle_datagram(k, bytes, at) {
            Ok(()) => {}
            Err(trusttime_core::roughtime_source::Ignored::Invalid(e)) => {
                let r = &mut s.sources[i];
                r.auth_failures += 1;
                tracing::warn!(server = %r.spec, reason = %e, "dropped a Roughtime reply that failed verification");
            }
            Err(why) => tracing::debug!(server = %s.sources[i].spec, ?why, "ignored a datagram"),
        }
        roughtime_transmit(&d.links, s, self.local.now());
        self.roughtime_events(d, s, self.local.now())
    }

    /// A DNS answer for Roughtime source `i`: a socket to the address picked (the one in use
    /// when the name still gives it), or the server sits the round out.
    fn roughtime_resolved(
        &self,
        d: &mut Driver,
        s: &mut Status,
        i: usize,
        result: Result<Vec<SocketAddr>, String>,
        now: trusttime_core::Now,
    ) -> bool {
        let Some(k) = s
            .roughtime
            .as_ref()
            .and_then(|rt| rt.sources.iter().position(|&j| j == i))
        else {
            return false;
        };
        let taken = addresses_in_use(&s.sources, i, SourceKind::Roughtime);
        let why = s
            .roughtime
            .as_ref()
            .and_then(|rt| rt.chain.wants_address(k));
        let r = &mut s.sources[i];
        r.resolving = false;
        let picked = match result {
            Ok(addrs) if !addrs.is_empty() => {
                let keep = r.addr;
                let pick = pick_address(why, keep, &addrs, &taken).unwrap_or(addrs[0]);
                let same = keep == Some(pick);
                if same {
                    Ok(true)
                } else {
                    relink(d, r, i, pick).map(|()| false)
                }
            }
            Ok(_) => Err(format!("DNS: no address for {}", r.spec.host)),
            Err(why) => Err(why),
        };
        let Some(rt) = s.roughtime.as_mut() else {
            return false;
        };
        match picked {
            Ok(same) => rt.chain.address_resolved(k, now.mono, same),
            Err(why) => {
                rt.chain.address_failed(k, now.mono);
                let r = &mut s.sources[i];
                r.addr = None;
                r.polled = true;
                r.verdict = Verdict::NoReply;
                r.answer = crate::tally::Answer::Silent;
                r.reason = why;
            }
        }
        self.drive_roughtime(d, s, now);
        true
    }

    /// Takes the chain's events into the status words, its violations into the status, and
    /// starts the DNS lookups it asks for. True when an estimate may have changed.
    fn roughtime_events(&self, d: &mut Driver, s: &mut Status, now: trusttime_core::Now) -> bool {
        let floor = s.sys.floor();
        let Some(rt) = s.roughtime.as_mut() else {
            return false;
        };
        let mut changed = false;
        while let Some(e) = rt.chain.poll_event() {
            let source = |k: usize| rt.sources.get(k).copied();
            match e {
                RoughtimeEvent::Sample { server, .. } => {
                    if let Some(r) = source(server).and_then(|i| s.sources.get_mut(i)) {
                        r.polled = true;
                        r.answer = crate::tally::Answer::Answered;
                        changed = true;
                    }
                }
                RoughtimeEvent::Failed { server, failure } => {
                    let Some(r) = source(server).and_then(|i| s.sources.get_mut(i)) else {
                        continue;
                    };
                    r.polled = true;
                    changed = true;
                    (r.verdict, r.answer, r.reason) = match failure {
                        ChainFailure::NoReply { last_invalid: None } => (
                            Verdict::NoReply,
                            crate::tally::Answer::Silent,
                            format!(
                                "no reply to {} requests{}",
                                trusttime_core::roughtime_source::TRIES,
                                // A draft server drops a request that names another key.
                                if r.roughtime.as_ref().map(|x| x.version)
                                    == Some(trusttime_core::roughtime::Version::Draft)
                                {
                                    format!(
                                        " (a draft server stays silent when the key is not its own: `trusttime sync --roughtime {}=KEY` tells)",
                                        r.spec
                                    )
                                } else {
                                    String::new()
                                }
                            ),
                        ),
                        ChainFailure::NoReply {
                            last_invalid: Some(e),
                        } => (
                            Verdict::Invalid,
                            crate::tally::Answer::Rejected("failed verification".into()),
                            format!(
                                "reply failed verification (spoofed, corrupted or malformed): {e}"
                            ),
                        ),
                        ChainFailure::BelowFloor { signed } => (
                            Verdict::Falseticker,
                            crate::tally::Answer::Rejected("below the floor".into()),
                            format!("signed {signed}, below the floor ({floor})"),
                        ),
                        ChainFailure::NoAddress => (
                            Verdict::NoReply,
                            crate::tally::Answer::Silent,
                            format!("DNS: no address for {}", r.spec.host),
                        ),
                    };
                }
                RoughtimeEvent::Violation(v) => {
                    let seen = chain_violation(&s.sources, &rt.sources, &v, now.wall);
                    let text = seen.text.clone();
                    if record_violation(&mut s.chain_violations, seen) {
                        tracing::warn!(violation = %text, "Roughtime chain: a server is proven to lie");
                    } else {
                        tracing::debug!(violation = %text, "Roughtime chain: the same servers again");
                    }
                    changed = true;
                }
                RoughtimeEvent::Resolve { server, why } => {
                    tracing::debug!(server, ?why, "Roughtime: name to be resolved");
                }
                RoughtimeEvent::RoundFinished { answered } => {
                    tracing::debug!(answered, "Roughtime: round finished");
                }
            }
        }
        // DNS only when the chain asks for it.
        for (k, &i) in rt.sources.iter().enumerate() {
            let Some(r) = s.sources.get_mut(i) else {
                continue;
            };
            if rt.chain.wants_address(k).is_none() || r.resolving {
                continue;
            }
            r.resolving = true;
            spawn_lookup(i, r.spec.clone(), d.tx.clone());
        }
        mirror_roughtime(s, now.mono);
        changed
    }

    /// Runs the combination over every source's current estimate and hands a consensus to
    /// the core.
    #[allow(clippy::too_many_lines)]
    fn decide(&self, d: &mut Driver, handle: &StatusHandle) {
        let cfg = &self.config.raw;
        let drift = cfg.clock.drift_ppm;
        let max_age = SignedDuration::from_secs(2 << cfg.daemon.max_poll.clamp(0, 17));
        let now = self.local.now();
        let Ok(mut s) = handle.0.lock() else { return };
        for r in &mut s.sources {
            r.mirror(now.mono);
        }
        mirror_roughtime(&mut s, now.mono);
        let mut outcomes: Vec<Outcome> = s
            .sources
            .iter()
            .map(|r| r.outcome(now.mono, drift, max_age))
            .collect();
        // One server, one vote: the newest sample of one address counts.
        for (i, o) in outcomes.iter_mut().enumerate() {
            if superseded(&s.sources, i) {
                *o = Outcome::Failed;
            }
        }
        // HTTPS Date constraints bound plain NTP (aged by the drift bound since asked).
        let (constraint, asked) = (&d.constraint.0, d.constraint.1);
        for (o, r) in outcomes.iter_mut().zip(s.sources.iter_mut()) {
            if r.kind.is_authenticated() {
                continue;
            }
            let Outcome::Reply(iv) = *o else { continue };
            match constraint {
                // The first constraints are still being asked: plain NTP waits for them.
                crate::sync::ConstraintDecision::NotAsked if !self.config.https_date.is_empty() => {
                    *o = Outcome::Pending;
                }
                crate::sync::ConstraintDecision::Refused(why) => {
                    *o = Outcome::Failed;
                    r.verdict = Verdict::Unconfirmed;
                    r.reason = format!("not used: {why}");
                }
                crate::sync::ConstraintDecision::Applied { interval, .. } => {
                    let w = now.mono.since(asked).drift_bound(drift);
                    if iv.hi < interval.lo - w || interval.hi + w < iv.lo {
                        *o = Outcome::Failed;
                        r.verdict = Verdict::Falseticker;
                        r.answer = crate::tally::Answer::Rejected(
                            "outside the HTTPS Date constraint".into(),
                        );
                        r.reason = format!(
                            "offset {:+.6} s is outside the HTTPS Date constraint ({:+.3} s .. {:+.3} s)",
                            iv.midpoint().as_secs_f64(),
                            interval.lo.as_secs_f64(),
                            interval.hi.as_secs_f64()
                        );
                    }
                }
                _ => {}
            }
        }
        let auth: Vec<bool> = s
            .sources
            .iter()
            .map(|r| r.kind.is_authenticated())
            .collect();
        let n_auth = auth.iter().filter(|&&a| a).count();
        let min_for = |n: usize| cfg.clock.min_agree.unwrap_or_else(|| default_min_agree(n));
        let combined = combine(
            &outcomes,
            &auth,
            min_for(n_auth),
            min_for(s.sources.len() - n_auth),
        );
        let round = crate::tally::Tally::of(s.sources.iter().map(|r| &r.answer)).to_string();
        s.last_round = Some(round.clone());
        match combined {
            Combination::Wait => {}
            Combination::Agreed {
                selection: sel,
                authenticated,
                downgraded,
            } => {
                apply_verdicts(&mut s.sources, &sel, &outcomes, authenticated);
                // A pool name whose server is outside the consensus asks for another.
                for r in &mut s.sources {
                    if r.verdict == Verdict::Falseticker && r.is_name() {
                        if let Some(n) = r.ntp.as_mut() {
                            n.resolve_again();
                        }
                    }
                }
                s.disagreeing = s
                    .sources
                    .iter()
                    .filter(|r| {
                        authenticated
                            && !r.kind.is_authenticated()
                            && r.verdict == Verdict::Falseticker
                    })
                    .map(|r| r.spec.to_string())
                    .collect();
                if downgraded {
                    tracing::debug!("authenticated sources did not agree; plain NTP decided");
                }
                // The core decides the step or slew, the RTC write, persistence and readiness;
                // `carry_out` does them.
                if s.sys.on_consensus(now, sel.interval, authenticated) {
                    tracing::warn!(
                        offset = ?sel.offset,
                        authenticated,
                        "the consensus contradicts the time trusted before; following it"
                    );
                }
                s.agreed = sel.count;
                s.last_sync_wall = Some(now.wall);
                d.burst_left = 0;
                drop(s);
                carry_out(handle);
            }
            Combination::Failed(why) => {
                let fresh = d.no_majority_at.map_or(true, |t| {
                    now.mono.since(t)
                        >= SignedDuration::from_secs(1 << cfg.daemon.min_poll.clamp(0, 17))
                });
                if !fresh && !matches!(why, NoConsensus::Disagreement { .. }) {
                    return;
                }
                if fresh {
                    tracing::warn!(%why, answers = %round, "no consensus this round");
                    // What each source said, to see afterwards why they did not agree.
                    for (r, o) in s.sources.iter().zip(&outcomes) {
                        if let Outcome::Reply(iv) = o {
                            tracing::debug!(
                                server = %r.spec,
                                lo_s = iv.lo.as_secs_f64(),
                                hi_s = iv.hi.as_secs_f64(),
                                "no consensus: this source's offset interval"
                            );
                        }
                    }
                    d.no_majority_at = Some(now.mono);
                }
                for (r, o) in s.sources.iter_mut().zip(&outcomes) {
                    if matches!(o, Outcome::Reply(_)) {
                        r.verdict = Verdict::Unconfirmed;
                        r.reason = format!("no majority: {why}");
                    }
                    // No majority: a name whose server failed asks for another one, and every
                    // name does when the answers disagree (which one lies is not known); a
                    // name whose server answered keeps it (moving it would drop its samples).
                    if fresh && r.is_name() {
                        if let Some(n) = r.ntp.as_mut() {
                            n.no_consensus(matches!(why, NoConsensus::Disagreement { .. }));
                        }
                    }
                }
                if d.burst_left > 0 && fresh {
                    // Unsynchronised: a short burst (every 2 s, three times), then the
                    // normal schedule.
                    d.burst_left -= 1;
                    let soon = now.mono + SignedDuration::from_secs(2);
                    for r in s
                        .sources
                        .iter_mut()
                        .filter(|r| r.policy.stopped_by().is_none())
                    {
                        match r.ntp.as_mut() {
                            Some(n) => n.poll_by(soon),
                            None => r.next_due = r.next_due.min(soon),
                        }
                    }
                    if let Some(rt) = s.roughtime.as_mut() {
                        rt.chain.poll_by(soon);
                    }
                }
            }
        }
    }
}

/// The Roughtime sources: one core chain for the whole run, and which source each of its
/// servers is.
#[derive(Debug)]
pub(super) struct RoughtimeRun {
    pub(super) chain: RoughtimeChain,
    /// The source index of each of the chain's servers, in the chain's order.
    pub(super) sources: Vec<usize>,
}

/// How long the daemon waits for one Roughtime reply (there are three tries).
const ROUGHTIME_REPLY_TIMEOUT: SignedDuration = SignedDuration::from_secs(1);

/// The chain of the configured Roughtime sources (in the configured order), due now, resuming
/// at the first one's saved poll interval; `None` without Roughtime sources. Sources past the
/// chain's capacity are not asked (said in their status).
fn roughtime_run(
    sources: &mut [SourceRun],
    cfg: &crate::config::Config,
    floor: UnixTime,
    max_age: SignedDuration,
    now: MonoInstant,
) -> Option<RoughtimeRun> {
    use trusttime_core::roughtime_source::MAX_SERVERS;
    let mut keys = Vec::new();
    let mut indices = Vec::new();
    for (i, r) in sources.iter_mut().enumerate() {
        let Some(rt) = &r.roughtime else { continue };
        if keys.len() == MAX_SERVERS {
            r.reason = format!("not asked: a Roughtime chain takes at most {MAX_SERVERS} servers");
            continue;
        }
        keys.push(ServerKey {
            version: rt.version,
            key: rt.key,
        });
        indices.push(i);
    }
    let config = ChainConfig {
        min_poll: cfg.daemon.min_poll,
        max_poll: cfg.daemon.max_poll,
        drift_ppm: cfg.clock.drift_ppm,
        max_age,
        reply_timeout: ROUGHTIME_REPLY_TIMEOUT,
        floor,
    };
    let mut chain = RoughtimeChain::new(config, &keys, now).ok()?;
    if let Some(&first) = indices.first() {
        chain.resume_at(sources[first].policy.poll_exponent());
    }
    Some(RoughtimeRun {
        chain,
        sources: indices,
    })
}

/// Sends what the Roughtime chain asks, each request on its server's socket.
fn roughtime_transmit(links: &[Option<Link>], s: &mut Status, now: trusttime_core::Now) {
    use trusttime_core::roughtime_source::RAND_LEN as RT_RAND_LEN;
    let Some(rt) = s.roughtime.as_mut() else {
        return;
    };
    let mut rnd = [0u8; RT_RAND_LEN];
    let mut buf = [0u8; trusttime_core::roughtime::REQUEST_LEN];
    loop {
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut rnd);
        let Some((k, len)) = rt.chain.poll_transmit(now, &rnd, &mut buf) else {
            break;
        };
        if let Some(Some(l)) = rt.sources.get(k).and_then(|&i| links.get(i)) {
            if let Err(e) = l.send(&buf[..len]) {
                tracing::debug!(addr = %l.addr, error = %e, "send failed; counts as lost");
            }
        }
    }
}

/// Copies what observers see of each Roughtime source from the chain, its estimate at `now`
/// included (which the combination then reads).
fn mirror_roughtime(s: &mut Status, now: MonoInstant) {
    let Some(rt) = s.roughtime.as_ref() else {
        return;
    };
    for (k, &i) in rt.sources.iter().enumerate() {
        let Some(r) = s.sources.get_mut(i) else {
            continue;
        };
        r.policy = *rt.chain.policy();
        r.next_due = rt.chain.next_due();
        r.reach = rt.chain.reach(k);
        r.requests = rt.chain.requests(k);
        r.last = rt.chain.estimate(k, now).map(|e| (e.offset, e.at, e.delay));
        r.last_addr = r.addr;
    }
}

/// A proven violation as `status` shows it.
fn chain_violation(
    sources: &[SourceRun],
    chain: &[usize],
    v: &Violation,
    at: UnixTime,
) -> crate::json::ChainViolation {
    let name = |k: usize| {
        chain
            .get(k)
            .and_then(|&i| sources.get(i))
            .map_or_else(|| format!("server {k}"), |r| r.spec.to_string())
    };
    let signed = |k: usize, t: TimeInterval| crate::json::SignedTime {
        server: name(k),
        midpoint: t.midpoint().into(),
        radius_s: t.radius().as_secs_f64(),
    };
    let (earlier, later) = (
        signed(v.earlier, v.earlier_time),
        signed(v.later, v.later_time),
    );
    let text = format!(
        "{} signed {} ± {} after {} had signed {} ± {} (its nonce was derived from that response): one of the two lies",
        later.server,
        v.later_time.midpoint(),
        trusttime_core::Human(v.later_time.radius()),
        earlier.server,
        v.earlier_time.midpoint(),
        trusttime_core::Human(v.earlier_time.radius()),
    );
    crate::json::ChainViolation {
        at: at.into(),
        earlier,
        later,
        text,
    }
}

/// Resolves source `i`'s name as a task (an address is used as it is).
fn spawn_lookup(i: usize, spec: ServerSpec, tx: mpsc::Sender<Msg>) {
    crate::task::spawn(async move {
        let result = match spec.host.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(vec![SocketAddr::new(ip, spec.port)]),
            Err(_) => tokio::net::lookup_host((spec.host.as_str(), spec.port))
                .await
                .map(Iterator::collect)
                .map_err(|e| format!("DNS: {e}")),
        };
        let _ = tx.send(Msg::Resolved { i, result }).await;
    });
}

/// Runs NTS-KE for source `i` as a task: the key exchange's certificate is judged over the
/// trusted interval once there is one (`bootstrap`), else over [floor, floor + horizon]; the
/// NTP server it names is resolved; the result goes back to the loop.
fn spawn_key_exchange(
    i: usize,
    spec: ServerSpec,
    floor: UnixTime,
    bootstrap: Option<TimeInterval>,
    ca: Arc<Vec<Vec<u8>>>,
    tx: mpsc::Sender<Msg>,
) {
    crate::task::spawn(async move {
        let result = key_exchange(&spec, floor, bootstrap, &ca)
            .await
            .map(Box::new);
        let _ = tx.send(Msg::KeyExchanged { i, result }).await;
    });
}

#[cfg(feature = "tls")]
async fn key_exchange(
    spec: &ServerSpec,
    floor: UnixTime,
    bootstrap: Option<TimeInterval>,
    ca: &[Vec<u8>],
) -> Result<KeyExchanged, String> {
    use trusttime_tls::{bootstrap_interval, BootstrapVerifier, DEFAULT_HORIZON};
    let interval = bootstrap.unwrap_or_else(|| bootstrap_interval(floor, DEFAULT_HORIZON));
    let roots = ca
        .iter()
        .cloned()
        .map(rustls_pki_types::CertificateDer::from)
        .collect();
    let verifier = Arc::new(
        BootstrapVerifier::new(roots, interval).map_err(|e| format!("trust anchors: {e}"))?,
    );
    let ke = crate::transport::nts::key_exchange(spec, verifier, Duration::from_secs(3)).await?;
    tracing::debug!(server = %spec, ntp = %ke.ntp, cookies = ke.session.cookies(), "NTS-KE done");
    let addrs = match ke.ntp.host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, ke.ntp.port)],
        Err(_) => tokio::net::lookup_host((ke.ntp.host.as_str(), ke.ntp.port))
            .await
            .map(Iterator::collect)
            .map_err(|e| format!("DNS for the NTS server {}: {e}", ke.ntp))?,
    };
    Ok(KeyExchanged {
        session: ke.session,
        addrs,
        window: ke.window,
    })
}

#[cfg(not(feature = "tls"))]
async fn key_exchange(
    _: &ServerSpec,
    _: UnixTime,
    _: Option<TimeInterval>,
    _: &[Vec<u8>],
) -> Result<KeyExchanged, String> {
    Err("this build has no TLS (feature `tls`), which NTS needs".into())
}

/// What woke the run loop.
enum Woke {
    Msg(Msg),
    /// A datagram of `len` bytes on source `i`'s socket, in the driver's buffer, and when it
    /// arrived.
    Datagram(usize, usize, trusttime_core::Now),
}

/// Gives source `r` (index `i`) a new socket connected to `addr`; the old one is closed.
fn relink(d: &mut Driver, r: &mut SourceRun, i: usize, addr: SocketAddr) -> Result<(), String> {
    let link = Link::connect(addr).map_err(|e| format!("cannot reach {addr}: {e}"))?;
    if d.links.len() <= i {
        d.links.resize_with(i + 1, || None);
    }
    d.links[i] = Some(link);
    r.addr = Some(addr);
    Ok(())
}

/// Keeps a proven Roughtime violation for `status`: the newest 20, and a pair of servers that
/// contradict each other round after round is one entry with the newest proof (not 20 copies
/// that push the others out). True when the pair is new (worth a warning in the log).
pub(super) fn record_violation(
    list: &mut std::collections::VecDeque<crate::json::ChainViolation>,
    seen: crate::json::ChainViolation,
) -> bool {
    let same = |l: &crate::json::ChainViolation| {
        l.earlier.server == seen.earlier.server && l.later.server == seen.later.server
    };
    let new = match list.iter().position(same) {
        Some(k) => {
            list.remove(k);
            false
        }
        None => true,
    };
    list.push_back(seen);
    while list.len() > 20 {
        list.pop_front();
    }
    new
}

/// The addresses that sources of `kind` other than `i` are using: a name that resolves to
/// several addresses gives source `i` one that no other source of its kind asks already.
fn addresses_in_use(sources: &[SourceRun], i: usize, kind: SourceKind) -> Vec<SocketAddr> {
    sources
        .iter()
        .enumerate()
        .filter(|(j, o)| *j != i && o.kind == kind)
        .filter_map(|(_, o)| o.addr)
        .collect()
}

/// One server, one vote: two names can lead to the same server (a pool), and a lying server
/// would vote twice. Only the newest sample from one address counts (the first source on a
/// tie).
pub(super) fn superseded(sources: &[SourceRun], i: usize) -> bool {
    let (Some(addr), Some((_, at, _))) = (sources[i].last_addr, sources[i].last) else {
        return false;
    };
    sources.iter().enumerate().any(|(j, r)| {
        j != i
            && r.kind == sources[i].kind
            && r.last_addr == Some(addr)
            && r.last
                .is_some_and(|(_, at_j, _)| at_j > at || (at_j == at && j < i))
    })
}

pub(super) fn apply_verdicts(
    sources: &mut [SourceRun],
    sel: &Selection,
    outcomes: &[Outcome],
    authenticated: bool,
) {
    for (i, (r, o)) in sources.iter_mut().zip(outcomes).enumerate() {
        if let Outcome::Reply(iv) = o {
            (r.verdict, r.reason) = if r.kind.is_authenticated() == authenticated {
                crate::sync::verdict_of(i, *iv, Some(sel))
            } else {
                crate::sync::overlap_verdict(*iv, sel, authenticated)
            };
        }
    }
}
