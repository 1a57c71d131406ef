//! The network transports that carry the core's sans-IO exchanges, one file each:
//! NTS-KE over TLS ([`nts`]), Roughtime chains over UDP ([`roughtime`]) and HTTPS Date
//! constraints ([`https_date`]). The plain NTP and NTS exchanges themselves are a connected UDP
//! socket per [`trusttime_core::source::NtpSource`], driven by `sync` and the daemon.
//!
//! A transport knows server specs (`crate::spec`) and the local clock (`crate::clock`) and
//! nothing above them: what an answer means is decided by the core and by the callers.

#[cfg(feature = "tls")]
pub mod https_date;
#[cfg(feature = "tls")]
pub mod nts;
pub mod roughtime;
