//! `trusttime daemon`, `validate-config`, `status`, `sources`, `wait`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args as ClapArgs, ValueEnum};
use trusttime_core::Purpose;

use super::{EXIT_FAIL, EXIT_OK, EXIT_USAGE};
use crate::clock::SystemClock;
use crate::config::{Config, DEFAULT_PATH};
use crate::daemon::Daemon;
use crate::platform::{has_cap_sys_time, LinuxClock, LinuxRtc, Rtc, NO_CAP_MESSAGE};

/// Run the time daemon: poll the configured sources, keep a trusted time, serve `status`.
///
/// Reads the config (default /etc/trusttime/trusttime.toml), restores persisted state, checks
/// the RTC, then polls like a good citizen (random start-up delay, adaptive 64..1024 s
/// interval, backoff, Kiss-o'-Death). Sets the clock unless observe-only; without
/// CAP_SYS_TIME it refuses to start and says how to run observe-only. Sends systemd READY=1
/// when time is first trusted.
#[derive(Debug, ClapArgs)]
pub struct DaemonArgs {
    /// The config file.
    #[arg(long, short = 'c', value_name = "FILE", default_value = DEFAULT_PATH)]
    pub config: PathBuf,
    /// Never change the system clock or the RTC (overrides the config).
    #[arg(long)]
    pub observe_only: bool,
}

/// Check a config file and print what it means; exit 0 if valid, 2 if not.
#[derive(Debug, ClapArgs)]
pub struct ValidateArgs {
    /// The config file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Where to find the daemon.
#[derive(Debug, ClapArgs)]
pub struct Where {
    /// The daemon's config file (to find its control socket).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The control socket (default: from the config, else /run/trusttime/control.sock).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

impl Where {
    /// The control socket to use.
    pub fn socket(&self) -> Result<PathBuf, String> {
        if let Some(s) = &self.socket {
            return Ok(s.clone());
        }
        let path = self
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
        match Config::load(&path) {
            Ok(c) => Ok(c.raw.daemon.control_socket),
            Err(e) if self.config.is_some() => Err(e.to_string()),
            Err(_) => Ok(crate::config::DaemonConfig::default().control_socket),
        }
    }
}

/// Show the daemon's trusted time, state and a one-line verdict.
#[derive(Debug, ClapArgs)]
pub struct StatusArgs {
    #[command(flatten)]
    pub at: Where,
    /// One JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What readiness means.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ForPurpose {
    /// Certificate checks: 1 hour.
    Tls,
    /// AWS SigV4 signatures: 5 minutes.
    Sigv4,
}

/// Block until the daemon's time is trusted to an error (exit 0), or time out (exit 1).
///
/// Examples:
///   trusttime wait --for tls --timeout 30s
///   trusttime wait --max-error 100ms
#[derive(Debug, ClapArgs)]
#[command(verbatim_doc_comment)]
pub struct WaitArgs {
    #[command(flatten)]
    pub at: Where,
    /// Purpose: tls (1 h) or sigv4 (5 min).
    #[arg(long = "for", value_enum, conflicts_with = "max_error")]
    pub purpose: Option<ForPurpose>,
    /// Largest acceptable error.
    #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse)]
    pub max_error: Option<Duration>,
    /// Give up after this long.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::duration::parse)]
    pub timeout: Duration,
}

/// `trusttime daemon`.
pub async fn run_daemon(args: DaemonArgs) -> ExitCode {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let observe_only = args.observe_only || config.raw.clock.observe_only;
    if !observe_only && !has_cap_sys_time() {
        eprintln!("error: {NO_CAP_MESSAGE}");
        return ExitCode::from(EXIT_FAIL);
    }
    let rtc: Option<Arc<dyn Rtc>> = config
        .raw
        .clock
        .rtc
        .as_deref()
        .map(|p| Arc::new(LinuxRtc::new(p)) as Arc<dyn Rtc>);
    let daemon = Daemon {
        config,
        local: Arc::new(SystemClock),
        control: Arc::new(LinuxClock),
        rtc,
        observe_only,
    };
    let (handle, fut) = match daemon.start() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FAIL);
        }
    };
    tracing::info!(observe_only, "trusttime daemon started");
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot watch for SIGTERM: {e}");
            return ExitCode::from(EXIT_FAIL);
        }
    };
    tokio::select! {
        () = fut => {}
        _ = tokio::signal::ctrl_c() => handle.shutdown(),
        _ = term.recv() => handle.shutdown(),
    }
    tracing::info!("trusttime daemon stopped; state saved");
    ExitCode::from(EXIT_OK)
}

