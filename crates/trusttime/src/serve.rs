//! A small NTP server: answers mode-3 requests with mode-4 replies, so a gateway can serve time
//! to the devices on its LAN (and the demo and tests can run servers that lie by a known
//! amount).
//!
//! It never hands out a time it does not trust as if it were good: unless the time served is
//! trusted ([`Trust`]), replies say "unsynchronised" (leap indicator 3, stratum 16), which
//! every NTP client refuses. A device in 2000 with a dead RTC does not serve 2000 to its LAN.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use trusttime_core::ntp::{LeapIndicator, Mode, NtpPacket, NtpShort, HEADER_LEN};
use trusttime_core::time::NtpTimestamp;
use trusttime_core::{SignedDuration, UnixTime};

use crate::clock::LocalClock;

/// The daemon's trusted time, as last read over its control socket.
#[derive(Clone, Copy, Debug)]
pub struct DaemonTime {
    /// Trusted time (the interval's centre) minus the system clock.
    pub offset: SignedDuration,
    /// Half the width of the trusted interval.
    pub uncertainty: SignedDuration,
    /// When this was read.
    pub read_at: std::time::Instant,
}

/// A daemon reading older than this is not used (the daemon stopped answering).
pub const DAEMON_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// What vouches for the time served.
#[derive(Clone, Debug)]
pub enum Trust {
    /// The daemon's trusted time (kept fresh by the caller, e.g. [`follow_daemon`]); while
    /// there is no fresh trusted reading, or its uncertainty exceeds `max_error` (many SNTP
    /// clients ignore the error an NTP reply states), replies say unsynchronised.
    Daemon {
        /// The latest reading.
        link: Arc<Mutex<Option<DaemonTime>>>,
        /// The largest uncertainty served as synchronised.
        max_error: SignedDuration,
    },
    /// The local clock, which the operator vouches for (it is disciplined by something else);
    /// still refused while it reads below `floor`.
    LocalClock {
        /// Nothing below this is served as synchronised.
        floor: UnixTime,
    },
    /// Nothing vouches for the clock: every reply says unsynchronised.
    Unsynchronized,
    /// The local clock served as synchronised whatever it reads, below the floor too. Only
    /// for deliberately lying servers (the demo's, tests'), never for a real one: a device
    /// whose clock is wrong would hand its wrong time to the LAN.
    LyingTestServer,
}

impl Trust {
    /// The time to serve when the local clock (as the server reads it) says `local`, and its
    /// error bound, or `None` when it is not trusted.
    #[must_use]
    pub fn judge(
        &self,
        local: UnixTime,
        dispersion: SignedDuration,
    ) -> (UnixTime, Option<SignedDuration>) {
        match self {
            Trust::Unsynchronized => (local, None),
            Trust::LyingTestServer => (local, Some(dispersion)),
            Trust::LocalClock { floor } => (local, (local >= *floor).then_some(dispersion)),
            Trust::Daemon { link, max_error } => {
                let reading = link.lock().ok().and_then(|g| *g);
                match reading {
                    Some(d)
                        if d.read_at.elapsed() <= DAEMON_STALE_AFTER
                            && d.uncertainty <= *max_error =>
                    {
                        // Widen by what the reading may have aged (a generous 100 ppm).
                        let age = SignedDuration::from_std(d.read_at.elapsed()).drift_bound(100);
                        (
                            local + d.offset,
                            Some(d.uncertainty.saturating_add(age).saturating_add(dispersion)),
                        )
                    }
                    _ => (local, None),
                }
            }
        }
    }
}

