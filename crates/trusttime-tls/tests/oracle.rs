//! The differential oracle: a seeded corpus of generated chains (RSA and ECDSA, 1-3
//! intermediates, extra and unused certificates, cross-signed and duplicate-subject roots,
//! expired or not, windows that do not nest, UTCTime and GeneralizedTime from 1950 to 9999,
//! wrong names, missing intermediates), judged at many instants (sub-second ones included) and
//! over many intervals.
//!
//! - Each point verdict is compared with `openssl verify -attime` over the same inputs, and
//!   with a model: every simple path from the server certificate through the sent
//!   certificates to a trusted root, each valid over the intersection of its certificates'
//!   periods (RFC 5280: whole seconds, inclusive).
//! - Each interval verdict is compared with the definition (valid: one path valid over the
//!   whole interval; invalid: no path valid at the interval's start or at any validity
//!   boundary inside it; undetermined otherwise).
//!
//! Documented exceptions, each checked to be the only reason for a disagreement:
//! - OpenSSL does not backtrack out of a trusted issuer: with `X509_V_FLAG_TRUSTED_FIRST` it
//!   commits to a trusted root certificate with the right name even when that certificate is
//!   outside its validity (the pattern of the 2021 "DST Root CA X3" expiry), so where the model
//!   has a valid path through a cross-sign and an alternative through that root, OpenSSL
//!   answers "invalid". Allowed only in that direction, only where an alternative path exists
//!   and a trusted root certificate is outside its validity at that instant (or a same-named
//!   decoy root is trusted).
//! - OpenSSL treats the second of `notAfter` itself as expired: `X509_cmp_time` returns -1
//!   for "earlier than, or equal to" (documented in its manual), and `x509_check_cert_time`
//!   reads -1 as expired, against RFC 5280's "notBefore through notAfter, inclusive". Allowed
//!   only at an instant that is some certificate's `notAfter` second, OpenSSL saying invalid.
//! - webpki reads no date before 1970 (`BadDerTime`): a sent certificate dated 1950 is never
//!   used by trusttime, while OpenSSL uses it. trusttime fails closed there; the model says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, ServerName};
use trusttime_core::{Provenance, SignedDuration, TimeInterval, TrustedTime, UnixTime};
use trusttime_test_support::certs::{
    ca_cert, leaf_cert, pem_of, rsa_key, same_key, CertKey, Identity, Window,
};
use trusttime_test_support::TempDir;
use trusttime_tls::{
    ClockReading, FixedClock, Policy, TrustedTimeVerifier, UndeterminedPolicy, Verdict,
};

const DAY: i64 = 86_400;
const T0: i64 = 1_800_000_000; // 2027-01-15
const CASES: u64 = 220;
const NO_EXPIRY: i64 = 253_402_300_799; // 99991231235959Z
const Y1950: i64 = -631_152_000; // 1950-01-01T00:00:00Z (UTCTime)
const Y2052: i64 = 2_600_000_000; // GeneralizedTime

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + i64::try_from(self.below(u64::try_from(hi - lo + 1).unwrap())).unwrap()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Leaf,
    Sent,
    Trusted,
}

/// One certificate as the model sees it.
#[derive(Clone, Debug)]
struct MCert {
    kind: Kind,
    /// Identity index of the subject (`usize::MAX` for the leaf).
    subject: usize,
    /// Identity index of the signer.
    issuer: usize,
    w: Window,
}

struct Case {
    id: u64,
    leaf: Vec<u8>,
    sent: Vec<Vec<u8>>,
    trusted: Vec<Vec<u8>>,
    name: String,
    name_ok: bool,
    model: Vec<MCert>,
    boundaries: Vec<i64>,
    /// A trusted root with the root's name and another key.
    decoy: bool,
}

/// The model: the windows `[lo, hi]` of every simple path, as webpki searches them.
fn model_paths(m: &[MCert]) -> Vec<(i64, i64)> {
    model_paths_with(m, false)
}

