//! The daemon in virtual time: a [`Node`] is one device running the shipped state machines
//! (one [`NtpSource`] per configured name, the combination [`combine`], the [`System`]) in
//! the sequence the daemon's run loop (`trusttime/src/daemon/run.rs`) drives them, against a
//! [`Net`] of simulated servers that answer with real NTP packets (the core codec; NTS
//! requests with NTS replies sealed by the core's [`append_authenticator`]) and a simulated
//! DNS that counts its lookups.
//!
//! At start, the [`System`] is restored from the device's disk and RTC as the daemon's
//! start-up does ([`Device::start`]); hand-set times and floor resets go in through the same
//! `System` commands the daemon's control socket uses ([`Node::set_manual`],
//! [`Node::reset_floor`]); a clean stop saves the state ([`Node::stop`]), a crash does not
//! ([`Node::kill`]); [`Device::reboot`] restarts the clocks.
//!
//! The sequence, at every wake-up (the earliest source timeout or datagram arrival):
//!
//! 1. every datagram that has arrived goes to its source's
//!    [`handle_datagram`](NtpSource::handle_datagram);
//! 2. every source: [`set_floor`](NtpSource::set_floor), then
//!    [`handle_timeout`](NtpSource::handle_timeout) when its
//!    [`poll_timeout`](NtpSource::poll_timeout) has come, then
//!    [`poll_transmit`](NtpSource::poll_transmit) until `None` (each datagram goes to the
//!    server the name resolved to), then [`poll_event`](NtpSource::poll_event) until `None`;
//!    when it [`wants_address`](NtpSource::wants_address), the name is resolved and an address
//!    picked with the core's [`pick_address`] (kept hourly when still listed and not taken by
//!    another name; another one after a failure) and the source is driven again; an NTS
//!    source gets its address and a new [`NtsSession`] from a key exchange instead (done at
//!    once here; the daemon runs it as a task), and a failed key exchange counts as a name
//!    that did not resolve; [`SourceEvent::NeedsKeyExchange`] asks for one;
//! 3. after a sample or a finished poll: the outcomes from every source's
//!    [`estimate`](NtpSource::estimate) (`Pending` before its first finished poll; the older
//!    of two samples from one address is `Failed`: one server, one vote), [`combine`] (NTS
//!    sources are the authenticated ones), and on
//!    a consensus [`System::on_consensus`] and its actions carried out as the daemon's effects
//!    do (a step or slew moves the wall clock and every source's samples, the RTC is written,
//!    the state saved); a falseticker's name asks for another server, and without a majority
//!    every name whose last poll failed (every name when the answers disagree:
//!    [`NtpSource::no_consensus`]); while unsynchronised, a burst (every 2 s, three times).
//!
//! Everything is deterministic from the seeds.

use trusttime_core::ntp::{
    write_extension_field, ExtensionFields, KissCode, LeapIndicator, Mode, NtpPacket, NtpShort,
    HEADER_LEN,
};
use trusttime_core::nts::{
    append_authenticator, field, Cookie, CookieJar, Keys, NtsSession, KEY_LEN, NONCE_LEN,
};
use trusttime_core::select::{combine, default_min_agree, Combination, Outcome, MAX_SOURCES};
use trusttime_core::source::{
    coalesced_wake, pick_address, NtpSource, SourceConfig, SourceEvent, RAND_LEN,
};
use trusttime_core::system::{Action, ManualChange, ManualError, Restored, System};
use trusttime_core::time::NtpTimestamp;
use trusttime_core::trust::TrustState;
use trusttime_core::{MonoInstant, Now, SignedDuration, TimeInterval, UnixTime};

use crate::{Behaviour, Device, SimServer};

/// Extra rounds while unsynchronised (the daemon's `burst_left`).
pub const BURST_ROUNDS: u8 = 3;
/// The wait between burst rounds.
pub const BURST_EVERY: SignedDuration = SignedDuration::from_secs(2);
/// Addresses one DNS answer holds (the NTP Pool answers with 4).
pub const DNS_ANSWER: usize = 4;
/// The daemon's loop sleeps at least this long.
const MIN_SLEEP: u64 = 1_000_000;

