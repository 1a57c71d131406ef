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
use trusttime_core::ntp::filter::{ClockFilter, FilterSample};
use trusttime_core::ntp::{KissCode, PollPolicy};
use trusttime_core::select::{select, OffsetInterval, Outcome, Selection};
use trusttime_core::system::{
    self as core_system, ManualError, SinceSave, Snapshot, System, SystemConfig,
};
use trusttime_core::trust::{rtc_holdover, TrustConfig, TrustState};
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
    /// The source's best sample (from `filter`): offset interval, when, delay.
    last: Option<(OffsetInterval, MonoInstant, SignedDuration)>,
    /// The last 8 samples, all from `last_addr` (cleared when a pool name gives another
    /// server); `last` is the one with the narrowest interval aged to now.
    filter: ClockFilter,
    /// The address that gave the samples in `filter` (and so `last`).
    last_addr: Option<std::net::SocketAddr>,
    reach: u8,
    verdict: Verdict,
    reason: String,
    kod: Option<KissCode>,
    requests: u64,
    /// How it took part in its last poll.
    answer: crate::tally::Answer,
    /// The address an NTP source's DNS name resolved to, and when: asked at the next polls
    /// instead of the name (see [`RESOLVE_EVERY`]).
    resolved: Option<(std::net::SocketAddr, MonoInstant)>,
    /// Polls in a row without a reply from `resolved`.
    silent: u8,
}

/// DNS about once an hour per name at most (NTP Pool vendor guidance): an NTP source's name is
/// resolved once and its address asked at the next polls. The name is resolved again after
/// this long, on a Kiss-o'-Death (DENY, RSTR or RATE), on an unusable or duplicate server,
/// after [`RESOLVE_AFTER_SILENT`] polls without a reply, when its server is a falseticker,
/// and after a round without a majority.
pub const RESOLVE_EVERY: SignedDuration = SignedDuration::from_secs(3600);

/// Polls in a row without a reply after which a name is resolved again for another server.
pub const RESOLVE_AFTER_SILENT: u8 = 4;

impl SourceRun {
    /// What to ask at this poll: the address the name resolved to while it is kept, else the
    /// configured server (which `sync` resolves).
    fn server_to_ask(&mut self, now: MonoInstant) -> ServerSpec {
        match self.resolved {
            Some((addr, at)) if now.since(at) < RESOLVE_EVERY => ServerSpec {
                host: addr.ip().to_string(),
                port: addr.port(),
            },
            _ => {
                self.resolved = None;
                self.spec.clone()
            }
        }
    }

    /// After a poll of an NTP source given by name: keep the address it was asked at, or
    /// forget it so that the next poll resolves the name again. `taken`: another source of
    /// this kind keeps that address (two names, one server: one of them asks for another).
    fn after_poll(&mut self, r: &crate::sync::SourceReport, taken: bool, now: MonoInstant) {
        if self.kind != SourceKind::Ntp || self.spec.host.parse::<std::net::IpAddr>().is_ok() {
            return;
        }
        if self.resolved.is_none() {
            self.resolved = r.address.map(|a| (a, now));
            self.silent = 0;
        }
        let keep = if r.sample.is_some() {
            self.silent = 0;
            true
        } else if r.kiss.is_some() {
            false
        } else if r.verdict == Verdict::NoReply {
            self.silent = self.silent.saturating_add(1);
            self.silent < RESOLVE_AFTER_SILENT
        } else {
            false // an unusable answer, or the same server as another source
        };
        if !keep || taken {
            self.resolved = None;
        }
    }
}

