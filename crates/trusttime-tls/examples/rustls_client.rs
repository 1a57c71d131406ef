//! A rustls client whose certificate checks use trusted time. Run: `cargo run -p trusttime-tls
//! --example rustls_client -- example.com` (fails closed: nothing has synced this clock).
use std::io::{Read, Write};
use std::sync::Arc;
use trusttime_core::{floor, Purpose};
use trusttime_tls::{Policy, SharedClock, TrustedTimeProvider, TrustedTimeVerifier};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let host = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "example.com".into());
    // Update `clock` from `trusttime::sync::sync` or the daemon; until then handshakes fail.
    let clock = Arc::new(SharedClock::new(floor::build_time()));
    let verifier =
        TrustedTimeVerifier::with_webpki_roots(clock.clone(), Policy::for_purpose(Purpose::Tls))?;
    let time = TrustedTimeProvider::new(clock, Purpose::Tls.default_max_error());
    let config = rustls::ClientConfig::builder_with_details(
        Arc::new(rustls::crypto::ring::default_provider()),
        Arc::new(time),
    )
    .with_safe_default_protocol_versions()?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(verifier))
    .with_no_client_auth();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), host.clone().try_into()?)?;
    let mut sock = std::net::TcpStream::connect((host.as_str(), 443))?;
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(format!("HEAD / HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())?;
    let mut reply = String::new();
    tls.read_to_string(&mut reply)?;
    println!("{}", reply.lines().next().unwrap_or_default());
    Ok(())
}
