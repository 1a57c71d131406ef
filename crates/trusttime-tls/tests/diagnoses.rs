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
    // First what does not depend on time, then what does.
    let m = d.to_string();
    let name_at = m.find("not valid for the name other.test").expect("named");
    let time_at = m
        .find("Apart from the name, the chain is valid over the whole trusted interval")
        .expect("then the time");
    assert!(name_at < time_at, "{m}");
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

// The four classes of real-world chains, on chains built piece by piece.
use trusttime_test_support::certs::{ca_cert, leaf_cert, CertKey, Identity};

struct Built {
    leaf: Vec<u8>,
    sent: Vec<Vec<u8>>,
    roots: Vec<Vec<u8>>,
}

fn judge(
    b: &Built,
    reading: ClockReading,
    undetermined: UndeterminedPolicy,
) -> trusttime_tls::Diagnosis {
    let v = TrustedTimeVerifier::new(
        b.roots
            .iter()
            .map(|d| CertificateDer::from(d.clone()))
            .collect(),
        Arc::new(FixedClock(reading)),
        Policy {
            undetermined,
            ..Policy::for_purpose(Purpose::Tls)
        },
    )
    .unwrap();
    let inter: Vec<CertificateDer<'_>> = b
        .sent
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let d = v.diagnose_at(
        &CertificateDer::from(b.leaf.as_slice()),
        &inter,
        &ServerName::try_from(NAME).unwrap(),
        reading,
    );
    // The handshake verifier says the same.
    use rustls::client::danger::ServerCertVerifier;
    let ok = v
        .verify_server_cert(
            &CertificateDer::from(b.leaf.as_slice()),
            &inter,
            &ServerName::try_from(NAME).unwrap(),
            &[],
            rustls_pki_types::UnixTime::now(),
        )
        .is_ok();
    assert_eq!(
        ok,
        d.verdict == Verdict::Valid || trusttime_tls::accepts_undetermined(&d, v.policy()),
        "{d}"
    );
    d
}

fn at(t: UnixTime, err: SignedDuration) -> ClockReading {
    ClockReading {
        device: t,
        trusted: TrustedTime {
            interval: TimeInterval::around(t, err),
            provenance: Provenance::Ntp,
        },
    }
}

/// Root -> intermediate -> leaf, all valid a long time around now.
fn everyday(now: i64) -> (Identity, Identity, CertKey, Built) {
    let root = Identity::ecdsa("Class Root");
    let inter = Identity::ecdsa("Class CA");
    let key = CertKey::generate().unwrap();
    let b = Built {
        leaf: leaf_cert(NAME, &key, &inter, (now - 30 * DAY, now + 300 * DAY)),
        sent: vec![ca_cert(&inter, &root, (now - 300 * DAY, now + 900 * DAY))],
        roots: vec![ca_cert(&root, &root, (now - 400 * DAY, now + 3650 * DAY))],
    };
    (root, inter, key, b)
}

#[test]
fn class1_unused_expired_certificates_play_no_part() {
    let now = unix_now();
    let (root, inter, _, mut b) = everyday(now);
    // An expired cross-sign of the root by a root the device does not trust (AddTrust 2020),
    // and an old expired copy of the intermediate still in the bundle.
    let old_root = Identity::ecdsa("Class Old Root");
    b.sent.push(ca_cert(
        &root,
        &old_root,
        (now - 4000 * DAY, now - 20 * DAY),
    ));
    b.sent
        .insert(0, ca_cert(&inter, &root, (now - 2000 * DAY, now - 3 * DAY)));
    let d = judge(
        &b,
        at(UnixTime::from_secs(now), SignedDuration::from_millis(2)),
        UndeterminedPolicy::Reject,
    );
    assert_eq!(
        (d.verdict, &d.finding),
        (Verdict::Valid, &Finding::Valid),
        "{d}"
    );
    assert_eq!(d.chain.len(), 3, "{d:?}");
    assert_eq!(d.also_sent.len(), 2, "{d:?}");
    eprintln!("{d}");
    assert!(d.message.contains("not used"), "{d}");
    assert!(d.message.contains("expired"), "{d}");
}

