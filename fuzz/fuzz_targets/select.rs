//! Arbitrary offset intervals into source selection: no panic, and a selection's interval
//! always lies inside every member's interval.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trusttime_core::select::{decide, select, OffsetInterval, Outcome};
use trusttime_core::SignedDuration;

fuzz_target!(|data: &[u8]| {
    let outcomes: Vec<Outcome> = data
        .chunks(17)
        .take(40)
        .map(|c| match c.first().copied().unwrap_or(0) % 3 {
            0 => Outcome::Pending,
            1 => Outcome::Failed,
            _ => {
                let mut a = [0u8; 8];
                let mut b = [0u8; 8];
                a.copy_from_slice(c.get(1..9).unwrap_or(&[0; 8]));
                b.copy_from_slice(c.get(9..17).unwrap_or(&[0; 8]));
                Outcome::Reply(OffsetInterval {
                    lo: SignedDuration::from_nanos(i64::from_le_bytes(a)),
                    hi: SignedDuration::from_nanos(i64::from_le_bytes(b)),
                })
            }
        })
        .collect();
    let min = data.first().copied().unwrap_or(1) % 5;
    let _ = decide(&outcomes, min);
    if let Ok(sel) = select(&outcomes, min) {
        for (i, o) in outcomes.iter().enumerate() {
            if let (true, Outcome::Reply(iv)) = (sel.is_member(i), o) {
                let (lo, hi) = (iv.lo.min(iv.hi), iv.lo.max(iv.hi));
                assert!(lo <= sel.interval.lo && sel.interval.hi <= hi);
            }
        }
    }
});
