//! The daemon: keeps a trusted time across polls, reboots and dead RTC batteries.
//!
//! Start-up: floor = max(build time, persisted time); holdover from the persisted state (moved
//! by the system clock's elapsed time, widened by the drift bound) and from the RTC when it is
//! sane. Then a random start-up delay, a short burst while unsynchronised, and polling that
//! adapts between `min-poll` and `max-poll`, backs off on loss and obeys Kiss-o'-Death. After
//! each consensus: discipline the clock (unless observe-only), write the RTC, persist, and tell
//! systemd `READY=1` the first time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use trusttime_core::ntp::{KissCode, PollPolicy};
use trusttime_core::select::{select, OffsetInterval, Outcome, Selection};
use trusttime_core::trust::{rtc_holdover, TrustConfig, TrustMachine, TrustState};
use trusttime_core::{
    floor, Human, MonoInstant, Provenance, SignedDuration, TimeInterval, UnixTime,
};

use crate::clock::LocalClock;
use crate::config::Checked;
use crate::platform::{Action, ClockControl, Discipline, Rtc};
use crate::state::{self, SourceState, State};
use crate::sync::{sync, ServerSpec, SourceKind, SyncOptions, Verdict};

/// What the daemon needs from outside: its config and the clocks, behind traits.
pub struct Daemon {
    /// The checked configuration.
    pub config: Checked,
    /// Reads the clocks.
    pub local: Arc<dyn LocalClock>,
    /// Changes the system clock (unused when observe-only).
    pub control: Arc<dyn ClockControl>,
    /// The RTC, when configured.
    pub rtc: Option<Arc<dyn Rtc>>,
    /// Never change any clock.
    pub observe_only: bool,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("observe_only", &self.observe_only)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
struct SourceRun {
    spec: ServerSpec,
    kind: SourceKind,
    roughtime: Option<crate::roughtime::RoughtimeSpec>,
    auth_failures: u32,
    policy: PollPolicy,
    next_due: MonoInstant,
    /// Last good sample: offset interval and when.
    last: Option<(OffsetInterval, MonoInstant, SignedDuration)>,
    reach: u8,
    verdict: Verdict,
    reason: String,
    kod: Option<KissCode>,
    requests: u64,
    /// How it took part in its last poll.
    answer: crate::tally::Answer,
}

/// Everything `status` and `sources` report.
#[derive(Debug)]
struct Status {
    trust: TrustMachine,
    sources: Vec<SourceRun>,
    floor: UnixTime,
    observe_only: bool,
    last_sync_wall: Option<UnixTime>,
    next_poll: Option<MonoInstant>,
    notes: Vec<String>,
    agreed: u8,
    allow_force: bool,
    manual_log: std::collections::VecDeque<Value>,
    state_dir: std::path::PathBuf,
    control: Option<Arc<dyn ClockControl>>,
    /// Purposes for which only authenticated time counts.
    require_authenticated: Vec<String>,
    /// Unauthenticated sources that disagree with the authenticated consensus.
    disagreeing: Vec<String>,
    /// The last poll round's answers, in the tally's words.
    last_round: Option<String>,
}

/// Why a manual time was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
    /// Below the floor.
    #[error("{0}")]
    BelowFloor(String),
    /// Outside a network-trusted interval without force (or force not allowed).
    #[error("{0}")]
    Conflict(String),
}

/// How often the daemon persists its state at most (besides the first consensus and manual
/// changes).
pub const SAVE_EVERY: Duration = Duration::from_secs(600);

/// The largest uncertainty a person may claim.
pub const MAX_MANUAL_UNCERTAINTY: SignedDuration = SignedDuration::from_secs(7 * 86_400);

/// Handle to the running daemon's status (for tests and embedding).
#[derive(Clone, Debug)]
pub struct StatusHandle(Arc<Mutex<Status>>, Arc<dyn LocalClock>);

