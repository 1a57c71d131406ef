//! Scenarios for the core, in virtual time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use trusttime_core::ntp::{Failure, KissCode, Reject};
use trusttime_core::{SignedDuration, UnixTime};
use trusttime_sim::{Behaviour, SimServer, World};

const TRUE_NOW: i64 = 1_795_000_000; // 2026-11-18
const DEAD_RTC: i64 = 946_684_800; // 2000-01-01

fn ms(n: i64) -> SignedDuration {
    SignedDuration::from_millis(n)
}

fn world() -> World {
    World::new(UnixTime::from_secs(TRUE_NOW), UnixTime::from_secs(DEAD_RTC))
}

#[test]
fn one_liar_among_three_is_outvoted_after_one_round_trip() {
    let mut w = world();
    w.add(SimServer::honest());
    w.add(SimServer::liar(SignedDuration::from_secs(3600)));
    w.add(SimServer::honest());
    let out = w.run_exchange(2);
    let sel = out.decision.unwrap();
    assert_eq!(sel.agreed, 0b101);
    assert!(out.error().unwrap() < ms(1), "error {:?}", out.error());
    // One round trip of 10 ms: decided when the second honest reply arrived.
    assert_eq!(out.elapsed, ms(10));
    assert_eq!(out.requests, [1, 1, 1]);
}

#[test]
fn lost_requests_are_retried_with_backoff_never_twice_at_once() {
    let mut w = world();
    for _ in 0..3 {
        w.add(SimServer {
            drop_first: 1,
            ..SimServer::honest()
        });
    }
    let out = w.run_exchange(2);
    assert!(out.decision.is_ok());
    // 1 s reply timeout, then >= 250 ms of backoff, then the round trip.
    assert!(out.elapsed >= ms(1260), "{:?}", out.elapsed);
    // Each server got its lost request and one retry at most (jittered retries: the majority
    // may decide before the last server's retry goes out).
    assert!(
        out.requests.iter().all(|&r| (1..=2).contains(&r)),
        "{:?}",
        out.requests
    );
    assert!(
        out.requests.iter().filter(|&&r| r == 2).count() >= 2,
        "{:?}",
        out.requests
    );
}

#[test]
fn a_silent_server_does_not_delay_the_majority() {
    let mut w = world();
    w.add(SimServer::honest());
    w.add(SimServer {
        behaviour: Behaviour::Silent,
        ..SimServer::honest()
    });
    w.add(SimServer::honest());
    let out = w.run_exchange(2);
    assert!(out.decision.is_ok());
    assert_eq!(out.elapsed, ms(10));
}

#[test]
fn a_server_below_the_floor_is_a_falseticker() {
    let mut w = world();
    w.add(SimServer {
        behaviour: Behaviour::Fixed(UnixTime::from_secs(DEAD_RTC)),
        ..SimServer::honest()
    });
    w.add(SimServer::honest());
    w.add(SimServer::honest());
    let out = w.run_exchange(2);
    assert!(out.decision.is_ok());
    match out.results[0] {
        Some(Err(Failure::Rejected(r @ Reject::BelowFloor { .. }))) => assert!(r.is_falseticker()),
        other => panic!("expected BelowFloor, got {other:?}"),
    }
}

#[test]
fn kiss_of_death_counts_as_no_answer() {
    let mut w = world();
    w.add(SimServer {
        behaviour: Behaviour::Kiss(KissCode::Rate),
        ..SimServer::honest()
    });
    w.add(SimServer::honest());
    w.add(SimServer::honest());
    let out = w.run_exchange(2);
    assert!(out.decision.is_ok());
    assert_eq!(
        out.results[0],
        Some(Err(Failure::Rejected(Reject::KissOfDeath(KissCode::Rate))))
    );
    assert_eq!(out.requests[0], 1, "a kissed server is not asked again");
}

#[test]
fn two_against_two_is_no_consensus() {
    let mut w = world();
    w.add(SimServer::honest());
    w.add(SimServer::honest());
    w.add(SimServer::liar(SignedDuration::from_secs(60)));
    w.add(SimServer::liar(SignedDuration::from_secs(60)));
    assert!(w.run_exchange(2).decision.is_err());
}

#[test]
fn asymmetry_stays_inside_the_error_bound() {
    let mut w = world();
    for k in 0..3 {
        w.add(SimServer {
            asymmetry: ms(4 * k),
            ..SimServer::honest()
        });
    }
    let out = w.run_exchange(2);
    let sel = out.decision.unwrap();
    let truth = out.true_offset;
    assert!(
        sel.interval.lo <= truth && truth <= sel.interval.hi,
        "{sel:?} vs {truth:?}"
    );
}

/// Many random worlds: honest servers with random delays and asymmetry, one liar off by at
/// least a minute, random loss. The consensus never follows the liar and always contains the
/// truth.
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
        let mut w = world();
        w.seed = rnd(u64::MAX - 1) + 1;
        let n = 3 + rnd(4) as usize;
        let liar = rnd(n as u64) as usize;
        for i in 0..n {
            let mut s = SimServer {
                one_way: ms(1 + rnd(40) as i64),
                asymmetry: ms(rnd(5) as i64),
                drop_first: u8::from(rnd(4) == 0),
                ..SimServer::honest()
            };
            if i == liar {
                let sign = if rnd(2) == 0 { 1 } else { -1 };
                s.behaviour =
                    Behaviour::Offset(SignedDuration::from_secs(sign * (60 + rnd(100_000) as i64)));
            }
            w.add(s);
        }
        let out = w.run_exchange(2);
        let sel = out
            .decision
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(!sel.is_member(liar), "round {round}: followed the liar");
        assert!(
            sel.interval.lo <= out.true_offset && out.true_offset <= sel.interval.hi,
            "round {round}: truth outside {sel:?}"
        );
    }
}
