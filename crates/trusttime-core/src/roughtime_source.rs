//! Roughtime servers asked as one chain, again and again, for the whole run.
//!
//! [`RoughtimeChain`] is to Roughtime what [`NtpSource`](crate::source::NtpSource) is to NTP:
//! it lives as long as the driver and keeps what must outlive one request: a round's chain,
//! the poll interval ([`PollPolicy`], one for the chain), and per server the clock filter
//! (the last 8 samples; the narrowest once aged by the drift bound), the reach register and
//! whether its name should be resolved again. Up to [`MAX_SERVERS`] servers, no allocation:
//! about 7 KiB in all (the request, the last response for the next nonce, 8 filters).
//!
//! ## A round
//!
//! When a round is due the servers are asked one after another, in the configured order.
//! The first request's nonce is fresh random bytes; every later one is
//! [`chain_nonce`]`(previous response, blind)`, the previous server's whole response datagram
//! hashed with fresh random bytes. The responses thereby prove the order they were obtained
//! in: when a later server's signed time ends before an earlier one's begins, one of the two
//! lies, and the chain is signed evidence of it ([`RoughtimeEvent::Violation`]). A server
//! that stays silent after [`TRIES`] tries is skipped and the chain goes on with the next
//! one (from the last response it has). A round in which nobody answered backs the poll
//! interval off.
//!
//! ## The contract (the quinn-proto shape, as [`NtpSource`](crate::source::NtpSource))
//!
//! The chain never reads a clock, never draws randomness and never touches a socket. The
//! driver keeps one socket per server and loops:
//!
//! 1. [`poll_timeout`](RoughtimeChain::poll_timeout): sleep until then (or until a datagram).
//! 2. [`handle_timeout`](RoughtimeChain::handle_timeout) when that time has come: a round
//!    starts, a lost request is sent again, or a silent server is given up for this round.
//! 3. [`poll_transmit`](RoughtimeChain::poll_transmit) until it returns `None`: send each
//!    datagram to the server whose index it returns.
//! 4. [`handle_datagram`](RoughtimeChain::handle_datagram) for every datagram from a
//!    server's address, with that server's index.
//! 5. [`poll_event`](RoughtimeChain::poll_event) until it returns `None`: a sample (that
//!    server's [`estimate`](RoughtimeChain::estimate) changed: run the selection), a failure,
//!    a proven violation, a request to resolve a name, the end of a round. While any server
//!    [`wants_address`](RoughtimeChain::wants_address) no round starts: the driver resolves
//!    its name and calls [`address_resolved`](RoughtimeChain::address_resolved) (or
//!    [`address_failed`](RoughtimeChain::address_failed): that server sits the round out).

use crate::ntp::filter::{ClockFilter, FilterSample};
use crate::ntp::{LeapIndicator, PollPolicy, Sample};
use crate::roughtime::{
    chain_nonce, encode_request_for_server, verify_response, RoughtimeError, Verified, Version,
    REQUEST_LEN,
};
use crate::select::OffsetInterval;
use crate::source::{splitmix, Events};
use crate::source::{Estimate, ResolveReason, RESOLVE_AFTER_SILENT, RESOLVE_EVERY};
use crate::time::{MonoInstant, Now, SignedDuration, TimeInterval, UnixTime};

/// Most servers in one chain.
pub const MAX_SERVERS: usize = 8;

/// Requests sent to one server in a round before it is given up (the same bytes each time).
pub const TRIES: u8 = 3;

/// Longest response kept for the next nonce. A response may not be longer than its request
/// (the draft's rule against amplification), and every request is [`REQUEST_LEN`] bytes.
pub const MAX_RESPONSE: usize = REQUEST_LEN;

/// Fresh random bytes [`RoughtimeChain::poll_transmit`] takes for one datagram.
pub const RAND_LEN: usize = 64;

const EVENTS: usize = 2 * MAX_SERVERS + 4;

/// One server of the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerKey {
    /// The wire version it speaks.
    pub version: Version,
    /// Its long-term Ed25519 public key, obtained out of band.
    pub key: [u8; 32],
}

/// Settings of a [`RoughtimeChain`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainConfig {
    /// Lowest poll exponent (log2 s) between rounds.
    pub min_poll: i8,
    /// Highest poll exponent (log2 s).
    pub max_poll: i8,
    /// The local clock's drift bound: a stored sample widens by this much per second of age.
    pub drift_ppm: u32,
    /// Samples older than this are not used.
    pub max_age: SignedDuration,
    /// How long to wait for a reply to one request (there are [`TRIES`]).
    pub reply_timeout: SignedDuration,
    /// A signed time below this is refused (updated with [`RoughtimeChain::set_floor`]).
    pub floor: UnixTime,
}

/// Why a server gave no sample in a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainFailure {
    /// No valid reply to [`TRIES`] requests (replies that failed verification: the last
    /// reason, if any came).
    NoReply {
        /// Why the last reply that came was refused, if one came.
        last_invalid: Option<RoughtimeError>,
    },
    /// It signed a time below the floor.
    BelowFloor {
        /// The time it signed.
        signed: UnixTime,
    },
    /// Its name could not be resolved: it sat the round out.
    NoAddress,
}

/// Two servers of one round whose signed times contradict the order the chain proves: the
/// later one's time ends before the earlier one's begins. One of them lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Index of the server asked first.
    pub earlier: usize,
    /// What it signed (`MIDP ± RADI`).
    pub earlier_time: TimeInterval,
    /// Index of the server asked after it (its nonce derives from the earlier response).
    pub later: usize,
    /// What it signed.
    pub later_time: TimeInterval,
}

/// What happened, for the driver (take them with [`RoughtimeChain::poll_event`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoughtimeEvent {
    /// Server `server` gave a verified sample: its estimate changed (run the selection).
    Sample {
        /// The server's index.
        server: usize,
        /// The measurement, in NTP terms (root dispersion = the server's radius).
        sample: Sample,
    },
    /// Server `server` gave no sample this round.
    Failed {
        /// The server's index.
        server: usize,
        /// Why.
        failure: ChainFailure,
    },
    /// The chain proves that one of two servers lies.
    Violation(Violation),
    /// Server `server`'s name should be resolved before the next round.
    Resolve {
        /// The server's index.
        server: usize,
        /// Why.
        why: ResolveReason,
    },
    /// A round ended.
    RoundFinished {
        /// Servers that gave a sample.
        answered: u8,
    },
}

/// Why a datagram was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// No index like that.
    UnknownServer,
    /// No request to that server is outstanding: late, a duplicate, or never asked.
    NotRequested,
    /// Longer than [`MAX_RESPONSE`].
    TooLong,
    /// It failed verification against the server's key and the request sent (forged,
    /// altered, replayed from an earlier request, or malformed).
    Invalid(RoughtimeError),
}

