//! The C API driven from Rust, as a C caller would, with server replies built here.

use super::*;
use trusttime_core::ntp::{LeapIndicator, Mode, NtpPacket, NtpShort};
use trusttime_core::time::NtpTimestamp;

const FLOOR: i64 = 1_790_000_000;
const SEC: i64 = 1_000_000_000;

fn ctx() -> std::boxed::Box<TrusttimeContext> {
    std::boxed::Box::new(TrusttimeContext {
        opaque: [0xA5A5_A5A5_A5A5_A5A5; TRUSTTIME_CONTEXT_WORDS],
    })
}

fn config(n: u8) -> TrusttimeConfig {
    let mut c = core::mem::MaybeUninit::<TrusttimeConfig>::uninit();
    assert_eq!(
        unsafe { trusttime_config_default(c.as_mut_ptr()) },
        TrusttimeError::Ok
    );
    let mut c = unsafe { c.assume_init() };
    c.server_count = n;
    c.floor_unix_s = FLOOR;
    c
}

fn at(mono_s: i64, wall: i64) -> TrusttimeNow {
    TrusttimeNow {
        mono_ns: (mono_s * SEC) as u64,
        wall_ns: wall,
    }
}

/// A server reply to `request` claiming `server_time` (ns since 1970).
fn reply(request: &[u8], server_time: i64) -> [u8; 48] {
    let (req, _) = NtpPacket::parse(request).unwrap();
    let t = NtpTimestamp::from_unix(UnixTime::from_nanos(server_time));
    let p = NtpPacket {
        leap: LeapIndicator::NoWarning,
        version: 4,
        mode: Mode::Server,
        stratum: 1,
        poll: 6,
        precision: -20,
        root_delay: NtpShort(0),
        root_dispersion: NtpShort(0),
        reference_id: *b"GPS\0",
        reference_ts: t,
        origin_ts: req.transmit_ts,
        receive_ts: t,
        transmit_ts: t,
    };
    let mut out = [0u8; 48];
    assert_eq!(p.emit(&mut out).unwrap(), 48);
    out
}

/// Collects every due request: (server, bytes).
fn transmit_all(c: &mut TrusttimeContext, now: TrusttimeNow) -> std::vec::Vec<(u8, [u8; 48])> {
    let mut v = std::vec::Vec::new();
    let mut rand = 0x1234_5678_9abc_def0u64 ^ now.mono_ns;
    loop {
        let mut buf = [0u8; 48];
        let mut out = TrusttimeTransmit {
            len: 99,
            server: 99,
        };
        rand = rand.wrapping_mul(6364136223846793005).wrapping_add(1);
        let e = unsafe { trusttime_poll_transmit(c, now, rand, buf.as_mut_ptr(), 48, &mut out) };
        assert_eq!(e, TrusttimeError::Ok);
        if out.len == 0 {
            return v;
        }
        assert_eq!(out.len, 48);
        v.push((out.server, buf));
    }
}

fn feed(
    c: &mut TrusttimeContext,
    now: TrusttimeNow,
    server: u8,
    d: &[u8],
) -> (TrusttimeError, TrusttimeReject) {
    let mut r = TrusttimeReject::Other;
    let e = unsafe { trusttime_handle_datagram(c, now, server, d.as_ptr(), d.len(), &mut r) };
    (e, r)
}

fn round(c: &mut TrusttimeContext) -> TrusttimeRound {
    let mut r = core::mem::MaybeUninit::uninit();
    assert_eq!(
        unsafe { trusttime_round_status(c, r.as_mut_ptr()) },
        TrusttimeError::Ok
    );
    unsafe { r.assume_init() }
}

fn time(c: &mut TrusttimeContext, mono_s: i64) -> TrusttimeTime {
    let mut t = core::mem::MaybeUninit::uninit();
    assert_eq!(
        unsafe { trusttime_trusted_time(c, (mono_s * SEC) as u64, t.as_mut_ptr()) },
        TrusttimeError::Ok
    );
    unsafe { t.assume_init() }
}

fn server(c: &mut TrusttimeContext, i: u8) -> TrusttimeServer {
    let mut s = core::mem::MaybeUninit::uninit();
    assert_eq!(
        unsafe { trusttime_server_info(c, i, s.as_mut_ptr()) },
        TrusttimeError::Ok
    );
    unsafe { s.assume_init() }
}

