//! The daemon's state that `status` and `sources` report, and its publication: after every
//! change the daemon publishes a typed [`Snapshot`] that observers read through a
//! [`DaemonLink`] (see [`crate::daemon_api`]).

#[allow(unused_imports)]
use super::*;

use crate::daemon_api::Snapshot;

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
    pub(super) manual_log: std::collections::VecDeque<crate::json::ManualChange>,
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
    pub(super) chain_violations: std::collections::VecDeque<crate::json::ChainViolation>,
    /// The Roughtime sources: one chain asked across polls.
    pub(super) roughtime: Option<RoughtimeRun>,

    /// How the HTTPS Date constraints were combined in the last round that asked them.
    pub(super) constraint: Option<crate::sync::ConstraintDecision>,
    /// Where snapshots are published for observers.
    pub(super) published: tokio::sync::watch::Sender<Arc<Snapshot>>,
}

/// Handle to the running daemon's state (for the run loop, tests and embedding); observers
/// use [`StatusHandle::link`].
#[derive(Clone, Debug)]
pub struct StatusHandle(
    pub(super) Arc<Mutex<Status>>,
    pub(super) Arc<dyn LocalClock>,
    pub(super) DaemonLink,
);

impl StatusHandle {
    /// How observers (control socket, web page, metrics, reports) reach the daemon.
    #[must_use]
    pub fn link(&self) -> DaemonLink {
        self.2.clone()
    }

    /// Publishes the current state for observers: after every change.
    pub(super) fn publish(&self) {
        if let Ok(s) = self.0.lock() {
            s.published.send_replace(Arc::new(s.snapshot()));
        }
    }
}

impl Status {
    /// The facts observers see (what depends on the time of reading is left to them).
    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            trust: self.sys.trust().clone(),
            floor: self.sys.floor(),
            observe_only: self.observe_only,
            last_sync: self.last_sync_wall,
            next_poll: self.next_poll,
            notes: self.notes.clone(),
            agreed: self.agreed,
            manual_changes: self.manual_log.iter().cloned().collect(),
            require_authenticated: self.require_authenticated.clone(),
            unauthenticated_disagree: self.disagreeing.clone(),
            last_round: self.last_round.clone(),
            hint_overridden: self.sys.last_override().map(|o| o.to_string()),
            chain_violations: self.chain_violations.iter().cloned().collect(),
            constraint: self.constraint.as_ref().map(constraint_view),
            sources: self.sources.iter().map(source_view).collect(),
        }
    }
}

/// A source as observers see it: the one place that reads a [`SourceRun`] for them.
pub(super) fn source_view(r: &SourceRun) -> SourceView {
    SourceView {
        address: r.spec.to_string(),
        kind: r.kind,
        auth_failures: r.auth_failures,
        verdict: r.verdict,
        reason: r.reason.clone(),
        reach: r.reach,
        last: r
            .last
            .map(|(offset, at, delay)| LastSample { offset, at, delay }),
        poll: r.policy.poll_exponent(),
        next_due: r.policy.stopped_by().is_none().then_some(r.next_due),
        kiss_code: r.kod,
        requests: r.requests,
        answer: r.answer.clone(),
    }
}

/// The HTTPS Date decision as `status` shows it (the same fields as `sync --json`).
pub(super) fn constraint_view(
    c: &crate::sync::ConstraintDecision,
) -> crate::json::ConstraintDecision {
    use crate::json::{ConstraintDecision as J, ConstraintDecisionKind as K};
    use crate::sync::ConstraintDecision as C;
    let none = |decision| J {
        decision,
        offset_lo_s: None,
        offset_hi_s: None,
        agreeing: None,
        answered: None,
        outvoted: None,
        reason: None,
    };
    let count = |n: usize| Some(u32::try_from(n).unwrap_or(u32::MAX));
    match c {
        C::NotAsked => none(K::NotAsked),
        C::NoneAnswered => none(K::NoneAnswered),
        C::Applied {
            interval,
            agreeing,
            answered,
            outvoted,
        } => J {
            offset_lo_s: Some(interval.lo.as_secs_f64()),
            offset_hi_s: Some(interval.hi.as_secs_f64()),
            agreeing: count(*agreeing),
            answered: count(*answered),
            outvoted: Some(outvoted.clone()),
            ..none(K::Applied)
        },
        C::Refused(why) => J {
            reason: Some(why.clone()),
            ..none(K::Refused)
        },
    }
}
