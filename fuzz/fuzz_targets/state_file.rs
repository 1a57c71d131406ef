//! Arbitrary bytes as a persisted state file: rejected or decoded, never a panic; anything
//! decoded re-encodes to a file that decodes to the same state.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = trusttime::state::decode(data) {
        let again = trusttime::state::decode(&trusttime::state::encode(&s))
            .expect("re-encoded state decodes");
        assert_eq!(s, again);
    }
});
