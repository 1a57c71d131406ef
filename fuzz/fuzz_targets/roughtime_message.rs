//! Arbitrary bytes as a Roughtime message and as a response: parsing never panics, every
//! tag the iterator yields is found by `get` with the same value (nested messages too), and
//! `verify_response` never panics and never accepts input the server did not sign, in either
//! version (for the draft, also with the framing added so the fuzzer starts at the message).
#![no_main]
use libfuzzer_sys::fuzz_target;
use trusttime_core::roughtime::{
    encode_request, verify_response, Message, Version, DRAFT_MAGIC, REQUEST_LEN,
};

/// A valid Ed25519 public key (the roughenough test server's long-term key).
const SERVER_KEY: [u8; 32] = [
    0xd0, 0x75, 0x6e, 0xe6, 0x9f, 0xf5, 0xfe, 0x96, 0xcb, 0xcf, 0x92, 0x73, 0x20, 0x8f, 0xec, 0x53,
    0x12, 0x4b, 0x1d, 0xd3, 0xa2, 0x4d, 0x39, 0x10, 0xe0, 0x7c, 0x7c, 0x54, 0xe2, 0x47, 0x30, 0x12,
];
const NONCE: [u8; 64] = [0x5a; 64];

fn check_message(bytes: &[u8], depth: u32) {
    let Ok(msg) = Message::parse(bytes) else {
        return;
    };
    let mut n = 0;
    let mut prev = None;
    for (tag, value) in msg.iter() {
        assert!(prev < Some(tag), "tags out of order: {prev:?} then {tag:?}");
        prev = Some(tag);
        assert_eq!(
            msg.get(tag).map(<[u8]>::as_ptr_range),
            Some(value.as_ptr_range()),
            "get({tag:?}) differs from iter()"
        );
        let r = value.as_ptr_range();
        let b = bytes.as_ptr_range();
        assert!(
            b.start <= r.start && r.end <= b.end,
            "value outside the message"
        );
        if depth > 0 {
            check_message(value, depth - 1);
        }
        n += 1;
    }
    assert_eq!(n, msg.len(), "iter() yields len() tags");
    assert_eq!(msg.is_empty(), n == 0);
}

fuzz_target!(|data: &[u8]| {
    check_message(data, 2);

    let mut framed = [0u8; 12 + 4096];
    let framed = data
        .len()
        .checked_add(12)
        .and_then(|n| framed.get_mut(..n))
        .map(|f| {
            f[..8].copy_from_slice(&DRAFT_MAGIC);
            f[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
            f[12..].copy_from_slice(data);
            &*f
        });
    for version in [Version::Google, Version::Draft] {
        let mut request = [0u8; REQUEST_LEN];
        let n = encode_request(version, &NONCE, &mut request).expect("a request encodes");
        let r = verify_response(version, data, &NONCE, &request[..n], &SERVER_KEY);
        assert!(
            r.is_err(),
            "{version:?} accepted an unsigned response: {r:?}"
        );
        if let (Version::Draft, Some(f)) = (version, framed) {
            let r = verify_response(version, f, &NONCE, &request[..n], &SERVER_KEY);
            assert!(
                r.is_err(),
                "{version:?} accepted an unsigned response: {r:?}"
            );
        }
    }
});
