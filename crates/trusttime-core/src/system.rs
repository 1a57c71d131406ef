//! The owner of the device's time: the rules for the floor, hand-set time, the RTC and
//! persistence, in one sans-IO type that the daemon and the simulator both drive.
//!
//! [`System`] wraps the [`TrustMachine`] and keeps the invariants that span more than one
//! event. It never touches a clock, a disk or an RTC: it queues [`Action`]s that the driver
//! carries out (take them with [`System::poll_action`] after every call).
//!
//! ## The rules
//!
//! | rule | where |
//! |---|---|
//! | The persisted floor is raised only by authenticated time (NTS, Roughtime). Plain NTP (one on-path attacker moves every server at once), a hand-set time and the RTC are persisted as a *hint*: holdover that a later network consensus overrides ([`Action::HintOverridden`]). | [`System::snapshot`], [`System::on_consensus`] |
//! | A hand-set time is used only inside the network-trusted interval (the last network consensus, aged by the drift bound, however much time was set by hand since), or when there is none (then it is `manual` holdover); it never replaces a tighter network time; `force` (allowed by the config) overrides and is reported as forced. | [`System::set_manual`] |
//! | The RTC is written with the true time (the trusted interval's midpoint), never the wall clock plus the step, and when it was written is persisted. | [`Action::WriteRtc`], [`System::rtc_written`] |
//! | State is persisted on the first consensus, on every manual change and on a clean stop, otherwise at most every [`PERSIST_EVERY`]. | [`Action::Persist`] |
//! | Across a restart within one boot the elapsed time comes from the monotonic clock; across a reboot from the wall clock only when the RTC was set by trusttime and reads sane; otherwise the persisted time is a floor if it was authenticated and only a hint if not. | [`System::restore`] |
//! | A wrong floor is reset only by an explicit, logged operator command. | [`System::reset_floor`] |

use core::fmt;

use crate::select::OffsetInterval;
use crate::time::{MonoInstant, Now, Provenance, SignedDuration, TimeInterval, UnixTime};
use crate::trust::{TrustConfig, TrustMachine, TrustState};

/// State is persisted at most this often after a consensus (besides the first consensus,
/// manual changes and a clean stop): flash storage wears with every write.
pub const PERSIST_EVERY: SignedDuration = SignedDuration::from_secs(600);

/// Something the driver must do, in the order given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Step the system clock by this much (a hand-set time). Samples measured against the old
    /// clock must be shifted by the same amount, exactly as for a step after a consensus.
    Step(SignedDuration),
    /// Write the RTC with this time (the true time now), then call [`System::rtc_written`].
    WriteRtc {
        /// The time to write.
        time: UnixTime,
    },
    /// Slew the system clock by this much (after a consensus). Until it completes, a stored
    /// sample may be measured against the old clock or the new one.
    Slew(SignedDuration),
    /// Save [`System::snapshot`] to stable storage.
    Persist,
    /// The time is trusted for the first time in this run: tell the service manager
    /// (`READY=1`).
    NotifyReady,
    /// A network consensus disagreed with the holdover hint it replaced (log it).
    HintOverridden(Override),
}

/// A network consensus that replaced a disagreeing hint (RTC, persisted unauthenticated time,
/// a hand-set time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Override {
    /// The hint as it stood.
    pub hint: TimeInterval,
    /// Where the hint came from.
    pub provenance: Provenance,
    /// The consensus that replaced it.
    pub consensus: TimeInterval,
    /// Whether the consensus rests on authenticated sources.
    pub authenticated: bool,
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} consensus {} overrides the {} hint {}, which it contradicts",
            if self.authenticated {
                "authenticated"
            } else {
                "NTP"
            },
            self.consensus,
            self.provenance.as_str(),
            self.hint
        )
    }
}

/// Settings of a [`System`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemConfig {
    /// The trust machine's settings; `floor` is the build-time floor.
    pub trust: TrustConfig,
    /// `force` may override the network-trusted interval for a hand-set time.
    pub allow_manual_force: bool,
    /// There is an RTC to write after the clock was disciplined.
    pub has_rtc: bool,
    /// Discipline the system clock after a consensus (false: observe-only, no step or slew).
    pub discipline: bool,
    /// After a consensus, an offset larger than this is stepped (once per run, and again
    /// when a consensus contradicts what was trusted); anything else is slewed, at most
    /// [`MAX_SLEW`] per consensus.
    pub step_threshold: SignedDuration,
}

