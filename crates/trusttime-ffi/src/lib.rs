//! # trusttime-ffi
//!
//! The C API of the trusttime core, for firmware (FreeRTOS, bare metal) and C programs: a
//! static library (`libtrusttime_ffi.a`) and the header `include/trusttime.h`, generated from
//! this file by cbindgen. The doc comments here are the header's reference documentation.
//!
//! The shape follows coreSNTP so that its users feel at home:
//! - the application allocates the state (`trusttime_ctx`, `trusttime_ctx` in C, of the
//!   published size `TRUSTTIME_CONTEXT_SIZE`), usually as a `static`;
//! - it initialises it with N servers, the floor and the drift bound (`trusttime_init`);
//! - it owns the sockets and the clocks: each call takes "now" (`trusttime_now`) and the
//!   library says what to send (`trusttime_poll_transmit`), takes what was received
//!   (`trusttime_handle_datagram`) and says when to call again (`trusttime_poll_timeout`,
//!   `trusttime_handle_timeout`);
//! - it reads the trusted interval, its provenance and state (`trusttime_trusted_time`) and asks
//!   whether the time is good enough for a purpose (`trusttime_ready`: TLS 1 h, SigV4 5 min);
//! - it saves the trust state to flash and restores it after a reboot (`trusttime_save`,
//!   `trusttime_restore`): versioned and checksummed.
//!
//! Every call returns a `trusttime_error`; the library never allocates and never panics
//! across the boundary (bad pointers, sizes and indexes are errors, not crashes).
//!
//! ## Features
//! - `std` (default): the hosted build (Linux, tests); std supplies the panic handler.
//! - `panic-handler`: for firmware without std. The library then defines the Rust panic handler,
//!   which calls the application's `void trusttime_panic_hook(void)` (it must not return:
//!   reset the device). No code path is expected to panic; the hook is the last line of defence.
#![no_std]
// The C boundary: raw pointers from C are checked (null, alignment, initialisation) in one
// place, `Ctx::from_ptr`, before any use.
#![allow(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

#[cfg(all(feature = "std", feature = "panic-handler"))]
compile_error!("`panic-handler` is for builds without std: disable default features");

use core::ffi::c_char;
use core::mem::{align_of, size_of};
use core::ptr::addr_of_mut;

use trusttime_core::ntp::{ClientConfig, Failure, KissCode, NtpClient, Reject};
use trusttime_core::select::{self, Decision, NoConsensus, OffsetInterval, Outcome};
use trusttime_core::trust::{TrustConfig, TrustMachine, TrustState};
use trusttime_core::{MonoInstant, Now, Provenance, SignedDuration, TimeInterval, UnixTime};

/// The most servers one context can hold.
pub const TRUSTTIME_MAX_SERVERS: usize = 8;

/// Bytes of a `trusttime_ctx` (`trusttime_ctx`): what the application allocates.
pub const TRUSTTIME_CONTEXT_SIZE: usize = 2048;

/// `TRUSTTIME_CONTEXT_SIZE` in 64-bit words (the context is an array of them, so it is
/// 8-byte aligned wherever it is placed).
pub const TRUSTTIME_CONTEXT_WORDS: usize = 256;

/// Bytes written by `trusttime_save`: the buffer to reserve in flash.
pub const TRUSTTIME_SAVED_SIZE: usize = 40;

/// Bytes of the largest request `trusttime_poll_transmit` writes (an NTP header).
pub const TRUSTTIME_REQUEST_SIZE: usize = 48;

/// Version of the layout written by `trusttime_save`.
pub const TRUSTTIME_SAVED_VERSION: u8 = 1;

/// The state of one trusttime instance, allocated by the application (statically or on a task
/// stack of sufficient size) and initialised by `trusttime_init`. Treat it as opaque: its
/// size is `TRUSTTIME_CONTEXT_SIZE` and it must not be copied while in use.
#[repr(C)]
#[derive(Debug)]
pub struct TrusttimeContext {
    /// Opaque storage.
    pub opaque: [u64; TRUSTTIME_CONTEXT_WORDS],
}

/// What every call returns. `TRUSTTIME_ERROR_OK` (0) is success.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrusttimeError {
    /// Success.
    Ok = 0,
    /// A required pointer was NULL or not aligned for its type.
    BadPointer = 1,
    /// The context was not initialised with `trusttime_init`.
    NotInitialised = 2,
    /// The configuration is invalid: no servers or more than `TRUSTTIME_MAX_SERVERS`,
    /// `min_agree` larger than the number of servers, a zero timeout or tries count.
    BadConfig = 3,
    /// A server index is not below the configured number of servers.
    BadServer = 4,
    /// An output buffer is smaller than needed (`TRUSTTIME_REQUEST_SIZE`, `TRUSTTIME_SAVED_SIZE`).
    BufferTooSmall = 5,
    /// The datagram was not used; the `trusttime_reject` output says why.
    Rejected = 6,
    /// The time is not trusted well enough for the purpose asked about (too uncertain, or
    /// nothing but the floor is known). Re-sync rather than retry.
    NotTrusted = 7,
    /// An unknown `trusttime_purpose` value.
    BadPurpose = 8,
    /// The saved state is shorter than `TRUSTTIME_SAVED_SIZE`.
    SavedTruncated = 9,
    /// The saved state does not start with the trusttime magic (e.g. erased flash): nothing
    /// was saved.
    SavedBadMagic = 10,
    /// The saved state has a layout version this library does not read.
    SavedBadVersion = 11,
    /// The saved state's checksum does not match: it is corrupt (torn write, bit rot).
    SavedBadChecksum = 12,
    /// The saved state is well-formed but its content is impossible (earliest after latest,
    /// unknown provenance).
    SavedInvalid = 13,
}