/// splitmix64: small, fast, the same on every machine.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// The network: servers (answering with real NTP packets), DNS names, and what they saw.
/// Virtual time `t` is nanoseconds since the world started; true time is `true_start + t`.
#[derive(Clone, Debug)]
pub struct Net {
    /// True time at virtual time zero.
    pub true_start: UnixTime,
    /// The servers (an address is an index).
    pub servers: Vec<SimServer>,
    /// Names: what each resolves to, and whether it is an NTS-KE server.
    names: Vec<(String, Vec<usize>, bool)>,
    /// DNS lookups per name (indices as [`name`](Self::name) returned); for an NTS name, key
    /// exchanges asked for.
    pub dns_lookups: Vec<u64>,
    /// Key exchanges fail (an attacker refuses or drops the NTS-KE port).
    pub nts_ke_blocked: bool,
    /// Keys handed out by key exchanges; a cookie names its keys by index (a real server
    /// seals them in the cookie with its master key: opaque to the client either way).
    nts_keys: Vec<Keys>,
    /// NTS requests answered with a reply sealed by the server-to-client key.
    pub nts_replies: u64,
    /// Requests received per server.
    pub requests: Vec<u64>,
    /// Kiss-o'-Death replies sent.
    pub kisses: u64,
    /// The next reply of this server is delayed by this much more (once).
    pub delay_next_reply: Option<(usize, SignedDuration)>,
    bin_ns: u64,
    bins: usize,
    load: Vec<u32>,
    rng: Rng,
}

impl Net {
    /// A network with no servers and no names.
    #[must_use]
    pub fn new(true_start: UnixTime, seed: u64) -> Self {
        Net {
            true_start,
            servers: Vec::new(),
            names: Vec::new(),
            dns_lookups: Vec::new(),
            nts_ke_blocked: false,
            nts_keys: Vec::new(),
            nts_replies: 0,
            requests: Vec::new(),
            kisses: 0,
            delay_next_reply: None,
            bin_ns: 3_600_000_000_000,
            bins: 0,
            load: Vec::new(),
            rng: Rng(seed ^ 0x6e65_7477_6f72_6b00),
        }
    }

    /// Adds a server; returns its address.
    pub fn add(&mut self, s: SimServer) -> usize {
        self.servers.push(s);
        self.requests.push(0);
        self.load.clear();
        self.bins = 0;
        self.servers.len() - 1
    }

    /// A DNS name resolving to `servers` (a pool: each answer is up to [`DNS_ANSWER`] of them
    /// in random order). Returns the name's index.
    pub fn name(&mut self, name: &str, servers: &[usize]) -> usize {
        self.names.push((name.to_owned(), servers.to_vec(), false));
        self.dns_lookups.push(0);
        self.names.len() - 1
    }

    /// An NTS-KE server name: a key exchange with it hands out fresh keys, 8 cookies and the
    /// NTP server `server` (which then answers NTS requests). Returns the name's index; a
    /// source configured with it is an NTS (authenticated) source.
    pub fn nts_name(&mut self, name: &str, server: usize) -> usize {
        self.names.push((name.to_owned(), vec![server], true));
        self.dns_lookups.push(0);
        self.names.len() - 1
    }

    /// Whether name `n` is an NTS-KE server.
    #[must_use]
    pub fn is_nts(&self, n: usize) -> bool {
        self.names.get(n).is_some_and(|(_, _, nts)| *nts)
    }

    /// Changes what name `n` resolves to (a pool adding or dropping servers).
    pub fn set_name(&mut self, n: usize, servers: &[usize]) {
        if let Some((_, s, _)) = self.names.get_mut(n) {
            *s = servers.to_vec();
        }
    }

    /// A key exchange with the NTS-KE server `n`: counted; fresh keys (from the network's
    /// seed) and 8 cookies for its NTP server, or `None` when blocked
    /// ([`nts_ke_blocked`](Self::nts_ke_blocked)) or `n` is not an NTS name.
    pub(crate) fn key_exchange(&mut self, n: usize) -> Option<(usize, NtsSession)> {
        let (_, servers, nts) = self.names.get(n)?;
        if !*nts {
            return None;
        }
        let server = *servers.first()?;
        self.dns_lookups[n] += 1;
        if self.nts_ke_blocked {
            return None;
        }
        let mut key = || {
            let mut k = [0u8; KEY_LEN];
            for c in k.chunks_mut(8) {
                c.copy_from_slice(&self.rng.next().to_le_bytes());
            }
            k
        };
        let keys = Keys {
            c2s: key(),
            s2c: key(),
        };
        self.nts_keys.push(keys.clone());
        let id = (self.nts_keys.len() - 1) as u64;
        let mut jar = CookieJar::new();
        for _ in 0..trusttime_core::nts::MAX_COOKIES {
            jar.push(cookie(id)?);
        }
        Some((server, NtsSession::new(keys, jar)))
    }

