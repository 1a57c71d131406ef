//! # trusttime-sim
//!
//! A virtual-time world for the sans-IO core: simulated NTP servers with known offsets,
//! network delays, packet loss, falsetickers, servers below the floor and Kiss-o'-Death, and a
//! device whose clock is wherever the scenario puts it. Everything runs on one thread from a
//! seed, so a failing scenario replays exactly. No sockets, no sleeping: an exchange that takes
//! seconds of virtual time runs in microseconds.
//!
//! ```
//! use trusttime_core::{SignedDuration, UnixTime};
//! use trusttime_sim::{Behaviour, SimServer, World};
//!
//! let mut world = World::new(UnixTime::from_secs(1_800_000_000), UnixTime::from_secs(946_684_800));
//! world.add(SimServer::honest());
//! world.add(SimServer::honest());
//! world.add(SimServer { behaviour: Behaviour::Offset(SignedDuration::from_secs(3600)), ..SimServer::honest() });
//! let out = world.run_exchange(2);
//! let sel = out.decision.expect("two honest servers agree");
//! assert!(!sel.is_member(2), "the liar is outvoted");
//! ```
#![forbid(unsafe_code)]

pub mod fleet;
mod node;

pub use node::{Net, Node, NodeConfig, NodeStats};

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use trusttime_core::ntp::{
    ClientConfig, Failure, KissCode, LeapIndicator, Mode, NtpClient, NtpPacket, NtpShort, Sample,
};
use trusttime_core::select::{decide, Decision, NoConsensus, OffsetInterval, Outcome, Selection};
use trusttime_core::system::{
    Action, ManualChange, ManualError, Restored, SinceSave, Snapshot, System, SystemConfig,
};
use trusttime_core::time::NtpTimestamp;
use trusttime_core::trust::rtc_holdover;
use trusttime_core::{MonoInstant, Now, Provenance, SignedDuration, TimeInterval, UnixTime};

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
    /// Requests dropped before the first one that gets through.
    pub drop_first: u8,
    /// Root dispersion it announces.
    pub root_dispersion: SignedDuration,
    /// Requests (or their replies) lost, per mille, drawn per request ([`Net`] only).
    pub loss_permille: u16,
    /// Down (answers nothing, still listed in DNS) from..until this virtual time ([`Net`]
    /// only).
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

/// The result of one exchange.
#[derive(Clone, Debug)]
pub struct ExchangeOutcome {
    /// The consensus, or why there is none.
    pub decision: Result<Selection, NoConsensus>,
    /// Per server: the client's result, if it finished before the decision.
    pub results: Vec<Option<Result<Sample, Failure>>>,
    /// Requests each server received (including dropped ones).
    pub requests: Vec<u8>,
    /// Virtual time from start to decision.
    pub elapsed: SignedDuration,
    /// The true offset (true time minus device time): what a perfect client would measure.
    pub true_offset: SignedDuration,
}

impl ExchangeOutcome {
    /// The consensus offset's error against the truth.
    #[must_use]
    pub fn error(&self) -> Option<SignedDuration> {
        self.decision
            .as_ref()
            .ok()
            .map(|s| (s.offset - self.true_offset).abs())
    }
}

/// A world: true time, a device clock, servers, a seed.
#[derive(Clone, Debug)]
pub struct World {
    /// True time at virtual instant zero.
    pub true_start: UnixTime,
    /// What the device's wall clock reads at virtual instant zero.
    pub device_start: UnixTime,
    /// The servers.
    pub servers: Vec<SimServer>,
    /// Client settings (the floor lives here).
    pub client: ClientConfig,
    /// Seed for cookies and jitter.
    pub seed: u64,
    /// Give up after this much virtual time.
    pub timeout: SignedDuration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// Wake client `i` (timers).
    Wake(usize),
    /// Deliver a reply to client `i`.
    Reply(usize, [u8; 48]),
}

