//! A fleet of devices against the NTP Pool, in virtual time: what a vendor's whole fleet does
//! to public time servers when it reboots together, runs for days, or loses half its servers.
//!
//! Every device runs the shipped core the way the daemon (`trusttime/src/daemon.rs`) drives
//! it: one [`PollPolicy`] per configured source, a fresh [`NtpClient`] per poll (as `sync`
//! makes one per exchange), the consensus over every source's latest sample with
//! [`select`](trusttime_core::select::select), and the [`System`] that owns the device's
//! time. What the daemon adds around them is mirrored here and named by the constants below:
//! the random start-up delay, the burst while unsynchronised (every 2 s, three times), the
//! 3 s limit of one poll round, the sample age limit, a pool name's address kept between polls
//! and resolved again after an hour, on a Kiss-o'-Death, an unusable, lying or duplicate
//! server, a few silent polls or a round without a majority, and a name stopped by DENY/RSTR asked again after the longest interval.
//!
//! The servers are a pool that a name like `0.acme.pool.ntp.org` resolves to at random (no
//! resolver cache: a stub resolver asks every time the daemon resolves a name):
//! honest, slow, lossy, answering RATE or DENY, and a few liars each with its own wrong time.
//! Devices do not discipline their clocks here (observe-only): polling does not depend on it,
//! and the trusted interval is checked against the true time after every consensus.
//!
//! One event per device in a binary heap; a device's poll round (every exchange of it, with
//! retries and timeouts) is run when it starts, since nothing else happens to that device until
//! the round ends. A device takes under 1 KB (the `System` is most of it), so 10^6 fit in memory.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use trusttime_core::ntp::{
    ClientConfig, Failure, KissCode, LeapIndicator, Mode, NtpClient, NtpPacket, NtpShort,
    PollPolicy, Reject,
};
use trusttime_core::select::{default_min_agree, select, OffsetInterval, Outcome};
use trusttime_core::system::{System, SystemConfig};
use trusttime_core::time::NtpTimestamp;
use trusttime_core::trust::{TrustConfig, TrustState};
use trusttime_core::{MonoInstant, Now, SignedDuration, UnixTime};

/// The daemon's limit for one poll round (`opts.timeout` in `daemon.rs`).
pub const ROUND_TIMEOUT: SignedDuration = SignedDuration::from_secs(3);
/// Extra rounds while unsynchronised (`burst_left` in `daemon.rs`).
pub const BURST_ROUNDS: u8 = 3;
/// The wait between burst rounds.
pub const BURST_EVERY: SignedDuration = SignedDuration::from_secs(2);
/// Most pool names one source line gives (`count`, 1..=4).
pub const MAX_SOURCES: usize = 4;
/// How long a name's address is kept before it is resolved again (`RESOLVE_EVERY` in
/// `daemon.rs`).
pub const RESOLVE_EVERY: SignedDuration = SignedDuration::from_secs(3600);
/// Polls in a row without a reply after which a name is resolved again
/// (`RESOLVE_AFTER_SILENT` in `daemon.rs`).
pub const RESOLVE_AFTER_SILENT: u8 = 4;

