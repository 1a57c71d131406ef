//! The first round of a device that boots in 2000 (a dead RTC), in virtual time: the shipped
//! sources, combination and `System` in the daemon's sequence (`trusttime_sim::Node`), what
//! it decides from its first answers: liars outvoted, lost requests retried, a silent server
//! not waited for, a server below the floor a falseticker, a Kiss-o'-Death honoured, no
//! majority no time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use trusttime_core::ntp::{Failure, KissCode, Reject};
use trusttime_core::system::SystemConfig;
use trusttime_core::trust::{TrustConfig, TrustState};
use trusttime_core::{SignedDuration, UnixTime};
use trusttime_sim::{Behaviour, Device, Net, Node, NodeConfig, SimServer};

const TRUE_NOW: i64 = 1_795_000_000; // 2026-11-18
const DEAD_RTC: i64 = 946_684_800; // 2000-01-01
const S: u64 = 1_000_000_000;
/// The first requests leave at the daemon loop's first wake-up (1 ms); the replies of
/// servers 5 ms away (each way) that hold a request 20 µs arrive 10.02 ms later.
const ONE_ROUND_TRIP: u64 = 11_020_000;

fn ms(n: i64) -> SignedDuration {
    SignedDuration::from_millis(n)
}

/// A network of `servers`, each behind its own name, and a device booted in 2000 (the floor
/// 10 years before the truth) started on it.
fn boot(servers: &[SimServer], seed: u64) -> (Net, Node) {
    let truth = UnixTime::from_secs(TRUE_NOW);
    let mut net = Net::new(truth, seed);
    let names: Vec<usize> = servers
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let a = net.add(s);
            net.name(&format!("{i}.example"), &[a])
        })
        .collect();
    let cfg = SystemConfig {
        trust: TrustConfig::new(truth - SignedDuration::from_secs(10 * 365 * 86_400)),
        allow_manual_force: false,
        has_rtc: false,
        discipline: true,
        step_threshold: ms(128),
    };
    let device = Device::new(cfg, truth, UnixTime::from_secs(DEAD_RTC));
    let node = Node::start(device, NodeConfig::default(), &names, &net, 0, seed ^ 0x55);
    (net, node)
}

/// The trusted interval's midpoint against the truth.
fn error(node: &Node) -> SignedDuration {
    let t = node.sys.trust().current(node.device.mono);
    (t.interval.midpoint() - node.device.truth).abs()
}

#[test]
fn one_liar_among_three_is_outvoted_after_one_round_trip() {
    let (mut net, mut node) = boot(
        &[
            SimServer::honest(),
            SimServer::liar(SignedDuration::from_secs(3600)),
            SimServer::honest(),
        ],
        1,
    );
    node.run_until(&mut net, S);
    assert_eq!(node.stats.consensuses, 1);
    assert_eq!(
        (node.members(0), node.members(1), node.members(2)),
        (1, 0, 1)
    );
    assert!(error(&node) < ms(1), "error {:?}", error(&node));
    // Decided when the second honest reply arrived: one round trip (10 ms and the server's
    // 20 µs) after the requests, sent at the loop's first wake-up (1 ms).
    assert_eq!(node.stats.first_trusted_at, Some(ONE_ROUND_TRIP));
    assert_eq!(net.requests, [1, 1, 1]);
    assert_eq!(node.stats.wrong_at, None);
}

#[test]
fn lost_requests_are_retried_with_backoff_never_twice_at_once() {
    let lossy = SimServer {
        drop_first: 1,
        ..SimServer::honest()
    };
    let (mut net, mut node) = boot(&[lossy; 3], 2);
    node.run_until(&mut net, 5 * S);
    assert!(node.stats.consensuses > 0);
    // 1 s reply timeout, then >= 250 ms of backoff, then the round trip.
    let at = node.stats.first_trusted_at.unwrap();
    assert!(at >= ONE_ROUND_TRIP + 1_250_000_000, "{at}");
    // Each server got its lost request and one retry.
    assert_eq!(net.requests, [2, 2, 2]);
    assert!(error(&node) < ms(1));
    assert_eq!(node.stats.wrong_at, None);
}

#[test]
fn a_silent_server_does_not_delay_the_majority() {
    let (mut net, mut node) = boot(
        &[
            SimServer::honest(),
            SimServer {
                behaviour: Behaviour::Silent,
                ..SimServer::honest()
            },
            SimServer::honest(),
        ],
        3,
    );
    node.run_until(&mut net, S);
    assert_eq!(node.stats.first_trusted_at, Some(ONE_ROUND_TRIP));
    assert_eq!(node.stats.wrong_at, None);
}

