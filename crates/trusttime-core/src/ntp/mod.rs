//! NTPv4 / SNTPv4 (RFC 5905, RFC 4330): the packet codec and the per-source client.

pub mod client;
pub mod filter;
pub mod packet;

pub use client::{
    precision_duration, ClientConfig, Failure, NtpClient, PollPolicy, Reject, Sample,
};
pub use packet::{
    write_extension_field, ExtensionField, ExtensionFields, KissCode, LeapIndicator, Mode,
    NtpPacket, NtpShort, PacketError, HEADER_LEN, MAX_DATAGRAM,
};
