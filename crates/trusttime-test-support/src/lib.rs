//! Shared helpers for trusttime's integration tests.
//!
//! Every real peer runs on loopback, on an unprivileged port, without the capability to change
//! the machine's clock (`setpriv --bounding-set -sys_time --inh-caps -sys_time`), and with a fake
//! notion of "now" from libfaketime where a test needs a server whose clock is off.
//!
//! A missing peer binary fails the test with a message that says how to install it, unless
//! `TRUSTTIME_SKIP_PEERS=1` is set (then [`peer_or_skip`] returns `None` and the test returns
//! early, printing that it skipped).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

pub use tempfile::TempDir;

pub mod certs;

/// Where libfaketime lives on Debian.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Returns `Some(path)` of a peer program, or fails the test with install advice. When
/// `TRUSTTIME_SKIP_PEERS=1` is set, a missing peer gives `None` (the caller returns early).
pub fn peer_or_skip(name: &str, candidates: &[&str], install_hint: &str) -> Option<PathBuf> {
    for c in candidates {
        let p = Path::new(c);
        if p.is_file() {
            return Some(p.to_path_buf());
        }
    }
    if let Some(p) = which(name) {
        return Some(p);
    }
    if std::env::var("TRUSTTIME_SKIP_PEERS").as_deref() == Ok("1") {
        eprintln!("SKIPPED: peer `{name}` not found and TRUSTTIME_SKIP_PEERS=1");
        return None;
    }
    panic!("real peer `{name}` not found (looked in {candidates:?} and PATH). {install_hint}. Run ./scripts/test, which installs every peer, or set TRUSTTIME_SKIP_PEERS=1 to skip.");
}

/// Finds a program on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The chronyd binary: `$TRUSTTIME_CHRONYD`, the unpacked copy that `scripts/install-peers`
/// makes, or one on PATH.
pub fn chronyd_path() -> Option<PathBuf> {
    let env = std::env::var("TRUSTTIME_CHRONYD").unwrap_or_default();
    let peers = peers_dir().join("chrony/usr/sbin/chronyd");
    let peers = peers.to_string_lossy().into_owned();
    peer_or_skip(
        "chronyd",
        &[env.as_str(), peers.as_str(), "/usr/sbin/chronyd"],
        "chrony is unpacked (not installed) by scripts/install-peers",
    )
}

/// chronyd 4.6, built from Debian's source tarball by `scripts/install-peers`: it can send
/// Kiss-o'-Death RATE (`ratelimit ... kod`), which Debian 12's chronyd 4.3 cannot.
pub fn chronyd_kod_path() -> Option<PathBuf> {
    let peers = peers_dir().join("chrony-4.6/chronyd");
    let peers = peers.to_string_lossy().into_owned();
    peer_or_skip(
        "chronyd 4.6",
        &[peers.as_str()],
        "scripts/install-peers builds it from Debian's chrony 4.6.1 source",
    )
}

/// Starts chronyd 4.6 as an NTP server at `addr` that rate-limits every client and answers
/// some of the excess with Kiss-o'-Death RATE (`ratelimit interval 0 burst 1 kod 1`).
pub fn chronyd_kod_server(addr: SocketAddr) -> Option<Peer> {
    let chronyd = chronyd_kod_path()?;
    let rate = ["ratelimit interval 0 burst 1 leak 4 kod 1".to_owned()];
    Some(chronyd_server_with(
        &chronyd,
        "chronyd-4.6",
        addr,
        None,
        &rate,
    ))
}

