//! Long-running behaviour in virtual time: holdover across months on a shelf, RTC sanity,
//! poll-rate budget over 30 days, backoff under loss, Kiss-o'-Death; and the daemon's
//! lifecycle through the shipped `System` (floor, hand-set time, RTC, restart and reboot).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use trusttime_core::ntp::{KissCode, PollPolicy};
use trusttime_core::select::OffsetInterval;
use trusttime_core::system::{Action, ManualError, Restored, SystemConfig};
use trusttime_core::trust::{rtc_holdover, RtcReject, TrustConfig, TrustMachine, TrustState};
use trusttime_core::{MonoInstant, Now, Provenance, SignedDuration, UnixTime};
use trusttime_sim::{Behaviour, Device, SimServer, World};

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

const YEAR: i64 = 365 * DAY;

fn system_config(allow_force: bool, rtc: bool) -> SystemConfig {
    SystemConfig {
        trust: TrustConfig::new(UnixTime::from_secs(T0 - 30 * DAY)),
        allow_manual_force: allow_force,
        has_rtc: rtc,
        discipline: true,
        step_threshold: SignedDuration::from_millis(128),
    }
}

fn three_honest() -> World {
    let mut w = World::new(UnixTime::from_secs(T0), UnixTime::from_secs(T0));
    for _ in 0..3 {
        w.add(SimServer::honest());
    }
    w
}

fn set_all(w: &mut World, b: Behaviour) {
    for s in &mut w.servers {
        s.behaviour = b;
    }
}

/// The trusted interval contains the truth, within a few ms (what the NTP exchange can see).
fn assert_follows_truth(d: &Device, sys: &trusttime_core::system::System, what: &str) {
    let t = sys.trust().current(d.mono);
    let err = (t.interval.midpoint() - d.truth).abs();
    assert!(
        err < SignedDuration::from_millis(50),
        "{what}: trusted {} but the truth is {} ({:?} off, {})",
        t.interval,
        d.truth,
        err,
        t.provenance
    );
}

#[test]
fn plain_ntp_shifted_ten_years_for_one_poll_then_honest_then_restart_follows_the_honest_servers() {
    let mut w = three_honest();
    let mut d = Device::new(
        system_config(false, false),
        UnixTime::from_secs(T0),
        UnixTime::from_secs(T0),
    );
    let (mut sys, _) = d.start();
    // An on-path attacker shifts every plain NTP reply by +10 years, for one poll.
    set_all(
        &mut w,
        Behaviour::Offset(SignedDuration::from_secs(10 * YEAR)),
    );
    assert!(d.poll(&mut sys, &mut w).decision.is_ok());
    // The first consensus is persisted; unauthenticated, it must not become the floor.
    let (snap, _, _) = d.disk.unwrap();
    assert!(snap.floor < d.truth, "floor {} poisoned", snap.floor);
    // Honest again: the device follows within the run.
    set_all(&mut w, Behaviour::Offset(SignedDuration::ZERO));
    d.advance(SignedDuration::from_secs(64));
    assert!(d.poll(&mut sys, &mut w).decision.is_ok());
    assert_follows_truth(&d, &sys, "honest poll after the attack");
    // The consensus contradicted the shifted one: the clock was stepped back, not slewed at
    // half a second per poll for ten years.
    assert!(
        d.wall_error.abs() < SignedDuration::from_millis(50),
        "{:?}",
        d.wall_error
    );
    // Restart (the state saved at the first sync is the shifted one).
    d.advance(SignedDuration::from_secs(60));
    let (mut sys, restored) = d.start();
    assert!(matches!(restored, Some(Restored::Holdover(_))));
    assert!(sys.floor() < d.truth);
    let out = d.poll(&mut sys, &mut w);
    assert!(out.decision.is_ok(), "honest servers refused: {out:?}");
    assert_follows_truth(&d, &sys, "after restart");
    // The persisted shifted time was a hint, and the network said so.
    assert!(d
        .log
        .iter()
        .any(|a| matches!(a, Action::HintOverridden(o) if o.provenance == Provenance::Persisted)));
    assert!(sys.last_override().is_some());
    // The wall clock was stepped back to the truth by the new run.
    assert!(d.wall_error.abs() < SignedDuration::from_millis(50));
}

