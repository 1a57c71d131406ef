//! What `status` and `sources` report, and the daemon's time for its own TLS connections.

#[allow(unused_imports)]
use super::*;

/// Everything `status` and `sources` report.
#[derive(Debug)]
pub(super) struct Status {
    /// The owner of the time: floor, manual time, RTC and persistence rules.
    pub(super) sys: System,
    pub(super) sources: Vec<SourceRun>,
    pub(super) observe_only: bool,
    pub(super) last_sync_wall: Option<UnixTime>,
    pub(super) next_poll: Option<MonoInstant>,
    pub(super) notes: Vec<String>,
    pub(super) agreed: u8,
    pub(super) manual_log: std::collections::VecDeque<Value>,
    pub(super) state_dir: std::path::PathBuf,
    pub(super) control: Option<Arc<dyn ClockControl>>,
    /// The RTC to write (none when observe-only).
    pub(super) rtc: Option<Arc<dyn Rtc>>,
    /// Purposes for which only authenticated time counts.
    pub(super) require_authenticated: Vec<String>,
    /// Unauthenticated sources that disagree with the authenticated consensus.
    pub(super) disagreeing: Vec<String>,
    /// The last poll round's answers, in the tally's words.
    pub(super) last_round: Option<String>,
    /// Signed Roughtime evidence that a server lies (the last 20).
    pub(super) chain_violations: std::collections::VecDeque<String>,
    /// How the HTTPS Date constraints were combined in the last round that asked them.
    pub(super) constraint: Option<Value>,
}

/// Handle to the running daemon's status (for tests and embedding).
#[derive(Clone, Debug)]
pub struct StatusHandle(
    pub(super) Arc<Mutex<Status>>,
    pub(super) Arc<dyn LocalClock>,
);

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

pub(super) fn verdict_line(
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

pub(super) fn verdict_words(
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
