//! The control socket: a Unix stream socket (mode 0660) speaking length-prefixed JSON.
//!
//! Each message is a 4-byte big-endian length and that many bytes of JSON, at most
//! [`MAX_MESSAGE`]. Requests: `{"command": "status"}`, `{"command": "sources"}`. Replies are a
//! JSON object; errors are `{"error": "..."}`.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// Largest message either side accepts.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// A request.
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

/// Parses a request body.
///
/// # Errors
/// [`FrameError::Bad`] for anything but a known command.
pub fn parse_request(body: &[u8]) -> Result<Request, FrameError> {
    let r: Request = serde_json::from_slice(body).map_err(|e| FrameError::Bad(e.to_string()))?;
    match r.command.as_str() {
        "status" | "sources" => Ok(r),
        "set" if r.unix_ms.is_some() || r.reset_floor == Some(true) => Ok(r),
        "set" => Err(FrameError::Bad("`set` needs `unix_ms`".into())),
        other => Err(FrameError::Bad(format!(
            "unknown command `{other}` (status, sources, set)"
        ))),
    }
}

/// Serves requests with `answer` until the task is dropped.
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

/// True when `who` (as passed to the `answer` of [`serve`]) is root.
#[must_use]
pub fn is_root(who: &str) -> bool {
    who.ends_with(", uid 0")
}

/// Accepts connections and answers each request with `answer(request, who)`, where `who`
/// names the peer (its uid).
pub async fn serve<F>(listener: UnixListener, answer: F)
where
    F: Fn(&Request, &str) -> serde_json::Value + Send + Sync + Clone + 'static,
{
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let answer = answer.clone();
        tokio::spawn(async move {
            let who = stream.peer_cred().map_or_else(
                |_| "control socket".to_owned(),
                |c| format!("control socket, uid {}", c.uid()),
            );
            let reply =
                match tokio::time::timeout(Duration::from_secs(5), read_frame(&mut stream)).await {
                    Ok(Ok(body)) => match parse_request(&body) {
                        Ok(r) => answer(&r, &who),
                        Err(e) => serde_json::json!({ "error": e.to_string() }),
                    },
                    Ok(Err(e)) => serde_json::json!({ "error": e.to_string() }),
                    Err(_) => return,
                };
            let _ = write_frame(&mut stream, reply.to_string().as_bytes()).await;
        });
    }
}

/// Asks the daemon.
///
/// # Errors
/// A message that says whether the daemon is not running or answered badly.
pub async fn ask(path: &Path, command: &str) -> Result<serde_json::Value, String> {
    ask_request(path, &Request::simple(command)).await
}

/// Sends a full request.
///
/// # Errors
/// As [`ask`].
pub async fn ask_request(path: &Path, request: &Request) -> Result<serde_json::Value, String> {
    let mut s = UnixStream::connect(path)
        .await
        .map_err(|e| format!("cannot reach the trusttime daemon at {}: {e} (is it running? see `trusttime daemon --help`)", path.display()))?;
    let req = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    write_frame(&mut s, &req).await.map_err(|e| e.to_string())?;
    let body = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut s))
        .await
        .map_err(|_| "the daemon did not answer within 5 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("bad reply: {e}"))?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        return Err(format!("the daemon says: {e}"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        assert!(parse_request(br#"{"command":"status"}"#).is_ok());
        assert!(parse_request(br#"{"command":"reboot"}"#).is_err());
        assert!(parse_request(br#"{"command":"set"}"#).is_err());
        assert!(parse_request(br#"{"command":"set","unix_ms":1,"force":true}"#).is_ok());
        assert!(parse_request(br#"{"command":"status","x":1}"#).is_err());
        assert!(parse_request(br#"{"command":"set","reset_floor":true}"#).is_ok());
        assert!(parse_request(br#"{"command":"set","reset_floor":false}"#).is_err());
        assert!(is_root("control socket, uid 0"));
        assert!(!is_root("control socket, uid 1000"));
        assert!(!is_root("control socket"));
        assert!(parse_request(b"\xff\x00").is_err());
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
            let _ = parse_request(&data);
            let mut r = &data[..];
            while let Ok(frame) = read_frame(&mut r).await {
                assert!(frame.len() <= MAX_MESSAGE);
                let _ = parse_request(&frame);
            }
        }
    }
}