/// Why a datagram was not accepted, or why a server failed.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrusttimeReject {
    /// Not rejected.
    None = 0,
    /// Shorter than an NTP header.
    Truncated = 1,
    /// Longer than an NTP datagram may be.
    Oversized = 2,
    /// NTP version other than 3 or 4.
    WrongVersion = 3,
    /// Not a server-mode reply.
    WrongMode = 4,
    /// Kiss-o'-Death RATE: the server asks to be polled less often.
    KissRate = 5,
    /// Kiss-o'-Death DENY or RSTR: the server refuses service; it is not asked again.
    KissDeny = 6,
    /// Any other Kiss-o'-Death code.
    KissOther = 7,
    /// Stratum above 15: the server is not synchronised.
    StratumTooHigh = 8,
    /// Leap indicator 3: the server is not synchronised.
    Unsynchronized = 9,
    /// The server's transmit timestamp is zero.
    ZeroTransmit = 10,
    /// Not a reply to an outstanding request of ours (wrong cookie: spoofed or stale).
    NotRequested = 11,
    /// A second reply to a request already answered.
    Duplicate = 12,
    /// The server's root distance exceeds the limit.
    RootDistanceTooLarge = 13,
    /// The server's transmit time precedes its receive time.
    TimestampsReversed = 14,
    /// The server claims a time below the floor: it is certainly wrong (a falseticker).
    BelowFloor = 15,
    /// No reply after every try.
    NoReply = 16,
    /// Another reason (a newer core reason this header does not name).
    Other = 17,
}

/// What a time is needed for, and so how uncertain it may be.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrusttimePurpose {
    /// Checking TLS certificate validity: ready within 1 hour of error.
    Tls = 0,
    /// Signing AWS SigV4 requests: ready within 5 minutes of error.
    Sigv4 = 1,
}

/// Where the trusted interval came from.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrusttimeProvenance {
    /// Only the floor (build time or restored good time) is known.
    Floor = 0,
    /// The real-time clock.
    Rtc = 1,
    /// Saved state restored after a reboot, carried forward with drift.
    Persisted = 2,
    /// Set by a person.
    Manual = 3,
    /// A consensus of (unauthenticated) NTP servers.
    Ntp = 4,
    /// A consensus resting on authenticated sources.
    Authenticated = 5,
}

/// The trust state.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrusttimeState {
    /// Only the floor is known.
    Unknown = 0,
    /// Carried forward from restored state or an aged sync.
    Holdover = 1,
    /// A recent NTP consensus.
    Synced = 2,
    /// A recent consensus of authenticated sources.
    Authenticated = 3,
}

/// Where the current (or last) synchronisation round stands.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrusttimePhase {
    /// Requests are out; no decision yet.
    InProgress = 0,
    /// The last round reached consensus; the next starts at `next_round_ns`.
    Agreed = 1,
    /// The last round failed (see `failure`); the next starts at `next_round_ns`.
    Failed = 2,
}

/// Why a round failed.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrusttimeFailure {
    /// It did not fail.
    None = 0,
    /// Fewer servers answered usefully than must agree.
    TooFewReplies = 1,
    /// Enough answered, but no group large enough (`min_agree` and a strict majority) agrees.
    Disagreement = 2,
}

/// One server's part in the current (or last) round.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrusttimeServerStatus {
    /// Waiting for its reply.
    Pending = 0,
    /// It answered with a valid sample.
    Replied = 1,
    /// It failed: `reject` says why.
    Failed = 2,
}

/// Both clocks, read once per turn of the application's loop.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrusttimeNow {
    /// A monotonic clock in nanoseconds (e.g. a tick counter); never goes back, any origin.
    pub mono_ns: u64,
    /// The device's wall clock, nanoseconds since 1970-01-01 UTC; may be wildly wrong (it is
    /// what is being corrected) but must not be stepped during a round.
    pub wall_ns: i64,
}

/// Settings given to `trusttime_init`; fill with `trusttime_config_default` first.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrusttimeConfig {
    /// How many servers, 1 to `TRUSTTIME_MAX_SERVERS`. Server `i` is the index the application
    /// uses for its address in every call.
    pub server_count: u8,
    /// How many servers must agree; 0 picks the default (2 with 3 or more servers, else 1).
    /// A strict majority of the servers that answered is always required as well.
    pub min_agree: u8,
    /// Requests per server per round before giving up on it (default 3).
    pub max_tries: u8,
    /// The floor, seconds since 1970: nothing earlier is ever believed. 0 means the library's
    /// build time. Use your firmware's build time or later.
    pub floor_unix_s: i64,
    /// Drift bound of the local oscillator in parts per million (default 50): how fast the
    /// trusted interval widens between syncs.
    pub drift_ppm: u32,
    /// How long to wait for each reply, milliseconds (default 1000).
    pub reply_timeout_ms: u32,
    /// Replies whose root distance exceeds this are rejected, milliseconds (default 1000).
    pub max_root_distance_ms: u32,
    /// Seconds from a round's consensus to the next round (default 1024; at least 16).
    pub poll_interval_s: u32,
    /// Seconds from a failed round to the next (default 64; at least 1).
    pub retry_interval_s: u32,
}

/// A request to send, from `trusttime_poll_transmit`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrusttimeTransmit {
    /// Bytes written to the buffer; 0 when nothing is due.
    pub len: usize,
    /// The server to send them to.
    pub server: u8,
}

/// The trusted time, from `trusttime_trusted_time`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrusttimeTime {
    /// The true time is no earlier than this, nanoseconds since 1970-01-01 UTC.
    pub earliest_ns: i64,
    /// The true time is no later than this; `INT64_MAX` when unbounded (nothing but the floor).
    pub latest_ns: i64,
    /// Where the interval came from.
    pub provenance: TrusttimeProvenance,
    /// The trust state.
    pub state: TrusttimeState,
}

