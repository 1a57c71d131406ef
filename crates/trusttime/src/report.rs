//! Clock health reports: the daemon publishes its status as JSON to an MQTT topic (by default
//! the thing's AWS IoT Device Shadow, `{"state":{"reported":{"clock":{...}}}}`) when its state
//! changes and at an interval, so a fleet's operators see which devices have bad clocks. The
//! broker is the fleet's engine; with TLS, its certificate is checked against trusted time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, MqttOptions, QoS, TlsConfiguration, Transport};
use trusttime_core::Purpose;
use trusttime_tls::TrustedClock;

use crate::config::ReportConfig;
use crate::daemon_api::DaemonLink;
use crate::json::{Health, Status};

/// Version of the report's fields (docs/fleet.md, "The clock-health report"): raised when a
/// field changes meaning or goes away; new fields keep it. 2: `sources_agreeing` became
/// `agreed`, the name `status --json` has.
pub const SCHEMA: u32 = 2;

/// The report for a `status`: a subset of `status --json` under the same names.
#[must_use]
pub fn health(status: &Status) -> Health {
    Health {
        schema: SCHEMA,
        state: status.state.clone(),
        provenance: status.provenance,
        authenticated: status.authenticated,
        offset_s: status.offset_s,
        uncertainty_s: status.uncertainty_s,
        earliest: status.earliest.clone(),
        latest: status.latest.clone(),
        last_sync: status.last_sync.clone(),
        agreed: status.agreed,
        falsetickers: status.falsetickers,
        verdict: status.verdict.clone(),
    }
}

/// The report in Device Shadow form, as published:
/// `{"state":{"reported":{"clock":{...}}}}`.
#[must_use]
pub fn shadow_document(health: &Health) -> String {
    serde_json::json!({ "state": { "reported": { "clock": health } } }).to_string()
}

fn tls_transport(cfg: &ReportConfig, daemon: &DaemonLink) -> Result<Option<Transport>, String> {
    let (Some(ca), Some(cert), Some(key)) = (&cfg.ca, &cfg.cert, &cfg.key) else {
        return Ok(None);
    };
    let read = |p: &std::path::PathBuf| {
        crate::files::pem_certificates(p).map_err(|e| format!("{}: {e}", p.display()))
    };
    let m = trusttime_iot::MqttTls {
        endpoint: cfg.broker.clone(),
        port: cfg.port,
        servername: cfg.servername.clone(),
        client_id: cfg.client_id.clone(),
        cert_chain: read(cert)?,
        key: Some(
            crate::files::pem_private_key(key).map_err(|e| format!("{}: {e}", key.display()))?,
        ),
        roots: read(ca)?,
        alpn: (cfg.port == 443).then(|| trusttime_iot::ALPN_AWS_MQTT.to_vec()),
        websocket: None,
    };
    let config = trusttime_iot::client_config(Arc::new(daemon.clone()), Purpose::Tls, &m)
        .map_err(|e| e.to_string())?;
    Ok(Some(Transport::Tls(TlsConfiguration::Rustls(config))))
}

/// Publishes reports until the task is dropped.
pub async fn run(cfg: ReportConfig, daemon: DaemonLink) {
    let interval = crate::duration::parse(&cfg.interval).unwrap_or(Duration::from_secs(300));
    let topic = cfg.topic.replace("{thing}", &cfg.thing);
    let mut opts = MqttOptions::new(cfg.client_id.clone(), cfg.broker.clone(), cfg.port);
    opts.set_keep_alive(Duration::from_secs(60));
    if cfg.ca.is_some() {
        // No TLS handshake before the daemon's own time is trusted.
        while !daemon
            .read()
            .is_trusted_within(Purpose::Tls.default_max_error())
        {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    match tls_transport(&cfg, &daemon) {
        Ok(Some(t)) => {
            opts.set_transport(t);
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "clock health reports disabled");
            return;
        }
    }
    let (client, mut events) = AsyncClient::new(opts, 16);
    crate::task::spawn(async move {
        let mut backoff =
            trusttime_iot::Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        loop {
            match events.poll().await {
                Ok(_) => {
                    backoff = trusttime_iot::Backoff::new(
                        Duration::from_secs(1),
                        Duration::from_secs(300),
                    )
                }
                Err(e) => {
                    let d = backoff.next_delay(rand::random());
                    tracing::warn!(error = %e, delay = ?d, "report broker connection failed");
                    tokio::time::sleep(d).await;
                }
            }
        }
    });
    let mut last = None;
    let mut sent = Instant::now();
    loop {
        // Rendered now: the state changes with time alone (synced, then holdover, then
        // unknown), not only when the daemon publishes.
        let report = health(&daemon.status());
        let key = (report.state.clone(), report.provenance);
        if last.as_ref() != Some(&key) || sent.elapsed() >= interval {
            let body = shadow_document(&report);
            match client.try_publish(topic.clone(), QoS::AtLeastOnce, false, body) {
                Ok(()) => {
                    last = Some(key);
                    sent = Instant::now();
                }
                Err(e) => tracing::debug!(error = %e, "report not queued"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
