//! The local web page for setting the time by hand (axum). Off by default; loopback unless
//! configured. Pairing code (stored hashed), `HttpOnly; SameSite=Strict` session cookie, a CSRF
//! token on every write, a per-address limit on failed logins, bounded bodies, and the same
//! rules as `trusttime set` (never below the floor, never outside a network-trusted interval
//! without `force`). Every change is logged and shown in `status`.
//!
//! Hardened for a hostile LAN and a hostile page in the phone's browser:
//! - at most [`MAX_CONNECTIONS`] connections at once; when full, the address holding the most
//!   connections loses its oldest one not in the middle of a request, so idle connections
//!   cannot lock the page out (nor use up the daemon's file descriptors, which it needs for NTP
//!   and the control socket), and a flooding neighbour cannot push out a phone;
//! - request headers must arrive within [`HEADER_TIMEOUT`] (also the keep-alive idle limit),
//!   a request must be answered within [`REQUEST_TIMEOUT`] (slow bodies included), and no
//!   connection lives longer than [`MAX_CONNECTION_LIFETIME`];
//! - a request whose `Host` is neither the `listen` address nor a name in
//!   `[web] allowed-hosts` is refused (421): a DNS-rebinding page cannot reach the API;
//! - a write whose `Origin` (or `Sec-Fetch-Site`) is not this page (`http://` or, behind a TLS
//!   proxy, `https://` + the `Host`) is refused (403), and
//!   writes must be `Content-Type: application/json` (415), which a cross-site form cannot send.
//!
//! API (what the page uses): `GET /api/status`; `POST /api/login {"pairing_code": "..."}`
//! returns `{"csrf_token": "..."}` and a session cookie; `POST /api/time {"unix_ms": N,
//! "uncertainty_ms": N, "force": false}` with the cookie and `X-CSRF-Token`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::daemon_api::{self, Command, CommandError, DaemonLink, Reply, SetError};
use crate::files::hex;

/// Largest request body.
pub const MAX_BODY: usize = 4096;
/// The pairing-hash file inside the state directory.
pub const PAIRING_FILE: &str = "web-pairing.sha256";
/// Largest pairing-hash file read (it holds 64 hex digits).
const MAX_PAIRING_FILE: u64 = 1024;
const SESSION_LIFETIME: Duration = Duration::from_secs(3600);
/// Addresses whose failed logins are tracked at once.
const MAX_TRACKED_ADDRESSES: usize = 4096;
/// Connections served at once; beyond this the oldest idle one is closed.
pub const MAX_CONNECTIONS: usize = 64;
/// Time allowed for a request's headers to arrive, and for a kept-alive connection to idle.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a request to be read (body included) and answered.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a connection is kept, however busy.
pub const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(300);
/// The largest request head (request line and headers).
const MAX_HEAD: usize = 8192;

/// Creates a new pairing code, stores its hash (mode 0600) and returns it.
///
/// # Errors
/// When the state directory cannot be written.
pub fn new_pairing_code(state_dir: &Path) -> std::io::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let code: String = (0..10)
        .map(|_| ALPHABET[rand::random::<usize>() % ALPHABET.len()] as char)
        .collect();
    std::fs::create_dir_all(state_dir)?;
    crate::files::write_atomic(
        &state_dir.join(PAIRING_FILE),
        hex(&Sha256::digest(code.as_bytes())).as_bytes(),
        0o600,
    )?;
    Ok(code)
}

fn random_token() -> String {
    hex(&rand::random::<[u8; 32]>())
}

/// Constant-time comparison of equal-length strings.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[derive(Debug)]
struct Session {
    csrf: String,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Failures {
    in_a_row: u32,
    blocked_until: Option<Instant>,
}

/// Shared state of the web server.
#[derive(Debug)]
pub struct Web {
    daemon: DaemonLink,
    pairing_file: PathBuf,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    max_failures: u32,
    cooling_off: Duration,
}

impl Web {
    /// A web server for the daemon behind `daemon`, reading the pairing hash from
    /// `state_dir`.
    #[must_use]
    pub fn new(
        daemon: DaemonLink,
        state_dir: &Path,
        max_failures: u32,
        cooling_off: Duration,
    ) -> Arc<Self> {
        Arc::new(Web {
            daemon,
            pairing_file: state_dir.join(PAIRING_FILE),
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            max_failures: max_failures.max(1),
            cooling_off,
        })
    }
}

/// Which `Host` (and so which `Origin`) the page answers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPolicy {
    listen: IpAddr,
    names: Vec<String>,
}

