//! One consensus sync: ask every server in parallel, once each (with retries on loss), and
//! stop as soon as a majority agrees or no majority is possible.
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

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use trusttime_core::ntp::{ClientConfig, Failure, KissCode, NtpClient, Reject, Sample};
use trusttime_core::nts::NtsSession;
use trusttime_core::select::{
    combine, default_min_agree, Combination, NoConsensus, OffsetInterval, Outcome, Selection,
    MAX_SOURCES,
};
use trusttime_core::{Now, SignedDuration, TimeInterval};

use crate::clock::LocalClock;
use crate::tally::{Answer, Tally};

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
    /// NTS sessions kept between syncs (the daemon's): a source with cookies left skips
    /// NTS-KE. `None`: every sync runs NTS-KE.
    pub nts_cache: Option<NtsCache>,
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
            nts_cache: None,
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

pub(crate) enum Event {
    Resolved(usize, SocketAddr),
    /// A datagram was ignored (not ours, or a late duplicate).
    Ignored(usize, Reject),
    Done(usize, Result<Sample, Failure>),
    Unreachable(usize, String),
    /// The source failed in a way NTP has no word for (NTS-KE, certificate, authentication).
    Failed(usize, Verdict, String),
    /// A reply failed authentication and was dropped.
    AuthFailed(usize, String),
    /// A Roughtime chain proves that one of two servers lies.
    ChainViolation(String),
}

impl From<crate::transport::roughtime::ChainEvent> for Event {
    fn from(ev: crate::transport::roughtime::ChainEvent) -> Self {
        use crate::transport::roughtime::ChainEvent;
        match ev {
            ChainEvent::Resolved(i, a) => Event::Resolved(i, a),
            ChainEvent::Failed(i, v, why) => Event::Failed(i, v, why),
            ChainEvent::ChainViolation(why) => Event::ChainViolation(why),
            ChainEvent::Done(i, s) => Event::Done(i, Ok(s)),
        }
    }
}

