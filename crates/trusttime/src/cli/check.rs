//! `trusttime check`: fetch a server's certificate chain and judge it by trusted time.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args as ClapArgs;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::json;
use trusttime_core::{
    floor, Human, Provenance, SignedDuration, TimeInterval, TrustedTime, UnixTime,
};
use trusttime_tls::{
    accepts_undetermined, ClockReading, FixedClock, Policy, TrustedTimeVerifier,
    UndeterminedPolicy, Verdict,
};

use super::EXIT_USAGE;
use crate::clock::{system_wall, LocalClock, SystemClock};
use crate::spec::{pool_servers, ServerSpec};
use crate::sync::{sync, SyncOptions};

/// Exit code: certificate valid.
pub const EXIT_VALID: u8 = 0;
/// Exit code: certificate invalid.
pub const EXIT_INVALID: u8 = 1;
/// Exit code: undetermined because of the clock.
pub const EXIT_UNDETERMINED: u8 = 3;
/// Exit code: network error (no connection, no handshake).
pub const EXIT_NETWORK: u8 = 4;

/// Connect to a TLS server and judge its certificate chain by a time this device can trust.
///
/// Shows the chain (subject, issuer, validity, time to expiry), the verdict and, when
/// something is wrong, a diagnosis in words that says whether the clock or the certificate is
/// at fault (naming the OpenSSL error, e.g. X509_V_ERR_CERT_NOT_YET_VALID).
///
/// The time to judge by, in this order: --at; the device clock alone with --no-sync or
/// --device-clock (untrusted); a consensus sync with the --ntp-server given; the running
/// trusttime daemon's trusted time (its control socket from --socket, --config, or the
/// default; it must belong to root or you); else a consensus sync with the NTP Pool. A
/// daemon named with --socket or --config that cannot be asked leaves the time untrusted.
///
/// Exit status: 0 valid, 1 invalid certificate, 3 undetermined because of the clock,
/// 2 usage error, 4 network error.
///
/// Examples:
///   trusttime check example.com
///   trusttime check mqtt.local:8883 --ca /etc/ssl/my-root.pem --ntp-server 192.168.1.1
///   trusttime check example.com --at 2027-01-01T00:00:00Z --json
#[derive(Debug, ClapArgs)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The server: HOST, HOST:PORT or [IPV6]:PORT (default port 443).
    #[arg(value_name = "HOST[:PORT]")]
    pub server: String,
    /// The name to verify (SNI and certificate name); default: HOST.
    #[arg(long, value_name = "NAME")]
    pub servername: Option<String>,
    /// PEM file with the root certificates to trust. They replace the Mozilla roots built in
    /// (default), as a device's own trust store would, and as `connect --ca` does; `sync --ca`
    /// instead adds anchors beside the built-in roots. Each root's own validity is checked.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Judge at this time (RFC 3339) instead of syncing.
    #[arg(long, value_name = "RFC3339", value_parser = crate::duration::parse_time, conflicts_with = "no_sync")]
    pub at: Option<UnixTime>,
    /// Uncertainty of --at (e.g. 30m; not negative): the time is judged over
    /// [at - uncertainty, at + uncertainty].
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_uncertainty, requires = "at")]
    pub uncertainty: SignedDuration,
    /// Do not sync: judge by the device clock, which is untrusted.
    #[arg(long)]
    pub no_sync: bool,
    /// Pretend the device clock reads this (RFC 3339); implies --no-sync. For showing what a
    /// device with a dead RTC battery would see.
    #[arg(long, value_name = "RFC3339", value_parser = crate::duration::parse_time, conflicts_with = "at")]
    pub device_clock: Option<UnixTime>,
    /// NTP server for the sync (repeatable; default: the NTP Pool).
    #[arg(long = "ntp-server", value_name = "HOST[:PORT]")]
    pub ntp_servers: Vec<ServerSpec>,
    /// Maximum error of trusted time for the verdict.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = crate::duration::parse)]
    pub max_error: Duration,
    /// Accept (exit 0) a chain that is valid for part of the trusted interval only (a validity
    /// period starts or ends inside it); the output says that it was accepted and why.
    #[arg(long)]
    pub accept_undetermined: bool,
    /// Connection timeout.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::duration::parse)]
    pub timeout: Duration,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub daemon: super::daemon::Where,
}

