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

/// A device clock a day after the build floor, with no RTC reading yet.
fn fake_clock() -> Arc<FakeClock> {
    Arc::new(FakeClock {
        base: floor::build_time() + SignedDuration::from_secs(86_400),
        offset_ns: AtomicI64::new(0),
        rtc_ns: Mutex::new(None),
    })
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
    let mut run = SourceRun::new(
        "192.0.2.1".parse().unwrap(),
        SourceKind::Ntp,
        PollPolicy::default(),
    );
    run.last = Some((
        OffsetInterval::around(offset, SignedDuration::from_millis(1)),
        now.mono,
        SignedDuration::from_millis(1),
    ));
    run.filter.add(FilterSample {
        offset: OffsetInterval::around(offset, SignedDuration::from_millis(1)),
        delay: SignedDuration::from_millis(1),
        at: now.mono,
    });
    run.reach = 1;
    run.verdict = Verdict::Agreed;
    run.answer = crate::tally::Answer::Answered;
    run.requests = 1;
    run.polled = true;
    s.sources.push(run);
}

/// Two pool names whose latest samples came from one server vote once: the newer one.
#[tokio::test]
async fn one_server_votes_once_across_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let clock = fake_clock();
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

/// A hand-set time that steps the clock shifts the stored samples like a network step.
#[tokio::test]
async fn a_manual_step_shifts_stored_samples() {
    let dir = tempfile::tempdir().unwrap();
    let clock = fake_clock();
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
    let clock = fake_clock();
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
    // The core queued the step and the RTC write; the one effects path carries them out.
    carry_out(&handle);
    assert_eq!(
        clock.offset_ns.load(Ordering::SeqCst),
        step.as_nanos(),
        "stepped by the offset"
    );
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
    let clock = fake_clock();
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
    let clock = fake_clock();
    let (handle, fut) = daemon(dir.path(), &clock).start().unwrap();
    let running = crate::task::spawn(fut);
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

/// An observe-only daemon started from `text`, and a second `Daemon` of the same config whose
/// driver methods a test calls directly (the started one's future is not run), prepared.
fn started_driver(
    text: &str,
) -> (
    StatusHandle,
    impl std::future::Future<Output = ()>,
    Daemon,
    Arc<FakeClock>,
) {
    let clock = fake_clock();
    let make = || Daemon {
        config: crate::config::Config::parse(text, std::path::Path::new("t.toml")).unwrap(),
        local: Arc::clone(&clock) as Arc<dyn LocalClock>,
        control: Arc::new(Control(Arc::clone(&clock))) as Arc<dyn ClockControl>,
        rtc: None,
        observe_only: true,
    };
    let (handle, fut) = make().start().unwrap();
    let runner = make();
    assert!(runner.prepare(&handle));
    (handle, fut, runner, clock)
}

/// The driver's side of DNS: two names of one pool that resolve to the same servers ask
/// distinct ones; an address that is still in the answer keeps its socket; another address
/// gets a new socket (and the source a new filter); a failed lookup is reported.
#[tokio::test]
async fn two_names_of_one_pool_ask_distinct_servers_and_a_kept_address_keeps_its_socket() {
    use super::run::{Driver, Msg};
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[daemon]\nstate-dir = \"{}\"\ncontrol-socket = \"{}\"\n[clock]\nobserve-only = true\n[[source]]\nkind = \"ntp\"\naddress = \"0.pool.example\"\n[[source]]\nkind = \"ntp\"\naddress = \"1.pool.example\"\n",
        dir.path().join("state").display(),
        dir.path().join("control.sock").display()
    );
    let (handle, _fut, runner, _clock) = started_driver(&text);
    let mut drv = Driver::new();
    let addr = |s: &str| -> std::net::SocketAddr { s.parse().unwrap() };
    let (x, y, z) = (
        addr("127.0.0.71:9"),
        addr("127.0.0.72:9"),
        addr("127.0.0.73:9"),
    );
    let link = |drv: &Driver, i: usize| {
        let s = handle.0.lock().unwrap();
        let l = drv.links.get(i).and_then(Option::as_ref);
        assert_eq!(
            s.sources[i].addr,
            l.map(|l| l.addr),
            "status shows the socket's server"
        );
        l.map(|l| (l.addr, l.local_addr()))
    };
    for i in 0..2 {
        runner.handle_msg(
            &mut drv,
            &handle,
            Msg::Resolved {
                i,
                result: Ok(vec![x, y]),
            },
        );
    }
    let (a0, g0) = link(&drv, 0).unwrap();
    let (a1, _) = link(&drv, 1).unwrap();
    assert_eq!((a0, a1), (x, y), "the second name asks the other server");
    // The name answers again with both, in another order: the kept address stays, and so
    // does its socket.
    runner.handle_msg(
        &mut drv,
        &handle,
        Msg::Resolved {
            i: 0,
            result: Ok(vec![y, x]),
        },
    );
    assert_eq!(link(&drv, 0), Some((x, g0)));
    // Another server only: a new socket.
    runner.handle_msg(
        &mut drv,
        &handle,
        Msg::Resolved {
            i: 0,
            result: Ok(vec![z]),
        },
    );
    let (a, g) = link(&drv, 0).unwrap();
    assert_eq!(a, z);
    assert_ne!(g, g0);
    // A failed lookup: said in the status, and the source waits for its next try.
    runner.handle_msg(
        &mut drv,
        &handle,
        Msg::Resolved {
            i: 1,
            result: Err("DNS: no such name".into()),
        },
    );
    let s = handle.0.lock().unwrap();
    assert!(
        s.sources[1].reason.contains("DNS"),
        "{}",
        s.sources[1].reason
    );
    assert_eq!(s.sources[1].verdict, Verdict::NoReply);
}

