//! The NTPv4 packet (RFC 5905 §7.3) and its extension fields (RFC 7822).
//!
//! [`NtpPacket`] is the parsed representation: [`NtpPacket::parse`] checks lengths and field
//! values that can be checked without context, [`NtpPacket::emit`] writes the 48-byte header.
//! Whether a reply is acceptable for an outstanding request is the client's business
//! ([`super::client`]).

use core::fmt;

use crate::time::{NtpTimestamp, SignedDuration};

/// Length of the NTP header.
pub const HEADER_LEN: usize = 48;
/// The largest datagram we accept; anything longer is [`PacketError::Oversized`].
/// NTS replies with several cookies stay well under this.
pub const MAX_DATAGRAM: usize = 1024;

mod field {
    pub const LI_VN_MODE: usize = 0;
    pub const STRATUM: usize = 1;
    pub const POLL: usize = 2;
    pub const PRECISION: usize = 3;
    pub const ROOT_DELAY: core::ops::Range<usize> = 4..8;
    pub const ROOT_DISPERSION: core::ops::Range<usize> = 8..12;
    pub const REFERENCE_ID: core::ops::Range<usize> = 12..16;
    pub const REFERENCE_TS: core::ops::Range<usize> = 16..24;
    pub const ORIGIN_TS: core::ops::Range<usize> = 24..32;
    pub const RECEIVE_TS: core::ops::Range<usize> = 32..40;
    pub const TRANSMIT_TS: core::ops::Range<usize> = 40..48;
}

/// The leap indicator (2 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeapIndicator {
    /// No warning.
    NoWarning,
    /// The last minute of the day has 61 seconds.
    Insert,
    /// The last minute of the day has 59 seconds.
    Delete,
    /// The server's clock is not synchronised.
    Unsynchronized,
}

impl LeapIndicator {
    const fn from_bits(b: u8) -> Self {
        match b & 3 {
            0 => LeapIndicator::NoWarning,
            1 => LeapIndicator::Insert,
            2 => LeapIndicator::Delete,
            _ => LeapIndicator::Unsynchronized,
        }
    }
    const fn to_bits(self) -> u8 {
        match self {
            LeapIndicator::NoWarning => 0,
            LeapIndicator::Insert => 1,
            LeapIndicator::Delete => 2,
            LeapIndicator::Unsynchronized => 3,
        }
    }
}

/// The association mode (3 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// 0, reserved.
    Reserved,
    /// 1, symmetric active.
    SymmetricActive,
    /// 2, symmetric passive.
    SymmetricPassive,
    /// 3, client.
    Client,
    /// 4, server.
    Server,
    /// 5, broadcast.
    Broadcast,
    /// 6, NTP control message.
    Control,
    /// 7, reserved for private use.
    Private,
}

impl Mode {
    /// From the three mode bits.
    #[must_use]
    pub const fn from_bits(b: u8) -> Self {
        match b & 7 {
            0 => Mode::Reserved,
            1 => Mode::SymmetricActive,
            2 => Mode::SymmetricPassive,
            3 => Mode::Client,
            4 => Mode::Server,
            5 => Mode::Broadcast,
            6 => Mode::Control,
            _ => Mode::Private,
        }
    }
    /// The three mode bits.
    #[must_use]
    pub const fn to_bits(self) -> u8 {
        match self {
            Mode::Reserved => 0,
            Mode::SymmetricActive => 1,
            Mode::SymmetricPassive => 2,
            Mode::Client => 3,
            Mode::Server => 4,
            Mode::Broadcast => 5,
            Mode::Control => 6,
            Mode::Private => 7,
        }
    }
}

/// NTP short format (RFC 5905 §6): 16 bits of seconds, 16 bits of fraction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NtpShort(pub u32);

impl NtpShort {
    /// As a span; the fraction is converted with 2^16.
    #[must_use]
    pub const fn to_duration(self) -> SignedDuration {
        SignedDuration::from_nanos(((self.0 as u64 * 1_000_000_000) >> 16) as i64)
    }
    /// From a span, saturating at the format's range (0 to 65536 s), rounding up so that an
    /// error bound is never understated.
    #[must_use]
    pub const fn from_duration(d: SignedDuration) -> Self {
        let n = d.as_nanos();
        if n <= 0 {
            return NtpShort(0);
        }
        let v = ((n as u128) << 16).div_ceil(1_000_000_000);
        if v > u32::MAX as u128 {
            NtpShort(u32::MAX)
        } else {
            NtpShort(v as u32)
        }
    }
}

