//! `trusttime connect`: MQTT over TLS to AWS IoT Core (or any broker), only on trusted time.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args as ClapArgs;
use trusttime_core::{floor, Provenance, TimeInterval, TrustedTime, UnixTime};
use trusttime_iot::{publish_with_retries, Backoff, ConnectError, MqttTls, ALPN_AWS_MQTT};
use trusttime_tls::{ClockReading, SharedClock, TrustedClock};

use super::{EXIT_FAIL, EXIT_OK, EXIT_USAGE};
use crate::clock::{system_wall, SystemClock};
use crate::spec::ServerSpec;
use crate::sync::{sync, SyncOptions};

/// Exit code: time not trusted; no handshake attempted.
pub const EXIT_NOT_TRUSTED: u8 = 3;

/// Connect to an MQTT broker (AWS IoT Core) over TLS once the time is trusted, and publish.
///
/// The time comes from --ntp-server (a consensus sync, repeatable) or from the running
/// daemon (--config/--socket). While it is not trusted to the TLS error (1 hour), no TLS
/// handshake is attempted: the command says why and exits 3. The broker's certificate is
/// checked against the trusted interval; the device presents --cert/--key (mutual TLS).
/// On port 443 the ALPN protocol x-amzn-mqtt-ca is offered, as AWS IoT Core expects.
///
/// With --websocket, MQTT runs over a WebSocket (wss://ENDPOINT/mqtt) whose URL is presigned
/// with AWS SigV4 at the trusted time, never the raw system clock; the credentials come from
/// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN. SigV4 needs the time within
/// minutes: signing is refused while the uncertainty exceeds 5 minutes.
///
/// Exit status: 0 published, 1 connection failed, 2 usage error, 3 time not trusted.
///
/// Examples:
///   trusttime connect --endpoint abc123-ats.iot.eu-west-1.amazonaws.com --client-id dev42 \
///     --cert dev42.pem --key dev42.key --ca AmazonRootCA1.pem --publish devices/dev42/hello hi
///   trusttime connect --endpoint abc123-ats.iot.eu-west-1.amazonaws.com --port 443 \
///     --websocket --region eu-west-1 --client-id dev42 --ca AmazonRootCA1.pem \
///     --publish devices/dev42/hello hi
#[derive(Debug, ClapArgs)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Broker host name.
    #[arg(long)]
    pub endpoint: String,
    /// Port: 8883, or 443 (ALPN x-amzn-mqtt-ca).
    #[arg(long, default_value_t = 8883)]
    pub port: u16,
    /// Name to verify in the broker's certificate (default: --endpoint).
    #[arg(long, value_name = "NAME")]
    pub servername: Option<String>,
    /// MQTT client ID.
    #[arg(long, value_name = "ID")]
    pub client_id: String,
    /// Device certificate (PEM); required for MQTT over TLS, not used with --websocket.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Device private key (PEM), with --cert.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// MQTT over WebSocket with a SigV4-presigned URL (credentials from the AWS_* variables).
    #[arg(long, requires = "region")]
    pub websocket: bool,
    /// AWS region of the endpoint, for SigV4 (with --websocket).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Root CA(s) for the broker (PEM): the only roots trusted (the built-in Mozilla roots
    /// are not used, as with `check --ca`); each root's own validity is checked.
    #[arg(long, value_name = "FILE")]
    pub ca: PathBuf,
    /// Publish MESSAGE to TOPIC (QoS 1).
    #[arg(long, num_args = 2, value_names = ["TOPIC", "MESSAGE"])]
    pub publish: Vec<String>,
    /// NTP servers to sync from first (repeatable).
    #[arg(long = "ntp-server", value_name = "HOST[:PORT]")]
    pub ntp_servers: Vec<ServerSpec>,
    #[command(flatten)]
    pub at: super::daemon::Where,
    /// Retries after connection failures (not after clock or certificate failures, which
    /// need a sync or a fix, not a retry).
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// First backoff ceiling; delays are random up to a ceiling that doubles each retry.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::duration::parse)]
    pub backoff: Duration,
    /// Largest backoff ceiling.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::duration::parse)]
    pub backoff_cap: Duration,
    /// Give up on the broker after this long.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = crate::duration::parse)]
    pub timeout: Duration,
}

fn usage(msg: String) -> ExitCode {
    errln!("error: {msg}");
    ExitCode::from(EXIT_USAGE)
}

