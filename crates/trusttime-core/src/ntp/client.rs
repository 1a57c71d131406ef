//! The per-source NTP client: one request/response exchange with retries, sans-IO.
//!
//! Drive it like this, reading the clocks once per turn:
//! 1. [`NtpClient::poll_transmit`]: if it writes a request into the buffer, send it.
//! 2. Wait for a datagram or until [`NtpClient::poll_timeout`].
//! 3. Feed a datagram to [`NtpClient::handle_datagram`], or call
//!    [`NtpClient::handle_timeout`] when the deadline passed.
//! 4. [`NtpClient::result`] tells when the exchange has finished and how.
//!
//! The request's transmit timestamp is a random cookie (passed in), not the local clock: it
//! leaks nothing about the device and an off-path attacker cannot guess it. A reply is only
//! accepted if its origin timestamp echoes that cookie. The local send time T1 is remembered
//! separately, and T4 - T1 is measured on the monotonic clock, so a step of the wall clock in
//! between cannot corrupt the delay.

use core::fmt;

use super::packet::{KissCode, LeapIndicator, Mode, NtpPacket, PacketError, HEADER_LEN};
use crate::time::{MonoInstant, Now, NtpTimestamp, SignedDuration, TimeInterval, UnixTime};

/// Settings of one exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Nothing below this time is accepted; it is also the pivot that decides the NTP era.
    pub floor: UnixTime,
    /// Replies whose root distance (root delay / 2 + root dispersion + the server's
    /// precision) exceeds this are rejected. Default 1 s.
    pub max_root_distance: SignedDuration,
    /// How long to wait for a reply to one request. Default 1 s.
    pub reply_timeout: SignedDuration,
    /// Requests sent before giving up. Default 3.
    pub max_tries: u8,
    /// Pause before the first retry; doubled for each further retry, plus up to 50 % random
    /// jitter. Default 250 ms.
    pub retry_backoff: SignedDuration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            floor: crate::floor::build_time(),
            max_root_distance: SignedDuration::from_secs(1),
            reply_timeout: SignedDuration::from_secs(1),
            max_tries: 3,
            retry_backoff: SignedDuration::from_millis(250),
        }
    }
}

/// Why a datagram was not accepted as a valid reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reject {
    /// Shorter than an NTP header.
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// Longer than the datagram limit.
    Oversized {
        /// Bytes received.
        len: usize,
    },
    /// Version other than 3 or 4.
    WrongVersion {
        /// The version received.
        version: u8,
    },
    /// Not a server-mode (4) reply.
    WrongMode {
        /// The mode bits received.
        mode: u8,
    },
    /// A Kiss-o'-Death packet (stratum 0).
    KissOfDeath(KissCode),
    /// Stratum above 15 (16 means unsynchronised).
    StratumTooHigh {
        /// The stratum received.
        stratum: u8,
    },
    /// Leap indicator 3: the server's own clock is not synchronised.
    Unsynchronized,
    /// The server's transmit timestamp is zero.
    ZeroTransmit,
    /// No request is outstanding, or the reply does not echo our request's cookie.
    NotRequested,
    /// The request this reply answers was already answered.
    Duplicate,
    /// Root distance above the configured limit.
    RootDistanceTooLarge {
        /// The server's root distance.
        distance: SignedDuration,
        /// The limit.
        limit: SignedDuration,
    },
    /// The server sent its reply before it received the request (T3 < T2 by more than its
    /// precision).
    TimestampsReversed,
    /// The server's clock was last set after it sent this reply (reference time later than
    /// transmit time): RFC 5905 refuses such a packet.
    ReferenceAfterTransmit,
    /// The server claims a time below the floor: it is certainly wrong (a falseticker).
    BelowFloor {
        /// The time the server claimed (its transmit timestamp).
        claimed: UnixTime,
        /// The floor.
        floor: UnixTime,
    },
}

