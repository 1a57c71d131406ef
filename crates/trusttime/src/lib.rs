//! # trusttime
//!
//! The hosted half of trusttime: UDP/TCP transports that drive the sans-IO
//! [`trusttime_core`] state machines, the one-shot `sync`, the small NTP server, the demo, and
//! the command-line interface.
//!
//! See `ARCHITECTURE.md` at the repository root for where each piece lives.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
#![deny(unsafe_code)]
//!
//! ## Features
//! - `tls` (default): `trusttime check` and the trusted-time TLS verifier.
//! - `web` (default): the daemon's web page for setting the time by hand.
//! - `mqtt` (default, implies `tls`): `trusttime connect` and clock health reports.
//!
//! `--no-default-features` builds a smaller binary with `sync`, `serve`, `demo`, the daemon,
//! `status`, `sources`, `wait` and `set`.

pub mod cli;
pub mod clock;
pub mod config;
pub mod conn_limit;
pub mod control;
pub mod daemon;
pub mod duration;
pub mod files;
#[cfg(feature = "tls")]
pub mod https_date;
pub mod json;
pub mod metrics;
#[cfg(feature = "tls")]
pub mod nts;
pub mod platform;
#[cfg(feature = "mqtt")]
pub mod report;
pub mod roughtime;
pub mod serve;

pub mod sync;
pub mod tally;
#[cfg(feature = "web")]
pub mod web;
