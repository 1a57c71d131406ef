//! Compiles the build time into the crate: the floor below which the clock never goes.
//!
//! `SOURCE_DATE_EPOCH` (reproducible builds) wins when set; otherwise the build's own time.
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let secs = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => match v.trim().parse::<i64>() {
            Ok(s) => s,
            Err(_) => {
                println!("cargo:warning=SOURCE_DATE_EPOCH={v:?} is not a whole number of seconds; using the build time");
                now()
            }
        },
        Err(_) => now(),
    };
    println!("cargo:rustc-env=TRUSTTIME_BUILD_UNIX={secs}");
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
