//! One consensus sync: ask every server in parallel, once each (with retries on loss), and
//! stop as soon as the decision is certain.
//!
//! `sync` builds the daemon's state machines and drives them until they decide: each NTP or
//! NTS server is a core [`NtpSource`] with one connected UDP socket (the daemon's contract:
//! `poll_timeout`, `handle_timeout`, `poll_transmit`, `handle_datagram`, `poll_event`), the
//! estimates are combined by the core's [`combine`] (authenticated sources first, one vote per
//! server address), and a consensus is handed to an observe-only core [`System`], whose
//! trusted interval and provenance are the result. Roughtime servers are asked as a chain and
//! HTTPS Date URLs as constraints.
//!
//! ```no_run
//! # async fn f() {
//! use std::sync::Arc;
//! use trusttime::clock::SystemClock;
//! use trusttime::sync::{sync, SyncOptions};
//!
//! let opts = SyncOptions::new(vec![
//!     "0.pool.ntp.org".parse().unwrap(),
//!     "1.pool.ntp.org".parse().unwrap(),
//!     "2.pool.ntp.org".parse().unwrap(),
//! ]);
//! let report = sync(&opts, Arc::new(SystemClock)).await;
//! match &report.result {
//!     Ok(c) => println!("time is {} (local clock off by {})", c.interval, c.offset),
//!     Err(why) => eprintln!("no consensus: {why}"),
//! }
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use trusttime_core::ntp::{ClientConfig, Failure, KissCode, Reject, Sample};
use trusttime_core::nts::{NtsError, NtsSession};
use trusttime_core::select::{
    combine, default_min_agree, Combination, NoConsensus, OffsetInterval, Outcome, Selection,
    MAX_SOURCES,
};
use trusttime_core::source::{Ignored, NtpSource, SourceConfig, SourceEvent, RAND_LEN};
use trusttime_core::system::{Action, System, SystemConfig};
use trusttime_core::trust::TrustConfig;
use trusttime_core::{Now, Provenance, SignedDuration, TimeInterval, UnixTime};

use crate::clock::LocalClock;
use crate::tally::{Answer, Tally};
use crate::transport::roughtime::ChainEvent;
use crate::transport::udp::{poll_datagram, Link, RECV_LEN};

pub use crate::spec::{
    pool_servers, BadServerSpec, ServerSpec, SourceKind, Verdict, NTP_PORT, NTS_KE_PORT,
};

/// What to ask and how long to wait.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Plain NTP servers, each asked once (with retries on loss).
    pub servers: Vec<ServerSpec>,
    /// NTS-KE servers (`HOST[:PORT]`, port 4460 by default); the NTP server and port come
    /// from the NTS-KE exchange.
    pub nts: Vec<ServerSpec>,
    /// Roughtime servers with their long-term keys.
    pub roughtime: Vec<crate::spec::RoughtimeSpec>,
    /// HTTPS URLs whose `Date` header constrains every answer (OpenNTPD's constraints):
    /// a source outside the constraint is a falseticker.
    pub https_date: Vec<String>,
    /// Extra trust anchors (DER) for NTS-KE and HTTPS Date, beside the Mozilla roots.
    pub ca: Vec<Vec<u8>>,
    /// The interval certificates are checked against before the time is known; `None` means
    /// `[floor, floor + 5 years]`.
    pub bootstrap: Option<TimeInterval>,
    /// Sources that must agree; `None` means [`default_min_agree`].
    pub min_agree: Option<u8>,
    /// Give up on sources that have not answered after this long.
    pub timeout: Duration,
    /// Per-server exchange settings (floor, root distance limit, retries).
    pub client: ClientConfig,
    /// Wait for every server (until `timeout`) instead of deciding as soon as the outcome is
    /// certain: slower, but every server gets a verdict (the demo uses this).
    pub wait_for_all: bool,
}

impl SyncOptions {
    /// Defaults for these servers: 5 s timeout, default client settings.
    #[must_use]
    pub fn new(servers: Vec<ServerSpec>) -> Self {
        SyncOptions {
            servers,
            nts: Vec::new(),
            roughtime: Vec::new(),
            https_date: Vec::new(),
            ca: Vec::new(),
            bootstrap: None,
            min_agree: None,
            timeout: Duration::from_secs(5),
            client: ClientConfig::default(),
            wait_for_all: false,
        }
    }
    /// The number of plain NTP sources that must agree (when they decide).
    #[must_use]
    pub fn effective_min_agree(&self) -> u8 {
        self.min_agree
            .unwrap_or_else(|| default_min_agree(self.servers.len()))
    }
    /// The number of authenticated sources that must agree (when there are any).
    #[must_use]
    pub fn effective_min_agree_authenticated(&self) -> u8 {
        let n = self.nts.len() + self.roughtime.len();
        self.min_agree.unwrap_or_else(|| default_min_agree(n))
    }
    /// Drops sources listed more than once (same kind, same host and port): one server is
    /// one vote however often it is written down. Returns a warning per dropped entry.
    pub fn dedup(&mut self) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut keep = |kind: &str, spec: &ServerSpec| {
            let fresh = seen.insert((kind.to_owned(), spec.to_string()));
            if !fresh {
                warnings.push(format!(
                    "{kind} server {spec} is listed more than once; it counts once"
                ));
            }
            fresh
        };
        self.servers.retain(|s| keep("ntp", s));
        self.nts.retain(|s| keep("nts", s));
        self.roughtime.retain(|r| keep("roughtime", &r.server));
        warnings
    }
    /// Every source, in report order: NTP, then NTS, then Roughtime.
    #[must_use]
    pub fn source_count(&self) -> usize {
        self.servers.len() + self.nts.len() + self.roughtime.len()
    }
}

/// What happened with one server.
#[derive(Clone, Debug)]
pub struct SourceReport {
    /// As configured.
    pub server: ServerSpec,
    /// Its kind.
    pub kind: SourceKind,
    /// Replies dropped because they failed authentication.
    pub auth_failures: u32,
    /// The address asked, once resolved.
    pub address: Option<SocketAddr>,
    /// The measurement, when it answered validly.
    pub sample: Option<Sample>,
    /// The verdict.
    pub verdict: Verdict,
    /// Why, in words.
    pub reason: String,
    /// The Kiss-o'-Death code, when it sent one.
    pub kiss: Option<KissCode>,
    /// Answered, rejected (why) or silent.
    pub answer: Answer,
}

/// A consensus result.
#[derive(Clone, Copy, Debug)]
pub struct Consensus {
    /// True time minus local time at `at`: the centre of `interval`, so `offset ± radius` is
    /// exactly `interval`.
    pub offset: SignedDuration,
    /// The offsets the agreeing sources allow.
    pub offset_interval: OffsetInterval,
    /// Where true time lay at `at`, clamped to the floor.
    pub interval: TimeInterval,
    /// The local clocks when the decision was made.
    pub at: Now,
    /// How many sources agreed.
    pub agreed: u8,
    /// True when the consensus rests on authenticated sources (NTS, Roughtime).
    pub authenticated: bool,
    /// Where the trusted interval comes from, as the `System` that decided says (`ntp` or
    /// `authenticated`).
    pub provenance: Provenance,
}