/// `pre1970`: also use sent certificates dated before 1970 (as OpenSSL does).
fn model_paths_with(m: &[MCert], pre1970: bool) -> Vec<(i64, i64)> {
    fn usable(c: &MCert, pre1970: bool) -> bool {
        // webpki reads no date before 1970 on the certificates it parses (not the anchors').
        pre1970 || c.kind == Kind::Trusted || (c.w.0 >= 0 && c.w.1 >= 0)
    }
    fn walk(
        m: &[MCert],
        at: usize,
        used: &mut Vec<usize>,
        win: (i64, i64),
        out: &mut Vec<(i64, i64)>,
        pre1970: bool,
    ) {
        let issuer = m[at].issuer;
        for c in m {
            if c.kind == Kind::Trusted && c.subject == issuer {
                out.push((win.0.max(c.w.0), win.1.min(c.w.1)));
            }
        }
        if used.len() >= 6 {
            return;
        }
        for (k, c) in m.iter().enumerate() {
            if c.kind == Kind::Sent
                && c.subject == issuer
                && !used.contains(&c.subject)
                && usable(c, pre1970)
            {
                used.push(c.subject);
                walk(
                    m,
                    k,
                    used,
                    (win.0.max(c.w.0), win.1.min(c.w.1)),
                    out,
                    pre1970,
                );
                used.pop();
            }
        }
    }
    let leaf = m.iter().position(|c| c.kind == Kind::Leaf).unwrap();
    if !usable(&m[leaf], pre1970) {
        return Vec::new();
    }
    let mut out = Vec::new();
    walk(m, leaf, &mut Vec::new(), m[leaf].w, &mut out, pre1970);
    // Empty windows stay: they are alternatives that are never valid.
    out
}

fn model_point(c: &Case, paths: &[(i64, i64)], s: i64) -> bool {
    c.name_ok && paths.iter().any(|w| w.0 <= s && s <= w.1)
}

fn model_interval(c: &Case, paths: &[(i64, i64)], e: i64, l: i64) -> Verdict {
    if c.name_ok && paths.iter().any(|w| w.0 <= e && l <= w.1) {
        return Verdict::Valid;
    }
    // The definition: some instant valid? Try the start and every boundary inside.
    let inside =
        std::iter::once(e).chain(c.boundaries.iter().copied().filter(|&b| e < b && b <= l));
    for s in inside {
        if model_point(c, paths, s) {
            return Verdict::Undetermined;
        }
    }
    Verdict::Invalid
}

struct Keys {
    rsa: Vec<CertKey>,
}

impl Keys {
    fn key(&self, r: &mut Rng) -> CertKey {
        if !self.rsa.is_empty() && r.chance(4) {
            let k = &self.rsa[usize::try_from(r.below(self.rsa.len() as u64)).unwrap()];
            same_key(k)
        } else {
            CertKey::generate().unwrap()
        }
    }
}

fn window(r: &mut Rng) -> Window {
    if r.chance(2) {
        // Mostly overlapping everyday windows: a few years around T0.
        let nb = T0 - r.range(30, 1500) * DAY + r.range(0, DAY - 1);
        let na = T0 + r.range(-200, 1500) * DAY + r.range(0, DAY - 1);
        return (nb, na.max(nb));
    }
    let nb = T0 + r.range(-900, 300) * DAY + r.range(0, DAY - 1);
    let mut na = nb + r.range(1, 1500) * DAY + r.range(-3600, 3600);
    if r.chance(12) {
        na = NO_EXPIRY;
    } else if r.chance(12) {
        na = Y2052 + r.range(0, 1000) * DAY;
    }
    let nb = if r.chance(15) {
        Y1950 + r.range(0, 3000) * DAY
    } else {
        nb
    };
    (nb, na.max(nb))
}

