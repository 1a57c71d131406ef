//! Network Time Security (RFC 8915), sans-IO.
//!
//! NTS has two parts:
//! 1. **NTS-KE**, a short TLS 1.3 exchange (ALPN [`KE_ALPN`], TCP port [`KE_DEFAULT_PORT`]):
//!    the client sends [`encode_ke_request`], the server answers with records that
//!    [`parse_ke_response`] reads (the AEAD algorithm, up to eight cookies, and optionally
//!    another NTP server or port). Both sides then derive two keys from the TLS session with
//!    the exporter label [`EXPORTER_LABEL`] and [`exporter_context`]. The TLS part belongs to
//!    the driver; this module only encodes and parses the records.
//! 2. **Authenticated NTP**: each request carries a fresh unique identifier, one cookie,
//!    placeholders asking for replacement cookies, and an authenticator: AES-SIV-CMAC-256 over
//!    the whole packet. [`NtsSession::seal_request`] adds those extension fields to the 48-byte
//!    header that [`crate::ntp::NtpClient`] wrote; [`NtsSession::open_reply`] checks a reply's
//!    identifier and authenticator and keeps the new cookies. Only a reply that opened may be
//!    given to the NTP client; anything else is dropped and counted.
//!
//! ```
//! use trusttime_core::nts::{encode_ke_request, parse_ke_response, KeError};
//! let mut buf = [0u8; 64];
//! let n = encode_ke_request(&mut buf).unwrap();
//! assert_eq!(n, 16);
//! // An NTS-KE response arrives over TLS in pieces: parse what has arrived so far.
//! assert_eq!(parse_ke_response(&buf[..3]).unwrap_err(), KeError::Incomplete);
//! ```

use core::fmt;

use aes_siv::aead::{AeadInPlace, KeyInit};
use aes_siv::{Aes128SivAead, Nonce, Tag};

use crate::ntp::packet::{write_extension_field, ExtensionFields, KissCode, NtpPacket, HEADER_LEN};

/// The ALPN protocol name of NTS-KE.
pub const KE_ALPN: &[u8] = b"ntske/1";
/// The default TCP port of NTS-KE.
pub const KE_DEFAULT_PORT: u16 = 4460;
/// The TLS exporter label for the NTS keys.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-network-time-security";
/// NTS next protocol: NTPv4.
pub const NEXT_PROTOCOL_NTPV4: u16 = 0;
/// The AEAD algorithm this client speaks: AEAD_AES_SIV_CMAC_256 (RFC 5297), the one NTS
/// servers must support.
pub const AEAD_AES_SIV_CMAC_256: u16 = 15;
/// Key length of AEAD_AES_SIV_CMAC_256.
pub const KEY_LEN: usize = 32;
/// The longest cookie kept. Servers' cookies are around 100 bytes.
pub const MAX_COOKIE_LEN: usize = 256;
/// Cookies kept at most (and asked for): one per request, eight in hand.
pub const MAX_COOKIES: usize = 8;
/// The longest server name an NTS-KE server may send.
pub const MAX_SERVER_NAME_LEN: usize = 255;

/// NTS-KE record types (RFC 8915 §4).
pub mod record {
    /// End of Message.
    pub const END: u16 = 0;
    /// NTS Next Protocol Negotiation.
    pub const NEXT_PROTOCOL: u16 = 1;
    /// Error.
    pub const ERROR: u16 = 2;
    /// Warning.
    pub const WARNING: u16 = 3;
    /// AEAD Algorithm Negotiation.
    pub const AEAD: u16 = 4;
    /// New Cookie for NTPv4.
    pub const COOKIE: u16 = 5;
    /// NTPv4 Server Negotiation.
    pub const SERVER: u16 = 6;
    /// NTPv4 Port Negotiation.
    pub const PORT: u16 = 7;
}

/// NTS extension field types for NTPv4 (RFC 8915 §5.7).
pub mod field {
    /// Unique Identifier.
    pub const UNIQUE_ID: u16 = 0x0104;
    /// NTS Cookie.
    pub const COOKIE: u16 = 0x0204;
    /// NTS Cookie Placeholder.
    pub const COOKIE_PLACEHOLDER: u16 = 0x0304;
    /// NTS Authenticator and Encrypted Extension Fields.
    pub const AUTHENTICATOR: u16 = 0x0404;
}

/// The longest NTS reply accepted (a UDP payload); longer than plain NTP's limit, since eight
/// cookies of the largest size do not fit in 1024 bytes. After [`NtsSession::open_reply`],
/// give the NTP client the 48-byte header alone.
pub const MAX_REPLY_LEN: usize = 65_507;

/// Length of the unique identifier this client sends.
pub const UNIQUE_ID_LEN: usize = 32;
/// Length of the AES-SIV nonce this client sends.
pub const NONCE_LEN: usize = 16;
/// Length of the AES-SIV tag (the synthetic IV).
pub const TAG_LEN: usize = 16;
/// The largest reply plaintext this client decrypts (eight cookies of the largest size fit).
const MAX_PLAINTEXT: usize = MAX_COOKIES * (4 + MAX_COOKIE_LEN);

const CRITICAL: u16 = 0x8000;

/// Which key the TLS exporter derives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server: the client seals requests with it.
    ClientToServer,
    /// Server to client: the client opens replies with it.
    ServerToClient,
}

/// The exporter context for a key (RFC 8915 §5.1): next protocol, AEAD algorithm, direction.
#[must_use]
pub const fn exporter_context(direction: Direction) -> [u8; 5] {
    let p = NEXT_PROTOCOL_NTPV4.to_be_bytes();
    let a = AEAD_AES_SIV_CMAC_256.to_be_bytes();
    let d = match direction {
        Direction::ClientToServer => 0,
        Direction::ServerToClient => 1,
    };
    [p[0], p[1], a[0], a[1], d]
}

