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
use crate::daemon_api::{Command, SetTime};
use crate::platform::{has_cap_sys_time, LinuxClock, LinuxRtc, Rtc, NO_CAP_MESSAGE};

/// Run the time daemon: poll the configured sources, keep a trusted time, serve `status`.
///
/// Reads the config (default /etc/trusttime/trusttime.toml), restores persisted state, checks
/// the RTC, then polls like a good citizen (random start-up delay, adaptive 64..1024 s
/// interval, backoff, Kiss-o'-Death). Sets the clock unless observe-only; without
/// CAP_SYS_TIME it refuses to start and says how to run observe-only. Sends systemd READY=1
/// when time is first trusted. Logs go to stderr (the journal under systemd), without colours
/// unless stderr is a terminal; a closed or full stderr never stops it.
///
/// Examples:
///   trusttime daemon --config /etc/trusttime/trusttime.toml
///   trusttime daemon --config ./trusttime.toml --observe-only --log debug
///
/// Exit status: 0 stopped (SIGTERM, Ctrl-C), 1 cannot start (no CAP_SYS_TIME, control
/// socket), 2 config error (as `trusttime validate-config` reports it).
#[derive(Debug, ClapArgs)]
#[command(verbatim_doc_comment)]
pub struct DaemonArgs {
    /// The config file.
    #[arg(long, short = 'c', value_name = "FILE", default_value = DEFAULT_PATH)]
    pub config: PathBuf,
    /// Never change the system clock or the RTC (overrides the config).
    #[arg(long)]
    pub observe_only: bool,
}

