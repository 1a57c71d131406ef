//! Drives a long-lived `NtpSource` with arbitrary datagrams, timers, address answers, steps
//! and slews: it must never panic, never send while it waits for an address or to a server
//! that stopped it with a Kiss-o'-Death, keep its event queue bounded, and give only
//! estimates whose interval is well formed (`lo <= hi`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use trusttime_core::ntp::ClientConfig;
use trusttime_core::source::{NtpSource, SourceConfig, RAND_LEN};
use trusttime_core::{MonoInstant, Now, SignedDuration, UnixTime};

fuzz_target!(|data: &[u8]| {
    let cfg = SourceConfig {
        client: ClientConfig::default(),
        min_poll: -2,
        max_poll: 4,
        drift_ppm: 100,
        max_age: SignedDuration::from_secs(64),
    };
    let mut s = NtpSource::new(cfg, MonoInstant::ZERO);
    let mut buf = [0u8; 1024];
    let mut t = 0u64;
    for chunk in data.chunks(50) {
        let Some((&op, rest)) = chunk.split_first() else {
            continue;
        };
        t += u64::from(op) * 20_000_000;
        let now = Now {
            mono: MonoInstant::from_nanos(t),
            wall: UnixTime::from_secs(1_800_000_000) + SignedDuration::from_nanos(t as i64),
        };
        let mut rand = [0u8; RAND_LEN];
        rand[..8].copy_from_slice(&(t ^ u64::from(op) << 40).to_le_bytes());
        match op % 6 {
            0 => s.handle_timeout(now, t),
            1 => s.address_resolved(now.mono, op & 8 != 0),
            2 => s.address_failed(now.mono),
            3 => s.stepped(SignedDuration::from_millis(i64::from(op) - 128)),
            4 => s.slewed(SignedDuration::from_millis(i64::from(op) - 128)),
            _ => {
                // Splice the outstanding request's cookie in half the time so replies can be
                // accepted.
                let mut d = rest.to_vec();
                if op & 16 != 0 && d.len() >= 32 {
                    d[24..32].copy_from_slice(&buf[40..48]);
                }
                let _ = s.handle_datagram(now, &d);
            }
        }
        let waiting = s.wants_address().is_some() && !s.in_flight();
        let stopped = s.policy().stopped_by().is_some() && !s.in_flight();
        if let Some(n) = s.poll_transmit(now, &rand, &mut buf) {
            assert!(!waiting, "a request while waiting for an address");
            assert!(!stopped, "a request to a server that sent DENY or RSTR");
            assert_eq!(n, 48);
        }
        let mut events = 0;
        while s.poll_event().is_some() {
            events += 1;
        }
        assert!(events <= 4);
        if let Some(e) = s.estimate(now.mono) {
            assert!(e.offset.lo <= e.offset.hi);
        }
    }
});
