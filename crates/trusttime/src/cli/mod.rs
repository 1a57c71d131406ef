//! The command-line interface. One module per subcommand; each exposes an `Args` struct
//! (clap) and a `run` function returning an [`ExitCode`].
//!
//! Exit codes mean the same thing everywhere: 0 success, 1 the thing asked for did not happen
//! (no consensus, timeout, invalid certificate), 2 usage or configuration error, 141 stdout
//! closed by its reader (see [`output`]); commands that need more say so in their `--help`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[macro_use]
pub mod output;
#[cfg(feature = "tls")]
pub mod check;
#[cfg(feature = "mqtt")]
pub mod connect;
pub mod daemon;
pub mod demo;
pub mod serve;
pub mod sync;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the operation did not succeed (no consensus, timeout, ...).
pub const EXIT_FAIL: u8 = 1;
/// Exit code: usage or configuration error.
pub const EXIT_USAGE: u8 = 2;

/// trusttime: a time a device can trust before it opens a TLS connection.
///
/// Devices without a working real-time clock boot in 1970 or 2000, and TLS then fails with
/// opaque certificate errors. trusttime asks several time servers at once, keeps only the ones
/// that agree, and gives the device a time interval with an honest error bound and a
/// provenance. Start with `trusttime demo` (offline, loopback only).
///
/// Exit status, for every command: 0 success, 1 the thing asked for did not happen (no
/// consensus, timeout, invalid certificate), 2 usage or configuration error, 141 stdout was
/// closed by its reader (`| head -1`). Commands that need more say so in their --help.
#[derive(Debug, Parser)]
#[command(
    name = "trusttime",
    version,
    about,
    long_about,
    propagate_version = true
)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info`, `trusttime=debug`.
    /// The `RUST_LOG` environment variable is used when this is not given.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands. Each one's help (`trusttime CMD --help`) is the doc of its `Args`.
#[derive(Debug, Subcommand)]
pub enum Command {
    // Offline demo on loopback: three servers, one lying, and a device at the floor.
    Demo(demo::Args),
    // Ask several NTP servers at once and print the time the majority agrees on.
    Sync(sync::Args),
    // Serve NTP from this machine's clock (optionally shifted).
    Serve(serve::Args),
    // Fetch a server's certificate chain and judge it by trusted time, with a diagnosis.
    #[cfg(feature = "tls")]
    Check(check::Args),
    // Run the time daemon (see `trusttime daemon --help`).
    Daemon(daemon::DaemonArgs),
    // Check a config file.
    ValidateConfig(daemon::ValidateArgs),
    // Show the daemon's trusted time and state.
    Status(daemon::StatusArgs),
    // Show the daemon's sources and their verdicts.
    Sources(daemon::SourcesArgs),
    // Block until the daemon's time is trusted (exit 0) or time out (exit 1).
    Wait(daemon::WaitArgs),
    // Set the daemon's time by hand (authenticated by the control socket's permissions).
    Set(daemon::SetArgs),
    // The local web page for setting the time: `trusttime web pairing-code`.
    #[cfg(feature = "web")]
    Web(daemon::WebArgs),
    // Connect to an MQTT broker (AWS IoT Core) over TLS once the time is trusted, and publish.
    #[cfg(feature = "mqtt")]
    Connect(connect::Args),
}

/// Parses the command line, sets up logging and runs the chosen command.
pub fn main() -> ExitCode {
    output::ensure_standard_fds();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(EXIT_USAGE),
            };
        }
    };
    output::init_logging(cli.log.as_deref());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAIL);
        }
    };
    rt.block_on(run(cli.command))
}

async fn run(command: Command) -> ExitCode {
    match command {
        Command::Demo(a) => demo::run(a).await,
        Command::Sync(a) => sync::run(a).await,
        Command::Serve(a) => serve::run(a).await,
        #[cfg(feature = "tls")]
        Command::Check(a) => check::run(a).await,
        Command::Daemon(a) => daemon::run_daemon(a).await,
        Command::ValidateConfig(a) => daemon::run_validate(&a),
        Command::Status(a) => daemon::run_status(a).await,
        Command::Sources(a) => daemon::run_sources(a).await,
        Command::Wait(a) => daemon::run_wait(a).await,
        Command::Set(a) => daemon::run_set(a).await,
        #[cfg(feature = "web")]
        Command::Web(a) => daemon::run_web(a),
        #[cfg(feature = "mqtt")]
        Command::Connect(a) => connect::run(a).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `trusttime CMD --help` teaches: every command's long help (from its `Args` doc) has
    /// examples and its exit status, and the top-level help lists the shared exit codes.
    #[test]
    fn every_command_help_has_examples_and_exit_status() {
        let mut cli = super::Cli::command();
        let top = cli.render_long_help().to_string();
        assert!(top.contains("Exit status"), "{top}");
        let mut names = Vec::new();
        for sub in cli.get_subcommands_mut() {
            let name = sub.get_name().to_owned();
            if name == "help" {
                continue; // clap's own
            }
            let help = sub.render_long_help().to_string();
            assert!(help.contains("Examples:\n  trusttime "), "{name}: {help}");
            assert!(help.contains("Exit status: 0 "), "{name}: {help}");
            names.push(name);
        }
        for expected in [
            "demo",
            "sync",
            "serve",
            "daemon",
            "validate-config",
            "status",
        ] {
            assert!(names.iter().any(|n| n == expected), "{names:?}");
        }
        for expected in ["sources", "wait", "set"] {
            assert!(names.iter().any(|n| n == expected), "{names:?}");
        }
        let sync = cli
            .find_subcommand_mut("sync")
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        assert!(sync.contains("--nts"), "{sync}");
    }
}
