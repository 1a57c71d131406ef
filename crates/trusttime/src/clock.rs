//! Reading the local clocks. Setting them lives behind the `platform` traits of the daemon.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use trusttime_core::{MonoInstant, Now, SignedDuration, UnixTime};

/// Where "now" comes from. The daemon, the CLI and the demo read the clocks only through this,
/// so a test or the demo can give the device any wall-clock time it likes.
pub trait LocalClock: Send + Sync {
    /// Reads both clocks at once.
    fn now(&self) -> Now;
}

impl std::fmt::Debug for dyn LocalClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalClock")
    }
}

/// The machine's clocks: a monotonic clock (never steps) and the system wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

/// Monotonic time since the first call in this process.
#[must_use]
pub fn mono_now() -> MonoInstant {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    MonoInstant::from_nanos(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX))
}

/// The system wall clock as [`UnixTime`] (times before 1970 are negative).
#[must_use]
pub fn system_wall() -> UnixTime {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => UnixTime::from_nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        Err(e) => UnixTime::from_nanos(-i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX)),
    }
}

impl LocalClock for SystemClock {
    fn now(&self) -> Now {
        Now {
            mono: mono_now(),
            wall: system_wall(),
        }
    }
}

/// A clock that runs at the machine's rate but shows a different wall time: the system clock
/// plus `offset`. The demo uses it for a device that booted at the floor, and `serve --offset`
/// for a server that lies.
#[derive(Clone, Copy, Debug)]
pub struct ShiftedClock {
    /// Added to the system wall clock.
    pub offset: SignedDuration,
}

impl ShiftedClock {
    /// A clock whose wall time reads `at` now and advances from there.
    #[must_use]
    pub fn starting_at(at: UnixTime) -> Self {
        ShiftedClock {
            offset: at - system_wall(),
        }
    }
}

impl LocalClock for ShiftedClock {
    fn now(&self) -> Now {
        Now {
            mono: mono_now(),
            wall: system_wall().saturating_add(self.offset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifted_clock_starts_where_asked_and_runs() {
        let at = UnixTime::from_secs(1_700_000_000);
        let c = ShiftedClock::starting_at(at);
        let a = c.now();
        assert!((a.wall - at).abs() < SignedDuration::from_millis(50));
        let b = c.now();
        assert!(b.mono >= a.mono);
    }
}
