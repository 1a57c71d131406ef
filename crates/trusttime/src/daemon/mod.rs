//! The daemon: keeps a trusted time across polls, reboots and dead RTC batteries.
//!
//! Start-up: floor = max(build time, persisted time); holdover from the persisted state (moved
//! by the system clock's elapsed time, widened by the drift bound) and from the RTC when it is
//! sane. Then a random start-up delay, a short burst while unsynchronised, and polling that
//! adapts between `min-poll` and `max-poll`, backs off on loss and obeys Kiss-o'-Death. After
//! each consensus: discipline the clock (unless observe-only), write the RTC, persist, and tell
//! systemd `READY=1` the first time.

mod commands;
mod effects;
mod run;
pub mod state_file;
mod status;
#[cfg(test)]
mod tests;

pub use crate::daemon_api::{SetError, MAX_MANUAL_UNCERTAINTY};
use effects::{carry_out, snapshot_of};
pub use effects::{sd_notify, SAVE_EVERY};
use run::{RoughtimeRun, SourceRun};
pub use run::{RESOLVE_AFTER_SILENT, RESOLVE_EVERY};
use status::Status;
pub use status::StatusHandle;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use trusttime_core::ntp::filter::ClockFilter;
#[cfg(test)]
use trusttime_core::ntp::filter::FilterSample;
use trusttime_core::ntp::{KissCode, PollPolicy};
use trusttime_core::select::{OffsetInterval, Outcome, Selection};
use trusttime_core::system::{self as core_system, SinceSave, Snapshot, System, SystemConfig};
use trusttime_core::trust::{rtc_holdover, TrustConfig, TrustState};
use trusttime_core::{floor, MonoInstant, Provenance, SignedDuration, TimeInterval, UnixTime};

use crate::clock::LocalClock;
use crate::config::Checked;
use crate::daemon_api::{
    Command, CommandCall, CommandError, DaemonLink, LastSample, Reply, SetTime, SourceView,
    MAX_MANUAL_TIME_MS,
};
use crate::platform::{ClockControl, Rtc};
use crate::spec::{ServerSpec, SourceKind, Verdict};
use crate::sync::SyncOptions;
use state_file::{self as state, SourceState, State};

/// What the daemon needs from outside: its config and the clocks, behind traits.
pub struct Daemon {
    /// The checked configuration.
    pub config: Checked,
    /// Reads the clocks.
    pub local: Arc<dyn LocalClock>,
    /// Changes the system clock (unused when observe-only).
    pub control: Arc<dyn ClockControl>,
    /// The RTC, when configured.
    pub rtc: Option<Arc<dyn Rtc>>,
    /// Never change any clock.
    pub observe_only: bool,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("observe_only", &self.observe_only)
            .finish_non_exhaustive()
    }
}