#[test]
fn class2_the_root_is_the_path_anchor_not_a_guess() {
    let now = unix_now();
    let (root, _, _, mut b) = everyday(now);
    // An expired copy of the trusted root, sent by the server and listed first among the
    // trusted roots: the valid copy is the one in use.
    let expired_copy = ca_cert(&root, &root, (now - 5000 * DAY, now - 100 * DAY));
    b.sent.push(expired_copy.clone());
    b.roots.insert(0, expired_copy);
    let d = judge(
        &b,
        at(UnixTime::from_secs(now), SignedDuration::from_millis(2)),
        UndeterminedPolicy::Reject,
    );
    assert_eq!(d.verdict, Verdict::Valid, "{d}");
    assert_eq!(d.chain.last().unwrap().role, CertRole::Root);
    assert!(d.chain.last().unwrap().not_after.as_secs() > now);

    // The other way round: the only trusted root has expired; a self-signed certificate
    // appended by the server, or intermediates sent root-side first, change nothing.
    let (root, inter, key, _) = everyday(now);
    let root_der = ca_cert(&root, &root, (now - 4000 * DAY, now - 10 * DAY));
    let stranger = Identity::ecdsa("Any Self-Signed");
    let inter2 = Identity::ecdsa("Class CA 2");
    let b = Built {
        leaf: leaf_cert(NAME, &key, &inter, (now - 30 * DAY, now + 300 * DAY)),
        // Root-side first: inter2 (issued by the root), then inter (issued by inter2).
        sent: vec![
            ca_cert(&inter2, &root, (now - 300 * DAY, now + 900 * DAY)),
            ca_cert(&inter, &inter2, (now - 300 * DAY, now + 900 * DAY)),
            ca_cert(&stranger, &stranger, (now - 300 * DAY, now + 900 * DAY)),
        ],
        roots: vec![root_der],
    };
    let d = judge(
        &b,
        at(UnixTime::from_secs(now), SignedDuration::from_millis(2)),
        UndeterminedPolicy::Reject,
    );
    assert_eq!(
        (d.verdict, &d.finding),
        (Verdict::Invalid, &Finding::RootExpired),
        "{d}"
    );
    assert_eq!(d.certificate.as_ref().unwrap().role, CertRole::Root);
    assert_eq!(d.openssl_error, Some("X509_V_ERR_CERT_HAS_EXPIRED"));
    eprintln!("{d}");
    assert_eq!(d.also_sent.len(), 1, "the stranger is not used: {d:?}");
}

#[test]
fn class3_a_boundary_inside_the_interval_is_undetermined_on_either_side_of_the_midpoint() {
    let now = unix_now();
    let (root, inter, key, _) = everyday(now);
    for leaf_end in [now - 600, now + 600] {
        let b = Built {
            leaf: leaf_cert(NAME, &key, &inter, (now - 30 * DAY, leaf_end)),
            sent: vec![ca_cert(&inter, &root, (now - 300 * DAY, now + 900 * DAY))],
            roots: vec![ca_cert(&root, &root, (now - 400 * DAY, now + 3650 * DAY))],
        };
        let r = at(UnixTime::from_secs(now), SignedDuration::from_secs(45 * 60));
        let d = judge(&b, r, UndeterminedPolicy::Reject);
        assert_eq!(
            (d.verdict, &d.finding),
            (Verdict::Undetermined, &Finding::Straddles),
            "{d}"
        );
        assert!(!d.message.contains("the clock is right"), "{d}");
        // Accept does accept it (in the handshake verifier too: checked in `judge`).
        let d = judge(&b, r, UndeterminedPolicy::Accept);
        assert_eq!(d.finding, Finding::Straddles);
    }
}

#[test]
fn class4_precision_is_rfc5280_seconds_inclusive() {
    let now = unix_now();
    let (root, inter, key, _) = everyday(now);
    let na = now + 100;
    let b = Built {
        leaf: leaf_cert(NAME, &key, &inter, (now - 30 * DAY, na)),
        sent: vec![ca_cert(&inter, &root, (now - 300 * DAY, now + 900 * DAY))],
        roots: vec![ca_cert(&root, &root, (now - 400 * DAY, now + 3650 * DAY))],
    };
    let point = |nanos: i64| {
        let t = UnixTime::from_nanos(nanos);
        judge(&b, at(t, SignedDuration::ZERO), UndeterminedPolicy::Reject).verdict
    };
    let s = na * 1_000_000_000;
    assert_eq!(point(s), Verdict::Valid);
    assert_eq!(
        point(s + 999_999_999),
        Verdict::Valid,
        "valid through the last nanosecond of notAfter"
    );
    assert_eq!(point(s + 1_000_000_000), Verdict::Invalid);
    // An interval ending a few milliseconds after notAfter's second is still inside it.
    let iv = ClockReading {
        device: UnixTime::from_secs(na),
        trusted: TrustedTime {
            interval: TimeInterval {
                earliest: UnixTime::from_secs(na - 10),
                latest: UnixTime::from_nanos(s + 5_000_000),
            },
            provenance: Provenance::Ntp,
        },
    };
    assert_eq!(
        judge(&b, iv, UndeterminedPolicy::Reject).verdict,
        Verdict::Valid
    );
    // notBefore: valid from its first nanosecond, not one before.
    let nb = (now - 30 * DAY) * 1_000_000_000;
    assert_eq!(point(nb), Verdict::Valid);
    assert_eq!(point(nb - 1), Verdict::Invalid);
}

