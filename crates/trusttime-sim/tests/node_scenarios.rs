//! The shipped `NtpSource`s, `combine` and `System` driven in virtual time in the daemon's
//! sequence (`trusttime_sim::Node`), against simulated servers answering real NTP packets and
//! a simulated DNS: a month against a pool name with Kiss-o'-Death and loss, asymmetric
//! paths, a delay spike, a dead RTC, and one server behind several names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use trusttime_core::ntp::KissCode;
use trusttime_core::system::{Action, SystemConfig};
use trusttime_core::trust::{TrustConfig, TrustState};
use trusttime_core::{SignedDuration, UnixTime};
use trusttime_sim::{Behaviour, Device, Net, Node, NodeConfig, SimServer};

const T0: i64 = 1_795_000_000;
const DAY: u64 = 86_400;
const S: u64 = 1_000_000_000;
const Y2000: i64 = 946_684_800;

fn ms(n: i64) -> SignedDuration {
    SignedDuration::from_millis(n)
}

fn sys_cfg(rtc: bool) -> SystemConfig {
    SystemConfig {
        trust: TrustConfig::new(UnixTime::from_secs(T0 - 30 * 86_400)),
        allow_manual_force: false,
        has_rtc: rtc,
        discipline: true,
        step_threshold: ms(128),
    }
}

/// A device whose wall clock is `wall_error` off the truth at virtual time 0.
fn device(wall_error: SignedDuration, rtc: bool) -> Device {
    let truth = UnixTime::from_secs(T0);
    Device::new(sys_cfg(rtc), truth, truth + wall_error)
}

/// `names` DNS names, each resolving to `servers` (a pool: `0.pool.example`, ...).
fn pool_names(net: &mut Net, names: usize, servers: &[usize]) -> Vec<usize> {
    (0..names)
        .map(|i| net.name(&format!("{i}.pool.example"), servers))
        .collect()
}

fn assert_honest(node: &Node, what: &str) {
    assert!(node.stats.checks > 0, "{what}: never checked");
    assert_eq!(
        node.stats.wrong_at, None,
        "{what}: the trusted interval missed the truth"
    );
}

