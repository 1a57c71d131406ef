//! Full TLS 1.3 handshakes over in-memory buffers: the plain webpki verifier against
//! `TrustedTimeVerifier` (plus `TrustedTimeProvider`), same chain, same provider.
//! Run: `cargo bench -p trusttime-tls --bench handshake`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
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
    let verifier =
        TrustedTimeVerifier::new(vec![root], clock.clone(), Policy::for_purpose(Purpose::Tls))
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