    /// Lookups of the name `name` so far.
    #[must_use]
    pub fn lookups(&self, name: &str) -> u64 {
        self.names
            .iter()
            .zip(&self.dns_lookups)
            .filter(|((n, _, _), _)| n == name)
            .map(|(_, &c)| c)
            .sum()
    }

    /// Counts requests per server in bins of `bin` over `duration` (see
    /// [`load`](Self::load)); clears what was counted.
    pub fn count_load(&mut self, bin: SignedDuration, duration: SignedDuration) {
        self.bin_ns = bin.as_nanos().max(1_000_000) as u64;
        self.bins = (duration.as_nanos().max(0) as u64).div_ceil(self.bin_ns) as usize;
        self.load = vec![0; self.bins * self.servers.len()];
    }

    /// Requests received per bin and server: `load()[bin * servers + server]`.
    #[must_use]
    pub fn load(&self) -> &[u32] {
        &self.load
    }

    /// Takes the load counts (for a report).
    pub fn take_load(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.load)
    }

    /// True time at virtual time `t`.
    #[must_use]
    pub fn truth(&self, t: u64) -> UnixTime {
        self.true_start + SignedDuration::from_nanos(t as i64)
    }

    /// Resolves name `n`: counted; up to [`DNS_ANSWER`] of its servers, in random order.
    pub(crate) fn resolve(&mut self, n: usize) -> Vec<usize> {
        let Some((_, all, _)) = self.names.get(n) else {
            return Vec::new();
        };
        self.dns_lookups[n] += 1;
        let k = all.len().min(DNS_ANSWER);
        let mut out = Vec::with_capacity(k);
        while out.len() < k {
            let pick = all[self.rng.below(all.len() as u64) as usize];
            if !out.contains(&pick) {
                out.push(pick);
            }
        }
        out
    }

    /// Server `i` receives `request` sent at virtual time `sent`: counted, then answered as it
    /// behaves (an NTS request with an NTS reply). Returns when the reply reaches the device,
    /// and the reply.
    pub(crate) fn serve(
        &mut self,
        i: usize,
        sent: u64,
        request: &[u8],
        rng: &mut Rng,
    ) -> Option<(u64, Datagram)> {
        let s = *self.servers.get(i)?;
        let one_way = s.one_way.as_nanos().max(0) as u64;
        let arrive = sent + one_way;
        self.requests[i] += 1;
        if self.requests[i] <= u64::from(s.drop_first) {
            return None;
        }
        let b = arrive / self.bin_ns;
        if b < self.bins as u64 {
            self.load[b as usize * self.servers.len() + i] += 1;
        }
        let off = |d: SignedDuration| d.as_nanos().max(0) as u64;
        if s.down
            .is_some_and(|(a, b)| arrive >= off(a) && arrive < off(b))
        {
            return None;
        }
        if s.loss_permille > 0 && rng.below(1000) < u64::from(s.loss_permille) {
            return None;
        }
        let (q, ext) = NtpPacket::parse(request).ok()?;
        let true_at = self.truth(arrive);
        let (stratum, rx, refid) = match s.behaviour {
            Behaviour::Silent => return None,
            Behaviour::Offset(o) => (2, true_at + o, *b"SIM\0"),
            Behaviour::Fixed(at) => (2, at, *b"SIM\0"),
            Behaviour::Kiss(k) => {
                self.kisses += 1;
                (0, true_at, k.code())
            }
        };
        let hold = SignedDuration::from_micros(20);
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
            reference_ts: NtpTimestamp::from_unix(rx - SignedDuration::from_secs(30)),
            origin_ts: q.transmit_ts,
            receive_ts: NtpTimestamp::from_unix(rx),
            transmit_ts: NtpTimestamp::from_unix(rx + hold),
        };
        let mut out = [0u8; 48];
        p.emit(&mut out).ok()?;
        let out = if ext.is_empty() {
            Datagram::Ntp(out)
        } else {
            Datagram::Nts(self.seal_reply(&out, ext, rng)?)
        };
        let mut back = arrive + off(hold) + off(s.one_way + s.asymmetry);
        if let Some((j, extra)) = self.delay_next_reply {
            if j == i {
                back += off(extra);
                self.delay_next_reply = None;
            }
        }
        Some((back, out))
    }

    /// The NTS server side (RFC 8915 section 5.7): the request's unique identifier echoed,
    /// and as many fresh cookies as the request carried cookies and placeholders, sealed in
    /// the authenticator with the server-to-client key of the request's cookie. A request
    /// whose cookie this network did not hand out gets no answer.
    fn seal_reply(&mut self, header: &[u8; 48], ext: &[u8], rng: &mut Rng) -> Option<Box<[u8]>> {
        let mut uid = None;
        let mut id = None;
        let mut wanted = 0usize;
        for f in ExtensionFields::new(ext) {
            let f = f.ok()?;
            match f.field_type {
                field::UNIQUE_ID => uid = Some(f.value),
                field::COOKIE => {
                    let b: [u8; 8] = f.value.get(..8)?.try_into().ok()?;
                    id = Some(u64::from_le_bytes(b));
                    wanted += 1;
                }
                field::COOKIE_PLACEHOLDER => wanted += 1,
                _ => {}
            }
        }
        let keys = self.nts_keys.get(usize::try_from(id?).ok()?)?.clone();
        let mut buf = vec![0u8; 2048];
        buf[..HEADER_LEN].copy_from_slice(header);
        let mut n = HEADER_LEN;
        n += write_extension_field(&mut buf[n..], field::UNIQUE_ID, uid?).ok()?;
        let mut plain = [0u8; 1024];
        let mut p = 0;
        for _ in 0..wanted.min(trusttime_core::nts::MAX_COOKIES) {
            let c = cookie(id?)?;
            p += write_extension_field(&mut plain[p..], field::COOKIE, c.as_bytes()).ok()?;
        }
        let mut nonce = [0u8; NONCE_LEN];
        for c in nonce.chunks_mut(8) {
            c.copy_from_slice(&rng.next().to_le_bytes());
        }
        let n = append_authenticator(&keys.s2c, &nonce, &plain[..p], &mut buf, n).ok()?;
        buf.truncate(n);
        self.nts_replies += 1;
        Some(buf.into_boxed_slice())
    }
}

