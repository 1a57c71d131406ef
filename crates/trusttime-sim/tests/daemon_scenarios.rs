//! The daemon's lifecycle in virtual time: the shipped sources, combination and `System`
//! driven by `trusttime_sim::Node` (the daemon's sequence) against simulated NTP and NTS
//! servers, through restarts, reboots, RTCs good, wrong and dead, months on a shelf, hand-set
//! times, floor resets and attacks on the network path; plus the poll policy's budget.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use trusttime_core::ntp::{KissCode, PollPolicy};
use trusttime_core::system::{Action, ManualError, Restored, SystemConfig};
use trusttime_core::trust::{TrustConfig, TrustState};
use trusttime_core::{Provenance, Purpose, SignedDuration, UnixTime};
use trusttime_sim::{Behaviour, Device, Net, Node, NodeConfig, SimServer};

const T0: i64 = 1_795_000_000;
const DAY: i64 = 86_400;
const YEAR: i64 = 365 * DAY;
const S: u64 = 1_000_000_000;
const Y2000: UnixTime = UnixTime::from_secs(946_684_800);

fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

fn ms(n: i64) -> SignedDuration {
    SignedDuration::from_millis(n)
}

fn system_config(allow_force: bool, rtc: bool) -> SystemConfig {
    SystemConfig {
        trust: TrustConfig::new(UnixTime::from_secs(T0 - 30 * DAY)),
        allow_manual_force: allow_force,
        has_rtc: rtc,
        discipline: true,
        step_threshold: ms(128),
    }
}

/// A device whose wall clock reads `wall` at true time `T0`, with an RTC reading the same
/// when `rtc`.
fn device(allow_force: bool, rtc: bool, wall: UnixTime) -> Device {
    let mut d = Device::new(
        system_config(allow_force, rtc),
        UnixTime::from_secs(T0),
        wall,
    );
    if rtc {
        d.rtc_error = Some(d.wall_error);
    }
    d
}

/// Three honest servers behind three names.
fn three_honest(seed: u64) -> (Net, Vec<usize>) {
    let mut net = Net::new(UnixTime::from_secs(T0), seed);
    let names = (0..3)
        .map(|i| {
            let s = net.add(SimServer {
                one_way: ms(4 + i),
                ..SimServer::honest()
            });
            net.name(&format!("{i}.example"), &[s])
        })
        .collect();
    (net, names)
}

fn set_all(net: &mut Net, b: Behaviour) {
    for s in &mut net.servers {
        s.behaviour = b;
    }
}

fn start(d: Device, net: &Net, names: &[usize], t: u64, seed: u64) -> Node {
    Node::start(d, NodeConfig::default(), names, net, t, seed)
}

/// Runs the node `d` longer.
fn run_for(node: &mut Node, net: &mut Net, d: u64) {
    let until = node.at() + d;
    node.run_until(net, until);
}

/// Stops the daemon (cleanly, or a crash), lets `gap` pass (the device rebooting when
/// `reboot`, its wall clock then from the RTC or 2000), and starts it again.
fn restart(
    node: Node,
    net: &Net,
    names: &[usize],
    clean: bool,
    reboot: bool,
    gap: SignedDuration,
    seed: u64,
) -> Node {
    let t = node.at() + gap.as_nanos() as u64;
    let mut d = if clean { node.stop() } else { node.kill() };
    d.advance(gap);
    if reboot {
        d.reboot(Y2000);
    }
    start(d, net, names, t, seed)
}

/// The trusted interval's midpoint is within 50 ms of the truth (what NTP can see), and the
/// interval holds it.
fn assert_follows_truth(node: &Node, what: &str) {
    let t = node.sys.trust().current(node.device.mono);
    let err = (t.interval.midpoint() - node.device.truth).abs();
    assert!(
        err < ms(50) && t.interval.contains(node.device.truth),
        "{what}: trusted {} but the truth is {} ({:?} off, {})",
        t.interval,
        node.device.truth,
        err,
        t.provenance
    );
    assert_ne!(
        node.sys.trust().state(node.device.mono),
        TrustState::Unknown,
        "{what}"
    );
}

fn assert_honest(node: &Node, what: &str) {
    assert!(node.stats.checks > 0, "{what}: never checked");
    assert_eq!(
        node.stats.wrong_at, None,
        "{what}: the trusted interval missed the truth"
    );
}

fn steps(node: &Node) -> usize {
    node.device
        .log
        .iter()
        .filter(|a| matches!(a, Action::Step(_)))
        .count()
}

