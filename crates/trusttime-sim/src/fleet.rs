//! A fleet of devices against the NTP Pool, in virtual time: what a vendor's whole fleet does
//! to public time servers when it reboots together, runs for days, or loses half its servers.
//!
//! Every device is a [`Node`]: the shipped [`NtpSource`](trusttime_core::source::NtpSource)s
//! (poll intervals, backoff, Kiss-o'-Death, the clock filter, DNS about hourly), the shipped
//! combination ([`combine`](trusttime_core::select::combine)) and the shipped
//! [`System`](trusttime_core::system::System), driven in the daemon's sequence
//! (`trusttime/src/daemon/run.rs`): the random start-up delay, the burst while
//! unsynchronised, a name resolved only when its source asks. Nothing of the daemon's
//! scheduling is copied here.
//!
//! The servers are a pool that a name like `0.acme.pool.ntp.org` resolves to (each answer 4
//! servers of the zone at random, as the Pool answers; no resolver cache: a stub resolver asks
//! every time the daemon resolves a name): honest, slow, lossy, answering RATE or DENY, and a
//! few liars each with its own wrong time. Devices do not discipline their clocks here
//! (observe-only): polling does not depend on it, and the trusted interval is checked against
//! the true time at every wake-up.
//!
//! One heap entry per device (its next wake-up), every random choice from one seed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use trusttime_core::ntp::KissCode;
use trusttime_core::system::SystemConfig;
use trusttime_core::trust::{TrustConfig, TrustState};
use trusttime_core::{SignedDuration, UnixTime};

use crate::node::Rng;
use crate::{Behaviour, Device, Net, Node, NodeConfig, SimServer};

pub use trusttime_core::source::{RESOLVE_AFTER_SILENT, RESOLVE_EVERY};

/// Extra rounds while unsynchronised (the daemon's burst).
pub use crate::node::{BURST_EVERY, BURST_ROUNDS};

/// Most pool names one source line gives (`count`, 1..=4).
pub const MAX_SOURCES: usize = 4;

const NS: u64 = 1_000_000_000;
/// True time at virtual time zero.
const TRUE_START: i64 = 1_795_000_000;

/// The daemon settings a fleet runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetConfig {
    /// Devices.
    pub devices: usize,
    /// Pool names per device (`count` of the `pool` source, 1..=4).
    pub sources: u8,
    /// `daemon.startup-delay`: upper bound of the random delay before the first poll.
    pub startup_delay: SignedDuration,
    /// `daemon.min-poll` (log2 s).
    pub min_poll: i8,
    /// `daemon.max-poll` (log2 s).
    pub max_poll: i8,
    /// `clock.min-agree` (`None`: the default for the number of sources).
    pub min_agree: Option<u8>,
    /// `clock.drift-ppm`.
    pub drift_ppm: u32,
    /// Every device powers up within this span from virtual time zero.
    pub boot_spread: SignedDuration,
    /// Poll exponent saved before the reboot (the daemon resumes at it); `None`: a new device.
    pub resume_poll: Option<i8>,
    /// Virtual time simulated.
    pub duration: SignedDuration,
    /// Width of the load histogram's bins.
    pub bin: SignedDuration,
    /// Seed of every random choice.
    pub seed: u64,
}

impl FleetConfig {
    /// The daemon's defaults (`crates/trusttime/src/config.rs`, `dist/trusttime.toml`): four
    /// pool names, a start-up delay of up to 60 s, polls between 2^6 and 2^10 s, 50 ppm.
    #[must_use]
    pub fn shipped(devices: usize) -> Self {
        FleetConfig {
            devices,
            sources: 4,
            startup_delay: SignedDuration::from_secs(60),
            min_poll: 6,
            max_poll: 10,
            min_agree: None,
            drift_ppm: 50,
            boot_spread: SignedDuration::from_secs(1),
            resume_poll: None,
            duration: SignedDuration::from_secs(3600),
            bin: SignedDuration::from_secs(1),
            seed: 1,
        }
    }
}

/// How a pool server behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// Tells the true time.
    Honest,
    /// Answers every request with a Kiss-o'-Death of this code.
    Kiss(KissCode),
    /// Tells the true time plus this offset.
    Liar(SignedDuration),
}

/// One server of the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolServer {
    /// What it answers.
    pub kind: ServerKind,
    /// One-way network delay.
    pub one_way: SignedDuration,
    /// Requests (or replies) lost, per mille.
    pub loss_permille: u16,
    /// Down (answers nothing, still listed in DNS) from..until this virtual time.
    pub down: Option<(SignedDuration, SignedDuration)>,
}