/// Check a config file as the daemon would at start, and print what it means.
///
/// Checks the syntax (unknown and duplicate keys are errors), every value's range (poll
/// exponents 6..10, i.e. 64..1024 s, lower only for sources on loopback), and the files and
/// devices it names: trust anchors and report certificates exist and parse, the RTC can be
/// read, the state and control-socket directories are usable. Errors name the file and line.
/// A FIFO, a device or a file over 1 MiB is refused without being read.
///
/// Examples:
///   trusttime validate-config /etc/trusttime/trusttime.toml
///   trusttime validate-config dist/trusttime.toml && echo ok
///
/// Exit status: 0 valid, 2 not (the reason on stderr).
#[derive(Debug, ClapArgs)]
#[command(verbatim_doc_comment)]
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
///
/// Text: the verdict, state, interval, offset and uncertainty in human units, last sync,
/// frequency, floor, start-up notes and every manual change (who, from where, old and new
/// time). `--json`: one object, documented in docs/json.md. The control socket must belong to
/// root or to you (a socket bound by another user is not believed).
///
/// Examples:
///   trusttime status
///   trusttime status --json --config /etc/trusttime/trusttime.toml
///
/// Exit status: 0 answered, 1 the daemon cannot be reached or timed out, 2 usage error or
/// the socket may not be used (permission denied: run as root or a member of its group; or
/// it belongs to another user).
#[derive(Debug, ClapArgs)]
#[command(verbatim_doc_comment)]
pub struct StatusArgs {
    #[command(flatten)]
    pub at: Where,
    /// One JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Show the daemon's sources: verdict, reach, poll interval, offset and the reason.
///
/// `--json`: one object, documented in docs/json.md.
///
/// Examples:
///   trusttime sources
///   trusttime sources --json | jq '.sources[] | select(.verdict != "agreed")'
///
/// Exit status: 0 answered, 1 the daemon cannot be reached or timed out, 2 usage error or
/// the control socket may not be used.
#[derive(Debug, ClapArgs)]
#[command(verbatim_doc_comment)]
pub struct SourcesArgs {
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
/// Retries while the daemon is starting or busy; stops at once when waiting cannot help
/// (permission denied on the control socket, or a socket owned by another user).
///
/// Examples:
///   trusttime wait --for tls --timeout 30s
///   trusttime wait --max-error 100ms
///
/// Exit status: 0 trusted, 1 timed out (the last state on stderr), 2 usage error or the
/// control socket may not be used.
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
            errln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(e) = config.check_files() {
        errln!("error: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let observe_only = args.observe_only || config.raw.clock.observe_only;
    if !observe_only && !has_cap_sys_time() {
        errln!("error: {NO_CAP_MESSAGE}");
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
            errln!("error: {e}");
            return ExitCode::from(EXIT_FAIL);
        }
    };
    tracing::info!(observe_only, "trusttime daemon started");
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            errln!("error: cannot watch for SIGTERM: {e}");
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
    let checked = Config::load(&args.file).and_then(|c| {
        c.check_files()?;
        c.check_rtc()?;
        Ok(c)
    });
    match checked {
        Ok(c) => {
            outln!("{}: valid", args.file.display());
            for w in &c.warnings {
                outln!("  warning:       {w}");
            }
            outln!(
                "  sources:       {}",
                c.sources
                    .iter()
                    .map(|s| format!("{} {}", s.kind.as_str(), s.spec))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if !c.https_date.is_empty() {
                outln!("  https-date:    {}", c.https_date.join(", "));
            }
            let required = c.require_authenticated();
            if !required.is_empty() {
                outln!("  authenticated time required for: {}", required.join(", "));
            }
            outln!("  observe-only:  {}", c.raw.clock.observe_only);
            outln!("  drift bound:   {} ppm", c.raw.clock.drift_ppm);
            let secs = |e: i8| {
                if e >= 0 {
                    format!("{} s", 1u64 << e)
                } else {
                    format!("1/{} s", 1u64 << -e)
                }
            };
            outln!(
                "  poll:          {} .. {} (min-poll {}, max-poll {})",
                secs(c.raw.daemon.min_poll),
                secs(c.raw.daemon.max_poll),
                c.raw.daemon.min_poll,
                c.raw.daemon.max_poll
            );
            outln!("  state dir:     {}", c.raw.daemon.state_dir.display());
            outln!("  control:       {}", c.raw.daemon.control_socket.display());
            if c.sources.is_empty() {
                outln!("  note: no sources: the daemon will only hold over (RTC, persisted state)");
            }
            ExitCode::from(EXIT_OK)
        }
        Err(e) => {
            errln!("error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Exit status for a failed request: 2 when only a change of permissions or config can help
/// (permission denied, a socket owned by another user), else 1.
fn exit_for(e: &crate::control::AskError) -> u8 {
    if e.is_final() {
        EXIT_USAGE
    } else {
        EXIT_FAIL
    }
}

async fn ask(at: &Where, command: &str) -> Result<serde_json::Value, (u8, String)> {
    let sock = at.socket().map_err(|e| (EXIT_USAGE, e))?;
    crate::control::ask(&sock, command)
        .await
        .map_err(|e| (exit_for(&e), e.to_string()))
}

/// `trusttime status`.
pub async fn run_status(args: StatusArgs) -> ExitCode {
    match ask(&args.at, "status").await {
        Ok(v) => {
            if args.json {
                outln!("{v}");
            } else {
                out!("{}", status_text(&v));
            }
            ExitCode::from(EXIT_OK)
        }
        Err((code, e)) => {
            errln!("error: {e}");
            ExitCode::from(code)
        }
    }
}

/// A duration in seconds in human units: `7.8 µs`, `1.1 ms`, `2.345 s`, `600.001 s (10
/// minutes)`; the sign is kept.
#[must_use]
pub fn human_secs(s: f64) -> String {
    let a = s.abs();
    let sign = if s < 0.0 { "-" } else { "" };
    if !s.is_finite() {
        "unknown".into()
    } else if a < 1e-3 {
        format!("{sign}{:.1} µs", a * 1e6)
    } else if a < 1.0 {
        format!("{sign}{:.1} ms", a * 1e3)
    } else if a < 60.0 {
        format!("{sign}{a:.3} s")
    } else {
        let words = trusttime_core::Human(trusttime_core::SignedDuration::from_secs_f64(a));
        format!("{sign}{a:.3} s ({words})")
    }
}

fn text<'a>(v: &'a serde_json::Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(serde_json::Value::as_str)
}

/// One manual change (an entry of `status`'s `manual_changes`, or `set`'s reply) in words.
#[must_use]
pub fn manual_change_text(c: &serde_json::Value) -> String {
    if let Some(r) = c.get("reset_floor").filter(|r| r.is_object()) {
        return format!(
            "floor reset from {} to {} (every trusted time forgotten), by {} at {}",
            text(r, "old").unwrap_or("?"),
            text(r, "new").unwrap_or("?"),
            text(c, "who").unwrap_or("?"),
            text(c, "at").unwrap_or("?"),
        );
    }
    let unc = c["uncertainty_ms"]
        .as_f64()
        .map_or_else(|| "?".into(), |ms| human_secs(ms / 1e3));
    format!(
        "{} ± {} (was {}), by {} at {}{}",
        text(c, "new").unwrap_or("?"),
        unc,
        text(c, "old").unwrap_or("unknown"),
        text(c, "who").unwrap_or("?"),
        text(c, "at").unwrap_or("?"),
        if c["forced"] == true {
            ", forced over the network-trusted interval"
        } else {
            ""
        }
    )
}

/// `status` as text: every line in words and human units; an unknown value says so.
#[must_use]
pub fn status_text(v: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let num = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
    let _ = writeln!(o, "{}", text(v, "verdict").unwrap_or("(no verdict)"));
    let _ = writeln!(
        o,
        "state        {} (provenance: {})",
        text(v, "state").unwrap_or("unknown"),
        text(v, "provenance").unwrap_or("none")
    );
    let _ = match (text(v, "earliest"), text(v, "latest")) {
        (Some(e), Some(l)) => writeln!(o, "interval     {e} .. {l}"),
        _ => writeln!(o, "interval     none yet (no trusted time)"),
    };
    let _ = match num("offset_s") {
        Some(x) => writeln!(
            o,
            "offset       {}{} ({})",
            if x >= 0.0 { "+" } else { "" },
            human_secs(x),
            if x >= 0.0 {
                "the system clock is behind the true time"
            } else {
                "the system clock is ahead of the true time"
            }
        ),
        None => writeln!(o, "offset       unknown"),
    };
    let _ = match num("uncertainty_s") {
        Some(x) => writeln!(o, "uncertainty  ± {}", human_secs(x)),
        None => writeln!(o, "uncertainty  unbounded"),
    };
    let _ = writeln!(
        o,
        "last sync    {}",
        text(v, "last_sync").unwrap_or("never")
    );
    let _ = match num("next_poll_in_s") {
        Some(x) => writeln!(o, "next poll    in {}", human_secs(x)),
        None => writeln!(o, "next poll    none scheduled"),
    };
    let bound = num("drift_bound_ppm").map_or_else(|| "?".into(), |b| format!("{b}"));
    let _ = match num("freq_ppm") {
        Some(f) => writeln!(o, "frequency    {f:+.3} ppm (drift bound {bound} ppm)"),
        None => writeln!(
            o,
            "frequency    not estimated yet (drift bound {bound} ppm)"
        ),
    };
    let _ = writeln!(o, "floor        {}", text(v, "floor").unwrap_or("?"));
    let _ = writeln!(
        o,
        "clock        {}",
        if v["observe_only"] == true {
            "observe-only (never changed)"
        } else {
            "disciplined"
        }
    );
    if let Some(notes) = v["notes"].as_array() {
        for n in notes {
            let _ = writeln!(o, "note         {}", n.as_str().unwrap_or_default());
        }
    }
    // Signed Roughtime evidence that a server lies: the newest one.
    if let Some(last) = v["chain_violations"].as_array().and_then(|l| l.last()) {
        let _ = writeln!(
            o,
            "roughtime    proven liar at {}: {}",
            text(last, "at").unwrap_or("?"),
            text(last, "text").unwrap_or_default()
        );
    }
    match v["manual_changes"].as_array() {
        Some(list) if !list.is_empty() => {
            let _ = writeln!(o, "set by hand  (oldest first)");
            for c in list {
                let _ = writeln!(o, "  {}", manual_change_text(c));
            }
        }
        _ => {
            let _ = writeln!(o, "set by hand  never since the daemon started");
        }
    }
    o
}

/// The daemon's trusted time from its `status` reply, for `purpose` (`tls`, `sigv4`): `None`
/// when it has none, or when its config requires authenticated time for that purpose and the
/// time is not authenticated.
#[must_use]
pub fn trusted_from_status(
    v: &serde_json::Value,
    purpose: &str,
) -> Option<trusttime_core::TrustedTime> {
    use trusttime_core::{Provenance, TimeInterval, UnixTime};
    let t = |k: &str| text(v, k).and_then(|s| UnixTime::parse_rfc3339(s).ok());
    let (earliest, latest) = (t("earliest")?, t("latest")?);
    if earliest > latest || text(v, "state").map_or(true, |s| s == "unknown") {
        return None;
    }
    let authenticated = v["authenticated"] == true;
    let required = v["require_authenticated"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == purpose));
    if required && !authenticated {
        return None;
    }
    let provenance = match text(v, "provenance") {
        Some("authenticated") if authenticated => Provenance::Authenticated,
        Some("ntp") => Provenance::Ntp,
        Some("manual") => Provenance::Manual,
        Some("rtc") => Provenance::Rtc,
        _ => Provenance::Persisted,
    };
    Some(trusttime_core::TrustedTime {
        interval: TimeInterval { earliest, latest },
        provenance,
    })
}

/// `trusttime sources`.
pub async fn run_sources(args: SourcesArgs) -> ExitCode {
    match ask(&args.at, "sources").await {
        Ok(v) => {
            if args.json {
                outln!("{v}");
            } else if let Some(list) = v["sources"].as_array() {
                outln!(
                    "{:<28} {:<13} {:>5} {:>4} {:>14}  reason",
                    "address",
                    "verdict",
                    "reach",
                    "poll",
                    "offset s"
                );
                for s in list {
                    outln!(
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
                if let Some(round) = v["last_round"].as_str() {
                    outln!("last poll: {round}");
                }
            }
            ExitCode::from(EXIT_OK)
        }
        Err((code, e)) => {
            errln!("error: {e}");
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
            errln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut last = String::from("no answer from the daemon yet");
    let within = format!("± {}", human_secs(max_error.as_secs_f64()));
    loop {
        let left = args.timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, crate::control::ask(&sock, "status")).await {
            Err(_) => break,
            Ok(Ok(v)) => {
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
                        errln!(
                            "\rtime trusted ({state}, ± {}) after {:.1} s                ",
                            human_secs(unc.unwrap_or_default()),
                            start.elapsed().as_secs_f64()
                        );
                    }
                    return ExitCode::from(EXIT_OK);
                }
                last = format!(
                    "state {state}, uncertainty {}{}",
                    unc.map_or_else(|| "unbounded".into(), |u| format!("± {}", human_secs(u))),
                    if auth_ok {
                        ""
                    } else {
                        "; the config requires authenticated time (NTS, Roughtime) for this purpose"
                    }
                );
            }
            // Waiting cannot fix permissions or a socket owned by someone else.
            Ok(Err(e)) if e.is_final() => {
                if tty {
                    errln!();
                }
                errln!("error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
            Ok(Err(e)) => last = e.to_string(),
        }
        if tty {
            err!(
                "\rwaiting for trusted time ({within}): {last} [{:.0} s]   ",
                start.elapsed().as_secs_f64()
            );
        }
        let left = args.timeout.saturating_sub(start.elapsed());
        tokio::time::sleep(left.min(Duration::from_millis(50))).await;
    }
    if tty {
        errln!();
    }
    errln!(
        "error: timed out after {}: time not trusted to {within}; last: {last}",
        human_secs(args.timeout.as_secs_f64())
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
///   trusttime set "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --uncertainty 10s
///   sudo trusttime set --reset-floor
///   sudo trusttime set --reset-floor 2026-11-23T08:30:00Z --uncertainty 1m
///
/// Exit status: 0 set, 1 refused by the daemon (the reason on stderr) or the daemon cannot
/// be reached, 2 usage error or the control socket may not be used.
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
            errln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let time = args.time.map(|t| SetTime {
        unix_ms: t.as_millis(),
        uncertainty_ms: i64::try_from(args.uncertainty.as_millis()).unwrap_or(i64::MAX),
        force: args.force,
    });
    let command = match (args.reset_floor, time) {
        (true, then) => Command::ResetFloor { then },
        (false, Some(t)) => Command::Set(t),
        (false, None) => {
            errln!("error: give a TIME to set, or --reset-floor");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match crate::control::ask_request(&sock, &command.into()).await {
        Ok(v) => {
            if args.time.is_some() {
                outln!("time set: {}", manual_change_text(&v["change"]));
            } else {
                outln!("floor reset: {}", manual_change_text(&v["change"]));
            }
            outln!("(logged; `trusttime status` lists the manual changes)");
            ExitCode::from(EXIT_OK)
        }
        Err(e) => {
            errln!("error: {e}");
            ExitCode::from(exit_for(&e))
        }
    }
}

#[cfg(feature = "web")]
/// The daemon's web page for setting the time by hand (`[web] enabled = true`).
///
/// The page needs a pairing code; `pairing-code` makes a new one (the old one stops
/// working) and stores only its hash in the state directory.
///
/// Examples:
///   trusttime web pairing-code
///   trusttime web pairing-code --config ./trusttime.toml
///
/// Exit status: 0 done, 1 the state directory cannot be written, 2 usage or config error.
#[derive(Debug, ClapArgs)]
#[command(verbatim_doc_comment)]
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
                    errln!("error: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            match crate::web::new_pairing_code(&cfg.raw.daemon.state_dir) {
                Ok(code) => {
                    outln!("{code}");
                    ExitCode::from(EXIT_OK)
                }
                Err(e) => {
                    errln!(
                        "error: cannot store the pairing code in {}: {e}",
                        cfg.raw.daemon.state_dir.display()
                    );
                    ExitCode::from(EXIT_FAIL)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_are_in_human_units() {
        assert_eq!(human_secs(7.759e-6), "7.8 µs");
        assert_eq!(human_secs(0.0011), "1.1 ms");
        assert_eq!(human_secs(-0.25), "-250.0 ms");
        assert_eq!(human_secs(2.5), "2.500 s");
        assert_eq!(human_secs(600.0012), "600.001 s (10 minutes)");
        assert_eq!(human_secs(f64::NAN), "unknown");
    }

    /// No `null`, no raw JSON, no scientific notation; unknown values say so in words, and
    /// the manual changes the README promises are listed.
    #[test]
    fn status_text_has_no_nulls_and_lists_manual_changes() {
        let unknown = json!({
            "state": "unknown", "provenance": "none", "authenticated": false,
            "earliest": null, "latest": null, "offset_s": null, "uncertainty_s": null,
            "floor": "2026-11-01T00:00:00Z", "system_time": "2026-11-23T08:00:00Z",
            "last_sync": null, "next_poll_in_s": null, "freq_ppm": null,
            "drift_bound_ppm": 50, "agreed": 0, "require_authenticated": [],
            "unauthenticated_disagree": [], "observe_only": true, "notes": [],
            "manual_changes": [], "verdict": "time unknown: no source has answered yet"
        });
        let t = status_text(&unknown);
        assert!(!t.contains("null"), "{t}");
        assert!(t.contains("interval     none yet"), "{t}");
        assert!(
            t.contains("frequency    not estimated yet (drift bound 50 ppm)"),
            "{t}"
        );
        assert!(t.contains("last sync    never"), "{t}");

        let mut synced = unknown.clone();
        synced["state"] = json!("manual");
        synced["earliest"] = json!("2026-11-23T08:29:00Z");
        synced["latest"] = json!("2026-11-23T08:31:00Z");
        synced["offset_s"] = json!(-7.759e-6);
        synced["uncertainty_s"] = json!(60.0);
        synced["freq_ppm"] = json!(-1.5);
        synced["manual_changes"] = json!([{
            "at": "2026-11-23T08:30:00Z", "who": "control socket, uid 0",
            "old": null, "new": "2026-11-23T08:30:00Z", "uncertainty_ms": 60000,
            "forced": false
        }]);
        let t = status_text(&synced);
        assert!(
            !t.contains("null") && !t.contains("e-6") && !t.contains('{'),
            "{t}"
        );
        assert!(
            t.contains("offset       -7.8 µs (the system clock is ahead"),
            "{t}"
        );
        assert!(t.contains("uncertainty  ± 60.000 s (1 minute)"), "{t}");
        assert!(t.contains("frequency    -1.500 ppm"), "{t}");
        assert!(
            t.contains("2026-11-23T08:30:00Z ± 60.000 s (1 minute) (was unknown), by control socket, uid 0"),
            "{t}"
        );
    }

    #[test]
    fn the_daemon_time_is_used_only_when_it_is_trusted_for_the_purpose() {
        let v = json!({
            "state": "synced", "provenance": "ntp", "authenticated": false,
            "earliest": "2026-11-23T08:00:00Z", "latest": "2026-11-23T08:00:01Z",
            "require_authenticated": []
        });
        let t = trusted_from_status(&v, "tls").unwrap();
        assert_eq!(t.provenance, trusttime_core::Provenance::Ntp);
        let mut strict = v.clone();
        strict["require_authenticated"] = json!(["tls"]);
        assert!(trusted_from_status(&strict, "tls").is_none());
        assert!(trusted_from_status(&strict, "sigv4").is_some());
        let mut unknown = v.clone();
        unknown["state"] = json!("unknown");
        assert!(trusted_from_status(&unknown, "tls").is_none());
        let mut reversed = v;
        reversed["earliest"] = json!("2026-11-23T09:00:00Z");
        assert!(trusted_from_status(&reversed, "tls").is_none());
    }
}
