//! The C firmware in `examples/qemu` (linking the static library built for the target) replays
//! NTP replies captured from three servers, one an hour ahead, under QEMU on a Cortex-M3
//! (lm3s6965evb) and a Cortex-M0 (microbit, 16 KiB of RAM): it reaches a consensus without
//! the liar and prints the stack each call used.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use trusttime_test_support as ts;

fn run(core: &str) {
    let hint = "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm";
    if ts::peer_or_skip("qemu-system-arm", &[], hint).is_none()
        || ts::peer_or_skip("arm-none-eabi-gcc", &[], hint).is_none()
    {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/qemu/run.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(core)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{core}:\n{stdout}\n{stderr}");
    assert!(stdout.contains("trusttime firmware: PASS"), "{stdout}");
    assert!(stdout.contains("agreed mask 0x5"), "{stdout}");
    assert!(stdout.contains("127.0.0.2:17122: offset"), "{stdout}");
    let liar = stdout
        .lines()
        .find(|l| l.contains("127.0.0.2:17122"))
        .unwrap();
    assert!(liar.ends_with("falseticker"), "{liar}");
    // Every call reports its stack; none comes near the 16 KiB of the smallest machine.
    let stacks: Vec<u32> = stdout
        .lines()
        .filter_map(|l| l.strip_suffix(" B"))
        .filter_map(|l| l.rsplit("stack ").next())
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(stacks.len(), 8, "{stdout}");
    assert!(stacks.iter().all(|&s| s > 0 && s < 2048), "{stacks:?}");
}

#[test]
fn firmware_reaches_consensus_on_a_cortex_m3() {
    run("m3");
}

#[test]
fn firmware_reaches_consensus_on_a_cortex_m0() {
    run("m0");
}
