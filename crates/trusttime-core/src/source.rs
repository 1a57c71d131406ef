//! A source that lives for the whole run: one server, polled again and again.
//!
//! [`NtpSource`] is one exchange machine ([`NtpClient`]) plus everything that must outlive an
//! exchange: the poll interval ([`PollPolicy`]), the reach register, the Kiss-o'-Death state,
//! the clock filter (the last 8 samples; the narrowest once aged by the drift bound), whether
//! the server's name should be resolved again, and (feature `nts`) the NTS session. The driver
//! owns one per configured server for as long as it runs, and one socket for it.
//!
//! ## The contract (the quinn-proto shape)
//!
//! The source never reads a clock, never draws randomness and never touches a socket. The
//! driver loops:
//!
//! 1. [`poll_timeout`](NtpSource::poll_timeout): sleep until then (or until a datagram arrives).
//! 2. [`handle_timeout`](NtpSource::handle_timeout) when that time has come: a poll starts, a lost
//!    request is retried, or an exchange ends without a reply.
//! 3. [`poll_transmit`](NtpSource::poll_transmit) until it returns `None`: send each datagram to
//!    the source's address.
//! 4. [`handle_datagram`](NtpSource::handle_datagram) for every datagram from that address.
//! 5. [`poll_event`](NtpSource::poll_event) until it returns `None`: a sample (the filter has a
//!    new estimate: run the selection), a failure, a Kiss-o'-Death, or a request to resolve the
//!    name again. While [`wants_address`](NtpSource::wants_address) is true no poll starts: the
//!    driver resolves the name and calls [`address_resolved`](NtpSource::address_resolved).
//!
//! Each method says when to call it. Every one is cheap and bounded: nothing allocates.

use crate::ntp::filter::{ClockFilter, FilterSample};
use crate::ntp::{ClientConfig, Failure, KissCode, NtpClient, PollPolicy, Reject, Sample};
use crate::select::OffsetInterval;
use crate::time::{MonoInstant, Now, SignedDuration, UnixTime};

/// The name of a server is resolved again at least this often (the NTP Pool's guidance:
/// about hourly), and otherwise only when its server fails.
pub const RESOLVE_EVERY: SignedDuration = SignedDuration::from_secs(3600);

/// Polls in a row without a reply after which the name is resolved again for another server.
pub const RESOLVE_AFTER_SILENT: u8 = 4;

/// Settings of an [`NtpSource`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceConfig {
    /// One exchange's settings (the floor is updated with [`NtpSource::set_floor`]).
    pub client: ClientConfig,
    /// Lowest poll exponent (log2 s).
    pub min_poll: i8,
    /// Highest poll exponent (log2 s).
    pub max_poll: i8,
    /// The local clock's drift bound: a stored sample widens by this much per second of age.
    pub drift_ppm: u32,
    /// Samples older than this are not used.
    pub max_age: SignedDuration,
}

/// Why the driver should resolve the server's name again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolveReason {
    /// Not resolved yet.
    First,
    /// The address is [`RESOLVE_EVERY`] old.
    Hourly,
    /// The server sent a Kiss-o'-Death.
    KissOfDeath,
    /// [`RESOLVE_AFTER_SILENT`] polls in a row without a reply.
    Silent,
    /// The server answered with an unusable reply.
    Unusable,
    /// The driver asked for it (a falseticker, a round without a majority, a duplicate).
    Asked,
}

/// What happened, for the driver (take them with [`NtpSource::poll_event`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceEvent {
    /// A sample was accepted: the filter has a new estimate (run the selection).
    Sample(Sample),
    /// A poll ended without a sample.
    Failed(Failure),
    /// The server sent a Kiss-o'-Death; DENY and RSTR stop the source.
    Kiss(KissCode),
    /// The name should be resolved again before the next poll.
    Resolve(ResolveReason),
    /// NTS: the session has no cookies left or the server refused its cookie (NTSN): run
    /// NTS-KE again and give the source the new session.
    #[cfg(feature = "nts")]
    NeedsKeyExchange,
}

/// The source's current estimate: its best sample, aged to the time asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// True time minus the local clock lies in here.
    pub offset: OffsetInterval,
    /// The sample's round-trip delay.
    pub delay: SignedDuration,
    /// When the sample was taken.
    pub at: MonoInstant,
}

/// Why a datagram was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// The NTP client refused it.
    Reject(Reject),
    /// NTS: it failed authentication (forged, altered, late or not ours).
    #[cfg(feature = "nts")]
    Nts(crate::nts::NtsError),
}

const EVENTS: usize = 4;

/// Fresh random bytes [`NtpSource::poll_transmit`] takes for one datagram.
pub const RAND_LEN: usize = 56;

/// One server for the whole run. See the [module docs](self) for the contract.
#[derive(Clone, Debug)]
pub struct NtpSource {
    config: SourceConfig,
    client: NtpClient,
    policy: PollPolicy,
    filter: ClockFilter,
    reach: u8,
    kod: Option<KissCode>,
    next_due: MonoInstant,
    in_flight: bool,
    requests: u64,
    silent: u8,
    address_at: Option<MonoInstant>,
    wants_address: Option<ResolveReason>,
    rand: u64,
    events: Events<SourceEvent, EVENTS>,
    last_failure: Option<Failure>,
    /// Steps of the clock since the exchange in flight sent its first request: its sample is
    /// measured against the old clock and moves by this much when it arrives.
    in_flight_step: SignedDuration,
    /// Slews started while the exchange was in flight: its sample covers both clocks.
    in_flight_slew: (SignedDuration, SignedDuration),
    #[cfg(feature = "nts")]
    nts: Option<crate::nts::NtsSession>,
}

impl NtpSource {
    /// A source whose first poll is due at `first_poll` (after the driver gave it an address:
    /// [`wants_address`](Self::wants_address) is [`ResolveReason::First`] until then).
    #[must_use]
    pub fn new(config: SourceConfig, first_poll: MonoInstant) -> Self {
        NtpSource {
            config,
            client: NtpClient::new(config.client),
            policy: PollPolicy::new(config.min_poll, config.max_poll),
            filter: ClockFilter::new(),
            reach: 0,
            kod: None,
            next_due: first_poll,
            in_flight: false,
            requests: 0,
            silent: 0,
            address_at: None,
            wants_address: Some(ResolveReason::First),
            rand: 0,
            events: Events::new(),
            last_failure: None,
            in_flight_step: SignedDuration::ZERO,
            in_flight_slew: (SignedDuration::ZERO, SignedDuration::ZERO),
            #[cfg(feature = "nts")]
            nts: None,
        }
    }

