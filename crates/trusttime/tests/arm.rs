//! The ARM Linux builds (aarch64, armv7), run under qemu-user-static against real peers on
//! loopback: `sync` against three chronyd servers of which one lies, the daemon in
//! observe-only mode driven by `wait` and `status`, and `check` against `openssl s_server`.
//!
//! The binaries are cross-built by `scripts/test-arm`, which names them in
//! `TRUSTTIME_ARM_BINS` (`NAME=PATH` pairs separated by spaces; a NAME containing `tls` is a
//! build with `--features tls`). Without that variable these tests print that they skipped:
//! a plain `cargo test` does not cross-build. With it, a named binary that is missing, or a
//! missing qemu, fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use trusttime_test_support::certs::{make_chain, unix_now, valid_chain, write_pem};
use trusttime_test_support::{
    chronyd_server, free_port, no_clock_command, openssl_s_server, Peer, TempDir,
};

const DAY: i64 = 86_400;
const NAME: &str = "device.example.test";

/// One cross-built binary and the emulator that runs it.
#[derive(Debug)]
struct ArmBin {
    name: String,
    path: PathBuf,
    qemu: PathBuf,
    tls: bool,
}

impl ArmBin {
    /// `qemu BIN ARGS...`, without CAP_SYS_TIME.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = no_clock_command(&self.qemu, None);
        cmd.arg(&self.path).args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("{}: cannot run {:?}: {e}", self.name, self.qemu))
    }

    fn run_json(&self, args: &[&str]) -> (i32, Value) {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "{} {args:?}: not JSON ({e}): {stdout}\nstderr: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), v)
    }
}

/// The ELF machine of a binary: the emulator that runs it.
fn qemu_for(path: &Path) -> PathBuf {
    let head = std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .take(20)
        .collect::<Vec<u8>>();
    assert!(
        head.len() == 20 && head.starts_with(b"\x7fELF"),
        "{} is not an ELF file",
        path.display()
    );
    // e_machine, little-endian, at offset 18.
    let qemu = match u16::from_le_bytes([head[18], head[19]]) {
        0xB7 => "qemu-aarch64-static",
        0x28 => "qemu-arm-static",
        m => panic!("{}: unexpected ELF machine {m:#x}", path.display()),
    };
    trusttime_test_support::which(qemu).unwrap_or_else(|| {
        panic!("{qemu} not found: apt-get install qemu-user-static (scripts/install-peers does)")
    })
}

/// The binaries `scripts/test-arm` built, or none (printing why) when it did not run.
fn arm_bins() -> Vec<ArmBin> {
    let Ok(spec) = std::env::var("TRUSTTIME_ARM_BINS") else {
        eprintln!("SKIPPED: TRUSTTIME_ARM_BINS is not set; scripts/test-arm builds the ARM binaries and sets it");
        return Vec::new();
    };
    let bins: Vec<ArmBin> = spec
        .split_whitespace()
        .map(|entry| {
            let (name, path) = entry
                .split_once('=')
                .unwrap_or_else(|| panic!("TRUSTTIME_ARM_BINS entry {entry:?} is not NAME=PATH"));
            let path = PathBuf::from(path);
            assert!(path.is_file(), "{name}: no binary at {}", path.display());
            ArmBin {
                name: name.to_owned(),
                qemu: qemu_for(&path),
                path,
                tls: name.contains("tls"),
            }
        })
        .collect();
    assert!(!bins.is_empty(), "TRUSTTIME_ARM_BINS names no binary");
    bins
}

/// Three chronyd servers: two honest at +600 s, one lying at +4200 s (the second).
fn three_servers(first_octet: u8) -> Option<(Vec<Peer>, Vec<SocketAddr>)> {
    let mut peers = Vec::new();
    let mut addrs = Vec::new();
    for (i, fake) in ["+600", "+4200", "+600"].into_iter().enumerate() {
        let a = SocketAddr::from(([127, 0, 1, first_octet + i as u8], free_port()));
        peers.push(chronyd_server(a, Some(fake), &[])?);
        addrs.push(a);
    }
    Some((peers, addrs))
}

#[test]
fn sync_against_three_chronyd_one_lying() {
    let bins = arm_bins();
    if bins.is_empty() {
        return;
    }
    let Some((_peers, addrs)) = three_servers(11) else {
        return;
    };
    for b in &bins {
        let mut args = vec!["sync", "--json", "--timeout", "10s"];
        let servers: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        for s in &servers {
            args.extend(["--server", s.as_str()]);
        }
        let (code, v) = b.run_json(&args);
        assert_eq!(code, 0, "{}: {v}", b.name);
        let off = v["offset_s"].as_f64().unwrap();
        // Emulation slows the client, not the measurement: the offset is still exact to a few ms.
        assert!(
            (off - 600.0).abs() < 0.05,
            "{}: followed {off} s: {v}",
            b.name
        );
        assert_eq!(v["agreed"], 2, "{}: {v}", b.name);
        let s = v["sources"].as_array().unwrap();
        assert_eq!(s[0]["verdict"], "agreed", "{}: {v}", b.name);
        assert_eq!(s[2]["verdict"], "agreed", "{}: {v}", b.name);
        let liar = s[1]["verdict"].as_str().unwrap();
        assert!(
            liar == "falseticker" || liar == "no_reply",
            "{}: {v}",
            b.name
        );
        assert_ne!(liar, "agreed", "{}: {v}", b.name);
    }
}