/// Keeps `link` up to date with the daemon's trusted time, asking its control socket every
/// second; a daemon that does not answer, or whose time is not trusted, clears it.
pub async fn follow_daemon(
    socket: std::path::PathBuf,
    link: Arc<Mutex<Option<DaemonTime>>>,
    clock: Arc<dyn LocalClock>,
) {
    let mut last_state = String::new();
    loop {
        let reading = match crate::control::ask(&socket, "status").await {
            Ok(v) => {
                let state = v["state"].as_str().unwrap_or("unknown").to_owned();
                let parse = |k: &str| v[k].as_str().and_then(|t| UnixTime::parse_rfc3339(t).ok());
                // The daemon's own reading of the system clock at that moment (the same clock
                // this process reads), so the IPC delay does not enter the offset; else now.
                let now = parse("system_time").unwrap_or_else(|| clock.now().wall);
                let reading = match (state.as_str(), parse("earliest"), parse("latest")) {
                    ("unknown", _, _) | (_, None, _) | (_, _, None) => None,
                    (_, Some(e), Some(l)) if e <= l => {
                        let mid = e.midpoint(l);
                        Some(DaemonTime {
                            offset: mid - now,
                            uncertainty: (l - e).half(),
                            read_at: std::time::Instant::now(),
                        })
                    }
                    _ => None,
                };
                if state != last_state {
                    tracing::info!(%state, trusted = reading.is_some(), "daemon state");
                    last_state = state;
                }
                reading
            }
            Err(e) => {
                if last_state != "unreachable" {
                    tracing::warn!(error = %e, "cannot ask the daemon: serving as unsynchronised");
                    last_state = "unreachable".into();
                }
                None
            }
        };
        if let Ok(mut g) = link.lock() {
            *g = reading;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// How the server describes itself in its replies.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Stratum to announce (1..=15) while the time served is trusted.
    pub stratum: u8,
    /// Root dispersion to announce on top of the trusted time's own error bound.
    pub root_dispersion: SignedDuration,
    /// Reference ID (for stratum 1, a four-letter source name).
    pub reference_id: [u8; 4],
    /// What vouches for the time served.
    pub trust: Trust,
}

impl Default for ServeOptions {
    /// Stratum 2, 1 ms, `TTIM`, and the local clock trusted only at or above the build-time
    /// floor.
    fn default() -> Self {
        ServeOptions {
            stratum: 2,
            root_dispersion: SignedDuration::from_millis(1),
            reference_id: *b"TTIM",
            trust: Trust::LocalClock {
                floor: trusttime_core::floor::build_time(),
            },
        }
    }
}

/// Builds the reply to one datagram, or `None` when it is not a client request we answer.
/// `received` is when it arrived (server time); `now` the time served and its error bound,
/// `None` when it is not trusted (then the reply says unsynchronised: LI 3, stratum 16).
#[must_use]
pub fn reply_to(
    request: &[u8],
    received: UnixTime,
    now: (UnixTime, Option<SignedDuration>),
    opts: &ServeOptions,
) -> Option<[u8; HEADER_LEN]> {
    let (req, _) = NtpPacket::parse(request).ok()?;
    if req.mode != Mode::Client || !(1..=4).contains(&req.version) {
        return None;
    }
    let (t, bound) = now;
    let ts = NtpTimestamp::from_unix(t);
    let reply = match bound {
        Some(dispersion) => NtpPacket {
            leap: LeapIndicator::NoWarning,
            version: req.version,
            mode: Mode::Server,
            stratum: opts.stratum.clamp(1, 15),
            poll: req.poll,
            precision: -20,
            root_delay: NtpShort(0),
            root_dispersion: NtpShort::from_duration(dispersion),
            reference_id: opts.reference_id,
            reference_ts: ts,
            origin_ts: req.transmit_ts,
            receive_ts: NtpTimestamp::from_unix(received),
            transmit_ts: ts,
        },
        None => NtpPacket {
            leap: LeapIndicator::Unsynchronized,
            version: req.version,
            mode: Mode::Server,
            stratum: 16,
            poll: req.poll,
            precision: -20,
            root_delay: NtpShort(0),
            root_dispersion: NtpShort::from_duration(SignedDuration::from_secs(16)),
            reference_id: [0; 4],
            reference_ts: NtpTimestamp::ZERO,
            origin_ts: req.transmit_ts,
            receive_ts: NtpTimestamp::from_unix(received),
            transmit_ts: ts,
        },
    };
    let mut out = [0u8; HEADER_LEN];
    reply.emit(&mut out).ok()?;
    Some(out)
}

/// A bound server, ready to run.
#[allow(missing_debug_implementations)]
pub struct Server {
    socket: UdpSocket,
    clock: Arc<dyn LocalClock>,
    opts: ServeOptions,
}

impl Server {
    /// Binds the UDP socket.
    ///
    /// # Errors
    /// When the address cannot be bound (in use, or a privileged port without permission).
    pub async fn bind(
        addr: SocketAddr,
        clock: Arc<dyn LocalClock>,
        opts: ServeOptions,
    ) -> std::io::Result<Server> {
        Ok(Server {
            socket: UdpSocket::bind(addr).await?,
            clock,
            opts,
        })
    }

    /// The bound address (useful with port 0).
    ///
    /// # Errors
    /// From the operating system.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Answers requests until the task is dropped. Garbage is ignored, never fatal.
    pub async fn run(self) {
        let mut buf = [0u8; 1500];
        loop {
            let (len, peer) = match self.socket.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "receive error");
                    continue;
                }
            };
            let disp = self.opts.root_dispersion;
            let (received, _) = self.opts.trust.judge(self.clock.now().wall, disp);
            let now = self.opts.trust.judge(self.clock.now().wall, disp);
            match reply_to(&buf[..len], received, now, &self.opts) {
                Some(out) => {
                    if let Err(e) = self.socket.send_to(&out, peer).await {
                        tracing::debug!(%peer, error = %e, "send error");
                    }
                }
                None => {
                    tracing::debug!(%peer, len, "ignored a datagram that is not an NTP client request")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ShiftedClock;
    use trusttime_core::UnixTime;

    #[test]
    fn answers_requests_and_ignores_garbage() {
        let clock = ShiftedClock::starting_at(UnixTime::from_secs(2_000_000_000));
        let cookie = NtpTimestamp::from_bits(0x1234_5678_9abc_def0);
        let mut req = [0u8; 48];
        NtpPacket::client_request(cookie).emit(&mut req).unwrap();
        let opts = ServeOptions::default();
        let at = |c: &ShiftedClock| opts.trust.judge(c.now().wall, opts.root_dispersion);
        let out = reply_to(&req, clock.now().wall, at(&clock), &opts).unwrap();
        let (p, _) = NtpPacket::parse(&out).unwrap();
        assert_eq!(p.mode, Mode::Server);
        assert_eq!(p.leap, LeapIndicator::NoWarning);
        assert_eq!(p.origin_ts, cookie);
        let t = p.transmit_ts.to_unix(UnixTime::from_secs(1_900_000_000));
        assert!((t - UnixTime::from_secs(2_000_000_000)).abs() < SignedDuration::from_secs(1));
        // Its own reply is not a request; neither are short or random datagrams.
        assert!(reply_to(&out, clock.now().wall, at(&clock), &opts).is_none());
        assert!(reply_to(&[0x23; 10], clock.now().wall, at(&clock), &opts).is_none());
    }

    #[test]
    fn untrusted_time_is_served_as_unsynchronised() {
        let mut req = [0u8; 48];
        NtpPacket::client_request(NtpTimestamp::from_bits(7))
            .emit(&mut req)
            .unwrap();
        let unsync = |out: [u8; 48]| {
            let (p, _) = NtpPacket::parse(&out).unwrap();
            p.leap == LeapIndicator::Unsynchronized && p.stratum == 16
        };
        // A clock in 2000, below the floor: not served as good.
        let y2k = UnixTime::from_secs(946_684_800);
        let opts = ServeOptions::default();
        let now = opts.trust.judge(y2k, opts.root_dispersion);
        assert_eq!(now.1, None);
        assert!(unsync(reply_to(&req, y2k, now, &opts).unwrap()));
        // Only a deliberately lying test server serves it (as the demo's liar does).
        let liar = ServeOptions {
            trust: Trust::LyingTestServer,
            ..ServeOptions::default()
        };
        let now = liar.trust.judge(y2k, liar.root_dispersion);
        assert_eq!(now, (y2k, Some(liar.root_dispersion)));
        assert!(!unsync(reply_to(&req, y2k, now, &liar).unwrap()));
        // Nothing vouches for the clock.
        let opts = ServeOptions {
            trust: Trust::Unsynchronized,
            ..ServeOptions::default()
        };
        let later = UnixTime::from_secs(2_000_000_000);
        assert!(unsync(
            reply_to(
                &req,
                later,
                opts.trust.judge(later, opts.root_dispersion),
                &opts
            )
            .unwrap()
        ));
        // The daemon: nothing read yet, then a trusted reading, then a stale one.
        let link = Arc::new(Mutex::new(None));
        let opts = ServeOptions {
            trust: Trust::Daemon {
                link: Arc::clone(&link),
                max_error: SignedDuration::from_secs(1),
            },
            ..ServeOptions::default()
        };
        assert_eq!(opts.trust.judge(later, SignedDuration::ZERO).1, None);
        *link.lock().unwrap() = Some(DaemonTime {
            offset: SignedDuration::from_secs(3600),
            uncertainty: SignedDuration::from_millis(20),
            read_at: std::time::Instant::now(),
        });
        let (t, bound) = opts.trust.judge(later, SignedDuration::ZERO);
        assert_eq!(t, later + SignedDuration::from_secs(3600));
        let bound = bound.unwrap();
        assert!(
            bound >= SignedDuration::from_millis(20) && bound < SignedDuration::from_millis(21)
        );
        let (p, _) =
            NtpPacket::parse(&reply_to(&req, t, (t, Some(bound)), &opts).unwrap()).unwrap();
        assert_eq!(p.leap, LeapIndicator::NoWarning);
        assert!(p.root_dispersion.to_duration() >= SignedDuration::from_millis(20));
        // Trusted, but too uncertain to hand to clients that ignore the stated error.
        link.lock().unwrap().as_mut().unwrap().uncertainty = SignedDuration::from_secs(2);
        assert_eq!(opts.trust.judge(later, SignedDuration::ZERO).1, None);
        link.lock().unwrap().as_mut().unwrap().uncertainty = SignedDuration::from_millis(20);
        if let Some(old) = std::time::Instant::now().checked_sub(DAEMON_STALE_AFTER * 2) {
            link.lock().unwrap().as_mut().unwrap().read_at = old;
            assert_eq!(opts.trust.judge(later, SignedDuration::ZERO).1, None);
        }
    }
}
