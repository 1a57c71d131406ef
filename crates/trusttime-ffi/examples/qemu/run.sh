#!/usr/bin/env bash
# Builds libtrusttime_ffi.a for a Cortex-M target, links the C firmware fw.c against it with
# arm-none-eabi-gcc, and runs it under QEMU with semihosting. Prints the firmware's output;
# exits with its status.
#
#   run.sh m3     Cortex-M3, thumbv7m-none-eabi, QEMU lm3s6965evb
#   run.sh m0     Cortex-M0, thumbv6m-none-eabi, QEMU microbit (16 KiB RAM)
#
# Needs: gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm (apt), the rustup target.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
case "${1:-}" in
  m3) target=thumbv7m-none-eabi; cpu=cortex-m3; machine=lm3s6965evb ;;
  m0) target=thumbv6m-none-eabi; cpu=cortex-m0; machine=microbit ;;
  *) echo "usage: $0 m3|m0" >&2; exit 2 ;;
esac
out="$root/target/ffi-fw"
# The firmware build of the library: no std, the panic handler calls trusttime_panic_hook.
cargo build --locked -q --release -p trusttime-ffi --no-default-features --features panic-handler \
  --target "$target" --target-dir "$out" --manifest-path "$root/Cargo.toml"
lib="$out/$target/release/libtrusttime_ffi.a"
elf="$out/fw-$1.elf"
arm-none-eabi-gcc -mcpu="$cpu" -mthumb -Wa,--noexecstack -std=c11 -Os -g -Wall -Wextra -Werror \
  -ffunction-sections -fdata-sections -nostartfiles -T "$here/fw.ld" \
  -I "$here/../../include" -I "$here" "$here/fw.c" "$lib" \
  -Wl,--gc-sections --specs=nano.specs -lc -lgcc -o "$elf"
arm-none-eabi-size "$elf" >&2
timeout 60 qemu-system-arm -machine "$machine" -nographic -monitor none -serial none \
  -chardev stdio,id=semihosting,signal=off \
  -semihosting-config enable=on,target=native,chardev=semihosting -kernel "$elf"