impl PoolServer {
    /// An honest server `ms` milliseconds away, losing nothing.
    #[must_use]
    pub fn honest(ms: i64) -> Self {
        PoolServer {
            kind: ServerKind::Honest,
            one_way: SignedDuration::from_millis(ms),
            loss_permille: 0,
            down: None,
        }
    }
}

/// A pool of `n` servers (at least 10) as the Pool hands out a zone: most honest at 5..60 ms,
/// a tenth slow (150..450 ms), a tenth losing 30 % of packets, two answering RATE, one DENY,
/// and `liars` servers each with its own wrong time (minutes to hours, either way).
#[must_use]
pub fn mixed_pool(n: usize, liars: usize, seed: u64) -> Vec<PoolServer> {
    let n = n.max(10);
    let mut rng = Rng::new(seed ^ 0x5eed_5e7e);
    let tenth = n / 10;
    (0..n)
        .map(|i| {
            let mut s = PoolServer::honest(5 + (rng.next() % 56) as i64);
            if i < liars {
                let minutes = 7 * (i as i64 + 1) + (rng.next() % 5) as i64;
                let sign = if i % 2 == 0 { 1 } else { -1 };
                s.kind = ServerKind::Liar(SignedDuration::from_secs(sign * minutes * 60));
            } else if i < liars + 2 {
                s.kind = ServerKind::Kiss(KissCode::Rate);
            } else if i < liars + 3 {
                s.kind = ServerKind::Kiss(KissCode::Deny);
            } else if i < liars + 3 + tenth {
                s.one_way = SignedDuration::from_millis(150 + (rng.next() % 301) as i64);
            } else if i < liars + 3 + 2 * tenth {
                s.loss_permille = 300;
            }
            s
        })
        .collect()
}

/// Takes every other server down from `from` until `until` (still listed in DNS, as the Pool
/// keeps a server until its monitor notices).
pub fn outage(pool: &mut [PoolServer], from: SignedDuration, until: SignedDuration) {
    for s in pool.iter_mut().step_by(2) {
        s.down = Some((from, until));
    }
}

/// What a fleet run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetReport {
    /// Devices.
    pub devices: usize,
    /// Servers in the pool.
    pub servers: usize,
    /// Pool names per device.
    pub sources: u8,
    /// Seconds simulated.
    pub duration_s: f64,
    /// Width of a load bin, seconds.
    pub bin_s: f64,
    /// Requests received per server per bin (`load[bin * servers + server]`).
    pub load: Vec<u32>,
    /// Requests sent by the fleet.
    pub requests: u64,
    /// DNS queries (one per pool name when it is resolved).
    pub dns_queries: u64,
    /// Kiss-o'-Death replies received (RATE, DENY and others).
    pub kisses: u64,
    /// Seconds from power-up to the first consensus, per device that reached one, sorted.
    pub time_to_trusted_s: Vec<f64>,
    /// Devices whose trusted interval ever excluded the true time.
    pub trusted_a_liar: usize,
    /// Devices synchronised (a consensus within the freshness limit) at the end.
    pub synced_at_end: usize,
}

impl FleetReport {
    /// The guidance line, a rate per server: this fleet polling every source once per 64 s
    /// (the shortest interval ntpd and chrony use by default), spread over the servers.
    #[must_use]
    pub fn guidance_rps(&self) -> f64 {
        self.devices as f64 * f64::from(self.sources) / self.servers as f64 / 64.0
    }

    /// The same run with bins `factor` times wider (rates averaged over them).
    #[must_use]
    pub fn rebinned(&self, factor: usize) -> FleetReport {
        let f = factor.max(1);
        let s = self.servers.max(1);
        let bins = self.bins().div_ceil(f);
        let mut load = vec![0u32; bins * s];
        for (i, &c) in self.load.iter().enumerate() {
            let (b, server) = (i / s, i % s);
            load[(b / f) * s + server] += c;
        }
        FleetReport {
            load,
            bin_s: self.bin_s * f as f64,
            ..self.clone()
        }
    }

    fn bins(&self) -> usize {
        self.load.len() / self.servers.max(1)
    }

    fn bin_range(&self, from_s: f64, to_s: f64) -> std::ops::Range<usize> {
        let a = (from_s / self.bin_s).floor().max(0.0) as usize;
        let b = ((to_s / self.bin_s).ceil().max(0.0) as usize).min(self.bins());
        a.min(b)..b
    }

    /// Requests per second per server in each bin of `from_s..to_s`, over every server.
    fn rates(&self, from_s: f64, to_s: f64) -> Vec<f64> {
        let r = self.bin_range(from_s, to_s);
        self.load[r.start * self.servers..r.end * self.servers]
            .iter()
            .map(|&c| f64::from(c) / self.bin_s)
            .collect()
    }