/// Everything `status` and `sources` report.
#[derive(Debug)]
struct Status {
    /// The owner of the time: floor, manual time, RTC and persistence rules.
    sys: System,
    sources: Vec<SourceRun>,
    observe_only: bool,
    last_sync_wall: Option<UnixTime>,
    next_poll: Option<MonoInstant>,
    notes: Vec<String>,
    agreed: u8,
    manual_log: std::collections::VecDeque<Value>,
    state_dir: std::path::PathBuf,
    control: Option<Arc<dyn ClockControl>>,
    /// The RTC to write (none when observe-only).
    rtc: Option<Arc<dyn Rtc>>,
    /// Purposes for which only authenticated time counts.
    require_authenticated: Vec<String>,
    /// Unauthenticated sources that disagree with the authenticated consensus.
    disagreeing: Vec<String>,
    /// The last poll round's answers, in the tally's words.
    last_round: Option<String>,
    /// Signed Roughtime evidence that a server lies (the last 20).
    chain_violations: std::collections::VecDeque<String>,
    /// How the HTTPS Date constraints were combined in the last round that asked them.
    constraint: Option<Value>,
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
                let trusted = s.sys.trust().current(now.mono);
                if s.require_authenticated.iter().any(|p| p == "tls")
                    && trusted.provenance != Provenance::Authenticated
                {
                    // The config asks for authenticated time for TLS: anything less is
                    // reported as unknown, so the verifier refuses.
                    return trusttime_tls::ClockReading::untrusted(now.wall, s.sys.floor());
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
        let t = s.sys.trust().current(now.mono);
        let state = s.sys.trust().state(now.mono);
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
            "floor": s.sys.floor().to_string(),
            "system_time": now.wall.to_string(),
            "last_sync": s.last_sync_wall.map(|w| w.to_string()),
            "next_poll_in_s": next_poll_s,
            "freq_ppm": s.sys.trust().freq_ppb().map(|p| p as f64 / 1000.0),
            "drift_bound_ppm": s.sys.trust().config().drift_ppm,
            "agreed": s.agreed,
            "falsetickers": s
                .sources
                .iter()
                .filter(|r| r.verdict == Verdict::Falseticker)
                .count(),
            "require_authenticated": s.require_authenticated,
            "unauthenticated_disagree": s.disagreeing,
            "observe_only": s.observe_only,
            "notes": s.notes,
            "manual_changes": s.manual_log.iter().collect::<Vec<_>>(),
            "last_round": s.last_round,
            "hint_overridden": s.sys.last_override().map(|o| o.to_string()),
            "chain_violations": s.chain_violations.iter().collect::<Vec<_>>(),
            "constraint": s.constraint,
            "verdict": verdict_line(state, &t, s.agreed, s.sources.len(), s.sys.floor(), &s.disagreeing, s.last_round.as_deref()),
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
        let requested = TimeInterval::around(t, unc);
        let now = self.1.now();
        let Ok(mut s) = self.0.lock() else {
            return Err(SetError::Invalid("status unavailable".into()));
        };
        let change = s
            .sys
            .set_manual(now, requested, force)
            .map_err(|e| match e {
                ManualError::BelowFloor { .. } => {
                    SetError::BelowFloor(format!("{t} ± {} is {e}", Human(unc)))
                }
                ManualError::ForceNotAllowed => SetError::Conflict(e.to_string()),
                _ => SetError::Conflict(format!("{t} ± {} is {e}", Human(unc))),
            })?;
        let old = change.old.map(|o| o.midpoint().to_string());
        let entry = json!({
            "at": now.wall.to_string(),
            "who": who,
            "old": old,
            "new": t.to_string(),
            "uncertainty_ms": uncertainty_ms,
            "trusted": change.new.to_string(),
            "forced": change.forced,
        });
        if change.forced {
            tracing::warn!(%who, old = ?old, new = %t, uncertainty_ms, "time set by hand, FORCED over the network-trusted interval");
        } else {
            tracing::warn!(%who, old = ?old, new = %t, uncertainty_ms, "time set by hand");
        }
        s.manual_log.push_back(entry.clone());
        while s.manual_log.len() > 20 {
            s.manual_log.pop_front();
        }
        drop(s);
        carry_out(self);
        Ok(json!({ "ok": true, "change": entry }))
    }

    /// Resets the floor to the build time and forgets every trusted time: the recovery for a
    /// device whose floor was raised by a wrong time. Root only (the control socket checks);
    /// logged and shown in `status`.
    pub fn reset_floor(&self, who: &str) -> Value {
        let now = self.1.now();
        let Ok(mut s) = self.0.lock() else {
            return json!({ "error": "status unavailable" });
        };
        let old = s.sys.floor();
        s.sys.reset_floor();
        let new = s.sys.floor();
        tracing::warn!(%who, %old, %new, "floor reset by hand; every trusted time forgotten");
        let entry = json!({
            "at": now.wall.to_string(),
            "who": who,
            "reset_floor": { "old": old.to_string(), "new": new.to_string() },
        });
        s.manual_log.push_back(entry.clone());
        while s.manual_log.len() > 20 {
            s.manual_log.pop_front();
        }
        drop(s);
        carry_out(self);
        json!({ "ok": true, "change": entry })
    }

