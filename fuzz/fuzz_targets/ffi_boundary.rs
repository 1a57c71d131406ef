//! Arbitrary bytes through the C API: as saved state (rejected with an error, or restored so
//! that saving again gives bytes that restore the same way) and as datagrams from any server
//! index. Never a panic, and the context stays usable.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trusttime_ffi::*;

fuzz_target!(|data: &[u8]| {
    let mut ctx = Box::new(TrusttimeContext {
        opaque: [0; TRUSTTIME_CONTEXT_WORDS],
    });
    let mut cfg = std::mem::MaybeUninit::uninit();
    unsafe {
        assert_eq!(
            trusttime_config_default(cfg.as_mut_ptr()),
            TrusttimeError::Ok
        );
        let mut cfg = cfg.assume_init();
        cfg.server_count = 3;
        cfg.floor_unix_s = 1_790_000_000;
        assert_eq!(trusttime_init(&mut *ctx, &cfg), TrusttimeError::Ok);
        let now = TrusttimeNow {
            mono_ns: 5,
            wall_ns: 1_790_000_100_000_000_000,
        };
        if trusttime_restore(&mut *ctx, now, data.as_ptr(), data.len(), 1_000) == TrusttimeError::Ok
        {
            let mut buf = [0u8; TRUSTTIME_SAVED_SIZE];
            let mut len = 0;
            assert_eq!(
                trusttime_save(&mut *ctx, 5, buf.as_mut_ptr(), buf.len(), &mut len),
                TrusttimeError::Ok
            );
            let mut again = Box::new(TrusttimeContext {
                opaque: [0; TRUSTTIME_CONTEXT_WORDS],
            });
            assert_eq!(trusttime_init(&mut *again, &cfg), TrusttimeError::Ok);
            assert_eq!(
                trusttime_restore(&mut *again, now, buf.as_ptr(), len, -1),
                TrusttimeError::Ok
            );
        }
        let mut tx = TrusttimeTransmit { len: 0, server: 0 };
        let mut req = [0u8; TRUSTTIME_REQUEST_SIZE];
        let _ = trusttime_poll_transmit(&mut *ctx, now, 7, req.as_mut_ptr(), req.len(), &mut tx);
        let server = data.first().copied().unwrap_or(0) % 4;
        let mut why = TrusttimeReject::None;
        let _ =
            trusttime_handle_datagram(&mut *ctx, now, server, data.as_ptr(), data.len(), &mut why);
        let mut t = std::mem::MaybeUninit::uninit();
        assert_eq!(
            trusttime_trusted_time(&mut *ctx, 10, t.as_mut_ptr()),
            TrusttimeError::Ok
        );
        let t = t.assume_init();
        assert!(t.earliest_ns <= t.latest_ns);
    }
});
