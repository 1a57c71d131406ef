//! The web page for setting the time: every refusal over plain HTTP, `trusttime set`, the
//! server's limits (idle connections, `Host`, `Origin`, content type), and the real thing in
//! headless Chromium (WebDriver), with a phone-width screenshot and a phone in another time
//! zone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use trusttime_test_support::{chronyd_server, free_port, http, no_clock_command, Peer, TempDir};

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
    device_with(sources, "", false)
}

/// A daemon with the web page on; `web_extra` adds `[web]` keys; `unit_fd_limit` runs it with
/// the systemd unit's default open-file limit (1024).
fn device_with(sources: &[SocketAddr], web_extra: &str, unit_fd_limit: bool) -> Device {
    let dir = TempDir::new().unwrap();
    let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut s = String::new();
    for a in sources {
        s.push_str(&format!("[[source]]\nkind = \"ntp\"\naddress = \"{a}\"\n"));
    }
    s.push_str(&format!(
        "[clock]\nobserve-only = true\n[daemon]\nstate-dir = \"{}\"\ncontrol-socket = \"{}\"\nstartup-delay = \"0s\"\nmin-poll = 2\nmax-poll = 3\n[web]\nenabled = true\nlisten = \"{web}\"\nmax-failed-logins = 10\ncooling-off = \"1m\"\n{web_extra}\n",
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
    let inner = no_clock_command(bin(), None);
    let mut cmd = if unit_fd_limit {
        let mut c = Command::new("prlimit");
        c.arg("--nofile=1024:1024")
            .arg(inner.get_program())
            .args(inner.get_args());
        c
    } else {
        inner
    };
    cmd.args(["daemon", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info");
    let mut daemon = Peer::spawn("trusttime-web-daemon", cmd, None);
    daemon.expect_listening(web, Duration::from_secs(10));
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
    let auth_json = [
        ("Cookie", cookie),
        ("X-CSRF-Token", csrf.as_str()),
        ("Content-Type", "application/json"),
    ];
    // Malformed and oversized bodies.
    let (code, _, b) = http(
        d.web,
        "POST",
        "/api/time",
        &auth_json,
        b"{\"unix_ms\": \"soon\"}",
    );
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&b));
    assert!(String::from_utf8_lossy(&b).contains("malformed"));
    let big = vec![b' '; 10_000];
    assert_eq!(http(d.web, "POST", "/api/time", &auth_json, &big).0, 413);
    // A valid session and token, but not a JSON request: refused before it is read.
    let (code, _, b) = http(
        d.web,
        "POST",
        "/api/time",
        &[
            ("Cookie", cookie),
            ("X-CSRF-Token", csrf.as_str()),
            ("Content-Type", "text/plain"),
        ],
        t.to_string().as_bytes(),
    );
    assert_eq!(code, 415, "{}", String::from_utf8_lossy(&b));
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
    assert_eq!(
        http(
            d.web,
            "POST",
            "/api/login",
            &[("Content-Type", "application/json")],
            b"\xff\xfe"
        )
        .0,
        400
    );
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
    // The page has no force option: the refusal does not offer one.
    let e = b["error"].as_str().unwrap();
    assert!(
        !e.contains("send force") && e.contains("this page cannot override"),
        "{e}"
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
    /// Headless Chromium at phone width; `tz` sets its time zone (as a phone abroad has).
    fn start(tz: Option<&str>) -> Option<Browser> {
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
        // A port checked free can still be taken before chromedriver binds it; chromedriver
        // then exits, and a new port is tried (up to three, each failure's log kept).
        let mut failures = Vec::new();
        let (peer, base) = loop {
            let port = free_port();
            let mut cmd = Command::new(&driver);
            cmd.arg(format!("--port={port}"));
            if let Some(tz) = tz {
                cmd.env("TZ", tz);
            }
            let mut peer = Peer::spawn("chromedriver", cmd, None);
            let base = SocketAddr::from(([127, 0, 0, 1], port));
            match peer.wait_for_tcp(base, Duration::from_secs(30)) {
                Ok(()) => break (peer, base),
                Err(e) if failures.len() < 2 => failures.push(e),
                Err(e) => panic!("chromedriver never listened: {failures:?} then {e}"),
            }
        };
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
    fn execute(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            &json!({ "script": script, "args": [] }),
        )
    }
    fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.call("POST", &format!("/element/{e}/clear"), &json!({}));
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            &json!({ "text": text }),
        );
    }
    fn click(&self, css: &str) {
        let e = self.element(css);
        self.call("POST", &format!("/element/{e}/click"), &json!({}));
    }
    fn wait_for_msg(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = self.text("#msg");
            if m.starts_with(prefix) {
                return m;
            }
            assert!(Instant::now() < deadline, "waiting for {prefix:?}: {m}");
            std::thread::sleep(Duration::from_millis(50));
        }
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
    let Some(b) = Browser::start(None) else {
        return;
    };
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
    // The bound claimed is the phone clock's own possible error plus the round trip, in
    // seconds; not the round trip alone as if the phone's clock were perfect.
    let msg = b.text("#msg");
    assert!(msg.contains("± 2.") && msg.contains(" s"), "{msg}");
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

/// Sends `request` as is and returns the status code (0 when the server closed without one).
fn raw(addr: SocketAddr, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

fn login_request(host: &str, extra: &str, code: &str) -> String {
    let body = json!({ "pairing_code": code }).to_string();
    format!(
        "POST /api/login HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A DNS-rebinding page, a cross-site form and a stray client: the `Host` allow-list, the
/// `Origin` check on writes and the JSON content type.
#[test]
fn foreign_hosts_cross_site_writes_and_plain_text_are_refused() {
    let d = device_with(&[], "allowed-hosts = [\"device.test\"]", false);
    let idle = std::net::TcpStream::connect(d.web).unwrap();
    let opened = Instant::now();
    let port = d.web.port();
    let get = |host: &str| {
        raw(
            d.web,
            &format!("GET /api/status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
    };
    // The listen address, localhost (listening on loopback) and the operator's name.
    for host in [
        format!("127.0.0.1:{port}"),
        "127.0.0.1".into(),
        format!("localhost:{port}"),
        "DEVICE.test.".into(),
        format!("device.test:{port}"),
    ] {
        assert_eq!(get(&host).0, 200, "{host}");
    }
    // Anything else, as a rebinding attacker's page would send it.
    for host in [
        format!("evil.example:{port}"),
        "127.0.0.2".into(),
        "device.test.evil.example".into(),
        "127.0.0.1:99999".into(),
        "".into(),
    ] {
        let (code, text) = get(&host);
        assert_eq!(code, 421, "{host}: {text}");
        assert!(text.contains("allowed-hosts"), "{text}");
    }
    // No Host at all (HTTP/1.0), two of them, or an absolute URI naming another host.
    assert_eq!(
        raw(d.web, "GET /api/status HTTP/1.0\r\n\r\n").0,
        421,
        "no Host"
    );
    assert_ne!(
        raw(
            d.web,
            &format!("GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        )
        .0,
        200
    );
    assert_eq!(
        raw(
            d.web,
            &format!("GET http://evil.example/api/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
        )
        .0,
        421
    );
    let host = format!("127.0.0.1:{port}");
    let json = "Content-Type: application/json\r\n";
    // Cross-site writes, even with the right pairing code: refused before the code is tried.
    for origin in [
        "Origin: http://evil.example\r\n".to_owned(),
        format!("Origin: http://127.0.0.1:{}\r\n", port + 1),
        format!("Origin: http://device.test:{port}\r\n"),
        "Origin: null\r\n".into(),
        "Sec-Fetch-Site: cross-site\r\n".into(),
    ] {
        let (code, text) = raw(
            d.web,
            &login_request(&host, &format!("{json}{origin}"), &d.code),
        );
        assert_eq!(code, 403, "{origin}: {text}");
    }
    // A cross-site form can only send text/plain, form or multipart bodies: refused.
    for ct in [
        "Content-Type: text/plain\r\n",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        "",
    ] {
        let (code, text) = raw(d.web, &login_request(&host, ct, &d.code));
        assert_eq!(code, 415, "{ct}: {text}");
        assert!(text.contains("application/json"), "{text}");
    }
    // None of that counted as a failed login or paired anyone; the page's own request does.
    let (code, text) = raw(
        d.web,
        &login_request(
            &host,
            &format!("Content-Type: application/json; charset=utf-8\r\nOrigin: http://{host}\r\nSec-Fetch-Site: same-origin\r\n"),
            &d.code,
        ),
    );
    assert_eq!(code, 200, "{text}");
    // A connection that never sends a request is closed after the header timeout (10 s).
    use std::io::Read;
    let mut idle = idle;
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let n = idle.read(&mut [0u8; 64]).unwrap_or(0);
    let after = opened.elapsed();
    assert_eq!(n, 0, "an idle connection got data");
    assert!(
        after >= Duration::from_secs(9) && after < Duration::from_secs(15),
        "idle connection closed after {after:?}"
    );
}

/// Fd exhaustion: with the unit's default open-file limit (1024), 1,100 idle connections from a
/// local user neither lock out the page nor starve the daemon (control socket, NTP).
#[test]
fn a_thousand_idle_connections_do_not_stop_the_page_or_the_daemon() {
    // This test process needs more than 1,100 descriptors itself.
    let raised = Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg("--nofile=4096:4096")
        .status()
        .unwrap();
    assert!(raised.success(), "cannot raise this test's open-file limit");
    let a = SocketAddr::from(([127, 0, 0, 72], free_port()));
    let Some(_chronyd) = chronyd_server(a, None, &[]) else {
        return;
    };
    let d = device_with(&[a], "", true);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d._daemon.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    assert!(line.contains(" 1024 "), "{line}");
    let mut idle = Vec::new();
    for _ in 0..1100 {
        match std::net::TcpStream::connect_timeout(&d.web, Duration::from_secs(2)) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connect {}: {e}", idle.len()),
        }
    }
    let started = Instant::now();
    let (code, _, body) = http(d.web, "GET", "/api/status", &[], b"");
    let took = started.elapsed();
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        took < Duration::from_secs(1),
        "a normal request took {took:?}"
    );
    // The daemon holds a bounded number of descriptors, not one per idle connection.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", d._daemon.pid()))
        .unwrap()
        .count();
    assert!(fds < 200, "the daemon holds {fds} descriptors");
    eprintln!("with 1100 idle connections: a normal request took {took:?}; the daemon holds {fds} descriptors");
    // The control socket answers, and NTP polling goes on: the time becomes trusted.
    let out = Command::new(bin())
        .args(["wait", "--for", "tls", "--timeout", "10s", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status(&d)["state"], "synced");
    drop(idle);
}

/// A phone in Los Angeles types a UTC time, as the label asks: the device gets that UTC
/// instant, not one 8 hours off. The date does not wrap at phone width.
#[test]
fn a_phone_in_another_time_zone_types_a_utc_time() {
    let d = device(&[]);
    let Some(b) = Browser::start(Some("America/Los_Angeles")) else {
        return;
    };
    b.call(
        "POST",
        "/url",
        &json!({ "url": format!("http://{}/", d.web) }),
    );
    // The browser really is in another zone (UTC-8 in winter, UTC-7 in summer).
    let tz_offset = b.execute("return new Date().getTimezoneOffset();");
    assert!(
        matches!(tz_offset.as_i64(), Some(420 | 480)),
        "browser time zone offset {tz_offset}"
    );
    b.type_into("#code", &d.code);
    b.click("#login");
    b.wait_for_msg("paired");
    // Two hours from now, whole seconds, typed without a zone the way a person would.
    let target_ms = (now_ms() / 1000 + 7200) * 1000;
    let typed = trusttime_core::UnixTime::from_millis(target_ms)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned();
    let typed = typed.split('.').next().unwrap().to_owned();
    b.type_into("#typed", &typed);
    b.type_into("#typedunc", "5");
    b.click("#settyped");
    let msg = b.wait_for_msg("time set");
    assert!(msg.contains("UTC"), "{msg}");
    let st = status(&d);
    let change = &st["manual_changes"][0];
    let set_ms = trusttime_core::UnixTime::parse_rfc3339(change["new"].as_str().unwrap())
        .unwrap()
        .as_millis();
    assert_eq!(
        set_ms, target_ms,
        "typed {typed:?} (UTC), device got {}",
        change["new"]
    );
    assert_eq!(change["uncertainty_ms"], 5000);
    // Explicit offsets are honoured; garbage is refused on the page.
    let plus_two = trusttime_core::UnixTime::from_millis(target_ms + 2 * 3_600_000).to_string();
    let plus_two = format!("{}+02:00", &plus_two[..19]);
    b.type_into("#typed", &plus_two);
    b.click("#settyped");
    b.wait_for_msg("time set");
    let st = status(&d);
    let set_ms =
        trusttime_core::UnixTime::parse_rfc3339(st["manual_changes"][1]["new"].as_str().unwrap())
            .unwrap()
            .as_millis();
    assert_eq!(set_ms, target_ms, "{plus_two}");
    b.type_into("#typed", "2026-02-30 08:00:00");
    b.click("#settyped");
    b.wait_for_msg("not a time");
    // At 390 px the shown time keeps its date on one line and does not overflow.
    let layout = b.execute(
        "const t = document.getElementById('time'); const d = document.getElementById('date'); \
         return [d.getClientRects().length, t.scrollWidth <= t.clientWidth, d.textContent, window.innerWidth];",
    );
    assert_eq!(layout[0], 1, "{layout}");
    assert_eq!(layout[1], true, "{layout}");
    assert!(layout[2].as_str().unwrap().len() == 10, "{layout}");
}

/// A connection from 127.0.0.2 bound for the page on 127.0.0.1, as a blocking stream.
fn connect_from(src: [u8; 4], to: SocketAddr) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::from((src, 0))).unwrap();
        sock.connect(to).await.unwrap()
    });
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s
}

/// Sends one keep-alive GET on `s` and reads its response head and body.
fn keep_alive_get(s: &mut std::net::TcpStream, host: SocketAddr) -> u16 {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("GET /api/status HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse::<usize>().ok());
            if len.is_some_and(|l| body.len() >= l) {
                break;
            }
        }
    }
    String::from_utf8_lossy(&got)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// When the page is full, the address holding the most connections makes room: a neighbour
/// flooding it from one address does not push out the phone's kept-alive connection.
#[test]
fn a_flooding_neighbour_cannot_push_out_a_phone() {
    let d = device(&[]);
    let mut phone = connect_from([127, 0, 0, 2], d.web);
    assert_eq!(keep_alive_get(&mut phone, d.web), 200);
    let flood: Vec<_> = (0..300)
        .map(|_| std::net::TcpStream::connect(d.web).unwrap())
        .collect();
    // The phone's connection, now the oldest of all and idle, still answers.
    assert_eq!(keep_alive_get(&mut phone, d.web), 200);
    drop(flood);
}
