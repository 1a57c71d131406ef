//! Long-running behaviour in virtual time: holdover across months on a shelf, RTC sanity,
//! poll-rate budget over 30 days, backoff under loss, Kiss-o'-Death.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use trusttime_core::ntp::{KissCode, PollPolicy};
use trusttime_core::select::OffsetInterval;
use trusttime_core::trust::{rtc_holdover, RtcReject, TrustConfig, TrustMachine, TrustState};
use trusttime_core::{MonoInstant, Now, Provenance, SignedDuration, UnixTime};
use trusttime_sim::{SimServer, World};

const T0: i64 = 1_795_000_000;
const DAY: i64 = 86_400;

#[test]
fn six_months_on_a_shelf_with_a_50ppm_rtc_stays_within_its_bound() {
    let floor = UnixTime::from_secs(T0 - 30 * DAY);
    // Synced and the RTC written at T0; the device then sits for 6 months, its RTC running
    // fast or slow by up to 50 ppm.
    for actual_ppm in [-50i64, -17, 0, 23, 50] {
        let shelf = SignedDuration::from_secs(182 * DAY);
        let truth = UnixTime::from_secs(T0) + shelf;
        let rtc_read =
            truth + SignedDuration::from_nanos(shelf.as_nanos() / 1_000_000 * actual_ppm);
        let iv = rtc_holdover(rtc_read, floor, Some(UnixTime::from_secs(T0)), 50).unwrap();
        assert!(
            iv.contains(truth),
            "{actual_ppm} ppm: {iv:?} misses {truth}"
        );
        // The bound is honest but not absurd: 50 ppm of 6 months is about 13 minutes.
        assert!(
            iv.radius() < SignedDuration::from_secs(20 * 60),
            "{:?}",
            iv.radius()
        );
        let mut m = TrustMachine::new(TrustConfig::new(floor));
        assert!(m.on_holdover(MonoInstant::ZERO, iv, Provenance::Rtc));
        assert_eq!(m.state(MonoInstant::ZERO), TrustState::Holdover);
        // Good enough for TLS (1 h), not for SigV4 (5 min).
        let t = m.current(MonoInstant::ZERO);
        assert!(t.is_within(trusttime_core::Purpose::Tls.default_max_error()));
        assert!(!t.is_within(trusttime_core::Purpose::SigV4.default_max_error()));
    }
}

#[test]
fn a_dead_rtc_battery_is_ignored() {
    let floor = UnixTime::from_secs(T0);
    for dead in [UnixTime::EPOCH, UnixTime::from_secs(946_684_800)] {
        assert!(matches!(
            rtc_holdover(dead, floor, Some(floor), 50),
            Err(RtcReject::BelowFloor { .. })
        ));
    }
    let mut m = TrustMachine::new(TrustConfig::new(floor));
    let bogus = trusttime_core::TimeInterval::around(
        UnixTime::from_secs(946_684_800),
        SignedDuration::from_secs(1),
    );
    assert!(!m.on_holdover(MonoInstant::ZERO, bogus, Provenance::Rtc));
    assert_eq!(m.state(MonoInstant::ZERO), TrustState::Unknown);
}

#[test]
fn a_lying_source_stays_out_round_after_round() {
    let mut w = World::new(UnixTime::from_secs(T0), UnixTime::from_secs(T0 - 5));
    w.add(SimServer::honest());
    w.add(SimServer::liar(SignedDuration::from_secs(900)));
    w.add(SimServer::honest());
    let mut m = TrustMachine::new(TrustConfig::new(UnixTime::from_secs(T0 - DAY)));
    for round in 0..50u64 {
        w.seed = round * 7919 + 1;
        let out = w.run_exchange(2);
        let sel = out.decision.unwrap();
        assert!(!sel.is_member(1));
        let now = Now {
            mono: MonoInstant::from_nanos(round * 64_000_000_000),
            wall: UnixTime::from_secs(T0 - 5 + 64 * round as i64),
        };
        m.on_consensus(now, sel.interval, false);
        let t = m.current(now.mono);
        assert!(
            t.interval
                .contains(UnixTime::from_secs(T0 + 64 * round as i64))
                || (t.interval.midpoint() - UnixTime::from_secs(T0 + 64 * round as i64)).abs()
                    < SignedDuration::from_millis(2)
        );
    }
    assert_eq!(
        m.state(MonoInstant::from_nanos(49 * 64_000_000_000)),
        TrustState::Synced
    );
}

/// Requests to one server over 30 days with the default policy (64 s .. 1024 s, always
/// answering): well within the NTP Pool's guidance of no more than one request per 64 s
/// (typical clients settle at 1024 s).
#[test]
fn thirty_days_of_polling_stay_within_the_pool_budget() {
    let mut p = PollPolicy::default();
    let (mut t, mut n, mut seed) = (0i64, 0u64, 99u64);
    let horizon = 30 * DAY * 1_000_000_000;
    let mut min_gap = i64::MAX;
    while t < horizon {
        n += 1;
        p.on_success();
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let gap = p.next_interval(seed).unwrap().as_nanos();
        min_gap = min_gap.min(gap);
        t += gap;
    }
    assert!(min_gap >= 64_000_000_000, "never faster than 64 s");
    // Steady state 1024 s: 30 days / 1024 s = 2531; plus the climb from 64 s.
    assert!(n <= 2531 + 40, "{n} requests in 30 days");
    // Jitter adds up to 1/8 of the interval: at least 30 days / (1024 s × 1.125) = 2250.
    assert!(
        n >= 2250,
        "{n}: the interval should settle at 1024 s, not beyond"
    );
}

#[test]
fn polls_back_off_under_loss_and_obey_kiss_of_death() {
    let mut p = PollPolicy::default();
    let mut last = p.next_interval(0).unwrap();
    for _ in 0..4 {
        p.on_failure();
        let next = p.next_interval(0).unwrap();
        assert!(next >= last, "backoff must not shrink the interval");
        last = next;
    }
    assert_eq!(p.poll_exponent(), 10);
    let mut p = PollPolicy::default();
    p.on_kiss(KissCode::Rate);
    assert_eq!(p.poll_exponent(), 7, "RATE doubles the interval");
    for code in [KissCode::Deny, KissCode::Rstr] {
        let mut p = PollPolicy::default();
        p.on_kiss(code);
        assert_eq!(p.next_interval(0), None, "{code} stops the source");
    }
}

#[test]
fn holdover_interval_keeps_the_truth_as_it_widens() {
    // A sync, then 10 days without network: the interval moves with the monotonic clock and
    // widens at 50 ppm; a local oscillator 40 ppm off stays inside.
    let floor = UnixTime::from_secs(T0 - DAY);
    let mut m = TrustMachine::new(TrustConfig::new(floor));
    let off = OffsetInterval::around(
        SignedDuration::from_secs(100),
        SignedDuration::from_millis(1),
    );
    m.on_consensus(
        Now {
            mono: MonoInstant::ZERO,
            wall: UnixTime::from_secs(T0 - 100),
        },
        off,
        false,
    );
    for day in 1..=10i64 {
        // True elapsed time when the local monotonic clock (40 ppm slow) counts `day` days.
        let mono_ns = (day * DAY) as u64 * 1_000_000_000;
        let true_elapsed = SignedDuration::from_nanos((mono_ns as i64 / 1_000_000) * 1_000_040);
        let truth = UnixTime::from_secs(T0) + true_elapsed;
        let t = m.current(MonoInstant::from_nanos(mono_ns));
        assert!(
            t.interval.contains(truth),
            "day {day}: {:?} misses {truth}",
            t.interval
        );
    }
}