impl World {
    /// A world with no servers; the floor is set 10 years before `true_start`.
    #[must_use]
    pub fn new(true_start: UnixTime, device_start: UnixTime) -> Self {
        World {
            true_start,
            device_start,
            servers: Vec::new(),
            client: ClientConfig {
                floor: true_start - SignedDuration::from_secs(10 * 365 * 86_400),
                ..ClientConfig::default()
            },
            seed: 1,
            timeout: SignedDuration::from_secs(5),
        }
    }

    /// Adds a server; returns its index.
    pub fn add(&mut self, s: SimServer) -> usize {
        self.servers.push(s);
        self.servers.len() - 1
    }

    /// Runs one consensus exchange like `trusttime sync`: every server asked in parallel,
    /// decided as soon as [`decide`] allows.
    #[must_use]
    pub fn run_exchange(&self, min_agree: u8) -> ExchangeOutcome {
        let n = self.servers.len();
        let mut rng = self.seed | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut clients: Vec<NtpClient> = (0..n).map(|_| NtpClient::new(self.client)).collect();
        let mut requests = vec![0u8; n];
        let mut outcomes = vec![Outcome::Pending; n];
        let mut queue: BinaryHeap<Reverse<(u64, u64, Ev)>> = BinaryHeap::new();
        let mut seq = 0u64;
        let device_now = |t: u64| Now {
            mono: MonoInstant::from_nanos(t),
            wall: self.device_start + SignedDuration::from_nanos(t as i64),
        };
        for i in 0..n {
            queue.push(Reverse((0, seq, Ev::Wake(i))));
            seq += 1;
        }
        let limit = self.timeout.as_nanos().max(0) as u64;
        let mut t_end = 0;
        let decision = loop {
            let Some(Reverse((t, _, ev))) = queue.pop() else {
                break final_decision(&mut outcomes, min_agree);
            };
            if t > limit {
                t_end = limit;
                break final_decision(&mut outcomes, min_agree);
            }
            t_end = t;
            let i = match ev {
                Ev::Wake(i) | Ev::Reply(i, _) => i,
            };
            let now = device_now(t);
            if let Ev::Reply(_, bytes) = ev {
                let _ = clients[i].handle_datagram(now, &bytes);
            }
            let c = &mut clients[i];
            c.handle_timeout(now);
            let mut buf = [0u8; 48];
            if let Some(len) = c.poll_transmit(now, next(), &mut buf) {
                requests[i] = requests[i].saturating_add(1);
                if let Some((at, reply)) = self.serve(i, t, &buf[..len], requests[i]) {
                    queue.push(Reverse((at, seq, Ev::Reply(i, reply))));
                    seq += 1;
                }
            }
            if let Some(wake) = c.poll_timeout() {
                queue.push(Reverse((wake.as_nanos().max(t), seq, Ev::Wake(i))));
                seq += 1;
            }
            if let Some(r) = c.result() {
                if outcomes[i] == Outcome::Pending {
                    outcomes[i] = match r {
                        Ok(s) => Outcome::Reply(OffsetInterval::around(s.offset, s.error_bound())),
                        Err(_) => Outcome::Failed,
                    };
                }
            }
            match decide(&outcomes, min_agree) {
                Decision::Wait => {}
                Decision::Agreed(s) => break Ok(s),
                Decision::Failed(e) => break Err(e),
            }
        };
        ExchangeOutcome {
            decision,
            results: clients.iter().map(NtpClient::result).collect(),
            requests,
            elapsed: SignedDuration::from_nanos(t_end as i64),
            true_offset: self.true_start - self.device_start,
        }
    }

