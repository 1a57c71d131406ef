//! Unit tests of the run loop, driven with fake clocks.

use super::run::superseded;
use super::*;
use std::sync::atomic::{AtomicI64, Ordering};

/// A device clock that steps when told to: wall = base + offset.
#[derive(Debug)]
struct FakeClock {
    base: UnixTime,
    offset_ns: AtomicI64,
    rtc_ns: Mutex<Option<UnixTime>>,
}

impl LocalClock for FakeClock {
    fn now(&self) -> trusttime_core::Now {
        trusttime_core::Now {
            mono: crate::clock::mono_now(),
            wall: self.base + SignedDuration::from_nanos(self.offset_ns.load(Ordering::SeqCst)),
        }
    }
}

#[derive(Debug)]
struct Control(Arc<FakeClock>);

impl ClockControl for Control {
    fn step(&self, by: SignedDuration) -> std::io::Result<()> {
        self.0.offset_ns.fetch_add(by.as_nanos(), Ordering::SeqCst);
        Ok(())
    }
    fn slew(&self, _: SignedDuration) -> std::io::Result<()> {
        Ok(())
    }
}

impl Rtc for Control {
    fn read(&self) -> std::io::Result<UnixTime> {
        Err(std::io::Error::other("dead battery"))
    }
    fn set(&self, t: UnixTime) -> std::io::Result<()> {
        if let Ok(mut r) = self.0.rtc_ns.lock() {
            *r = Some(t);
        }
        Ok(())
    }
}

fn daemon(dir: &std::path::Path, clock: &Arc<FakeClock>) -> Daemon {
    let text = format!(
        "[daemon]\nstate-dir = \"{}\"\ncontrol-socket = \"{}\"\n",
        dir.join("state").display(),
        dir.join("control.sock").display()
    );
    let config = crate::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let c = Arc::new(Control(Arc::clone(clock)));
    Daemon {
        config,
        local: Arc::clone(clock) as Arc<dyn LocalClock>,
        control: Arc::clone(&c) as Arc<dyn ClockControl>,
        rtc: Some(c as Arc<dyn Rtc>),
        observe_only: false,
    }
}

fn run_with_sample(handle: &StatusHandle, offset: SignedDuration) {
    let mut s = handle.0.lock().unwrap();
    let now = handle.1.now();
    s.sources.push(SourceRun {
        spec: "192.0.2.1".parse().unwrap(),
        kind: SourceKind::Ntp,
        roughtime: None,
        auth_failures: 0,
        policy: PollPolicy::default(),
        next_due: MonoInstant::ZERO,
        last: Some((
            OffsetInterval::around(offset, SignedDuration::from_millis(1)),
            now.mono,
            SignedDuration::from_millis(1),
        )),
        filter: {
            let mut f = ClockFilter::new();
            f.add(FilterSample {
                offset: OffsetInterval::around(offset, SignedDuration::from_millis(1)),
                delay: SignedDuration::from_millis(1),
                at: now.mono,
            });
            f
        },
        last_addr: None,
        reach: 1,
        verdict: Verdict::Agreed,
        answer: crate::tally::Answer::Answered,
        reason: String::new(),
        kod: None,
        requests: 1,
        resolved: None,
        silent: 0,
    });
}