/// The outcome of [`sync`].
#[derive(Clone, Debug)]
pub struct SyncReport {
    /// One entry per configured server, in order.
    pub sources: Vec<SourceReport>,
    /// The consensus, or why there is none.
    pub result: Result<Consensus, NoConsensus>,
    /// Sources that had to agree.
    pub min_agree: u8,
    /// From start to decision.
    pub elapsed: Duration,
    /// Signed evidence from the Roughtime chain that a server lies: a later response in the
    /// chain signs a time that ends before an earlier one begins.
    pub chain_violations: Vec<String>,
    /// The HTTPS Date constraints asked for: URL and the offset interval it allows, or why
    /// it gave none.
    pub constraints: Vec<(String, Result<OffsetInterval, String>)>,
    /// What was made of the constraints together.
    pub constraint: ConstraintDecision,
    /// What certificates (NTS-KE, HTTPS Date) were checked against before the time was known:
    /// `floor` (`[floor, floor + 5 years]`), `roughtime` (the Roughtime consensus), or `given`.
    pub bootstrap_from: &'static str,
}

impl SyncReport {
    /// How the sources took part: answered, rejected (why), silent.
    #[must_use]
    pub fn tally(&self) -> Tally {
        Tally::of(self.sources.iter().map(|s| &s.answer))
    }

    /// Why there is no consensus, with the tally; `None` when there is one.
    #[must_use]
    pub fn failure(&self) -> Option<String> {
        self.result
            .as_ref()
            .err()
            .map(|why| format!("{why} ({})", self.tally()))
    }

    /// The HTTPS Date constraints that were asked for but gave none (`url: why`).
    #[must_use]
    pub fn failed_constraints(&self) -> Vec<String> {
        self.constraints
            .iter()
            .filter_map(|(url, c)| c.as_ref().err().map(|e| format!("{url}: {e}")))
            .collect()
    }
}

/// How the HTTPS Date constraints were combined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConstraintDecision {
    /// None were configured.
    NotAsked,
    /// None gave a usable answer: no constraint applied.
    NoneAnswered,
    /// The constraints of a strict majority agree: their common interval was applied; the
    /// others (URLs) were outvoted.
    Applied {
        /// The offsets they allow together.
        interval: OffsetInterval,
        /// How many agree.
        agreeing: usize,
        /// How many answered.
        answered: usize,
        /// URLs outside the agreeing group.
        outvoted: Vec<String>,
    },
    /// They contradict each other with no majority: plain NTP is refused this round (an
    /// attacker who controls one web server must not make the result less safe).
    Refused(String),
}

impl ConstraintDecision {
    /// A word for the JSON.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            ConstraintDecision::NotAsked => "not_asked",
            ConstraintDecision::NoneAnswered => "none_answered",
            ConstraintDecision::Applied { .. } => "applied",
            ConstraintDecision::Refused(_) => "refused",
        }
    }
}

/// What the tasks of one sync tell its loop (datagrams are read by the loop itself).
enum Msg {
    /// The DNS lookup of source `i`'s NTP server ended.
    Resolved {
        i: usize,
        result: Result<Vec<SocketAddr>, String>,
    },
    /// The NTS-KE exchange of source `i` ended.
    KeyExchanged {
        i: usize,
        result: Result<Box<KeyExchanged>, String>,
    },
    /// The Roughtime chain reported.
    Chain(ChainEvent),
}

/// What an NTS-KE task brings back.
struct KeyExchanged {
    session: NtsSession,
    /// The NTP server the key exchange named.
    ntp: ServerSpec,
    /// When the NTS-KE server's certificate chain was valid.
    window: Option<TimeInterval>,
}

/// An NTP or NTS source of one sync: the core's [`NtpSource`], driven with the daemon's
/// contract over one connected UDP socket.
struct Driven {
    source: NtpSource,
    /// Where its requests go: the server as given (NTP), or as the key exchange named it (NTS).
    target: Option<ServerSpec>,
    link: Option<Link>,
    /// NTS: when the key exchange's certificate was valid (the time obtained must lie inside).
    window: Option<TimeInterval>,
    /// NTS: the server refused our cookie (a NAK echoing our request).
    nak: bool,
    /// Its poll ended (a sample or a failure): a sync asks each server once.
    done: bool,
}

/// The drift bound `sync` assumes between a sample and the decision (the trust machine's).
const DRIFT_PPM: u32 = 50;

/// The settings of a sync's sources: `client` for the exchange; the poll interval does not
/// matter (each source is polled once).
fn source_config(client: ClientConfig) -> SourceConfig {
    SourceConfig {
        client,
        min_poll: 6,
        max_poll: 10,
        drift_ppm: DRIFT_PPM,
        max_age: SignedDuration::from_secs(2048),
    }
}

/// The `System` that takes a sync's decision: only the floor is known before, and it observes
/// (it never steps, slews or writes an RTC: `sync` does not change the clock).
fn observer(floor: UnixTime) -> System {
    System::new(SystemConfig {
        trust: TrustConfig {
            drift_ppm: DRIFT_PPM,
            ..TrustConfig::new(floor)
        },
        allow_manual_force: false,
        has_rtc: false,
        discipline: false,
        step_threshold: SignedDuration::from_millis(128),
    })
}

/// One sync in progress: every source's report and outcome, the core sources, the `System`.
struct Run {
    clock: Arc<dyn LocalClock>,
    tx: mpsc::Sender<Msg>,
    tasks: JoinSet<()>,
    sources: Vec<SourceReport>,
    outcomes: Vec<Outcome>,
    auth_mask: Vec<bool>,
    /// Sources that resolved to the address of an earlier source of the same kind: one server,
    /// one vote.
    duplicate: Vec<bool>,
    /// NTP and NTS sources (`None` for Roughtime).
    driven: Vec<Option<Driven>>,
    chain_violations: Vec<String>,
    /// The HTTPS Date constraint applied to plain NTP, or why plain NTP is refused.
    constraint: Option<OffsetInterval>,
    refused: Option<String>,
    min_auth: u8,
    min_plain: u8,
    wait_for_all: bool,
    system: System,
}

