//! # trusttime-tls
//!
//! Certificates judged by a time the device can vouch for.
//!
//! - [`TrustedClock`]: where the verifier gets time: what the device clock says *and* the
//!   trusted interval with its provenance ([`FixedClock`] for a known reading,
//!   [`SharedClock`] updated by a sync or the daemon).
//! - [`TrustedTimeProvider`]: a rustls `TimeProvider` that returns `None` (the handshake fails
//!   closed) until the clock is trusted to the error a [`Purpose`] allows.
//! - [`TrustedTimeVerifier`]: a rustls `ServerCertVerifier` built on webpki's path building.
//!   It accepts a chain only if the path webpki builds is valid, every certificate on it (the
//!   trust anchor too, which webpki does not check) at every instant of the trusted interval;
//!   otherwise it fails with a [`Diagnosis`] that says in words whether the clock or the
//!   certificate is wrong, and proves it. Certificates the server sent that are not on the
//!   path play no part.
//!
//! ```
//! use std::sync::Arc;
//! use trusttime_core::{Purpose, UnixTime};
//! use trusttime_tls::{SharedClock, TrustedTimeProvider, TrustedTimeVerifier, Policy};
//!
//! let clock = Arc::new(SharedClock::new(UnixTime::from_secs(1_790_000_000)));
//! let verifier = TrustedTimeVerifier::with_webpki_roots(clock.clone(), Policy::for_purpose(Purpose::Tls));
//! let provider = Arc::new(rustls::crypto::ring::default_provider());
//! let config = rustls::ClientConfig::builder_with_details(
//!         provider,
//!         Arc::new(TrustedTimeProvider::new(clock.clone(), Purpose::Tls.default_max_error())),
//!     )
//!     .with_safe_default_protocol_versions().unwrap()
//!     .dangerous()
//!     .with_custom_certificate_verifier(Arc::new(verifier.unwrap()))
//!     .with_no_client_auth();
//! // Until `clock` is updated from a sync, handshakes with `config` fail closed.
//! # let _ = config;
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod bootstrap;
mod clock;
mod diagnosis;
mod verifier;

pub use bootstrap::{
    bootstrap_interval, confirm, BootstrapError, BootstrapVerifier, OutsideValidity,
    DEFAULT_HORIZON,
};
pub use clock::{ClockReading, FixedClock, SharedClock, TrustedClock, TrustedTimeProvider};
pub use diagnosis::{CertInfo, CertRole, CertTime, Diagnosis, Finding, Verdict};
pub use trusttime_core::Purpose;
pub use verifier::{
    accepts_undetermined, root_infos, Policy, TrustedTimeVerifier, UndeterminedPolicy,
};