#[test]
fn a_hand_set_time_with_a_year_typo_is_a_hint_the_network_overrides_after_restart() {
    let mut w = three_honest();
    set_all(&mut w, Behaviour::Silent);
    let mut d = Device::new(
        system_config(false, false),
        UnixTime::from_secs(T0),
        UnixTime::from_secs(T0 - 20 * DAY),
    );
    let (mut sys, _) = d.start();
    assert!(d.poll(&mut sys, &mut w).decision.is_err());
    // Offline, a person types 2028 for 2027: no network interval, so it is taken as manual.
    let typo = d.truth + SignedDuration::from_secs(YEAR);
    let change = d
        .set_manual(&mut sys, typo, SignedDuration::from_secs(60), false)
        .unwrap();
    assert!(!change.forced);
    assert_eq!(sys.trust().current(d.mono).provenance, Provenance::Manual);
    // Every manual change is persisted, and the wall clock was stepped to it.
    assert!(d.log.contains(&Action::Persist));
    assert!(d.log.iter().any(|a| matches!(a, Action::Step(_))));
    let (snap, _, _) = d.disk.unwrap();
    assert!(snap.floor < d.truth, "a hand-set time raised the floor");
    // Restart; the network is back and honest.
    d.advance(SignedDuration::from_secs(300));
    let (mut sys, _) = d.start();
    set_all(&mut w, Behaviour::Offset(SignedDuration::ZERO));
    assert!(d.poll(&mut sys, &mut w).decision.is_ok());
    assert_follows_truth(&d, &sys, "network after a hand-set typo");
    let o = sys.last_override().unwrap();
    assert_eq!(o.provenance, Provenance::Persisted);
}

#[test]
fn manual_time_is_bounded_by_the_network_and_the_bound_cannot_be_walked_around() {
    let mut w = three_honest();
    let mut d = Device::new(
        system_config(false, false),
        UnixTime::from_secs(T0),
        UnixTime::from_secs(T0),
    );
    let (mut sys, _) = d.start();
    assert!(d.poll(&mut sys, &mut w).decision.is_ok());
    let network = sys.trust().current(d.mono);
    assert!(network.uncertainty() < SignedDuration::from_millis(20));
    // A correct time ± 1 min does not replace a ± few-ms network time.
    let r = d.set_manual(&mut sys, d.truth, SignedDuration::from_secs(60), false);
    assert!(
        matches!(r, Err(ManualError::LooserThanNetwork { .. })),
        "{r:?}"
    );
    assert_eq!(sys.trust().current(d.mono).provenance, Provenance::Ntp);
    // A correct, tighter time is taken (narrowed to the network interval)...
    let ok = d
        .set_manual(&mut sys, d.truth, SignedDuration::ZERO, false)
        .unwrap();
    assert!(network.interval.contains_interval(&ok.new));
    assert_eq!(sys.trust().current(d.mono).provenance, Provenance::Manual);
    // ...and does not open the door: a day off is still refused, an hour later too.
    d.advance(SignedDuration::from_secs(3600));
    let r = d.set_manual(
        &mut sys,
        d.truth + SignedDuration::from_secs(DAY),
        SignedDuration::from_secs(1),
        false,
    );
    assert!(
        matches!(r, Err(ManualError::OutsideNetwork { .. })),
        "{r:?}"
    );
    // Force is refused unless the config allows it.
    let r = d.set_manual(
        &mut sys,
        d.truth + SignedDuration::from_secs(DAY),
        SignedDuration::from_secs(1),
        true,
    );
    assert_eq!(r, Err(ManualError::ForceNotAllowed));
    assert_follows_truth(&d, &sys, "after refused manual times");
}

