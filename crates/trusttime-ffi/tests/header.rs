//! The checked-in header is what cbindgen generates from the source: a C user reads the same
//! API the library exports. Regenerate with `TRUSTTIME_BLESS=1 cargo test -p trusttime-ffi --test header`.

use std::path::PathBuf;

#[test]
fn checked_in_header_matches_the_generated_one() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("UTF-8 header");
    let path = crate_dir.join("include/trusttime.h");
    if std::env::var_os("TRUSTTIME_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write the header");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "include/trusttime.h is stale: regenerate it with \
         `TRUSTTIME_BLESS=1 cargo test -p trusttime-ffi --test header` and commit it"
    );
}
