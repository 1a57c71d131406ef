//! Every clock situation against chains generated now: the verdict, the finding and the words.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, ServerName};
use trusttime_core::{Provenance, SignedDuration, TimeInterval, TrustedTime, UnixTime};
use trusttime_test_support::certs::{forged_leaf, make_chain, unix_now, valid_chain, Chain};
use trusttime_tls::{
    CertRole, ClockReading, Finding, FixedClock, Policy, Purpose, TrustedTimeVerifier,
    UndeterminedPolicy, Verdict,
};

const DAY: i64 = 86_400;
const NAME: &str = "device.example.test";

fn floor() -> UnixTime {
    trusttime_core::floor::build_time()
}

fn synced(at: i64, err: SignedDuration) -> ClockReading {
    let t = UnixTime::from_secs(at);
    ClockReading {
        device: t,
        trusted: TrustedTime {
            interval: TimeInterval::around(t, err),
            provenance: Provenance::Ntp,
        },
    }
}

fn untrusted(device: UnixTime) -> ClockReading {
    ClockReading::untrusted(device, floor())
}

fn diagnose(c: &Chain, reading: ClockReading) -> trusttime_tls::Diagnosis {
    let v = TrustedTimeVerifier::new(
        vec![CertificateDer::from(c.root_der.clone())],
        Arc::new(FixedClock(reading)),
        Policy::for_purpose(Purpose::Tls),
    )
    .unwrap();
    let inter: Vec<CertificateDer<'_>> = c
        .intermediates_der
        .iter()
        .map(|d| CertificateDer::from(d.clone()))
        .collect();
    v.diagnose(
        &CertificateDer::from(c.leaf_der.clone()),
        &inter,
        &ServerName::try_from(NAME).unwrap(),
    )
}

fn good_chain() -> Chain {
    valid_chain(NAME)
}

#[test]
fn valid_when_synced() {
    let d = diagnose(
        &good_chain(),
        synced(unix_now(), SignedDuration::from_millis(2)),
    );
    assert_eq!(d.verdict, Verdict::Valid, "{d}");
}

#[test]
fn dead_rtc_battery_is_a_clock_behind_proven() {
    let d = diagnose(&good_chain(), untrusted(UnixTime::from_secs(946_684_800)));
    assert_eq!(
        (d.verdict, &d.finding),
        (Verdict::Undetermined, &Finding::ClockBehind),
        "{d}"
    );
    assert!(d.chain_verified_at_own_dates);
    let m = d.to_string();
    eprintln!("{m}");
    assert!(m.contains("this device's clock says 2000-01-01"), "{m}");
    assert!(m.contains("no time source has synced"), "{m}");
    assert!(m.contains("years behind, not the certificate"), "{m}");
    assert!(m.contains("X509_V_ERR_CERT_NOT_YET_VALID"), "{m}");
    assert!(m.contains("trusttime sync"), "{m}");
    assert_eq!(d.certificate.as_ref().unwrap().role, CertRole::Leaf);
    assert!(d.clock_off_by_s.unwrap() > 20.0 * 365.0 * DAY as f64);
}

#[test]
fn clock_at_1970() {
    let d = diagnose(&good_chain(), untrusted(UnixTime::EPOCH));
    assert_eq!(d.finding, Finding::ClockBehind, "{d}");
    assert!(d.to_string().contains("1970-01-01"), "{d}");
}

#[test]
fn clock_at_the_floor_is_not_trusted() {
    // Certificates issued before the build verify at the floor, but the floor is not a time.
    let now = unix_now();
    let c = make_chain(
        NAME,
        (now - 4000 * DAY, now + 3650 * DAY),
        None,
        (now - 2000 * DAY, now + 335 * DAY),
    );
    let d = diagnose(&c, untrusted(floor()));
    assert_eq!(
        (d.verdict, &d.finding),
        (Verdict::Undetermined, &Finding::ClockNotTrusted),
        "{d}"
    );
    assert!(d.to_string().contains("untrusted clock"), "{d}");
}

#[test]
fn clock_far_in_the_future_is_not_called_ahead_without_proof() {
    let d = diagnose(
        &good_chain(),
        untrusted(UnixTime::from_secs(unix_now() + 40 * 365 * DAY)),
    );
    assert_eq!(
        (d.verdict, &d.finding),
        (Verdict::Undetermined, &Finding::ExpiredByUntrustedClock),
        "{d}"
    );
    let m = d.to_string();
    assert!(m.contains("only a trusted time can tell"), "{m}");
    assert!(m.contains("X509_V_ERR_CERT_HAS_EXPIRED"), "{m}");
}

#[test]
fn really_expired_when_synced() {
    let now = unix_now();
    let c = make_chain(
        NAME,
        (now - 4000 * DAY, now + 3650 * DAY),
        None,
        (now - 400 * DAY, now - 35 * DAY),
    );
    let d = diagnose(&c, synced(now, SignedDuration::from_millis(2)));
    assert_eq!(
        (d.verdict, &d.finding),
        (Verdict::Invalid, &Finding::Expired),
        "{d}"
    );
    let m = d.to_string();
    eprintln!("{m}");
    assert!(
        m.contains("really expired 35 days ago; the clock is right"),
        "{m}"
    );
    assert!(m.contains("from an NTP consensus"), "{m}");
}

#[test]
fn not_yet_valid_when_synced() {
    let now = unix_now();
    let c = make_chain(
        NAME,
        (now - 4000 * DAY, now + 3650 * DAY),
        None,
        (now + 10 * DAY, now + 400 * DAY),
    );
    let d = diagnose(&c, synced(now, SignedDuration::from_millis(2)));
    assert_eq!(
        (d.verdict, &d.finding),
        (Verdict::Invalid, &Finding::NotYetValid),
        "{d}"
    );
}

