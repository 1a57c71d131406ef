//! A Cortex-M firmware that links one cumulative part of the core (see the features in
//! Cargo.toml), for bench/size.sh. Inputs come through `black_box` from RAM, so nothing is
//! folded away; outputs go to `black_box` too. It is measured, not run.
#![no_std]
#![no_main]
// Each variant uses a different subset of the helpers below.
#![allow(dead_code)]

use core::hint::black_box;

#[cfg(not(feature = "ffi"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[cfg(feature = "ffi")]
#[no_mangle]
pub extern "C" fn trusttime_panic_hook() {}

#[link_section = ".vector_table.reset"]
#[no_mangle]
pub static RESET: extern "C" fn() -> ! = reset;

static mut RX: [u8; 1024] = [0; 1024];
static mut WORDS: [u64; 8] = [0; 8];

fn rx() -> &'static [u8] {
    // SAFETY: single-threaded firmware; the buffer is only read.
    let b: &'static [u8; 1024] = unsafe { &*core::ptr::addr_of!(RX) };
    let b = black_box(b);
    &b[..black_box(48usize)]
}

fn word(i: usize) -> u64 {
    // SAFETY: as above.
    black_box(unsafe { core::ptr::read_volatile(core::ptr::addr_of!(WORDS[i & 7])) })
}

#[cfg(any(feature = "sntp", feature = "stack"))]
fn now() -> trusttime_core::Now {
    trusttime_core::Now {
        mono: trusttime_core::MonoInstant::from_nanos(word(0)),
        wall: trusttime_core::UnixTime::from_nanos(word(1) as i64),
    }
}

/// One SNTP exchange with one server: request, reply, sample.
#[cfg(feature = "sntp")]
fn sntp(client: &mut trusttime_core::ntp::NtpClient) -> Option<trusttime_core::ntp::Sample> {
    let mut buf = [0u8; 48];
    if let Some(n) = client.poll_transmit(now(), word(2), &mut buf) {
        black_box(&buf[..n]);
    }
    black_box(client.poll_timeout());
    client.handle_timeout(now());
    let _ = black_box(client.handle_datagram(now(), rx()));
    client.take_sample()
}

#[cfg(feature = "sntp")]
fn run() {
    use trusttime_core::ntp::{ClientConfig, NtpClient};
    let config = ClientConfig {
        floor: trusttime_core::UnixTime::from_secs(word(3) as i64),
        ..ClientConfig::default()
    };
    #[cfg(not(feature = "consensus"))]
    {
        let mut client = NtpClient::new(config);
        if let Some(s) = sntp(&mut client) {
            black_box((s.offset, s.error_bound()));
        }
    }
    #[cfg(feature = "consensus")]
    {
        use trusttime_core::select::{decide, Decision, OffsetInterval, Outcome};
        let mut clients = [
            NtpClient::new(config),
            NtpClient::new(config),
            NtpClient::new(config),
            NtpClient::new(config),
        ];
        let mut outcomes = [Outcome::Pending; 4];
        for (c, o) in clients.iter_mut().zip(outcomes.iter_mut()) {
            if let Some(s) = sntp(c) {
                *o = Outcome::Reply(OffsetInterval::around(s.offset, s.error_bound()));
            } else if c.is_done() {
                *o = Outcome::Failed;
            }
        }
        let decision = decide(black_box(&outcomes), 2);
        #[cfg(not(feature = "trust"))]
        black_box(decision);
        #[cfg(feature = "trust")]
        {
            use trusttime_core::trust::{TrustConfig, TrustMachine};
            let mut m = TrustMachine::new(TrustConfig::new(config.floor));
            if let Decision::Agreed(sel) = decision {
                m.on_consensus(now(), sel.interval, false);
            }
            let mono = now().mono;
            black_box((m.current(mono), m.state(mono)));
            #[cfg(feature = "nts")]
            nts();
        }
        #[cfg(not(feature = "trust"))]
        let _ = Decision::Wait;
    }
}