/// Runs one consensus exchange. Never fails as a whole: per-source problems are in the report.
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
    let mut sources: Vec<SourceReport> = specs
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
    let mut outcomes = vec![Outcome::Pending; n];
    // Sources that resolved to the address of an earlier source of the same kind: one
    // server, one vote.
    let mut duplicate = vec![false; n];
    let mut chain_violations = Vec::new();
    let (tx, mut rx) = mpsc::channel(4 * n + 8);
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
            if let crate::transport::roughtime::ChainEvent::Done(_, s) = &ev {
                rough.push(Outcome::Reply(OffsetInterval::around(
                    s.offset,
                    s.error_bound(),
                )));
            }
            let _ = tx.try_send(ev.into());
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
    let constraint = match &constraint_decision {
        ConstraintDecision::Applied { interval, .. } => Some(*interval),
        _ => None,
    };
    let refused = match &constraint_decision {
        ConstraintDecision::Refused(why) => Some(why.clone()),
        _ => None,
    };
    let mut tasks = JoinSet::new();
    for (i, (kind, spec)) in specs.iter().enumerate() {
        let (tx, clock, spec, cfg) = (tx.clone(), Arc::clone(&clock), spec.clone(), opts.client);
        match kind {
            SourceKind::Ntp => {
                tasks.spawn(async move {
                    run_source(i, spec, cfg, clock, None, tx).await;
                });
            }
            SourceKind::Nts => {
                let setup = nts_setup(opts);
                tasks.spawn(async move { run_nts_source(i, spec, cfg, clock, setup, tx).await });
            }
            // Roughtime sources run as one chain, started below.
            SourceKind::Roughtime => {}
        }
    }
    if !opts.roughtime.is_empty() && !roughtime_first {
        let first = opts.servers.len() + opts.nts.len();
        let (tx, clock, specs, cfg) = (
            tx.clone(),
            Arc::clone(&clock),
            opts.roughtime.clone(),
            opts.client,
        );
        let timeout = opts.timeout;
        tasks.spawn(async move {
            let (ctx, mut crx) =
                mpsc::channel::<crate::transport::roughtime::ChainEvent>(4 * specs.len() + 4);
            let forward = async {
                while let Some(ev) = crx.recv().await {
                    let _ = tx.send(ev.into()).await;
                }
            };
            tokio::join!(
                crate::transport::roughtime::run_chain(first, specs, cfg, clock, timeout, ctx),
                forward
            );
        });
    }
    drop(tx);
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let decision = loop {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            () = tokio::time::sleep_until(deadline) => None,
        };
        let index = match &ev {
            Some(
                Event::Resolved(i, _)
                | Event::Ignored(i, _)
                | Event::Done(i, _)
                | Event::Unreachable(i, _)
                | Event::Failed(i, _, _)
                | Event::AuthFailed(i, _),
            ) => Some(*i),
            _ => None,
        };
        if index.is_some_and(|i| duplicate[i]) {
            continue;
        }
        match ev {
            Some(Event::Resolved(i, a)) => {
                sources[i].address = Some(a);
                let twin = (0..n).find(|&j| {
                    j != i
                        && !duplicate[j]
                        && sources[j].kind == sources[i].kind
                        && sources[j].address == Some(a)
                });
                if let Some(j) = twin {
                    duplicate[i] = true;
                    outcomes[i] = Outcome::Failed;
                    sources[i].verdict = Verdict::Duplicate;
                    sources[i].reason = format!(
                        "same address {a} as {}: one server counts once",
                        sources[j].server
                    );
                }
            }
            Some(Event::Ignored(i, r)) => {
                tracing::debug!(server = %sources[i].server, reason = %r, "ignored datagram");
            }
            Some(Event::Unreachable(i, why)) => {
                outcomes[i] = Outcome::Failed;
                sources[i].reason = why;
            }
            Some(Event::Failed(i, verdict, why)) => {
                outcomes[i] = Outcome::Failed;
                sources[i].verdict = verdict;
                sources[i].answer = match verdict {
                    Verdict::NoReply => Answer::Silent,
                    _ => Answer::Rejected(short_why(&why)),
                };
                sources[i].reason = why;
            }
            Some(Event::ChainViolation(why)) => chain_violations.push(why),
            Some(Event::AuthFailed(i, why)) => {
                sources[i].auth_failures += 1;
                tracing::warn!(server = %sources[i].server, reason = %why, "dropped a reply that failed authentication");
            }
            Some(Event::Done(i, r)) => match r {
                Ok(s) if refused.is_some() && !sources[i].kind.is_authenticated() => {
                    outcomes[i] = Outcome::Failed;
                    sources[i].verdict = Verdict::Unconfirmed;
                    sources[i].reason = format!(
                        "offset {:+.6} s not used: {}",
                        s.offset.as_secs_f64(),
                        refused.as_deref().unwrap_or_default()
                    );
                }
                Ok(s) => {
                    let iv = OffsetInterval::around(s.offset, s.error_bound());
                    match constraint {
                        Some(c) if iv.hi < c.lo || c.hi < iv.lo => {
                            outcomes[i] = Outcome::Failed;
                            sources[i].verdict = Verdict::Falseticker;
                            sources[i].answer =
                                Answer::Rejected("outside the HTTPS Date constraint".into());
                            sources[i].reason = format!(
                                "offset {:+.6} s is outside the HTTPS Date constraint ({:+.3} s .. {:+.3} s)",
                                s.offset.as_secs_f64(),
                                c.lo.as_secs_f64(),
                                c.hi.as_secs_f64()
                            );
                        }
                        _ => {
                            outcomes[i] = Outcome::Reply(iv);
                            sources[i].sample = Some(s);
                            sources[i].answer = Answer::Answered;
                        }
                    }
                }
                Err(f) => {
                    outcomes[i] = Outcome::Failed;
                    let (verdict, kiss) = match f {
                        Failure::NoReply { .. } => (Verdict::NoReply, None),
                        Failure::Rejected(Reject::KissOfDeath(k)) => {
                            (Verdict::KissOfDeath, Some(k))
                        }
                        Failure::Rejected(r) if r.is_falseticker() => (Verdict::Falseticker, None),
                        Failure::Rejected(_) => (Verdict::Invalid, None),
                    };
                    sources[i].verdict = verdict;
                    sources[i].kiss = kiss;
                    sources[i].answer = match f {
                        Failure::NoReply { .. } => Answer::Silent,
                        Failure::Rejected(r) => Answer::rejected(&r),
                    };
                    sources[i].reason = f.to_string();
                }
            },
            None => {
                // Timeout (or every task ended): what is still pending will not answer.
                for (o, s) in outcomes.iter_mut().zip(sources.iter_mut()) {
                    if *o == Outcome::Pending {
                        *o = Outcome::Failed;
                        s.reason = format!("no reply within {:?}", opts.timeout);
                    }
                }
            }
        }
        if opts.wait_for_all && outcomes.contains(&Outcome::Pending) {
            continue;
        }
        // The one combination policy (authenticated sources first), shared with the daemon.
        match combine(&outcomes, &auth_mask, min_auth, min_plain) {
            Combination::Wait => continue,
            Combination::Agreed {
                selection,
                authenticated,
                ..
            } => break Ok((selection, authenticated)),
            Combination::Failed(e) => break Err(e),
        }
    };
    tasks.abort_all();
    let at = clock.now();
    let floor = opts.client.floor;
    if let Ok((_, false)) = decision {
        min_agree = min_plain;
    }
    let result = decision.as_ref().map(|&(sel, authenticated)| {
        let interval = TimeInterval {
            earliest: at.wall + sel.interval.lo,
            latest: at.wall + sel.interval.hi,
        }
        .clamp_to_floor(floor);
        Consensus {
            authenticated,
            // The centre of the interval reported (after the floor clamp).
            offset: interval.midpoint() - at.wall,
            offset_interval: sel.interval,
            interval,
            at,
            agreed: sel.count,
        }
    });
    let result = result.map_err(|e| *e);
    for (i, s) in sources.iter_mut().enumerate() {
        let Some(sample) = s.sample else { continue };
        let iv = OffsetInterval::around(sample.offset, sample.error_bound());
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
        chain_violations,
        constraints,
        constraint: constraint_decision,
        bootstrap_from,
    }
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
            set.spawn(async move {
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

/// NTS sessions by NTS-KE server, kept between syncs.
pub type NtsCache = Arc<std::sync::Mutex<std::collections::HashMap<String, CachedNts>>>;

/// An NTS session with cookies left, and what its key exchange said.
#[derive(Clone, Debug)]
pub struct CachedNts {
    /// Keys and cookies.
    pub session: NtsSession,
    /// The NTP server the key exchange named.
    pub ntp: ServerSpec,
    /// The validity window of the NTS-KE server's certificate chain.
    pub window: Option<TimeInterval>,
}

/// What an NTS source needs before its key exchange.
#[derive(Clone, Debug)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
struct NtsSetup {
    ca: Vec<Vec<u8>>,
    bootstrap: Option<TimeInterval>,
    timeout: Duration,
    cache: Option<NtsCache>,
}

fn nts_setup(opts: &SyncOptions) -> NtsSetup {
    NtsSetup {
        ca: opts.ca.clone(),
        bootstrap: opts.bootstrap,
        timeout: opts.timeout,
        cache: opts.nts_cache.clone(),
    }
}

#[cfg(not(feature = "tls"))]
async fn run_nts_source(
    i: usize,
    _spec: ServerSpec,
    _cfg: ClientConfig,
    _clock: Arc<dyn LocalClock>,
    _setup: NtsSetup,
    tx: mpsc::Sender<Event>,
) {
    let _ = tx
        .send(Event::Failed(
            i,
            Verdict::Invalid,
            "this build has no TLS (feature `tls`), which NTS needs".into(),
        ))
        .await;
}

#[cfg(feature = "tls")]
async fn run_nts_source(
    i: usize,
    spec: ServerSpec,
    cfg: ClientConfig,
    clock: Arc<dyn LocalClock>,
    setup: NtsSetup,
    tx: mpsc::Sender<Event>,
) {
    use trusttime_tls::confirm;
    let key = spec.to_string();
    let cached = setup
        .cache
        .as_ref()
        .and_then(|c| c.lock().ok()?.remove(&key))
        .filter(|c| c.session.cookies() > 0);
    let ke = match cached {
        Some(c) => {
            tracing::debug!(server = %spec, cookies = c.session.cookies(), "NTS: reusing cookies, no key exchange");
            c
        }
        None => match nts_key_exchange(i, &spec, cfg, setup.clone(), &tx).await {
            Some(c) => c,
            None => return,
        },
    };
    let (tx2, mut rx2) = mpsc::channel(16);
    let forward = {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut last = None;
            while let Some(ev) = rx2.recv().await {
                match ev {
                    Event::Done(_, r) => last = Some(r),
                    other => {
                        let _ = tx.send(other).await;
                    }
                }
            }
            last
        })
    };
    let session = run_source(i, ke.ntp.clone(), cfg, clock, Some(ke.session), tx2).await;
    let Ok(Some(result)) = forward.await else {
        return;
    };
    // The certificate that vouched for the keys must have been valid at the time obtained.
    if let (Ok(sample), Some(window)) = (&result, ke.window) {
        if let Err(why) = confirm(window, &sample.interval_at_receipt()) {
            let _ = tx
                .send(Event::Failed(i, Verdict::Invalid, why.to_string()))
                .await;
            return;
        }
    }
    // Keep the session for the next sync while it answers and has cookies left.
    if let (Ok(_), Some(session), Some(cache)) = (&result, session, &setup.cache) {
        if session.cookies() > 0 {
            if let Ok(mut c) = cache.lock() {
                c.insert(
                    key,
                    CachedNts {
                        session,
                        ntp: ke.ntp.clone(),
                        window: ke.window,
                    },
                );
            }
        }
    }
    let _ = tx.send(Event::Done(i, result)).await;
}