/// What went wrong with NTS-KE records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeError {
    /// The response has not ended yet (no End of Message record): read more.
    Incomplete,
    /// More bytes after End of Message.
    DataAfterEnd,
    /// A critical record this client does not know.
    UnknownCriticalRecord {
        /// Its type.
        record_type: u16,
    },
    /// The server sent an Error record.
    ServerError {
        /// The error code (0 unrecognised critical record, 1 bad request, 2 internal error).
        code: u16,
    },
    /// No (or an empty) next-protocol record, or one that is not NTPv4.
    NoNtpv4,
    /// No AEAD record, or one naming an algorithm this client did not offer.
    UnsupportedAead {
        /// The algorithm named (0 when none).
        algorithm: u16,
    },
    /// No cookies.
    NoCookies,
    /// A cookie longer than [`MAX_COOKIE_LEN`], or empty.
    BadCookie {
        /// Its length.
        len: usize,
    },
    /// A server name that is empty, too long or not printable ASCII.
    BadServerName,
    /// A record whose body has the wrong length for its type.
    BadRecordLength {
        /// Its type.
        record_type: u16,
    },
    /// A record type that may appear once appeared twice.
    DuplicateRecord {
        /// Its type.
        record_type: u16,
    },
    /// The output buffer is too small.
    BufferTooSmall,
}

impl fmt::Display for KeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeError::Incomplete => f.write_str("the NTS-KE response ended before End of Message"),
            KeError::DataAfterEnd => f.write_str("data after the NTS-KE End of Message record"),
            KeError::UnknownCriticalRecord { record_type } => {
                write!(f, "unknown critical NTS-KE record type {record_type}")
            }
            KeError::ServerError { code } => {
                let what = match code {
                    0 => "unrecognized critical record",
                    1 => "bad request",
                    2 => "internal server error",
                    _ => "unknown error",
                };
                write!(f, "the NTS-KE server reported error {code} ({what})")
            }
            KeError::NoNtpv4 => f.write_str("the NTS-KE server did not agree to NTPv4"),
            KeError::UnsupportedAead { algorithm } => write!(
                f,
                "the NTS-KE server chose AEAD algorithm {algorithm}; only 15 (AES-SIV-CMAC-256) is supported"
            ),
            KeError::NoCookies => f.write_str("the NTS-KE server sent no cookies"),
            KeError::BadCookie { len } => write!(f, "an NTS cookie of {len} bytes (1..=256 allowed)"),
            KeError::BadServerName => f.write_str("the NTS-KE server named an invalid NTP server"),
            KeError::BadRecordLength { record_type } => {
                write!(f, "NTS-KE record type {record_type} has a body of the wrong length")
            }
            KeError::DuplicateRecord { record_type } => {
                write!(f, "NTS-KE record type {record_type} appears twice")
            }
            KeError::BufferTooSmall => f.write_str("buffer too small"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for KeError {}

fn put_record(buf: &mut [u8], at: usize, rtype: u16, body: &[u8]) -> Result<usize, KeError> {
    let end = at + 4 + body.len();
    let out = buf.get_mut(at..end).ok_or(KeError::BufferTooSmall)?;
    out[0..2].copy_from_slice(&rtype.to_be_bytes());
    out[2..4].copy_from_slice(&(body.len() as u16).to_be_bytes());
    out[4..].copy_from_slice(body);
    Ok(end)
}

/// Writes the client's NTS-KE request: NTPv4, AES-SIV-CMAC-256, End of Message (16 bytes).
///
/// # Errors
/// [`KeError::BufferTooSmall`] below 16 bytes.
pub fn encode_ke_request(buf: &mut [u8]) -> Result<usize, KeError> {
    let n = put_record(
        buf,
        0,
        CRITICAL | record::NEXT_PROTOCOL,
        &NEXT_PROTOCOL_NTPV4.to_be_bytes(),
    )?;
    let n = put_record(buf, n, record::AEAD, &AEAD_AES_SIV_CMAC_256.to_be_bytes())?;
    put_record(buf, n, CRITICAL | record::END, &[])
}

/// One cookie.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cookie {
    len: u16,
    bytes: [u8; MAX_COOKIE_LEN],
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cookie({} bytes)", self.len)
    }
}