/// A daemon that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The control socket cannot be created.
    #[error("cannot create the control socket {path}: {source}")]
    Socket {
        /// Its path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Clock changes were asked for but are not permitted.
    #[error("{0}")]
    Permission(&'static str),
    /// The configured trust anchors cannot be read.
    #[error("clock.trust-anchors {0}")]
    TrustAnchors(String),
    /// Another daemon holds the lock on this state directory.
    #[error("another trusttime daemon is already running with the state directory {0} (it holds {0}/lock); stop it first, or give this one its own [daemon] state-dir and control-socket")]
    AlreadyRunning(String),
    /// The lock file cannot be created.
    #[error("cannot lock the state directory {path}: {source}")]
    Lock {
        /// The lock file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Takes the exclusive lock on `dir/lock` (kept for as long as the returned file lives).
fn take_lock(dir: &std::path::Path) -> Result<std::fs::File, DaemonError> {
    let path = dir.join("lock");
    let io = |source| DaemonError::Lock {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match crate::platform::try_lock_exclusive(&file) {
        Ok(true) => Ok(file),
        Ok(false) => Err(DaemonError::AlreadyRunning(dir.display().to_string())),
        Err(e) => Err(io(e)),
    }
}

impl Daemon {
    /// Prepares the status (floor, persisted state, RTC) and binds the control socket; the
    /// returned future runs the daemon until it is dropped.
    ///
    /// # Errors
    /// [`DaemonError`].
    pub fn start(
        self,
    ) -> Result<(StatusHandle, impl std::future::Future<Output = ()>), DaemonError> {
        let cfg = &self.config.raw;
        let state_dir = cfg.daemon.state_dir.clone();
        // One daemon per state directory: a second one would fight over the clock, the state
        // file and the control socket. The lock is released when the process exits.
        let lock = take_lock(&state_dir)?;
        let mut notes = Vec::new();
        for w in &self.config.warnings {
            tracing::warn!("{w}");
            notes.push(w.clone());
        }
        let persisted = match state::load(&state_dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "persisted state ignored");
                notes.push(e.to_string());
                None
            }
        };
        let build_floor = floor::build_time();
        let mut sys = System::new(SystemConfig {
            trust: TrustConfig {
                floor: build_floor,
                drift_ppm: cfg.clock.drift_ppm,
                sync_fresh_for: SignedDuration::from_secs(3 << cfg.daemon.max_poll.clamp(0, 17)),
            },
            allow_manual_force: cfg.clock.allow_manual_force,
            has_rtc: self.rtc.is_some() && !self.observe_only,
            discipline: !self.observe_only,
            step_threshold: SignedDuration::from_std(self.config.step_threshold),
        });
        let now = self.local.now();
        let boot = crate::platform::boot_instant();
        // The RTC, judged against the persisted floor (raised only by authenticated time) and
        // when trusttime last wrote it.
        let snapshot = persisted.as_ref().map(|p| snapshot_of(p, build_floor));
        let rtc_floor = snapshot.map_or(build_floor, |p| p.floor.max(build_floor));
        let rtc_iv = self.rtc.as_ref().and_then(|rtc| match rtc.read() {
            Ok(read) => match rtc_holdover(
                read,
                rtc_floor,
                snapshot.and_then(|p| p.rtc_set),
                cfg.clock.drift_ppm,
            ) {
                Ok(iv) => Some(iv),
                Err(why) => {
                    tracing::warn!(%why, "RTC not used");
                    notes.push(why.to_string());
                    None
                }
            },
            Err(e) => {
                notes.push(format!("cannot read the RTC: {e}"));
                None
            }
        });
        if let (Some(p), Some(snap)) = (&persisted, &snapshot) {
            // Within one boot the monotonic clock says how long ago the state was saved;
            // across a reboot only the wall clock can, and only when it came from an RTC that
            // trusttime set and that reads sane.
            let same_boot = match (&p.boot_id, p.boot_ns, &boot) {
                (Some(id), Some(at), Some((now_id, now_boot))) if id == now_id => {
                    Some(*now_boot - SignedDuration::from_nanos(at))
                }
                _ => None,
            };
            let since = match same_boot {
                Some(d) => SinceSave::SameBoot(d),
                None if rtc_iv.is_some() => SinceSave::TrustedRtc(now.wall - snap.saved_wall),
                None => SinceSave::Unknown,
            };
            let restored = sys.restore(now, snap, since);
            tracing::info!(%restored, ?since, "persisted state");
            if !matches!(restored, core_system::Restored::Holdover(_)) {
                notes.push(restored.to_string());
            }
        }
        if let Some(iv) = rtc_iv {
            sys.on_holdover(now.mono, iv, Provenance::Rtc);
        }
        let nts_ca = match &cfg.clock.trust_anchors {
            None => Vec::new(),
            Some(path) => crate::files::read_pem_certificates(path)
                .map_err(|why| DaemonError::TrustAnchors(format!("{}: {why}", path.display())))?,
        };
        let sources = self
            .config
            .sources
            .iter()
            .map(|src| {
                let spec = &src.spec;
                let mut policy = PollPolicy::new(cfg.daemon.min_poll, cfg.daemon.max_poll);
                let saved = persisted
                    .as_ref()
                    .and_then(|p| p.sources.iter().find(|s| s.address == spec.to_string()));
                // Resume at the previous interval. A Kiss-o'-Death stop is not carried over:
                // names are resolved again, and an address may have been lifted.
                if let Some(s) = saved {
                    policy.resume_at(s.poll);
                }
                let mut run = SourceRun::new(spec.clone(), src.kind, policy);
                run.roughtime.clone_from(&src.roughtime);
                run
            })
            .collect();
        let (published, observed) = tokio::sync::watch::channel(Arc::new(
            crate::daemon_api::Snapshot::new(sys.trust().clone(), sys.floor()),
        ));
        let (commands, command_queue) = mpsc::channel(16);
        let status = Arc::new(Mutex::new(Status {
            sys,
            sources,
            observe_only: self.observe_only,
            last_sync_wall: None,
            next_poll: None,
            notes,
            agreed: 0,
            manual_log: std::collections::VecDeque::new(),
            state_dir: state_dir.clone(),
            control: (!self.observe_only).then(|| Arc::clone(&self.control)),
            rtc: self.rtc.clone().filter(|_| !self.observe_only),
            require_authenticated: self.config.require_authenticated(),
            disagreeing: Vec::new(),
            last_round: None,
            chain_violations: std::collections::VecDeque::new(),
            roughtime: None,
            constraint: None,
            published,
        }));
        let link = DaemonLink::new(observed, commands, Arc::clone(&self.local));
        let handle = StatusHandle(status, Arc::clone(&self.local), link.clone());
        handle.publish();
        let sock_path = cfg.daemon.control_socket.clone();
        let listener = crate::control::bind(&sock_path).map_err(|e| DaemonError::Socket {
            path: sock_path.display().to_string(),
            source: e,
        })?;
        let h2 = handle.clone();
        #[cfg(feature = "web")]
        let web = cfg.web.enabled.then(|| {
            let cooling =
                crate::duration::parse(&cfg.web.cooling_off).unwrap_or(Duration::from_secs(300));
            (
                crate::web::Web::new(link.clone(), &state_dir, cfg.web.max_failed_logins, cooling),
                cfg.web.listen,
                cfg.web.allowed_hosts.clone(),
            )
        });
        let metrics = cfg.daemon.metrics_listen;
        #[cfg(feature = "mqtt")]
        let report = cfg.report.clone();
        let fut = async move {
            let _lock = lock;
            crate::task::spawn(commands::serve_commands(h2.clone(), command_queue));
            crate::task::spawn(crate::control::serve(listener, link.clone()));
            if let Some(addr) = metrics {
                let l = link.clone();
                crate::task::spawn(async move {
                    if let Err(e) = crate::metrics::serve(addr, l).await {
                        tracing::error!(%addr, error = %e, "cannot serve metrics");
                    }
                });
            }
            #[cfg(feature = "web")]
            if let Some((web, listen, hosts)) = web {
                crate::task::spawn(async move {
                    if let Err(e) = crate::web::serve(web, listen, &hosts).await {
                        tracing::error!(%listen, error = %e, "cannot serve the web page");
                    }
                });
            }
            #[cfg(feature = "mqtt")]
            if let Some(r) = report {
                crate::task::spawn(crate::report::run(r, link.clone()));
            }
            self.run(h2, nts_ca).await;
        };
        Ok((handle, fut))
    }
}
