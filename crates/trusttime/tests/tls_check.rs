//! `trusttime check` against `openssl s_server` serving generated chains, and a real handshake
//! that fails closed until a sync against chronyd makes the time trusted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;
use trusttime_test_support::certs::{make_chain, unix_now, valid_chain, write_pem, Chain};
use trusttime_test_support::{chronyd_server, free_port, openssl_s_server, Peer, TempDir};

const DAY: i64 = 86_400;
const NAME: &str = "device.example.test";

struct Served {
    _server: Peer,
    dir: TempDir,
    port: u16,
}

fn serve(chain: &Chain) -> Option<Served> {
    let dir = TempDir::new().unwrap();
    write_pem(chain, dir.path()).unwrap();
    let port = free_port();
    let server = openssl_s_server(dir.path(), port)?;
    Some(Served {
        _server: server,
        dir,
        port,
    })
}

fn check(s: &Served, extra: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_trusttime"))
        .args([
            "check",
            &format!("127.0.0.1:{}", s.port),
            "--servername",
            NAME,
            "--json",
            "--ca",
        ])
        .arg(s.dir.path().join("root.pem"))
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), v)
}

fn now_rfc3339() -> String {
    trusttime_core::UnixTime::from_secs(unix_now()).to_string()
}

fn good() -> Chain {
    valid_chain(NAME)
}

#[test]
fn valid_chain_after_a_sync_against_chronyd() {
    let Some(s) = serve(&good()) else { return };
    let ntp = SocketAddr::from(([127, 0, 0, 31], free_port()));
    let Some(_chronyd) = chronyd_server(ntp, None, &[]) else {
        return;
    };
    let (code, v) = check(&s, &["--ntp-server", &ntp.to_string()]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["verdict"], "valid");
    assert_eq!(v["time"]["provenance"], "ntp");
    assert_eq!(
        v["chain"].as_array().unwrap().len(),
        3,
        "leaf, intermediate, root: {v}"
    );
    assert_eq!(v["chain"][1]["role"]["intermediate"], 1, "{v}");
    assert_eq!(v["chain"][2]["role"], "root", "{v}");
}

#[test]
fn dead_rtc_battery_device_is_told_its_clock_is_behind() {
    let Some(s) = serve(&good()) else { return };
    let (code, v) = check(&s, &["--device-clock", "2000-01-01T00:00:00Z"]);
    assert_eq!(code, 3, "{v}");
    assert_eq!(v["diagnosis"]["finding"]["kind"], "clock_behind", "{v}");
    let m = v["diagnosis"]["message"].as_str().unwrap();
    assert!(m.contains("years behind, not the certificate"), "{m}");
    assert!(m.contains("X509_V_ERR_CERT_NOT_YET_VALID"), "{m}");
    assert_eq!(v["diagnosis"]["chain_verified_at_own_dates"], true);
}

#[test]
fn device_far_in_the_future_is_undetermined() {
    let Some(s) = serve(&good()) else { return };
    let (code, v) = check(&s, &["--device-clock", "2070-01-01T00:00:00Z"]);
    assert_eq!(code, 3, "{v}");
    assert_eq!(
        v["diagnosis"]["finding"]["kind"], "expired_by_untrusted_clock",
        "{v}"
    );
}

#[test]
fn expired_leaf_is_invalid_at_a_trusted_time() {
    let now = unix_now();
    let Some(s) = serve(&make_chain(
        NAME,
        (now - 4000 * DAY, now + 3650 * DAY),
        None,
        (now - 400 * DAY, now - 35 * DAY),
    )) else {
        return;
    };
    let (code, v) = check(&s, &["--at", &now_rfc3339()]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["diagnosis"]["finding"]["kind"], "expired");
    assert!(
        v["diagnosis"]["message"]
            .as_str()
            .unwrap()
            .contains("really expired"),
        "{v}"
    );
}

#[test]
fn not_yet_valid_leaf_is_invalid_at_a_trusted_time() {
    let now = unix_now();
    let Some(s) = serve(&make_chain(
        NAME,
        (now - 4000 * DAY, now + 3650 * DAY),
        None,
        (now + 5 * DAY, now + 400 * DAY),
    )) else {
        return;
    };
    let (code, v) = check(&s, &["--at", &now_rfc3339()]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["diagnosis"]["finding"]["kind"], "not_yet_valid");
}