/// A non-negative duration for --uncertainty.
fn parse_uncertainty(s: &str) -> Result<SignedDuration, String> {
    let d = crate::duration::parse_signed(s).map_err(|e| e.to_string())?;
    if d.is_negative() {
        return Err(format!(
            "`{s}` is negative: an uncertainty is a half-width, 0s or more"
        ));
    }
    Ok(d)
}

/// Records the chain the server sends, then stops the handshake: the judging happens offline.
#[derive(Debug, Default)]
struct Capture {
    chain: Mutex<Option<(CertificateDer<'static>, Vec<CertificateDer<'static>>)>>,
    schemes: Vec<SignatureScheme>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut g) = self.chain.lock() {
            *g = Some((
                end_entity.clone().into_owned(),
                intermediates
                    .iter()
                    .map(|c| c.clone().into_owned())
                    .collect(),
            ));
        }
        Err(rustls::Error::General("chain captured".into()))
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("not used".into()))
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("not used".into()))
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

type Chain = (CertificateDer<'static>, Vec<CertificateDer<'static>>);

/// An I/O error in words; a socket timeout (which the system reports as EAGAIN, "Resource
/// temporarily unavailable") says "timed out".
fn io_words(e: &std::io::Error, timeout: Duration) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
            "timed out after {} (no answer; raise --timeout if the server is slow)",
            super::daemon::human_secs(timeout.as_secs_f64())
        ),
        _ => e.to_string(),
    }
}