impl HostPolicy {
    /// The `listen` address, plus the host names or addresses the operator lists.
    ///
    /// An IP literal is accepted when it is the listen address, or any address when listening
    /// on all of them (`0.0.0.0`, `::`): a DNS-rebinding attack always comes with the
    /// attacker's host *name*, never an address. `localhost` is accepted when listening on a
    /// loopback or wildcard address. The port is not compared (port forwarding changes it).
    #[must_use]
    pub fn new(listen: IpAddr, names: &[String]) -> Self {
        HostPolicy {
            listen,
            names: names.iter().map(|n| normalise_host(n)).collect(),
        }
    }

    /// True when a request with this `Host` header value may be served.
    #[must_use]
    pub fn allows(&self, host_header: &str) -> bool {
        let Some(host) = host_of(host_header) else {
            return false;
        };
        let host = normalise_host(host);
        if self.names.contains(&host) {
            return true;
        }
        match host.parse::<IpAddr>() {
            Ok(ip) => {
                self.listen.is_unspecified()
                    || ip == self.listen
                    || canonical(ip) == canonical(self.listen)
            }
            Err(_) => {
                host == "localhost" && (self.listen.is_loopback() || self.listen.is_unspecified())
            }
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn normalise_host(h: &str) -> String {
    let h = h.trim().to_ascii_lowercase();
    h.strip_suffix('.').map(str::to_owned).unwrap_or(h)
}

/// The host part of a `Host` header value (`name`, `name:port`, `1.2.3.4:port`,
/// `[v6]:port`), or `None` when it is malformed.
fn host_of(value: &str) -> Option<&str> {
    let value = value.trim();
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        // After `]` comes nothing or `:port`; anything else (`[::1]/x`) is malformed.
        match after {
            "" => (h, None),
            a => (h, Some(a.strip_prefix(':')?)),
        }
    } else {
        match value.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (value, None),
        }
    };
    if let Some(p) = port {
        p.parse::<u16>().ok()?;
    }
    (!host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':')))
    .then_some(host)
}

/// The router.
pub fn router(web: Arc<Web>, hosts: HostPolicy) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/status", get(status))
        .route("/api/login", post(login))
        .route("/api/time", post(set_time))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(Arc::new(hosts), guard))
        .with_state(web)
}

/// Checks every request before it reaches a handler: `Host`, and for writes `Origin`,
/// `Sec-Fetch-Site` and `Content-Type`; then bounds the handler's time.
async fn guard(State(hosts): State<Arc<HostPolicy>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let mut host_values = headers.get_all(header::HOST).iter();
    let host = match (host_values.next(), host_values.next()) {
        (Some(h), None) => h.to_str().ok(),
        _ => None,
    };
    // An absolute-form request target names its own authority: it must pass too.
    let authority_ok = req
        .uri()
        .authority()
        .map_or(true, |a| hosts.allows(a.as_str()));
    let Some(host) = host.filter(|h| hosts.allows(h) && authority_ok) else {
        tracing::debug!(host = ?headers.get(header::HOST), "web request for another host refused");
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            "this page does not answer to that host name: use the device's address, or add the name to [web] allowed-hosts",
        );
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let same = origin
                .to_str()
                .ok()
                .and_then(|o| {
                    o.strip_prefix("http://")
                        .or_else(|| o.strip_prefix("https://"))
                })
                .is_some_and(|o| o.eq_ignore_ascii_case(host));
            if !same {
                tracing::debug!(?origin, "cross-site write refused");
                return error(
                    StatusCode::FORBIDDEN,
                    "cross-site request refused: the Origin is not this page",
                );
            }
        }
        let site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("same-origin");
        if !matches!(site, "same-origin" | "none") {
            return error(
                StatusCode::FORBIDDEN,
                "cross-site request refused (Sec-Fetch-Site)",
            );
        }
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON, sent with Content-Type: application/json",
            );
        }
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => error(StatusCode::REQUEST_TIMEOUT, "request not completed in time"),
    }
}

/// One open connection, as the accept loop sees it.
#[derive(Debug)]
struct Slot {
    id: u64,
    peer: IpAddr,
    /// Requests being handled on it right now.
    busy: Arc<std::sync::atomic::AtomicUsize>,
    close: Arc<tokio::sync::Notify>,
}

/// Serves until the task is dropped.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(
    web: Arc<Web>,
    listen: SocketAddr,
    allowed_hosts: &[String],
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "web page for setting the time");
    serve_on(
        listener,
        router(web, HostPolicy::new(listen.ip(), allowed_hosts)),
    )
    .await;
    Ok(())
}