#[derive(Clone, Copy, Debug)]
struct Server {
    id: ServerKey,
    filter: ClockFilter,
    reach: u8,
    silent: u8,
    requests: u64,
    address_at: Option<MonoInstant>,
    wants_address: Option<ResolveReason>,
    /// The name did not resolve: this server sits out the next round start, then asks again.
    no_address: bool,
    last_failure: Option<ChainFailure>,
}

/// The request in flight to the round's current server.
#[derive(Clone, Copy, Debug)]
struct Exchange {
    server: usize,
    nonce: [u8; 64],
    len: usize,
    /// Tries sent.
    tries: u8,
    /// A (re)send is due: `poll_transmit` writes it.
    send_due: bool,
    /// When the first try left (the server read its clock after this).
    first_sent: Option<Now>,
    /// The reply deadline of the last try (or when the send became due).
    deadline: MonoInstant,
    last_invalid: Option<RoughtimeError>,
    /// Steps of the clock since the first try left.
    step: SignedDuration,
    /// Slews started since the first try left.
    slew: (SignedDuration, SignedDuration),
}

/// Roughtime servers asked as a chain for the whole run. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct RoughtimeChain {
    config: ChainConfig,
    servers: [Option<Server>; MAX_SERVERS],
    n: usize,
    policy: PollPolicy,
    next_due: MonoInstant,
    rand: u64,
    in_round: bool,
    /// Index of the next server to ask in this round.
    next: usize,
    exchange: Option<Exchange>,
    request: [u8; REQUEST_LEN],
    /// The last verified response of this round (its bytes feed the next nonce).
    previous: [u8; MAX_RESPONSE],
    previous_len: Option<usize>,
    /// What each server signed this round.
    signed: [Option<TimeInterval>; MAX_SERVERS],
    answered: u8,
    events: Events<RoughtimeEvent, EVENTS>,
}

/// More than [`MAX_SERVERS`] servers, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadServerCount(pub usize);

impl core::fmt::Display for BadServerCount {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "a Roughtime chain takes 1 to {MAX_SERVERS} servers, not {}",
            self.0
        )
    }
}

#[cfg(feature = "std")]
impl std::error::Error for BadServerCount {}

impl RoughtimeChain {
    /// A chain of `servers` (asked in this order) whose first round is due at `first_poll`,
    /// once every server has an address ([`wants_address`](Self::wants_address) is
    /// [`ResolveReason::First`] for each until then).
    ///
    /// # Errors
    /// [`BadServerCount`] for no server or more than [`MAX_SERVERS`].
    pub fn new(
        config: ChainConfig,
        servers: &[ServerKey],
        first_poll: MonoInstant,
    ) -> Result<Self, BadServerCount> {
        if servers.is_empty() || servers.len() > MAX_SERVERS {
            return Err(BadServerCount(servers.len()));
        }
        let mut slots = [None; MAX_SERVERS];
        for (slot, id) in slots.iter_mut().zip(servers) {
            *slot = Some(Server {
                id: *id,
                filter: ClockFilter::new(),
                reach: 0,
                silent: 0,
                requests: 0,
                address_at: None,
                wants_address: None,
                no_address: false,
                last_failure: None,
            });
        }
        let mut chain = RoughtimeChain {
            config,
            servers: slots,
            n: servers.len(),
            policy: PollPolicy::new(config.min_poll, config.max_poll),
            next_due: first_poll,
            rand: 0,
            in_round: false,
            next: 0,
            exchange: None,
            request: [0; REQUEST_LEN],
            previous: [0; MAX_RESPONSE],
            previous_len: None,
            signed: [None; MAX_SERVERS],
            answered: 0,
            events: Events::new(),
        };
        for i in 0..chain.n {
            chain.want_address(i, ResolveReason::First);
        }
        Ok(chain)
    }

    /// The number of servers.
    #[must_use]
    pub fn len(&self) -> usize {
        self.n
    }

    /// Never true: a chain has at least one server.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Resumes at a poll exponent saved before a restart.
    pub fn resume_at(&mut self, poll: i8) {
        self.policy.resume_at(poll);
    }

    /// Nothing signed below `floor` is accepted from now on (call it when the floor rises).
    pub fn set_floor(&mut self, floor: UnixTime) {
        self.config.floor = floor;
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next: a send that is due or the
    /// reply deadline in a round, else the next round. `None` while a server waits for an
    /// address. A time in the past means now.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<MonoInstant> {
        if self.in_round {
            return Some(self.exchange.map_or(MonoInstant::ZERO, |x| x.deadline));
        }
        if self.servers().any(|s| s.wants_address.is_some()) {
            return None;
        }
        Some(self.next_due)
    }

    /// Call when [`poll_timeout`](Self::poll_timeout) has passed (calling it early is
    /// harmless). `rand` must be fresh randomness (the next round's jitter). Starts the round
    /// that is due (or first asks for names to be resolved: at first, hourly, after a failed
    /// lookup); sends a lost request again; gives a silent server up after [`TRIES`] and
    /// moves on to the next one.
    pub fn handle_timeout(&mut self, now: Now, rand: u64) {
        self.rand = rand;
        if self.in_round {
            if let Some(x) = self.exchange.as_mut() {
                if x.send_due || now.mono < x.deadline {
                    return;
                }
                if x.tries < TRIES {
                    x.send_due = true;
                    x.deadline = now.mono;
                    return;
                }
                let (i, why) = (x.server, x.last_invalid);
                self.exchange = None;
                self.server_silent(i, why);
            }
            self.advance(now);
            return;
        }
        if now.mono < self.next_due || self.servers().any(|s| s.wants_address.is_some()) {
            return;
        }
        // Names first: never resolved (or the last lookup failed one round ago), or an hour old.
        let mut asked = false;
        for i in 0..self.n {
            let Some(s) = self.servers[i].as_mut() else {
                continue;
            };
            let why = match s.address_at {
                None if s.no_address => {
                    // It sits this round out; its name is asked again before the next one.
                    s.no_address = false;
                    None
                }
                None => Some(ResolveReason::First),
                Some(at) if now.mono.since(at) >= RESOLVE_EVERY => Some(ResolveReason::Hourly),
                Some(_) => None,
            };
            if let Some(why) = why {
                self.want_address(i, why);
                asked = true;
            }
        }
        if asked {
            return;
        }
        self.in_round = true;
        self.next = 0;
        self.previous_len = None;
        self.signed = [None; MAX_SERVERS];
        self.answered = 0;
        self.advance(now);
    }

