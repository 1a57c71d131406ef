//! Arbitrary bytes as the web page's JSON bodies (login and set-time): a clear error or a
//! parsed request, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trusttime::web::{parse_body, Login, SetTime};

fuzz_target!(|data: &[u8]| {
    let _ = parse_body::<Login>(data);
    if let Ok(t) = parse_body::<SetTime>(data) {
        let _ = (t.unix_ms, t.uncertainty_ms, t.force);
    }
});
