//! Commands to the running daemon: a hand-set time, a floor reset, a clean stop.

#[allow(unused_imports)]
use super::*;

use crate::json::{Changed, FloorChange, FloorReset, ManualChange, ManualSet};

/// Carries out the commands observers send through their [`DaemonLink`]s, one at a time,
/// until every link is gone.
pub(super) async fn serve_commands(handle: StatusHandle, mut rx: mpsc::Receiver<CommandCall>) {
    while let Some(call) = rx.recv().await {
        let reply = handle.execute(call.command, &call.who);
        let _ = call.reply.send(reply);
    }
}

impl StatusHandle {
    /// Carries out `command` for `who` and publishes the result. The caller has checked who
    /// may do what (a floor reset is root's, on the control socket).
    ///
    /// # Errors
    /// [`CommandError`] says why nothing changed.
    pub fn execute(&self, command: Command, who: &str) -> Result<Reply, CommandError> {
        let set = |t: SetTime| self.set_manual(t.unix_ms, t.uncertainty_ms, t.force, who);
        let changed = match command {
            Command::Status => return Ok(Reply::Status(Box::new(self.2.status()))),
            Command::Sources => return Ok(Reply::Sources(self.2.sources())),
            Command::Set(t) => set(t)?,
            Command::ResetFloor { then } => {
                let reset = self.reset_floor(who)?;
                match then {
                    None => reset,
                    Some(t) => set(t)?,
                }
            }
        };
        Ok(Reply::Changed(changed))
    }

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
    ) -> Result<Changed, SetError> {
        if !(0..=MAX_MANUAL_UNCERTAINTY.as_millis()).contains(&uncertainty_ms) {
            return Err(SetError::Uncertainty { uncertainty_ms });
        }
        if !(0..=MAX_MANUAL_TIME_MS).contains(&unix_ms) {
            return Err(SetError::Time { unix_ms });
        }
        let t = UnixTime::from_millis(unix_ms);
        let unc = SignedDuration::from_millis(uncertainty_ms);
        let requested = TimeInterval::around(t, unc);
        let now = self.1.now();
        let Ok(mut s) = self.0.lock() else {
            return Err(SetError::Unavailable);
        };
        let change = s
            .sys
            .set_manual(now, requested, force)
            .map_err(|why| SetError::Refused {
                requested: t,
                uncertainty: unc,
                why,
            })?;
        let old = change.old.map(|o| o.midpoint());
        let entry = ManualSet {
            at: now.wall.into(),
            who: who.to_owned(),
            old: old.map(Into::into),
            new: t.into(),
            uncertainty_ms,
            trusted: change.new.to_string(),
            forced: change.forced,
        };
        let old = old.map(|o| o.to_string());
        if change.forced {
            tracing::warn!(%who, old = ?old, new = %t, uncertainty_ms, "time set by hand, FORCED over the network-trusted interval");
        } else {
            tracing::warn!(%who, old = ?old, new = %t, uncertainty_ms, "time set by hand");
        }
        let change = ManualChange::Set(entry);
        Ok(self.record(s, change))
    }

    /// Resets the floor to the build time and forgets every trusted time: the recovery for a
    /// device whose floor was raised by a wrong time. Root only (the control socket checks);
    /// logged and shown in `status`.
    ///
    /// # Errors
    /// [`SetError::Unavailable`] when the daemon's state cannot be reached.
    pub fn reset_floor(&self, who: &str) -> Result<Changed, SetError> {
        let now = self.1.now();
        let Ok(mut s) = self.0.lock() else {
            return Err(SetError::Unavailable);
        };
        let old = s.sys.floor();
        s.sys.reset_floor();
        let new = s.sys.floor();
        tracing::warn!(%who, %old, %new, "floor reset by hand; every trusted time forgotten");
        let change = ManualChange::ResetFloor(FloorReset {
            at: now.wall.into(),
            who: who.to_owned(),
            reset_floor: FloorChange {
                old: old.into(),
                new: new.into(),
            },
        });
        Ok(self.record(s, change))
    }

    /// Keeps a manual change in the log shown by `status` (the last 20), carries out what the
    /// core queued, and shows observers the result.
    fn record(&self, mut s: std::sync::MutexGuard<'_, Status>, change: ManualChange) -> Changed {
        s.manual_log.push_back(change.clone());
        while s.manual_log.len() > 20 {
            s.manual_log.pop_front();
        }
        drop(s);
        carry_out(self);
        self.publish();
        Changed { ok: true, change }
    }

    /// A clean stop (SIGTERM): persists the state.
    pub fn shutdown(&self) {
        if let Ok(mut s) = self.0.lock() {
            s.sys.on_stop();
        }
        carry_out(self);
    }
}