    /// Call after [`handle_timeout`](Self::handle_timeout) and
    /// [`handle_datagram`](Self::handle_datagram), until it returns `None`: writes the next
    /// request of the chain into `buf` (at least [`REQUEST_LEN`] bytes) and returns the index
    /// of the server to send it to and its length. `rand` must be [`RAND_LEN`] fresh random
    /// bytes from a cryptographic generator: the first request's nonce, or the blind of a
    /// chained one (keep the blinds and the responses to show the chain to a third party).
    #[must_use]
    pub fn poll_transmit(
        &mut self,
        now: Now,
        rand: &[u8; RAND_LEN],
        buf: &mut [u8],
    ) -> Option<(usize, usize)> {
        let x = self.exchange.as_mut()?;
        if !x.send_due {
            return None;
        }
        // The try counts whether or not it can be written (a `buf` too small): the server then
        // times out like a silent one, and the chain never stalls on a send it cannot make.
        x.send_due = false;
        x.tries += 1;
        x.deadline = now.mono + self.config.reply_timeout;
        let s = self.servers.get_mut(x.server)?.as_mut()?;
        if x.first_sent.is_none() {
            x.nonce = match self.previous_len {
                Some(n) => chain_nonce(self.previous.get(..n)?, rand),
                None => *rand,
            };
            x.len = encode_request_for_server(s.id.version, &x.nonce, &s.id.key, &mut self.request)
                .ok()?;
            x.first_sent = Some(now);
            s.requests = s.requests.saturating_add(1);
        }
        let out = buf.get_mut(..x.len)?;
        out.copy_from_slice(self.request.get(..x.len)?);
        Some((x.server, x.len))
    }

    /// Call for every datagram received from server `server`'s address. It is used only when
    /// it is the verified answer to the request outstanding to that server; anything else
    /// (forged, altered, replayed, late, duplicated, another server's) is ignored and said
    /// why, and the exchange goes on, so a forger cannot cancel the genuine reply.
    ///
    /// # Errors
    /// [`Ignored`]: why the datagram was not used.
    pub fn handle_datagram(
        &mut self,
        server: usize,
        bytes: &[u8],
        now: Now,
    ) -> Result<(), Ignored> {
        if server >= self.n {
            return Err(Ignored::UnknownServer);
        }
        let x = match self.exchange.as_mut() {
            Some(x) if x.server == server && x.tries > 0 => x,
            _ => return Err(Ignored::NotRequested),
        };
        if bytes.len() > MAX_RESPONSE {
            return Err(Ignored::TooLong);
        }
        let Some(s) = self.servers.get(server).copied().flatten() else {
            return Err(Ignored::UnknownServer);
        };
        let request = self.request.get(..x.len).ok_or(Ignored::NotRequested)?;
        let v = match verify_response(s.id.version, bytes, &x.nonce, request, &s.id.key) {
            Ok(v) => v,
            Err(e) => {
                x.last_invalid = Some(e);
                return Err(Ignored::Invalid(e));
            }
        };
        let Some(t1) = x.first_sent else {
            return Err(Ignored::NotRequested);
        };
        let x = *x;
        self.exchange = None;
        if v.midpoint < self.config.floor {
            let failure = ChainFailure::BelowFloor { signed: v.midpoint };
            self.server_failed(server, failure);
        } else {
            let sample = sample_of(&v, t1, now);
            // A violation against any server asked before in this round (the first found).
            let contradicted = (0..server).find_map(|j| {
                self.signed[j]
                    .filter(|before| v.interval.latest < before.earliest)
                    .map(|before| (j, before))
            });
            if let Some((j, before)) = contradicted {
                self.push(RoughtimeEvent::Violation(Violation {
                    earlier: j,
                    earlier_time: before,
                    later: server,
                    later_time: v.interval,
                }));
            }
            self.signed[server] = Some(v.interval);
            self.answered = self.answered.saturating_add(1);
            // The next request chains from this response.
            if let Some(dst) = self.previous.get_mut(..bytes.len()) {
                dst.copy_from_slice(bytes);
                self.previous_len = Some(bytes.len());
            }
            let measured = OffsetInterval::around(sample.offset, sample.error_bound());
            if let Some(s) = self.servers[server].as_mut() {
                s.reach |= 1;
                s.silent = 0;
                s.last_failure = None;
                s.filter.add(FilterSample {
                    offset: OffsetInterval {
                        lo: measured.lo - x.step + x.slew.0,
                        hi: measured.hi - x.step + x.slew.1,
                    },
                    delay: sample.delay,
                    at: now.mono,
                });
            }
            self.push(RoughtimeEvent::Sample { server, sample });
        }
        self.advance(now);
        Ok(())
    }