/// The accept loop: at most [`MAX_CONNECTIONS`] connections, each with header, request and
/// lifetime limits; when full, the address holding the most connections loses its oldest idle
/// one (else its oldest).
async fn serve_on(listener: tokio::net::TcpListener, app: Router) {
    use std::sync::atomic::Ordering;
    let slots: Arc<Mutex<Vec<Slot>>> = Arc::new(Mutex::new(Vec::new()));
    let mut next_id = 0u64;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors or a transient error: wait instead of spinning.
                tracing::warn!(error = %e, "web: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        next_id += 1;
        let id = next_id;
        let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let close = Arc::new(tokio::sync::Notify::new());
        if let Ok(mut s) = slots.lock() {
            if s.len() >= MAX_CONNECTIONS {
                // Room is made at the expense of the address holding the most connections
                // (so one neighbour flooding the page cannot push out a phone's connection):
                // its oldest idle one, else its oldest. Slots are in age order.
                let mut per_peer: HashMap<IpAddr, usize> = HashMap::new();
                for x in s.iter() {
                    *per_peer.entry(x.peer).or_default() += 1;
                }
                let greediest = per_peer
                    .into_iter()
                    .max_by_key(|&(_, n)| n)
                    .map_or(peer.ip(), |(ip, _)| ip);
                let victim = s
                    .iter()
                    .position(|x| x.peer == greediest && x.busy.load(Ordering::Relaxed) == 0)
                    .or_else(|| s.iter().position(|x| x.peer == greediest))
                    .unwrap_or(0);
                let old = s.remove(victim);
                old.close.notify_one();
                tracing::debug!(
                    id = old.id,
                    "web: connection limit reached; closed the oldest idle connection"
                );
            }
            s.push(Slot {
                id,
                peer: peer.ip(),
                busy: Arc::clone(&busy),
                close: Arc::clone(&close),
            });
        }
        let (app, slots) = (app.clone(), Arc::clone(&slots));
        crate::task::spawn(async move {
            serve_connection(stream, peer, app, busy, close).await;
            if let Ok(mut s) = slots.lock() {
                s.retain(|x| x.id != id);
            }
        });
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    busy: Arc<std::sync::atomic::AtomicUsize>,
    close: Arc<tokio::sync::Notify>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use std::sync::atomic::Ordering;
    use tower_service::Service;
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            busy.fetch_add(1, Ordering::Relaxed);
            let busy = Arc::clone(&busy);
            let mut app = app.clone();
            async move {
                let r = app.call(req).await;
                busy.fetch_sub(1, Ordering::Relaxed);
                r
            }
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD.max(MAX_BODY) * 2)
        .max_header_size(MAX_HEAD)
        .max_headers(64);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let stop = tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "web connection ended");
            }
            return;
        }
        () = close.notified() => "connection limit",
        () = tokio::time::sleep(MAX_CONNECTION_LIFETIME) => "lifetime",
    };
    // Finish a request in progress (bounded), then close.
    tracing::debug!(%peer, why = stop, "closing a web connection");
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({ "error": msg.into() }))).into_response()
}

async fn page() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(include_str!("page.html")),
    )
}

async fn status(State(web): State<Arc<Web>>) -> impl IntoResponse {
    Json(web.daemon.status())
}

/// `POST /api/login` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The pairing code.
    pub pairing_code: String,
}

/// Parses a JSON body with a clear message.
///
/// # Errors
/// A 400 response naming the problem.
pub fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("malformed request body: {e}"))
}

