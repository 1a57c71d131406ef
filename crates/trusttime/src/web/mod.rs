//! The local web page for setting the time by hand (axum). Off by default; loopback unless
//! configured. Pairing code (stored hashed), `HttpOnly; SameSite=Strict` session cookie, a CSRF
//! token on every write, a per-address limit on failed logins, bounded bodies, and the same
//! rules as `trusttime set` (never below the floor, never outside a network-trusted interval
//! without `force`). Every change is logged and shown in `status`.
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
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::daemon::{SetError, StatusHandle};
use crate::state::hex;

/// Largest request body.
pub const MAX_BODY: usize = 4096;
/// The pairing-hash file inside the state directory.
pub const PAIRING_FILE: &str = "web-pairing.sha256";
/// Largest pairing-hash file read (it holds 64 hex digits).
const MAX_PAIRING_FILE: u64 = 1024;
const SESSION_LIFETIME: Duration = Duration::from_secs(3600);
/// Addresses whose failed logins are tracked at once.
const MAX_TRACKED_ADDRESSES: usize = 4096;

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
    status: StatusHandle,
    pairing_file: PathBuf,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    max_failures: u32,
    cooling_off: Duration,
}

impl Web {
    /// A web server for `status`, reading the pairing hash from `state_dir`.
    #[must_use]
    pub fn new(
        status: StatusHandle,
        state_dir: &Path,
        max_failures: u32,
        cooling_off: Duration,
    ) -> Arc<Self> {
        Arc::new(Web {
            status,
            pairing_file: state_dir.join(PAIRING_FILE),
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            max_failures: max_failures.max(1),
            cooling_off,
        })
    }
}

/// The router.
pub fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/status", get(status))
        .route("/api/login", post(login))
        .route("/api/time", post(set_time))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(web)
}

/// Serves until the task is dropped.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(web: Arc<Web>, listen: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "web page for setting the time");
    axum::serve(
        listener,
        router(web).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
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
    Json(web.status.status_json())
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
    match web.status.set_manual(
        req.unix_ms,
        req.uncertainty_ms,
        req.force,
        &format!("web page, {}", peer.ip()),
    ) {
        Ok(v) => Json(v).into_response(),
        Err(e @ SetError::Invalid(_)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ SetError::BelowFloor(_)) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        Err(e @ SetError::Conflict(_)) => error(StatusCode::CONFLICT, e.to_string()),
    }
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
