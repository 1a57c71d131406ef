//! The one place that touches the clock, the RTC, the disk and systemd.

#[allow(unused_imports)]
use super::*;

/// How often the daemon persists its state at most (besides the first consensus and manual
/// changes).
pub const SAVE_EVERY: Duration = Duration::from_secs(600);

/// The clock was stepped by `by`: samples measured against the old clock move with it. Every
/// step (after a consensus or a hand-set time) goes through here.
pub(super) fn shift_samples(s: &mut Status, by: SignedDuration) {
    if by == SignedDuration::ZERO {
        return;
    }
    for r in &mut s.sources {
        r.stepped(by);
    }
    if let Some(rt) = s.roughtime.as_mut() {
        rt.chain.stepped(by);
    }
}

/// A slew of `by` was started: until it completes, a stored sample may be measured against
/// the old clock or the new one, so it covers both.
pub(super) fn slewed_samples(s: &mut Status, by: SignedDuration) {
    for r in &mut s.sources {
        r.slewed(by);
    }
    if let Some(rt) = s.roughtime.as_mut() {
        rt.chain.slewed(by);
    }
}

/// Carries out what the core decided: steps and slews (after a consensus or a hand-set time),
/// RTC writes, persistence, readiness, logs. The one place that changes a clock or the disk,
/// and the one path by which the clock changes: samples move with every step and cover both
/// clocks during a slew.
pub(super) fn carry_out(handle: &StatusHandle) {
    let mut persist = false;
    loop {
        let (action, control, rtc) = {
            let Ok(mut s) = handle.0.lock() else { return };
            let Some(a) = s.sys.poll_action() else { break };
            (a, s.control.clone(), s.rtc.clone())
        };
        match action {
            core_system::Action::Step(by) => {
                // Observe-only: no control, nothing stepped, samples unchanged.
                let Some(c) = control else { continue };
                match c.step(by) {
                    Ok(()) => {
                        tracing::info!(?by, "clock stepped");
                        if let Ok(mut s) = handle.0.lock() {
                            shift_samples(&mut s, by);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, ?by, "cannot step the clock"),
                }
            }
            core_system::Action::Slew(by) => {
                let Some(c) = control else { continue };
                match c.slew(by) {
                    Ok(()) => {
                        tracing::debug!(?by, "clock slewed");
                        if let Ok(mut s) = handle.0.lock() {
                            slewed_samples(&mut s, by);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, ?by, "cannot slew the clock"),
                }
            }
            core_system::Action::NotifyReady => {
                sd_notify("READY=1\nSTATUS=time trusted");
                tracing::info!("time trusted; READY=1");
            }
            core_system::Action::WriteRtc { time } => {
                let Some(rtc) = rtc else { continue };
                match rtc.set(time) {
                    Ok(()) => {
                        if let Ok(mut s) = handle.0.lock() {
                            s.sys.rtc_written(time);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot write the RTC"),
                }
            }
            // After everything else, so the saved state includes the RTC write.
            core_system::Action::Persist => persist = true,
            core_system::Action::HintOverridden(o) => {
                tracing::warn!(%o, "holdover hint overridden by the network");
                if let Ok(mut s) = handle.0.lock() {
                    s.notes.push(o.to_string());
                    if s.notes.len() > 20 {
                        s.notes.remove(0);
                    }
                }
            }
        }
    }
    if persist {
        save(handle);
    }
}

/// Saves the core's snapshot with the boot id and boot clock (to tell a restart from a reboot)
/// and the per-source poll state.
pub(super) fn save(handle: &StatusHandle) {
    let (st, dir) = {
        let Ok(mut s) = handle.0.lock() else { return };
        let now = handle.1.now();
        let snap = s.sys.snapshot(now);
        let (earliest, latest) = snap
            .interval
            .map_or((snap.floor, snap.floor), |iv| (iv.earliest, iv.latest));
        let boot = crate::platform::boot_instant();
        let st = State {
            system_ns: snap.saved_wall.as_nanos(),
            earliest_ns: earliest.as_nanos(),
            latest_ns: latest.as_nanos(),
            provenance: if snap.interval.is_some() {
                snap.provenance.as_str().into()
            } else {
                Provenance::Floor.as_str().into()
            },
            freq_ppb: snap.freq_ppb,
            rtc_set_ns: snap.rtc_set.map(UnixTime::as_nanos),
            floor_ns: Some(snap.floor.as_nanos()),
            boot_id: boot.as_ref().map(|(id, _)| id.clone()),
            boot_ns: boot.as_ref().map(|(_, at)| at.as_nanos()),
            sources: s
                .sources
                .iter()
                .map(|r| SourceState {
                    address: r.spec.to_string(),
                    poll: r.policy.poll_exponent(),
                    kod: r.kod.map(|k| k.to_string()),
                })
                .collect(),
        };
        (st, s.state_dir.clone())
    };
    if let Err(e) = state::save(&dir, &st) {
        tracing::warn!(error = %e, "cannot persist state");
    }
}

/// The core's view of a state file. Files written before the floor was kept apart hold no
/// `floor_ns`: their time raises the floor only if it was authenticated.
pub(super) fn snapshot_of(p: &State, build_floor: UnixTime) -> Snapshot {
    let provenance = match p.provenance.as_str() {
        "authenticated" => Provenance::Authenticated,
        "ntp" => Provenance::Ntp,
        "rtc" => Provenance::Rtc,
        "manual" => Provenance::Manual,
        "persisted" => Provenance::Persisted,
        _ => Provenance::Floor,
    };
    let earliest = UnixTime::from_nanos(p.earliest_ns);
    let floor = p.floor_ns.map_or(
        if provenance == Provenance::Authenticated {
            earliest
        } else {
            build_floor
        },
        UnixTime::from_nanos,
    );
    Snapshot {
        saved_wall: UnixTime::from_nanos(p.system_ns),
        floor,
        interval: (provenance != Provenance::Floor).then_some(TimeInterval {
            earliest,
            latest: UnixTime::from_nanos(p.latest_ns),
        }),
        provenance,
        rtc_set: p.rtc_set_ns.map(UnixTime::from_nanos),
        freq_ppb: p.freq_ppb,
    }
}

/// Tells systemd (Type=notify) about our state, if it is listening.
pub fn sd_notify(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let res = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(msg.as_bytes(), &a))
    } else {
        sock.send_to(msg.as_bytes(), std::path::Path::new(&path))
    };
    if let Err(e) = res {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