#[allow(clippy::too_many_lines)]
fn generate(id: u64, keys: &Keys) -> Case {
    let mut r = Rng(0x7275_7374_7469_6d65 ^ id.wrapping_mul(0x1000_0000_01b3));
    let mut ids: Vec<Identity> = Vec::new();
    let mut model: Vec<MCert> = Vec::new();
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let mut trusted: Vec<Vec<u8>> = Vec::new();
    let new_id = |ids: &mut Vec<Identity>, name: String, r: &mut Rng| {
        ids.push(Identity::with_key(&name, keys.key(r)));
        ids.len() - 1
    };
    let root = new_id(&mut ids, format!("Oracle {id} Root"), &mut r);
    let n = 1 + usize::try_from(r.below(3)).unwrap();
    let inters: Vec<usize> = (0..n)
        .map(|k| new_id(&mut ids, format!("Oracle {id} CA {k}"), &mut r))
        .collect();
    let cert =
        |ids: &Vec<Identity>, model: &mut Vec<MCert>, s: usize, i: usize, w: Window, kind: Kind| {
            let der = ca_cert(&ids[s], &ids[i], w);
            model.push(MCert {
                kind,
                subject: s,
                issuer: i,
                w,
            });
            der
        };

    // Trust anchors: the root, maybe a second certificate of it (same name and key, other
    // dates), maybe a decoy with the same name and another key, maybe a cross-signing root.
    let root_trusted = !r.chance(5);
    let cross = !root_trusted || r.chance(4);
    if root_trusted {
        let w = window(&mut r);
        trusted.push(cert(&ids, &mut model, root, root, w, Kind::Trusted));
        if r.chance(3) {
            let w2 = if r.chance(2) {
                (w.0 - 3000 * DAY, w.0 - r.range(1, 400) * DAY)
            } else {
                window(&mut r)
            };
            trusted.push(cert(&ids, &mut model, root, root, w2, Kind::Trusted));
        }
    }
    let has_decoy = r.chance(5);
    if has_decoy {
        let decoy = new_id(&mut ids, format!("Oracle {id} Root"), &mut r);
        let w = window(&mut r);
        trusted.push(cert(&ids, &mut model, decoy, decoy, w, Kind::Trusted));
    }
    if cross {
        let other = new_id(&mut ids, format!("Oracle {id} Other Root"), &mut r);
        let w = window(&mut r);
        trusted.push(cert(&ids, &mut model, other, other, w, Kind::Trusted));
        let wc = window(&mut r);
        sent.push(cert(&ids, &mut model, root, other, wc, Kind::Sent));
    }
    // The intermediates, root-side last: inters[n-1] is issued by the root.
    let missing = if r.chance(8) {
        Some(r.below(n as u64))
    } else {
        None
    };
    for k in (0..n).rev() {
        let issuer = if k + 1 == n { root } else { inters[k + 1] };
        let w = window(&mut r);
        if missing != Some(k as u64) {
            sent.push(cert(&ids, &mut model, inters[k], issuer, w, Kind::Sent));
        }
        if r.chance(5) {
            // An old, expired copy still in the server's bundle.
            let old = (w.0 - 2000 * DAY, w.0 - r.range(1, 300) * DAY);
            sent.push(cert(&ids, &mut model, inters[k], issuer, old, Kind::Sent));
        }
    }
    if root_trusted && r.chance(5) {
        // The server sends a copy of the root with other dates.
        let w = window(&mut r);
        sent.push(cert(&ids, &mut model, root, root, w, Kind::Sent));
    }
    if r.chance(6) {
        let stranger = new_id(&mut ids, format!("Oracle {id} Stranger"), &mut r);
        let w = window(&mut r);
        sent.push(cert(&ids, &mut model, stranger, stranger, w, Kind::Sent));
    }
    // The server certificate.
    let host = format!("host{id}.example.test");
    let lw = window(&mut r);
    let lw = if lw.1 == NO_EXPIRY && r.chance(2) {
        lw
    } else {
        (lw.0, lw.1.min(lw.0 + 800 * DAY))
    };
    let leaf_key = keys.key(&mut r);
    let leaf = leaf_cert(&host, &leaf_key, &ids[inters[0]], lw);
    model.push(MCert {
        kind: Kind::Leaf,
        subject: usize::MAX,
        issuer: inters[0],
        w: lw,
    });
    if r.chance(3) {
        // Shuffle the order the server sends them in.
        let mut order: Vec<(u64, Vec<u8>)> = sent.drain(..).map(|d| (r.next(), d)).collect();
        order.sort_by_key(|(k, _)| *k);
        sent = order.into_iter().map(|(_, d)| d).collect();
    }
    let name_ok = !r.chance(10);
    let name = if name_ok {
        host
    } else {
        "wrong.example.test".to_owned()
    };
    let mut boundaries: Vec<i64> = model
        .iter()
        .flat_map(|c| [c.w.0, c.w.1.saturating_add(1)])
        .collect();
    boundaries.sort_unstable();
    boundaries.dedup();
    Case {
        id,
        leaf,
        sent,
        trusted,
        name,
        name_ok,
        model,
        boundaries,
        decoy: has_decoy,
    }
}