/// The current or last round, from `trusttime_round_status`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrusttimeRound {
    /// Where the round stands.
    pub phase: TrusttimePhase,
    /// Why it failed, when `phase` is `TRUSTTIME_PHASE_FAILED`.
    pub failure: TrusttimeFailure,
    /// Bit `i` set when server `i` is in the agreeing group (after consensus).
    pub agreed_mask: u32,
    /// Servers in the agreeing group (or the largest group, after a disagreement).
    pub agreed_count: u8,
    /// Servers that answered usefully.
    pub replies: u8,
    /// Servers that must agree.
    pub needed: u8,
    /// The agreed offset (server time minus local wall time), lower bound, nanoseconds.
    pub offset_lo_ns: i64,
    /// The agreed offset, upper bound, nanoseconds.
    pub offset_hi_ns: i64,
    /// Monotonic time at which the next round starts (when not in progress).
    pub next_round_ns: u64,
}

/// One server's part in the current or last round, from `trusttime_server_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrusttimeServer {
    /// Pending, replied or failed.
    pub status: TrusttimeServerStatus,
    /// Why it failed (`TRUSTTIME_REJECT_NONE` otherwise).
    pub reject: TrusttimeReject,
    /// True when it is in the agreeing group of the last consensus; false for a falseticker.
    pub agreed: bool,
    /// Its stratum (when replied).
    pub stratum: u8,
    /// Requests sent to it in this round.
    pub tries: u8,
    /// Its offset (server minus local wall time), nanoseconds (when replied).
    pub offset_ns: i64,
    /// The error bound of that offset (half the round trip plus root distance), nanoseconds.
    pub error_ns: i64,
}

const MAGIC: u32 = 0x7452_5354; // "TSRt" little-endian: set by trusttime_init
const SAVED_MAGIC: [u8; 4] = *b"TTst";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    InProgress,
    Agreed,
    Failed(NoConsensus),
}

#[derive(Debug)]
struct Ctx {
    magic: u32,
    n: u8,
    min_agree: u8,
    phase: Phase,
    /// Bit `i`: server `i` answered Kiss-o'-Death DENY or RSTR and is not asked again.
    stopped: u32,
    agreed: u32,
    agreed_count: u8,
    offset: OffsetInterval,
    next_round: MonoInstant,
    poll_interval: SignedDuration,
    retry_interval: SignedDuration,
    client_config: ClientConfig,
    trust: TrustMachine,
    outcomes: [Outcome; TRUSTTIME_MAX_SERVERS],
    clients: [NtpClient; TRUSTTIME_MAX_SERVERS],
}

const _: () = assert!(size_of::<Ctx>() <= TRUSTTIME_CONTEXT_SIZE);
const _: () = assert!(align_of::<Ctx>() <= align_of::<TrusttimeContext>());
const _: () = assert!(TRUSTTIME_CONTEXT_WORDS * 8 == TRUSTTIME_CONTEXT_SIZE);
const _: () = assert!(TRUSTTIME_MAX_SERVERS <= select::MAX_SOURCES);

impl Ctx {
    /// The initialised context behind `p`.
    ///
    /// # Safety
    /// `p` is NULL or points to `TRUSTTIME_CONTEXT_SIZE` writable bytes not aliased elsewhere
    /// during the call.
    unsafe fn from_ptr<'a>(p: *mut TrusttimeContext) -> Result<&'a mut Ctx, TrusttimeError> {
        if p.is_null() || (p as usize) % align_of::<Ctx>() != 0 {
            return Err(TrusttimeError::BadPointer);
        }
        let p = p.cast::<Ctx>();
        // SAFETY: non-null, aligned, and large enough (const asserts above). The magic is read
        // through a raw pointer, so no reference to a possibly uninitialised `Ctx` exists
        // until `trusttime_init` is known to have written every field.
        if core::ptr::addr_of!((*p).magic).read_volatile() != MAGIC {
            return Err(TrusttimeError::NotInitialised);
        }
        // SAFETY: initialised (above); the caller guarantees exclusive access.
        Ok(&mut *p)
    }

    /// The configured number of servers, never more than the arrays hold (even if C code
    /// scribbled over the context, indexing stays in bounds: no panic at the boundary).
    fn servers(&self) -> usize {
        usize::from(self.n).min(TRUSTTIME_MAX_SERVERS)
    }

    fn start_round(&mut self, now: Now) {
        for i in 0..self.servers() {
            if self.stopped & (1 << i) != 0 {
                self.outcomes[i] = Outcome::Failed;
            } else {
                self.clients[i].restart(now.mono);
                self.outcomes[i] = Outcome::Pending;
            }
        }
        self.phase = Phase::InProgress;
        self.agreed = 0;
        self.agreed_count = 0;
        // A round where too many servers are stopped fails at once.
        self.decide(now);
    }

    fn maybe_start_round(&mut self, now: Now) {
        if self.phase != Phase::InProgress && now.mono >= self.next_round {
            self.start_round(now);
        }
    }

    fn refresh(&mut self, i: usize) {
        if let Some(r) = self.clients[i].result() {
            self.outcomes[i] = match r {
                Ok(s) => Outcome::Reply(OffsetInterval::around(s.offset, s.error_bound())),
                Err(Failure::Rejected(Reject::KissOfDeath(KissCode::Deny | KissCode::Rstr))) => {
                    self.stopped |= 1 << i;
                    Outcome::Failed
                }
                Err(_) => Outcome::Failed,
            };
        }
    }

    fn decide(&mut self, now: Now) {
        if self.phase != Phase::InProgress {
            return;
        }
        let n = self.servers();
        match select::decide(&self.outcomes[..n], self.min_agree) {
            Decision::Wait => {}
            Decision::Agreed(sel) => {
                self.agreed = sel.agreed;
                self.agreed_count = sel.count;
                self.offset = sel.interval;
                self.trust.on_consensus(now, sel.interval, false);
                self.phase = Phase::Agreed;
                self.next_round = now.mono.saturating_add(self.poll_interval);
            }
            Decision::Failed(e) => {
                self.agreed = 0;
                self.agreed_count = match e {
                    NoConsensus::Disagreement { largest_group, .. } => largest_group,
                    _ => 0,
                };
                self.phase = Phase::Failed(e);
                self.next_round = now.mono.saturating_add(self.retry_interval);
            }
        }
    }