    /// An NTS source: every request is sealed and every reply must open with `session`'s keys.
    /// Replace the session after [`SourceEvent::NeedsKeyExchange`] with
    /// [`set_nts_session`](Self::set_nts_session).
    #[cfg(feature = "nts")]
    #[must_use]
    pub fn with_nts(mut self, session: crate::nts::NtsSession) -> Self {
        self.nts = Some(session);
        self
    }

    /// Gives the source a new NTS session (after NTS-KE). Call it between polls.
    #[cfg(feature = "nts")]
    pub fn set_nts_session(&mut self, session: crate::nts::NtsSession) {
        self.nts = Some(session);
    }

    /// The NTS session, if this is an NTS source.
    #[cfg(feature = "nts")]
    #[must_use]
    pub fn nts_session(&self) -> Option<&crate::nts::NtsSession> {
        self.nts.as_ref()
    }

    /// Resumes at a poll exponent saved before a restart.
    pub fn resume_at(&mut self, poll: i8) {
        self.policy.resume_at(poll);
    }

    /// Nothing below `floor` is accepted from now on (call it when the floor rises).
    pub fn set_floor(&mut self, floor: UnixTime) {
        self.config.client.floor = floor;
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next: the reply deadline or retry
    /// time of the exchange in flight, else the next poll; once DENY or RSTR stopped the
    /// source, when to ask for another server behind the name ([`RESOLVE_EVERY`] after the
    /// last try: that server is never asked again). `None` while the source waits for an
    /// address. A time in the past means now.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<MonoInstant> {
        if self.in_flight {
            return self.client.poll_timeout();
        }
        if self.wants_address.is_some() {
            return None;
        }
        Some(self.next_due)
    }

    /// Call when [`poll_timeout`](Self::poll_timeout) has passed (calling it early is
    /// harmless). `rand` must be fresh randomness (poll jitter). Starts the poll that is due
    /// (or asks for the name to be resolved again first, hourly); retries a lost request; ends
    /// an exchange with no reply after its last try.
    pub fn handle_timeout(&mut self, now: Now, rand: u64) {
        self.rand = rand;
        if self.in_flight {
            self.client.handle_timeout(now);
            if let Some(Err(f)) = self.client.result() {
                self.finish_failure(now.mono, f);
            }
            return;
        }
        if self.wants_address.is_some() || now.mono < self.next_due {
            return;
        }
        if self.policy.stopped_by().is_some() {
            // DENY / RSTR: that server is not asked again; another one behind the name may be.
            self.next_due = now.mono + RESOLVE_EVERY;
            self.want_address(ResolveReason::KissOfDeath);
            return;
        }
        if self.address_at.is_none() {
            // The name could not be resolved last time: try again now that the (backed-off)
            // poll is due.
            self.want_address(ResolveReason::First);
            return;
        }
        if self
            .address_at
            .is_some_and(|at| now.mono.since(at) >= RESOLVE_EVERY)
        {
            self.want_address(ResolveReason::Hourly);
            return;
        }
        self.client = NtpClient::new(self.config.client);
        self.in_flight = true;
        self.in_flight_step = SignedDuration::ZERO;
        self.in_flight_slew = (SignedDuration::ZERO, SignedDuration::ZERO);
        self.reach <<= 1;
        self.requests = self.requests.saturating_add(1);
    }

    /// Call after [`handle_timeout`](Self::handle_timeout) and after
    /// [`handle_datagram`](Self::handle_datagram), until it returns `None`: writes the next
    /// datagram to send into `buf` (48 bytes for NTP; NTS needs room for its extension fields,
    /// 1024 bytes is plenty) and returns its length. `rand` must be [`RAND_LEN`] fresh random
    /// bytes from a cryptographic generator: the request's cookie (bytes 0..8), and for NTS
    /// the unique identifier (8..40) and the nonce (40..56).
    #[must_use]
    pub fn poll_transmit(
        &mut self,
        now: Now,
        rand: &[u8; RAND_LEN],
        buf: &mut [u8],
    ) -> Option<usize> {
        if !self.in_flight {
            return None;
        }
        let mut header = [0u8; crate::ntp::packet::HEADER_LEN];
        let mut word = [0u8; 8];
        word.copy_from_slice(&rand[..8]);
        let n = self
            .client
            .poll_transmit(now, u64::from_le_bytes(word), &mut header)?;
        #[cfg(feature = "nts")]
        if let Some(session) = self.nts.as_mut() {
            let mut uid = [0u8; crate::nts::UNIQUE_ID_LEN];
            uid.copy_from_slice(&rand[8..8 + crate::nts::UNIQUE_ID_LEN]);
            let mut nonce = [0u8; crate::nts::NONCE_LEN];
            nonce.copy_from_slice(&rand[40..40 + crate::nts::NONCE_LEN]);
            return match session.seal_request(&header[..n], uid, nonce, buf) {
                Ok(len) => Some(len),
                Err(_) => {
                    // No cookie left: this poll cannot be made; a new key exchange can.
                    self.in_flight = false;
                    self.next_due = now.mono;
                    self.push(SourceEvent::NeedsKeyExchange);
                    None
                }
            };
        }
        let out = buf.get_mut(..n)?;
        out.copy_from_slice(&header[..n]);
        Some(n)
    }