/// A cookie naming key set `id` (100 bytes, like a real server's).
fn cookie(id: u64) -> Option<Cookie> {
    let mut b = [0xc0u8; 100];
    b[..8].copy_from_slice(&id.to_le_bytes());
    Cookie::new(&b).ok()
}

/// A datagram on its way to the device.
#[derive(Clone, Debug)]
pub(crate) enum Datagram {
    /// A plain NTP reply.
    Ntp([u8; 48]),
    /// An NTS reply (header, unique identifier, authenticator with cookies).
    Nts(Box<[u8]>),
}

impl Datagram {
    fn bytes(&self) -> &[u8] {
        match self {
            Datagram::Ntp(b) => b,
            Datagram::Nts(b) => b,
        }
    }
}

/// The daemon settings a [`Node`] runs with (`[daemon]` and `[clock]` of the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// `daemon.min-poll` (log2 s).
    pub min_poll: i8,
    /// `daemon.max-poll` (log2 s).
    pub max_poll: i8,
    /// `clock.min-agree` (`None`: the default for the number of sources).
    pub min_agree: Option<u8>,
    /// `daemon.startup-delay`: upper bound of the random delay before the first poll.
    pub startup_delay: SignedDuration,
    /// The poll exponent saved before a restart (the daemon resumes every source at it).
    pub resume_poll: Option<i8>,
}

impl Default for NodeConfig {
    /// The shipped defaults: polls between 2^6 and 2^10 s, no start-up delay.
    fn default() -> Self {
        NodeConfig {
            min_poll: 6,
            max_poll: 10,
            min_agree: None,
            startup_delay: SignedDuration::ZERO,
            resume_poll: None,
        }
    }
}

/// What a node did, for assertions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Consensuses reached.
    pub consensuses: u64,
    /// Virtual time of the first consensus.
    pub first_trusted_at: Option<u64>,
    /// Virtual time at which the trusted interval first excluded the true time (checked at
    /// every wake-up while the time is not unknown).
    pub wrong_at: Option<u64>,
    /// Wake-ups at which the trusted interval was checked against the truth.
    pub checks: u64,
    /// Kiss-o'-Death replies received.
    pub kisses: u64,
    /// `READY=1` sent.
    pub ready: u32,
    /// The widest trusted interval seen after the first consensus while synchronised
    /// (radius).
    pub widest_synced: SignedDuration,
    /// The longest round-trip delay of a sample taken.
    pub max_sample_delay: SignedDuration,
}