/// The most a consensus slews the clock by (adjtime's comfortable range); a larger error
/// after the first step is slewed over several consensuses.
pub const MAX_SLEW: SignedDuration = SignedDuration::from_millis(500);

/// What survives a restart (the driver stores it; see [`System::snapshot`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The system wall clock when saved.
    pub saved_wall: UnixTime,
    /// The floor: the build time, raised only by authenticated time.
    pub floor: UnixTime,
    /// The trusted interval when saved (`None` when only the floor was known).
    pub interval: Option<TimeInterval>,
    /// Where that interval came from.
    pub provenance: Provenance,
    /// The true time when trusttime last wrote the RTC.
    pub rtc_set: Option<UnixTime>,
    /// Frequency estimate, ppb.
    pub freq_ppb: Option<i64>,
}

/// How much time passed since a [`Snapshot`] was saved, as far as the driver can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinceSave {
    /// The same boot (the boot id matches): the monotonic clock's elapsed time, exact.
    SameBoot(SignedDuration),
    /// After a reboot, with an RTC that trusttime set and that reads sane: the wall clock's
    /// elapsed time (the wall clock came from that RTC).
    TrustedRtc(SignedDuration),
    /// After a reboot without a trusted RTC, or nothing is known.
    Unknown,
}

/// What [`System::restore`] made of a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restored {
    /// Nothing but (possibly) the floor was saved.
    FloorOnly,
    /// The saved interval, carried forward and widened by the drift bound, is holdover.
    Holdover(TimeInterval),
    /// The elapsed time is unknown: the authenticated time is kept as the floor only.
    AuthenticatedFloorOnly(UnixTime),
    /// The elapsed time is unknown and the saved time was not authenticated: a hint only,
    /// not used (the time is probably later than this).
    HintUnused(UnixTime),
    /// The carried-forward interval lies below the floor: ignored.
    BelowFloor,
}

impl fmt::Display for Restored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Restored::FloorOnly => f.write_str("persisted state has no trusted time"),
            Restored::Holdover(iv) => write!(f, "persisted time carried forward: {iv}"),
            Restored::AuthenticatedFloorOnly(t) => write!(
                f,
                "rebooted without a trusted RTC: the persisted authenticated time {t} is used as the floor only"
            ),
            Restored::HintUnused(t) => write!(
                f,
                "rebooted without a trusted RTC: the persisted unauthenticated time {t} is a hint only and not used"
            ),
            Restored::BelowFloor => f.write_str("persisted time lies below the floor: ignored"),
        }
    }
}

/// Why a hand-set time was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManualError {
    /// It lies entirely below the floor.
    BelowFloor {
        /// The floor.
        floor: UnixTime,
    },
    /// It lies outside the network-trusted interval, and `force` was not given.
    OutsideNetwork {
        /// The network-trusted interval now.
        network: TimeInterval,
    },
    /// `force` was given but the config does not allow it.
    ForceNotAllowed,
    /// It is looser than the network time it would replace, and `force` was not given.
    LooserThanNetwork {
        /// The network-trusted interval now.
        network: TimeInterval,
    },
}

