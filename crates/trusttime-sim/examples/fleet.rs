//! The fleet figures and plots of docs/fleet.md:
//!
//! ```text
//! cargo run -p trusttime-sim --release --example fleet            # 10^3 .. 10^5 devices
//! cargo run -p trusttime-sim --release --example fleet -- --million
//! cargo run -p trusttime-sim --release --example fleet -- --storm 1000000  # one storm row
//! ```
//!
//! Prints the tables (Markdown) and writes `docs/fleet/*.svg`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Instant;

use plotters::prelude::*;
use trusttime_core::SignedDuration;
use trusttime_sim::fleet::{mixed_pool, outage, run, FleetConfig, FleetReport};

const SERVERS: usize = 40;
const LIARS: usize = 2;

fn secs(s: i64) -> SignedDuration {
    SignedDuration::from_secs(s)
}

fn storm(devices: usize, delay: i64, servers: usize) -> (FleetReport, f64) {
    let mut cfg = FleetConfig::shipped(devices);
    cfg.startup_delay = secs(delay);
    cfg.duration = secs(3600);
    cfg.bin = secs(1);
    let t = Instant::now();
    let r = run(&cfg, &mixed_pool(servers, LIARS, 1));
    (r, t.elapsed().as_secs_f64())
}

fn fmt_t(t: Option<f64>) -> String {
    t.map_or("never".into(), |t| format!("{t:.1} s"))
}

fn storm_row(name: &str, r: &FleetReport, took: f64) {
    let ten = r.rebinned(10);
    let g = r.guidance_rps();
    println!(
        "| {name} | {} | {} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} ({:.1}x) | {} | {} | {} | {:.1} | {:.1} s |",
        r.devices,
        r.servers,
        g,
        r.peak_rps(0.0, r.duration_s),
        r.p99_rps(0.0, r.duration_s),
        ten.p99_rps(0.0, r.duration_s),
        ten.peak_rps(0.0, r.duration_s),
        ten.peak_rps(0.0, r.duration_s) / g,
        fmt_t(r.time_to_trusted(0.5)),
        fmt_t(r.time_to_trusted(0.99)),
        r.trusted_a_liar,
        r.dns_per_device_hour(),
        took
    );
}

fn load_plot(path: &Path, runs: &[(&str, &FleetReport)], to_s: f64) {
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let g = runs[0].1.guidance_rps();
    let ymax = runs
        .iter()
        .map(|(_, r)| r.rebinned(10).peak_rps(0.0, to_s))
        .fold(2.5 * g, f64::max)
        * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Reboot storm: {} devices, {} servers, busiest server per 10 s",
                runs[0].1.devices, runs[0].1.servers
            ),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..to_s, 0.0..ymax)
        .unwrap();
    chart
        .configure_mesh()
        .x_desc("seconds after power-up")
        .y_desc("requests/s at the busiest server")
        .draw()
        .unwrap();
    let colours = [RED, BLUE, GREEN, MAGENTA];
    for (i, (name, r)) in runs.iter().enumerate() {
        let s = r.rebinned(10).series(0.0, to_s);
        let c = colours[i % colours.len()];
        chart
            .draw_series(LineSeries::new(
                s.iter().map(|p| (p.0, p.1)),
                c.stroke_width(2),
            ))
            .unwrap()
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
    }
    for (k, label) in [
        (1.0, "fleet polling every 64 s"),
        (2.0, "guidance: 2x that"),
    ] {
        let style = if k > 1.5 {
            BLACK.stroke_width(2)
        } else {
            BLACK.stroke_width(1)
        };
        chart
            .draw_series(LineSeries::new(vec![(0.0, k * g), (to_s, k * g)], style))
            .unwrap()
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .unwrap();
    root.present().unwrap();
}

fn trusted_plot(path: &Path, runs: &[(&str, &FleetReport)]) {
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let xmax = runs
        .iter()
        .filter_map(|(_, r)| r.time_to_trusted_s.last().copied())
        .fold(10.0, f64::max)
        * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Time from power-up to trusted time ({} devices)",
                runs[0].1.devices
            ),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax, 0.0..100.0)
        .unwrap();
    chart
        .configure_mesh()
        .x_desc("seconds after power-up")
        .y_desc("% of devices trusted")
        .draw()
        .unwrap();
    let colours = [RED, BLUE, GREEN, MAGENTA];
    for (i, (name, r)) in runs.iter().enumerate() {
        let n = r.devices as f64;
        let step = (r.time_to_trusted_s.len() / 400).max(1);
        let pts: Vec<(f64, f64)> = r
            .time_to_trusted_s
            .iter()
            .enumerate()
            .step_by(step)
            .map(|(k, &t)| (t, 100.0 * (k + 1) as f64 / n))
            .collect();
        let c = colours[i % colours.len()];
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .unwrap()
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
    }
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, 99.0), (xmax, 99.0)],
            BLACK.stroke_width(1),
        ))
        .unwrap()
        .label("99 %")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .unwrap();
    root.present().unwrap();
}