#[derive(Clone, Debug)]
struct Src {
    name: usize,
    ntp: NtpSource,
    addr: Option<usize>,
    polled: bool,
    /// An NTS source (authenticated): its address and keys come from a key exchange.
    nts: bool,
    /// Consensuses this source was a member of.
    members: u32,
}

/// One device running the daemon's sequence over the shipped sources and [`System`]. See the
/// [module docs](self).
#[derive(Clone, Debug)]
pub struct Node {
    /// The device: clocks, RTC, disk.
    pub device: Device,
    /// The shipped owner of the device's time.
    pub sys: System,
    /// What happened.
    pub stats: NodeStats,
    /// What the start-up restored from the disk (`None`: nothing was saved).
    pub restored: Option<Restored>,
    cfg: NodeConfig,
    sources: Vec<Src>,
    /// Virtual time the device's clocks stand at.
    at: u64,
    /// Virtual time the daemon started.
    started: u64,
    /// Datagrams on their way: (arrival, source, address, bytes).
    inbox: Vec<(u64, usize, usize, Datagram)>,
    burst_left: u8,
    no_majority_at: Option<MonoInstant>,
    rng: Rng,
}

impl Node {
    /// Starts the daemon on `device` at virtual time `t` of `net` (the device's true time is
    /// set to the network's; its wall clock keeps its error), the [`System`] restored from its
    /// disk and RTC as the daemon's start-up does ([`Device::start`]), with one source per
    /// name (indices from [`Net::name`], or [`Net::nts_name`] for an NTS source); the first
    /// polls are due after a random start-up delay.
    #[must_use]
    pub fn start(
        mut device: Device,
        cfg: NodeConfig,
        names: &[usize],
        net: &Net,
        t: u64,
        seed: u64,
    ) -> Self {
        device.truth = net.truth(t);
        let (sys, restored) = device.start();
        let mut rng = Rng(seed);
        let delay = cfg.startup_delay.as_nanos().max(0) as u64;
        let first = device.mono + SignedDuration::from_nanos(rng.below(delay + 1) as i64);
        let src_cfg = source_config(&cfg, sys.floor(), device.config.trust.drift_ppm);
        let sources = names
            .iter()
            .map(|&name| {
                let nts = net.is_nts(name);
                let mut ntp = NtpSource::new(src_cfg, first);
                if nts {
                    // No keys yet: the first key exchange brings them with the address.
                    ntp = ntp.with_nts(NtsSession::empty());
                }
                if let Some(p) = cfg.resume_poll {
                    ntp.resume_at(p);
                }
                Src {
                    name,
                    ntp,
                    addr: None,
                    polled: false,
                    nts,
                    members: 0,
                }
            })
            .collect();
        Node {
            device,
            sys,
            stats: NodeStats::default(),
            restored,
            cfg,
            sources,
            at: t,
            started: t,
            inbox: Vec::new(),
            burst_left: BURST_ROUNDS,
            no_majority_at: None,
            rng,
        }
    }

    /// The shipped source of name `i` (as configured).
    #[must_use]
    pub fn source(&self, i: usize) -> &NtpSource {
        &self.sources[i].ntp
    }

    /// Consensuses source `i` was a member of.
    #[must_use]
    pub fn members(&self, i: usize) -> u32 {
        self.sources[i].members
    }

    /// The server source `i` asks now.
    #[must_use]
    pub fn address(&self, i: usize) -> Option<usize> {
        self.sources[i].addr
    }

    /// Virtual time the daemon started.
    #[must_use]
    pub fn started_at(&self) -> u64 {
        self.started
    }

    /// Bytes the node holds on the heap (its sources and datagrams in flight).
    #[must_use]
    pub fn heap_size(&self) -> usize {
        self.sources.capacity() * std::mem::size_of::<Src>()
            + self.inbox.capacity() * std::mem::size_of::<(u64, usize, usize, Datagram)>()
            + self.device.log.capacity() * std::mem::size_of::<Action>()
    }

    /// Virtual time the node stands at.
    #[must_use]
    pub fn at(&self) -> u64 {
        self.at
    }

    /// A clean stop (SIGTERM): the state is saved. Returns the device for a restart.
    #[must_use]
    pub fn stop(mut self) -> Device {
        self.device.stop(&mut self.sys);
        self.device
    }

