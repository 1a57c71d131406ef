//! The run loop: polls the sources, combines them, and hands decisions to the core.

#[allow(unused_imports)]
use super::*;

#[derive(Clone, Debug)]
pub(super) struct SourceRun {
    pub(super) spec: ServerSpec,
    pub(super) kind: SourceKind,
    pub(super) roughtime: Option<crate::roughtime::RoughtimeSpec>,
    pub(super) auth_failures: u32,
    pub(super) policy: PollPolicy,
    pub(super) next_due: MonoInstant,
    /// The source's best sample (from `filter`): offset interval, when, delay.
    pub(super) last: Option<(OffsetInterval, MonoInstant, SignedDuration)>,
    /// The last 8 samples, all from `last_addr` (cleared when a pool name gives another
    /// server); `last` is the one with the narrowest interval aged to now.
    pub(super) filter: ClockFilter,
    /// The address that gave the samples in `filter` (and so `last`).
    pub(super) last_addr: Option<std::net::SocketAddr>,
    pub(super) reach: u8,
    pub(super) verdict: Verdict,
    pub(super) reason: String,
    pub(super) kod: Option<KissCode>,
    pub(super) requests: u64,
    /// How it took part in its last poll.
    pub(super) answer: crate::tally::Answer,
    /// The address an NTP source's DNS name resolved to, and when: asked at the next polls
    /// instead of the name (see [`RESOLVE_EVERY`]).
    pub(super) resolved: Option<(std::net::SocketAddr, MonoInstant)>,
    /// Polls in a row without a reply from `resolved`.
    pub(super) silent: u8,
}

/// DNS about once an hour per name at most (NTP Pool vendor guidance): an NTP source's name is
/// resolved once and its address asked at the next polls. The name is resolved again after
/// this long, on a Kiss-o'-Death (DENY, RSTR or RATE), on an unusable or duplicate server,
/// after [`RESOLVE_AFTER_SILENT`] polls without a reply, when its server is a falseticker,
/// and after a round without a majority.
pub const RESOLVE_EVERY: SignedDuration = SignedDuration::from_secs(3600);

/// Polls in a row without a reply after which a name is resolved again for another server.
pub const RESOLVE_AFTER_SILENT: u8 = 4;

impl SourceRun {
    /// What to ask at this poll: the address the name resolved to while it is kept, else the
    /// configured server (which `sync` resolves).
    pub(super) fn server_to_ask(&mut self, now: MonoInstant) -> ServerSpec {
        match self.resolved {
            Some((addr, at)) if now.since(at) < RESOLVE_EVERY => ServerSpec {
                host: addr.ip().to_string(),
                port: addr.port(),
            },
            _ => {
                self.resolved = None;
                self.spec.clone()
            }
        }
    }

    /// After a poll of an NTP source given by name: keep the address it was asked at, or
    /// forget it so that the next poll resolves the name again. `taken`: another source of
    /// this kind keeps that address (two names, one server: one of them asks for another).
    pub(super) fn after_poll(
        &mut self,
        r: &crate::sync::SourceReport,
        taken: bool,
        now: MonoInstant,
    ) {
        if self.kind != SourceKind::Ntp || self.spec.host.parse::<std::net::IpAddr>().is_ok() {
            return;
        }
        if self.resolved.is_none() {
            self.resolved = r.address.map(|a| (a, now));
            self.silent = 0;
        }
        let keep = if r.sample.is_some() {
            self.silent = 0;
            true
        } else if r.kiss.is_some() {
            false
        } else if r.verdict == Verdict::NoReply {
            self.silent = self.silent.saturating_add(1);
            self.silent < RESOLVE_AFTER_SILENT
        } else {
            false // an unusable answer, or the same server as another source
        };
        if !keep || taken {
            self.resolved = None;
        }
    }
}