    /// Call after the other calls until it returns `None`: what happened, oldest first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<RoughtimeEvent> {
        self.events.pop()
    }

    /// Why server `server` waits for an address, if it does.
    #[must_use]
    pub fn wants_address(&self, server: usize) -> Option<ResolveReason> {
        self.server(server).and_then(|s| s.wants_address)
    }

    /// The driver resolved server `server`'s name: `same` says whether it is the address it
    /// had. A new address starts a new filter (its samples are of another server).
    pub fn address_resolved(&mut self, server: usize, now: MonoInstant, same: bool) {
        if let Some(s) = self.servers.get_mut(server).and_then(Option::as_mut) {
            if !same {
                s.filter.clear();
                s.silent = 0;
            }
            s.address_at = Some(now);
            s.wants_address = None;
            s.no_address = false;
        }
    }

    /// Server `server`'s name could not be resolved: it sits out the next round (counted as
    /// a poll without a reply) and its name is asked again before the one after, not at once
    /// (a name that does not resolve must not become a loop of DNS queries).
    pub fn address_failed(&mut self, server: usize, _now: MonoInstant) {
        if let Some(s) = self.servers.get_mut(server).and_then(Option::as_mut) {
            s.wants_address = None;
            s.address_at = None;
            s.no_address = true;
            s.last_failure = Some(ChainFailure::NoAddress);
        }
    }

    /// Call while unsynchronised to ask again soon: the next round starts no later than `at`.
    pub fn poll_by(&mut self, at: MonoInstant) {
        if !self.in_round {
            self.next_due = self.next_due.min(at);
        }
    }

    /// Server `server`'s best estimate at `now`: its filter's narrowest sample once aged by
    /// the drift bound, if one is younger than the maximum age.
    #[must_use]
    pub fn estimate(&self, server: usize, now: MonoInstant) -> Option<Estimate> {
        self.server(server)?
            .filter
            .best(now, self.config.drift_ppm, self.config.max_age)
            .map(|s| Estimate {
                offset: s.aged(now, self.config.drift_ppm),
                delay: s.delay,
                at: s.at,
            })
    }

    /// The local clock was stepped by `by`: stored samples move with it, and so will the
    /// sample of a request in flight (it left on the old clock).
    pub fn stepped(&mut self, by: SignedDuration) {
        for s in self.servers.iter_mut().flatten() {
            s.filter.stepped(by);
        }
        if let Some(x) = self.exchange.as_mut() {
            if x.first_sent.is_some() {
                x.step += by;
            }
        }
    }

    /// A slew of `by` was started: stored samples cover the old and the new clock, and so
    /// will the sample of a request in flight.
    pub fn slewed(&mut self, by: SignedDuration) {
        for s in self.servers.iter_mut().flatten() {
            s.filter.slewed(by);
        }
        if let Some(x) = self.exchange.as_mut() {
            if x.first_sent.is_some() {
                if by.is_negative() {
                    x.slew.1 -= by;
                } else {
                    x.slew.0 -= by;
                }
            }
        }
    }

    /// Server `server`'s reach register: bit 0 is the last round, 1 if it gave a sample.
    #[must_use]
    pub fn reach(&self, server: usize) -> u8 {
        self.server(server).map_or(0, |s| s.reach)
    }

    /// Requests first sent to server `server` (tries not counted).
    #[must_use]
    pub fn requests(&self, server: usize) -> u64 {
        self.server(server).map_or(0, |s| s.requests)
    }

    /// How server `server`'s last round ended without a sample, if it did.
    #[must_use]
    pub fn last_failure(&self, server: usize) -> Option<ChainFailure> {
        self.server(server).and_then(|s| s.last_failure)
    }

    /// The server a request is outstanding to, if one is.
    #[must_use]
    pub fn asking(&self) -> Option<usize> {
        self.exchange.map(|x| x.server)
    }

    /// True while a round runs.
    #[must_use]
    pub fn in_round(&self) -> bool {
        self.in_round
    }

    /// The poll policy (interval between rounds, backoff).
    #[must_use]
    pub fn policy(&self) -> &PollPolicy {
        &self.policy
    }

    /// When the next round is due (meaningless while one runs).
    #[must_use]
    pub fn next_due(&self) -> MonoInstant {
        self.next_due
    }

    fn server(&self, i: usize) -> Option<&Server> {
        self.servers.get(i).and_then(Option::as_ref)
    }

    fn servers(&self) -> impl Iterator<Item = &Server> {
        self.servers.iter().flatten()
    }

    /// Moves to the next server that has an address, or ends the round.
    fn advance(&mut self, now: Now) {
        while self.next < self.n {
            let i = self.next;
            self.next += 1;
            let Some(s) = self.servers[i].as_mut() else {
                continue;
            };
            s.reach <<= 1;
            if s.address_at.is_none() || s.wants_address.is_some() {
                s.last_failure = Some(ChainFailure::NoAddress);
                self.push(RoughtimeEvent::Failed {
                    server: i,
                    failure: ChainFailure::NoAddress,
                });
                continue;
            }
            self.exchange = Some(Exchange {
                server: i,
                nonce: [0; 64],
                len: 0,
                tries: 0,
                send_due: true,
                first_sent: None,
                deadline: now.mono,
                last_invalid: None,
                step: SignedDuration::ZERO,
                slew: (SignedDuration::ZERO, SignedDuration::ZERO),
            });
            return;
        }
        self.in_round = false;
        if self.answered > 0 {
            self.policy.on_success();
        } else {
            self.policy.on_failure();
        }
        if let Some(wait) = self.policy.next_interval(self.rand) {
            self.next_due = now.mono + wait;
        }
        self.rand = splitmix(self.rand);
        self.push(RoughtimeEvent::RoundFinished {
            answered: self.answered,
        });
    }

    fn server_silent(&mut self, i: usize, last_invalid: Option<RoughtimeError>) {
        let failure = ChainFailure::NoReply { last_invalid };
        let mut resolve = false;
        if let Some(s) = self.servers[i].as_mut() {
            s.silent = s.silent.saturating_add(1);
            if s.silent >= RESOLVE_AFTER_SILENT {
                s.silent = 0;
                resolve = true;
            }
        }
        self.server_failed(i, failure);
        if resolve {
            self.want_address(i, ResolveReason::Silent);
        }
    }

    fn server_failed(&mut self, i: usize, failure: ChainFailure) {
        if let Some(s) = self.servers[i].as_mut() {
            s.last_failure = Some(failure);
        }
        self.push(RoughtimeEvent::Failed { server: i, failure });
    }

    fn want_address(&mut self, i: usize, why: ResolveReason) {
        if let Some(s) = self.servers[i].as_mut() {
            s.wants_address = Some(why);
        }
        self.push(RoughtimeEvent::Resolve { server: i, why });
    }

    fn push(&mut self, e: RoughtimeEvent) {
        self.events.push(e);
    }
}