    /// Call for every datagram received from the source's address. A datagram that is not
    /// the answer (forged, late, duplicated, malformed) is ignored and said why; the exchange
    /// goes on, so a forger cannot cancel the genuine reply.
    ///
    /// # Errors
    /// [`Ignored`]: why the datagram was not used.
    pub fn handle_datagram(&mut self, now: Now, bytes: &[u8]) -> Result<(), Ignored> {
        #[cfg(feature = "nts")]
        let bytes = match self.nts.as_mut() {
            None => bytes,
            Some(session) => match session.open_reply(bytes) {
                Ok(()) => bytes.get(..crate::ntp::packet::HEADER_LEN).unwrap_or(bytes),
                Err(crate::nts::NtsError::Nak) if self.in_flight => {
                    self.in_flight = false;
                    self.policy.on_failure();
                    self.schedule(now.mono);
                    self.push(SourceEvent::NeedsKeyExchange);
                    return Err(Ignored::Nts(crate::nts::NtsError::Nak));
                }
                Err(e) => return Err(Ignored::Nts(e)),
            },
        };
        if !self.in_flight {
            return Err(Ignored::Reject(Reject::NotRequested));
        }
        let result = self.client.handle_datagram(now, bytes);
        match self.client.result() {
            Some(Ok(sample)) => self.finish_sample(now.mono, sample),
            Some(Err(f)) => self.finish_failure(now.mono, f),
            None => {}
        }
        result.map_err(Ignored::Reject)
    }

    /// Call after the other calls until it returns `None`: what happened, oldest first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<SourceEvent> {
        self.events.pop()
    }

    /// The driver resolved the name (or was given an address): `same` says whether it is the
    /// address asked before. A new address starts a new filter (its samples are of another
    /// server), and after DENY or RSTR a new poll policy (the stop was that server's): it is
    /// polled at once. The same address stays stopped. The next poll may start.
    pub fn address_resolved(&mut self, now: MonoInstant, same: bool) {
        if !same {
            self.filter.clear();
            self.silent = 0;
            if self.policy.stopped_by().is_some() {
                let poll = self.policy.poll_exponent();
                self.policy = PollPolicy::new(self.config.min_poll, self.config.max_poll);
                self.policy.resume_at(poll);
                self.next_due = now;
            }
        }
        self.address_at = Some(now);
        self.wants_address = None;
    }

    /// The name could not be resolved: counts as a poll without a reply, and the next try is
    /// after the backed-off poll interval (not at once: a name that does not resolve must not
    /// become a loop of DNS queries).
    pub fn address_failed(&mut self, now: MonoInstant) {
        self.reach <<= 1;
        self.policy.on_failure();
        self.wants_address = None;
        self.address_at = None;
        self.schedule(now);
    }

    /// The driver wants another server behind the name (a falseticker, a duplicate, a round
    /// without a majority): resolve it before the next poll. Ignored while an exchange is in
    /// flight (it is asked after).
    pub fn resolve_again(&mut self) {
        if !self.in_flight && self.wants_address.is_none() {
            self.want_address(ResolveReason::Asked);
        }
    }

    /// A round ended without a consensus (call it on every source, at most once per minimum
    /// poll interval): a source whose last poll failed asks for another server behind its
    /// name, and when the sources that answered disagree (`disagreement`: which one lies is
    /// not known) every source does. A source whose last poll gave a sample keeps its server
    /// otherwise: moving it would drop its samples, so that a device with too few answers
    /// would have fewer still at the next round, and never reach a consensus again.
    pub fn no_consensus(&mut self, disagreement: bool) {
        if disagreement || self.last_failure.is_some() {
            self.resolve_again();
        }
    }

    /// Why the source waits for an address, if it does (see the module docs).
    #[must_use]
    pub fn wants_address(&self) -> Option<ResolveReason> {
        self.wants_address
    }

    /// Call while unsynchronised to poll again soon (a burst): the next poll is no later than
    /// `at`.
    pub fn poll_by(&mut self, at: MonoInstant) {
        if !self.in_flight {
            self.next_due = self.next_due.min(at);
        }
    }

    /// The best estimate at `now`: the filter's narrowest sample once aged by the drift
    /// bound, if one is younger than the maximum age.
    #[must_use]
    pub fn estimate(&self, now: MonoInstant) -> Option<Estimate> {
        self.filter
            .best(now, self.config.drift_ppm, self.config.max_age)
            .map(|s| Estimate {
                offset: s.aged(now, self.config.drift_ppm),
                delay: s.delay,
                at: s.at,
            })
    }

    /// Forgets every stored sample (e.g. the key exchange that vouched for them turned out to
    /// be invalid).
    pub fn forget_samples(&mut self) {
        self.filter.clear();
    }

    /// The local clock was stepped by `by`: stored samples move with it, and so will the
    /// sample of an exchange in flight (its request left on the old clock).
    pub fn stepped(&mut self, by: SignedDuration) {
        self.filter.stepped(by);
        if self.in_flight {
            self.in_flight_step += by;
        }
    }

    /// A slew of `by` was started: stored samples cover the old and the new clock, and so
    /// will the sample of an exchange in flight.
    pub fn slewed(&mut self, by: SignedDuration) {
        self.filter.slewed(by);
        if self.in_flight {
            if by.is_negative() {
                self.in_flight_slew.1 -= by;
            } else {
                self.in_flight_slew.0 -= by;
            }
        }
    }

    /// The reach register: bit 0 is the last poll, 1 if it gave a sample.
    #[must_use]
    pub fn reach(&self) -> u8 {
        self.reach
    }

    /// The last Kiss-o'-Death received.
    #[must_use]
    pub fn kiss(&self) -> Option<KissCode> {
        self.kod
    }

    /// The poll policy (interval, backoff, stop).
    #[must_use]
    pub fn policy(&self) -> &PollPolicy {
        &self.policy
    }

    /// Polls started.
    #[must_use]
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// When the next poll is due (meaningless while one is in flight or the source stopped).
    #[must_use]
    pub fn next_due(&self) -> MonoInstant {
        self.next_due
    }

    /// True while an exchange is in flight.
    #[must_use]
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// How the last poll that failed ended.
    #[must_use]
    pub fn last_failure(&self) -> Option<Failure> {
        self.last_failure
    }

    fn finish_sample(&mut self, now: MonoInstant, sample: Sample) {
        self.in_flight = false;
        self.reach |= 1;
        self.silent = 0;
        self.last_failure = None;
        let measured = OffsetInterval::around(sample.offset, sample.error_bound());
        self.filter.add(FilterSample {
            offset: OffsetInterval {
                lo: measured.lo - self.in_flight_step + self.in_flight_slew.0,
                hi: measured.hi - self.in_flight_step + self.in_flight_slew.1,
            },
            delay: sample.delay,
            at: now,
        });
        self.policy.on_success();
        self.schedule(now);
        self.push(SourceEvent::Sample(sample));
    }

    fn finish_failure(&mut self, now: MonoInstant, f: Failure) {
        self.in_flight = false;
        self.last_failure = Some(f);
        match f {
            Failure::Rejected(Reject::KissOfDeath(k)) => {
                self.kod = Some(k);
                self.policy.on_kiss(k);
                self.push(SourceEvent::Kiss(k));
                self.schedule(now);
                if self.policy.stopped_by().is_some() {
                    // Another server behind the name is asked for now (want_address below),
                    // and then hourly while the name keeps giving this one.
                    self.next_due = now + RESOLVE_EVERY;
                }
                self.want_address(ResolveReason::KissOfDeath);
                return;
            }
            Failure::Rejected(_) => {
                self.policy.on_failure();
                self.push(SourceEvent::Failed(f));
                self.schedule(now);
                self.want_address(ResolveReason::Unusable);
                return;
            }
            Failure::NoReply { .. } => {
                self.policy.on_failure();
                self.silent = self.silent.saturating_add(1);
                self.push(SourceEvent::Failed(f));
            }
        }
        self.schedule(now);
        if self.silent >= RESOLVE_AFTER_SILENT {
            self.silent = 0;
            self.want_address(ResolveReason::Silent);
        }
    }

    fn schedule(&mut self, now: MonoInstant) {
        if let Some(wait) = self.policy.next_interval(self.rand) {
            self.next_due = now + wait;
        }
        self.rand = splitmix(self.rand);
    }

    fn want_address(&mut self, why: ResolveReason) {
        self.wants_address = Some(why);
        self.push(SourceEvent::Resolve(why));
    }

    fn push(&mut self, e: SourceEvent) {
        self.events.push(e);
    }
}

