//! The vocabulary of sources, below every driver that uses it: server specifications as
//! given on the command line or in the config (`HOST[:PORT]`, Roughtime `HOST:PORT=KEY`,
//! HTTPS Date URLs), the kinds of source and the verdicts on them.
//!
//! A leaf module: it imports nothing from this crate, so `sync`, the `transport` folder, the
//! config and the daemon can all use it without importing one another.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use trusttime_core::roughtime::Version;

/// The NTP port.
pub const NTP_PORT: u16 = 123;
/// The NTS-KE port (RFC 8915).
pub const NTS_KE_PORT: u16 = 4460;

/// A server as given on the command line or in the config: `HOST`, `HOST:PORT`, `[V6]:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    /// DNS name or address.
    pub host: String,
    /// UDP port.
    pub port: u16,
}

/// A server specification that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid server `{input}`: {why} (expected HOST, HOST:PORT or [IPV6]:PORT)")]
pub struct BadServerSpec {
    input: String,
    why: &'static str,
}

impl FromStr for ServerSpec {
    type Err = BadServerSpec;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServerSpec::parse_with_default_port(s, NTP_PORT)
    }
}

impl ServerSpec {
    /// Parses `HOST`, `HOST:PORT` or `[IPV6]:PORT`, with `default_port` when none is given.
    ///
    /// # Errors
    /// [`BadServerSpec`] says what is wrong.
    pub fn parse_with_default_port(s: &str, default_port: u16) -> Result<Self, BadServerSpec> {
        let bad = |why| BadServerSpec {
            input: s.to_owned(),
            why,
        };
        let s = s.trim();
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.len() > 253 + 8 {
            return Err(bad("too long"));
        }
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("port must be 1..=65535"))
        };
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or_else(|| bad("missing `]`"))?;
            match after {
                "" => (h, default_port),
                a => (
                    h,
                    port(
                        a.strip_prefix(':')
                            .ok_or_else(|| bad("expected `:` after `]`"))?,
                    )?,
                ),
            }
        } else if s.matches(':').count() > 1 {
            (s, default_port) // a bare IPv6 address
        } else if let Some((h, p)) = s.split_once(':') {
            (h, port(p)?)
        } else {
            (s, default_port)
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        // A DNS name is at most 253 characters: with brackets and a port its display still fits
        // the input limit above, so what is shown parses again.
        if host.len() > 253 {
            return Err(bad("too long"));
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        {
            return Err(bad(
                "host has characters not allowed in a DNS name or address",
            ));
        }
        Ok(ServerSpec {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for ServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == NTP_PORT {
            f.write_str(&host)
        } else {
            write!(f, "{host}:{}", self.port)
        }
    }
}

/// The NTP Pool names for a zone, the way the pool asks vendors to use them: `0.ZONE` to
/// `3.ZONE`, by DNS name, one server from each.
#[must_use]
pub fn pool_servers(zone: &str, count: usize) -> Vec<ServerSpec> {
    (0..count.min(4))
        .map(|i| ServerSpec {
            host: format!("{i}.{zone}"),
            port: NTP_PORT,
        })
        .collect()
}

/// What kind of source, and so how much its word counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// Plain NTP: unauthenticated, anyone on the path can shift it.
    Ntp,
    /// NTP with Network Time Security (RFC 8915): authenticated.
    Nts,
    /// Roughtime: signed by the server's long-term key.
    Roughtime,
}

impl SourceKind {
    /// The name used in `--json` and the config.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            SourceKind::Ntp => "ntp",
            SourceKind::Nts => "nts",
            SourceKind::Roughtime => "roughtime",
        }
    }
    /// True for kinds whose replies are authenticated.
    #[must_use]
    pub const fn is_authenticated(self) -> bool {
        !matches!(self, SourceKind::Ntp)
    }
}

/// The verdict on one source, as `--json` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Its interval overlaps the majority's.
    Agreed,
    /// It answered with a time the majority (or the floor) contradicts.
    Falseticker,
    /// It answered, but no majority formed to confirm or refute it.
    Unconfirmed,
    /// No reply (lost, unreachable, DNS failure, or not needed once the majority decided).
    NoReply,
    /// It sent a Kiss-o'-Death.
    KissOfDeath,
    /// Its reply was malformed or unusable.
    Invalid,
    /// The same server as another source of the same kind (same address): counted once.
    Duplicate,
}