#[test]
fn expired_intermediate_is_named() {
    let now = unix_now();
    let c = make_chain(
        NAME,
        (now - 4000 * DAY, now + 3650 * DAY),
        Some((now - 900 * DAY, now - 2 * DAY)),
        (now - 30 * DAY, now + 300 * DAY),
    );
    let Some(s) = serve(&c) else { return };
    let (code, v) = check(&s, &["--at", &now_rfc3339()]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(
        v["diagnosis"]["certificate"]["role"]["intermediate"], 1,
        "{v}"
    );
}

#[test]
fn expired_root_is_reported() {
    let now = unix_now();
    let c = make_chain(
        NAME,
        (now - 4000 * DAY, now - 10 * DAY),
        None,
        (now - 30 * DAY, now + 300 * DAY),
    );
    let Some(s) = serve(&c) else { return };
    let (code, v) = check(&s, &["--at", &now_rfc3339()]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["diagnosis"]["finding"]["kind"], "root_expired", "{v}");
}

#[test]
fn straddling_the_uncertainty_is_undetermined_unless_accepted() {
    let now = unix_now();
    let c = make_chain(
        NAME,
        (now - 4000 * DAY, now + 3650 * DAY),
        None,
        (now - 30 * DAY, now + 1800),
    );
    let Some(s) = serve(&c) else { return };
    let (code, v) = check(&s, &["--at", &now_rfc3339(), "--uncertainty", "1h"]);
    assert_eq!(code, 3, "{v}");
    assert_eq!(v["diagnosis"]["finding"]["kind"], "straddles", "{v}");
    let (code, _) = check(
        &s,
        &[
            "--at",
            &now_rfc3339(),
            "--uncertainty",
            "1h",
            "--accept-undetermined",
        ],
    );
    assert_eq!(code, 0);
}

#[test]
fn network_error_exit_4_and_usage_exit_2() {
    let dead = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_trusttime"))
        .args(["check", &format!("127.0.0.1:{dead}"), "--no-sync"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_trusttime"))
        .args(["check", "host:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_trusttime"))
        .args(["check", "x", "--at", "yesterday"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A real handshake through rustls with our time provider and verifier: it fails closed (no
/// application data leaves) while the time is untrusted, and succeeds after a sync against
/// chronyd servers whose fake time is the only time at which the certificate is valid.
#[test]
fn handshake_fails_closed_until_synced() {
    use trusttime::clock::SystemClock;
    use trusttime::sync::{sync, SyncOptions};
    use trusttime_core::{Provenance, TrustedTime};
    use trusttime_tls::{Policy, Purpose, SharedClock, TrustedTimeProvider, TrustedTimeVerifier};

    let now = unix_now();
    // Valid only from 50 minutes ahead of this machine's clock.
    let c = make_chain(
        NAME,
        (now - 400 * DAY, now + 3650 * DAY),
        None,
        (now + 3000, now + 30 * DAY),
    );
    let Some(s) = serve(&c) else { return };
    let a = SocketAddr::from(([127, 0, 0, 32], free_port()));
    let b = SocketAddr::from(([127, 0, 0, 33], free_port()));
    let Some(_ca) = chronyd_server(a, Some("+3600"), &[]) else {
        return;
    };
    let Some(_cb) = chronyd_server(b, Some("+3600"), &[]) else {
        return;
    };

    let clock = Arc::new(SharedClock::new(trusttime_core::floor::build_time()));
    let verifier = TrustedTimeVerifier::new(
        vec![rustls_pki_types::CertificateDer::from(c.root_der.clone())],
        clock.clone(),
        Policy::for_purpose(Purpose::Tls),
    )
    .unwrap();
    let config = Arc::new(
        rustls::ClientConfig::builder_with_details(
            Arc::new(rustls::crypto::ring::default_provider()),
            Arc::new(TrustedTimeProvider::new(
                clock.clone(),
                Purpose::Tls.default_max_error(),
            )),
        )
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth(),
    );
    let get = |config: Arc<rustls::ClientConfig>| -> Result<String, String> {
        let mut sock = TcpStream::connect(("127.0.0.1", s.port)).map_err(|e| e.to_string())?;
        let mut conn = rustls::ClientConnection::new(config, NAME.try_into().unwrap())
            .map_err(|e| e.to_string())?;
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        tls.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut body = String::new();
        let _ = tls.read_to_string(&mut body);
        Ok(body)
    };
    let before = get(config.clone());
    // rustls sends no application data before the handshake completes; the handshake stops
    // because the time provider has no trusted time.
    let err = before.expect_err("handshake must fail before any sync");
    assert!(err.contains("time"), "{err}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(sync(
        &SyncOptions::new(vec![
            a.to_string().parse().unwrap(),
            b.to_string().parse().unwrap(),
        ]),
        Arc::new(SystemClock),
    ));
    let consensus = report.result.unwrap();
    clock.update(TrustedTime {
        interval: consensus.interval,
        provenance: Provenance::Ntp,
    });
    let after = get(config).unwrap();
    assert!(
        after.contains("200 ok") || after.contains("s_server"),
        "{after}"
    );
}

// The four classes of real-world chains, served by `openssl s_server -cert_chain`.
use trusttime_test_support::certs::{ca_cert, leaf_cert, write_served, CertKey, Identity};

fn serve_built(
    leaf: &[u8],
    key: &CertKey,
    sent: &[Vec<u8>],
    roots: &[Vec<u8>],
    client_issuer: &Identity,
) -> Option<Served> {
    let dir = TempDir::new().unwrap();
    write_served(dir.path(), leaf, key, sent, roots, client_issuer).unwrap();
    let port = free_port();
    let server = openssl_s_server(dir.path(), port)?;
    Some(Served {
        _server: server,
        dir,
        port,
    })
}

fn check_text(s: &Served, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trusttime"))
        .args([
            "check",
            &format!("127.0.0.1:{}", s.port),
            "--servername",
            NAME,
            "--ca",
        ])
        .arg(s.dir.path().join("root.pem"))
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn class1_unused_expired_certificates_sent_by_the_server_play_no_part() {
    let now = unix_now();
    let root = Identity::ecdsa("E2E Root");
    let inter = Identity::ecdsa("E2E CA");
    let old_root = Identity::ecdsa("E2E Old Root");
    let key = CertKey::generate().unwrap();
    let leaf = leaf_cert(NAME, &key, &inter, (now - 30 * DAY, now + 300 * DAY));
    let sent = vec![
        ca_cert(&inter, &root, (now - 2000 * DAY, now - 3 * DAY)), // old copy, expired
        ca_cert(&inter, &root, (now - 300 * DAY, now + 900 * DAY)),
        ca_cert(&root, &old_root, (now - 4000 * DAY, now - 20 * DAY)), // expired cross-sign
    ];
    let roots = vec![ca_cert(&root, &root, (now - 400 * DAY, now + 3650 * DAY))];
    let Some(s) = serve_built(&leaf, &key, &sent, &roots, &root) else {
        return;
    };
    let (code, v) = check(&s, &["--at", &now_rfc3339()]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["verdict"], "valid", "{v}");
    assert_eq!(
        v["diagnosis"]["also_sent"].as_array().unwrap().len(),
        2,
        "{v}"
    );
    let (code, text) = check_text(&s, &["--at", &now_rfc3339()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("VALID"), "{text}");
    assert!(text.contains("(not used)"), "{text}");
    assert!(text.contains("not used"), "{text}");
}

#[test]
fn class2_the_root_in_use_decides_not_the_order_of_certificates() {
    let now = unix_now();
    let root = Identity::ecdsa("E2E Root 2");
    let inter = Identity::ecdsa("E2E CA 2");
    let key = CertKey::generate().unwrap();
    let leaf = leaf_cert(NAME, &key, &inter, (now - 30 * DAY, now + 300 * DAY));
    let expired_copy = ca_cert(&root, &root, (now - 5000 * DAY, now - 100 * DAY));
    let good_root = ca_cert(&root, &root, (now - 400 * DAY, now + 3650 * DAY));
    // The server sends an expired copy of the root; the --ca bundle lists it first too.
    let sent = vec![
        ca_cert(&inter, &root, (now - 300 * DAY, now + 900 * DAY)),
        expired_copy.clone(),
    ];
    let Some(s) = serve_built(&leaf, &key, &sent, &[expired_copy, good_root], &root) else {
        return;
    };
    let (code, v) = check(&s, &["--at", &now_rfc3339()]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["chain"][2]["role"], "root", "{v}");

    // The only trusted root has expired: an extra self-signed certificate and intermediates
    // sent root-side first do not hide it.
    let inter2 = Identity::ecdsa("E2E CA 2b");
    let stranger = Identity::ecdsa("E2E Stranger");
    let leaf = leaf_cert(NAME, &key, &inter, (now - 30 * DAY, now + 300 * DAY));
    let sent = vec![
        ca_cert(&inter2, &root, (now - 300 * DAY, now + 900 * DAY)),
        ca_cert(&inter, &inter2, (now - 300 * DAY, now + 900 * DAY)),
        ca_cert(&stranger, &stranger, (now - 300 * DAY, now + 900 * DAY)),
    ];
    let expired_root = ca_cert(&root, &root, (now - 4000 * DAY, now - 10 * DAY));
    let Some(s) = serve_built(&leaf, &key, &sent, &[expired_root], &root) else {
        return;
    };
    let (code, v) = check(&s, &["--at", &now_rfc3339()]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["diagnosis"]["finding"]["kind"], "root_expired", "{v}");
    let (_, text) = check_text(&s, &["--at", &now_rfc3339()]);
    assert!(text.contains("INVALID"), "{text}");
    assert!(
        text.contains("the root itself expired 10 days ago"),
        "{text}"
    );
}

#[test]
fn class3_a_boundary_inside_the_interval_is_undetermined_and_accept_says_so() {
    let now = unix_now();
    let root = Identity::ecdsa("E2E Root 3");
    let key = CertKey::generate().unwrap();
    // Expired 10 minutes ago, with ±45 minutes of uncertainty: not a certain "invalid".
    let leaf = leaf_cert(NAME, &key, &root, (now - 30 * DAY, now - 600));
    let roots = vec![ca_cert(&root, &root, (now - 400 * DAY, now + 3650 * DAY))];
    let Some(s) = serve_built(&leaf, &key, &[], &roots, &root) else {
        return;
    };
    let args = ["--at", &now_rfc3339(), "--uncertainty", "45m"];
    let (code, v) = check(&s, &args);
    assert_eq!(code, 3, "{v}");
    assert_eq!(v["diagnosis"]["finding"]["kind"], "straddles", "{v}");
    assert_eq!(v["accepted_undetermined"], false, "{v}");
    let mut accept = args.to_vec();
    accept.push("--accept-undetermined");
    let (code, v) = check(&s, &accept);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["verdict"], "undetermined", "{v}");
    assert_eq!(v["accepted_undetermined"], true, "{v}");
    let (code, text) = check_text(&s, &accept);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("accepted   exit 0 because of --accept-undetermined"),
        "{text}"
    );
}

#[test]
fn class4_no_expiry_dates_and_names_whatever_the_clock() {
    let now = unix_now();
    let root = Identity::ecdsa("E2E Device Root");
    let key = CertKey::generate().unwrap();
    let leaf = leaf_cert(NAME, &key, &root, (now - 30 * DAY, 253_402_300_799));
    let roots = vec![ca_cert(&root, &root, (-631_152_000, 253_402_300_799))];
    let Some(s) = serve_built(&leaf, &key, &[], &roots, &root) else {
        return;
    };
    let (code, v) = check(&s, &["--at", &now_rfc3339()]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["chain"][0]["not_after"], "9999-12-31T23:59:59Z", "{v}");
    assert_eq!(v["chain"][0]["no_expiry"], true, "{v}");
    assert_eq!(v["chain"][1]["not_before"], "1950-01-01T00:00:00Z", "{v}");
    let (_, text) = check_text(&s, &["--at", &now_rfc3339()]);
    assert!(text.contains("no expiry date"), "{text}");
    // A wrong host name is named as such with a device clock in 2000.
    let out = Command::new(env!("CARGO_BIN_EXE_trusttime"))
        .args([
            "check",
            &format!("127.0.0.1:{}", s.port),
            "--servername",
            "other.example.test",
            "--json",
            "--device-clock",
            "2000-01-01T00:00:00Z",
            "--ca",
        ])
        .arg(s.dir.path().join("root.pem"))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{v}");
    assert_eq!(
        v["diagnosis"]["openssl_error"], "X509_V_ERR_HOSTNAME_MISMATCH",
        "{v}"
    );
}

#[test]
fn small_things_negative_uncertainty_and_network_error_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_trusttime"))
        .args([
            "check",
            "x",
            "--at",
            "2027-01-01T00:00:00Z",
            "--uncertainty=-5m",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("negative"));
    let dead = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_trusttime"))
        .args(["check", &format!("127.0.0.1:{dead}"), "--no-sync", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exit_code"], 4, "{v}");
}