#[test]
fn manual_time_far_off_with_force_is_taken_as_forced_and_the_network_corrects_it() {
    let mut w = three_honest();
    let mut d = Device::new(
        system_config(true, false),
        UnixTime::from_secs(T0),
        UnixTime::from_secs(T0),
    );
    let (mut sys, _) = d.start();
    assert!(d.poll(&mut sys, &mut w).decision.is_ok());
    let far = d.truth + SignedDuration::from_secs(2 * DAY);
    let c = d
        .set_manual(&mut sys, far, SignedDuration::from_secs(1), true)
        .unwrap();
    assert!(c.forced);
    // The step moved the wall clock by the manual offset.
    assert!(
        (d.wall_error - SignedDuration::from_secs(2 * DAY)).abs() < SignedDuration::from_secs(1)
    );
    // Below the floor stays refused even with force.
    let r = d.set_manual(
        &mut sys,
        UnixTime::from_secs(946_684_800),
        SignedDuration::ZERO,
        true,
    );
    assert!(matches!(r, Err(ManualError::BelowFloor { .. })));
    d.advance(SignedDuration::from_secs(64));
    assert!(d.poll(&mut sys, &mut w).decision.is_ok());
    assert_follows_truth(&d, &sys, "network after a forced manual time");
}

#[test]
fn boot_in_2000_with_a_dead_rtc_writes_the_true_time_and_a_reboot_holds_over_from_it() {
    let mut w = three_honest();
    let y2000 = UnixTime::from_secs(946_684_800);
    let mut d = Device::new(system_config(false, true), UnixTime::from_secs(T0), y2000);
    d.rtc_error = Some(y2000 - d.truth);
    let (mut sys, _) = d.start();
    assert!(d.poll(&mut sys, &mut w).decision.is_ok());
    // Stepped from 2000 to the truth; the RTC holds the true time (not 2000 + 2 × step).
    assert!(d.wall_error.abs() < SignedDuration::from_millis(50));
    let written = d
        .log
        .iter()
        .find_map(|a| match a {
            Action::WriteRtc { time } => Some(*time),
            _ => None,
        })
        .expect("the RTC was written");
    assert!((written - d.truth).abs() < SignedDuration::from_millis(50));
    assert!(d.rtc_error.unwrap().abs() < SignedDuration::from_millis(50));
    // When it was written is persisted (written before the first save).
    let (snap, _, _) = d.disk.unwrap();
    assert_eq!(snap.rtc_set, Some(written));
    // Power off for a week, the network is down at the next boot.
    d.advance(SignedDuration::from_secs(7 * DAY));
    d.reboot(y2000);
    set_all(&mut w, Behaviour::Silent);
    let (sys, restored) = d.start();
    assert!(
        matches!(restored, Some(Restored::Holdover(_))),
        "{restored:?}"
    );
    let t = sys.trust().current(d.mono);
    assert!(
        t.interval.contains(d.truth),
        "{} misses {}",
        t.interval,
        d.truth
    );
    assert_eq!(sys.trust().state(d.mono), TrustState::Holdover);
    // 50 ppm of a week is 30 s: good for TLS.
    assert!(t.uncertainty() < SignedDuration::from_secs(120));
}

#[test]
fn an_rtc_set_wrong_by_someone_else_is_not_trusted_and_plain_ntp_time_stays_a_hint() {
    let mut w = three_honest();
    let y2000 = UnixTime::from_secs(946_684_800);
    let mut d = Device::new(system_config(false, true), UnixTime::from_secs(T0), y2000);
    d.rtc_error = Some(y2000 - d.truth);
    let (mut sys, _) = d.start();
    assert!(d.poll(&mut sys, &mut w).decision.is_ok());
    d.stop(&mut sys);
    // Someone sets the RTC a day back (before trusttime last set it), then reboots.
    d.advance(SignedDuration::from_secs(DAY));
    d.rtc_error = Some(SignedDuration::from_secs(-2 * DAY));
    d.reboot(y2000);
    set_all(&mut w, Behaviour::Silent);
    let (sys, restored) = d.start();
    // Elapsed time unknown: the unauthenticated persisted time is only a hint, unused.
    assert!(
        matches!(restored, Some(Restored::HintUnused(_))),
        "{restored:?}"
    );
    assert_eq!(sys.trust().state(d.mono), TrustState::Unknown);
    assert!(sys.floor() < d.truth - SignedDuration::from_secs(3 * DAY));
}