impl Cookie {
    /// A cookie from its bytes.
    ///
    /// # Errors
    /// [`KeError::BadCookie`] when empty or longer than [`MAX_COOKIE_LEN`].
    pub fn new(b: &[u8]) -> Result<Self, KeError> {
        if b.is_empty() || b.len() > MAX_COOKIE_LEN {
            return Err(KeError::BadCookie { len: b.len() });
        }
        let mut bytes = [0u8; MAX_COOKIE_LEN];
        bytes[..b.len()].copy_from_slice(b);
        Ok(Cookie {
            len: b.len() as u16,
            bytes,
        })
    }
    /// The cookie's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Up to [`MAX_COOKIES`] cookies, used oldest first.
#[derive(Clone, Debug)]
pub struct CookieJar {
    cookies: [Option<Cookie>; MAX_COOKIES],
}

impl Default for CookieJar {
    fn default() -> Self {
        Self::new()
    }
}

impl CookieJar {
    /// An empty jar; `const`, so it can initialise a `static` or a field in place.
    #[must_use]
    pub const fn new() -> Self {
        CookieJar {
            cookies: [None; MAX_COOKIES],
        }
    }
    /// Drops every cookie, in place.
    pub fn clear(&mut self) {
        for c in &mut self.cookies {
            *c = None;
        }
    }
    /// Makes this jar a copy of `other`, in place (no 2 KB temporary on the stack).
    pub fn copy_from(&mut self, other: &CookieJar) {
        self.cookies = other.cookies;
    }
    /// How many cookies are in hand.
    #[must_use]
    pub fn len(&self) -> usize {
        self.cookies.iter().filter(|c| c.is_some()).count()
    }
    /// True when no cookie is left (a new NTS-KE exchange is needed).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Adds a cookie; when full, the oldest is dropped.
    pub fn push(&mut self, c: Cookie) {
        if self.len() == MAX_COOKIES {
            self.drop_oldest();
        }
        if let Some(slot) = self.cookies.iter_mut().find(|s| s.is_none()) {
            *slot = Some(c);
        }
    }
    /// Takes the oldest cookie.
    pub fn pop(&mut self) -> Option<Cookie> {
        let first = self.cookies[0].take();
        self.drop_oldest();
        first
    }
    /// Drops the oldest cookie and moves the others up by swapping neighbours (`rotate_left`
    /// kept a 552-byte temporary on a Cortex-M stack).
    fn drop_oldest(&mut self) {
        for i in 1..MAX_COOKIES {
            self.cookies.swap(i - 1, i);
        }
        self.cookies[MAX_COOKIES - 1] = None;
    }
}

/// A parsed NTS-KE response.
#[derive(Clone, Debug)]
pub struct KeResponse {
    /// The cookies.
    pub cookies: CookieJar,
    /// The NTP port the server named, if any (else the server's NTP port, normally 123).
    pub port: Option<u16>,
    /// Warnings the server sent (their codes), if any.
    pub warnings: u8,
    server: [u8; MAX_SERVER_NAME_LEN],
    server_len: usize,
}

impl Default for KeResponse {
    /// No cookies, no port, no server name.
    fn default() -> Self {
        Self::empty()
    }
}

impl KeResponse {
    /// No cookies, no port, no server name; `const`, so a firmware can keep the response in a
    /// `static` and fill it with [`parse_ke_response_into`].
    #[must_use]
    pub const fn empty() -> Self {
        KeResponse {
            cookies: CookieJar::new(),
            port: None,
            warnings: 0,
            server: [0; MAX_SERVER_NAME_LEN],
            server_len: 0,
        }
    }
    /// The NTP server the NTS-KE server named, if any (else the NTS-KE host itself).
    #[must_use]
    pub fn server(&self) -> Option<&str> {
        if self.server_len == 0 {
            return None;
        }
        core::str::from_utf8(&self.server[..self.server_len]).ok()
    }
}

/// Parses an NTS-KE response. Call it with everything received so far; it returns
/// [`KeError::Incomplete`] until the End of Message record has arrived.
///
/// # Errors
/// A [`KeError`] per rule; never panics on any input.
pub fn parse_ke_response(bytes: &[u8]) -> Result<KeResponse, KeError> {
    let mut out = KeResponse::default();
    parse_ke_response_into(bytes, &mut out)?;
    Ok(out)
}

/// [`parse_ke_response`] into a response the caller owns (e.g. a `static` on a
/// microcontroller): a `KeResponse` is about 2.3 KB, too large to return by value on a small
/// stack. `out` is reset first; on error its content is unspecified.
///
/// # Errors
/// As [`parse_ke_response`].
pub fn parse_ke_response_into(bytes: &[u8], out: &mut KeResponse) -> Result<(), KeError> {
    out.cookies.clear();
    out.port = None;
    out.warnings = 0;
    out.server_len = 0;
    let (mut protocol, mut aead) = (None::<bool>, None::<u16>);
    let mut rest = bytes;
    loop {
        if rest.len() < 4 {
            return Err(KeError::Incomplete);
        }
        let rtype_raw = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let critical = rtype_raw & CRITICAL != 0;
        let rtype = rtype_raw & !CRITICAL;
        let body = rest.get(4..4 + len).ok_or(KeError::Incomplete)?;
        rest = &rest[4 + len..];
        let bad_len = KeError::BadRecordLength { record_type: rtype };
        let u16_of = |b: &[u8]| -> Result<u16, KeError> {
            match b {
                [a, b] => Ok(u16::from_be_bytes([*a, *b])),
                _ => Err(bad_len),
            }
        };
        match rtype {
            record::END => {
                if !rest.is_empty() {
                    return Err(KeError::DataAfterEnd);
                }
                break;
            }
            record::NEXT_PROTOCOL => {
                if protocol.is_some() {
                    return Err(KeError::DuplicateRecord { record_type: rtype });
                }
                if body.len() % 2 != 0 {
                    return Err(bad_len);
                }
                protocol = Some(
                    body.chunks_exact(2)
                        .any(|c| u16::from_be_bytes([c[0], c[1]]) == NEXT_PROTOCOL_NTPV4),
                );
            }
            record::ERROR => {
                return Err(KeError::ServerError {
                    code: u16_of(body)?,
                })
            }
            record::WARNING => {
                let _ = u16_of(body)?;
                out.warnings = out.warnings.saturating_add(1);
            }
            record::AEAD => {
                if aead.is_some() {
                    return Err(KeError::DuplicateRecord { record_type: rtype });
                }
                aead = Some(u16_of(body)?);
            }
            record::COOKIE => out.cookies.push(Cookie::new(body)?),
            record::SERVER => {
                if body.is_empty()
                    || body.len() > MAX_SERVER_NAME_LEN
                    || !body.iter().all(|b| b.is_ascii_graphic())
                {
                    return Err(KeError::BadServerName);
                }
                out.server[..body.len()].copy_from_slice(body);
                out.server_len = body.len();
            }
            record::PORT => out.port = Some(u16_of(body)?),
            other if critical => return Err(KeError::UnknownCriticalRecord { record_type: other }),
            _ => {}
        }
    }
    if protocol != Some(true) {
        return Err(KeError::NoNtpv4);
    }
    match aead {
        Some(AEAD_AES_SIV_CMAC_256) => {}
        other => {
            return Err(KeError::UnsupportedAead {
                algorithm: other.unwrap_or(0),
            })
        }
    }
    if out.cookies.is_empty() {
        return Err(KeError::NoCookies);
    }
    Ok(())
}

/// The two keys exported from the NTS-KE TLS session.
#[derive(Clone)]
pub struct Keys {
    /// Client to server: seals requests.
    pub c2s: [u8; KEY_LEN],
    /// Server to client: opens replies.
    pub s2c: [u8; KEY_LEN],
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// Why an NTS request could not be built or a reply was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NtsError {
    /// No cookie left: run NTS-KE again.
    NoCookies,
    /// The request is not a 48-byte NTP header.
    NotAnNtpHeader,
    /// The output buffer is too small.
    BufferTooSmall,
    /// No request is outstanding, or the reply's unique identifier is not ours (late,
    /// duplicate, or forged).
    NotRequested,
    /// The server answered with a Kiss-o'-Death NTSN (its cookie was not accepted): run
    /// NTS-KE again. The NAK is not authenticated, so it only counts if it echoes our unique
    /// identifier.
    Nak,
    /// The reply's extension fields are malformed.
    MalformedFields,
    /// The reply has no authenticator.
    MissingAuthenticator,
    /// The authenticator's layout is wrong (lengths, nonce, room for the tag).
    BadAuthenticator,
    /// The authenticator does not verify: the reply was altered or forged.
    AuthenticationFailed,
    /// Unauthenticated extension fields follow the authenticator.
    FieldsAfterAuthenticator,
}

impl fmt::Display for NtsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NtsError::NoCookies => "no NTS cookie left; a new NTS-KE exchange is needed",
            NtsError::NotAnNtpHeader => "the request is not a 48-byte NTP header",
            NtsError::BufferTooSmall => "buffer too small",
            NtsError::NotRequested => "the reply's unique identifier does not match a request",
            NtsError::Nak => "the server did not accept the NTS cookie (NTSN)",
            NtsError::MalformedFields => "the reply's extension fields are malformed",
            NtsError::MissingAuthenticator => "the reply is not authenticated",
            NtsError::BadAuthenticator => "the reply's NTS authenticator is malformed",
            NtsError::AuthenticationFailed => {
                "the reply failed NTS authentication (altered or forged)"
            }
            NtsError::FieldsAfterAuthenticator => {
                "the reply has unauthenticated fields after the authenticator"
            }
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for NtsError {}

/// The NTS state of one server: keys, cookies, the outstanding request's identifier, and a
/// count of replies that failed authentication.
#[derive(Clone, Debug)]
pub struct NtsSession {
    keys: Keys,
    jar: CookieJar,
    pending: Option<[u8; UNIQUE_ID_LEN]>,
    auth_failures: u32,
}

impl NtsSession {
    /// A session from an NTS-KE exchange. The session is about 2.2 KB and `cookies` is moved
    /// in by value: on a small stack use [`NtsSession::empty`] and [`NtsSession::reset`].
    #[must_use]
    pub fn new(keys: Keys, cookies: CookieJar) -> Self {
        NtsSession {
            keys,
            jar: cookies,
            pending: None,
            auth_failures: 0,
        }
    }