/// The device's wall clock reads 2000-01-01; the truth is FLOOR + 1000 s.
const DEVICE_WALL: i64 = 946_684_800 * SEC;
const TRUTH: i64 = (FLOOR + 1000) * SEC;

#[test]
fn three_servers_one_liar_excluded_and_interval_trusted() {
    let mut c = ctx();
    assert_eq!(
        unsafe { trusttime_init(&mut *c, &config(3)) },
        TrusttimeError::Ok
    );
    assert!(trusttime_context_size() <= TRUSTTIME_CONTEXT_SIZE);
    let t0 = at(10, DEVICE_WALL);
    // Before any sync: the floor only, unbounded above, not ready for anything.
    let t = time(&mut c, 10);
    assert_eq!(t.provenance, TrusttimeProvenance::Floor);
    assert_eq!(t.state, TrusttimeState::Unknown);
    assert_eq!(t.earliest_ns, FLOOR * SEC);
    assert_eq!(t.latest_ns, i64::MAX);
    assert_eq!(
        unsafe { trusttime_ready(&mut *c, t0.mono_ns, TrusttimePurpose::Tls as u32) },
        TrusttimeError::NotTrusted
    );
    let reqs = transmit_all(&mut c, t0);
    assert_eq!(
        reqs.iter().map(|r| r.0).collect::<std::vec::Vec<_>>(),
        [0, 1, 2]
    );
    // Nothing more is due until a deadline passes.
    assert!(transmit_all(&mut c, t0).is_empty());
    let mut deadline = 0;
    assert_eq!(
        unsafe { trusttime_poll_timeout(&mut *c, &mut deadline) },
        TrusttimeError::Ok
    );
    assert_eq!(deadline, 11 * SEC as u64);
    let rx = TrusttimeNow {
        mono_ns: 10_002_000_000,
        wall_ns: DEVICE_WALL + 2_000_000,
    }; // 2 ms round trip
    let liar = reply(&reqs[1].1, TRUTH + 3600 * SEC);
    assert_eq!(
        feed(&mut c, rx, 1, &liar),
        (TrusttimeError::Ok, TrusttimeReject::None)
    );
    assert_eq!(round(&mut c).phase, TrusttimePhase::InProgress);
    assert_eq!(
        feed(&mut c, rx, 0, &reply(&reqs[0].1, TRUTH)).0,
        TrusttimeError::Ok
    );
    assert_eq!(
        round(&mut c).phase,
        TrusttimePhase::InProgress,
        "1 vs 1, one pending: wait"
    );
    assert_eq!(
        feed(&mut c, rx, 2, &reply(&reqs[2].1, TRUTH + 1_000_000)).0,
        TrusttimeError::Ok
    );
    let r = round(&mut c);
    assert_eq!(r.phase, TrusttimePhase::Agreed);
    assert_eq!(r.agreed_mask, 0b101);
    assert_eq!(r.agreed_count, 2);
    assert_eq!(r.replies, 3);
    assert!(!server(&mut c, 1).agreed);
    assert!(server(&mut c, 0).agreed && server(&mut c, 2).agreed);
    assert_eq!(server(&mut c, 1).status, TrusttimeServerStatus::Replied);
    // The trusted interval holds the truth (at receipt: mono 10 s) and excludes the liar.
    let t = time(&mut c, 10);
    assert_eq!(t.provenance, TrusttimeProvenance::Ntp);
    assert_eq!(t.state, TrusttimeState::Synced);
    let truth_at_rx = TRUTH + 1_000_000; // the servers' clocks read T at the middle of the trip
    assert!(
        t.earliest_ns <= truth_at_rx && truth_at_rx <= t.latest_ns,
        "{t:?}"
    );
    assert!(t.latest_ns - t.earliest_ns < 10_000_000);
    for p in [TrusttimePurpose::Tls, TrusttimePurpose::Sigv4] {
        assert_eq!(
            unsafe { trusttime_ready(&mut *c, t0.mono_ns, p as u32) },
            TrusttimeError::Ok
        );
    }
    assert_eq!(
        unsafe { trusttime_ready(&mut *c, 0, 7) },
        TrusttimeError::BadPurpose
    );
    // The next round is due after the poll interval, not before.
    assert_eq!(r.next_round_ns, rx.mono_ns + 1024 * SEC as u64);
    assert!(transmit_all(&mut c, at(500, DEVICE_WALL)).is_empty());
    assert!(transmit_all(&mut c, at(1034, DEVICE_WALL)).is_empty());
    assert_eq!(transmit_all(&mut c, at(1035, DEVICE_WALL)).len(), 3);
    assert_eq!(round(&mut c).phase, TrusttimePhase::InProgress);
}