/// The folder where `scripts/install-peers` unpacks peers (`$TRUSTTIME_PEERS_DIR`, default
/// `target/peers` under the workspace root).
pub fn peers_dir() -> PathBuf {
    if let Ok(d) = std::env::var("TRUSTTIME_PEERS_DIR") {
        return PathBuf::from(d);
    }
    workspace_root().join("target/peers")
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

/// Where tests save artifacts (screenshots, logs) that CI keeps: `target/test-artifacts`.
pub fn artifacts_dir() -> PathBuf {
    let d = workspace_root().join("target/test-artifacts");
    let _ = std::fs::create_dir_all(&d);
    d
}

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// The ports the kernel hands out to outgoing connections and `bind(0)`
/// (`net.ipv4.ip_local_port_range`; Linux's default if it cannot be read).
fn ephemeral_ports() -> std::ops::RangeInclusive<u16> {
    let text =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .filter_map(|w| w.parse::<u16>().ok());
    match (it.next(), it.next()) {
        (Some(lo), Some(hi)) if lo <= hi => lo..=hi,
        _ => 32_768..=60_999,
    }
}

/// The range `free_port` hands out from: outside the kernel's ephemeral range, so that no
/// outgoing connection (a browser's, a test client's) can take a port between the check and
/// the peer's bind.
fn test_ports() -> std::ops::Range<u16> {
    let eph = ephemeral_ports();
    if *eph.start() >= 14_000 {
        10_000..*eph.start()
    } else if *eph.end() <= 61_000 {
        eph.end() + 1..65_000
    } else {
        // The kernel may hand out nearly every port; the bind check below is all there is.
        10_000..65_000
    }
}

/// A port that is free for both UDP and TCP on loopback right now. Ports are handed out from
/// a per-process slice of a range outside the kernel's ephemeral ports (chosen by the process
/// id), then checked by binding, so parallel test processes and outgoing connections rarely
/// collide with a peer that is starting.
pub fn free_port() -> u16 {
    let range = test_ports();
    let span = u32::from(range.end - range.start);
    let slices = (span / 100).max(1);
    let base = (std::process::id() % slices) * 100;
    loop {
        let k = u32::from(NEXT_PORT.fetch_add(1, Ordering::SeqCst));
        let p = range.start + ((base + k) % span) as u16;
        let udp = UdpSocket::bind(("127.0.0.1", p)).is_ok();
        let tcp = TcpListener::bind(("127.0.0.1", p)).is_ok();
        if udp && tcp {
            return p;
        }
    }
}

/// A child process that is killed (and reaped) when dropped.
#[derive(Debug)]
pub struct Peer {
    /// What it is, for messages.
    pub name: String,
    child: Child,
    /// Where its log goes.
    pub log: PathBuf,
    _dir: Option<TempDir>,
    _dir_extra: Option<TempDir>,
}

impl Peer {
    /// Spawns `cmd` with stdout and stderr to a log file in `dir`.
    pub fn spawn(name: &str, mut cmd: Command, dir: Option<TempDir>) -> Peer {
        // One file per peer: tests run in parallel threads of one process, and two peers of
        // the same name sharing (and truncating) one log would lose each other's lines.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let log = artifacts_dir().join(format!(
            "{}-{}-{}.log",
            name.replace(['/', ' ', ':'], "_"),
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let f = std::fs::File::create(&log).expect("create peer log");
        let f2 = f.try_clone().expect("clone log handle");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(f))
            .stderr(Stdio::from(f2));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Peer {
            name: name.to_string(),
            child,
            log,
            _dir: dir,
            _dir_extra: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The peer's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A command that runs `program` without CAP_SYS_TIME, optionally under libfaketime.
///
/// `faketime` is libfaketime's `FAKETIME` value: `+3600` (an hour ahead), `-7776000` (90 days
/// behind), `@2036-02-08 00:00:00` (an absolute start that then ticks).
pub fn no_clock_command(program: &Path, faketime: Option<&str>) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--bounding-set", "-sys_time", "--inh-caps", "-sys_time"])
        .arg(program);
    if let Some(ft) = faketime {
        assert!(
            Path::new(LIBFAKETIME).is_file(),
            "libfaketime not found at {LIBFAKETIME}: apt-get install libfaketime"
        );
        cmd.env("LD_PRELOAD", LIBFAKETIME)
            .env("FAKETIME", ft)
            .env("DONT_FAKE_MONOTONIC", "1");
    }
    cmd
}

/// Starts chronyd as an NTP server at `addr` (UDP), stratum 1, with the given libfaketime
/// offset, no config file, no command port, never steering the clock (`-x`).
/// `extra` holds further chrony.conf directives, one per string. Returns `None` only when
/// peers may be skipped and chronyd is missing.
pub fn chronyd_server(addr: SocketAddr, faketime: Option<&str>, extra: &[String]) -> Option<Peer> {
    let chronyd = chronyd_path()?;
    Some(chronyd_server_with(
        &chronyd, "chronyd", addr, faketime, extra,
    ))
}

/// chronyd `binary` as a stratum-1 server at `addr` (see [`chronyd_server`]).
fn chronyd_server_with(
    binary: &Path,
    name: &str,
    addr: SocketAddr,
    faketime: Option<&str>,
    extra: &[String],
) -> Peer {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = no_clock_command(binary, faketime);
    cmd.args(["-x", "-d", "-u", "root", "-f", "/dev/null"])
        .arg(format!("port {}", addr.port()))
        .arg(format!("bindaddress {}", addr.ip()))
        .arg("local stratum 1")
        .arg("allow 127.0.0.0/8")
        .arg("cmdport 0")
        .arg("bindcmdaddress /")
        .arg(format!(
            "pidfile {}",
            dir.path().join("chronyd.pid").display()
        ))
        .arg(format!("driftfile {}", dir.path().join("drift").display()));
    for e in extra {
        cmd.arg(e);
    }
    let peer = Peer::spawn(&format!("{name}-{addr}"), cmd, Some(dir));
    wait_for_ntp(addr, Duration::from_secs(10));
    peer
}

/// Waits until something answers an NTP client request at `addr`.
pub fn wait_for_ntp(addr: SocketAddr, within: Duration) {
    let sock = UdpSocket::bind(("127.0.0.1", 0)).expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut req = [0u8; 48];
    req[0] = 0x23; // LI 0, version 4, mode 3 (client)
    req[40] = 0x5a; // a non-zero transmit timestamp
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        let _ = sock.send_to(&req, addr);
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if n >= 48 {
                return;
            }
        }
    }
    panic!("no NTP server answered at {addr} within {within:?}");
}