fn steady(
    devices: usize,
    days: i64,
    pool: &[trusttime_sim::fleet::PoolServer],
    bin: i64,
) -> (FleetReport, f64) {
    let mut cfg = FleetConfig::shipped(devices);
    cfg.resume_poll = Some(cfg.max_poll);
    cfg.boot_spread = secs(1024);
    cfg.duration = secs(days * 86_400);
    cfg.bin = secs(bin);
    let t = Instant::now();
    let r = run(&cfg, pool);
    (r, t.elapsed().as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let million = args.iter().any(|a| a == "--million");
    if let Some(n) = args
        .iter()
        .position(|a| a == "--storm")
        .and_then(|i| args.get(i + 1))
    {
        let n: usize = n.parse().expect("--storm takes a number of devices");
        println!("| start-up delay | devices | servers | guidance line (req/s/server) | peak 1 s | p99 1 s | p99 10 s | peak 10 s (x line) | 50 % trusted | 99 % trusted | trusted a liar | DNS queries per device | run time |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let (r, took) = storm(n, 60, SERVERS);
        storm_row("60 s (default)", &r, took);
        return;
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/fleet");
    std::fs::create_dir_all(&out).unwrap();

    println!("## Reboot storm (every device powers up within 1 s; 1 h simulated)\n");
    println!("| start-up delay | devices | servers | guidance line (req/s/server) | peak 1 s | p99 1 s | p99 10 s | peak 10 s (x line) | 50 % trusted | 99 % trusted | trusted a liar | DNS queries per device | run time |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut sizes = vec![1_000, 10_000, 100_000];
    if million {
        sizes.push(1_000_000);
    }
    let mut by_delay = Vec::new();
    for &n in &sizes {
        let (r, took) = storm(n, 60, SERVERS);
        storm_row("60 s (default)", &r, took);
        if n == 100_000 {
            by_delay.push(("60 s (default)", r));
        }
    }
    for delay in [10, 0] {
        let (r, took) = storm(100_000, delay, SERVERS);
        let name = if delay == 10 {
            "10 s (old default)"
        } else {
            "none"
        };
        storm_row(name, &r, took);
        by_delay.push((name, r));
    }
    let (r, took) = storm(100_000, 60, 12);
    storm_row("60 s, a 12-server zone", &r, took);
    let runs: Vec<(&str, &FleetReport)> = by_delay.iter().map(|(n, r)| (*n, r)).collect();
    load_plot(&out.join("storm-load.svg"), &runs, 400.0);
    trusted_plot(&out.join("time-to-trusted.svg"), &runs);

    println!("\n## Steady state (devices resume at the longest poll, boots spread over 1024 s)\n");
    println!("| run | devices | servers | requests/device/day | DNS queries/device/hour | peak req/s/server (bin) | p99 | KoD received | trusted a liar | synced at end | run time |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let pool = mixed_pool(SERVERS, LIARS, 1);
    for (name, n, days, bin) in [("a day", 10_000, 1, 60), ("a month", 1_000, 30, 600)] {
        let (r, took) = steady(n, days, &pool, bin);
        println!(
            "| {name} | {} | {} | {:.0} | {:.1} | {:.2} ({} s) | {:.2} | {} | {} | {} | {:.1} s |",
            r.devices,
            r.servers,
            r.requests_per_device_day(),
            r.dns_per_device_hour(),
            r.peak_rps(0.0, r.duration_s),
            bin,
            r.p99_rps(0.0, r.duration_s),
            r.kisses,
            r.trusted_a_liar,
            r.synced_at_end,
            took
        );
    }

    println!("\n## Half the servers silent for 30 min (still in DNS), then back\n");
    println!("| window | mean req/s/server | busiest server req/s (60 s) | devices synced at end | trusted a liar |");
    println!("|---|---|---|---|---|");
    let mut pool = mixed_pool(SERVERS, LIARS, 1);
    outage(&mut pool, secs(3600), secs(5400));
    let mut cfg = FleetConfig::shipped(10_000);
    cfg.resume_poll = Some(cfg.max_poll);
    cfg.boot_spread = secs(1024);
    cfg.duration = secs(3 * 3600);
    cfg.bin = secs(60);
    let r = run(&cfg, &pool);
    for (name, a, b) in [
        ("before (0:30-1:00)", 1800.0, 3600.0),
        ("outage (1:00-1:30)", 3600.0, 5400.0),
        ("after (1:30-3:00)", 5400.0, 10_800.0),
    ] {
        let s = r.series(a, b);
        let mean = s.iter().map(|x| x.2).sum::<f64>() / s.len() as f64;
        println!(
            "| {name} | {mean:.2} | {:.2} | {} | {} |",
            r.peak_rps(a, b),
            r.synced_at_end,
            r.trusted_a_liar
        );
    }
    println!("\nPlots written to {}", out.display());
}
