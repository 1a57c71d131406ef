//! # trusttime-sim
//!
//! The daemon in virtual time: a [`Node`] is one device running the shipped state machines
//! (the core's `NtpSource`s, `select::combine`, `System`) in the daemon's sequence, against a
//! [`Net`] of simulated NTP and NTS servers (known offsets, network delays, packet loss,
//! falsetickers, servers below the floor, Kiss-o'-Death) answering real packets, and a
//! simulated DNS. The [`Device`] under it has a true time, a wall clock that steps, a
//! monotonic clock, an RTC, a disk and a boot id, so restarts, reboots, hand-set times and
//! attacks run too. Everything runs on one thread from a seed, so a failing scenario replays
//! exactly. No sockets, no sleeping: a month of polls runs in well under a second.
//!
//! ```
//! use trusttime_core::system::SystemConfig;
//! use trusttime_core::trust::TrustConfig;
//! use trusttime_core::{SignedDuration, UnixTime};
//! use trusttime_sim::{Device, Net, Node, NodeConfig, SimServer};
//!
//! let truth = UnixTime::from_secs(1_800_000_000);
//! let mut net = Net::new(truth, 1);
//! let names: Vec<usize> = [
//!     SimServer::honest(),
//!     SimServer::honest(),
//!     SimServer::liar(SignedDuration::from_secs(3600)),
//! ]
//! .into_iter()
//! .enumerate()
//! .map(|(i, s)| {
//!     let server = net.add(s);
//!     net.name(&format!("{i}.example"), &[server])
//! })
//! .collect();
//! let config = SystemConfig {
//!     trust: TrustConfig::new(truth - SignedDuration::from_secs(86_400)),
//!     allow_manual_force: false,
//!     has_rtc: false,
//!     discipline: true,
//!     step_threshold: SignedDuration::from_millis(128),
//! };
//! let device = Device::new(config, truth, UnixTime::from_secs(946_684_800));
//! let mut node = Node::start(device, NodeConfig::default(), &names, &net, 0, 7);
//! node.run_until(&mut net, 3_600_000_000_000);
//! assert!(node.stats.first_trusted_at.is_some());
//! assert_eq!(node.stats.wrong_at, None, "the trusted interval always held the truth");
//! assert_eq!(node.members(2), 0, "the liar is outvoted");
//! ```
#![forbid(unsafe_code)]

pub mod fleet;
mod node;

pub use node::{Net, Node, NodeConfig, NodeStats};

use trusttime_core::ntp::KissCode;
use trusttime_core::system::{Action, Restored, SinceSave, Snapshot, System, SystemConfig};
use trusttime_core::trust::rtc_holdover;
use trusttime_core::{MonoInstant, Now, Provenance, SignedDuration, UnixTime};

/// What a simulated server tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// True time plus this offset (zero: honest).
    Offset(SignedDuration),
    /// Always this time (a broken server, or one below the floor).
    Fixed(UnixTime),
    /// A Kiss-o'-Death with this code.
    Kiss(KissCode),
    /// Never answers.
    Silent,
}

/// One simulated server.
#[derive(Clone, Copy, Debug)]
pub struct SimServer {
    /// What it answers.
    pub behaviour: Behaviour,
    /// One-way network delay, each direction.
    pub one_way: SignedDuration,
    /// Asymmetry: added to the return path only (an error NTP cannot see).
    pub asymmetry: SignedDuration,
    /// Requests dropped before the first one that gets through (counted over the run).
    pub drop_first: u8,
    /// Root dispersion it announces.
    pub root_dispersion: SignedDuration,
    /// Requests (or their replies) lost, per mille, drawn per request.
    pub loss_permille: u16,
    /// Down (answers nothing, still listed in DNS) from..until this virtual time.
    pub down: Option<(SignedDuration, SignedDuration)>,
}

impl SimServer {
    /// An honest server 5 ms away, announcing 1 ms of root dispersion.
    #[must_use]
    pub fn honest() -> Self {
        SimServer {
            behaviour: Behaviour::Offset(SignedDuration::ZERO),
            one_way: SignedDuration::from_millis(5),
            asymmetry: SignedDuration::ZERO,
            drop_first: 0,
            root_dispersion: SignedDuration::from_millis(1),
            loss_permille: 0,
            down: None,
        }
    }
    /// A server whose clock is off by `offset`.
    #[must_use]
    pub fn liar(offset: SignedDuration) -> Self {
        SimServer {
            behaviour: Behaviour::Offset(offset),
            ..SimServer::honest()
        }
    }
}

