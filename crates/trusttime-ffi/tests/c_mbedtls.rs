//! The mbedTLS client example (`examples/c/tls_client.c` with `glue/trusttime_mbedtls.c`,
//! Debian's libmbedtls) on a device whose clock reads 2000-01-01 (libfaketime), against
//! `openssl s_server`: refused with "clock not trusted" before a sync; connected after a sync
//! from chronyd although mbedTLS's own clock would call the certificate not yet valid; and a
//! certificate that expired ten days ago refused as expired. Also built with ASan and UBSan.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;

use trusttime_test_support::{self as ts, certs};

mod common;

const DAY: i64 = 86_400;

fn client(bin: &Path, ca: &Path, server: u16, ntp: Option<SocketAddr>) -> Output {
    let mut cmd = ts::no_clock_command(bin, Some("@2000-01-01 00:00:00"));
    cmd.arg(ca).arg(format!("127.0.0.1:{server}"));
    if let Some(n) = ntp {
        cmd.arg(n.to_string());
    }
    // libfaketime is preloaded ahead of the ASan runtime: tell ASan that is fine.
    cmd.env("ASAN_OPTIONS", "detect_leaks=0:verify_asan_link_order=0")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n{}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn mbedtls_client_connects_only_on_trusted_time() {
    if !Path::new("/usr/include/mbedtls/ssl.h").is_file() {
        assert!(
            std::env::var("TRUSTTIME_SKIP_PEERS").as_deref() == Ok("1"),
            "mbedTLS headers not found: apt-get install libmbedtls-dev (or ./scripts/install-peers)"
        );
        return;
    }
    let ntp: SocketAddr = format!("127.0.0.1:{}", ts::free_port()).parse().unwrap();
    let Some(_chronyd) = ts::chronyd_server(ntp, None, &[]) else {
        return;
    };
    let now = certs::unix_now();
    let good_dir = ts::TempDir::new().unwrap();
    certs::write_pem(&certs::valid_chain("localhost"), good_dir.path()).unwrap();
    let expired_dir = ts::TempDir::new().unwrap();
    let expired = certs::make_chain(
        "localhost",
        (now - 400 * DAY, now + 3650 * DAY),
        None,
        (now - 100 * DAY, now - 10 * DAY),
    );
    certs::write_pem(&expired, expired_dir.path()).unwrap();
    let good_port = ts::free_port();
    let expired_port = ts::free_port();
    let Some(_good) = ts::openssl_s_server(good_dir.path(), good_port) else {
        return;
    };
    let _expired = ts::openssl_s_server(expired_dir.path(), expired_port).unwrap();

    let dir = ts::TempDir::new().unwrap();
    let sources = ["examples/c/tls_client.c", "glue/trusttime_mbedtls.c"];
    let libs = ["-lmbedtls", "-lmbedx509", "-lmbedcrypto"];
    let plain = dir.path().join("tls_client");
    let sanitized = dir.path().join("tls_client-asan");
    common::compile(&plain, &sources, &[], &libs);
    common::compile(&sanitized, &sources, common::SANITIZE, &libs);

    for bin in [&plain, &sanitized] {
        // Before any sync: only the floor is known. Refused, and the reason is the clock.
        let o = client(bin, &good_dir.path().join("root.pem"), good_port, None);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        assert!(
            text(&o).contains("refused: clock not trusted"),
            "{}",
            text(&o)
        );

        // After a sync: the certificate is judged over the trusted interval and accepted,
        // although the device clock (2000) is years before the certificate's notBefore.
        let o = client(bin, &good_dir.path().join("root.pem"), good_port, Some(ntp));
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let t = text(&o);
        assert!(t.contains("synced: +/- "), "{t}");
        assert!(
            t.contains("connected: certificate valid over the trusted interval"),
            "{t}"
        );
        assert!(t.contains("server said: HTTP/1.0 200 ok"), "{t}");

        // An expired certificate is refused as expired, not as "not yet valid" (which is what
        // the 2000 clock alone would say).
        let o = client(
            bin,
            &expired_dir.path().join("root.pem"),
            expired_port,
            Some(ntp),
        );
        assert_eq!(o.status.code(), Some(4), "{}", text(&o));
        assert!(
            text(&o).contains("refused: certificate expired"),
            "{}",
            text(&o)
        );
        assert!(!text(&o).contains("runtime error"), "{}", text(&o));
    }
}