/// Two pool names whose latest samples came from one server vote once: the newer one.
#[tokio::test]
async fn one_server_votes_once_across_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock {
        base: floor::build_time() + SignedDuration::from_secs(86_400),
        offset_ns: AtomicI64::new(0),
        rtc_ns: Mutex::new(None),
    });
    let (handle, _fut) = daemon(dir.path(), &clock).start().unwrap();
    let hour = SignedDuration::from_secs(3600);
    for _ in 0..3 {
        run_with_sample(&handle, hour);
    }
    let mut s = handle.0.lock().unwrap();
    let liar: std::net::SocketAddr = "192.0.2.9:123".parse().unwrap();
    let other: std::net::SocketAddr = "192.0.2.10:123".parse().unwrap();
    s.sources[0].last_addr = Some(liar);
    s.sources[1].last_addr = Some(liar);
    s.sources[2].last_addr = Some(other);
    if let Some(l) = s.sources[1].last.as_mut() {
        l.1 = l.1 + SignedDuration::from_secs(64);
    }
    assert!(
        superseded(&s.sources, 0),
        "the older sample of the same server"
    );
    assert!(!superseded(&s.sources, 1));
    assert!(!superseded(&s.sources, 2));
    s.sources[1].last = s.sources[0].last;
    assert!(!superseded(&s.sources, 0), "a tie keeps the first source");
    assert!(superseded(&s.sources, 1));
    s.sources[1].kind = SourceKind::Nts;
    assert!(!superseded(&s.sources, 1), "only sources of one kind");
}

/// A pool name is resolved once and its address asked at the next polls; the name is
/// resolved again after an hour, on any Kiss-o'-Death, after a few silent polls, on an
/// unusable answer, and when another name of the pool keeps the same server.
#[test]
fn a_pool_name_is_resolved_hourly_or_when_its_server_fails() {
    let mut run = SourceRun {
        spec: "0.pool.example".parse().unwrap(),
        kind: SourceKind::Ntp,
        roughtime: None,
        auth_failures: 0,
        policy: PollPolicy::default(),
        next_due: MonoInstant::ZERO,
        last: None,
        filter: ClockFilter::new(),
        last_addr: None,
        reach: 0,
        verdict: Verdict::NoReply,
        reason: String::new(),
        kod: None,
        requests: 0,
        answer: crate::tally::Answer::Silent,
        resolved: None,
        silent: 0,
    };
    let a: std::net::SocketAddr = "192.0.2.7:123".parse().unwrap();
    let b: std::net::SocketAddr = "[2001:db8::8]:1123".parse().unwrap();
    let report = |address, answered: bool, kiss, verdict| crate::sync::SourceReport {
        server: run_spec(),
        kind: SourceKind::Ntp,
        auth_failures: 0,
        address,
        sample: answered.then(|| trusttime_core::ntp::Sample {
            offset: SignedDuration::ZERO,
            delay: SignedDuration::from_millis(1),
            root_delay: SignedDuration::ZERO,
            root_dispersion: SignedDuration::ZERO,
            precision: SignedDuration::ZERO,
            stratum: 2,
            leap: trusttime_core::ntp::LeapIndicator::NoWarning,
            reference_id: [0; 4],
            server_time: UnixTime::from_secs(1_800_000_000),
            received_at: trusttime_core::Now {
                mono: MonoInstant::ZERO,
                wall: UnixTime::from_secs(1_800_000_000),
            },
        }),
        verdict,
        reason: String::new(),
        kiss,
        answer: crate::tally::Answer::Silent,
    };
    let ok = |addr| report(Some(addr), true, None, Verdict::Agreed);
    let silent = |addr| report(Some(addr), false, None, Verdict::NoReply);
    let t0 = MonoInstant::from_nanos(1_000_000_000);
    let min = |m: i64| t0 + SignedDuration::from_secs(60 * m);
    // The first poll asks the name; the next ones its address, for an hour.
    assert_eq!(run.server_to_ask(t0), run_spec());
    run.after_poll(&ok(a), false, t0);
    let by_addr = ServerSpec {
        host: "192.0.2.7".into(),
        port: 123,
    };
    for m in [1, 17, 59] {
        assert_eq!(run.server_to_ask(min(m)), by_addr, "kept at minute {m}");
        run.after_poll(&ok(a), false, min(m));
    }
    assert_eq!(
        run.server_to_ask(min(60)),
        run_spec(),
        "resolved again after an hour"
    );
    run.after_poll(&ok(b), false, min(60));
    assert_eq!(
        run.server_to_ask(min(61)).to_string(),
        "[2001:db8::8]:1123",
        "an IPv6 address and port are kept as given"
    );
    // Silent polls: the address is kept for three, dropped at the fourth.
    for m in 61..61 + i64::from(RESOLVE_AFTER_SILENT) - 1 {
        run.server_to_ask(min(m));
        run.after_poll(&silent(b), false, min(m));
        assert_eq!(run.resolved.map(|r| r.0), Some(b), "minute {m}");
    }
    run.server_to_ask(min(70));
    run.after_poll(&silent(b), false, min(70));
    assert_eq!(run.server_to_ask(min(71)), run_spec(), "silent too long");
    // A reply resets the count of silent polls.
    run.after_poll(&silent(a), false, min(71));
    run.after_poll(&ok(a), false, min(72));
    run.after_poll(&silent(a), false, min(73));
    assert_eq!(run.silent, 1);
    // Every Kiss-o'-Death, RATE included, drops the server.
    for code in [KissCode::Rate, KissCode::Deny, KissCode::Rstr] {
        run.server_to_ask(min(80));
        run.after_poll(&ok(a), false, min(80));
        assert!(run.resolved.is_some());
        run.after_poll(
            &report(Some(a), false, Some(code), Verdict::KissOfDeath),
            false,
            min(81),
        );
        assert_eq!(run.server_to_ask(min(82)), run_spec(), "{code}");
    }
    // An unusable answer, or the server another name keeps: ask the name again.
    for verdict in [Verdict::Invalid, Verdict::Duplicate] {
        run.after_poll(&ok(a), false, min(90));
        run.after_poll(&report(Some(a), false, None, verdict), false, min(91));
        assert_eq!(run.server_to_ask(min(92)), run_spec(), "{verdict:?}");
    }
    run.after_poll(&ok(a), true, min(93));
    assert_eq!(
        run.server_to_ask(min(94)),
        run_spec(),
        "taken by another name"
    );
    // A DNS failure keeps nothing.
    run.after_poll(&report(None, false, None, Verdict::NoReply), false, min(95));
    assert_eq!(run.resolved, None);
    // An address, an NTS or a Roughtime source is never touched.
    let mut literal = run.clone();
    literal.spec = "192.0.2.1".parse().unwrap();
    literal.after_poll(&ok(a), false, min(96));
    assert_eq!(literal.resolved, None);
    let mut nts = run.clone();
    nts.kind = SourceKind::Nts;
    nts.after_poll(&ok(a), false, min(96));
    assert_eq!(nts.resolved, None);
}