/// 30 days against a pool name (4 names of the shipped `pool` source, 4 servers behind them,
/// 10 % loss on every server); on day 1 one server starts answering RATE, six hours later
/// DENY. The device's trusted interval holds the truth the whole time, no server sees more
/// than one poll a minute in any hour (and about one per 1024 s once settled), RATE slows the
/// requests to that server, DENY ends them, and each name is looked up about hourly.
#[test]
fn thirty_days_against_a_pool_name_with_kiss_of_death_and_loss() {
    let mut net = Net::new(UnixTime::from_secs(T0), 7);
    let servers: Vec<usize> = (0..4)
        .map(|k| {
            net.add(SimServer {
                one_way: ms(5 + 12 * k),
                loss_permille: 100,
                ..SimServer::honest()
            })
        })
        .collect();
    let names = pool_names(&mut net, 4, &servers);
    let days = 30;
    net.count_load(
        SignedDuration::from_secs(3600),
        SignedDuration::from_secs(days as i64 * 86_400),
    );
    let mut node = Node::start(
        device(ms(-2_500), false),
        NodeConfig::default(),
        &names,
        &net,
        0,
        11,
    );
    node.run_until(&mut net, DAY * S);
    assert!(node.stats.first_trusted_at.unwrap() < 5 * S);
    // The names ask distinct servers.
    let mut asked: Vec<usize> = (0..4).filter_map(|i| node.address(i)).collect();
    asked.sort_unstable();
    asked.dedup();
    assert_eq!(asked.len(), 4, "four names, four servers");
    let kod = 3;
    net.servers[kod].behaviour = Behaviour::Kiss(KissCode::Rate);
    node.run_until(&mut net, (DAY + 6 * 3600) * S);
    net.servers[kod].behaviour = Behaviour::Kiss(KissCode::Deny);
    // Hour by hour until the DENY arrives (the RATEs have slowed that name to hours).
    let mut hour = 30;
    while (0..4).all(|i| node.stopped_by(i).is_none()) {
        hour += 1;
        assert!(hour < 24 * 4, "no DENY received by hour {hour}");
        node.run_until(&mut net, hour * 3600 * S);
    }
    let denied_by = hour as usize;
    node.run_until(&mut net, days * DAY * S);

    assert_honest(&node, "a month against the pool");
    assert!(node.stats.checks > 5_000, "{}", node.stats.checks);
    let end = node.device.mono;
    assert_eq!(node.sys.trust().state(end), TrustState::Synced);
    assert!(node.stats.kisses >= 2, "RATE and DENY were received");
    let stopped: Vec<usize> = (0..4)
        .filter(|&i| node.stopped_by(i) == Some(KissCode::Deny))
        .collect();
    assert_eq!(
        stopped.len(),
        1,
        "DENY stops the name that asked that server"
    );
    assert_eq!(node.address(stopped[0]), Some(kod));

    let hours = (days * 24) as usize;
    let load = net.load();
    let per = |h: usize, s: usize| load[h * 4 + s];
    // No server gets more than one poll a minute (with retries) in any hour.
    for h in 0..hours {
        for s in 0..4 {
            assert!(per(h, s) <= 60, "hour {h} server {s}: {}", per(h, s));
        }
    }
    // Settled at the longest poll (1024 s, with jitter and loss retries) after the first day.
    for s in (0..4).filter(|&s| s != kod) {
        let total: u32 = (24..hours).map(|h| per(h, s)).sum();
        let per_hour = f64::from(total) / (hours - 24) as f64;
        assert!(
            (2.5..=4.5).contains(&per_hour),
            "server {s}: {per_hour:.2} requests per hour"
        );
    }
    // RATE: that server is asked less and less (the interval doubles with each RATE), and
    // after DENY not at all.
    let before: u32 = (18..24).map(|h| per(h, kod)).sum();
    let rate: u32 = (24..30).map(|h| per(h, kod)).sum();
    assert!(
        rate < before && rate <= 6,
        "RATE window {rate}, before {before}"
    );
    let after: u32 = (denied_by..hours).map(|h| per(h, kod)).sum();
    assert_eq!(after, 0, "a DENY server asked again");
    // DNS about hourly per name: at the first poll an hour after the last lookup (every
    // 3600 s plus part of a 1024-1152 s poll interval); the stopped name asks hourly for
    // another server, and the three others are taken, so it stays with the DENY one.
    for (i, &n) in names.iter().enumerate() {
        let per_hour = net.dns_lookups[n] as f64 / hours as f64;
        assert!(
            (0.75..=1.1).contains(&per_hour),
            "name {i}: {per_hour:.2} lookups per hour"
        );
    }
    assert_eq!(net.lookups("0.pool.example"), net.dns_lookups[names[0]]);
}

/// Every path is asymmetric (5 ms there, 80 ms back): NTP cannot see the asymmetry, so the
/// consensus is off by about 37 ms, but the error bound (half the round trip) covers it and
/// the trusted interval holds the truth for a day of polls.
#[test]
fn asymmetric_paths_stay_inside_the_error_bound() {
    let mut net = Net::new(UnixTime::from_secs(T0), 3);
    let servers: Vec<usize> = (0..3)
        .map(|_| {
            net.add(SimServer {
                one_way: ms(5),
                asymmetry: ms(75),
                ..SimServer::honest()
            })
        })
        .collect();
    let names = pool_names(&mut net, 3, &servers);
    let mut node = Node::start(
        device(ms(1_700), false),
        NodeConfig::default(),
        &names,
        &net,
        0,
        5,
    );
    node.run_until(&mut net, DAY * S);
    assert_honest(&node, "asymmetric paths");
    let t = node.sys.trust().current(node.device.mono);
    let bias = (t.interval.midpoint() - node.device.truth).abs();
    assert!(
        bias > ms(30),
        "the asymmetry must show in the estimate: {bias:?}"
    );
    assert!(
        t.interval.radius() < ms(100),
        "honest, not absurd: {:?}",
        t.interval.radius()
    );
    assert!(node.stats.consensuses > 50);
}