/// The daemon's trusted time as a [`trusttime_tls::TrustedClock`], for TLS connections made
/// from inside the daemon (clock health reports).
#[cfg(feature = "tls")]
impl trusttime_tls::TrustedClock for StatusHandle {
    fn read(&self) -> trusttime_tls::ClockReading {
        let now = self.1.now();
        match self.0.lock() {
            Ok(s) => {
                let trusted = s.trust.current(now.mono);
                if s.require_authenticated.iter().any(|p| p == "tls")
                    && trusted.provenance != Provenance::Authenticated
                {
                    // The config asks for authenticated time for TLS: anything less is
                    // reported as unknown, so the verifier refuses.
                    return trusttime_tls::ClockReading::untrusted(now.wall, s.floor);
                }
                trusttime_tls::ClockReading {
                    device: now.wall,
                    trusted,
                }
            }
            Err(_) => trusttime_tls::ClockReading::untrusted(now.wall, floor::build_time()),
        }
    }
}

impl StatusHandle {
    /// The `status` reply.
    #[must_use]
    pub fn status_json(&self) -> Value {
        let now = self.1.now();
        let Ok(s) = self.0.lock() else {
            return json!({ "error": "status unavailable" });
        };
        let t = s.trust.current(now.mono);
        let state = s.trust.state(now.mono);
        let known = state != TrustState::Unknown;
        let offset = known.then(|| (t.interval.midpoint() - now.wall).as_secs_f64());
        let uncertainty = known.then(|| t.uncertainty().as_secs_f64());
        let next_poll_s = s
            .next_poll
            .map(|n| n.since(now.mono).as_secs_f64().max(0.0));
        json!({
            "state": state.as_str(),
            "provenance": t.provenance.as_str(),
            "authenticated": t.provenance == Provenance::Authenticated,
            "earliest": known.then(|| t.interval.earliest.to_string()),
            "latest": known.then(|| t.interval.latest.to_string()),
            "offset_s": offset,
            "uncertainty_s": uncertainty,
            "floor": s.floor.to_string(),
            "system_time": now.wall.to_string(),
            "last_sync": s.last_sync_wall.map(|w| w.to_string()),
            "next_poll_in_s": next_poll_s,
            "freq_ppm": s.trust.freq_ppb().map(|p| p as f64 / 1000.0),
            "drift_bound_ppm": s.trust.config().drift_ppm,
            "agreed": s.agreed,
            "require_authenticated": s.require_authenticated,
            "unauthenticated_disagree": s.disagreeing,
            "observe_only": s.observe_only,
            "notes": s.notes,
            "manual_changes": s.manual_log.iter().collect::<Vec<_>>(),
            "last_round": s.last_round,
            "verdict": verdict_line(state, &t, s.agreed, s.sources.len(), s.floor, &s.disagreeing, s.last_round.as_deref()),
        })
    }