/// `trusttime validate-config`.
pub fn run_validate(args: &ValidateArgs) -> ExitCode {
    match Config::load(&args.file) {
        Ok(c) => {
            println!("{}: valid", args.file.display());
            for w in &c.warnings {
                println!("  warning:       {w}");
            }
            println!(
                "  sources:       {}",
                c.sources
                    .iter()
                    .map(|s| format!("{} {}", s.kind.as_str(), s.spec))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if !c.https_date.is_empty() {
                println!("  https-date:    {}", c.https_date.join(", "));
            }
            let required = c.require_authenticated();
            if !required.is_empty() {
                println!("  authenticated time required for: {}", required.join(", "));
            }
            println!("  observe-only:  {}", c.raw.clock.observe_only);
            println!("  drift bound:   {} ppm", c.raw.clock.drift_ppm);
            println!(
                "  poll:          2^{} .. 2^{} s",
                c.raw.daemon.min_poll, c.raw.daemon.max_poll
            );
            println!("  state dir:     {}", c.raw.daemon.state_dir.display());
            println!("  control:       {}", c.raw.daemon.control_socket.display());
            if c.sources.is_empty() {
                println!(
                    "  note: no sources: the daemon will only hold over (RTC, persisted state)"
                );
            }
            ExitCode::from(EXIT_OK)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

async fn ask(at: &Where, command: &str) -> Result<serde_json::Value, (u8, String)> {
    let sock = at.socket().map_err(|e| (EXIT_USAGE, e))?;
    crate::control::ask(&sock, command)
        .await
        .map_err(|e| (EXIT_FAIL, e))
}

/// `trusttime status`.
pub async fn run_status(args: StatusArgs) -> ExitCode {
    match ask(&args.at, "status").await {
        Ok(v) => {
            if args.json {
                println!("{v}");
            } else {
                let g = |k: &str| {
                    v.get(k)
                        .map(|x| x.as_str().map_or_else(|| x.to_string(), ToOwned::to_owned))
                        .unwrap_or_default()
                };
                println!("{}", g("verdict"));
                println!("state        {}", g("state"));
                println!("interval     {} .. {}", g("earliest"), g("latest"));
                println!(
                    "offset       {} s (true time minus system clock)",
                    g("offset_s")
                );
                println!("uncertainty  {} s", g("uncertainty_s"));
                println!("last sync    {}", g("last_sync"));
                println!("next poll    in {} s", g("next_poll_in_s"));
                println!(
                    "frequency    {} ppm (drift bound {} ppm)",
                    g("freq_ppm"),
                    g("drift_bound_ppm")
                );
                println!("floor        {}", g("floor"));
                println!(
                    "clock        {}",
                    if v["observe_only"] == true {
                        "observe-only (never changed)"
                    } else {
                        "disciplined"
                    }
                );
                if let Some(notes) = v["notes"].as_array() {
                    for n in notes {
                        println!("note         {}", n.as_str().unwrap_or_default());
                    }
                }
            }
            ExitCode::from(EXIT_OK)
        }
        Err((code, e)) => {
            eprintln!("error: {e}");
            ExitCode::from(code)
        }
    }
}

/// `trusttime sources`.
pub async fn run_sources(args: StatusArgs) -> ExitCode {
    match ask(&args.at, "sources").await {
        Ok(v) => {
            if args.json {
                println!("{v}");
            } else if let Some(list) = v["sources"].as_array() {
                println!(
                    "{:<28} {:<13} {:>5} {:>4} {:>14}  reason",
                    "address", "verdict", "reach", "poll", "offset s"
                );
                for s in list {
                    println!(
                        "{:<28} {:<13} {:>5} {:>4} {:>14}  {}",
                        s["address"].as_str().unwrap_or_default(),
                        s["verdict"].as_str().unwrap_or_default(),
                        s["reach"].as_str().unwrap_or_default(),
                        s["poll"],
                        s["offset_s"]
                            .as_f64()
                            .map_or_else(|| "-".into(), |o| format!("{o:+.6}")),
                        s["reason"].as_str().unwrap_or_default()
                    );
                }
            }
            ExitCode::from(EXIT_OK)
        }
        Err((code, e)) => {
            eprintln!("error: {e}");
            ExitCode::from(code)
        }
    }
}

/// `trusttime wait`.
pub async fn run_wait(args: WaitArgs) -> ExitCode {
    let max_error = match (args.purpose, args.max_error) {
        (_, Some(d)) => d,
        (Some(ForPurpose::Sigv4), None) => Purpose::SigV4
            .default_max_error()
            .to_std()
            .unwrap_or_default(),
        _ => Purpose::Tls
            .default_max_error()
            .to_std()
            .unwrap_or_default(),
    };
    // The purpose named (or implied by the default), for `[clock] require-authenticated`.
    let purpose = match (args.purpose, args.max_error) {
        (Some(ForPurpose::Sigv4), _) => Some("sigv4"),
        (Some(ForPurpose::Tls), _) | (None, None) => Some("tls"),
        (None, Some(_)) => None,
    };
    let sock = match args.at.socket() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut last = String::from("no answer from the daemon yet");
    while start.elapsed() < args.timeout {
        match crate::control::ask(&sock, "status").await {
            Ok(v) => {
                let state = v["state"].as_str().unwrap_or("unknown").to_owned();
                let unc = v["uncertainty_s"].as_f64();
                let needs_auth = purpose.is_some_and(|p| {
                    v["require_authenticated"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == p))
                });
                let auth_ok = !needs_auth || v["authenticated"] == true;
                if state != "unknown"
                    && auth_ok
                    && unc.is_some_and(|u| u <= max_error.as_secs_f64())
                {
                    if tty {
                        eprintln!(
                            "\rtime trusted ({state}, ± {:.3} s) after {:.1} s                ",
                            unc.unwrap_or_default(),
                            start.elapsed().as_secs_f64()
                        );
                    }
                    return ExitCode::from(EXIT_OK);
                }
                last = format!(
                    "state {state}, uncertainty {}{}",
                    unc.map_or_else(|| "unbounded".into(), |u| format!("{u:.3} s")),
                    if auth_ok {
                        ""
                    } else {
                        "; the config requires authenticated time (NTS, Roughtime) for this purpose"
                    }
                );
            }
            Err(e) => last = e,
        }
        if tty {
            eprint!(
                "\rwaiting for trusted time (± {:?}): {last} [{:.0} s]   ",
                max_error,
                start.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if tty {
        eprintln!();
    }
    eprintln!(
        "error: time not trusted to ± {max_error:?} within {:?}: {last}",
        args.timeout
    );
    ExitCode::from(EXIT_FAIL)
}

/// Set the daemon's time by hand: TIME (RFC 3339) ± --uncertainty.
///
/// Refused below the floor; refused outside the network-trusted interval (the last network
/// consensus, widened by the drift bound) and when less precise than the network time it
/// would replace, unless --force and the config allows it ([clock] allow-manual-force). With
/// no network time, it is used as `manual` holdover: a hint that the next network consensus
/// overrides, and it never raises the floor. The change is logged and shown in `status`.
///
/// --reset-floor (root only, logged) puts the floor back to the build time and forgets every
/// trusted time: the recovery for a device whose floor was raised by a wrong authenticated
/// time. Given with TIME, that time is then set.
///
/// Examples:
///   trusttime set 2026-11-23T08:30:00Z --uncertainty 1m
///   sudo trusttime set --reset-floor
///   sudo trusttime set --reset-floor 2026-11-23T08:30:00Z --uncertainty 1m
#[derive(Debug, ClapArgs)]
#[command(verbatim_doc_comment)]
pub struct SetArgs {
    /// The time, RFC 3339 (e.g. 2026-11-23T08:30:00Z).
    #[arg(value_name = "TIME", value_parser = crate::duration::parse_time, required_unless_present = "reset_floor")]
    pub time: Option<trusttime_core::UnixTime>,
    /// How far off TIME may be.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = crate::duration::parse)]
    pub uncertainty: Duration,
    /// Override a network-trusted interval (only if the config allows it).
    #[arg(long)]
    pub force: bool,
    /// Reset the floor to the build time and forget every trusted time first (root only).
    #[arg(long)]
    pub reset_floor: bool,
    #[command(flatten)]
    pub at: Where,
}

/// `trusttime set`.
pub async fn run_set(args: SetArgs) -> ExitCode {
    let sock = match args.at.socket() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let req = crate::control::Request {
        command: "set".into(),
        unix_ms: args.time.map(trusttime_core::UnixTime::as_millis),
        uncertainty_ms: Some(i64::try_from(args.uncertainty.as_millis()).unwrap_or(i64::MAX)),
        force: Some(args.force),
        reset_floor: args.reset_floor.then_some(true),
    };
    match crate::control::ask_request(&sock, &req).await {
        Ok(v) => {
            if args.time.is_some() {
                println!("time set: {}", v["change"]);
            } else {
                println!("floor reset: {}", v["change"]);
            }
            ExitCode::from(EXIT_OK)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAIL)
        }
    }
}

#[cfg(feature = "web")]
/// Web page helpers.
#[derive(Debug, ClapArgs)]
pub struct WebArgs {
    #[command(subcommand)]
    pub command: WebCommand,
}

#[cfg(feature = "web")]
/// `trusttime web ...`.
#[derive(Debug, clap::Subcommand)]
pub enum WebCommand {
    /// Make a new pairing code for the web page and print it (the old one stops working).
    PairingCode {
        /// The daemon's config file (for its state directory).
        #[arg(long, short = 'c', value_name = "FILE", default_value = DEFAULT_PATH)]
        config: PathBuf,
    },
}

#[cfg(feature = "web")]
/// `trusttime web`.
pub fn run_web(args: WebArgs) -> ExitCode {
    match args.command {
        WebCommand::PairingCode { config } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            match crate::web::new_pairing_code(&cfg.raw.daemon.state_dir) {
                Ok(code) => {
                    println!("{code}");
                    ExitCode::from(EXIT_OK)
                }
                Err(e) => {
                    eprintln!(
                        "error: cannot store the pairing code in {}: {e}",
                        cfg.raw.daemon.state_dir.display()
                    );
                    ExitCode::from(EXIT_FAIL)
                }
            }
        }
    }
}