/// A Kiss-o'-Death code (RFC 5905 §7.4): the reference ID of a stratum-0 reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KissCode {
    /// RATE: rate exceeded; the client must reduce its polling rate.
    Rate,
    /// DENY: access denied; the client must stop sending to this server.
    Deny,
    /// RSTR: access restricted; the client must stop sending to this server.
    Rstr,
    /// Any other code (ACST, AUTH, AUTO, BCST, CRYP, DROP, INIT, MCST, NKEY, NTSN, RMOT, STEP...).
    Other([u8; 4]),
}

impl KissCode {
    /// From the reference ID of a stratum-0 packet.
    #[must_use]
    pub const fn from_reference_id(id: [u8; 4]) -> Self {
        match &id {
            b"RATE" => KissCode::Rate,
            b"DENY" => KissCode::Deny,
            b"RSTR" => KissCode::Rstr,
            _ => KissCode::Other(id),
        }
    }
    /// The four ASCII letters.
    #[must_use]
    pub const fn code(&self) -> [u8; 4] {
        match self {
            KissCode::Rate => *b"RATE",
            KissCode::Deny => *b"DENY",
            KissCode::Rstr => *b"RSTR",
            KissCode::Other(c) => *c,
        }
    }
    /// True when the client must stop using this server (DENY, RSTR).
    #[must_use]
    pub const fn is_fatal(&self) -> bool {
        matches!(self, KissCode::Deny | KissCode::Rstr)
    }
    /// What the code means (RFC 5905 Figure 13, RFC 8915 for NTSN).
    #[must_use]
    pub const fn description(&self) -> &'static str {
        match self.code() {
            [b'A', b'C', b'S', b'T'] => "the association belongs to a unicast server",
            [b'A', b'U', b'T', b'H'] => "server authentication failed",
            [b'A', b'U', b'T', b'O'] => "autokey sequence failed",
            [b'B', b'C', b'S', b'T'] => "the association belongs to a broadcast server",
            [b'C', b'R', b'Y', b'P'] => "cryptographic authentication or identification failed",
            [b'D', b'E', b'N', b'Y'] => "access denied by the server",
            [b'D', b'R', b'O', b'P'] => "lost peer in symmetric mode",
            [b'R', b'S', b'T', b'R'] => "access denied due to local policy",
            [b'I', b'N', b'I', b'T'] => "the association has not yet synchronized",
            [b'M', b'C', b'S', b'T'] => {
                "the association belongs to a dynamically discovered server"
            }
            [b'N', b'K', b'E', b'Y'] => "no key found",
            [b'N', b'T', b'S', b'N'] => "NTS negative acknowledgment: the cookie was not accepted",
            [b'R', b'A', b'T', b'E'] => {
                "rate exceeded: the server asks the client to poll less often"
            }
            [b'R', b'M', b'O', b'T'] => "alteration of association from a remote host",
            [b'S', b'T', b'E', b'P'] => "a step change in system time has occurred",
            _ => "unknown kiss code",
        }
    }
}

impl fmt::Display for KissCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.code() {
            let c = if b.is_ascii_graphic() { b as char } else { '?' };
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// An NTP packet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub struct NtpPacket {
    pub leap: LeapIndicator,
    /// Version number, 1 to 7 on the wire.
    pub version: u8,
    pub mode: Mode,
    /// 0 = unspecified or Kiss-o'-Death, 1 = primary, 2-15 secondary, 16 unsynchronised.
    pub stratum: u8,
    /// Log2 of the poll interval in seconds.
    pub poll: i8,
    /// Log2 of the clock precision in seconds.
    pub precision: i8,
    pub root_delay: NtpShort,
    pub root_dispersion: NtpShort,
    pub reference_id: [u8; 4],
    pub reference_ts: NtpTimestamp,
    pub origin_ts: NtpTimestamp,
    pub receive_ts: NtpTimestamp,
    pub transmit_ts: NtpTimestamp,
}

/// A datagram could not be parsed as NTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PacketError {
    /// Shorter than the 48-byte header.
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// Longer than [`MAX_DATAGRAM`].
    Oversized {
        /// Bytes received.
        len: usize,
    },
    /// An extension field's length is not a multiple of 4, is below 16, or runs past the end.
    BadExtensionField {
        /// Offset of the field within the datagram's extension area.
        offset: usize,
    },
    /// The output buffer is too small.
    BufferTooSmall,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::Truncated { len } => {
                write!(
                    f,
                    "truncated datagram: {len} bytes, an NTP header has {HEADER_LEN}"
                )
            }
            PacketError::Oversized { len } => {
                write!(
                    f,
                    "oversized datagram: {len} bytes, the limit is {MAX_DATAGRAM}"
                )
            }
            PacketError::BadExtensionField { offset } => {
                write!(f, "malformed extension field at offset {offset}")
            }
            PacketError::BufferTooSmall => f.write_str("output buffer too small"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PacketError {}

fn read_u32(b: &[u8], r: core::ops::Range<usize>) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[r]);
    u32::from_be_bytes(a)
}