impl Daemon {
    #[allow(clippy::too_many_lines)]
    pub(super) async fn run(self, handle: StatusHandle, nts_ca: Vec<Vec<u8>>) {
        let cfg = self.config.raw.clone();
        let delay = self.config.startup_delay;
        if !delay.is_zero() {
            let d = Duration::from_nanos(rand::random::<u64>() % (delay.as_nanos() as u64 + 1));
            tracing::info!(?d, "random start-up delay (NTP Pool guidance)");
            tokio::time::sleep(d).await;
        }
        let mut discipline = Discipline::new(
            SignedDuration::from_std(self.config.step_threshold),
            self.observe_only,
        );
        let mut burst_left = 3u8;
        // NTS cookies carry over between polls: one key exchange per eight polls, not per poll.
        let nts_cache: crate::sync::NtsCache = Arc::default();
        let mut notified = false;
        let max_age = SignedDuration::from_secs(2 << cfg.daemon.max_poll.clamp(0, 17));
        loop {
            let now = self.local.now();
            let (due, all_stopped): (Vec<usize>, bool) = {
                let Ok(s) = handle.0.lock() else { return };
                let due = s
                    .sources
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.policy.stopped_by().is_none() && r.next_due <= now.mono)
                    .map(|(i, _)| i)
                    .collect();
                (
                    due,
                    s.sources.iter().all(|r| r.policy.stopped_by().is_some()),
                )
            };
            if all_stopped {
                tracing::error!("every source stopped (Kiss-o'-Death DENY/RSTR); holding over");
                std::future::pending::<()>().await;
            }
            if !due.is_empty() {
                // Report order of `sync`: NTP, then NTS, then Roughtime.
                let mut opts = SyncOptions::new(Vec::new());
                let due: Vec<usize> = {
                    let Ok(mut s) = handle.0.lock() else { return };
                    let mut order = Vec::new();
                    for kind in [SourceKind::Ntp, SourceKind::Nts, SourceKind::Roughtime] {
                        for &i in &due {
                            let r = &mut s.sources[i];
                            if r.kind != kind {
                                continue;
                            }
                            match (kind, &r.roughtime) {
                                (SourceKind::Ntp, _) => {
                                    opts.servers.push(r.server_to_ask(now.mono))
                                }
                                (SourceKind::Nts, _) => opts.nts.push(r.spec.clone()),
                                (SourceKind::Roughtime, Some(rt)) => {
                                    opts.roughtime.push(rt.clone())
                                }
                                (SourceKind::Roughtime, None) => continue,
                            }
                            order.push(i);
                        }
                    }
                    order
                };
                opts.ca.clone_from(&nts_ca);
                opts.nts_cache = Some(Arc::clone(&nts_cache));
                opts.https_date.clone_from(&self.config.https_date);
                opts.min_agree = Some(1);
                opts.wait_for_all = true;
                opts.timeout = Duration::from_secs(3);
                if let Ok(s) = handle.0.lock() {
                    opts.client.floor = s.sys.floor();
                    // Once the time rests on authenticated sources, NTS-KE and HTTPS Date
                    // certificates are checked against that interval (2 s wider, for the
                    // certificates' one-second resolution), not [floor, floor + 5 years].
                    let now = self.local.now();
                    let t = s.sys.trust().current(now.mono);
                    if t.provenance == Provenance::Authenticated
                        && s.sys.trust().state(now.mono) != TrustState::Unknown
                    {
                        opts.bootstrap = Some(t.interval.widen(SignedDuration::from_secs(2)));
                    }
                }
                let report = sync(&opts, Arc::clone(&self.local)).await;
                let now = self.local.now();
                let mut s = match handle.0.lock() {
                    Ok(s) => s,
                    Err(_) => return,
                };
                let round = report.tally().to_string();
                tracing::debug!(answers = %round, "poll round");
                s.last_round = Some(round.clone());
                for v in &report.chain_violations {
                    tracing::warn!(violation = %v, "Roughtime chain: a server is proven to lie");
                    s.chain_violations.push_back(format!("{}: {v}", now.wall));
                    while s.chain_violations.len() > 20 {
                        s.chain_violations.pop_front();
                    }
                }
                if report.constraint != crate::sync::ConstraintDecision::NotAsked {
                    s.constraint = Some(report.constraint.clone());
                }
                for (k, &i) in due.iter().enumerate() {
                    let r = &report.sources[k];
                    let kind = s.sources[i].kind;
                    let taken = r.address.is_some_and(|a| {
                        s.sources.iter().enumerate().any(|(j, o)| {
                            j != i
                                && o.kind == kind
                                && (o.resolved.is_some_and(|(x, _)| x == a)
                                    || o.spec.host.parse::<std::net::IpAddr>() == Ok(a.ip())
                                        && o.spec.port == a.port())
                        })
                    });
                    let run = &mut s.sources[i];
                    run.after_poll(r, taken, now.mono);
                    run.requests += 1;
                    run.answer = r.answer.clone();
                    run.auth_failures += r.auth_failures;
                    run.reach <<= 1;
                    match (&r.sample, r.kiss) {
                        (Some(sample), _) => {
                            run.reach |= 1;
                            if run.last_addr != r.address {
                                // A filter compares samples of one server: a pool name that
                                // now gives another server starts a new one.
                                run.filter = ClockFilter::new();
                            }
                            run.last_addr = r.address;
                            run.filter.add(FilterSample {
                                offset: OffsetInterval::around(sample.offset, sample.error_bound()),
                                delay: sample.delay,
                                at: now.mono,
                            });
                            run.last = run
                                .filter
                                .best(now.mono, cfg.clock.drift_ppm, max_age)
                                .map(|b| (b.offset, b.at, b.delay));
                            run.policy.on_success();
                        }
                        (None, Some(k)) => {
                            run.policy.on_kiss(k);
                            run.kod = Some(k);
                            run.verdict = Verdict::KissOfDeath;
                            run.reason = format!("Kiss-o'-Death {k}: {}", k.description());
                            if run.policy.stopped_by().is_some()
                                && run.spec.host.parse::<std::net::IpAddr>().is_err()
                            {
                                // A pool name: this server is dropped, and the name is asked
                                // again (for another server) after the longest poll interval.
                                run.policy =
                                    PollPolicy::new(cfg.daemon.max_poll, cfg.daemon.max_poll);
                                run.reason.push_str(
                                    "; the name will be resolved again for another server",
                                );
                            }
                        }
                        (None, None) => {
                            run.policy.on_failure();
                            run.verdict = r.verdict;
                            run.reason.clone_from(&r.reason);
                        }
                    }
                    run.next_due = now.mono
                        + run
                            .policy
                            .next_interval(rand::random())
                            .unwrap_or(SignedDuration::MAX.half());
                }
                // Consensus over every source's latest sample, aged by the drift bound.
                let drift = cfg.clock.drift_ppm;
                let outcomes: Vec<Outcome> = s
                    .sources
                    .iter()
                    .enumerate()
                    .map(|(i, r)| match r.last {
                        Some((iv, at, _))
                            if now.mono.since(at) <= max_age && !superseded(&s.sources, i) =>
                        {
                            let w = now.mono.since(at).mul_ppm(drift);
                            Outcome::Reply(OffsetInterval {
                                lo: iv.lo - w,
                                hi: iv.hi + w,
                            })
                        }
                        _ => Outcome::Failed,
                    })
                    .collect();
                // Authenticated sources decide when they can; plain NTP only without them.
                let auth: Vec<bool> = s
                    .sources
                    .iter()
                    .map(|r| r.kind.is_authenticated())
                    .collect();
                let n_auth = auth.iter().filter(|&&a| a).count();
                let group = |want: bool| -> Vec<Outcome> {
                    outcomes
                        .iter()
                        .zip(&auth)
                        .map(|(o, &a)| if a == want { *o } else { Outcome::Failed })
                        .collect()
                };
                let min_for = |n: usize| {
                    cfg.clock
                        .min_agree
                        .unwrap_or_else(|| trusttime_core::select::default_min_agree(n))
                };
                let decided = match (n_auth > 0).then(|| select(&group(true), min_for(n_auth))) {
                    Some(Ok(sel)) => Ok((sel, true)),
                    _ => select(&group(false), min_for(s.sources.len() - n_auth))
                        .map(|sel| (sel, false)),
                };
                match decided {
                    Ok((sel, authenticated)) => {
                        apply_verdicts(&mut s.sources, &sel, &outcomes, authenticated);
                        // A pool name whose server is outside the consensus asks for another.
                        for r in &mut s.sources {
                            if r.verdict == Verdict::Falseticker {
                                r.resolved = None;
                            }
                        }
                        s.disagreeing = s
                            .sources
                            .iter()
                            .filter(|r| {
                                authenticated
                                    && !r.kind.is_authenticated()
                                    && r.verdict == Verdict::Falseticker
                            })
                            .map(|r| r.spec.to_string())
                            .collect();
                        if s.sys.on_consensus(now, sel.interval, authenticated) {
                            // The consensus contradicts what was trusted: step, do not slew
                            // for years.
                            tracing::warn!(
                                offset = ?sel.offset,
                                authenticated,
                                "the consensus contradicts the time trusted before; following it"
                            );
                            discipline.rearm();
                        }
                        s.agreed = sel.count;
                        s.last_sync_wall = Some(now.wall);
                        burst_left = 0;
                        let floor = s.sys.floor();
                        let action = discipline.decide(sel.offset, now.wall, floor);
                        drop(s);
                        self.apply(action, &handle);
                        // RTC writes, persistence (first sync, then at most every 10 min)
                        // and logs decided by the core.
                        carry_out(&handle);
                        if !notified {
                            notified = true;
                            sd_notify("READY=1\nSTATUS=time trusted");
                            tracing::info!("time trusted; READY=1");
                        }
                    }
                    Err(why) => {
                        tracing::warn!(%why, answers = %round, "no consensus this round");
                        for (r, o) in s.sources.iter_mut().zip(&outcomes) {
                            if matches!(o, Outcome::Reply(_)) {
                                r.verdict = Verdict::Unconfirmed;
                                r.reason = format!("no majority: {why}");
                            }
                            // No majority: every name asks for a server again (a liar and a
                            // RATE server kept for an hour must not keep a device from
                            // trusting the others).
                            r.resolved = None;
                        }
                        if burst_left > 0 {
                            // Unsynchronised: a short burst (every 2 s, three times), then the
                            // normal schedule.
                            burst_left -= 1;
                            let soon = now.mono + SignedDuration::from_secs(2);
                            for r in s
                                .sources
                                .iter_mut()
                                .filter(|r| r.policy.stopped_by().is_none())
                            {
                                r.next_due = r.next_due.min(soon);
                            }
                        }
                        drop(s);
                    }
                }
            }
            let next = {
                let Ok(mut s) = handle.0.lock() else { return };
                let next = s
                    .sources
                    .iter()
                    .filter(|r| r.policy.stopped_by().is_none())
                    .map(|r| r.next_due)
                    .min();
                s.next_poll = next;
                next
            };
            // Observers see every round.
            handle.publish();
            let wait = next.map_or(Duration::from_secs(3600), |n| {
                n.since(self.local.now().mono)
                    .to_std()
                    .unwrap_or(Duration::ZERO)
            });
            tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
        }
    }

    pub(super) fn apply(&self, action: Action, handle: &StatusHandle) {
        let result = match action {
            Action::None => return,
            Action::Step(by) => self.control.step(by).map(|()| by),
            Action::Slew(by) => self.control.slew(by).map(|()| SignedDuration::ZERO),
        };
        match result {
            Ok(stepped) => {
                tracing::info!(?action, "clock adjusted");
                if let Ok(mut s) = handle.0.lock() {
                    shift_samples(&mut s, stepped);
                    if let Action::Slew(by) = action {
                        slewed_samples(&mut s, by);
                    }
                    // The core queues the RTC write with the true time.
                    s.sys.on_disciplined(handle.1.now());
                }
            }
            Err(e) => tracing::error!(error = %e, ?action, "cannot adjust the clock"),
        }
    }
}