#[test]
fn interval_straddling_expiry_is_undetermined_and_policy_decides() {
    let now = unix_now();
    let c = make_chain(
        NAME,
        (now - 4000 * DAY, now + 3650 * DAY),
        None,
        (now - 400 * DAY, now + 1800),
    );
    let reading = synced(now, SignedDuration::from_secs(3600));
    let d = diagnose(&c, reading);
    assert_eq!(
        (d.verdict, &d.finding),
        (Verdict::Undetermined, &Finding::Straddles),
        "{d}"
    );
    // The verifier rejects by default and accepts when told to.
    use rustls::client::danger::ServerCertVerifier;
    let leaf = CertificateDer::from(c.leaf_der.clone());
    let name = ServerName::try_from(NAME).unwrap();
    let now_pki = rustls_pki_types::UnixTime::now();
    for (policy, ok) in [
        (UndeterminedPolicy::Reject, false),
        (UndeterminedPolicy::Accept, true),
    ] {
        let v = TrustedTimeVerifier::new(
            vec![CertificateDer::from(c.root_der.clone())],
            Arc::new(FixedClock(reading)),
            Policy {
                undetermined: policy,
                ..Policy::for_purpose(Purpose::Tls)
            },
        )
        .unwrap();
        assert_eq!(
            v.verify_server_cert(&leaf, &[], &name, &[], now_pki)
                .is_ok(),
            ok,
            "{policy:?}"
        );
    }
}

#[test]
fn expired_intermediate_is_named() {
    let now = unix_now();
    let c = make_chain(
        NAME,
        (now - 4000 * DAY, now + 3650 * DAY),
        Some((now - 900 * DAY, now - 2 * DAY)),
        (now - 30 * DAY, now + 300 * DAY),
    );
    let d = diagnose(&c, synced(now, SignedDuration::from_millis(2)));
    assert_eq!(d.finding, Finding::Expired, "{d}");
    assert_eq!(
        d.certificate.as_ref().unwrap().role,
        CertRole::Intermediate(1)
    );
    assert!(
        d.to_string().contains("intermediate CA certificate #1"),
        "{d}"
    );
}

#[test]
fn expired_root_is_reported_though_webpki_ignores_it() {
    let now = unix_now();
    let c = make_chain(
        NAME,
        (now - 4000 * DAY, now - 10 * DAY),
        None,
        (now - 30 * DAY, now + 300 * DAY),
    );
    let d = diagnose(&c, synced(now, SignedDuration::from_millis(2)));
    assert_eq!(
        (d.verdict, &d.finding),
        (Verdict::Invalid, &Finding::RootExpired),
        "{d}"
    );
    assert_eq!(d.certificate.as_ref().unwrap().role, CertRole::Root);
}

#[test]
fn forged_dates_never_blame_the_clock() {
    let now = unix_now();
    let genuine = good_chain();
    // A leaf "valid" from next year, not signed by the root: at a clock in 2000 the date
    // check fails first, but the chain does not verify at its own dates either.
    let forged = forged_leaf(&genuine, NAME, (now + 365 * DAY, now + 700 * DAY));
    let d = diagnose(&forged, untrusted(UnixTime::from_secs(946_684_800)));
    assert_eq!(
        (d.verdict, &d.finding),
        (Verdict::Invalid, &Finding::Unverifiable),
        "{d}"
    );
    assert!(!d.chain_verified_at_own_dates);
    assert!(d.to_string().contains("the clock is not blamed"), "{d}");
}

#[test]
fn wrong_name_is_not_a_clock_problem() {
    let c = good_chain();
    let v = TrustedTimeVerifier::new(
        vec![CertificateDer::from(c.root_der.clone())],
        Arc::new(FixedClock(synced(
            unix_now(),
            SignedDuration::from_millis(2),
        ))),
        Policy::for_purpose(Purpose::Tls),
    )
    .unwrap();
    let inter: Vec<CertificateDer<'_>> = c
        .intermediates_der
        .iter()
        .map(|d| CertificateDer::from(d.clone()))
        .collect();
    let d = v.diagnose(
        &CertificateDer::from(c.leaf_der.clone()),
        &inter,
        &ServerName::try_from("other.test").unwrap(),
    );
    assert_eq!(
        (d.verdict, &d.finding),
        (Verdict::Invalid, &Finding::Other),
        "{d}"
    );
    assert_eq!(d.openssl_error, Some("X509_V_ERR_HOSTNAME_MISMATCH"));
}

#[test]
fn garbage_der_is_a_clear_error() {
    let c = good_chain();
    let mut broken = c.clone();
    broken.leaf_der.truncate(40);
    let d = diagnose(&broken, synced(unix_now(), SignedDuration::from_millis(2)));
    assert_eq!(d.verdict, Verdict::Invalid);
    assert!(d.to_string().contains("cannot be read"), "{d}");
}

/// Seeded random and mutated DER through the diagnosis path (the `cert_diagnosis` fuzz
/// target's property, on stable).
#[test]
fn random_and_mutated_der_always_get_a_verdict() {
    let good = good_chain();
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..300 {
        let mut c = good.clone();
        if i % 3 == 0 {
            c.leaf_der = (0..(next() % 600)).map(|_| next() as u8).collect();
        } else {
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % c.leaf_der.len();
                c.leaf_der[at] = next() as u8;
            }
        }
        let d = diagnose(&c, untrusted(UnixTime::from_secs(946_684_800)));
        assert!(!d.message.is_empty());
    }
}