#[cfg(feature = "nts")]
fn nts() {
    use trusttime_core::nts::{parse_ke_response_into, KeResponse, Keys, NtsSession};
    let mut req = [0u8; 64];
    if let Ok(n) = trusttime_core::nts::encode_ke_request(&mut req) {
        black_box(&req[..n]);
    }
    // The response (2.3 KB) and the session (2.2 KB) live in statics, filled in place.
    static mut KE: KeResponse = KeResponse::empty();
    static mut SESSION: NtsSession = NtsSession::empty();
    // SAFETY: single-threaded firmware; nothing else refers to these statics.
    let (ke, session) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(KE),
            &mut *core::ptr::addr_of_mut!(SESSION),
        )
    };
    if parse_ke_response_into(rx(), ke).is_ok() {
        let keys = Keys {
            c2s: [word(4) as u8; 32],
            s2c: [word(5) as u8; 32],
        };
        session.reset(&keys, &ke.cookies);
        let mut buf = [0u8; 512];
        if let Ok(n) = session.seal_request(&rx()[..48], [word(6) as u8; 32], [7; 16], &mut buf) {
            black_box(&buf[..n]);
        }
        let _ = black_box(session.open_reply(rx()));
    }
    #[cfg(feature = "roughtime")]
    roughtime();
}

#[cfg(feature = "roughtime")]
fn roughtime() {
    use trusttime_core::roughtime::{encode_request, verify_response, Version, REQUEST_LEN};
    let nonce = [word(7) as u8; 64];
    let mut req = [0u8; REQUEST_LEN];
    if let Ok(n) = encode_request(Version::Draft, &nonce, &mut req) {
        black_box(&req[..n]);
        let key = [word(4) as u8; 32];
        let _ = black_box(verify_response(Version::Draft, rx(), &nonce, &req[..n], &key));
    }
}

/// The whole C API, as a C firmware that calls every function would link it.
#[cfg(feature = "ffi")]
fn run() {
    use trusttime_ffi::*;
    let fns: [*const (); 16] = [
        trusttime_config_default as *const (),
        trusttime_init as *const (),
        trusttime_poll_transmit as *const (),
        trusttime_handle_datagram as *const (),
        trusttime_poll_timeout as *const (),
        trusttime_handle_timeout as *const (),
        trusttime_trusted_time as *const (),
        trusttime_ready as *const (),
        trusttime_ready_within as *const (),
        trusttime_round_status as *const (),
        trusttime_server_info as *const (),
        trusttime_save as *const (),
        trusttime_restore as *const (),
        trusttime_context_size as *const (),
        trusttime_error_str as *const (),
        trusttime_reject_str as *const (),
    ];
    black_box(fns);
}

/// The stack variant: each entry point a firmware calls, behind a function of its own
/// (`stack_*`, never inlined) whose worst-case stack bench/size.sh reads from the call graph
/// and the frames `-Z emit-stack-sizes` records.
#[cfg(feature = "stack")]
mod stack {
    use super::{black_box, now, rx, word};
    use trusttime_core::ntp::{ClientConfig, NtpClient};
    use trusttime_core::nts::{parse_ke_response_into, KeResponse, Keys, NtsSession};
    use trusttime_core::select::{decide, OffsetInterval, Outcome};
    use trusttime_core::system::{System, SystemConfig};
    use trusttime_core::trust::{TrustConfig, TrustMachine};
    use trusttime_core::{SignedDuration, UnixTime};