fn run_spec() -> ServerSpec {
    "0.pool.example".parse().unwrap()
}

/// A hand-set time that steps the clock shifts the stored samples like a network step.
#[tokio::test]
async fn a_manual_step_shifts_stored_samples() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock {
        base: floor::build_time() + SignedDuration::from_secs(86_400),
        offset_ns: AtomicI64::new(0),
        rtc_ns: Mutex::new(None),
    });
    let (handle, _fut) = daemon(dir.path(), &clock).start().unwrap();
    // A source measured the truth 1 h ahead of the device clock (no consensus yet).
    let hour = SignedDuration::from_secs(3600);
    run_with_sample(&handle, hour);
    let truth = handle.1.now().wall + hour;
    handle
        .set_manual(truth.as_millis(), 1000, false, "test")
        .unwrap();
    // The clock was stepped by an hour, and the sample now says ~0.
    let stepped = SignedDuration::from_nanos(clock.offset_ns.load(Ordering::SeqCst));
    assert!(
        (stepped - hour).abs() < SignedDuration::from_secs(1),
        "{stepped:?}"
    );
    let s = handle.0.lock().unwrap();
    let (iv, _, _) = s.sources[0].last.unwrap();
    assert!(
        iv.midpoint().abs() < SignedDuration::from_secs(1),
        "sample still measured against the old clock: {iv:?}"
    );
    let kept = s.sources[0]
        .filter
        .best(handle.1.now().mono, 50, SignedDuration::from_secs(3600))
        .unwrap();
    assert!(kept.offset.midpoint().abs() < SignedDuration::from_secs(1));
    drop(s);
    // Persisted as a hand-set hint: the floor is untouched.
    let st = state::load(&dir.path().join("state")).unwrap().unwrap();
    assert_eq!(st.provenance, "manual");
    assert_eq!(st.floor_ns, Some(floor::build_time().as_nanos()));
}

