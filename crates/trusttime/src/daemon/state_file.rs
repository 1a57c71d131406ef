//! Persisted state: the last trusted time, the drift estimate, per-source poll state.
//!
//! One file, `state`, in the state directory. Format: a header line with the version, a line
//! with the SHA-256 of the body, then the JSON body. Written atomically (temp file, fsync,
//! rename, fsync of the directory), so a crash leaves the old file or the new one, never half
//! of one. A file that is truncated, corrupt, or of another version is reported and ignored:
//! never trusted, never a crash.

use std::fs;
use std::path::Path;

use crate::files;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The file name inside the state directory.
pub const FILE: &str = "state";
const HEADER: &str = "trusttime-state 1";
/// Files larger than this are not read.
pub const MAX_LEN: usize = 256 * 1024;

/// What survives a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The system clock when saved (Unix ns).
    pub system_ns: i64,
    /// The trusted interval when saved (Unix ns).
    pub earliest_ns: i64,
    /// The trusted interval when saved (Unix ns).
    pub latest_ns: i64,
    /// Where it came from (`ntp`, `authenticated`, ...).
    pub provenance: String,
    /// Frequency estimate of the local clock, ppb.
    pub freq_ppb: Option<i64>,
    /// True time when the RTC was last written (Unix ns).
    pub rtc_set_ns: Option<i64>,
    /// The floor (Unix ns): the build time, raised only by authenticated time. Absent in
    /// files from older versions.
    #[serde(default)]
    pub floor_ns: Option<i64>,
    /// `/proc/sys/kernel/random/boot_id` when saved: tells a restart from a reboot.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// The boot clock (time since boot, ns) when saved.
    #[serde(default)]
    pub boot_ns: Option<i64>,
    /// Per source.
    pub sources: Vec<SourceState>,
}

/// Per-source state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceState {
    /// As configured.
    pub address: String,
    /// Poll exponent.
    pub poll: i8,
    /// Kiss-o'-Death code that stopped it, if any.
    pub kod: Option<String>,
}

/// Why a state file was not used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The content is not a valid state file.
    #[error("state file is corrupt ({0}); ignored")]
    Corrupt(&'static str),
}

/// Encodes a state file.
#[must_use]
pub fn encode(s: &State) -> Vec<u8> {
    let body = serde_json::to_vec(s).unwrap_or_default();
    let sum = Sha256::digest(&body);
    let mut out = format!("{HEADER}\nsha256 {}\n", hex(&sum)).into_bytes();
    out.extend_from_slice(&body);
    out
}

pub(crate) use crate::files::hex;

/// Decodes a state file.
///
/// # Errors
/// [`StateError::Corrupt`] for anything but an intact file of this version.
pub fn decode(bytes: &[u8]) -> Result<State, StateError> {
    if bytes.len() > MAX_LEN {
        return Err(StateError::Corrupt("too large"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| StateError::Corrupt("not UTF-8"))?;
    let (header, rest) = text
        .split_once('\n')
        .ok_or(StateError::Corrupt("truncated header"))?;
    if header != HEADER {
        return Err(StateError::Corrupt("unknown version"));
    }
    let (sum_line, body) = rest
        .split_once('\n')
        .ok_or(StateError::Corrupt("truncated checksum"))?;
    let sum = sum_line
        .strip_prefix("sha256 ")
        .ok_or(StateError::Corrupt("no checksum"))?;
    if sum != hex(&Sha256::digest(body.as_bytes())) {
        return Err(StateError::Corrupt("checksum mismatch"));
    }
    let s: State = serde_json::from_str(body).map_err(|_| StateError::Corrupt("bad body"))?;
    if s.earliest_ns > s.latest_ns {
        return Err(StateError::Corrupt("interval reversed"));
    }
    Ok(s)
}

/// Writes `dir/state` atomically (see [`crate::files::write_atomic`]: a symlink in its place
/// or at a temporary name is refused, never followed).
///
/// # Errors
/// [`StateError::Io`].
pub fn save(dir: &Path, s: &State) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: dir.join(FILE).display().to_string(),
        source,
    };
    fs::create_dir_all(dir).map_err(io)?;
    files::write_atomic(&dir.join(FILE), &encode(s), 0o600).map_err(io)
}

/// Reads `dir/state`: `Ok(None)` when there is none. A symlink, FIFO, device or a file over
/// [`MAX_LEN`] is refused (see [`crate::files::read`]), never read.
///
/// # Errors
/// [`StateError`] when it exists but cannot be read or is corrupt.
pub fn load(dir: &Path) -> Result<Option<State>, StateError> {
    let path = dir.join(FILE);
    match files::read(&path, MAX_LEN as u64, files::Links::Refuse) {
        Ok(b) => decode(&b).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateError::Io {
            path: path.display().to_string(),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        State {
            system_ns: 1_790_000_000_000_000_000,
            earliest_ns: 1_790_000_600_000_000_000,
            latest_ns: 1_790_000_600_002_000_000,
            provenance: "ntp".into(),
            freq_ppb: Some(-12_000),
            rtc_set_ns: None,
            floor_ns: None,
            boot_id: None,
            boot_ns: None,
            sources: vec![SourceState {
                address: "127.0.0.1:123".into(),
                poll: 6,
                kod: None,
            }],
        }
    }

    #[test]
    fn round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        save(dir.path(), &sample()).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(sample()));
        assert!(!dir.path().join("state.tmp").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// A state file replaced by a FIFO, a symlink to /dev/zero, or a symlink to a real state
    /// file elsewhere is refused at once (no stall, no unbounded read); saving over a symlink
    /// is refused and leaves its target untouched.
    #[test]
    fn hostile_state_files_are_refused() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let st = std::process::Command::new("mkfifo").arg(&path).status();
        assert!(st.is_ok_and(|s| s.success()));
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("FIFO"), "{e}");
        std::fs::remove_file(&path).unwrap();
        symlink("/dev/zero", &path).unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("symlink"), "{e}");
        let e = save(dir.path(), &sample()).unwrap_err().to_string();
        assert!(e.contains("symlink"), "{e}");
        std::fs::remove_file(&path).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        save(elsewhere.path(), &sample()).unwrap();
        let before = std::fs::read(elsewhere.path().join(FILE)).unwrap();
        symlink(elsewhere.path().join(FILE), &path).unwrap();
        assert!(load(dir.path()).is_err());
        let mut other = sample();
        other.provenance = "manual".into();
        assert!(save(dir.path(), &other).is_err());
        assert_eq!(std::fs::read(elsewhere.path().join(FILE)).unwrap(), before);
        // Too large: refused before decoding.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, vec![b'x'; MAX_LEN + 1]).unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn truncated_at_every_byte_is_rejected_cleanly() {
        let full = encode(&sample());
        for n in 0..full.len() {
            assert!(
                decode(&full[..n]).is_err(),
                "accepted a file cut at {n} bytes"
            );
        }
        assert!(decode(&full).is_ok());
    }

    #[test]
    fn any_flipped_byte_is_rejected() {
        let full = encode(&sample());
        for i in 0..full.len() {
            let mut b = full.clone();
            b[i] ^= 0x20;
            assert!(decode(&b).is_err(), "accepted a flip at byte {i}");
        }
    }
}
