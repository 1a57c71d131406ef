//! Roughtime: requests, tagged messages, and verified responses.
//!
//! Roughtime gives a client a signed statement "the time is `MIDP` ± `RADI`" that is bound to a
//! nonce the client chose, so the reply cannot have been made before the request. The server
//! signs once per batch: every request of a batch is a leaf of a Merkle tree and the server
//! signs the root (`SREP`) with a short-lived online key, which is itself certified by the
//! server's long-term key (`CERT` = `SIG` over `DELE`).
//!
//! Two wire versions are supported, as served by the `roughenough` server (v1.3.0-draft14):
//!
//! | | [`Version::Google`] | [`Version::Draft`] (draft-ietf-ntp-roughtime-14) |
//! |---|---|---|
//! | framing | none | `"ROUGHTIM"` + u32 LE message length |
//! | request tags | `NONC`, `PAD\xff` | `VER`, (`SRV`), `NONC`, `TYPE` = 0, `ZZZZ` |
//! | nonce | 64 bytes | 32 bytes |
//! | Merkle leaf | `0x00` ‖ nonce | `0x00` ‖ the whole request datagram (framing included) |
//! | Merkle hash | SHA-512, 64 bytes everywhere | SHA-512; `PATH` nodes 64 bytes, `ROOT` is the first 32 bytes |
//! | `MIDP`, `MINT`, `MAXT` | u64 µs since the Unix epoch | u64 s since the Unix epoch |
//! | `RADI` | u32 µs | u32 s |
//! | `DELE` context | `"RoughTime v1 delegation signature--\0"` | `"RoughTime v1 delegation signature\0"` |
//! | `SREP` context | `"RoughTime v1 response signature\0"` | same |
//! | response extras | (`NONC` echo) | `NONC` echo, `TYPE` = 1, `SREP` carries `VER` = `0x8000000c` and `VERS` |
//!
//! Everything here is sans-IO: [`encode_request`] writes a 1024-byte request into a buffer,
//! [`verify_response`] checks a received datagram against the request and the server's
//! long-term public key and returns a [`Verified`] time interval. Nothing allocates and no
//! input can make the parser panic.
//!
//! ```
//! use trusttime_core::roughtime::{encode_request, Version, REQUEST_LEN};
//! let nonce = [7u8; 64]; // use a fresh random nonce for every request
//! let mut request = [0u8; REQUEST_LEN];
//! let n = encode_request(Version::Draft, &nonce, &mut request).unwrap();
//! assert_eq!(&request[..8], b"ROUGHTIM");
//! // send(&request[..n]); let reply = recv();
//! // let verified = verify_response(Version::Draft, reply, &nonce, &request[..n], &server_key)?;
//! # assert_eq!(n, 1024);
//! ```

use core::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha512};

use crate::time::{SignedDuration, TimeInterval, UnixTime};

/// Size of every request [`encode_request`] writes (the minimum the protocol accepts).
pub const REQUEST_LEN: usize = 1024;
/// The 8 bytes that start every framed (IETF draft) packet.
pub const DRAFT_MAGIC: [u8; 8] = *b"ROUGHTIM";
/// The `VER` value roughenough 1.3.0-draft14 uses for draft-ietf-ntp-roughtime-14 (bit 31 marks
/// a draft version); on the wire, little-endian: `0c 00 00 80`.
pub const DRAFT_VERSION: u32 = 0x8000_000c;

/// Framing overhead of the draft: magic and a u32 length.
const FRAME_LEN: usize = 12;
/// `TYPE` value of a request (draft).
const TYPE_REQUEST: u32 = 0;
/// `TYPE` value of a response (draft).
const TYPE_RESPONSE: u32 = 1;
/// Merkle leaf prefix.
const LEAF_TWEAK: u8 = 0x00;
/// Merkle inner-node prefix.
const NODE_TWEAK: u8 = 0x01;
/// Prefix of the `SRV` hash.
const SRV_TWEAK: u8 = 0xff;
/// A Merkle path longer than this cannot come from a batch indexed by a u32.
const MAX_PATH_DEPTH: usize = 32;
/// Largest context-plus-value a signature is checked over (DELE and SREP are ~100 bytes).
const MAX_SIGNED_LEN: usize = 512;

const DELE_CONTEXT_GOOGLE: &[u8] = b"RoughTime v1 delegation signature--\x00";
const DELE_CONTEXT_DRAFT: &[u8] = b"RoughTime v1 delegation signature\x00";
const SREP_CONTEXT: &[u8] = b"RoughTime v1 response signature\x00";

/// A Roughtime wire version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// The original Google protocol: unframed messages, 64-byte nonce, full SHA-512 Merkle
    /// hashes, `MIDP`/`RADI` in microseconds.
    Google,
    /// IETF draft-ietf-ntp-roughtime-14 as spoken by roughenough 1.3.0-draft14 (`-p 14`):
    /// `ROUGHTIM` framing, `VER` = [`DRAFT_VERSION`], 32-byte nonce, the whole request as the
    /// Merkle leaf, 32-byte `ROOT`, `MIDP`/`RADI` in seconds.
    Draft,
}

impl Version {
    /// Length of the `NONC` value.
    #[must_use]
    pub const fn nonce_len(self) -> usize {
        match self {
            Version::Google => 64,
            Version::Draft => 32,
        }
    }

    /// Length of the signed Merkle `ROOT`.
    #[must_use]
    pub const fn root_len(self) -> usize {
        match self {
            Version::Google => 64,
            Version::Draft => 32,
        }
    }

    /// Context string prefixed to `DELE` before the long-term key signs it.
    #[must_use]
    pub const fn delegation_context(self) -> &'static [u8] {
        match self {
            Version::Google => DELE_CONTEXT_GOOGLE,
            Version::Draft => DELE_CONTEXT_DRAFT,
        }
    }

    /// Context string prefixed to `SREP` before the delegated key signs it.
    #[must_use]
    pub const fn response_context(self) -> &'static [u8] {
        SREP_CONTEXT
    }

    /// True when packets carry the `ROUGHTIM` framing.
    #[must_use]
    pub const fn is_framed(self) -> bool {
        matches!(self, Version::Draft)
    }

    /// Nanoseconds per unit of `MIDP`, `MINT`, `MAXT` and `RADI`.
    const fn nanos_per_unit(self) -> i64 {
        match self {
            Version::Google => 1_000,
            Version::Draft => 1_000_000_000,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Google => f.write_str("Roughtime (Google)"),
            Version::Draft => f.write_str("Roughtime (draft-ietf-ntp-roughtime-14)"),
        }
    }
}

/// A message tag: four bytes, compared as a little-endian u32 (the order tags must appear in).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(pub u32);

impl Tag {
    /// Signature.
    pub const SIG: Tag = Tag::from_bytes(*b"SIG\x00");
    /// Protocol version (draft).
    pub const VER: Tag = Tag::from_bytes(*b"VER\x00");
    /// Hash of the server's long-term key (draft request).
    pub const SRV: Tag = Tag::from_bytes(*b"SRV\x00");
    /// Nonce.
    pub const NONC: Tag = Tag::from_bytes(*b"NONC");
    /// Delegation (inside `CERT`).
    pub const DELE: Tag = Tag::from_bytes(*b"DELE");
    /// Message type: 0 request, 1 response (draft).
    pub const TYPE: Tag = Tag::from_bytes(*b"TYPE");
    /// Merkle path.
    pub const PATH: Tag = Tag::from_bytes(*b"PATH");
    /// Radius of the time interval.
    pub const RADI: Tag = Tag::from_bytes(*b"RADI");
    /// Delegated public key (inside `DELE`).
    pub const PUBK: Tag = Tag::from_bytes(*b"PUBK");
    /// Midpoint of the time interval.
    pub const MIDP: Tag = Tag::from_bytes(*b"MIDP");
    /// Signed response.
    pub const SREP: Tag = Tag::from_bytes(*b"SREP");
    /// Versions the server supports (draft, inside `SREP`).
    pub const VERS: Tag = Tag::from_bytes(*b"VERS");
    /// Start of the delegation's validity.
    pub const MINT: Tag = Tag::from_bytes(*b"MINT");
    /// Merkle root.
    pub const ROOT: Tag = Tag::from_bytes(*b"ROOT");
    /// Certificate: the long-term key's signature over `DELE`.
    pub const CERT: Tag = Tag::from_bytes(*b"CERT");
    /// End of the delegation's validity.
    pub const MAXT: Tag = Tag::from_bytes(*b"MAXT");
    /// Index of the request in the Merkle tree.
    pub const INDX: Tag = Tag::from_bytes(*b"INDX");
    /// Padding (draft).
    pub const ZZZZ: Tag = Tag::from_bytes(*b"ZZZZ");
    /// Padding (Google): `PAD\xff`.
    pub const PAD: Tag = Tag::from_bytes(*b"PAD\xff");

    /// From the four bytes as they appear on the wire.
    #[must_use]
    pub const fn from_bytes(b: [u8; 4]) -> Self {
        Tag(u32::from_le_bytes(b))
    }

    /// The four bytes as they appear on the wire.
    #[must_use]
    pub const fn to_bytes(self) -> [u8; 4] {
        self.0.to_le_bytes()
    }
}

