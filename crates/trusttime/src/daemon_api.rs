//! The daemon as its observers see it: a typed [`Snapshot`] that the daemon publishes on a
//! `tokio::sync::watch` channel after every change (poll round, hand-set time, floor reset),
//! and [`Command`]s sent to it with a reply channel. The control socket, the web page, the
//! metrics endpoint and the clock-health reports hold a [`DaemonLink`] and never the daemon
//! itself, so none of them imports `daemon` (and `daemon` may start them all).
//!
//! A snapshot holds facts (the trust machine, instants, verdicts); what depends on the time
//! of reading (the uncertainty growing in holdover, seconds to the next poll, the system
//! clock) is computed when it is rendered, by [`Snapshot::status`] and [`Snapshot::sources`]
//! at a given [`Now`]. JSON exists only at the edges (control socket, web API, reports):
//! the renderings are the documented types of [`crate::json`].

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use trusttime_core::ntp::KissCode;
use trusttime_core::select::OffsetInterval;
use trusttime_core::system::ManualError;
use trusttime_core::trust::{TrustMachine, TrustState};
use trusttime_core::{Human, MonoInstant, Now, Provenance, SignedDuration, UnixTime};

use crate::clock::LocalClock;
use crate::json;
use crate::spec::{SourceKind, Verdict};
use crate::tally::Answer;

/// What the daemon knows, as of its last change.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The trust machine (trusted interval, its state and drift bound at any instant).
    pub trust: TrustMachine,
    /// The floor: the time never goes below it.
    pub floor: UnixTime,
    /// The daemon never changes the clock.
    pub observe_only: bool,
    /// The system clock at the last consensus.
    pub last_sync: Option<UnixTime>,
    /// When the next poll is due.
    pub next_poll: Option<MonoInstant>,
    /// Start-up notes and overridden hints.
    pub notes: Vec<String>,
    /// Sources in the last consensus.
    pub agreed: u8,
    /// Manual changes since start, oldest first.
    pub manual_changes: Vec<json::ManualChange>,
    /// Purposes for which only authenticated time counts.
    pub require_authenticated: Vec<String>,
    /// Unauthenticated sources that disagree with the authenticated consensus.
    pub unauthenticated_disagree: Vec<String>,
    /// The last poll round's answers, in words.
    pub last_round: Option<String>,
    /// The last hint a network consensus overrode, in words.
    pub hint_overridden: Option<String>,
    /// Signed Roughtime evidence that a server lies (the last 20, oldest first).
    pub chain_violations: Vec<json::ChainViolation>,
    /// How the HTTPS Date constraints were combined in the last round that asked them.
    pub constraint: Option<json::ConstraintDecision>,
    /// Every configured source.
    pub sources: Vec<SourceView>,
}

/// One source as observers see it.
#[derive(Clone, Debug)]
pub struct SourceView {
    /// As configured.
    pub address: String,
    /// Its kind.
    pub kind: SourceKind,
    /// Replies that failed authentication.
    pub auth_failures: u32,
    /// The last verdict.
    pub verdict: Verdict,
    /// The reason in words.
    pub reason: String,
    /// The reach register (bit 0: the last poll answered).
    pub reach: u8,
    /// The sample the source contributes.
    pub last: Option<LastSample>,
    /// Poll exponent (log2 seconds).
    pub poll: i8,
    /// When it is asked next (`None` once a Kiss-o'-Death stopped it).
    pub next_due: Option<MonoInstant>,
    /// The Kiss-o'-Death code it sent.
    pub kiss_code: Option<KissCode>,
    /// Requests sent.
    pub requests: u64,
    /// How it took part in its last poll.
    pub answer: Answer,
}

/// A source's sample: its offset interval, when it was taken, and the round-trip delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastSample {
    /// True time minus the local clock lies in here.
    pub offset: OffsetInterval,
    /// When it was taken.
    pub at: MonoInstant,
    /// Round-trip delay.
    pub delay: SignedDuration,
}

impl Snapshot {
    /// Nothing known but the trust machine and the floor.
    #[must_use]
    pub fn new(trust: TrustMachine, floor: UnixTime) -> Self {
        Snapshot {
            trust,
            floor,
            observe_only: false,
            last_sync: None,
            next_poll: None,
            notes: Vec::new(),
            agreed: 0,
            manual_changes: Vec::new(),
            require_authenticated: Vec::new(),
            unauthenticated_disagree: Vec::new(),
            last_round: None,
            hint_overridden: None,
            chain_violations: Vec::new(),
            constraint: None,
            sources: Vec::new(),
        }
    }

