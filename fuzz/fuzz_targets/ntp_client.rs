//! Feeds arbitrary datagrams and timer events to a client: it must never panic, and it must
//! only ever produce a sample from a reply that echoed its cookie.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trusttime_core::ntp::{ClientConfig, NtpClient};
use trusttime_core::{MonoInstant, Now, UnixTime};

fuzz_target!(|data: &[u8]| {
    let mut c = NtpClient::new(ClientConfig::default());
    let mut buf = [0u8; 48];
    let mut t = 0u64;
    for chunk in data.chunks(49) {
        let Some((&op, rest)) = chunk.split_first() else {
            continue;
        };
        t += u64::from(op) * 10_000_000;
        let now = Now {
            mono: MonoInstant::from_nanos(t),
            wall: UnixTime::from_secs(i64::from(op) << 24),
        };
        let _ = c.poll_transmit(now, u64::from(op) << 40 | t, &mut buf);
        if op & 1 == 0 {
            c.handle_timeout(now);
        } else {
            // Splice our own request's cookie in half the time so replies get accepted.
            let mut d = rest.to_vec();
            if op & 2 != 0 && d.len() >= 32 {
                d[24..32].copy_from_slice(&buf[40..48]);
            }
            let _ = c.handle_datagram(now, &d);
        }
        let _ = c.poll_timeout();
        let _ = c.take_sample();
    }
});