impl fmt::Display for ManualError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManualError::BelowFloor { floor } => write!(
                f,
                "below the floor {floor}: refused (the clock never goes below the floor; if the floor itself is wrong, see `trusttime set --reset-floor`)"
            ),
            ManualError::OutsideNetwork { network } => write!(
                f,
                "outside the network-trusted interval {} .. {}: refused (send force to override, if the config allows it)",
                network.earliest, network.latest
            ),
            ManualError::ForceNotAllowed => {
                f.write_str("force is not allowed by the config ([clock] allow-manual-force)")
            }
            ManualError::LooserThanNetwork { network } => write!(
                f,
                "less precise than the network time {network} it would replace: refused (send force to override, if the config allows it)"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ManualError {}

/// An accepted hand-set time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManualChange {
    /// What was trusted before (`None`: only the floor).
    pub old: Option<TimeInterval>,
    /// What is trusted now (the request, narrowed to the network-trusted interval).
    pub new: TimeInterval,
    /// `force` overrode the network-trusted interval.
    pub forced: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NetworkAnchor {
    at: MonoInstant,
    interval: TimeInterval,
}

const QUEUE: usize = 8;

/// The owner of the device's time. See the [module docs](self) for the rules.
#[derive(Clone, Debug)]
pub struct System {
    config: SystemConfig,
    trust: TrustMachine,
    /// The floor from authenticated time (at least the build floor).
    auth_floor: UnixTime,
    network: Option<NetworkAnchor>,
    rtc_set: Option<UnixTime>,
    synced_once: bool,
    last_persist: Option<MonoInstant>,
    last_override: Option<Override>,
    /// A step was made after a consensus in this run (only slews follow, unless a consensus
    /// contradicts what was trusted).
    stepped: bool,
    queue: [Option<Action>; QUEUE],
    head: usize,
    len: usize,
}

impl System {
    /// Nothing known but the build floor (`config.trust.floor`).
    #[must_use]
    pub fn new(config: SystemConfig) -> Self {
        System {
            config,
            trust: TrustMachine::new(config.trust),
            auth_floor: config.trust.floor,
            network: None,
            rtc_set: None,
            synced_once: false,
            last_persist: None,
            last_override: None,
            stepped: false,
            queue: [None; QUEUE],
            head: 0,
            len: 0,
        }
    }

    /// The trust machine (state, current interval, frequency).
    #[must_use]
    pub fn trust(&self) -> &TrustMachine {
        &self.trust
    }

    /// The floor in force: the build time, raised only by authenticated time.
    #[must_use]
    pub fn floor(&self) -> UnixTime {
        self.trust.config().floor
    }

    /// When the RTC was last written by trusttime (true time).
    #[must_use]
    pub fn rtc_set(&self) -> Option<UnixTime> {
        self.rtc_set
    }

    /// The last hint a network consensus overrode, for `status`.
    #[must_use]
    pub fn last_override(&self) -> Option<Override> {
        self.last_override
    }

    /// The next action for the driver, in order. Call after every other method until `None`.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.len == 0 {
            return None;
        }
        let a = self.queue[self.head].take();
        self.head = (self.head + 1) % QUEUE;
        self.len -= 1;
        a
    }

    fn push(&mut self, a: Action) {
        if self.queue.iter().flatten().any(|q| *q == a) {
            return;
        }
        if self.len == QUEUE {
            // The driver did not drain: drop the oldest (never happens with a correct driver).
            let _ = self.poll_action();
        }
        self.queue[(self.head + self.len) % QUEUE] = Some(a);
        self.len += 1;
    }

    /// Restores a snapshot saved before a restart or reboot; call once before anything else.
    pub fn restore(&mut self, now: Now, saved: &Snapshot, since: SinceSave) -> Restored {
        self.auth_floor = self.auth_floor.max(saved.floor);
        self.trust.raise_floor(saved.floor);
        self.rtc_set = saved.rtc_set;
        if let Some(ppb) = saved.freq_ppb {
            self.trust.set_freq_ppb(ppb);
        }
        let Some(iv) = saved.interval else {
            return Restored::FloorOnly;
        };
        let elapsed = match since {
            SinceSave::SameBoot(d) | SinceSave::TrustedRtc(d) if !d.is_negative() => d,
            _ => {
                return if saved.provenance == Provenance::Authenticated {
                    Restored::AuthenticatedFloorOnly(saved.floor)
                } else {
                    Restored::HintUnused(iv.earliest)
                };
            }
        };
        let drift = self.config.trust.drift_ppm;
        let widen = match since {
            // The wall clock came from the RTC, which counts whole seconds: the same margin as
            // `trust::rtc_holdover`.
            SinceSave::TrustedRtc(_) => elapsed
                .drift_bound(drift)
                .saturating_add(SignedDuration::from_secs(1)),
            _ => elapsed.drift_bound(drift),
        };
        let iv = iv.shift(elapsed).widen(widen);
        if self.trust.on_holdover(now.mono, iv, Provenance::Persisted) {
            // A saved network time, carried forward exactly (same boot) or by a trusted RTC,
            // still bounds hand-set time after the restart: a restart must not open the door
            // that the rules for hand-set time keep shut.
            if matches!(
                saved.provenance,
                Provenance::Ntp | Provenance::Authenticated
            ) {
                self.network = Some(NetworkAnchor {
                    at: now.mono,
                    interval: iv,
                });
            }
            Restored::Holdover(iv)
        } else {
            Restored::BelowFloor
        }
    }

    /// A holdover source (the RTC at start): used when nothing better is known. A hint: it
    /// never raises the floor.
    pub fn on_holdover(
        &mut self,
        at: MonoInstant,
        interval: TimeInterval,
        provenance: Provenance,
    ) -> bool {
        self.trust.on_holdover(at, interval, provenance)
    }

    /// A consensus: true time minus local wall time lies in `offset`, measured at `now`.
    /// Replaces any hint (queueing [`Action::HintOverridden`] when it contradicts it) and
    /// queues [`Action::Persist`] on the first consensus and then at most every
    /// [`PERSIST_EVERY`].
    ///
    /// Returns true when the consensus contradicts what was trusted just before (a hint, or an
    /// earlier consensus that was wrong): the driver may then step the clock again instead of
    /// only slewing, so a device stepped to a wrong time follows the honest servers.
    pub fn on_consensus(&mut self, now: Now, offset: OffsetInterval, authenticated: bool) -> bool {
        let before = self.trust.current(now.mono);
        let known = self.trust.state(now.mono) != TrustState::Unknown;
        let hint = known
            && matches!(
                before.provenance,
                Provenance::Rtc | Provenance::Persisted | Provenance::Manual
            );
        self.trust.on_consensus(now, offset, authenticated);
        let after = self.trust.current(now.mono);
        let contradicts = known && before.interval.intersect(&after.interval).is_none();
        if hint && contradicts {
            let o = Override {
                hint: before.interval,
                provenance: before.provenance,
                consensus: after.interval,
                authenticated,
            };
            self.last_override = Some(o);
            self.push(Action::HintOverridden(o));
        }
        self.network = Some(NetworkAnchor {
            at: now.mono,
            interval: after.interval,
        });
        let due = self
            .last_persist
            .map_or(true, |t| now.mono.since(t) >= PERSIST_EVERY);
        if !self.synced_once || due {
            self.push(Action::Persist);
        }
        if contradicts {
            // Step, do not slew for years.
            self.stepped = false;
        }
        self.discipline(now, offset.midpoint());
        if !self.synced_once {
            self.push(Action::NotifyReady);
        }
        self.synced_once = true;
        contradicts
    }

    /// Step once, then slew: queues [`Action::Step`] or [`Action::Slew`] and then
    /// [`Action::WriteRtc`] with the true time.
    fn discipline(&mut self, now: Now, offset: SignedDuration) {
        if !self.config.discipline || offset == SignedDuration::ZERO {
            return;
        }
        if offset.abs() > self.config.step_threshold && !self.stepped {
            if now.wall + offset < self.floor() {
                return;
            }
            self.stepped = true;
            self.push(Action::Step(offset));
        } else {
            let by = if offset.abs() > MAX_SLEW {
                if offset.is_negative() {
                    -MAX_SLEW
                } else {
                    MAX_SLEW
                }
            } else {
                offset
            };
            self.push(Action::Slew(by));
        }
        if self.config.has_rtc && self.trust.state(now.mono) != TrustState::Unknown {
            let time = self.trust.current(now.mono).interval.midpoint();
            self.push(Action::WriteRtc { time });
        }
    }

    /// The RTC was written with `time` (from [`Action::WriteRtc`]).
    pub fn rtc_written(&mut self, time: UnixTime) {
        self.rtc_set = Some(time);
    }

    /// The network-trusted interval at `mono`: the last consensus, aged by the drift bound.
    #[must_use]
    pub fn network_interval(&self, mono: MonoInstant) -> Option<TimeInterval> {
        let a = self.network?;
        let elapsed = mono.since(a.at).max(SignedDuration::ZERO);
        Some(
            a.interval
                .shift(elapsed)
                .widen(elapsed.drift_bound(self.config.trust.drift_ppm))
                .clamp_to_floor(self.floor()),
        )
    }

    /// A time set by a person. On success queues [`Action::Step`] (when the clock is further
    /// off than the stated uncertainty) and [`Action::Persist`].
    ///
    /// # Errors
    /// [`ManualError`] says why nothing changed.
    pub fn set_manual(
        &mut self,
        now: Now,
        requested: TimeInterval,
        force: bool,
    ) -> Result<ManualChange, ManualError> {
        let floor = self.floor();
        if requested.latest < floor {
            return Err(ManualError::BelowFloor { floor });
        }
        let requested = requested.clamp_to_floor(floor);
        let state = self.trust.state(now.mono);
        let current = self.trust.current(now.mono);
        let mut new = requested;
        let mut forced = false;
        if let Some(network) = self.network_interval(now.mono) {
            let network_now = current.provenance.is_synced();
            match network.intersect(&requested) {
                None => {
                    if !force {
                        return Err(ManualError::OutsideNetwork { network });
                    }
                    forced = true;
                }
                Some(inside) => {
                    if network_now && requested.width() >= current.interval.width() {
                        if !force {
                            return Err(ManualError::LooserThanNetwork {
                                network: current.interval,
                            });
                        }
                        forced = true;
                    } else {
                        new = inside;
                    }
                }
            }
            if forced && !self.config.allow_manual_force {
                return Err(ManualError::ForceNotAllowed);
            }
        }
        let old = (state != TrustState::Unknown).then_some(current.interval);
        if !self.trust.set_manual(now.mono, new) {
            return Err(ManualError::BelowFloor { floor });
        }
        if forced {
            // The operator overrode the network: its interval no longer bounds what follows.
            self.network = None;
        }
        let offset = new.midpoint() - now.wall;
        if offset.abs() > new.radius() {
            self.push(Action::Step(offset));
        }
        self.push(Action::Persist);
        Ok(ManualChange { old, new, forced })
    }

    /// Resets the floor to the build floor and forgets every trusted time: the recovery for a
    /// device whose floor was raised by a wrong time. Only an operator may ask for it; the
    /// driver logs it. Queues [`Action::Persist`].
    pub fn reset_floor(&mut self) {
        let build = self.config.trust.floor;
        let freq = self.trust.freq_ppb();
        self.trust = TrustMachine::new(self.config.trust);
        if let Some(ppb) = freq {
            self.trust.set_freq_ppb(ppb);
        }
        self.auth_floor = build;
        self.network = None;
        self.last_override = None;
        self.push(Action::Persist);
    }

    /// A clean stop (SIGTERM): queues [`Action::Persist`].
    pub fn on_stop(&mut self) {
        self.push(Action::Persist);
    }

    /// What to persist now (call when carrying out [`Action::Persist`]). The floor is raised
    /// only by authenticated time; any other time is saved as a hint.
    pub fn snapshot(&mut self, now: Now) -> Snapshot {
        self.last_persist = Some(now.mono);
        let current = self.trust.current(now.mono);
        let known = self.trust.state(now.mono) != TrustState::Unknown;
        let mut floor = self.auth_floor;
        if known && current.provenance == Provenance::Authenticated {
            floor = floor.max(current.interval.earliest);
        }
        Snapshot {
            saved_wall: now.wall,
            floor,
            interval: known.then_some(current.interval),
            provenance: current.provenance,
            rtc_set: self.rtc_set,
            freq_ppb: self.trust.freq_ppb(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_000_000;
    const YEAR: i64 = 365 * 86_400;

    fn cfg() -> SystemConfig {
        SystemConfig {
            trust: TrustConfig::new(UnixTime::from_secs(T0 - 30 * 86_400)),
            allow_manual_force: true,
            has_rtc: true,
            discipline: true,
            step_threshold: SignedDuration::from_millis(128),
        }
    }

    fn at(mono_s: u64, wall: i64) -> Now {
        Now {
            mono: MonoInstant::from_nanos(mono_s * 1_000_000_000),
            wall: UnixTime::from_secs(wall),
        }
    }

    fn drain(s: &mut System) -> ([Option<Action>; 8], usize) {
        let mut out = [None; 8];
        let mut n = 0;
        while let Some(a) = s.poll_action() {
            out[n] = Some(a);
            n += 1;
        }
        (out, n)
    }

    #[test]
    fn plain_ntp_never_raises_the_floor_but_authenticated_time_does() {
        let mut s = System::new(cfg());
        let off = OffsetInterval::around(
            SignedDuration::from_secs(10 * YEAR),
            SignedDuration::from_millis(5),
        );
        let _ = s.on_consensus(at(1, T0), off, false);
        let snap = s.snapshot(at(1, T0));
        assert_eq!(snap.floor, cfg().trust.floor);
        assert_eq!(snap.provenance, Provenance::Ntp);
        let mut a = System::new(cfg());
        let off = OffsetInterval::around(SignedDuration::ZERO, SignedDuration::from_millis(5));
        let _ = a.on_consensus(at(1, T0), off, true);
        let snap = a.snapshot(at(1, T0));
        assert!(snap.floor > UnixTime::from_secs(T0 - 1));
    }

    #[test]
    fn persists_on_first_sync_then_at_most_every_ten_minutes() {
        let mut s = System::new(cfg());
        let off = OffsetInterval::around(SignedDuration::ZERO, SignedDuration::from_millis(5));
        let _ = s.on_consensus(at(0, T0), off, false);
        let (q, n) = drain(&mut s);
        assert_eq!(q[..n], [Some(Action::Persist), Some(Action::NotifyReady)]);
        let _ = s.snapshot(at(0, T0));
        let _ = s.on_consensus(at(64, T0 + 64), off, false);
        assert_eq!(drain(&mut s).1, 0);
        let _ = s.on_consensus(at(600, T0 + 600), off, false);
        assert_eq!(s.poll_action(), Some(Action::Persist));
        s.on_stop();
        assert_eq!(s.poll_action(), Some(Action::Persist));
    }

    #[test]
    fn rtc_is_written_with_the_true_time() {
        let mut s = System::new(cfg());
        // The device boots in 2000; the network says T0.
        let wall = 946_684_800;
        let off = OffsetInterval::around(
            SignedDuration::from_secs(T0 - wall),
            SignedDuration::from_millis(5),
        );
        let _ = s.on_consensus(at(0, wall), off, false);
        let (q, n) = drain(&mut s);
        let actions = &q[..n];
        // Step by the offset (not to wall + step), then the RTC gets the true time, and the
        // first consensus is persisted and announced.
        assert!(actions.contains(&Some(Action::Step(SignedDuration::from_secs(T0 - wall)))));
        let rtc = actions.iter().flatten().find_map(|a| match a {
            Action::WriteRtc { time } => Some(*time),
            _ => None,
        });
        assert_eq!(rtc, Some(UnixTime::from_secs(T0)));
        assert!(actions.contains(&Some(Action::NotifyReady)));
        assert!(actions.contains(&Some(Action::Persist)));
        // The next consensus (clock now right, 300 ms off) only slews, and is not announced
        // again.
        let off = OffsetInterval::around(
            SignedDuration::from_millis(300),
            SignedDuration::from_millis(400),
        );
        let _ = s.on_consensus(at(64, T0 + 64), off, false);
        let (q, n) = drain(&mut s);
        assert!(
            q[..n].contains(&Some(Action::Slew(SignedDuration::from_millis(300)))),
            "{q:?}"
        );
        assert!(!q[..n].contains(&Some(Action::NotifyReady)));
        // Observe-only: nothing is stepped or slewed, and the RTC is not written.
        let mut quiet = System::new(SystemConfig {
            discipline: false,
            ..cfg()
        });
        let _ = quiet.on_consensus(
            at(0, wall),
            OffsetInterval::around(
                SignedDuration::from_secs(T0 - wall),
                SignedDuration::from_millis(5),
            ),
            false,
        );
        let (q, n) = drain(&mut quiet);
        assert!(
            q[..n].iter().flatten().all(|a| !matches!(
                a,
                Action::Step(_) | Action::Slew(_) | Action::WriteRtc { .. }
            )),
            "{q:?}"
        );
        s.rtc_written(UnixTime::from_secs(T0));
        assert_eq!(s.snapshot(at(0, T0)).rtc_set, Some(UnixTime::from_secs(T0)));
    }

    #[test]
    fn queue_keeps_order_and_drops_duplicates() {
        let mut s = System::new(cfg());
        s.on_stop();
        s.on_stop();
        s.push(Action::Step(SignedDuration::from_secs(1)));
        assert_eq!(s.poll_action(), Some(Action::Persist));
        assert_eq!(
            s.poll_action(),
            Some(Action::Step(SignedDuration::from_secs(1)))
        );
        assert_eq!(s.poll_action(), None);
    }

    #[test]
    fn a_restart_keeps_the_network_bound_on_hand_set_time() {
        let mut s = System::new(cfg());
        let off = OffsetInterval::around(SignedDuration::ZERO, SignedDuration::from_millis(5));
        let _ = s.on_consensus(at(10, T0), off, false);
        let snap = s.snapshot(at(20, T0 + 10));
        // Restart within one boot, 60 s later: a hand-set time a year off is still refused
        // without force (the saved network interval bounds it), and a close one is taken.
        let mut after = System::new(SystemConfig {
            allow_manual_force: false,
            ..cfg()
        });
        let r = after.restore(
            at(0, T0 + 70),
            &snap,
            SinceSave::SameBoot(SignedDuration::from_secs(60)),
        );
        assert!(matches!(r, Restored::Holdover(_)), "{r:?}");
        let far = TimeInterval::around(
            UnixTime::from_secs(T0 + 70 + YEAR),
            SignedDuration::from_secs(60),
        );
        assert!(matches!(
            after.set_manual(at(0, T0 + 70), far, false),
            Err(ManualError::OutsideNetwork { .. })
        ));
        assert_eq!(
            after.set_manual(at(0, T0 + 70), far, true),
            Err(ManualError::ForceNotAllowed)
        );
        // A hint (a hand-set time saved before) is no bound.
        let mut hint = System::new(cfg());
        let _ = hint.set_manual(
            at(0, T0),
            TimeInterval::around(UnixTime::from_secs(T0), SignedDuration::from_secs(60)),
            false,
        );
        let snap = hint.snapshot(at(1, T0 + 1));
        let mut after = System::new(cfg());
        let _ = after.restore(
            at(0, T0 + 2),
            &snap,
            SinceSave::SameBoot(SignedDuration::from_secs(1)),
        );
        assert!(after.network_interval(MonoInstant::ZERO).is_none());
    }

    #[test]
    fn steps_once_then_slews_in_bounded_pieces_never_below_the_floor_and_again_on_contradiction() {
        let first = |s: &mut System, wall: i64, off: i64| {
            let _ = s.on_consensus(
                at(0, wall),
                OffsetInterval::around(
                    SignedDuration::from_secs(off),
                    SignedDuration::from_millis(5),
                ),
                false,
            );
            let (q, n) = drain(s);
            q[..n]
                .iter()
                .flatten()
                .copied()
                .find(|a| matches!(a, Action::Step(_) | Action::Slew(_)))
        };
        // A step that would land below the floor is not made.
        let mut s = System::new(cfg());
        let floor = T0 - 30 * 86_400;
        assert_eq!(first(&mut s, floor + 5, -10), None);
        // Large: stepped once; a later 5 s error (inside what is trusted) is slewed 0.5 s at a
        // time.
        let mut s = System::new(cfg());
        assert_eq!(
            first(&mut s, T0 - 3600, 3600),
            Some(Action::Step(SignedDuration::from_secs(3600)))
        );
        let _ = s.on_consensus(
            at(64, T0 + 64),
            OffsetInterval::around(SignedDuration::from_secs(5), SignedDuration::from_secs(6)),
            false,
        );
        let (q, n) = drain(&mut s);
        assert!(q[..n].contains(&Some(Action::Slew(MAX_SLEW))), "{q:?}");
        // A consensus that contradicts what was trusted (a year ahead) is stepped again.
        let back = YEAR;
        let _ = s.on_consensus(
            at(128, T0 + 128),
            OffsetInterval::around(
                SignedDuration::from_secs(back),
                SignedDuration::from_millis(5),
            ),
            false,
        );
        let (q, n) = drain(&mut s);
        assert!(
            q[..n].contains(&Some(Action::Step(SignedDuration::from_secs(back)))),
            "{q:?}"
        );
    }
}
