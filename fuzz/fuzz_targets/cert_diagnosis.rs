//! Arbitrary DER as a server's chain through the diagnosis path: never a panic, always a
//! verdict with a message.
#![no_main]
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use rustls_pki_types::{CertificateDer, ServerName};
use trusttime_core::UnixTime;
use trusttime_tls::{ClockReading, FixedClock, Policy, Purpose, TrustedTimeVerifier};

fuzz_target!(|data: &[u8]| {
    static V: OnceLock<TrustedTimeVerifier> = OnceLock::new();
    let v = V.get_or_init(|| {
        let clock = Arc::new(FixedClock(ClockReading::untrusted(
            UnixTime::from_secs(946_684_800),
            UnixTime::from_secs(1_700_000_000),
        )));
        TrustedTimeVerifier::with_webpki_roots(clock, Policy::for_purpose(Purpose::Tls))
            .expect("verifier")
    });
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let (a, b) = data.split_at(split);
    let leaf = CertificateDer::from(a.to_vec());
    let inter = [CertificateDer::from(b.to_vec())];
    let name = ServerName::try_from("fuzz.example").expect("name");
    let d = v.diagnose(&leaf, &inter, &name);
    assert!(!d.message.is_empty());
});