/// After a network step the RTC gets the true time, not the stepped clock plus the step.
#[tokio::test]
async fn the_rtc_is_written_with_the_true_time_after_a_step() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock {
        base: floor::build_time() + SignedDuration::from_secs(86_400),
        offset_ns: AtomicI64::new(0),
        rtc_ns: Mutex::new(None),
    });
    let d = daemon(dir.path(), &clock);
    let (handle, _fut) = daemon(dir.path(), &clock).start().unwrap();
    let step = SignedDuration::from_secs(20 * 365 * 86_400);
    let now = handle.1.now();
    let truth = now.wall + step;
    if let Ok(mut s) = handle.0.lock() {
        let _ = s.sys.on_consensus(
            now,
            OffsetInterval::around(step, SignedDuration::from_millis(2)),
            false,
        );
    }
    d.apply(Action::Step(step), &handle);
    carry_out(&handle);
    let written = clock.rtc_ns.lock().unwrap().unwrap();
    assert!(
        (written - truth).abs() < SignedDuration::from_secs(1),
        "RTC written with {written}, true time {truth}"
    );
    let st = state::load(&dir.path().join("state")).unwrap().unwrap();
    assert_eq!(st.rtc_set_ns, Some(written.as_nanos()));
}

/// A report of a real daemon's status parses as [`crate::json::Health`] (no field more,
/// none missing) in Device Shadow form, and each of its fields is the status field of
/// the same name.
#[cfg(feature = "mqtt")]
#[tokio::test]
async fn the_report_is_a_subset_of_status_under_the_same_names() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[daemon]\nstate-dir = \"{}\"\ncontrol-socket = \"{}\"\n",
        dir.path().join("state").display(),
        dir.path().join("control.sock").display()
    );
    let config = crate::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let daemon = crate::daemon::Daemon {
        config,
        local: Arc::new(crate::clock::SystemClock),
        control: Arc::new(crate::platform::LinuxClock),
        rtc: None,
        observe_only: true,
    };
    let (handle, _fut) = daemon.start().unwrap();
    let status = handle.link().status();
    let doc: serde_json::Value = serde_json::from_str(&crate::report::shadow_document(
        &crate::report::health(&status),
    ))
    .unwrap();
    let clock = &doc["state"]["reported"]["clock"];
    let parsed: crate::json::Health = serde_json::from_value(clock.clone()).unwrap();
    assert_eq!(parsed.schema, crate::report::SCHEMA);
    assert_eq!(parsed.state, "unknown");
    let status = serde_json::to_value(&status).unwrap();
    for (k, v) in clock.as_object().unwrap() {
        if k != "schema" {
            assert_eq!(&status[k], v, "{k}");
        }
    }
}