    /// Sets the time by hand: `unix_ms ± uncertainty_ms`, by `who`. Refused below the floor,
    /// and outside a network-trusted interval unless `force` and the config allows it. Every
    /// accepted change is logged and shown in `status`.
    ///
    /// # Errors
    /// [`SetError`] says why nothing changed.
    pub fn set_manual(
        &self,
        unix_ms: i64,
        uncertainty_ms: i64,
        force: bool,
        who: &str,
    ) -> Result<Value, SetError> {
        if !(0..=MAX_MANUAL_UNCERTAINTY.as_millis()).contains(&uncertainty_ms) {
            return Err(SetError::Invalid(format!(
                "uncertainty must be 0 .. {} ms",
                MAX_MANUAL_UNCERTAINTY.as_millis()
            )));
        }
        if !(0..=32_503_680_000_000).contains(&unix_ms) {
            return Err(SetError::Invalid(
                "time must be between 1970 and 3000".into(),
            ));
        }
        let t = UnixTime::from_millis(unix_ms);
        let unc = SignedDuration::from_millis(uncertainty_ms);
        let new = TimeInterval::around(t, unc);
        let now = self.1.now();
        let Ok(mut s) = self.0.lock() else {
            return Err(SetError::Invalid("status unavailable".into()));
        };
        if new.latest < s.floor {
            return Err(SetError::BelowFloor(format!(
                "{t} ± {} is below the floor {}: refused (the clock never goes below the floor)",
                Human(unc),
                s.floor
            )));
        }
        let state = s.trust.state(now.mono);
        let current = s.trust.current(now.mono);
        let networked = matches!(state, TrustState::Synced | TrustState::Authenticated);
        if networked && current.interval.intersect(&new).is_none() {
            if !force {
                return Err(SetError::Conflict(format!(
                    "{t} ± {} is outside the network-trusted interval {} .. {}: refused (send force to override, if the config allows it)",
                    Human(unc),
                    current.interval.earliest,
                    current.interval.latest
                )));
            }
            if !s.allow_force {
                return Err(SetError::Conflict(
                    "force is not allowed by the config ([clock] allow-manual-force)".into(),
                ));
            }
        }
        let old = (state != TrustState::Unknown).then(|| current.interval.midpoint().to_string());
        s.trust.set_manual(now.mono, new);
        let entry = json!({
            "at": now.wall.to_string(),
            "who": who,
            "old": old,
            "new": t.to_string(),
            "uncertainty_ms": uncertainty_ms,
            "forced": force && networked,
        });
        tracing::warn!(%who, old = ?old, new = %t, uncertainty_ms, "time set by hand");
        s.manual_log.push_back(entry.clone());
        while s.manual_log.len() > 20 {
            s.manual_log.pop_front();
        }
        let control = s.control.clone();
        let dir = s.state_dir.clone();
        drop(s);
        if let Some(c) = control {
            let offset = t - now.wall;
            if offset.abs() > unc {
                if let Err(e) = c.step(offset) {
                    tracing::error!(error = %e, "cannot step the clock to the manual time");
                }
            }
        }
        save(self, &dir, self.1.now().wall);
        Ok(json!({ "ok": true, "change": entry }))
    }

    /// The `sources` reply.
    #[must_use]
    pub fn sources_json(&self) -> Value {
        let now = self.1.now();
        let Ok(s) = self.0.lock() else {
            return json!({ "error": "status unavailable" });
        };
        let list: Vec<Value> = s
            .sources
            .iter()
            .map(|r| {
                json!({
                    "address": r.spec.to_string(),
                    "kind": r.kind.as_str(),
                    "authenticated": r.kind.is_authenticated(),
                    "auth_failures": r.auth_failures,
                    "verdict": r.verdict.as_str(),
                    "reason": r.reason,
                    "reach": format!("{:03o}", r.reach),
                    "offset_s": r.last.map(|(iv, _, _)| iv.midpoint().as_secs_f64()),
                    "error_s": r.last.map(|(iv, _, _)| iv.radius().as_secs_f64()),
                    "delay_s": r.last.map(|(_, _, d)| d.as_secs_f64()),
                    "age_s": r.last.map(|(_, at, _)| now.mono.since(at).as_secs_f64()),
                    "poll": r.policy.poll_exponent(),
                    "next_poll_in_s": if r.policy.stopped_by().is_some() { None } else { Some(r.next_due.since(now.mono).as_secs_f64().max(0.0)) },
                    "kiss_code": r.kod.map(|k| k.to_string()),
                    "requests": r.requests,
                    "answer": r.answer.as_str(),
                    "rejected_why": r.answer.why(),
                })
            })
            .collect();
        json!({ "sources": list, "last_round": s.last_round })
    }
}

