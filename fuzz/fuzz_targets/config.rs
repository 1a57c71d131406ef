//! Arbitrary text as a config file: a clear error or a checked config, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = trusttime::config::Config::parse(s, std::path::Path::new("fuzz.toml"));
    }
});