    fn rebuild_clients(&mut self) {
        for c in &mut self.clients {
            *c = NtpClient::new(self.client_config);
        }
    }
}

fn now_of(n: TrusttimeNow) -> Now {
    Now {
        mono: MonoInstant::from_nanos(n.mono_ns),
        wall: UnixTime::from_nanos(n.wall_ns),
    }
}

fn reject_code(r: Reject) -> TrusttimeReject {
    match r {
        Reject::Truncated { .. } => TrusttimeReject::Truncated,
        Reject::Oversized { .. } => TrusttimeReject::Oversized,
        Reject::WrongVersion { .. } => TrusttimeReject::WrongVersion,
        Reject::WrongMode { .. } => TrusttimeReject::WrongMode,
        Reject::KissOfDeath(KissCode::Rate) => TrusttimeReject::KissRate,
        Reject::KissOfDeath(KissCode::Deny | KissCode::Rstr) => TrusttimeReject::KissDeny,
        Reject::KissOfDeath(_) => TrusttimeReject::KissOther,
        Reject::StratumTooHigh { .. } => TrusttimeReject::StratumTooHigh,
        Reject::Unsynchronized => TrusttimeReject::Unsynchronized,
        Reject::ZeroTransmit => TrusttimeReject::ZeroTransmit,
        Reject::NotRequested => TrusttimeReject::NotRequested,
        Reject::Duplicate => TrusttimeReject::Duplicate,
        Reject::RootDistanceTooLarge { .. } => TrusttimeReject::RootDistanceTooLarge,
        Reject::TimestampsReversed => TrusttimeReject::TimestampsReversed,
        Reject::BelowFloor { .. } => TrusttimeReject::BelowFloor,
        _ => TrusttimeReject::Other,
    }
}

fn provenance_code(p: Provenance) -> TrusttimeProvenance {
    match p {
        Provenance::Floor => TrusttimeProvenance::Floor,
        Provenance::Rtc => TrusttimeProvenance::Rtc,
        Provenance::Persisted => TrusttimeProvenance::Persisted,
        Provenance::Manual => TrusttimeProvenance::Manual,
        Provenance::Ntp => TrusttimeProvenance::Ntp,
        Provenance::Authenticated => TrusttimeProvenance::Authenticated,
    }
}

fn provenance_from(code: u8) -> Option<Provenance> {
    Some(match code {
        0 => Provenance::Floor,
        1 => Provenance::Rtc,
        2 => Provenance::Persisted,
        3 => Provenance::Manual,
        4 => Provenance::Ntp,
        5 => Provenance::Authenticated,
        _ => return None,
    })
}

fn state_code(s: TrustState) -> TrusttimeState {
    match s {
        TrustState::Unknown => TrusttimeState::Unknown,
        TrustState::Holdover => TrusttimeState::Holdover,
        TrustState::Synced => TrusttimeState::Synced,
        TrustState::Authenticated => TrusttimeState::Authenticated,
    }
}

/// Writes `v` through `out` when it is non-null and aligned.
///
/// # Safety
/// `out` is NULL or points to a writable `T`.
unsafe fn put<T>(out: *mut T, v: T) -> Result<(), TrusttimeError> {
    if out.is_null() || (out as usize) % align_of::<T>() != 0 {
        return Err(TrusttimeError::BadPointer);
    }
    out.write(v);
    Ok(())
}

/// The bytes behind `(p, len)`; NULL with length 0 is the empty slice.
///
/// # Safety
/// `p` is NULL or points to `len` readable bytes.
unsafe fn bytes<'a>(p: *const u8, len: usize) -> Result<&'a [u8], TrusttimeError> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() || len > isize::MAX as usize {
        return Err(TrusttimeError::BadPointer);
    }
    Ok(core::slice::from_raw_parts(p, len))
}

/// The writable bytes behind `(p, len)`.
///
/// # Safety
/// `p` is NULL or points to `len` writable bytes.
unsafe fn bytes_mut<'a>(p: *mut u8, len: usize) -> Result<&'a mut [u8], TrusttimeError> {
    if p.is_null() || len > isize::MAX as usize {
        return Err(TrusttimeError::BadPointer);
    }
    Ok(core::slice::from_raw_parts_mut(p, len))
}

fn code(r: Result<(), TrusttimeError>) -> TrusttimeError {
    match r {
        Ok(()) => TrusttimeError::Ok,
        Err(e) => e,
    }
}

/// Fills `config` with the defaults: no servers (set `server_count`), `min_agree` 0 (default),
/// 3 tries, the library's build time as floor, 50 ppm, 1000 ms reply timeout, 1000 ms root
/// distance limit, 1024 s poll interval, 64 s retry interval.
///
/// # Safety
/// `config` is NULL or points to a writable `trusttime_config`.
#[no_mangle]
pub unsafe extern "C" fn trusttime_config_default(config: *mut TrusttimeConfig) -> TrusttimeError {
    code(put(
        config,
        TrusttimeConfig {
            server_count: 0,
            min_agree: 0,
            max_tries: 3,
            floor_unix_s: trusttime_core::floor::build_time().as_secs(),
            drift_ppm: 50,
            reply_timeout_ms: 1000,
            max_root_distance_ms: 1000,
            poll_interval_s: 1024,
            retry_interval_s: 64,
        },
    ))
}