impl Run {
    /// Feeds source `i` its timeout (when due), sends what it asks, takes its events. True
    /// when an outcome may have changed.
    fn drive(&mut self, i: usize) -> bool {
        let Some(d) = self.driven[i].as_mut() else {
            return false;
        };
        if d.done || d.link.is_none() || self.duplicate[i] {
            return false;
        }
        let now = self.clock.now();
        if d.source.poll_timeout().is_some_and(|t| t <= now.mono) {
            d.source.handle_timeout(now, rand::random());
        }
        let mut rnd = [0u8; RAND_LEN];
        let mut buf = [0u8; 4096];
        loop {
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut rnd);
            // Read the clock right before the send: the request's transmit time is the
            // measurement's start, and the sends before this one took time.
            let now = self.clock.now();
            let Some(len) = d.source.poll_transmit(now, &rnd, &mut buf) else {
                break;
            };
            if let Some(l) = &d.link {
                if let Err(e) = l.send(&buf[..len]) {
                    tracing::debug!(server = %self.sources[i].server, error = %e, "send failed; counts as lost");
                }
            }
        }
        self.take_events(i)
    }

    /// Takes source `i`'s events into its report and outcome. True when one changed.
    fn take_events(&mut self, i: usize) -> bool {
        let Some(d) = self.driven[i].as_mut() else {
            return false;
        };
        let mut events = Vec::new();
        while let Some(e) = d.source.poll_event() {
            events.push(e);
        }
        let (window, nak) = (d.window, d.nak);
        let mut changed = false;
        for e in events {
            if self.driven[i].as_ref().map_or(true, |d| d.done) {
                break;
            }
            let outcome = match e {
                SourceEvent::Sample(sample) => {
                    // NTS: the certificate that vouched for the keys must have been valid at
                    // the time obtained.
                    match confirm_window(window, &sample) {
                        Ok(()) => Ok(sample),
                        Err(why) => {
                            self.fail(i, Verdict::Invalid, why);
                            self.finish(i);
                            changed = true;
                            continue;
                        }
                    }
                }
                SourceEvent::Failed(f) => Err(f),
                SourceEvent::Kiss(k) => Err(Failure::Rejected(Reject::KissOfDeath(k))),
                SourceEvent::NeedsKeyExchange => {
                    let e = if nak {
                        NtsError::Nak
                    } else {
                        NtsError::NoCookies
                    };
                    self.fail(i, Verdict::Invalid, format!("NTS: {e}"));
                    self.finish(i);
                    changed = true;
                    continue;
                }
                // A sync asks each server once: another address is the daemon's business.
                SourceEvent::Resolve(_) => continue,
            };
            self.finish(i);
            self.done(i, outcome);
            changed = true;
        }
        changed
    }

    /// Source `i`'s one poll ended: it is not driven again, and its socket goes.
    fn finish(&mut self, i: usize) {
        if let Some(d) = self.driven[i].as_mut() {
            d.done = true;
            d.link = None;
        }
    }

    /// Source `i` failed in a way NTP has no word for (NTS-KE, certificate, authentication).
    fn fail(&mut self, i: usize, verdict: Verdict, why: String) {
        self.outcomes[i] = Outcome::Failed;
        self.sources[i].verdict = verdict;
        self.sources[i].answer = match verdict {
            Verdict::NoReply => Answer::Silent,
            _ => Answer::Rejected(short_why(&why)),
        };
        self.sources[i].reason = why;
    }

    /// Source `i` could not be asked (DNS, socket): it stays silent.
    fn unreachable(&mut self, i: usize, why: String) {
        self.finish(i);
        self.outcomes[i] = Outcome::Failed;
        self.sources[i].reason = why;
    }

    /// Source `i`'s exchange ended with a sample or a failure.
    fn done(&mut self, i: usize, result: Result<Sample, Failure>) {
        let s = &mut self.sources[i];
        match result {
            Ok(sample) if self.refused.is_some() && !s.kind.is_authenticated() => {
                self.outcomes[i] = Outcome::Failed;
                s.verdict = Verdict::Unconfirmed;
                s.reason = format!(
                    "offset {:+.6} s not used: {}",
                    sample.offset.as_secs_f64(),
                    self.refused.as_deref().unwrap_or_default()
                );
            }
            Ok(sample) => {
                let iv = OffsetInterval::around(sample.offset, sample.error_bound());
                match self.constraint {
                    Some(c) if !s.kind.is_authenticated() && (iv.hi < c.lo || c.hi < iv.lo) => {
                        self.outcomes[i] = Outcome::Failed;
                        s.verdict = Verdict::Falseticker;
                        s.answer = Answer::Rejected("outside the HTTPS Date constraint".into());
                        s.reason = format!(
                            "offset {:+.6} s is outside the HTTPS Date constraint ({:+.3} s .. {:+.3} s)",
                            sample.offset.as_secs_f64(),
                            c.lo.as_secs_f64(),
                            c.hi.as_secs_f64()
                        );
                    }
                    _ => {
                        self.outcomes[i] = Outcome::Reply(iv);
                        s.sample = Some(sample);
                        s.answer = Answer::Answered;
                    }
                }
            }
            Err(f) => {
                self.outcomes[i] = Outcome::Failed;
                let (verdict, kiss) = match f {
                    Failure::NoReply { .. } => (Verdict::NoReply, None),
                    Failure::Rejected(Reject::KissOfDeath(k)) => (Verdict::KissOfDeath, Some(k)),
                    Failure::Rejected(r) if r.is_falseticker() => (Verdict::Falseticker, None),
                    Failure::Rejected(_) => (Verdict::Invalid, None),
                };
                s.verdict = verdict;
                s.kiss = kiss;
                s.answer = match f {
                    Failure::NoReply { .. } => Answer::Silent,
                    Failure::Rejected(r) => Answer::rejected(&r),
                };
                s.reason = f.to_string();
            }
        }
    }

    /// Source `i` asks `addr`. True when that makes it a duplicate of an earlier source of
    /// the same kind (it is then not asked: one server, one vote).
    fn resolved(&mut self, i: usize, addr: SocketAddr) -> bool {
        self.sources[i].address = Some(addr);
        let twin = (0..self.sources.len()).find(|&j| {
            j != i
                && !self.duplicate[j]
                && self.sources[j].kind == self.sources[i].kind
                && self.sources[j].address == Some(addr)
        });
        let Some(j) = twin else { return false };
        self.finish(i);
        self.duplicate[i] = true;
        self.outcomes[i] = Outcome::Failed;
        self.sources[i].verdict = Verdict::Duplicate;
        self.sources[i].reason = format!(
            "same address {addr} as {}: one server counts once",
            self.sources[j].server
        );
        true
    }

    /// Resolves source `i`'s NTP server: at once for an address, else as a task.
    fn resolve(&mut self, i: usize) {
        let Some(spec) = self.driven[i].as_ref().and_then(|d| d.target.clone()) else {
            return;
        };
        if let Ok(ip) = spec.host.parse::<std::net::IpAddr>() {
            self.use_address(i, SocketAddr::new(ip, spec.port));
            return;
        }
        let tx = self.tx.clone();
        crate::task::spawn_in(&mut self.tasks, async move {
            let result = tokio::net::lookup_host((spec.host.as_str(), spec.port))
                .await
                .map(Iterator::collect::<Vec<_>>)
                .map_err(|e| format!("DNS: {e}"))
                .and_then(|a| {
                    if a.is_empty() {
                        Err(format!("DNS: no address for {}", spec.host))
                    } else {
                        Ok(a)
                    }
                });
            let _ = tx.send(Msg::Resolved { i, result }).await;
        });
    }

    /// Points source `i` at `addr` (the first address of its name, as always: a second name
    /// for the same server is then a duplicate) with a connected socket and its receive task.
    fn use_address(&mut self, i: usize, addr: SocketAddr) {
        if self.resolved(i, addr) {
            return;
        }
        let link = match Link::connect(addr) {
            Ok(l) => l,
            Err(e) => return self.unreachable(i, format!("cannot reach {addr}: {e}")),
        };
        let now = self.clock.now();
        if let Some(d) = self.driven[i].as_mut() {
            d.link = Some(link);
            d.source.address_resolved(now.mono, false);
        }
    }

    /// A datagram that arrived at `at` on source `i`'s socket. True when an outcome may have
    /// changed.
    fn on_datagram(&mut self, i: usize, at: Now, bytes: &[u8]) -> bool {
        if self.duplicate[i] {
            return false;
        }
        let Some(d) = self.driven[i].as_mut() else {
            return false;
        };
        if d.done {
            return false;
        }
        match d.source.handle_datagram(at, bytes) {
            Ok(()) | Err(Ignored::Nts(NtsError::NotRequested)) => {}
            Err(Ignored::Nts(NtsError::Nak)) => d.nak = true,
            Err(Ignored::Nts(e)) => {
                self.sources[i].auth_failures += 1;
                tracing::warn!(server = %self.sources[i].server, reason = %e, "dropped a reply that failed authentication");
            }
            Err(Ignored::Reject(r)) => {
                tracing::debug!(server = %self.sources[i].server, reason = %r, "ignored datagram");
            }
        }
        self.take_events(i)
    }

    /// Handles one message. True when an outcome may have changed.
    fn handle(&mut self, m: Msg) -> bool {
        match m {
            Msg::Resolved { i, result } => {
                if self.duplicate[i] || self.driven[i].as_ref().map_or(true, |d| d.done) {
                    return false;
                }
                match result {
                    Ok(addrs) => match addrs.first() {
                        Some(&a) => self.use_address(i, a),
                        None => self.unreachable(i, "DNS: no address".into()),
                    },
                    Err(why) => self.unreachable(i, why),
                }
                true
            }
            Msg::KeyExchanged { i, result } => {
                let Some(d) = self.driven[i].as_mut() else {
                    return false;
                };
                match result {
                    Ok(ke) => {
                        d.source.set_nts_session(ke.session);
                        d.target = Some(ke.ntp);
                        d.window = ke.window;
                        self.resolve(i);
                    }
                    Err(why) => {
                        self.finish(i);
                        self.fail(i, Verdict::Invalid, why);
                    }
                }
                true
            }
            Msg::Chain(ev) => self.on_chain(ev),
        }
    }

    /// A Roughtime chain event. True when an outcome may have changed.
    fn on_chain(&mut self, ev: ChainEvent) -> bool {
        let index = match &ev {
            ChainEvent::Resolved(i, _) | ChainEvent::Failed(i, _, _) | ChainEvent::Done(i, _) => {
                Some(*i)
            }
            ChainEvent::ChainViolation(_) => None,
        };
        if index.is_some_and(|i| i >= self.sources.len() || self.duplicate[i]) {
            return false;
        }
        match ev {
            ChainEvent::Resolved(i, a) => {
                self.resolved(i, a);
            }
            ChainEvent::Failed(i, verdict, why) => self.fail(i, verdict, why),
            ChainEvent::Done(i, sample) => self.done(i, Ok(sample)),
            ChainEvent::ChainViolation(why) => self.chain_violations.push(why),
        }
        true
    }

    /// The deadline passed: what is still pending will not answer.
    fn time_out(&mut self, timeout: Duration) {
        for i in 0..self.sources.len() {
            if self.outcomes[i] == Outcome::Pending {
                self.finish(i);
                self.outcomes[i] = Outcome::Failed;
                self.sources[i].reason = format!("no reply within {timeout:?}");
            }
        }
    }

    /// The one combination policy (authenticated sources first, shared with the daemon) over
    /// every source's current estimate; a consensus goes to the `System`, which decides.
    /// `None`: keep waiting.
    fn decide(&mut self, now: Now) -> Option<Result<(Selection, bool), NoConsensus>> {
        for (o, d) in self.outcomes.iter_mut().zip(&self.driven) {
            if let (Outcome::Reply(_), Some(d)) = (*o, d) {
                if let Some(e) = d.source.estimate(now.mono) {
                    *o = Outcome::Reply(e.offset);
                }
            }
        }
        if self.wait_for_all && self.outcomes.contains(&Outcome::Pending) {
            return None;
        }
        match combine(
            &self.outcomes,
            &self.auth_mask,
            self.min_auth,
            self.min_plain,
        ) {
            Combination::Wait => None,
            Combination::Agreed {
                selection,
                authenticated,
                ..
            } => {
                self.system
                    .on_consensus(now, selection.interval, authenticated);
                let mut ready = false;
                while let Some(a) = self.system.poll_action() {
                    // Observe-only: nothing but Persist and NotifyReady is queued, and `sync`
                    // keeps nothing.
                    ready |= a == Action::NotifyReady;
                }
                ready.then_some(Ok((selection, authenticated)))
            }
            Combination::Failed(e) => Some(Err(e)),
        }
    }

    /// Drives every source until the `System` decides, no consensus is possible any more, or
    /// `deadline` passes.
    async fn until_decided(
        &mut self,
        rx: &mut mpsc::Receiver<Msg>,
        deadline: tokio::time::Instant,
        timeout: Duration,
        at: &mut Now,
    ) -> Result<(Selection, bool), NoConsensus> {
        let mut changed = true;
        let mut buf = vec![0u8; RECV_LEN];
        let mut scan_from = 0;
        loop {
            for i in 0..self.sources.len() {
                changed |= self.drive(i);
            }
            if changed {
                changed = false;
                *at = self.clock.now();
                if let Some(d) = self.decide(*at) {
                    return d;
                }
            }
            let now = self.clock.now();
            let wake = self
                .driven
                .iter()
                .flatten()
                .filter(|d| !d.done && d.link.is_some())
                .filter_map(|d| d.source.poll_timeout())
                .min()
                .map(|t| {
                    tokio::time::Instant::now() + t.since(now.mono).to_std().unwrap_or_default()
                });
            let until = wake.map_or(deadline, |w| w.min(deadline));
            let (driven, clock) = (&self.driven, &*self.clock);
            let datagram = tokio::select! {
                m = rx.recv() => {
                    if let Some(m) = m {
                        changed |= self.handle(m);
                    }
                    None
                },
                d = std::future::poll_fn(|cx| poll_datagram(
                    driven.len(),
                    |i| driven[i].as_ref().and_then(|d| d.link.as_ref()),
                    &mut buf,
                    &mut scan_from,
                    clock,
                    cx,
                )) => Some(d),
                () = tokio::time::sleep_until(until) => None,
            };
            if let Some((i, len, at)) = datagram {
                changed |= self.on_datagram(i, at, &buf[..len]);
            }
            if tokio::time::Instant::now() >= deadline {
                self.time_out(timeout);
                *at = self.clock.now();
                // With nothing pending the combination is final; a consensus always makes the
                // System decide.
                return self.decide(*at).unwrap_or(Err(NoConsensus::BadSourceCount));
            }
        }
    }
}

