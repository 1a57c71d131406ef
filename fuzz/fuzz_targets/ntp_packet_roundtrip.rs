//! Decode, encode, decode: any datagram that parses must re-encode to the same header bytes
//! and parse to the same packet.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trusttime_core::ntp::{NtpPacket, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok((p, _ext)) = NtpPacket::parse(data) {
        let mut out = [0u8; HEADER_LEN];
        let n = p.emit(&mut out).expect("a parsed packet re-encodes");
        assert_eq!(&out[..n], &data[..HEADER_LEN], "header bytes round-trip");
        let (q, _) = NtpPacket::parse(&out).expect("re-encoded packet parses");
        assert_eq!(p, q);
    }
});
