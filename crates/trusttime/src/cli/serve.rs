//! `trusttime serve`: answer NTP requests from the local clock.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args as ClapArgs;
use trusttime_core::SignedDuration;

use super::{EXIT_FAIL, EXIT_OK};
use crate::clock::{LocalClock, ShiftedClock};
use crate::serve::{ServeOptions, Server};

/// Serve NTP (mode 4 replies) from this machine's clock, for devices on the LAN.
///
/// --offset shifts the time served (for demos and tests: a server that lies by a known
/// amount). Port 123 needs root or CAP_NET_BIND_SERVICE; any port above 1023 does not.
///
/// Examples:
///   trusttime serve --listen 0.0.0.0:123
///   trusttime serve --listen 127.0.0.1:11123 --offset 1h
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
    /// Stratum to announce.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=15))]
    pub stratum: u8,
}

/// Runs `serve` until interrupted.
pub async fn run(args: Args) -> ExitCode {
    let clock: Arc<dyn LocalClock> = Arc::new(ShiftedClock {
        offset: args.offset,
    });
    let opts = ServeOptions {
        stratum: args.stratum,
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
        "serving NTP on {addr} (offset {}); Ctrl-C stops",
        args.offset
    );
    tokio::select! {
        () = server.run() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    ExitCode::from(EXIT_OK)
}
