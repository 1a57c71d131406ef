//! The UDP side of the NTP and NTS exchanges, shared by `sync` and the daemon: one socket per
//! source, connected to its server (so only that server's datagrams arrive), read by the
//! driver's own loop (no task or channel per datagram), each datagram stamped with the time
//! the kernel received it.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::task::{Context, Poll};

use tokio::net::UdpSocket;
use trusttime_core::{Now, SignedDuration};

use crate::clock::LocalClock;

/// The most a datagram read may be: NTP and NTS replies are far smaller (a longer one is cut
/// short, and then fails to parse or to authenticate).
pub const RECV_LEN: usize = 4096;

/// The most a datagram may have waited in the socket for its kernel stamp to be used. The
/// wait is measured by the system clock (the kernel's stamp against the time of reading), so a
/// clock step in between would be taken for waiting: a longer "wait" (or a negative one) is
/// not believed, and the datagram counts as arriving when it was read, as without stamps. The
/// daemon's own steps are far larger than this (at least the step threshold) and its own slews
/// far slower.
pub const MAX_ARRIVAL_AGE: SignedDuration = SignedDuration::from_millis(20);

/// A source's socket, connected to its server.
#[derive(Debug)]
pub struct Link {
    /// The server.
    pub addr: SocketAddr,
    /// Sends at once: tokio's own `try_send` refuses until the reactor has seen the new
    /// socket writable, which would lose the first request after every new address.
    send: std::net::UdpSocket,
    sock: UdpSocket,
}

impl Link {
    /// A non-blocking UDP socket connected to `addr`, asking the kernel to stamp arrivals.
    /// Must be called inside the tokio runtime.
    ///
    /// # Errors
    /// From the operating system (no route, no socket left).
    pub fn connect(addr: SocketAddr) -> std::io::Result<Link> {
        let bind: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let sock = std::net::UdpSocket::bind(bind)?;
        sock.connect(addr)?;
        sock.set_nonblocking(true)?;
        if let Err(e) = crate::platform::stamp_arrivals(sock.as_raw_fd()) {
            tracing::debug!(error = %e, "no kernel receive stamps; a reply is stamped when read");
        }
        let send = sock.try_clone()?;
        Ok(Link {
            addr,
            send,
            sock: UdpSocket::from_std(sock)?,
        })
    }

    /// Sends one datagram without waiting.
    ///
    /// # Errors
    /// From the operating system (the request then counts as lost).
    pub fn send(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.send.send(bytes).map(drop)
    }

    /// The socket's own address (a new socket has another port).
    #[must_use]
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.sock.local_addr().ok()
    }
}

/// Reads the first datagram waiting on any of `n` sources' sockets (`link(i)`, `None` for a
/// source without one) into `buf`: `(source, length, arrival)`. Pending, with every socket
/// registered to wake the task, when none has one. The scan starts after the socket read
/// last (`scan_from`), so a flood on one socket cannot starve the others.
pub fn poll_datagram<'a>(
    n: usize,
    link: impl Fn(usize) -> Option<&'a Link>,
    buf: &mut [u8],
    scan_from: &mut usize,
    clock: &dyn LocalClock,
    cx: &mut Context<'_>,
) -> Poll<(usize, usize, Now)> {
    for k in 0..n {
        let i = (*scan_from + k) % n;
        let Some(l) = link(i) else { continue };
        // An error (ICMP port unreachable shows up here on a connected socket) is taken off
        // the socket; the request counts as lost and the source's retry timer decides.
        for attempt in 0..4 {
            match l.sock.poll_recv_ready(cx) {
                Poll::Pending => break,
                Poll::Ready(Err(e)) => {
                    tracing::debug!(addr = %l.addr, error = %e, "receive error");
                    continue;
                }
                Poll::Ready(Ok(())) => {}
            }
            let fd = l.sock.as_raw_fd();
            match l.sock.try_io(tokio::io::Interest::READABLE, || {
                crate::platform::recv_stamped(fd, buf)
            }) {
                Ok((len, age)) => {
                    let now = clock.now();
                    *scan_from = (i + 1) % n;
                    return Poll::Ready((i, len, arrived(now, age)));
                }
                // Read already (readiness is cleared): the next `poll_recv_ready` registers.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => tracing::debug!(addr = %l.addr, error = %e, "receive error"),
            }
            if attempt == 3 {
                // Still erroring: look again soon rather than miss its next datagram.
                cx.waker().wake_by_ref();
            }
        }
    }
    Poll::Pending
}

