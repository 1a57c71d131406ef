//! Arbitrary bytes as a control-socket request body and as a framed stream: each body is
//! refused or parses into a `Command` that survives the wire format's round trip.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    trusttime::control::round_trip(data);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut r = data;
        while let Ok(frame) = trusttime::control::read_frame(&mut r).await {
            assert!(frame.len() <= trusttime::control::MAX_MESSAGE);
            trusttime::control::round_trip(&frame);
        }
    });
});