    /// A session with no keys and no cookies (so [`NtsSession::seal_request`] answers
    /// [`NtsError::NoCookies`] until [`NtsSession::reset`]). `const`: a firmware can put the
    /// session in a `static` or a field and start it in place.
    #[must_use]
    pub const fn empty() -> Self {
        NtsSession {
            keys: Keys {
                c2s: [0; KEY_LEN],
                s2c: [0; KEY_LEN],
            },
            jar: CookieJar::new(),
            pending: None,
            auth_failures: 0,
        }
    }

    /// Starts this session afresh from an NTS-KE exchange, in place: the keys and the cookies
    /// (e.g. `&response.cookies` of a [`KeResponse`]) are copied into it, the outstanding
    /// request and the failure count are cleared. Nothing large is passed or returned by
    /// value, so the stack holds no second copy of the cookie jar.
    pub fn reset(&mut self, keys: &Keys, cookies: &CookieJar) {
        self.keys.c2s = keys.c2s;
        self.keys.s2c = keys.s2c;
        self.jar.copy_from(cookies);
        self.pending = None;
        self.auth_failures = 0;
    }
    /// Cookies in hand.
    #[must_use]
    pub fn cookies(&self) -> usize {
        self.jar.len()
    }
    /// Replies dropped because they failed authentication.
    #[must_use]
    pub fn auth_failures(&self) -> u32 {
        self.auth_failures
    }

    /// Turns the NTP client's 48-byte request `header` into an NTS request in `buf`: unique
    /// identifier `uid` (fresh randomness), one cookie, placeholders for the cookies missing
    /// from a full jar, and the authenticator sealed with `nonce` (fresh randomness).
    ///
    /// # Errors
    /// [`NtsError::NoCookies`], [`NtsError::NotAnNtpHeader`], [`NtsError::BufferTooSmall`].
    pub fn seal_request(
        &mut self,
        header: &[u8],
        uid: [u8; UNIQUE_ID_LEN],
        nonce: [u8; NONCE_LEN],
        buf: &mut [u8],
    ) -> Result<usize, NtsError> {
        if header.len() != HEADER_LEN {
            return Err(NtsError::NotAnNtpHeader);
        }
        let small = |_| NtsError::BufferTooSmall;
        let cookie = self.jar.pop().ok_or(NtsError::NoCookies)?;
        let out = buf.get_mut(..HEADER_LEN).ok_or(NtsError::BufferTooSmall)?;
        out.copy_from_slice(header);
        let mut n = HEADER_LEN;
        n += write_extension_field(&mut buf[n..], field::UNIQUE_ID, &uid).map_err(small)?;
        n += write_extension_field(&mut buf[n..], field::COOKIE, cookie.as_bytes())
            .map_err(small)?;
        // Ask for enough cookies to fill the jar again (the reply carries one per field).
        let zeros = [0u8; MAX_COOKIE_LEN];
        let missing = MAX_COOKIES - 1 - self.jar.len();
        for _ in 0..missing {
            n += write_extension_field(
                &mut buf[n..],
                field::COOKIE_PLACEHOLDER,
                &zeros[..cookie.as_bytes().len()],
            )
            .map_err(small)?;
        }
        // Authenticator: nonce length, ciphertext length, nonce, ciphertext (the tag alone:
        // the request encrypts nothing).
        let tag = seal(&self.keys.c2s, &nonce, &buf[..n], &mut [])?;
        let mut body = [0u8; 4 + NONCE_LEN + TAG_LEN];
        body[0..2].copy_from_slice(&(NONCE_LEN as u16).to_be_bytes());
        body[2..4].copy_from_slice(&(TAG_LEN as u16).to_be_bytes());
        body[4..4 + NONCE_LEN].copy_from_slice(&nonce);
        body[4 + NONCE_LEN..].copy_from_slice(&tag);
        n += write_extension_field(&mut buf[n..], field::AUTHENTICATOR, &body).map_err(small)?;
        self.pending = Some(uid);
        Ok(n)
    }