/// When a datagram read at `now` arrived, from the kernel's stamp (`age`: how long it waited).
#[must_use]
pub fn arrived(now: Now, age: Option<SignedDuration>) -> Now {
    match age {
        Some(a) if a >= SignedDuration::ZERO && a <= MAX_ARRIVAL_AGE => Now {
            mono: now.mono.saturating_add(-a),
            wall: now.wall.saturating_add(-a),
        },
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trusttime_core::{MonoInstant, UnixTime};

    /// A reply counts as arriving when the kernel stamped it, not when the loop read it; a
    /// stamp that says it waited implausibly long or arrived in the future (the clock was
    /// stepped in between) is not believed.
    #[test]
    fn a_datagram_counts_from_its_kernel_stamp_unless_the_clock_moved() {
        let now = Now {
            mono: MonoInstant::from_nanos(10_000_000_000),
            wall: UnixTime::from_secs(1_800_000_000),
        };
        let ms = SignedDuration::from_millis;
        let at = arrived(now, Some(ms(3)));
        assert_eq!(now.mono.since(at.mono), ms(3));
        assert_eq!(now.wall - at.wall, ms(3));
        for age in [
            None,
            Some(ms(-1)),
            Some(ms(21)),
            Some(SignedDuration::from_secs(3600)),
        ] {
            assert_eq!(arrived(now, age), now, "{age:?}");
        }
    }

    /// Through a real socket: a reply that waited 10 ms before it was read is stamped when it
    /// arrived, not when it was read; datagrams on two sockets are both read, neither starved.
    #[tokio::test]
    async fn replies_are_read_from_every_socket_with_their_arrival_time() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let links = [
            Some(Link::connect(server.local_addr().unwrap()).unwrap()),
            None,
            Some(Link::connect(server.local_addr().unwrap()).unwrap()),
        ];
        let clock = crate::clock::SystemClock;
        let mut buf = [0u8; RECV_LEN];
        let mut scan = 0;
        // The kernel turns arrival stamps on shortly after the first socket asks (until then a
        // datagram is stamped when read): wait until a datagram that waited says so.
        let mut stamped = false;
        for _ in 0..50 {
            let sent = clock.now();
            server
                .send_to(b"warm-up", links[0].as_ref().unwrap().local_addr().unwrap())
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(10));
            let (_, _, at) = std::future::poll_fn(|cx| {
                poll_datagram(3, |i| links[i].as_ref(), &mut buf, &mut scan, &clock, cx)
            })
            .await;
            if at.mono.since(sent.mono) < SignedDuration::from_millis(5) {
                stamped = true;
                break;
            }
        }
        assert!(stamped, "no datagram was stamped when it arrived");
        let sent = clock.now();
        for l in links.iter().flatten() {
            server.send_to(b"reply", l.local_addr().unwrap()).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        let mut seen = Vec::new();
        for _ in 0..2 {
            let (i, len, at) = std::future::poll_fn(|cx| {
                poll_datagram(3, |i| links[i].as_ref(), &mut buf, &mut scan, &clock, cx)
            })
            .await;
            assert_eq!(&buf[..len], b"reply");
            // Loopback delivers at once: the arrival is right after the send, 10 ms before the
            // read (unless a loaded machine made the read later than the stamps are believed).
            assert!(at.mono >= sent.mono);
            if clock.now().mono.since(sent.mono) <= MAX_ARRIVAL_AGE {
                let after_send = at.mono.since(sent.mono);
                assert!(
                    after_send < SignedDuration::from_millis(5),
                    "{after_send:?}"
                );
            }
            seen.push(i);
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 2]);
    }
}