#[test]
fn a_restart_within_one_boot_holds_over_by_the_monotonic_clock() {
    let mut w = three_honest();
    let mut d = Device::new(
        system_config(false, false),
        UnixTime::from_secs(T0),
        UnixTime::from_secs(T0),
    );
    let (mut sys, _) = d.start();
    assert!(d.poll(&mut sys, &mut w).decision.is_ok());
    d.stop(&mut sys);
    // While the daemon is down, someone moves the wall clock by a year.
    d.advance(SignedDuration::from_secs(3600));
    d.wall_error = SignedDuration::from_secs(YEAR);
    let (sys, restored) = d.start();
    assert!(
        matches!(restored, Some(Restored::Holdover(_))),
        "{restored:?}"
    );
    let t = sys.trust().current(d.mono);
    assert!(
        t.interval.contains(d.truth),
        "{} misses {}",
        t.interval,
        d.truth
    );
    assert!(t.uncertainty() < SignedDuration::from_secs(1));
}

#[test]
fn state_is_saved_on_a_clean_stop_and_otherwise_at_most_every_ten_minutes() {
    let mut w = three_honest();
    let mut d = Device::new(
        system_config(false, false),
        UnixTime::from_secs(T0),
        UnixTime::from_secs(T0),
    );
    let (mut sys, _) = d.start();
    assert!(d.poll(&mut sys, &mut w).decision.is_ok());
    let first = d.disk.unwrap().0.saved_wall;
    for _ in 0..4 {
        d.advance(SignedDuration::from_secs(64));
        assert!(d.poll(&mut sys, &mut w).decision.is_ok());
    }
    assert_eq!(
        d.disk.unwrap().0.saved_wall,
        first,
        "saved again within 10 min"
    );
    d.stop(&mut sys);
    assert!(d.disk.unwrap().0.saved_wall > first);
}

#[test]
fn authenticated_time_raises_the_floor_and_reset_floor_recovers_a_wrong_one() {
    let mut w = three_honest();
    let mut d = Device::new(
        system_config(false, false),
        UnixTime::from_secs(T0),
        UnixTime::from_secs(T0),
    );
    let (mut sys, _) = d.start();
    // A wrong authenticated consensus (e.g. a compromised NTS server) 2 years ahead.
    let off = OffsetInterval::around(
        SignedDuration::from_secs(2 * YEAR),
        SignedDuration::from_millis(5),
    );
    let _ = sys.on_consensus(d.now(), off, true);
    d.carry_out(&mut sys);
    let (snap, _, _) = d.disk.unwrap();
    assert!(snap.floor > d.truth + SignedDuration::from_secs(YEAR));
    d.advance(SignedDuration::from_secs(60));
    let (mut sys, _) = d.start();
    // Honest plain NTP is below that floor: refused.
    assert!(d.poll(&mut sys, &mut w).decision.is_err());
    // The operator's recovery: reset the floor (root only, logged by the daemon).
    sys.reset_floor();
    d.carry_out(&mut sys);
    assert!(d.disk.unwrap().0.floor < d.truth);
    assert!(d.poll(&mut sys, &mut w).decision.is_ok());
    assert_follows_truth(&d, &sys, "after reset-floor");
}

/// A delay spike (a queue on the path for one poll, 250 ms each way with 200 ms of
/// asymmetry): the per-source clock filter keeps the recent tight sample, so the source's
/// interval stays narrow and still holds the truth.
#[test]
fn a_delay_spike_is_filtered_and_the_interval_stays_honest() {
    use trusttime_core::ntp::filter::{ClockFilter, FilterSample};
    let mut w = World::new(UnixTime::from_secs(T0), UnixTime::from_secs(T0 - 3));
    w.add(SimServer::honest());
    let mut f = ClockFilter::new();
    let max_age = SignedDuration::from_secs(3600);
    let mut spike_radius = SignedDuration::ZERO;
    for poll in 0..12u64 {
        let spike = poll == 6;
        w.servers[0].one_way = SignedDuration::from_millis(if spike { 250 } else { 5 });
        w.servers[0].asymmetry = SignedDuration::from_millis(if spike { 200 } else { 0 });
        w.seed = poll + 1;
        let out = w.run_exchange(1);
        let sel = out.decision.unwrap();
        let at = MonoInstant::from_nanos(poll * 64_000_000_000);
        f.add(FilterSample {
            offset: sel.interval,
            delay: out.results[0].unwrap().unwrap().delay,
            at,
        });
        if spike {
            spike_radius = sel.interval.radius();
        }
        let best = f.best(at, 50, max_age).unwrap();
        let iv = best.aged(at, 50);
        assert!(
            iv.lo <= out.true_offset && out.true_offset <= iv.hi,
            "poll {poll}: {iv:?} misses {:?}",
            out.true_offset
        );
        assert!(
            iv.radius() < SignedDuration::from_millis(20),
            "poll {poll}: the spike widened the interval to {:?}",
            iv.radius()
        );
    }
    assert!(
        spike_radius > SignedDuration::from_millis(200),
        "{spike_radius:?}"
    );
}