#[test]
fn class4_no_expiry_and_the_whole_x509_range() {
    let now = unix_now();
    let root = Identity::ecdsa("Device Root");
    let key = CertKey::generate().unwrap();
    let no_expiry = 253_402_300_799; // 99991231235959Z
    let b = Built {
        leaf: leaf_cert(NAME, &key, &root, (now - 30 * DAY, no_expiry)),
        sent: vec![],
        roots: vec![ca_cert(&root, &root, (-631_152_000, no_expiry))], // 1950 .. 9999
    };
    let d = judge(
        &b,
        at(UnixTime::from_secs(now), SignedDuration::from_millis(2)),
        UndeterminedPolicy::Reject,
    );
    assert_eq!(d.verdict, Verdict::Valid, "{d}");
    let leaf = &d.chain[0];
    assert!(leaf.not_after.is_no_expiry());
    assert_eq!(leaf.not_after.to_string(), "9999-12-31T23:59:59Z");
    assert_eq!(d.chain[1].not_before.to_string(), "1950-01-01T00:00:00Z");
    assert!(
        leaf.validity_words().contains("no expiry"),
        "{}",
        leaf.validity_words()
    );
    let json = serde_json::to_string(&d).unwrap();
    assert!(json.contains("9999-12-31T23:59:59Z"), "{json}");
    assert!(!json.contains("2262"), "{json}");
}

#[test]
fn class4_a_root_not_valid_yet_is_not_called_expired() {
    let now = unix_now();
    let root = Identity::ecdsa("Future Root");
    let key = CertKey::generate().unwrap();
    let b = Built {
        leaf: leaf_cert(NAME, &key, &root, (now - 30 * DAY, now + 300 * DAY)),
        sent: vec![],
        roots: vec![ca_cert(&root, &root, (now + 10 * DAY, now + 3650 * DAY))],
    };
    let d = judge(
        &b,
        at(UnixTime::from_secs(now), SignedDuration::from_millis(2)),
        UndeterminedPolicy::Reject,
    );
    assert_eq!(
        (d.verdict, &d.finding),
        (Verdict::Invalid, &Finding::NotYetValid),
        "{d}"
    );
    assert_eq!(d.certificate.as_ref().unwrap().role, CertRole::Root);
    assert_eq!(d.openssl_error, Some("X509_V_ERR_CERT_NOT_YET_VALID"));
}

#[test]
fn class4_time_independent_failures_are_named_whatever_the_clock() {
    let now = unix_now();
    let (root, inter, key, b) = everyday(now);
    let y2000 = untrusted(UnixTime::from_secs(946_684_800));
    // Wrong name.
    let v = TrustedTimeVerifier::new(
        vec![CertificateDer::from(b.roots[0].clone())],
        Arc::new(FixedClock(y2000)),
        Policy::for_purpose(Purpose::Tls),
    )
    .unwrap();
    let inter_der = [CertificateDer::from(b.sent[0].clone())];
    let d = v.diagnose(
        &CertificateDer::from(b.leaf.clone()),
        &inter_der,
        &ServerName::try_from("other.test").unwrap(),
    );
    assert_eq!(d.verdict, Verdict::Invalid, "{d}");
    assert_eq!(d.openssl_error, Some("X509_V_ERR_HOSTNAME_MISMATCH"), "{d}");
    // Missing intermediate.
    let missing = Built {
        sent: vec![],
        ..Built {
            leaf: b.leaf.clone(),
            sent: vec![],
            roots: b.roots.clone(),
        }
    };
    let d = judge(&missing, y2000, UndeterminedPolicy::Reject);
    assert_eq!(d.verdict, Verdict::Invalid, "{d}");
    assert_eq!(
        d.openssl_error,
        Some("X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY"),
        "{d}"
    );
    eprintln!("{d}");
    assert!(d.message.contains("missing intermediate"), "{d}");
    // Unknown issuer.
    let other = Identity::ecdsa("Class Root");
    let unknown = Built {
        leaf: b.leaf.clone(),
        sent: b.sent.clone(),
        roots: vec![ca_cert(&other, &other, (now - DAY, now + DAY))],
    };
    let d = judge(
        &unknown,
        at(UnixTime::from_secs(now), SignedDuration::from_millis(2)),
        UndeterminedPolicy::Reject,
    );
    assert_eq!(d.verdict, Verdict::Invalid, "{d}");
    assert!(
        d.message.contains("does not depend on the time")
            || d.message.contains("does not verify at any time"),
        "{d}"
    );
    // An expired leaf at a trusted time is "the certificate", not "not the certificate".
    let expired = Built {
        leaf: leaf_cert(NAME, &key, &inter, (now - 400 * DAY, now - 5 * DAY)),
        sent: b.sent.clone(),
        roots: b.roots.clone(),
    };
    let d = judge(
        &expired,
        at(UnixTime::from_secs(now), SignedDuration::from_millis(2)),
        UndeterminedPolicy::Reject,
    );
    assert_eq!(d.finding, Finding::Expired, "{d}");
    assert!(d.message.contains("really expired 5 days ago"), "{d}");
    let _ = root;
}