/// Initialises `ctx` (`TRUSTTIME_CONTEXT_SIZE` bytes, any content) with `config`. The first
/// round starts at the first `trusttime_poll_transmit`. May be called again to start over.
///
/// Errors: `BAD_POINTER`, `BAD_CONFIG`.
///
/// # Safety
/// `ctx` is NULL or points to a `trusttime_ctx` the caller owns exclusively during the call;
/// `config` is NULL or points to a readable `trusttime_config`.
#[no_mangle]
pub unsafe extern "C" fn trusttime_init(
    ctx: *mut TrusttimeContext,
    config: *const TrusttimeConfig,
) -> TrusttimeError {
    if ctx.is_null()
        || (ctx as usize) % align_of::<Ctx>() != 0
        || config.is_null()
        || (config as usize) % align_of::<TrusttimeConfig>() != 0
    {
        return TrusttimeError::BadPointer;
    }
    let c = config.read();
    let n = usize::from(c.server_count);
    if n == 0
        || n > TRUSTTIME_MAX_SERVERS
        || usize::from(c.min_agree) > n
        || c.max_tries == 0
        || c.reply_timeout_ms == 0
        || c.drift_ppm > 1_000_000
        || c.floor_unix_s < 0
        || c.floor_unix_s > i64::MAX / 1_000_000_000
    {
        return TrusttimeError::BadConfig;
    }
    let floor = if c.floor_unix_s == 0 {
        trusttime_core::floor::build_time()
    } else {
        UnixTime::from_secs(c.floor_unix_s)
    };
    let client_config = ClientConfig {
        floor,
        max_root_distance: SignedDuration::from_millis(i64::from(c.max_root_distance_ms)),
        reply_timeout: SignedDuration::from_millis(i64::from(c.reply_timeout_ms)),
        max_tries: c.max_tries,
        retry_backoff: SignedDuration::from_millis(250),
    };
    let mut trust = TrustConfig::new(floor);
    trust.drift_ppm = c.drift_ppm;
    let min_agree = if c.min_agree == 0 {
        select::default_min_agree(n)
    } else {
        c.min_agree
    };
    // Built field by field in place: a `Ctx` value would first be assembled on the stack
    // (about 1.5 KiB on Cortex-M), which a small task stack cannot spare.
    let p = ctx.cast::<Ctx>();
    // SAFETY: `p` is non-null and aligned and the storage is large enough (const asserts);
    // every field is written before the magic marks the context initialised.
    unsafe {
        addr_of_mut!((*p).magic).write(0);
        addr_of_mut!((*p).n).write(c.server_count);
        addr_of_mut!((*p).min_agree).write(min_agree);
        addr_of_mut!((*p).phase).write(Phase::InProgress);
        addr_of_mut!((*p).stopped).write(0);
        addr_of_mut!((*p).agreed).write(0);
        addr_of_mut!((*p).agreed_count).write(0);
        addr_of_mut!((*p).offset).write(OffsetInterval::around(
            SignedDuration::ZERO,
            SignedDuration::ZERO,
        ));
        addr_of_mut!((*p).next_round).write(MonoInstant::ZERO);
        addr_of_mut!((*p).poll_interval).write(SignedDuration::from_secs(i64::from(
            c.poll_interval_s.max(16),
        )));
        addr_of_mut!((*p).retry_interval).write(SignedDuration::from_secs(i64::from(
            c.retry_interval_s.max(1),
        )));
        addr_of_mut!((*p).client_config).write(client_config);
        addr_of_mut!((*p).trust).write(TrustMachine::new(trust));
        addr_of_mut!((*p).outcomes).write([Outcome::Pending; TRUSTTIME_MAX_SERVERS]);
        let clients = addr_of_mut!((*p).clients).cast::<NtpClient>();
        for i in 0..TRUSTTIME_MAX_SERVERS {
            clients.add(i).write(NtpClient::new(client_config));
        }
        addr_of_mut!((*p).magic).write(MAGIC);
    }
    TrusttimeError::Ok
}

/// If a request is due, writes it to `buf` (at least `TRUSTTIME_REQUEST_SIZE` bytes) and sets
/// `out->len` and `out->server`: send `buf[0..len)` by UDP to that server's port 123. Sets
/// `out->len` to 0 when nothing is due. Call it in a loop until `len` is 0, each time with
/// fresh `rand` (64 random bits: they become the request's cookie, which an off-path attacker
/// must not guess). Starts the next round when it is due.
///
/// Errors: `BAD_POINTER`, `NOT_INITIALISED`, `BUFFER_TOO_SMALL`.
///
/// # Safety
/// `ctx` as for `trusttime_init` and initialised; `buf` points to `cap` writable bytes;
/// `out` to a writable `trusttime_transmit`.
#[no_mangle]
pub unsafe extern "C" fn trusttime_poll_transmit(
    ctx: *mut TrusttimeContext,
    now: TrusttimeNow,
    rand: u64,
    buf: *mut u8,
    cap: usize,
    out: *mut TrusttimeTransmit,
) -> TrusttimeError {
    code((|| {
        let ctx = Ctx::from_ptr(ctx)?;
        put(out, TrusttimeTransmit { len: 0, server: 0 })?;
        let buf = bytes_mut(buf, cap)?;
        if buf.len() < TRUSTTIME_REQUEST_SIZE {
            return Err(TrusttimeError::BufferTooSmall);
        }
        let now = now_of(now);
        ctx.maybe_start_round(now);
        if ctx.phase != Phase::InProgress {
            return Ok(());
        }
        for i in 0..ctx.servers() {
            if ctx.stopped & (1 << i) != 0 {
                continue;
            }
            if let Some(len) = ctx.clients[i].poll_transmit(now, rand, buf) {
                return put(
                    out,
                    TrusttimeTransmit {
                        len,
                        server: i as u8,
                    },
                );
            }
        }
        Ok(())
    })())
}