fn verdict_line(
    state: TrustState,
    t: &trusttime_core::TrustedTime,
    agreed: u8,
    n: usize,
    floor: UnixTime,
    disagreeing: &[String],
    last_round: Option<&str>,
) -> String {
    let mut line = verdict_words(state, t, agreed, n, floor);
    if let (TrustState::Unknown | TrustState::Holdover, Some(round)) = (state, last_round) {
        line.push_str(&format!(" Last poll: {round}."));
    }
    if !disagreeing.is_empty() {
        line.push_str(&format!(
            " Unauthenticated source(s) {} disagree with the authenticated consensus: plain NTP may be shifted on the network path.",
            disagreeing.join(", ")
        ));
    }
    line
}

fn verdict_words(
    state: TrustState,
    t: &trusttime_core::TrustedTime,
    agreed: u8,
    n: usize,
    floor: UnixTime,
) -> String {
    match state {
        TrustState::Unknown => format!("Not trusted: no time source has synced; only the floor ({floor}) is known."),
        TrustState::Holdover => format!(
            "Holdover: {} ± {} ({}), growing with the drift bound until the next sync.",
            t.interval.midpoint(),
            Human(t.uncertainty()),
            t.provenance.describe()
        ),
        TrustState::Synced => format!(
            "Synced: {} ± {} from {agreed} of {n} NTP sources agreeing. Unauthenticated: an attacker on the network path could shift it.",
            t.interval.midpoint(),
            Human(t.uncertainty())
        ),
        TrustState::Authenticated => format!(
            "Authenticated: {} ± {} from {agreed} of {n} authenticated sources.",
            t.interval.midpoint(),
            Human(t.uncertainty())
        ),
    }
}