    /// Server `i` receives `request` sent at virtual time `sent`; returns the reply and when
    /// it reaches the device.
    fn serve(&self, i: usize, sent: u64, request: &[u8], nth: u8) -> Option<(u64, [u8; 48])> {
        let s = self.servers[i];
        if nth <= s.drop_first {
            return None;
        }
        let (q, _) = NtpPacket::parse(request).ok()?;
        let arrive = sent + s.one_way.as_nanos().max(0) as u64;
        let back = arrive + (s.one_way + s.asymmetry).as_nanos().max(0) as u64;
        let true_at = |t: u64| self.true_start + SignedDuration::from_nanos(t as i64);
        let (stratum, rx, tx, refid) = match s.behaviour {
            Behaviour::Silent => return None,
            Behaviour::Offset(o) => (2, true_at(arrive) + o, true_at(arrive) + o, *b"SIM\0"),
            Behaviour::Fixed(at) => (2, at, at, *b"SIM\0"),
            Behaviour::Kiss(k) => (0, true_at(arrive), true_at(arrive), k.code()),
        };
        let p = NtpPacket {
            leap: LeapIndicator::NoWarning,
            version: 4,
            mode: Mode::Server,
            stratum,
            poll: 6,
            precision: -20,
            root_delay: NtpShort(0),
            root_dispersion: NtpShort::from_duration(s.root_dispersion),
            reference_id: refid,
            reference_ts: NtpTimestamp::from_unix(rx),
            origin_ts: q.transmit_ts,
            receive_ts: NtpTimestamp::from_unix(rx),
            transmit_ts: NtpTimestamp::from_unix(tx),
        };
        let mut out = [0u8; 48];
        p.emit(&mut out).ok()?;
        Some((back, out))
    }
}

fn final_decision(outcomes: &mut [Outcome], min_agree: u8) -> Result<Selection, NoConsensus> {
    for o in outcomes.iter_mut() {
        if *o == Outcome::Pending {
            *o = Outcome::Failed;
        }
    }
    match decide(outcomes, min_agree) {
        Decision::Agreed(s) => Ok(s),
        Decision::Failed(e) => Err(e),
        Decision::Wait => Err(NoConsensus::BadSourceCount),
    }
}

/// A simulated device around the shipped [`System`]: true time, a wall clock that steps, a
/// monotonic clock, an RTC, a disk and a boot id. It carries out the [`Action`]s the core
/// decides the way the daemon does (step once then slew, RTC written with the time given,
/// the snapshot saved with the boot id), so daemon lifecycles (restart, reboot, dead RTC,
/// hand-set time, attacks) run in virtual time.
#[derive(Clone, Debug)]
pub struct Device {
    /// True time now.
    pub truth: UnixTime,
    /// Device wall clock minus true time.
    pub wall_error: SignedDuration,
    /// Monotonic clock (time since boot).
    pub mono: MonoInstant,
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

    /// Lets `d` of true time pass (a perfect oscillator).
    pub fn advance(&mut self, d: SignedDuration) {
        self.truth = self.truth + d;
        self.mono = self.mono + d;
    }

    /// Starts the daemon: a [`System`] restored from the disk, like the daemon's start-up.
    /// Within one boot the elapsed time is the monotonic clock's; after a reboot the wall
    /// clock's, only when the RTC was set by trusttime and reads sane.
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

    /// One poll of `world`'s servers; on a consensus, the daemon's sequence: the core's
    /// `on_consensus`, then its actions (step or slew, RTC, persistence). Returns the exchange.
    pub fn poll(&mut self, sys: &mut System, world: &mut World) -> ExchangeOutcome {
        world.true_start = self.truth;
        world.device_start = self.now().wall;
        world.client.floor = sys.floor();
        let out = world.run_exchange(1);
        if let Ok(sel) = &out.decision {
            // The core decides the step or slew and the RTC write; the device carries them
            // out exactly as the daemon's effects do.
            let _ = sys.on_consensus(self.now(), sel.interval, false);
            self.carry_out(sys);
        }
        out
    }

    /// A hand-set time, then the actions.
    ///
    /// # Errors
    /// As [`System::set_manual`].
    pub fn set_manual(
        &mut self,
        sys: &mut System,
        time: UnixTime,
        uncertainty: SignedDuration,
        force: bool,
    ) -> Result<ManualChange, ManualError> {
        let r = sys.set_manual(self.now(), TimeInterval::around(time, uncertainty), force);
        self.carry_out(sys);
        r
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