/// The sample a verified Roughtime reply gives, for a request first sent at `t1` whose reply
/// arrived at `now`: the server read its clock somewhere in the round trip, so the offset is
/// taken against the middle of it, and the error is half the round trip plus the server's
/// radius (as root dispersion).
#[must_use]
pub fn sample_of(v: &Verified, t1: Now, now: Now) -> Sample {
    let rtt = now.mono.since(t1.mono).abs();
    Sample {
        offset: v.midpoint - (t1.wall + rtt.half()),
        delay: rtt,
        root_delay: SignedDuration::ZERO,
        root_dispersion: v.radius,
        precision: SignedDuration::ZERO,
        stratum: 1,
        leap: LeapIndicator::NoWarning,
        reference_id: *b"ROUG",
        server_time: v.midpoint,
        received_at: Now {
            mono: now.mono,
            wall: t1.wall + rtt,
        },
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use ed25519_dalek::{Signer, SigningKey};
    use sha2::{Digest, Sha512};

    use super::*;
    use crate::roughtime::{unframe, Message, Tag, DRAFT_MAGIC, DRAFT_VERSION};

    const BASE: i64 = 1_800_000_000;
    const FLOOR: i64 = 1_750_000_000;
    const ONLINE_SEED: [u8; 32] = [0x99; 32];

    fn seed(i: usize) -> [u8; 32] {
        [i as u8 + 1; 32]
    }

    fn public(seed: [u8; 32]) -> [u8; 32] {
        SigningKey::from_bytes(&seed).verifying_key().to_bytes()
    }

    fn cfg() -> ChainConfig {
        ChainConfig {
            min_poll: 6,
            max_poll: 10,
            drift_ppm: 100,
            max_age: SignedDuration::from_secs(4096),
            reply_timeout: SignedDuration::from_millis(500),
            floor: UnixTime::from_secs(FLOOR),
        }
    }

    /// The device clock is exact: wall = BASE + ms.
    fn at(ms: u64) -> Now {
        Now {
            mono: MonoInstant::from_nanos(ms * 1_000_000),
            wall: UnixTime::from_secs(BASE) + SignedDuration::from_millis(ms as i64),
        }
    }

    fn chain(versions: &[Version]) -> RoughtimeChain {
        let keys: Vec<ServerKey> = versions
            .iter()
            .enumerate()
            .map(|(i, &version)| ServerKey {
                version,
                key: public(seed(i)),
            })
            .collect();
        let mut c = RoughtimeChain::new(cfg(), &keys, MonoInstant::ZERO).unwrap();
        for i in 0..keys.len() {
            assert_eq!(c.wants_address(i), Some(ResolveReason::First));
            c.address_resolved(i, MonoInstant::ZERO, false);
        }
        let _ = events(&mut c);
        c
    }

    fn events(c: &mut RoughtimeChain) -> Vec<RoughtimeEvent> {
        let mut v = Vec::new();
        while let Some(e) = c.poll_event() {
            v.push(e);
        }
        v
    }

    fn msg(fields: &[(Tag, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(fields.len() as u32).to_le_bytes());
        let mut off = 0u32;
        for (_, v) in &fields[..fields.len().saturating_sub(1)] {
            off += v.len() as u32;
            out.extend_from_slice(&off.to_le_bytes());
        }
        for (t, _) in fields {
            out.extend_from_slice(&t.to_bytes());
        }
        for (_, v) in fields {
            out.extend_from_slice(v);
        }
        out
    }

    /// The request's nonce as sent (64 bytes for Google, 32 for the draft).
    fn nonce_of(version: Version, req: &[u8]) -> Vec<u8> {
        Message::parse(unframe(version, req).unwrap())
            .unwrap()
            .get(Tag::NONC)
            .unwrap()
            .to_vec()
    }

    /// A response to `req` signed by the server whose long-term key is `seed`: time `secs`
    /// (Unix) ± `radius_s`.
    fn answer(version: Version, seed: [u8; 32], req: &[u8], secs: i64, radius_s: u32) -> Vec<u8> {
        let nonce = nonce_of(version, req);
        let lt = SigningKey::from_bytes(&seed);
        let online = SigningKey::from_bytes(&ONLINE_SEED);
        let unit: u64 = match version {
            Version::Google => 1_000_000,
            Version::Draft => 1,
        };
        let midp = secs as u64 * unit;
        let radi = radius_s * unit as u32;
        let pubk = online.verifying_key().to_bytes();
        let (mint, maxt) = (
            (midp - 3600 * unit).to_le_bytes(),
            (midp + 3600 * unit).to_le_bytes(),
        );
        let dele = msg(&[(Tag::PUBK, &pubk), (Tag::MINT, &mint), (Tag::MAXT, &maxt)]);
        let mut signed = version.delegation_context().to_vec();
        signed.extend_from_slice(&dele);
        let cert_sig = lt.sign(&signed).to_bytes();
        let cert = msg(&[(Tag::SIG, &cert_sig), (Tag::DELE, &dele)]);
        let leaf: &[u8] = match version {
            Version::Google => &nonce,
            Version::Draft => req,
        };
        let mut h = Sha512::new();
        h.update([0u8]);
        h.update(leaf);
        let root_full = h.finalize();
        let root = &root_full[..version.root_len()];
        let (radi, midp, ver) = (
            radi.to_le_bytes(),
            midp.to_le_bytes(),
            DRAFT_VERSION.to_le_bytes(),
        );
        let srep = match version {
            Version::Google => msg(&[(Tag::RADI, &radi), (Tag::MIDP, &midp), (Tag::ROOT, root)]),
            Version::Draft => msg(&[
                (Tag::VER, &ver),
                (Tag::RADI, &radi),
                (Tag::MIDP, &midp),
                (Tag::VERS, &ver),
                (Tag::ROOT, root),
            ]),
        };
        let mut signed = version.response_context().to_vec();
        signed.extend_from_slice(&srep);
        let sig = online.sign(&signed).to_bytes();
        let typ = 1u32.to_le_bytes();
        let indx = 0u32.to_le_bytes();
        let mut fields: Vec<(Tag, &[u8])> = std::vec![(Tag::SIG, &sig), (Tag::NONC, &nonce)];
        if version == Version::Draft {
            fields.push((Tag::TYPE, &typ));
        }
        fields.extend_from_slice(&[
            (Tag::PATH, &[][..]),
            (Tag::SREP, &srep),
            (Tag::CERT, &cert),
            (Tag::INDX, &indx),
        ]);
        let body = msg(&fields);
        match version {
            Version::Google => body,
            Version::Draft => {
                let mut r = DRAFT_MAGIC.to_vec();
                r.extend_from_slice(&(body.len() as u32).to_le_bytes());
                r.extend_from_slice(&body);
                r
            }
        }
    }

    fn rnd(b: u8) -> [u8; RAND_LEN] {
        [b; RAND_LEN]
    }

    /// Sends what is due at `ms`: (server, request).
    fn send(c: &mut RoughtimeChain, ms: u64, b: u8) -> Option<(usize, Vec<u8>)> {
        let mut buf = [0u8; 2048];
        c.poll_transmit(at(ms), &rnd(b), &mut buf)
            .map(|(i, n)| (i, buf[..n].to_vec()))
    }

    /// True time at `ms` (the device is exact), in whole seconds for the draft's resolution.
    fn true_secs(ms: u64) -> i64 {
        BASE + (ms / 1000) as i64
    }

    #[test]
    fn the_second_request_chains_from_the_first_response() {
        for v in [Version::Google, Version::Draft] {
            let mut c = chain(&[v, v]);
            c.handle_timeout(at(0), 1);
            let (i, req) = send(&mut c, 0, 7).unwrap();
            assert_eq!(i, 0);
            assert_eq!(req.len(), REQUEST_LEN);
            assert_eq!(
                nonce_of(v, &req),
                [7u8; 64][..v.nonce_len()],
                "{v}: fresh nonce"
            );
            assert!(send(&mut c, 1, 8).is_none(), "one request at a time");
            let resp = answer(v, seed(0), &req, true_secs(20), 1);
            c.handle_datagram(0, &resp, at(20)).unwrap();
            let (i, req2) = send(&mut c, 20, 9).unwrap();
            assert_eq!(i, 1);
            let want = chain_nonce(&resp, &rnd(9));
            assert_eq!(nonce_of(v, &req2), want[..v.nonce_len()], "{v}: chained");
            let resp2 = answer(v, seed(1), &req2, true_secs(40), 1);
            c.handle_datagram(1, &resp2, at(40)).unwrap();
            let e = events(&mut c);
            assert!(
                e.contains(&RoughtimeEvent::RoundFinished { answered: 2 }),
                "{e:?}"
            );
            assert!(!e.iter().any(|e| matches!(e, RoughtimeEvent::Violation(_))));
            for s in 0..2 {
                let est = c.estimate(s, MonoInstant::from_nanos(40_000_000)).unwrap();
                // The draft signs whole seconds: within the radius (1 s) and the round trip.
                assert!(est.offset.lo <= SignedDuration::ZERO, "{est:?}");
                assert!(est.offset.hi >= -SignedDuration::from_millis(40), "{est:?}");
                assert!(est.offset.radius() <= SignedDuration::from_millis(1100));
            }
            // The next round starts afresh: its first nonce is random again.
            let due = c.poll_timeout().unwrap();
            assert!(due >= MonoInstant::from_nanos(64_000_000_000));
            let t = due.as_nanos() / 1_000_000 + 1;
            c.handle_timeout(at(t), 2);
            let (i, req3) = send(&mut c, t, 11).unwrap();
            assert_eq!(
                (i, nonce_of(v, &req3)),
                (0, [11u8; 64][..v.nonce_len()].to_vec())
            );
        }
    }

    #[test]
    fn forged_altered_replayed_and_duplicate_replies_are_ignored_and_the_genuine_one_taken() {
        use RoughtimeError as E;
        let v = Version::Google;
        let mut c = chain(&[v, v]);
        c.handle_timeout(at(0), 1);
        let (_, old_req) = send(&mut c, 0, 3).unwrap();
        let old = answer(v, seed(0), &old_req, true_secs(10), 1);
        c.handle_datagram(0, &old, at(10)).unwrap();
        let (_, req) = send(&mut c, 10, 4).unwrap();
        c.handle_datagram(1, &answer(v, seed(1), &req, true_secs(20), 1), at(20))
            .unwrap();
        // The next round: server 0 is asked again.
        let t = c.poll_timeout().unwrap().as_nanos() / 1_000_000 + 1;
        c.handle_timeout(at(t), 1);
        let (i, req) = send(&mut c, t, 5).unwrap();
        assert_eq!(i, 0);
        let _ = events(&mut c);
        // Signed by another key (a forger without the server's key).
        let forged = answer(v, [0x55; 32], &req, true_secs(t), 1);
        assert_eq!(
            c.handle_datagram(0, &forged, at(t + 1)),
            Err(Ignored::Invalid(E::BadDelegationSignature))
        );
        // The genuine answer with its time altered.
        let genuine = answer(v, seed(0), &req, true_secs(t + 20), 1);
        let mut altered = genuine.clone();
        let pos = altered
            .windows(8)
            .position(|w| w == (true_secs(t + 20) as u64 * 1_000_000).to_le_bytes())
            .unwrap();
        altered[pos] ^= 1;
        assert_eq!(
            c.handle_datagram(0, &altered, at(t + 2)),
            Err(Ignored::Invalid(E::BadResponseSignature))
        );
        // The server's genuine answer to the last round's request: replayed.
        assert_eq!(
            c.handle_datagram(0, &old, at(t + 3)),
            Err(Ignored::Invalid(E::NonceMismatch))
        );
        // From another server's socket: not asked.
        assert_eq!(
            c.handle_datagram(1, &genuine, at(t + 3)),
            Err(Ignored::NotRequested)
        );
        assert_eq!(
            c.handle_datagram(9, &genuine, at(t + 3)),
            Err(Ignored::UnknownServer)
        );
        assert_eq!(
            c.handle_datagram(0, &[0u8; MAX_RESPONSE + 1], at(t + 3)),
            Err(Ignored::TooLong)
        );
        assert!(events(&mut c).is_empty(), "nothing ended the exchange");
        assert_eq!(c.asking(), Some(0));
        c.handle_datagram(0, &genuine, at(t + 20)).unwrap();
        assert!(matches!(
            events(&mut c)[..],
            [RoughtimeEvent::Sample { server: 0, .. }]
        ));
        // The same answer again: a duplicate, nothing outstanding to server 0 any more; and on
        // server 1's socket it does not verify against server 1's request.
        assert_eq!(
            c.handle_datagram(0, &genuine, at(t + 21)),
            Err(Ignored::NotRequested)
        );
        let (i, _) = send(&mut c, t + 20, 6).unwrap();
        assert_eq!(i, 1);
        assert!(matches!(
            c.handle_datagram(1, &genuine, at(t + 22)),
            Err(Ignored::Invalid(_))
        ));
        assert!(events(&mut c).is_empty());
    }

    #[test]
    fn a_later_server_signing_an_earlier_time_is_a_proven_violation_with_both_indices() {
        let v = Version::Draft;
        let mut c = chain(&[v, v, v]);
        c.handle_timeout(at(0), 1);
        // Server 0 is an hour ahead; server 1 is honest (so it contradicts 0, within the
        // chain); server 2 is ahead by 10 minutes (contradicts nothing: later than 1, and
        // 0 is reported once, by the first server found).
        let (_, r0) = send(&mut c, 0, 1).unwrap();
        c.handle_datagram(0, &answer(v, seed(0), &r0, true_secs(10) + 3600, 1), at(10))
            .unwrap();
        let (_, r1) = send(&mut c, 10, 2).unwrap();
        c.handle_datagram(1, &answer(v, seed(1), &r1, true_secs(20), 1), at(20))
            .unwrap();
        let (_, r2) = send(&mut c, 20, 3).unwrap();
        c.handle_datagram(2, &answer(v, seed(2), &r2, true_secs(30) + 600, 1), at(30))
            .unwrap();
        let e = events(&mut c);
        let violations: Vec<_> = e
            .iter()
            .filter_map(|e| match e {
                RoughtimeEvent::Violation(v) => Some(*v),
                _ => None,
            })
            .collect();
        let ahead = UnixTime::from_secs(true_secs(10) + 3600);
        let honest = UnixTime::from_secs(true_secs(20));
        let late = UnixTime::from_secs(true_secs(30) + 600);
        assert_eq!(
            violations,
            [
                Violation {
                    earlier: 0,
                    earlier_time: TimeInterval::around(ahead, SignedDuration::from_secs(1)),
                    later: 1,
                    later_time: TimeInterval::around(honest, SignedDuration::from_secs(1)),
                },
                Violation {
                    earlier: 0,
                    earlier_time: TimeInterval::around(ahead, SignedDuration::from_secs(1)),
                    later: 2,
                    later_time: TimeInterval::around(late, SignedDuration::from_secs(1)),
                }
            ]
        );
        // Every server still gave its sample: the selection decides who is wrong.
        assert_eq!(
            e.iter()
                .filter(|e| matches!(e, RoughtimeEvent::Sample { .. }))
                .count(),
            3
        );
        // Times that overlap within their radii are no violation.
        let mut c = chain(&[v, v]);
        c.handle_timeout(at(0), 1);
        let (_, r0) = send(&mut c, 0, 1).unwrap();
        c.handle_datagram(0, &answer(v, seed(0), &r0, true_secs(10) + 2, 2), at(10))
            .unwrap();
        let (_, r1) = send(&mut c, 10, 2).unwrap();
        c.handle_datagram(1, &answer(v, seed(1), &r1, true_secs(20), 1), at(20))
            .unwrap();
        assert!(!events(&mut c)
            .iter()
            .any(|e| matches!(e, RoughtimeEvent::Violation(_))));
    }

    #[test]
    fn a_silent_server_is_retried_then_skipped_and_a_silent_round_backs_off() {
        let v = Version::Google;
        let mut c = chain(&[v, v]);
        c.handle_timeout(at(0), 1);
        let (i, first) = send(&mut c, 0, 1).unwrap();
        assert_eq!(i, 0);
        let mut t = 0;
        for _ in 1..TRIES {
            let due = c.poll_timeout().unwrap();
            assert_eq!(due, MonoInstant::from_nanos((t + 500) * 1_000_000));
            c.handle_timeout(at(t + 499), 1);
            assert!(
                send(&mut c, t + 499, 9).is_none(),
                "not before the deadline"
            );
            t += 500;
            c.handle_timeout(at(t), 1);
            let (i, again) = send(&mut c, t, 2).unwrap();
            assert_eq!((i, &again), (0, &first), "the same request again");
        }
        t += 500;
        c.handle_timeout(at(t), 1);
        let e = events(&mut c);
        assert_eq!(
            e,
            [RoughtimeEvent::Failed {
                server: 0,
                failure: ChainFailure::NoReply { last_invalid: None }
            }]
        );
        // Its answer, too late: server 0 has been given up for this round.
        let late = answer(v, seed(0), &first, true_secs(t), 1);
        assert_eq!(
            c.handle_datagram(0, &late, at(t + 1)),
            Err(Ignored::NotRequested)
        );
        // On to server 1, with a fresh nonce (no response to chain from).
        let (i, req) = send(&mut c, t, 3).unwrap();
        assert_eq!((i, nonce_of(v, &req)), (1, [3u8; 64].to_vec()));
        c.handle_datagram(
            1,
            &answer(v, seed(1), &req, true_secs(t + 10), 1),
            at(t + 10),
        )
        .unwrap();
        assert!(c
            .estimate(1, MonoInstant::from_nanos((t + 10) * 1_000_000))
            .is_some());
        assert!(c
            .estimate(0, MonoInstant::from_nanos((t + 10) * 1_000_000))
            .is_none());
        assert_eq!((c.reach(0), c.reach(1)), (0, 1));
        assert_eq!(c.policy().poll_exponent(), 6, "one answer: no backoff");
        // Rounds where nobody answers back off, and a name silent four rounds in a row is
        // resolved again (no round starts before it is).
        let mut resolved = [false; 2];
        for round in 0..4 {
            for (s, seen) in resolved.iter_mut().enumerate() {
                if let Some(why) = c.wants_address(s) {
                    assert_eq!(why, ResolveReason::Silent);
                    assert_eq!(c.poll_timeout(), None, "no round before it is resolved");
                    *seen = true;
                    c.address_resolved(s, MonoInstant::from_nanos(t * 1_000_000), true);
                }
            }
            let due = c.poll_timeout().unwrap().as_nanos() / 1_000_000 + 1;
            t = t.max(due);
            c.handle_timeout(at(t), 1);
            while c.in_round() {
                let _ = send(&mut c, t, 4);
                t += 500;
                c.handle_timeout(at(t), 1);
            }
            let e = events(&mut c);
            assert!(e.contains(&RoughtimeEvent::RoundFinished { answered: 0 }));
            assert_eq!(c.policy().poll_exponent(), (7 + round).min(10));
        }
        assert_eq!(
            resolved,
            [true, false],
            "server 0: 4 silent rounds by the 4th"
        );
        assert_eq!(c.wants_address(1), Some(ResolveReason::Silent));
        assert_eq!(c.poll_timeout(), None);
        c.address_resolved(1, MonoInstant::from_nanos(t * 1_000_000), false);
        assert!(c.poll_timeout().is_some());
    }

    #[test]
    fn names_are_resolved_first_hourly_and_a_failed_one_sits_a_round_out() {
        let v = Version::Google;
        let keys = [
            ServerKey {
                version: v,
                key: public(seed(0)),
            },
            ServerKey {
                version: v,
                key: public(seed(1)),
            },
        ];
        let mut c = RoughtimeChain::new(cfg(), &keys, MonoInstant::ZERO).unwrap();
        let e = events(&mut c);
        assert_eq!(e.len(), 2);
        assert_eq!(c.poll_timeout(), None);
        c.handle_timeout(at(0), 1);
        assert!(send(&mut c, 0, 1).is_none(), "no request without addresses");
        c.address_resolved(0, MonoInstant::ZERO, false);
        assert_eq!(c.poll_timeout(), None, "server 1 still waits");
        c.address_failed(1, MonoInstant::ZERO);
        assert_eq!(c.poll_timeout(), Some(MonoInstant::ZERO));
        c.handle_timeout(at(0), 1);
        let (i, req) = send(&mut c, 0, 1).unwrap();
        assert_eq!(i, 0);
        c.handle_datagram(0, &answer(v, seed(0), &req, true_secs(10), 1), at(10))
            .unwrap();
        let e = events(&mut c);
        assert!(e.contains(&RoughtimeEvent::Failed {
            server: 1,
            failure: ChainFailure::NoAddress
        }));
        assert!(!c.in_round());
        // The next round asks server 1's name again first.
        let t = c.poll_timeout().unwrap().as_nanos() / 1_000_000 + 1;
        c.handle_timeout(at(t), 1);
        assert_eq!(c.wants_address(1), Some(ResolveReason::First));
        assert_eq!(c.wants_address(0), None);
        c.address_resolved(1, MonoInstant::from_nanos(t * 1_000_000), false);
        // Rounds go on; after an hour both names are asked again, and the samples stay while
        // the address is the same.
        let mut t = t;
        let mut hourly = false;
        while t < 4_000_000 {
            if c.wants_address(0).is_some() {
                assert_eq!(c.wants_address(0), Some(ResolveReason::Hourly));
                hourly = true;
                let now = MonoInstant::from_nanos(t * 1_000_000);
                c.address_resolved(0, now, true);
                c.address_resolved(1, now, false);
                assert!(c.estimate(0, now).is_some(), "same server: samples kept");
                assert!(c.estimate(1, now).is_none(), "another server: a new filter");
                break;
            }
            t = t.max(c.poll_timeout().unwrap().as_nanos() / 1_000_000 + 1);
            c.handle_timeout(at(t), 1);
            while let Some((i, req)) = send(&mut c, t, 5) {
                t += 10;
                c.handle_datagram(i, &answer(v, seed(i), &req, true_secs(t), 1), at(t))
                    .unwrap();
            }
        }
        assert!(hourly);
        assert!((3_600_000..3_600_000 + 1_300_000).contains(&t), "{t}");
    }

    #[test]
    fn a_step_moves_stored_samples_and_the_sample_of_a_request_in_flight() {
        let v = Version::Google;
        let mut c = chain(&[v, v]);
        c.handle_timeout(at(0), 1);
        let (_, r0) = send(&mut c, 0, 1).unwrap();
        c.handle_datagram(0, &answer(v, seed(0), &r0, true_secs(10), 1), at(10))
            .unwrap();
        let now = MonoInstant::from_nanos(10_000_000);
        let before = c.estimate(0, now).unwrap();
        // Server 1's request is out when the clock is stepped an hour ahead.
        let (_, r1) = send(&mut c, 10, 2).unwrap();
        let step = SignedDuration::from_secs(3600);
        c.stepped(step);
        let after = c.estimate(0, now).unwrap();
        assert_eq!(after.offset.lo, before.offset.lo - step);
        assert_eq!(after.offset.hi, before.offset.hi - step);
        // Measured on the old clock server 1 agreed; on the new one it is an hour behind.
        c.handle_datagram(1, &answer(v, seed(1), &r1, true_secs(20), 1), at(20))
            .unwrap();
        let e = c.estimate(1, MonoInstant::from_nanos(20_000_000)).unwrap();
        assert!(e.offset.lo <= -step && -step <= e.offset.hi, "{e:?}");
        // A slew covers both clocks.
        c.slewed(SignedDuration::from_millis(-500));
        let e2 = c.estimate(1, MonoInstant::from_nanos(20_000_000)).unwrap();
        assert_eq!(e2.offset.lo, e.offset.lo);
        assert_eq!(e2.offset.hi, e.offset.hi + SignedDuration::from_millis(500));
    }

    #[test]
    fn a_time_below_the_floor_is_refused_and_not_chained_from() {
        let v = Version::Google;
        let mut c = chain(&[v, v]);
        c.set_floor(UnixTime::from_secs(BASE + 100_000));
        c.handle_timeout(at(0), 1);
        let (_, r0) = send(&mut c, 0, 1).unwrap();
        c.handle_datagram(0, &answer(v, seed(0), &r0, true_secs(10), 1), at(10))
            .unwrap();
        assert_eq!(
            events(&mut c),
            [RoughtimeEvent::Failed {
                server: 0,
                failure: ChainFailure::BelowFloor {
                    signed: UnixTime::from_secs(true_secs(10))
                }
            }]
        );
        assert!(c.estimate(0, MonoInstant::from_nanos(10_000_000)).is_none());
        let (i, r1) = send(&mut c, 10, 2).unwrap();
        assert_eq!((i, nonce_of(v, &r1)), (1, [2u8; 64].to_vec()));
    }

    #[test]
    fn a_buffer_too_small_counts_as_a_lost_try_and_the_chain_goes_on() {
        let v = Version::Google;
        let mut c = chain(&[v, v]);
        c.handle_timeout(at(0), 1);
        let mut small = [0u8; 100];
        let mut t = 0;
        for _ in 0..TRIES {
            assert_eq!(c.poll_transmit(at(t), &rnd(1), &mut small), None);
            assert_eq!(
                c.poll_timeout(),
                Some(MonoInstant::from_nanos((t + 500) * 1_000_000))
            );
            t += 500;
            c.handle_timeout(at(t), 1);
        }
        assert!(events(&mut c).contains(&RoughtimeEvent::Failed {
            server: 0,
            failure: ChainFailure::NoReply { last_invalid: None }
        }));
        let (i, _) = send(&mut c, t, 2).unwrap();
        assert_eq!(i, 1);
    }

    #[test]
    fn a_restart_resumes_the_interval_and_a_burst_brings_the_next_round_forward() {
        let v = Version::Google;
        let mut c = chain(&[v]);
        c.resume_at(9);
        c.handle_timeout(at(0), 0);
        let (_, req) = send(&mut c, 0, 1).unwrap();
        c.handle_datagram(0, &answer(v, seed(0), &req, true_secs(10), 1), at(10))
            .unwrap();
        let due = c.poll_timeout().unwrap();
        assert!(
            due >= MonoInstant::from_nanos(10_000_000 + 512_000_000_000),
            "{due:?}"
        );
        c.poll_by(MonoInstant::from_nanos(2_000_000_000));
        assert_eq!(
            c.poll_timeout(),
            Some(MonoInstant::from_nanos(2_000_000_000))
        );
        c.handle_timeout(at(2000), 0);
        assert!(c.in_round());
        // While a round runs, a burst does not move it.
        c.poll_by(MonoInstant::ZERO);
        assert_eq!(c.asking(), Some(0));
    }

    #[test]
    fn too_many_or_no_servers_are_refused() {
        let k = ServerKey {
            version: Version::Google,
            key: [0; 32],
        };
        assert_eq!(
            RoughtimeChain::new(cfg(), &[], MonoInstant::ZERO).err(),
            Some(BadServerCount(0))
        );
        assert_eq!(
            RoughtimeChain::new(cfg(), &[k; MAX_SERVERS + 1], MonoInstant::ZERO).err(),
            Some(BadServerCount(MAX_SERVERS + 1))
        );
        assert!(RoughtimeChain::new(cfg(), &[k; MAX_SERVERS], MonoInstant::ZERO).is_ok());
        // Fixed size, no allocation: the request, the last response and 8 servers' filters.
        let size = core::mem::size_of::<RoughtimeChain>();
        assert!(size < 8 * 1024, "{size}");
        std::println!("RoughtimeChain: {size} bytes");
    }
}