/// Connects and returns the chain the server presented.
fn fetch_chain(
    server: &ServerSpec,
    name: &ServerName<'static>,
    timeout: Duration,
) -> Result<Chain, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let capture = Arc::new(Capture {
        chain: Mutex::new(None),
        schemes: provider
            .signature_verification_algorithms
            .supported_schemes(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let addr = (server.host.as_str(), server.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", server.host))?
        .next()
        .ok_or_else(|| format!("no address for {}", server.host))?;
    let mut sock = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {}", io_words(&e, timeout)))?;
    let _ = sock.set_read_timeout(Some(timeout));
    let _ = sock.set_write_timeout(Some(timeout));
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name.clone()).map_err(|e| e.to_string())?;
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let res = tls
        .write_all(b"")
        .and_then(|()| tls.flush())
        .and_then(|()| tls.read(&mut [0u8; 1]).map(|_| ()));
    let captured = capture.chain.lock().ok().and_then(|mut g| g.take());
    match (captured, res) {
        (Some(chain), _) => Ok(chain),
        (None, Err(e)) => Err(format!(
            "TLS handshake with {addr} failed before a certificate arrived: {}",
            io_words(&e, timeout)
        )),
        (None, Ok(())) => Err(format!("{addr} sent no certificate")),
    }
}

/// The running daemon's trusted time, when it should be used: `None` to sync instead (NTP
/// servers were named, or no daemon was named and none runs at the default socket).
async fn from_daemon(at: &super::daemon::Where, floor: UnixTime) -> Option<(ClockReading, String)> {
    let named = at.socket.is_some() || at.config.is_some();
    let sock = match at.socket() {
        Ok(s) => s,
        Err(e) if named => {
            return Some((
                ClockReading::untrusted(system_wall(), floor),
                format!("the daemon's config cannot be used: {e}"),
            ))
        }
        Err(_) => return None,
    };
    if !named && !sock.exists() {
        return None;
    }
    match crate::control::ask(&sock, "status").await {
        Ok(v) => {
            let now = system_wall();
            match super::daemon::trusted_from_status(&v, "tls") {
                Some(trusted) => Some((
                    ClockReading {
                        device: now,
                        trusted,
                    },
                    format!(
                        "the trusttime daemon's trusted time (state {})",
                        v["state"].as_str().unwrap_or("?")
                    ),
                )),
                None => Some((
                    ClockReading::untrusted(now, floor),
                    format!(
                        "the trusttime daemon has no time trusted for TLS (state {})",
                        v["state"].as_str().unwrap_or("?")
                    ),
                )),
            }
        }
        // A stale socket at the default place: no daemon runs; sync instead.
        Err(crate::control::AskError::NotRunning { .. }) if !named => None,
        Err(e) => Some((
            ClockReading::untrusted(system_wall(), floor),
            format!("cannot ask the trusttime daemon: {e}"),
        )),
    }
}

/// Runs `check`.
#[allow(clippy::too_many_lines)]
pub async fn run(args: Args) -> ExitCode {
    let server = match ServerSpec::parse_with_default_port(&args.server, 443) {
        Ok(s) => s,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let name_str = args
        .servername
        .clone()
        .unwrap_or_else(|| server.host.clone());
    let name = match ServerName::try_from(name_str.clone()) {
        Ok(n) => n,
        Err(e) => {
            errln!("error: invalid --servername `{name_str}`: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let roots: Vec<CertificateDer<'static>> = match &args.ca {
        Some(path) => match crate::files::pem_certificates(path) {
            Ok(v) => v,
            Err(e) => {
                errln!("error: --ca {}: {e}", path.display());
                return ExitCode::from(EXIT_USAGE);
            }
        },
        None => Vec::new(),
    };

    // The time to judge by.
    let floor = floor::build_time();
    let mut sync_note = None;
    let reading = if let Some(at) = args.at {
        ClockReading {
            device: at,
            trusted: TrustedTime {
                interval: TimeInterval::around(at, args.uncertainty),
                provenance: Provenance::Manual,
            },
        }
    } else if args.no_sync || args.device_clock.is_some() {
        ClockReading::untrusted(args.device_clock.unwrap_or_else(system_wall), floor)
    } else if let Some((reading, note)) = if args.ntp_servers.is_empty() {
        from_daemon(&args.daemon, floor).await
    } else {
        None
    } {
        sync_note = Some(note);
        reading
    } else {
        let servers = if args.ntp_servers.is_empty() {
            pool_servers("pool.ntp.org", 4)
        } else {
            args.ntp_servers.clone()
        };
        let report = sync(&SyncOptions::new(servers), Arc::new(SystemClock)).await;
        match report.result {
            Ok(c) => {
                sync_note = Some(format!(
                    "{} of {} time servers agree",
                    c.agreed,
                    report.sources.len()
                ));
                let now = SystemClock.now();
                let interval = c.interval.shift(now.mono.since(c.at.mono));
                ClockReading {
                    device: now.wall,
                    trusted: TrustedTime {
                        interval,
                        provenance: Provenance::Ntp,
                    },
                }
            }
            Err(e) => {
                sync_note = Some(format!("sync failed: {e}"));
                ClockReading::untrusted(system_wall(), floor)
            }
        }
    };

    let policy = Policy {
        max_error: SignedDuration::from_std(args.max_error),
        undetermined: if args.accept_undetermined {
            UndeterminedPolicy::Accept
        } else {
            UndeterminedPolicy::Reject
        },
    };
    let clock = Arc::new(FixedClock(reading));
    let verifier = match if roots.is_empty() {
        TrustedTimeVerifier::with_webpki_roots(clock, policy)
    } else {
        TrustedTimeVerifier::new(roots.clone(), clock, policy)
    } {
        Ok(v) => v,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };

    let (srv, nm, timeout) = (server.clone(), name.clone(), args.timeout);
    let fetched = tokio::task::spawn_blocking(move || fetch_chain(&srv, &nm, timeout)).await;
    let (leaf, inter) = match fetched {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            if args.json {
                outln!(
                    "{}",
                    json!({ "server": server.to_string(), "error": e, "verdict": null, "exit_code": EXIT_NETWORK })
                );
            }
            errln!("error: {e}");
            return ExitCode::from(EXIT_NETWORK);
        }
        Err(e) => {
            if args.json {
                outln!(
                    "{}",
                    json!({ "server": server.to_string(), "error": e.to_string(), "verdict": null, "exit_code": EXIT_NETWORK })
                );
            }
            errln!("error: {e}");
            return ExitCode::from(EXIT_NETWORK);
        }
    };
    let diagnosis = verifier.diagnose_at(&leaf, &inter, &name, reading);
    // The path judged, then what the server sent that is not on it.
    let chain: Vec<_> = diagnosis
        .chain
        .iter()
        .chain(diagnosis.also_sent.iter())
        .cloned()
        .collect();
    let accepted = accepts_undetermined(&diagnosis, policy);
    let judge_at = if reading.is_trusted_within(policy.max_error) {
        reading.trusted.interval.midpoint()
    } else {
        reading.device
    };
    let code = match diagnosis.verdict {
        Verdict::Valid => EXIT_VALID,
        Verdict::Invalid => EXIT_INVALID,
        Verdict::Undetermined if accepted => EXIT_VALID,
        Verdict::Undetermined => EXIT_UNDETERMINED,
    };
    let trusted = reading.is_trusted_within(policy.max_error);

    if args.json {
        let chain_json: Vec<_> = chain
            .iter()
            .map(|c| {
                json!({
                    "role": c.role,
                    "subject": c.subject,
                    "issuer": c.issuer,
                    "not_before": c.not_before.to_string(),
                    "not_after": c.not_after.to_string(),
                    "no_expiry": c.not_after.is_no_expiry(),
                    "expires_in_s": (!c.not_after.is_no_expiry())
                        .then(|| c.not_after.as_secs().saturating_sub(judge_at.as_secs())),
                })
            })
            .collect();
        let v = json!({
            "server": server.to_string(),
            "servername": name_str,
            "verdict": diagnosis.verdict,
            "accepted_undetermined": accepted,
            "exit_code": code,
            "time": {
                "device": reading.device.to_string(),
                "trusted": trusted,
                "earliest": trusted.then(|| reading.trusted.interval.earliest.to_string()),
                "latest": trusted.then(|| reading.trusted.interval.latest.to_string()),
                "provenance": reading.trusted.provenance.as_str(),
                "authenticated": reading.trusted.provenance == Provenance::Authenticated,
                "sync": sync_note,
            },
            "chain": chain_json,
            "diagnosis": diagnosis,
        });
        outln!("{v}");
    } else {
        outln!("server     {server} (name {name_str})");
        if trusted {
            outln!(
                "time       {} ({})",
                reading.trusted.interval,
                reading.trusted.provenance.describe()
            );
        } else {
            outln!(
                "time       device clock {} (untrusted: {})",
                reading.device,
                reading.trusted.provenance.describe()
            );
        }
        if let Some(n) = &sync_note {
            outln!("sync       {n}");
        }
        outln!("chain");
        for c in &chain {
            let left =
                SignedDuration::from_secs(c.not_after.as_secs().saturating_sub(judge_at.as_secs()));
            let expiry = if c.not_after.is_no_expiry() {
                "no expiry date".to_owned()
            } else if left.is_negative() {
                format!("expired {} ago", Human(left))
            } else {
                format!("expires in {}", Human(left))
            };
            let role = match c.role {
                trusttime_tls::CertRole::Sent(_) => format!("{} (not used)", c.role),
                r => r.to_string(),
            };
            outln!("  {role:<32} {}", c.subject);
            outln!("  {:<32} issuer {}", "", c.issuer);
            outln!(
                "  {:<32} valid {} .. {} ({expiry})",
                "",
                c.not_before,
                c.not_after
            );
        }
        let verdict = match diagnosis.verdict {
            Verdict::Valid => "VALID",
            Verdict::Invalid => "INVALID",
            Verdict::Undetermined => "UNDETERMINED (clock)",
        };
        outln!("verdict    {verdict}");
        outln!("why        {diagnosis}");
        if accepted {
            outln!(
                "accepted   exit 0 because of --accept-undetermined: the chain is valid for part of the trusted interval only, and accepted as if valid."
            );
        }
    }
    ExitCode::from(code)
}
