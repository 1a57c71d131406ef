//! `trusttime sync`: one consensus exchange, reported; the clock is not changed.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args as ClapArgs;
use serde_json::json;
use trusttime_core::{Human, SignedDuration, UnixTime};

use super::{EXIT_FAIL, EXIT_OK, EXIT_USAGE};
use crate::clock::{LocalClock, SystemClock};
use crate::spec::{pool_servers, ServerSpec};
use crate::sync::{sync, ConstraintDecision, SyncOptions, SyncReport};

/// Ask several time servers at once and print the time the majority agrees on.
///
/// Every server is asked once, in parallel (a lost request is retried with backoff). As soon
/// as enough servers agree that the remaining ones cannot change the outcome, trusttime
/// decides: the result is the interval all agreeing servers allow. A server whose time does
/// not overlap the majority is named a falseticker. The local clock is not changed.
///
/// Without --server, --nts or --roughtime, four NTP Pool servers are used by DNS name
/// (0.ZONE .. 3.ZONE). Vendors shipping devices should ask the NTP Pool for a vendor zone and
/// pass it with --pool-zone.
///
/// Plain NTP is unauthenticated: anyone on the network path can shift it. NTS (--nts) and
/// Roughtime (--roughtime) are authenticated; when any are given, the authenticated sources
/// decide, and a plain NTP server that disagrees with them is named a falseticker. The JSON
/// field "authenticated" is true only when the result rests on authenticated sources.
///
/// Combination policy: when NTS or Roughtime sources are given and they reach no consensus,
/// a result resting on plain NTP is printed (labelled unauthenticated) but refused: exit 1,
/// unless --allow-unauthenticated. --require-authenticated refuses any result that does not
/// rest on authenticated sources. The JSON field "refused" says why a result was refused.
///
/// A line on stderr counts the sources: answered (a usable reply), rejected (it replied and the
/// reply was refused, with why) and silent (no reply).
///
/// Exit status: 0 consensus reached (accepted by the policy above, and every --https-date
/// constraint obtained), 1 no consensus, refused, or an --https-date constraint could not be
/// obtained (the reason is on stderr), 2 usage error.
///
/// Examples:
///   trusttime sync
///   trusttime sync --server 127.0.0.1:11123 --server 127.0.0.2:11123 --server 127.0.0.3:11123
///   trusttime sync --pool-zone acme.pool.ntp.org --json
///   trusttime sync --nts time.cloudflare.com --server pool.ntp.org
///   trusttime sync --roughtime roughtime.int08h.com:2002=AW5uAoTSTDfG5NfY1bTh08GUnOqlRb+HVhbJ3ODJvsE=
#[derive(Debug, ClapArgs)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// A server to ask: HOST, HOST:PORT or [IPV6]:PORT. Repeat for several (at most 32).
    #[arg(long = "server", short = 's', value_name = "HOST[:PORT]")]
    pub servers: Vec<ServerSpec>,
    /// An NTS server (RFC 8915) by its NTS-KE address: HOST or HOST:PORT (port 4460 by
    /// default). The NTP server and port come from the key exchange. Repeatable.
    #[arg(long = "nts", value_name = "HOST[:KE_PORT]", value_parser = parse_nts)]
    pub nts: Vec<ServerSpec>,
    /// A Roughtime server and its long-term public key (hex or base64). Repeatable; several
    /// are asked as a chain, each nonce derived from the previous response.
    #[arg(long = "roughtime", value_name = "HOST:PORT=PUBKEY")]
    pub roughtime: Vec<crate::spec::RoughtimeSpec>,
    /// The Roughtime wire format for every --roughtime: `draft` (IETF
    /// draft-ietf-ntp-roughtime-14) or `google` (the original protocol, which older servers
    /// still speak).
    #[arg(long, value_name = "PROTOCOL", default_value = "draft", value_parser = parse_rt_protocol)]
    pub roughtime_protocol: trusttime_core::roughtime::Version,
    /// An HTTPS URL whose Date header (from a server whose certificate verifies) constrains
    /// every answer: a source outside it is a falseticker. Coarse (about a second) but hard
    /// to forge without the server's key. Repeatable.
    #[arg(long = "https-date", value_name = "URL", value_parser = parse_https_url)]
    pub https_date: Vec<String>,
    /// Extra trust anchors (PEM) for NTS-KE and HTTPS Date certificates, trusted beside the
    /// Mozilla roots (e.g. your own CA; unlike `check --ca` and `connect --ca`, which replace
    /// them). Each root's own validity is checked. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<std::path::PathBuf>,
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
    /// Exit 1 unless the result rests on authenticated sources (NTS, Roughtime).
    #[arg(long, conflicts_with = "allow_unauthenticated")]
    pub require_authenticated: bool,
    /// When NTS or Roughtime sources are given but reach no consensus, accept a result from
    /// plain NTP (exit 0). Without it such a fallback exits 1.
    #[arg(long)]
    pub allow_unauthenticated: bool,
}

