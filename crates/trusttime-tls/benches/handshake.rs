//! Full TLS 1.3 handshakes over in-memory buffers: the plain webpki verifier against
//! `TrustedTimeVerifier` (plus `TrustedTimeProvider`), same chain, same provider.
//! Run: `cargo bench -p trusttime-tls --bench handshake`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use rustls::client::danger::ServerCertVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use trusttime_core::{Provenance, SignedDuration, TimeInterval, TrustedTime, UnixTime};
use trusttime_test_support::certs::{make_chain, unix_now};
use trusttime_tls::{
    ClockReading, FixedClock, Policy, Purpose, TrustedTimeProvider, TrustedTimeVerifier,
};

fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) {
    let mut c =
        ClientConnection::new(client.clone(), "bench.example.test".try_into().unwrap()).unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    let mut buf = Vec::with_capacity(16 * 1024);
    while c.is_handshaking() || s.is_handshaking() {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
        }
        s.process_new_packets().unwrap();
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        c.process_new_packets().unwrap();
    }
}

fn bench(cr: &mut Criterion) {
    let now = unix_now();
    let day = 86_400;
    let chain = make_chain(
        "bench.example.test",
        (now - 400 * day, now + 3650 * day),
        Some((now - 300 * day, now + 900 * day)),
        (now - 30 * day, now + 300 * day),
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = vec![
        CertificateDer::from(chain.leaf_der.clone()),
        CertificateDer::from(chain.intermediates_der[0].clone()),
    ];
    let key = PrivateKeyDer::from_pem_slice(chain.key_pem.as_bytes()).unwrap();
    let server = Arc::new(
        ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let root = CertificateDer::from(chain.root_der.clone());
    let mut store = RootCertStore::empty();
    store.add(root.clone()).unwrap();
    let plain = Arc::new(
        ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth(),
    );
    let t = UnixTime::from_secs(now);
    let clock = Arc::new(FixedClock(ClockReading {
        device: t,
        trusted: TrustedTime {
            interval: TimeInterval::around(t, SignedDuration::from_millis(5)),
            provenance: Provenance::Ntp,
        },
    }));
    let root_der = root.clone();
    let verifier =
        TrustedTimeVerifier::new(vec![root], clock.clone(), Policy::for_purpose(Purpose::Tls))
            .unwrap();
    let verifier_only = TrustedTimeVerifier::new(
        vec![root_der.clone()],
        clock.clone(),
        Policy::for_purpose(Purpose::Tls),
    )
    .unwrap();
    let ours = Arc::new(
        ClientConfig::builder_with_details(
            provider,
            Arc::new(TrustedTimeProvider::new(
                clock,
                Purpose::Tls.default_max_error(),
            )),
        )
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth(),
    );
    handshake(&plain, &server);
    handshake(&ours, &server);
    let mut g = cr.benchmark_group("tls13_handshake");
    g.bench_function("webpki", |b| b.iter(|| handshake(&plain, &server)));
    g.bench_function("trusttime", |b| b.iter(|| handshake(&ours, &server)));
    g.finish();

    // The certificate check alone: rustls' webpki verifier against ours (valid over the
    // interval: one path building), and ours on an interval straddling the leaf's notAfter
    // (the diagnosis path: probes at the interval's start and the notBefores inside it).
    let mut store = RootCertStore::empty();
    store.add(root_der.clone()).unwrap();
    let webpki_verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(store),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let leaf = CertificateDer::from(chain.leaf_der.clone());
    let inter = [CertificateDer::from(chain.intermediates_der[0].clone())];
    let name = rustls_pki_types::ServerName::try_from("bench.example.test").unwrap();
    let pki_now = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(now).unwrap(),
    ));
    let straddling = {
        let t = UnixTime::from_secs(now + 300 * day);
        TrustedTimeVerifier::new(
            vec![root_der.clone()],
            Arc::new(FixedClock(ClockReading {
                device: t,
                trusted: TrustedTime {
                    interval: TimeInterval::around(t, SignedDuration::from_secs(600)),
                    provenance: Provenance::Ntp,
                },
            })),
            Policy::for_purpose(Purpose::Tls),
        )
        .unwrap()
    };
    assert!(webpki_verifier
        .verify_server_cert(&leaf, &inter, &name, &[], pki_now)
        .is_ok());
    assert!(verifier_only
        .verify_server_cert(&leaf, &inter, &name, &[], pki_now)
        .is_ok());
    assert!(straddling
        .verify_server_cert(&leaf, &inter, &name, &[], pki_now)
        .is_err());
    let mut g = cr.benchmark_group("verify_server_cert");
    g.bench_function("webpki", |b| {
        b.iter(|| webpki_verifier.verify_server_cert(&leaf, &inter, &name, &[], pki_now))
    });
    g.bench_function("trusttime", |b| {
        b.iter(|| verifier_only.verify_server_cert(&leaf, &inter, &name, &[], pki_now))
    });
    g.bench_function("trusttime_straddling", |b| {
        b.iter(|| straddling.verify_server_cert(&leaf, &inter, &name, &[], pki_now))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
