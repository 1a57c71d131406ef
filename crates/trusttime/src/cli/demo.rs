//! `trusttime demo`: the whole idea in one offline run on loopback.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args as ClapArgs;
use trusttime_core::{floor, Human, SignedDuration};

use super::{EXIT_FAIL, EXIT_OK};
use crate::clock::{LocalClock, ShiftedClock, SystemClock};
use crate::serve::{ServeOptions, Server};
use crate::sync::{sync, ServerSpec, SyncOptions, Verdict};

/// Show, offline and on loopback, how a device with no clock learns a time it can trust.
///
/// Starts three NTP servers on 127.0.0.1 (two honest, one lying by an hour) and a device
/// whose clock reads the build time (the floor: trusttime never goes below it). The device
/// asks all three at once, rejects the liar, and ends with a trusted interval.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// How far the lying server is off.
    #[arg(long, value_name = "DURATION", default_value = "1h", allow_hyphen_values = true,
          value_parser = crate::duration::parse_signed)]
    pub liar_offset: SignedDuration,
}

/// Runs the demo.
pub async fn run(args: Args) -> ExitCode {
    let floor = floor::build_time();
    println!("1. The device boots without a working clock.");
    println!("   Its clock starts at the floor, the build time of this binary: {floor}.");
    println!("   Nothing any server says can move it below that.\n");

    let honest: Arc<dyn LocalClock> = Arc::new(SystemClock);
    let liar: Arc<dyn LocalClock> = Arc::new(ShiftedClock {
        offset: args.liar_offset,
    });
    let mut specs = Vec::new();
    println!("2. Three NTP servers start on loopback:");
    for (name, clock, note) in [
        ("A", Arc::clone(&honest), "honest".to_owned()),
        ("B", Arc::clone(&honest), "honest".to_owned()),
        (
            "C",
            liar,
            format!("lies: {} ahead", Human(args.liar_offset)),
        ),
    ] {
        let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        let server = match Server::bind(addr, clock, ServeOptions::default()).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot start a loopback server: {e}");
                return ExitCode::from(EXIT_FAIL);
            }
        };
        let Ok(bound) = server.local_addr() else {
            eprintln!("error: cannot read the server's address");
            return ExitCode::from(EXIT_FAIL);
        };
        println!("   server {name} on {bound}: {note}");
        specs.push(ServerSpec {
            host: bound.ip().to_string(),
            port: bound.port(),
        });
        tokio::spawn(server.run());
    }

    let device: Arc<dyn LocalClock> = Arc::new(ShiftedClock::starting_at(floor));
    let mut opts = SyncOptions::new(specs);
    opts.timeout = Duration::from_secs(3);
    // Wait for all three so each gets a verdict (`trusttime sync` decides on the first two).
    opts.wait_for_all = true;
    println!(
        "\n3. The device asks all three at once, one request each; {} must agree.",
        opts.effective_min_agree()
    );
    let report = sync(&opts, device).await;
    for (name, s) in ["A", "B", "C"].iter().zip(&report.sources) {
        println!(
            "   server {name} said: {:<12} {}",
            s.verdict.as_str(),
            s.reason
        );
    }
    println!();
    match &report.result {
        Ok(c) => {
            println!(
                "4. Consensus after {:.1} ms: {} of 3 servers agree.",
                report.elapsed.as_secs_f64() * 1e3,
                c.agreed
            );
            println!(
                "   Trusted time: {} .. {}",
                c.interval.earliest, c.interval.latest
            );
            println!(
                "   The device clock was {} behind; it now knows the time to ±{}.",
                Human(c.offset),
                Human(c.interval.radius())
            );
            println!("   A TLS certificate can be checked against this interval, and a");
            println!(
                "   single-server SNTP client that had asked only server C would be {} off.",
                Human(args.liar_offset)
            );
            println!("\n   (Plain NTP is unauthenticated: against an attacker on the path, use NTS or Roughtime.)");
            let liar_named = report
                .sources
                .get(2)
                .is_some_and(|s| s.verdict == Verdict::Falseticker);
            if liar_named || args.liar_offset.abs() < SignedDuration::from_secs(1) {
                ExitCode::from(EXIT_OK)
            } else {
                eprintln!("error: the lying server was not rejected");
                ExitCode::from(EXIT_FAIL)
            }
        }
        Err(e) => {
            eprintln!("error: no consensus: {e}");
            ExitCode::from(EXIT_FAIL)
        }
    }
}