/// Feeds a datagram received from server `server` (the application matches the source
/// address and port). Returns `OK` when it was a valid reply; `REJECTED` with `*reject` (may
/// be NULL) saying why it was not used. A rejected reply to our request ends that server's
/// part of the round (it failed); a datagram that is not a reply to our request (spoofed,
/// stale, duplicate) is ignored.
///
/// Errors: `BAD_POINTER`, `NOT_INITIALISED`, `BAD_SERVER`, `REJECTED`.
///
/// # Safety
/// `ctx` as for `trusttime_poll_transmit`; `data` points to `len` readable bytes; `reject`
/// is NULL or points to a writable `trusttime_reject`.
#[no_mangle]
pub unsafe extern "C" fn trusttime_handle_datagram(
    ctx: *mut TrusttimeContext,
    now: TrusttimeNow,
    server: u8,
    data: *const u8,
    len: usize,
    reject: *mut TrusttimeReject,
) -> TrusttimeError {
    let r = (|| {
        let ctx = Ctx::from_ptr(ctx)?;
        let data = bytes(data, len)?;
        let i = usize::from(server);
        if i >= ctx.servers() {
            return Err(TrusttimeError::BadServer);
        }
        let now = now_of(now);
        let verdict = ctx.clients[i].handle_datagram(now, data);
        ctx.refresh(i);
        ctx.decide(now);
        Ok(verdict.err().map_or(TrusttimeReject::None, reject_code))
    })();
    match r {
        Err(e) => e,
        Ok(code) => {
            if !reject.is_null() {
                // A misaligned `reject` is reported, not written.
                if put(reject, code).is_err() {
                    return TrusttimeError::BadPointer;
                }
            }
            if code == TrusttimeReject::None {
                TrusttimeError::Ok
            } else {
                TrusttimeError::Rejected
            }
        }
    }
}

/// Sets `*deadline_ns` to the monotonic time at which to call `trusttime_handle_timeout`
/// (and `trusttime_poll_transmit`) at the latest: a reply deadline, a retry, or the next
/// round. A time already past means "now". Wait for a datagram until then.
///
/// Errors: `BAD_POINTER`, `NOT_INITIALISED`.
///
/// # Safety
/// `ctx` as for `trusttime_poll_transmit`; `deadline_ns` points to a writable `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn trusttime_poll_timeout(
    ctx: *mut TrusttimeContext,
    deadline_ns: *mut u64,
) -> TrusttimeError {
    code((|| {
        let ctx = Ctx::from_ptr(ctx)?;
        let mut at = ctx.next_round;
        if ctx.phase == Phase::InProgress {
            at = MonoInstant::from_nanos(u64::MAX);
            for i in 0..ctx.servers() {
                if ctx.stopped & (1 << i) == 0 {
                    if let Some(t) = ctx.clients[i].poll_timeout() {
                        at = at.min(t);
                    }
                }
            }
        }
        put(deadline_ns, at.as_nanos())
    })())
}

/// Tells the library time has passed: lost requests are retried or given up, a round that can
/// no longer change is decided, and the next round is started when due.
///
/// Errors: `BAD_POINTER`, `NOT_INITIALISED`.
///
/// # Safety
/// `ctx` as for `trusttime_poll_transmit`.
#[no_mangle]
pub unsafe extern "C" fn trusttime_handle_timeout(
    ctx: *mut TrusttimeContext,
    now: TrusttimeNow,
) -> TrusttimeError {
    code((|| {
        let ctx = Ctx::from_ptr(ctx)?;
        let now = now_of(now);
        if ctx.phase == Phase::InProgress {
            for i in 0..ctx.servers() {
                if matches!(ctx.outcomes[i], Outcome::Pending) {
                    ctx.clients[i].handle_timeout(now);
                    ctx.refresh(i);
                }
            }
            ctx.decide(now);
        }
        ctx.maybe_start_round(now);
        Ok(())
    })())
}

/// The trusted time at monotonic time `mono_ns`: the interval the true time lies in (moved
/// with the monotonic clock since the last sync and widened by the drift bound; never below
/// the floor), its provenance and the trust state.
///
/// Errors: `BAD_POINTER`, `NOT_INITIALISED`.
///
/// # Safety
/// `ctx` as for `trusttime_poll_transmit`; `out` points to a writable `trusttime_time`.
#[no_mangle]
pub unsafe extern "C" fn trusttime_trusted_time(
    ctx: *mut TrusttimeContext,
    mono_ns: u64,
    out: *mut TrusttimeTime,
) -> TrusttimeError {
    code((|| {
        let ctx = Ctx::from_ptr(ctx)?;
        let mono = MonoInstant::from_nanos(mono_ns);
        let t = ctx.trust.current(mono);
        put(
            out,
            TrusttimeTime {
                earliest_ns: t.interval.earliest.as_nanos(),
                latest_ns: t.interval.latest.as_nanos(),
                provenance: provenance_code(t.provenance),
                state: state_code(ctx.trust.state(mono)),
            },
        )
    })())
}

/// `OK` when the trusted time at `mono_ns` is good enough for `purpose` (a
/// `trusttime_purpose`: TLS within 1 hour, SigV4 within 5 minutes of error), `NOT_TRUSTED`
/// when it is not (then sync; do not connect or sign).
///
/// Errors: `BAD_POINTER`, `NOT_INITIALISED`, `BAD_PURPOSE`, `NOT_TRUSTED`.
///
/// # Safety
/// `ctx` as for `trusttime_poll_transmit`.
#[no_mangle]
pub unsafe extern "C" fn trusttime_ready(
    ctx: *mut TrusttimeContext,
    mono_ns: u64,
    purpose: u32,
) -> TrusttimeError {
    let max_error = match purpose {
        p if p == TrusttimePurpose::Tls as u32 => trusttime_core::Purpose::Tls,
        p if p == TrusttimePurpose::Sigv4 as u32 => trusttime_core::Purpose::SigV4,
        _ => return TrusttimeError::BadPurpose,
    }
    .default_max_error();
    trusttime_ready_within(ctx, mono_ns, max_error.as_nanos())
}

/// `OK` when the trusted time at `mono_ns` has an error (half the interval's width) of at most
/// `max_error_ns`; `NOT_TRUSTED` otherwise.
///
/// Errors: `BAD_POINTER`, `NOT_INITIALISED`, `NOT_TRUSTED`.
///
/// # Safety
/// `ctx` as for `trusttime_poll_transmit`.
#[no_mangle]
pub unsafe extern "C" fn trusttime_ready_within(
    ctx: *mut TrusttimeContext,
    mono_ns: u64,
    max_error_ns: i64,
) -> TrusttimeError {
    code((|| {
        let ctx = Ctx::from_ptr(ctx)?;
        let t = ctx.trust.current(MonoInstant::from_nanos(mono_ns));
        if t.provenance != Provenance::Floor
            && t.is_within(SignedDuration::from_nanos(max_error_ns))
        {
            Ok(())
        } else {
            Err(TrusttimeError::NotTrusted)
        }
    })())
}