#[test]
fn sigv4_readiness_lapses_before_tls_readiness() {
    let mut c = ctx();
    let mut cfg = config(1);
    cfg.drift_ppm = 100;
    assert_eq!(unsafe { trusttime_init(&mut *c, &cfg) }, TrusttimeError::Ok);
    let reqs = transmit_all(&mut c, at(0, DEVICE_WALL));
    assert_eq!(
        feed(&mut c, at(0, DEVICE_WALL), 0, &reply(&reqs[0].1, TRUTH)).0,
        TrusttimeError::Ok
    );
    let ready = |c: &mut TrusttimeContext, s: i64, p: TrusttimePurpose| unsafe {
        trusttime_ready(c, (s * SEC) as u64, p as u32)
    };
    // 100 ppm: 300 s of error after 3e6 s (34.7 days), 3600 s after 3.6e7 s.
    assert_eq!(
        ready(&mut c, 2_900_000, TrusttimePurpose::Sigv4),
        TrusttimeError::Ok
    );
    assert_eq!(
        ready(&mut c, 3_100_000, TrusttimePurpose::Sigv4),
        TrusttimeError::NotTrusted
    );
    assert_eq!(
        ready(&mut c, 3_100_000, TrusttimePurpose::Tls),
        TrusttimeError::Ok
    );
    assert_eq!(
        ready(&mut c, 37_000_000, TrusttimePurpose::Tls),
        TrusttimeError::NotTrusted
    );
    assert_eq!(time(&mut c, 3_100_000).state, TrusttimeState::Holdover);
}

#[test]
fn silent_servers_are_retried_then_the_round_fails() {
    let mut c = ctx();
    assert_eq!(
        unsafe { trusttime_init(&mut *c, &config(3)) },
        TrusttimeError::Ok
    );
    let mut mono = 0i64;
    let mut sent = 0;
    for _ in 0..100 {
        let now = at(0, DEVICE_WALL);
        let now = TrusttimeNow {
            mono_ns: mono as u64,
            ..now
        };
        sent += transmit_all(&mut c, now).len();
        assert_eq!(
            unsafe { trusttime_handle_timeout(&mut *c, now) },
            TrusttimeError::Ok
        );
        if round(&mut c).phase != TrusttimePhase::InProgress {
            break;
        }
        let mut d = 0;
        assert_eq!(
            unsafe { trusttime_poll_timeout(&mut *c, &mut d) },
            TrusttimeError::Ok
        );
        assert!(d as i64 >= mono, "deadlines move forward");
        mono = d as i64;
    }
    let r = round(&mut c);
    assert_eq!(r.phase, TrusttimePhase::Failed);
    assert_eq!(r.failure, TrusttimeFailure::TooFewReplies);
    // The round fails as soon as two servers are lost: the third alone cannot make a consensus.
    assert!(
        (7..=9).contains(&sent),
        "three tries per server, the round ended early: {sent}"
    );
    for i in 0..3 {
        let s = server(&mut c, i);
        assert_eq!(
            (s.status, s.reject),
            (TrusttimeServerStatus::Failed, TrusttimeReject::NoReply)
        );
        assert!(s.tries >= 2);
    }
    assert_eq!(
        time(&mut c, mono / SEC).provenance,
        TrusttimeProvenance::Floor
    );
    // The next round comes after the retry interval.
    let mut d = 0;
    assert_eq!(
        unsafe { trusttime_poll_timeout(&mut *c, &mut d) },
        TrusttimeError::Ok
    );
    assert_eq!(d, (mono + 64 * SEC) as u64);
}