impl Reject {
    /// A short machine word for logs and JSON.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Reject::Truncated { .. } => "truncated",
            Reject::Oversized { .. } => "oversized",
            Reject::WrongVersion { .. } => "wrong_version",
            Reject::WrongMode { .. } => "wrong_mode",
            Reject::KissOfDeath(_) => "kiss_of_death",
            Reject::StratumTooHigh { .. } => "stratum_too_high",
            Reject::Unsynchronized => "unsynchronized",
            Reject::ZeroTransmit => "zero_transmit",
            Reject::NotRequested => "not_requested",
            Reject::Duplicate => "duplicate",
            Reject::RootDistanceTooLarge { .. } => "root_distance_too_large",
            Reject::TimestampsReversed => "timestamps_reversed",
            Reject::ReferenceAfterTransmit => "reference_after_transmit",
            Reject::BelowFloor { .. } => "below_floor",
        }
    }

    /// True when this reject says the server tells a wrong time (rather than a broken packet).
    #[must_use]
    pub const fn is_falseticker(&self) -> bool {
        matches!(self, Reject::BelowFloor { .. })
    }

    fn from_packet_error(e: PacketError, len: usize) -> Reject {
        match e {
            PacketError::Oversized { len } => Reject::Oversized { len },
            _ => Reject::Truncated { len },
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::Truncated { len } => write!(f, "truncated reply ({len} bytes)"),
            Reject::Oversized { len } => write!(f, "oversized reply ({len} bytes)"),
            Reject::WrongVersion { version } => write!(f, "wrong NTP version {version}"),
            Reject::WrongMode { mode } => write!(f, "wrong mode {mode} (expected 4, server)"),
            Reject::KissOfDeath(k) => write!(f, "Kiss-o'-Death {k}: {}", k.description()),
            Reject::StratumTooHigh { stratum } => {
                write!(f, "stratum {stratum} (the server is not synchronised)")
            }
            Reject::Unsynchronized => {
                f.write_str("leap indicator 3: the server is not synchronised")
            }
            Reject::ZeroTransmit => f.write_str("zero transmit timestamp"),
            Reject::NotRequested => f.write_str("reply to a request we did not send"),
            Reject::Duplicate => f.write_str("duplicate reply to a request already answered"),
            Reject::RootDistanceTooLarge { distance, limit } => {
                write!(f, "root distance {distance} exceeds the limit {limit}")
            }
            Reject::TimestampsReversed => {
                f.write_str("server transmit time precedes its receive time")
            }
            Reject::ReferenceAfterTransmit => {
                f.write_str("server reference time is later than its transmit time")
            }
            Reject::BelowFloor { claimed, floor } => {
                write!(
                    f,
                    "claims {claimed}, below the floor {floor}: a falseticker"
                )
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Reject {}

/// One good measurement from a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Server time minus local time: ((T2 - T1) + (T3 - T4)) / 2.
    pub offset: SignedDuration,
    /// Round-trip delay: (T4 - T1) - (T3 - T2), never negative.
    pub delay: SignedDuration,
    /// The server's root delay.
    pub root_delay: SignedDuration,
    /// The server's root dispersion.
    pub root_dispersion: SignedDuration,
    /// The server's clock precision (one tick of its clock), rounded up.
    pub precision: SignedDuration,
    /// The server's stratum.
    pub stratum: u8,
    /// The server's leap indicator.
    pub leap: LeapIndicator,
    /// The server's reference ID.
    pub reference_id: [u8; 4],
    /// The server's transmit time T3.
    pub server_time: UnixTime,
    /// When the reply arrived (T4, both clocks).
    pub received_at: Now,
}

/// How far a timestamp may be from the moment its packet was on the wire, on either side of
/// the exchange, beyond what the precision fields say: a server that stamps a request's
/// arrival when its event loop woke rather than when the packet came in (chronyd does when it
/// cannot use the kernel's stamps) can put T2 before the arrival, which the delay does not
/// cover. Seen at 0.08 ms on a loaded machine; this allows 1 ms.
pub const TIMESTAMP_ERROR: SignedDuration = SignedDuration::from_millis(1);

impl Sample {
    /// The error bound of the offset: delay / 2 plus the server's root distance, which
    /// (RFC 5905) is its root delay / 2 plus its dispersion, root dispersion plus precision
    /// (a server whose clock ticks once a second can be a second off whatever it claims),
    /// plus [`TIMESTAMP_ERROR`].
    #[must_use]
    pub fn error_bound(&self) -> SignedDuration {
        // No overflow: the delay is at most the round trip plus one precision tick (a reply
        // whose T3 precedes T2 by more is refused), root delay and dispersion are under 2^16 s
        // each, and a precision is capped at 2^20 s.
        self.delay.half()
            + self.root_delay.half()
            + self.root_dispersion
            + self.precision
            + TIMESTAMP_ERROR
    }
    /// The offset interval: `offset ± error_bound`, as (low, high).
    #[must_use]
    pub fn offset_interval(&self) -> (SignedDuration, SignedDuration) {
        let e = self.error_bound();
        (self.offset - e, self.offset + e)
    }
    /// Where true time lay when the reply arrived, in absolute terms.
    #[must_use]
    pub fn interval_at_receipt(&self) -> TimeInterval {
        TimeInterval::around(self.received_at.wall + self.offset, self.error_bound())
    }
}

/// Why an exchange ended without a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The server answered our request with an unacceptable reply.
    Rejected(Reject),
    /// No reply after every try.
    NoReply {
        /// Requests sent.
        tries: u8,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Rejected(r) => r.fmt(f),
            Failure::NoReply { tries } => write!(f, "no reply to {tries} requests"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting to send; `None` means as soon as asked.
    Idle { send_at: Option<MonoInstant> },
    /// A request is outstanding.
    Waiting {
        cookie: NtpTimestamp,
        t1: UnixTime,
        sent: MonoInstant,
        deadline: MonoInstant,
    },
    /// Finished.
    Done(Result<Sample, Failure>),
}

/// The client side of one NTP exchange with one server (with retries).
#[derive(Clone, Debug)]
pub struct NtpClient {
    config: ClientConfig,
    state: State,
    tries: u8,
    jitter: u64,
    last_cookie: Option<NtpTimestamp>,
    taken: bool,
}

impl NtpClient {
    /// A client that sends its first request at the first [`poll_transmit`](Self::poll_transmit).
    #[must_use]
    pub fn new(config: ClientConfig) -> Self {
        NtpClient {
            config,
            state: State::Idle { send_at: None },
            tries: 0,
            jitter: 0,
            last_cookie: None,
            taken: false,
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Starts a new exchange at `at` (for polling). Replies to the previous request are
    /// recognised as duplicates.
    pub fn restart(&mut self, at: MonoInstant) {
        self.state = State::Idle { send_at: Some(at) };
        self.tries = 0;
        self.taken = false;
    }

    /// If a request is due, writes it into `buf` and returns its length. `rand` must be fresh
    /// randomness: it becomes the request's cookie (and the retry jitter).
    #[must_use]
    pub fn poll_transmit(&mut self, now: Now, rand: u64, buf: &mut [u8]) -> Option<usize> {
        let due = match self.state {
            State::Idle { send_at: None } => true,
            State::Idle { send_at: Some(t) } => now.mono >= t,
            _ => false,
        };
        if !due || buf.len() < HEADER_LEN {
            return None;
        }
        // A zero cookie would be indistinguishable from "no origin"; avoid it.
        let cookie = NtpTimestamp::from_bits(if rand == 0 { 1 } else { rand });
        let n = NtpPacket::client_request(cookie).emit(buf).ok()?;
        self.tries = self.tries.saturating_add(1);
        self.jitter = rand.rotate_left(17);
        self.state = State::Waiting {
            cookie,
            t1: now.wall,
            sent: now.mono,
            deadline: now.mono + self.config.reply_timeout,
        };
        Some(n)
    }

    /// When the client next needs attention: the send time, the reply deadline, or `None`
    /// when finished. A time in the past means "now".
    #[must_use]
    pub fn poll_timeout(&self) -> Option<MonoInstant> {
        match self.state {
            State::Idle { send_at } => Some(send_at.unwrap_or(MonoInstant::ZERO)),
            State::Waiting { deadline, .. } => Some(deadline),
            State::Done(_) => None,
        }
    }

    /// Tells the client time has passed: a lost request is retried (after a backoff with
    /// jitter) or, after `max_tries`, the exchange ends with [`Failure::NoReply`].
    pub fn handle_timeout(&mut self, now: Now) {
        if let State::Waiting {
            cookie, deadline, ..
        } = self.state
        {
            if now.mono < deadline {
                return;
            }
            self.last_cookie = Some(cookie);
            if self.tries >= self.config.max_tries {
                self.state = State::Done(Err(Failure::NoReply { tries: self.tries }));
            } else {
                let shift = u32::from(self.tries.saturating_sub(1)).min(16);
                let base = self
                    .config
                    .retry_backoff
                    .as_nanos()
                    .saturating_mul(1 << shift);
                // Uniform in [0, base/2): half scaled by the jitter's top 32 bits as a fraction
                // of 2^32, split so that nothing overflows and no 64-bit division (a library
                // routine on a 32-bit core) is needed.
                let half = base.max(0) as u64 >> 1;
                let j = self.jitter >> 32;
                let jitter = ((half >> 32) * j + (((half & 0xffff_ffff) * j) >> 32)) as i64;
                let wait = SignedDuration::from_nanos(base.saturating_add(jitter));
                self.state = State::Idle {
                    send_at: Some(now.mono + wait),
                };
            }
        }
    }

    /// Feeds a received datagram. `Ok(())` means it was accepted and the exchange finished
    /// with a sample. An error says why the datagram was not used; when it answered our
    /// request (echoed the cookie), the exchange finishes with that reason.
    pub fn handle_datagram(&mut self, now: Now, bytes: &[u8]) -> Result<(), Reject> {
        let (p, _ext) =
            NtpPacket::parse(bytes).map_err(|e| Reject::from_packet_error(e, bytes.len()))?;
        let (cookie, t1, sent) = match self.state {
            State::Waiting {
                cookie, t1, sent, ..
            } if p.origin_ts == cookie => (cookie, t1, sent),
            _ => {
                return Err(if self.last_cookie == Some(p.origin_ts) {
                    Reject::Duplicate
                } else {
                    Reject::NotRequested
                });
            }
        };
        self.last_cookie = Some(cookie);
        let verdict = self.judge(&p, t1, sent, now);
        self.state = State::Done(verdict.map_err(Failure::Rejected));
        verdict.map(|_| ())
    }

    fn judge(
        &self,
        p: &NtpPacket,
        t1: UnixTime,
        sent: MonoInstant,
        now: Now,
    ) -> Result<Sample, Reject> {
        if !(3..=4).contains(&p.version) {
            return Err(Reject::WrongVersion { version: p.version });
        }
        if p.mode != Mode::Server {
            return Err(Reject::WrongMode {
                mode: p.mode.to_bits(),
            });
        }
        if let Some(k) = p.kiss_code() {
            return Err(Reject::KissOfDeath(k));
        }
        if p.stratum > 15 {
            return Err(Reject::StratumTooHigh { stratum: p.stratum });
        }
        if p.leap == LeapIndicator::Unsynchronized {
            return Err(Reject::Unsynchronized);
        }
        if p.transmit_ts.is_zero() {
            return Err(Reject::ZeroTransmit);
        }
        let precision = precision_duration(p.precision);
        let distance = p.root_distance() + precision;
        if distance > self.config.max_root_distance {
            return Err(Reject::RootDistanceTooLarge {
                distance,
                limit: self.config.max_root_distance,
            });
        }
        let floor = self.config.floor;
        let t2 = p.receive_ts.to_unix(floor);
        let t3 = p.transmit_ts.to_unix(floor);
        if t3 < floor {
            return Err(Reject::BelowFloor { claimed: t3, floor });
        }
        // A server fills the bits below its precision with noise (chronyd does), so T3 may
        // precede T2 by up to one tick; more than that is a contradiction.
        let server_time = t3 - t2;
        if server_time.as_nanos() + precision.as_nanos() < 0 {
            return Err(Reject::TimestampsReversed);
        }
        // A zero reference time means "never set" (some servers send it); otherwise the
        // clock cannot have been set after the reply left.
        // Compared on the wire's 64-bit timestamps, modulo the era (RFC 5905's 68-year window):
        // the same answer as comparing the converted times, without a third conversion.
        let ahead = p
            .reference_ts
            .to_bits()
            .wrapping_sub(p.transmit_ts.to_bits()) as i64;
        if !p.reference_ts.is_zero() && ahead > 0 {
            return Err(Reject::ReferenceAfterTransmit);
        }
        // T4 - T1 from the monotonic clock: immune to wall-clock steps in between.
        let rtt = now.mono.since(sent).abs();
        let delay = (rtt - server_time).max(SignedDuration::ZERO);
        // offset = ((T2 - T1) + (T3 - T4)) / 2 with T4 = T1 + rtt.
        let t4 = t1 + rtt;
        // Halved before adding (no i128 on a 32-bit core): off by at most 1 ns from the exact
        // mean, which the error bound covers (a precision is never under 1 ns).
        let offset =
            SignedDuration::from_nanos(((t2 - t1).as_nanos() >> 1) + ((t3 - t4).as_nanos() >> 1));
        Ok(Sample {
            offset,
            delay,
            root_delay: p.root_delay.to_duration(),
            root_dispersion: p.root_dispersion.to_duration(),
            precision,
            stratum: p.stratum,
            leap: p.leap,
            reference_id: p.reference_id,
            server_time: t3,
            received_at: Now {
                mono: now.mono,
                wall: t4,
            },
        })
    }

    /// The outcome, once finished.
    #[must_use]
    pub fn result(&self) -> Option<Result<Sample, Failure>> {
        match self.state {
            State::Done(r) => Some(r),
            _ => None,
        }
    }

    /// True once the exchange has finished (sample, reject or no reply).
    #[must_use]
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done(_))
    }

    /// The sample, once, after a successful exchange.
    pub fn take_sample(&mut self) -> Option<Sample> {
        match self.state {
            State::Done(Ok(s)) if !self.taken => {
                self.taken = true;
                Some(s)
            }
            _ => None,
        }
    }

    /// Requests sent in this exchange.
    #[must_use]
    pub fn tries(&self) -> u8 {
        self.tries
    }
}

/// A precision exponent (log2 seconds) as a duration, rounded up to whole nanoseconds and
/// capped at 2^20 s (any such server fails the root-distance limit anyway).
///
/// In 32-bit arithmetic where it can be: on a Cortex-M, 64-bit multiplications and divisions
/// are library routines that cost more flash than the whole SNTP exchange.
#[must_use]
pub fn precision_duration(log2_secs: i8) -> SignedDuration {
    if log2_secs >= 0 {
        SignedDuration::from_nanos(1_000_000_000_i64 << (log2_secs.min(20) as u32))
    } else {
        let shift = u32::from(log2_secs.unsigned_abs());
        // 1e9 < 2^30: a tick of 2^-30 s or finer rounds up to one nanosecond.
        if shift >= 30 {
            return SignedDuration::from_nanos(1);
        }
        let tick = 1u32 << shift;
        SignedDuration::from_nanos(i64::from((1_000_000_000_u32 + tick - 1) >> shift))
    }
}

/// Poll-interval policy for a long-running client (RFC 5905 §7.3 and the NTP Pool's guidance
/// for vendors): adaptive between `min_poll` and `max_poll` (log2 seconds, 6..=10 by default,
/// i.e. 64 s to 1024 s), exponential backoff with jitter on failures, Kiss-o'-Death RATE doubles
/// the interval, DENY and RSTR stop the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollPolicy {
    /// Lowest poll exponent (log2 s).
    pub min_poll: i8,
    /// Highest poll exponent (log2 s).
    pub max_poll: i8,
    poll: i8,
    good_in_a_row: u8,
    failures_in_a_row: u8,
    stopped: Option<KissCode>,
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy::new(6, 10)
    }
}

impl PollPolicy {
    /// Good samples in a row before the interval doubles.
    pub const GOOD_TO_INCREASE: u8 = 4;

    /// A policy starting at `min_poll`. The bounds are sorted and clamped to -7..=17.
    #[must_use]
    pub fn new(min_poll: i8, max_poll: i8) -> Self {
        let lo = min_poll.min(max_poll).clamp(-7, 17);
        let hi = max_poll.max(min_poll).clamp(-7, 17);
        PollPolicy {
            min_poll: lo,
            max_poll: hi,
            poll: lo,
            good_in_a_row: 0,
            failures_in_a_row: 0,
            stopped: None,
        }
    }
    /// Resumes at a poll exponent saved before a restart (clamped to the bounds), so a
    /// restarted device does not go back to polling at the minimum interval.
    pub fn resume_at(&mut self, poll: i8) {
        self.poll = poll.clamp(self.min_poll, self.max_poll);
    }
    /// The current poll exponent.
    #[must_use]
    pub fn poll_exponent(&self) -> i8 {
        self.poll
    }
    /// The Kiss-o'-Death code that stopped this source, if any.
    #[must_use]
    pub fn stopped_by(&self) -> Option<KissCode> {
        self.stopped
    }
    /// Failures in a row.
    #[must_use]
    pub fn failures_in_a_row(&self) -> u8 {
        self.failures_in_a_row
    }
    /// After a good sample: the interval grows slowly toward `max_poll`; above it (after
    /// RATE), it comes back down as slowly. Without that, a pool name (resolved again at every
    /// poll, so the next server is another one) that once drew a RATE stayed slow for good,
    /// and a fleet drifted toward 2^17 s and out of sync within weeks.
    pub fn on_success(&mut self) {
        self.failures_in_a_row = 0;
        self.good_in_a_row = self.good_in_a_row.saturating_add(1);
        if self.good_in_a_row >= Self::GOOD_TO_INCREASE && self.poll != self.max_poll {
            self.poll += if self.poll < self.max_poll { 1 } else { -1 };
            self.good_in_a_row = 0;
        }
    }
    /// After an exchange without a usable reply: back off exponentially.
    pub fn on_failure(&mut self) {
        self.good_in_a_row = 0;
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        if self.poll < self.max_poll {
            self.poll += 1;
        }
    }
    /// After a Kiss-o'-Death: RATE doubles the interval (beyond `max_poll` if need be, up to
    /// 2^17 s; four good samples in a row halve it again, down to `max_poll`); DENY and RSTR
    /// stop the source for good.
    pub fn on_kiss(&mut self, code: KissCode) {
        self.good_in_a_row = 0;
        match code {
            KissCode::Deny | KissCode::Rstr => self.stopped = Some(code),
            _ => self.poll = (self.poll + 1).min(17),
        }
    }
    /// The wait before the next request: 2^poll seconds plus up to 1/8 of it of random jitter
    /// (so a fleet that booted together spreads out). `None` once stopped.
    #[must_use]
    pub fn next_interval(&self, rand: u64) -> Option<SignedDuration> {
        if self.stopped.is_some() {
            return None;
        }
        let base = if self.poll >= 0 {
            SignedDuration::from_secs(1i64 << self.poll)
        } else {
            SignedDuration::from_nanos(1_000_000_000 >> (-self.poll))
        };
        let span = (base.as_nanos() / 8).max(1) as u64;
        Some(base + SignedDuration::from_nanos((rand % span) as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ntp::packet::NtpShort;

    const FLOOR: i64 = 1_750_000_000;

    fn now(mono_ms: u64, wall: UnixTime) -> Now {
        Now {
            mono: MonoInstant::from_nanos(mono_ms * 1_000_000),
            wall,
        }
    }

    fn cfg() -> ClientConfig {
        ClientConfig {
            floor: UnixTime::from_secs(FLOOR),
            ..ClientConfig::default()
        }
    }

    /// A server reply to `req` from a server whose clock reads `server_now`.
    fn reply_to(req: &[u8], server_now: UnixTime) -> [u8; 48] {
        let (q, _) = NtpPacket::parse(req).unwrap();
        let ts = NtpTimestamp::from_unix(server_now);
        let p = NtpPacket {
            leap: LeapIndicator::NoWarning,
            version: 4,
            mode: Mode::Server,
            stratum: 2,
            poll: 6,
            precision: -20,
            root_delay: NtpShort(0x0000_0100),
            root_dispersion: NtpShort(0x0000_0100),
            reference_id: *b"GPS\0",
            reference_ts: ts,
            origin_ts: q.transmit_ts,
            receive_ts: ts,
            transmit_ts: ts,
        };
        let mut b = [0u8; 48];
        p.emit(&mut b).unwrap();
        b
    }

    fn start() -> (NtpClient, [u8; 48]) {
        let mut c = NtpClient::new(cfg());
        let mut buf = [0u8; 48];
        let dev = UnixTime::from_secs(946_684_800); // a device at 2000-01-01 (dead RTC)
        assert_eq!(
            c.poll_transmit(now(0, dev), 0xdead_beef_0bad_f00d, &mut buf),
            Some(48)
        );
        (c, buf)
    }

    #[test]
    fn measures_a_decades_large_offset() {
        let (mut c, req) = start();
        let (q, _) = NtpPacket::parse(&req).unwrap();
        assert_eq!(
            q.transmit_ts.to_bits(),
            0xdead_beef_0bad_f00d,
            "the cookie, not the clock"
        );
        let server = UnixTime::from_secs(FLOOR + 86_400 * 300);
        let r = reply_to(&req, server);
        let dev = UnixTime::from_secs(946_684_800);
        assert_eq!(
            c.handle_datagram(now(10, dev + SignedDuration::from_millis(10)), &r),
            Ok(())
        );
        let s = c.take_sample().unwrap();
        let expected = server - (dev + SignedDuration::from_millis(5));
        assert!(
            (s.offset - expected).abs() <= SignedDuration::from_micros(1),
            "{s:?}"
        );
        assert_eq!(s.delay, SignedDuration::from_millis(10));
        assert!(c.take_sample().is_none(), "taken once");
        // The same reply again is a duplicate.
        assert_eq!(c.handle_datagram(now(11, dev), &r), Err(Reject::Duplicate));
    }

    fn reject_with(edit: impl Fn(&mut [u8; 48])) -> Result<(), Reject> {
        let (mut c, req) = start();
        let mut r = reply_to(&req, UnixTime::from_secs(FLOOR + 1000));
        edit(&mut r);
        let res = c.handle_datagram(now(5, UnixTime::EPOCH), &r);
        assert!(c.is_done());
        res
    }

    #[test]
    fn every_reject_reason() {
        assert_eq!(
            reject_with(|r| r[0] = (r[0] & !0x38) | (2 << 3)),
            Err(Reject::WrongVersion { version: 2 })
        );
        assert_eq!(
            reject_with(|r| r[0] = (r[0] & !7) | 5),
            Err(Reject::WrongMode { mode: 5 })
        );
        for (code, kiss) in [
            (b"RATE", KissCode::Rate),
            (b"DENY", KissCode::Deny),
            (b"RSTR", KissCode::Rstr),
        ] {
            assert_eq!(
                reject_with(|r| {
                    r[1] = 0;
                    r[12..16].copy_from_slice(code);
                }),
                Err(Reject::KissOfDeath(kiss))
            );
        }
        assert_eq!(
            reject_with(|r| r[1] = 16),
            Err(Reject::StratumTooHigh { stratum: 16 })
        );
        assert_eq!(reject_with(|r| r[0] |= 0xc0), Err(Reject::Unsynchronized));
        assert_eq!(
            reject_with(|r| r[40..48].fill(0)),
            Err(Reject::ZeroTransmit)
        );
        assert!(matches!(
            reject_with(|r| r[8..12].copy_from_slice(&0x0002_0000u32.to_be_bytes())),
            Err(Reject::RootDistanceTooLarge { .. })
        ));
        assert!(matches!(
            reject_with(|r| {
                let old =
                    NtpTimestamp::from_unix(UnixTime::from_secs(FLOOR - 86_400 * 90)).to_bits();
                r[32..40].copy_from_slice(&old.to_be_bytes());
                r[40..48].copy_from_slice(&old.to_be_bytes());
            }),
            Err(Reject::BelowFloor { .. })
        ));
        assert_eq!(
            reject_with(|r| {
                let later = NtpTimestamp::from_unix(UnixTime::from_secs(FLOOR + 2000)).to_bits();
                r[32..40].copy_from_slice(&later.to_be_bytes());
            }),
            Err(Reject::TimestampsReversed)
        );
        // Reference time (bytes 16..24) a second after the transmit time.
        assert_eq!(
            reject_with(|r| {
                let later = NtpTimestamp::from_unix(UnixTime::from_secs(FLOOR + 1001)).to_bits();
                r[16..24].copy_from_slice(&later.to_be_bytes());
            }),
            Err(Reject::ReferenceAfterTransmit)
        );
        // Within one tick of a coarse clock, T3 < T2 is noise, not a contradiction.
        assert_eq!(
            reject_with(|r| {
                r[3] = (-4i8) as u8; // 1/16 s
                let t3 = NtpTimestamp::from_unix(
                    UnixTime::from_secs(FLOOR + 1000) - SignedDuration::from_millis(50),
                )
                .to_bits();
                r[40..48].copy_from_slice(&t3.to_be_bytes());
                r[16..24].copy_from_slice(&t3.to_be_bytes());
            }),
            Ok(())
        );
        // A zero reference time ("never set") is not a contradiction.
        assert_eq!(reject_with(|r| r[16..24].fill(0)), Ok(()));
        // A precision of 2^0 s = 1 s on top of the root distance exceeds the 1 s limit.
        assert!(matches!(
            reject_with(|r| r[3] = 0),
            Err(Reject::RootDistanceTooLarge { .. })
        ));
    }

    #[test]
    fn precision_converts_and_rounds_up() {
        assert_eq!(precision_duration(0), SignedDuration::from_secs(1));
        assert_eq!(precision_duration(-1), SignedDuration::from_millis(500));
        assert_eq!(precision_duration(-10), SignedDuration::from_nanos(976_563));
        assert_eq!(precision_duration(-20), SignedDuration::from_nanos(954));
        assert_eq!(precision_duration(-30), SignedDuration::from_nanos(1));
        assert_eq!(precision_duration(-128), SignedDuration::from_nanos(1));
        assert_eq!(precision_duration(3), SignedDuration::from_secs(8));
        assert_eq!(precision_duration(127), SignedDuration::from_secs(1 << 20));
        assert_eq!(precision_duration(-29), SignedDuration::from_nanos(2));
    }

    /// A server whose clock ticks only every 0.5 s reads "now" as the start of its tick: it
    /// can be up to 0.5 s behind the truth while it claims 0.1 ms of dispersion. The sample's
    /// interval must still hold the true offset, and be centred on the offset.
    #[test]
    fn a_low_precision_servers_interval_contains_the_truth() {
        for behind_ms in [0i64, 100, 250, 499] {
            let (mut c, req) = start();
            let truth = UnixTime::from_secs(FLOOR + 5000);
            let dev = UnixTime::from_secs(946_684_800);
            // The server's clock reads a truncated time: up to one tick behind.
            let server_reads = truth - SignedDuration::from_millis(behind_ms);
            let mut r = reply_to(&req, server_reads);
            r[3] = (-1i8) as u8; // precision 2^-1 s
            r[8..12].copy_from_slice(&0u32.to_be_bytes()); // root delay 0
            r[4..8].copy_from_slice(&7u32.to_be_bytes()); // root dispersion ~0.1 ms
                                                          // The request left at dev (mono 0) and the reply came back at mono 2 ms; the
                                                          // server read its clock in the middle.
            let truth_at_send = truth - SignedDuration::from_millis(1);
            assert_eq!(
                c.handle_datagram(now(2, dev + SignedDuration::from_millis(2)), &r),
                Ok(())
            );
            let s = c.take_sample().unwrap();
            let true_offset = truth_at_send - dev;
            let (lo, hi) = s.offset_interval();
            assert!(
                lo <= true_offset && true_offset <= hi,
                "{behind_ms} ms behind: {lo} .. {hi} misses {true_offset}"
            );
            assert!(s.error_bound() >= SignedDuration::from_millis(500), "{s:?}");
            assert_eq!(s.offset, lo + (hi - lo).half(), "offset is the centre");
        }
    }

    /// A server that stamps a request's arrival when its event loop woke, before the packet
    /// came in (chronyd without kernel stamps, on a loaded machine: 0.08 ms early), still gives
    /// an interval that holds the truth: the bound allows `TIMESTAMP_ERROR` for it.
    #[test]
    fn a_server_stamping_the_arrival_early_still_gives_an_interval_with_the_truth() {
        let us = |n: i64| SignedDuration::from_nanos(n * 1000);
        for early_us in [0i64, 80, 500, 999] {
            let (mut c, req) = start();
            let dev = UnixTime::from_secs(946_684_800);
            // True time when the request left (device mono 0, wall `dev`).
            let truth0 = UnixTime::from_secs(FLOOR + 5000);
            let (q, _) = NtpPacket::parse(&req).unwrap();
            let p = NtpPacket {
                leap: LeapIndicator::NoWarning,
                version: 4,
                mode: Mode::Server,
                stratum: 2,
                poll: 6,
                precision: -24,
                root_delay: NtpShort(0),
                root_dispersion: NtpShort(0),
                reference_id: *b"GPS\0",
                reference_ts: NtpTimestamp::from_unix(truth0),
                origin_ts: q.transmit_ts,
                // Arrived 50 us after it left, stamped `early_us` before that.
                receive_ts: NtpTimestamp::from_unix(truth0 + us(50 - early_us)),
                // Stamped just before the reply left, 60 us after the request did.
                transmit_ts: NtpTimestamp::from_unix(truth0 + us(60)),
            };
            let mut r = [0u8; 48];
            p.emit(&mut r).unwrap();
            // Back 100 us after the request left.
            let back = Now {
                mono: MonoInstant::from_nanos(100_000),
                wall: dev + us(100),
            };
            assert_eq!(c.handle_datagram(back, &r), Ok(()));
            let s = c.take_sample().unwrap();
            let true_offset = truth0 - dev;
            let (lo, hi) = s.offset_interval();
            assert!(
                lo <= true_offset && true_offset <= hi,
                "T2 {early_us} us early: {lo} .. {hi} misses {true_offset}"
            );
        }
    }

    #[test]
    fn unsolicited_truncated_and_oversized() {
        let (mut c, req) = start();
        let mut r = reply_to(&req, UnixTime::from_secs(FLOOR + 1000));
        r[24] ^= 1; // origin does not echo our cookie
        assert_eq!(
            c.handle_datagram(now(1, UnixTime::EPOCH), &r),
            Err(Reject::NotRequested)
        );
        assert!(!c.is_done(), "a forged reply does not end the exchange");
        assert_eq!(
            c.handle_datagram(now(1, UnixTime::EPOCH), &r[..47]),
            Err(Reject::Truncated { len: 47 })
        );
        let big = [0u8; 1100];
        assert_eq!(
            c.handle_datagram(now(1, UnixTime::EPOCH), &big),
            Err(Reject::Oversized { len: 1100 })
        );
        let mut fresh = NtpClient::new(cfg());
        assert_eq!(
            fresh.handle_datagram(now(1, UnixTime::EPOCH), &r),
            Err(Reject::NotRequested)
        );
    }

    #[test]
    fn retries_with_backoff_then_gives_up() {
        let (mut c, _) = start();
        let mut buf = [0u8; 48];
        let mut t = 0u64;
        let mut sends = 1;
        while !c.is_done() {
            let Some(deadline) = c.poll_timeout() else {
                break;
            };
            t = t.max(deadline.as_nanos().div_ceil(1_000_000));
            let n = now(t, UnixTime::EPOCH);
            c.handle_timeout(n);
            if c.poll_transmit(n, 7 + t, &mut buf).is_some() {
                sends += 1;
            }
        }
        assert_eq!(sends, 3);
        assert_eq!(c.result(), Some(Err(Failure::NoReply { tries: 3 })));
        // 3 timeouts of 1 s plus backoffs of >= 250 ms and >= 500 ms.
        assert!(t >= 3750, "{t}");
    }

    #[test]
    fn era_one_server_is_read_with_the_floor_pivot() {
        let (mut c, req) = start();
        let server = UnixTime::parse_rfc3339("2036-02-08T00:00:00Z").unwrap();
        let r = reply_to(&req, server);
        assert_eq!(c.handle_datagram(now(1, UnixTime::EPOCH), &r), Ok(()));
        let s = c.take_sample().unwrap();
        assert_eq!(s.server_time, server);
    }

    #[test]
    fn poll_policy_follows_the_rules() {
        let mut p = PollPolicy::default();
        assert_eq!(p.poll_exponent(), 6);
        for _ in 0..PollPolicy::GOOD_TO_INCREASE {
            p.on_success();
        }
        assert_eq!(p.poll_exponent(), 7);
        p.on_kiss(KissCode::Rate);
        assert_eq!(p.poll_exponent(), 8);
        // RATE goes beyond max_poll; good samples bring it back, as slowly as it rises.
        let mut r = PollPolicy::default();
        r.resume_at(10);
        r.on_kiss(KissCode::Rate);
        r.on_kiss(KissCode::Rate);
        assert_eq!(r.poll_exponent(), 12);
        for _ in 0..PollPolicy::GOOD_TO_INCREASE - 1 {
            r.on_success();
        }
        assert_eq!(r.poll_exponent(), 12, "not before four good samples");
        for _ in 0..3 * PollPolicy::GOOD_TO_INCREASE {
            r.on_success();
        }
        assert_eq!(r.poll_exponent(), 10, "back to max_poll, not below");
        let mut q = PollPolicy::default();
        q.resume_at(9);
        assert_eq!(q.poll_exponent(), 9);
        q.resume_at(40);
        assert_eq!(q.poll_exponent(), 10, "clamped to max_poll");
        p.on_failure();
        assert_eq!(p.poll_exponent(), 9);
        let i = p.next_interval(12345).unwrap();
        assert!(i >= SignedDuration::from_secs(512) && i < SignedDuration::from_secs(576));
        p.on_kiss(KissCode::Deny);
        assert_eq!(p.next_interval(1), None);
        assert_eq!(p.stopped_by(), Some(KissCode::Deny));
    }
}

/// Seeded random event sequences with the `ntp_client` fuzz target's property.
#[cfg(test)]
mod fuzz_like {
    use super::*;

    #[test]
    fn random_datagrams_and_timers_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2_000 {
            let mut c = NtpClient::new(ClientConfig::default());
            let mut req = [0u8; 48];
            let mut t = 0u64;
            for _ in 0..20 {
                let op = next();
                t += op % 2_000_000_000;
                let now = Now {
                    mono: MonoInstant::from_nanos(t),
                    wall: UnixTime::from_nanos((op >> 1) as i64),
                };
                let _ = c.poll_transmit(now, next(), &mut req);
                if op & 1 == 0 {
                    c.handle_timeout(now);
                } else {
                    let mut d = [0u8; 64];
                    for b in &mut d {
                        *b = next() as u8;
                    }
                    if op & 2 != 0 {
                        d[24..32].copy_from_slice(&req[40..48]); // echo the cookie
                        d[0] = (d[0] & 0xc0) | 0x24; // version 4, mode 4
                    }
                    let len = (next() % 65) as usize;
                    let accepted = c.handle_datagram(now, &d[..len]).is_ok();
                    if accepted {
                        assert!(c.take_sample().is_some());
                    }
                }
                let _ = c.poll_timeout();
            }
        }
    }
}