    /// A crash (kill -9, power loss): nothing more is saved. Returns the device for a restart.
    #[must_use]
    pub fn kill(self) -> Device {
        self.device
    }

    /// A hand-set time (`trusttime set`: the daemon's `commands.rs` hands it to
    /// [`System::set_manual`]), its actions carried out as the daemon's effects do (a step
    /// moves every source's samples too).
    ///
    /// # Errors
    /// As [`System::set_manual`].
    pub fn set_manual(
        &mut self,
        time: UnixTime,
        uncertainty: SignedDuration,
        force: bool,
    ) -> Result<ManualChange, ManualError> {
        let r = self.sys.set_manual(
            self.device.now(),
            TimeInterval::around(time, uncertainty),
            force,
        );
        self.carry_out();
        r
    }

    /// The operator's floor reset (`trusttime set --reset-floor`: [`System::reset_floor`]),
    /// its actions carried out.
    pub fn reset_floor(&mut self) {
        self.sys.reset_floor();
        self.carry_out();
    }

    /// Lets the device run until virtual time `until`.
    pub fn run_until(&mut self, net: &mut Net, until: u64) {
        while let Some(t) = self.next_wake() {
            if t > until {
                break;
            }
            self.step(net, t);
        }
        self.advance(until);
        self.check();
    }

    /// When the daemon's loop wakes next (the earliest source timeout or arrival), never
    /// sooner than 1 ms after the last wake-up; `None`: never (every source stopped).
    #[must_use]
    pub fn next_wake(&self) -> Option<u64> {
        let mono = self.device.mono;
        // Timers due close together are served in one wake, as the daemon does.
        let min_poll = self.cfg.min_poll.clamp(-6, 17);
        let slack = SignedDuration::from_nanos(if min_poll >= 0 {
            (1_000_000_000_i64 << min_poll) / 64
        } else {
            (1_000_000_000_i64 >> -min_poll) / 64
        });
        let timeouts = coalesced_wake(
            self.sources.iter().filter_map(|s| s.ntp.poll_timeout()),
            slack,
        )
        .map(|m| {
            self.at
                .saturating_add(m.as_nanos().saturating_sub(mono.as_nanos()))
        });
        let arrivals = self.inbox.iter().map(|d| d.0);
        // A source waiting for an address: the loop resolves its name at once.
        let resolve = self
            .sources
            .iter()
            .filter(|s| s.ntp.wants_address().is_some())
            .map(|_| self.at);
        timeouts
            .into_iter()
            .chain(arrivals)
            .chain(resolve)
            .min()
            .map(|t| t.max(self.at + MIN_SLEEP))
    }

    fn advance(&mut self, t: u64) {
        if t > self.at {
            self.device
                .advance(SignedDuration::from_nanos((t - self.at) as i64));
            self.at = t;
        }
    }

    /// One pass of the daemon's loop at virtual time `t` (see the module docs).
    pub fn step(&mut self, net: &mut Net, t: u64) {
        self.advance(t);
        let now = self.device.now();
        let mut changed = false;
        // Datagrams that arrived, oldest first.
        self.inbox.sort_by_key(|d| d.0);
        while self.inbox.first().is_some_and(|d| d.0 <= t) {
            let (_, i, addr, bytes) = self.inbox.remove(0);
            // The daemon's socket is connected: a datagram from an earlier server is dropped.
            if self.sources[i].addr != Some(addr) {
                continue;
            }
            let _ = self.sources[i].ntp.handle_datagram(now, bytes.bytes());
            changed |= self.take_events(i);
        }
        // One poll jitter for every source served in this wake (as the daemon draws it).
        let jitter = self.rng.next();
        for i in 0..self.sources.len() {
            changed |= self.drive(net, i, now, jitter);
        }
        if changed {
            self.decide();
        }
        self.check();
    }