const NS: u64 = 1_000_000_000;
/// The monotonic clock at virtual time zero (the devices booted a second earlier).
const MONO_AT_ZERO: u64 = NS;
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

    fn is_down(&self, t: u64) -> bool {
        self.down.is_some_and(|(from, until)| {
            t >= from.as_nanos().max(0) as u64 && t < until.as_nanos().max(0) as u64
        })
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

/// splitmix64: small, fast, and the same on every machine.
#[derive(Clone, Copy, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// One configured source of one device: what the daemon keeps in its `SourceRun`.
#[derive(Clone, Copy, Debug)]
struct Source {
    policy: PollPolicy,
    next_due: u64,
    /// Last good sample: offset interval and when (virtual ns).
    last: Option<(OffsetInterval, u64)>,
    /// The server that gave `last`.
    last_server: u32,
    /// The server the name resolved to and when (virtual ns): the daemon's `resolved`.
    resolved: Option<(u32, u64)>,
    /// Polls in a row without a reply from `resolved`.
    silent: u8,
}

#[derive(Clone, Debug)]
struct Device {
    sys: System,
    sources: [Source; MAX_SOURCES],
    burst_left: u8,
    rng: Rng,
    /// Device wall clock minus true time (a dead RTC: years).
    wall_error: SignedDuration,
    boot: u64,
    trusted_at: Option<u64>,
    trusted_a_liar: bool,
}

/// How one source's exchange in a round ended.
enum Ended {
    Sample(OffsetInterval),
    Kiss(KissCode),
    /// No reply.
    Failed,
    /// An answer that cannot be used, or the same server as another name.
    Unusable,
}

struct Sim<'a> {
    cfg: &'a FleetConfig,
    pool: &'a [PoolServer],
    load: Vec<u32>,
    bins: usize,
    bin_ns: u64,
    requests: u64,
    dns: u64,
    kisses: u64,
}

/// Runs `cfg.devices` devices against `pool` for `cfg.duration`.
#[must_use]
pub fn run(cfg: &FleetConfig, pool: &[PoolServer]) -> FleetReport {
    let n = cfg.devices;
    let k = usize::from(cfg.sources.clamp(1, MAX_SOURCES as u8));
    let duration = cfg.duration.as_nanos().max(0) as u64;
    let bin_ns = (cfg.bin.as_nanos().max(1_000_000)) as u64;
    let bins = duration.div_ceil(bin_ns) as usize;
    let mut sim = Sim {
        cfg,
        pool,
        load: vec![0; bins * pool.len()],
        bins,
        bin_ns,
        requests: 0,
        dns: 0,
        kisses: 0,
    };
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
    let mut master = Rng::new(cfg.seed);
    let mut devices: Vec<Device> = Vec::with_capacity(n);
    let mut queue: BinaryHeap<Reverse<(u64, u32)>> = BinaryHeap::with_capacity(n);
    let spread = cfg.boot_spread.as_nanos().max(0) as u64;
    let delay = cfg.startup_delay.as_nanos().max(0) as u64;
    for i in 0..n {
        let mut rng = Rng::new(master.next());
        let boot = rng.below(spread + 1);
        let mut policy = PollPolicy::new(cfg.min_poll, cfg.max_poll);
        if let Some(p) = cfg.resume_poll {
            policy.resume_at(p);
        }
        // A tenth of the fleet has a dead RTC (the year 2000); the rest are within a minute.
        let wall_error = if rng.below(10) == 0 {
            SignedDuration::from_secs(946_684_800 - TRUE_START)
        } else {
            SignedDuration::from_millis(rng.below(120_000) as i64 - 60_000)
        };
        // The daemon: a random start-up delay in 0..=startup-delay, then every source due.
        let first = boot + rng.below(delay + 1);
        let src = Source {
            policy,
            next_due: first,
            last: None,
            last_server: u32::MAX,
            resolved: None,
            silent: 0,
        };
        devices.push(Device {
            sys: System::new(sys_cfg),
            sources: [src; MAX_SOURCES],
            burst_left: BURST_ROUNDS,
            rng,
            wall_error,
            boot,
            trusted_at: None,
            trusted_a_liar: false,
        });
        queue.push(Reverse((first, i as u32)));
    }
    while let Some(Reverse((t, i))) = queue.pop() {
        if t >= duration {
            break;
        }
        let d = &mut devices[i as usize];
        if let Some(next) = sim.round(d, k, t) {
            queue.push(Reverse((next, i)));
        }
    }
    let mut ttt: Vec<f64> = devices
        .iter()
        .filter_map(|d| d.trusted_at.map(|at| (at - d.boot) as f64 / NS as f64))
        .collect();
    ttt.sort_by(f64::total_cmp);
    let end = mono(duration);
    FleetReport {
        devices: n,
        servers: pool.len(),
        sources: k as u8,
        duration_s: duration as f64 / NS as f64,
        bin_s: bin_ns as f64 / NS as f64,
        load: sim.load,
        requests: sim.requests,
        dns_queries: sim.dns,
        kisses: sim.kisses,
        time_to_trusted_s: ttt,
        trusted_a_liar: devices.iter().filter(|d| d.trusted_a_liar).count(),
        synced_at_end: devices
            .iter()
            .filter(|d| d.sys.trust().state(end) == TrustState::Synced)
            .count(),
    }
}

