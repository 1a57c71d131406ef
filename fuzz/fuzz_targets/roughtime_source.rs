//! Drives a long-lived `RoughtimeChain` of three servers with arbitrary datagrams (on any
//! server's index), genuine signed replies at times the input picks (so samples, chained
//! nonces and violations happen), timers, address answers, steps and slews: it must never
//! panic, never send to a server waiting for an address, send only 1024-byte requests and
//! only to the server it is asking, accept a genuine reply only from the server asked, keep
//! its event queue bounded, report violations only where the later server's time ends before
//! the earlier one's begins, and give only estimates whose interval is well formed.
#![no_main]
use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha512};
use trusttime_core::roughtime::{unframe, Message, Tag, Version, DRAFT_MAGIC, DRAFT_VERSION};
use trusttime_core::roughtime_source::{
    ChainConfig, RoughtimeChain, RoughtimeEvent, ServerKey, MAX_SERVERS, RAND_LEN,
};
use trusttime_core::{MonoInstant, Now, SignedDuration, UnixTime};

const VERSIONS: [Version; 3] = [Version::Draft, Version::Google, Version::Draft];
const ONLINE: [u8; 32] = [0x99; 32];

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

/// The long-term keys, the online key, and each server's certificate (its delegation to the
/// online key, signed by its long-term key): made once, since key expansion and signing are
/// most of an execution's cost.
struct Keys {
    long_term: Vec<SigningKey>,
    online: SigningKey,
    certs: Vec<Vec<u8>>,
}

fn keys() -> &'static Keys {
    static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let long_term: Vec<SigningKey> =
            (0..3).map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32])).collect();
        let online = SigningKey::from_bytes(&ONLINE);
        let pubk = online.verifying_key().to_bytes();
        let (mint, maxt) = (0u64.to_le_bytes(), u64::MAX.to_le_bytes());
        let dele = msg(&[(Tag::PUBK, &pubk), (Tag::MINT, &mint), (Tag::MAXT, &maxt)]);
        let certs = (0..3)
            .map(|i| {
                let mut signed = VERSIONS[i].delegation_context().to_vec();
                signed.extend_from_slice(&dele);
                let cert_sig = long_term[i].sign(&signed).to_bytes();
                msg(&[(Tag::SIG, &cert_sig), (Tag::DELE, &dele)])
            })
            .collect();
        Keys {
            long_term,
            online,
            certs,
        }
    })
}

/// Server `i`'s signed answer to `req`: `secs` ± `radius` (in the version's units).
fn answer(i: usize, req: &[u8], secs: u64, radius: u32) -> Option<Vec<u8>> {
    let v = VERSIONS[i];
    let nonce = Message::parse(unframe(v, req).ok()?)
        .ok()?
        .get(Tag::NONC)?
        .to_vec();
    let k = keys();
    let unit: u64 = if v == Version::Google { 1_000_000 } else { 1 };
    let midp = (secs * unit).to_le_bytes();
    let radi = radius.to_le_bytes();
    let cert = &k.certs[i];
    let leaf: &[u8] = if v == Version::Google { &nonce } else { req };
    let mut h = Sha512::new();
    h.update([0u8]);
    h.update(leaf);
    let root_full = h.finalize();
    let root = &root_full[..v.root_len()];
    let ver = DRAFT_VERSION.to_le_bytes();
    let srep = if v == Version::Google {
        msg(&[(Tag::RADI, &radi), (Tag::MIDP, &midp), (Tag::ROOT, root)])
    } else {
        msg(&[
            (Tag::VER, &ver),
            (Tag::RADI, &radi),
            (Tag::MIDP, &midp),
            (Tag::VERS, &ver),
            (Tag::ROOT, root),
        ])
    };
    let mut signed = v.response_context().to_vec();
    signed.extend_from_slice(&srep);
    let sig = k.online.sign(&signed).to_bytes();
    let (typ, indx) = (1u32.to_le_bytes(), 0u32.to_le_bytes());
    let mut fields: Vec<(Tag, &[u8])> = vec![(Tag::SIG, &sig), (Tag::NONC, &nonce)];
    if v == Version::Draft {
        fields.push((Tag::TYPE, &typ));
    }
    fields.extend_from_slice(&[
        (Tag::PATH, &[][..]),
        (Tag::SREP, &srep),
        (Tag::CERT, cert),
        (Tag::INDX, &indx),
    ]);
    let body = msg(&fields);
    Some(if v == Version::Google {
        body
    } else {
        let mut r = DRAFT_MAGIC.to_vec();
        r.extend_from_slice(&(body.len() as u32).to_le_bytes());
        r.extend_from_slice(&body);
        r
    })
}

