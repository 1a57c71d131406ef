//! The network transports that carry the core's sans-IO exchanges, one file each:
//! NTS-KE over TLS ([`nts`]), Roughtime chains over UDP ([`roughtime`]) and HTTPS Date
//! constraints ([`https_date`]), and the sockets of the NTP and NTS exchanges ([`udp`]): one
//! connected UDP socket per [`trusttime_core::source::NtpSource`], read by the loop of `sync`
//! or the daemon, with the kernel's arrival stamps.
//!
//! A transport knows server specs (`crate::spec`), the local clock (`crate::clock`) and the
//! operating system (`crate::platform`) and nothing above them: what an answer means is
//! decided by the core and by the callers.

#[cfg(feature = "tls")]
pub mod https_date;
#[cfg(feature = "tls")]
pub mod nts;
pub mod roughtime;
pub mod udp;
