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

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use trusttime_core::ntp::{
    ClientConfig, Failure, KissCode, LeapIndicator, Mode, NtpClient, NtpPacket, NtpShort, Sample,
};
use trusttime_core::select::{decide, Decision, NoConsensus, OffsetInterval, Outcome, Selection};
use trusttime_core::time::NtpTimestamp;
use trusttime_core::{MonoInstant, Now, SignedDuration, UnixTime};

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