/// Where the current or last round stands.
///
/// Errors: `BAD_POINTER`, `NOT_INITIALISED`.
///
/// # Safety
/// `ctx` as for `trusttime_poll_transmit`; `out` points to a writable `trusttime_round`.
#[no_mangle]
pub unsafe extern "C" fn trusttime_round_status(
    ctx: *mut TrusttimeContext,
    out: *mut TrusttimeRound,
) -> TrusttimeError {
    code((|| {
        let ctx = Ctx::from_ptr(ctx)?;
        let n = ctx.servers();
        let replies = ctx.outcomes[..n]
            .iter()
            .filter(|o| matches!(o, Outcome::Reply(_)))
            .count() as u8;
        let needed = ctx.min_agree.max(1);
        let (phase, failure) = match ctx.phase {
            Phase::InProgress => (TrusttimePhase::InProgress, TrusttimeFailure::None),
            Phase::Agreed => (TrusttimePhase::Agreed, TrusttimeFailure::None),
            Phase::Failed(NoConsensus::Disagreement { .. }) => {
                (TrusttimePhase::Failed, TrusttimeFailure::Disagreement)
            }
            Phase::Failed(_) => (TrusttimePhase::Failed, TrusttimeFailure::TooFewReplies),
        };
        put(
            out,
            TrusttimeRound {
                phase,
                failure,
                agreed_mask: ctx.agreed,
                agreed_count: ctx.agreed_count,
                replies,
                needed,
                offset_lo_ns: ctx.offset.lo.as_nanos(),
                offset_hi_ns: ctx.offset.hi.as_nanos(),
                next_round_ns: ctx.next_round.as_nanos(),
            },
        )
    })())
}

/// Server `server`'s part in the current or last round: its offset and error, whether it was
/// in the agreeing group, or why it failed.
///
/// Errors: `BAD_POINTER`, `NOT_INITIALISED`, `BAD_SERVER`.
///
/// # Safety
/// `ctx` as for `trusttime_poll_transmit`; `out` points to a writable `trusttime_server`.
#[no_mangle]
pub unsafe extern "C" fn trusttime_server_info(
    ctx: *mut TrusttimeContext,
    server: u8,
    out: *mut TrusttimeServer,
) -> TrusttimeError {
    code((|| {
        let ctx = Ctx::from_ptr(ctx)?;
        let i = usize::from(server);
        if i >= ctx.servers() {
            return Err(TrusttimeError::BadServer);
        }
        let c = &ctx.clients[i];
        let mut s = TrusttimeServer {
            status: TrusttimeServerStatus::Pending,
            reject: TrusttimeReject::None,
            agreed: ctx.phase == Phase::Agreed && ctx.agreed & (1 << i) != 0,
            stratum: 0,
            tries: c.tries(),
            offset_ns: 0,
            error_ns: 0,
        };
        if ctx.stopped & (1 << i) != 0 {
            s.status = TrusttimeServerStatus::Failed;
            s.reject = TrusttimeReject::KissDeny;
        }
        match c.result() {
            Some(Ok(sample)) => {
                s.status = TrusttimeServerStatus::Replied;
                s.stratum = sample.stratum;
                s.offset_ns = sample.offset.as_nanos();
                s.error_ns = sample.error_bound().as_nanos();
            }
            Some(Err(Failure::Rejected(r))) => {
                s.status = TrusttimeServerStatus::Failed;
                s.reject = reject_code(r);
            }
            Some(Err(Failure::NoReply { .. })) => {
                s.status = TrusttimeServerStatus::Failed;
                s.reject = TrusttimeReject::NoReply;
            }
            // The round ended without this server's answer.
            None if ctx.phase != Phase::InProgress => {
                s.status = TrusttimeServerStatus::Failed;
                s.reject = TrusttimeReject::NoReply;
            }
            None => {}
        }
        put(out, s)
    })())
}

/// CRC-32 (IEEE 802.3, reflected), bitwise: small code, and the saved state is 36 bytes.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

fn le_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    i64::from_le_bytes(a)
}

/// Writes the trust state at `mono_ns` to `buf` (at least `TRUSTTIME_SAVED_SIZE` bytes) and
/// sets `*len` to the bytes written: the trusted interval, its provenance and the frequency
/// estimate, with a magic, a layout version and a CRC-32. Save after each sync and before a
/// planned reset; write it to flash atomically (two slots, or write then verify).
///
/// Errors: `BAD_POINTER`, `NOT_INITIALISED`, `BUFFER_TOO_SMALL`.
///
/// # Safety
/// `ctx` as for `trusttime_poll_transmit`; `buf` points to `cap` writable bytes; `len` to a
/// writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn trusttime_save(
    ctx: *mut TrusttimeContext,
    mono_ns: u64,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> TrusttimeError {
    code((|| {
        let ctx = Ctx::from_ptr(ctx)?;
        put(len, 0)?;
        let buf = bytes_mut(buf, cap)?;
        let Some(out) = buf.get_mut(..TRUSTTIME_SAVED_SIZE) else {
            return Err(TrusttimeError::BufferTooSmall);
        };
        let t = ctx.trust.current(MonoInstant::from_nanos(mono_ns));
        out.fill(0);
        out[0..4].copy_from_slice(&SAVED_MAGIC);
        out[4] = TRUSTTIME_SAVED_VERSION;
        out[5] = provenance_code(t.provenance) as u8;
        out[8..16].copy_from_slice(&t.interval.earliest.as_nanos().to_le_bytes());
        out[16..24].copy_from_slice(&t.interval.latest.as_nanos().to_le_bytes());
        let freq = ctx.trust.freq_ppb().unwrap_or(i64::MIN);
        out[24..32].copy_from_slice(&freq.to_le_bytes());
        let crc = crc32(&out[..36]);
        out[36..40].copy_from_slice(&crc.to_le_bytes());
        put(len, TRUSTTIME_SAVED_SIZE)
    })())
}