#[test]
fn a_server_below_the_floor_is_a_falseticker() {
    let (mut net, mut node) = boot(
        &[
            SimServer {
                behaviour: Behaviour::Fixed(UnixTime::from_secs(DEAD_RTC)),
                ..SimServer::honest()
            },
            SimServer::honest(),
            SimServer::honest(),
        ],
        4,
    );
    node.run_until(&mut net, S);
    assert_eq!(node.stats.consensuses, 1);
    assert_eq!(node.members(0), 0);
    match node.source(0).last_failure() {
        Some(Failure::Rejected(r @ Reject::BelowFloor { .. })) => assert!(r.is_falseticker()),
        other => panic!("expected BelowFloor, got {other:?}"),
    }
    assert!(error(&node) < ms(1));
}

#[test]
fn kiss_of_death_counts_as_no_answer() {
    let (mut net, mut node) = boot(
        &[
            SimServer {
                behaviour: Behaviour::Kiss(KissCode::Rate),
                ..SimServer::honest()
            },
            SimServer::honest(),
            SimServer::honest(),
        ],
        5,
    );
    node.run_until(&mut net, 30 * S);
    assert!(node.stats.consensuses > 0);
    assert_eq!(node.members(0), 0);
    assert_eq!(node.source(0).kiss(), Some(KissCode::Rate));
    assert_eq!(
        node.source(0).last_failure(),
        Some(Failure::Rejected(Reject::KissOfDeath(KissCode::Rate)))
    );
    // The exchange is not retried; RATE doubles the interval (from 64 s).
    assert_eq!(net.requests[0], 1, "a kissed server is asked again at once");
    assert_eq!(node.source(0).policy().poll_exponent(), 7);
}

#[test]
fn two_against_two_is_no_consensus() {
    let liar = SimServer::liar(SignedDuration::from_secs(60));
    let (mut net, mut node) = boot(&[SimServer::honest(), SimServer::honest(), liar, liar], 6);
    node.run_until(&mut net, 3600 * S);
    assert_eq!(node.stats.consensuses, 0);
    assert_eq!(
        node.sys.trust().state(node.device.mono),
        TrustState::Unknown
    );
    assert_eq!(
        node.device.wall_error,
        UnixTime::from_secs(DEAD_RTC) - UnixTime::from_secs(TRUE_NOW),
        "stepped without a majority"
    );
}

#[test]
fn asymmetry_stays_inside_the_error_bound() {
    let servers: Vec<SimServer> = (0..3)
        .map(|k| SimServer {
            asymmetry: ms(4 * k),
            ..SimServer::honest()
        })
        .collect();
    let (mut net, mut node) = boot(&servers, 7);
    node.run_until(&mut net, 3600 * S);
    assert!(node.stats.consensuses > 3);
    assert!(node.stats.checks > 0);
    assert_eq!(node.stats.wrong_at, None, "the truth left the interval");
}

/// Many random worlds: 3 to 6 honest servers with random delays and asymmetry, one liar off
/// by at least a minute, random lost first requests. The device never follows the liar and
/// its trusted interval always holds the truth (for the first minute of polls).
#[test]
fn never_follows_a_single_liar() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move |m: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % m
    };
    for round in 0..500 {
        let n = 3 + rnd(4) as usize;
        let liar = rnd(n as u64) as usize;
        let servers: Vec<SimServer> = (0..n)
            .map(|i| {
                let mut s = SimServer {
                    one_way: ms(1 + rnd(40) as i64),
                    asymmetry: ms(rnd(5) as i64),
                    drop_first: u8::from(rnd(4) == 0),
                    ..SimServer::honest()
                };
                if i == liar {
                    let sign = if rnd(2) == 0 { 1 } else { -1 };
                    s.behaviour = Behaviour::Offset(SignedDuration::from_secs(
                        sign * (60 + rnd(100_000) as i64),
                    ));
                }
                s
            })
            .collect();
        let (mut net, mut node) = boot(&servers, rnd(u64::MAX - 1) + 1);
        node.run_until(&mut net, 60 * S);
        assert!(node.stats.consensuses > 0, "round {round}: no consensus");
        assert_eq!(node.members(liar), 0, "round {round}: followed the liar");
        assert_eq!(
            node.stats.wrong_at, None,
            "round {round}: the truth left the interval"
        );
    }
}