    /// Checks a reply: it must echo the outstanding request's unique identifier and carry an
    /// authenticator that opens with the server-to-client key; its encrypted cookies go into
    /// the jar. Only after `Ok` may the datagram be given to the NTP client. A reply that fails
    /// authentication is counted ([`auth_failures`](Self::auth_failures)) and leaves the
    /// request outstanding, so a forger cannot cancel the genuine reply.
    ///
    /// # Errors
    /// An [`NtsError`] per rule; never panics on any input.
    pub fn open_reply(&mut self, bytes: &[u8]) -> Result<(), NtsError> {
        let r = self.check_reply(bytes);
        if matches!(
            r,
            Err(NtsError::AuthenticationFailed
                | NtsError::MissingAuthenticator
                | NtsError::BadAuthenticator
                | NtsError::FieldsAfterAuthenticator
                | NtsError::MalformedFields)
        ) {
            self.auth_failures = self.auth_failures.saturating_add(1);
        }
        r
    }

    fn check_reply(&mut self, bytes: &[u8]) -> Result<(), NtsError> {
        let Some(uid) = self.pending else {
            return Err(NtsError::NotRequested);
        };
        // NTS replies may exceed the plain-NTP datagram limit (eight large cookies): parse the
        // header alone, then every extension field up to the largest UDP payload.
        if bytes.len() > MAX_REPLY_LEN {
            return Err(NtsError::MalformedFields);
        }
        let header = bytes.get(..HEADER_LEN).ok_or(NtsError::MalformedFields)?;
        let (p, _) = NtpPacket::parse(header).map_err(|_| NtsError::MalformedFields)?;
        let mut fields = ExtensionFields::new(&bytes[HEADER_LEN..]);
        let mut uid_seen = false;
        let mut auth = None;
        loop {
            let at = HEADER_LEN + fields.offset();
            let Some(f) = fields.next() else { break };
            let f = f.map_err(|_| NtsError::MalformedFields)?;
            if auth.is_some() {
                return Err(NtsError::FieldsAfterAuthenticator);
            }
            match f.field_type {
                field::UNIQUE_ID => uid_seen = uid_seen || f.value == uid,
                field::AUTHENTICATOR => auth = Some((at, f.value)),
                _ => {}
            }
        }
        if !uid_seen {
            return Err(NtsError::NotRequested);
        }
        if p.kiss_code() == Some(KissCode::Other(*b"NTSN")) && auth.is_none() {
            self.pending = None;
            return Err(NtsError::Nak);
        }
        let (at, value) = auth.ok_or(NtsError::MissingAuthenticator)?;
        let len16 = |i: usize| -> Result<usize, NtsError> {
            value
                .get(i..i + 2)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                .ok_or(NtsError::BadAuthenticator)
        };
        let (nonce_len, ct_len) = (len16(0)?, len16(2)?);
        let nonce_end = 4 + nonce_len.div_ceil(4) * 4;
        let nonce = value
            .get(4..4 + nonce_len)
            .ok_or(NtsError::BadAuthenticator)?;
        let ct = value
            .get(nonce_end..nonce_end + ct_len)
            .ok_or(NtsError::BadAuthenticator)?;
        if nonce_len != NONCE_LEN || ct_len < TAG_LEN || ct_len - TAG_LEN > MAX_PLAINTEXT {
            return Err(NtsError::BadAuthenticator);
        }
        let (tag, sealed) = ct.split_at(TAG_LEN);
        let mut plain = [0u8; MAX_PLAINTEXT];
        let plain = &mut plain[..sealed.len()];
        plain.copy_from_slice(sealed);
        let ad = bytes.get(..at).ok_or(NtsError::BadAuthenticator)?;
        let cipher = Aes128SivAead::new_from_slice(&self.keys.s2c)
            .map_err(|_| NtsError::BadAuthenticator)?;
        cipher
            .decrypt_in_place_detached(Nonce::from_slice(nonce), ad, plain, Tag::from_slice(tag))
            .map_err(|_| NtsError::AuthenticationFailed)?;
        // Authentic: the request is answered; keep the cookies the server sent.
        self.pending = None;
        for f in ExtensionFields::new(plain).flatten() {
            if f.field_type == field::COOKIE {
                if let Ok(c) = Cookie::new(f.value) {
                    self.jar.push(c);
                }
            }
        }
        Ok(())
    }
}

/// AES-SIV-CMAC-256 over `ad` with `nonce`, encrypting `plain` in place; returns the tag.
fn seal(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    ad: &[u8],
    plain: &mut [u8],
) -> Result<[u8; TAG_LEN], NtsError> {
    let cipher = Aes128SivAead::new_from_slice(key).map_err(|_| NtsError::BadAuthenticator)?;
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(nonce), ad, plain)
        .map_err(|_| NtsError::BufferTooSmall)?;
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&tag);
    Ok(out)
}

