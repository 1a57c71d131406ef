//! Prometheus text metrics (`GET /metrics`), from the same status as `trusttime status`.
//! A deliberately small HTTP responder: one request per connection, bounded reads.

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::daemon_api::DaemonLink;
use crate::json::{Sources, Status};

/// Renders the metrics text from the `status` and `sources` replies.
#[must_use]
pub fn render(status: &Status, sources: &Sources) -> String {
    let mut o = String::new();
    let num = |v: Option<f64>| v.map_or_else(|| "NaN".to_owned(), |x| x.to_string());
    let _ = writeln!(
        o,
        "# HELP trusttime_state Trust state (1 for the current one).\n# TYPE trusttime_state gauge"
    );
    for s in ["unknown", "holdover", "synced", "authenticated"] {
        let _ = writeln!(
            o,
            "trusttime_state{{state=\"{s}\"}} {}",
            u8::from(status.state == s)
        );
    }
    let _ = writeln!(o, "# HELP trusttime_offset_seconds True time minus system clock.\n# TYPE trusttime_offset_seconds gauge");
    let _ = writeln!(o, "trusttime_offset_seconds {}", num(status.offset_s));
    let _ = writeln!(o, "# HELP trusttime_uncertainty_seconds Half-width of the trusted interval.\n# TYPE trusttime_uncertainty_seconds gauge");
    let _ = writeln!(
        o,
        "trusttime_uncertainty_seconds {}",
        num(status.uncertainty_s)
    );
    let _ = writeln!(o, "# HELP trusttime_authenticated 1 when the time rests on authenticated sources.\n# TYPE trusttime_authenticated gauge");
    let _ = writeln!(
        o,
        "trusttime_authenticated {}",
        u8::from(status.authenticated)
    );
    let _ = writeln!(o, "# HELP trusttime_sources_agreeing Sources in the last consensus.\n# TYPE trusttime_sources_agreeing gauge");
    let _ = writeln!(o, "trusttime_sources_agreeing {}", status.agreed);
    let _ = writeln!(o, "# HELP trusttime_source_offset_seconds Last offset per source.\n# TYPE trusttime_source_offset_seconds gauge");
    let label = |a: &str| a.replace(['\\', '"', '\n'], "_");
    for s in &sources.sources {
        let _ = writeln!(
            o,
            "trusttime_source_offset_seconds{{address=\"{}\",verdict=\"{}\"}} {}",
            label(&s.address),
            s.verdict.as_str(),
            num(s.offset_s)
        );
    }
    let _ = writeln!(o, "# HELP trusttime_source_requests_total Exchanges with each source.\n# TYPE trusttime_source_requests_total counter");
    for s in &sources.sources {
        let _ = writeln!(
            o,
            "trusttime_source_requests_total{{address=\"{}\"}} {}",
            label(&s.address),
            s.requests
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
pub async fn serve(addr: SocketAddr, daemon: DaemonLink) -> std::io::Result<()> {
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
        let h = daemon.clone();
        slots.run(peer.ip(), async move {
            let mut buf = [0u8; 2048];
            let Ok(n) = s.read(&mut buf).await else {
                return;
            };
            let head = String::from_utf8_lossy(&buf[..n]);
            let (code, body) = if head.starts_with("GET /metrics ") {
                ("200 OK", render(&h.status(), &h.sources()))
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
    use crate::daemon_api::{LastSample, Snapshot, SourceView};
    use trusttime_core::select::OffsetInterval;
    use trusttime_core::{MonoInstant, Now, SignedDuration, UnixTime};

    #[test]
    fn renders_prometheus_text() {
        let floor = UnixTime::from_secs(1_800_000_000);
        let trust = trusttime_core::trust::TrustMachine::new(
            trusttime_core::trust::TrustConfig::new(floor),
        );
        let now = Now {
            mono: MonoInstant::from_nanos(5_000_000_000),
            wall: floor,
        };
        let mut snap = Snapshot::new(trust, floor);
        snap.agreed = 2;
        snap.sources.push(SourceView {
            address: "127.0.0.1:123".into(),
            kind: crate::spec::SourceKind::Ntp,
            auth_failures: 0,
            verdict: crate::spec::Verdict::Agreed,
            reason: String::new(),
            reach: 7,
            last: Some(LastSample {
                offset: OffsetInterval::around(
                    SignedDuration::from_secs(600),
                    SignedDuration::from_millis(1),
                ),
                at: now.mono,
                delay: SignedDuration::from_millis(1),
            }),
            poll: 6,
            next_due: None,
            kiss_code: None,
            requests: 3,
            answer: crate::tally::Answer::Answered,
        });
        let mut st = snap.status(now);
        let t = render(&st, &snap.sources(now));
        assert!(t.contains("trusttime_state{state=\"unknown\"} 1"), "{t}");
        assert!(t.contains("trusttime_offset_seconds NaN"), "{t}");
        assert!(t.contains("trusttime_sources_agreeing 2"), "{t}");
        assert!(
            t.contains(
                "trusttime_source_offset_seconds{address=\"127.0.0.1:123\",verdict=\"agreed\"} 600"
            ),
            "{t}"
        );
        assert!(t.contains("trusttime_source_requests_total{address=\"127.0.0.1:123\"} 3"));
        st.state = "synced".into();
        st.offset_s = Some(600.0);
        st.authenticated = true;
        let t = render(&st, &snap.sources(now));
        assert!(t.contains("trusttime_state{state=\"synced\"} 1"), "{t}");
        assert!(t.contains("trusttime_state{state=\"unknown\"} 0"));
        assert!(t.contains("trusttime_offset_seconds 600"));
        assert!(t.contains("trusttime_authenticated 1"));
    }
}