/// Why an unauthenticated result is refused by the combination policy, if it is.
#[must_use]
pub fn refusal(
    r: &SyncReport,
    require_authenticated: bool,
    allow_unauthenticated: bool,
) -> Option<String> {
    let c = r.result.as_ref().ok()?;
    if c.authenticated {
        return None;
    }
    if require_authenticated {
        return Some("the result rests on plain NTP, not on authenticated sources, and --require-authenticated was given".into());
    }
    let configured = r.sources.iter().any(|s| s.kind.is_authenticated());
    (configured && !allow_unauthenticated).then(|| {
        "the authenticated sources reached no consensus, and falling back to plain NTP (which an attacker on the network path can shift) is not allowed: pass --allow-unauthenticated to accept it".into()
    })
}

/// Runs `sync`.
pub async fn run(args: Args) -> ExitCode {
    let servers = if args.servers.is_empty() && args.nts.is_empty() && args.roughtime.is_empty() {
        pool_servers(&args.pool_zone, 4)
    } else {
        args.servers
    };
    let mut opts = SyncOptions::new(servers);
    opts.nts = args.nts;
    opts.roughtime = args.roughtime;
    for r in &mut opts.roughtime {
        r.version = args.roughtime_protocol;
    }
    opts.https_date = args.https_date;
    for w in opts.dedup() {
        errln!("warning: {w}");
    }
    for path in &args.ca {
        match crate::sync::read_pem_certificates(path) {
            Ok(mut ders) => opts.ca.append(&mut ders),
            Err(why) => {
                errln!("error: --ca {}: {why}", path.display());
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    opts.min_agree = args.min_agree;
    opts.timeout = args.timeout;
    if let Some(f) = args.floor {
        opts.client.floor = f;
    }
    let largest_group = opts
        .servers
        .len()
        .max(opts.nts.len() + opts.roughtime.len());
    if let Some(m) = opts.min_agree.filter(|&m| usize::from(m) > largest_group) {
        errln!(
            "error: --min-agree {m} needs at least that many servers of one kind (authenticated or not); at most {largest_group} given",
        );
        return ExitCode::from(EXIT_USAGE);
    }
    if opts.source_count() > trusttime_core::select::MAX_SOURCES {
        errln!(
            "error: at most {} servers",
            trusttime_core::select::MAX_SOURCES
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let clock: Arc<dyn LocalClock> = Arc::new(SystemClock);
    let report = sync(&opts, clock).await;
    let refused = refusal(
        &report,
        args.require_authenticated,
        args.allow_unauthenticated,
    );
    if args.json {
        let mut v = to_json(&report);
        v["refused"] = json!(refused);
        outln!("{v}");
    } else {
        out!("{}", to_text(&report));
    }
    if let Some(why) = report.failure() {
        errln!("error: no consensus: {why}");
        return ExitCode::from(EXIT_FAIL);
    }
    if let ConstraintDecision::Refused(why) = &report.constraint {
        errln!("error: refused: {why}");
        if report.result.as_ref().map_or(true, |c| !c.authenticated) {
            return ExitCode::from(EXIT_FAIL);
        }
    }
    if let Some(why) = refused {
        errln!("error: refused: {why}");
        return ExitCode::from(EXIT_FAIL);
    }
    let failed = report.failed_constraints();
    if !failed.is_empty() {
        // The constraint was asked for as a safeguard: without it the result is weaker
        // than requested, so the exit status says so.
        errln!(
            "error: HTTPS Date constraint not obtained, so not applied: {}",
            failed.join("; ")
        );
        return ExitCode::from(EXIT_FAIL);
    }
    ExitCode::from(EXIT_OK)
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
                "kind": s.kind.as_str(),
                "authenticated": s.kind.is_authenticated(),
                "auth_failures": s.auth_failures,
                "address": s.address.map(|a| a.to_string()),
                "offset_s": s.sample.map(|x| secs(x.offset)),
                "delay_s": s.sample.map(|x| secs(x.delay)),
                "error_s": s.sample.map(|x| secs(x.error_bound())),
                "stratum": s.sample.map(|x| x.stratum),
                "verdict": s.verdict.as_str(),
                "kiss_code": s.kiss.map(|k| k.to_string()),
                "reason": s.reason,
                "answer": s.answer.as_str(),
                "rejected_why": s.answer.why(),
            })
        })
        .collect();
    let authenticated = r.result.as_ref().is_ok_and(|c| c.authenticated);
    let (ok, offset, earliest, latest, agreed, error) = match &r.result {
        Ok(c) => (
            true,
            Some(secs(c.offset)),
            Some(c.interval.earliest.to_string()),
            Some(c.interval.latest.to_string()),
            c.agreed,
            None,
        ),
        Err(_) => (false, None, None, None, 0, r.failure()),
    };
    let failed = r.failed_constraints();
    let error = error.or_else(|| {
        (!failed.is_empty()).then(|| {
            format!(
                "HTTPS Date constraint not obtained, so not applied: {}",
                failed.join("; ")
            )
        })
    });
    json!({
        "consensus": ok,
        "offset_s": offset,
        "earliest": earliest,
        "latest": latest,
        "error_s": r.result.as_ref().ok().map(|c| secs(c.interval.radius())),
        "agreed": agreed,
        "min_agree": r.min_agree,
        "elapsed_ms": r.elapsed.as_secs_f64() * 1e3,
        "authenticated": authenticated,
        // As the `System` that decided says: `authenticated` or `ntp`.
        "provenance": r.result.as_ref().ok().map(|c| c.provenance.as_str()),
        "warning": warning(r),
        "error": error,
        "answers": r.tally().to_string(),
        "chain_violations": r.chain_violations,
        "bootstrap": r.bootstrap_from,
        "constraints": r.constraints.iter().map(|(url, c)| match c {
            Ok(iv) => json!({"url": url, "offset_lo_s": secs(iv.lo), "offset_hi_s": secs(iv.hi)}),
            Err(e) => json!({"url": url, "error": e}),
        }).collect::<Vec<_>>(),
        "constraint": match &r.constraint {
            ConstraintDecision::Applied { interval, agreeing, answered, outvoted } => json!({
                "decision": r.constraint.as_str(),
                "offset_lo_s": secs(interval.lo),
                "offset_hi_s": secs(interval.hi),
                "agreeing": agreeing,
                "answered": answered,
                "outvoted": outvoted,
            }),
            ConstraintDecision::Refused(why) => json!({
                "decision": r.constraint.as_str(),
                "reason": why,
            }),
            other => json!({ "decision": other.as_str() }),
        },
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
                "               {} ({} of {} sources agree; {})",
                c.interval,
                c.agreed,
                r.sources.len(),
                if c.authenticated {
                    "authenticated"
                } else {
                    "unauthenticated"
                }
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
    let _ = writeln!(o, "answers        {}", r.tally());
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
        let _ = writeln!(
            o,
            "  {:<13} {:<9} {name}: {}",
            s.verdict.as_str(),
            s.kind.as_str(),
            s.reason
        );
    }
    for (url, c) in &r.constraints {
        match c {
            Ok(iv) => {
                let _ = writeln!(
                    o,
                    "constraint     {url}: offset {:+.3} s .. {:+.3} s",
                    secs(iv.lo),
                    secs(iv.hi)
                );
            }
            Err(e) => {
                let _ = writeln!(o, "constraint     {url}: none ({e})");
            }
        }
    }
    for v in &r.chain_violations {
        let _ = writeln!(o, "proof          {v}");
    }
    if let Some(w) = warning(r) {
        let _ = writeln!(o, "warning        {w}");
    }
    o
}

/// What the user must know about how far to trust the result, if anything.
fn warning(r: &SyncReport) -> Option<String> {
    let disagree = r
        .sources
        .iter()
        .filter(|s| !s.kind.is_authenticated() && s.verdict == crate::spec::Verdict::Falseticker)
        .count();
    let auth_answered = r
        .sources
        .iter()
        .filter(|s| s.kind.is_authenticated() && s.sample.is_some())
        .count();
    let plain_answered = r
        .sources
        .iter()
        .filter(|s| !s.kind.is_authenticated() && s.sample.is_some())
        .count();
    match &r.result {
        Ok(c) if c.authenticated && auth_answered == 1 && disagree >= 2 && disagree == plain_answered => Some(format!(
            "a single authenticated source contradicts all {disagree} other sources: either it or the network path lies; configure at least two authenticated sources so that one cannot decide alone"
        )),
        Ok(c) if c.authenticated && disagree > 0 => Some(format!(
            "{disagree} unauthenticated source(s) disagree with the authenticated consensus: something may be shifting plain NTP on the network path"
        )),
        Ok(c) if c.authenticated => None,
        Err(_) => None,
        Ok(_) if r.sources.iter().any(|s| s.kind.is_authenticated()) => Some(
            "the authenticated sources reached no consensus (see their reasons): this time rests on plain NTP, which an attacker on the network path can shift".into(),
        ),
        Ok(_) => Some("plain NTP is unauthenticated: an attacker on the network path can shift this time".into()),
    }
}

#[cfg(feature = "tls")]
fn parse_https_url(s: &str) -> Result<String, String> {
    s.parse::<crate::spec::HttpsDateSpec>()
        .map(|_| s.to_owned())
}

#[cfg(not(feature = "tls"))]
fn parse_https_url(_: &str) -> Result<String, String> {
    Err("--https-date needs TLS, which this build does not have (feature `tls`)".into())
}

fn parse_rt_protocol(s: &str) -> Result<trusttime_core::roughtime::Version, String> {
    crate::spec::parse_protocol(s)
}

fn parse_nts(s: &str) -> Result<ServerSpec, String> {
    ServerSpec::parse_with_default_port(s, crate::spec::NTS_KE_PORT).map_err(|e| e.to_string())
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use super::*;
    use crate::sync::test_servers::{start, Behaviour};
    use trusttime_core::Provenance;

    fn spec(a: std::net::SocketAddr) -> ServerSpec {
        ServerSpec {
            host: a.ip().to_string(),
            port: a.port(),
        }
    }

    /// NTS blocked by dropping (the key exchange never answers) while plain NTP is shifted by
    /// a day: the shifted result is shown, labelled, and refused unless explicitly allowed.
    #[tokio::test]
    async fn nts_dropped_while_plain_ntp_is_shifted_is_refused_unless_allowed() {
        // Accepts connections (the kernel does) but never says a word.
        let silent_ke = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shifted = start(
            SignedDuration::from_secs(86_400),
            SignedDuration::from_millis(1),
            Behaviour::Honest,
        )
        .await;
        let mut o = SyncOptions::new(vec![spec(shifted)]);
        o.nts = vec![spec(silent_ke.local_addr().unwrap())];
        o.timeout = Duration::from_millis(1000);
        let r = sync(&o, Arc::new(SystemClock)).await;
        let c = r.result.as_ref().expect("plain NTP gives a result");
        assert!(!c.authenticated);
        assert_eq!(c.provenance, Provenance::Ntp);
        assert!((c.offset.as_secs_f64() - 86_400.0).abs() < 1.0, "{c:?}");
        assert!(r.sources[1].sample.is_none(), "{:?}", r.sources[1]);
        let why = refusal(&r, false, false).expect("no silent downgrade");
        assert!(why.contains("--allow-unauthenticated"), "{why}");
        assert!(refusal(&r, false, true).is_none());
        assert!(refusal(&r, true, false).is_some());
        let v = to_json(&r);
        assert_eq!(v["provenance"], "ntp", "{v}");
        assert_eq!(v["authenticated"], false, "{v}");
        assert!(warning(&r).is_some_and(|w| w.contains("plain NTP")), "{v}");
    }
}