/// Checks that the NTS-KE certificate was valid at the time a sample says it is.
#[cfg(feature = "tls")]
fn confirm_window(window: Option<TimeInterval>, sample: &Sample) -> Result<(), String> {
    match window {
        Some(w) => {
            trusttime_tls::confirm(w, &sample.interval_at_receipt()).map_err(|e| e.to_string())
        }
        None => Ok(()),
    }
}

#[cfg(not(feature = "tls"))]
fn confirm_window(_: Option<TimeInterval>, _: &Sample) -> Result<(), String> {
    Ok(())
}

/// Runs one consensus exchange. Never fails as a whole: per-source problems are in the report.
///
/// NTP and NTS sources are core [`NtpSource`]s driven as the daemon drives them (one connected
/// UDP socket each; DNS and NTS-KE as tasks); Roughtime runs as a chain and HTTPS Date as
/// constraints, as before. After every change the estimates are combined by
/// [`combine`] (authenticated sources first; one vote per server address) and a consensus goes
/// to an observe-only core [`System`] (the floor as `opts.client.floor`): its trusted interval
/// and provenance are what the report says. The sync stops as soon as the System trusts a
/// time, or no consensus is possible any more (the early decision: a majority that pending
/// sources cannot overturn decides after one round trip), or `opts.timeout` passes.
#[allow(clippy::too_many_lines)]
pub async fn sync(opts: &SyncOptions, clock: Arc<dyn LocalClock>) -> SyncReport {
    let started = std::time::Instant::now();
    let n = opts.source_count();
    let specs: Vec<(SourceKind, ServerSpec)> = opts
        .servers
        .iter()
        .map(|s| (SourceKind::Ntp, s.clone()))
        .chain(opts.nts.iter().map(|s| (SourceKind::Nts, s.clone())))
        .chain(
            opts.roughtime
                .iter()
                .map(|r| (SourceKind::Roughtime, r.server.clone())),
        )
        .collect();
    let auth_mask: Vec<bool> = specs.iter().map(|s| s.0.is_authenticated()).collect();
    let (min_auth, min_plain) = (
        opts.effective_min_agree_authenticated(),
        opts.effective_min_agree(),
    );
    let mut min_agree = if !auth_mask.contains(&true) {
        min_plain
    } else {
        min_auth
    };
    let sources: Vec<SourceReport> = specs
        .iter()
        .map(|(kind, s)| SourceReport {
            server: s.clone(),
            kind: *kind,
            auth_failures: 0,
            address: None,
            sample: None,
            verdict: Verdict::NoReply,
            reason: "no reply before the majority decided".into(),
            kiss: None,
            answer: Answer::Silent,
        })
        .collect();
    if n == 0 || n > MAX_SOURCES {
        return SyncReport {
            sources,
            result: Err(NoConsensus::BadSourceCount),
            min_agree,
            elapsed: started.elapsed(),
            chain_violations: Vec::new(),
            constraints: Vec::new(),
            constraint: ConstraintDecision::NotAsked,
            bootstrap_from: "floor",
        };
    }
    let (tx, mut rx) = mpsc::channel(4 * n + 64);
    let mut run = Run {
        clock: Arc::clone(&clock),
        tx,
        tasks: JoinSet::new(),
        outcomes: vec![Outcome::Pending; n],
        duplicate: vec![false; n],
        driven: specs.iter().map(|_| None).collect(),
        sources,
        auth_mask,
        chain_violations: Vec::new(),
        constraint: None,
        refused: None,
        min_auth,
        min_plain,
        wait_for_all: opts.wait_for_all,
        system: observer(opts.client.floor),
    };
    // Roughtime needs no certificate: when it is configured beside sources that do (NTS-KE,
    // HTTPS Date), ask it first and check their certificates against its interval instead of
    // the wide [floor, floor + horizon].
    let needs_certs = !opts.nts.is_empty() || !opts.https_date.is_empty();
    let mut bootstrap_from = "floor";
    let mut effective = None;
    let roughtime_first = !opts.roughtime.is_empty() && needs_certs && opts.bootstrap.is_none();
    if roughtime_first {
        let first = opts.servers.len() + opts.nts.len();
        let (ptx, mut prx) = mpsc::channel(4 * opts.roughtime.len() + 4);
        crate::transport::roughtime::run_chain(
            first,
            opts.roughtime.clone(),
            opts.client,
            Arc::clone(&clock),
            opts.timeout,
            ptx,
        )
        .await;
        let mut rough = Vec::new();
        while let Ok(ev) = prx.try_recv() {
            if let ChainEvent::Done(_, s) = &ev {
                rough.push(Outcome::Reply(OffsetInterval::around(
                    s.offset,
                    s.error_bound(),
                )));
            }
            run.on_chain(ev);
        }
        if let Ok(sel) = trusttime_core::select::select(&rough, default_min_agree(rough.len())) {
            let now = clock.now().wall;
            let margin = SignedDuration::from_secs(60);
            let mut o = opts.clone();
            o.bootstrap = Some(TimeInterval {
                earliest: now + sel.interval.lo - margin,
                latest: now + sel.interval.hi + margin,
            });
            effective = Some(o);
            bootstrap_from = "roughtime";
        }
    }
    let opts = effective.as_ref().unwrap_or(opts);
    if opts.bootstrap.is_some() && bootstrap_from == "floor" {
        bootstrap_from = "given";
    }
    let (constraints, constraint_decision) = if opts.https_date.is_empty() {
        (Vec::new(), ConstraintDecision::NotAsked)
    } else {
        https_constraints(opts, &clock).await
    };
    run.constraint = match &constraint_decision {
        ConstraintDecision::Applied { interval, .. } => Some(*interval),
        _ => None,
    };
    run.refused = match &constraint_decision {
        ConstraintDecision::Refused(why) => Some(why.clone()),
        _ => None,
    };
    let first_poll = clock.now().mono;
    for (i, (kind, spec)) in specs.iter().enumerate() {
        let source = NtpSource::new(source_config(opts.client), first_poll);
        let driven = |target| Driven {
            source,
            target,
            link: None,
            window: None,
            nak: false,
            done: false,
        };
        match kind {
            SourceKind::Ntp => {
                run.driven[i] = Some(driven(Some(spec.clone())));
                run.resolve(i);
            }
            SourceKind::Nts => {
                run.driven[i] = Some(driven(None));
                let (tx, spec, setup) = (run.tx.clone(), spec.clone(), nts_setup(opts));
                crate::task::spawn_in(&mut run.tasks, async move {
                    let result = key_exchange(&spec, setup).await.map(Box::new);
                    let _ = tx.send(Msg::KeyExchanged { i, result }).await;
                });
            }
            // Roughtime sources run as one chain, started below.
            SourceKind::Roughtime => {}
        }
    }
    if !opts.roughtime.is_empty() && !roughtime_first {
        let first = opts.servers.len() + opts.nts.len();
        let (tx, clock, specs, cfg) = (
            run.tx.clone(),
            Arc::clone(&clock),
            opts.roughtime.clone(),
            opts.client,
        );
        let timeout = opts.timeout;
        crate::task::spawn_in(&mut run.tasks, async move {
            let (ctx, mut crx) = mpsc::channel::<ChainEvent>(4 * specs.len() + 4);
            let forward = async {
                while let Some(ev) = crx.recv().await {
                    let _ = tx.send(Msg::Chain(ev)).await;
                }
            };
            tokio::join!(
                crate::transport::roughtime::run_chain(first, specs, cfg, clock, timeout, ctx),
                forward
            );
        });
    }
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let mut at = clock.now();
    let decision = run
        .until_decided(&mut rx, deadline, opts.timeout, &mut at)
        .await;
    run.tasks.abort_all();
    for d in run.driven.iter_mut().flatten() {
        d.link = None;
    }
    if let Ok((_, false)) = decision {
        min_agree = min_plain;
    }
    // The System's trusted interval and provenance are the result.
    let result = decision.as_ref().map(|&(sel, _)| {
        let trusted = run.system.trust().current(at.mono);
        let interval = trusted.interval;
        Consensus {
            authenticated: trusted.provenance == Provenance::Authenticated,
            provenance: trusted.provenance,
            // The centre of the interval reported (after the floor clamp).
            offset: interval.midpoint() - at.wall,
            offset_interval: sel.interval,
            interval,
            at,
            agreed: sel.count,
        }
    });
    let result = result.map_err(|e| *e);
    let mut sources = run.sources;
    for (i, s) in sources.iter_mut().enumerate() {
        if s.sample.is_none() {
            continue;
        }
        // The interval the source contributed to the combination.
        let Outcome::Reply(iv) = run.outcomes[i] else {
            continue;
        };
        let (sel, authenticated) = match &decision {
            Ok((sel, a)) => (Some(sel), *a),
            Err(_) => (None, false),
        };
        // Sources of the group that decided are judged by membership; the others by whether
        // they overlap the decision (an unauthenticated source that disagrees with the
        // authenticated consensus is a falseticker, never agreed).
        // (The selection's bits index every source: `combine` masks the other group.)
        let in_deciding_group = s.kind.is_authenticated() == authenticated;
        (s.verdict, s.reason) = match sel {
            Some(sel) if in_deciding_group => verdict_of(i, iv, Some(sel)),
            Some(sel) => overlap_verdict(iv, sel, authenticated),
            None => verdict_of(i, iv, None),
        };
    }
    SyncReport {
        sources,
        result,
        min_agree,
        elapsed: started.elapsed(),
        chain_violations: run.chain_violations,
        constraints,
        constraint: constraint_decision,
        bootstrap_from,
    }
}