    /// Feeds source `i` its timeout, sends what it asks, takes its events, resolves its name
    /// when it asks (then drives it again). True when an estimate may have changed.
    fn drive(&mut self, net: &mut Net, i: usize, now: Now, jitter: u64) -> bool {
        let mut changed = false;
        for _ in 0..3 {
            let floor = self.sys.floor();
            let s = &mut self.sources[i];
            s.ntp.set_floor(floor);
            if s.ntp.poll_timeout().is_some_and(|t| t <= now.mono) {
                s.ntp.handle_timeout(now, jitter);
            }
            let mut buf = [0u8; 1024];
            loop {
                let mut rnd = [0u8; RAND_LEN];
                for c in rnd.chunks_mut(8) {
                    c.copy_from_slice(&self.rng.next().to_le_bytes()[..c.len()]);
                }
                let Some(len) = self.sources[i].ntp.poll_transmit(now, &rnd, &mut buf) else {
                    break;
                };
                if let Some(addr) = self.sources[i].addr {
                    if let Some((at, reply)) = net.serve(addr, self.at, &buf[..len], &mut self.rng)
                    {
                        self.inbox.push((at, i, addr, reply));
                    }
                }
            }
            changed |= self.take_events(i);
            if self.sources[i].ntp.wants_address().is_none() {
                break;
            }
            if self.sources[i].nts {
                self.key_exchange(net, i, now.mono);
            } else {
                self.resolve(net, i, now.mono);
            }
        }
        changed
    }

    /// The daemon's `Resolved`, with the core's [`pick_address`]: after an hour the address is
    /// kept when still listed and no other name has it; after a failure another listed
    /// address nobody asks is preferred.
    fn resolve(&mut self, net: &mut Net, i: usize, mono: MonoInstant) {
        let addrs = net.resolve(self.sources[i].name);
        let Some(&first) = addrs.first() else {
            self.sources[i].polled = true;
            self.sources[i].ntp.address_failed(mono);
            return;
        };
        let taken: Vec<usize> = self
            .sources
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .filter_map(|(_, s)| s.addr)
            .collect();
        let keep = self.sources[i].addr;
        let why = self.sources[i].ntp.wants_address();
        let pick = pick_address(why, keep, &addrs, &taken).unwrap_or(first);
        let same = keep == Some(pick);
        self.sources[i].addr = Some(pick);
        self.sources[i].ntp.address_resolved(mono, same);
    }

    /// The daemon's `KeyExchanged`: a new session and the NTP server the key exchange named;
    /// a failed key exchange is handled as a name that did not resolve.
    fn key_exchange(&mut self, net: &mut Net, i: usize, mono: MonoInstant) {
        let s = &mut self.sources[i];
        match net.key_exchange(s.name) {
            Some((server, session)) => {
                s.ntp.set_nts_session(session);
                let same = s.addr == Some(server);
                s.addr = Some(server);
                s.ntp.address_resolved(mono, same);
            }
            None => {
                s.polled = true;
                s.ntp.address_failed(mono);
            }
        }
    }

    fn take_events(&mut self, i: usize) -> bool {
        let mut changed = false;
        let s = &mut self.sources[i];
        while let Some(e) = s.ntp.poll_event() {
            match e {
                SourceEvent::Sample(sample) => {
                    s.polled = true;
                    changed = true;
                    self.stats.max_sample_delay = self.stats.max_sample_delay.max(sample.delay);
                }
                SourceEvent::Failed(_) => {
                    s.polled = true;
                    changed = true;
                }
                SourceEvent::Kiss(_) => {
                    s.polled = true;
                    changed = true;
                    self.stats.kisses += 1;
                }
                // No cookie left, or the server refused ours: the daemon asks for a key
                // exchange the way it asks for a name to be resolved.
                SourceEvent::NeedsKeyExchange => s.ntp.resolve_again(),
                // Resolve: asked for by `wants_address`.
                SourceEvent::Resolve(_) => {}
            }
        }
        changed
    }