fn verdict(c: &Case, e: UnixTime, l: UnixTime) -> Verdict {
    let reading = ClockReading {
        device: e,
        trusted: TrustedTime {
            interval: TimeInterval {
                earliest: e,
                latest: l,
            },
            provenance: Provenance::Ntp,
        },
    };
    let policy = Policy {
        max_error: SignedDuration::MAX,
        undetermined: UndeterminedPolicy::Reject,
    };
    let v = TrustedTimeVerifier::new(
        c.trusted
            .iter()
            .map(|d| CertificateDer::from(d.clone()))
            .collect(),
        Arc::new(FixedClock(reading)),
        policy,
    )
    .unwrap();
    let inter: Vec<CertificateDer<'_>> = c
        .sent
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let d = v.diagnose_at(
        &CertificateDer::from(c.leaf.as_slice()),
        &inter,
        &ServerName::try_from(c.name.clone()).unwrap(),
        reading,
    );
    assert!(!d.message.is_empty());
    d.verdict
}

fn openssl_ok(dir: &Path, c: &Case, at: i64) -> bool {
    let mut cmd = Command::new("openssl");
    cmd.arg("verify")
        .args([
            "-attime",
            &at.to_string(),
            "-purpose",
            "sslserver",
            "-verify_hostname",
            &c.name,
        ])
        .arg("-CAfile")
        .arg(dir.join("roots.pem"));
    if !c.sent.is_empty() {
        cmd.arg("-untrusted").arg(dir.join("sent.pem"));
    }
    let out = cmd.arg(dir.join("leaf.pem")).output().unwrap();
    out.status.success()
}

fn at_secs(s: i64, nanos: i64) -> UnixTime {
    UnixTime::from_nanos(s * 1_000_000_000 + nanos)
}

/// Instants to judge: around the boundaries, to the nanosecond.
fn instants(c: &Case, r: &mut Rng) -> Vec<(i64, i64)> {
    let b: Vec<i64> = c
        .boundaries
        .iter()
        .copied()
        .filter(|&s| (1..9_000_000_000).contains(&s))
        .collect();
    let mut out = vec![(T0, 0)];
    // Inside the windows of the model's paths, so that valid instants are common too.
    let paths = model_paths(&c.model);
    let mut inside: Vec<i64> = paths
        .iter()
        .filter(|w| w.0 <= w.1 && w.0 > 0 && w.1 < 9_000_000_000)
        .flat_map(|w| [w.0 + (w.1 - w.0) / 3, w.0 + 2 * (w.1 - w.0) / 3])
        .collect();
    inside.dedup();
    for _ in 0..2 {
        if !inside.is_empty() {
            out.push((
                inside[usize::try_from(r.below(inside.len() as u64)).unwrap()],
                0,
            ));
        }
    }
    for _ in 0..5 {
        let s = b[usize::try_from(r.below(b.len() as u64)).unwrap()];
        let (s, ns) = match r.below(4) {
            0 => (s, 0),
            1 => (s - 1, 999_999_999), // the last nanosecond before the boundary
            2 => (s, 500_000_000),
            _ => (s - 1, 0),
        };
        out.push((s, ns));
    }
    out
}