/// What an NTS source needs for its key exchange.
#[derive(Clone, Debug)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
struct NtsSetup {
    ca: Vec<Vec<u8>>,
    bootstrap: Option<TimeInterval>,
    floor: UnixTime,
    timeout: Duration,
}

fn nts_setup(opts: &SyncOptions) -> NtsSetup {
    NtsSetup {
        ca: opts.ca.clone(),
        bootstrap: opts.bootstrap,
        floor: opts.client.floor,
        timeout: opts.timeout,
    }
}

/// NTS-KE for one source: its certificate is judged over the bootstrap interval (or
/// `[floor, floor + 5 years]`).
#[cfg(feature = "tls")]
async fn key_exchange(spec: &ServerSpec, setup: NtsSetup) -> Result<KeyExchanged, String> {
    use trusttime_tls::{bootstrap_interval, BootstrapVerifier, DEFAULT_HORIZON};
    let interval = setup
        .bootstrap
        .unwrap_or_else(|| bootstrap_interval(setup.floor, DEFAULT_HORIZON));
    let roots = setup
        .ca
        .into_iter()
        .map(rustls_pki_types::CertificateDer::from)
        .collect();
    let verifier = Arc::new(
        BootstrapVerifier::new(roots, interval).map_err(|e| format!("trust anchors: {e}"))?,
    );
    let ke = crate::transport::nts::key_exchange(spec, verifier, setup.timeout).await?;
    tracing::debug!(server = %spec, ntp = %ke.ntp, cookies = ke.session.cookies(), "NTS-KE done");
    Ok(KeyExchanged {
        session: ke.session,
        ntp: ke.ntp,
        window: ke.window,
    })
}