impl Verdict {
    /// The name used in `--json` output.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Agreed => "agreed",
            Verdict::Falseticker => "falseticker",
            Verdict::Unconfirmed => "unconfirmed",
            Verdict::NoReply => "no_reply",
            Verdict::KissOfDeath => "kiss_of_death",
            Verdict::Invalid => "invalid",
            Verdict::Duplicate => "duplicate",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Roughtime server and its long-term public key: `HOST:PORT=KEY`, the key in hex (64
/// digits) or base64 (44 characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoughtimeSpec {
    /// Where it listens (UDP).
    pub server: ServerSpec,
    /// Its Ed25519 long-term public key.
    pub key: [u8; 32],
    /// The wire version spoken.
    pub version: Version,
}

/// A Roughtime specification that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid Roughtime server `{input}`: {why} (expected HOST:PORT=KEY, the key in hex or base64)"
)]
pub struct BadRoughtimeSpec {
    input: String,
    why: String,
}

/// The Roughtime wire format by name: `draft` or `google`.
///
/// # Errors
/// For any other name.
pub fn parse_protocol(s: &str) -> Result<Version, String> {
    match s {
        "draft" => Ok(Version::Draft),
        "google" => Ok(Version::Google),
        other => Err(format!(
            "unknown Roughtime protocol `{other}` (expected draft or google)"
        )),
    }
}

/// Decodes a 32-byte key from hex or base64.
///
/// # Errors
/// When it is neither.
pub fn parse_key(s: &str) -> Result<[u8; 32], String> {
    let s = s.trim();
    let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string()))
            .collect::<Result<Vec<u8>, String>>()?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| format!("the key is neither 64 hex digits nor base64 ({e})"))?
    };
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("the key has {} bytes; an Ed25519 key has 32", bytes.len()))
}

impl FromStr for RoughtimeSpec {
    type Err = BadRoughtimeSpec;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: String| BadRoughtimeSpec {
            input: s.to_owned(),
            why,
        };
        let (addr, key) = s
            .split_once('=')
            .ok_or_else(|| bad("missing `=KEY`".into()))?;
        let key = parse_key(key).map_err(bad)?;
        let server =
            ServerSpec::parse_with_default_port(addr, 2002).map_err(|e| bad(e.to_string()))?;
        Ok(RoughtimeSpec {
            server,
            key,
            version: Version::Draft,
        })
    }
}

/// An `https://HOST[:PORT]/PATH` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpsDateSpec {
    /// As given.
    pub url: String,
    /// Host name (checked against the certificate).
    pub host: String,
    /// TCP port (443 by default).
    pub port: u16,
    /// Path and query, `/` by default.
    pub path: String,
}

impl std::str::FromStr for HttpsDateSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!("invalid HTTPS Date URL `{s}`: {why} (expected https://HOST[:PORT]/PATH)")
        };
        let rest = s
            .strip_prefix("https://")
            .ok_or_else(|| bad("must start with https://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if path.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return Err(bad("the path has spaces or control characters"));
        }
        let spec =
            ServerSpec::parse_with_default_port(authority, 443).map_err(|e| bad(&e.to_string()))?;
        Ok(HttpsDateSpec {
            url: s.to_owned(),
            host: spec.host,
            port: spec.port,
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Roughtime specs (see also `crate::transport::roughtime`).

    #[test]
    fn specs_parse_with_hex_and_base64_keys() {
        let hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let s: RoughtimeSpec = format!("127.0.0.1:2002={hex}").parse().unwrap();
        assert_eq!(s.server.port, 2002);
        assert_eq!(s.key[0], 0x01);
        let b64 = base64::engine::general_purpose::STANDARD.encode(s.key);
        assert!(
            b64.ends_with('='),
            "padding must not be mistaken for the separator"
        );
        let t: RoughtimeSpec = format!("localhost={b64}").parse().unwrap();
        assert_eq!(t.key, s.key);
        assert_eq!(t.server.port, 2002);
        for bad in [
            "127.0.0.1:2002",
            "h:1=abc",
            "h:1=",
            "=00",
            &format!("h:0={hex}"),
        ] {
            assert!(bad.parse::<RoughtimeSpec>().is_err(), "{bad:?}");
        }
    }
}