/// Refusals keep their facts (the floor, the network-trusted interval, the request) and say
/// them in the same words as before; nothing is published for a refusal.
#[tokio::test]
async fn refused_manual_times_keep_their_facts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock {
        base: floor::build_time() + SignedDuration::from_secs(86_400),
        offset_ns: AtomicI64::new(0),
        rtc_ns: Mutex::new(None),
    });
    let (handle, _fut) = daemon(dir.path(), &clock).start().unwrap();
    let floor = floor::build_time();
    assert_eq!(
        handle.set_manual(0, -1, false, "t"),
        Err(SetError::Uncertainty { uncertainty_ms: -1 })
    );
    assert_eq!(
        handle.set_manual(-5, 0, false, "t"),
        Err(SetError::Time { unix_ms: -5 })
    );
    let below = floor - SignedDuration::from_secs(86_400);
    let e = handle
        .set_manual(below.as_millis(), 1000, false, "t")
        .unwrap_err();
    assert_eq!(
        e,
        SetError::Refused {
            requested: below,
            uncertainty: SignedDuration::from_secs(1),
            why: trusttime_core::system::ManualError::BelowFloor { floor },
        }
    );
    assert_eq!(
        e.to_string(),
        format!("{below} ± 1.0 s is below the floor {floor}: refused (the clock never goes below the floor; if the floor itself is wrong, see `trusttime set --reset-floor`)")
    );
    // A network consensus, then a time outside it: the interval it ran into is kept.
    let now = handle.1.now();
    if let Ok(mut s) = handle.0.lock() {
        let _ = s.sys.on_consensus(
            now,
            OffsetInterval::around(SignedDuration::ZERO, SignedDuration::from_millis(2)),
            false,
        );
    }
    let far = now.wall + SignedDuration::from_secs(3600);
    match handle.set_manual(far.as_millis(), 1000, false, "t") {
        Err(SetError::Refused {
            requested,
            why: trusttime_core::system::ManualError::OutsideNetwork { network },
            ..
        }) => {
            assert_eq!(requested, far);
            assert!(network.contains(now.wall), "{network}");
        }
        other => panic!("{other:?}"),
    }
    match handle.set_manual(far.as_millis(), 1000, true, "t") {
        Err(e @ SetError::Refused { .. }) => assert_eq!(
            e.to_string(),
            "force is not allowed by the config ([clock] allow-manual-force)"
        ),
        other => panic!("{other:?}"),
    }
    assert!(handle.link().status().manual_changes.is_empty());
}

/// Observers see every change through the link: a hand-set time and a floor reset sent as
/// commands are carried out by the daemon's command task and published before it answers;
/// time-dependent fields are computed when read.
#[tokio::test]
async fn commands_through_the_link_are_carried_out_and_published() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock {
        base: floor::build_time() + SignedDuration::from_secs(86_400),
        offset_ns: AtomicI64::new(0),
        rtc_ns: Mutex::new(None),
    });
    let (handle, fut) = daemon(dir.path(), &clock).start().unwrap();
    let running = tokio::spawn(fut);
    let link = handle.link();
    assert_eq!(link.status().state, "unknown");
    let truth = handle.1.now().wall;
    let reply = link
        .execute(
            Command::Set(SetTime {
                unix_ms: truth.as_millis(),
                uncertainty_ms: 1000,
                force: false,
            }),
            "test",
        )
        .await
        .unwrap();
    let Reply::Changed(c) = reply else {
        panic!("{reply:?}")
    };
    assert!(c.ok);
    let st = link.status();
    assert_eq!(st.state, "holdover");
    assert_eq!(st.manual_changes, vec![c.change]);
    // Holdover grows with the drift bound between reads of one snapshot.
    let first = st.uncertainty_s.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let later = link.status().uncertainty_s.unwrap();
    assert!(later > first, "{first} then {later}");
    // A refusal comes back typed.
    let e = link
        .execute(
            Command::Set(SetTime {
                unix_ms: 0,
                uncertainty_ms: 0,
                force: false,
            }),
            "test",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, CommandError::Set(SetError::Refused { .. })),
        "{e:?}"
    );
    let reply = link
        .execute(Command::ResetFloor { then: None }, "root")
        .await
        .unwrap();
    assert!(matches!(reply, Reply::Changed(_)), "{reply:?}");
    let st = link.status();
    assert_eq!(st.state, "unknown", "every trusted time forgotten");
    assert_eq!(st.manual_changes.len(), 2);
    running.abort();
}