impl fmt::Display for Tag {
    /// The printable letters, trailing NULs dropped, other bytes as `\xNN`: `SIG`, `PAD\xff`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.to_bytes();
        let mut end = b.len();
        while end > 0 && b[end - 1] == 0 {
            end -= 1;
        }
        for &c in &b[..end] {
            if c.is_ascii_graphic() {
                write!(f, "{}", c as char)?;
            } else {
                write!(f, "\\x{c:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({self})")
    }
}

/// Why a Roughtime message was rejected, or a request could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoughtimeError {
    /// The datagram or message ends before its header or its declared length.
    Truncated,
    /// A draft packet does not start with `ROUGHTIM`.
    BadMagic,
    /// The draft framing declares fewer bytes than the datagram carries.
    BadFrameLength {
        /// Length in the framing.
        declared: u32,
        /// Bytes after the framing.
        actual: usize,
    },
    /// A message length or value offset is not a multiple of 4.
    Misaligned,
    /// The tag count does not fit the message (its header would be longer than the message).
    BadTagCount(u32),
    /// A value offset is smaller than the one before it.
    OffsetsNotIncreasing,
    /// A value offset points past the end of the message.
    OffsetOutOfBounds,
    /// Tags are not in strictly increasing order.
    TagsNotSorted,
    /// A required tag is absent.
    MissingTag(Tag),
    /// A value has the wrong length for its tag.
    BadValueLength(Tag),
    /// A signed value (plus its context string) is too large to be checked.
    SignedValueTooLarge(Tag),
    /// The draft response's `TYPE` is not 1 (response).
    WrongMessageType(u32),
    /// The `NONC` echoed by the server is not the nonce of the request.
    NonceMismatch,
    /// The request packet given for verification does not carry the request nonce.
    RequestMismatch,
    /// The long-term public key is not a valid Ed25519 key.
    InvalidLongTermKey,
    /// The delegated key (`PUBK`) is not a valid Ed25519 key.
    InvalidDelegatedKey,
    /// `CERT.SIG` is not the long-term key's signature over `DELE`.
    BadDelegationSignature,
    /// `SIG` is not the delegated key's signature over `SREP`.
    BadResponseSignature,
    /// The signed `VER` is not the version that was requested.
    UnsupportedVersion(u32),
    /// `INDX` has bits set beyond the depth of `PATH`.
    MerkleIndexTooLarge,
    /// The Merkle path from the request leaf does not lead to the signed `ROOT`.
    MerklePathMismatch,
    /// `MIDP` is outside the delegation's `[MINT, MAXT]`.
    MidpointOutsideDelegation,
    /// `MIDP` or `RADI` does not fit the time types (beyond the year 2262).
    TimeOutOfRange,
    /// The output buffer is too small.
    BufferTooSmall,
}

impl fmt::Display for RoughtimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoughtimeError::Truncated => f.write_str("truncated Roughtime message"),
            RoughtimeError::BadMagic => f.write_str("packet does not start with ROUGHTIM"),
            RoughtimeError::BadFrameLength { declared, actual } => write!(
                f,
                "framing declares {declared} bytes but {actual} bytes follow it"
            ),
            RoughtimeError::Misaligned => {
                f.write_str("message length or value offset is not a multiple of 4")
            }
            RoughtimeError::BadTagCount(n) => {
                write!(f, "tag count {n} does not fit the message")
            }
            RoughtimeError::OffsetsNotIncreasing => f.write_str("value offsets decrease"),
            RoughtimeError::OffsetOutOfBounds => {
                f.write_str("value offset points past the end of the message")
            }
            RoughtimeError::TagsNotSorted => f.write_str("tags are not strictly increasing"),
            RoughtimeError::MissingTag(t) => write!(f, "missing tag {t}"),
            RoughtimeError::BadValueLength(t) => write!(f, "wrong value length for tag {t}"),
            RoughtimeError::SignedValueTooLarge(t) => {
                write!(f, "signed value {t} is too large to verify")
            }
            RoughtimeError::WrongMessageType(t) => {
                write!(f, "TYPE is {t}, expected {TYPE_RESPONSE} (response)")
            }
            RoughtimeError::NonceMismatch => {
                f.write_str("the response does not echo the request nonce")
            }
            RoughtimeError::RequestMismatch => {
                f.write_str("the request packet does not carry the request nonce")
            }
            RoughtimeError::InvalidLongTermKey => {
                f.write_str("the long-term public key is not a valid Ed25519 key")
            }
            RoughtimeError::InvalidDelegatedKey => {
                f.write_str("the delegated public key (PUBK) is not a valid Ed25519 key")
            }
            RoughtimeError::BadDelegationSignature => {
                f.write_str("bad delegation signature (CERT) by the long-term key")
            }
            RoughtimeError::BadResponseSignature => {
                f.write_str("bad response signature (SREP) by the delegated key")
            }
            RoughtimeError::UnsupportedVersion(v) => {
                write!(f, "unsupported Roughtime version {v:#010x}")
            }
            RoughtimeError::MerkleIndexTooLarge => {
                f.write_str("Merkle index has bits beyond the path depth")
            }
            RoughtimeError::MerklePathMismatch => {
                f.write_str("the request is not in the signed Merkle tree")
            }
            RoughtimeError::MidpointOutsideDelegation => {
                f.write_str("midpoint lies outside the delegation's validity")
            }
            RoughtimeError::TimeOutOfRange => f.write_str("time value out of range"),
            RoughtimeError::BufferTooSmall => f.write_str("output buffer too small"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for RoughtimeError {}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Some(u32::from_le_bytes(a))
}

/// A parsed Roughtime message: a sorted map from [`Tag`] to byte strings, borrowing the input.
///
/// [`Message::parse`] checks the whole header (length a multiple of 4, the tag count fits,
/// offsets 4-aligned, non-decreasing and in bounds, tags strictly increasing), so
/// [`Message::get`] never fails on a parsed message. Values that are messages themselves
/// (`CERT`, `DELE`, `SREP`) are parsed with another [`Message::parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    bytes: &'a [u8],
    count: usize,
}

impl<'a> Message<'a> {
    /// Parses an unframed message (use [`unframe`] first for the draft).
    ///
    /// A message with zero tags has no values; any bytes after its count are ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, RoughtimeError> {
        let n = le_u32(bytes, 0).ok_or(RoughtimeError::Truncated)?;
        if bytes.len() % 4 != 0 {
            return Err(RoughtimeError::Misaligned);
        }
        let count = usize::try_from(n).map_err(|_| RoughtimeError::BadTagCount(n))?;
        let msg = Message { bytes, count };
        if count == 0 {
            return Ok(msg);
        }
        let header = count
            .checked_mul(8)
            .filter(|&h| h <= bytes.len())
            .ok_or(RoughtimeError::BadTagCount(n))?;
        let values_len = bytes.len() - header;
        let mut prev = 0u32;
        for i in 1..count {
            let off = le_u32(bytes, 4 * i).ok_or(RoughtimeError::Truncated)?;
            if off % 4 != 0 {
                return Err(RoughtimeError::Misaligned);
            }
            if off < prev {
                return Err(RoughtimeError::OffsetsNotIncreasing);
            }
            match usize::try_from(off) {
                Ok(o) if o <= values_len => {}
                _ => return Err(RoughtimeError::OffsetOutOfBounds),
            }
            prev = off;
        }
        let mut last: Option<u32> = None;
        for i in 0..count {
            let t = le_u32(bytes, 4 * count + 4 * i).ok_or(RoughtimeError::Truncated)?;
            if last.is_some_and(|l| t <= l) {
                return Err(RoughtimeError::TagsNotSorted);
            }
            last = Some(t);
        }
        Ok(msg)
    }

    /// Number of tags.
    #[must_use]
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the message has no tags.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The message bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    fn tag_at(&self, i: usize) -> Option<Tag> {
        le_u32(self.bytes, 4 * self.count + 4 * i).map(Tag)
    }

    fn value_at(&self, i: usize) -> Option<&'a [u8]> {
        if i >= self.count {
            return None;
        }
        let header = 8 * self.count;
        let values = self.bytes.get(header..)?;
        let start = if i == 0 {
            0
        } else {
            le_u32(self.bytes, 4 * i)? as usize
        };
        let end = if i + 1 == self.count {
            values.len()
        } else {
            le_u32(self.bytes, 4 * (i + 1))? as usize
        };
        values.get(start..end)
    }

    /// The value of `tag`, if present.
    #[must_use]
    pub fn get(&self, tag: Tag) -> Option<&'a [u8]> {
        // Tags are sorted (checked by `parse`): binary search.
        let (mut lo, mut hi) = (0usize, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let t = self.tag_at(mid)?;
            if t == tag {
                return self.value_at(mid);
            } else if t < tag {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        None
    }

    /// The tags and values, in wire order.
    #[must_use]
    pub fn iter(&self) -> MessageIter<'a> {
        MessageIter {
            msg: *self,
            next: 0,
        }
    }

    fn require(&self, tag: Tag) -> Result<&'a [u8], RoughtimeError> {
        self.get(tag).ok_or(RoughtimeError::MissingTag(tag))
    }

    fn require_array<const N: usize>(&self, tag: Tag) -> Result<[u8; N], RoughtimeError> {
        let v = self.require(tag)?;
        let mut a = [0u8; N];
        if v.len() != N {
            return Err(RoughtimeError::BadValueLength(tag));
        }
        a.copy_from_slice(v);
        Ok(a)
    }

    fn require_u32(&self, tag: Tag) -> Result<u32, RoughtimeError> {
        self.require_array::<4>(tag).map(u32::from_le_bytes)
    }

    fn require_u64(&self, tag: Tag) -> Result<u64, RoughtimeError> {
        self.require_array::<8>(tag).map(u64::from_le_bytes)
    }

    fn require_message(&self, tag: Tag) -> Result<Message<'a>, RoughtimeError> {
        Message::parse(self.require(tag)?)
    }
}