/// NTS-KE for one source; failures are reported on `tx`.
#[cfg(feature = "tls")]
async fn nts_key_exchange(
    i: usize,
    spec: &ServerSpec,
    cfg: ClientConfig,
    setup: NtsSetup,
    tx: &mpsc::Sender<Event>,
) -> Option<CachedNts> {
    use trusttime_tls::{bootstrap_interval, BootstrapVerifier, DEFAULT_HORIZON};
    let interval = setup
        .bootstrap
        .unwrap_or_else(|| bootstrap_interval(cfg.floor, DEFAULT_HORIZON));
    let roots = setup
        .ca
        .into_iter()
        .map(rustls_pki_types::CertificateDer::from)
        .collect();
    let verifier = match BootstrapVerifier::new(roots, interval) {
        Ok(v) => Arc::new(v),
        Err(e) => {
            let _ = tx
                .send(Event::Failed(
                    i,
                    Verdict::Invalid,
                    format!("trust anchors: {e}"),
                ))
                .await;
            return None;
        }
    };
    let ke = match crate::transport::nts::key_exchange(spec, verifier, setup.timeout).await {
        Ok(k) => k,
        Err(why) => {
            let _ = tx.send(Event::Failed(i, Verdict::Invalid, why)).await;
            return None;
        }
    };
    tracing::debug!(server = %spec, ntp = %ke.ntp, cookies = ke.session.cookies(), "NTS-KE done");
    Some(CachedNts {
        session: ke.session,
        ntp: ke.ntp,
        window: ke.window,
    })
}

