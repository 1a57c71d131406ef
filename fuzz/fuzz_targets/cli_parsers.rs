//! The text parsers behind flags and config values: server specs, durations, RFC 3339 times.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = s.parse::<trusttime::sync::ServerSpec>() {
        let again: trusttime::sync::ServerSpec =
            spec.to_string().parse().expect("display re-parses");
        assert_eq!(spec, again);
    }
    let _ = trusttime::duration::parse_signed(s);
    if let Ok(t) = trusttime_core::UnixTime::parse_rfc3339(s) {
        let again =
            trusttime_core::UnixTime::parse_rfc3339(&t.to_string()).expect("display re-parses");
        assert_eq!(t, again);
    }
});
