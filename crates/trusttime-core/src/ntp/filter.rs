//! A per-source clock filter: the last [`FILTER_LEN`] samples, and the one whose error bound,
//! aged by the drift bound since it was taken, is the smallest (in practice the minimum-delay
//! one, as in NTP's clock filter). A single delayed reply (a queue on the path, a busy
//! server) then does not widen or skew the source's interval while a recent tight sample is
//! still good.
//!
//! Samples are offsets (true time minus local wall time) measured against the local clock;
//! when the driver steps the clock they move with it ([`ClockFilter::stepped`]), and while a
//! slew is in progress they cover both the old and the new clock ([`ClockFilter::slewed`]).

use crate::select::OffsetInterval;
use crate::time::{MonoInstant, SignedDuration};

/// Samples kept per source.
pub const FILTER_LEN: usize = 8;

/// One sample: the offset interval, the round-trip delay, when it was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterSample {
    /// True time minus local wall time lies in here (at `at`).
    pub offset: OffsetInterval,
    /// Round-trip delay.
    pub delay: SignedDuration,
    /// When it was taken (monotonic).
    pub at: MonoInstant,
}

impl FilterSample {
    /// The interval at `now`: widened by the drift bound since it was taken.
    #[must_use]
    pub fn aged(&self, now: MonoInstant, drift_ppm: u32) -> OffsetInterval {
        let w = now
            .since(self.at)
            .max(SignedDuration::ZERO)
            .drift_bound(drift_ppm);
        OffsetInterval {
            lo: self.offset.lo - w,
            hi: self.offset.hi + w,
        }
    }
}

/// The last [`FILTER_LEN`] samples of one source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockFilter {
    samples: [Option<FilterSample>; FILTER_LEN],
    next: usize,
}

impl ClockFilter {
    /// An empty filter.
    #[must_use]
    pub const fn new() -> Self {
        ClockFilter {
            samples: [None; FILTER_LEN],
            next: 0,
        }
    }

    /// Adds a sample, replacing the oldest when full.
    pub fn add(&mut self, s: FilterSample) {
        self.samples[self.next] = Some(s);
        self.next = (self.next + 1) % FILTER_LEN;
    }

    /// The sample whose interval, aged to `now` by `drift_ppm`, is the narrowest, among those
    /// at most `max_age` old. `None` when there is none.
    #[must_use]
    pub fn best(
        &self,
        now: MonoInstant,
        drift_ppm: u32,
        max_age: SignedDuration,
    ) -> Option<FilterSample> {
        self.samples
            .iter()
            .flatten()
            .filter(|s| now.since(s.at) <= max_age)
            .min_by_key(|s| s.aged(now, drift_ppm).radius())
            .copied()
    }

    /// The local clock was stepped by `by`: every sample moves with it.
    pub fn stepped(&mut self, by: SignedDuration) {
        for s in self.samples.iter_mut().flatten() {
            s.offset.lo -= by;
            s.offset.hi -= by;
        }
    }

    /// A slew of `by` was started: until it completes, a sample may be measured against the
    /// old clock or the new one, so it covers both.
    pub fn slewed(&mut self, by: SignedDuration) {
        for s in self.samples.iter_mut().flatten() {
            if by.is_negative() {
                s.offset.hi -= by;
            } else {
                s.offset.lo -= by;
            }
        }
    }

    /// Forgets every sample (e.g. after the source was replaced).
    pub fn clear(&mut self) {
        *self = ClockFilter::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_s: u64, offset_ms: i64, radius_ms: i64, delay_ms: i64) -> FilterSample {
        FilterSample {
            offset: OffsetInterval::around(
                SignedDuration::from_millis(offset_ms),
                SignedDuration::from_millis(radius_ms),
            ),
            delay: SignedDuration::from_millis(delay_ms),
            at: MonoInstant::from_nanos(at_s * 1_000_000_000),
        }
    }

    const HOUR: SignedDuration = SignedDuration::from_secs(3600);

    #[test]
    fn a_delay_spike_does_not_replace_a_recent_tight_sample() {
        let mut f = ClockFilter::new();
        f.add(sample(0, 10, 3, 5));
        f.add(sample(64, 260, 253, 505)); // a queue on the path for one poll
        let best = f
            .best(MonoInstant::from_nanos(64_000_000_000), 50, HOUR)
            .unwrap();
        assert_eq!(best.delay, SignedDuration::from_millis(5));
        // Aged by 64 s at 50 ppm of a clock that may itself run 50 ppm slow: 64 s x 50 /
        // (10^6 - 50) = 3.200160008 ms wider, rounded up to the nanosecond.
        let iv = best.aged(MonoInstant::from_nanos(64_000_000_000), 50);
        assert_eq!(
            iv.radius(),
            SignedDuration::from_millis(3) + SignedDuration::from_nanos(3_200_161)
        );
    }

    #[test]
    fn old_samples_age_out_and_the_oldest_is_replaced() {
        let mut f = ClockFilter::new();
        f.add(sample(0, 0, 1, 2));
        for k in 1..=FILTER_LEN as u64 {
            f.add(sample(k * 64, 0, 4, 8));
        }
        // The tight first sample was pushed out by eight newer ones.
        let now = MonoInstant::from_nanos(9 * 64_000_000_000);
        assert_eq!(
            f.best(now, 50, HOUR).unwrap().delay,
            SignedDuration::from_millis(8)
        );
        assert!(f.best(now, 50, SignedDuration::from_secs(10)).is_none());
        // A tight sample long ago loses to a looser fresh one once aging outweighs it.
        let mut f = ClockFilter::new();
        f.add(sample(0, 0, 1, 2));
        f.add(sample(100_000, 0, 4, 8));
        let best = f
            .best(
                MonoInstant::from_nanos(100_000_000_000_000),
                50,
                SignedDuration::MAX,
            )
            .unwrap();
        assert_eq!(best.delay, SignedDuration::from_millis(8));
    }

    #[test]
    fn steps_move_samples_and_slews_cover_both_clocks() {
        let mut f = ClockFilter::new();
        f.add(sample(0, 1000, 2, 4));
        f.stepped(SignedDuration::from_secs(1));
        let s = f.best(MonoInstant::ZERO, 50, HOUR).unwrap();
        assert_eq!(s.offset.midpoint(), SignedDuration::ZERO);
        f.slewed(SignedDuration::from_millis(-300));
        let s = f.best(MonoInstant::ZERO, 50, HOUR).unwrap();
        assert_eq!(s.offset.lo, SignedDuration::from_millis(-2));
        assert_eq!(s.offset.hi, SignedDuration::from_millis(302));
        f.clear();
        assert!(f.best(MonoInstant::ZERO, 50, HOUR).is_none());
    }
}
