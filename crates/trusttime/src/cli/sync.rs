//! `trusttime sync`: one consensus exchange, reported; the clock is not changed.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args as ClapArgs;
use serde_json::json;
use trusttime_core::{Human, SignedDuration, UnixTime};

use super::{EXIT_FAIL, EXIT_OK, EXIT_USAGE};
use crate::clock::{LocalClock, SystemClock};
use crate::sync::{pool_servers, sync, ServerSpec, SyncOptions, SyncReport};

/// Ask several NTP servers at once and print the time the majority agrees on.
///
/// Every server is asked once, in parallel (a lost request is retried with backoff). As soon
/// as enough servers agree that the remaining ones cannot change the outcome, trusttime
/// decides: the result is the interval all agreeing servers allow. A server whose time does
/// not overlap the majority is named a falseticker. The local clock is not changed.
///
/// Without --server, four NTP Pool servers are used by DNS name (0.ZONE .. 3.ZONE). Vendors
/// shipping devices should ask the NTP Pool for a vendor zone and pass it with --pool-zone.
///
/// Exit status: 0 consensus reached, 1 no consensus (the reason is on stderr), 2 usage error.
///
/// Examples:
///   trusttime sync
///   trusttime sync --server 127.0.0.1:11123 --server 127.0.0.2:11123 --server 127.0.0.3:11123
///   trusttime sync --pool-zone acme.pool.ntp.org --json
#[derive(Debug, ClapArgs)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// A server to ask: HOST, HOST:PORT or [IPV6]:PORT. Repeat for several (at most 32).
    #[arg(long = "server", short = 's', value_name = "HOST[:PORT]")]
    pub servers: Vec<ServerSpec>,
    /// NTP Pool zone used when no --server is given.
    #[arg(long, value_name = "ZONE", default_value = "pool.ntp.org")]
    pub pool_zone: String,
    /// How many servers must agree (default: 2 when 3 or more are asked, else 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=32))]
    pub min_agree: Option<u8>,
    /// Stop waiting for servers after this long.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::duration::parse)]
    pub timeout: Duration,
    /// Override the floor (default: this binary's build time). Servers claiming a time below
    /// the floor are falsetickers. `sync` never sets the clock, so lowering it is safe here:
    /// use it to inspect a server that is known to be behind.
    #[arg(long, value_name = "RFC3339", value_parser = crate::duration::parse_time)]
    pub floor: Option<UnixTime>,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `sync`.
pub async fn run(args: Args) -> ExitCode {
    let servers = if args.servers.is_empty() {
        pool_servers(&args.pool_zone, 4)
    } else {
        args.servers
    };
    let mut opts = SyncOptions::new(servers);
    opts.min_agree = args.min_agree;
    opts.timeout = args.timeout;
    if let Some(f) = args.floor {
        opts.client.floor = f;
    }
    if usize::from(opts.effective_min_agree()) > opts.servers.len() {
        eprintln!(
            "error: --min-agree {} needs at least that many servers; {} given",
            opts.effective_min_agree(),
            opts.servers.len()
        );
        return ExitCode::from(EXIT_USAGE);
    }
    if opts.servers.len() > trusttime_core::select::MAX_SOURCES {
        eprintln!(
            "error: at most {} servers",
            trusttime_core::select::MAX_SOURCES
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let clock: Arc<dyn LocalClock> = Arc::new(SystemClock);
    let report = sync(&opts, clock).await;
    if args.json {
        println!("{}", to_json(&report));
    } else {
        print!("{}", to_text(&report));
    }
    match &report.result {
        Ok(_) => ExitCode::from(EXIT_OK),
        Err(why) => {
            eprintln!("error: no consensus: {why}");
            ExitCode::from(EXIT_FAIL)
        }
    }
}

fn secs(d: SignedDuration) -> f64 {
    d.as_secs_f64()
}

/// The `--json` object.
#[must_use]
pub fn to_json(r: &SyncReport) -> serde_json::Value {
    let sources: Vec<_> = r
        .sources
        .iter()
        .map(|s| {
            json!({
                "server": s.server.to_string(),
                "address": s.address.map(|a| a.to_string()),
                "offset_s": s.sample.map(|x| secs(x.offset)),
                "delay_s": s.sample.map(|x| secs(x.delay)),
                "error_s": s.sample.map(|x| secs(x.error_bound())),
                "stratum": s.sample.map(|x| x.stratum),
                "verdict": s.verdict.as_str(),
                "kiss_code": s.kiss.map(|k| k.to_string()),
                "reason": s.reason,
            })
        })
        .collect();
    let (ok, offset, earliest, latest, agreed, error) = match &r.result {
        Ok(c) => (
            true,
            Some(secs(c.offset)),
            Some(c.interval.earliest.to_string()),
            Some(c.interval.latest.to_string()),
            c.agreed,
            None,
        ),
        Err(e) => (false, None, None, None, 0, Some(e.to_string())),
    };
    json!({
        "consensus": ok,
        "offset_s": offset,
        "earliest": earliest,
        "latest": latest,
        "error_s": r.result.as_ref().ok().map(|c| secs(c.interval.radius())),
        "agreed": agreed,
        "min_agree": r.min_agree,
        "elapsed_ms": r.elapsed.as_secs_f64() * 1e3,
        "authenticated": false,
        "provenance": "ntp",
        "warning": "plain NTP is unauthenticated: an attacker on the network path can shift this time",
        "error": error,
        "sources": sources,
    })
}

/// The human report.
#[must_use]
pub fn to_text(r: &SyncReport) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    match &r.result {
        Ok(c) => {
            let _ = writeln!(
                o,
                "trusted time   {} .. {}",
                c.interval.earliest, c.interval.latest
            );
            let _ = writeln!(
                o,
                "               {} ({} of {} sources agree)",
                c.interval,
                c.agreed,
                r.sources.len()
            );
            let dir = if c.offset.is_negative() {
                "ahead"
            } else {
                "behind"
            };
            let _ = writeln!(
                o,
                "local clock    {} {dir} (offset {:+.6} s)",
                Human(c.offset),
                secs(c.offset)
            );
        }
        Err(e) => {
            let _ = writeln!(o, "no consensus   {e}");
        }
    }
    let _ = writeln!(
        o,
        "sources        (need {} agreeing; decided in {:.1} ms)",
        r.min_agree,
        r.elapsed.as_secs_f64() * 1e3
    );
    for s in &r.sources {
        let addr = s
            .address
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".into());
        let name = if addr == s.server.to_string() {
            addr
        } else {
            format!("{} ({addr})", s.server)
        };
        let _ = writeln!(o, "  {:<13} {name}: {}", s.verdict.as_str(), s.reason);
    }
    let _ = writeln!(o, "warning        plain NTP is unauthenticated: an attacker on the network path can shift this time");
    o
}