impl<'a> IntoIterator for &Message<'a> {
    type Item = (Tag, &'a [u8]);
    type IntoIter = MessageIter<'a>;
    fn into_iter(self) -> MessageIter<'a> {
        self.iter()
    }
}

/// Iterator over the tags and values of a [`Message`].
#[derive(Clone, Debug)]
pub struct MessageIter<'a> {
    msg: Message<'a>,
    next: usize,
}

impl<'a> Iterator for MessageIter<'a> {
    type Item = (Tag, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let i = self.next;
        let item = (self.msg.tag_at(i)?, self.msg.value_at(i)?);
        self.next += 1;
        Some(item)
    }
}

/// Strips the draft framing (`ROUGHTIM`, u32 LE length) from a datagram and checks that the
/// length matches exactly; [`Version::Google`] packets are returned unchanged.
pub fn unframe(version: Version, datagram: &[u8]) -> Result<&[u8], RoughtimeError> {
    if !version.is_framed() {
        return Ok(datagram);
    }
    if datagram.len() >= DRAFT_MAGIC.len() && datagram[..DRAFT_MAGIC.len()] != DRAFT_MAGIC {
        return Err(RoughtimeError::BadMagic);
    }
    let declared = le_u32(datagram, DRAFT_MAGIC.len()).ok_or(RoughtimeError::Truncated)?;
    let body = datagram.get(FRAME_LEN..).ok_or(RoughtimeError::Truncated)?;
    match usize::try_from(declared) {
        Ok(d) if d == body.len() => Ok(body),
        Ok(d) if d < body.len() => Err(RoughtimeError::BadFrameLength {
            declared,
            actual: body.len(),
        }),
        _ => Err(RoughtimeError::Truncated),
    }
}

/// Writes a message with `fields` (sorted by tag) followed by `pad_len` zero bytes under
/// `pad_tag` (which must sort last). Returns the length written.
fn write_message(
    out: &mut [u8],
    fields: &[(Tag, &[u8])],
    pad_tag: Tag,
    pad_len: usize,
) -> Result<usize, RoughtimeError> {
    let count = fields.len() + 1;
    let header = 8 * count;
    let values: usize = fields.iter().map(|(_, v)| v.len()).sum();
    let total = header + values + pad_len;
    let out = out.get_mut(..total).ok_or(RoughtimeError::BufferTooSmall)?;
    let count_u32 = u32::try_from(count).map_err(|_| RoughtimeError::BufferTooSmall)?;
    out[..4].copy_from_slice(&count_u32.to_le_bytes());
    let mut offset = 0usize;
    for (i, (_, v)) in fields.iter().enumerate() {
        offset += v.len();
        let off = u32::try_from(offset).map_err(|_| RoughtimeError::BufferTooSmall)?;
        out[4 + 4 * i..8 + 4 * i].copy_from_slice(&off.to_le_bytes());
    }
    let tags_at = 4 * count;
    for (i, t) in fields.iter().map(|(t, _)| *t).chain([pad_tag]).enumerate() {
        out[tags_at + 4 * i..tags_at + 4 * i + 4].copy_from_slice(&t.to_bytes());
    }
    let mut at = header;
    for (_, v) in fields {
        out[at..at + v.len()].copy_from_slice(v);
        at += v.len();
    }
    out[at..].fill(0);
    Ok(total)
}

/// The `SRV` value for a server: the first 32 bytes of SHA-512(`0xff` ‖ long-term key).
#[must_use]
pub fn srv_value(long_term_key: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha512::new();
    h.update([SRV_TWEAK]);
    h.update(long_term_key);
    let d = h.finalize();
    let mut out = [0u8; 32];
    out.copy_from_slice(&d[..32]);
    out
}

fn encode(
    version: Version,
    nonce: &[u8; 64],
    srv: Option<&[u8; 32]>,
    buf: &mut [u8],
) -> Result<usize, RoughtimeError> {
    if buf.len() < REQUEST_LEN {
        return Err(RoughtimeError::BufferTooSmall);
    }
    match version {
        Version::Google => {
            let fields: [(Tag, &[u8]); 1] = [(Tag::NONC, nonce)];
            let pad = REQUEST_LEN - 16 - nonce.len();
            write_message(buf, &fields, Tag::PAD, pad)
        }
        Version::Draft => {
            let ver = DRAFT_VERSION.to_le_bytes();
            let typ = TYPE_REQUEST.to_le_bytes();
            let nonc = &nonce[..Version::Draft.nonce_len()];
            let with_srv;
            let without_srv;
            let fields: &[(Tag, &[u8])] = match srv {
                Some(s) => {
                    with_srv = [
                        (Tag::VER, &ver[..]),
                        (Tag::SRV, &s[..]),
                        (Tag::NONC, nonc),
                        (Tag::TYPE, &typ[..]),
                    ];
                    &with_srv
                }
                None => {
                    without_srv = [
                        (Tag::VER, &ver[..]),
                        (Tag::NONC, nonc),
                        (Tag::TYPE, &typ[..]),
                    ];
                    &without_srv
                }
            };
            let unpadded =
                8 * (fields.len() + 1) + fields.iter().map(|(_, v)| v.len()).sum::<usize>();
            let pad = REQUEST_LEN - FRAME_LEN - unpadded;
            let (frame, body) = buf.split_at_mut(FRAME_LEN);
            let n = write_message(body, fields, Tag::ZZZZ, pad)?;
            frame[..8].copy_from_slice(&DRAFT_MAGIC);
            let n32 = u32::try_from(n).map_err(|_| RoughtimeError::BufferTooSmall)?;
            frame[8..].copy_from_slice(&n32.to_le_bytes());
            Ok(FRAME_LEN + n)
        }
    }
}

/// Writes a padded request ([`REQUEST_LEN`] bytes) into `buf` and returns its length.
///
/// [`Version::Google`]: `NONC` (all 64 bytes of `nonce`) and `PAD\xff`.
/// [`Version::Draft`]: framing, then `VER`, `NONC` (the first 32 bytes of `nonce`), `TYPE` = 0
/// and `ZZZZ` padding, exactly as roughenough's client writes it.
///
/// Keep the written bytes: [`verify_response`] needs them for the draft, whose Merkle leaf is
/// the whole request.
pub fn encode_request(
    version: Version,
    nonce: &[u8; 64],
    buf: &mut [u8],
) -> Result<usize, RoughtimeError> {
    encode(version, nonce, None, buf)
}

/// Like [`encode_request`], but for the draft also names the server: adds `SRV` =
/// [`srv_value`]`(long_term_key)`, which the server checks against its own key (roughenough
/// drops requests naming another key). For [`Version::Google`] this is [`encode_request`].
pub fn encode_request_for_server(
    version: Version,
    nonce: &[u8; 64],
    long_term_key: &[u8; 32],
    buf: &mut [u8],
) -> Result<usize, RoughtimeError> {
    match version {
        Version::Google => encode(version, nonce, None, buf),
        Version::Draft => encode(version, nonce, Some(&srv_value(long_term_key)), buf),
    }
}

/// The nonce for the next request of a chain: SHA-512(`previous_response` ‖ `blind`).
///
/// Chaining (Roughtime's "causal ordering" design) makes each request depend on the previous
/// server's full response datagram, so the sequence of responses proves they were obtained in
/// that order: if a later server's signed time is earlier than an earlier server's, the chain
/// is cryptographic evidence that one of them misbehaved. `blind` must be fresh random bytes,
/// kept (with the responses) to reveal the chain to a third party; it also keeps the nonce
/// unpredictable to the next server. For the first request of a chain use 64 random bytes.
#[must_use]
pub fn chain_nonce(previous_response: &[u8], blind: &[u8; 64]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(previous_response);
    h.update(blind);
    let mut out = [0u8; 64];
    out.copy_from_slice(&h.finalize());
    out
}

/// A response that passed every check of [`verify_response`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The server's time (`MIDP`), at some instant between sending the request and receiving
    /// the response. Whole seconds for the draft, microseconds for Google.
    pub midpoint: UnixTime,
    /// The server's uncertainty (`RADI`).
    pub radius: SignedDuration,
    /// `midpoint ± radius`. It still has to be widened by the round-trip time by the caller.
    pub interval: TimeInterval,
    /// The version the response was verified as.
    pub version: Version,
    /// The request's position in the server's batch (`INDX`).
    pub merkle_index: u32,
}

fn verify_signature(
    key: &[u8; 32],
    bad_key: RoughtimeError,
    context: &[u8],
    tag: Tag,
    value: &[u8],
    sig: &[u8; 64],
) -> Result<bool, RoughtimeError> {
    // The key is decoded here, once for both signatures (less code on a microcontroller).
    let key = VerifyingKey::from_bytes(key).map_err(|_| bad_key)?;
    let mut buf = [0u8; MAX_SIGNED_LEN];
    let n = context.len() + value.len();
    let signed = buf
        .get_mut(..n)
        .ok_or(RoughtimeError::SignedValueTooLarge(tag))?;
    signed[..context.len()].copy_from_slice(context);
    signed[context.len()..].copy_from_slice(value);
    let sig = Signature::from_bytes(sig);
    Ok(key.verify_strict(signed, &sig).is_ok())
}