    /// The `status` reply at `now`.
    #[must_use]
    pub fn status(&self, now: Now) -> json::Status {
        let t = self.trust.current(now.mono);
        let state = self.trust.state(now.mono);
        let known = state != TrustState::Unknown;
        json::Status {
            state: state.as_str().to_owned(),
            provenance: t.provenance.into(),
            authenticated: t.provenance == Provenance::Authenticated,
            earliest: known.then(|| t.interval.earliest.into()),
            latest: known.then(|| t.interval.latest.into()),
            offset_s: known.then(|| (t.interval.midpoint() - now.wall).as_secs_f64()),
            uncertainty_s: known.then(|| t.uncertainty().as_secs_f64()),
            floor: self.floor.into(),
            system_time: now.wall.into(),
            last_sync: self.last_sync.map(Into::into),
            next_poll_in_s: self
                .next_poll
                .map(|n| n.since(now.mono).as_secs_f64().max(0.0)),
            freq_ppm: self.trust.freq_ppb().map(|p| p as f64 / 1000.0),
            drift_bound_ppm: self.trust.config().drift_ppm,
            agreed: u32::from(self.agreed),
            falsetickers: self
                .sources
                .iter()
                .filter(|r| r.verdict == Verdict::Falseticker)
                .count()
                .try_into()
                .unwrap_or(u32::MAX),
            require_authenticated: self.require_authenticated.clone(),
            unauthenticated_disagree: self.unauthenticated_disagree.clone(),
            observe_only: self.observe_only,
            notes: self.notes.clone(),
            manual_changes: self.manual_changes.clone(),
            last_round: self.last_round.clone(),
            hint_overridden: self.hint_overridden.clone(),
            chain_violations: self.chain_violations.clone(),
            constraint: self.constraint.clone(),
            verdict: verdict_line(
                state,
                &t,
                self.agreed,
                self.sources.len(),
                self.floor,
                &self.unauthenticated_disagree,
                self.last_round.as_deref(),
            ),
        }
    }

    /// The `sources` reply at `now`.
    #[must_use]
    pub fn sources(&self, now: Now) -> json::Sources {
        json::Sources {
            sources: self.sources.iter().map(|r| r.render(now.mono)).collect(),
            last_round: self.last_round.clone(),
        }
    }

    /// The daemon's trusted time at `now`, for TLS connections made from inside the daemon:
    /// unknown (so the verifier refuses) when the config asks for authenticated time for TLS
    /// and the time is not.
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn clock_reading(&self, now: Now) -> trusttime_tls::ClockReading {
        let trusted = self.trust.current(now.mono);
        if self.require_authenticated.iter().any(|p| p == "tls")
            && trusted.provenance != Provenance::Authenticated
        {
            return trusttime_tls::ClockReading::untrusted(now.wall, self.floor);
        }
        trusttime_tls::ClockReading {
            device: now.wall,
            trusted,
        }
    }
}

impl SourceView {
    /// As `sources` shows it at `now`.
    #[must_use]
    pub fn render(&self, now: MonoInstant) -> json::DaemonSource {
        json::DaemonSource {
            address: self.address.clone(),
            kind: self.kind.into(),
            authenticated: self.kind.is_authenticated(),
            auth_failures: self.auth_failures,
            verdict: self.verdict.into(),
            reason: self.reason.clone(),
            reach: format!("{:03o}", self.reach),
            offset_s: self.last.map(|l| l.offset.midpoint().as_secs_f64()),
            error_s: self.last.map(|l| l.offset.radius().as_secs_f64()),
            delay_s: self.last.map(|l| l.delay.as_secs_f64()),
            age_s: self.last.map(|l| now.since(l.at).as_secs_f64()),
            poll: self.poll,
            next_poll_in_s: self.next_due.map(|n| n.since(now).as_secs_f64().max(0.0)),
            kiss_code: self.kiss_code.map(|k| k.to_string()),
            requests: self.requests,
            answer: (&self.answer).into(),
            rejected_why: self.answer.why().map(str::to_owned),
        }
    }
}

/// `status`'s one line in words.
#[must_use]
pub fn verdict_line(
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

/// A time to set by hand: `unix_ms ± uncertainty_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetTime {
    /// The time, Unix milliseconds.
    pub unix_ms: i64,
    /// Its uncertainty, milliseconds.
    pub uncertainty_ms: i64,
    /// Override a network-trusted interval (only if the config allows it).
    pub force: bool,
}

/// What a client may ask of the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// The trusted time and how it was obtained.
    Status,
    /// Every source and how it took part.
    Sources,
    /// Set the time by hand.
    Set(SetTime),
    /// Reset the floor to the build time and forget every trusted time (root only), then
    /// set the time by hand if one is given.
    ResetFloor {
        /// The time to set afterwards.
        then: Option<SetTime>,
    },
}

impl Command {
    /// The commands' names on the control socket, for error messages.
    pub const KNOWN: &'static str =
        "status, sources, set (with `unix_ms`, or `reset_floor: true` to reset the floor)";
}

/// The daemon's answer to a [`Command`], serialised at the edge.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Reply {
    /// To [`Command::Status`].
    Status(Box<json::Status>),
    /// To [`Command::Sources`].
    Sources(json::Sources),
    /// To [`Command::Set`] and [`Command::ResetFloor`].
    Changed(json::Changed),
}