    /// A clean stop (SIGTERM): persists the state.
    pub fn shutdown(&self) {
        if let Ok(mut s) = self.0.lock() {
            s.sys.on_stop();
        }
        carry_out(self);
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
    if agreed == 1 && disagreeing.len() >= 2 {
        line.push_str(&format!(
            " A single authenticated source contradicts the unauthenticated sources {}: either it or the network path lies; configure at least two authenticated sources.",
            disagreeing.join(", ")
        ));
    } else if !disagreeing.is_empty() {
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
    /// Another daemon holds the lock on this state directory.
    #[error("another trusttime daemon is already running with the state directory {0} (it holds {0}/lock); stop it first, or give this one its own [daemon] state-dir and control-socket")]
    AlreadyRunning(String),
    /// The lock file cannot be created.
    #[error("cannot lock the state directory {path}: {source}")]
    Lock {
        /// The lock file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Takes the exclusive lock on `dir/lock` (kept for as long as the returned file lives).
fn take_lock(dir: &std::path::Path) -> Result<std::fs::File, DaemonError> {
    let path = dir.join("lock");
    let io = |source| DaemonError::Lock {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match crate::platform::try_lock_exclusive(&file) {
        Ok(true) => Ok(file),
        Ok(false) => Err(DaemonError::AlreadyRunning(dir.display().to_string())),
        Err(e) => Err(io(e)),
    }
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
        // One daemon per state directory: a second one would fight over the clock, the state
        // file and the control socket. The lock is released when the process exits.
        let lock = take_lock(&state_dir)?;
        let mut notes = Vec::new();
        for w in &self.config.warnings {
            tracing::warn!("{w}");
            notes.push(w.clone());
        }
        let persisted = match state::load(&state_dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "persisted state ignored");
                notes.push(e.to_string());
                None
            }
        };
        let build_floor = floor::build_time();
        let mut sys = System::new(SystemConfig {
            trust: TrustConfig {
                floor: build_floor,
                drift_ppm: cfg.clock.drift_ppm,
                sync_fresh_for: SignedDuration::from_secs(3 << cfg.daemon.max_poll.clamp(0, 17)),
            },
            allow_manual_force: cfg.clock.allow_manual_force,
            has_rtc: self.rtc.is_some() && !self.observe_only,
        });
        let now = self.local.now();
        let boot = crate::platform::boot_instant();
        // The RTC, judged against the persisted floor (raised only by authenticated time) and
        // when trusttime last wrote it.
        let snapshot = persisted.as_ref().map(|p| snapshot_of(p, build_floor));
        let rtc_floor = snapshot.map_or(build_floor, |p| p.floor.max(build_floor));
        let rtc_iv = self.rtc.as_ref().and_then(|rtc| match rtc.read() {
            Ok(read) => match rtc_holdover(
                read,
                rtc_floor,
                snapshot.and_then(|p| p.rtc_set),
                cfg.clock.drift_ppm,
            ) {
                Ok(iv) => Some(iv),
                Err(why) => {
                    tracing::warn!(%why, "RTC not used");
                    notes.push(why.to_string());
                    None
                }
            },
            Err(e) => {
                notes.push(format!("cannot read the RTC: {e}"));
                None
            }
        });
        if let (Some(p), Some(snap)) = (&persisted, &snapshot) {
            // Within one boot the monotonic clock says how long ago the state was saved;
            // across a reboot only the wall clock can, and only when it came from an RTC that
            // trusttime set and that reads sane.
            let same_boot = match (&p.boot_id, p.boot_ns, &boot) {
                (Some(id), Some(at), Some((now_id, now_boot))) if id == now_id => {
                    Some(*now_boot - SignedDuration::from_nanos(at))
                }
                _ => None,
            };
            let since = match same_boot {
                Some(d) => SinceSave::SameBoot(d),
                None if rtc_iv.is_some() => SinceSave::TrustedRtc(now.wall - snap.saved_wall),
                None => SinceSave::Unknown,
            };
            let restored = sys.restore(now, snap, since);
            tracing::info!(%restored, ?since, "persisted state");
            if !matches!(restored, core_system::Restored::Holdover(_)) {
                notes.push(restored.to_string());
            }
        }
        if let Some(iv) = rtc_iv {
            sys.on_holdover(now.mono, iv, Provenance::Rtc);
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
                    filter: ClockFilter::new(),
                    last_addr: None,
                    reach: 0,
                    verdict: Verdict::NoReply,
                    reason: "not asked yet".into(),
                    kod: None,
                    requests: 0,
                    answer: crate::tally::Answer::Silent,
                    resolved: None,
                    silent: 0,
                }
            })
            .collect();
        let status = Arc::new(Mutex::new(Status {
            sys,
            sources,
            observe_only: self.observe_only,
            last_sync_wall: None,
            next_poll: None,
            notes,
            agreed: 0,
            manual_log: std::collections::VecDeque::new(),
            state_dir: state_dir.clone(),
            control: (!self.observe_only).then(|| Arc::clone(&self.control)),
            rtc: self.rtc.clone().filter(|_| !self.observe_only),
            require_authenticated: self.config.require_authenticated(),
            disagreeing: Vec::new(),
            last_round: None,
            chain_violations: std::collections::VecDeque::new(),
            constraint: None,
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
            "set" => {
                let mut reset = None;
                if r.reset_floor == Some(true) {
                    if !crate::control::is_root(who) {
                        return json!({ "error": format!("resetting the floor is for root only ({who})") });
                    }
                    reset = Some(h.reset_floor(who));
                }
                match (r.unix_ms, reset) {
                    (None, Some(v)) => v,
                    (unix_ms, _) => match h.set_manual(
                        unix_ms.unwrap_or_default(),
                        r.uncertainty_ms.unwrap_or(0),
                        r.force.unwrap_or(false),
                        who,
                    ) {
                        Ok(v) => v,
                        Err(e) => json!({ "error": e.to_string() }),
                    },
                }
            }
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
            let _lock = lock;
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
                    let Ok(mut s) = handle.0.lock() else { return };
                    let mut order = Vec::new();
                    for kind in [SourceKind::Ntp, SourceKind::Nts, SourceKind::Roughtime] {
                        for &i in &due {
                            let r = &mut s.sources[i];
                            if r.kind != kind {
                                continue;
                            }
                            match (kind, &r.roughtime) {
                                (SourceKind::Ntp, _) => {
                                    opts.servers.push(r.server_to_ask(now.mono))
                                }
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
                if let Ok(s) = handle.0.lock() {
                    opts.client.floor = s.sys.floor();
                    // Once the time rests on authenticated sources, NTS-KE and HTTPS Date
                    // certificates are checked against that interval (2 s wider, for the
                    // certificates' one-second resolution), not [floor, floor + 5 years].
                    let now = self.local.now();
                    let t = s.sys.trust().current(now.mono);
                    if t.provenance == Provenance::Authenticated
                        && s.sys.trust().state(now.mono) != TrustState::Unknown
                    {
                        opts.bootstrap = Some(t.interval.widen(SignedDuration::from_secs(2)));
                    }
                }
                let report = sync(&opts, Arc::clone(&self.local)).await;
                let now = self.local.now();
                let mut s = match handle.0.lock() {
                    Ok(s) => s,
                    Err(_) => return,
                };
                let round = report.tally().to_string();
                tracing::debug!(answers = %round, "poll round");
                s.last_round = Some(round.clone());
                for v in &report.chain_violations {
                    tracing::warn!(violation = %v, "Roughtime chain: a server is proven to lie");
                    s.chain_violations.push_back(format!("{}: {v}", now.wall));
                    while s.chain_violations.len() > 20 {
                        s.chain_violations.pop_front();
                    }
                }
                if report.constraint != crate::sync::ConstraintDecision::NotAsked {
                    s.constraint = Some(constraint_json(&report.constraint));
                }
                for (k, &i) in due.iter().enumerate() {
                    let r = &report.sources[k];
                    let kind = s.sources[i].kind;
                    let taken = r.address.is_some_and(|a| {
                        s.sources.iter().enumerate().any(|(j, o)| {
                            j != i
                                && o.kind == kind
                                && (o.resolved.is_some_and(|(x, _)| x == a)
                                    || o.spec.host.parse::<std::net::IpAddr>() == Ok(a.ip())
                                        && o.spec.port == a.port())
                        })
                    });
                    let run = &mut s.sources[i];
                    run.after_poll(r, taken, now.mono);
                    run.requests += 1;
                    run.answer = r.answer.clone();
                    run.auth_failures += r.auth_failures;
                    run.reach <<= 1;
                    match (&r.sample, r.kiss) {
                        (Some(sample), _) => {
                            run.reach |= 1;
                            if run.last_addr != r.address {
                                // A filter compares samples of one server: a pool name that
                                // now gives another server starts a new one.
                                run.filter = ClockFilter::new();
                            }
                            run.last_addr = r.address;
                            run.filter.add(FilterSample {
                                offset: OffsetInterval::around(sample.offset, sample.error_bound()),
                                delay: sample.delay,
                                at: now.mono,
                            });
                            run.last = run
                                .filter
                                .best(now.mono, cfg.clock.drift_ppm, max_age)
                                .map(|b| (b.offset, b.at, b.delay));
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
                    .enumerate()
                    .map(|(i, r)| match r.last {
                        Some((iv, at, _))
                            if now.mono.since(at) <= max_age && !superseded(&s.sources, i) =>
                        {
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
                        // A pool name whose server is outside the consensus asks for another.
                        for r in &mut s.sources {
                            if r.verdict == Verdict::Falseticker {
                                r.resolved = None;
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
                        if s.sys.on_consensus(now, sel.interval, authenticated) {
                            // The consensus contradicts what was trusted: step, do not slew
                            // for years.
                            tracing::warn!(
                                offset = ?sel.offset,
                                authenticated,
                                "the consensus contradicts the time trusted before; following it"
                            );
                            discipline.rearm();
                        }
                        s.agreed = sel.count;
                        s.last_sync_wall = Some(now.wall);
                        burst_left = 0;
                        let floor = s.sys.floor();
                        let action = discipline.decide(sel.offset, now.wall, floor);
                        drop(s);
                        self.apply(action, &handle);
                        // RTC writes, persistence (first sync, then at most every 10 min)
                        // and logs decided by the core.
                        carry_out(&handle);
                        if !notified {
                            notified = true;
                            sd_notify("READY=1\nSTATUS=time trusted");
                            tracing::info!("time trusted; READY=1");
                        }
                    }
                    Err(why) => {
                        tracing::warn!(%why, answers = %round, "no consensus this round");
                        for (r, o) in s.sources.iter_mut().zip(&outcomes) {
                            if matches!(o, Outcome::Reply(_)) {
                                r.verdict = Verdict::Unconfirmed;
                                r.reason = format!("no majority: {why}");
                            }
                            // No majority: every name asks for a server again (a liar and a
                            // RATE server kept for an hour must not keep a device from
                            // trusting the others).
                            r.resolved = None;
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
                if let Ok(mut s) = handle.0.lock() {
                    shift_samples(&mut s, stepped);
                    if let Action::Slew(by) = action {
                        slewed_samples(&mut s, by);
                    }
                    // The core queues the RTC write with the true time.
                    s.sys.on_disciplined(handle.1.now());
                }
            }
            Err(e) => tracing::error!(error = %e, ?action, "cannot adjust the clock"),
        }
    }
}

/// The HTTPS Date decision as `sync --json` shows it.
fn constraint_json(c: &crate::sync::ConstraintDecision) -> Value {
    use crate::sync::ConstraintDecision;
    match c {
        ConstraintDecision::Applied {
            interval,
            agreeing,
            answered,
            outvoted,
        } => json!({
            "decision": c.as_str(),
            "offset_lo_s": interval.lo.as_secs_f64(),
            "offset_hi_s": interval.hi.as_secs_f64(),
            "agreeing": agreeing,
            "answered": answered,
            "outvoted": outvoted,
        }),
        ConstraintDecision::Refused(why) => json!({ "decision": c.as_str(), "reason": why }),
        other => json!({ "decision": other.as_str() }),
    }
}

/// One server, one vote across rounds: a pool name is resolved again from time to time, so the
/// latest samples of two names can come from the same server, and a lying server would vote
/// twice. Only the newest sample from one address counts (the first source on a tie).
fn superseded(sources: &[SourceRun], i: usize) -> bool {
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

/// The clock was stepped by `by`: samples measured against the old clock move with it. Every
/// step (after a consensus or a hand-set time) goes through here.
fn shift_samples(s: &mut Status, by: SignedDuration) {
    if by == SignedDuration::ZERO {
        return;
    }
    for r in &mut s.sources {
        r.filter.stepped(by);
        if let Some((iv, _, _)) = r.last.as_mut() {
            iv.lo -= by;
            iv.hi -= by;
        }
    }
}

/// A slew of `by` was started: until it completes, a stored sample may be measured against
/// the old clock or the new one, so it covers both.
fn slewed_samples(s: &mut Status, by: SignedDuration) {
    for r in &mut s.sources {
        r.filter.slewed(by);
        if let Some((iv, _, _)) = r.last.as_mut() {
            if by.is_negative() {
                iv.hi -= by;
            } else {
                iv.lo -= by;
            }
        }
    }
}

/// Carries out what the core decided: steps for hand-set time, RTC writes, persistence, logs.
/// The one place (besides the discipline after a consensus) that changes a clock or the disk.
fn carry_out(handle: &StatusHandle) {
    let mut persist = false;
    loop {
        let (action, control, rtc) = {
            let Ok(mut s) = handle.0.lock() else { return };
            let Some(a) = s.sys.poll_action() else { break };
            (a, s.control.clone(), s.rtc.clone())
        };
        match action {
            core_system::Action::Step(by) => {
                // Observe-only: no control, nothing stepped, samples unchanged.
                let Some(c) = control else { continue };
                match c.step(by) {
                    Ok(()) => {
                        tracing::info!(?by, "clock stepped to the hand-set time");
                        if let Ok(mut s) = handle.0.lock() {
                            shift_samples(&mut s, by);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot step the clock to the manual time")
                    }
                }
            }
            core_system::Action::WriteRtc { time } => {
                let Some(rtc) = rtc else { continue };
                match rtc.set(time) {
                    Ok(()) => {
                        if let Ok(mut s) = handle.0.lock() {
                            s.sys.rtc_written(time);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot write the RTC"),
                }
            }
            // After everything else, so the saved state includes the RTC write.
            core_system::Action::Persist => persist = true,
            core_system::Action::HintOverridden(o) => {
                tracing::warn!(%o, "holdover hint overridden by the network");
                if let Ok(mut s) = handle.0.lock() {
                    s.notes.push(o.to_string());
                    if s.notes.len() > 20 {
                        s.notes.remove(0);
                    }
                }
            }
        }
    }
    if persist {
        save(handle);
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

/// Saves the core's snapshot with the boot id and boot clock (to tell a restart from a reboot)
/// and the per-source poll state.
fn save(handle: &StatusHandle) {
    let (st, dir) = {
        let Ok(mut s) = handle.0.lock() else { return };
        let now = handle.1.now();
        let snap = s.sys.snapshot(now);
        let (earliest, latest) = snap
            .interval
            .map_or((snap.floor, snap.floor), |iv| (iv.earliest, iv.latest));
        let boot = crate::platform::boot_instant();
        let st = State {
            system_ns: snap.saved_wall.as_nanos(),
            earliest_ns: earliest.as_nanos(),
            latest_ns: latest.as_nanos(),
            provenance: if snap.interval.is_some() {
                snap.provenance.as_str().into()
            } else {
                Provenance::Floor.as_str().into()
            },
            freq_ppb: snap.freq_ppb,
            rtc_set_ns: snap.rtc_set.map(UnixTime::as_nanos),
            floor_ns: Some(snap.floor.as_nanos()),
            boot_id: boot.as_ref().map(|(id, _)| id.clone()),
            boot_ns: boot.as_ref().map(|(_, at)| at.as_nanos()),
            sources: s
                .sources
                .iter()
                .map(|r| SourceState {
                    address: r.spec.to_string(),
                    poll: r.policy.poll_exponent(),
                    kod: r.kod.map(|k| k.to_string()),
                })
                .collect(),
        };
        (st, s.state_dir.clone())
    };
    if let Err(e) = state::save(&dir, &st) {
        tracing::warn!(error = %e, "cannot persist state");
    }
}

/// The core's view of a state file. Files written before the floor was kept apart hold no
/// `floor_ns`: their time raises the floor only if it was authenticated.
fn snapshot_of(p: &State, build_floor: UnixTime) -> Snapshot {
    let provenance = match p.provenance.as_str() {
        "authenticated" => Provenance::Authenticated,
        "ntp" => Provenance::Ntp,
        "rtc" => Provenance::Rtc,
        "manual" => Provenance::Manual,
        "persisted" => Provenance::Persisted,
        _ => Provenance::Floor,
    };
    let earliest = UnixTime::from_nanos(p.earliest_ns);
    let floor = p.floor_ns.map_or(
        if provenance == Provenance::Authenticated {
            earliest
        } else {
            build_floor
        },
        UnixTime::from_nanos,
    );
    Snapshot {
        saved_wall: UnixTime::from_nanos(p.system_ns),
        floor,
        interval: (provenance != Provenance::Floor).then_some(TimeInterval {
            earliest,
            latest: UnixTime::from_nanos(p.latest_ns),
        }),
        provenance,
        rtc_set: p.rtc_set_ns.map(UnixTime::from_nanos),
        freq_ppb: p.freq_ppb,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    /// A device clock that steps when told to: wall = base + offset.
    #[derive(Debug)]
    struct FakeClock {
        base: UnixTime,
        offset_ns: AtomicI64,
        rtc_ns: Mutex<Option<UnixTime>>,
    }

    impl LocalClock for FakeClock {
        fn now(&self) -> trusttime_core::Now {
            trusttime_core::Now {
                mono: crate::clock::mono_now(),
                wall: self.base + SignedDuration::from_nanos(self.offset_ns.load(Ordering::SeqCst)),
            }
        }
    }

    #[derive(Debug)]
    struct Control(Arc<FakeClock>);

    impl ClockControl for Control {
        fn step(&self, by: SignedDuration) -> std::io::Result<()> {
            self.0.offset_ns.fetch_add(by.as_nanos(), Ordering::SeqCst);
            Ok(())
        }
        fn slew(&self, _: SignedDuration) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Rtc for Control {
        fn read(&self) -> std::io::Result<UnixTime> {
            Err(std::io::Error::other("dead battery"))
        }
        fn set(&self, t: UnixTime) -> std::io::Result<()> {
            if let Ok(mut r) = self.0.rtc_ns.lock() {
                *r = Some(t);
            }
            Ok(())
        }
    }

    fn daemon(dir: &std::path::Path, clock: &Arc<FakeClock>) -> Daemon {
        let text = format!(
            "[daemon]\nstate-dir = \"{}\"\ncontrol-socket = \"{}\"\n",
            dir.join("state").display(),
            dir.join("control.sock").display()
        );
        let config = crate::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
        let c = Arc::new(Control(Arc::clone(clock)));
        Daemon {
            config,
            local: Arc::clone(clock) as Arc<dyn LocalClock>,
            control: Arc::clone(&c) as Arc<dyn ClockControl>,
            rtc: Some(c as Arc<dyn Rtc>),
            observe_only: false,
        }
    }

    fn run_with_sample(handle: &StatusHandle, offset: SignedDuration) {
        let mut s = handle.0.lock().unwrap();
        let now = handle.1.now();
        s.sources.push(SourceRun {
            spec: "192.0.2.1".parse().unwrap(),
            kind: SourceKind::Ntp,
            roughtime: None,
            auth_failures: 0,
            policy: PollPolicy::default(),
            next_due: MonoInstant::ZERO,
            last: Some((
                OffsetInterval::around(offset, SignedDuration::from_millis(1)),
                now.mono,
                SignedDuration::from_millis(1),
            )),
            filter: {
                let mut f = ClockFilter::new();
                f.add(FilterSample {
                    offset: OffsetInterval::around(offset, SignedDuration::from_millis(1)),
                    delay: SignedDuration::from_millis(1),
                    at: now.mono,
                });
                f
            },
            last_addr: None,
            reach: 1,
            verdict: Verdict::Agreed,
            answer: crate::tally::Answer::Answered,
            reason: String::new(),
            kod: None,
            requests: 1,
            resolved: None,
            silent: 0,
        });
    }

    /// Two pool names whose latest samples came from one server vote once: the newer one.
    #[tokio::test]
    async fn one_server_votes_once_across_rounds() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FakeClock {
            base: floor::build_time() + SignedDuration::from_secs(86_400),
            offset_ns: AtomicI64::new(0),
            rtc_ns: Mutex::new(None),
        });
        let (handle, _fut) = daemon(dir.path(), &clock).start().unwrap();
        let hour = SignedDuration::from_secs(3600);
        for _ in 0..3 {
            run_with_sample(&handle, hour);
        }
        let mut s = handle.0.lock().unwrap();
        let liar: std::net::SocketAddr = "192.0.2.9:123".parse().unwrap();
        let other: std::net::SocketAddr = "192.0.2.10:123".parse().unwrap();
        s.sources[0].last_addr = Some(liar);
        s.sources[1].last_addr = Some(liar);
        s.sources[2].last_addr = Some(other);
        if let Some(l) = s.sources[1].last.as_mut() {
            l.1 = l.1 + SignedDuration::from_secs(64);
        }
        assert!(
            superseded(&s.sources, 0),
            "the older sample of the same server"
        );
        assert!(!superseded(&s.sources, 1));
        assert!(!superseded(&s.sources, 2));
        s.sources[1].last = s.sources[0].last;
        assert!(!superseded(&s.sources, 0), "a tie keeps the first source");
        assert!(superseded(&s.sources, 1));
        s.sources[1].kind = SourceKind::Nts;
        assert!(!superseded(&s.sources, 1), "only sources of one kind");
    }

    /// A pool name is resolved once and its address asked at the next polls; the name is
    /// resolved again after an hour, on any Kiss-o'-Death, after a few silent polls, on an
    /// unusable answer, and when another name of the pool keeps the same server.
    #[test]
    fn a_pool_name_is_resolved_hourly_or_when_its_server_fails() {
        let mut run = SourceRun {
            spec: "0.pool.example".parse().unwrap(),
            kind: SourceKind::Ntp,
            roughtime: None,
            auth_failures: 0,
            policy: PollPolicy::default(),
            next_due: MonoInstant::ZERO,
            last: None,
            filter: ClockFilter::new(),
            last_addr: None,
            reach: 0,
            verdict: Verdict::NoReply,
            reason: String::new(),
            kod: None,
            requests: 0,
            answer: crate::tally::Answer::Silent,
            resolved: None,
            silent: 0,
        };
        let a: std::net::SocketAddr = "192.0.2.7:123".parse().unwrap();
        let b: std::net::SocketAddr = "[2001:db8::8]:1123".parse().unwrap();
        let report = |address, answered: bool, kiss, verdict| crate::sync::SourceReport {
            server: run_spec(),
            kind: SourceKind::Ntp,
            auth_failures: 0,
            address,
            sample: answered.then(|| trusttime_core::ntp::Sample {
                offset: SignedDuration::ZERO,
                delay: SignedDuration::from_millis(1),
                root_delay: SignedDuration::ZERO,
                root_dispersion: SignedDuration::ZERO,
                precision: SignedDuration::ZERO,
                stratum: 2,
                leap: trusttime_core::ntp::LeapIndicator::NoWarning,
                reference_id: [0; 4],
                server_time: UnixTime::from_secs(1_800_000_000),
                received_at: trusttime_core::Now {
                    mono: MonoInstant::ZERO,
                    wall: UnixTime::from_secs(1_800_000_000),
                },
            }),
            verdict,
            reason: String::new(),
            kiss,
            answer: crate::tally::Answer::Silent,
        };
        let ok = |addr| report(Some(addr), true, None, Verdict::Agreed);
        let silent = |addr| report(Some(addr), false, None, Verdict::NoReply);
        let t0 = MonoInstant::from_nanos(1_000_000_000);
        let min = |m: i64| t0 + SignedDuration::from_secs(60 * m);
        // The first poll asks the name; the next ones its address, for an hour.
        assert_eq!(run.server_to_ask(t0), run_spec());
        run.after_poll(&ok(a), false, t0);
        let by_addr = ServerSpec {
            host: "192.0.2.7".into(),
            port: 123,
        };
        for m in [1, 17, 59] {
            assert_eq!(run.server_to_ask(min(m)), by_addr, "kept at minute {m}");
            run.after_poll(&ok(a), false, min(m));
        }
        assert_eq!(
            run.server_to_ask(min(60)),
            run_spec(),
            "resolved again after an hour"
        );
        run.after_poll(&ok(b), false, min(60));
        assert_eq!(
            run.server_to_ask(min(61)).to_string(),
            "[2001:db8::8]:1123",
            "an IPv6 address and port are kept as given"
        );
        // Silent polls: the address is kept for three, dropped at the fourth.
        for m in 61..61 + i64::from(RESOLVE_AFTER_SILENT) - 1 {
            run.server_to_ask(min(m));
            run.after_poll(&silent(b), false, min(m));
            assert_eq!(run.resolved.map(|r| r.0), Some(b), "minute {m}");
        }
        run.server_to_ask(min(70));
        run.after_poll(&silent(b), false, min(70));
        assert_eq!(run.server_to_ask(min(71)), run_spec(), "silent too long");
        // A reply resets the count of silent polls.
        run.after_poll(&silent(a), false, min(71));
        run.after_poll(&ok(a), false, min(72));
        run.after_poll(&silent(a), false, min(73));
        assert_eq!(run.silent, 1);
        // Every Kiss-o'-Death, RATE included, drops the server.
        for code in [KissCode::Rate, KissCode::Deny, KissCode::Rstr] {
            run.server_to_ask(min(80));
            run.after_poll(&ok(a), false, min(80));
            assert!(run.resolved.is_some());
            run.after_poll(
                &report(Some(a), false, Some(code), Verdict::KissOfDeath),
                false,
                min(81),
            );
            assert_eq!(run.server_to_ask(min(82)), run_spec(), "{code}");
        }
        // An unusable answer, or the server another name keeps: ask the name again.
        for verdict in [Verdict::Invalid, Verdict::Duplicate] {
            run.after_poll(&ok(a), false, min(90));
            run.after_poll(&report(Some(a), false, None, verdict), false, min(91));
            assert_eq!(run.server_to_ask(min(92)), run_spec(), "{verdict:?}");
        }
        run.after_poll(&ok(a), true, min(93));
        assert_eq!(
            run.server_to_ask(min(94)),
            run_spec(),
            "taken by another name"
        );
        // A DNS failure keeps nothing.
        run.after_poll(&report(None, false, None, Verdict::NoReply), false, min(95));
        assert_eq!(run.resolved, None);
        // An address, an NTS or a Roughtime source is never touched.
        let mut literal = run.clone();
        literal.spec = "192.0.2.1".parse().unwrap();
        literal.after_poll(&ok(a), false, min(96));
        assert_eq!(literal.resolved, None);
        let mut nts = run.clone();
        nts.kind = SourceKind::Nts;
        nts.after_poll(&ok(a), false, min(96));
        assert_eq!(nts.resolved, None);
    }

    fn run_spec() -> ServerSpec {
        "0.pool.example".parse().unwrap()
    }

    /// A hand-set time that steps the clock shifts the stored samples like a network step.
    #[tokio::test]
    async fn a_manual_step_shifts_stored_samples() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FakeClock {
            base: floor::build_time() + SignedDuration::from_secs(86_400),
            offset_ns: AtomicI64::new(0),
            rtc_ns: Mutex::new(None),
        });
        let (handle, _fut) = daemon(dir.path(), &clock).start().unwrap();
        // A source measured the truth 1 h ahead of the device clock (no consensus yet).
        let hour = SignedDuration::from_secs(3600);
        run_with_sample(&handle, hour);
        let truth = handle.1.now().wall + hour;
        handle
            .set_manual(truth.as_millis(), 1000, false, "test")
            .unwrap();
        // The clock was stepped by an hour, and the sample now says ~0.
        let stepped = SignedDuration::from_nanos(clock.offset_ns.load(Ordering::SeqCst));
        assert!(
            (stepped - hour).abs() < SignedDuration::from_secs(1),
            "{stepped:?}"
        );
        let s = handle.0.lock().unwrap();
        let (iv, _, _) = s.sources[0].last.unwrap();
        assert!(
            iv.midpoint().abs() < SignedDuration::from_secs(1),
            "sample still measured against the old clock: {iv:?}"
        );
        let kept = s.sources[0]
            .filter
            .best(handle.1.now().mono, 50, SignedDuration::from_secs(3600))
            .unwrap();
        assert!(kept.offset.midpoint().abs() < SignedDuration::from_secs(1));
        drop(s);
        // Persisted as a hand-set hint: the floor is untouched.
        let st = state::load(&dir.path().join("state")).unwrap().unwrap();
        assert_eq!(st.provenance, "manual");
        assert_eq!(st.floor_ns, Some(floor::build_time().as_nanos()));
    }

    /// After a network step the RTC gets the true time, not the stepped clock plus the step.
    #[tokio::test]
    async fn the_rtc_is_written_with_the_true_time_after_a_step() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FakeClock {
            base: floor::build_time() + SignedDuration::from_secs(86_400),
            offset_ns: AtomicI64::new(0),
            rtc_ns: Mutex::new(None),
        });
        let d = daemon(dir.path(), &clock);
        let (handle, _fut) = daemon(dir.path(), &clock).start().unwrap();
        let step = SignedDuration::from_secs(20 * 365 * 86_400);
        let now = handle.1.now();
        let truth = now.wall + step;
        if let Ok(mut s) = handle.0.lock() {
            let _ = s.sys.on_consensus(
                now,
                OffsetInterval::around(step, SignedDuration::from_millis(2)),
                false,
            );
        }
        d.apply(Action::Step(step), &handle);
        carry_out(&handle);
        let written = clock.rtc_ns.lock().unwrap().unwrap();
        assert!(
            (written - truth).abs() < SignedDuration::from_secs(1),
            "RTC written with {written}, true time {truth}"
        );
        let st = state::load(&dir.path().join("state")).unwrap().unwrap();
        assert_eq!(st.rtc_set_ns, Some(written.as_nanos()));
    }
}