/// One server, one vote across rounds: a pool name is resolved again from time to time, so the
/// latest samples of two names can come from the same server, and a lying server would vote
/// twice. Only the newest sample from one address counts (the first source on a tie).
pub(super) fn superseded(sources: &[SourceRun], i: usize) -> bool {
    let (Some(addr), Some((_, at, _))) = (sources[i].last_addr, sources[i].last) else {
        return false;
    };
    sources.iter().enumerate().any(|(j, r)| {
        j != i
            && r.kind == sources[i].kind
            && r.last_addr == Some(addr)
            && r.last
                .is_some_and(|(_, at_j, _)| at_j > at || (at_j == at && j < i))
    })
}

/// The clock was stepped by `by`: samples measured against the old clock move with it. Every

pub(super) fn apply_verdicts(
    sources: &mut [SourceRun],
    sel: &Selection,
    outcomes: &[Outcome],
    authenticated: bool,
) {
    for (i, (r, o)) in sources.iter_mut().zip(outcomes).enumerate() {
        if let Outcome::Reply(iv) = o {
            (r.verdict, r.reason) = if r.kind.is_authenticated() == authenticated {
                crate::sync::verdict_of(i, *iv, Some(sel))
            } else {
                crate::sync::overlap_verdict(*iv, sel, authenticated)
            };
        }
    }
}