fuzz_target!(|data: &[u8]| {
    let cfg = ChainConfig {
        min_poll: -2,
        max_poll: 4,
        drift_ppm: 100,
        max_age: SignedDuration::from_secs(64),
        reply_timeout: SignedDuration::from_millis(100),
        floor: UnixTime::from_secs(1_700_000_000),
    };
    let keys: Vec<ServerKey> = (0..3)
        .map(|i| ServerKey {
            version: VERSIONS[i],
            key: keys().long_term[i].verifying_key().to_bytes(),
        })
        .collect();
    let Ok(mut c) = RoughtimeChain::new(cfg, &keys, MonoInstant::ZERO) else {
        return;
    };
    let mut buf = [0u8; 1100];
    let mut sent: Option<(usize, Vec<u8>)> = None;
    let mut t = 0u64;
    for chunk in data.chunks(64) {
        let Some((&op, rest)) = chunk.split_first() else {
            continue;
        };
        t += u64::from(op) * 5_000_000;
        let now = Now {
            mono: MonoInstant::from_nanos(t),
            wall: UnixTime::from_secs(1_800_000_000) + SignedDuration::from_nanos(t as i64),
        };
        let server = usize::from(op >> 4) % 4; // 3: an index out of range
        match op % 7 {
            0 => c.handle_timeout(now, t),
            1 => c.address_resolved(server, now.mono, op & 8 != 0),
            2 => c.address_failed(server, now.mono),
            3 => c.stepped(SignedDuration::from_millis(i64::from(op) - 128)),
            4 => c.slewed(SignedDuration::from_millis(i64::from(op) - 128)),
            5 => {
                let _ = c.handle_datagram(server, rest, now);
            }
            _ => {
                // A genuine answer to the last request sent, at a time the input picks (up
                // to a day off), on the index the input picks.
                if let Some((to, req)) = &sent {
                    let skew = rest.first().map_or(0, |&b| i64::from(b as i8) * 700);
                    let secs = (1_800_000_000 + (t / 1_000_000_000) as i64 + skew) as u64;
                    let radius = u32::from(rest.get(1).copied().unwrap_or(1));
                    if let Some(a) = answer(*to, req, secs, radius) {
                        let on = if op & 8 != 0 { server } else { *to };
                        let asked = c.asking();
                        let r = c.handle_datagram(on, &a, now);
                        if r.is_ok() {
                            assert_eq!(Some(on), asked, "accepted from a server not asked");
                        }
                    }
                }
            }
        }
        let mut rand = [0u8; RAND_LEN];
        rand[..8].copy_from_slice(&t.to_le_bytes());
        let asking = c.asking();
        if let Some((i, n)) = c.poll_transmit(now, &rand, &mut buf) {
            assert_eq!(Some(i), asking, "a request to a server not being asked");
            assert!(i < keys.len());
            assert!(c.wants_address(i).is_none(), "a request while waiting for an address");
            assert_eq!(n, 1024);
            sent = Some((i, buf[..n].to_vec()));
        }
        let mut events = 0;
        while let Some(e) = c.poll_event() {
            events += 1;
            if let RoughtimeEvent::Violation(v) = e {
                assert!(v.earlier < v.later);
                assert!(v.later_time.latest < v.earlier_time.earliest);
            }
        }
        assert!(events <= 2 * MAX_SERVERS + 4);
        for i in 0..keys.len() {
            if let Some(e) = c.estimate(i, now.mono) {
                assert!(e.offset.lo <= e.offset.hi);
            }
        }
    }
});
