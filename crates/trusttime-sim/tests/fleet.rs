//! A fleet of 10^4 devices against a pool of 40 servers (honest, slow, lossy, RATE, DENY and
//! two liars), in virtual time: the load a reboot storm puts on each server, time to trusted
//! time, and that no device ever trusts a liar. docs/fleet.md has the full-size figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use trusttime_core::SignedDuration;
use trusttime_sim::fleet::{mixed_pool, outage, run, FleetConfig, FleetReport};

/// The Pool's guidance as the test reads it: no server's busiest 10 s sees more than twice the
/// rate of the same fleet polling every source once per 64 s.
const GUIDANCE_FACTOR: f64 = 2.0;

/// The fleet config from the shipped `dist/trusttime.toml`, parsed by the daemon's own parser.
fn shipped(devices: usize) -> FleetConfig {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/trusttime.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let c = trusttime::config::Config::parse(&text, &path).unwrap();
    let mut f = FleetConfig::shipped(devices);
    f.sources = u8::try_from(c.servers.len()).unwrap();
    f.startup_delay = SignedDuration::from_std(c.startup_delay);
    f.min_poll = c.raw.daemon.min_poll;
    f.max_poll = c.raw.daemon.max_poll;
    f.min_agree = c.raw.clock.min_agree;
    f.drift_ppm = c.raw.clock.drift_ppm;
    f
}

fn storm(devices: usize, seed: u64) -> FleetReport {
    let mut cfg = shipped(devices);
    cfg.duration = SignedDuration::from_secs(1200);
    cfg.bin = SignedDuration::from_secs(10);
    cfg.seed = seed;
    run(&cfg, &mixed_pool(40, 2, seed))
}

#[test]
fn the_simulated_fleet_runs_the_shipped_defaults() {
    let f = shipped(1);
    assert_eq!(
        f,
        FleetConfig::shipped(1),
        "FleetConfig::shipped is out of date"
    );
}

#[test]
fn a_reboot_storm_of_ten_thousand_stays_under_the_guidance() {
    let r = storm(10_000, 1);
    let g = r.guidance_rps();
    let peak = r.peak_rps(0.0, r.duration_s);
    assert!(
        peak <= GUIDANCE_FACTOR * g,
        "busiest server: {peak:.1} requests/s in 10 s, guidance {g:.1} x {GUIDANCE_FACTOR}"
    );
    assert_eq!(r.trusted_a_liar, 0, "a device trusted a lying server");
    // The stated time: 99 % trusted within the start-up delay plus 10 s.
    let delay = shipped(1).startup_delay.as_secs_f64();
    let t99 = r.time_to_trusted(0.99).expect("99 % trusted");
    assert!(t99 <= delay + 10.0, "99 % trusted after {t99:.1} s");
    assert_eq!(r.time_to_trusted_s.len(), r.devices, "every device trusted");
    assert_eq!(r.synced_at_end, r.devices);
    // A name is resolved at most once per poll, and kept between polls: in the storm's
    // 20 minutes (first poll, burst, 64 s polls), about once per name.
    assert!(r.requests >= r.dns_queries && r.dns_queries > 0);
    let per_name = r.dns_queries as f64 / r.devices as f64 / f64::from(r.sources);
    assert!(
        per_name < 1.5,
        "{per_name:.2} DNS queries per name in the storm"
    );
    assert!(
        r.kisses > 0,
        "the RATE and DENY servers were asked and answered"
    );
}

#[test]
fn without_the_start_up_delay_the_storm_exceeds_the_guidance() {
    let mut cfg = shipped(10_000);
    cfg.startup_delay = SignedDuration::ZERO;
    cfg.duration = SignedDuration::from_secs(300);
    cfg.bin = SignedDuration::from_secs(10);
    let r = run(&cfg, &mixed_pool(40, 2, 1));
    let g = r.guidance_rps();
    let peak = r.peak_rps(0.0, r.duration_s);
    assert!(
        peak > 4.0 * g,
        "the check must be able to fail: {peak:.1} vs {g:.1}"
    );
    assert_eq!(r.trusted_a_liar, 0);
    assert!(r.time_to_trusted(0.99).unwrap() < 10.0);
}

#[test]
fn same_seed_same_figures() {
    let a = storm(2_000, 7);
    let b = storm(2_000, 7);
    assert_eq!(a, b);
    let c = storm(2_000, 8);
    assert_ne!(a.load, c.load, "another seed, another run");
}

#[test]
fn per_server_load_scales_linearly_with_the_fleet() {
    let small = storm(1_000, 3);
    let large = storm(10_000, 3);
    let ratio = large.requests as f64 / small.requests as f64;
    assert!((9.0..11.0).contains(&ratio), "requests x{ratio:.2}");
    let p = large.p99_rps(0.0, large.duration_s) / small.p99_rps(0.0, small.duration_s);
    assert!((7.0..13.0).contains(&p), "p99 per server x{p:.2}");
}