/// Restores state written by `trusttime_save` (call after `trusttime_init`, before the
/// first round). The saved earliest time becomes the floor: time never goes back across a
/// reboot, and a server claiming an earlier time is a falseticker. When the application knows
/// how long ago the state was saved (a clock that kept running through the reset or sleep),
/// pass it as `elapsed_ns` and the saved interval is carried forward, widened by the drift
/// bound, as a holdover (provenance `PERSISTED`); pass -1 when it does not know. Anything wrong
/// with the buffer is an error and leaves the context unchanged. The buffer is trusted storage:
/// the checksum detects corruption, not forgery.
///
/// Errors: `BAD_POINTER`, `NOT_INITIALISED`, `SAVED_TRUNCATED`, `SAVED_BAD_MAGIC`,
/// `SAVED_BAD_VERSION`, `SAVED_BAD_CHECKSUM`, `SAVED_INVALID`.
///
/// # Safety
/// `ctx` as for `trusttime_poll_transmit`; `data` points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn trusttime_restore(
    ctx: *mut TrusttimeContext,
    now: TrusttimeNow,
    data: *const u8,
    len: usize,
    elapsed_ns: i64,
) -> TrusttimeError {
    code((|| {
        let ctx = Ctx::from_ptr(ctx)?;
        let data = bytes(data, len)?;
        let Some(d) = data.get(..TRUSTTIME_SAVED_SIZE) else {
            return Err(TrusttimeError::SavedTruncated);
        };
        if d[0..4] != SAVED_MAGIC {
            return Err(TrusttimeError::SavedBadMagic);
        }
        if d[4] != TRUSTTIME_SAVED_VERSION {
            return Err(TrusttimeError::SavedBadVersion);
        }
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&d[36..40]);
        if crc32(&d[..36]) != u32::from_le_bytes(crc) {
            return Err(TrusttimeError::SavedBadChecksum);
        }
        let provenance = provenance_from(d[5]).ok_or(TrusttimeError::SavedInvalid)?;
        let earliest = UnixTime::from_nanos(le_i64(d, 8));
        let latest = UnixTime::from_nanos(le_i64(d, 16));
        let freq = le_i64(d, 24);
        let interval = TimeInterval::new(earliest, latest).ok_or(TrusttimeError::SavedInvalid)?;
        let now = now_of(now);
        ctx.trust.raise_floor(earliest);
        ctx.client_config.floor = ctx.client_config.floor.max(earliest);
        ctx.rebuild_clients();
        if ctx.phase == Phase::InProgress {
            ctx.start_round(now);
        }
        if freq != i64::MIN {
            ctx.trust.set_freq_ppb(freq);
        }
        if elapsed_ns >= 0 && provenance != Provenance::Floor && latest < UnixTime::MAX {
            let elapsed = SignedDuration::from_nanos(elapsed_ns);
            let carried = interval
                .shift(elapsed)
                .widen(elapsed.mul_ppm(ctx.trust.config().drift_ppm));
            let _ = ctx
                .trust
                .on_holdover(now.mono, carried, Provenance::Persisted);
        }
        Ok(())
    })())
}

/// Bytes a `trusttime_ctx` needs in this build of the library (at most
/// `TRUSTTIME_CONTEXT_SIZE`): lets an application check at start-up that it was compiled with
/// a matching header.
#[no_mangle]
pub extern "C" fn trusttime_context_size() -> usize {
    size_of::<Ctx>()
}

/// A short English description of `error` (a `trusttime_error`), a static NUL-terminated
/// string; never NULL.
#[no_mangle]
pub extern "C" fn trusttime_error_str(error: u32) -> *const c_char {
    let s: &core::ffi::CStr = match error {
        0 => c"ok",
        1 => c"NULL or misaligned pointer",
        2 => c"context not initialised (call trusttime_init)",
        3 => c"invalid configuration",
        4 => c"server index out of range",
        5 => c"buffer too small",
        6 => c"datagram rejected",
        7 => c"clock not trusted",
        8 => c"unknown purpose",
        9 => c"saved state truncated",
        10 => c"no saved state (bad magic)",
        11 => c"saved state has an unknown version",
        12 => c"saved state corrupt (bad checksum)",
        13 => c"saved state invalid",
        _ => c"unknown error",
    };
    s.as_ptr()
}

/// A short English description of `reject` (a `trusttime_reject`), a static NUL-terminated
/// string; never NULL.
#[no_mangle]
pub extern "C" fn trusttime_reject_str(reject: u32) -> *const c_char {
    let s: &core::ffi::CStr = match reject {
        0 => c"not rejected",
        1 => c"truncated reply",
        2 => c"oversized reply",
        3 => c"wrong NTP version",
        4 => c"wrong mode (not a server reply)",
        5 => c"Kiss-o'-Death RATE",
        6 => c"Kiss-o'-Death DENY/RSTR: not asked again",
        7 => c"Kiss-o'-Death",
        8 => c"stratum too high (server not synchronised)",
        9 => c"server not synchronised (leap indicator 3)",
        10 => c"zero transmit timestamp",
        11 => c"not a reply to our request",
        12 => c"duplicate reply",
        13 => c"root distance too large",
        14 => c"server timestamps reversed",
        15 => c"claims a time below the floor: a falseticker",
        16 => c"no reply",
        _ => c"other reason",
    };
    s.as_ptr()
}

#[cfg(feature = "panic-handler")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    extern "C" {
        fn trusttime_panic_hook();
    }
    // SAFETY: a plain C function supplied by the application.
    unsafe { trusttime_panic_hook() };
    #[allow(clippy::empty_loop)]
    loop {}
}

#[cfg(test)]
mod tests;