#[test]
fn below_floor_server_is_a_falseticker_and_spoofs_are_ignored() {
    let mut c = ctx();
    assert_eq!(
        unsafe { trusttime_init(&mut *c, &config(3)) },
        TrusttimeError::Ok
    );
    let now = at(0, DEVICE_WALL);
    let reqs = transmit_all(&mut c, now);
    // An off-path attacker's reply with a guessed cookie is ignored, and the server still counts.
    let mut forged = reply(&reqs[0].1, TRUTH + 86_400 * SEC);
    forged[24] ^= 0xff;
    assert_eq!(
        feed(&mut c, now, 0, &forged),
        (TrusttimeError::Rejected, TrusttimeReject::NotRequested)
    );
    assert_eq!(server(&mut c, 0).status, TrusttimeServerStatus::Pending);
    // Truncated garbage, a wrong index, a NULL datagram.
    assert_eq!(
        feed(&mut c, now, 0, &[1, 2, 3]),
        (TrusttimeError::Rejected, TrusttimeReject::Truncated)
    );
    assert_eq!(
        feed(&mut c, now, 3, &reqs[0].1).0,
        TrusttimeError::BadServer
    );
    assert_eq!(
        unsafe {
            trusttime_handle_datagram(
                &mut *c,
                now,
                0,
                core::ptr::null(),
                48,
                core::ptr::null_mut(),
            )
        },
        TrusttimeError::BadPointer
    );
    // A server claiming 2001 (below the floor) is a falseticker.
    let old = reply(&reqs[1].1, 978_307_200 * SEC);
    assert_eq!(
        feed(&mut c, now, 1, &old),
        (TrusttimeError::Rejected, TrusttimeReject::BelowFloor)
    );
    assert_eq!(
        feed(&mut c, now, 1, &old),
        (TrusttimeError::Rejected, TrusttimeReject::Duplicate)
    );
    assert_eq!(
        feed(&mut c, now, 0, &reply(&reqs[0].1, TRUTH)).0,
        TrusttimeError::Ok
    );
    assert_eq!(
        feed(&mut c, now, 2, &reply(&reqs[2].1, TRUTH)).0,
        TrusttimeError::Ok
    );
    let r = round(&mut c);
    assert_eq!((r.phase, r.agreed_mask), (TrusttimePhase::Agreed, 0b101));
    assert_eq!(server(&mut c, 1).reject, TrusttimeReject::BelowFloor);
}

#[test]
fn kiss_of_death_deny_stops_a_server() {
    let mut c = ctx();
    assert_eq!(
        unsafe { trusttime_init(&mut *c, &config(2)) },
        TrusttimeError::Ok
    );
    let now = at(0, DEVICE_WALL);
    let reqs = transmit_all(&mut c, now);
    let mut kod = reply(&reqs[0].1, TRUTH);
    kod[1] = 0; // stratum 0
    kod[12..16].copy_from_slice(b"DENY");
    assert_eq!(
        feed(&mut c, now, 0, &kod),
        (TrusttimeError::Rejected, TrusttimeReject::KissDeny)
    );
    assert_eq!(
        feed(&mut c, now, 1, &reply(&reqs[1].1, TRUTH)).0,
        TrusttimeError::Ok
    );
    assert_eq!(round(&mut c).phase, TrusttimePhase::Agreed);
    let next = at(1024, DEVICE_WALL);
    let reqs = transmit_all(&mut c, next);
    assert_eq!(
        reqs.iter().map(|r| r.0).collect::<std::vec::Vec<_>>(),
        [1],
        "server 0 is not asked again"
    );
    assert_eq!(server(&mut c, 0).reject, TrusttimeReject::KissDeny);
}

