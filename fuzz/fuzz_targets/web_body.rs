//! Arbitrary bytes as the web page's JSON bodies (login and set-time) and as its `Host`
//! header: a clear error or a parsed request, never a panic; a `Host` with a path, user or
//! space in it is never allowed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trusttime::web::{parse_body, HostPolicy, Login, SetTime};

fuzz_target!(|data: &[u8]| {
    let _ = parse_body::<Login>(data);
    if let Ok(t) = parse_body::<SetTime>(data) {
        let _ = (t.unix_ms, t.uncertainty_ms, t.force);
    }
    if let Ok(host) = std::str::from_utf8(data) {
        let names = ["device.local".to_owned()];
        for listen in ["127.0.0.1", "0.0.0.0", "::"] {
            let policy = HostPolicy::new(
                listen
                    .parse()
                    .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
                &names,
            );
            if policy.allows(host) {
                assert!(!host.trim().contains(['/', '@', ' ', '?', '#']), "{host:?}");
            }
        }
    }
});