/// The largest uncertainty a person may claim.
pub const MAX_MANUAL_UNCERTAINTY: SignedDuration = SignedDuration::from_secs(7 * 86_400);

/// The latest time a person may set (3000-01-01T00:00:00Z), Unix milliseconds.
pub const MAX_MANUAL_TIME_MS: i64 = 32_503_680_000_000;

/// Why a hand-set time was refused; nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetError {
    /// The uncertainty is negative or over [`MAX_MANUAL_UNCERTAINTY`].
    #[error("uncertainty must be 0 .. {} ms (got {uncertainty_ms} ms)", MAX_MANUAL_UNCERTAINTY.as_millis())]
    Uncertainty {
        /// As requested.
        uncertainty_ms: i64,
    },
    /// The time is before 1970 or after 3000.
    #[error("time must be between 1970 and 3000 (got {unix_ms} ms since 1970)")]
    Time {
        /// As requested.
        unix_ms: i64,
    },
    /// The rules for hand-set time refused it (below the floor, outside or looser than the
    /// network-trusted interval, force not allowed).
    #[error("{}", refusal(*requested, *uncertainty, why))]
    Refused {
        /// The time requested.
        requested: UnixTime,
        /// Its uncertainty.
        uncertainty: SignedDuration,
        /// Why, with the floor or the network-trusted interval it ran into.
        why: ManualError,
    },
    /// The daemon's state cannot be reached (it is stopping).
    #[error("status unavailable")]
    Unavailable,
}

fn refusal(requested: UnixTime, uncertainty: SignedDuration, why: &ManualError) -> String {
    match why {
        ManualError::ForceNotAllowed => why.to_string(),
        _ => format!("{requested} ± {} is {why}", Human(uncertainty)),
    }
}

/// Why a command was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// A hand-set time was refused.
    #[error(transparent)]
    Set(#[from] SetError),
    /// A floor reset asked by someone other than root.
    #[error("resetting the floor is for root only ({who})")]
    NotRoot {
        /// Who asked.
        who: String,
    },
    /// The daemon no longer takes commands (it is stopping).
    #[error("the daemon is stopping")]
    Stopped,
}

/// A command on its way to the daemon, with who sent it and where the reply goes.
#[derive(Debug)]
pub struct CommandCall {
    /// The command.
    pub command: Command,
    /// Who asked, as logged and shown in `status` (`control socket, uid 0`,
    /// `web page, 192.0.2.1`).
    pub who: String,
    /// Where the daemon sends its answer.
    pub reply: oneshot::Sender<Result<Reply, CommandError>>,
}

/// How observers reach the daemon: its latest snapshot, rendered at read time, and a
/// channel for commands. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DaemonLink {
    status: watch::Receiver<Arc<Snapshot>>,
    commands: mpsc::Sender<CommandCall>,
    clock: Arc<dyn LocalClock>,
}

impl DaemonLink {
    /// A link over the daemon's `status` channel and `commands` queue; snapshots are
    /// rendered at `clock`'s time.
    #[must_use]
    pub fn new(
        status: watch::Receiver<Arc<Snapshot>>,
        commands: mpsc::Sender<CommandCall>,
        clock: Arc<dyn LocalClock>,
    ) -> Self {
        DaemonLink {
            status,
            commands,
            clock,
        }
    }

    /// The latest published snapshot.
    #[must_use]
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.status.borrow())
    }

    /// The `status` reply, now.
    #[must_use]
    pub fn status(&self) -> json::Status {
        self.snapshot().status(self.clock.now())
    }

    /// The `sources` reply, now.
    #[must_use]
    pub fn sources(&self) -> json::Sources {
        self.snapshot().sources(self.clock.now())
    }

    /// Carries out `command` for `who`: `status` and `sources` from the latest snapshot,
    /// changes by the daemon (which publishes a new snapshot before it answers).
    ///
    /// # Errors
    /// [`CommandError`]: refused, or the daemon is stopping.
    pub async fn execute(&self, command: Command, who: &str) -> Result<Reply, CommandError> {
        match command {
            Command::Status => Ok(Reply::Status(Box::new(self.status()))),
            Command::Sources => Ok(Reply::Sources(self.sources())),
            Command::Set(_) | Command::ResetFloor { .. } => {
                let (reply, answer) = oneshot::channel();
                let call = CommandCall {
                    command,
                    who: who.to_owned(),
                    reply,
                };
                self.commands
                    .send(call)
                    .await
                    .map_err(|_| CommandError::Stopped)?;
                answer.await.map_err(|_| CommandError::Stopped)?
            }
        }
    }
}

/// The daemon's trusted time as a [`trusttime_tls::TrustedClock`], for TLS connections made
/// from inside the daemon (clock health reports).
#[cfg(feature = "tls")]
impl trusttime_tls::TrustedClock for DaemonLink {
    fn read(&self) -> trusttime_tls::ClockReading {
        self.snapshot().clock_reading(self.clock.now())
    }
}