    /// The daemon's `decide`: the outcomes, [`combine`], the consensus to the [`System`].
    fn decide(&mut self) {
        let now = self.device.now();
        let n = self.sources.len().min(MAX_SOURCES);
        let mut outcomes = [Outcome::Failed; MAX_SOURCES];
        let mut last: [Option<(usize, MonoInstant)>; MAX_SOURCES] = [None; MAX_SOURCES];
        for (i, s) in self.sources.iter().take(n).enumerate() {
            let est = s.ntp.estimate(now.mono);
            outcomes[i] = match est {
                Some(e) => Outcome::Reply(e.offset),
                None if !s.polled && s.ntp.policy().stopped_by().is_none() => Outcome::Pending,
                None => Outcome::Failed,
            };
            last[i] = s.addr.zip(est.map(|e| e.at));
        }
        let (outcomes, last) = (&mut outcomes[..n], &last[..n]);
        // One server, one vote: the newest sample of one address counts (the first source on
        // a tie).
        for (i, o) in outcomes.iter_mut().enumerate() {
            let Some((addr, at)) = last[i] else { continue };
            let superseded = last.iter().enumerate().any(|(j, l)| {
                j != i
                    && l.is_some_and(|(a, at_j)| a == addr && (at_j > at || (at_j == at && j < i)))
            });
            if superseded {
                *o = Outcome::Failed;
            }
        }
        let mut auth = [false; MAX_SOURCES];
        for (a, s) in auth.iter_mut().zip(&self.sources) {
            *a = s.nts;
        }
        let n_auth = auth[..n].iter().filter(|&&a| a).count();
        let min_for = |k: usize| self.cfg.min_agree.unwrap_or_else(|| default_min_agree(k));
        match combine(outcomes, &auth[..n], min_for(n_auth), min_for(n - n_auth)) {
            Combination::Wait => {}
            Combination::Agreed {
                selection,
                authenticated,
                ..
            } => {
                for (i, o) in outcomes.iter().enumerate() {
                    if selection.is_member(i) {
                        self.sources[i].members += 1;
                    } else if matches!(o, Outcome::Reply(_)) {
                        self.sources[i].ntp.resolve_again();
                    }
                }
                let _ = self
                    .sys
                    .on_consensus(now, selection.interval, authenticated);
                self.stats.consensuses += 1;
                self.stats.first_trusted_at.get_or_insert(self.at);
                self.burst_left = 0;
                self.carry_out();
                let t = self.sys.trust().current(self.device.mono);
                if self.sys.trust().state(self.device.mono) == TrustState::Synced {
                    self.stats.widest_synced = self.stats.widest_synced.max(t.interval.radius());
                }
                self.check();
            }
            Combination::Failed(why) => {
                let min_poll = SignedDuration::from_secs(1 << self.cfg.min_poll.clamp(0, 17));
                let fresh = match self.no_majority_at {
                    Some(t) => now.mono.since(t) >= min_poll,
                    None => true,
                };
                if !fresh
                    && !matches!(
                        why,
                        trusttime_core::select::NoConsensus::Disagreement { .. }
                    )
                {
                    return;
                }
                if fresh {
                    self.no_majority_at = Some(now.mono);
                    let disagreement = matches!(
                        why,
                        trusttime_core::select::NoConsensus::Disagreement { .. }
                    );
                    for s in &mut self.sources {
                        s.ntp.no_consensus(disagreement);
                    }
                }
                if self.burst_left > 0 && fresh {
                    self.burst_left -= 1;
                    let soon = now.mono + BURST_EVERY;
                    for s in &mut self.sources {
                        if s.ntp.policy().stopped_by().is_none() {
                            s.ntp.poll_by(soon);
                        }
                    }
                }
            }
        }
    }

    /// Carries out the [`System`]'s actions as the daemon's effects do: a step or slew moves
    /// the wall clock and every source's samples.
    fn carry_out(&mut self) {
        let sources = &mut self.sources;
        let ready = &mut self.stats.ready;
        self.device.carry_out_with(&mut self.sys, |a| match a {
            Action::Step(by) => sources.iter_mut().for_each(|s| s.ntp.stepped(by)),
            Action::Slew(by) => sources.iter_mut().for_each(|s| s.ntp.slewed(by)),
            Action::NotifyReady => *ready += 1,
            _ => {}
        });
    }

    /// The trusted interval against the truth.
    fn check(&mut self) {
        if self.sys.trust().state(self.device.mono) == TrustState::Unknown {
            return;
        }
        self.stats.checks += 1;
        let t = self.sys.trust().current(self.device.mono);
        if !t.interval.contains(self.device.truth) && self.stats.wrong_at.is_none() {
            self.stats.wrong_at = Some(self.at);
        }
    }

    /// The Kiss-o'-Death that stopped source `i`, if one did.
    #[must_use]
    pub fn stopped_by(&self, i: usize) -> Option<KissCode> {
        self.sources[i].ntp.policy().stopped_by()
    }
}

fn source_config(cfg: &NodeConfig, floor: UnixTime, drift_ppm: u32) -> SourceConfig {
    SourceConfig {
        client: trusttime_core::ntp::ClientConfig {
            floor,
            ..trusttime_core::ntp::ClientConfig::default()
        },
        min_poll: cfg.min_poll,
        max_poll: cfg.max_poll,
        drift_ppm,
        max_age: SignedDuration::from_secs(2 << cfg.max_poll.clamp(0, 17)),
    }
}
