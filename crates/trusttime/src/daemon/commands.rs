//! Commands to the running daemon: a hand-set time, a floor reset, a clean stop.

#[allow(unused_imports)]
use super::*;

/// Why a manual time was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
    /// Below the floor.
    #[error("{0}")]
    BelowFloor(String),
    /// Outside a network-trusted interval without force (or force not allowed).
    #[error("{0}")]
    Conflict(String),
}

/// The largest uncertainty a person may claim.
pub const MAX_MANUAL_UNCERTAINTY: SignedDuration = SignedDuration::from_secs(7 * 86_400);

impl StatusHandle {
    /// Sets the time by hand: `unix_ms ± uncertainty_ms`, by `who`. Refused below the floor,
    /// and outside a network-trusted interval unless `force` and the config allows it. Every
    /// accepted change is logged and shown in `status`.
    ///
    /// # Errors
    /// [`SetError`] says why nothing changed.
    pub fn set_manual(
        &self,
        unix_ms: i64,
        uncertainty_ms: i64,
        force: bool,
        who: &str,
    ) -> Result<Value, SetError> {
        if !(0..=MAX_MANUAL_UNCERTAINTY.as_millis()).contains(&uncertainty_ms) {
            return Err(SetError::Invalid(format!(
                "uncertainty must be 0 .. {} ms",
                MAX_MANUAL_UNCERTAINTY.as_millis()
            )));
        }
        if !(0..=32_503_680_000_000).contains(&unix_ms) {
            return Err(SetError::Invalid(
                "time must be between 1970 and 3000".into(),
            ));
        }
        let t = UnixTime::from_millis(unix_ms);
        let unc = SignedDuration::from_millis(uncertainty_ms);
        let requested = TimeInterval::around(t, unc);
        let now = self.1.now();
        let Ok(mut s) = self.0.lock() else {
            return Err(SetError::Invalid("status unavailable".into()));
        };
        let change = s
            .sys
            .set_manual(now, requested, force)
            .map_err(|e| match e {
                ManualError::BelowFloor { .. } => {
                    SetError::BelowFloor(format!("{t} ± {} is {e}", Human(unc)))
                }
                ManualError::ForceNotAllowed => SetError::Conflict(e.to_string()),
                _ => SetError::Conflict(format!("{t} ± {} is {e}", Human(unc))),
            })?;
        let old = change.old.map(|o| o.midpoint().to_string());
        let entry = json!({
            "at": now.wall.to_string(),
            "who": who,
            "old": old,
            "new": t.to_string(),
            "uncertainty_ms": uncertainty_ms,
            "trusted": change.new.to_string(),
            "forced": change.forced,
        });
        if change.forced {
            tracing::warn!(%who, old = ?old, new = %t, uncertainty_ms, "time set by hand, FORCED over the network-trusted interval");
        } else {
            tracing::warn!(%who, old = ?old, new = %t, uncertainty_ms, "time set by hand");
        }
        s.manual_log.push_back(entry.clone());
        while s.manual_log.len() > 20 {
            s.manual_log.pop_front();
        }
        drop(s);
        carry_out(self);
        Ok(json!({ "ok": true, "change": entry }))
    }

    /// Resets the floor to the build time and forgets every trusted time: the recovery for a
    /// device whose floor was raised by a wrong time. Root only (the control socket checks);
    /// logged and shown in `status`.
    pub fn reset_floor(&self, who: &str) -> Value {
        let now = self.1.now();
        let Ok(mut s) = self.0.lock() else {
            return json!({ "error": "status unavailable" });
        };
        let old = s.sys.floor();
        s.sys.reset_floor();
        let new = s.sys.floor();
        tracing::warn!(%who, %old, %new, "floor reset by hand; every trusted time forgotten");
        let entry = json!({
            "at": now.wall.to_string(),
            "who": who,
            "reset_floor": { "old": old.to_string(), "new": new.to_string() },
        });
        s.manual_log.push_back(entry.clone());
        while s.manual_log.len() > 20 {
            s.manual_log.pop_front();
        }
        drop(s);
        carry_out(self);
        json!({ "ok": true, "change": entry })
    }

    /// A clean stop (SIGTERM): persists the state.
    pub fn shutdown(&self) {
        if let Ok(mut s) = self.0.lock() {
            s.sys.on_stop();
        }
        carry_out(self);
    }
}
