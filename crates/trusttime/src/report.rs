//! Clock health reports: the daemon publishes its status as JSON to an MQTT topic (by default
//! the thing's AWS IoT Device Shadow, `{"state":{"reported":{"clock":{...}}}}`) when its state
//! changes and at an interval, so a fleet's operators see which devices have bad clocks. The
//! broker is the fleet's engine; with TLS, its certificate is checked against trusted time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, MqttOptions, QoS, TlsConfiguration, Transport};
use serde_json::{json, Value};
use trusttime_core::Purpose;
use trusttime_tls::TrustedClock;

use crate::config::ReportConfig;
use crate::daemon::StatusHandle;

/// Version of the report's fields (docs/fleet.md, "The clock-health report"): raised when a
/// field changes meaning or goes away; new fields keep it. 2: `sources_agreeing` became
/// `agreed`, the name `status --json` has.
pub const SCHEMA: u32 = 2;

/// The report for a `status` object and a `sources` object, in Device Shadow form: the fields
/// of [`crate::json::Health`], a subset of `status --json` under the same names.
#[must_use]
pub fn health_json(status: &Value, sources: &Value) -> Value {
    let pick = |k: &str| status.get(k).cloned().unwrap_or(Value::Null);
    // From `status` when it has it, else counted from `sources`.
    let falsetickers = status.get("falsetickers").cloned().unwrap_or_else(|| {
        sources["sources"]
            .as_array()
            .map_or(0, |list| {
                list.iter()
                    .filter(|s| s["verdict"] == "falseticker")
                    .count()
            })
            .into()
    });
    json!({ "state": { "reported": { "clock": {
        "schema": SCHEMA,
        "falsetickers": falsetickers,
        "state": pick("state"),
        "provenance": pick("provenance"),
        "authenticated": pick("authenticated"),
        "offset_s": pick("offset_s"),
        "uncertainty_s": pick("uncertainty_s"),
        "earliest": pick("earliest"),
        "latest": pick("latest"),
        "last_sync": pick("last_sync"),
        "agreed": pick("agreed"),
        "verdict": pick("verdict"),
    }}}})
}

fn tls_transport(cfg: &ReportConfig, handle: &StatusHandle) -> Result<Option<Transport>, String> {
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
    let config = trusttime_iot::client_config(Arc::new(handle.clone()), Purpose::Tls, &m)
        .map_err(|e| e.to_string())?;
    Ok(Some(Transport::Tls(TlsConfiguration::Rustls(config))))
}

/// Publishes reports until the task is dropped.
pub async fn run(cfg: ReportConfig, handle: StatusHandle) {
    let interval = crate::duration::parse(&cfg.interval).unwrap_or(Duration::from_secs(300));
    let topic = cfg.topic.replace("{thing}", &cfg.thing);
    let mut opts = MqttOptions::new(cfg.client_id.clone(), cfg.broker.clone(), cfg.port);
    opts.set_keep_alive(Duration::from_secs(60));
    if cfg.ca.is_some() {
        // No TLS handshake before the daemon's own time is trusted.
        while !handle
            .read()
            .is_trusted_within(Purpose::Tls.default_max_error())
        {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    match tls_transport(&cfg, &handle) {
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
    tokio::spawn(async move {
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
    let mut last: Option<(Value, Value)> = None;
    let mut sent = Instant::now();
    loop {
        let st = handle.status_json();
        let key = (st["state"].clone(), st["provenance"].clone());
        if last.as_ref() != Some(&key) || sent.elapsed() >= interval {
            let body = health_json(&st, &handle.sources_json()).to_string();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_form() {
        let st = json!({ "state": "synced", "offset_s": 1.5, "agreed": 2, "authenticated": false });
        let src = json!({ "sources": [
            { "address": "0.pool.ntp.org:123", "verdict": "agreed" },
            { "address": "1.pool.ntp.org:123", "verdict": "falseticker" },
        ]});
        let r = health_json(&st, &src);
        assert_eq!(r["state"]["reported"]["clock"]["schema"], SCHEMA);
        assert_eq!(r["state"]["reported"]["clock"]["falsetickers"], 1);
        assert_eq!(r["state"]["reported"]["clock"]["state"], "synced");
        assert_eq!(r["state"]["reported"]["clock"]["agreed"], 2);
        assert!(r["state"]["reported"]["clock"]["earliest"].is_null());
    }

    /// A report of a real daemon's status parses as [`crate::json::Health`] (no field more,
    /// none missing), and each of its fields is the status field of the same name.
    #[tokio::test]
    async fn the_report_is_a_subset_of_status_under_the_same_names() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[daemon]\nstate-dir = \"{}\"\ncontrol-socket = \"{}\"\n",
            dir.path().join("state").display(),
            dir.path().join("control.sock").display()
        );
        let config = crate::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
        let daemon = crate::daemon::Daemon {
            config,
            local: Arc::new(crate::clock::SystemClock),
            control: Arc::new(crate::platform::LinuxClock),
            rtc: None,
            observe_only: true,
        };
        let (handle, _fut) = daemon.start().unwrap();
        let status = handle.status_json();
        let report = health_json(&status, &handle.sources_json());
        let clock = &report["state"]["reported"]["clock"];
        let health: crate::json::Health = serde_json::from_value(clock.clone()).unwrap();
        assert_eq!(health.schema, SCHEMA);
        let _: crate::json::Status = serde_json::from_value(status.clone()).unwrap();
        for (k, v) in clock.as_object().unwrap() {
            if k != "schema" {
                assert_eq!(&status[k], v, "{k}");
            }
        }
    }
}