#[test]
fn bad_pointers_configs_and_uninitialised_contexts_are_errors() {
    let null = core::ptr::null_mut::<TrusttimeContext>();
    assert_eq!(
        unsafe { trusttime_init(null, &config(3)) },
        TrusttimeError::BadPointer
    );
    let mut c = ctx();
    assert_eq!(
        unsafe { trusttime_init(&mut *c, core::ptr::null()) },
        TrusttimeError::BadPointer
    );
    // Garbage in the context: not initialised.
    let mut d = 0;
    assert_eq!(
        unsafe { trusttime_poll_timeout(&mut *c, &mut d) },
        TrusttimeError::NotInitialised
    );
    assert_eq!(
        unsafe { trusttime_handle_timeout(null, at(0, 0)) },
        TrusttimeError::BadPointer
    );
    // Misaligned context.
    let misaligned =
        unsafe { (c.opaque.as_mut_ptr().cast::<u8>()).add(1) }.cast::<TrusttimeContext>();
    assert_eq!(
        unsafe { trusttime_init(misaligned, &config(3)) },
        TrusttimeError::BadPointer
    );
    for bad in [
        config(0),
        config(TRUSTTIME_MAX_SERVERS as u8 + 1),
        TrusttimeConfig {
            min_agree: 4,
            ..config(3)
        },
        TrusttimeConfig {
            max_tries: 0,
            ..config(3)
        },
        TrusttimeConfig {
            reply_timeout_ms: 0,
            ..config(3)
        },
        TrusttimeConfig {
            floor_unix_s: -1,
            ..config(3)
        },
        TrusttimeConfig {
            floor_unix_s: i64::MAX,
            ..config(3)
        },
    ] {
        assert_eq!(
            unsafe { trusttime_init(&mut *c, &bad) },
            TrusttimeError::BadConfig,
            "{bad:?}"
        );
    }
    assert_eq!(
        unsafe { trusttime_init(&mut *c, &config(3)) },
        TrusttimeError::Ok
    );
    let mut buf = [0u8; 47];
    let mut out = TrusttimeTransmit { len: 0, server: 0 };
    assert_eq!(
        unsafe { trusttime_poll_transmit(&mut *c, at(0, 0), 1, buf.as_mut_ptr(), 47, &mut out) },
        TrusttimeError::BufferTooSmall
    );
    assert_eq!(
        unsafe {
            trusttime_poll_transmit(
                &mut *c,
                at(0, 0),
                1,
                buf.as_mut_ptr(),
                47,
                core::ptr::null_mut(),
            )
        },
        TrusttimeError::BadPointer
    );
    assert_eq!(
        unsafe { trusttime_server_info(&mut *c, 3, &mut server(&mut c, 0)) },
        TrusttimeError::BadServer
    );
    let s = unsafe {
        core::ffi::CStr::from_ptr(trusttime_error_str(TrusttimeError::NotTrusted as u32))
    };
    assert_eq!(s.to_str().unwrap(), "clock not trusted");
    assert!(!trusttime_error_str(u32::MAX).is_null());
    assert!(!trusttime_reject_str(u32::MAX).is_null());
}

fn synced(c: &mut TrusttimeContext) {
    assert_eq!(unsafe { trusttime_init(c, &config(1)) }, TrusttimeError::Ok);
    let reqs = transmit_all(c, at(0, DEVICE_WALL));
    assert_eq!(
        feed(c, at(0, DEVICE_WALL), 0, &reply(&reqs[0].1, TRUTH)).0,
        TrusttimeError::Ok
    );
}

fn save(c: &mut TrusttimeContext, mono_s: i64) -> [u8; TRUSTTIME_SAVED_SIZE] {
    let mut buf = [0u8; TRUSTTIME_SAVED_SIZE];
    let mut len = 0;
    assert_eq!(
        unsafe {
            trusttime_save(
                c,
                (mono_s * SEC) as u64,
                buf.as_mut_ptr(),
                buf.len(),
                &mut len,
            )
        },
        TrusttimeError::Ok
    );
    assert_eq!(len, TRUSTTIME_SAVED_SIZE);
    buf
}

fn restore(c: &mut TrusttimeContext, d: &[u8], elapsed_ns: i64) -> TrusttimeError {
    unsafe { trusttime_restore(c, at(0, DEVICE_WALL), d.as_ptr(), d.len(), elapsed_ns) }
}

#[test]
fn saved_state_round_trips_and_raises_the_floor() {
    let mut c = ctx();
    synced(&mut c);
    let saved = save(&mut c, 100);
    let before = time(&mut c, 100);
    // A reboot: fresh context, monotonic clock from zero, 50 s after the save.
    let mut c = ctx();
    assert_eq!(
        unsafe { trusttime_init(&mut *c, &config(1)) },
        TrusttimeError::Ok
    );
    assert_eq!(restore(&mut c, &saved, 50 * SEC), TrusttimeError::Ok);
    let t = time(&mut c, 0);
    assert_eq!(t.provenance, TrusttimeProvenance::Persisted);
    assert_eq!(t.state, TrusttimeState::Holdover);
    assert!(
        t.earliest_ns >= before.earliest_ns + 50 * SEC - 3_000_000,
        "{t:?} {before:?}"
    );
    assert!(t.latest_ns <= before.latest_ns + 50 * SEC + 3_000_000);
    // Without knowing the elapsed time only the floor rises.
    let mut c = ctx();
    assert_eq!(
        unsafe { trusttime_init(&mut *c, &config(1)) },
        TrusttimeError::Ok
    );
    assert_eq!(restore(&mut c, &saved, -1), TrusttimeError::Ok);
    let t = time(&mut c, 0);
    assert_eq!(
        (t.provenance, t.earliest_ns),
        (TrusttimeProvenance::Floor, before.earliest_ns)
    );
    // A server now claiming a time before the saved one is a falseticker.
    let reqs = transmit_all(&mut c, at(0, DEVICE_WALL));
    let r = feed(
        &mut c,
        at(0, DEVICE_WALL),
        0,
        &reply(&reqs[0].1, before.earliest_ns - 3600 * SEC),
    );
    assert_eq!(r, (TrusttimeError::Rejected, TrusttimeReject::BelowFloor));
}

