//! Building the C examples against the static library, for the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The static library cargo built for this test run (the newest one in `deps/`).
pub fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let mut libs: Vec<_> = std::fs::read_dir(deps)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("libtrusttime_ffi-") && n.ends_with(".a")
        })
        .collect();
    libs.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    libs.pop()
        .expect("libtrusttime_ffi-*.a next to the test binary (cargo builds it with the tests)")
}

/// The flags of a sanitised build: AddressSanitizer and UndefinedBehaviorSanitizer, fatal.
pub const SANITIZE: &[&str] = &[
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
];

/// Compiles `sources` (relative to the crate) with gcc, warnings as errors, into `out`,
/// linked with the static library and then `libs`.
pub fn compile(out: &Path, sources: &[&str], extra: &[&str], libs: &[&str]) {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-O1"])
        .args(extra)
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg("-I")
        .arg(crate_dir.join("glue"))
        .args(sources.iter().map(|s| crate_dir.join(s)))
        .arg(static_lib())
        .args(libs)
        .args(["-lpthread", "-ldl", "-lm", "-lrt", "-lgcc_s", "-o"])
        .arg(out)
        .status()
        .expect("gcc (apt-get install gcc)");
    assert!(status.success(), "gcc failed for {sources:?} {extra:?}");
}
