//! Prometheus text metrics (`GET /metrics`), from the same status as `trusttime status`.
//! A deliberately small HTTP responder: one request per connection, bounded reads.

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::daemon::StatusHandle;

/// Renders the metrics text from `status` and `sources` replies.
#[must_use]
pub fn render(status: &Value, sources: &Value) -> String {
    let mut o = String::new();
    let num = |v: &Value| {
        v.as_f64()
            .map_or_else(|| "NaN".to_owned(), |x| x.to_string())
    };
    let _ = writeln!(
        o,
        "# HELP trusttime_state Trust state (1 for the current one).\n# TYPE trusttime_state gauge"
    );
    for s in ["unknown", "holdover", "synced", "authenticated"] {
        let _ = writeln!(
            o,
            "trusttime_state{{state=\"{s}\"}} {}",
            u8::from(status["state"] == s)
        );
    }
    let _ = writeln!(o, "# HELP trusttime_offset_seconds True time minus system clock.\n# TYPE trusttime_offset_seconds gauge");
    let _ = writeln!(o, "trusttime_offset_seconds {}", num(&status["offset_s"]));
    let _ = writeln!(o, "# HELP trusttime_uncertainty_seconds Half-width of the trusted interval.\n# TYPE trusttime_uncertainty_seconds gauge");
    let _ = writeln!(
        o,
        "trusttime_uncertainty_seconds {}",
        num(&status["uncertainty_s"])
    );
    let _ = writeln!(o, "# HELP trusttime_authenticated 1 when the time rests on authenticated sources.\n# TYPE trusttime_authenticated gauge");
    let _ = writeln!(
        o,
        "trusttime_authenticated {}",
        u8::from(status["authenticated"] == true)
    );
    let _ = writeln!(o, "# HELP trusttime_sources_agreeing Sources in the last consensus.\n# TYPE trusttime_sources_agreeing gauge");
    let _ = writeln!(o, "trusttime_sources_agreeing {}", num(&status["agreed"]));
    let _ = writeln!(o, "# HELP trusttime_source_offset_seconds Last offset per source.\n# TYPE trusttime_source_offset_seconds gauge");
    let list = sources["sources"].as_array().cloned().unwrap_or_default();
    let label = |s: &Value| {
        s["address"]
            .as_str()
            .unwrap_or_default()
            .replace(['\\', '"', '\n'], "_")
    };
    for s in &list {
        let _ = writeln!(
            o,
            "trusttime_source_offset_seconds{{address=\"{}\",verdict=\"{}\"}} {}",
            label(s),
            s["verdict"].as_str().unwrap_or_default(),
            num(&s["offset_s"])
        );
    }
    let _ = writeln!(o, "# HELP trusttime_source_requests_total Exchanges with each source.\n# TYPE trusttime_source_requests_total counter");
    for s in &list {
        let _ = writeln!(
            o,
            "trusttime_source_requests_total{{address=\"{}\"}} {}",
            label(s),
            num(&s["requests"])
        );
    }
    o
}

/// The most metrics connections held at once; a new one beyond evicts the oldest of the
/// address holding the most (see [`crate::conn_limit`]).
pub const MAX_CONNECTIONS: usize = 16;

/// Serves `/metrics` until the task is dropped: at most [`MAX_CONNECTIONS`] at once, each
/// given 5 s for its whole exchange.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(addr: SocketAddr, handle: StatusHandle) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics at /metrics");
    let slots = crate::conn_limit::Slots::new(MAX_CONNECTIONS, Duration::from_secs(5));
    loop {
        let (mut s, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors or memory: wait instead of spinning.
                tracing::debug!(error = %e, "metrics: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let h = handle.clone();
        slots.run(peer.ip(), async move {
            let mut buf = [0u8; 2048];
            let Ok(n) = s.read(&mut buf).await else {
                return;
            };
            let head = String::from_utf8_lossy(&buf[..n]);
            let (code, body) = if head.starts_with("GET /metrics ") {
                ("200 OK", render(&h.status_json(), &h.sources_json()))
            } else {
                ("404 Not Found", "only GET /metrics\n".to_owned())
            };
            let resp = format!(
                "HTTP/1.1 {code}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_prometheus_text() {
        let st = json!({ "state": "synced", "offset_s": 600.0, "uncertainty_s": 0.001, "authenticated": false, "agreed": 2 });
        let src = json!({ "sources": [{ "address": "127.0.0.1:123", "verdict": "agreed", "offset_s": 600.0, "requests": 3 }] });
        let t = render(&st, &src);
        assert!(t.contains("trusttime_state{state=\"synced\"} 1"), "{t}");
        assert!(t.contains("trusttime_state{state=\"unknown\"} 0"));
        assert!(t.contains("trusttime_offset_seconds 600"));
        assert!(t.contains("trusttime_source_requests_total{address=\"127.0.0.1:123\"} 3"));
        let t = render(&json!({ "state": "unknown", "offset_s": null }), &json!({}));
        assert!(t.contains("trusttime_offset_seconds NaN"));
    }
}
