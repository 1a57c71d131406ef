//! Drives a long-lived `RoughtimeChain` of three servers with arbitrary datagrams (on any
//! server's index), timers, address answers, steps and slews: it must never panic, never
//! send to a server waiting for an address, send only 1024-byte requests and only to the
//! server it is asking, keep its event queue bounded, and give only estimates whose interval
//! is well formed (`lo <= hi`). Arbitrary bytes do not carry valid signatures, so this
//! exercises the chain's bookkeeping and the verifier's refusals, not accepted samples.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trusttime_core::roughtime::Version;
use trusttime_core::roughtime_source::{
    ChainConfig, RoughtimeChain, ServerKey, MAX_SERVERS, RAND_LEN,
};
use trusttime_core::{MonoInstant, Now, SignedDuration, UnixTime};

fuzz_target!(|data: &[u8]| {
    let cfg = ChainConfig {
        min_poll: -2,
        max_poll: 4,
        drift_ppm: 100,
        max_age: SignedDuration::from_secs(64),
        reply_timeout: SignedDuration::from_millis(100),
        floor: UnixTime::from_secs(1_700_000_000),
    };
    let keys = [
        ServerKey {
            version: Version::Draft,
            key: [1; 32],
        },
        ServerKey {
            version: Version::Google,
            key: [2; 32],
        },
        ServerKey {
            version: Version::Draft,
            key: [3; 32],
        },
    ];
    let Ok(mut c) = RoughtimeChain::new(cfg, &keys, MonoInstant::ZERO) else {
        return;
    };
    let mut buf = [0u8; 1100];
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
        match op % 6 {
            0 => c.handle_timeout(now, t),
            1 => c.address_resolved(server, now.mono, op & 8 != 0),
            2 => c.address_failed(server, now.mono),
            3 => c.stepped(SignedDuration::from_millis(i64::from(op) - 128)),
            4 => c.slewed(SignedDuration::from_millis(i64::from(op) - 128)),
            _ => {
                let _ = c.handle_datagram(server, rest, now);
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
        }
        let mut events = 0;
        while c.poll_event().is_some() {
            events += 1;
        }
        assert!(events <= 2 * MAX_SERVERS + 4);
        for i in 0..keys.len() {
            if let Some(e) = c.estimate(i, now.mono) {
                assert!(e.offset.lo <= e.offset.hi);
            }
        }
    }
});
