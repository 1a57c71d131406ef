//! Arbitrary datagrams as the reply to an outstanding NTS request: never a panic, and never
//! `Ok` (the fuzzer cannot forge AES-SIV). Each input is tried as is; with the request's
//! unique identifier spliced in as its first extension field, so forgeries get past the
//! identifier check to the authenticator; and wrapped as the header, nonce and ciphertext of
//! a well-formed authenticator, which must fail AES-SIV itself. A forgery leaves the request
//! outstanding (only an NTSN NAK ends it), so the genuine reply, sealed afterwards with the
//! server-to-client key around fuzzer-chosen extension fields, still opens, refills the jar
//! with its cookies, and does not open a second time.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trusttime_core::ntp::{write_extension_field, MAX_DATAGRAM};
use trusttime_core::nts::{
    append_authenticator, field, Cookie, CookieJar, Keys, NtsError, NtsSession, KEY_LEN,
    MAX_COOKIES, MAX_COOKIE_LEN, NONCE_LEN, TAG_LEN, UNIQUE_ID_LEN,
};

/// A client request header (mode 3, version 4, transmit timestamp set).
const REQUEST_HEADER: [u8; 48] = [
    0x23, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0xec, 0xc2, 0x5a, 0x10, 0x80, 0x10, 0, 0,
];

/// A stratum-1 server reply header.
const REPLY_HEADER: [u8; 48] = [
    0x24, 0x01, 0x00, 0xe9, 0, 0, 0, 0, 0, 0, 0, 0x10, b'L', b'O', b'C', b'L', 0xec, 0xc2, 0x5a, 0,
    0, 0, 0, 0, 0xec, 0xc2, 0x5a, 0x10, 0x80, 0x10, 0, 0, 0xec, 0xc2, 0x5a, 0x10, 0x80, 0, 0, 0,
    0xec, 0xc2, 0x5a, 0x10, 0x80, 0x10, 0, 0,
];

const S2C: [u8; KEY_LEN] = [2; KEY_LEN];
const UID: [u8; UNIQUE_ID_LEN] = [7; UNIQUE_ID_LEN];
/// Cookies in hand before the request (it uses one).
const COOKIES: usize = 3;
/// The most ciphertext (tag included) a forged authenticator carries: what fits a datagram.
const MAX_FORGED_CT: usize = MAX_DATAGRAM - 48 - (4 + UNIQUE_ID_LEN) - (4 + 4 + NONCE_LEN);

fn session() -> NtsSession {
    let mut jar = CookieJar::default();
    for i in 0..COOKIES {
        jar.push(Cookie::new(&[i as u8 + 1; 100]).expect("a 100-byte cookie"));
    }
    NtsSession::new(
        Keys {
            c2s: [1; KEY_LEN],
            s2c: S2C,
        },
        jar,
    )
}

/// The plaintext of the genuine reply: from the input, repeated `[kind, len, len bytes]`;
/// `kind` even is a cookie field, odd another field type. Returns the length and the number
/// of cookies the client should keep.
fn plaintext(mut d: &[u8], out: &mut [u8]) -> (usize, usize) {
    let (mut n, mut cookies) = (0, 0);
    while let [kind, len, rest @ ..] = d {
        let len = usize::from(*len).min(rest.len());
        let (value, tail) = rest.split_at(len);
        d = tail;
        let is_cookie = kind & 1 == 0;
        let field_type = if is_cookie {
            field::COOKIE
        } else {
            u16::from(*kind) << 8 | 0x04
        };
        let Ok(w) = write_extension_field(&mut out[n..], field_type, value) else {
            break;
        };
        n += w;
        // The value read back includes the padding: 1..=256 bytes whenever len is.
        if is_cookie && (1..=MAX_COOKIE_LEN).contains(&len) {
            cookies += 1;
        }
    }
    (n, cookies)
}