/// One reply delayed by 900 ms on its way back (a queue for one packet: a 450 ms error NTP
/// cannot see): the sample is taken, but the clock filter keeps the earlier tight one, so the
/// trusted interval of a device with a single server stays tight and honest.
#[test]
fn a_delay_spike_is_filtered_and_the_interval_stays_honest_and_tight() {
    let mut net = Net::new(UnixTime::from_secs(T0), 9);
    let server = net.add(SimServer::honest());
    let names = pool_names(&mut net, 1, &[server]);
    let mut node = Node::start(
        device(ms(-300), false),
        NodeConfig::default(),
        &names,
        &net,
        0,
        2,
    );
    node.run_until(&mut net, 3600 * S);
    let tight = node.stats.widest_synced;
    assert!(tight < ms(60), "{tight:?}");
    net.delay_next_reply = Some((server, ms(900)));
    node.run_until(&mut net, 4 * 3600 * S);
    assert_eq!(net.delay_next_reply, None, "the spike happened");
    assert!(
        node.stats.max_sample_delay >= ms(900),
        "the slow reply was a sample: {:?}",
        node.stats.max_sample_delay
    );
    assert_honest(&node, "delay spike");
    // Taken, the spike would make the interval ±450 ms; the filter keeps the tight sample,
    // which only ages (50 ppm of a 1024 s poll is ±51 ms at most).
    assert!(
        node.stats.widest_synced < ms(60),
        "the spike widened the trusted interval to {:?}",
        node.stats.widest_synced
    );
    let t = node.sys.trust().current(node.device.mono);
    assert!(t.interval.radius() < ms(60));
}

/// A device boots in 2000 with a dead RTC: the first consensus steps it once to the truth,
/// the RTC is written with the true time (not 2000 plus twice the step), when it was written
/// is saved, the samples move with the step (no second step), and `READY=1` is sent once.
#[test]
fn boot_in_2000_with_a_dead_rtc_steps_once_and_writes_the_true_time() {
    let mut net = Net::new(UnixTime::from_secs(T0), 4);
    let servers: Vec<usize> = (0..3).map(|_| net.add(SimServer::honest())).collect();
    let names = pool_names(&mut net, 3, &servers);
    let mut d = device(SignedDuration::from_secs(Y2000 - T0), true);
    d.rtc_error = Some(SignedDuration::from_secs(Y2000 - T0));
    let mut node = Node::start(d, NodeConfig::default(), &names, &net, 0, 8);
    node.run_until(&mut net, 6 * 3600 * S);
    assert_honest(&node, "boot in 2000");
    assert!(node.stats.first_trusted_at.unwrap() < S);
    let steps: Vec<SignedDuration> = node
        .device
        .log
        .iter()
        .filter_map(|a| match a {
            Action::Step(by) => Some(*by),
            _ => None,
        })
        .collect();
    assert_eq!(steps.len(), 1, "stepped once: {steps:?}");
    assert!((steps[0] - SignedDuration::from_secs(T0 - Y2000)).abs() < ms(50));
    assert!(
        node.device.wall_error.abs() < ms(20),
        "{:?}",
        node.device.wall_error
    );
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
        (written - UnixTime::from_secs(T0)).abs() < SignedDuration::from_secs(1),
        "RTC written with {written}"
    );
    assert!(node.device.rtc_error.unwrap().abs() < ms(20));
    let (snap, _, _) = node.device.disk.unwrap();
    assert!(snap.rtc_set.is_some());
    assert_eq!(node.stats.ready, 1);
    assert!(node.stats.consensuses > 20);
}

/// A lying server (an hour ahead) behind three names, two honest servers behind two others:
/// counted as five votes the liar would win 3 to 2; counted by address it has one vote, and
/// the device follows the honest servers all day.
#[test]
fn a_liar_behind_several_names_counts_once() {
    for liar_names in [2, 3] {
        let mut net = Net::new(UnixTime::from_secs(T0), 21);
        let liar = net.add(SimServer::liar(SignedDuration::from_secs(3600)));
        let h1 = net.add(SimServer::honest());
        let h2 = net.add(SimServer {
            one_way: ms(9),
            ..SimServer::honest()
        });
        let mut names: Vec<usize> = (0..liar_names)
            .map(|k| net.name(&format!("liar{k}.example"), &[liar]))
            .collect();
        names.push(net.name("a.example", &[h1]));
        names.push(net.name("b.example", &[h2]));
        let mut node = Node::start(
            device(ms(400), false),
            NodeConfig::default(),
            &names,
            &net,
            0,
            3,
        );
        node.run_until(&mut net, DAY * S);
        let what = format!("liar behind {liar_names} names");
        assert_honest(&node, &what);
        assert!(
            node.stats.consensuses > 50,
            "{what}: {}",
            node.stats.consensuses
        );
        assert_eq!(
            node.sys.trust().state(node.device.mono),
            TrustState::Synced,
            "{what}"
        );
        assert!(node.device.wall_error.abs() < ms(20), "{what}");
        for k in 0..liar_names {
            assert_eq!(node.address(k), Some(liar));
        }
    }
}