/// Random lifecycles (honest polls, plain NTP shifted by up to years, hand-set times with and
/// without force, restarts, reboots with good, wrong or no RTC, time passing) through the
/// shipped `System`, checked against the rules after every step: without an authenticated
/// lie the floor never passes the truth, an honest consensus is always followed, and a
/// hand-set time is taken outside the network interval only when forced and allowed.
#[test]
fn random_lifecycles_keep_the_rules() {
    let mut seed = 0x5eed_1234_u64;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for world_no in 0..200 {
        let allow_force = rnd(2) == 0;
        let with_rtc = rnd(2) == 0;
        let y2000 = UnixTime::from_secs(946_684_800);
        let mut d = Device::new(
            system_config(allow_force, with_rtc),
            UnixTime::from_secs(T0),
            if rnd(2) == 0 {
                y2000
            } else {
                UnixTime::from_secs(T0)
            },
        );
        if with_rtc {
            d.rtc_error = Some(d.now().wall - d.truth);
        }
        let mut w = three_honest();
        let (mut sys, _) = d.start();
        for step in 0..40 {
            let what = rnd(9);
            let ctx = format!("world {world_no} step {step} event {what}");
            match what {
                0 | 1 => {
                    set_all(&mut w, Behaviour::Offset(SignedDuration::ZERO));
                    w.seed = rnd(1 << 32) + 1;
                    let out = d.poll(&mut sys, &mut w);
                    assert!(out.decision.is_ok(), "{ctx}: honest servers refused");
                    assert_follows_truth(&d, &sys, &ctx);
                }
                2 => {
                    let years = rnd(21) as i64 - 10;
                    let shift = SignedDuration::from_secs(years * YEAR + rnd(1000) as i64);
                    set_all(&mut w, Behaviour::Offset(shift));
                    let _ = d.poll(&mut sys, &mut w);
                }
                3 | 4 => {
                    let off = SignedDuration::from_secs(rnd(4 * YEAR as u64) as i64 - 2 * YEAR);
                    let unc = SignedDuration::from_secs(rnd(3600) as i64);
                    let force = rnd(2) == 0;
                    let network = sys.network_interval(d.mono);
                    let requested = trusttime_core::TimeInterval::around(d.truth + off, unc);
                    match d.set_manual(&mut sys, d.truth + off, unc, force) {
                        Ok(c) if c.forced => {
                            assert!(force && allow_force, "{ctx}: forced without leave");
                        }
                        Ok(c) => {
                            if let Some(n) = network {
                                assert!(n.contains_interval(&c.new), "{ctx}: outside {n}");
                            }
                            assert!(requested.contains_interval(&c.new), "{ctx}");
                        }
                        Err(_) => {}
                    }
                }
                5 => {
                    d.stop(&mut sys);
                    d.advance(SignedDuration::from_secs(rnd(7200) as i64));
                    (sys, _) = d.start();
                }
                6 => {
                    d.advance(SignedDuration::from_secs(rnd(30 * DAY as u64) as i64));
                    if with_rtc && rnd(3) == 0 {
                        // Someone else sets the RTC wrong.
                        d.rtc_error =
                            Some(SignedDuration::from_secs(rnd(2 * DAY as u64) as i64 - DAY));
                    }
                    d.reboot(y2000);
                    (sys, _) = d.start();
                }
                _ => d.advance(SignedDuration::from_secs(rnd(4000) as i64)),
            }
            assert!(
                sys.floor() <= d.truth,
                "{ctx}: floor {} passed the truth",
                sys.floor()
            );
            if let Some((snap, _, _)) = d.disk {
                assert!(
                    snap.floor <= d.truth,
                    "{ctx}: persisted floor {}",
                    snap.floor
                );
            }
        }
    }
}