#[test]
fn verdicts_agree_with_openssl_and_the_definition() {
    if trusttime_test_support::peer_or_skip(
        "openssl",
        &["/usr/bin/openssl"],
        "apt-get install openssl",
    )
    .is_none()
    {
        return;
    }
    let keys = Keys {
        rsa: (0..3).filter_map(|_| rsa_key()).collect(),
    };
    assert!(!keys.rsa.is_empty(), "RSA keys from openssl genpkey");
    let mut stats: HashMap<&'static str, usize> = HashMap::new();
    let mut failures: Vec<String> = Vec::new();
    let results: Vec<(HashMap<&'static str, usize>, Vec<String>)> = std::thread::scope(|sc| {
        let workers: Vec<_> = (0..2u64)
            .map(|w| {
                let keys = &keys;
                sc.spawn(move || {
                    let mut stats: HashMap<&'static str, usize> = HashMap::new();
                    let mut failures = Vec::new();
                    for id in (0..CASES).filter(|i| i % 2 == w) {
                        run_case(id, keys, &mut stats, &mut failures);
                    }
                    (stats, failures)
                })
            })
            .collect();
        workers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (s, f) in results {
        for (k, v) in s {
            *stats.entry(k).or_default() += v;
        }
        failures.extend(f);
    }
    eprintln!("oracle: {stats:?}");
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(stats["cases"] >= 200);
    // The exceptions stay exceptions.
    let points = stats["point valid"] + stats["point invalid"];
    let excused: usize = stats
        .iter()
        .filter(|(k, _)| k.starts_with("exception"))
        .map(|(_, v)| v)
        .sum();
    assert!(
        excused * 20 < points,
        "{excused} of {points} points excused: {stats:?}"
    );
    for k in [
        "point valid",
        "point invalid",
        "interval valid",
        "interval invalid",
        "interval undetermined",
    ] {
        assert!(
            stats.get(k).copied().unwrap_or(0) > 20,
            "too few {k}: {stats:?}"
        );
    }
}

fn run_case(
    id: u64,
    keys: &Keys,
    stats: &mut HashMap<&'static str, usize>,
    failures: &mut Vec<String>,
) {
    let c = generate(id, keys);
    let dir = TempDir::new().unwrap();
    std::fs::write(
        dir.path().join("leaf.pem"),
        pem_of(std::slice::from_ref(&c.leaf)),
    )
    .unwrap();
    std::fs::write(dir.path().join("sent.pem"), pem_of(&c.sent)).unwrap();
    std::fs::write(dir.path().join("roots.pem"), pem_of(&c.trusted)).unwrap();
    let paths = model_paths(&c.model);
    let with_pre1970 = model_paths_with(&c.model, true);
    *stats.entry("cases").or_default() += 1;
    let mut r = Rng(id ^ 0xdead_beef);
    let mut openssl_cache: HashMap<i64, bool> = HashMap::new();
    let what = |c: &Case| format!("case {} (name ok {}, model {:?})", c.id, c.name_ok, c.model);
    // Points: ours, the model, OpenSSL.
    for (s, ns) in instants(&c, &mut r) {
        let t = at_secs(s, ns);
        let ours = verdict(&c, t, t) == Verdict::Valid;
        let model = model_point(&c, &paths, s);
        *stats
            .entry(if ours { "point valid" } else { "point invalid" })
            .or_default() += 1;
        if ours != model {
            failures.push(format!("{}: at {t} ours {ours}, model {model}", what(&c)));
        }
        let ossl = *openssl_cache
            .entry(s)
            .or_insert_with(|| openssl_ok(dir.path(), &c, s));
        if ossl != model {
            // OpenSSL commits to a trusted root certificate with the right name even when it is
            // outside its validity (or a decoy with the right name and another key).
            let greedy_trap = c.decoy
                || c.model
                    .iter()
                    .any(|m| m.kind == Kind::Trusted && !(m.w.0 <= s && s <= m.w.1));
            let alternatives = paths.len() > 1 && greedy_trap;
            let at_not_after = c.model.iter().any(|m| m.w.1 == s);
            if model && !ossl && at_not_after {
                *stats
                    .entry("exception: openssl notAfter exclusive")
                    .or_default() += 1;
            } else if model && !ossl && alternatives {
                // OpenSSL does not backtrack (see the module documentation).
                *stats.entry("exception: openssl greedy").or_default() += 1;
            } else if !model && ossl && model_point(&c, &with_pre1970, s) {
                // webpki reads no date before 1970; trusttime fails closed.
                *stats.entry("exception: webpki pre-1970").or_default() += 1;
            } else {
                failures.push(format!(
                    "{}: at {s} openssl {ossl}, model {model}",
                    what(&c)
                ));
            }
        }
    }
    // Intervals: ours against the definition.
    let pts = instants(&c, &mut r);
    for _ in 0..8 {
        let a = pts[usize::try_from(r.below(pts.len() as u64)).unwrap()];
        let b = pts[usize::try_from(r.below(pts.len() as u64)).unwrap()];
        let (a, b) = if a <= b { (a, b) } else { (b, a) };
        let (e, l) = (at_secs(a.0, a.1), at_secs(b.0, b.1));
        let ours = verdict(&c, e, l);
        let def = model_interval(&c, &paths, e.as_secs(), l.as_secs());
        *stats
            .entry(match ours {
                Verdict::Valid => "interval valid",
                Verdict::Invalid => "interval invalid",
                Verdict::Undetermined => "interval undetermined",
            })
            .or_default() += 1;
        if ours != def {
            failures.push(format!(
                "{}: over [{e}, {l}] ours {ours:?}, definition {def:?}",
                what(&c)
            ));
        }
    }
}

/// Cases for the property tests (ECDSA only: no openssl needed).
fn prop_cases() -> &'static [Case] {
    static CASES: std::sync::OnceLock<Vec<Case>> = std::sync::OnceLock::new();
    CASES.get_or_init(|| {
        let keys = Keys { rsa: Vec::new() };
        (1000..1030).map(|id| generate(id, &keys)).collect()
    })
}

