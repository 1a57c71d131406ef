//! The root cause, end to end: a device whose clock cannot vouch for the broker's certificate
//! does not attempt a handshake; after a sync against chronyd servers (at a fake offset that
//! makes the certificate valid) it connects to a real mosquitto broker with mutual TLS and
//! publishes, and `mosquitto_sub` receives the message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use trusttime_test_support::certs::{make_chain, unix_now, write_pem};
use trusttime_test_support::{
    chronyd_server, free_port, mosquitto_tls, no_clock_command, peer_or_skip, Peer, TempDir,
};

const BROKER: &str = "broker.example.test";

#[test]
fn connects_only_on_trusted_time_and_publishes() {
    let Some(sub) = peer_or_skip(
        "mosquitto_sub",
        &["/usr/bin/mosquitto_sub"],
        "apt-get install mosquitto-clients",
    ) else {
        return;
    };
    let now = unix_now();
    // The broker's certificate becomes valid 50 minutes from now (this machine's clock): only a
    // device that learns the servers' time (+1 h) can accept it.
    let chain = make_chain(
        BROKER,
        (now - 400 * 86_400, now + 3650 * 86_400),
        None,
        (now + 3000, now + 30 * 86_400),
    );
    let dir = TempDir::new().unwrap();
    write_pem(&chain, dir.path()).unwrap();
    // The broker runs an hour ahead too, like the servers, and judges client certificates there.
    let Some(broker) = mosquitto_tls(dir.path(), Some("+3600")) else {
        return;
    };
    let (tls_port, plain_port) = (broker.tls_port, broker.plain_port);
    let broker_log = || broker.log_text();

    let subscriber = Command::new(sub)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &plain_port.to_string(),
            "-t",
            "devices/42/hello",
            "-C",
            "1",
            "-W",
            "30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !broker_log().contains("Received SUBSCRIBE") {
        assert!(
            Instant::now() < deadline,
            "subscriber never subscribed: {}",
            broker_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let connect = |extra: &[String]| {
        let d = dir.path();
        let out = Command::new(env!("CARGO_BIN_EXE_trusttime"))
            .args([
                "connect",
                "--endpoint",
                "127.0.0.1",
                "--port",
                &tls_port.to_string(),
                "--servername",
                BROKER,
                "--client-id",
                "device-42",
            ])
            .arg("--cert")
            .arg(d.join("client.pem"))
            .arg("--key")
            .arg(d.join("client-key.pem"))
            .arg("--ca")
            .arg(d.join("root.pem"))
            .args([
                "--publish",
                "devices/42/hello",
                "hello from trusted time",
                "--timeout",
                "10s",
            ])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // No time source: refused before any handshake.
    let nowhere = dir.path().join("no-daemon.sock").display().to_string();
    let (code, _, err) = connect(&["--socket".into(), nowhere]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("time not trusted") && err.contains("no TLS handshake was attempted"),
        "{err}"
    );
    assert!(
        !broker_log().contains("device-42"),
        "a handshake reached the broker: {}",
        broker_log()
    );

    // Sync against two chronyd servers an hour ahead, then connect and publish.
    let a = SocketAddr::from(([127, 0, 0, 81], free_port()));
    let b = SocketAddr::from(([127, 0, 0, 82], free_port()));
    let Some(_ca) = chronyd_server(a, Some("+3600"), &[]) else {
        return;
    };
    let Some(_cb) = chronyd_server(b, Some("+3600"), &[]) else {
        return;
    };
    let (code, out, err) = connect(&[
        "--ntp-server".into(),
        a.to_string(),
        "--ntp-server".into(),
        b.to_string(),
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}\nbroker: {}", broker_log());
    let got = subscriber.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim(),
        "hello from trusted time",
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert!(broker_log().contains("device-42"));
}

/// A broker that refuses every connection sees the attempts spaced by the backoff policy:
/// 1 + retries attempts, each gap below its doubling ceiling.
#[test]
fn a_refusing_broker_sees_backoff() {
    use std::net::TcpListener;
    let now = unix_now();
    let chain = make_chain(
        BROKER,
        (now - 400 * 86_400, now + 3650 * 86_400),
        None,
        (now - 86_400, now + 30 * 86_400),
    );
    let dir = TempDir::new().unwrap();
    write_pem(&chain, dir.path()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done2 = std::sync::Arc::clone(&done);
    let accepts = std::thread::spawn(move || {
        let mut times = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let end = Instant::now() + Duration::from_secs(8);
        while Instant::now() < end && !done2.load(std::sync::atomic::Ordering::SeqCst) {
            if let Ok((s, _)) = listener.accept() {
                times.push(Instant::now());
                drop(s); // refuse: close at once
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        times
    });
    let a = SocketAddr::from(([127, 0, 0, 83], free_port()));
    let Some(_c) = chronyd_server(a, None, &[]) else {
        return;
    };
    let d = dir.path();
    let out = Command::new(env!("CARGO_BIN_EXE_trusttime"))
        .args([
            "connect",
            "--endpoint",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--servername",
            BROKER,
            "--client-id",
            "device-42",
        ])
        .arg("--cert")
        .arg(d.join("client.pem"))
        .arg("--key")
        .arg(d.join("client-key.pem"))
        .arg("--ca")
        .arg(d.join("root.pem"))
        .args([
            "--publish",
            "t",
            "m",
            "--retries",
            "3",
            "--backoff",
            "200ms",
            "--backoff-cap",
            "1s",
            "--timeout",
            "2s",
        ])
        .args(["--ntp-server", &a.to_string()])
        .output()
        .unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let times = accepts.join().unwrap();
    assert_eq!(times.len(), 4, "1 attempt + 3 retries, got {}", times.len());
    for (i, w) in times.windows(2).enumerate() {
        let ceiling = Duration::from_millis(200 << i).min(Duration::from_secs(1));
        let gap = w[1] - w[0];
        // The random delay is at most the ceiling; reconnecting adds a little on top.
        assert!(
            gap <= ceiling + Duration::from_millis(400),
            "gap {i} was {gap:?}, ceiling {ceiling:?}"
        );
    }
}

/// The daemon publishes its clock health, in Device Shadow form, over mutual TLS checked
/// against its own trusted time; `mosquitto_sub` sees the state go to `synced`.
#[test]
fn daemon_reports_clock_health_to_the_broker() {
    use std::io::BufRead;
    let Some(sub) = peer_or_skip(
        "mosquitto_sub",
        &["/usr/bin/mosquitto_sub"],
        "apt-get install mosquitto-clients",
    ) else {
        return;
    };
    let now = unix_now();
    let chain = make_chain(
        BROKER,
        (now - 400 * 86_400, now + 3650 * 86_400),
        None,
        (now - 86_400, now + 30 * 86_400),
    );
    let dir = TempDir::new().unwrap();
    write_pem(&chain, dir.path()).unwrap();
    let Some(broker) = mosquitto_tls(dir.path(), None) else {
        return;
    };
    let (tls_port, plain_port) = (broker.tls_port, broker.plain_port);
    let mut subscriber = Command::new(sub)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &plain_port.to_string(),
            "-t",
            "$aws/things/dev42/shadow/update",
            "-W",
            "30",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let ntp = SocketAddr::from(([127, 0, 0, 84], free_port()));
    let Some(_c) = chronyd_server(ntp, None, &[]) else {
        return;
    };
    let d = dir.path();
    let config = d.join("trusttime.toml");
    std::fs::write(
        &config,
        format!(
            "[[source]]\nkind = \"ntp\"\naddress = \"{ntp}\"\n[clock]\nobserve-only = true\n\
             [daemon]\nstate-dir = \"{s}\"\ncontrol-socket = \"{s}/c.sock\"\nstartup-delay = \"0s\"\nmin-poll = 2\nmax-poll = 3\n\
             [report]\nbroker = \"127.0.0.1\"\nport = {tls_port}\nservername = \"{BROKER}\"\nclient-id = \"dev42\"\nthing = \"dev42\"\ninterval = \"1s\"\n\
             ca = \"{d}/root.pem\"\ncert = \"{d}/client.pem\"\nkey = \"{d}/client-key.pem\"\n",
            s = d.join("state").display(),
            d = d.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trusttime"))
        .arg("validate-config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut dcmd = no_clock_command(Path::new(env!("CARGO_BIN_EXE_trusttime")), None);
    dcmd.args(["daemon", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info");
    let daemon = Peer::spawn("trusttime-report-daemon", dcmd, None);

    let lines = std::io::BufReader::new(subscriber.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines {
        let line = line.unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let clock = &v["state"]["reported"]["clock"];
        seen.push(clock["state"].as_str().unwrap_or_default().to_owned());
        if clock["state"] == "synced" {
            assert_eq!(clock["authenticated"], false);
            assert_eq!(clock["agreed"], 1);
            assert!(clock["offset_s"].as_f64().unwrap().abs() < 0.05, "{v}");
            let _ = subscriber.kill();
            return;
        }
    }
    panic!(
        "no synced report; saw {seen:?}; daemon log: {}",
        daemon.log_text()
    );
}

/// MQTT over WebSocket with TLS against mosquitto's websockets listener: the URL carries a
/// SigV4 signature made at the trusted time (mosquitto ignores it), not at the device's
/// clock, which here is a day behind.
#[test]
fn websocket_url_is_signed_at_trusted_time_and_the_message_arrives() {
    let Some(sub) = peer_or_skip(
        "mosquitto_sub",
        &["/usr/bin/mosquitto_sub"],
        "apt-get install mosquitto-clients",
    ) else {
        return;
    };
    let now = unix_now();
    let chain = make_chain(
        "localhost",
        (now - 400 * 86_400, now + 3650 * 86_400),
        None,
        (now - 86_400, now + 30 * 86_400),
    );
    let dir = TempDir::new().unwrap();
    write_pem(&chain, dir.path()).unwrap();
    let Some(broker) = mosquitto_tls(dir.path(), None) else {
        return;
    };
    let ntp = SocketAddr::from(([127, 0, 0, 83], free_port()));
    let Some(_c) = chronyd_server(ntp, None, &[]) else {
        return;
    };
    let subscriber = Command::new(sub)
        .args(["-h", "127.0.0.1", "-p", &broker.plain_port.to_string()])
        .args(["-t", "devices/ws/hello", "-C", "1", "-W", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !broker.log_text().contains("Received SUBSCRIBE") {
        assert!(Instant::now() < deadline, "{}", broker.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = |env_creds: bool| {
        let mut cmd = no_clock_command(Path::new(env!("CARGO_BIN_EXE_trusttime")), Some("-86400"));
        cmd.args(["connect", "--endpoint", "localhost", "--port"])
            .arg(broker.ws_port.to_string())
            .args([
                "--websocket",
                "--region",
                "eu-west-1",
                "--client-id",
                "ws-device",
            ])
            .arg("--ca")
            .arg(dir.path().join("root.pem"))
            .args(["--ntp-server", &ntp.to_string()])
            .args(["--publish", "devices/ws/hello", "over a signed websocket"])
            .args(["--timeout", "10s", "--retries", "0"])
            .env("RUST_LOG", "info")
            .env_remove("AWS_SESSION_TOKEN");
        if env_creds {
            cmd.env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE").env(
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            );
        } else {
            cmd.env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY");
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(false);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");

    let (code, out, err) = run(true);
    assert_eq!(code, Some(0), "{out}\n{err}\nbroker: {}", broker.log_text());
    let got = subscriber.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim(),
        "over a signed websocket"
    );
    // The signature's date is the trusted (true) time, not the device clock a day behind.
    // The log may be coloured: drop ANSI escape sequences first.
    let mut plain = String::new();
    let mut in_escape = false;
    for c in err.chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => plain.push(c),
        }
    }
    let date = plain
        .split("x_amz_date=")
        .nth(1)
        .map(|s| s.chars().take(16).collect::<String>())
        .unwrap_or_else(|| panic!("no X-Amz-Date logged: {err}"));
    let d = date.as_bytes();
    assert!(d.len() == 16 && d[8] == b'T', "{date}");
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &date[0..4],
        &date[4..6],
        &date[6..8],
        &date[9..11],
        &date[11..13],
        &date[13..15]
    );
    let signed = trusttime_core::UnixTime::parse_rfc3339(&rfc)
        .unwrap()
        .as_secs();
    assert!(
        (signed - unix_now()).abs() < 120,
        "signed at {date}, now is {}",
        unix_now()
    );
}

/// A handshake that fails on the certificate's dates is not retried blindly: `connect`
/// re-syncs once, and when the time does not change, says the certificate is at fault.
#[test]
fn certificate_failure_triggers_one_resync_not_a_retry_loop() {
    let now = unix_now();
    let chain = make_chain(
        BROKER,
        (now - 400 * 86_400, now + 3650 * 86_400),
        None,
        (now + 3000, now + 30 * 86_400),
    );
    let dir = TempDir::new().unwrap();
    write_pem(&chain, dir.path()).unwrap();
    let Some(broker) = mosquitto_tls(dir.path(), None) else {
        return;
    };
    let ntp = SocketAddr::from(([127, 0, 0, 84], free_port()));
    let Some(_c) = chronyd_server(ntp, None, &[]) else {
        return;
    };
    let d = dir.path();
    let out = Command::new(env!("CARGO_BIN_EXE_trusttime"))
        .args(["connect", "--endpoint", "127.0.0.1", "--port"])
        .arg(broker.tls_port.to_string())
        .args(["--servername", BROKER, "--client-id", "device-43"])
        .arg("--cert")
        .arg(d.join("client.pem"))
        .arg("--key")
        .arg(d.join("client-key.pem"))
        .arg("--ca")
        .arg(d.join("root.pem"))
        .args(["--ntp-server", &ntp.to_string(), "--retries", "5"])
        .args(["--publish", "devices/43/hello", "x", "--timeout", "5s"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("X509_V_ERR_CERT_NOT_YET_VALID"), "{err}");
    assert!(err.contains("re-syncing"), "{err}");
    assert!(err.contains("the certificate, not the clock"), "{err}");
    // Not retried 5 times: one attempt before the re-sync (none after, the time was the same).
    assert_eq!(err.matches("retrying").count(), 0, "{err}");
}

/// `connect` judges the path it builds, as `check` does: a broker that also sends expired
/// certificates it does not need (an old intermediate, an expired cross-sign of the root) is
/// connected to; one whose only trusted root has expired is refused, though the broker
/// appends a self-signed certificate.
#[test]
fn connect_judges_the_path_unused_certificates_and_the_trust_anchor() {
    use trusttime_test_support::certs::{ca_cert, leaf_cert, write_served, CertKey, Identity};
    let now = unix_now();
    let day = 86_400;
    let ntp = SocketAddr::from(([127, 0, 0, 85], free_port()));
    let Some(_c) = chronyd_server(ntp, None, &[]) else {
        return;
    };
    let connect = |dir: &Path, port: u16| {
        let out = Command::new(env!("CARGO_BIN_EXE_trusttime"))
            .args(["connect", "--endpoint", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(["--servername", BROKER, "--client-id", "device-42"])
            .arg("--cert")
            .arg(dir.join("client.pem"))
            .arg("--key")
            .arg(dir.join("client-key.pem"))
            .arg("--ca")
            .arg(dir.join("root.pem"))
            .args(["--ntp-server", &ntp.to_string(), "--retries", "0"])
            .args(["--publish", "devices/42/path", "x", "--timeout", "5s"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // Unused expired certificates: connected.
    let root = Identity::ecdsa("Broker Root");
    let inter = Identity::ecdsa("Broker CA");
    let old_root = Identity::ecdsa("Broker Old Root");
    let key = CertKey::generate().unwrap();
    let leaf = leaf_cert(BROKER, &key, &inter, (now - 30 * day, now + 300 * day));
    let sent = vec![
        ca_cert(&inter, &root, (now - 2000 * day, now - 3 * day)),
        ca_cert(&inter, &root, (now - 300 * day, now + 900 * day)),
        ca_cert(&root, &old_root, (now - 4000 * day, now - 20 * day)),
    ];
    let roots = vec![ca_cert(&root, &root, (now - 400 * day, now + 3650 * day))];
    let dir = TempDir::new().unwrap();
    write_served(dir.path(), &leaf, &key, &sent, &roots, &root).unwrap();
    let Some(broker) = mosquitto_tls(dir.path(), None) else {
        return;
    };
    let (code, err) = connect(dir.path(), broker.tls_port);
    assert_eq!(code, Some(0), "{err}\nbroker: {}", broker.log_text());

    // The trusted root has expired: refused, with the root named.
    let stranger = Identity::ecdsa("Broker Stranger");
    let sent = vec![
        ca_cert(&inter, &root, (now - 300 * day, now + 900 * day)),
        ca_cert(&stranger, &stranger, (now - 300 * day, now + 900 * day)),
    ];
    let roots = vec![ca_cert(&root, &root, (now - 4000 * day, now - 10 * day))];
    let dir = TempDir::new().unwrap();
    write_served(dir.path(), &leaf, &key, &sent, &roots, &root).unwrap();
    let Some(broker) = mosquitto_tls(dir.path(), None) else {
        return;
    };
    let (code, err) = connect(dir.path(), broker.tls_port);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("root CA certificate"), "{err}");
    assert!(err.contains("X509_V_ERR_CERT_HAS_EXPIRED"), "{err}");
}
