//! The control socket: a Unix stream socket (mode 0660) speaking length-prefixed JSON.
//!
//! Each message is a 4-byte big-endian length and that many bytes of JSON, at most
//! [`MAX_MESSAGE`]. Requests: `{"command": "status"}`, `{"command": "sources"}`,
//! `{"command": "set", "unix_ms": N, "uncertainty_ms": N, "force": false}` and
//! `{"command": "set", "reset_floor": true}` (root only, optionally with a time to set after),
//! parsed into a [`Command`]. Replies are a JSON object; an unknown or malformed command, and
//! every refusal, is `{"error": "..."}`.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::daemon_api::{Command, CommandError, DaemonLink, SetTime};

/// Largest message either side accepts.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// A request as it travels on the socket; [`parse_command`] makes a [`Command`] of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// `status`, `sources` or `set`.
    pub command: String,
    /// For `set`: the time, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix_ms: Option<i64>,
    /// For `set`: its uncertainty, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty_ms: Option<i64>,
    /// For `set`: allow a time outside a network-trusted interval (if the config permits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
    /// For `set`: first reset the floor to the build time and forget every trusted time
    /// (root only; the recovery for a floor raised by a wrong time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_floor: Option<bool>,
}

impl Request {
    /// A request without arguments.
    #[must_use]
    pub fn simple(command: &str) -> Self {
        Request {
            command: command.into(),
            unix_ms: None,
            uncertainty_ms: None,
            force: None,
            reset_floor: None,
        }
    }
}

impl From<Command> for Request {
    fn from(c: Command) -> Self {
        let set = |t: Option<SetTime>| Request {
            command: "set".into(),
            unix_ms: t.map(|t| t.unix_ms),
            uncertainty_ms: t.map(|t| t.uncertainty_ms),
            force: t.map(|t| t.force),
            reset_floor: None,
        };
        match c {
            Command::Status => Request::simple("status"),
            Command::Sources => Request::simple("sources"),
            Command::Set(t) => set(Some(t)),
            Command::ResetFloor { then } => Request {
                reset_floor: Some(true),
                ..set(then)
            },
        }
    }
}

impl TryFrom<Request> for Command {
    type Error = FrameError;
    /// The wire format of older clients is kept: `set` with `reset_floor: true` and no time
    /// resets the floor (an `uncertainty_ms` or `force` beside it is ignored, as before).
    fn try_from(r: Request) -> Result<Self, FrameError> {
        let has_args = r.unix_ms.is_some()
            || r.uncertainty_ms.is_some()
            || r.force.is_some()
            || r.reset_floor.is_some();
        let bad = |why: &str| FrameError::BadArguments {
            command: r.command.clone(),
            why: why.to_owned(),
        };
        match r.command.as_str() {
            "status" | "sources" if has_args => Err(bad("takes no arguments")),
            "status" => Ok(Command::Status),
            "sources" => Ok(Command::Sources),
            "set" => {
                let time = r.unix_ms.map(|unix_ms| SetTime {
                    unix_ms,
                    uncertainty_ms: r.uncertainty_ms.unwrap_or(0),
                    force: r.force.unwrap_or(false),
                });
                match (r.reset_floor == Some(true), time) {
                    (true, then) => Ok(Command::ResetFloor { then }),
                    (false, Some(t)) => Ok(Command::Set(t)),
                    (false, None) => Err(bad("needs `unix_ms` (or `reset_floor: true`)")),
                }
            }
            _ => Err(FrameError::UnknownCommand(r.command)),
        }
    }
}

/// A frame that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Over [`MAX_MESSAGE`].
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE}-byte limit")]
    TooLarge(usize),
    /// Not JSON of the expected shape.
    #[error("bad message: {0}")]
    Bad(String),
    /// A command the daemon does not know.
    #[error("unknown command `{0}`: the daemon knows {known}", known = Command::KNOWN)]
    UnknownCommand(String),
    /// A known command with arguments it does not take, or without those it needs.
    #[error("bad message: `{command}` {why}")]
    BadArguments {
        /// The command.
        command: String,
        /// What is wrong.
        why: String,
    },
}