/// Half the servers go silent for half an hour (still listed in DNS), then come back: the
/// fleet keeps its trusted time, trusts no liar, and the silent servers' retries do not pile
/// onto the others.
#[test]
fn an_outage_of_half_the_servers_and_their_return() {
    let mut cfg = shipped(2_000);
    cfg.resume_poll = Some(cfg.max_poll);
    cfg.boot_spread = SignedDuration::from_secs(1024);
    cfg.duration = SignedDuration::from_secs(3 * 3600);
    cfg.bin = SignedDuration::from_secs(60);
    let mut pool = mixed_pool(40, 2, 5);
    outage(
        &mut pool,
        SignedDuration::from_secs(3600),
        SignedDuration::from_secs(5400),
    );
    let r = run(&cfg, &pool);
    assert_eq!(r.trusted_a_liar, 0);
    assert_eq!(r.synced_at_end, r.devices, "everyone back in sync");
    let g = r.guidance_rps();
    let during = r.peak_rps(3600.0, 5400.0);
    assert!(during <= GUIDANCE_FACTOR * g, "{during:.1} vs {g:.1}");
    let before = r.series(1800.0, 3600.0);
    let mean_before = before.iter().map(|x| x.2).sum::<f64>() / before.len() as f64;
    let outage_series = r.series(3600.0, 5400.0);
    let mean_during = outage_series.iter().map(|x| x.2).sum::<f64>() / outage_series.len() as f64;
    assert!(
        mean_during < 2.0 * mean_before,
        "retries to silent servers: {mean_during:.2} vs {mean_before:.2} requests/s"
    );
}

/// DNS about hourly per name (the Pool's guidance): a name's address is kept between polls and
/// resolved again after an hour, or when its server sends a Kiss-o'-Death, gives an unusable
/// answer or stays silent. (It was resolved at every poll: 10 queries per device per hour.)
#[test]
fn a_day_of_steady_state_resolves_each_name_about_hourly() {
    assert_eq!(
        trusttime_sim::fleet::RESOLVE_EVERY,
        trusttime::daemon::RESOLVE_EVERY
    );
    assert_eq!(
        trusttime_sim::fleet::RESOLVE_AFTER_SILENT,
        trusttime::daemon::RESOLVE_AFTER_SILENT
    );
    let mut cfg = shipped(1_000);
    cfg.resume_poll = Some(cfg.max_poll);
    cfg.boot_spread = SignedDuration::from_secs(1024);
    cfg.duration = SignedDuration::from_secs(86_400);
    cfg.bin = SignedDuration::from_secs(600);
    let r = run(&cfg, &mixed_pool(40, 2, 13));
    assert_eq!(r.trusted_a_liar, 0);
    assert!(r.synced_at_end >= r.devices * 99 / 100);
    let per_name_hour = r.dns_per_device_hour() / f64::from(r.sources);
    // One an hour, plus a new server after each Kiss-o'-Death (3 of the 40 servers send
    // one to every request).
    assert!(
        (0.9..=1.2).contains(&per_name_hour),
        "{per_name_hour:.2} DNS queries per name per hour"
    );
}

/// A month of steady state: the fleet stays synchronised and its load stays flat. (RATE from
/// one server once pushed a pool name's interval up for good, so devices drifted to 2^17 s
/// and out of sync within weeks.)
#[test]
fn a_month_of_steady_state_keeps_the_fleet_synced() {
    let mut cfg = shipped(300);
    cfg.resume_poll = Some(cfg.max_poll);
    cfg.boot_spread = SignedDuration::from_secs(1024);
    cfg.duration = SignedDuration::from_secs(30 * 86_400);
    cfg.bin = SignedDuration::from_secs(3600);
    let r = run(&cfg, &mixed_pool(40, 2, 11));
    assert_eq!(r.trusted_a_liar, 0);
    assert!(
        r.synced_at_end >= r.devices * 99 / 100,
        "{} of {} synced after a month",
        r.synced_at_end,
        r.devices
    );
    // Four names polled every 1024-1152 s: at most about 320 requests a day (fewer while a
    // RATE has slowed a name), and not a fraction of it.
    let per_day = r.requests_per_device_day();
    assert!(
        (200.0..400.0).contains(&per_day),
        "{per_day:.0} requests/day"
    );
    let first = r.series(0.0, 86_400.0);
    let last = r.series(29.0 * 86_400.0, 30.0 * 86_400.0);
    let mean = |s: &[(f64, f64, f64)]| s.iter().map(|x| x.2).sum::<f64>() / s.len() as f64;
    let (a, b) = (mean(&first), mean(&last));
    assert!(
        b > 0.8 * a && b < 1.2 * a,
        "day 1 {a:.3}, day 30 {b:.3} requests/s"
    );
}

/// The liar count can fail: when most of the zone lies the same way (an attacker who runs many
/// pool servers, or one on the path), plain NTP follows the majority, and the simulation says
/// so. Only authenticated sources (NTS, Roughtime) defend against that.
#[test]
fn a_colluding_majority_is_seen_trusting_a_liar() {
    use trusttime_sim::fleet::ServerKind;
    let mut pool = mixed_pool(40, 0, 3);
    for s in pool.iter_mut().take(30) {
        s.kind = ServerKind::Liar(SignedDuration::from_secs(3600));
    }
    let mut cfg = shipped(1_000);
    cfg.duration = SignedDuration::from_secs(600);
    cfg.bin = SignedDuration::from_secs(10);
    let r = run(&cfg, &pool);
    assert!(
        r.trusted_a_liar > r.devices / 2,
        "{} of {} followed the colluding majority",
        r.trusted_a_liar,
        r.devices
    );
}