async fn login(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    let ip = peer.ip();
    let now = Instant::now();
    if let Ok(f) = web.failures.lock() {
        if let Some(until) = f.get(&ip).and_then(|x| x.blocked_until) {
            if until > now {
                let secs = (until - now).as_secs() + 1;
                let mut r = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("too many failed pairing attempts; try again in {secs} s"),
                );
                if let Ok(v) = secs.to_string().parse() {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return r;
            }
        }
    }
    let req: Login = match parse_body(&body) {
        Ok(x) => x,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Ok(stored) = crate::files::read_to_string(
        &web.pairing_file,
        MAX_PAIRING_FILE,
        crate::files::Links::Refuse,
    ) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "no pairing code is set on this device: run `trusttime web pairing-code` on it",
        );
    };
    let given = hex(&Sha256::digest(
        req.pairing_code.trim().to_ascii_uppercase().as_bytes(),
    ));
    if !same(stored.trim(), &given) {
        if let Ok(mut f) = web.failures.lock() {
            // Bounded memory under many addresses: forget expired lock-outs first.
            if f.len() >= MAX_TRACKED_ADDRESSES {
                f.retain(|_, x| x.blocked_until.is_some_and(|u| u > now));
            }
            let e = f.entry(ip).or_default();
            e.in_a_row += 1;
            if e.in_a_row >= web.max_failures {
                e.blocked_until = Some(now + web.cooling_off);
                e.in_a_row = 0;
            }
        }
        tracing::warn!(%ip, "failed pairing attempt");
        return error(StatusCode::UNAUTHORIZED, "wrong pairing code");
    }
    if let Ok(mut f) = web.failures.lock() {
        f.remove(&ip);
    }
    let (sid, csrf) = (random_token(), random_token());
    if let Ok(mut s) = web.sessions.lock() {
        s.retain(|_, v| v.expires > now);
        s.insert(
            sid.clone(),
            Session {
                csrf: csrf.clone(),
                expires: now + SESSION_LIFETIME,
            },
        );
    }
    tracing::info!(%ip, "paired");
    let cookie = format!(
        "tt_session={sid}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    );
    let mut r = Json(json!({ "csrf_token": csrf })).into_response();
    if let Ok(v) = cookie.parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /api/time` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetTime {
    /// The time, Unix milliseconds.
    pub unix_ms: i64,
    /// Its uncertainty, milliseconds.
    #[serde(default)]
    pub uncertainty_ms: i64,
    /// Override a network-trusted interval (if the config allows it).
    #[serde(default)]
    pub force: bool,
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("tt_session=").map(str::to_owned))
}

async fn set_time(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(sid) = session_of(&headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "not paired: log in with the pairing code first",
        );
    };
    let csrf = {
        let Ok(s) = web.sessions.lock() else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "session store unavailable",
            );
        };
        match s.get(&sid) {
            Some(x) if x.expires > Instant::now() => x.csrf.clone(),
            _ => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "session expired or unknown: pair again",
                )
            }
        }
    };
    let given = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !same(given, &csrf) {
        return error(StatusCode::FORBIDDEN, "missing or wrong X-CSRF-Token");
    }
    let req: SetTime = match parse_body(&body) {
        Ok(x) => x,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let command = Command::Set(daemon_api::SetTime {
        unix_ms: req.unix_ms,
        uncertainty_ms: req.uncertainty_ms,
        force: req.force,
    });
    match web
        .daemon
        .execute(command, &format!("web page, {}", peer.ip()))
        .await
    {
        Ok(Reply::Changed(c)) => Json(c).into_response(),
        Ok(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "unexpected reply"),
        Err(CommandError::Set(e)) => refused(&e, req.force),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// A refused hand-set time as the page shows it.
fn refused(e: &SetError, forced: bool) -> Response {
    use trusttime_core::system::ManualError;
    match e {
        SetError::Refused {
            why: ManualError::BelowFloor { .. },
            ..
        } => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        SetError::Refused {
            requested,
            uncertainty,
            why,
        } => error(
            StatusCode::CONFLICT,
            page_conflict(*requested, *uncertainty, why, forced).unwrap_or_else(|| e.to_string()),
        ),
        SetError::Unavailable => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        _ => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// A conflict with network time in the page's words: the page has no way to override
/// network time, so it does not point at one (the CLI's `--force` is named for the operator
/// at the device). `None`: the daemon's own words fit (`force` was sent).
fn page_conflict(
    requested: trusttime_core::UnixTime,
    uncertainty: trusttime_core::SignedDuration,
    why: &trusttime_core::system::ManualError,
    forced: bool,
) -> Option<String> {
    use trusttime_core::system::ManualError;
    let what = match why {
        _ if forced => return None,
        ManualError::OutsideNetwork { network } => format!(
            "outside the network-trusted interval {} .. {}",
            network.earliest, network.latest
        ),
        ManualError::LooserThanNetwork { network } => {
            format!("less precise than the network time {network} it would replace")
        }
        _ => return None,
    };
    Some(format!(
        "{requested} ± {} is {what}: refused. The device's network time sources disagree with this time, and this page cannot override them (an operator at the device can, with `trusttime set --force`, if [clock] allow-manual-force = true).",
        trusttime_core::Human(uncertainty)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_checked_with_clear_messages() {
        assert!(parse_body::<SetTime>(br#"{"unix_ms": 1, "uncertainty_ms": 2}"#).is_ok());
        let e = parse_body::<SetTime>(br#"{"unix_ms": "x"}"#).unwrap_err();
        assert!(e.starts_with("malformed request body"), "{e}");
        assert!(parse_body::<SetTime>(br#"{"unix_ms": 1, "admin": true}"#).is_err());
        assert!(parse_body::<Login>(b"").is_err());
        // Seeded random bytes never panic.
        let mut seed = 0x0123_4567_89ab_cdefu64;
        for _ in 0..3000 {
            let len = (seed % 48) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    b"{}\":,0123456789 unix_msforcetrue"[(seed % 32) as usize]
                })
                .collect();
            let _ = parse_body::<SetTime>(&data);
            let _ = parse_body::<Login>(&data);
        }
    }

    /// A conflict with network time is told from the refusal's facts, without the CLI's
    /// `force` hint; other refusals keep the daemon's words.
    #[test]
    fn conflicts_are_worded_for_the_page() {
        use trusttime_core::system::ManualError;
        use trusttime_core::{SignedDuration, TimeInterval, UnixTime};
        let t = UnixTime::from_secs(1_800_000_000);
        let network = TimeInterval::around(t, SignedDuration::from_millis(5));
        let unc = SignedDuration::from_secs(60);
        let outside =
            page_conflict(t, unc, &ManualError::OutsideNetwork { network }, false).unwrap();
        assert!(
            outside.starts_with(&format!(
                "{t} ± 1 minute is outside the network-trusted interval {} .. {}: refused. ",
                network.earliest, network.latest
            )),
            "{outside}"
        );
        assert!(outside.contains("this page cannot override"), "{outside}");
        assert!(!outside.contains("send force"), "{outside}");
        let looser =
            page_conflict(t, unc, &ManualError::LooserThanNetwork { network }, false).unwrap();
        assert!(
            looser.contains("less precise than the network time"),
            "{looser}"
        );
        assert_eq!(
            page_conflict(t, unc, &ManualError::OutsideNetwork { network }, true),
            None
        );
        assert_eq!(
            page_conflict(t, unc, &ManualError::ForceNotAllowed, true),
            None
        );
    }

    #[test]
    /// Found by the `web_body` fuzz target: a bracketed address followed by something other
    /// than `:port` (`[0::]/,`) was read as the address alone and allowed on a wildcard listen
    /// address. A `Host` with a path is malformed and refused.
    fn a_bracketed_host_followed_by_a_path_is_refused() {
        let any = HostPolicy::new("::".parse().unwrap(), &[]);
        assert!(any.allows("[::1]"));
        assert!(any.allows("[::1]:8123"));
        for bad in ["[0::]/,", "[::1]/x", "[::1]x", "[::1]:", "[::1]:80/x"] {
            assert!(!any.allows(bad), "{bad:?}");
        }
    }

    #[test]
    fn hosts_are_judged_by_the_listen_address_and_the_list() {
        let names = ["device.local".to_owned(), "10.0.0.9".to_owned()];
        let lo = HostPolicy::new("127.0.0.1".parse().unwrap(), &names);
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8123",
            "localhost:8123",
            "Device.Local.",
            "device.local:80",
            "10.0.0.9:1",
        ] {
            assert!(lo.allows(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "127.0.0.2",
            "device.local.evil",
            "127.0.0.1:x",
            "127.0.0.1:70000",
            "[::1]",
            "user@127.0.0.1",
            "127.0.0.1/",
            "local host",
        ] {
            assert!(!lo.allows(bad), "{bad}");
        }
        // Listening everywhere: any address literal (never a rebinding name), and localhost.
        let any = HostPolicy::new("::".parse().unwrap(), &[]);
        for ok in ["192.168.1.20", "[fe80::1]:8123", "[::1]", "localhost"] {
            assert!(any.allows(ok), "{ok}");
        }
        assert!(!any.allows("device.local") && !any.allows("[::1"));
        // A LAN address: only itself (and the list), not localhost.
        let lan = HostPolicy::new("192.168.1.20".parse().unwrap(), &[]);
        assert!(lan.allows("192.168.1.20:8123") && !lan.allows("localhost"));
        // Seeded random header values never panic.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5000 {
            let len = (seed % 24) as usize;
            let v: String = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    b"[]:.0127abcdelo-x"[(seed % 17) as usize] as char
                })
                .collect();
            let _ = lo.allows(&v);
            let _ = any.allows(&v);
        }
    }

    #[test]
    fn pairing_codes_are_stored_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let code = new_pairing_code(dir.path()).unwrap();
        let stored = std::fs::read_to_string(dir.path().join(PAIRING_FILE)).unwrap();
        assert!(!stored.contains(&code));
        assert_eq!(stored, hex(&Sha256::digest(code.as_bytes())));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(PAIRING_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
