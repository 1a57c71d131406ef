//! `trusttime demo`: the whole idea in one offline run on loopback.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args as ClapArgs;
use trusttime_core::{floor, Human, SignedDuration};

use super::{EXIT_FAIL, EXIT_OK};
use crate::clock::{LocalClock, ShiftedClock, SystemClock};
use crate::serve::{ServeOptions, Server, Trust};
use crate::spec::{ServerSpec, Verdict};
use crate::sync::{sync, SyncOptions};

/// Show, offline and on loopback, how a device with no clock learns a time it can trust.
///
/// Starts three NTP servers on 127.0.0.1 (two honest, one lying by an hour) and a device
/// whose clock reads the build time (the floor: trusttime never goes below it). The device
/// asks all three at once, rejects the liar, and ends with a trusted interval.
///
/// Examples:
///   trusttime demo
///   trusttime demo --liar-offset -90d
///
/// Exit status: 0 the liar was named and a trusted interval found, 1 it was not (or the
/// loopback servers could not start), 2 usage error.
#[derive(Debug, ClapArgs)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// How far the lying server is off.
    #[arg(long, value_name = "DURATION", default_value = "1h", allow_hyphen_values = true,
          value_parser = crate::duration::parse_signed)]
    pub liar_offset: SignedDuration,
}

/// How the lying server's clock differs from the truth, with its sign in words.
fn liar_note(offset: SignedDuration) -> String {
    if offset == SignedDuration::ZERO {
        "honest too (--liar-offset 0)".to_owned()
    } else if offset.is_negative() {
        format!("lies: {} behind", Human(offset))
    } else {
        format!("lies: {} ahead", Human(offset))
    }
}

/// How a clock compares with the true time, given `true - clock`.
fn clock_words(offset: SignedDuration) -> String {
    if offset.is_negative() {
        format!("{} ahead", Human(offset))
    } else {
        format!("{} behind", Human(offset))
    }
}

/// Runs the demo.
pub async fn run(args: Args) -> ExitCode {
    let floor = floor::build_time();
    outln!("1. The device boots without a working clock.");
    outln!("   Its clock starts at the floor, the build time of this binary: {floor}.");
    outln!("   Nothing any server says can move it below that.\n");

    let honest: Arc<dyn LocalClock> = Arc::new(SystemClock);
    let liar: Arc<dyn LocalClock> = Arc::new(ShiftedClock {
        offset: args.liar_offset,
    });
    let mut specs = Vec::new();
    outln!("2. Three NTP servers start on loopback:");
    for (name, clock, note) in [
        ("A", Arc::clone(&honest), "honest".to_owned()),
        ("B", Arc::clone(&honest), "honest".to_owned()),
        ("C", liar, liar_note(args.liar_offset)),
    ] {
        let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        // The demo's servers lie on purpose: the liar answers with its shifted time even
        // when that is below the floor (a real `serve` would refuse to).
        let opts = ServeOptions {
            trust: Trust::LyingTestServer,
            ..ServeOptions::default()
        };
        let server = match Server::bind(addr, clock, opts).await {
            Ok(s) => s,
            Err(e) => {
                errln!("error: cannot start a loopback server: {e}");
                return ExitCode::from(EXIT_FAIL);
            }
        };
        let Ok(bound) = server.local_addr() else {
            errln!("error: cannot read the server's address");
            return ExitCode::from(EXIT_FAIL);
        };
        outln!("   server {name} on {bound}: {note}");
        specs.push(ServerSpec {
            host: bound.ip().to_string(),
            port: bound.port(),
        });
        crate::task::spawn(server.run());
    }

    let device: Arc<dyn LocalClock> = Arc::new(ShiftedClock::starting_at(floor));
    let mut opts = SyncOptions::new(specs);
    opts.timeout = Duration::from_secs(3);
    // Wait for all three so each gets a verdict (`trusttime sync` decides on the first two).
    opts.wait_for_all = true;
    outln!(
        "\n3. The device asks all three at once, one request each; {} must agree.",
        opts.effective_min_agree()
    );
    let report = sync(&opts, device).await;
    for (name, s) in ["A", "B", "C"].iter().zip(&report.sources) {
        outln!(
            "   server {name} said: {:<12} {}",
            s.verdict.as_str(),
            s.reason
        );
    }
    outln!();
    match &report.result {
        Ok(c) => {
            outln!(
                "4. Consensus after {:.1} ms: {} of 3 servers agree.",
                report.elapsed.as_secs_f64() * 1e3,
                c.agreed
            );
            outln!(
                "   Trusted time: {} .. {}",
                c.interval.earliest,
                c.interval.latest
            );
            outln!(
                "   The device clock was {}; it now knows the time to ±{}.",
                clock_words(c.offset),
                Human(c.interval.radius())
            );
            outln!("   A TLS certificate can be checked against this interval, and a");
            outln!(
                "   single-server SNTP client that had asked only server C would be {} off.",
                Human(args.liar_offset)
            );
            outln!("\n   (Plain NTP is unauthenticated: against an attacker on the path, use NTS or Roughtime.)");
            let liar_named = report
                .sources
                .get(2)
                .is_some_and(|s| s.verdict == Verdict::Falseticker);
            if liar_named || args.liar_offset.abs() < SignedDuration::from_secs(1) {
                ExitCode::from(EXIT_OK)
            } else {
                errln!("error: the lying server was not rejected");
                ExitCode::from(EXIT_FAIL)
            }
        }
        Err(e) => {
            errln!("error: no consensus: {e}");
            ExitCode::from(EXIT_FAIL)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_of_an_offset_is_said_in_words() {
        let h = SignedDuration::from_secs(3600);
        assert_eq!(liar_note(h), "lies: 1 hour ahead");
        assert_eq!(liar_note(-h), "lies: 1 hour behind");
        assert!(liar_note(SignedDuration::ZERO).contains("honest"));
        assert_eq!(clock_words(h), "1 hour behind");
        assert_eq!(clock_words(-h), "1 hour ahead");
    }
}