/// A source's events for the driver, oldest first, in a fixed array: when it is full (the
/// driver did not take them) the oldest is dropped and the newest kept.
#[derive(Clone, Debug)]
pub(crate) struct Events<T, const N: usize>([Option<T>; N]);

impl<T, const N: usize> Events<T, N> {
    pub(crate) const fn new() -> Self {
        Events([const { None }; N])
    }

    pub(crate) fn push(&mut self, e: T) {
        if let Some(slot) = self.0.iter_mut().find(|s| s.is_none()) {
            *slot = Some(e);
        } else if N > 0 {
            self.0.rotate_left(1);
            self.0[N - 1] = Some(e);
        }
    }

    pub(crate) fn pop(&mut self) -> Option<T> {
        let first = self.0.first_mut()?.take();
        self.0.rotate_left(1);
        first
    }
}

/// Which address of a name's DNS answer a source should ask, given why it asked
/// ([`NtpSource::wants_address`]), the address it asks now and the addresses the driver's
/// other sources of the same kind ask (`taken`). After [`ResolveReason::Hourly`] or
/// [`ResolveReason::First`] the current address is kept when it is still listed and not
/// taken; after a failure (Kiss-o'-Death, an unusable answer, silence, a falseticker or a
/// duplicate) another listed address that nobody asks is preferred, and the current one is
/// kept only when there is no other. `None` when the answer is empty. Compare the result with
/// `current` for [`NtpSource::address_resolved`]'s `same`.
#[must_use]
pub fn pick_address<A: Copy + PartialEq>(
    why: Option<ResolveReason>,
    current: Option<A>,
    answer: &[A],
    taken: &[A],
) -> Option<A> {
    let free = |a: &A| !taken.contains(a);
    let keep = matches!(
        why,
        None | Some(ResolveReason::First | ResolveReason::Hourly)
    );
    if keep {
        if let Some(c) = current.filter(|c| answer.contains(c) && free(c)) {
            return Some(c);
        }
    }
    answer
        .iter()
        .copied()
        .find(|a| free(a) && Some(*a) != current)
        .or_else(|| current.filter(|c| answer.contains(c)))
        .or_else(|| answer.first().copied())
}