/// An instant near one of a case's boundaries (to the nanosecond), or inside its span.
fn pick(c: &Case, k: usize, off: i64) -> UnixTime {
    let b: Vec<i64> = c
        .boundaries
        .iter()
        .copied()
        .filter(|&s| (1..9_000_000_000).contains(&s))
        .collect();
    let s = b[k % b.len()];
    at_secs(s, 0) + SignedDuration::from_nanos(off)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 200, ..Default::default() })]

    /// Shrinking the interval never turns VALID into anything else; widening never turns
    /// INVALID into VALID (nor shrinking INVALID into anything else).
    #[test]
    fn interval_verdicts_are_monotone(
        case in 0usize..30,
        ks in proptest::array::uniform4(0usize..64),
        offs in proptest::array::uniform4(-2_000_000_000i64..2_000_000_000),
    ) {
        let c = &prop_cases()[case];
        let mut t: Vec<UnixTime> = ks.iter().zip(offs).map(|(&k, o)| pick(c, k, o)).collect();
        t.sort();
        let outer = verdict(c, t[0], t[3]);
        let inner = verdict(c, t[1], t[2]);
        if outer == Verdict::Valid {
            proptest::prop_assert_eq!(inner, Verdict::Valid, "case {} shrunk [{}, {}] -> [{}, {}]", c.id, t[0], t[3], t[1], t[2]);
        }
        if inner == Verdict::Invalid {
            proptest::prop_assert_ne!(outer, Verdict::Valid, "case {} widened", c.id);
        }
        if outer == Verdict::Invalid {
            proptest::prop_assert_eq!(inner, Verdict::Invalid, "case {} shrunk an invalid interval", c.id);
        }
    }
}
