//! # trusttime-core
//!
//! The deterministic heart of trusttime: time types, the NTP wire format, per-source client
//! state machines, source selection and the trust state machine.
//!
//! This crate contains no networking code and never reads a clock. It is `#![no_std]`, does not
//! allocate, and has no `unsafe`. Every function that needs to know "now" takes it as an
//! argument ([`time::Now`]); every function that needs randomness takes it as an argument too.
//! The same code runs in the tokio daemon, on an RTOS, and in the virtual-time simulator.
//!
//! ## The shape of a driver
//!
//! ```no_run
//! use trusttime_core::ntp::{NtpClient, ClientConfig};
//! use trusttime_core::time::{MonoInstant, Now, UnixTime};
//! # fn read_clocks() -> Now { Now { mono: MonoInstant::from_nanos(0), wall: UnixTime::from_secs(0) } }
//! # fn random_u64() -> u64 { 4 }
//! # fn send(_: &[u8]) {}
//! # fn recv_until(_: Option<MonoInstant>) -> Option<([u8; 1024], usize)> { None }
//! let mut client = NtpClient::new(ClientConfig::default());
//! let mut buf = [0u8; 48];
//! loop {
//!     let now = read_clocks();                  // read the clocks once per turn
//!     if let Some(n) = client.poll_transmit(now, random_u64(), &mut buf) {
//!         send(&buf[..n]);
//!     }
//!     match recv_until(client.poll_timeout()) {
//!         Some((bytes, len)) => { let _ = client.handle_datagram(read_clocks(), &bytes[..len]); }
//!         None => client.handle_timeout(read_clocks()),
//!     }
//!     if let Some(_sample) = client.take_sample() { break; }
//! }
//! ```
//!
//! ## Features
//! - `std`: `std::error::Error` for the error types. Off by default.
//! - `nts`: [`nts`], NTS-KE records and authenticated NTP (RFC 8915), with AES-SIV. Off by default.
//! - `roughtime`: [`roughtime`], Roughtime requests and verified responses (Ed25519, SHA-512). Off by default.
//! - `compact-crypto`: smaller, slower SHA-512 (no unrolling) for microcontrollers. Off by default.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

pub mod floor;
pub mod ntp;
#[cfg(feature = "nts")]
pub mod nts;
#[cfg(feature = "roughtime")]
pub mod roughtime;
#[cfg(feature = "roughtime")]
pub mod roughtime_source;
pub mod select;
pub mod source;
pub mod system;
pub mod time;
pub mod trust;

pub use time::{
    Human, MonoInstant, Now, Provenance, Purpose, SignedDuration, TimeInterval, TrustedTime,
    UnixTime,
};
