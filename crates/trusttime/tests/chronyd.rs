//! End to end against real chronyd servers under libfaketime, on loopback. The machine's clock
//! is never touched: chronyd runs with `-x` and without CAP_SYS_TIME, and `trusttime sync`
//! never sets the clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Command;

use serde_json::Value;
use trusttime_test_support::{chronyd_server, free_port, Peer};

fn chronyd(ip: [u8; 4], faketime: Option<&str>) -> Option<(Peer, SocketAddr)> {
    let addr = SocketAddr::from((ip, free_port()));
    chronyd_server(addr, faketime, &[]).map(|p| (p, addr))
}

fn sync_json(servers: &[SocketAddr], extra: &[&str]) -> (i32, Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trusttime"));
    cmd.arg("sync").arg("--json").arg("--timeout").arg("3s");
    for s in servers {
        cmd.arg("--server").arg(s.to_string());
    }
    cmd.args(extra);
    let out = cmd.output().unwrap();
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

#[test]
fn one_hour_ahead() {
    let Some((_p, a)) = chronyd([127, 0, 0, 1], Some("+3600")) else {
        return;
    };
    let (code, v) = sync_json(&[a], &[]);
    assert_eq!(code, 0, "{v}");
    // The promise is the interval: the true offset lies inside offset ± error, and the error
    // is small on loopback (a loaded machine may delay a reply by some milliseconds, which the
    // error bound covers; a fixed tolerance would not).
    let err = (offset(&v) - 3600.0).abs();
    let bound = v["error_s"].as_f64().unwrap();
    assert!(
        err <= bound + 0.000_1 && bound < 0.1,
        "measured {} ± {bound} s, expected 3600 s: {v}",
        offset(&v)
    );
    assert_eq!(v["agreed"], 1);
    assert_eq!(v["sources"][0]["verdict"], "agreed");
    assert_eq!(v["authenticated"], false);
    let earliest = v["earliest"].as_str().unwrap();
    assert!(earliest.ends_with('Z'), "{earliest}");
}

#[test]
fn ninety_days_behind() {
    let Some((_p, a)) = chronyd([127, 0, 0, 2], Some("-7776000")) else {
        return;
    };
    // The build-time floor is newer than 90 days ago: by default the server is a falseticker.
    let (code, v) = sync_json(&[a], &[]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["sources"][0]["verdict"], "falseticker", "{v}");
    assert!(
        v["sources"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("below the floor"),
        "{v}"
    );
    // With the floor lowered (sync never sets the clock), the true offset lies within the
    // measured interval, offset_s +/- error_s, and that interval is narrow.
    let (code, v) = sync_json(&[a], &["--floor", "2020-01-01T00:00:00Z"]);
    assert_eq!(code, 0, "{v}");
    let error = v["error_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("no error_s in {v}"));
    assert!(
        (offset(&v) + 7_776_000.0).abs() <= error,
        "-7776000 s is outside {} +/- {error} s: {v}",
        offset(&v)
    );
    assert!(error < 0.1, "an error under 0.1 s: {v}");
}

#[test]
fn server_past_the_2036_era_rollover() {
    let Some((_p, a)) = chronyd([127, 0, 0, 3], Some("@2036-02-08 00:00:00")) else {
        return;
    };
    let (code, v) = sync_json(&[a], &[]);
    assert_eq!(code, 0, "{v}");
    let earliest = v["earliest"].as_str().unwrap();
    assert!(
        earliest.starts_with("2036-02-08T00:0"),
        "era 1 read as {earliest}: {v}"
    );
}

#[test]
fn three_servers_one_falseticker() {
    let Some((_a, a)) = chronyd([127, 0, 0, 4], Some("+600")) else {
        return;
    };
    let Some((_b, b)) = chronyd([127, 0, 0, 5], Some("+600")) else {
        return;
    };
    let Some((_c, c)) = chronyd([127, 0, 0, 6], Some("+4200")) else {
        return;
    };
    let (code, v) = sync_json(&[a, c, b], &[]);
    assert_eq!(code, 0, "{v}");
    // The liar is out and the interval holds the truth (a fixed few-ms tolerance fails on a
    // loaded machine, where the error bound covers the delay).
    let err = (offset(&v) - 600.0).abs();
    let bound = v["error_s"].as_f64().unwrap();
    assert!(
        err <= bound + 0.000_1 && bound < 0.1,
        "followed {} ± {bound} s: {v}",
        offset(&v)
    );
    assert_eq!(v["agreed"], 2);
    assert_eq!(v["min_agree"], 2);
    let s = v["sources"].as_array().unwrap();
    assert_eq!(s[0]["verdict"], "agreed");
    assert_eq!(s[2]["verdict"], "agreed");
    // The liar either answered and was named, or was still on its way when the majority
    // decided (it cannot change the outcome).
    let liar = s[1]["verdict"].as_str().unwrap();
    assert!(liar == "falseticker" || liar == "no_reply", "{v}");
    if liar == "falseticker" {
        assert!(
            (s[1]["offset_s"].as_f64().unwrap() - 4200.0).abs() < 0.01,
            "{v}"
        );
    }
}

#[test]
fn liar_is_named_when_every_server_is_needed() {
    // With min-agree 3 nothing decides early: every answer is waited for, and with one liar
    // among three there is no consensus. Exit 1, the liar's offset reported.
    let Some((_a, a)) = chronyd([127, 0, 0, 7], Some("+600")) else {
        return;
    };
    let Some((_b, b)) = chronyd([127, 0, 0, 8], Some("+600")) else {
        return;
    };
    let Some((_c, c)) = chronyd([127, 0, 0, 9], Some("+4200")) else {
        return;
    };
    let (code, v) = sync_json(&[a, b, c], &["--min-agree", "3"]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["consensus"], false);
    assert!(v["error"].as_str().unwrap().contains("disagree"), "{v}");
    let s = v["sources"].as_array().unwrap();
    assert!(
        (s[2]["offset_s"].as_f64().unwrap() - 4200.0).abs() < 0.01,
        "{v}"
    );
}

#[test]
fn dead_server_does_not_delay_a_majority() {
    let Some((_a, a)) = chronyd([127, 0, 0, 10], None) else {
        return;
    };
    let Some((_b, b)) = chronyd([127, 0, 0, 11], None) else {
        return;
    };
    let dead = SocketAddr::from(([127, 0, 0, 12], free_port()));
    let (code, v) = sync_json(&[a, b, dead], &[]);
    assert_eq!(code, 0, "{v}");
    assert!(offset(&v).abs() < 0.005, "{v}");
    assert_eq!(v["sources"][2]["verdict"], "no_reply");
    // Decided on the two answers, not after the 3 s timeout or the 1 s retry.
    assert!(v["elapsed_ms"].as_f64().unwrap() < 900.0, "{v}");
}

/// `trusttime serve` answered by a client we did not write: chronyd -Q measures our offset.
#[test]
fn chronyd_measures_trusttime_serve() {
    let Some(chronyd) = trusttime_test_support::chronyd_path() else {
        return;
    };
    let addr = SocketAddr::from(([127, 0, 0, 13], free_port()));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trusttime"));
    cmd.args([
        "serve",
        "--listen",
        &addr.to_string(),
        "--offset",
        "1h",
        "--trust-local-clock",
    ]);
    let _server = Peer::spawn("trusttime-serve", cmd, None);
    trusttime_test_support::wait_for_ntp(addr, std::time::Duration::from_secs(10));
    let dir = tempfile_dir();
    let out = trusttime_test_support::no_clock_command(&chronyd, None)
        .args(["-Q", "-u", "root", "-f", "/dev/null"])
        .arg(format!(
            "server {} port {} iburst minpoll -6 maxpoll -6",
            addr.ip(),
            addr.port()
        ))
        .args(["cmdport 0", "bindcmdaddress /", "port 0"])
        .arg(format!("pidfile {}/q.pid", dir.path().display()))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let wrong: f64 = text
        .split("System clock wrong by ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("chronyd did not measure an offset: {text}"));
    assert!(
        (wrong - 3600.0).abs() < 0.01,
        "chronyd measured {wrong} s from trusttime serve --offset 1h"
    );
}

fn tempfile_dir() -> trusttime_test_support::TempDir {
    trusttime_test_support::TempDir::new().unwrap()
}

/// The newcomer's first command works offline and names the liar.
#[test]
fn demo_names_the_liar() {
    let out = Command::new(env!("CARGO_BIN_EXE_trusttime"))
        .arg("demo")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("server C said: falseticker"), "{text}");
    assert!(text.contains("2 of 3 servers agree"), "{text}");
}

/// One wording for how sources took part: answered, rejected (why), silent. Two servers in
/// 2000 (below the floor) answer and are rejected, a third is silent: none gave a usable
/// answer, and the message says so instead of "only 1 answered".
#[test]
fn no_consensus_counts_answered_rejected_and_silent() {
    let Some((_a, a)) = chronyd([127, 0, 0, 14], Some("@2000-01-01 00:00:00")) else {
        return;
    };
    let Some((_b, b)) = chronyd([127, 0, 0, 15], Some("@2000-01-01 00:00:00")) else {
        return;
    };
    let dead = SocketAddr::from(([127, 0, 0, 16], free_port()));
    let run = |servers: &[SocketAddr]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_trusttime"));
        cmd.args(["sync", "--timeout", "3s"]);
        for s in servers {
            cmd.args(["-s", &s.to_string()]);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&[a, b, dead]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(
            "only 0 source(s) gave a usable answer; 2 must agree (3 sources: 0 answered, 2 rejected (below the floor x2), 1 silent)"
        ),
        "{stderr}"
    );
    assert!(
        stdout.contains(
            "answers        3 sources: 0 answered, 2 rejected (below the floor x2), 1 silent"
        ),
        "{stdout}"
    );
    // The same words in the JSON, per source too.
    let (code, v) = sync_json(&[a, b, dead], &[]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(
        v["answers"], "3 sources: 0 answered, 2 rejected (below the floor x2), 1 silent",
        "{v}"
    );
    assert_eq!(v["sources"][0]["answer"], "rejected", "{v}");
    assert_eq!(v["sources"][0]["rejected_why"], "below the floor", "{v}");
    assert_eq!(v["sources"][2]["answer"], "silent", "{v}");
    assert!(v["sources"][2]["rejected_why"].is_null(), "{v}");
    // One server, which answered but is below the floor: it answered, and was rejected.
    let (code, _, stderr) = run(&[a]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("(1 source: 0 answered, 1 rejected (below the floor), 0 silent)"),
        "{stderr}"
    );
}

/// One server written three times (twice as the same address, once by a name that resolves
/// to it) is one vote: `sync` says 1 agreed, not 3.
#[test]
fn the_same_server_listed_three_times_counts_once() {
    let Some((_p, a)) = chronyd([127, 0, 0, 1], Some("+600")) else {
        return;
    };
    use std::net::ToSocketAddrs;
    let by_name = format!("localhost:{}", a.port());
    let name_is_twin = by_name.to_socket_addrs().ok().and_then(|mut it| it.next()) == Some(a);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trusttime"));
    cmd.args(["sync", "--json", "--timeout", "3s"]);
    cmd.args(["--server", &a.to_string(), "--server", &a.to_string()]);
    if name_is_twin {
        cmd.args(["--server", &by_name]);
    }
    let out = cmd.output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listed more than once"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["agreed"], 1, "{v}");
    let sources = v["sources"].as_array().unwrap();
    assert_eq!(sources[0]["verdict"], "agreed", "{v}");
    if name_is_twin {
        assert_eq!(sources.len(), 2, "{v}");
        assert_eq!(sources[1]["verdict"], "duplicate", "{v}");
    } else {
        assert_eq!(sources.len(), 1, "{v}");
    }
}

/// A server whose clock has a coarse precision (chronyd `clockprecision 0.5`: its timestamps
/// are only good to half a second, and it says so in the precision field): the error bound
/// carries that precision and the interval holds the true time (this machine's clock, which
/// the server reads too), where a bound of root dispersion alone (~0.1 ms) would miss it.
#[test]
fn a_low_precision_servers_interval_contains_the_truth() {
    let addr = SocketAddr::from(([127, 0, 0, 17], free_port()));
    let Some(_p) = chronyd_server(addr, None, &["clockprecision 0.5".into()]) else {
        return;
    };
    for _ in 0..5 {
        let (code, v) = sync_json(&[addr], &[]);
        assert_eq!(code, 0, "{v}");
        let (offset, error) = (offset(&v), v["error_s"].as_f64().unwrap());
        assert!(error >= 0.5, "{v}");
        assert!(
            offset.abs() <= error,
            "the truth (offset 0) is outside: {v}"
        );
        // offset_s is the centre of earliest .. latest.
        let secs = |k: &str| {
            trusttime_core::UnixTime::parse_rfc3339(v[k].as_str().unwrap())
                .unwrap()
                .as_nanos() as f64
                / 1e9
        };
        let width = secs("latest") - secs("earliest");
        assert!((width / 2.0 - error).abs() < 1e-6, "{v}");
    }
}