/// A cheap mix so one fresh random word can seed the few values one call needs (and the
/// next round's jitter).
pub(crate) const fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// When a driver should wake for `timeouts`: the earliest, or a later one due within `slack`
/// of it, so that sources due close together are served in one wake (the earliest waits at
/// most `slack`). Sources served in one wake should get the same `rand` in
/// [`NtpSource::handle_timeout`] (it only sets their poll jitter), so their next polls fall
/// together again: a device with four sources wakes about once per round to send instead of
/// four times. A fleet still spreads out: each device draws its own jitter.
#[must_use]
pub fn coalesced_wake(
    timeouts: impl Iterator<Item = MonoInstant> + Clone,
    slack: SignedDuration,
) -> Option<MonoInstant> {
    let first = timeouts.clone().min()?;
    timeouts.filter(|&t| t <= first + slack).max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ntp::packet::{KissCode, LeapIndicator, Mode, NtpPacket, NtpShort};
    use crate::time::NtpTimestamp;

    const FLOOR: i64 = 1_750_000_000;

    fn cfg() -> SourceConfig {
        SourceConfig {
            client: ClientConfig {
                floor: UnixTime::from_secs(FLOOR),
                ..ClientConfig::default()
            },
            min_poll: 6,
            max_poll: 10,
            drift_ppm: 100,
            max_age: SignedDuration::from_secs(4096),
        }
    }

    fn at(ms: u64, wall_offset: SignedDuration) -> Now {
        Now {
            mono: MonoInstant::from_nanos(ms * 1_000_000),
            wall: UnixTime::from_secs(FLOOR + 1000) + SignedDuration::from_millis(ms as i64)
                - wall_offset,
        }
    }

    /// A server `offset` ahead of the device answering `req` after `rtt_ms`.
    fn reply(req: &[u8], sent_ms: u64, rtt_ms: u64, _device_behind: SignedDuration) -> [u8; 48] {
        let (p, _) = NtpPacket::parse(req).unwrap();
        let true_at =
            |ms: u64| UnixTime::from_secs(FLOOR + 1000) + SignedDuration::from_millis(ms as i64);
        let t = NtpTimestamp::from_unix(true_at(sent_ms + rtt_ms / 2));
        let mut r = NtpPacket::client_request(p.transmit_ts);
        r.mode = Mode::Server;
        r.stratum = 2;
        r.leap = LeapIndicator::NoWarning;
        r.origin_ts = p.transmit_ts;
        r.receive_ts = t;
        r.transmit_ts = t;
        r.reference_ts = NtpTimestamp::from_unix(true_at(0));
        r.root_delay = NtpShort::from_duration(SignedDuration::from_millis(1));
        r.root_dispersion = NtpShort::from_duration(SignedDuration::from_millis(1));
        r.precision = -20;
        let mut out = [0u8; 48];
        r.emit(&mut out).unwrap();
        out
    }

    fn kod(req: &[u8], code: &[u8; 4]) -> [u8; 48] {
        let (p, _) = NtpPacket::parse(req).unwrap();
        let mut r = NtpPacket::client_request(p.transmit_ts);
        r.mode = Mode::Server;
        r.stratum = 0;
        r.origin_ts = p.transmit_ts;
        r.transmit_ts = p.transmit_ts;
        r.reference_id = *code;
        let mut out = [0u8; 48];
        r.emit(&mut out).unwrap();
        out
    }

    fn events(s: &mut NtpSource) -> heapless_events::Events {
        let mut v = heapless_events::Events::default();
        while let Some(e) = s.poll_event() {
            v.push(e);
        }
        v
    }

    mod heapless_events {
        use super::SourceEvent;
        #[derive(Default)]
        pub struct Events {
            pub list: [Option<SourceEvent>; 8],
            pub n: usize,
        }
        impl Events {
            pub fn push(&mut self, e: SourceEvent) {
                self.list[self.n] = Some(e);
                self.n += 1;
            }
            pub fn has(&self, f: impl Fn(&SourceEvent) -> bool) -> bool {
                self.list.iter().flatten().any(f)
            }
        }
    }

    fn rnd(x: u64) -> [u8; RAND_LEN] {
        let mut r = [0u8; RAND_LEN];
        r[..8].copy_from_slice(&x.to_le_bytes());
        r
    }

    fn ceil_ms(t: MonoInstant) -> u64 {
        t.as_nanos().div_ceil(1_000_000)
    }

    /// Drives one poll at `t_ms` with a reply after 20 ms (or none).
    fn poll_once(s: &mut NtpSource, t_ms: u64, answer: bool) -> Option<usize> {
        let off = SignedDuration::from_millis(300);
        s.handle_timeout(at(t_ms, off), 7);
        let mut buf = [0u8; 1024];
        let n = s.poll_transmit(at(t_ms, off), &rnd(0x1234_5678 + t_ms), &mut buf)?;
        if answer {
            let r = reply(&buf[..n], t_ms, 20, off);
            s.handle_datagram(at(t_ms + 20, off), &r).unwrap();
        }
        Some(n)
    }

    #[test]
    fn a_poll_starts_only_when_due_and_after_an_address() {
        let mut s = NtpSource::new(cfg(), MonoInstant::from_nanos(0));
        assert_eq!(s.wants_address(), Some(ResolveReason::First));
        assert_eq!(s.poll_timeout(), None, "no poll before an address");
        s.handle_timeout(at(0, SignedDuration::ZERO), 1);
        let mut buf = [0u8; 64];
        assert!(s
            .poll_transmit(at(0, SignedDuration::ZERO), &rnd(1), &mut buf)
            .is_none());
        s.address_resolved(MonoInstant::from_nanos(0), false);
        assert_eq!(s.poll_timeout(), Some(MonoInstant::from_nanos(0)));
        assert_eq!(poll_once(&mut s, 0, true), Some(48));
        let e = events(&mut s);
        assert!(e.has(|e| matches!(e, SourceEvent::Sample(_))));
        assert_eq!(s.reach(), 1);
        let est = s.estimate(MonoInstant::from_nanos(20_000_000)).unwrap();
        // The device is 300 ms behind; the interval holds +300 ms.
        assert!(est.offset.lo <= SignedDuration::from_millis(300));
        assert!(est.offset.hi >= SignedDuration::from_millis(300));
        // The next poll is 64 s (+ up to 1/8 jitter) later; nothing before.
        let next = s.poll_timeout().unwrap();
        assert!(next >= MonoInstant::from_nanos(64_020_000_000), "{next:?}");
        assert!(next <= MonoInstant::from_nanos(72_020_000_000), "{next:?}");
        s.handle_timeout(at(30_000, SignedDuration::ZERO), 3);
        assert!(!s.in_flight());
    }

    #[test]
    fn a_forged_reply_does_not_cancel_the_genuine_one_and_a_replay_is_refused() {
        let mut s = NtpSource::new(cfg(), MonoInstant::ZERO);
        s.address_resolved(MonoInstant::ZERO, false);
        let off = SignedDuration::ZERO;
        s.handle_timeout(at(0, off), 1);
        let mut buf = [0u8; 64];
        let n = s.poll_transmit(at(0, off), &rnd(99), &mut buf).unwrap();
        let genuine = reply(&buf[..n], 0, 20, off);
        let mut forged = genuine;
        forged[24] ^= 0xff; // another origin timestamp
        assert_eq!(
            s.handle_datagram(at(5, off), &forged),
            Err(Ignored::Reject(Reject::NotRequested))
        );
        assert_eq!(
            s.handle_datagram(at(6, off), &[0u8; 7]),
            Err(Ignored::Reject(Reject::Truncated { len: 7 }))
        );
        assert!(s.in_flight(), "garbage leaves the exchange open");
        s.handle_datagram(at(20, off), &genuine).unwrap();
        assert!(!s.in_flight());
        assert!(
            s.handle_datagram(at(21, off), &genuine).is_err(),
            "a replay is not a sample"
        );
        let e = events(&mut s);
        assert_eq!(
            e.list
                .iter()
                .flatten()
                .filter(|e| matches!(e, SourceEvent::Sample(_)))
                .count(),
            1
        );
    }

    #[test]
    fn silence_backs_off_and_asks_for_another_server_after_four_polls() {
        let mut s = NtpSource::new(cfg(), MonoInstant::ZERO);
        s.address_resolved(MonoInstant::ZERO, false);
        let mut t = 0u64;
        for k in 0..RESOLVE_AFTER_SILENT {
            assert!(s.wants_address().is_none(), "poll {k}");
            // Three tries then give up.
            for _ in 0..10 {
                let due = s.poll_timeout().unwrap();
                t = t.max(ceil_ms(due));
                s.handle_timeout(at(t, SignedDuration::ZERO), 5);
                let mut buf = [0u8; 64];
                let _ = s.poll_transmit(at(t, SignedDuration::ZERO), &rnd(5 + t), &mut buf);
                if !s.in_flight() {
                    break;
                }
            }
            let e = events(&mut s);
            assert!(
                e.has(|e| matches!(e, SourceEvent::Failed(Failure::NoReply { tries: 3 }))),
                "poll {k}: {:?}",
                e.list
            );
        }
        assert_eq!(s.wants_address(), Some(ResolveReason::Silent));
        assert_eq!(s.reach(), 0);
        assert!(s.policy().poll_exponent() > 6, "backed off");
        assert_eq!(
            s.poll_timeout(),
            None,
            "waits for the name to be resolved again"
        );
        s.address_resolved(MonoInstant::from_nanos(t * 1_000_000), false);
        assert!(s.poll_timeout().is_some());
    }

    #[test]
    fn kiss_of_death_deny_stops_and_rate_slows_and_both_ask_for_another_server() {
        let mut s = NtpSource::new(cfg(), MonoInstant::ZERO);
        s.address_resolved(MonoInstant::ZERO, false);
        s.handle_timeout(at(0, SignedDuration::ZERO), 1);
        let mut buf = [0u8; 64];
        let n = s
            .poll_transmit(at(0, SignedDuration::ZERO), &rnd(3), &mut buf)
            .unwrap();
        let _ = s.handle_datagram(at(10, SignedDuration::ZERO), &kod(&buf[..n], b"RATE"));
        let e = events(&mut s);
        assert!(e.has(|e| *e == SourceEvent::Kiss(KissCode::Rate)));
        assert!(e.has(|e| *e == SourceEvent::Resolve(ResolveReason::KissOfDeath)));
        assert_eq!(s.policy().poll_exponent(), 7);
        s.address_resolved(MonoInstant::from_nanos(10_000_000), false);
        let due = s.poll_timeout().unwrap();
        let t = ceil_ms(due);
        s.handle_timeout(at(t, SignedDuration::ZERO), 1);
        let n = s
            .poll_transmit(at(t, SignedDuration::ZERO), &rnd(4), &mut buf)
            .unwrap();
        let _ = s.handle_datagram(at(t + 5, SignedDuration::ZERO), &kod(&buf[..n], b"DENY"));
        assert_eq!(s.kiss(), Some(KissCode::Deny));
        assert_eq!(
            s.wants_address(),
            Some(ResolveReason::KissOfDeath),
            "another server is asked for at once"
        );
        // The name gives the same server: it stays stopped; another server is asked for an
        // hour later, and that one is never polled.
        s.address_resolved(MonoInstant::from_nanos(t * 1_000_000), true);
        let retry = s.poll_timeout().unwrap();
        assert!(retry >= MonoInstant::from_nanos((t + 5) * 1_000_000) + RESOLVE_EVERY);
        let mid = t + 1_800_000;
        s.handle_timeout(at(mid, SignedDuration::ZERO), 1);
        assert!(s
            .poll_transmit(at(mid, SignedDuration::ZERO), &rnd(5), &mut buf)
            .is_none());
        let t2 = ceil_ms(retry);
        s.handle_timeout(at(t2, SignedDuration::ZERO), 1);
        assert!(!s.in_flight(), "DENY: that server is never asked again");
        assert_eq!(s.wants_address(), Some(ResolveReason::KissOfDeath));
        // Another server behind the name: polled at once, with a new policy.
        s.address_resolved(MonoInstant::from_nanos(t2 * 1_000_000), false);
        assert_eq!(s.policy().stopped_by(), None);
        assert!(poll_once(&mut s, t2, true).is_some());
    }

    #[test]
    fn another_server_is_picked_after_a_failure_and_the_same_one_kept_hourly() {
        use ResolveReason::*;
        let answer = [1, 2, 3];
        assert_eq!(pick_address(Some(Hourly), Some(2), &answer, &[]), Some(2));
        assert_eq!(pick_address(Some(Hourly), Some(2), &answer, &[2]), Some(1));
        assert_eq!(pick_address(Some(First), None, &answer, &[1]), Some(2));
        for why in [KissOfDeath, Silent, Unusable, Asked] {
            assert_eq!(
                pick_address(Some(why), Some(1), &answer, &[2]),
                Some(3),
                "{why:?}"
            );
            // No other server: the same one (a DENY keeps it stopped).
            assert_eq!(
                pick_address(Some(why), Some(1), &[1], &[]),
                Some(1),
                "{why:?}"
            );
            assert_eq!(pick_address(Some(why), Some(1), &[1, 2], &[2]), Some(1));
        }
        // Every address taken: the first (counted once by the driver's one-vote rule).
        assert_eq!(pick_address(Some(First), None, &[4, 5], &[4, 5]), Some(4));
        assert_eq!(pick_address::<u8>(Some(First), None, &[], &[]), None);
    }

    #[test]
    fn without_a_consensus_only_a_failed_source_moves_unless_the_answers_disagree() {
        let mut good = NtpSource::new(cfg(), MonoInstant::ZERO);
        good.address_resolved(MonoInstant::ZERO, false);
        poll_once(&mut good, 0, true).unwrap();
        let _ = events(&mut good);
        good.no_consensus(false);
        assert_eq!(
            good.wants_address(),
            None,
            "a source that answered keeps its server"
        );
        assert!(good.estimate(MonoInstant::from_nanos(30_000_000)).is_some());
        good.no_consensus(true);
        assert_eq!(good.wants_address(), Some(ResolveReason::Asked));
        let mut silent = NtpSource::new(cfg(), MonoInstant::ZERO);
        silent.address_resolved(MonoInstant::ZERO, false);
        let mut t = 0;
        while silent.last_failure().is_none() {
            t = t.max(ceil_ms(silent.poll_timeout().unwrap()));
            let _ = poll_once(&mut silent, t, false);
        }
        silent.no_consensus(false);
        assert_eq!(silent.wants_address(), Some(ResolveReason::Asked));
    }

    #[test]
    fn a_name_that_does_not_resolve_is_asked_again_after_the_poll_interval() {
        let mut s = NtpSource::new(cfg(), MonoInstant::ZERO);
        assert_eq!(s.wants_address(), Some(ResolveReason::First));
        s.address_failed(MonoInstant::ZERO);
        assert_eq!(s.wants_address(), None, "not again at once");
        let due = s.poll_timeout().unwrap();
        assert!(due >= MonoInstant::from_nanos(64_000_000_000), "{due:?}");
        s.handle_timeout(at(1000, SignedDuration::ZERO), 1);
        assert_eq!(s.wants_address(), None);
        s.handle_timeout(at(ceil_ms(due), SignedDuration::ZERO), 1);
        assert_eq!(s.wants_address(), Some(ResolveReason::First));
        assert!(!s.in_flight(), "no poll without an address");
    }

    #[test]
    fn the_name_is_resolved_again_hourly_and_a_new_server_starts_a_new_filter() {
        let mut s = NtpSource::new(cfg(), MonoInstant::ZERO);
        s.address_resolved(MonoInstant::ZERO, false);
        let mut t = 0;
        let mut asked_hourly = false;
        while t < 4_000_000 {
            if let Some(why) = s.wants_address() {
                assert_eq!(why, ResolveReason::Hourly);
                asked_hourly = true;
                assert!(s.estimate(MonoInstant::from_nanos(t * 1_000_000)).is_some());
                s.address_resolved(MonoInstant::from_nanos(t * 1_000_000), false);
                assert!(
                    s.estimate(MonoInstant::from_nanos(t * 1_000_000)).is_none(),
                    "another server: the old samples are not its"
                );
                break;
            }
            t = ceil_ms(s.poll_timeout().unwrap());
            let _ = poll_once(&mut s, t, true);
            let _ = events(&mut s);
        }
        assert!(asked_hourly);
        assert!((3_600_000..3_600_000 + 2 * 1_200_000).contains(&t), "{t}");
    }

    #[test]
    fn the_filter_keeps_the_tight_sample_through_a_delay_spike_and_moves_with_a_step() {
        let mut s = NtpSource::new(cfg(), MonoInstant::ZERO);
        s.address_resolved(MonoInstant::ZERO, false);
        poll_once(&mut s, 0, true).unwrap();
        let tight = s.estimate(MonoInstant::from_nanos(20_000_000)).unwrap();
        // A second poll whose reply took 2 s: a wide sample, not preferred.
        let t = ceil_ms(s.poll_timeout().unwrap());
        let off = SignedDuration::from_millis(300);
        s.handle_timeout(at(t, off), 1);
        let mut buf = [0u8; 64];
        let n = s.poll_transmit(at(t, off), &rnd(77), &mut buf).unwrap();
        // The reply deadline is 1 s: a slow reply arrives within it but with 900 ms delay.
        let r = reply(&buf[..n], t, 900, off);
        s.handle_datagram(at(t + 900, off), &r).unwrap();
        let now = MonoInstant::from_nanos((t + 900) * 1_000_000);
        let best = s.estimate(now).unwrap();
        assert_eq!(best.at, tight.at, "the tight sample is kept");
        assert!(best.offset.radius() < SignedDuration::from_millis(100));
        s.stepped(SignedDuration::from_millis(300));
        let after = s.estimate(now).unwrap();
        assert_eq!(
            after.offset.lo,
            best.offset.lo - SignedDuration::from_millis(300)
        );
    }

    #[test]
    fn a_sample_below_the_floor_is_refused_after_the_floor_rises() {
        let mut s = NtpSource::new(cfg(), MonoInstant::ZERO);
        s.address_resolved(MonoInstant::ZERO, false);
        s.set_floor(UnixTime::from_secs(FLOOR + 10_000_000));
        assert!(poll_once(&mut s, 0, false).is_some());
        // The answer is honest time, which is now below the raised floor.
        let e = {
            let off = SignedDuration::ZERO;
            let mut buf = [0u8; 64];
            let mut s2 = NtpSource::new(cfg(), MonoInstant::ZERO);
            s2.address_resolved(MonoInstant::ZERO, false);
            s2.set_floor(UnixTime::from_secs(FLOOR + 10_000_000));
            s2.handle_timeout(at(0, off), 1);
            let n = s2.poll_transmit(at(0, off), &rnd(9), &mut buf).unwrap();
            let r = reply(&buf[..n], 0, 20, off);
            let res = s2.handle_datagram(at(20, off), &r);
            assert!(matches!(
                res,
                Err(Ignored::Reject(Reject::BelowFloor { .. }))
            ));
            events(&mut s2)
        };
        assert!(e.has(|e| matches!(
            e,
            SourceEvent::Failed(Failure::Rejected(Reject::BelowFloor { .. }))
        )));
    }

    #[test]
    fn a_sample_in_flight_across_a_step_moves_with_the_clock() {
        let mut s = NtpSource::new(cfg(), MonoInstant::ZERO);
        s.address_resolved(MonoInstant::ZERO, false);
        let off = SignedDuration::ZERO;
        s.handle_timeout(at(0, off), 1);
        let mut buf = [0u8; 64];
        let n = s.poll_transmit(at(0, off), &rnd(5), &mut buf).unwrap();
        let r = reply(&buf[..n], 0, 20, off);
        // The clock is stepped an hour ahead while the request is out.
        let step = SignedDuration::from_secs(3600);
        s.stepped(step);
        s.handle_datagram(at(20, off), &r).unwrap();
        let e = s.estimate(MonoInstant::from_nanos(20_000_000)).unwrap();
        // Measured on the old clock the server agreed; on the new clock it is an hour behind.
        assert!(e.offset.lo <= -step && -step <= e.offset.hi, "{e:?}");
        // The next exchange starts afresh.
        let t = ceil_ms(s.poll_timeout().unwrap());
        let _ = poll_once(&mut s, t, true);
        let e = s
            .estimate(MonoInstant::from_nanos((t + 20) * 1_000_000))
            .unwrap();
        assert!(e.offset.radius() < SignedDuration::from_secs(1));
    }

    #[cfg(feature = "nts")]
    mod nts {
        use super::*;
        use crate::ntp::{write_extension_field, ExtensionFields};
        use crate::nts::{
            append_authenticator, field, Cookie, CookieJar, Keys, NtsError, NtsSession, KEY_LEN,
            NONCE_LEN,
        };

        fn keys() -> Keys {
            Keys {
                c2s: [1; KEY_LEN],
                s2c: [2; KEY_LEN],
            }
        }

        fn session(cookies: usize) -> NtsSession {
            let mut jar = CookieJar::default();
            for i in 0..cookies {
                jar.push(Cookie::new(&[i as u8; 100]).unwrap());
            }
            NtsSession::new(keys(), jar)
        }

        /// The server's answer to the sealed request `req` (RFC 8915): the NTP reply, the
        /// unique identifier echoed, one new cookie, sealed with the server-to-client key
        /// (`key`); `nak`: a Kiss-o'-Death NTSN instead.
        fn answer(req: &[u8], key: [u8; KEY_LEN], nak: bool) -> ([u8; 1024], usize) {
            let (_, ext) = NtpPacket::parse(req).unwrap();
            let uid = ExtensionFields::new(ext)
                .flatten()
                .find(|f| f.field_type == field::UNIQUE_ID)
                .unwrap()
                .value;
            let mut b = [0u8; 1024];
            let header = if nak {
                kod(&req[..48], b"NTSN")
            } else {
                reply(&req[..48], 0, 20, SignedDuration::ZERO)
            };
            b[..48].copy_from_slice(&header);
            let mut n = 48;
            n += write_extension_field(&mut b[n..], field::UNIQUE_ID, uid).unwrap();
            if nak {
                return (b, n);
            }
            let mut plain = [0u8; 256];
            let p = write_extension_field(&mut plain, field::COOKIE, &[0xc0; 100]).unwrap();
            let n = append_authenticator(&key, &[9; NONCE_LEN], &plain[..p], &mut b, n).unwrap();
            (b, n)
        }

        fn nts_source(cookies: usize) -> NtpSource {
            let mut s = NtpSource::new(cfg(), MonoInstant::ZERO).with_nts(session(cookies));
            s.address_resolved(MonoInstant::ZERO, false);
            s
        }

        #[test]
        fn a_forged_nts_reply_is_ignored_and_the_genuine_one_is_taken() {
            let mut s = nts_source(8);
            let off = SignedDuration::ZERO;
            s.handle_timeout(at(0, off), 1);
            let mut buf = [0u8; 2048];
            let n = s.poll_transmit(at(0, off), &rnd(3), &mut buf).unwrap();
            assert!(n > 48, "sealed with extension fields");
            // Sealed with the wrong key (a forger without the keys), and one bit flipped.
            let (forged, m) = answer(&buf[..n], [3; KEY_LEN], false);
            assert!(matches!(
                s.handle_datagram(at(5, off), &forged[..m]),
                Err(Ignored::Nts(NtsError::AuthenticationFailed))
            ));
            let (mut flipped, m2) = answer(&buf[..n], keys().s2c, false);
            flipped[40] ^= 1; // the transmit timestamp
            assert!(matches!(
                s.handle_datagram(at(6, off), &flipped[..m2]),
                Err(Ignored::Nts(_))
            ));
            assert!(s.in_flight(), "forgeries do not end the exchange");
            let (genuine, m3) = answer(&buf[..n], keys().s2c, false);
            s.handle_datagram(at(20, off), &genuine[..m3]).unwrap();
            assert!(matches!(s.poll_event(), Some(SourceEvent::Sample(_))));
            assert_eq!(s.nts_session().unwrap().auth_failures(), 2);
            // A replay of the genuine reply opens nothing.
            assert!(s.handle_datagram(at(21, off), &genuine[..m3]).is_err());
        }

        #[test]
        fn a_refused_cookie_or_an_empty_jar_asks_for_a_key_exchange() {
            let off = SignedDuration::ZERO;
            let mut s = nts_source(8);
            s.handle_timeout(at(0, off), 1);
            let mut buf = [0u8; 2048];
            let n = s.poll_transmit(at(0, off), &rnd(3), &mut buf).unwrap();
            let (nak, m) = answer(&buf[..n], keys().s2c, true);
            assert!(matches!(
                s.handle_datagram(at(5, off), &nak[..m]),
                Err(Ignored::Nts(NtsError::Nak))
            ));
            assert!(!s.in_flight());
            let mut saw = false;
            while let Some(e) = s.poll_event() {
                saw |= e == SourceEvent::NeedsKeyExchange;
            }
            assert!(saw);
            // No cookie left: the poll cannot be made, and the source says why.
            let mut s = nts_source(0);
            s.handle_timeout(at(0, off), 1);
            assert!(s.poll_transmit(at(0, off), &rnd(3), &mut buf).is_none());
            assert_eq!(s.poll_event(), Some(SourceEvent::NeedsKeyExchange));
            // A new session after the key exchange: polls go on.
            s.set_nts_session(session(8));
            s.handle_timeout(at(1, off), 1);
            assert!(s.poll_transmit(at(1, off), &rnd(4), &mut buf).is_some());
        }
    }

    /// Timers due close together are served in one wake; the earliest never waits more than the
    /// slack, and a timer further off is not pulled in.
    #[test]
    fn timers_due_close_together_are_served_in_one_wake() {
        let at = |ms: u64| MonoInstant::from_nanos(ms * 1_000_000);
        let slack = SignedDuration::from_millis(4);
        assert_eq!(coalesced_wake(core::iter::empty(), slack), None);
        assert_eq!(coalesced_wake([at(100)].into_iter(), slack), Some(at(100)));
        // 101 and 103 join 100; 105 is more than the slack after it and waits for its own wake.
        assert_eq!(
            coalesced_wake([at(105), at(101), at(100), at(103)].into_iter(), slack),
            Some(at(103))
        );
        assert_eq!(
            coalesced_wake([at(200), at(100)].into_iter(), slack),
            Some(at(100))
        );
    }
}