/// Synced with its RTC written at T0, the device sits for 6 months, its RTC running fast or
/// slow by up to 50 ppm; it boots with the network down. The RTC (set by trusttime, read
/// sane) carries the persisted time forward within the drift bound: the interval holds the
/// truth, good enough for TLS (1 h) but not for SigV4 (5 min).
#[test]
fn six_months_on_a_shelf_with_a_50ppm_rtc_stays_within_its_bound() {
    for actual_ppm in [-50i64, -17, 0, 23, 50] {
        let what = format!("{actual_ppm} ppm");
        let (mut net, names) = three_honest(1);
        let mut node = start(
            device(false, true, UnixTime::from_secs(T0)),
            &net,
            &names,
            0,
            2,
        );
        run_for(&mut node, &mut net, 600 * S);
        assert_follows_truth(&node, &what);
        assert!(node.device.rtc_error.unwrap().abs() < ms(20), "{what}");
        let shelf = secs(182 * DAY);
        let mut d = node.stop();
        let t = 600 * S + shelf.as_nanos() as u64;
        d.advance(shelf);
        let drift = SignedDuration::from_nanos(shelf.as_nanos() / 1_000_000 * actual_ppm);
        d.rtc_error = Some(d.rtc_error.unwrap() + drift);
        d.reboot(Y2000);
        set_all(&mut net, Behaviour::Silent);
        let mut node = start(d, &net, &names, t, 3);
        assert!(
            matches!(node.restored, Some(Restored::Holdover(_))),
            "{what}: {:?}",
            node.restored
        );
        let mono = node.device.mono;
        assert_eq!(node.sys.trust().state(mono), TrustState::Holdover, "{what}");
        let tt = node.sys.trust().current(mono);
        assert!(
            tt.interval.contains(node.device.truth),
            "{what}: {} misses {}",
            tt.interval,
            node.device.truth
        );
        // Honest but not absurd: 50 ppm of 6 months is about 13 minutes.
        assert!(tt.interval.radius() < secs(20 * 60), "{what}");
        assert!(tt.is_within(Purpose::Tls.default_max_error()), "{what}");
        assert!(!tt.is_within(Purpose::SigV4.default_max_error()), "{what}");
        // An hour with the network still down: the holdover keeps the truth.
        run_for(&mut node, &mut net, 3600 * S);
        assert_honest(&node, &what);
    }
}

/// The RTC battery dies while the device is off: it boots at 2000-01-01 (or 1970). The RTC
/// is below the floor and not used, the persisted time is only a hint (the elapsed time is
/// unknown), nothing is trusted and the clock is not stepped to anything until the network
/// answers; then the device steps to the truth and writes it to the RTC.
#[test]
fn a_dead_rtc_battery_is_ignored() {
    for dead in [UnixTime::EPOCH, Y2000] {
        let (mut net, names) = three_honest(5);
        let mut node = start(
            device(false, true, UnixTime::from_secs(T0)),
            &net,
            &names,
            0,
            6,
        );
        run_for(&mut node, &mut net, 600 * S);
        let t = 600 * S + 3600 * S;
        let mut d = node.stop();
        d.advance(secs(3600));
        d.rtc_error = Some(dead - d.truth);
        d.reboot(Y2000);
        d.log.clear();
        set_all(&mut net, Behaviour::Silent);
        let mut node = start(d, &net, &names, t, 7);
        assert!(
            matches!(node.restored, Some(Restored::HintUnused(_))),
            "{dead}: {:?}",
            node.restored
        );
        run_for(&mut node, &mut net, 3600 * S);
        assert_eq!(
            node.sys.trust().state(node.device.mono),
            TrustState::Unknown,
            "{dead}: a dead RTC was trusted"
        );
        assert_eq!(steps(&node), 0, "{dead}: stepped without a network time");
        assert!(node.sys.floor() < node.device.truth);
        set_all(&mut net, Behaviour::Offset(SignedDuration::ZERO));
        run_for(&mut node, &mut net, 3 * 3600 * S);
        assert_follows_truth(&node, "network after a dead RTC");
        assert!(node.device.wall_error.abs() < ms(50));
        assert!(node.device.rtc_error.unwrap().abs() < ms(50));
    }
}

