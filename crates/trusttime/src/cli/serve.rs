//! `trusttime serve`: answer NTP requests from the local clock.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Args as ClapArgs;
use trusttime_core::SignedDuration;

use super::{EXIT_FAIL, EXIT_OK, EXIT_USAGE};
use crate::clock::{LocalClock, ShiftedClock};
use crate::serve::{follow_daemon, ServeOptions, Server, Trust};

/// Serve NTP (mode 4 replies) to devices on the LAN, never an untrusted time as if it were good.
///
/// What is served, and whether it is trusted:
///   - by default, the running daemon's trusted time (asked over its control socket every
///     second; --config or --socket say where). While the daemon is not running, not
///     reachable, or has no trusted time within --max-error (1 s), every reply says
///     "unsynchronised" (leap indicator 3, stratum 16) and NTP clients ignore it;
///   - with --trust-local-clock, this machine's clock, which you vouch for (it is kept right by
///     something else, e.g. chronyd or GPS); still answered as unsynchronised while it reads
///     below the floor (this binary's build time), as a device with a dead RTC battery does.
///
/// --offset shifts the time served (for demos and tests: a server that lies by a known
/// amount). Port 123 needs root or CAP_NET_BIND_SERVICE; any port above 1023 does not.
///
/// Exit status: 0 stopped by Ctrl-C, 1 the address cannot be bound, 2 usage error.
///
/// Examples:
///   trusttime serve --listen 0.0.0.0:123                        # the daemon's trusted time
///   trusttime serve --listen 0.0.0.0:123 --trust-local-clock    # this clock, vouched for
///   trusttime serve --listen 127.0.0.1:11123 --trust-local-clock --offset 1h
///
/// Exit status: 0 stopped (Ctrl-C), 1 cannot listen, 2 usage error.
#[derive(Debug, ClapArgs)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Address and port to listen on.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:11123")]
    pub listen: SocketAddr,
    /// Serve the local time shifted by this much (e.g. 1h, -90d).
    #[arg(long, value_name = "DURATION", default_value = "0s", allow_hyphen_values = true,
          value_parser = crate::duration::parse_signed)]
    pub offset: SignedDuration,
    /// Stratum to announce while the time served is trusted.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=15))]
    pub stratum: u8,
    /// Serve the daemon's time as synchronised only while its uncertainty is at most this
    /// (many SNTP clients ignore the error an NTP reply states).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::duration::parse)]
    pub max_error: std::time::Duration,
    /// Serve this machine's clock as synchronised (while at or above the floor) instead of the
    /// daemon's trusted time: only when something else keeps this clock right.
    #[arg(long)]
    pub trust_local_clock: bool,
    #[command(flatten)]
    pub at: crate::cli::daemon::Where,
}

/// Runs `serve` until interrupted.
pub async fn run(args: Args) -> ExitCode {
    let clock: Arc<dyn LocalClock> = Arc::new(ShiftedClock {
        offset: args.offset,
    });
    let trust = if args.trust_local_clock {
        Trust::LocalClock {
            floor: trusttime_core::floor::build_time(),
        }
    } else {
        let socket = match args.at.socket() {
            Ok(s) => s,
            Err(e) => {
                errln!("error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
        let link = Arc::new(Mutex::new(None));
        crate::task::spawn(follow_daemon(socket, Arc::clone(&link), Arc::clone(&clock)));
        Trust::Daemon {
            link,
            max_error: SignedDuration::from_std(args.max_error),
        }
    };
    let from = match &trust {
        Trust::Daemon { .. } => "the daemon's trusted time (unsynchronised while it has none)",
        _ => "this machine's clock (unsynchronised below the floor)",
    };
    let opts = ServeOptions {
        stratum: args.stratum,
        trust,
        ..ServeOptions::default()
    };
    let server = match Server::bind(args.listen, clock, opts).await {
        Ok(s) => s,
        Err(e) => {
            errln!("error: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(EXIT_FAIL);
        }
    };
    let addr = server
        .local_addr()
        .map_or_else(|_| args.listen.to_string(), |a| a.to_string());
    tracing::info!(%addr, offset = %args.offset, "serving NTP");
    errln!(
        "serving NTP on {addr} from {from} (offset {}); Ctrl-C stops",
        args.offset
    );
    tokio::select! {
        () = server.run() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    ExitCode::from(EXIT_OK)
}