/// Walks the Merkle path from `leaf` and returns the root (full SHA-512).
///
/// Leaves are SHA-512(`0x00` ‖ leaf), nodes SHA-512(`0x01` ‖ left ‖ right); bit `i` of `index`
/// says whether the running hash is the right (1) or left (0) child at level `i`. Every `PATH`
/// node is a full 64-byte SHA-512 in both versions: roughenough's draft mode only truncates the
/// final root to 32 bytes. (A server hashing with 32-byte nodes would fail here with
/// [`RoughtimeError::MerklePathMismatch`] once its batches hold more than one request.)
fn merkle_root(leaf: &[u8], mut index: u32, path: &[u8]) -> Result<[u8; 64], RoughtimeError> {
    if path.len() % 64 != 0 || path.len() / 64 > MAX_PATH_DEPTH {
        return Err(RoughtimeError::BadValueLength(Tag::PATH));
    }
    let mut hash = [0u8; 64];
    let mut h = Sha512::new();
    h.update([LEAF_TWEAK]);
    h.update(leaf);
    h.finalize_into((&mut hash).into());
    for node in path.chunks_exact(64) {
        let mut h = Sha512::new();
        h.update([NODE_TWEAK]);
        // One pair of updates with the operands swapped by the index bit: half the code on a
        // microcontroller, where each update is inlined.
        let (left, right): (&[u8], &[u8]) = if index & 1 == 0 {
            (&hash, node)
        } else {
            (node, &hash)
        };
        h.update(left);
        h.update(right);
        h.finalize_into((&mut hash).into());
        index >>= 1;
    }
    if index != 0 {
        return Err(RoughtimeError::MerkleIndexTooLarge);
    }
    Ok(hash)
}

fn to_nanos(value: u64, nanos_per_unit: i64) -> Result<i64, RoughtimeError> {
    i64::try_from(value)
        .ok()
        .and_then(|v| v.checked_mul(nanos_per_unit))
        .ok_or(RoughtimeError::TimeOutOfRange)
}

