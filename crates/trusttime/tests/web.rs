//! The web page for setting the time: every refusal over plain HTTP, `trusttime set`, and the
//! real thing in headless Chromium (WebDriver), with a phone-width screenshot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use trusttime_test_support::{
    chronyd_server, free_port, http, no_clock_command, wait_for_tcp, Peer, TempDir,
};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_trusttime"))
}

struct Device {
    _daemon: Peer,
    _dir: TempDir,
    config: PathBuf,
    web: SocketAddr,
    code: String,
}

fn device(sources: &[SocketAddr]) -> Device {
    let dir = TempDir::new().unwrap();
    let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut s = String::new();
    for a in sources {
        s.push_str(&format!("[[source]]\nkind = \"ntp\"\naddress = \"{a}\"\n"));
    }
    s.push_str(&format!(
        "[clock]\nobserve-only = true\n[daemon]\nstate-dir = \"{}\"\ncontrol-socket = \"{}\"\nstartup-delay = \"0s\"\nmin-poll = 2\nmax-poll = 3\n[web]\nenabled = true\nlisten = \"{web}\"\nmax-failed-logins = 10\ncooling-off = \"1m\"\n",
        dir.path().join("state").display(),
        dir.path().join("control.sock").display()
    ));
    let config = dir.path().join("trusttime.toml");
    std::fs::write(&config, s).unwrap();
    let out = Command::new(bin())
        .args(["web", "pairing-code", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(code.len(), 10);
    let mut cmd = no_clock_command(bin(), None);
    cmd.args(["daemon", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info");
    let daemon = Peer::spawn("trusttime-web-daemon", cmd, None);
    wait_for_tcp(web, Duration::from_secs(10));
    Device {
        _daemon: daemon,
        _dir: dir,
        config,
        web,
        code,
    }
}

fn status(d: &Device) -> Value {
    let out = Command::new(bin())
        .args(["status", "--json", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn post(
    d: &Device,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, Vec<String>, Value) {
    let mut h = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    let (code, hdrs, b) = http(d.web, "POST", path, &h, body.to_string().as_bytes());
    (
        code,
        hdrs,
        serde_json::from_slice(&b).unwrap_or(Value::Null),
    )
}

fn login(d: &Device) -> (String, String) {
    let (code, hdrs, body) = post(d, "/api/login", &[], &json!({ "pairing_code": d.code }));
    assert_eq!(code, 200, "{body}");
    let cookie = hdrs
        .iter()
        .find_map(|h| h.strip_prefix("set-cookie: "))
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("httponly") && cookie.contains("samesite=strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    (session, body["csrf_token"].as_str().unwrap().to_owned())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn every_refusal_has_the_right_status_and_the_clock_is_untouched() {
    let d = device(&[]);
    let t = json!({ "unix_ms": now_ms(), "uncertainty_ms": 100 });
    // No session.
    assert_eq!(post(&d, "/api/time", &[], &t).0, 401);
    let (session, csrf) = login(&d);
    let cookie = session.as_str();
    // Session but no or wrong CSRF token.
    assert_eq!(post(&d, "/api/time", &[("Cookie", cookie)], &t).0, 403);
    assert_eq!(
        post(
            &d,
            "/api/time",
            &[("Cookie", cookie), ("X-CSRF-Token", "nope")],
            &t
        )
        .0,
        403
    );
    let auth = [("Cookie", cookie), ("X-CSRF-Token", csrf.as_str())];
    // Malformed and oversized bodies.
    let (code, _, b) = http(
        d.web,
        "POST",
        "/api/time",
        &auth,
        b"{\"unix_ms\": \"soon\"}",
    );
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&b));
    assert!(String::from_utf8_lossy(&b).contains("malformed"));
    let big = vec![b' '; 10_000];
    assert_eq!(http(d.web, "POST", "/api/time", &auth, &big).0, 413);
    // Below the floor (2000-01-01), a silly uncertainty.
    let (code, _, b) = post(
        &d,
        "/api/time",
        &auth,
        &json!({ "unix_ms": 946_684_800_000i64, "uncertainty_ms": 1000 }),
    );
    assert_eq!(code, 422, "{b}");
    assert!(b["error"].as_str().unwrap().contains("below the floor"));
    assert_eq!(
        post(
            &d,
            "/api/time",
            &auth,
            &json!({ "unix_ms": now_ms(), "uncertainty_ms": -1 })
        )
        .0,
        400
    );
    // Nothing changed so far.
    let st = status(&d);
    assert_eq!(st["state"], "unknown", "{st}");
    assert_eq!(st["manual_changes"].as_array().unwrap().len(), 0);
    // A good one.
    let (code, _, b) = post(&d, "/api/time", &auth, &t);
    assert_eq!(code, 200, "{b}");
    let st = status(&d);
    assert_eq!(st["provenance"], "manual", "{st}");
    assert_eq!(st["state"], "holdover");
    let change = &st["manual_changes"][0];
    assert_eq!(change["who"], "web page, 127.0.0.1");
    assert!(change["old"].is_null());
    // The CLI follows the same rules.
    let out = Command::new(bin())
        .args(["set", "2000-01-01T00:00:00Z", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("below the floor"), "{err}");
    let now = trusttime_core::UnixTime::from_millis(now_ms()).to_string();
    let out = Command::new(bin())
        .args(["set", &now, "--uncertainty", "2s", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = status(&d);
    assert!(
        st["manual_changes"][1]["who"]
            .as_str()
            .unwrap()
            .starts_with("control socket"),
        "{st}"
    );
    // Garbage login bodies are a 400 (and do not count as attempts).
    assert_eq!(http(d.web, "POST", "/api/login", &[], b"\xff\xfe").0, 400);
    // Ten wrong pairing codes in a row: then 429, even with the right code.
    for _ in 0..10 {
        assert_eq!(
            post(
                &d,
                "/api/login",
                &[],
                &json!({ "pairing_code": "WRONGWRONG" })
            )
            .0,
            401
        );
    }
    let (code, hdrs, _) = post(&d, "/api/login", &[], &json!({ "pairing_code": d.code }));
    assert_eq!(code, 429);
    assert!(hdrs.iter().any(|h| h.starts_with("retry-after:")));
    // The daemon is still there.
    assert_eq!(http(d.web, "GET", "/api/status", &[], b"").0, 200);
}

#[test]
fn manual_time_outside_a_network_trusted_interval_needs_force_and_permission() {
    let a = SocketAddr::from(([127, 0, 0, 71], free_port()));
    let Some(_chronyd) = chronyd_server(a, None, &[]) else {
        return;
    };
    let d = device(&[a]);
    let out = Command::new(bin())
        .args(["wait", "--for", "tls", "--timeout", "5s", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (session, csrf) = login(&d);
    let auth = [
        ("Cookie", session.as_str()),
        ("X-CSRF-Token", csrf.as_str()),
    ];
    let day_ahead = json!({ "unix_ms": now_ms() + 86_400_000, "uncertainty_ms": 1000 });
    let (code, _, b) = post(&d, "/api/time", &auth, &day_ahead);
    assert_eq!(code, 409, "{b}");
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("outside the network-trusted interval"),
        "{b}"
    );
    let forced = json!({ "unix_ms": now_ms() + 86_400_000, "uncertainty_ms": 1000, "force": true });
    let (code, _, b) = post(&d, "/api/time", &auth, &forced);
    assert_eq!(code, 409, "{b}");
    assert!(
        b["error"].as_str().unwrap().contains("allow-manual-force"),
        "{b}"
    );
    assert_eq!(status(&d)["state"], "synced");
}

/// A tiny WebDriver client.
struct Browser {
    _driver: Peer,
    base: SocketAddr,
    session: String,
}

impl Browser {
    fn start() -> Option<Browser> {
        let driver = trusttime_test_support::peer_or_skip(
            "chromedriver",
            &["/usr/bin/chromedriver"],
            "apt-get install chromium-driver",
        )?;
        let chromium = trusttime_test_support::peer_or_skip(
            "chromium",
            &["/usr/bin/chromium"],
            "apt-get install chromium",
        )?;
        let port = free_port();
        let mut cmd = Command::new(driver);
        cmd.arg(format!("--port={port}"));
        let peer = Peer::spawn("chromedriver", cmd, None);
        let base = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for_tcp(base, Duration::from_secs(20));
        let profile = TempDir::new().unwrap().keep();
        let caps = json!({ "capabilities": { "alwaysMatch": { "browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.display()), "--window-size=390,844"]
        }}}});
        let (code, _, b) = http(
            base,
            "POST",
            "/session",
            &[("Content-Type", "application/json")],
            caps.to_string().as_bytes(),
        );
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(code, 200, "chromedriver: {v}");
        let session = v["value"]["sessionId"].as_str().unwrap().to_owned();
        Some(Browser {
            _driver: peer,
            base,
            session,
        })
    }
    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let payload = if method == "GET" {
            String::new()
        } else {
            body.to_string()
        };
        let (code, _, b) = http(
            self.base,
            method,
            &path,
            &[("Content-Type", "application/json")],
            payload.as_bytes(),
        );
        let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
        assert_eq!(code, 200, "{method} {path}: {v}");
        v["value"].clone()
    }
    fn element(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            &json!({ "using": "css selector", "value": css }),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(|x| x.as_str())
            .unwrap()
            .to_owned()
    }
    fn text(&self, css: &str) -> String {
        let e = self.element(css);
        self.call("GET", &format!("/element/{e}/text"), &Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            self.base,
            "DELETE",
            &format!("/session/{}", self.session),
            &[],
            b"",
        );
    }
}

#[test]
fn a_phone_browser_sets_the_time() {
    let d = device(&[]);
    let Some(b) = Browser::start() else { return };
    b.call(
        "POST",
        "/url",
        &json!({ "url": format!("http://{}/", d.web) }),
    );
    let code = b.element("#code");
    b.call(
        "POST",
        &format!("/element/{code}/value"),
        &json!({ "text": d.code }),
    );
    let pair = b.element("#login");
    b.call("POST", &format!("/element/{pair}/click"), &json!({}));
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.text("#msg") != "paired" {
        assert!(Instant::now() < deadline, "not paired: {}", b.text("#msg"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = now_ms();
    let button = b.element("#usephone");
    b.call("POST", &format!("/element/{button}/click"), &json!({}));
    while !b.text("#msg").starts_with("time set") {
        assert!(Instant::now() < deadline, "not set: {}", b.text("#msg"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = now_ms();
    let st = status(&d);
    assert_eq!(st["provenance"], "manual", "{st}");
    let change = &st["manual_changes"][0];
    assert!(
        change["who"].as_str().unwrap().starts_with("web page"),
        "{st}"
    );
    // The browser's clock is this machine's clock: the manual time lies within the request's
    // window, widened by the stated uncertainty (the measured round trip).
    let set_ms = trusttime_core::UnixTime::parse_rfc3339(change["new"].as_str().unwrap())
        .unwrap()
        .as_millis();
    let unc = change["uncertainty_ms"].as_i64().unwrap();
    assert!(
        set_ms >= before - unc - 1 && set_ms <= after + unc + 1,
        "{set_ms} not in {before}..{after} ± {unc}"
    );
    // The daemon's interval contains the true time.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let secs = |k: &str| {
        trusttime_core::UnixTime::parse_rfc3339(st[k].as_str().unwrap())
            .unwrap()
            .as_nanos() as f64
            / 1e9
    };
    assert!(
        secs("earliest") - 1.0 <= now && now <= secs("latest") + 1.0,
        "{st}"
    );
    // A screenshot at phone width for the record.
    let png = b.call("GET", "/screenshot", &Value::Null);
    let bytes = base64_decode(png.as_str().unwrap());
    assert!(bytes.starts_with(b"\x89PNG"));
    let out = trusttime_test_support::artifacts_dir().join("web-page-phone.png");
    std::fs::write(&out, bytes).unwrap();
    eprintln!("screenshot: {}", out.display());
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