/// A reply to a request sent before the clock was stepped, handled after the step, was
/// measured on the old clock: it moves with the clock (as stored samples do), so it agrees with
/// the new clock instead of being off by the step.
#[tokio::test]
async fn a_reply_stamped_before_a_step_is_measured_on_the_old_clock() {
    use super::run::{Driver, Msg};
    use trusttime_core::ntp::{Mode, NtpPacket};
    let dir = tempfile::tempdir().unwrap();
    let server = std::net::UdpSocket::bind("127.0.0.74:0").unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let text = format!(
        "[daemon]\nstate-dir = \"{}\"\ncontrol-socket = \"{}\"\n[clock]\nobserve-only = true\n[[source]]\nkind = \"ntp\"\naddress = \"{}\"\n",
        dir.path().join("state").display(),
        dir.path().join("control.sock").display(),
        server.local_addr().unwrap()
    );
    let (handle, _fut, runner, clock) = started_driver(&text);
    let mut drv = Driver::new();
    // Resolving the literal address connects the socket and sends the first request.
    runner.handle_msg(
        &mut drv,
        &handle,
        Msg::Resolved {
            i: 0,
            result: Ok(vec![server.local_addr().unwrap()]),
        },
    );
    let mut req = [0u8; 1024];
    let (n, from) = server.recv_from(&mut req).unwrap();
    let (p, _) = NtpPacket::parse(&req[..n]).unwrap();
    // The server's time is the device's time (offset 0) at the moment it answers.
    let stamped = handle.1.now();
    let t = trusttime_core::time::NtpTimestamp::from_unix(stamped.wall);
    let mut r = NtpPacket::client_request(p.transmit_ts);
    r.mode = Mode::Server;
    r.stratum = 2;
    r.origin_ts = p.transmit_ts;
    r.receive_ts = t;
    r.transmit_ts = t;
    r.reference_ts = t;
    r.precision = -20;
    let mut reply = [0u8; 48];
    r.emit(&mut reply).unwrap();
    let _ = from;
    // The clock is stepped an hour ahead after the reply arrived but before it is handled.
    let step = SignedDuration::from_secs(3600);
    clock.offset_ns.fetch_add(step.as_nanos(), Ordering::SeqCst);
    super::effects::shift_samples(&mut handle.0.lock().unwrap(), step);
    runner.on_datagram(&handle, 0, stamped, &reply);
    let s = handle.0.lock().unwrap();
    let (iv, _, _) = s.sources[0].last.expect("a sample");
    // Measured on the old clock the server was 0 s off; on the new clock it is 1 h behind.
    let mid = iv.midpoint();
    assert!(
        (mid + step).abs() < SignedDuration::from_secs(1),
        "offset {mid:?} should be about -1 h against the stepped clock"
    );
}

/// A liar proven round after round is one entry with the newest proof; other pairs stay, and
/// the list keeps the newest 20.
#[test]
fn a_repeated_roughtime_violation_is_one_entry_with_the_newest_proof() {
    use super::run::record_violation;
    use crate::json::{ChainViolation, SignedTime, Time};
    let v = |a: &str, b: &str, round: u32| ChainViolation {
        at: Time(format!("round {round}")),
        earlier: SignedTime {
            server: a.into(),
            midpoint: Time("2026-12-02T00:00:00Z".into()),
            radius_s: 1.0,
        },
        later: SignedTime {
            server: b.into(),
            midpoint: Time("2026-12-01T23:00:00Z".into()),
            radius_s: 1.0,
        },
        text: format!("{b} signed before {a} (round {round})"),
    };
    let mut list = std::collections::VecDeque::new();
    assert!(record_violation(&mut list, v("a:2002", "b:2002", 1)));
    assert!(record_violation(&mut list, v("c:2002", "b:2002", 2)));
    for round in 3..40 {
        assert!(!record_violation(&mut list, v("a:2002", "b:2002", round)));
    }
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0].earlier.server, "c:2002");
    assert_eq!(list[1].at, Time("round 39".into()));
    for k in 0..30 {
        assert!(record_violation(
            &mut list,
            v(&format!("s{k}:2002"), "b:2002", 100 + k)
        ));
    }
    assert_eq!(list.len(), 20);
    assert_eq!(list.back().unwrap().earlier.server, "s29:2002");
}