/// A daemon that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The control socket cannot be created.
    #[error("cannot create the control socket {path}: {source}")]
    Socket {
        /// Its path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Clock changes were asked for but are not permitted.
    #[error("{0}")]
    Permission(&'static str),
    /// The configured trust anchors cannot be read.
    #[error("clock.trust-anchors {0}")]
    TrustAnchors(String),
}

impl Daemon {
    /// Prepares the status (floor, persisted state, RTC) and binds the control socket; the
    /// returned future runs the daemon until it is dropped.
    ///
    /// # Errors
    /// [`DaemonError`].
    pub fn start(
        self,
    ) -> Result<(StatusHandle, impl std::future::Future<Output = ()>), DaemonError> {
        let cfg = &self.config.raw;
        let state_dir = cfg.daemon.state_dir.clone();
        let mut notes = Vec::new();
        let persisted = match state::load(&state_dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "persisted state ignored");
                notes.push(e.to_string());
                None
            }
        };
        let mut floor = floor::build_time();
        if let Some(p) = &persisted {
            floor = floor.max(UnixTime::from_nanos(p.earliest_ns));
        }
        let mut trust = TrustMachine::new(TrustConfig {
            floor,
            drift_ppm: cfg.clock.drift_ppm,
            sync_fresh_for: SignedDuration::from_secs(3 << cfg.daemon.max_poll.clamp(0, 17)),
        });
        let now = self.local.now();
        if let Some(p) = &persisted {
            if let Some(ppb) = p.freq_ppb {
                trust.set_freq_ppb(ppb);
            }
            let elapsed = now.wall - UnixTime::from_nanos(p.system_ns);
            if elapsed.is_negative() {
                notes.push("the system clock is earlier than when the state was saved: persisted time used as the floor only".into());
            } else {
                let iv = TimeInterval {
                    earliest: UnixTime::from_nanos(p.earliest_ns),
                    latest: UnixTime::from_nanos(p.latest_ns),
                }
                .shift(elapsed)
                .widen(elapsed.mul_ppm(cfg.clock.drift_ppm));
                trust.on_holdover(now.mono, iv, Provenance::Persisted);
            }
        }
        if let Some(rtc) = &self.rtc {
            match rtc.read() {
                Ok(read) => match rtc_holdover(
                    read,
                    floor,
                    persisted
                        .as_ref()
                        .and_then(|p| p.rtc_set_ns)
                        .map(UnixTime::from_nanos),
                    cfg.clock.drift_ppm,
                ) {
                    Ok(iv) => {
                        trust.on_holdover(now.mono, iv, Provenance::Rtc);
                    }
                    Err(why) => {
                        tracing::warn!(%why, "RTC not used");
                        notes.push(why.to_string());
                    }
                },
                Err(e) => notes.push(format!("cannot read the RTC: {e}")),
            }
        }
        let nts_ca = match &cfg.clock.trust_anchors {
            None => Vec::new(),
            Some(path) => crate::sync::read_pem_certificates(path)
                .map_err(|why| DaemonError::TrustAnchors(format!("{}: {why}", path.display())))?,
        };
        let sources = self
            .config
            .sources
            .iter()
            .map(|src| {
                let spec = &src.spec;
                let mut policy = PollPolicy::new(cfg.daemon.min_poll, cfg.daemon.max_poll);
                let saved = persisted
                    .as_ref()
                    .and_then(|p| p.sources.iter().find(|s| s.address == spec.to_string()));
                // Resume at the previous interval. A Kiss-o'-Death stop is not carried over:
                // names are resolved again, and an address may have been lifted.
                if let Some(s) = saved {
                    policy.resume_at(s.poll);
                }
                SourceRun {
                    spec: spec.clone(),
                    kind: src.kind,
                    roughtime: src.roughtime.clone(),
                    auth_failures: 0,
                    policy,
                    next_due: MonoInstant::ZERO,
                    last: None,
                    reach: 0,
                    verdict: Verdict::NoReply,
                    reason: "not asked yet".into(),
                    kod: None,
                    requests: 0,
                    answer: crate::tally::Answer::Silent,
                }
            })
            .collect();
        let status = Arc::new(Mutex::new(Status {
            trust,
            sources,
            floor,
            observe_only: self.observe_only,
            last_sync_wall: None,
            next_poll: None,
            notes,
            agreed: 0,
            allow_force: cfg.clock.allow_manual_force,
            manual_log: std::collections::VecDeque::new(),
            state_dir: state_dir.clone(),
            control: (!self.observe_only).then(|| Arc::clone(&self.control)),
            require_authenticated: cfg.clock.require_authenticated.clone(),
            disagreeing: Vec::new(),
            last_round: None,
        }));
        let handle = StatusHandle(status, Arc::clone(&self.local));
        let sock_path = cfg.daemon.control_socket.clone();
        let listener = crate::control::bind(&sock_path).map_err(|e| DaemonError::Socket {
            path: sock_path.display().to_string(),
            source: e,
        })?;
        let h = handle.clone();
        let answer = move |r: &crate::control::Request, who: &str| match r.command.as_str() {
            "sources" => h.sources_json(),
            "set" => match h.set_manual(
                r.unix_ms.unwrap_or_default(),
                r.uncertainty_ms.unwrap_or(0),
                r.force.unwrap_or(false),
                who,
            ) {
                Ok(v) => v,
                Err(e) => json!({ "error": e.to_string() }),
            },
            _ => h.status_json(),
        };
        let h2 = handle.clone();
        #[cfg(feature = "web")]
        let web = cfg.web.enabled.then(|| {
            let cooling =
                crate::duration::parse(&cfg.web.cooling_off).unwrap_or(Duration::from_secs(300));
            (
                crate::web::Web::new(
                    handle.clone(),
                    &state_dir,
                    cfg.web.max_failed_logins,
                    cooling,
                ),
                cfg.web.listen,
                cfg.web.allowed_hosts.clone(),
            )
        });
        let metrics = cfg.daemon.metrics_listen;
        #[cfg(feature = "mqtt")]
        let report = cfg.report.clone();
        let fut = async move {
            tokio::spawn(crate::control::serve(listener, answer));
            if let Some(addr) = metrics {
                let h = h2.clone();
                tokio::spawn(async move {
                    if let Err(e) = crate::metrics::serve(addr, h).await {
                        tracing::error!(%addr, error = %e, "cannot serve metrics");
                    }
                });
            }
            #[cfg(feature = "web")]
            if let Some((web, listen, hosts)) = web {
                tokio::spawn(async move {
                    if let Err(e) = crate::web::serve(web, listen, &hosts).await {
                        tracing::error!(%listen, error = %e, "cannot serve the web page");
                    }
                });
            }
            #[cfg(feature = "mqtt")]
            if let Some(r) = report {
                tokio::spawn(crate::report::run(r, h2.clone()));
            }
            self.run(h2, nts_ca).await;
        };
        Ok((handle, fut))
    }

    #[allow(clippy::too_many_lines)]
    async fn run(self, handle: StatusHandle, nts_ca: Vec<Vec<u8>>) {
        let cfg = self.config.raw.clone();
        let state_dir = cfg.daemon.state_dir.clone();
        let delay = self.config.startup_delay;
        if !delay.is_zero() {
            let d = Duration::from_nanos(rand::random::<u64>() % (delay.as_nanos() as u64 + 1));
            tracing::info!(?d, "random start-up delay (NTP Pool guidance)");
            tokio::time::sleep(d).await;
        }
        let mut discipline = Discipline::new(
            SignedDuration::from_std(self.config.step_threshold),
            self.observe_only,
        );
        let mut burst_left = 3u8;
        // NTS cookies carry over between polls: one key exchange per eight polls, not per poll.
        let nts_cache: crate::sync::NtsCache = Arc::default();
        let mut notified = false;
        // Persist after the first consensus, then at most every 10 minutes: the interval
        // carried forward from a slightly older save is still honest (it only widens), and
        // flash storage on devices wears with every write.
        let mut last_save: Option<std::time::Instant> = None;
        let max_age = SignedDuration::from_secs(2 << cfg.daemon.max_poll.clamp(0, 17));
        loop {
            let now = self.local.now();
            let (due, all_stopped): (Vec<usize>, bool) = {
                let Ok(s) = handle.0.lock() else { return };
                let due = s
                    .sources
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.policy.stopped_by().is_none() && r.next_due <= now.mono)
                    .map(|(i, _)| i)
                    .collect();
                (
                    due,
                    s.sources.iter().all(|r| r.policy.stopped_by().is_some()),
                )
            };
            if all_stopped {
                tracing::error!("every source stopped (Kiss-o'-Death DENY/RSTR); holding over");
                std::future::pending::<()>().await;
            }
            if !due.is_empty() {
                // Report order of `sync`: NTP, then NTS, then Roughtime.
                let mut opts = SyncOptions::new(Vec::new());
                let due: Vec<usize> = {
                    let Ok(s) = handle.0.lock() else { return };
                    let mut order = Vec::new();
                    for kind in [SourceKind::Ntp, SourceKind::Nts, SourceKind::Roughtime] {
                        for &i in due.iter().filter(|&&i| s.sources[i].kind == kind) {
                            let r = &s.sources[i];
                            match (kind, &r.roughtime) {
                                (SourceKind::Ntp, _) => opts.servers.push(r.spec.clone()),
                                (SourceKind::Nts, _) => opts.nts.push(r.spec.clone()),
                                (SourceKind::Roughtime, Some(rt)) => {
                                    opts.roughtime.push(rt.clone())
                                }
                                (SourceKind::Roughtime, None) => continue,
                            }
                            order.push(i);
                        }
                    }
                    order
                };
                opts.ca.clone_from(&nts_ca);
                opts.nts_cache = Some(Arc::clone(&nts_cache));
                opts.https_date.clone_from(&self.config.https_date);
                opts.min_agree = Some(1);
                opts.wait_for_all = true;
                opts.timeout = Duration::from_secs(3);
                opts.client.floor = handle
                    .0
                    .lock()
                    .map(|s| s.floor)
                    .unwrap_or(opts.client.floor);
                let report = sync(&opts, Arc::clone(&self.local)).await;
                let now = self.local.now();
                let mut s = match handle.0.lock() {
                    Ok(s) => s,
                    Err(_) => return,
                };
                let round = report.tally().to_string();
                tracing::debug!(answers = %round, "poll round");
                s.last_round = Some(round.clone());
                for (k, &i) in due.iter().enumerate() {
                    let r = &report.sources[k];
                    let run = &mut s.sources[i];
                    run.requests += 1;
                    run.answer = r.answer.clone();
                    run.auth_failures += r.auth_failures;
                    run.reach <<= 1;
                    match (&r.sample, r.kiss) {
                        (Some(sample), _) => {
                            run.reach |= 1;
                            run.last = Some((
                                OffsetInterval::around(sample.offset, sample.error_bound()),
                                now.mono,
                                sample.delay,
                            ));
                            run.policy.on_success();
                        }
                        (None, Some(k)) => {
                            run.policy.on_kiss(k);
                            run.kod = Some(k);
                            run.verdict = Verdict::KissOfDeath;
                            run.reason = format!("Kiss-o'-Death {k}: {}", k.description());
                            if run.policy.stopped_by().is_some()
                                && run.spec.host.parse::<std::net::IpAddr>().is_err()
                            {
                                // A pool name: this server is dropped, and the name is asked
                                // again (for another server) after the longest poll interval.
                                run.policy =
                                    PollPolicy::new(cfg.daemon.max_poll, cfg.daemon.max_poll);
                                run.reason.push_str(
                                    "; the name will be resolved again for another server",
                                );
                            }
                        }
                        (None, None) => {
                            run.policy.on_failure();
                            run.verdict = r.verdict;
                            run.reason.clone_from(&r.reason);
                        }
                    }
                    run.next_due = now.mono
                        + run
                            .policy
                            .next_interval(rand::random())
                            .unwrap_or(SignedDuration::MAX.half());
                }
                // Consensus over every source's latest sample, aged by the drift bound.
                let drift = cfg.clock.drift_ppm;
                let outcomes: Vec<Outcome> = s
                    .sources
                    .iter()
                    .map(|r| match r.last {
                        Some((iv, at, _)) if now.mono.since(at) <= max_age => {
                            let w = now.mono.since(at).mul_ppm(drift);
                            Outcome::Reply(OffsetInterval {
                                lo: iv.lo - w,
                                hi: iv.hi + w,
                            })
                        }
                        _ => Outcome::Failed,
                    })
                    .collect();
                // Authenticated sources decide when they can; plain NTP only without them.
                let auth: Vec<bool> = s
                    .sources
                    .iter()
                    .map(|r| r.kind.is_authenticated())
                    .collect();
                let n_auth = auth.iter().filter(|&&a| a).count();
                let group = |want: bool| -> Vec<Outcome> {
                    outcomes
                        .iter()
                        .zip(&auth)
                        .map(|(o, &a)| if a == want { *o } else { Outcome::Failed })
                        .collect()
                };
                let min_for = |n: usize| {
                    cfg.clock
                        .min_agree
                        .unwrap_or_else(|| trusttime_core::select::default_min_agree(n))
                };
                let decided = match (n_auth > 0).then(|| select(&group(true), min_for(n_auth))) {
                    Some(Ok(sel)) => Ok((sel, true)),
                    _ => select(&group(false), min_for(s.sources.len() - n_auth))
                        .map(|sel| (sel, false)),
                };
                match decided {
                    Ok((sel, authenticated)) => {
                        apply_verdicts(&mut s.sources, &sel, &outcomes, authenticated);
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
                        s.trust.on_consensus(now, sel.interval, authenticated);
                        s.agreed = sel.count;
                        s.last_sync_wall = Some(now.wall);
                        burst_left = 0;
                        let floor = s.floor;
                        let action = discipline.decide(sel.offset, now.wall, floor);
                        drop(s);
                        self.apply(action, &handle);
                        if !notified {
                            notified = true;
                            sd_notify("READY=1\nSTATUS=time trusted");
                            tracing::info!("time trusted; READY=1");
                        }
                        if last_save.map_or(true, |t| t.elapsed() >= SAVE_EVERY) {
                            save(&handle, &state_dir, self.local.now().wall);
                            last_save = Some(std::time::Instant::now());
                        }
                    }
                    Err(why) => {
                        tracing::warn!(%why, answers = %round, "no consensus this round");
                        for (r, o) in s.sources.iter_mut().zip(&outcomes) {
                            if matches!(o, Outcome::Reply(_)) {
                                r.verdict = Verdict::Unconfirmed;
                                r.reason = format!("no majority: {why}");
                            }
                        }
                        if burst_left > 0 {
                            // Unsynchronised: a short burst (every 2 s, three times), then the
                            // normal schedule.
                            burst_left -= 1;
                            let soon = now.mono + SignedDuration::from_secs(2);
                            for r in s
                                .sources
                                .iter_mut()
                                .filter(|r| r.policy.stopped_by().is_none())
                            {
                                r.next_due = r.next_due.min(soon);
                            }
                        }
                        drop(s);
                    }
                }
            }
            let next = {
                let Ok(mut s) = handle.0.lock() else { return };
                let next = s
                    .sources
                    .iter()
                    .filter(|r| r.policy.stopped_by().is_none())
                    .map(|r| r.next_due)
                    .min();
                s.next_poll = next;
                next
            };
            let wait = next.map_or(Duration::from_secs(3600), |n| {
                n.since(self.local.now().mono)
                    .to_std()
                    .unwrap_or(Duration::ZERO)
            });
            tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
        }
    }

    fn apply(&self, action: Action, handle: &StatusHandle) {
        let result = match action {
            Action::None => return,
            Action::Step(by) => self.control.step(by).map(|()| by),
            Action::Slew(by) => self.control.slew(by).map(|()| SignedDuration::ZERO),
        };
        match result {
            Ok(stepped) => {
                tracing::info!(?action, "clock adjusted");
                if stepped != SignedDuration::ZERO {
                    if let Ok(mut s) = handle.0.lock() {
                        // Samples were measured against the old clock.
                        for r in &mut s.sources {
                            if let Some((iv, _, _)) = r.last.as_mut() {
                                iv.lo -= stepped;
                                iv.hi -= stepped;
                            }
                        }
                    }
                }
                if let Some(rtc) = &self.rtc {
                    if let Err(e) = rtc.set(self.local.now().wall + stepped) {
                        tracing::warn!(error = %e, "cannot write the RTC");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, ?action, "cannot adjust the clock"),
        }
    }
}

fn apply_verdicts(
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

fn save(handle: &StatusHandle, dir: &std::path::Path, system: UnixTime) {
    let st = {
        let Ok(s) = handle.0.lock() else { return };
        let now = handle.1.now();
        let t = s.trust.current(now.mono);
        State {
            system_ns: system.as_nanos(),
            earliest_ns: t.interval.earliest.as_nanos(),
            latest_ns: t.interval.latest.as_nanos(),
            provenance: t.provenance.as_str().into(),
            freq_ppb: s.trust.freq_ppb(),
            rtc_set_ns: None,
            sources: s
                .sources
                .iter()
                .map(|r| SourceState {
                    address: r.spec.to_string(),
                    poll: r.policy.poll_exponent(),
                    kod: r.kod.map(|k| k.to_string()),
                })
                .collect(),
        }
    };
    if let Err(e) = state::save(dir, &st) {
        tracing::warn!(error = %e, "cannot persist state");
    }
}

/// Tells systemd (Type=notify) about our state, if it is listening.
pub fn sd_notify(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let res = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(msg.as_bytes(), &a))
    } else {
        sock.send_to(msg.as_bytes(), std::path::Path::new(&path))
    };
    if let Err(e) = res {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
