//! The trust state machine: what the device can vouch for between syncs, across reboots and
//! after months on a shelf.
//!
//! Time is kept as an interval anchored at a monotonic instant. Between updates it moves with
//! the monotonic clock and widens by the drift bound (e.g. 50 ppm: 4.3 s a day), so an old
//! sync slowly stops being good enough for a purpose. It never goes below the floor.
//!
//! | state | meaning |
//! |---|---|
//! | `Unknown` | only the floor is known |
//! | `Holdover` | from the RTC, persisted state, a hand-set time, or a sync that has aged |
//! | `Synced` | a recent consensus of NTP sources |
//! | `Authenticated` | a recent consensus resting on authenticated sources |

use core::fmt;

use crate::select::OffsetInterval;
use crate::time::{
    MonoInstant, Now, Provenance, SignedDuration, TimeInterval, TrustedTime, UnixTime,
};

/// The daemon's trust state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrustState {
    /// Only the floor is known.
    Unknown,
    /// Carried forward from an RTC, persisted state, a manual setting, or an aged sync.
    Holdover,
    /// A recent NTP consensus.
    Synced,
    /// A recent consensus of authenticated sources.
    Authenticated,
}

impl TrustState {
    /// The name used in `--json` output.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            TrustState::Unknown => "unknown",
            TrustState::Holdover => "holdover",
            TrustState::Synced => "synced",
            TrustState::Authenticated => "authenticated",
        }
    }
}

impl fmt::Display for TrustState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Settings of the trust machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustConfig {
    /// Nothing below this is ever accepted.
    pub floor: UnixTime,
    /// Drift bound of the local oscillator, parts per million.
    pub drift_ppm: u32,
    /// How long after a consensus the state stays `Synced` before it becomes `Holdover`.
    pub sync_fresh_for: SignedDuration,
}