fn read_ts(b: &[u8], r: core::ops::Range<usize>) -> NtpTimestamp {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[r]);
    NtpTimestamp::from_bits(u64::from_be_bytes(a))
}

impl NtpPacket {
    /// A client request (mode 3, version 4) with the given transmit timestamp and all else zero.
    #[must_use]
    pub const fn client_request(transmit_ts: NtpTimestamp) -> Self {
        NtpPacket {
            leap: LeapIndicator::NoWarning,
            version: 4,
            mode: Mode::Client,
            stratum: 0,
            poll: 0,
            precision: 0,
            root_delay: NtpShort(0),
            root_dispersion: NtpShort(0),
            reference_id: [0; 4],
            reference_ts: NtpTimestamp::ZERO,
            origin_ts: NtpTimestamp::ZERO,
            receive_ts: NtpTimestamp::ZERO,
            transmit_ts,
        }
    }

    /// Parses a datagram. Returns the header and the bytes after it (extension fields and/or
    /// a MAC; empty for plain NTP). Field values are not judged here.
    pub fn parse(bytes: &[u8]) -> Result<(NtpPacket, &[u8]), PacketError> {
        if bytes.len() < HEADER_LEN {
            return Err(PacketError::Truncated { len: bytes.len() });
        }
        if bytes.len() > MAX_DATAGRAM {
            return Err(PacketError::Oversized { len: bytes.len() });
        }
        let b0 = bytes[field::LI_VN_MODE];
        let p = NtpPacket {
            leap: LeapIndicator::from_bits(b0 >> 6),
            version: (b0 >> 3) & 7,
            mode: Mode::from_bits(b0),
            stratum: bytes[field::STRATUM],
            poll: bytes[field::POLL] as i8,
            precision: bytes[field::PRECISION] as i8,
            root_delay: NtpShort(read_u32(bytes, field::ROOT_DELAY)),
            root_dispersion: NtpShort(read_u32(bytes, field::ROOT_DISPERSION)),
            reference_id: {
                let mut id = [0u8; 4];
                id.copy_from_slice(&bytes[field::REFERENCE_ID]);
                id
            },
            reference_ts: read_ts(bytes, field::REFERENCE_TS),
            origin_ts: read_ts(bytes, field::ORIGIN_TS),
            receive_ts: read_ts(bytes, field::RECEIVE_TS),
            transmit_ts: read_ts(bytes, field::TRANSMIT_TS),
        };
        Ok((p, &bytes[HEADER_LEN..]))
    }

    /// Writes the 48-byte header into `buf`; returns [`HEADER_LEN`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, PacketError> {
        let out = buf
            .get_mut(..HEADER_LEN)
            .ok_or(PacketError::BufferTooSmall)?;
        out[field::LI_VN_MODE] =
            (self.leap.to_bits() << 6) | ((self.version & 7) << 3) | self.mode.to_bits();
        out[field::STRATUM] = self.stratum;
        out[field::POLL] = self.poll as u8;
        out[field::PRECISION] = self.precision as u8;
        out[field::ROOT_DELAY].copy_from_slice(&self.root_delay.0.to_be_bytes());
        out[field::ROOT_DISPERSION].copy_from_slice(&self.root_dispersion.0.to_be_bytes());
        out[field::REFERENCE_ID].copy_from_slice(&self.reference_id);
        out[field::REFERENCE_TS].copy_from_slice(&self.reference_ts.to_bits().to_be_bytes());
        out[field::ORIGIN_TS].copy_from_slice(&self.origin_ts.to_bits().to_be_bytes());
        out[field::RECEIVE_TS].copy_from_slice(&self.receive_ts.to_bits().to_be_bytes());
        out[field::TRANSMIT_TS].copy_from_slice(&self.transmit_ts.to_bits().to_be_bytes());
        Ok(HEADER_LEN)
    }

    /// The Kiss-o'-Death code, when this is a stratum-0 reply.
    #[must_use]
    pub const fn kiss_code(&self) -> Option<KissCode> {
        if self.stratum == 0 {
            Some(KissCode::from_reference_id(self.reference_id))
        } else {
            None
        }
    }

    /// Root distance: root delay / 2 + root dispersion (RFC 5905 §11.2.1, without the local
    /// terms, which the client adds).
    #[must_use]
    pub fn root_distance(&self) -> SignedDuration {
        self.root_delay.to_duration().half() + self.root_dispersion.to_duration()
    }
}

