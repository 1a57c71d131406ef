//! The clock the verifier asks.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rustls::time_provider::TimeProvider;
use trusttime_core::{Provenance, SignedDuration, TimeInterval, TrustedTime, UnixTime};

/// What the device knows at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockReading {
    /// What the device's own clock says (what OpenSSL would use).
    pub device: UnixTime,
    /// What the device can vouch for, and where it came from.
    pub trusted: TrustedTime,
}

impl ClockReading {
    /// A device that knows nothing but its floor: the interval is `[floor, end of time]`.
    #[must_use]
    pub fn untrusted(device: UnixTime, floor: UnixTime) -> Self {
        ClockReading {
            device,
            trusted: TrustedTime {
                interval: TimeInterval {
                    earliest: floor,
                    latest: UnixTime::MAX,
                },
                provenance: Provenance::Floor,
            },
        }
    }
    /// True when the trusted interval is no wider than `±max_error`.
    #[must_use]
    pub fn is_trusted_within(&self, max_error: SignedDuration) -> bool {
        self.trusted.provenance != Provenance::Floor && self.trusted.is_within(max_error)
    }
}

/// A source of [`ClockReading`]s.
pub trait TrustedClock: fmt::Debug + Send + Sync {
    /// Reads the clock now.
    fn read(&self) -> ClockReading;
}

/// A clock stuck at one reading: tests, and `trusttime check --at`.
#[derive(Clone, Copy, Debug)]
pub struct FixedClock(pub ClockReading);

impl TrustedClock for FixedClock {
    fn read(&self) -> ClockReading {
        self.0
    }
}

/// A trusted time shared between whatever syncs (a `trusttime sync`, the daemon) and every TLS
/// connection. Between updates the interval moves with the monotonic clock and widens by the
/// drift bound (default 50 ppm), so an old sync slowly stops being good enough.
#[derive(Debug)]
pub struct SharedClock {
    floor: UnixTime,
    drift_ppm: u32,
    state: RwLock<Option<(TrustedTime, Instant)>>,
}

impl SharedClock {
    /// Nothing known yet but the floor.
    #[must_use]
    pub fn new(floor: UnixTime) -> Self {
        SharedClock {
            floor,
            drift_ppm: 50,
            state: RwLock::new(None),
        }
    }
    /// Sets the drift bound used between updates.
    #[must_use]
    pub fn with_drift_ppm(mut self, ppm: u32) -> Self {
        self.drift_ppm = ppm;
        self
    }
    /// Records a trusted time as of now (e.g. a sync's consensus interval). An interval below
    /// the floor is raised to it.
    pub fn update(&self, t: TrustedTime) {
        let t = TrustedTime {
            interval: t.interval.clamp_to_floor(self.floor),
            provenance: t.provenance,
        };
        if let Ok(mut g) = self.state.write() {
            *g = Some((t, Instant::now()));
        }
    }
    /// Forgets the trusted time (back to the floor).
    pub fn clear(&self) {
        if let Ok(mut g) = self.state.write() {
            *g = None;
        }
    }
}

fn system_now() -> UnixTime {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => UnixTime::from_nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        Err(e) => UnixTime::from_nanos(-i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX)),
    }
}

impl TrustedClock for SharedClock {
    fn read(&self) -> ClockReading {
        let device = system_now();
        let state = self.state.read().ok().and_then(|g| *g);
        match state {
            None => ClockReading::untrusted(device, self.floor),
            Some((t, at)) => {
                let elapsed = SignedDuration::from_std(at.elapsed());
                let interval = t
                    .interval
                    .shift(elapsed)
                    .widen(elapsed.drift_bound(self.drift_ppm));
                ClockReading {
                    device,
                    trusted: TrustedTime {
                        interval,
                        provenance: t.provenance,
                    },
                }
            }
        }
    }
}

impl<T: TrustedClock + ?Sized> TrustedClock for Arc<T> {
    fn read(&self) -> ClockReading {
        (**self).read()
    }
}

/// A rustls [`TimeProvider`] that only tells the time when it is trusted to `max_error`.
/// Otherwise it returns `None` and rustls fails the handshake: closed, not on a guess.
#[derive(Debug)]
pub struct TrustedTimeProvider {
    clock: Arc<dyn TrustedClock>,
    max_error: SignedDuration,
}

impl TrustedTimeProvider {
    /// A provider for a purpose's maximum error (see `Purpose::default_max_error`).
    #[must_use]
    pub fn new(clock: Arc<dyn TrustedClock>, max_error: SignedDuration) -> Self {
        TrustedTimeProvider { clock, max_error }
    }
}

impl TimeProvider for TrustedTimeProvider {
    fn current_time(&self) -> Option<rustls_pki_types::UnixTime> {
        let r = self.clock.read();
        if !r.is_trusted_within(self.max_error) {
            return None;
        }
        let secs = u64::try_from(r.trusted.interval.midpoint().as_secs()).ok()?;
        Some(rustls_pki_types::UnixTime::since_unix_epoch(
            std::time::Duration::from_secs(secs),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_fails_closed_until_trusted() {
        let floor = UnixTime::from_secs(1_790_000_000);
        let clock = Arc::new(SharedClock::new(floor));
        let p = TrustedTimeProvider::new(clock.clone(), SignedDuration::from_secs(3600));
        assert!(p.current_time().is_none(), "floor only: no time");
        let now = system_now();
        clock.update(TrustedTime {
            interval: TimeInterval::around(now, SignedDuration::from_millis(2)),
            provenance: Provenance::Ntp,
        });
        let t = p.current_time().unwrap();
        assert!((t.as_secs() as i64 - now.as_secs()).abs() <= 1);
        // Too wide for SigV4's 5 minutes.
        clock.update(TrustedTime {
            interval: TimeInterval::around(now, SignedDuration::from_secs(600)),
            provenance: Provenance::Manual,
        });
        let strict = TrustedTimeProvider::new(clock.clone(), SignedDuration::from_secs(300));
        assert!(strict.current_time().is_none());
        assert!(p.current_time().is_some());
        clock.clear();
        assert!(p.current_time().is_none());
    }

    #[test]
    fn shared_clock_widens_with_drift() {
        let clock = SharedClock::new(UnixTime::from_secs(0)).with_drift_ppm(1_000_000);
        clock.update(TrustedTime {
            interval: TimeInterval::around(system_now(), SignedDuration::ZERO),
            provenance: Provenance::Ntp,
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        let r = clock.read();
        assert!(
            r.trusted.uncertainty() >= SignedDuration::from_millis(20),
            "{:?}",
            r.trusted
        );
    }
}
