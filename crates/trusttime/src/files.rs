//! Every file trusttime reads or writes goes through this module.
//!
//! - [`read`] opens without blocking, refuses anything but a regular file (a FIFO, `/dev/zero`,
//!   a directory, a symlink to one of them) and caps the size, so a careless path or a hostile
//!   neighbour can neither stall the process nor make it read gigabytes.
//! - [`write_atomic`] refuses a symlink in place of the file, writes a fresh temporary file
//!   created with `O_EXCL | O_NOFOLLOW` next to it, syncs it, renames it over the file and
//!   syncs the directory: a crash leaves the old file or the new one, never half of one, and a
//!   symlink planted at a predictable temporary name cannot redirect the write.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest config file.
pub const MAX_CONFIG: u64 = 1 << 20;
/// Largest PEM file (certificates, keys, CA bundles; a system bundle is about 220 KiB).
pub const MAX_PEM: u64 = 4 << 20;

/// Numbers the temporary files of this process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Whether the last component of a path may be a symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    /// Follow a symlink (to a regular file): operator files such as the config or a CA
    /// bundle, which configuration management often links.
    Follow,
    /// Refuse a symlink: files the daemon itself owns (state, pairing hash).
    Refuse,
}

/// What kind of file this is, in words (for "not a regular file" errors).
fn kind(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symlink"
    } else {
        "not a regular file"
    }
}

/// Reads a whole regular file of at most `max` bytes.
///
/// The file is opened with `O_NONBLOCK` (a FIFO does not stall the open) and checked with
/// `fstat` on the open descriptor (no race between check and read); with [`Links::Refuse`]
/// the open uses `O_NOFOLLOW`.
///
/// # Errors
/// The open's error; `InvalidInput` for a file that is not regular (naming what it is) or
/// larger than `max` (also if it grows past `max` while being read).
pub fn read(path: &Path, max: u64, links: Links) -> io::Result<Vec<u8>> {
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    if links == Links::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| {
            if links == Links::Refuse && e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "is a symlink, which is refused here",
                )
            } else {
                e
            }
        })?;
    let meta = f.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("is {}, not a regular file", kind(meta.file_type())),
        ));
    }
    if meta.len() > max {
        return Err(too_large(max));
    }
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    f.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(too_large(max));
    }
    Ok(buf)
}

/// Reads a regular file as UTF-8 text (see [`read`]).
///
/// # Errors
/// As [`read`]; `InvalidData` when the file is not UTF-8.
pub fn read_to_string(path: &Path, max: u64, links: Links) -> io::Result<String> {
    String::from_utf8(read(path, max, links)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "is not UTF-8 text"))
}

fn too_large(max: u64) -> io::Error {
    let human = if max >= 1 << 20 {
        format!("{} MiB", max >> 20)
    } else if max >= 1 << 10 {
        format!("{} KiB", max >> 10)
    } else {
        format!("{max} bytes")
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is larger than {human}, the limit for this file"),
    )
}

/// Writes `bytes` to `path` atomically with file mode `mode` (e.g. `0o600`).
///
/// Refuses when `path` is a symlink or anything but a regular file. The temporary file
/// (`.NAME.tmp-PID-N` beside it) is created with `O_CREAT | O_EXCL | O_NOFOLLOW`, written,
/// `fsync`ed, renamed over `path`, and the directory is `fsync`ed. On failure the temporary
/// file is removed and `path` is untouched. The parent directory must exist.
///
/// # Errors
/// The first failing step's error; `InvalidInput` for a symlink or non-regular target.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "is a symlink: refused (remove it; this file is written by trusttime only)",
            ))
        }
        Ok(m) if !m.file_type().is_file() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("is {}, not a regular file: refused", kind(m.file_type())),
            ))
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        // Remove only what we created: a pre-existing entry (EEXIST) is not ours.
        if e.kind() != io::ErrorKind::AlreadyExists {
            let _ = std::fs::remove_file(&tmp);
        }
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(&dir).and_then(|d| d.sync_all())
}