/// A simulated device around the shipped [`System`]: true time, a wall clock that steps, a
/// monotonic clock, an RTC, a disk and a boot id. It carries out the [`Action`]s the core
/// decides the way the daemon does (step once then slew, RTC written with the time given,
/// the snapshot saved with the boot id), so daemon lifecycles (restart, reboot, dead RTC,
/// hand-set time, attacks) run in virtual time under a [`Node`].
#[derive(Clone, Debug)]
pub struct Device {
    /// True time now.
    pub truth: UnixTime,
    /// Device wall clock minus true time.
    pub wall_error: SignedDuration,
    /// Monotonic clock (time since boot).
    pub mono: MonoInstant,
    /// The local oscillator's frequency error, parts per million: the monotonic clock and the
    /// wall clock run this much fast (negative: slow) against true time.
    pub ppm: i64,
    /// Counts reboots (stands for the boot id).
    pub boot: u64,
    /// RTC reading minus true time (`None`: no RTC). Survives reboots.
    pub rtc_error: Option<SignedDuration>,
    /// The saved snapshot with the boot and monotonic clock at save.
    pub disk: Option<(Snapshot, u64, MonoInstant)>,
    /// Every action carried out, in order (for assertions).
    pub log: Vec<Action>,
    /// Whether [`log`](Self::log) is kept (a fleet of a million devices does without).
    pub keep_log: bool,
    config: SystemConfig,
}

impl Device {
    /// A device whose wall clock reads `wall` while true time is `truth`, at boot.
    #[must_use]
    pub fn new(config: SystemConfig, truth: UnixTime, wall: UnixTime) -> Self {
        Device {
            truth,
            wall_error: wall - truth,
            mono: MonoInstant::from_nanos(1_000_000_000),
            ppm: 0,
            boot: 0,
            rtc_error: None,
            disk: None,
            log: Vec::new(),
            keep_log: true,
            config,
        }
    }

    /// The clocks as the device reads them.
    #[must_use]
    pub fn now(&self) -> Now {
        Now {
            mono: self.mono,
            wall: self.truth + self.wall_error,
        }
    }

    /// Lets `d` of true time pass; the local clocks count it with the oscillator's error
    /// ([`ppm`](Self::ppm)).
    pub fn advance(&mut self, d: SignedDuration) {
        self.truth = self.truth + d;
        let local = if self.ppm == 0 {
            d
        } else {
            let err = SignedDuration::from_nanos(
                (i128::from(d.as_nanos()) * i128::from(self.ppm) / 1_000_000) as i64,
            );
            self.wall_error += err;
            d + err
        };
        self.mono = self.mono + local;
    }

    /// Starts the daemon: a [`System`] restored from the disk, like the daemon's start-up
    /// (`daemon/mod.rs`). Within one boot the elapsed time is the monotonic clock's; after a
    /// reboot the wall clock's, only when the RTC was set by trusttime and reads sane (the
    /// core's `rtc_holdover`), and then the RTC is holdover too.
    pub fn start(&mut self) -> (System, Option<Restored>) {
        let mut sys = System::new(self.config);
        let now = self.now();
        let rtc_iv = self.disk.as_ref().and_then(|(snap, _, _)| {
            let read = self.truth + self.rtc_error?;
            rtc_holdover(
                read,
                snap.floor.max(self.config.trust.floor),
                snap.rtc_set,
                self.config.trust.drift_ppm,
            )
            .ok()
        });
        let restored = self.disk.map(|(snap, boot, mono)| {
            let since = if boot == self.boot {
                SinceSave::SameBoot(self.mono.since(mono))
            } else if rtc_iv.is_some() {
                SinceSave::TrustedRtc(now.wall - snap.saved_wall)
            } else {
                SinceSave::Unknown
            };
            sys.restore(now, &snap, since)
        });
        if let Some(iv) = rtc_iv {
            sys.on_holdover(now.mono, iv, Provenance::Rtc);
        }
        (sys, restored)
    }

    /// Reboots: the monotonic clock restarts, the wall clock comes from the RTC (or reads
    /// `no_rtc_wall` without one).
    pub fn reboot(&mut self, no_rtc_wall: UnixTime) {
        self.boot += 1;
        self.mono = MonoInstant::from_nanos(1_000_000_000);
        self.wall_error = self.rtc_error.unwrap_or(no_rtc_wall - self.truth);
    }

    /// A clean stop (SIGTERM).
    pub fn stop(&mut self, sys: &mut System) {
        sys.on_stop();
        self.carry_out(sys);
    }

    /// Carries out the core's actions as the daemon does.
    pub fn carry_out(&mut self, sys: &mut System) {
        self.carry_out_with(sys, |_| {});
    }

    /// Carries out the core's actions as the daemon's effects do, calling `moved` after each
    /// one is done (a driver shifts its sources' samples on [`Action::Step`] and
    /// [`Action::Slew`] there).
    pub fn carry_out_with(&mut self, sys: &mut System, mut moved: impl FnMut(Action)) {
        let mut persist = false;
        while let Some(a) = sys.poll_action() {
            if self.keep_log {
                self.log.push(a);
            }
            match a {
                Action::Step(by) => self.wall_error += by,
                // Slews are modelled as done by the next poll.
                Action::Slew(by) => self.wall_error += by,
                Action::NotifyReady => {}
                Action::WriteRtc { time } => {
                    if self.rtc_error.is_some() {
                        self.rtc_error = Some(time - self.truth);
                        sys.rtc_written(time);
                    }
                }
                Action::Persist => persist = true,
                Action::HintOverridden(_) => {}
            }
            moved(a);
        }
        if persist {
            self.disk = Some((sys.snapshot(self.now()), self.boot, self.mono));
        }
    }
}