#[cfg(not(feature = "tls"))]
async fn key_exchange(_: &ServerSpec, _: NtsSetup) -> Result<KeyExchanged, String> {
    Err("this build has no TLS (feature `tls`), which NTS needs".into())
}

/// Asks every HTTPS Date URL at once; returns each result and the intersection of the good
/// ones (`None` when there are none, or when they contradict each other).
pub(crate) async fn https_constraints(
    opts: &SyncOptions,
    clock: &Arc<dyn LocalClock>,
) -> (
    Vec<(String, Result<OffsetInterval, String>)>,
    ConstraintDecision,
) {
    let mut results = Vec::new();
    #[cfg(feature = "tls")]
    {
        use trusttime_tls::{bootstrap_interval, BootstrapVerifier, DEFAULT_HORIZON};
        let interval = opts
            .bootstrap
            .unwrap_or_else(|| bootstrap_interval(opts.client.floor, DEFAULT_HORIZON));
        let roots: Vec<_> = opts
            .ca
            .iter()
            .cloned()
            .map(rustls_pki_types::CertificateDer::from)
            .collect();
        let mut set = JoinSet::new();
        for (k, url) in opts.https_date.iter().enumerate() {
            let (url, clock, roots, timeout) =
                (url.clone(), Arc::clone(clock), roots.clone(), opts.timeout);
            crate::task::spawn_in(&mut set, async move {
                let r = async {
                    let spec: crate::spec::HttpsDateSpec = url.parse()?;
                    let verifier = Arc::new(
                        BootstrapVerifier::new(roots, interval)
                            .map_err(|e| format!("trust anchors: {e}"))?,
                    );
                    crate::transport::https_date::query(&spec, verifier, &clock, timeout)
                        .await
                        .map(|c| c.offset)
                }
                .await;
                (k, url, r)
            });
        }
        while let Some(j) = set.join_next().await {
            if let Ok(r) = j {
                results.push(r);
            }
        }
        results.sort_by_key(|r| r.0);
    }
    #[cfg(not(feature = "tls"))]
    for (k, url) in opts.https_date.iter().enumerate() {
        results.push((
            k,
            url.clone(),
            Err("this build has no TLS (feature `tls`)".to_owned()),
        ));
    }
    let _ = clock;
    let results: Vec<(String, Result<OffsetInterval, String>)> =
        results.into_iter().map(|(_, u, r)| (u, r)).collect();
    let decision = combine_constraints(&results);
    match &decision {
        ConstraintDecision::Refused(why) => tracing::warn!(%why, "HTTPS Date constraints refused"),
        ConstraintDecision::Applied { outvoted, .. } if !outvoted.is_empty() => {
            tracing::warn!(?outvoted, "HTTPS Date constraints outvoted by the others");
        }
        _ => {}
    }
    (results, decision)
}

