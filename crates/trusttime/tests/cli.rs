//! The CLI as a hostile local user, a careless operator and a shell pipeline would use it:
//! stdout closed early, stderr closed or full, configs that are FIFOs or `/dev/zero`, a
//! control socket owned by someone else, permissions that keep a user out, timeouts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use trusttime_test_support::certs::valid_chain;
use trusttime_test_support::{free_port, no_clock_command, openssl_s_server, TempDir};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_trusttime"))
}

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

/// Stdio whose reader is already gone: every write gets EPIPE.
fn closed_pipe() -> Stdio {
    let (ours, theirs) = UnixStream::pair().unwrap();
    drop(ours);
    Stdio::from(OwnedFd::from(theirs))
}

fn no_panic(out: &Output, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{what}: {err}"
    );
    assert_ne!(out.status.code(), Some(101), "{what}: {err}");
    assert_ne!(out.status.code(), Some(134), "{what}: {err}");
    assert!(out.status.code().is_some(), "{what}: killed by a signal");
}

/// A daemon with no network sources (observe-only), its control socket in `dir`.
struct Daemon {
    child: Child,
    config: PathBuf,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, extra_sources: &str) -> PathBuf {
    let config = dir.join("trusttime.toml");
    std::fs::write(
        &config,
        format!(
            "{extra_sources}[clock]\nobserve-only = true\n[daemon]\nstate-dir = \"{}\"\ncontrol-socket = \"{}\"\nstartup-delay = \"0s\"\nmin-poll = -4\nmax-poll = -3\n",
            dir.join("state").display(),
            dir.join("control.sock").display()
        ),
    )
    .unwrap();
    config
}