/// One RFC 7822 extension field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtensionField<'a> {
    /// The field type.
    pub field_type: u16,
    /// The value, without the 4-byte header; may include padding the sender added.
    pub value: &'a [u8],
}

/// Iterates over the extension fields after an NTP header.
///
/// Each field is `type: u16, length: u16, value`, where `length` counts the header too and is a
/// multiple of 4. A malformed field yields an error and ends the iteration. (A legacy 20- or
/// 24-byte MAC after the header is not an extension field; callers that expect one handle it.)
#[derive(Clone, Debug)]
pub struct ExtensionFields<'a> {
    rest: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> ExtensionFields<'a> {
    /// Over `bytes`, the data after the 48-byte header.
    #[must_use]
    pub const fn new(bytes: &'a [u8]) -> Self {
        ExtensionFields {
            rest: bytes,
            offset: 0,
            failed: false,
        }
    }
    /// Offset (within the extension area) of the next field.
    #[must_use]
    pub const fn offset(&self) -> usize {
        self.offset
    }
}

impl<'a> Iterator for ExtensionFields<'a> {
    type Item = Result<ExtensionField<'a>, PacketError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let bad = PacketError::BadExtensionField {
            offset: self.offset,
        };
        if self.rest.len() < 4 {
            self.failed = true;
            return Some(Err(bad));
        }
        let field_type = u16::from_be_bytes([self.rest[0], self.rest[1]]);
        let len = u16::from_be_bytes([self.rest[2], self.rest[3]]) as usize;
        if len < 4 || len % 4 != 0 || len > self.rest.len() {
            self.failed = true;
            return Some(Err(bad));
        }
        let value = &self.rest[4..len];
        self.rest = &self.rest[len..];
        self.offset += len;
        Some(Ok(ExtensionField { field_type, value }))
    }
}