/// Combines HTTPS Date constraints by agreement: the common interval of a strict majority of
/// those that answered, or a refusal when there is none. Never drops one silently.
#[must_use]
pub fn combine_constraints(
    results: &[(String, Result<OffsetInterval, String>)],
) -> ConstraintDecision {
    let answered: Vec<(&String, OffsetInterval)> = results
        .iter()
        .filter_map(|(u, r)| r.as_ref().ok().map(|iv| (u, *iv)))
        .collect();
    if answered.is_empty() {
        return ConstraintDecision::NoneAnswered;
    }
    let outcomes: Vec<Outcome> = answered.iter().map(|(_, iv)| Outcome::Reply(*iv)).collect();
    match trusttime_core::select::select(&outcomes, 1) {
        Ok(sel) => ConstraintDecision::Applied {
            interval: sel.interval,
            agreeing: usize::from(sel.count),
            answered: answered.len(),
            outvoted: answered
                .iter()
                .enumerate()
                .filter(|(k, _)| !sel.is_member(*k))
                .map(|(_, (u, _))| (*u).clone())
                .collect(),
        },
        Err(_) => ConstraintDecision::Refused(format!(
            "the HTTPS Date constraints ({}) contradict each other and no majority of them agrees",
            answered
                .iter()
                .map(|(u, iv)| format!(
                    "{u}: {:+.3} s .. {:+.3} s",
                    iv.lo.as_secs_f64(),
                    iv.hi.as_secs_f64()
                ))
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}

/// The first clause of a failure reason, as the tally's "why".
fn short_why(reason: &str) -> String {
    let first = reason
        .split([':', ';', '('])
        .next()
        .unwrap_or(reason)
        .trim();
    if first.is_empty() {
        "invalid".into()
    } else {
        first.to_owned()
    }
}

/// The verdict on a source outside the group that decided.
pub(crate) fn overlap_verdict(
    iv: OffsetInterval,
    sel: &Selection,
    authenticated: bool,
) -> (Verdict, String) {
    let said = format!(
        "offset {:+.6} s ± {:.3} ms",
        iv.midpoint().as_secs_f64(),
        iv.radius().as_secs_f64() * 1e3
    );
    let whose = if authenticated {
        "the authenticated consensus"
    } else {
        "the majority"
    };
    if iv.lo <= sel.interval.hi && sel.interval.lo <= iv.hi {
        (Verdict::Agreed, format!("{said} overlaps {whose}"))
    } else {
        (
            Verdict::Falseticker,
            format!(
                "{said} disagrees with {whose} ({:+.6} s .. {:+.6} s)",
                sel.interval.lo.as_secs_f64(),
                sel.interval.hi.as_secs_f64()
            ),
        )
    }
}

/// The verdict on source `i`, which answered with `offset`, given the selection (or `None`
/// when no majority formed), and the reason in words. Shared by `sync` and the daemon.
#[must_use]
pub fn verdict_of(
    i: usize,
    offset: OffsetInterval,
    selection: Option<&Selection>,
) -> (Verdict, String) {
    let said = format!(
        "offset {:+.6} s ± {:.3} ms",
        offset.midpoint().as_secs_f64(),
        offset.radius().as_secs_f64() * 1e3
    );
    match selection {
        Some(sel) if sel.is_member(i) => (Verdict::Agreed, format!("{said} overlaps the majority")),
        Some(sel) => (
            Verdict::Falseticker,
            format!(
                "{said} is outside the majority's {:+.6} s .. {:+.6} s",
                sel.interval.lo.as_secs_f64(),
                sel.interval.hi.as_secs_f64()
            ),
        ),
        None => (Verdict::Unconfirmed, format!("{said}; no majority formed")),
    }
}

pub use crate::files::read_pem_certificates;

/// Loopback NTP servers that behave as a test needs (honest, lying, answering twice,
/// forging, silent), for the tests of `sync` and its callers.
#[cfg(test)]
pub(crate) mod test_servers {
    use std::net::SocketAddr;

    use tokio::net::UdpSocket;
    use trusttime_core::SignedDuration;

    use crate::clock::{LocalClock, SystemClock};
    use crate::serve::{reply_to, ServeOptions, Trust};

    /// How a test server answers each request.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Behaviour {
        /// One reply with its time.
        Honest,
        /// The same reply twice.
        Twice,
        /// First a forged reply (a day further off, with an origin timestamp that is not the
        /// request's: what an off-path attacker can send), then the genuine one.
        ForgedThenGenuine,
        /// Only the forged reply.
        ForgedOnly,
        /// A Kiss-o'-Death RATE (stratum 0, code in the reference ID).
        KissRate,
        /// Nothing.
        Silent,
    }

    /// A server on 127.0.0.1 whose clock is `offset` off this machine's, with this root
    /// dispersion, answering as `how` says. Runs until the runtime ends.
    pub(crate) async fn start(
        offset: SignedDuration,
        dispersion: SignedDuration,
        how: Behaviour,
    ) -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let opts = ServeOptions {
            root_dispersion: dispersion,
            trust: Trust::LyingTestServer,
            ..ServeOptions::default()
        };
        crate::task::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((len, peer)) = sock.recv_from(&mut buf).await {
                let now = SystemClock.now().wall + offset;
                let Some(reply) = reply_to(&buf[..len], now, (now, Some(dispersion)), &opts) else {
                    continue;
                };
                let day = SignedDuration::from_secs(86_400);
                let forged = reply_to(&buf[..len], now + day, (now + day, Some(dispersion)), &opts)
                    .map(|mut f| {
                        // The origin timestamp (bytes 24..32) is the request's random cookie,
                        // which an attacker off the path cannot know.
                        f[24..32].copy_from_slice(&0x0123_4567_89ab_cdef_u64.to_be_bytes());
                        f
                    });
                let sends: Vec<[u8; 48]> = match how {
                    Behaviour::Honest => vec![reply],
                    Behaviour::Twice => vec![reply, reply],
                    Behaviour::ForgedThenGenuine => forged.into_iter().chain([reply]).collect(),
                    Behaviour::ForgedOnly => forged.into_iter().collect(),
                    Behaviour::KissRate => {
                        let mut k = reply;
                        k[1] = 0;
                        k[12..16].copy_from_slice(b"RATE");
                        vec![k]
                    }
                    Behaviour::Silent => Vec::new(),
                };
                for d in sends {
                    let _ = sock.send_to(&d, peer).await;
                }
            }
        });
        addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Instant;
    use test_servers::{start, Behaviour};

    const MS: SignedDuration = SignedDuration::from_millis(1);

    fn spec(a: SocketAddr) -> ServerSpec {
        ServerSpec {
            host: a.ip().to_string(),
            port: a.port(),
        }
    }

    fn opts(servers: &[SocketAddr], timeout_ms: u64) -> SyncOptions {
        let mut o = SyncOptions::new(servers.iter().copied().map(spec).collect());
        o.timeout = Duration::from_millis(timeout_ms);
        o
    }

    async fn run(o: &SyncOptions) -> SyncReport {
        sync(o, Arc::new(crate::clock::SystemClock)).await
    }

    fn day() -> SignedDuration {
        SignedDuration::from_secs(86_400)
    }

    #[tokio::test]
    async fn a_forged_reply_does_not_decide_and_the_genuine_one_does() {
        let ten_min = SignedDuration::from_secs(600);
        let forger = start(ten_min, MS, Behaviour::ForgedOnly).await;
        let r = run(&opts(&[forger], 1500)).await;
        assert!(r.result.is_err(), "{:?}", r.result);
        assert!(r.sources[0].sample.is_none());
        assert_eq!(r.sources[0].verdict, Verdict::NoReply);
        assert!(
            r.sources[0].reason.contains("no reply within"),
            "{}",
            r.sources[0].reason
        );
        // A forgery first does not cancel the genuine reply, nor move the result.
        let both = start(ten_min, MS, Behaviour::ForgedThenGenuine).await;
        let r = run(&opts(&[both], 3000)).await;
        let c = r.result.expect("the genuine reply decides");
        assert!(
            (c.offset - ten_min).abs() < SignedDuration::from_secs(1),
            "{c:?}"
        );
        assert!(r.elapsed < Duration::from_millis(900), "{:?}", r.elapsed);
    }

    #[tokio::test]
    async fn a_server_that_answers_twice_is_one_vote() {
        let liar = start(day(), MS, Behaviour::Twice).await;
        let honest = start(SignedDuration::ZERO, MS, Behaviour::Honest).await;
        // Two servers that disagree: one vote each, so no majority (a second reply from the
        // liar must not make it two).
        let r = run(&opts(&[liar, honest], 3000)).await;
        match r.result {
            Err(NoConsensus::Disagreement {
                largest_group: 1,
                replies: 2,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        // With a second honest server the majority decides and the liar is named.
        let honest2 = start(SignedDuration::ZERO, MS, Behaviour::Honest).await;
        let r = run(&opts(&[liar, honest, honest2], 3000)).await;
        let c = r.result.expect("two honest servers agree");
        assert_eq!(c.agreed, 2);
        assert!(c.offset.abs() < SignedDuration::from_secs(1), "{c:?}");
        assert_eq!(r.sources[0].verdict, Verdict::Falseticker);
    }

    #[tokio::test]
    async fn a_liar_listed_twice_counts_once() {
        let liar = start(day(), MS, Behaviour::Honest).await;
        let honest = start(SignedDuration::ZERO, MS, Behaviour::Honest).await;
        // Without one vote per address the liar would be 2 of 3, a majority.
        let r = run(&opts(&[liar, liar, honest], 3000)).await;
        assert_eq!(r.sources[1].verdict, Verdict::Duplicate, "{:?}", r.sources);
        assert!(r.sources[1].reason.contains("one server counts once"));
        assert!(
            matches!(r.result, Err(NoConsensus::Disagreement { replies: 2, .. })),
            "{:?}",
            r.result
        );
    }

    #[tokio::test]
    async fn a_server_that_never_answers_ends_at_the_deadline_and_does_not_delay_a_majority() {
        let silent = start(SignedDuration::ZERO, MS, Behaviour::Silent).await;
        let t0 = Instant::now();
        let r = run(&opts(&[silent], 300)).await;
        let took = t0.elapsed();
        assert!(r.result.is_err());
        assert!(
            (Duration::from_millis(300)..Duration::from_millis(1000)).contains(&took),
            "{took:?}"
        );
        assert_eq!(r.sources[0].reason, "no reply within 300ms");
        assert_eq!(r.sources[0].answer, Answer::Silent);
        // Two of three answer: decided on them, not at the deadline.
        let a = start(SignedDuration::ZERO, MS, Behaviour::Honest).await;
        let b = start(SignedDuration::ZERO, MS, Behaviour::Honest).await;
        let r = run(&opts(&[a, b, silent], 5000)).await;
        assert_eq!(r.result.map(|c| c.agreed).ok(), Some(2));
        assert!(r.elapsed < Duration::from_millis(900), "{:?}", r.elapsed);
        assert_eq!(r.sources[2].verdict, Verdict::NoReply);
    }

    #[tokio::test]
    async fn a_kiss_o_death_is_named_with_its_code_and_is_no_vote() {
        let kisser = start(SignedDuration::ZERO, MS, Behaviour::KissRate).await;
        let honest = start(SignedDuration::ZERO, MS, Behaviour::Honest).await;
        let r = run(&opts(&[kisser, honest], 3000)).await;
        let s = &r.sources[0];
        assert_eq!(s.verdict, Verdict::KissOfDeath, "{s:?}");
        assert_eq!(s.kiss, Some(KissCode::Rate));
        assert_eq!(s.answer.why(), Some("Kiss-o'-Death RATE"), "{s:?}");
        assert!(s.sample.is_none());
        // One of two answered usably: one vote, and one is enough of two configured.
        assert_eq!(r.result.map(|c| c.agreed).ok(), Some(1));
    }

    /// The interval `sync` reports is the trusted interval of a `System` given the consensus,
    /// clamped to sync's floor by the System, and its provenance is the System's.
    #[tokio::test]
    async fn the_reported_interval_is_the_systems() {
        // A server whose error bound is ±10 s, and a floor 5 s before the time it serves: the
        // interval's lower half lies below the floor.
        let wide = SignedDuration::from_secs(10);
        let server = start(SignedDuration::ZERO, wide, Behaviour::Honest).await;
        let mut o = opts(&[server], 3000);
        o.client.max_root_distance = SignedDuration::from_secs(20);
        let floor = crate::clock::system_wall() - SignedDuration::from_secs(5);
        o.client.floor = floor;
        let r = run(&o).await;
        let c = r.result.expect("one server, one needed");
        assert_eq!(c.provenance, Provenance::Ntp);
        assert!(!c.authenticated);
        assert_eq!(c.interval.earliest, floor, "clamped to the floor: {c:?}");
        let mut sys = observer(floor);
        sys.on_consensus(c.at, c.offset_interval, c.authenticated);
        let t = sys.trust().current(c.at.mono);
        assert_eq!(t.interval, c.interval);
        assert_eq!(t.provenance, c.provenance);
        assert_eq!(c.offset, c.interval.midpoint() - c.at.wall);
        // Observe-only: the System never asks to change the clock.
        while let Some(a) = sys.poll_action() {
            assert!(matches!(a, Action::Persist | Action::NotifyReady), "{a:?}");
        }
    }

    #[test]
    /// Found by the `cli_parsers` fuzz target: a 260-character bare IPv6-like host parsed, but
    /// its display (bracketed) was over the length limit and did not parse again.
    fn every_accepted_spec_displays_as_a_spec_that_parses_again() {
        let long = "27m.37m27::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::m1s::::::::::::::::::::::::::::::::::::::::::::::::::m1s::::::::::::::::::::::::::::::::::::::::::::::::m2sm\n";
        assert!(
            long.parse::<ServerSpec>().is_err(),
            "a host over 253 characters is refused"
        );
        for s in [
            &"a".repeat(253),
            &format!("{}::1", "1:".repeat(83)),
            "[::1]:65535",
        ] {
            if let Ok(spec) = s.parse::<ServerSpec>() {
                let again: ServerSpec = spec.to_string().parse().unwrap();
                assert_eq!(spec, again, "{s}");
            }
        }
    }

    #[test]
    fn server_specs_parse() {
        let p = |s: &str| s.parse::<ServerSpec>();
        assert_eq!(
            p("pool.ntp.org").unwrap(),
            ServerSpec {
                host: "pool.ntp.org".into(),
                port: 123
            }
        );
        assert_eq!(
            p("127.0.0.1:11123").unwrap(),
            ServerSpec {
                host: "127.0.0.1".into(),
                port: 11123
            }
        );
        assert_eq!(
            p("[::1]:5").unwrap(),
            ServerSpec {
                host: "::1".into(),
                port: 5
            }
        );
        assert_eq!(
            p("::1").unwrap(),
            ServerSpec {
                host: "::1".into(),
                port: 123
            }
        );
        assert_eq!(p("[::1]:5").unwrap().to_string(), "[::1]:5");
        assert_eq!(p("a.b").unwrap().to_string(), "a.b");
        for bad in [
            "",
            "host:",
            "host:0",
            "host:70000",
            "[::1",
            "[::1]x",
            ":123",
            "ho st",
            "a/b",
        ] {
            assert!(p(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(p("x:0").unwrap_err().to_string().contains("port must be"));
    }

    #[test]
    fn constraints_combine_by_agreement_or_are_refused() {
        let c = |lo: i64, hi: i64| {
            Ok(OffsetInterval {
                lo: SignedDuration::from_secs(lo),
                hi: SignedDuration::from_secs(hi),
            })
        };
        let url = |k: u8| format!("https://{k}.example/");
        assert_eq!(combine_constraints(&[]), ConstraintDecision::NoneAnswered);
        let two = [(url(1), c(0, 1)), (url(2), c(86_400, 86_401))];
        assert!(matches!(
            combine_constraints(&two),
            ConstraintDecision::Refused(_)
        ));
        let three = [
            (url(1), c(0, 2)),
            (url(2), c(86_400, 86_401)),
            (url(3), c(1, 3)),
        ];
        match combine_constraints(&three) {
            ConstraintDecision::Applied {
                interval,
                agreeing,
                answered,
                outvoted,
            } => {
                assert_eq!((agreeing, answered), (2, 3));
                assert_eq!(outvoted, [url(2)]);
                assert_eq!(interval.lo, SignedDuration::from_secs(1));
                assert_eq!(interval.hi, SignedDuration::from_secs(2));
            }
            other => panic!("{other:?}"),
        }
        let with_error = [(url(1), c(0, 1)), (url(2), Err("TLS".to_owned()))];
        assert!(matches!(
            combine_constraints(&with_error),
            ConstraintDecision::Applied { agreeing: 1, .. }
        ));
    }

    #[test]
    fn pool_names_follow_the_vendor_guidance() {
        let s = pool_servers("acme.pool.ntp.org", 4);
        let names: Vec<String> = s.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "0.acme.pool.ntp.org",
                "1.acme.pool.ntp.org",
                "2.acme.pool.ntp.org",
                "3.acme.pool.ntp.org"
            ]
        );
    }
}
