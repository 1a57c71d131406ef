//! A small NTP server: answers mode-3 requests with mode-4 replies from a [`LocalClock`], so a
//! gateway can serve time to the devices on its LAN (and the demo and tests can run servers
//! that lie by a known amount).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use trusttime_core::ntp::{LeapIndicator, Mode, NtpPacket, NtpShort, HEADER_LEN};
use trusttime_core::time::NtpTimestamp;
use trusttime_core::SignedDuration;

use crate::clock::LocalClock;

/// How the server describes itself in its replies.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// Stratum to announce (1..=15).
    pub stratum: u8,
    /// Root dispersion to announce: the server's own error bound.
    pub root_dispersion: SignedDuration,
    /// Reference ID (for stratum 1, a four-letter source name).
    pub reference_id: [u8; 4],
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            stratum: 2,
            root_dispersion: SignedDuration::from_millis(1),
            reference_id: *b"TTIM",
        }
    }
}

/// Builds the reply to one datagram, or `None` when it is not a client request we answer.
#[must_use]
pub fn reply_to(
    request: &[u8],
    received: NtpTimestamp,
    clock: &dyn LocalClock,
    opts: &ServeOptions,
) -> Option<[u8; HEADER_LEN]> {
    let (req, _) = NtpPacket::parse(request).ok()?;
    if req.mode != Mode::Client || !(1..=4).contains(&req.version) {
        return None;
    }
    let now = NtpTimestamp::from_unix(clock.now().wall);
    let reply = NtpPacket {
        leap: LeapIndicator::NoWarning,
        version: req.version,
        mode: Mode::Server,
        stratum: opts.stratum.clamp(1, 15),
        poll: req.poll,
        precision: -20,
        root_delay: NtpShort(0),
        root_dispersion: NtpShort::from_duration(opts.root_dispersion),
        reference_id: opts.reference_id,
        reference_ts: now,
        origin_ts: req.transmit_ts,
        receive_ts: received,
        transmit_ts: now,
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
            let received = NtpTimestamp::from_unix(self.clock.now().wall);
            match reply_to(&buf[..len], received, self.clock.as_ref(), &self.opts) {
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
        let out = reply_to(
            &req,
            NtpTimestamp::from_unix(clock.now().wall),
            &clock,
            &ServeOptions::default(),
        )
        .unwrap();
        let (p, _) = NtpPacket::parse(&out).unwrap();
        assert_eq!(p.mode, Mode::Server);
        assert_eq!(p.origin_ts, cookie);
        let t = p.transmit_ts.to_unix(UnixTime::from_secs(1_900_000_000));
        assert!((t - UnixTime::from_secs(2_000_000_000)).abs() < SignedDuration::from_secs(1));
        // Its own reply is not a request; neither are short or random datagrams.
        assert!(reply_to(&out, NtpTimestamp::ZERO, &clock, &ServeOptions::default()).is_none());
        assert!(reply_to(
            &[0x23; 10],
            NtpTimestamp::ZERO,
            &clock,
            &ServeOptions::default()
        )
        .is_none());
    }
}