fn write_config(dir: &Path, servers: &[SocketAddr]) -> PathBuf {
    let mut s = String::new();
    for a in servers {
        s.push_str(&format!("[[source]]\nkind = \"ntp\"\naddress = \"{a}\"\n"));
    }
    s.push_str(&format!(
        "[clock]\nobserve-only = true\ndrift-ppm = 50\n[daemon]\nstate-dir = \"{}\"\ncontrol-socket = \"{}\"\nstartup-delay = \"0s\"\nmin-poll = 1\nmax-poll = 3\n",
        dir.join("state").display(),
        dir.join("control.sock").display()
    ));
    let path = dir.join("trusttime.toml");
    std::fs::write(&path, s).unwrap();
    path
}

#[test]
fn observe_only_daemon_wait_and_status() {
    let bins = arm_bins();
    if bins.is_empty() {
        return;
    }
    let Some((_peers, addrs)) = three_servers(21) else {
        return;
    };
    for b in &bins {
        let dir = TempDir::new().unwrap();
        let config = write_config(dir.path(), &addrs);
        let cfg = config.to_str().unwrap();
        let out = b.run(&["validate-config", cfg]);
        assert!(out.status.success(), "{}: validate-config: {out:?}", b.name);

        let mut cmd = b.command(&["daemon", "--config", cfg]);
        cmd.env("RUST_LOG", "debug");
        let mut daemon = Peer::spawn(&format!("arm-daemon-{}", b.name), cmd, None);

        let out = b.run(&["wait", "--for", "tls", "--timeout", "20s", "--config", cfg]);
        assert!(
            out.status.success(),
            "{}: wait: {}\n{}",
            b.name,
            String::from_utf8_lossy(&out.stderr),
            daemon.log_text()
        );
        let (code, st) = b.run_json(&["status", "--json", "--config", cfg]);
        assert_eq!(code, 0, "{}: {st}", b.name);
        assert_eq!(st["state"], "synced", "{}: {st}", b.name);
        let off = st["offset_s"].as_f64().unwrap();
        assert!((off - 600.0).abs() < 0.05, "{}: {st}", b.name);
        assert_eq!(st["authenticated"], false, "{}: {st}", b.name);

        // Observe-only: the daemon never tried to set the clock it lacks the right to set.
        assert!(daemon.is_running(), "{}: {}", b.name, daemon.log_text());
        daemon.kill();
        let log = daemon.log_text();
        assert!(
            !log.to_lowercase().contains("operation not permitted"),
            "{}: {log}",
            b.name
        );
    }
}

#[test]
fn check_against_openssl_s_server() {
    let bins = arm_bins();
    if bins.is_empty() {
        return;
    }
    let ntp = SocketAddr::from(([127, 0, 1, 31], free_port()));
    let Some(_chronyd) = chronyd_server(ntp, None, &[]) else {
        return;
    };
    let now = unix_now();
    let good_dir = TempDir::new().unwrap();
    write_pem(&valid_chain(NAME), good_dir.path()).unwrap();
    let good_port = free_port();
    let Some(_good) = openssl_s_server(good_dir.path(), good_port) else {
        return;
    };
    let expired_dir = TempDir::new().unwrap();
    let expired = make_chain(
        NAME,
        (now - 4000 * DAY, now + 3650 * DAY),
        None,
        (now - 400 * DAY, now - 35 * DAY),
    );
    write_pem(&expired, expired_dir.path()).unwrap();
    let expired_port = free_port();
    let Some(_expired) = openssl_s_server(expired_dir.path(), expired_port) else {
        return;
    };
    let ntp_s = ntp.to_string();

    for b in &bins {
        let check = |dir: &TempDir, port: u16| {
            let target = format!("127.0.0.1:{port}");
            let ca = dir.path().join("root.pem");
            b.run_json(&[
                "check",
                &target,
                "--servername",
                NAME,
                "--json",
                "--ca",
                ca.to_str().unwrap(),
                "--ntp-server",
                &ntp_s,
            ])
        };
        if !b.tls {
            // The lean build has no TLS code: `check` is not a command there (usage error).
            let out = b.run(&["check", "127.0.0.1:1"]);
            assert_eq!(out.status.code(), Some(2), "{}: {out:?}", b.name);
            continue;
        }
        let (code, v) = check(&good_dir, good_port);
        assert_eq!(code, 0, "{}: {v}", b.name);
        assert_eq!(v["verdict"], "valid", "{}: {v}", b.name);
        assert_eq!(v["time"]["provenance"], "ntp", "{}: {v}", b.name);
        assert_eq!(v["chain"].as_array().unwrap().len(), 3, "{}: {v}", b.name);

        let (code, v) = check(&expired_dir, expired_port);
        assert_eq!(code, 1, "{}: {v}", b.name);
        assert_eq!(
            v["diagnosis"]["finding"]["kind"], "expired",
            "{}: {v}",
            b.name
        );
    }
}