    /// The highest requests/s any server saw in one bin of `from_s..to_s`.
    #[must_use]
    pub fn peak_rps(&self, from_s: f64, to_s: f64) -> f64 {
        self.rates(from_s, to_s).into_iter().fold(0.0, f64::max)
    }

    /// The 99th percentile of requests/s per server and bin over `from_s..to_s`.
    #[must_use]
    pub fn p99_rps(&self, from_s: f64, to_s: f64) -> f64 {
        let mut v = self.rates(from_s, to_s);
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * 0.99).round() as usize]
    }

    /// Per bin of `from_s..to_s`: (start, highest and mean requests/s over the servers).
    #[must_use]
    pub fn series(&self, from_s: f64, to_s: f64) -> Vec<(f64, f64, f64)> {
        self.bin_range(from_s, to_s)
            .map(|b| {
                let row = &self.load[b * self.servers..(b + 1) * self.servers];
                let max = row.iter().copied().max().unwrap_or(0);
                let sum: u64 = row.iter().map(|&c| u64::from(c)).sum();
                (
                    b as f64 * self.bin_s,
                    f64::from(max) / self.bin_s,
                    sum as f64 / self.servers as f64 / self.bin_s,
                )
            })
            .collect()
    }

    /// Seconds until `fraction` of all devices had a consensus (`None`: never in the run).
    #[must_use]
    pub fn time_to_trusted(&self, fraction: f64) -> Option<f64> {
        let need = (self.devices as f64 * fraction).ceil() as usize;
        if need == 0 {
            return Some(0.0);
        }
        self.time_to_trusted_s.get(need - 1).copied()
    }

    /// DNS queries per device per hour, over the whole run.
    #[must_use]
    pub fn dns_per_device_hour(&self) -> f64 {
        self.dns_queries as f64 / self.devices as f64 / (self.duration_s / 3600.0)
    }

    /// Requests per device per day, over the whole run.
    #[must_use]
    pub fn requests_per_device_day(&self) -> f64 {
        self.requests as f64 / self.devices as f64 / (self.duration_s / 86_400.0)
    }
}

/// The pool as the simulated network: one server per pool server, `k` names each resolving
/// to the whole zone.
fn network(pool: &[PoolServer], k: usize, seed: u64) -> (Net, Vec<usize>) {
    let mut net = Net::new(UnixTime::from_secs(TRUE_START), seed);
    for p in pool {
        net.add(SimServer {
            behaviour: match p.kind {
                ServerKind::Honest => Behaviour::Offset(SignedDuration::ZERO),
                ServerKind::Liar(o) => Behaviour::Offset(o),
                ServerKind::Kiss(code) => Behaviour::Kiss(code),
            },
            one_way: p.one_way,
            asymmetry: SignedDuration::ZERO,
            drop_first: 0,
            root_dispersion: SignedDuration::from_millis(2),
            loss_permille: p.loss_permille,
            down: p.down,
        });
    }
    let all: Vec<usize> = (0..pool.len()).collect();
    let names = (0..k)
        .map(|i| net.name(&format!("{i}.acme.pool.ntp.org"), &all))
        .collect();
    (net, names)
}