impl Peer {
    /// Waits until `addr` accepts TCP connections; fails early, with the peer's log, if the
    /// peer exits first (e.g. it could not bind).
    pub fn wait_for_tcp(&mut self, addr: SocketAddr, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if !self.is_running() {
                return Err(format!(
                    "{} exited before listening on {addr}; its log:\n{}",
                    self.name,
                    self.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "{} does not listen on {addr} after {within:?}; its log:\n{}",
            self.name,
            self.log_text()
        ))
    }

    /// Waits until `addr` accepts TCP connections, or panics with the peer's log.
    pub fn expect_listening(&mut self, addr: SocketAddr, within: Duration) {
        if let Err(e) = self.wait_for_tcp(addr, within) {
            panic!("{e}");
        }
    }
}

/// The path of a binary built by this workspace (e.g. `trusttime`), for tests in other crates.
/// Builds happen once: `cargo test --workspace` builds every binary before running tests.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = profile_dir.join(name);
    assert!(
        p.is_file(),
        "{} not built; run the tests with `cargo test --workspace`",
        p.display()
    );
    p
}

/// Starts `openssl s_server -www` on `127.0.0.1:port` serving the chain written by
/// [`certs::write_pem`] into `dir` (leaf, key, and intermediates when present).
pub fn openssl_s_server(dir: &Path, port: u16) -> Option<Peer> {
    let openssl = peer_or_skip("openssl", &["/usr/bin/openssl"], "apt-get install openssl")?;
    let mut cmd = Command::new("setpriv");
    cmd.args(["--bounding-set", "-sys_time", "--inh-caps", "-sys_time"])
        .arg(openssl);
    cmd.args(["s_server", "-www", "-accept"])
        .arg(format!("127.0.0.1:{port}"));
    cmd.arg("-cert")
        .arg(dir.join("leaf.pem"))
        .arg("-key")
        .arg(dir.join("key.pem"));
    let inter = dir.join("inter.pem");
    if std::fs::metadata(&inter)
        .map(|m| m.len() > 0)
        .unwrap_or(false)
    {
        cmd.arg("-cert_chain").arg(inter);
    }
    let mut peer = Peer::spawn(&format!("s_server-{port}"), cmd, None);
    peer.expect_listening(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(10),
    );
    Some(peer)
}