impl TrustConfig {
    /// 50 ppm, synced for 3 × 1024 s after a consensus.
    #[must_use]
    pub fn new(floor: UnixTime) -> Self {
        TrustConfig {
            floor,
            drift_ppm: 50,
            sync_fresh_for: SignedDuration::from_secs(3 * 1024),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Anchor {
    at: MonoInstant,
    interval: TimeInterval,
    provenance: Provenance,
}

/// Keeps a [`TrustedTime`] up to date from consensus results and holdover sources.
#[derive(Clone, Debug)]
pub struct TrustMachine {
    config: TrustConfig,
    anchor: Option<Anchor>,
    last_sync: Option<(MonoInstant, SignedDuration)>,
    freq_ppb: Option<i64>,
}

impl TrustMachine {
    /// Nothing known but the floor.
    #[must_use]
    pub fn new(config: TrustConfig) -> Self {
        TrustMachine {
            config,
            anchor: None,
            last_sync: None,
            freq_ppb: None,
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &TrustConfig {
        &self.config
    }

    /// Raises the floor (e.g. to a persisted good time); never lowers it.
    pub fn raise_floor(&mut self, floor: UnixTime) {
        self.config.floor = self.config.floor.max(floor);
    }

    /// A consensus: true time minus local wall time lies in `offset`, measured at `now`.
    pub fn on_consensus(&mut self, now: Now, offset: OffsetInterval, authenticated: bool) {
        let interval = TimeInterval {
            earliest: now.wall + offset.lo,
            latest: now.wall + offset.hi,
        }
        .clamp_to_floor(self.config.floor);
        let mid = offset.midpoint();
        if let Some((at, prev)) = self.last_sync {
            let dt = now.mono.since(at).as_nanos();
            // Frequency: how fast the offset moves, from syncs at least a minute apart.
            if dt >= 60_000_000_000 {
                let ppb =
                    (i128::from((mid - prev).as_nanos()) * 1_000_000_000 / i128::from(dt)) as i64;
                self.freq_ppb = Some(ppb);
            }
        }
        self.last_sync = Some((now.mono, mid));
        let provenance = if authenticated {
            Provenance::Authenticated
        } else {
            Provenance::Ntp
        };
        self.anchor = Some(Anchor {
            at: now.mono,
            interval,
            provenance,
        });
    }

    /// A holdover source (RTC, persisted state, manual setting): used when nothing better is
    /// known now. Returns whether it was taken.
    pub fn on_holdover(
        &mut self,
        at: MonoInstant,
        interval: TimeInterval,
        provenance: Provenance,
    ) -> bool {
        if interval.latest < self.config.floor {
            return false;
        }
        let interval = interval.clamp_to_floor(self.config.floor);
        let better = match self.current_anchor(at) {
            None => true,
            Some(t) => interval.width() < t.interval.width(),
        };
        if better {
            self.anchor = Some(Anchor {
                at,
                interval,
                provenance,
            });
        }
        better
    }

    /// A time set by a person: replaces what is known (the caller enforces the rules: never
    /// below the floor, never outside a network-trusted interval without `force`). Returns
    /// false when it lies entirely below the floor.
    pub fn set_manual(&mut self, at: MonoInstant, interval: TimeInterval) -> bool {
        if interval.latest < self.config.floor {
            return false;
        }
        let interval = interval.clamp_to_floor(self.config.floor);
        self.anchor = Some(Anchor {
            at,
            interval,
            provenance: Provenance::Manual,
        });
        true
    }

    fn current_anchor(&self, mono: MonoInstant) -> Option<TrustedTime> {
        let a = self.anchor?;
        let elapsed = mono.since(a.at).max(SignedDuration::ZERO);
        let interval = a
            .interval
            .shift(elapsed)
            .widen(elapsed.drift_bound(self.config.drift_ppm))
            .clamp_to_floor(self.config.floor);
        Some(TrustedTime {
            interval,
            provenance: a.provenance,
        })
    }

    /// What the device can vouch for at `mono`.
    #[must_use]
    pub fn current(&self, mono: MonoInstant) -> TrustedTime {
        self.current_anchor(mono).unwrap_or(TrustedTime {
            interval: TimeInterval {
                earliest: self.config.floor,
                latest: UnixTime::MAX,
            },
            provenance: Provenance::Floor,
        })
    }

    /// The state at `mono`.
    #[must_use]
    pub fn state(&self, mono: MonoInstant) -> TrustState {
        let Some(a) = self.anchor else {
            return TrustState::Unknown;
        };
        let fresh = mono.since(a.at) <= self.config.sync_fresh_for;
        match (a.provenance, fresh) {
            (Provenance::Authenticated, true) => TrustState::Authenticated,
            (Provenance::Ntp, true) => TrustState::Synced,
            _ => TrustState::Holdover,
        }
    }

    /// The frequency error of the local clock estimated from successive syncs, parts per
    /// billion (positive: the local clock runs slow).
    #[must_use]
    pub fn freq_ppb(&self) -> Option<i64> {
        self.freq_ppb
    }

    /// Restores a frequency estimate (from persisted state).
    pub fn set_freq_ppb(&mut self, ppb: i64) {
        self.freq_ppb = Some(ppb);
    }

    /// When the last consensus was reached.
    #[must_use]
    pub fn last_sync(&self) -> Option<MonoInstant> {
        self.last_sync.map(|(at, _)| at)
    }
}

/// Why an RTC reading is not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcReject {
    /// It reads below the floor: a dead battery (2000-01-01, 1970) or a reset.
    BelowFloor {
        /// What it read.
        read: UnixTime,
        /// The floor.
        floor: UnixTime,
    },
    /// There is no record of when it was last set, so its drift cannot be bounded.
    NeverSet,
    /// It reads earlier than when it was last set: it was reset or lost power.
    BeforeLastSet,
}

impl fmt::Display for RtcReject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtcReject::BelowFloor { read, floor } => write!(
                f,
                "the RTC reads {read}, below the floor {floor}: its battery is probably dead; ignored"
            ),
            RtcReject::NeverSet => f.write_str("the RTC was never set by trusttime, so its drift cannot be bounded; ignored"),
            RtcReject::BeforeLastSet => f.write_str("the RTC reads earlier than when it was last set: it was reset; ignored"),
        }
    }
}

/// The interval an RTC reading vouches for: `read ± drift × (time since it was last set)`,
/// where `last_set` is the true time at which trusttime last wrote it.
///
/// # Errors
/// [`RtcReject`] when the reading cannot be trusted.
pub fn rtc_holdover(
    read: UnixTime,
    floor: UnixTime,
    last_set: Option<UnixTime>,
    drift_ppm: u32,
) -> Result<TimeInterval, RtcReject> {
    if read < floor {
        return Err(RtcReject::BelowFloor { read, floor });
    }
    let set = last_set.ok_or(RtcReject::NeverSet)?;
    if read < set {
        return Err(RtcReject::BeforeLastSet);
    }
    // The RTC's own count of elapsed time may itself be off by the drift: bound it generously.
    let elapsed = read - set;
    let err = elapsed
        .drift_bound(drift_ppm)
        .saturating_add(SignedDuration::from_secs(1));
    Ok(TimeInterval::around(read, err).clamp_to_floor(floor))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOOR: i64 = 1_790_000_000;

    fn now(mono_s: u64, wall: i64) -> Now {
        Now {
            mono: MonoInstant::from_nanos(mono_s * 1_000_000_000),
            wall: UnixTime::from_secs(wall),
        }
    }

    #[test]
    fn states_follow_syncs_and_age() {
        let mut m = TrustMachine::new(TrustConfig::new(UnixTime::from_secs(FLOOR)));
        assert_eq!(m.state(MonoInstant::ZERO), TrustState::Unknown);
        assert_eq!(m.current(MonoInstant::ZERO).provenance, Provenance::Floor);
        let off = OffsetInterval::around(
            SignedDuration::from_secs(600),
            SignedDuration::from_millis(1),
        );
        m.on_consensus(now(10, FLOOR + 1000), off, false);
        assert_eq!(
            m.state(MonoInstant::from_nanos(11_000_000_000)),
            TrustState::Synced
        );
        let t = m.current(MonoInstant::from_nanos(10_000_000_000 + 86_400_000_000_000));
        // A day later: moved by a day, widened by 50 ppm of a day (4.32 s).
        assert_eq!(
            t.interval.midpoint(),
            UnixTime::from_secs(FLOOR + 1600 + 86_400)
        );
        assert!(t.uncertainty() >= SignedDuration::from_millis(4320));
        assert_eq!(
            m.state(MonoInstant::from_nanos(10_000_000_000 + 86_400_000_000_000)),
            TrustState::Holdover
        );
        m.on_consensus(now(20, FLOOR + 1010), off, true);
        assert_eq!(
            m.state(MonoInstant::from_nanos(21_000_000_000)),
            TrustState::Authenticated
        );
    }

    #[test]
    fn frequency_is_estimated_from_successive_syncs() {
        let mut m = TrustMachine::new(TrustConfig::new(UnixTime::from_secs(FLOOR)));
        let e = SignedDuration::from_millis(1);
        m.on_consensus(
            now(0, FLOOR),
            OffsetInterval::around(SignedDuration::ZERO, e),
            false,
        );
        // 1000 s later the offset grew by 20 ms: the local clock runs 20 ppm slow.
        m.on_consensus(
            now(1000, FLOOR + 1000),
            OffsetInterval::around(SignedDuration::from_millis(20), e),
            false,
        );
        assert_eq!(m.freq_ppb(), Some(20_000));
    }

    #[test]
    fn never_below_the_floor_and_holdover_only_when_better() {
        let floor = UnixTime::from_secs(FLOOR);
        let mut m = TrustMachine::new(TrustConfig::new(floor));
        let below = TimeInterval::around(
            UnixTime::from_secs(946_684_800),
            SignedDuration::from_secs(5),
        );
        assert!(!m.on_holdover(MonoInstant::ZERO, below, Provenance::Rtc));
        let wide = TimeInterval::around(
            UnixTime::from_secs(FLOOR + 100),
            SignedDuration::from_secs(500),
        );
        assert!(m.on_holdover(MonoInstant::ZERO, wide, Provenance::Persisted));
        assert!(m.current(MonoInstant::ZERO).interval.earliest >= floor);
        let narrow = TimeInterval::around(
            UnixTime::from_secs(FLOOR + 100),
            SignedDuration::from_secs(5),
        );
        assert!(m.on_holdover(MonoInstant::ZERO, narrow, Provenance::Rtc));
        assert!(!m.on_holdover(MonoInstant::ZERO, wide, Provenance::Persisted));
        assert_eq!(m.state(MonoInstant::ZERO), TrustState::Holdover);
    }

    #[test]
    fn rtc_rules() {
        let floor = UnixTime::from_secs(FLOOR);
        let dead = UnixTime::from_secs(946_684_800);
        assert!(matches!(
            rtc_holdover(dead, floor, Some(floor), 50),
            Err(RtcReject::BelowFloor { .. })
        ));
        assert_eq!(
            rtc_holdover(floor, floor, None, 50),
            Err(RtcReject::NeverSet)
        );
        let set = UnixTime::from_secs(FLOOR + 100);
        assert_eq!(
            rtc_holdover(UnixTime::from_secs(FLOOR + 50), floor, Some(set), 50),
            Err(RtcReject::BeforeLastSet)
        );
        let iv = rtc_holdover(
            UnixTime::from_secs(FLOOR + 100 + 1_000_000),
            floor,
            Some(set),
            50,
        )
        .unwrap();
        assert!(iv.radius() >= SignedDuration::from_secs(50));
    }
}