/// Runs `cfg.devices` devices against `pool` for `cfg.duration`.
#[must_use]
pub fn run(cfg: &FleetConfig, pool: &[PoolServer]) -> FleetReport {
    let n = cfg.devices;
    let k = usize::from(cfg.sources.clamp(1, MAX_SOURCES as u8));
    let duration = cfg.duration.as_nanos().max(0) as u64;
    let (mut net, names) = network(pool, k, cfg.seed);
    net.count_load(cfg.bin, cfg.duration);
    let sys_cfg = SystemConfig {
        trust: TrustConfig {
            floor: UnixTime::from_secs(TRUE_START - 30 * 86_400),
            drift_ppm: cfg.drift_ppm,
            sync_fresh_for: SignedDuration::from_secs(3 << cfg.max_poll.clamp(0, 17)),
        },
        allow_manual_force: false,
        has_rtc: false,
        // Observe-only: polling does not depend on the discipline.
        discipline: false,
        step_threshold: SignedDuration::from_millis(128),
    };
    let node_cfg = NodeConfig {
        min_poll: cfg.min_poll,
        max_poll: cfg.max_poll,
        min_agree: cfg.min_agree,
        startup_delay: cfg.startup_delay,
        resume_poll: cfg.resume_poll,
    };
    let mut master = Rng::new(cfg.seed);
    let mut boots: Vec<(u64, u64, SignedDuration)> = (0..n)
        .map(|_| {
            let mut rng = Rng::new(master.next());
            let boot = rng.below(cfg.boot_spread.as_nanos().max(0) as u64 + 1);
            // A tenth of the fleet has a dead RTC (the year 2000); the rest are within a
            // minute.
            let wall_error = if rng.below(10) == 0 {
                SignedDuration::from_secs(946_684_800 - TRUE_START)
            } else {
                SignedDuration::from_millis(rng.below(120_000) as i64 - 60_000)
            };
            (boot, rng.next(), wall_error)
        })
        .collect();
    let mut nodes: Vec<Option<Node>> = (0..n).map(|_| None).collect();
    let mut queue: BinaryHeap<Reverse<(u64, u32)>> = BinaryHeap::with_capacity(n);
    for (i, b) in boots.iter().enumerate() {
        queue.push(Reverse((b.0, i as u32)));
    }
    while let Some(Reverse((t, i))) = queue.pop() {
        if t >= duration {
            break;
        }
        let slot = &mut nodes[i as usize];
        let node = match slot {
            Some(node) => {
                node.step(&mut net, t);
                node
            }
            None => {
                // Power-up: the daemon starts.
                let (_, seed, wall_error) = boots[i as usize];
                let truth = net.truth(t);
                let mut device = Device::new(sys_cfg, truth, truth + wall_error);
                device.keep_log = false;
                slot.insert(Node::start(device, node_cfg, &names, &net, t, seed))
            }
        };
        if let Some(next) = node.next_wake() {
            queue.push(Reverse((next, i)));
        }
    }
    boots.clear();
    let mut ttt = Vec::with_capacity(n);
    let (mut liars, mut synced, mut kisses) = (0, 0, 0u64);
    for node in nodes.iter().flatten() {
        if let Some(at) = node.stats.first_trusted_at {
            ttt.push((at - node.started_at()) as f64 / NS as f64);
        }
        liars += usize::from(node.stats.wrong_at.is_some_and(|at| at < duration));
        kisses += node.stats.kisses;
        let end = node.device.mono
            + SignedDuration::from_nanos(duration.saturating_sub(node.at()) as i64);
        synced += usize::from(node.sys.trust().state(end) == TrustState::Synced);
    }
    ttt.sort_by(f64::total_cmp);
    FleetReport {
        devices: n,
        servers: pool.len(),
        sources: k as u8,
        duration_s: duration as f64 / NS as f64,
        bin_s: cfg.bin.as_nanos().max(1_000_000) as f64 / NS as f64,
        load: net.take_load(),
        requests: net.requests.iter().sum(),
        dns_queries: net.dns_lookups.iter().sum(),
        kisses,
        time_to_trusted_s: ttt,
        trusted_a_liar: liars,
        synced_at_end: synced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_is_small() {
        // Four shipped sources, each with room for an NTS session in place (the core does not
        // allocate): about 13 KB a device with the `nts` feature, so 10^5 devices take 1.3 GB
        // and 10^6 about 13 GB.
        let pool = mixed_pool(10, 0, 1);
        let (net, names) = network(&pool, 4, 1);
        let sys_cfg = SystemConfig {
            trust: TrustConfig::new(UnixTime::from_secs(TRUE_START - 86_400)),
            allow_manual_force: false,
            has_rtc: false,
            discipline: false,
            step_threshold: SignedDuration::from_millis(128),
        };
        let truth = UnixTime::from_secs(TRUE_START);
        let node = Node::start(
            Device::new(sys_cfg, truth, truth),
            NodeConfig::default(),
            &names,
            &net,
            0,
            1,
        );
        let bytes = node.heap_size() + std::mem::size_of::<Node>();
        assert!(bytes <= 16 * 1024, "{bytes} bytes per device");
    }

    #[test]
    fn the_mixed_pool_has_every_kind() {
        let p = mixed_pool(40, 2, 1);
        assert_eq!(p.len(), 40);
        let liars = p
            .iter()
            .filter(|s| matches!(s.kind, ServerKind::Liar(_)))
            .count();
        assert_eq!(liars, 2);
        assert!(p.iter().any(|s| s.kind == ServerKind::Kiss(KissCode::Rate)));
        assert!(p.iter().any(|s| s.kind == ServerKind::Kiss(KissCode::Deny)));
        assert!(p.iter().any(|s| s.loss_permille > 0));
        assert!(p
            .iter()
            .any(|s| s.one_way >= SignedDuration::from_millis(150)));
    }
}