fn start_daemon_with(dir: &Path, extra_sources: &str, stderr: Stdio) -> Daemon {
    let config = write_config(dir, extra_sources);
    let socket = dir.join("control.sock");
    let child = no_clock_command(bin(), None)
        .args(["--log", "debug", "daemon", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !socket.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no control socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Daemon {
        child,
        config,
        socket,
    }
}

fn start_daemon(dir: &Path) -> Daemon {
    start_daemon_with(dir, "", Stdio::null())
}

fn ask(d: &Daemon, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .arg("--socket")
        .arg(&d.socket)
        .output()
        .unwrap()
}

/// Every printing command, with its reader gone before it writes: exit 141 (as a tool killed
/// by SIGPIPE) or 0, never a panic; the same through a real `| head -1` and `| grep -q`.
#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let dir = TempDir::new().unwrap();
    let d = start_daemon(dir.path());
    let sock = d.socket.to_str().unwrap();
    let conf = d.config.to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["--help"],
        vec!["sync", "--help"],
        vec!["--version"],
        vec!["demo"],
        vec!["validate-config", conf],
        vec!["status", "--socket", sock],
        vec!["status", "--json", "--socket", sock],
        vec!["sources", "--socket", sock],
        vec!["sources", "--json", "--socket", sock],
        vec!["sync", "--json", "-s", "127.0.0.1:9", "--timeout", "200ms"],
        vec!["sync", "-s", "127.0.0.1:9", "--timeout", "200ms"],
        vec!["set", "2040-01-01T00:00:00Z", "--socket", sock],
    ];
    for args in &cases {
        let out = Command::new(bin())
            .args(args)
            .stdout(closed_pipe())
            .output()
            .unwrap();
        no_panic(&out, &format!("{args:?}"));
        let code = out.status.code().unwrap();
        assert!(
            code == 141 || code == 0 || (args.contains(&"sync") && code == 1),
            "{args:?}: exit {code}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A command with output to give ends with 141 (its first write fails).
        if !args.contains(&"--help") && !args.contains(&"--version") {
            assert_eq!(code, 141, "{args:?}");
        }
    }
    // A real pipeline, as a shell runs it.
    let b = bin().display().to_string();
    for pipeline in [
        format!("{b} sources --socket {sock} | head -1 >/dev/null"),
        format!("{b} status --socket {sock} | grep -q state"),
        format!("{b} demo | head -1 >/dev/null"),
        format!("{b} --help | head -1 >/dev/null"),
    ] {
        let out = Command::new("bash")
            .args(["-c", &format!("{pipeline}; echo \"rc=${{PIPESTATUS[0]}}\"")])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("rc=0") || stdout.contains("rc=141"),
            "{pipeline}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        no_panic(&out, &pipeline);
    }
    // A full disk on stdout is an error (exit 1) with a message, not a panic.
    let out = Command::new(bin())
        .args(["status", "--socket", sock])
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    no_panic(&out, "status >/dev/full");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write to standard output"));
    // With stderr closed too, an error still ends cleanly.
    let out = Command::new(bin())
        .args(["status", "--socket", "/nonexistent/control.sock"])
        .stdout(closed_pipe())
        .stderr(closed_pipe())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// The daemon keeps running and answering while every log line fails to be written: stderr
/// a pipe nobody reads, `/dev/full`, or closed.
#[test]
fn the_daemon_survives_a_closed_or_full_stderr() {
    // A source on loopback that never answers: the daemon polls and logs 16 times a second.
    let silent = format!(
        "[[source]]\nkind = \"ntp\"\naddress = \"127.0.0.1:{}\"\n",
        free_port()
    );
    for (what, stderr) in [
        ("closed pipe", closed_pipe()),
        (
            "/dev/full",
            Stdio::from(std::fs::File::create("/dev/full").unwrap()),
        ),
    ] {
        let dir = TempDir::new().unwrap();
        let mut d = start_daemon_with(dir.path(), &silent, stderr);
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(100));
            let out = ask(&d, &["status", "--json"]);
            assert!(out.status.success(), "{what}: status failed");
        }
        // A manual change logs a warning: still alive.
        let out = ask(&d, &["set", "2040-01-01T00:00:00Z"]);
        assert!(out.status.success(), "{what}: {out:?}");
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            matches!(d.child.try_wait(), Ok(None)),
            "{what}: the daemon died"
        );
        let out = ask(&d, &["status"]);
        assert!(out.status.success(), "{what}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("set by hand"));
        // The real JSON is what docs/json.md says.
        let out = ask(&d, &["status", "--json"]);
        let st: trusttime::json::Status = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(st.manual_changes.len(), 1);
        let out = ask(&d, &["sources", "--json"]);
        let so: trusttime::json::Sources = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(so.sources.len(), 1);
    }
    // stderr closed outright (`2>&-`): the descriptor is reopened on /dev/null, so no file
    // the daemon opens later can land on fd 2 and receive log lines.
    let dir = TempDir::new().unwrap();
    let config = write_config(dir.path(), &silent);
    let socket = dir.path().join("control.sock");
    let mut child = Command::new("bash")
        .args([
            "-c",
            &format!(
                "exec setpriv --bounding-set -sys_time --inh-caps -sys_time {} --log debug daemon --config {} 2>&-",
                bin().display(),
                config.display()
            ),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !socket.exists() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let out = Command::new(bin())
        .args(["set", "2040-01-01T00:00:00Z", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(matches!(child.try_wait(), Ok(None)), "the daemon died");
    let _ = child.kill();
    let _ = child.wait();
    // Its state file holds state, not log lines.
    let state = std::fs::read(dir.path().join("state/state")).unwrap();
    assert!(state.starts_with(b"trusttime-state 1\n"));
}

/// Log lines in a file (or the journal) carry no ANSI colour codes.
#[test]
fn logs_off_a_terminal_have_no_colours() {
    let dir = TempDir::new().unwrap();
    let log = dir.path().join("log");
    let f = std::fs::File::create(&log).unwrap();
    let d = start_daemon_with(dir.path(), "", Stdio::from(f));
    let out = ask(&d, &["set", "2040-01-01T00:00:00Z"]);
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("time set by hand"), "{text}");
    assert!(!text.contains('\x1b'), "{text:?}");
}

/// `validate-config` on things that are not config files: refused at once, exit 2.
#[test]
fn validate_config_refuses_devices_fifos_and_symlinks_to_them() {
    let dir = TempDir::new().unwrap();
    let fifo = dir.path().join("fifo.toml");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let link = dir.path().join("link.toml");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "#".repeat(2 << 20)).unwrap();
    for (path, says) in [
        (Path::new("/dev/zero"), "character device"),
        (fifo.as_path(), "FIFO"),
        (link.as_path(), "character device"),
        (empty.as_path(), "no settings"),
        (big.as_path(), "larger than 1 MiB"),
        (dir.path(), "directory"),
    ] {
        let start = Instant::now();
        let out = run(&["validate-config", path.to_str().unwrap()]);
        assert!(start.elapsed() < Duration::from_secs(5), "{path:?} stalled");
        assert_eq!(out.status.code(), Some(2), "{path:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{path:?}: {err}");
    }
    // The daemon refuses the same at start.
    let out = run(&[
        "daemon",
        "--observe-only",
        "--config",
        fifo.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// What the daemon would refuse at start, `validate-config` refuses, pointing at the line.
#[test]
fn validate_config_checks_named_files_and_points_at_the_line() {
    let dir = TempDir::new().unwrap();
    let cfg = dir.path().join("t.toml");
    let base = "[[source]]\nkind = \"nts\"\naddress = \"127.0.0.1\"\n\n[clock]\n";
    for (extra, line, says) in [
        (
            "trust-anchors = \"/nonexistent/ca.pem\"\n",
            6,
            "clock.trust-anchors",
        ),
        ("rtc = \"/nonexistent/rtc0\"\n", 6, "cannot read the RTC"),
        ("drift-ppm = 0\n", 6, "drift-ppm"),
    ] {
        std::fs::write(&cfg, format!("{base}{extra}")).unwrap();
        let out = run(&["validate-config", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra}: {err}");
        assert!(
            err.contains(&format!("t.toml:{line}:")) && err.contains(says),
            "{extra}: {err}"
        );
    }
    std::fs::write(
        &cfg,
        "[[source]]\nkind = \"pool\"\nzone = \"pool.ntp.org\"\n[daemon]\nmin-poll = 0\n",
    )
    .unwrap();
    let out = run(&["validate-config", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("t.toml:5: daemon.min-poll = 0"), "{err}");
    // The daemon refuses a missing trust-anchors file too, with the same words.
    std::fs::write(
        &cfg,
        format!("{base}observe-only = true\ntrust-anchors = \"/nonexistent/ca.pem\"\n"),
    )
    .unwrap();
    let out = run(&["daemon", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("t.toml:7: clock.trust-anchors"));
}

/// Another local user who binds the control socket first is not believed; a user the socket's
/// permissions keep out is told what to do at once (no retrying until the timeout).
#[test]
fn the_control_socket_must_belong_to_root_or_the_user() {
    if trusttime::platform::effective_uid() != 0 {
        return; // needs root to act as two users
    }
    // A daemon run by `nobody` in a directory `nobody` owns.
    let dir = TempDir::new().unwrap();
    let config = write_config(dir.path(), "");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let chown = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(chown.success());
    let socket = dir.path().join("control.sock");
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin())
        .args(["daemon", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !socket.exists() {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("the nobody daemon did not start: {err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Root does not believe it: the socket file is nobody's.
    for cmd in ["status", "wait"] {
        let start = Instant::now();
        let out = Command::new(bin())
            .args([cmd, "--socket"])
            .arg(&socket)
            .args(if cmd == "wait" {
                &["--timeout", "30s"][..]
            } else {
                &[][..]
            })
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(
            err.contains("refusing the control socket") && err.contains("uid 65534"),
            "{err}"
        );
        assert!(start.elapsed() < Duration::from_secs(5), "{cmd} retried");
    }
    // Even when the file is given to root, the process behind it is still nobody's.
    std::os::unix::fs::lchown(&socket, Some(0), Some(0)).unwrap();
    let out = Command::new(bin())
        .args(["status", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the process serving it runs as uid 65534"),
        "{err}"
    );
    let _ = child.kill();
    let _ = child.wait();

    // A root daemon; `nobody` may not use its socket (mode 0660 root:root).
    let dir = TempDir::new().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let d = start_daemon(dir.path());
    for (cmd, extra) in [("status", &[][..]), ("wait", &["--timeout", "30s"][..])] {
        let start = Instant::now();
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin())
            .args([cmd, "--socket"])
            .arg(&d.socket)
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(
            err.contains("permission denied") && err.contains("run this as root"),
            "{cmd}: {err}"
        );
        assert!(!err.contains("is it running"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5), "{cmd} retried");
    }
}

/// A daemon that does not answer, or whose queue is full, reads "timed out", never
/// "Resource temporarily unavailable (os error 11)".
#[test]
fn a_stuck_daemon_reads_timed_out() {
    let dir = TempDir::new().unwrap();
    let sock = dir.path().join("stuck.sock");
    // A listener with the smallest accept queue that never accepts (std and tokio ask the
    // kernel for a deep queue, which would need thousands of descriptors to fill).
    let mut listener = Command::new("python3")
        .args([
            "-c",
            "import socket, sys, time\ns = socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen(0)\nprint('ready', flush=True)\ntime.sleep(120)",
        ])
        .arg(&sock)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the whole line, and keep the pipe open while the listener lives.
    let mut said = listener.stdout.take().unwrap();
    let mut ready = [0u8; 6];
    said.read_exact(&mut ready).unwrap();
    // Fill the accept queue: non-blocking connects until the kernel says EAGAIN.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut held = Vec::new();
    let full = rt.block_on(async {
        for _ in 0..64 {
            match tokio::net::UnixStream::connect(&sock).await {
                Ok(s) => held.push(s),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) => panic!("{e}"),
            }
        }
        false
    });
    assert!(full, "the queue never filled");
    assert!(
        matches!(listener.try_wait(), Ok(None)),
        "the listener died: {:?}",
        listener.try_wait()
    );
    let start = Instant::now();
    let out = run(&[
        "wait",
        "--timeout",
        "1s",
        "--socket",
        sock.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("timed out after 1.000 s"), "{err}");
    assert!(err.contains("not accepting connections"), "{err}");
    assert!(!err.contains("os error 11"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(4));
    let out = run(&["status", "--socket", sock.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("timed out") && !err.contains("os error"),
        "{err}"
    );
    drop(held);
    let _ = listener.kill();
    let _ = listener.wait();
    drop(said);

    // A TLS server that accepts and never speaks.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let out = run(&[
        "check",
        &addr.to_string(),
        "--at",
        "2027-01-01T00:00:00Z",
        "--timeout",
        "500ms",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("timed out after 500.0 ms"), "{err}");
    assert!(!err.contains("os error 11"), "{err}");
    drop(tcp);
}

/// `check` judges by the running daemon's trusted time: a daemon set (by hand) to 2040
/// makes a certificate valid today expired.
#[test]
fn check_uses_the_daemons_trusted_time() {
    let chain = valid_chain("device.example.test");
    let certs = TempDir::new().unwrap();
    trusttime_test_support::certs::write_pem(&chain, certs.path()).unwrap();
    let port = free_port();
    let Some(_server) = openssl_s_server(certs.path(), port) else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let d = start_daemon(dir.path());
    let check = |extra: &[&str]| {
        let out = Command::new(bin())
            .args([
                "check",
                &format!("127.0.0.1:{port}"),
                "--servername",
                "device.example.test",
                "--json",
                "--ca",
            ])
            .arg(certs.path().join("root.pem"))
            .args(extra)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        // The real JSON is what docs/json.md says.
        let typed: trusttime::json::Check =
            serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"));
        assert!(matches!(typed, trusttime::json::Check::Judged(_)), "{v}");
        (out.status.code().unwrap(), v)
    };
    let sock = d.socket.to_str().unwrap();
    // The daemon knows no time yet: undetermined (3), and it says why.
    let (code, v) = check(&["--socket", sock]);
    assert_eq!(code, 3, "{v}");
    assert!(
        v["time"]["sync"].as_str().unwrap().contains("daemon"),
        "{v}"
    );
    let out = ask(&d, &["set", "2040-01-01T00:00:00Z", "--uncertainty", "1m"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("time set: 2040-01-01T00:00:00Z ± 60.000 s"),
        "{stdout}"
    );
    assert!(!stdout.contains('{'), "{stdout}");
    let (code, v) = check(&["--socket", sock]);
    assert_eq!(code, 1, "{v}");
    assert!(
        v["time"]["sync"]
            .as_str()
            .unwrap()
            .contains("daemon's trusted time"),
        "{v}"
    );
    let (code, v) = check(&["--config", d.config.to_str().unwrap()]);
    assert_eq!(code, 1, "{v}");
    // Judged by the device clock instead, the same chain is valid.
    let (code, v) = check(&["--no-sync"]);
    assert_eq!(code, 3, "{v}"); // untrusted clock: undetermined
    let now = trusttime_core::UnixTime::from_secs(trusttime_test_support::certs::unix_now());
    let (code, v) = check(&["--at", &now.to_string()]);
    assert_eq!(code, 0, "{v}");
}

/// The demo names the liar's direction: `--liar-offset -1h` is behind, not ahead.
#[test]
fn demo_says_behind_for_a_negative_liar() {
    let out = run(&["demo", "--liar-offset", "-1h"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("lies: 1 hour behind"), "{stdout}");
    assert!(!stdout.contains("ahead"), "{stdout}");
}

/// The status text of a live daemon: words and human units, no `null`, no raw JSON.
#[test]
fn status_text_of_a_live_daemon() {
    let dir = TempDir::new().unwrap();
    let d = start_daemon(dir.path());
    let out = ask(&d, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    for bad in ["null", "{"] {
        assert!(!text.contains(bad), "{bad}: {text}");
    }
    // No scientific notation (`7.759e-6`).
    let b = text.as_bytes();
    assert!(
        !b.windows(3).any(|w| w[0].is_ascii_digit()
            && w[1] == b'e'
            && (w[2] == b'-' || w[2].is_ascii_digit())),
        "{text}"
    );
    let out = ask(&d, &["set", "2040-01-01T00:00:00Z", "--uncertainty", "2s"]);
    assert!(out.status.success());
    let out = ask(&d, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("2040-01-01T00:00:00Z ± 2.000 s")
                && l.contains("control socket, uid")),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("uncertainty  ± ")),
        "{text}"
    );
    assert!(!text.contains("null"), "{text}");
}

/// `sync --json` against two loopback servers, and `check --json` on a network error: the
/// real output is what docs/json.md says.
#[test]
fn sync_and_check_json_follow_the_schema() {
    let mut servers = Vec::new();
    let mut args = vec!["sync".to_owned(), "--json".to_owned()];
    for ip in ["127.0.0.1", "127.0.0.2"] {
        let addr = format!("{ip}:{}", free_port());
        let child = Command::new(bin())
            .args(["serve", "--listen", &addr, "--trust-local-clock"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        servers.push(child);
        args.push("-s".into());
        args.push(addr);
    }
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new(bin()).args(&args).output().unwrap();
    for mut c in servers {
        let _ = c.kill();
        let _ = c.wait();
    }
    let v: trusttime::json::Sync = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert!(v.consensus, "{v:?}");
    assert_eq!(v.sources.len(), 2);
    assert!(
        v.sources
            .iter()
            .all(|s| s.answer == trusttime::json::Answer::Answered && s.rejected_why.is_none()),
        "{v:?}"
    );
    assert_eq!(
        v.constraint.decision,
        trusttime::json::ConstraintDecisionKind::NotAsked
    );
    assert_eq!(v.refused, None);
    // No consensus: still the schema.
    let out = run(&["sync", "--json", "-s", "127.0.0.1:9", "--timeout", "200ms"]);
    assert_eq!(out.status.code(), Some(1));
    let v: trusttime::json::Sync = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!v.consensus && v.error.is_some());
    let out = run(&[
        "check",
        "127.0.0.1:9",
        "--json",
        "--at",
        "2027-01-01T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(4));
    let v: trusttime::json::Check = serde_json::from_slice(&out.stdout).unwrap();
    assert!(matches!(v, trusttime::json::Check::Failed(_)));
}

/// The unit sets its open-file limit on purpose (not the inherited default of 1024 that
/// idle connections once exhausted), to a value with margin but bounded.
#[test]
fn the_unit_sets_its_open_file_limit() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/trusttime.service"),
    )
    .unwrap();
    let limits: Vec<u64> = unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("LimitNOFILE="))
        .map(|v| v.trim().parse().unwrap())
        .collect();
    assert_eq!(limits.len(), 1, "{unit}");
    assert!((2048..=65_536).contains(&limits[0]), "{limits:?}");
    let service = unit
        .split("[Service]")
        .nth(1)
        .unwrap()
        .split("[Install]")
        .next()
        .unwrap();
    assert!(service.contains("LimitNOFILE="), "not in [Service]");
}