/// A restart within one boot: the next daemon holds over from the saved state and the
/// network (still honest) keeps it honest; the first daemon's sources are gone with it.
#[test]
fn a_restart_resumes_from_the_saved_state() {
    let mut net = Net::new(UnixTime::from_secs(T0), 6);
    let servers: Vec<usize> = (0..3).map(|_| net.add(SimServer::honest())).collect();
    let names = pool_names(&mut net, 3, &servers);
    let mut node = Node::start(
        device(ms(250), false),
        NodeConfig::default(),
        &names,
        &net,
        0,
        1,
    );
    node.run_until(&mut net, 3600 * S);
    assert_honest(&node, "before the restart");
    let before: u64 = net.dns_lookups.iter().sum();
    let mut d = node.stop();
    d.advance(SignedDuration::from_secs(30));
    let mut node = Node::start(d, NodeConfig::default(), &names, &net, 3630 * S, 2);
    assert_eq!(
        node.sys.trust().state(node.device.mono),
        TrustState::Holdover,
        "held over from the saved state"
    );
    node.run_until(&mut net, 7200 * S);
    assert_honest(&node, "after the restart");
    assert!(node.stats.consensuses > 0);
    // The new daemon resolves each name once more.
    assert_eq!(net.dns_lookups.iter().sum::<u64>(), before + 3);
}

/// A name that does not resolve (a typo, a zone gone): asked again after the backed-off poll
/// interval, not in a loop, while the other names keep the device in sync; and a DENY from
/// one server of a pool name sends that name to another server once the zone has one,
/// instead of stopping it for good (else a single DENY server in a zone knocks out, one by
/// one, every name of every device that meets it); that server is never asked again.
#[test]
fn a_name_that_does_not_resolve_and_a_deny_server_do_not_stop_the_pool() {
    let mut net = Net::new(UnixTime::from_secs(T0), 12);
    let honest: Vec<usize> = (0..3).map(|_| net.add(SimServer::honest())).collect();
    let deny = net.add(SimServer {
        behaviour: Behaviour::Kiss(KissCode::Deny),
        ..SimServer::honest()
    });
    let mut names = vec![net.name("typo.example", &[])];
    // A pool name that lists only the DENY server at first, then the zone grows to it and
    // the three honest servers.
    let pool = net.name("0.pool.example", &[deny]);
    names.push(pool);
    names.extend((0..2).map(|k| net.name(&format!("h{k}.example"), &[honest[k]])));
    let mut node = Node::start(
        device(ms(90), false),
        NodeConfig::default(),
        &names,
        &net,
        0,
        4,
    );
    node.run_until(&mut net, 600 * S);
    assert_eq!(node.stopped_by(1), Some(KissCode::Deny));
    assert_eq!(net.requests[deny], 1);
    net.set_name(pool, &[deny, honest[0], honest[1], honest[2]]);
    node.run_until(&mut net, DAY * S);
    assert_honest(&node, "a name that does not resolve");
    let typo = net.lookups("typo.example");
    // At the backed-off poll interval (64 s, 128 s, ... then every 1024-1152 s): at most
    // 86400 / 1024 + the climb. (It was a loop: one lookup per answer, 2.6e8 a day here.)
    assert!(
        (60..=95).contains(&typo),
        "{typo} lookups of a name that does not resolve in a day"
    );
    assert_eq!(node.sys.trust().state(node.device.mono), TrustState::Synced);
    // The pool name moved on to the free honest server: no longer stopped, polling, and the
    // DENY server never asked again.
    assert_eq!(node.stopped_by(1), None);
    assert_eq!(node.address(1), Some(honest[2]));
    assert!(node.source(1).reach() != 0, "the pool name is not polling");
    assert_eq!(net.requests[deny], 1, "the DENY server was asked again");
    // It asked for another server hourly while stopped, not more.
    assert!(net.lookups("0.pool.example") <= 2 + 24 + 1);
}

fn set_all(net: &mut Net, b: Behaviour) {
    for s in &mut net.servers {
        s.behaviour = b;
    }
}