fuzz_target!(|data: &[u8]| {
    let mut s = session();
    let mut req = [0u8; 2048];
    s.seal_request(&REQUEST_HEADER, UID, [5; NONCE_LEN], &mut req)
        .expect("a request seals");
    let in_hand = s.cookies();
    assert_eq!(in_hand, COOKIES - 1);

    // The fuzz input as the reply, then with our unique identifier as its first field.
    let mut nak = false;
    let mut spliced = [0u8; 4096];
    let spliced = spliced.get_mut(..data.len()).map(|b| {
        b.copy_from_slice(data);
        if let Some(f) = b.get_mut(48..48 + 4 + UNIQUE_ID_LEN) {
            write_extension_field(f, field::UNIQUE_ID, &UID).expect("uid fits");
        }
        &*b
    });
    for forged in [Some(data), spliced].into_iter().flatten() {
        let r = s.open_reply(forged);
        assert!(r.is_err(), "a forged reply opened: {r:?}");
        assert_eq!(s.cookies(), in_hand, "a forged reply changed the jar");
        nak |= r == Err(NtsError::Nak);
    }

    // And as header, nonce, tag and ciphertext of a well-formed authenticator after our
    // unique identifier: every such forgery reaches AES-SIV and fails there.
    if let Some((header, rest)) = data.split_at_checked(48) {
        let (nonce, ct) = rest.split_at(rest.len().min(NONCE_LEN));
        let ct = &ct[..ct.len().min(MAX_FORGED_CT)];
        if nonce.len() == NONCE_LEN && ct.len() >= TAG_LEN && !nak {
            let mut body = [0u8; 4 + NONCE_LEN + MAX_FORGED_CT];
            body[..2].copy_from_slice(&(NONCE_LEN as u16).to_be_bytes());
            body[2..4].copy_from_slice(&(ct.len() as u16).to_be_bytes());
            body[4..4 + NONCE_LEN].copy_from_slice(nonce);
            body[4 + NONCE_LEN..4 + NONCE_LEN + ct.len()].copy_from_slice(ct);
            let mut b = [0u8; MAX_DATAGRAM];
            b[..48].copy_from_slice(header);
            let mut n = 48;
            n += write_extension_field(&mut b[n..], field::UNIQUE_ID, &UID).expect("uid fits");
            let body = &body[..4 + NONCE_LEN + ct.len()];
            n += write_extension_field(&mut b[n..], field::AUTHENTICATOR, body)
                .expect("authenticator fits");
            let failures = s.auth_failures();
            let r = s.open_reply(&b[..n]);
            assert_eq!(r, Err(NtsError::AuthenticationFailed), "a forged tag");
            assert_eq!(s.auth_failures(), failures + 1, "a forgery went uncounted");
            assert_eq!(s.cookies(), in_hand, "a forged reply changed the jar");
        }
    }

    // The genuine reply: nonce from the first bytes, fuzzer-chosen fields inside.
    let mut nonce = [0u8; NONCE_LEN];
    let head = data.len().min(NONCE_LEN);
    nonce[..head].copy_from_slice(&data[..head]);
    let mut plain = [0u8; 4096];
    let (p, cookies) = plaintext(&data[head..], &mut plain);
    let mut rep = [0u8; 4096];
    rep[..48].copy_from_slice(&REPLY_HEADER);
    let mut m = 48;
    m += write_extension_field(&mut rep[m..], field::UNIQUE_ID, &UID).expect("uid fits");
    let Ok(m) = append_authenticator(&S2C, &nonce, &plain[..p], &mut rep, m) else {
        // More plaintext than a reply can carry.
        return;
    };
    let genuine = s.open_reply(&rep[..m]);
    if nak {
        assert_eq!(
            genuine,
            Err(NtsError::NotRequested),
            "a NAK ends the request"
        );
        return;
    }
    assert_eq!(genuine, Ok(()), "the genuine reply did not open");
    assert_eq!(s.cookies(), (in_hand + cookies).min(MAX_COOKIES));
    assert_eq!(
        s.open_reply(&rep[..m]),
        Err(NtsError::NotRequested),
        "a replayed reply opened"
    );
});