/// Verifies a response datagram and returns the time it certifies.
///
/// - `request_nonce`: the 64 bytes given to [`encode_request`] (the draft uses the first 32).
/// - `request_packet`: the exact request datagram sent. The draft's Merkle leaf is the whole
///   request, so it must be byte-identical; it is also checked to carry the nonce. Unused for
///   [`Version::Google`], whose leaf is the nonce.
/// - `long_term_key`: the server's Ed25519 public key, obtained out of band.
///
/// Checks, in order: framing (draft), message structure, `TYPE` = 1 (draft), the `NONC` echo
/// (required for the draft, checked if present for Google), `CERT`: the long-term key's
/// signature over context ‖ `DELE`, `SIG`: the delegated key `PUBK`'s signature over context ‖
/// `SREP`, the signed `VER` (draft), the Merkle path from the request leaf through `INDX` and
/// `PATH` to `ROOT` (no index bits may remain past the path), and `MINT` ≤ `MIDP` ≤ `MAXT`
/// (compared in the version's units). `VERS` is not checked: only one version is offered, so
/// there is no downgrade to detect.
///
/// The returned interval is the server's claim only; the caller still has to account for the
/// round trip (the time was read somewhere between sending and receiving).
pub fn verify_response(
    version: Version,
    response: &[u8],
    request_nonce: &[u8; 64],
    request_packet: &[u8],
    long_term_key: &[u8; 32],
) -> Result<Verified, RoughtimeError> {
    let nonce = &request_nonce[..version.nonce_len()];
    let msg = Message::parse(unframe(version, response)?)?;

    if version == Version::Draft {
        let t = msg.require_u32(Tag::TYPE)?;
        if t != TYPE_RESPONSE {
            return Err(RoughtimeError::WrongMessageType(t));
        }
        if msg.require(Tag::NONC)? != nonce {
            return Err(RoughtimeError::NonceMismatch);
        }
        let req = unframe(version, request_packet)
            .and_then(Message::parse)
            .map_err(|_| RoughtimeError::RequestMismatch)?;
        if req.get(Tag::NONC) != Some(nonce) {
            return Err(RoughtimeError::RequestMismatch);
        }
    } else if let Some(echo) = msg.get(Tag::NONC) {
        if echo != nonce {
            return Err(RoughtimeError::NonceMismatch);
        }
    }

    // The delegation: the long-term key signs DELE = {PUBK, MINT, MAXT}.
    let cert = msg.require_message(Tag::CERT)?;
    let cert_sig = cert.require_array::<64>(Tag::SIG)?;
    let dele_bytes = cert.require(Tag::DELE)?;
    if !verify_signature(
        long_term_key,
        RoughtimeError::InvalidLongTermKey,
        version.delegation_context(),
        Tag::DELE,
        dele_bytes,
        &cert_sig,
    )? {
        return Err(RoughtimeError::BadDelegationSignature);
    }
    let dele = Message::parse(dele_bytes)?;
    let pubk = dele.require_array::<32>(Tag::PUBK)?;
    let mint = dele.require_u64(Tag::MINT)?;
    let maxt = dele.require_u64(Tag::MAXT)?;

    // The response: the delegated key signs SREP = {(VER), RADI, MIDP, (VERS), ROOT}.
    let srep_sig = msg.require_array::<64>(Tag::SIG)?;
    let srep_bytes = msg.require(Tag::SREP)?;
    if !verify_signature(
        &pubk,
        RoughtimeError::InvalidDelegatedKey,
        version.response_context(),
        Tag::SREP,
        srep_bytes,
        &srep_sig,
    )? {
        return Err(RoughtimeError::BadResponseSignature);
    }
    let srep = Message::parse(srep_bytes)?;
    if version == Version::Draft {
        let v = srep.require_u32(Tag::VER)?;
        if v != DRAFT_VERSION {
            return Err(RoughtimeError::UnsupportedVersion(v));
        }
    }
    let root = srep.require(Tag::ROOT)?;
    if root.len() != version.root_len() {
        return Err(RoughtimeError::BadValueLength(Tag::ROOT));
    }
    let midp = srep.require_u64(Tag::MIDP)?;
    let radi = srep.require_u32(Tag::RADI)?;

    // The request is in the signed batch.
    let index = msg.require_u32(Tag::INDX)?;
    let path = msg.require(Tag::PATH)?;
    let leaf = match version {
        Version::Google => nonce,
        Version::Draft => request_packet,
    };
    let computed = merkle_root(leaf, index, path)?;
    if computed[..version.root_len()] != *root {
        return Err(RoughtimeError::MerklePathMismatch);
    }

    if midp < mint || midp > maxt {
        return Err(RoughtimeError::MidpointOutsideDelegation);
    }

    let unit = version.nanos_per_unit();
    let midpoint = UnixTime::from_nanos(to_nanos(midp, unit)?);
    let radius = SignedDuration::from_nanos(to_nanos(u64::from(radi), unit)?);
    Ok(Verified {
        midpoint,
        radius,
        interval: TimeInterval::around(midpoint, radius),
        version,
        merkle_index: index,
    })
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    /// Long-term public key printed by `roughenough-server` at start ("Long-term public key")
    /// for `seed: a32049da0ffde0ded92ce10a0230d35fe615ec8461c14986baa63fe3b3bac3db`.
    const SERVER_KEY: &str = "d0756ee69ff5fe96cbcf9273208fec53124b1dd3a24d3910e07c7c54e2473012";

    // Captured from roughenough-server 1.3.0-draft14 on 127.0.0.1. The *_BATCH captures were
    // answered in a batch (16 Google requests, 10 draft requests), so their PATH is not empty.
    /// Captured at Unix time 1795436215 (roughenough-server 1.3.0-draft14 on loopback).
    const GOOGLE_TIME: i64 = 1795436215;
    const GOOGLE_NONCE: &str = concat!(
        "7b54b66836c1fbdd13d2441d9e1434dc62ca677fb68f5fe66a464baadecdbd00576f8d6b5ac3bcc80844b7d50b1cc660",
        "3444bbe7cfcf8fc0aa1ee3c636d9e339",
    );
    const GOOGLE_REQUEST: &str = concat!(
        "02000000400000004e4f4e43504144ff7b54b66836c1fbdd13d2441d9e1434dc62ca677fb68f5fe66a464baadecdbd00",
        "576f8d6b5ac3bcc80844b7d50b1cc6603444bbe7cfcf8fc0aa1ee3c636d9e33900000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000",
    );
    const GOOGLE_RESPONSE: &str = concat!(
        "06000000400000008000000080000000e40000007c010000534947004e4f4e43504154485352455043455254494e4458",
        "71f0cc80c84a115a8c4ad26bbd87660368186a16422ac8168cbe046dc03ab165e4d5f2f27822be10c942b7940d3006fe",
        "d1a75cde28c81289cb71eda9ca7ab5077b54b66836c1fbdd13d2441d9e1434dc62ca677fb68f5fe66a464baadecdbd00",
        "576f8d6b5ac3bcc80844b7d50b1cc6603444bbe7cfcf8fc0aa1ee3c636d9e33903000000040000000c00000052414449",
        "4d494450524f4f54404b4c00bd41d791f060060054db1df937ae5b2f302e22f6345581b9c4149374007f5f40a77d72c2",
        "d8046ba733e13bef59041104b7f38332d312efb974274910d386c204ab44abbf7ceadbd1020000004000000053494700",
        "44454c4573a09fbb1250314228a6e580eec84678d11afca945befb10d08065180992252f2a6b861ca3788c70f6b776b3",
        "3a59025ea067dbae2952041531acc751d18316030300000020000000280000005055424b4d494e544d41585472713cb8",
        "877d055acbb24278fc68be0410a9fc315a3c25063d4af5ff105936d80000000000000000ffffffffffffffff00000000",
    );
    /// Captured at Unix time 1795436215 (roughenough-server 1.3.0-draft14 on loopback).
    const DRAFT_TIME: i64 = 1795436215;
    const DRAFT_NONCE: &str = concat!(
        "fab848c9b657a853ee37c09cbfdd149d0b3807b191dde9b623ccd95281dd18705b48c89b1503903845bba5753945351f",
        "e6b454852760f73529cf01ca8f69dcca",
    );
    const DRAFT_REQUEST: &str = concat!(
        "524f55474854494df403000004000000040000002400000028000000564552004e4f4e43545950455a5a5a5a0c000080",
        "fab848c9b657a853ee37c09cbfdd149d0b3807b191dde9b623ccd95281dd187000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000",
    );
    const DRAFT_RESPONSE: &str = concat!(
        "524f55474854494d980100000700000040000000600000006400000064000000c40000005c010000534947004e4f4e43",
        "54595045504154485352455043455254494e4458340d4717ffdba252d27d298eedb15240ee4d3a6585d7aa0b9deaac55",
        "914d62007a0d1f24a147a1646f0b7d48c77c84a6afd6406e752ec5f55d2925824a70fe0dfab848c9b657a853ee37c09c",
        "bfdd149d0b3807b191dde9b623ccd95281dd187001000000050000000400000008000000100000001800000056455200",
        "524144494d49445056455253524f4f540c00008005000000b72e046b00000000000000000c000080b45851a85ffedce9",
        "0d65755bb87d1d6ef6b107fecae1c67e17b046a422c879af02000000400000005349470044454c457e3541a8ee0eee02",
        "eda8dfa50450f77dbc88e3bcf3fe64405906f6c60a753fe0f5c118ff551cbe80852b40d964a8e44c30fad3217a75300c",
        "a9a17a88ef0e12010300000020000000280000005055424b4d494e544d41585421935323464c24e6421a01ace5740680",
        "ca20977834bf0a3ffccd607c612766310000000000000000ffffffffffffffff00000000",
    );
    /// Captured at Unix time 1795436215 (roughenough-server 1.3.0-draft14 on loopback).
    const DRAFT_SRV_TIME: i64 = 1795436215;
    const DRAFT_SRV_NONCE: &str = concat!(
        "e45bf5817ddf94aa2f7a407071f0eedc6beb98f768b4cd33d1176d44d1563a45a5d7212290eb7670c6786b13591aedac",
        "86478993895e8b24e612014abaa6ba04",
    );
    const DRAFT_SRV_REQUEST: &str = concat!(
        "524f55474854494df4030000050000000400000024000000440000004800000056455200535256004e4f4e4354595045",
        "5a5a5a5a0c0000804f3ed5772a24f0bf8c2a7fe07da858b646114aaed818cace6accfe25576ae774e45bf5817ddf94aa",
        "2f7a407071f0eedc6beb98f768b4cd33d1176d44d1563a45000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000",
    );
    const DRAFT_SRV_RESPONSE: &str = concat!(
        "524f55474854494d980100000700000040000000600000006400000064000000c40000005c010000534947004e4f4e43",
        "54595045504154485352455043455254494e445852b189b37f0579a343e43798cfde19df347d3c25a739fb4ba1603eca",
        "05d5a6c2d14fbbd028a1690ccf2437c6b995db1235c02aae99901b177096ac9442ef5a04e45bf5817ddf94aa2f7a4070",
        "71f0eedc6beb98f768b4cd33d1176d44d1563a4501000000050000000400000008000000100000001800000056455200",
        "524144494d49445056455253524f4f540c00008005000000b72e046b00000000000000000c000080174076e9a00ef6c5",
        "a45dd778ceb4f0830e952e413158c988276681015c3d49c102000000400000005349470044454c457e3541a8ee0eee02",
        "eda8dfa50450f77dbc88e3bcf3fe64405906f6c60a753fe0f5c118ff551cbe80852b40d964a8e44c30fad3217a75300c",
        "a9a17a88ef0e12010300000020000000280000005055424b4d494e544d41585421935323464c24e6421a01ace5740680",
        "ca20977834bf0a3ffccd607c612766310000000000000000ffffffffffffffff00000000",
    );
    /// Captured at Unix time 1795436218 (roughenough-server 1.3.0-draft14 on loopback).
    const GOOGLE_BATCH_TIME: i64 = 1795436218;
    const GOOGLE_BATCH_NONCE: &str = concat!(
        "26ed0a0ba5a44863d9bcda684e42b161f190b530c7e766981a51c0c1e88d751d1baff179a828cdf6bc3e54ab5f06bece",
        "6d68e9598bc6bc730e5c06100cd5300d",
    );
    const GOOGLE_BATCH_REQUEST: &str = concat!(
        "02000000400000004e4f4e43504144ff26ed0a0ba5a44863d9bcda684e42b161f190b530c7e766981a51c0c1e88d751d",
        "1baff179a828cdf6bc3e54ab5f06bece6d68e9598bc6bc730e5c06100cd5300d00000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000",
    );
    const GOOGLE_BATCH_RESPONSE: &str = concat!(
        "06000000400000008000000080010000e40100007c020000534947004e4f4e43504154485352455043455254494e4458",
        "a712451d46fb09647b354b6a7d6fd1cf36e22037463f953880467261d8e662a469e05ca0874ae36cfb8544aa70156599",
        "e4dbcad93454fe72b7fd89903c7d1b0826ed0a0ba5a44863d9bcda684e42b161f190b530c7e766981a51c0c1e88d751d",
        "1baff179a828cdf6bc3e54ab5f06bece6d68e9598bc6bc730e5c06100cd5300d25966b4e471536a5c8e663806dfbdada",
        "159da3a0355fc545473dc78265c5052db9684779dab36eabb423396e98944a170243baacc437f15c97f7ecf7dd6228df",
        "e3e25a001903c5f97972dbd9ab79b4dd296ab809d99e9ab75a6ed27ed5ef569ea2d0ff1a244da0e821493940de5c7e3b",
        "14f47c2348d464d8167506f35e0326ffb9ec96174bbd8b69f8bade8ad7feec9b5d353c446615aac75bb8dff4e1073b79",
        "223571ac41c4489599804c565aa49488130a6b63097af17a3c4c9929b248fb5c2340ecdcd191c12410e3a53b8e21f444",
        "52501b8009c0d4e1480df1a17220e232b8ae3d385bb6c2d9efc4d99d2a5673871c8cdd3cacb7bed38aa342a28b1e96b0",
        "03000000040000000c000000524144494d494450524f4f54404b4c000e310b92f060060080a2991495955905dcf6597f",
        "83b14b7543a204d1bd3c444266f2072377fe225a854e704767f190d7e0e249817a2e5201668b5ec1bd543ed26c1e7404",
        "936c648202000000400000005349470044454c4573a09fbb1250314228a6e580eec84678d11afca945befb10d0806518",
        "0992252f2a6b861ca3788c70f6b776b33a59025ea067dbae2952041531acc751d1831603030000002000000028000000",
        "5055424b4d494e544d41585472713cb8877d055acbb24278fc68be0410a9fc315a3c25063d4af5ff105936d800000000",
        "00000000ffffffffffffffff0d000000",
    );
    /// Captured at Unix time 1795436218 (roughenough-server 1.3.0-draft14 on loopback).
    const DRAFT_BATCH_TIME: i64 = 1795436218;
    const DRAFT_BATCH_NONCE: &str = concat!(
        "d369286ac86b60fa920f6464d26becacd9f4c8bd885b783407cdcaa74fafd45a8b56b364b63f6256c3ceef26278a1c77",
        "99d4243a8149b5ede5ce1d890b5c7236",
    );
    const DRAFT_BATCH_REQUEST: &str = concat!(
        "524f55474854494df403000004000000040000002400000028000000564552004e4f4e43545950455a5a5a5a0c000080",
        "d369286ac86b60fa920f6464d26becacd9f4c8bd885b783407cdcaa74fafd45a00000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000",
    );
    const DRAFT_BATCH_RESPONSE: &str = concat!(
        "524f55474854494d980200000700000040000000600000006400000064010000c40100005c020000534947004e4f4e43",
        "54595045504154485352455043455254494e44583122fc107a5ad558587e2d358852b6fdc1dfb2ce7d3fd43a142ab142",
        "e6512c40aeeba70a80640dd5360e048ced3a41449f312a95d267a3fbb393a0b60d58eb0ed369286ac86b60fa920f6464",
        "d26becacd9f4c8bd885b783407cdcaa74fafd45a01000000b57b7d1c60e01989fd89df5a7efb28a622f22d8d9e3abfb8",
        "72d5a0f7df2f99c98c660b26aa63cec933fadf7bba443004ba4d70810679f9d9aeee2e184be41a720000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000942814804e8090627bce7470ed4571652d1bc73d0005b598",
        "7213d3f13cc4a7d8742005d8edd7a44f3131d31aabfe91eeca20fee01943da42bce6c1966d3834ef0500000004000000",
        "08000000100000001800000056455200524144494d49445056455253524f4f540c00008005000000ba2e046b00000000",
        "000000000c000080e8584d1f8b63b1f64d3349380136c6de0d148cbed63dbcc5bd89accaec713db50200000040000000",
        "5349470044454c457e3541a8ee0eee02eda8dfa50450f77dbc88e3bcf3fe64405906f6c60a753fe0f5c118ff551cbe80",
        "852b40d964a8e44c30fad3217a75300ca9a17a88ef0e12010300000020000000280000005055424b4d494e544d415854",
        "21935323464c24e6421a01ace5740680ca20977834bf0a3ffccd607c612766310000000000000000ffffffffffffffff",
        "09000000",
    );

    fn unhex(s: &str) -> Vec<u8> {
        assert!(s.len() % 2 == 0);
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn arr<const N: usize>(s: &str) -> [u8; N] {
        unhex(s).try_into().unwrap()
    }

    struct Capture {
        name: &'static str,
        version: Version,
        time: i64,
        nonce: [u8; 64],
        request: Vec<u8>,
        response: Vec<u8>,
        index: u32,
    }

    fn captures() -> Vec<Capture> {
        let c = |name, version, time, nonce, request, response, index| Capture {
            name,
            version,
            time,
            nonce: arr::<64>(nonce),
            request: unhex(request),
            response: unhex(response),
            index,
        };
        std::vec![
            c(
                "google",
                Version::Google,
                GOOGLE_TIME,
                GOOGLE_NONCE,
                GOOGLE_REQUEST,
                GOOGLE_RESPONSE,
                0
            ),
            c(
                "draft",
                Version::Draft,
                DRAFT_TIME,
                DRAFT_NONCE,
                DRAFT_REQUEST,
                DRAFT_RESPONSE,
                0
            ),
            c(
                "draft_srv",
                Version::Draft,
                DRAFT_SRV_TIME,
                DRAFT_SRV_NONCE,
                DRAFT_SRV_REQUEST,
                DRAFT_SRV_RESPONSE,
                0
            ),
            c(
                "google_batch",
                Version::Google,
                GOOGLE_BATCH_TIME,
                GOOGLE_BATCH_NONCE,
                GOOGLE_BATCH_REQUEST,
                GOOGLE_BATCH_RESPONSE,
                13
            ),
            c(
                "draft_batch",
                Version::Draft,
                DRAFT_BATCH_TIME,
                DRAFT_BATCH_NONCE,
                DRAFT_BATCH_REQUEST,
                DRAFT_BATCH_RESPONSE,
                9
            ),
        ]
    }

    fn key() -> [u8; 32] {
        arr::<32>(SERVER_KEY)
    }

    fn verify(c: &Capture, response: &[u8]) -> Result<Verified, RoughtimeError> {
        verify_response(c.version, response, &c.nonce, &c.request, &key())
    }

    /// Byte range of `tag`'s value inside `outer` (`inner` is a sub-slice of `outer`).
    fn range_in(outer: &[u8], inner: &[u8]) -> core::ops::Range<usize> {
        let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
        start..start + inner.len()
    }

    /// Byte range, within the datagram, of a top-level tag's value.
    fn top_range(c: &Capture, tag: Tag) -> core::ops::Range<usize> {
        let msg = Message::parse(unframe(c.version, &c.response).unwrap()).unwrap();
        range_in(&c.response, msg.get(tag).unwrap())
    }

    /// Byte range, within the datagram, of a tag inside a nested message.
    fn nested_range(c: &Capture, outer: Tag, tag: Tag) -> core::ops::Range<usize> {
        let msg = Message::parse(unframe(c.version, &c.response).unwrap()).unwrap();
        let inner = Message::parse(msg.get(outer).unwrap()).unwrap();
        range_in(&c.response, inner.get(tag).unwrap())
    }

    fn flipped(bytes: &[u8], at: usize) -> Vec<u8> {
        let mut v = bytes.to_vec();
        v[at] ^= 0x01;
        v
    }

    /// An independent message encoder (fields must be sorted).
    fn msg(fields: &[(Tag, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(fields.len() as u32).to_le_bytes());
        let mut off = 0u32;
        for (_, v) in &fields[..fields.len().saturating_sub(1)] {
            off += v.len() as u32;
            out.extend_from_slice(&off.to_le_bytes());
        }
        for (t, _) in fields {
            out.extend_from_slice(&t.to_bytes());
        }
        for (_, v) in fields {
            out.extend_from_slice(v);
        }
        out
    }

    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *state >> 33
    }

    #[test]
    fn google_request_layout() {
        let nonce: [u8; 64] = core::array::from_fn(|i| i as u8);
        let mut buf = [0xaau8; 1100];
        let n = encode_request(Version::Google, &nonce, &mut buf).unwrap();
        assert_eq!(n, REQUEST_LEN);
        let m = Message::parse(&buf[..n]).unwrap();
        let tags: Vec<Tag> = m.iter().map(|(t, _)| t).collect();
        assert_eq!(tags, [Tag::NONC, Tag::PAD]);
        assert_eq!(m.get(Tag::NONC), Some(&nonce[..]));
        assert!(m.get(Tag::PAD).unwrap().iter().all(|&b| b == 0));
        assert_eq!(m.get(Tag::PAD).unwrap().len(), 944);
        assert_eq!(buf[n], 0xaa, "nothing written past the request");
    }

    #[test]
    fn draft_request_layout() {
        let nonce: [u8; 64] = core::array::from_fn(|i| i as u8);
        let mut buf = [0u8; REQUEST_LEN];
        let n = encode_request(Version::Draft, &nonce, &mut buf).unwrap();
        assert_eq!(n, REQUEST_LEN);
        assert_eq!(&buf[..8], b"ROUGHTIM");
        assert_eq!(&buf[8..12], &1012u32.to_le_bytes());
        let m = Message::parse(unframe(Version::Draft, &buf).unwrap()).unwrap();
        let tags: Vec<Tag> = m.iter().map(|(t, _)| t).collect();
        assert_eq!(tags, [Tag::VER, Tag::NONC, Tag::TYPE, Tag::ZZZZ]);
        assert_eq!(m.get(Tag::VER), Some(&[0x0c, 0, 0, 0x80][..]));
        assert_eq!(m.get(Tag::NONC), Some(&nonce[..32]));
        assert_eq!(m.get(Tag::TYPE), Some(&[0u8; 4][..]));
        assert_eq!(m.get(Tag::SRV), None);

        let k = key();
        let n = encode_request_for_server(Version::Draft, &nonce, &k, &mut buf).unwrap();
        assert_eq!(n, REQUEST_LEN);
        let m = Message::parse(unframe(Version::Draft, &buf).unwrap()).unwrap();
        let tags: Vec<Tag> = m.iter().map(|(t, _)| t).collect();
        assert_eq!(tags, [Tag::VER, Tag::SRV, Tag::NONC, Tag::TYPE, Tag::ZZZZ]);
        assert_eq!(m.get(Tag::SRV), Some(&srv_value(&k)[..]));
        let mut h = Sha512::new();
        h.update([0xff]);
        h.update(k);
        assert_eq!(srv_value(&k)[..], h.finalize()[..32]);
    }

    #[test]
    fn request_buffer_too_small() {
        let mut buf = [0u8; REQUEST_LEN - 1];
        for v in [Version::Google, Version::Draft] {
            assert_eq!(
                encode_request(v, &[1; 64], &mut buf),
                Err(RoughtimeError::BufferTooSmall)
            );
        }
    }

    #[test]
    fn requests_match_what_the_server_accepted() {
        let mut buf = [0u8; REQUEST_LEN];
        for c in captures() {
            let n = if c.name == "draft_srv" {
                encode_request_for_server(c.version, &c.nonce, &key(), &mut buf).unwrap()
            } else {
                encode_request(c.version, &c.nonce, &mut buf).unwrap()
            };
            assert_eq!(&buf[..n], &c.request[..], "{}", c.name);
        }
    }

    #[test]
    fn real_responses_verify() {
        for c in captures() {
            let v = verify(&c, &c.response).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(v.version, c.version);
            assert_eq!(v.merkle_index, c.index, "{}", c.name);
            assert_eq!(v.radius, SignedDuration::from_secs(5), "{}", c.name);
            assert_eq!(
                v.interval,
                TimeInterval::around(v.midpoint, SignedDuration::from_secs(5))
            );
            let captured = UnixTime::from_secs(c.time);
            let off = v.midpoint.since(captured).abs();
            assert!(off <= SignedDuration::from_secs(2), "{}: {off}", c.name);
            if c.version == Version::Draft {
                assert_eq!(v.midpoint.subsec_nanos(), 0, "draft MIDP is in seconds");
            }
        }
    }

    #[test]
    fn batched_responses_have_a_path() {
        for c in captures() {
            let msg = Message::parse(unframe(c.version, &c.response).unwrap()).unwrap();
            let path = msg.get(Tag::PATH).unwrap();
            if c.name.ends_with("batch") {
                // roughenough sends full 64-byte SHA-512 nodes for both versions.
                assert_eq!(path.len(), 4 * 64, "{}", c.name);
            } else {
                assert!(path.is_empty());
            }
        }
    }

    #[test]
    fn flipped_signatures_are_rejected() {
        for c in captures() {
            let sig = top_range(&c, Tag::SIG);
            for at in [sig.start, sig.start + 40, sig.end - 1] {
                assert_eq!(
                    verify(&c, &flipped(&c.response, at)),
                    Err(RoughtimeError::BadResponseSignature),
                    "{}",
                    c.name
                );
            }
            let srep = top_range(&c, Tag::SREP);
            for at in [srep.start + 40, srep.end - 1] {
                assert_eq!(
                    verify(&c, &flipped(&c.response, at)),
                    Err(RoughtimeError::BadResponseSignature),
                    "{}",
                    c.name
                );
            }
            let cert_sig = nested_range(&c, Tag::CERT, Tag::SIG);
            let dele = nested_range(&c, Tag::CERT, Tag::DELE);
            for at in [
                cert_sig.start,
                cert_sig.end - 1,
                dele.start + 30,
                dele.end - 1,
            ] {
                assert_eq!(
                    verify(&c, &flipped(&c.response, at)),
                    Err(RoughtimeError::BadDelegationSignature),
                    "{}",
                    c.name
                );
            }
        }
    }

    #[test]
    fn flipped_merkle_path_is_rejected() {
        for c in captures().into_iter().filter(|c| c.name.ends_with("batch")) {
            let path = top_range(&c, Tag::PATH);
            for at in (path.start..path.end).step_by(17) {
                assert_eq!(
                    verify(&c, &flipped(&c.response, at)),
                    Err(RoughtimeError::MerklePathMismatch),
                    "{} at {at}",
                    c.name
                );
            }
            let indx = top_range(&c, Tag::INDX);
            assert_eq!(
                verify(&c, &flipped(&c.response, indx.start)),
                Err(RoughtimeError::MerklePathMismatch)
            );
            let mut r = c.response.clone();
            r[indx.start] = 16; // beyond a depth-4 path
            assert_eq!(verify(&c, &r), Err(RoughtimeError::MerkleIndexTooLarge));
        }
        // With an empty path, any non-zero index is out of range.
        for c in captures()
            .into_iter()
            .filter(|c| !c.name.ends_with("batch"))
        {
            let indx = top_range(&c, Tag::INDX);
            assert_eq!(
                verify(&c, &flipped(&c.response, indx.start)),
                Err(RoughtimeError::MerkleIndexTooLarge)
            );
        }
    }

    #[test]
    fn wrong_nonce_is_rejected() {
        for c in captures() {
            let mut other = c.nonce;
            other[5] ^= 0x80;
            assert_eq!(
                verify_response(c.version, &c.response, &other, &c.request, &key()),
                Err(RoughtimeError::NonceMismatch),
                "{}",
                c.name
            );
            // A flipped echo is caught too.
            let echo = top_range(&c, Tag::NONC);
            assert_eq!(
                verify(&c, &flipped(&c.response, echo.start)),
                Err(RoughtimeError::NonceMismatch)
            );
        }
        // Google: a response without the echo is still bound to the nonce by the Merkle leaf.
        let c = &captures()[0];
        let mut other = c.nonce;
        other[63] ^= 1; // the echo is dropped below, so only the leaf can tell
        let parsed = Message::parse(&c.response).unwrap();
        let fields: Vec<(Tag, &[u8])> = parsed.iter().filter(|(t, _)| *t != Tag::NONC).collect();
        let stripped = msg(&fields);
        assert!(verify(c, &stripped).is_ok());
        assert_eq!(
            verify_response(Version::Google, &stripped, &other, &[], &key()),
            Err(RoughtimeError::MerklePathMismatch)
        );
    }

    #[test]
    fn draft_request_packet_must_be_the_one_sent() {
        for c in captures()
            .into_iter()
            .filter(|c| c.version == Version::Draft)
        {
            // A byte of padding changed: same nonce, different leaf.
            let mut req = c.request.clone();
            req[1000] = 1;
            assert_eq!(
                verify_response(c.version, &c.response, &c.nonce, &req, &key()),
                Err(RoughtimeError::MerklePathMismatch)
            );
            // Another request entirely.
            let mut buf = [0u8; REQUEST_LEN];
            encode_request(Version::Draft, &[9; 64], &mut buf).unwrap();
            assert_eq!(
                verify_response(c.version, &c.response, &c.nonce, &buf, &key()),
                Err(RoughtimeError::RequestMismatch)
            );
            assert_eq!(
                verify_response(c.version, &c.response, &c.nonce, &[], &key()),
                Err(RoughtimeError::RequestMismatch)
            );
        }
    }

    #[test]
    fn wrong_key_is_rejected() {
        let other = SigningKey::from_bytes(&[3; 32]).verifying_key().to_bytes();
        for c in captures() {
            assert_eq!(
                verify_response(c.version, &c.response, &c.nonce, &c.request, &other),
                Err(RoughtimeError::BadDelegationSignature),
                "{}",
                c.name
            );
        }
        // A key that is not a curve point.
        let bad = (0u8..=255)
            .map(|i| {
                let mut k = [0u8; 32];
                k[0] = i;
                k[31] = 0x7f;
                k
            })
            .find(|k| VerifyingKey::from_bytes(k).is_err())
            .unwrap();
        let c = &captures()[0];
        assert_eq!(
            verify_response(c.version, &c.response, &c.nonce, &c.request, &bad),
            Err(RoughtimeError::InvalidLongTermKey)
        );
    }

    #[test]
    fn wrong_version_is_rejected() {
        for c in captures() {
            let other = match c.version {
                Version::Google => Version::Draft,
                Version::Draft => Version::Google,
            };
            assert!(verify_response(other, &c.response, &c.nonce, &c.request, &key()).is_err());
        }
        let c = &captures()[0];
        assert_eq!(
            verify_response(Version::Draft, &c.response, &c.nonce, &c.request, &key()),
            Err(RoughtimeError::BadMagic)
        );
    }

    #[test]
    fn truncation_at_every_length_is_rejected() {
        for c in captures() {
            for len in 0..c.response.len() {
                assert!(verify(&c, &c.response[..len]).is_err(), "{} {len}", c.name);
            }
        }
    }

    #[test]
    fn framing_rules() {
        let c = &captures()[1];
        let mut long = c.response.clone();
        long.extend_from_slice(&[0; 4]);
        assert_eq!(
            verify(c, &long),
            Err(RoughtimeError::BadFrameLength {
                declared: (c.response.len() - 12) as u32,
                actual: c.response.len() - 8
            })
        );
        assert_eq!(
            unframe(Version::Draft, b"ROUGHTIM"),
            Err(RoughtimeError::Truncated)
        );
        assert_eq!(
            unframe(Version::Draft, b"ROUGH"),
            Err(RoughtimeError::Truncated)
        );
        assert_eq!(
            unframe(Version::Draft, b"ROUGHTIX\0\0\0\0"),
            Err(RoughtimeError::BadMagic)
        );
        assert_eq!(
            unframe(Version::Draft, b"ROUGHTIM\x04\0\0\0"),
            Err(RoughtimeError::Truncated)
        );
        assert_eq!(
            unframe(Version::Draft, b"ROUGHTIM\x04\0\0\0abcd"),
            Ok(&b"abcd"[..])
        );
        assert_eq!(unframe(Version::Google, b"xyz"), Ok(&b"xyz"[..]));
    }

    #[test]
    fn message_parsing_rules() {
        use RoughtimeError as E;
        assert_eq!(Message::parse(&[]), Err(E::Truncated));
        assert_eq!(Message::parse(&[1, 0, 0]), Err(E::Truncated));
        assert_eq!(Message::parse(&[0, 0, 0, 0, 0]), Err(E::Misaligned));
        let empty = Message::parse(&[0, 0, 0, 0]).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.get(Tag::NONC), None);
        assert_eq!(empty.iter().count(), 0);
        // One tag: no offsets.
        let one = msg(&[(Tag::NONC, b"abcdefgh")]);
        let m = Message::parse(&one).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m.get(Tag::NONC), Some(&b"abcdefgh"[..]));
        assert_eq!(m.get(Tag::PAD), None);
        // Header longer than the message.
        assert_eq!(
            Message::parse(&[2, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
            Err(E::BadTagCount(2))
        );
        assert_eq!(
            Message::parse(&[0xff, 0xff, 0xff, 0xff]),
            Err(E::BadTagCount(u32::MAX))
        );
        let good = msg(&[
            (Tag::SIG, b"1234"),
            (Tag::NONC, b""),
            (Tag::PATH, b"abcdefgh"),
        ]);
        let m = Message::parse(&good).unwrap();
        let all: Vec<(Tag, &[u8])> = m.iter().collect();
        assert_eq!(
            all,
            [
                (Tag::SIG, &b"1234"[..]),
                (Tag::NONC, &b""[..]),
                (Tag::PATH, &b"abcdefgh"[..])
            ]
        );
        assert_eq!(m.get(Tag::NONC), Some(&b""[..]));
        assert_eq!((&m).into_iter().count(), 3);
        // Offsets: at 4 (4), 8 (4).
        let mut bad = good.clone();
        bad[4] = 2;
        assert_eq!(Message::parse(&bad), Err(E::Misaligned));
        let mut bad = good.clone();
        bad[4] = 8;
        bad[8] = 4;
        assert_eq!(Message::parse(&bad), Err(E::OffsetsNotIncreasing));
        let mut bad = good.clone();
        bad[8] = 16;
        assert_eq!(Message::parse(&bad), Err(E::OffsetOutOfBounds));
        // Tags at 12, 16, 20.
        let mut bad = good.clone();
        bad[16..20].copy_from_slice(b"SIG\0");
        assert_eq!(Message::parse(&bad), Err(E::TagsNotSorted));
        let mut bad = good.clone();
        bad[20..24].copy_from_slice(b"NONC");
        assert_eq!(Message::parse(&bad), Err(E::TagsNotSorted));
    }

    #[test]
    fn tag_order_and_display() {
        let order = [
            Tag::SIG,
            Tag::VER,
            Tag::SRV,
            Tag::NONC,
            Tag::DELE,
            Tag::TYPE,
            Tag::PATH,
            Tag::RADI,
            Tag::PUBK,
            Tag::MIDP,
            Tag::SREP,
            Tag::VERS,
            Tag::MINT,
            Tag::ROOT,
            Tag::CERT,
            Tag::MAXT,
            Tag::INDX,
            Tag::ZZZZ,
            Tag::PAD,
        ];
        assert!(order.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(Tag::SIG.0, 0x0047_4953);
        assert_eq!(Tag::NONC.0, 0x434e_4f4e);
        assert_eq!(std::format!("{}", Tag::SIG), "SIG");
        assert_eq!(std::format!("{}", Tag::PAD), "PAD\\xff");
        assert_eq!(std::format!("{:?}", Tag::NONC), "Tag(NONC)");
        assert_eq!(
            std::format!("{}", RoughtimeError::MissingTag(Tag::MIDP)),
            "missing tag MIDP"
        );
    }

    #[test]
    fn chain_nonce_is_sha512_of_response_and_blind() {
        let c = &captures()[1];
        let blind = [0x5a; 64];
        let mut h = Sha512::new();
        h.update(&c.response);
        h.update(blind);
        assert_eq!(chain_nonce(&c.response, &blind)[..], h.finalize()[..]);
        assert_ne!(
            chain_nonce(&c.response, &blind),
            chain_nonce(&c.response, &[0x5b; 64])
        );
        assert_ne!(
            chain_nonce(&c.response, &blind),
            chain_nonce(&c.response[1..], &blind)
        );
    }

    /// Parameters of a synthetic response signed by test keys.
    struct Synth {
        version: Version,
        mint: u64,
        maxt: u64,
        midp: u64,
        radi: u32,
        ver: u32,
        typ: u32,
        drop: Option<Tag>,
    }

    impl Synth {
        fn new(version: Version) -> Self {
            let midp = match version {
                Version::Google => 1_700_000_000_000_000,
                Version::Draft => 1_700_000_000,
            };
            Synth {
                version,
                mint: midp - 10,
                maxt: midp + 10,
                midp,
                radi: 3,
                ver: DRAFT_VERSION,
                typ: TYPE_RESPONSE,
                drop: None,
            }
        }
    }

    const LONG_TERM_SEED: [u8; 32] = [0x11; 32];
    const ONLINE_SEED: [u8; 32] = [0x22; 32];

    /// Builds (request, response) for nonce `[0x42; 64]`.
    fn synth(s: &Synth) -> (Vec<u8>, Vec<u8>) {
        let nonce = [0x42u8; 64];
        let mut req = [0u8; REQUEST_LEN];
        encode_request(s.version, &nonce, &mut req).unwrap();
        let lt = SigningKey::from_bytes(&LONG_TERM_SEED);
        let online = SigningKey::from_bytes(&ONLINE_SEED);
        let keep = |f: &[(Tag, &[u8])]| -> Vec<u8> {
            let f: Vec<(Tag, &[u8])> = f
                .iter()
                .copied()
                .filter(|(t, _)| Some(*t) != s.drop)
                .collect();
            msg(&f)
        };
        let pubk = online.verifying_key().to_bytes();
        let dele = keep(&[
            (Tag::PUBK, &pubk),
            (Tag::MINT, &s.mint.to_le_bytes()),
            (Tag::MAXT, &s.maxt.to_le_bytes()),
        ]);
        let mut signed = s.version.delegation_context().to_vec();
        signed.extend_from_slice(&dele);
        let cert_sig = lt.sign(&signed).to_bytes();
        let cert = keep(&[(Tag::SIG, &cert_sig), (Tag::DELE, &dele)]);
        let nonc = &nonce[..s.version.nonce_len()];
        let leaf: &[u8] = match s.version {
            Version::Google => nonc,
            Version::Draft => &req,
        };
        let mut h = Sha512::new();
        h.update([0u8]);
        h.update(leaf);
        let root_full = h.finalize();
        let root = &root_full[..s.version.root_len()];
        let (radi, midp, ver) = (
            s.radi.to_le_bytes(),
            s.midp.to_le_bytes(),
            s.ver.to_le_bytes(),
        );
        let srep = match s.version {
            Version::Google => keep(&[(Tag::RADI, &radi), (Tag::MIDP, &midp), (Tag::ROOT, root)]),
            Version::Draft => keep(&[
                (Tag::VER, &ver),
                (Tag::RADI, &radi),
                (Tag::MIDP, &midp),
                (Tag::VERS, &ver),
                (Tag::ROOT, root),
            ]),
        };
        let mut signed = s.version.response_context().to_vec();
        signed.extend_from_slice(&srep);
        let sig = online.sign(&signed).to_bytes();
        let typ = s.typ.to_le_bytes();
        let indx = 0u32.to_le_bytes();
        let mut fields: Vec<(Tag, &[u8])> = std::vec![(Tag::SIG, &sig), (Tag::NONC, nonc)];
        if s.version == Version::Draft {
            fields.push((Tag::TYPE, &typ));
        }
        fields.extend_from_slice(&[
            (Tag::PATH, &[][..]),
            (Tag::SREP, &srep),
            (Tag::CERT, &cert),
            (Tag::INDX, &indx),
        ]);
        let body = keep(&fields);
        let response = match s.version {
            Version::Google => body,
            Version::Draft => {
                let mut r = DRAFT_MAGIC.to_vec();
                r.extend_from_slice(&(body.len() as u32).to_le_bytes());
                r.extend_from_slice(&body);
                r
            }
        };
        (req.to_vec(), response)
    }

    fn check(s: &Synth) -> Result<Verified, RoughtimeError> {
        let (req, resp) = synth(s);
        let lt = SigningKey::from_bytes(&LONG_TERM_SEED)
            .verifying_key()
            .to_bytes();
        verify_response(s.version, &resp, &[0x42; 64], &req, &lt)
    }

    #[test]
    fn synthetic_responses_follow_the_rules() {
        use RoughtimeError as E;
        for v in [Version::Google, Version::Draft] {
            let base = Synth::new(v);
            let ok = check(&base).unwrap();
            let unit = match v {
                Version::Google => 1_000,
                Version::Draft => 1_000_000_000,
            };
            assert_eq!(ok.midpoint.as_nanos(), base.midp as i64 * unit);
            assert_eq!(ok.radius.as_nanos(), 3 * unit);
            assert_eq!(ok.midpoint.as_secs(), 1_700_000_000);

            let s = Synth {
                mint: base.midp + 1,
                ..Synth::new(v)
            };
            assert_eq!(check(&s), Err(E::MidpointOutsideDelegation));
            let s = Synth {
                maxt: base.midp - 1,
                ..Synth::new(v)
            };
            assert_eq!(check(&s), Err(E::MidpointOutsideDelegation));
            let s = Synth {
                mint: base.midp,
                maxt: base.midp,
                ..Synth::new(v)
            };
            assert!(check(&s).is_ok(), "bounds are inclusive");
            let s = Synth {
                midp: u64::MAX,
                maxt: u64::MAX,
                ..Synth::new(v)
            };
            assert_eq!(check(&s), Err(E::TimeOutOfRange));
            for tag in [
                Tag::SIG,
                Tag::CERT,
                Tag::DELE,
                Tag::PUBK,
                Tag::MINT,
                Tag::MAXT,
                Tag::SREP,
                Tag::MIDP,
                Tag::RADI,
                Tag::ROOT,
                Tag::PATH,
                Tag::INDX,
            ] {
                let s = Synth {
                    drop: Some(tag),
                    ..Synth::new(v)
                };
                assert_eq!(check(&s), Err(E::MissingTag(tag)), "{v} {tag}");
            }
        }
        let d = Version::Draft;
        let s = Synth {
            ver: 0x8000_000b,
            ..Synth::new(d)
        };
        assert_eq!(check(&s), Err(E::UnsupportedVersion(0x8000_000b)));
        let s = Synth {
            typ: 0,
            ..Synth::new(d)
        };
        assert_eq!(check(&s), Err(E::WrongMessageType(0)));
        for tag in [Tag::TYPE, Tag::NONC, Tag::VER] {
            let s = Synth {
                drop: Some(tag),
                ..Synth::new(d)
            };
            assert_eq!(check(&s), Err(E::MissingTag(tag)), "{tag}");
        }
        // Google responses need not echo the nonce.
        let s = Synth {
            drop: Some(Tag::NONC),
            ..Synth::new(Version::Google)
        };
        assert!(check(&s).is_ok());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut buf = [0u8; 1500];
        let c = &captures()[1];
        for i in 0..10_000 {
            let len = (lcg(&mut state) % 1500) as usize;
            for b in &mut buf[..len] {
                *b = lcg(&mut state) as u8;
            }
            // Some inputs look like a message: small tag counts, aligned lengths.
            if i % 2 == 0 && len >= 4 {
                buf[..4].copy_from_slice(&((lcg(&mut state) % 8) as u32).to_le_bytes());
            }
            let len = if i % 3 == 0 { len & !3 } else { len };
            let bytes = &buf[..len];
            if let Ok(m) = Message::parse(bytes) {
                for (t, v) in m.iter() {
                    assert_eq!(m.get(t), Some(v));
                }
            }
            for v in [Version::Google, Version::Draft] {
                assert!(verify_response(v, bytes, &c.nonce, &c.request, &key()).is_err());
            }
            let mut framed = DRAFT_MAGIC.to_vec();
            framed.extend_from_slice(&(len as u32).to_le_bytes());
            framed.extend_from_slice(bytes);
            assert!(
                verify_response(Version::Draft, &framed, &c.nonce, &c.request, &key()).is_err()
            );
        }
    }

    #[test]
    fn mutated_responses_never_panic() {
        let mut state = 42u64;
        for c in captures() {
            for _ in 0..150 {
                let mut r = c.response.clone();
                for _ in 0..1 + lcg(&mut state) % 3 {
                    let at = (lcg(&mut state) as usize) % r.len();
                    r[at] = lcg(&mut state) as u8;
                }
                if r != c.response {
                    let _ = verify(&c, &r);
                }
            }
        }
    }
}
