//! # trusttime
//!
//! The hosted half of trusttime: UDP/TCP transports that drive the sans-IO
//! [`trusttime_core`] state machines, the one-shot `sync`, the small NTP server, the demo, and
//! the command-line interface.
//!
//! See `ARCHITECTURE.md` at the repository root for where each piece lives.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
#![deny(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod duration;
pub mod platform;
pub mod report;
pub mod serve;
pub mod state;
pub mod sync;
pub mod web;