/// An on-path attacker shifts every plain NTP reply by +10 years for a minute and a half (one
/// poll of each source): plain NTP cannot tell, and the device follows it, but the floor is
/// not raised, the device follows the honest servers within a few polls once the attack ends,
/// and again after a restart whose saved state may hold the shifted time.
#[test]
fn plain_ntp_shifted_for_one_poll_then_honest_then_a_restart_follows_the_honest_servers() {
    let mut net = Net::new(UnixTime::from_secs(T0), 31);
    let servers: Vec<usize> = (0..3).map(|_| net.add(SimServer::honest())).collect();
    let names = pool_names(&mut net, 3, &servers);
    let mut node = Node::start(
        device(ms(20), false),
        NodeConfig::default(),
        &names,
        &net,
        0,
        17,
    );
    node.run_until(&mut net, 600 * S);
    assert_honest(&node, "before the attack");
    let ten_years = SignedDuration::from_secs(10 * 365 * 86_400);
    set_all(&mut net, Behaviour::Offset(ten_years));
    // Each source polls every 64-72 s (or less while a burst runs): 90 s is one poll each.
    node.run_until(&mut net, 690 * S);
    let attacked = node.stats.wrong_at.is_some();
    set_all(&mut net, Behaviour::Offset(SignedDuration::ZERO));
    node.run_until(&mut net, 2 * 3600 * S);
    assert!(
        node.sys.floor() < node.device.truth,
        "the floor was poisoned"
    );
    let t = node.sys.trust().current(node.device.mono);
    assert!(
        t.interval.contains(node.device.truth),
        "{} vs {}",
        t.interval,
        node.device.truth
    );
    assert!(
        node.device.wall_error.abs() < ms(50),
        "{:?}",
        node.device.wall_error
    );
    let mut d = node.stop();
    d.advance(SignedDuration::from_secs(60));
    let mut node = Node::start(
        d,
        NodeConfig::default(),
        &names,
        &net,
        2 * 3600 * S + 60 * S,
        5,
    );
    node.run_until(&mut net, 3 * 3600 * S);
    assert_honest(&node, "after the restart");
    assert!(node.sys.floor() < node.device.truth);
    // The attack did reach the device (the scenario tests what it should).
    assert!(
        attacked,
        "the shifted replies were never trusted: the scenario is too weak"
    );
}

/// Offline, a person sets the time with a wrong year; the network returns: the network's
/// consensus replaces the hand-set time, the clock is stepped back, and the floor was never
/// raised.
#[test]
fn manual_time_while_offline_then_the_network_returns_and_wins() {
    let mut net = Net::new(UnixTime::from_secs(T0), 41);
    let servers: Vec<usize> = (0..3)
        .map(|_| {
            net.add(SimServer {
                behaviour: Behaviour::Silent,
                ..SimServer::honest()
            })
        })
        .collect();
    let names = pool_names(&mut net, 3, &servers);
    let mut node = Node::start(
        device(SignedDuration::from_secs(-20 * 86_400), false),
        NodeConfig::default(),
        &names,
        &net,
        0,
        23,
    );
    node.run_until(&mut net, 1800 * S);
    assert_eq!(
        node.sys.trust().state(node.device.mono),
        TrustState::Unknown
    );
    let typo = node.device.truth + SignedDuration::from_secs(365 * 86_400);
    let change = node
        .set_manual(typo, SignedDuration::from_secs(60), false)
        .unwrap();
    assert!(!change.forced);
    assert!(node.device.wall_error > SignedDuration::from_secs(364 * 86_400));
    set_all(&mut net, Behaviour::Offset(SignedDuration::ZERO));
    node.run_until(&mut net, 4 * 3600 * S);
    let t = node.sys.trust().current(node.device.mono);
    assert!(t.interval.contains(node.device.truth), "{}", t.interval);
    assert_eq!(node.sys.trust().state(node.device.mono), TrustState::Synced);
    assert!(
        node.device.wall_error.abs() < ms(50),
        "{:?}",
        node.device.wall_error
    );
    assert!(
        node.sys.last_override().is_some(),
        "the hint was overridden"
    );
    assert!(node.sys.floor() < node.device.truth);
    let (snap, _, _) = node.device.disk.unwrap();
    assert!(snap.floor < node.device.truth);
}