/// Runs `connect`.
pub async fn run(args: Args) -> ExitCode {
    let cert_chain = match &args.cert {
        None if args.websocket => Vec::new(),
        None => return usage("--cert and --key are required for MQTT over TLS".into()),
        Some(path) => match crate::files::pem_certificates(path) {
            Ok(v) => v,
            Err(e) => return usage(format!("--cert {}: {e}", path.display())),
        },
    };
    let roots = match crate::files::pem_certificates(&args.ca) {
        Ok(v) => v,
        Err(e) => return usage(format!("--ca {}: {e}", args.ca.display())),
    };
    let key = match &args.key {
        None if cert_chain.is_empty() => None,
        None => return usage("--key is required with --cert".into()),
        Some(path) => match crate::files::pem_private_key(path) {
            Ok(k) => Some(k),
            Err(e) => return usage(format!("--key {}: {e}", path.display())),
        },
    };
    let websocket = if args.websocket {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        else {
            return usage(
                "--websocket signs with SigV4: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary credentials)".into(),
            );
        };
        Some(trusttime_iot::WebSocket {
            region: args.region.clone().unwrap_or_default(),
            credentials: trusttime_iot::sigv4::AwsCredentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: var("AWS_SESSION_TOKEN"),
            },
        })
    } else {
        None
    };
    let (topic, message) = match args.publish.as_slice() {
        [t, m] => (t.clone(), m.clone()),
        _ => return usage("nothing to do: give --publish TOPIC MESSAGE".into()),
    };

    // Trusted time: a sync, else the daemon.
    let clock = Arc::new(SharedClock::new(floor::build_time()));
    if !args.ntp_servers.is_empty() {
        let report = sync(
            &SyncOptions::new(args.ntp_servers.clone()),
            Arc::new(SystemClock),
        )
        .await;
        match report.result {
            Ok(c) => clock.update(TrustedTime {
                interval: c.interval,
                provenance: Provenance::Ntp,
            }),
            Err(e) => errln!("sync: no consensus: {e}"),
        }
    } else if let Ok(sock) = args.at.socket() {
        match crate::control::ask(&sock, "status").await {
            Ok(v) => {
                let t = |k: &str| v[k].as_str().and_then(|s| UnixTime::parse_rfc3339(s).ok());
                if let (Some(e), Some(l)) = (t("earliest"), t("latest")) {
                    let provenance = match v["provenance"].as_str() {
                        Some("authenticated") => Provenance::Authenticated,
                        Some("ntp") => Provenance::Ntp,
                        Some("manual") => Provenance::Manual,
                        Some("rtc") => Provenance::Rtc,
                        _ => Provenance::Persisted,
                    };
                    clock.update(TrustedTime {
                        interval: TimeInterval {
                            earliest: e,
                            latest: l,
                        },
                        provenance,
                    });
                }
            }
            Err(e) => errln!("daemon: {e}"),
        }
    }
    let reading: ClockReading = clock.read();
    tracing::info!(device = %system_wall(), trusted = ?reading.trusted, "time for the connection");

    let m = MqttTls {
        endpoint: args.endpoint.clone(),
        port: args.port,
        servername: args.servername.clone(),
        client_id: args.client_id.clone(),
        cert_chain,
        key,
        roots,
        alpn: (args.port == 443 && websocket.is_none()).then(|| ALPN_AWS_MQTT.to_vec()),
        websocket,
    };
    let backoff = Backoff::new(args.backoff, args.backoff_cap);
    let attempt = |clock: Arc<SharedClock>| {
        publish_with_retries(
            &m,
            clock,
            &topic,
            message.clone().into_bytes(),
            args.timeout,
            args.retries,
            backoff,
        )
    };
    let mut result = attempt(Arc::clone(&clock)).await;
    // A TLS failure the clock may explain is not retried blindly: sync again (once), and try
    // again only if the new time differs from the one the handshake was judged by.
    if let Err(e @ ConnectError::Connection(_)) = &result {
        if trusttime_iot::is_time_or_certificate_failure(e) && !args.ntp_servers.is_empty() {
            errln!("warning: {e}");
            errln!("re-syncing before trying again: the failure may be the clock's");
            let offset = |r: ClockReading| r.trusted.interval.midpoint() - r.device;
            let before = offset(clock.read());
            let report = sync(
                &SyncOptions::new(args.ntp_servers.clone()),
                Arc::new(SystemClock),
            )
            .await;
            if let Ok(c) = report.result {
                clock.update(TrustedTime {
                    interval: c.interval,
                    provenance: Provenance::Ntp,
                });
                let after = offset(clock.read());
                if (after - before).abs() > trusttime_core::SignedDuration::from_secs(1) {
                    result = attempt(Arc::clone(&clock)).await;
                } else {
                    errln!("the time did not change: the certificate, not the clock, is at fault");
                }
            }
        }
    }
    match result {
        Ok(()) => {
            outln!("published to {topic} on {}:{}", args.endpoint, args.port);
            ExitCode::from(EXIT_OK)
        }
        Err(e @ ConnectError::NotTrusted(_)) => {
            errln!("error: {e}");
            ExitCode::from(EXIT_NOT_TRUSTED)
        }
        Err(e @ ConnectError::Config(_)) => usage(e.to_string()),
        Err(e) => {
            errln!("error: {e}");
            ExitCode::from(EXIT_FAIL)
        }
    }
}