/// A server 15 minutes ahead among two honest ones: it is never a member of a consensus in a
/// day of polls (every one of its answers is outvoted), the device never trusts a wrong time
/// and stays synchronised.
#[test]
fn a_lying_source_stays_out_round_after_round() {
    let mut net = Net::new(UnixTime::from_secs(T0), 8);
    let servers = [
        net.add(SimServer::honest()),
        net.add(SimServer::liar(secs(900))),
        net.add(SimServer {
            one_way: ms(9),
            ..SimServer::honest()
        }),
    ];
    let names: Vec<usize> = servers
        .iter()
        .enumerate()
        .map(|(i, &s)| net.name(&format!("{i}.example"), &[s]))
        .collect();
    let mut node = start(
        device(false, false, UnixTime::from_secs(T0 - 5)),
        &net,
        &names,
        0,
        9,
    );
    run_for(&mut node, &mut net, DAY as u64 * S);
    assert_honest(&node, "a lying source");
    assert!(node.stats.consensuses > 50, "{}", node.stats.consensuses);
    assert_eq!(node.members(1), 0, "the liar was part of a consensus");
    assert!(node.members(0) > 50 && node.members(2) > 50);
    // It kept answering (and lying) all day.
    assert!(net.requests[servers[1]] > 50);
    assert!(node.source(1).estimate(node.device.mono).is_some());
    assert_eq!(node.sys.trust().state(node.device.mono), TrustState::Synced);
    assert!(node.device.wall_error.abs() < ms(20));
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

/// Synced for an hour, then 60 days without network, on a local oscillator 40 ppm slow, or
/// right at the 50 ppm drift bound either way: the trusted interval moves with the monotonic
/// clock and widens by the drift bound, so it keeps the truth at every wake-up; it has widened
/// to about 50 ppm of the time since the last sync. (At exactly 50 ppm slow the monotonic
/// clock's own count of the elapsed time is short by 50 ppm: a bound of 50 ppm of that count
/// missed the truth after 23 days.)
#[test]
fn holdover_interval_keeps_the_truth_as_it_widens() {
    for ppm in [-40i64, -50, 50] {
        let what = format!("60 days of holdover on a {ppm} ppm oscillator");
        let (mut net, names) = three_honest(10);
        let mut d = device(false, false, UnixTime::from_secs(T0 - 100));
        d.ppm = ppm;
        let mut node = start(d, &net, &names, 0, 11);
        run_for(&mut node, &mut net, 3600 * S);
        assert_follows_truth(&node, &what);
        set_all(&mut net, Behaviour::Silent);
        run_for(&mut node, &mut net, 60 * DAY as u64 * S);
        assert_honest(&node, &what);
        assert!(node.stats.checks > 3000, "{what}: {}", node.stats.checks);
        let mono = node.device.mono;
        assert_eq!(node.sys.trust().state(mono), TrustState::Holdover, "{what}");
        let r = node.sys.trust().current(mono).interval.radius();
        // 50 ppm of 60 days is 259.2 s.
        assert!(r > secs(255) && r < secs(265), "{what}: {r:?}");
        // The wall clock, not disciplined without a network, is off by the oscillator's drift.
        let drift = secs(60 * DAY * ppm / 1_000_000);
        assert!(
            (node.device.wall_error - drift).abs() < secs(5),
            "{what}: {:?}",
            node.device.wall_error
        );
    }
}

/// An on-path attacker shifts every plain NTP reply by +10 years from the start: the device
/// follows it (plain NTP cannot tell) and saves it, but as a hint, not as the floor. The
/// servers are honest again at the next polls: the device steps back. It then crashes
/// (nothing saved since the first sync) and restarts with the shifted time on disk: the
/// honest consensus overrides that hint, and says so.
#[test]
fn plain_ntp_shifted_ten_years_for_one_poll_then_honest_then_restart_follows_the_honest_servers() {
    let (mut net, names) = three_honest(12);
    set_all(&mut net, Behaviour::Offset(secs(10 * YEAR)));
    let mut node = start(
        device(false, false, UnixTime::from_secs(T0)),
        &net,
        &names,
        0,
        13,
    );
    run_for(&mut node, &mut net, 30 * S);
    assert!(node.stats.first_trusted_at.is_some());
    assert!(
        node.stats.wrong_at.is_some(),
        "the attack never reached the device"
    );
    // The first consensus is persisted; unauthenticated, it must not become the floor.
    let (snap, _, _) = node.device.disk.unwrap();
    assert!(snap.interval.unwrap().earliest > node.device.truth + secs(9 * YEAR));
    assert!(
        snap.floor < node.device.truth,
        "floor {} poisoned",
        snap.floor
    );
    // Honest again: the device follows within a few polls.
    set_all(&mut net, Behaviour::Offset(SignedDuration::ZERO));
    run_for(&mut node, &mut net, 300 * S);
    assert_follows_truth(&node, "honest polls after the attack");
    // The consensus contradicted the shifted one: the clock was stepped back, not slewed at
    // half a second per poll for ten years.
    assert!(
        node.device.wall_error.abs() < ms(50),
        "{:?}",
        node.device.wall_error
    );
    assert!(node.sys.floor() < node.device.truth);
    // A crash and a restart: the state on disk is the shifted one.
    let mut node = restart(node, &net, &names, false, false, secs(60), 14);
    assert!(
        matches!(node.restored, Some(Restored::Holdover(iv)) if iv.earliest > node.device.truth),
        "{:?}",
        node.restored
    );
    assert!(node.sys.floor() < node.device.truth);
    run_for(&mut node, &mut net, 600 * S);
    assert!(node.stats.consensuses > 0, "honest servers refused");
    assert_follows_truth(&node, "after the restart");
    // The persisted shifted time was a hint, and the network said so.
    assert!(node
        .device
        .log
        .iter()
        .any(|a| matches!(a, Action::HintOverridden(o) if o.provenance == Provenance::Persisted)));
    assert!(node.sys.last_override().is_some());
    assert!(node.device.wall_error.abs() < ms(50));
}

/// Offline, a person types 2028 for 2027: with no network interval it is taken (manual
/// holdover), the clock stepped and the state saved, but the floor is not raised. After a
/// crash and restart with the network back, the honest consensus overrides the saved hint.
#[test]
fn a_hand_set_time_with_a_year_typo_is_a_hint_the_network_overrides_after_restart() {
    let (mut net, names) = three_honest(15);
    set_all(&mut net, Behaviour::Silent);
    let mut node = start(
        device(false, false, UnixTime::from_secs(T0 - 20 * DAY)),
        &net,
        &names,
        0,
        16,
    );
    run_for(&mut node, &mut net, 600 * S);
    assert_eq!(node.stats.consensuses, 0);
    let typo = node.device.truth + secs(YEAR);
    let change = node.set_manual(typo, secs(60), false).unwrap();
    assert!(!change.forced);
    let mono = node.device.mono;
    assert_eq!(
        node.sys.trust().current(mono).provenance,
        Provenance::Manual
    );
    // Every manual change is persisted, and the wall clock was stepped to it.
    assert!(node.device.log.contains(&Action::Persist));
    assert_eq!(steps(&node), 1);
    assert!(node.device.wall_error > secs(YEAR - 60));
    let (snap, _, _) = node.device.disk.unwrap();
    assert_eq!(snap.provenance, Provenance::Manual);
    assert!(
        snap.floor < node.device.truth,
        "a hand-set time raised the floor"
    );
    // A crash and a restart; the network is back and honest.
    let mut node = restart(node, &net, &names, false, false, secs(300), 17);
    assert!(matches!(node.restored, Some(Restored::Holdover(_))));
    set_all(&mut net, Behaviour::Offset(SignedDuration::ZERO));
    run_for(&mut node, &mut net, 600 * S);
    assert_follows_truth(&node, "network after a hand-set typo");
    let o = node.sys.last_override().unwrap();
    assert_eq!(o.provenance, Provenance::Persisted);
    assert!(node.device.wall_error.abs() < ms(50));
    assert!(node.sys.floor() < node.device.truth);
}

/// Synced to a few ms, then the servers go silent (their samples age out, no consensus
/// follows): a correct time ± 1 min does not replace the network time; a correct, tighter
/// time is taken (narrowed to the network interval). That does not open the door: an hour
/// later a time a day off is still refused (the bound is the last network consensus carried
/// forward by the drift bound, not the hand-set time), force is refused unless allowed, and
/// the device keeps the truth and follows the servers when they return.
#[test]
fn manual_time_is_bounded_by_the_network_and_the_bound_cannot_be_walked_around() {
    let (mut net, names) = three_honest(18);
    let mut node = start(
        device(false, false, UnixTime::from_secs(T0)),
        &net,
        &names,
        0,
        19,
    );
    run_for(&mut node, &mut net, 300 * S);
    assert!(node.sys.trust().current(node.device.mono).uncertainty() < ms(20));
    set_all(&mut net, Behaviour::Silent);
    run_for(&mut node, &mut net, 3600 * S);
    let network = node.sys.trust().current(node.device.mono);
    assert_eq!(network.provenance, Provenance::Ntp);
    assert!(network.uncertainty() < secs(1));
    let consensuses = node.stats.consensuses;
    let truth = node.device.truth;
    let r = node.set_manual(truth, secs(60), false);
    assert!(
        matches!(r, Err(ManualError::LooserThanNetwork { .. })),
        "{r:?}"
    );
    assert_eq!(
        node.sys.trust().current(node.device.mono).provenance,
        Provenance::Ntp
    );
    let ok = node.set_manual(truth, SignedDuration::ZERO, false).unwrap();
    assert!(network.interval.contains_interval(&ok.new));
    assert_eq!(
        node.sys.trust().current(node.device.mono).provenance,
        Provenance::Manual
    );
    run_for(&mut node, &mut net, 3600 * S);
    let day_off = node.device.truth + secs(DAY);
    let r = node.set_manual(day_off, secs(1), false);
    assert!(
        matches!(r, Err(ManualError::OutsideNetwork { .. })),
        "{r:?}"
    );
    let r = node.set_manual(day_off, secs(1), true);
    assert_eq!(r, Err(ManualError::ForceNotAllowed));
    assert!(node.device.wall_error.abs() < ms(50));
    // No consensus since the hand-set time (the stored samples had expired): the bound above
    // was the old network time's, carried forward.
    assert_eq!(node.stats.consensuses, consensuses);
    set_all(&mut net, Behaviour::Offset(SignedDuration::ZERO));
    run_for(&mut node, &mut net, 2 * 3600 * S);
    assert_honest(&node, "after refused manual times");
    assert_follows_truth(&node, "after refused manual times");
}

/// With `allow-manual-force`: a time two days off is refused without force and taken with
/// it (reported as forced, the clock stepped); below the floor stays refused even with force;
/// the network then corrects the clock.
#[test]
fn manual_time_far_off_with_force_is_taken_as_forced_and_the_network_corrects_it() {
    let (mut net, names) = three_honest(20);
    let mut node = start(
        device(true, false, UnixTime::from_secs(T0)),
        &net,
        &names,
        0,
        21,
    );
    run_for(&mut node, &mut net, 300 * S);
    let far = node.device.truth + secs(2 * DAY);
    let r = node.set_manual(far, secs(1), false);
    assert!(
        matches!(r, Err(ManualError::OutsideNetwork { .. })),
        "{r:?}"
    );
    assert!(node.device.wall_error.abs() < ms(50));
    let c = node.set_manual(far, secs(1), true).unwrap();
    assert!(c.forced);
    assert_eq!(
        node.sys.trust().current(node.device.mono).provenance,
        Provenance::Manual
    );
    assert!((node.device.wall_error - secs(2 * DAY)).abs() < secs(1));
    let r = node.set_manual(Y2000, SignedDuration::ZERO, true);
    assert!(matches!(r, Err(ManualError::BelowFloor { .. })), "{r:?}");
    run_for(&mut node, &mut net, 1800 * S);
    assert_follows_truth(&node, "network after a forced manual time");
    assert!(node.device.wall_error.abs() < ms(50));
    assert!(node.sys.floor() < node.device.truth);
}

/// Boots in 2000 with a dead RTC: stepped once to the truth, the RTC written with the true
/// time (not 2000 plus twice the step) and when is saved. Power off for a week; the network
/// is down at the next boot: the RTC, set by trusttime and reading sane, carries the saved
/// time forward (50 ppm of a week: about 30 s), good for TLS.
#[test]
fn boot_in_2000_with_a_dead_rtc_writes_the_true_time_and_a_reboot_holds_over_from_it() {
    let (mut net, names) = three_honest(22);
    let mut node = start(device(false, true, Y2000), &net, &names, 0, 23);
    run_for(&mut node, &mut net, 600 * S);
    assert_honest(&node, "boot in 2000");
    assert_eq!(steps(&node), 1);
    assert!(node.device.wall_error.abs() < ms(50));
    let written = node
        .device
        .log
        .iter()
        .find_map(|a| match a {
            Action::WriteRtc { time } => Some(*time),
            _ => None,
        })
        .expect("the RTC was written");
    assert!(
        (written - UnixTime::from_secs(T0)).abs() < secs(1),
        "{written}"
    );
    assert!(node.device.rtc_error.unwrap().abs() < ms(50));
    // When it was written is persisted.
    let (snap, _, _) = node.device.disk.unwrap();
    let set = snap.rtc_set.expect("rtc_set saved");
    assert!(node.device.log.contains(&Action::WriteRtc { time: set }));
    set_all(&mut net, Behaviour::Silent);
    let mut node = restart(node, &net, &names, true, true, secs(7 * DAY), 24);
    assert!(
        matches!(node.restored, Some(Restored::Holdover(_))),
        "{:?}",
        node.restored
    );
    let mono = node.device.mono;
    let t = node.sys.trust().current(mono);
    assert!(
        t.interval.contains(node.device.truth),
        "{} misses {}",
        t.interval,
        node.device.truth
    );
    assert_eq!(node.sys.trust().state(mono), TrustState::Holdover);
    assert!(t.uncertainty() < secs(120));
    assert!(t.is_within(Purpose::Tls.default_max_error()));
    run_for(&mut node, &mut net, 3600 * S);
    assert_honest(&node, "a week off, RTC holdover");
}

/// Someone sets the RTC a day back (before trusttime last set it) and reboots, with the
/// network down: the RTC is not trusted, the saved (unauthenticated) time is only a hint and
/// unused, the floor stays where it was; nothing is trusted until the network answers.
#[test]
fn an_rtc_set_wrong_by_someone_else_is_not_trusted_and_plain_ntp_time_stays_a_hint() {
    let (mut net, names) = three_honest(25);
    let mut node = start(device(false, true, Y2000), &net, &names, 0, 26);
    run_for(&mut node, &mut net, 600 * S);
    let t = node.at() + DAY as u64 * S;
    let mut d = node.stop();
    d.advance(secs(DAY));
    d.rtc_error = Some(secs(-2 * DAY));
    d.reboot(Y2000);
    set_all(&mut net, Behaviour::Silent);
    let mut node = start(d, &net, &names, t, 27);
    assert!(
        matches!(node.restored, Some(Restored::HintUnused(_))),
        "{:?}",
        node.restored
    );
    assert_eq!(
        node.sys.trust().state(node.device.mono),
        TrustState::Unknown
    );
    assert!(node.sys.floor() < node.device.truth - secs(3 * DAY));
    run_for(&mut node, &mut net, 3600 * S);
    assert_eq!(
        node.sys.trust().state(node.device.mono),
        TrustState::Unknown,
        "the wrong RTC was trusted"
    );
    set_all(&mut net, Behaviour::Offset(SignedDuration::ZERO));
    run_for(&mut node, &mut net, 3 * 3600 * S);
    assert_follows_truth(&node, "network after a wrong RTC");
    assert!(node.device.rtc_error.unwrap().abs() < ms(50));
}

/// Someone sets the RTC a year *ahead* and reboots, with the network down. That RTC reads
/// sane (after trusttime last set it, above the floor), so it cannot be told from a good one:
/// the device holds over from it (a limit of any RTC holdover). But it is a hint only: the
/// floor is not raised, nothing of it is saved as a floor, and the first network consensus
/// overrides it, says so, and steps the clock back.
#[test]
fn an_rtc_set_ahead_by_someone_else_is_only_a_hint_the_network_overrides() {
    let (mut net, names) = three_honest(42);
    let mut node = start(device(false, true, Y2000), &net, &names, 0, 43);
    run_for(&mut node, &mut net, 600 * S);
    let t = node.at() + DAY as u64 * S;
    let mut d = node.stop();
    d.advance(secs(DAY));
    d.rtc_error = Some(secs(YEAR));
    d.reboot(Y2000);
    set_all(&mut net, Behaviour::Silent);
    let mut node = start(d, &net, &names, t, 44);
    let mono = node.device.mono;
    assert_eq!(node.sys.trust().state(mono), TrustState::Holdover);
    assert!(node.sys.floor() < node.device.truth);
    run_for(&mut node, &mut net, 3600 * S);
    assert!(node.sys.floor() < node.device.truth);
    assert!(node.device.disk.unwrap().0.floor < node.device.truth);
    set_all(&mut net, Behaviour::Offset(SignedDuration::ZERO));
    run_for(&mut node, &mut net, 3600 * S);
    assert_follows_truth(&node, "network after an RTC set ahead");
    assert!(node.sys.last_override().is_some());
    assert!(node.device.wall_error.abs() < ms(50));
    assert!(node.device.rtc_error.unwrap().abs() < ms(50));
}

/// A device without an RTC reboots with its wall clock reading a year after the saved time
/// (a wrong build-time clock, a fake-hwclock file edited by hand): the elapsed time is
/// unknown, so the saved (unauthenticated) time is a hint only and unused; nothing is
/// trusted until the network answers, and the network's time is then followed.
#[test]
fn a_reboot_without_a_trusted_rtc_does_not_carry_the_saved_time_by_the_wall_clock() {
    let (mut net, names) = three_honest(39);
    let mut node = start(
        device(false, false, UnixTime::from_secs(T0)),
        &net,
        &names,
        0,
        40,
    );
    run_for(&mut node, &mut net, 600 * S);
    let t = node.at() + 3600 * S;
    let mut d = node.stop();
    d.advance(secs(3600));
    d.reboot(d.truth + secs(YEAR));
    set_all(&mut net, Behaviour::Silent);
    let mut node = start(d, &net, &names, t, 41);
    assert!(
        matches!(node.restored, Some(Restored::HintUnused(_))),
        "{:?}",
        node.restored
    );
    run_for(&mut node, &mut net, 3600 * S);
    assert_eq!(
        node.sys.trust().state(node.device.mono),
        TrustState::Unknown,
        "the saved time was carried forward by an untrusted wall clock"
    );
    set_all(&mut net, Behaviour::Offset(SignedDuration::ZERO));
    run_for(&mut node, &mut net, 3600 * S);
    assert_follows_truth(&node, "network after the reboot");
    assert!(node.device.wall_error.abs() < ms(50));
}

/// While the daemon is down (same boot), someone moves the wall clock by a year: the next
/// daemon holds over from the saved state by the monotonic clock (exact), not the wall clock.
#[test]
fn a_restart_within_one_boot_holds_over_by_the_monotonic_clock() {
    let (mut net, names) = three_honest(28);
    let mut node = start(
        device(false, false, UnixTime::from_secs(T0)),
        &net,
        &names,
        0,
        29,
    );
    run_for(&mut node, &mut net, 600 * S);
    set_all(&mut net, Behaviour::Silent);
    let t = node.at() + 3600 * S;
    let mut d = node.stop();
    d.advance(secs(3600));
    d.wall_error = secs(YEAR);
    let mut node = start(d, &net, &names, t, 30);
    assert!(
        matches!(node.restored, Some(Restored::Holdover(_))),
        "{:?}",
        node.restored
    );
    let mono = node.device.mono;
    let tt = node.sys.trust().current(mono);
    assert!(
        tt.interval.contains(node.device.truth),
        "{} misses {}",
        tt.interval,
        node.device.truth
    );
    assert!(tt.uncertainty() < secs(1));
    run_for(&mut node, &mut net, 3600 * S);
    assert_honest(&node, "restart within one boot");
}

/// The state is saved on the first sync and then at most every 10 minutes of polling (flash
/// wears), but at least that often while synced; a clean stop saves it, a crash does not.
#[test]
fn state_is_saved_on_a_clean_stop_and_otherwise_at_most_every_ten_minutes() {
    let (mut net, names) = three_honest(31);
    let mut node = start(
        device(false, false, UnixTime::from_secs(T0)),
        &net,
        &names,
        0,
        32,
    );
    let mut saves: Vec<u64> = Vec::new();
    let mut last = None;
    for minute in 1..=60u64 {
        node.run_until(&mut net, minute * 60 * S);
        let saved = node.device.disk.map(|(s, _, _)| s.saved_wall);
        if saved != last {
            saves.push(node.at());
            last = saved;
        }
    }
    assert_eq!(saves.first(), Some(&(60 * S)), "saved at the first sync");
    for w in saves.windows(2) {
        // Saved at least 600 s apart (checked once a minute: the minutes differ by >= 10).
        assert!(w[1] - w[0] >= 600 * S, "saves at {saves:?}");
    }
    // Polls every 64..1024 s: saved again within 10 min + one poll interval.
    assert!(saves.len() >= 3, "{saves:?}");
    let before = node.device.disk.unwrap().0.saved_wall;
    let t = node.at();
    // A crash saves nothing.
    let d = node.kill();
    assert_eq!(d.disk.unwrap().0.saved_wall, before);
    // The next run saves at its first sync, then not within 10 minutes...
    let mut node = start(d, &net, &names, t + 30 * S, 33);
    run_for(&mut node, &mut net, 300 * S);
    let first = node.device.disk.unwrap().0.saved_wall;
    assert!(first > before);
    run_for(&mut node, &mut net, 200 * S);
    assert_eq!(node.device.disk.unwrap().0.saved_wall, first);
    // ...but a clean stop does.
    let d = node.stop();
    assert!(
        d.disk.unwrap().0.saved_wall > first,
        "a clean stop did not save"
    );
}

/// An NTS server behind two NTS-KE names (a compromised server, or its key) tells a time two
/// years ahead: authenticated sources decide, so the device follows it over three honest
/// plain NTP servers, and the authenticated time raises the saved floor. After a restart with
/// the NTS sources removed from the config, the honest plain servers are below that floor and
/// refused. The operator's recovery (`set --reset-floor`) brings the floor back and the device
/// follows the honest servers.
#[test]
fn authenticated_time_raises_the_floor_and_reset_floor_recovers_a_wrong_one() {
    let mut net = Net::new(UnixTime::from_secs(T0), 34);
    let nts = net.add(SimServer::liar(secs(2 * YEAR)));
    let mut names = vec![
        net.nts_name("nts-a.example", nts),
        net.nts_name("nts-b.example", nts),
    ];
    let plain: Vec<usize> = (0..3)
        .map(|i| {
            let s = net.add(SimServer::honest());
            net.name(&format!("{i}.example"), &[s])
        })
        .collect();
    names.extend(&plain);
    let mut node = start(
        device(false, false, UnixTime::from_secs(T0)),
        &net,
        &names,
        0,
        35,
    );
    run_for(&mut node, &mut net, 600 * S);
    assert!(net.nts_replies > 0, "no NTS exchange took place");
    let mono = node.device.mono;
    assert_eq!(
        node.sys.trust().current(mono).provenance,
        Provenance::Authenticated
    );
    // The plain servers, outvoted by the authenticated ones, are never members.
    assert!(node.members(0) > 0);
    assert!((2..5).all(|i| node.members(i) == 0));
    assert!(node.device.wall_error > secs(2 * YEAR - 1));
    let (snap, _, _) = node.device.disk.unwrap();
    assert!(
        snap.floor > node.device.truth + secs(YEAR),
        "{}",
        snap.floor
    );
    // Restart with only the plain sources configured.
    let mut node = restart(node, &net, &plain, true, false, secs(60), 36);
    assert!(node.sys.floor() > node.device.truth + secs(YEAR));
    run_for(&mut node, &mut net, 600 * S);
    assert_eq!(
        node.stats.consensuses, 0,
        "honest time below the floor taken"
    );
    // The operator's recovery (root only, logged by the daemon).
    node.reset_floor();
    assert!(node.device.disk.unwrap().0.floor < node.device.truth);
    assert_eq!(
        node.sys.trust().state(node.device.mono),
        TrustState::Unknown
    );
    run_for(&mut node, &mut net, 3600 * S);
    assert_follows_truth(&node, "after reset-floor");
    assert!(node.device.wall_error.abs() < ms(50));
    assert!(node.sys.floor() < node.device.truth);
}

/// The daemon's TLS readiness for a config with two NTS sources and three plain ones
/// (`allow`: `[clock] allow-unauthenticated = true`): the daemon's own rule
/// ([`trusttime::config::Checked::require_authenticated`] and
/// [`trusttime::daemon_api::Snapshot::clock_reading`]) applied to the node's trusted time.
/// Returns the interval TLS would be judged over.
fn tls_view(node: &Node, allow: bool) -> trusttime_core::TrustedTime {
    let toml = format!(
        "[clock]\nallow-unauthenticated = {allow}\n\n\
         [[source]]\nkind = \"nts\"\naddress = \"nts-a.example\"\n\n\
         [[source]]\nkind = \"nts\"\naddress = \"nts-b.example\"\n\n\
         [[source]]\nkind = \"ntp\"\naddress = \"0.example\"\n\n\
         [[source]]\nkind = \"ntp\"\naddress = \"1.example\"\n\n\
         [[source]]\nkind = \"ntp\"\naddress = \"2.example\"\n"
    );
    let config = trusttime::config::Config::parse(&toml, std::path::Path::new("trusttime.toml"))
        .expect("config");
    let snapshot = trusttime::daemon_api::Snapshot {
        require_authenticated: config.require_authenticated(),
        ..trusttime::daemon_api::Snapshot::new(node.sys.trust().clone(), node.sys.floor())
    };
    snapshot.clock_reading(node.device.now()).trusted
}

/// An attacker blocks NTS-KE and shifts every plain NTP reply by a day. Plain NTP decides
/// (it is all there is), but as a downgrade: the time is not authenticated, the floor is not
/// raised, and the daemon's TLS readiness does not follow it unless the config allows
/// unauthenticated time. When NTS-KE gets through again, the authenticated sources decide:
/// the device steps back to the truth, and is TLS-ready on authenticated time.
#[test]
fn nts_blocked_while_plain_ntp_is_shifted_is_no_silent_downgrade() {
    let mut net = Net::new(UnixTime::from_secs(T0), 37);
    let mut names = Vec::new();
    for (i, n) in ["nts-a.example", "nts-b.example"].iter().enumerate() {
        let s = net.add(SimServer {
            one_way: ms(6 + i as i64),
            ..SimServer::honest()
        });
        names.push(net.nts_name(n, s));
    }
    let mut plain = Vec::new();
    for i in 0..3 {
        let s = net.add(SimServer::liar(secs(DAY)));
        plain.push(s);
        names.push(net.name(&format!("{i}.example"), &[s]));
    }
    net.nts_ke_blocked = true;
    let mut node = start(
        device(false, false, UnixTime::from_secs(T0)),
        &net,
        &names,
        0,
        38,
    );
    run_for(&mut node, &mut net, 1800 * S);
    assert!(node.stats.consensuses > 0);
    assert_eq!(net.nts_replies, 0);
    let mono = node.device.mono;
    let t = node.sys.trust().current(mono);
    assert_eq!(
        t.provenance,
        Provenance::Ntp,
        "the downgrade is not authenticated"
    );
    assert!(
        !t.interval.contains(node.device.truth),
        "the attack did not reach the device"
    );
    assert!(
        node.sys.floor() < node.device.truth,
        "a downgrade raised the floor"
    );
    // No TLS readiness on it by default: TLS sees only the floor.
    let tls = tls_view(&node, false);
    assert_eq!(tls.provenance, Provenance::Floor);
    assert_eq!(tls.interval.latest, UnixTime::MAX);
    // Unless the operator allowed it.
    let tls = tls_view(&node, true);
    assert_eq!(tls.provenance, Provenance::Ntp);
    // NTS-KE gets through again: at the next key exchange (backed off), the authenticated
    // sources decide.
    net.nts_ke_blocked = false;
    run_for(&mut node, &mut net, 4 * 3600 * S);
    assert!(net.nts_replies > 0);
    assert_follows_truth(&node, "NTS back");
    let mono = node.device.mono;
    assert_eq!(
        node.sys.trust().current(mono).provenance,
        Provenance::Authenticated
    );
    assert!(node.device.wall_error.abs() < ms(50));
    let tls = tls_view(&node, false);
    assert_eq!(tls.provenance, Provenance::Authenticated);
    assert!(tls.interval.contains(node.device.truth));
}

/// Random lifecycles (honest polls, plain NTP shifted by up to ten years either way, hand-set
/// times with and without force, clean stops and crashes, reboots with good, wrong or no RTC,
/// time passing) through the shipped sources and `System`, checked against the rules after
/// every step: without an authenticated lie the floor (in force and saved) never passes the
/// truth, honest servers are always followed, and a hand-set time is taken outside the
/// network interval only when forced and allowed.
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
        let wall = if rnd(2) == 0 {
            Y2000
        } else {
            UnixTime::from_secs(T0)
        };
        let (mut net, names) = three_honest(rnd(1 << 32));
        let mut node = start(
            device(allow_force, with_rtc, wall),
            &net,
            &names,
            0,
            rnd(1 << 32),
        );
        for step in 0..40 {
            let what = rnd(9);
            let ctx = format!("world {world_no} step {step} event {what}");
            match what {
                0 | 1 => {
                    set_all(&mut net, Behaviour::Offset(SignedDuration::ZERO));
                    // Backed off to 1024 s, disagreeing, moving to other servers: honest
                    // servers win within two hours.
                    run_for(&mut node, &mut net, 2 * 3600 * S);
                    assert_follows_truth(&node, &ctx);
                }
                2 => {
                    let years = rnd(21) as i64 - 10;
                    let shift = secs(years * YEAR + rnd(1000) as i64);
                    set_all(&mut net, Behaviour::Offset(shift));
                    run_for(&mut node, &mut net, 100 * S);
                }
                3 | 4 => {
                    let off = secs(rnd(4 * YEAR as u64) as i64 - 2 * YEAR);
                    let unc = secs(rnd(3600) as i64);
                    let force = rnd(2) == 0;
                    let truth = node.device.truth;
                    let network = node.sys.network_interval(node.device.mono);
                    let requested = trusttime_core::TimeInterval::around(truth + off, unc);
                    match node.set_manual(truth + off, unc, force) {
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
                    let gap = secs(rnd(7200) as i64);
                    node = restart(node, &net, &names, rnd(2) == 0, false, gap, rnd(1 << 32));
                }
                6 => {
                    let gap = secs(rnd(30 * DAY as u64) as i64);
                    let clean = rnd(2) == 0;
                    let t = node.at() + gap.as_nanos() as u64;
                    let mut d = if clean { node.stop() } else { node.kill() };
                    d.advance(gap);
                    if with_rtc && rnd(3) == 0 {
                        // Someone else sets the RTC wrong.
                        d.rtc_error = Some(secs(rnd(2 * DAY as u64) as i64 - DAY));
                    }
                    d.reboot(Y2000);
                    node = start(d, &net, &names, t, rnd(1 << 32));
                }
                _ => run_for(&mut node, &mut net, rnd(4000) * S),
            }
            let truth = node.device.truth;
            assert!(
                node.sys.floor() <= truth,
                "{ctx}: floor {} passed the truth",
                node.sys.floor()
            );
            if let Some((snap, _, _)) = node.device.disk {
                assert!(snap.floor <= truth, "{ctx}: saved floor {}", snap.floor);
            }
        }
    }
}
