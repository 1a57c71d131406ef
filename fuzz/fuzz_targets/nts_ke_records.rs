//! Arbitrary bytes as an NTS-KE response: it must never panic; a response that parses holds
//! 1..=8 cookies of 1..=256 bytes and, if it names a server, a non-empty ASCII name; and its
//! strict prefixes are still `Incomplete` (the parser is fed what has arrived so far). The
//! input is parsed as is and after the NTPv4 and AES-SIV records a server must send, so the
//! fuzzer reaches complete responses quickly. The client's own request, written into a
//! buffer of a fuzzer-chosen size, never panics and is not a response (it has no cookies).
#![no_main]
use libfuzzer_sys::fuzz_target;
use trusttime_core::nts::{
    encode_ke_request, parse_ke_response, KeError, MAX_COOKIES, MAX_COOKIE_LEN,
};

/// Next protocol NTPv4 (critical), AEAD 15: the records every accepted response has.
const PREAMBLE: [u8; 12] = [0x80, 1, 0, 2, 0, 0, 0x80, 4, 0, 2, 0, 15];

fn check(bytes: &[u8]) {
    let Ok(r) = parse_ke_response(bytes) else {
        return;
    };
    let n = r.cookies.len();
    assert!((1..=MAX_COOKIES).contains(&n), "{n} cookies");
    let mut jar = r.cookies.clone();
    for _ in 0..n {
        let c = jar.pop().expect("len() cookies pop");
        let len = c.as_bytes().len();
        assert!((1..=MAX_COOKIE_LEN).contains(&len), "cookie of {len} bytes");
    }
    assert!(jar.is_empty(), "len() counted every cookie");
    if let Some(s) = r.server() {
        assert!(!s.is_empty() && s.is_ascii(), "server name {s:?}");
    }
    // Every prefix when short, about 512 of them when long.
    for cut in (0..bytes.len()).step_by(1 + bytes.len() / 512) {
        assert!(
            matches!(parse_ke_response(&bytes[..cut]), Err(KeError::Incomplete)),
            "the first {cut} bytes of a complete response are not Incomplete"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut buf = [0u8; PREAMBLE.len() + 4096];
    if let Some(b) = buf.get_mut(..PREAMBLE.len() + data.len()) {
        b[..PREAMBLE.len()].copy_from_slice(&PREAMBLE);
        b[PREAMBLE.len()..].copy_from_slice(data);
        check(b);
    }

    let size = usize::from(data.first().copied().unwrap_or(16) % 33);
    let mut req = [0u8; 32];
    if let Ok(n) = encode_ke_request(&mut req[..size]) {
        assert_eq!(n, 16);
        assert!(
            matches!(parse_ke_response(&req[..n]), Err(KeError::NoCookies)),
            "the request parses as a response"
        );
    } else {
        assert!(size < 16, "no request in {size} bytes");
    }
});
