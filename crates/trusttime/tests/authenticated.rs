//! Authenticated time end to end: NTS against chronyd (NTS-KE and NTS-protected NTP), Roughtime
//! against roughenough, and an on-path attacker (a UDP proxy in this test) that shifts or
//! tampers with replies. Every server runs on loopback, without CAP_SYS_TIME, at a known
//! libfaketime offset; `trusttime sync` never sets the clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use trusttime_test_support::certs::{make_chain, unix_now, write_pem};
use trusttime_test_support::{
    chronyd_nts_server, chronyd_server, flip_a_bit, free_port, roughenough_server,
    shift_ntp_reply_by_a_day, udp_proxy, Peer, TempDir,
};

const SEED_A: &str = "a32049da0ffde0ded92ce10a0230d35fe615ec8461c14986baa63fe3b3bac3db";
const SEED_B: &str = "b32049da0ffde0ded92ce10a0230d35fe615ec8461c14986baa63fe3b3bac3db";
const SEED_C: &str = "c32049da0ffde0ded92ce10a0230d35fe615ec8461c14986baa63fe3b3bac3db";

fn sync_json(args: &[String]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_trusttime"))
        .args(["sync", "--json", "--timeout", "4s"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

fn offset(v: &Value) -> f64 {
    v["offset_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("no offset in {v}"))
}

/// Certificates for "localhost", valid from `from` to `to` (Unix seconds), written to a
/// fresh directory.
fn certs(from: i64, to: i64) -> TempDir {
    let dir = TempDir::new().unwrap();
    let day = 86_400;
    let chain = make_chain("localhost", (from - day, to + day), None, (from, to));
    write_pem(&chain, dir.path()).unwrap();
    dir
}

fn everyday_certs() -> TempDir {
    let now = unix_now();
    certs(now - 30 * 86_400, now + 335 * 86_400)
}

/// chronyd serving NTS at a fake offset: (peer, NTS-KE address as `localhost:PORT`).
fn nts_server(
    ip: [u8; 4],
    faketime: Option<&str>,
    dir: &Path,
    advertise: Option<&str>,
) -> Option<(Peer, String)> {
    let ntp = SocketAddr::from((ip, free_port()));
    let ke = free_port();
    let p = chronyd_nts_server(ntp, ke, faketime, dir, advertise)?;
    Some((p, format!("localhost:{ke}")))
}

fn ca_args(dir: &Path) -> Vec<String> {
    vec!["--ca".into(), dir.join("root.pem").display().to_string()]
}

#[test]
fn nts_against_chronyd_one_hour_ahead() {
    let dir = everyday_certs();
    let Some((_p, ke)) = nts_server([127, 0, 0, 1], Some("+3600"), dir.path(), None) else {
        return;
    };
    let mut args = vec!["--nts".to_owned(), ke];
    args.extend(ca_args(dir.path()));
    let (code, v) = sync_json(&args);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["authenticated"], true, "{v}");
    assert_eq!(v["provenance"], "authenticated", "{v}");
    assert!((offset(&v) - 3600.0).abs() < 0.01, "{v}");
    let s = &v["sources"][0];
    assert_eq!(s["kind"], "nts");
    assert_eq!(s["verdict"], "agreed", "{v}");
    assert_eq!(s["auth_failures"], 0);
    assert!(v["warning"].is_null(), "{v}");
}

#[test]
fn nts_reply_with_a_flipped_bit_is_dropped_and_counted() {
    let dir = everyday_certs();
    // chronyd's NTP listens on 127.0.0.1; its NTS-KE names 127.0.0.5, where the tampering
    // proxy listens on the same port.
    let ntp = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let ke = free_port();
    let Some(_p) = chronyd_nts_server(ntp, ke, Some("+3600"), dir.path(), Some("127.0.0.5")) else {
        return;
    };
    udp_proxy(
        SocketAddr::from(([127, 0, 0, 5], ntp.port())),
        ntp,
        flip_a_bit,
    );
    let mut args = vec!["--nts".to_owned(), format!("localhost:{ke}")];
    args.extend(ca_args(dir.path()));
    let (code, v) = sync_json(&args);
    assert_eq!(code, 1, "{v}");
    let s = &v["sources"][0];
    assert!(s["auth_failures"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(s["verdict"], "no_reply", "{v}");
    assert_eq!(v["authenticated"], false, "{v}");
    assert!(
        v["offset_s"].is_null(),
        "a tampered reply must never give a time: {v}"
    );
}

#[test]
fn nts_ke_refuses_an_untrusted_certificate() {
    let dir = everyday_certs();
    let other = everyday_certs(); // a different root
    let Some((_p, ke)) = nts_server([127, 0, 0, 1], None, dir.path(), None) else {
        return;
    };
    let mut args = vec!["--nts".to_owned(), ke];
    args.extend(ca_args(other.path()));
    let (code, v) = sync_json(&args);
    assert_eq!(code, 1, "{v}");
    let reason = v["sources"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("TLS handshake"), "{reason}");
    assert_eq!(v["sources"][0]["verdict"], "invalid");
}

#[test]
fn bootstrap_from_the_floor_with_a_certificate_issued_after_it() {
    // The device knows only its floor, two years back; the NTS-KE certificate was issued a
    // month ago, long after the floor. It is valid within the bootstrap interval [floor,
    // floor + 5 years], so the key exchange goes ahead; the time obtained is then checked to
    // lie inside the certificate's validity.
    let floor = unix_now() - 2 * 365 * 86_400;
    let floor_s = rfc3339(floor);
    let dir = everyday_certs();
    let Some((_p, ke)) = nts_server([127, 0, 0, 1], None, dir.path(), None) else {
        return;
    };
    let mut args = vec![
        "--nts".to_owned(),
        ke.clone(),
        "--floor".into(),
        floor_s.clone(),
    ];
    args.extend(ca_args(dir.path()));
    let (code, v) = sync_json(&args);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["authenticated"], true);

    // A certificate that expired a week ago: valid within the bootstrap interval, so the key
    // exchange goes ahead, but the time obtained lies outside its validity: thrown away.
    let now = unix_now();
    let old = certs(now - 400 * 86_400, now - 7 * 86_400);
    let Some((_q, ke_old)) = nts_server([127, 0, 0, 1], None, old.path(), None) else {
        return;
    };
    let mut args = vec!["--nts".to_owned(), ke_old, "--floor".into(), floor_s];
    args.extend(ca_args(old.path()));
    let (code, v) = sync_json(&args);
    assert_eq!(code, 1, "{v}");
    let reason = v["sources"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("thrown away"), "{reason}");
    assert!(v["offset_s"].is_null(), "{v}");
}

fn rfc3339(secs: i64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn on_path_attacker_cannot_move_authenticated_time() {
    // A plain NTP server behind a proxy that shifts every reply by a day, and an NTS server.
    let plain = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let Some(_n) = chronyd_server(plain, Some("+3600"), &[]) else {
        return;
    };
    let shifted = SocketAddr::from(([127, 0, 0, 6], plain.port()));
    udp_proxy(shifted, plain, shift_ntp_reply_by_a_day);
    let dir = everyday_certs();
    let Some((_p, ke)) = nts_server([127, 0, 0, 1], Some("+3600"), dir.path(), None) else {
        return;
    };

    // With NTS configured, the trusted time stays at +1 h and the disagreement is named.
    let mut args = vec![
        "--nts".to_owned(),
        ke,
        "--server".into(),
        shifted.to_string(),
    ];
    args.extend(ca_args(dir.path()));
    let (code, v) = sync_json(&args);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["authenticated"], true, "{v}");
    assert!((offset(&v) - 3600.0).abs() < 0.01, "{v}");
    let plain_src = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "ntp")
        .unwrap();
    assert_eq!(plain_src["verdict"], "falseticker", "{v}");
    assert!(v["warning"].as_str().unwrap().contains("disagree"), "{v}");

    // With only plain NTP, the attacker wins, and the result says it is unauthenticated.
    let (code, v) = sync_json(&["--server".into(), shifted.to_string()]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["authenticated"], false, "{v}");
    assert!((offset(&v) - 3600.0 - 86_400.0).abs() < 0.01, "{v}");
    assert!(
        v["warning"].as_str().unwrap().contains("unauthenticated"),
        "{v}"
    );
}

#[test]
fn roughtime_against_roughenough() {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let Some((_p, key)) = roughenough_server(addr, Some("+3600"), SEED_A) else {
        return;
    };
    let (code, v) = sync_json(&["--roughtime".into(), format!("{addr}={key}")]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["authenticated"], true, "{v}");
    // roughenough signs whole seconds with a radius of 5 s.
    assert!((offset(&v) - 3600.0).abs() < 6.0, "{v}");
    assert_eq!(v["sources"][0]["kind"], "roughtime");
    assert_eq!(v["sources"][0]["verdict"], "agreed");

    // The same server in the original Google format.
    let (code, v) = sync_json(&[
        "--roughtime".into(),
        format!("{addr}={key}"),
        "--roughtime-protocol".into(),
        "google".into(),
    ]);
    assert_eq!(code, 0, "{v}");
    assert!((offset(&v) - 3600.0).abs() < 6.0, "{v}");

    // The wrong key: every reply fails verification.
    let wrong = format!(
        "{}{}",
        if key.starts_with('0') { "1" } else { "0" },
        &key[1..]
    );
    assert_ne!(key, wrong);
    let (code, v) = sync_json(&["--roughtime".into(), format!("{addr}={wrong}")]);
    assert_eq!(code, 1, "{v}");
    assert!(v["provenance"].is_null() && v["offset_s"].is_null(), "{v}");
    // Reported as what it is, not as a silent server.
    let s = &v["sources"][0];
    assert_eq!(s["verdict"], "invalid", "{v}");
    assert!(
        s["reason"].as_str().unwrap().starts_with("wrong key"),
        "{v}"
    );
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("1 rejected (wrong key)"),
        "{v}"
    );
    // Replies tampered with on the path (a flipped bit) or spoofed garbage: invalid, and
    // said so; never a time.
    for (tamper, ip) in [
        (flip_a_bit as fn(&mut [u8]), [127, 0, 0, 6]),
        (spoof_garbage as fn(&mut [u8]), [127, 0, 0, 7]),
    ] {
        let proxy = SocketAddr::from((ip, addr.port()));
        udp_proxy(proxy, addr, tamper);
        let (code, v) = sync_json(&["--roughtime".into(), format!("{proxy}={key}")]);
        assert_eq!(code, 1, "{v}");
        assert!(v["offset_s"].is_null(), "{v}");
        let s = &v["sources"][0];
        assert_eq!(s["verdict"], "invalid", "{v}");
        assert!(
            s["reason"]
                .as_str()
                .unwrap()
                .starts_with("reply failed verification"),
            "{v}"
        );
    }
}

/// Replaces a reply with bytes that are not a Roughtime message.
fn spoof_garbage(b: &mut [u8]) {
    for (i, x) in b.iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(37) ^ 0x5a;
    }
}

#[test]
fn roughtime_chain_with_a_liar() {
    let a = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let b = SocketAddr::from(([127, 0, 0, 2], free_port()));
    let c = SocketAddr::from(([127, 0, 0, 3], free_port()));
    let Some((_pa, ka)) = roughenough_server(a, None, SEED_A) else {
        return;
    };
    let Some((_pb, kb)) = roughenough_server(b, Some("-86400"), SEED_B) else {
        return;
    };
    let Some((_pc, kc)) = roughenough_server(c, None, SEED_C) else {
        return;
    };
    let (code, v) = sync_json(&[
        "--roughtime".into(),
        format!("{a}={ka}"),
        "--roughtime".into(),
        format!("{b}={kb}"),
        "--roughtime".into(),
        format!("{c}={kc}"),
        "--floor".into(),
        "2020-01-01T00:00:00Z".into(),
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["authenticated"], true);
    assert!(offset(&v).abs() < 6.0, "{v}");
    let verdicts: Vec<&str> = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["agreed", "falseticker", "agreed"], "{v}");
    assert!(
        v["chain_violations"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "the chain proves the liar: {v}"
    );
}

fn daemon_cli(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_trusttime"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn daemon_json(args: &[&str], config: &Path) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = daemon_cli(&a, config);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn daemon_prefers_nts_names_the_shifted_ntp_source_and_gates_tls_on_authentication() {
    let plain = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let Some(_n) = chronyd_server(plain, Some("+600"), &[]) else {
        return;
    };
    let shifted = SocketAddr::from(([127, 0, 0, 7], plain.port()));
    udp_proxy(shifted, plain, shift_ntp_reply_by_a_day);
    let certs_dir = everyday_certs();
    let Some((_p, ke)) = nts_server([127, 0, 0, 1], Some("+600"), certs_dir.path(), None) else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let write = |sources: &str, name: &str| {
        let text = format!(
            "{sources}[clock]\nobserve-only = true\nrequire-authenticated = [\"tls\"]\ntrust-anchors = \"{}\"\n[daemon]\nstate-dir = \"{}\"\ncontrol-socket = \"{}\"\nstartup-delay = \"0s\"\nmin-poll = 1\nmax-poll = 3\n",
            certs_dir.path().join("root.pem").display(),
            dir.path().join(format!("state-{name}")).display(),
            dir.path().join(format!("{name}.sock")).display(),
        );
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    };
    let config = write(
        &format!("[[source]]\nkind = \"ntp\"\naddress = \"{shifted}\"\n[[source]]\nkind = \"nts\"\naddress = \"{ke}\"\n"),
        "both",
    );
    let v = Command::new(env!("CARGO_BIN_EXE_trusttime"))
        .args(["validate-config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    assert!(String::from_utf8_lossy(&v.stdout).contains("nts localhost:"));

    let mut cmd =
        trusttime_test_support::no_clock_command(Path::new(env!("CARGO_BIN_EXE_trusttime")), None);
    cmd.args(["daemon", "--config"])
        .arg(&config)
        .env("RUST_LOG", "trusttime=debug");
    let daemon = Peer::spawn("trusttime-daemon-nts", cmd, None);
    let out = daemon_cli(&["wait", "--for", "tls", "--timeout", "5s"], &config);
    assert!(
        out.status.success(),
        "wait: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log_text()
    );
    let st = daemon_json(&["status"], &config);
    assert_eq!(st["state"], "authenticated", "{st}");
    assert_eq!(st["authenticated"], true, "{st}");
    assert!(
        (st["offset_s"].as_f64().unwrap() - 600.0).abs() < 0.05,
        "{st}"
    );
    assert_eq!(
        st["unauthenticated_disagree"][0],
        shifted.to_string(),
        "{st}"
    );
    assert!(st["verdict"].as_str().unwrap().contains("disagree"), "{st}");
    let src = daemon_json(&["sources"], &config);
    let list = src["sources"].as_array().unwrap();
    let ntp = list.iter().find(|s| s["kind"] == "ntp").unwrap();
    let nts = list.iter().find(|s| s["kind"] == "nts").unwrap();
    assert_eq!(ntp["verdict"], "falseticker", "{src}");
    assert_eq!(nts["verdict"], "agreed", "{src}");
    // The next polls (2 s apart at min-poll 1) use the session's cookies: no second key
    // exchange.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let src = daemon_json(&["sources"], &config);
        let nts = src["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["kind"] == "nts")
            .cloned()
            .unwrap();
        if nts["requests"].as_u64().unwrap() >= 3 && nts["reach"] == "007" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{src}\n{}",
            daemon.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        daemon.log_text().matches("NTS-KE done").count(),
        1,
        "{}",
        daemon.log_text()
    );
    drop(daemon);

    // Only the shifted plain NTP source, but TLS requires authenticated time: the config is
    // refused (a requirement nothing can meet is a mistake), ...
    let lone = write(
        &format!("[[source]]\nkind = \"ntp\"\naddress = \"{shifted}\"\n"),
        "plain",
    );
    let v = Command::new(env!("CARGO_BIN_EXE_trusttime"))
        .args(["validate-config"])
        .arg(&lone)
        .output()
        .unwrap();
    assert!(!v.status.success());
    assert!(String::from_utf8_lossy(&v.stderr).contains("require-authenticated"));

    // ... and with an NTS source that is down, plain NTP syncs but `wait --for tls` does not
    // return: the time is not authenticated.
    let down = write(
        &format!("[[source]]\nkind = \"ntp\"\naddress = \"{shifted}\"\n[[source]]\nkind = \"nts\"\naddress = \"localhost:{}\"\n", free_port()),
        "down",
    );
    let mut cmd =
        trusttime_test_support::no_clock_command(Path::new(env!("CARGO_BIN_EXE_trusttime")), None);
    cmd.args(["daemon", "--config"]).arg(&down);
    let _daemon = Peer::spawn("trusttime-daemon-nts-down", cmd, None);
    let out = daemon_cli(&["wait", "--for", "tls", "--timeout", "3s"], &down);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("requires authenticated time"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = daemon_json(&["status"], &down);
    assert_eq!(st["state"], "synced", "{st}");
    assert_eq!(st["authenticated"], false, "{st}");
    // SigV4 was not required to be authenticated: plain NTP is enough for it here.
    let out = daemon_cli(&["wait", "--for", "sigv4", "--timeout", "3s"], &down);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn https_date_constraint_rules_out_a_shifted_ntp_server() {
    let honest = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let Some(_h) = chronyd_server(honest, None, &[]) else {
        return;
    };
    let upstream = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let Some(_u) = chronyd_server(upstream, None, &[]) else {
        return;
    };
    let shifted = SocketAddr::from(([127, 0, 0, 8], upstream.port()));
    udp_proxy(shifted, upstream, shift_ntp_reply_by_a_day);
    let dir = everyday_certs();
    let port = free_port();
    let Some(_w) = trusttime_test_support::python_https_server(dir.path(), port, None) else {
        return;
    };
    let mut args = vec![
        "--server".to_owned(),
        honest.to_string(),
        "--server".into(),
        shifted.to_string(),
        "--https-date".into(),
        format!("https://localhost:{port}/"),
    ];
    args.extend(ca_args(dir.path()));
    let (code, v) = sync_json(&args);
    assert_eq!(code, 0, "{v}");
    let c = &v["constraints"][0];
    assert!(c["error"].is_null(), "{v}");
    // The Date header has one-second resolution: the constraint is about a second wide.
    let (lo, hi) = (
        c["offset_lo_s"].as_f64().unwrap(),
        c["offset_hi_s"].as_f64().unwrap(),
    );
    assert!(lo <= 0.0 && 0.0 <= hi && hi - lo < 1.5, "{v}");
    assert_eq!(v["sources"][0]["verdict"], "agreed", "{v}");
    assert_eq!(v["sources"][1]["verdict"], "falseticker", "{v}");
    assert!(
        v["sources"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("HTTPS Date constraint"),
        "{v}"
    );
    assert!(offset(&v).abs() < 0.01, "{v}");

    // A server whose certificate the device does not trust gives no constraint: the
    // safeguard asked for is missing, so `sync` fails (exit 1) and says why, while still
    // reporting what the sources said.
    let other = everyday_certs();
    let mut args = vec![
        "--server".to_owned(),
        honest.to_string(),
        "--https-date".into(),
        format!("https://localhost:{port}/"),
    ];
    args.extend(ca_args(other.path()));
    let (code, v) = sync_json(&args);
    assert_eq!(code, 1, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("HTTPS Date constraint not obtained"),
        "{v}"
    );
    assert!(
        v["constraints"][0]["error"]
            .as_str()
            .unwrap()
            .contains("TLS handshake"),
        "{v}"
    );
}

#[test]
fn roughtime_vouches_for_certificates_when_the_floor_is_too_old() {
    // A device whose floor is from 2000: its bootstrap interval [2000, 2005] cannot vouch
    // for a certificate issued last month, so NTS-KE alone fails ...
    let dir = everyday_certs();
    let Some((_p, ke)) = nts_server([127, 0, 0, 1], None, dir.path(), None) else {
        return;
    };
    let floor = ["--floor".to_owned(), "2000-01-01T00:00:00Z".to_owned()];
    let mut args = vec!["--nts".to_owned(), ke.clone()];
    args.extend(floor.clone());
    args.extend(ca_args(dir.path()));
    let (code, v) = sync_json(&args);
    assert_eq!(code, 1, "{v}");
    let reason = v["sources"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("bootstrap horizon") || reason.contains("latest time accepted"),
        "{reason}"
    );
    assert_eq!(v["bootstrap"], "floor");

    // ... but with a Roughtime server beside it (no certificate needed), the certificate is
    // checked against Roughtime's interval, and NTS succeeds.
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let Some((_r, key)) = roughenough_server(addr, None, SEED_A) else {
        return;
    };
    args.extend(["--roughtime".to_owned(), format!("{addr}={key}")]);
    let (code, v) = sync_json(&args);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["bootstrap"], "roughtime", "{v}");
    assert_eq!(v["authenticated"], true);
    let nts = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "nts")
        .unwrap();
    assert_eq!(nts["verdict"], "agreed", "{v}");
}

/// NTS blocked (its key-exchange port refuses) while an on-path attacker shifts plain NTP by
/// a day: `sync` prints the shifted time labelled unauthenticated but does not exit 0, and the
/// daemon's TLS readiness does not follow plain NTP, unless the operator allowed it.
#[test]
fn nts_blocked_while_plain_ntp_is_shifted_is_no_silent_downgrade() {
    let plain = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let Some(_n) = chronyd_server(plain, None, &[]) else {
        return;
    };
    let shifted = SocketAddr::from(([127, 0, 0, 8], plain.port()));
    udp_proxy(shifted, plain, shift_ntp_reply_by_a_day);
    let blocked = format!("localhost:{}", free_port());

    let args = vec![
        "--nts".to_owned(),
        blocked.clone(),
        "--server".into(),
        shifted.to_string(),
    ];
    let (code, v) = sync_json(&args);
    assert_eq!(code, 1, "a silent downgrade to shifted plain NTP: {v}");
    assert_eq!(v["authenticated"], false, "{v}");
    assert!(
        v["refused"]
            .as_str()
            .unwrap()
            .contains("--allow-unauthenticated"),
        "{v}"
    );
    // Explicitly allowed: the same result, exit 0, still labelled.
    let mut allowed = args.clone();
    allowed.push("--allow-unauthenticated".into());
    let (code, v) = sync_json(&allowed);
    assert_eq!(code, 0, "{v}");
    assert!(v["refused"].is_null(), "{v}");
    assert!((offset(&v) - 86_400.0).abs() < 1.0, "{v}");
    // --require-authenticated refuses plain NTP even with no authenticated source given.
    let (code, v) = sync_json(&[
        "--server".into(),
        shifted.to_string(),
        "--require-authenticated".into(),
    ]);
    assert_eq!(code, 1, "{v}");
    assert!(
        v["refused"]
            .as_str()
            .unwrap()
            .contains("--require-authenticated"),
        "{v}"
    );

    // The daemon: no require-authenticated in the config, yet TLS readiness waits for NTS.
    let dir = TempDir::new().unwrap();
    let write = |name: &str, extra: &str| {
        let text = format!(
            "[[source]]\nkind = \"ntp\"\naddress = \"{shifted}\"\n[[source]]\nkind = \"nts\"\naddress = \"{blocked}\"\n[clock]\nobserve-only = true\n{extra}[daemon]\nstate-dir = \"{}\"\ncontrol-socket = \"{}\"\nstartup-delay = \"0s\"\nmin-poll = 1\nmax-poll = 3\n",
            dir.path().join(format!("state-{name}")).display(),
            dir.path().join(format!("{name}.sock")).display(),
        );
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    };
    let strict = write("strict", "");
    let mut cmd =
        trusttime_test_support::no_clock_command(Path::new(env!("CARGO_BIN_EXE_trusttime")), None);
    cmd.args(["daemon", "--config"]).arg(&strict);
    let daemon = Peer::spawn("trusttime-daemon-nts-blocked", cmd, None);
    let out = daemon_cli(&["wait", "--for", "tls", "--timeout", "4s"], &strict);
    assert_eq!(out.status.code(), Some(1), "{}", daemon.log_text());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("requires authenticated time"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = daemon_json(&["status"], &strict);
    assert_eq!(st["state"], "synced", "{st}");
    assert_eq!(st["require_authenticated"][0], "tls", "{st}");
    drop(daemon);

    let lax = write("lax", "allow-unauthenticated = true\n");
    let mut cmd =
        trusttime_test_support::no_clock_command(Path::new(env!("CARGO_BIN_EXE_trusttime")), None);
    cmd.args(["daemon", "--config"]).arg(&lax);
    let daemon = Peer::spawn("trusttime-daemon-nts-blocked-lax", cmd, None);
    let out = daemon_cli(&["wait", "--for", "tls", "--timeout", "5s"], &lax);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log_text()
    );
}

/// Two HTTPS Date constraints that disagree (one web server a day ahead, like the shifted
/// plain NTP) are not both dropped, which would hand the decision to the shifted NTP: the
/// plain NTP result is refused. With a third, honest, constraint the majority applies, the
/// liar is named as outvoted and the shifted NTP server is a falseticker.
#[test]
fn two_disagreeing_https_date_constraints_with_shifted_ntp_are_refused() {
    let upstream = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let Some(_u) = chronyd_server(upstream, None, &[]) else {
        return;
    };
    let honest = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let Some(_h) = chronyd_server(honest, None, &[]) else {
        return;
    };
    let shifted = SocketAddr::from(([127, 0, 0, 9], upstream.port()));
    udp_proxy(shifted, upstream, shift_ntp_reply_by_a_day);
    let dir = everyday_certs();
    let (good, bad, good2) = (free_port(), free_port(), free_port());
    let Some(_w1) = trusttime_test_support::python_https_server(dir.path(), good, None) else {
        return;
    };
    let Some(_w2) = trusttime_test_support::python_https_server(dir.path(), bad, Some("+86400"))
    else {
        return;
    };
    let mut args = vec![
        "--server".to_owned(),
        shifted.to_string(),
        "--https-date".into(),
        format!("https://localhost:{good}/"),
        "--https-date".into(),
        format!("https://localhost:{bad}/"),
    ];
    args.extend(ca_args(dir.path()));
    let (code, v) = sync_json(&args);
    assert_eq!(code, 1, "the shifted NTP time was taken: {v}");
    assert_eq!(v["constraint"]["decision"], "refused", "{v}");
    assert!(v["offset_s"].is_null(), "{v}");
    assert!(
        v["sources"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("contradict"),
        "{v}"
    );

    let Some(_w3) = trusttime_test_support::python_https_server(dir.path(), good2, None) else {
        return;
    };
    let mut args = vec![
        "--server".to_owned(),
        honest.to_string(),
        "--server".into(),
        shifted.to_string(),
        "--https-date".into(),
        format!("https://localhost:{good}/"),
        "--https-date".into(),
        format!("https://localhost:{bad}/"),
        "--https-date".into(),
        format!("https://localhost:{good2}/"),
    ];
    args.extend(ca_args(dir.path()));
    let (code, v) = sync_json(&args);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["constraint"]["decision"], "applied", "{v}");
    assert_eq!(v["constraint"]["agreeing"], 2, "{v}");
    assert_eq!(
        v["constraint"]["outvoted"][0],
        format!("https://localhost:{bad}/"),
        "{v}"
    );
    assert_eq!(v["sources"][1]["verdict"], "falseticker", "{v}");
    assert!(offset(&v).abs() < 0.01, "{v}");

    // The daemon with the shifted NTP and the two disagreeing constraints: no trusted time,
    // and `status` says the constraints were refused.
    let state = TempDir::new().unwrap();
    let config = state.path().join("t.toml");
    std::fs::write(
        &config,
        format!(
            "[[source]]\nkind = \"ntp\"\naddress = \"{shifted}\"\n[[source]]\nkind = \"https-date\"\nurl = \"https://localhost:{good}/\"\n[[source]]\nkind = \"https-date\"\nurl = \"https://localhost:{bad}/\"\n[clock]\nobserve-only = true\ntrust-anchors = \"{}\"\n[daemon]\nstate-dir = \"{}\"\ncontrol-socket = \"{}\"\nstartup-delay = \"0s\"\nmin-poll = 1\nmax-poll = 3\n",
            dir.path().join("root.pem").display(),
            state.path().join("state").display(),
            state.path().join("c.sock").display(),
        ),
    )
    .unwrap();
    let mut cmd =
        trusttime_test_support::no_clock_command(Path::new(env!("CARGO_BIN_EXE_trusttime")), None);
    cmd.args(["daemon", "--config"]).arg(&config);
    let daemon = Peer::spawn("trusttime-daemon-constraints", cmd, None);
    let out = daemon_cli(&["wait", "--max-error", "1h", "--timeout", "4s"], &config);
    assert_eq!(out.status.code(), Some(1), "{}", daemon.log_text());
    let st = daemon_json(&["status"], &config);
    assert_eq!(st["state"], "unknown", "{st}");
    assert_eq!(st["constraint"]["decision"], "refused", "{st}");
}

/// One NTS source that contradicts two agreeing plain NTP servers decides (authenticated
/// first), and the warning says that a single authenticated source stands against every other
/// source, instead of blaming the network path.
#[test]
fn a_lone_authenticated_source_contradicting_all_others_is_reported_as_such() {
    let a = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let Some(_a) = chronyd_server(a, None, &[]) else {
        return;
    };
    let b = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let Some(_b) = chronyd_server(b, None, &[]) else {
        return;
    };
    let dir = everyday_certs();
    let Some((_p, ke)) = nts_server([127, 0, 0, 1], Some("+600"), dir.path(), None) else {
        return;
    };
    let mut args = vec![
        "--nts".to_owned(),
        ke,
        "--server".into(),
        a.to_string(),
        "--server".into(),
        b.to_string(),
    ];
    args.extend(ca_args(dir.path()));
    let (code, v) = sync_json(&args);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["authenticated"], true, "{v}");
    let w = v["warning"].as_str().unwrap();
    assert!(
        w.contains("single authenticated source contradicts all 2 other sources"),
        "{w}"
    );
    assert!(w.contains("at least two authenticated sources"), "{w}");
}

/// Once the daemon's time rests on NTS, the certificates of later key exchanges are checked
/// against that trusted interval, not `[floor, floor + 5 years]`: a key-exchange server whose
/// certificate expires a few seconds after the first exchange is refused at the handshake
/// when its cookies run out (before, the handshake went ahead within the wide interval).
#[test]
fn daemon_checks_later_certificates_against_its_trusted_time() {
    let good_certs = everyday_certs();
    let Some((_g, good)) = nts_server([127, 0, 0, 1], None, good_certs.path(), None) else {
        return;
    };
    let now = unix_now();
    let old_certs = certs(now - 400 * 86_400, now + 4);
    let Some((_o, old)) = nts_server([127, 0, 0, 1], None, old_certs.path(), None) else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let anchors = dir.path().join("anchors.pem");
    let mut pem = std::fs::read(good_certs.path().join("root.pem")).unwrap();
    pem.extend(std::fs::read(old_certs.path().join("root.pem")).unwrap());
    std::fs::write(&anchors, pem).unwrap();
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        format!(
            "[[source]]\nkind = \"nts\"\naddress = \"{good}\"\n[[source]]\nkind = \"nts\"\naddress = \"{old}\"\n[clock]\nobserve-only = true\ntrust-anchors = \"{}\"\n[daemon]\nstate-dir = \"{}\"\ncontrol-socket = \"{}\"\nstartup-delay = \"0s\"\nmin-poll = 1\nmax-poll = 3\n",
            anchors.display(),
            dir.path().join("state").display(),
            dir.path().join("c.sock").display(),
        ),
    )
    .unwrap();
    let mut cmd =
        trusttime_test_support::no_clock_command(Path::new(env!("CARGO_BIN_EXE_trusttime")), None);
    cmd.args(["daemon", "--config"])
        .arg(&config)
        .env("RUST_LOG", "trusttime=debug");
    let daemon = Peer::spawn("trusttime-daemon-cert-window", cmd, None);
    let out = daemon_cli(&["wait", "--for", "tls", "--timeout", "5s"], &config);
    assert!(out.status.success(), "{}", daemon.log_text());
    // The first exchange with it succeeded while its certificate was valid.
    let src = daemon_json(&["sources"], &config);
    assert!(
        src["sources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["verdict"] == "agreed"),
        "{src}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(45);
    loop {
        let src = daemon_json(&["sources"], &config);
        let expired = src["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["address"] == old.as_str())
            .unwrap()
            .clone();
        let reason = expired["reason"].as_str().unwrap_or_default().to_owned();
        if reason.contains("TLS handshake") {
            assert_eq!(expired["verdict"], "invalid", "{src}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the expired certificate was never refused at the handshake: {src}\n{}",
            daemon.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The inodes of the UDP sockets connected to `peer` (IPv4), from `/proc/net/udp`.
fn udp_sockets_to(peer: SocketAddr) -> Vec<u64> {
    let SocketAddr::V4(v4) = peer else {
        return Vec::new();
    };
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port()
    );
    std::fs::read_to_string("/proc/net/udp")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&want.as_str())).then(|| f[9].parse().unwrap())
        })
        .collect()
}

/// The inodes of the sockets process `pid` holds.
fn sockets_of(pid: u32) -> Vec<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| {
            let link = std::fs::read_link(e.ok()?.path()).ok()?;
            let s = link.to_string_lossy().into_owned();
            s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// A daemon configuration of Roughtime sources only (observe-only, polls 2 to 8 s apart).
fn roughtime_daemon_config(dir: &Path, servers: &[(SocketAddr, String)]) -> std::path::PathBuf {
    let mut text = String::new();
    for (addr, key) in servers {
        text.push_str(&format!(
            "[[source]]\nkind = \"roughtime\"\naddress = \"{addr}\"\npublic-key = \"{key}\"\n"
        ));
    }
    text.push_str(&format!(
        "[clock]\nobserve-only = true\n[daemon]\nstate-dir = \"{}\"\ncontrol-socket = \"{}\"\nstartup-delay = \"0s\"\nmin-poll = 1\nmax-poll = 3\n",
        dir.join("state").display(),
        dir.join("control.sock").display(),
    ));
    let path = dir.join("trusttime.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Polls `sources --json` until `done` holds (15 s at most).
fn wait_for_sources(config: &Path, daemon: &Peer, done: impl Fn(&[Value]) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        // (The control socket appears once the daemon has started.)
        let out = daemon_cli(&["sources", "--json"], config);
        let src: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if src["sources"].as_array().is_some_and(|l| done(l)) {
            return src;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{src}\n{}",
            daemon.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The daemon asks two roughenough servers (both an hour ahead) as a chain, poll after poll,
/// on the same two sockets, and resolves their addresses once: both are trusted and the time
/// is theirs.
#[test]
fn daemon_keeps_roughtime_sources_across_polls() {
    let a = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let b = SocketAddr::from(([127, 0, 0, 2], free_port()));
    let Some((_pa, ka)) = roughenough_server(a, Some("+3600"), SEED_A) else {
        return;
    };
    let Some((_pb, kb)) = roughenough_server(b, Some("+3600"), SEED_B) else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let config = roughtime_daemon_config(dir.path(), &[(a, ka), (b, kb)]);
    let mut cmd =
        trusttime_test_support::no_clock_command(Path::new(env!("CARGO_BIN_EXE_trusttime")), None);
    cmd.args(["daemon", "--config"])
        .arg(&config)
        .env("RUST_LOG", "trusttime=debug");
    let daemon = Peer::spawn("trusttime-daemon-roughtime", cmd, None);
    let polled = |n: u64| {
        move |list: &[Value]| {
            list.iter()
                .all(|s| s["requests"].as_u64().unwrap_or(0) >= n && s["verdict"] == "agreed")
        }
    };
    wait_for_sources(&config, &daemon, polled(1));
    let sockets = |peer| -> Vec<u64> {
        let mine = sockets_of(daemon.pid());
        udp_sockets_to(peer)
            .into_iter()
            .filter(|i| mine.contains(i))
            .collect()
    };
    let first = (sockets(a), sockets(b));
    assert_eq!((first.0.len(), first.1.len()), (1, 1), "{first:?}");
    let src = wait_for_sources(&config, &daemon, polled(3));
    for s in src["sources"].as_array().unwrap() {
        assert_eq!(s["kind"], "roughtime", "{src}");
        assert_eq!(s["reach"], "007", "three polls in a row answered: {src}");
    }
    assert_eq!(
        (sockets(a), sockets(b)),
        first,
        "the same sockets across polls"
    );
    let st = daemon_json(&["status"], &config);
    assert_eq!(st["state"], "authenticated", "{st}");
    assert_eq!(st["authenticated"], true, "{st}");
    // roughenough signs whole seconds with a radius of 5 s.
    assert!(
        (st["offset_s"].as_f64().unwrap() - 3600.0).abs() < 6.0,
        "{st}"
    );
    assert_eq!(st["chain_violations"], serde_json::json!([]), "{st}");
    let log = daemon.log_text();
    assert_eq!(
        log.matches("Roughtime: name to be resolved").count(),
        2,
        "DNS once per server, not at every poll:\n{log}"
    );
}

/// Three roughenough servers two hours ahead, the middle one only one (the build-time floor
/// refuses anything before now, so the liar is ahead too): the chain proves it (its request's
/// nonce derived from the first server's response, yet it signed an earlier time), `status
/// --json` shows the violation with both servers and what they signed, and the liar is
/// outvoted.
#[test]
fn daemon_reports_a_proven_roughtime_liar_in_status() {
    let a = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let b = SocketAddr::from(([127, 0, 0, 2], free_port()));
    let c = SocketAddr::from(([127, 0, 0, 3], free_port()));
    let Some((_pa, ka)) = roughenough_server(a, Some("+7200"), SEED_A) else {
        return;
    };
    let Some((_pb, kb)) = roughenough_server(b, Some("+3600"), SEED_B) else {
        return;
    };
    let Some((_pc, kc)) = roughenough_server(c, Some("+7200"), SEED_C) else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let config = roughtime_daemon_config(dir.path(), &[(a, ka), (b, kb), (c, kc)]);
    let mut cmd =
        trusttime_test_support::no_clock_command(Path::new(env!("CARGO_BIN_EXE_trusttime")), None);
    cmd.args(["daemon", "--config"]).arg(&config);
    let daemon = Peer::spawn("trusttime-daemon-roughtime-liar", cmd, None);
    let src = wait_for_sources(&config, &daemon, |list| {
        list.iter()
            .all(|s| s["requests"].as_u64().unwrap_or(0) >= 1)
            && list[1]["verdict"] == "falseticker"
    });
    let verdicts: Vec<&str> = src["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["agreed", "falseticker", "agreed"], "{src}");
    let st = daemon_json(&["status"], &config);
    assert_eq!(st["state"], "authenticated", "{st}");
    assert!(
        (st["offset_s"].as_f64().unwrap() - 7200.0).abs() < 6.0,
        "{st}"
    );
    let v = &st["chain_violations"][0];
    assert_eq!(v["earlier"]["server"], a.to_string(), "{st}");
    assert_eq!(v["later"]["server"], b.to_string(), "{st}");
    assert_eq!(v["later"]["radius_s"], 5.0, "{st}");
    let signed = |x: &Value| {
        trusttime_core::UnixTime::parse_rfc3339(x["midpoint"].as_str().unwrap())
            .unwrap()
            .as_secs()
    };
    let behind = signed(&v["earlier"]) - signed(&v["later"]);
    assert!((3590..3610).contains(&behind), "{st}");
    assert!(
        v["text"].as_str().unwrap().contains("one of the two lies"),
        "{st}"
    );
    // The schema the documentation gives.
    serde_json::from_value::<trusttime::json::Status>(st.clone()).unwrap();
    let text = daemon_cli(&["status"], &config);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("roughtime    proven liar at") && text.contains("one of the two lies"),
        "{text}"
    );
}

/// An on-path attacker flips a bit in every reply of one of three Roughtime servers: the
/// daemon's chain drops each one (counted in `auth_failures`), calls that source `invalid`,
/// and the chain goes on to the next server; the two honest servers decide.
#[test]
fn daemon_drops_tampered_roughtime_replies_and_the_chain_goes_on() {
    let a = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let b = SocketAddr::from(([127, 0, 0, 2], free_port()));
    let c = SocketAddr::from(([127, 0, 0, 3], free_port()));
    let Some((_pa, ka)) = roughenough_server(a, Some("+3600"), SEED_A) else {
        return;
    };
    let Some((_pb, kb)) = roughenough_server(b, Some("+3600"), SEED_B) else {
        return;
    };
    let Some((_pc, kc)) = roughenough_server(c, Some("+3600"), SEED_C) else {
        return;
    };
    let tampered = SocketAddr::from(([127, 0, 0, 8], b.port()));
    udp_proxy(tampered, b, flip_a_bit);
    let dir = TempDir::new().unwrap();
    let config = roughtime_daemon_config(dir.path(), &[(a, ka), (tampered, kb), (c, kc)]);
    let mut cmd =
        trusttime_test_support::no_clock_command(Path::new(env!("CARGO_BIN_EXE_trusttime")), None);
    cmd.args(["daemon", "--config"]).arg(&config);
    let daemon = Peer::spawn("trusttime-daemon-roughtime-tampered", cmd, None);
    let src = wait_for_sources(&config, &daemon, |list| {
        list[1]["verdict"] == "invalid"
            && list[0]["verdict"] == "agreed"
            && list[2]["verdict"] == "agreed"
    });
    let bad = &src["sources"][1];
    assert!(bad["auth_failures"].as_u64().unwrap() >= 3, "{src}");
    assert!(
        bad["reason"]
            .as_str()
            .unwrap()
            .contains("failed verification"),
        "{src}"
    );
    assert_eq!(bad["reach"], "000", "{src}");
    let st = daemon_json(&["status"], &config);
    assert_eq!(st["state"], "authenticated", "{st}");
    assert!(
        (st["offset_s"].as_f64().unwrap() - 3600.0).abs() < 6.0,
        "{st}"
    );
}

/// A Roughtime source configured with another server's key: roughenough (the draft) drops
/// requests that name a key not its own, so the daemon sees silence, says so, and points at
/// `sync`, which tells a wrong key from a dead server.
#[test]
fn daemon_says_how_to_check_the_key_of_a_silent_draft_roughtime_server() {
    let a = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let b = SocketAddr::from(([127, 0, 0, 2], free_port()));
    let Some((_pa, ka)) = roughenough_server(a, None, SEED_A) else {
        return;
    };
    let Some((_pb, _kb)) = roughenough_server(b, None, SEED_B) else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let config = roughtime_daemon_config(dir.path(), &[(a, ka.clone()), (b, ka)]);
    let mut cmd =
        trusttime_test_support::no_clock_command(Path::new(env!("CARGO_BIN_EXE_trusttime")), None);
    cmd.args(["daemon", "--config"]).arg(&config);
    let daemon = Peer::spawn("trusttime-daemon-roughtime-wrong-key", cmd, None);
    let src = wait_for_sources(&config, &daemon, |list| {
        list[1]["verdict"] == "no_reply" && list[1]["reason"] != "not asked yet"
    });
    let reason = src["sources"][1]["reason"].as_str().unwrap();
    assert!(reason.starts_with("no reply to 3 requests"), "{src}");
    assert!(
        reason.contains(&format!("trusttime sync --roughtime {b}=KEY")),
        "{src}"
    );
    // The chain went on to it after the first server, which answered.
    assert!(
        src["sources"][0]["reach"].as_str().unwrap().ends_with('1'),
        "{src}"
    );
}