/// Reads one frame.
///
/// # Errors
/// [`FrameError`].
pub async fn read_frame<S: AsyncReadExt + Unpin>(s: &mut S) -> Result<Vec<u8>, FrameError> {
    let len = s.read_u32().await? as usize;
    if len > MAX_MESSAGE {
        return Err(FrameError::TooLarge(len));
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Writes one frame.
///
/// # Errors
/// [`FrameError`].
pub async fn write_frame<S: AsyncWriteExt + Unpin>(
    s: &mut S,
    body: &[u8],
) -> Result<(), FrameError> {
    if body.len() > MAX_MESSAGE {
        return Err(FrameError::TooLarge(body.len()));
    }
    s.write_u32(u32::try_from(body.len()).unwrap_or(u32::MAX))
        .await?;
    s.write_all(body).await?;
    s.flush().await?;
    Ok(())
}

/// Parses a request body into a [`Command`].
///
/// # Errors
/// [`FrameError`]: not JSON of the request's shape, an unknown command, or arguments that do
/// not fit it.
pub fn parse_command(body: &[u8]) -> Result<Command, FrameError> {
    let r: Request = serde_json::from_slice(body).map_err(|e| FrameError::Bad(e.to_string()))?;
    Command::try_from(r)
}

/// The `control_request` fuzz target's property: a body either is refused or parses into a
/// [`Command`] that goes on the wire and parses back the same.
///
/// # Panics
/// When a parsed command does not survive the round trip.
pub fn round_trip(body: &[u8]) {
    if let Ok(c) = parse_command(body) {
        let again = serde_json::to_vec(&Request::from(c)).unwrap_or_default();
        assert_eq!(parse_command(&again).ok(), Some(c), "{c:?}");
    }
}

/// Creates the socket (mode 0660), replacing a stale one.
///
/// # Errors
/// When the socket cannot be created.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A stale socket from a killed daemon is replaced.
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// True when `who` (as [`serve`] names a peer) is root.
#[must_use]
pub fn is_root(who: &str) -> bool {
    who.ends_with(", uid 0")
}

/// The most control-socket connections held at once; a new one beyond evicts the oldest of
/// the user holding the most (see [`crate::conn_limit`]).
pub const MAX_CONNECTIONS: usize = 32;

/// Accepts connections and answers each request through `daemon`, naming the peer by its
/// uid (`control socket, uid N`). A floor reset is refused unless the peer is root. At most
/// [`MAX_CONNECTIONS`] at once, each given [`ANSWER_WITHIN`] for its whole exchange.
pub async fn serve(listener: UnixListener, daemon: DaemonLink) {
    let slots = crate::conn_limit::Slots::new(MAX_CONNECTIONS, ANSWER_WITHIN);
    loop {
        let mut stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors or memory: wait instead of spinning.
                tracing::debug!(error = %e, "control socket: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let uid = stream.peer_cred().ok().map(|c| c.uid());
        let daemon = daemon.clone();
        slots.run(uid, async move {
            let who = uid.map_or_else(
                || "control socket".to_owned(),
                |uid| format!("control socket, uid {uid}"),
            );
            let reply = match read_frame(&mut stream).await {
                Ok(body) => answer(&daemon, &body, &who).await,
                Err(e) => error_reply(&e),
            };
            let _ = write_frame(&mut stream, reply.as_bytes()).await;
        });
    }
}

/// The reply to one request body from `who`, as JSON.
async fn answer(daemon: &DaemonLink, body: &[u8], who: &str) -> String {
    let command = match parse_command(body) {
        Ok(c) => c,
        Err(e) => return error_reply(&e),
    };
    if matches!(command, Command::ResetFloor { .. }) && !is_root(who) {
        return error_reply(&CommandError::NotRoot {
            who: who.to_owned(),
        });
    }
    match daemon.execute(command, who).await {
        Ok(reply) => serde_json::to_string(&reply)
            .unwrap_or_else(|e| error_reply(&format!("cannot encode the reply: {e}"))),
        Err(e) => error_reply(&e),
    }
}

/// `{"error": "..."}`.
fn error_reply(e: &dyn std::fmt::Display) -> String {
    serde_json::json!({ "error": e.to_string() }).to_string()
}

/// Why the daemon could not be asked. [`AskError::is_final`] tells a caller that retries
/// (`trusttime wait`) which ones waiting cannot fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AskError {
    /// No daemon listens there (no socket, or a stale one).
    #[error("cannot reach the trusttime daemon at {path}: {why} (is it running? see `trusttime daemon --help`)")]
    NotRunning {
        /// The socket.
        path: String,
        /// The system's words.
        why: String,
    },
    /// The socket's permissions keep this user out.
    #[error("permission denied on the control socket {path}{detail}: run this as root (e.g. `sudo trusttime ...`) or as a member of the socket's group")]
    Denied {
        /// The socket.
        path: String,
        /// Its mode, owner and group when known (` (mode 660, owner uid 0, group gid 0)`).
        detail: String,
    },
    /// The socket, or the process behind it, belongs to another user: whatever it says is
    /// not believed.
    #[error("refusing the control socket {path}: {why}, not root or this user (uid {me}); another user may have bound it first: check the permissions of its directory and the daemon's config")]
    Untrusted {
        /// The socket.
        path: String,
        /// Who owns it.
        why: String,
        /// This process's effective uid.
        me: u32,
    },
    /// The daemon accepted no connection (its queue is full) or did not answer in time.
    #[error("timed out: {0}")]
    TimedOut(String),
    /// The daemon answered with an error.
    #[error("the daemon says: {0}")]
    Daemon(String),
    /// Anything else (I/O on the connection, a malformed reply).
    #[error("{0}")]
    Other(String),
}

impl AskError {
    /// True when asking again cannot help (permissions, an untrusted socket).
    #[must_use]
    pub fn is_final(&self) -> bool {
        matches!(self, AskError::Denied { .. } | AskError::Untrusted { .. })
    }
}

/// How long the daemon has to answer.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Asks the daemon.
///
/// # Errors
/// [`AskError`]: not running, permission denied, an untrusted socket, a timeout, or the
/// daemon's own error.
pub async fn ask(path: &Path, command: &str) -> Result<serde_json::Value, AskError> {
    ask_request(path, &Request::simple(command)).await
}

/// Whether `uid` may serve the control socket to this process: root or this user.
fn trusted_uid(uid: u32, me: u32) -> bool {
    uid == 0 || uid == me
}

/// Sends a full request, after checking that the socket file and the process listening on
/// it belong to root or to this user (so a socket bound first by another local user in a
/// shared directory is never believed).
///
/// # Errors
/// As [`ask`].
pub async fn ask_request(path: &Path, request: &Request) -> Result<serde_json::Value, AskError> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display().to_string();
    let me = crate::platform::effective_uid();
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            // A directory on the way is closed to this user.
            AskError::Denied {
                path: shown.clone(),
                detail: " (a directory on its path is not open to you)".into(),
            }
        } else {
            AskError::NotRunning {
                path: shown.clone(),
                why: e.to_string(),
            }
        }
    })?;
    if !trusted_uid(meta.uid(), me) {
        return Err(AskError::Untrusted {
            path: shown,
            why: format!("the socket file belongs to uid {}", meta.uid()),
            me,
        });
    }
    let connect = tokio::time::timeout(ANSWER_WITHIN, UnixStream::connect(path)).await;
    let mut s = match connect {
        Err(_) => {
            return Err(AskError::TimedOut(format!(
                "the daemon at {shown} did not accept a connection within {} s",
                ANSWER_WITHIN.as_secs()
            )))
        }
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(match e.kind() {
                std::io::ErrorKind::PermissionDenied => AskError::Denied {
                    path: shown,
                    detail: format!(
                        " (mode {:o}, owner uid {}, group gid {})",
                        meta.mode() & 0o7777,
                        meta.uid(),
                        meta.gid()
                    ),
                },
                // A Unix socket whose backlog is full refuses with EAGAIN.
                std::io::ErrorKind::WouldBlock => AskError::TimedOut(format!(
                    "the daemon at {shown} is not accepting connections (its queue is full: busy or stuck)"
                )),
                _ => AskError::NotRunning {
                    path: shown,
                    why: e.to_string(),
                },
            });
        }
    };
    match s.peer_cred() {
        Ok(c) if trusted_uid(c.uid(), me) => {}
        Ok(c) => {
            return Err(AskError::Untrusted {
                path: shown,
                why: format!("the process serving it runs as uid {}", c.uid()),
                me,
            })
        }
        Err(e) => {
            return Err(AskError::Other(format!(
                "cannot tell who serves {shown}: {e}"
            )))
        }
    }
    let req = serde_json::to_vec(request).map_err(|e| AskError::Other(e.to_string()))?;
    let exchange = async {
        write_frame(&mut s, &req).await?;
        read_frame(&mut s).await
    };
    let body = tokio::time::timeout(ANSWER_WITHIN, exchange)
        .await
        .map_err(|_| {
            AskError::TimedOut(format!(
                "the daemon at {shown} did not answer within {} s",
                ANSWER_WITHIN.as_secs()
            ))
        })?
        .map_err(|e| AskError::Other(format!("talking to the daemon at {shown}: {e}")))?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| AskError::Other(format!("bad reply from the daemon: {e}")))?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        return Err(AskError::Daemon(e.to_owned()));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        let set = |unix_ms, uncertainty_ms, force| SetTime {
            unix_ms,
            uncertainty_ms,
            force,
        };
        let ok = |body: &[u8]| parse_command(body).unwrap();
        assert_eq!(ok(br#"{"command":"status"}"#), Command::Status);
        assert_eq!(ok(br#"{"command":"sources"}"#), Command::Sources);
        assert_eq!(
            ok(br#"{"command":"set","unix_ms":1,"force":true}"#),
            Command::Set(set(1, 0, true))
        );
        assert_eq!(
            ok(br#"{"command":"set","reset_floor":true}"#),
            Command::ResetFloor { then: None }
        );
        // What `trusttime set --reset-floor` has always sent: its uncertainty and force
        // beside the reset, without a time (ignored, as before).
        assert_eq!(
            ok(br#"{"command":"set","uncertainty_ms":60000,"force":false,"reset_floor":true}"#),
            Command::ResetFloor { then: None }
        );
        assert_eq!(
            ok(br#"{"command":"set","unix_ms":5,"uncertainty_ms":7,"reset_floor":true}"#),
            Command::ResetFloor {
                then: Some(set(5, 7, false))
            }
        );
        assert_eq!(
            ok(br#"{"command":"set","unix_ms":5,"reset_floor":false}"#),
            Command::Set(set(5, 0, false))
        );
        for bad in [
            &br#"{"command":"set"}"#[..],
            br#"{"command":"set","reset_floor":false}"#,
            br#"{"command":"status","x":1}"#,
            br#"{"command":"status","unix_ms":1}"#,
            br#"{"command":"sources","reset_floor":true}"#,
            br#"{"command":1}"#,
            br#"{}"#,
            br#"[]"#,
            b"\xff\x00",
        ] {
            assert!(
                parse_command(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(is_root("control socket, uid 0"));
        assert!(!is_root("control socket, uid 1000"));
        assert!(!is_root("control socket"));
    }

    /// An unknown command is an error that names the known ones, never another command.
    #[test]
    fn an_unknown_command_is_refused_with_the_known_ones() {
        for body in [
            &br#"{"command":"reboot"}"#[..],
            br#"{"command":"reset-floor"}"#,
            br#"{"command":"STATUS"}"#,
            br#"{"command":""}"#,
        ] {
            let e = parse_command(body).unwrap_err();
            assert!(matches!(e, FrameError::UnknownCommand(_)), "{e:?}");
            let words = e.to_string();
            assert!(words.starts_with("unknown command `"), "{words}");
            for known in ["status", "sources", "set", "reset_floor"] {
                assert!(words.contains(known), "{words}");
            }
        }
    }

    /// Every command goes on the wire and comes back the same.
    #[test]
    fn commands_round_trip_through_the_wire_format() {
        let t = SetTime {
            unix_ms: 1_800_000_000_123,
            uncertainty_ms: 60_000,
            force: true,
        };
        for c in [
            Command::Status,
            Command::Sources,
            Command::Set(t),
            Command::ResetFloor { then: None },
            Command::ResetFloor { then: Some(t) },
        ] {
            let body = serde_json::to_vec(&Request::from(c)).unwrap();
            assert_eq!(parse_command(&body).unwrap(), c);
        }
    }

    /// A daemon of nothing but the build floor, answering on a socket.
    fn daemon_link() -> (
        DaemonLink,
        tokio::sync::mpsc::Receiver<crate::daemon_api::CommandCall>,
    ) {
        let floor = trusttime_core::floor::build_time();
        let trust = trusttime_core::trust::TrustMachine::new(
            trusttime_core::trust::TrustConfig::new(floor),
        );
        let (_, status) = tokio::sync::watch::channel(std::sync::Arc::new(
            crate::daemon_api::Snapshot::new(trust, floor),
        ));
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        (
            DaemonLink::new(status, tx, std::sync::Arc::new(crate::clock::SystemClock)),
            rx,
        )
    }

    /// On the socket: an unknown command and a floor reset by a user other than root are
    /// error replies, and neither reaches the daemon; `status` is answered.
    #[tokio::test]
    async fn refusals_on_the_socket_never_reach_the_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let (link, mut calls) = daemon_link();
        crate::task::spawn(serve(bind(&path).unwrap(), link.clone()));
        let v = ask(&path, "status").await.unwrap();
        assert_eq!(v["state"], "unknown");
        let e = ask(&path, "reboot").await.unwrap_err();
        assert!(
            matches!(&e, AskError::Daemon(w) if w.contains("unknown command `reboot`")),
            "{e}"
        );
        let reply = answer(
            &link,
            br#"{"command":"set","reset_floor":true}"#,
            "control socket, uid 1000",
        )
        .await;
        let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(
            v["error"],
            "resetting the floor is for root only (control socket, uid 1000)"
        );
        assert!(calls.try_recv().is_err(), "nothing reached the daemon");
    }

    #[test]
    fn only_root_or_this_user_is_believed() {
        assert!(trusted_uid(0, 1000));
        assert!(trusted_uid(1000, 1000));
        assert!(!trusted_uid(1001, 1000));
        assert!(trusted_uid(0, 0));
        assert!(!trusted_uid(65534, 0));
    }

    /// A socket file owned by another user is refused before anything is sent.
    #[tokio::test]
    async fn a_socket_owned_by_another_user_is_not_believed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let listener = UnixListener::bind(&path).unwrap();
        crate::task::spawn(serve(listener, daemon_link().0));
        assert!(ask(&path, "status").await.is_ok());
        let me = crate::platform::effective_uid();
        if me != 0 {
            return; // only root can give the file away; the peer check is tested end to end
        }
        std::os::unix::fs::lchown(&path, Some(65534), None).unwrap();
        let e = ask(&path, "status").await.unwrap_err();
        assert!(e.is_final(), "{e}");
        assert!(e.to_string().contains("uid 65534"), "{e}");
    }

    #[tokio::test]
    async fn frames_round_trip_and_oversize_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        write_frame(&mut a, b"{}").await.unwrap();
        assert_eq!(read_frame(&mut b).await.unwrap(), b"{}");
        a.write_u32(10_000_000).await.unwrap();
        assert!(matches!(
            read_frame(&mut b).await,
            Err(FrameError::TooLarge(10_000_000))
        ));
        assert!(matches!(
            write_frame(&mut a, &vec![b' '; MAX_MESSAGE + 1]).await,
            Err(FrameError::TooLarge(_))
        ));
    }
}

/// Seeded random byte streams through the framing and request parser (the
/// `control_request` fuzz target's property, on stable).
#[cfg(test)]
mod fuzz_like {
    use super::*;

    #[tokio::test]
    async fn random_streams_never_panic() {
        let mut seed = 0xdead_beef_cafe_f00du64;
        for _ in 0..2000 {
            let len = (seed % 64) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    if seed % 5 == 0 {
                        0
                    } else {
                        seed as u8
                    }
                })
                .collect();
            round_trip(&data);
            let mut r = &data[..];
            while let Ok(frame) = read_frame(&mut r).await {
                assert!(frame.len() <= MAX_MESSAGE);
                round_trip(&frame);
            }
        }
    }
}