/// No majority: every name asks for a server again at its next poll (the daemon does the
/// same), so that a liar and a RATE server kept for an hour do not keep a device untrusted.
fn forget_servers(sources: &mut [Source]) {
    for s in sources {
        s.resolved = None;
    }
}

fn mono(t: u64) -> MonoInstant {
    MonoInstant::from_nanos(t + MONO_AT_ZERO)
}

fn truth(t: u64) -> UnixTime {
    UnixTime::from_secs(TRUE_START) + SignedDuration::from_nanos(t as i64)
}

impl Sim<'_> {
    /// One pass of the daemon's loop for device `d` at virtual time `t`: poll the due sources,
    /// then decide. Returns when the device next wants to run.
    fn round(&mut self, d: &mut Device, k: usize, t: u64) -> Option<u64> {
        let wall_error = d.wall_error;
        let now_at = move |t: u64| Now {
            mono: mono(t),
            wall: truth(t) + wall_error,
        };
        let cfg = self.cfg;
        let client = ClientConfig {
            floor: d.sys.floor(),
            ..ClientConfig::default()
        };
        let mut ended: [Option<(Ended, u32)>; MAX_SOURCES] = [None, None, None, None];
        let mut asked = [usize::MAX; MAX_SOURCES];
        let mut end = t;
        for j in 0..k {
            let s = &d.sources[j];
            if s.policy.stopped_by().is_some() || s.next_due > t {
                continue;
            }
            // The name's address is kept for an hour; else the name is resolved: a random
            // server of the zone.
            let server = match s.resolved {
                Some((server, at)) if t - at < RESOLVE_EVERY.as_nanos() as u64 => server as usize,
                _ => {
                    self.dns += 1;
                    d.sources[j].resolved = None;
                    d.rng.below(self.pool.len() as u64) as usize
                }
            };
            // One server, one vote: a name that resolved to an address another name of this
            // round has is a duplicate; its requests still go out, its answer is not used.
            let duplicate = asked[..j].contains(&server);
            asked[j] = server;
            let (result, finished) = self.exchange(d, server, client, t, &now_at);
            end = end.max(finished);
            ended[j] = Some((
                if duplicate {
                    Ended::Unusable
                } else {
                    match result {
                        Some(Ok(iv)) => Ended::Sample(iv),
                        Some(Err(Failure::Rejected(Reject::KissOfDeath(code)))) => {
                            self.kisses += 1;
                            Ended::Kiss(code)
                        }
                        Some(Err(Failure::Rejected(_))) => Ended::Unusable,
                        _ => Ended::Failed,
                    }
                },
                server as u32,
            ));
        }
        let now = now_at(end);
        for (j, e) in ended.iter().enumerate() {
            let Some((e, server)) = e else { continue };
            // The daemon's `after_poll`: keep the address, or resolve the name at the next
            // poll when its server failed or another name keeps it.
            if d.sources[j].resolved.is_none() {
                d.sources[j].resolved = Some((*server, end));
                d.sources[j].silent = 0;
            }
            let taken = d.sources[..k]
                .iter()
                .enumerate()
                .any(|(i, o)| i != j && o.resolved.is_some_and(|(x, _)| x == *server));
            let s = &mut d.sources[j];
            let keep = match e {
                Ended::Sample(_) => {
                    s.silent = 0;
                    true
                }
                Ended::Failed => {
                    s.silent = s.silent.saturating_add(1);
                    s.silent < RESOLVE_AFTER_SILENT
                }
                Ended::Kiss(_) | Ended::Unusable => false,
            };
            if !keep || taken {
                s.resolved = None;
            }
            match *e {
                Ended::Sample(iv) => {
                    s.last = Some((iv, end));
                    s.last_server = *server;
                    s.policy.on_success();
                }
                Ended::Kiss(code) => {
                    s.policy.on_kiss(code);
                    if s.policy.stopped_by().is_some() {
                        // A pool name: this server is dropped, and the name is asked again
                        // after the longest poll interval.
                        s.policy = PollPolicy::new(cfg.max_poll, cfg.max_poll);
                    }
                }
                Ended::Failed | Ended::Unusable => s.policy.on_failure(),
            }
            s.next_due = end
                + s.policy
                    .next_interval(d.rng.next())
                    .map_or(u64::MAX / 4, |i| i.as_nanos().max(0) as u64);
        }
        // The consensus over every source's latest sample, aged by the drift bound.
        let max_age = SignedDuration::from_secs(2 << cfg.max_poll.clamp(0, 17));
        let mut outcomes = [Outcome::Failed; MAX_SOURCES];
        for (j, (o, s)) in outcomes.iter_mut().zip(&d.sources[..k]).enumerate() {
            // One server, one vote across rounds (the daemon's `superseded`): only the newest
            // sample from one server counts, the first source on a tie.
            let superseded = s.last.is_some_and(|(_, at)| {
                d.sources[..k].iter().enumerate().any(|(i, p)| {
                    i != j
                        && p.last_server == s.last_server
                        && p.last
                            .is_some_and(|(_, at_i)| at_i > at || (at_i == at && i < j))
                })
            });
            if superseded {
                continue;
            }
            if let Some((iv, at)) = s.last {
                let age = SignedDuration::from_nanos((end - at) as i64);
                if age <= max_age {
                    let w = age.mul_ppm(cfg.drift_ppm);
                    *o = Outcome::Reply(OffsetInterval {
                        lo: iv.lo - w,
                        hi: iv.hi + w,
                    });
                }
            }
        }
        let min_agree = cfg.min_agree.unwrap_or_else(|| default_min_agree(k));
        match select(&outcomes[..k], min_agree) {
            Ok(sel) => {
                // A name whose server is outside the consensus asks for another (the
                // daemon's falseticker verdict).
                for (j, s) in d.sources[..k].iter_mut().enumerate() {
                    if matches!(outcomes[j], Outcome::Reply(_)) && !sel.is_member(j) {
                        s.resolved = None;
                    }
                }
                d.sys.on_consensus(now, sel.interval, false);
                while d.sys.poll_action().is_some() {}
                d.burst_left = 0;
                d.trusted_at.get_or_insert(end);
                if !d
                    .sys
                    .trust()
                    .current(now.mono)
                    .interval
                    .contains(truth(end))
                {
                    d.trusted_a_liar = true;
                }
            }
            Err(_) if d.burst_left > 0 => {
                forget_servers(&mut d.sources[..k]);
                d.burst_left -= 1;
                let soon = end + BURST_EVERY.as_nanos() as u64;
                for s in d.sources[..k]
                    .iter_mut()
                    .filter(|s| s.policy.stopped_by().is_none())
                {
                    s.next_due = s.next_due.min(soon);
                }
            }
            Err(_) => forget_servers(&mut d.sources[..k]),
        }
        d.sources[..k]
            .iter()
            .filter(|s| s.policy.stopped_by().is_none())
            .map(|s| s.next_due)
            .min()
            // The daemon's loop sleeps at least 10 ms.
            .map(|n| n.max(end + 10_000_000))
    }

    /// One exchange with `server`, started at `t0` and cut off at the round's limit, with the
    /// shipped client (retries, backoff, reply checks). Returns the offset interval or why
    /// not (`None`: still pending at the limit), and when it ended.
    fn exchange(
        &mut self,
        d: &mut Device,
        server: usize,
        cfg: ClientConfig,
        t0: u64,
        now_at: &dyn Fn(u64) -> Now,
    ) -> (Option<Result<OffsetInterval, Failure>>, u64) {
        let limit = t0 + ROUND_TIMEOUT.as_nanos() as u64;
        let mut c = NtpClient::new(cfg);
        let mut buf = [0u8; 48];
        let mut reply: Option<(u64, [u8; 48])> = None;
        let mut t = t0;
        loop {
            let now = now_at(t);
            c.handle_timeout(now);
            if c.is_done() {
                break;
            }
            if let Some(len) = c.poll_transmit(now, d.rng.next(), &mut buf) {
                self.requests += 1;
                // A reply to an earlier try that arrives now is a duplicate: dropping it is
                // what the client would do with it.
                reply = self.serve(d, server, t, &buf[..len]);
            }
            let wake = c.poll_timeout().map_or(u64::MAX, |w| {
                w.as_nanos().saturating_sub(MONO_AT_ZERO).max(t)
            });
            match reply {
                Some((at, bytes)) if at <= wake => {
                    if at > limit {
                        return (None, limit);
                    }
                    t = at;
                    reply = None;
                    let _ = c.handle_datagram(now_at(t), &bytes);
                }
                _ => {
                    if wake > limit {
                        return (None, limit);
                    }
                    t = wake;
                }
            }
        }
        let r = c.take_sample().map_or_else(
            || match c.result() {
                Some(Err(f)) => Err(f),
                _ => Err(Failure::NoReply { tries: c.tries() }),
            },
            |s| Ok(OffsetInterval::around(s.offset, s.error_bound())),
        );
        (Some(r), t)
    }

    /// Server `i` receives `request` sent at `t`: counted in its load, answered (or not) as
    /// it behaves. Returns when the reply reaches the device, and the reply.
    fn serve(
        &mut self,
        d: &mut Device,
        i: usize,
        t: u64,
        request: &[u8],
    ) -> Option<(u64, [u8; 48])> {
        let s = self.pool[i];
        let one_way = s.one_way.as_nanos().max(0) as u64;
        let arrive = t + one_way;
        if arrive / self.bin_ns < self.bins as u64 {
            let b = (arrive / self.bin_ns) as usize;
            self.load[b * self.pool.len() + i] += 1;
        }
        if s.is_down(arrive) {
            return None;
        }
        // Loss on the way there or back.
        if s.loss_permille > 0 && d.rng.below(1000) < u64::from(s.loss_permille) {
            return None;
        }
        let (q, _) = NtpPacket::parse(request).ok()?;
        let rx = truth(arrive);
        let (stratum, refid, lie) = match s.kind {
            ServerKind::Honest => (2, *b"SIM\0", SignedDuration::ZERO),
            ServerKind::Liar(o) => (2, *b"SIM\0", o),
            ServerKind::Kiss(k) => (0, k.code(), SignedDuration::ZERO),
        };
        let rx = rx + lie;
        let tx = rx + SignedDuration::from_micros(20);
        let p = NtpPacket {
            leap: LeapIndicator::NoWarning,
            version: 4,
            mode: Mode::Server,
            stratum,
            poll: 6,
            precision: -20,
            root_delay: NtpShort::from_duration(SignedDuration::from_millis(10)),
            root_dispersion: NtpShort::from_duration(SignedDuration::from_millis(2)),
            reference_id: refid,
            reference_ts: NtpTimestamp::from_unix(rx - SignedDuration::from_secs(30)),
            origin_ts: q.transmit_ts,
            receive_ts: NtpTimestamp::from_unix(rx),
            transmit_ts: NtpTimestamp::from_unix(tx),
        };
        let mut out = [0u8; 48];
        p.emit(&mut out).ok()?;
        Some((arrive + 20_000 + one_way, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_is_small() {
        // 10^6 devices must fit in 1 GB.
        assert!(
            std::mem::size_of::<Device>() <= 1024,
            "{}",
            std::mem::size_of::<Device>()
        );
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