/// The server side of the authenticator, for tests and simulations: seals `plaintext`
/// (extension fields, e.g. new cookies) into an authenticator field appended at `buf[n..]`,
/// authenticating `buf[..n]`. Returns the new length.
///
/// # Errors
/// [`NtsError::BufferTooSmall`].
pub fn append_authenticator(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    buf: &mut [u8],
    n: usize,
) -> Result<usize, NtsError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(NtsError::BufferTooSmall);
    }
    let mut ct = [0u8; MAX_PLAINTEXT];
    let ct = &mut ct[..plaintext.len()];
    ct.copy_from_slice(plaintext);
    let ad = buf.get(..n).ok_or(NtsError::BufferTooSmall)?;
    let tag = seal(key, nonce, ad, ct)?;
    let body_len = 4 + NONCE_LEN + TAG_LEN + ct.len();
    let mut body = [0u8; 4 + NONCE_LEN + TAG_LEN + MAX_PLAINTEXT];
    body[0..2].copy_from_slice(&(NONCE_LEN as u16).to_be_bytes());
    body[2..4].copy_from_slice(&((TAG_LEN + ct.len()) as u16).to_be_bytes());
    body[4..4 + NONCE_LEN].copy_from_slice(nonce);
    body[4 + NONCE_LEN..4 + NONCE_LEN + TAG_LEN].copy_from_slice(&tag);
    body[4 + NONCE_LEN + TAG_LEN..body_len].copy_from_slice(ct);
    let w = write_extension_field(
        buf.get_mut(n..).ok_or(NtsError::BufferTooSmall)?,
        field::AUTHENTICATOR,
        &body[..body_len],
    )
    .map_err(|_| NtsError::BufferTooSmall)?;
    Ok(n + w)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stratum-1 server reply header.
    const GOLDEN_REPLY_FOR_TESTS: [u8; 48] = [
        0x24, 0x01, 0x00, 0xe9, 0, 0, 0, 0, 0, 0, 0, 0x10, b'L', b'O', b'C', b'L', 0xec, 0xc2,
        0x5a, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0xec, 0xc2, 0x5a,
        0x10, 0x80, 0, 0, 0, 0xec, 0xc2, 0x5a, 0x10, 0x80, 0x10, 0, 0,
    ];

    fn keys() -> Keys {
        Keys {
            c2s: [1; KEY_LEN],
            s2c: [2; KEY_LEN],
        }
    }

    fn ke_response(cookies: usize) -> ([u8; 2048], usize) {
        let mut b = [0u8; 2048];
        let mut n = put_record(&mut b, 0, CRITICAL | record::NEXT_PROTOCOL, &[0, 0]).unwrap();
        n = put_record(&mut b, n, CRITICAL | record::AEAD, &[0, 15]).unwrap();
        for i in 0..cookies {
            n = put_record(&mut b, n, record::COOKIE, &[i as u8 + 1; 100]).unwrap();
        }
        n = put_record(&mut b, n, record::PORT, &11123u16.to_be_bytes()).unwrap();
        n = put_record(&mut b, n, record::SERVER, b"ntp.example.test").unwrap();
        n = put_record(&mut b, n, CRITICAL | record::END, &[]).unwrap();
        (b, n)
    }

    #[test]
    fn ke_request_is_what_rfc_8915_asks_for() {
        let mut b = [0u8; 16];
        assert_eq!(encode_ke_request(&mut b), Ok(16));
        assert_eq!(b, [0x80, 1, 0, 2, 0, 0, 0, 4, 0, 2, 0, 15, 0x80, 0, 0, 0]);
        assert_eq!(
            encode_ke_request(&mut [0u8; 15]),
            Err(KeError::BufferTooSmall)
        );
        assert_eq!(
            exporter_context(Direction::ServerToClient),
            [0, 0, 0, 15, 1]
        );
    }

    #[test]
    fn ke_response_parses_and_every_prefix_is_incomplete() {
        let (b, n) = ke_response(8);
        let r = parse_ke_response(&b[..n]).unwrap();
        assert_eq!(r.cookies.len(), 8);
        assert_eq!(r.port, Some(11123));
        assert_eq!(r.server(), Some("ntp.example.test"));
        for cut in 0..n {
            assert_eq!(
                parse_ke_response(&b[..cut]).unwrap_err(),
                KeError::Incomplete
            );
        }
    }

    #[test]
    fn parsing_into_a_reused_response_forgets_the_previous_one() {
        let (b, n) = ke_response(8);
        let mut out = KeResponse::default();
        parse_ke_response_into(&b[..n], &mut out).unwrap();
        assert_eq!(out.cookies.len(), 8);
        // A second, smaller response into the same storage: nothing of the first remains.
        let mut c = [0u8; 256];
        let mut m = put_record(&mut c, 0, CRITICAL | record::NEXT_PROTOCOL, &[0, 0]).unwrap();
        m = put_record(&mut c, m, CRITICAL | record::AEAD, &[0, 15]).unwrap();
        m = put_record(&mut c, m, record::COOKIE, &[9; 64]).unwrap();
        m = put_record(&mut c, m, CRITICAL | record::END, &[]).unwrap();
        parse_ke_response_into(&c[..m], &mut out).unwrap();
        assert_eq!(out.cookies.len(), 1);
        assert_eq!((out.port, out.server(), out.warnings), (None, None, 0));
        let fresh = parse_ke_response(&c[..m]).unwrap();
        assert_eq!(
            (fresh.cookies.len(), fresh.port, fresh.server()),
            (1, None, None)
        );
    }

    #[test]
    fn ke_response_rules() {
        let end = [0x80, 0, 0, 0];
        let mut b = [0u8; 64];
        // Error record.
        let n = put_record(&mut b, 0, CRITICAL | record::ERROR, &[0, 1]).unwrap();
        assert_eq!(
            parse_ke_response(&b[..n]).unwrap_err(),
            KeError::ServerError { code: 1 }
        );
        // Unknown critical record.
        let n = put_record(&mut b, 0, CRITICAL | 0x1234, &[]).unwrap();
        b[n..n + 4].copy_from_slice(&end);
        assert_eq!(
            parse_ke_response(&b[..n + 4]).unwrap_err(),
            KeError::UnknownCriticalRecord {
                record_type: 0x1234
            }
        );
        // No next protocol.
        assert_eq!(parse_ke_response(&end).unwrap_err(), KeError::NoNtpv4);
        // Wrong AEAD.
        let n = put_record(&mut b, 0, record::NEXT_PROTOCOL, &[0, 0]).unwrap();
        let n = put_record(&mut b, n, record::AEAD, &[0, 30]).unwrap();
        b[n..n + 4].copy_from_slice(&end);
        assert_eq!(
            parse_ke_response(&b[..n + 4]).unwrap_err(),
            KeError::UnsupportedAead { algorithm: 30 }
        );
        // No cookies.
        let n = put_record(&mut b, 0, record::NEXT_PROTOCOL, &[0, 0]).unwrap();
        let n = put_record(&mut b, n, record::AEAD, &[0, 15]).unwrap();
        b[n..n + 4].copy_from_slice(&end);
        assert_eq!(
            parse_ke_response(&b[..n + 4]).unwrap_err(),
            KeError::NoCookies
        );
        // Data after the end.
        let (r, n) = ke_response(1);
        let mut longer = [0u8; 2048];
        longer[..n].copy_from_slice(&r[..n]);
        assert_eq!(
            parse_ke_response(&longer[..n + 1]).unwrap_err(),
            KeError::DataAfterEnd
        );
    }

    #[test]
    fn cookie_jar_is_fifo_and_bounded() {
        let mut j = CookieJar::default();
        for i in 0..10u8 {
            j.push(Cookie::new(&[i; 4]).unwrap());
        }
        assert_eq!(j.len(), MAX_COOKIES);
        assert_eq!(j.pop().unwrap().as_bytes(), &[2; 4]);
        assert_eq!(j.len(), MAX_COOKIES - 1);
        assert!(Cookie::new(&[]).is_err());
        assert!(Cookie::new(&[0; MAX_COOKIE_LEN + 1]).is_err());
    }

    #[test]
    fn jar_keeps_the_newest_in_order_and_pops_oldest_first() {
        let mut j = CookieJar::new();
        for i in 0..11u8 {
            j.push(Cookie::new(&[i; 3]).unwrap());
            if i == 4 {
                assert_eq!(j.pop().unwrap().as_bytes(), &[0; 3]);
            }
        }
        // 1..=10 pushed after the pop, 8 kept: 3..=10.
        for i in 3..11u8 {
            assert_eq!(j.pop().unwrap().as_bytes(), &[i; 3]);
        }
        assert!(j.pop().is_none());
        assert!(j.is_empty());
    }

    /// A server answering `req` the way RFC 8915 describes.
    fn answer(req: &[u8], new_cookies: usize, flip: Option<usize>) -> ([u8; 2048], usize) {
        let (_, ext) = NtpPacket::parse(req).unwrap();
        let uid = ExtensionFields::new(ext)
            .flatten()
            .find(|f| f.field_type == field::UNIQUE_ID)
            .unwrap()
            .value;
        let mut b = [0u8; 2048];
        b[..48].copy_from_slice(&GOLDEN_REPLY_FOR_TESTS);
        let mut n = 48;
        n += write_extension_field(&mut b[n..], field::UNIQUE_ID, uid).unwrap();
        let mut plain = [0u8; 1024];
        let mut p = 0;
        for i in 0..new_cookies {
            p += write_extension_field(&mut plain[p..], field::COOKIE, &[0xc0 + i as u8; 100])
                .unwrap();
        }
        let n = append_authenticator(&keys().s2c, &[9; NONCE_LEN], &plain[..p], &mut b, n).unwrap();
        if let Some(i) = flip {
            b[i] ^= 1;
        }
        (b, n)
    }

    fn session(cookies: usize) -> NtsSession {
        let mut jar = CookieJar::default();
        for i in 0..cookies {
            jar.push(Cookie::new(&[i as u8; 100]).unwrap());
        }
        NtsSession::new(keys(), jar)
    }

    fn request(s: &mut NtsSession) -> ([u8; 2048], usize) {
        let mut b = [0u8; 2048];
        let n = s
            .seal_request(
                &GOLDEN_REPLY_FOR_TESTS,
                [7; UNIQUE_ID_LEN],
                [5; NONCE_LEN],
                &mut b,
            )
            .unwrap();
        (b, n)
    }

    #[test]
    fn request_carries_uid_cookie_placeholders_and_a_valid_authenticator() {
        let mut s = session(8);
        let (b, n) = request(&mut s);
        assert_eq!(s.cookies(), 7);
        let (_, ext) = NtpPacket::parse(&b[..n]).unwrap();
        let mut types = [0u16; 8];
        let mut k = 0;
        let mut auth_at = 0;
        let mut it = ExtensionFields::new(ext);
        loop {
            let at = 48 + it.offset();
            let Some(f) = it.next() else { break };
            let f = f.unwrap();
            types[k] = f.field_type;
            k += 1;
            if f.field_type == field::AUTHENTICATOR {
                auth_at = at;
                // The tag verifies with the client-to-server key over everything before.
                let (nonce, tag) = (&f.value[4..20], &f.value[20..36]);
                let c = Aes128SivAead::new_from_slice(&keys().c2s).unwrap();
                c.decrypt_in_place_detached(
                    Nonce::from_slice(nonce),
                    &b[..at],
                    &mut [],
                    Tag::from_slice(tag),
                )
                .unwrap();
            }
        }
        // A full jar asks for no placeholders: the reply's one cookie replaces the one used.
        assert_eq!(
            &types[..k],
            &[field::UNIQUE_ID, field::COOKIE, field::AUTHENTICATOR]
        );
        assert!(auth_at > 48);
        // With three cookies in hand, placeholders ask for five more.
        let mut s = session(3);
        let (b, n) = request(&mut s);
        let (_, ext) = NtpPacket::parse(&b[..n]).unwrap();
        let placeholders = ExtensionFields::new(ext)
            .flatten()
            .filter(|f| f.field_type == field::COOKIE_PLACEHOLDER)
            .count();
        assert_eq!(placeholders, 5);
    }

    #[test]
    fn authentic_reply_opens_and_refills_the_jar() {
        let mut s = session(1);
        let (req, n) = request(&mut s);
        assert_eq!(s.cookies(), 0);
        let (rep, m) = answer(&req[..n], 8, None);
        assert_eq!(s.open_reply(&rep[..m]), Ok(()));
        assert_eq!(s.cookies(), 8);
        // The same reply again: no request outstanding.
        assert_eq!(s.open_reply(&rep[..m]), Err(NtsError::NotRequested));
        assert_eq!(s.auth_failures(), 0);
    }

    #[test]
    fn an_empty_session_seals_nothing_until_reset() {
        let mut s = NtsSession::empty();
        let mut b = [0u8; 2048];
        assert_eq!(
            s.seal_request(
                &GOLDEN_REPLY_FOR_TESTS,
                [7; UNIQUE_ID_LEN],
                [5; NONCE_LEN],
                &mut b
            ),
            Err(NtsError::NoCookies)
        );
        assert_eq!(
            s.open_reply(&GOLDEN_REPLY_FOR_TESTS),
            Err(NtsError::NotRequested)
        );
        let mut jar = CookieJar::new();
        for i in 0..3 {
            jar.push(Cookie::new(&[i as u8; 100]).unwrap());
        }
        s.reset(&keys(), &jar);
        assert_eq!(s.cookies(), 3);
        // In place gives the same request, byte for byte, as by value.
        let (a, n) = request(&mut s);
        let (b, m) = request(&mut session(3));
        assert_eq!(&a[..n], &b[..m]);
    }

    #[test]
    fn reset_forgets_the_old_request_failures_and_cookies() {
        let mut s = session(8);
        let (req, n) = request(&mut s);
        let (mut rep, m) = answer(&req[..n], 1, None);
        // A forged reply (tag broken) counts as a failure.
        rep[m - 1] ^= 1;
        assert!(s.open_reply(&rep[..m]).is_err());
        assert_eq!(s.auth_failures(), 1);
        let (req, n) = request(&mut s);
        let (rep, m) = answer(&req[..n], 1, None);
        let mut jar = CookieJar::new();
        jar.push(Cookie::new(&[9; 64]).unwrap());
        s.reset(&keys(), &jar);
        assert_eq!(s.auth_failures(), 0);
        assert_eq!(s.cookies(), 1, "the old jar's 6 cookies are gone");
        // The reply to the request sent before the reset is no longer awaited.
        assert_eq!(s.open_reply(&rep[..m]), Err(NtsError::NotRequested));
        // An emptied jar copied in leaves none.
        jar.clear();
        assert!(jar.is_empty());
        s.reset(&keys(), &jar);
        assert_eq!(s.cookies(), 0);
    }

    #[test]
    fn ke_response_into_clears_an_earlier_response() {
        let mut out = KeResponse::empty();
        out.cookies.push(Cookie::new(&[1; 10]).unwrap());
        out.warnings = 3;
        assert!(parse_ke_response_into(&[], &mut out).is_err());
        assert!(out.cookies.is_empty());
        assert_eq!(out.warnings, 0);
        assert_eq!(out.server(), None);
    }

    #[test]
    fn a_reply_longer_than_a_plain_ntp_datagram_opens() {
        let mut s = session(1);
        let (req, n) = request(&mut s);
        let (_, ext) = NtpPacket::parse(&req[..n]).unwrap();
        let uid = ExtensionFields::new(ext)
            .flatten()
            .find(|f| f.field_type == field::UNIQUE_ID)
            .unwrap()
            .value;
        let mut b = [0u8; 4096];
        b[..48].copy_from_slice(&GOLDEN_REPLY_FOR_TESTS);
        let mut m = 48;
        m += write_extension_field(&mut b[m..], field::UNIQUE_ID, uid).unwrap();
        let mut plain = [0u8; 2048];
        let mut p = 0;
        for i in 0..8u8 {
            p += write_extension_field(&mut plain[p..], field::COOKIE, &[i; 200]).unwrap();
        }
        let m = append_authenticator(&keys().s2c, &[3; NONCE_LEN], &plain[..p], &mut b, m).unwrap();
        assert!(m > crate::ntp::MAX_DATAGRAM, "{m}");
        assert_eq!(s.open_reply(&b[..m]), Ok(()));
        assert_eq!(s.cookies(), 8);
    }

    #[test]
    fn any_flipped_byte_is_rejected_and_counted() {
        let mut s = session(8);
        let (req, n) = request(&mut s);
        let (_, m) = answer(&req[..n], 1, None);
        let mut failures = 0;
        for i in 0..m {
            let (rep, m) = answer(&req[..n], 1, Some(i));
            let r = s.open_reply(&rep[..m]);
            assert!(r.is_err(), "flipping byte {i} went unnoticed");
            if r != Err(NtsError::NotRequested) {
                failures += 1;
            }
        }
        assert_eq!(s.auth_failures(), failures);
        // The genuine reply still opens after all the forgeries.
        let (rep, m) = answer(&req[..n], 1, None);
        assert_eq!(s.open_reply(&rep[..m]), Ok(()));
    }

    #[test]
    fn wrong_uid_and_unauthenticated_replies_are_refused() {
        let mut s = session(8);
        let (req, n) = request(&mut s);
        assert_eq!(
            s.open_reply(&GOLDEN_REPLY_FOR_TESTS),
            Err(NtsError::NotRequested)
        );
        // Our uid, no authenticator.
        let mut b = [0u8; 128];
        b[..48].copy_from_slice(&GOLDEN_REPLY_FOR_TESTS);
        let w = write_extension_field(&mut b[48..], field::UNIQUE_ID, &[7; 32]).unwrap();
        assert_eq!(
            s.open_reply(&b[..48 + w]),
            Err(NtsError::MissingAuthenticator)
        );
        // NTSN with our uid is a NAK.
        b[1] = 0;
        b[12..16].copy_from_slice(b"NTSN");
        assert_eq!(s.open_reply(&b[..48 + w]), Err(NtsError::Nak));
        let _ = (req, n);
    }

    #[test]
    fn garbage_never_panics() {
        let mut s = session(8);
        let (req, n) = request(&mut s);
        let (rep, m) = answer(&req[..n], 2, None);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut buf = [0u8; 600];
        for round in 0..5_000 {
            let len = (round % 600).min(m);
            buf[..len].copy_from_slice(&rep[..len]);
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if len > 0 {
                    buf[(x as usize) % len] = (x >> 32) as u8;
                }
            }
            let _ = s.open_reply(&buf[..len]);
            let _ = parse_ke_response(&buf[..len]);
        }
        for cut in 0..m {
            let _ = s.open_reply(&rep[..cut]);
        }
    }
}
