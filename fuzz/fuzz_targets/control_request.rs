//! Arbitrary bytes as a control-socket request body and as a framed stream.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = trusttime::control::parse_request(data);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut r = data;
        while let Ok(frame) = trusttime::control::read_frame(&mut r).await {
            assert!(frame.len() <= trusttime::control::MAX_MESSAGE);
            let _ = trusttime::control::parse_request(&frame);
        }
    });
});