/// Writes an extension field (header, value, zero padding to a multiple of 4) into `buf`;
/// returns the bytes written.
pub fn write_extension_field(
    buf: &mut [u8],
    field_type: u16,
    value: &[u8],
) -> Result<usize, PacketError> {
    let len = (4 + value.len()).div_ceil(4) * 4;
    if len > u16::MAX as usize {
        return Err(PacketError::BufferTooSmall);
    }
    let out = buf.get_mut(..len).ok_or(PacketError::BufferTooSmall)?;
    out[0..2].copy_from_slice(&field_type.to_be_bytes());
    out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    out[4..4 + value.len()].copy_from_slice(value);
    for b in &mut out[4 + value.len()..] {
        *b = 0;
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stratum-1 server reply as chronyd sends it (header only).
    pub(crate) const GOLDEN_REPLY: [u8; 48] = [
        0x24, 0x01, 0x00, 0xe9, // LI 0, VN 4, mode 4; stratum 1; poll 0; precision -23
        0x00, 0x00, 0x00, 0x00, // root delay 0
        0x00, 0x00, 0x00, 0x10, // root dispersion 16/65536 s
        0x4c, 0x4f, 0x43, 0x4c, // "LOCL"
        0xec, 0xc2, 0x5a, 0x00, 0x00, 0x00, 0x00, 0x00, // reference
        0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, // origin (echo of our cookie)
        0xec, 0xc2, 0x5a, 0x10, 0x80, 0x00, 0x00, 0x00, // receive
        0xec, 0xc2, 0x5a, 0x10, 0x80, 0x10, 0x00, 0x00, // transmit
    ];

    #[test]
    fn golden_reply_parses_and_round_trips() {
        let (p, ext) = NtpPacket::parse(&GOLDEN_REPLY).unwrap();
        assert!(ext.is_empty());
        assert_eq!(p.leap, LeapIndicator::NoWarning);
        assert_eq!(p.version, 4);
        assert_eq!(p.mode, Mode::Server);
        assert_eq!(p.stratum, 1);
        assert_eq!(p.precision, -23);
        assert_eq!(&p.reference_id, b"LOCL");
        assert_eq!(p.origin_ts.to_bits(), 0x1234_5678_9abc_def0);
        assert_eq!(p.receive_ts.fraction(), 0x8000_0000);
        assert_eq!(p.kiss_code(), None);
        let mut out = [0u8; 48];
        assert_eq!(p.emit(&mut out), Ok(48));
        assert_eq!(out, GOLDEN_REPLY);
    }

    #[test]
    fn lengths_are_checked() {
        assert_eq!(
            NtpPacket::parse(&GOLDEN_REPLY[..47]),
            Err(PacketError::Truncated { len: 47 })
        );
        let big = [0u8; MAX_DATAGRAM + 1];
        assert_eq!(
            NtpPacket::parse(&big),
            Err(PacketError::Oversized {
                len: MAX_DATAGRAM + 1
            })
        );
        let mut small = [0u8; 10];
        assert_eq!(
            NtpPacket::client_request(NtpTimestamp::ZERO).emit(&mut small),
            Err(PacketError::BufferTooSmall)
        );
    }

    #[test]
    fn kiss_codes_decode() {
        let mut b = GOLDEN_REPLY;
        b[1] = 0;
        b[12..16].copy_from_slice(b"RATE");
        let (p, _) = NtpPacket::parse(&b).unwrap();
        assert_eq!(p.kiss_code(), Some(KissCode::Rate));
        assert!(!KissCode::Rate.is_fatal());
        assert!(KissCode::Deny.is_fatal() && KissCode::Rstr.is_fatal());
        assert_eq!(
            KissCode::from_reference_id(*b"NTSN").description(),
            "NTS negative acknowledgment: the cookie was not accepted"
        );
    }

    #[test]
    fn short_format_uses_two_to_the_16() {
        assert_eq!(
            NtpShort(0x0001_0000).to_duration(),
            SignedDuration::from_secs(1)
        );
        assert_eq!(
            NtpShort(0x0000_8000).to_duration(),
            SignedDuration::from_millis(500)
        );
        assert_eq!(
            NtpShort::from_duration(SignedDuration::from_millis(500)),
            NtpShort(0x8000)
        );
    }

    #[test]
    fn extension_fields_round_trip() {
        let mut buf = [0u8; 64];
        let n1 = write_extension_field(&mut buf, 0x0104, &[1, 2, 3, 4, 5]).unwrap();
        assert_eq!(n1, 12);
        let n2 = write_extension_field(&mut buf[n1..], 0x0204, &[9; 16]).unwrap();
        let fields: [_; 2] = {
            let mut it = ExtensionFields::new(&buf[..n1 + n2]);
            [it.next().unwrap().unwrap(), it.next().unwrap().unwrap()]
        };
        assert_eq!(fields[0].field_type, 0x0104);
        assert_eq!(&fields[0].value[..5], &[1, 2, 3, 4, 5]);
        assert_eq!(fields[1].value, &[9; 16]);
        // A length that runs past the end is an error, and ends the iteration.
        let bad = [0x01, 0x04, 0x00, 0x40, 0, 0, 0, 0];
        let mut it = ExtensionFields::new(&bad);
        assert_eq!(
            it.next(),
            Some(Err(PacketError::BadExtensionField { offset: 0 }))
        );
        assert_eq!(it.next(), None);
    }
}

/// Seeded random inputs with the fuzz targets' properties, so CI checks them on stable.
#[cfg(test)]
mod fuzz_like {
    use super::*;

    fn xorshift(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    #[test]
    fn random_and_mutated_datagrams_never_panic_and_round_trip() {
        let mut seed = 0x2545_f491_4f6c_dd1d;
        let mut base = [0u8; 48];
        NtpPacket::client_request(crate::time::NtpTimestamp::from_bits(7))
            .emit(&mut base)
            .unwrap();
        let mut data = [0u8; 1100];
        for i in 0..50_000 {
            let len = (xorshift(&mut seed) % 1100) as usize;
            if i % 2 == 0 {
                for b in data[..len].iter_mut() {
                    *b = xorshift(&mut seed) as u8;
                }
            } else {
                // Mutate a valid packet: flip a few bytes, sometimes append extension fields.
                data[..48].copy_from_slice(&base);
                for b in data[48..len.max(48)].iter_mut() {
                    *b = xorshift(&mut seed) as u8;
                }
                for _ in 0..3 {
                    let at = (xorshift(&mut seed) % 48) as usize;
                    data[at] = xorshift(&mut seed) as u8;
                }
            }
            let d = &data[..len];
            if let Ok((p, ext)) = NtpPacket::parse(d) {
                for _ in ext {}
                let mut out = [0u8; HEADER_LEN];
                let n = p.emit(&mut out).unwrap();
                assert_eq!(&out[..n], &d[..HEADER_LEN]);
                assert_eq!(NtpPacket::parse(&out).unwrap().0, p);
            }
        }
    }
}