/// The PEM certificates of a file (read through [`read`]).
///
/// # Errors
/// A message (without the path) when it cannot be read, does not parse or holds no certificate.
#[cfg(feature = "tls")]
pub fn pem_certificates(
    path: &Path,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    let bytes = read(path, MAX_PEM, Links::Follow).map_err(|e| format!("cannot read it: {e}"))?;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

/// The PEM private key of a file (read through [`read`]).
///
/// # Errors
/// A message (without the path) when it cannot be read or holds no private key.
#[cfg(feature = "tls")]
pub fn pem_private_key(path: &Path) -> Result<rustls_pki_types::PrivateKeyDer<'static>, String> {
    use rustls_pki_types::pem::PemObject;
    let bytes = read(path, MAX_PEM, Links::Follow).map_err(|e| format!("cannot read it: {e}"))?;
    rustls_pki_types::PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| format!("no usable PEM private key: {e}"))
}

/// The PEM certificates of a file, as DER (trust anchors for NTS-KE).
///
/// # Errors
/// When the file cannot be read or holds no certificate.
#[cfg(feature = "tls")]
pub fn read_pem_certificates(path: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    let certs = pem_certificates(path)?;
    Ok(certs.into_iter().map(|c| c.to_vec()).collect())
}

/// Without TLS there is no NTS: trust anchors cannot be used.
///
/// # Errors
/// Always.
#[cfg(not(feature = "tls"))]
pub fn read_pem_certificates(_: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    Err("this build has no TLS (feature `tls`), which NTS needs".into())
}

/// Lower-case hex (checksums, hashes).
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mkfifo(path: &Path) {
        let st = std::process::Command::new("mkfifo").arg(path).status();
        assert!(st.is_ok_and(|s| s.success()), "mkfifo");
    }

    #[test]
    fn reads_regular_files_and_refuses_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        std::fs::write(&ok, b"hello").unwrap();
        assert_eq!(read(&ok, 5, Links::Refuse).unwrap(), b"hello");
        // Size cap, exact.
        let e = read(&ok, 4, Links::Follow).unwrap_err();
        assert!(e.to_string().contains("larger than 4 bytes"), "{e}");
        // Endless or blocking inputs come back at once with what they are.
        let e = read(Path::new("/dev/zero"), 1 << 20, Links::Follow).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let e = read(&fifo, 1 << 20, Links::Follow).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        let e = read(dir.path(), 1 << 20, Links::Follow).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        // A symlink to /dev/zero is judged by its target; a symlink where none is allowed is
        // refused outright, even to a regular file.
        let to_zero = dir.path().join("to-zero");
        symlink("/dev/zero", &to_zero).unwrap();
        let e = read(&to_zero, 1 << 20, Links::Follow).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let to_ok = dir.path().join("to-ok");
        symlink(&ok, &to_ok).unwrap();
        assert_eq!(read(&to_ok, 5, Links::Follow).unwrap(), b"hello");
        let e = read(&to_ok, 5, Links::Refuse).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(read_to_string(&ok, 5, Links::Follow).is_ok());
        std::fs::write(&ok, b"\xff\xfe").unwrap();
        assert!(read_to_string(&ok, 5, Links::Follow).is_err());
    }

    #[test]
    fn writes_atomically_and_refuses_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("state");
        write_atomic(&target, b"one", 0o600).unwrap();
        write_atomic(&target, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"two");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state"]);

        // The file itself replaced by a symlink to a victim: refused, victim untouched.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let link = dir.path().join("linked");
        symlink(&victim, &link).unwrap();
        let e = write_atomic(&link, b"evil", 0o600).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        // A FIFO in its place: refused without blocking.
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        assert!(write_atomic(&fifo, b"x", 0o600).is_err());
    }

    #[test]
    fn a_symlink_planted_at_the_temporary_name_redirects_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let target = dir.path().join("state");
        // Plant symlinks at every temporary name this process would use next (and the old
        // fixed `state.tmp` name).
        let next = COUNTER.load(Ordering::Relaxed);
        for n in next..next + 64 {
            let tmp = dir
                .path()
                .join(format!(".state.tmp-{}-{n}", std::process::id()));
            symlink(&victim, tmp).unwrap();
        }
        symlink(&victim, dir.path().join("state.tmp")).unwrap();
        let mut wrote = false;
        for _ in 0..70 {
            if write_atomic(&target, b"new", 0o600).is_ok() {
                wrote = true;
                break;
            }
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(
            wrote,
            "a free temporary name is used once the planted ones are passed"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }
}