    #[no_mangle]
    #[inline(never)]
    pub fn stack_decide_4(outcomes: &[Outcome; 4]) {
        black_box(decide(outcomes, black_box(2)));
    }
    #[no_mangle]
    #[inline(never)]
    pub fn stack_ntp_poll_transmit(c: &mut NtpClient, buf: &mut [u8; 48]) {
        black_box(c.poll_transmit(now(), word(2), buf));
    }
    #[no_mangle]
    #[inline(never)]
    pub fn stack_ntp_handle_datagram(c: &mut NtpClient) {
        let _ = black_box(c.handle_datagram(now(), rx()));
        black_box(c.take_sample());
    }
    #[no_mangle]
    #[inline(never)]
    pub fn stack_trust_on_consensus(m: &mut TrustMachine, o: OffsetInterval) {
        m.on_consensus(now(), o, word(3) & 1 == 1);
    }
    #[no_mangle]
    #[inline(never)]
    pub fn stack_system_on_consensus(s: &mut System, o: OffsetInterval) {
        black_box(s.on_consensus(now(), o, word(3) & 1 == 1));
    }
    #[no_mangle]
    #[inline(never)]
    pub fn stack_nts_parse_ke_response_into(out: &mut KeResponse) {
        let _ = black_box(parse_ke_response_into(rx(), out));
    }
    #[no_mangle]
    #[inline(never)]
    pub fn stack_nts_session_reset(s: &mut NtsSession, keys: &Keys, ke: &KeResponse) {
        s.reset(keys, &ke.cookies);
    }
    #[no_mangle]
    #[inline(never)]
    pub fn stack_nts_seal_request(s: &mut NtsSession, buf: &mut [u8; 512]) {
        let r = s.seal_request(&rx()[..48], [word(6) as u8; 32], [word(7) as u8; 16], buf);
        let _ = black_box(r);
    }
    #[no_mangle]
    #[inline(never)]
    pub fn stack_nts_open_reply(s: &mut NtsSession) {
        let _ = black_box(s.open_reply(rx()));
    }

    fn interval(i: usize) -> OffsetInterval {
        OffsetInterval::around(
            SignedDuration::from_nanos(word(i) as i64),
            SignedDuration::from_nanos(word(i + 1) as i64),
        )
    }

    pub fn run() {
        let floor = UnixTime::from_secs(word(3) as i64);
        let config = ClientConfig {
            floor,
            ..ClientConfig::default()
        };
        let mut client = NtpClient::new(config);
        let mut buf = [0u8; 48];
        stack_ntp_poll_transmit(black_box(&mut client), &mut buf);
        stack_ntp_handle_datagram(black_box(&mut client));
        let outcomes = [
            Outcome::Reply(interval(0)),
            Outcome::Reply(interval(1)),
            Outcome::Reply(interval(2)),
            Outcome::Failed,
        ];
        stack_decide_4(black_box(&outcomes));
        let mut m = TrustMachine::new(TrustConfig::new(floor));
        stack_trust_on_consensus(black_box(&mut m), interval(4));
        let mut s = System::new(SystemConfig {
            trust: TrustConfig::new(floor),
            allow_manual_force: false,
            has_rtc: word(5) & 1 == 1,
            discipline: word(6) & 1 == 1,
            step_threshold: trusttime_core::SignedDuration::from_millis(128),
        });
        stack_system_on_consensus(black_box(&mut s), interval(6));
        let mut ke = KeResponse::empty();
        stack_nts_parse_ke_response_into(black_box(&mut ke));
        let keys = Keys {
            c2s: [word(4) as u8; 32],
            s2c: [word(5) as u8; 32],
        };
        let mut session = NtsSession::empty();
        stack_nts_session_reset(black_box(&mut session), &keys, &ke);
        let mut out = [0u8; 512];
        stack_nts_seal_request(black_box(&mut session), &mut out);
        stack_nts_open_reply(black_box(&mut session));
    }
}

#[cfg(feature = "stack")]
fn run() {
    stack::run();
}

#[cfg(not(any(feature = "sntp", feature = "ffi", feature = "stack")))]
fn run() {
    black_box(word(0));
}

extern "C" fn reset() -> ! {
    run();
    loop {
        black_box(());
    }
}