async fn run_source(
    i: usize,
    spec: ServerSpec,
    cfg: ClientConfig,
    clock: Arc<dyn LocalClock>,
    mut nts: Option<NtsSession>,
    tx: mpsc::Sender<Event>,
) -> Option<NtsSession> {
    let literal = spec
        .host
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, spec.port));
    let addr = match literal {
        Some(a) => a,
        None => match tokio::net::lookup_host((spec.host.as_str(), spec.port)).await {
            Ok(mut it) => match it.next() {
                Some(a) => a,
                None => {
                    let _ = tx
                        .send(Event::Unreachable(
                            i,
                            format!("DNS: no address for {}", spec.host),
                        ))
                        .await;
                    return None;
                }
            },
            Err(e) => {
                let _ = tx.send(Event::Unreachable(i, format!("DNS: {e}"))).await;
                return None;
            }
        },
    };
    let _ = tx.send(Event::Resolved(i, addr)).await;
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            let _ = tx
                .send(Event::Unreachable(
                    i,
                    format!("cannot open a UDP socket: {e}"),
                ))
                .await;
            return None;
        }
    };
    if let Err(e) = sock.connect(addr).await {
        let _ = tx
            .send(Event::Unreachable(i, format!("cannot reach {addr}: {e}")))
            .await;
        return None;
    }
    let mut client = NtpClient::new(cfg);
    let mut out = [0u8; 48];
    let mut wire = [0u8; 1500];
    let mut buf = vec![0u8; if nts.is_some() { 65_536 } else { 1500 }];
    loop {
        let now = clock.now();
        client.handle_timeout(now);
        if client.is_done() {
            break;
        }
        if let Some(len) = client.poll_transmit(now, rand::random(), &mut out) {
            let packet = match nts.as_mut() {
                None => &out[..len],
                Some(session) => {
                    match session.seal_request(
                        &out[..len],
                        rand::random(),
                        rand::random(),
                        &mut wire,
                    ) {
                        Ok(n) => &wire[..n],
                        Err(e) => {
                            let _ = tx
                                .send(Event::Failed(i, Verdict::Invalid, format!("NTS: {e}")))
                                .await;
                            return None;
                        }
                    }
                }
            };
            if let Err(e) = sock.send(packet).await {
                tracing::debug!(%addr, error = %e, "send failed; treated as a lost request");
            }
        }
        let Some(wake) = client.poll_timeout() else {
            break;
        };
        let wait = wake
            .since(clock.now().mono)
            .to_std()
            .unwrap_or(Duration::ZERO);
        tokio::select! {
            r = sock.recv(&mut buf) => {
                let now = clock.now();
                match r {
                    Ok(len) => {
                        if let Some(session) = nts.as_mut() {
                            match session.open_reply(&buf[..len]) {
                                Ok(()) => {}
                                Err(e @ trusttime_core::nts::NtsError::Nak) => {
                                    let _ = tx.send(Event::Failed(i, Verdict::Invalid, format!("NTS: {e}"))).await;
                                    return None;
                                }
                                Err(trusttime_core::nts::NtsError::NotRequested) => continue,
                                Err(e) => {
                                    let _ = tx.send(Event::AuthFailed(i, e.to_string())).await;
                                    continue;
                                }
                            }
                        }
                        // An authenticated NTS reply may exceed the plain-NTP size limit: the
                        // NTP client judges its header.
                        let datagram = if nts.is_some() { &buf[..len.min(48)] } else { &buf[..len] };
                        if let Err(rej) = client.handle_datagram(now, datagram) {
                            if !client.is_done() {
                                let _ = tx.send(Event::Ignored(i, rej)).await;
                            }
                        }
                    }
                    // ICMP port unreachable shows up here on a connected socket; the request
                    // counts as lost and the retry timer decides.
                    Err(e) => {
                        tracing::debug!(%addr, error = %e, "receive error");
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
    if let Some(r) = client.result() {
        let _ = tx.send(Event::Done(i, r)).await;
    }
    nts
}

#[cfg(test)]
mod tests {
    use super::*;

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