#[test]
fn expired_before_the_floor_is_invalid_even_on_an_untrusted_clock() {
    let (root, inter, key, _) = everyday(unix_now());
    let f = floor().as_secs();
    let b = Built {
        leaf: leaf_cert(NAME, &key, &inter, (f - 400 * DAY, f - 10 * DAY)),
        sent: vec![ca_cert(&inter, &root, (f - 900 * DAY, f + 900 * DAY))],
        roots: vec![ca_cert(&root, &root, (f - 4000 * DAY, f + 3650 * DAY))],
    };
    let d = judge(
        &b,
        untrusted(UnixTime::from_secs(f - 100 * DAY)),
        UndeterminedPolicy::Reject,
    );
    assert_eq!(
        (d.verdict, &d.finding),
        (Verdict::Invalid, &Finding::Expired),
        "{d}"
    );
    assert!(d.message.contains("whatever the clock says"), "{d}");
}

#[test]
fn bootstrap_uses_the_same_judgement_and_remembers_the_path_window() {
    use rustls::client::danger::ServerCertVerifier;
    let now = unix_now();
    let (root, inter, _, mut b) = everyday(now);
    // An old expired copy of the intermediate in the bundle: not on the path, so not in the
    // window that the time obtained must then fall in.
    b.sent
        .insert(0, ca_cert(&inter, &root, (now - 2000 * DAY, now - 3 * DAY)));
    let interval = TimeInterval {
        earliest: UnixTime::from_secs(now - DAY),
        latest: UnixTime::from_secs(now + 5 * 365 * DAY),
    };
    let v = trusttime_tls::BootstrapVerifier::new(
        b.roots
            .iter()
            .map(|d| CertificateDer::from(d.clone()))
            .collect(),
        interval,
    )
    .unwrap();
    let inter_der: Vec<CertificateDer<'_>> = b
        .sent
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    v.verify_server_cert(
        &CertificateDer::from(b.leaf.as_slice()),
        &inter_der,
        &ServerName::try_from(NAME).unwrap(),
        &[],
        rustls_pki_types::UnixTime::now(),
    )
    .unwrap();
    let w = v.window().unwrap();
    assert_eq!(w.earliest, UnixTime::from_secs(now - 30 * DAY));
    assert!(w.latest >= UnixTime::from_secs(now + 300 * DAY), "{w:?}");
    let t = TimeInterval::around(UnixTime::from_secs(now), SignedDuration::from_secs(1));
    assert!(trusttime_tls::confirm(w, &t).is_ok());
    // A time past the window is refused with both intervals, in words and as facts.
    let late = TimeInterval::around(
        UnixTime::from_secs(now + 4000 * DAY),
        SignedDuration::from_secs(1),
    );
    let e = trusttime_tls::confirm(w, &late).unwrap_err();
    assert_eq!(
        e,
        trusttime_tls::OutsideValidity {
            window: w,
            time: late
        }
    );
    let words = e.to_string();
    assert!(
        words.starts_with("the certificate used to obtain the time is valid from "),
        "{words}"
    );
    assert!(words.contains(&late.earliest.to_string()), "{words}");
    assert!(
        words.contains("a certificate cannot vouch for a time outside its own validity"),
        "{words}"
    );
    // An expired trust anchor is refused at bootstrap too.
    let expired = Built {
        leaf: b.leaf.clone(),
        sent: b.sent.clone(),
        roots: vec![ca_cert(&root, &root, (now - 4000 * DAY, now - 10 * DAY))],
    };
    let v = trusttime_tls::BootstrapVerifier::new(
        expired
            .roots
            .iter()
            .map(|d| CertificateDer::from(d.clone()))
            .collect(),
        interval,
    )
    .unwrap();
    let err = v
        .verify_server_cert(
            &CertificateDer::from(expired.leaf.as_slice()),
            &inter_der,
            &ServerName::try_from(NAME).unwrap(),
            &[],
            rustls_pki_types::UnixTime::now(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("root CA certificate"), "{err}");
}

/// A hostile server sending dozens of certificates (strangers, and copies of the intermediate
/// with every kind of date) still gets the verdict of its one good path, and a clear "invalid"
/// when that path is missing.
#[test]
fn many_extra_certificates_do_not_confuse_the_verdict() {
    let now = unix_now();
    let (root, inter, _, b) = everyday(now);
    let mut noisy = Built {
        leaf: b.leaf.clone(),
        sent: Vec::new(),
        roots: b.roots.clone(),
    };
    for k in 0..40 {
        let stranger = Identity::ecdsa(&format!("Stranger {k}"));
        noisy.sent.push(ca_cert(
            &stranger,
            &stranger,
            (now - k * DAY, now + k * DAY),
        ));
        noisy.sent.push(ca_cert(
            &inter,
            &root,
            (now - 1000 * DAY + k * DAY, now - 900 * DAY + k * DAY),
        ));
    }
    let r = at(UnixTime::from_secs(now), SignedDuration::from_millis(2));
    let d = judge(&noisy, r, UndeterminedPolicy::Reject);
    assert_eq!(
        d.verdict,
        Verdict::Invalid,
        "only expired copies of the intermediate: {d}"
    );
    noisy.sent.push(b.sent[0].clone());
    let d = judge(&noisy, r, UndeterminedPolicy::Reject);
    assert_eq!(d.verdict, Verdict::Valid, "{d}");
    assert_eq!(d.chain.len(), 3);
    assert_eq!(d.also_sent.len(), 80);
}

/// Valid means one path over the whole interval: when the trusted root expires inside the
/// interval and a cross-signed path takes over at that very moment, every instant has a
/// valid path but no single path covers the interval, so the verdict is undetermined (the
/// definition; `UndeterminedPolicy::Accept` accepts it). Each half alone is valid, on the path
/// valid there.
#[test]
fn two_paths_each_valid_for_half_the_interval_are_undetermined() {
    let now = unix_now();
    let root = Identity::ecdsa("Handover Root");
    let other = Identity::ecdsa("Handover Other Root");
    let inter = Identity::ecdsa("Handover CA");
    let key = CertKey::generate().unwrap();
    let b = Built {
        leaf: leaf_cert(NAME, &key, &inter, (now - 30 * DAY, now + 300 * DAY)),
        sent: vec![
            ca_cert(&inter, &root, (now - 300 * DAY, now + 900 * DAY)),
            // The cross-sign takes over when the root expires.
            ca_cert(&root, &other, (now + 1, now + 900 * DAY)),
        ],
        roots: vec![
            ca_cert(&root, &root, (now - 4000 * DAY, now)),
            ca_cert(&other, &other, (now - 4000 * DAY, now + 3650 * DAY)),
        ],
    };
    let reading = |e: i64, l: i64| ClockReading {
        device: UnixTime::from_secs(e),
        trusted: TrustedTime {
            interval: TimeInterval {
                earliest: UnixTime::from_secs(e),
                latest: UnixTime::from_secs(l),
            },
            provenance: Provenance::Ntp,
        },
    };
    let d = judge(
        &b,
        reading(now - 600, now + 600),
        UndeterminedPolicy::Reject,
    );
    assert_eq!(
        (d.verdict, &d.finding),
        (Verdict::Undetermined, &Finding::Straddles),
        "{d}"
    );
    let d = judge(&b, reading(now - 600, now), UndeterminedPolicy::Reject);
    assert_eq!(d.verdict, Verdict::Valid, "{d}");
    assert_eq!(d.chain.len(), 3, "through the root: {d:?}");
    let d = judge(&b, reading(now + 1, now + 600), UndeterminedPolicy::Reject);
    assert_eq!(d.verdict, Verdict::Valid, "{d}");
    assert_eq!(d.chain.len(), 4, "through the cross-sign: {d:?}");
    assert_eq!(d.chain[3].subject, "CN=Handover Other Root");
}
