//! The C sync example (`examples/c/sync.c`), built with the system C compiler against the
//! static library, syncs from three chronyd servers on loopback, one of them an hour ahead
//! (libfaketime): the liar is excluded and the interval holds the true time. Built a second
//! time with AddressSanitizer and UndefinedBehaviorSanitizer, which must stay silent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use trusttime_test_support as ts;

mod common;

fn compile(out: &Path, extra: &[&str]) {
    common::compile(out, &["examples/c/sync.c"], extra, &[]);
}

fn unix_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// The offset and error of a line `server i addr: offset +X s +/- Y s, ...`.
fn offset_and_error(line: &str) -> (f64, f64) {
    let rest = line
        .split_once("offset ")
        .unwrap_or_else(|| panic!("no offset in {line}"))
        .1;
    let mut words = rest.split(' ');
    let off = words.next().and_then(|w| w.parse().ok());
    let err = match (words.next(), words.next(), words.next()) {
        (Some("s"), Some("+/-"), Some(e)) => e.parse().ok(),
        _ => None,
    };
    match (off, err) {
        (Some(o), Some(e)) => (o, e),
        _ => panic!("no offset +/- error in {line}"),
    }
}

#[test]
fn c_example_excludes_the_liar_with_and_without_sanitizers() {
    let servers: Vec<SocketAddr> = (1..=3)
        .map(|i| format!("127.0.0.{i}:{}", ts::free_port()).parse().unwrap())
        .collect();
    let Some(_honest_a) = ts::chronyd_server(servers[0], None, &[]) else {
        return;
    };
    let _liar = ts::chronyd_server(servers[1], Some("+3600"), &[]).unwrap();
    let _honest_b = ts::chronyd_server(servers[2], None, &[]).unwrap();

    let dir = ts::TempDir::new().unwrap();
    let plain = dir.path().join("sync");
    let sanitized = dir.path().join("sync-asan");
    compile(&plain, &[]);
    compile(&sanitized, common::SANITIZE);
    for bin in [&plain, &sanitized] {
        // A round is decided as soon as two servers agree (early decision); the liar runs
        // under libfaketime, which slows its answer, so on a loaded machine it may come after
        // the decision and show as not heard. Ask again (a few times) until it was heard: the
        // test is about what is made of its answer.
        let mut attempt = 0;
        let (out, before, after) = loop {
            attempt += 1;
            let before = unix_ns();
            let out = Command::new(bin)
                .args(servers.iter().map(ToString::to_string))
                .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
                .output()
                .unwrap();
            let after = unix_ns();
            let heard = !String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.starts_with("server 1 ") && l.ends_with("no reply"));
            if heard || attempt == 20 {
                break (out, before, after);
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{bin:?}\n{stdout}\n{stderr}");
        assert!(
            !stderr.contains("runtime error") && !stderr.contains("Sanitizer"),
            "{stderr}"
        );
        let line = |i: usize| {
            stdout
                .lines()
                .find(|l| l.starts_with(&format!("server {i} ")))
                .unwrap_or_else(|| panic!("no line for server {i}:\n{stdout}"))
        };
        assert!(line(0).ends_with("agreed"), "{stdout}");
        assert!(line(1).ends_with("falseticker"), "{stdout}");
        // The liar is an hour ahead: +3600 s lies within its offset +/- error (a millisecond
        // of slack for the printed rounding).
        let (off, err) = offset_and_error(line(1));
        assert!(
            (off - 3600.0).abs() <= err + 0.001,
            "+3600 s is outside {off} +/- {err} s:\n{stdout}"
        );
        assert!(err < 0.1, "an error under 0.1 s:\n{stdout}");
        assert!(line(2).ends_with("agreed"), "{stdout}");
        assert!(
            stdout.contains("consensus: 2 of 3 servers agree (mask 0x5)"),
            "{stdout}"
        );
        assert!(stdout.contains("provenance ntp, state synced"), "{stdout}");
        assert!(
            stdout.contains("ready for TLS: yes, for SigV4: yes"),
            "{stdout}"
        );
        let iv: Vec<i64> = stdout
            .lines()
            .find_map(|l| l.strip_prefix("interval_ns "))
            .unwrap()
            .split(' ')
            .map(|v| v.parse().unwrap())
            .collect();
        // The honest servers share this machine's clock: the interval (read at the end of the
        // run) holds a time between the start and the end of the run.
        assert!(iv[0] <= iv[1], "{iv:?}");
        assert!(
            iv[0] <= after && iv[1] >= before,
            "{iv:?} not within {before}..{after}"
        );
        assert!(
            iv[1] - iv[0] < 100_000_000,
            "an interval under 100 ms wide: {iv:?}"
        );
    }
}

#[test]
fn c_example_reports_no_consensus_and_usage_errors() {
    let honest: SocketAddr = format!("127.0.0.1:{}", ts::free_port()).parse().unwrap();
    let Some(_server) = ts::chronyd_server(honest, None, &[]) else {
        return;
    };
    let dir = ts::TempDir::new().unwrap();
    let bin = dir.path().join("sync");
    compile(&bin, &[]);
    // One honest server and two silent ports: two must agree, so no consensus (exit 1).
    let silent: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", ts::free_port()))
        .collect();
    let out = Command::new(&bin)
        .arg(honest.to_string())
        .args(&silent)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("failed: no reply"), "{stdout}");
    assert!(
        stdout.contains("no consensus: too few servers answered (1 answered, 2 needed)"),
        "{stdout}"
    );
    for args in [
        vec![],
        vec!["127.0.0.1"],
        vec!["example.com:123"],
        vec!["1.2.3.4:99999"],
    ] {
        let out = Command::new(&bin).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: says why");
    }
}