#[test]
fn damaged_saved_state_is_refused_and_changes_nothing() {
    let mut c = ctx();
    synced(&mut c);
    let saved = save(&mut c, 0);
    let mut fresh = ctx();
    assert_eq!(
        unsafe { trusttime_init(&mut *fresh, &config(1)) },
        TrusttimeError::Ok
    );
    let erased = [0xffu8; 64];
    assert_eq!(
        restore(&mut fresh, &erased, 0),
        TrusttimeError::SavedBadMagic
    );
    assert_eq!(
        restore(&mut fresh, &saved[..39], 0),
        TrusttimeError::SavedTruncated
    );
    assert_eq!(restore(&mut fresh, &[], 0), TrusttimeError::SavedTruncated);
    let mut v = saved;
    v[4] = 2;
    assert_eq!(restore(&mut fresh, &v, 0), TrusttimeError::SavedBadVersion);
    // Every single bit flip past the magic and version is caught.
    for bit in 40..(TRUSTTIME_SAVED_SIZE * 8) {
        let mut v = saved;
        v[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            restore(&mut fresh, &v, 0),
            TrusttimeError::SavedBadChecksum,
            "bit {bit}"
        );
    }
    assert_eq!(time(&mut fresh, 0).earliest_ns, FLOOR * SEC, "unchanged");
    // Well-formed but impossible: earliest after latest, unknown provenance.
    let mut v = saved;
    v[8..16].copy_from_slice(&i64::MAX.to_le_bytes());
    v[16..24].copy_from_slice(&0i64.to_le_bytes());
    let crc = crc32(&v[..36]);
    v[36..40].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(restore(&mut fresh, &v, 0), TrusttimeError::SavedInvalid);
    let mut v = saved;
    v[5] = 9;
    let crc = crc32(&v[..36]);
    v[36..40].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(restore(&mut fresh, &v, 0), TrusttimeError::SavedInvalid);
    // A larger buffer (a whole flash page) is fine.
    let mut page = [0xffu8; 256];
    page[..40].copy_from_slice(&saved);
    assert_eq!(restore(&mut fresh, &page, -1), TrusttimeError::Ok);
    let mut small = [0u8; 39];
    let mut len = 7;
    assert_eq!(
        unsafe { trusttime_save(&mut *c, 0, small.as_mut_ptr(), small.len(), &mut len) },
        TrusttimeError::BufferTooSmall
    );
    assert_eq!(len, 0);
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

#[test]
fn random_datagrams_from_any_server_never_break_a_round() {
    let mut x = 0x0123_4567_89AB_CDEFu64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..300 {
        let mut c = ctx();
        assert_eq!(
            unsafe { trusttime_init(&mut *c, &config(3)) },
            TrusttimeError::Ok
        );
        let now = at(0, DEVICE_WALL);
        let reqs = transmit_all(&mut c, now);
        for _ in 0..20 {
            // Mostly mutated replies (the parser's deep paths), some pure noise.
            let i = (next() % 3) as usize;
            let mut d = reply(&reqs[i].1, TRUTH).to_vec();
            let len = (next() % 80) as usize;
            d.resize(len, 0);
            for _ in 0..(next() % 4) {
                if !d.is_empty() {
                    let at = (next() as usize) % d.len();
                    d[at] ^= next() as u8;
                }
            }
            let (e, r) = feed(&mut c, now, (next() % 4) as u8, &d);
            assert!(
                matches!(
                    e,
                    TrusttimeError::Ok | TrusttimeError::Rejected | TrusttimeError::BadServer
                ),
                "{e:?}"
            );
            assert_eq!(
                e == TrusttimeError::Rejected,
                r != TrusttimeReject::None && e != TrusttimeError::BadServer
            );
        }
        // Whatever arrived, the context answers and never trusts a time below the floor.
        let t = time(&mut c, 0);
        assert!(t.earliest_ns >= FLOOR * SEC && t.earliest_ns <= t.latest_ns);
        let r = round(&mut c);
        assert!(r.agreed_mask & !0b111 == 0);
    }
}