/// A minimal HTTP/1.1 client for tests: returns (status, headers as lowercase "name: value"
/// lines, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<String>, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    s.write_all(body).expect("write");
    // Read the head, then exactly Content-Length bytes (servers may keep the connection open).
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let split = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "connection closed before the HTTP header ended");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status");
    // Normalise to "name: value" (some servers omit the space after the colon).
    let hdrs: Vec<String> = lines
        .filter_map(|l| {
            l.split_once(':').map(|(k, v)| {
                format!(
                    "{}: {}",
                    k.trim().to_ascii_lowercase(),
                    v.trim().to_ascii_lowercase()
                )
            })
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let length = hdrs
        .iter()
        .find_map(|h| h.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = hdrs.iter().any(|h| h == "transfer-encoding: chunked");
    loop {
        match length {
            Some(n) if body.len() >= n => break,
            None if chunked && body.windows(5).any(|w| w == b"0\r\n\r\n") => break,
            _ => {}
        }
        let n = s.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    if chunked {
        body = dechunk(&body);
    }
    (status, hdrs, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}

/// A mosquitto broker on loopback: a mutual-TLS listener (like AWS IoT Core) and a plain
/// listener for test subscribers.
#[derive(Debug)]
pub struct Broker {
    _peer: Peer,
    /// The TLS listener (client certificates required).
    pub tls_port: u16,
    /// The plain listener.
    pub plain_port: u16,
    /// The MQTT-over-WebSocket listener with TLS (no client certificate required). Debian's
    /// mosquitto 2.0 starts a websockets listener only beside a normal one, and binds it to
    /// an interface (`lo`), not an address.
    pub ws_port: u16,
    log: PathBuf,
}

impl Broker {
    /// The broker's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts mosquitto with the PEM files [`certs::write_pem`] wrote into `dir`, optionally under
/// libfaketime (it then judges client certificates at its fake time). `None` when peers may
/// be skipped and mosquitto is missing.
pub fn mosquitto_tls(dir: &Path, faketime: Option<&str>) -> Option<Broker> {
    use std::os::unix::fs::PermissionsExt;
    let mosquitto = peer_or_skip(
        "mosquitto",
        &["/usr/sbin/mosquitto"],
        "apt-get install mosquitto",
    )?;
    let (tls_port, plain_port, ws_port) = (free_port(), free_port(), free_port());
    let conf = dir.join("mosquitto.conf");
    let log = dir.join("broker.log");
    std::fs::write(
        &conf,
        format!(
            "user root\nper_listener_settings true\npersistence false\nlog_dest file {log}\nlog_type all\n\
             listener {tls_port} 127.0.0.1\nallow_anonymous true\nrequire_certificate true\n\
             cafile {d}/root.pem\ncertfile {d}/chain.pem\nkeyfile {d}/key.pem\n\
             listener {plain_port} 127.0.0.1\nallow_anonymous true\n\
             listener {ws_port}\nprotocol websockets\nbind_interface lo\nallow_anonymous true\n\
             certfile {d}/chain.pem\nkeyfile {d}/key.pem\n",
            d = dir.display(),
            log = log.display()
        ),
    )
    .expect("write mosquitto.conf");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut cmd = no_clock_command(&mosquitto, faketime);
    cmd.arg("-c").arg(&conf);
    let mut peer = Peer::spawn("mosquitto", cmd, None);
    peer.expect_listening(
        SocketAddr::from(([127, 0, 0, 1], tls_port)),
        Duration::from_secs(10),
    );
    peer.expect_listening(
        SocketAddr::from(([127, 0, 0, 1], plain_port)),
        Duration::from_secs(10),
    );
    peer.expect_listening(
        SocketAddr::from(([127, 0, 0, 1], ws_port)),
        Duration::from_secs(10),
    );
    Some(Broker {
        _peer: peer,
        tls_port,
        plain_port,
        ws_port,
        log,
    })
}

/// Starts chronyd as an NTS server: NTP on `ntp` (UDP) and NTS-KE on `ntp.ip():ke_port`
/// (TCP), with the certificate chain and key that [`certs::write_pem`] wrote into `certs`
/// (`chain.pem`, `key.pem`). `advertise` makes the NTS-KE server name another NTP host
/// (chrony's `ntsntpserver`), e.g. a proxy. Returns `None` only when peers may be skipped.
pub fn chronyd_nts_server(
    ntp: SocketAddr,
    ke_port: u16,
    faketime: Option<&str>,
    certs: &Path,
    advertise: Option<&str>,
) -> Option<Peer> {
    let dump = tempfile::tempdir().expect("tempdir");
    let mut extra = vec![
        format!("ntsserverkey {}", certs.join("key.pem").display()),
        format!("ntsservercert {}", certs.join("chain.pem").display()),
        format!("ntsport {ke_port}"),
        "ntsprocesses 0".to_owned(),
        format!("ntsdumpdir {}", dump.path().display()),
    ];
    if let Some(a) = advertise {
        extra.push(format!("ntsntpserver {a}"));
    }
    let mut peer = chronyd_server(ntp, faketime, &extra)?;
    peer.expect_listening(SocketAddr::new(ntp.ip(), ke_port), Duration::from_secs(10));
    peer._dir_extra = Some(dump);
    Some(peer)
}

/// The path of the roughenough server, or `None` when peers may be skipped.
pub fn roughenough_path() -> Option<PathBuf> {
    let local = peers_dir().join("roughenough/bin/roughenough-server");
    let local = local.to_string_lossy().into_owned();
    peer_or_skip(
        "roughenough-server",
        &[local.as_str(), "/usr/local/bin/roughenough-server"],
        "./scripts/install-peers (cargo install roughenough --version 1.3.0-draft14 --locked)",
    )
}

/// A roughenough server on `addr` (UDP) at a libfaketime offset, with a fixed seed so its
/// long-term public key is known: returns the peer and the key (hex).
pub fn roughenough_server(
    addr: SocketAddr,
    faketime: Option<&str>,
    seed_hex: &str,
) -> Option<(Peer, String)> {
    let server = roughenough_path()?;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("roughenough.cfg");
    std::fs::write(
        &cfg,
        format!(
            "port: {}\ninterface: {}\nseed: {seed_hex}\nnum_workers: 1\n",
            addr.port(),
            addr.ip()
        ),
    )
    .expect("write roughenough config");
    let mut cmd = no_clock_command(&server, faketime);
    cmd.arg(&cfg);
    let peer = Peer::spawn(&format!("roughenough-{addr}"), cmd, Some(dir));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let log = peer.log_text();
        if let Some(line) = log.lines().find(|l| l.contains("Long-term public key")) {
            if let Some(key) = line.rsplit(':').next() {
                let key = key.trim().to_owned();
                if key.len() == 64 {
                    std::thread::sleep(Duration::from_millis(200));
                    return Some((peer, key));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("roughenough did not start on {addr}:\n{}", peer.log_text());
}

/// A UDP proxy on `listen` that forwards datagrams to `upstream` and passes each reply
/// through `mutate` on its way back: the on-path attacker of the tests. Runs until the
/// process ends.
pub fn udp_proxy(listen: SocketAddr, upstream: SocketAddr, mutate: fn(&mut [u8])) {
    let front = UdpSocket::bind(listen).expect("bind proxy");
    let back = UdpSocket::bind(SocketAddr::new(upstream.ip(), 0)).expect("bind proxy upstream");
    back.connect(upstream).expect("connect upstream");
    let client = std::sync::Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
    let (front2, client2) = (front.try_clone().expect("clone"), client.clone());
    let back2 = back.try_clone().expect("clone");
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = front.recv_from(&mut buf) {
            *client.lock().expect("lock") = Some(from);
            let _ = back.send(&buf[..n]);
        }
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = back2.recv(&mut buf) {
            mutate(&mut buf[..n]);
            if let Some(to) = *client2.lock().expect("lock") {
                let _ = front2.send_to(&buf[..n], to);
            }
        }
    });
}

/// Shifts an NTP reply's receive and transmit timestamps by one day (the attacker's edit).
pub fn shift_ntp_reply_by_a_day(b: &mut [u8]) {
    for at in [32usize, 40] {
        if let Some(s) = b.get_mut(at..at + 4) {
            let secs = u32::from_be_bytes([s[0], s[1], s[2], s[3]]).wrapping_add(86_400);
            s.copy_from_slice(&secs.to_be_bytes());
        }
    }
}

/// Flips one bit in the middle of a reply (inside the NTP header's transmit timestamp).
pub fn flip_a_bit(b: &mut [u8]) {
    if let Some(x) = b.get_mut(44) {
        *x ^= 1;
    }
}

/// Python's `http.server` behind TLS on `127.0.0.1:port`, answering every GET and HEAD with
/// 200 and the standard `Date` header, using `chain.pem` and `key.pem` from `dir`, at a
/// libfaketime offset: an HTTPS Date source we did not write.
pub fn python_https_server(dir: &Path, port: u16, faketime: Option<&str>) -> Option<Peer> {
    let python = peer_or_skip(
        "python3",
        &["/usr/bin/python3", "/usr/local/bin/python3"],
        "apt-get install python3",
    )?;
    let script = format!(
        r#"
import http.server, ssl
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    do_GET = do_HEAD
srv = http.server.HTTPServer(("127.0.0.1", {port}), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain({chain:?}, {key:?})
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#,
        chain = dir.join("chain.pem").display().to_string(),
        key = dir.join("key.pem").display().to_string(),
    );
    let mut cmd = no_clock_command(&python, faketime);
    cmd.arg("-c").arg(script);
    let mut peer = Peer::spawn(&format!("python-https-{port}"), cmd, None);
    peer.expect_listening(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(10),
    );
    Some(peer)
}
