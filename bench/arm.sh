#!/usr/bin/env bash
# Size and memory of the static builds per target: for each binary, its stripped size, and the
# peak memory of the observe-only daemon over $DURATION s (default 60) of polling three
# loopback chronyd servers (two at +600 s, one lying at +4200 s) every 2^MINPOLL s (default
# -2: 0.25 s). ARM binaries run under qemu-user-static, whose own memory (the emulator and its
# translated code, about 12 MiB) dwarfs the program's, so two figures are given:
#   - the process's VmHWM (for ARM: emulator + program);
#   - the program's own resident memory, sampled every 0.5 s and the largest sample kept: for
#     ARM the resident pages of the guest's 4 GiB address space (qemu-arm places a 32-bit guest
#     there; qemu-aarch64 is told to with `-R 4G`), i.e. the binary's pages, heap and stacks as
#     the program would have them on the board; natively the process's whole RSS.
# The x86-64 builds of the same features (static, musl) run natively, side by side.
#
# Usage: scripts/test-arm      # builds target/arm/trusttime-{aarch64,armv7}-{lean,tls}
#        DURATION=60 bench/arm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-60}"; MINPOLL="${MINPOLL:--2}"
FAKE=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
CHRONYD="${TRUSTTIME_CHRONYD:-${TRUSTTIME_PEERS_DIR:-$(pwd)/target/peers}/chrony/usr/sbin/chronyd}"
NOCAP=(setpriv --bounding-set -sys_time --inh-caps -sys_time)
PORT=${PORT:-34123}

# x86-64 builds of the same features, static (musl), for the ratios (built when missing; delete
# target/arm/trusttime-x86_64-* to rebuild).
if [ ! -f target/arm/trusttime-x86_64-lean ]; then
  cargo build --profile device --locked -q -p trusttime --no-default-features --target x86_64-unknown-linux-musl
  cp target/x86_64-unknown-linux-musl/device/trusttime target/arm/trusttime-x86_64-lean
fi
if [ ! -f target/arm/trusttime-x86_64-tls ]; then
  CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-gcc} \
    cargo build --profile device --locked -q -p trusttime --no-default-features --features tls --target x86_64-unknown-linux-musl
  cp target/x86_64-unknown-linux-musl/device/trusttime target/arm/trusttime-x86_64-tls
fi

WORK=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
for ip in 127.0.0.81 127.0.0.82 127.0.0.83; do
  off=600; [ $ip = 127.0.0.82 ] && off=4200
  env LD_PRELOAD=$FAKE FAKETIME="+$off" DONT_FAKE_MONOTONIC=1 "${NOCAP[@]}" "$CHRONYD" -x -d -u root -f /dev/null \
    "port $PORT" "bindaddress $ip" 'local stratum 1' 'allow 127.0.0.0/8' 'cmdport 0' 'bindcmdaddress /' \
    "pidfile $WORK/$ip.pid" >"$WORK/$ip.log" 2>&1 &
  PIDS+=($!)
done
sleep 1

runner() { # binary -> the emulator to run it with, or nothing
  case "$(file -b "$1")" in
    *aarch64*) echo "qemu-aarch64-static -R 0x100000000" ;;
    *ARM*) echo qemu-arm-static ;;
    *) echo "" ;;
  esac
}

# One daemon per binary, side by side (each with its own state and control socket).
declare -A DPID
for flavour in lean tls; do
  for arch in x86_64 aarch64 armv7; do
    bin="target/arm/trusttime-$arch-$flavour"
    [ -f "$bin" ] || { echo "bench/arm.sh: no $bin (run scripts/test-arm)" >&2; exit 1; }
    d="$WORK/$arch-$flavour"; mkdir -p "$d"
    cat >"$d/tt.toml" <<TOML
[[source]]
kind = "ntp"
address = "127.0.0.81:$PORT"
[[source]]
kind = "ntp"
address = "127.0.0.82:$PORT"
[[source]]
kind = "ntp"
address = "127.0.0.83:$PORT"
[clock]
observe-only = true
[daemon]
state-dir = "$d/state"
control-socket = "$d/c.sock"
startup-delay = "0s"
min-poll = $MINPOLL
max-poll = $MINPOLL
TOML
    q=$(runner "$bin")
    # shellcheck disable=SC2086
    "${NOCAP[@]}" $q "$bin" daemon --config "$d/tt.toml" >"$d/log" 2>&1 &
    DPID[$arch-$flavour]=$!; PIDS+=($!)
    # shellcheck disable=SC2086
    $q "$bin" wait --for tls --timeout 30s --config "$d/tt.toml" >/dev/null \
      || { cat "$d/log"; echo "bench/arm.sh: $arch-$flavour did not sync" >&2; exit 1; }
  done
done
# The program's resident memory: for an emulated guest, the pages below 4 GiB.
program_rss() { # pid emulated(0/1) -> KiB
  awk -v emu="$2" '
    /^[0-9a-f]+-[0-9a-f]+ / { split($1, r, "-"); low = (length(r[1]) <= 8) }
    /^Rss:/ { if (!emu || low) sum += $2 }
    END { print sum + 0 }' "/proc/$1/smaps"
}
declare -A PEAK
end=$((SECONDS + DURATION))
while [ $SECONDS -lt $end ]; do
  for k in "${!DPID[@]}"; do
    emu=1; [[ $k == x86_64-* ]] && emu=0
    v=$(program_rss "${DPID[$k]}" $emu)
    [ "$v" -gt "${PEAK[$k]:-0}" ] && PEAK[$k]=$v
  done
  sleep 0.5
done

echo "| build | target | stripped size, bytes | x x86-64 | process VmHWM, KiB | program peak RSS, KiB | x x86-64 |"
echo "|---|---|---:|---:|---:|---:|---:|"
for flavour in lean tls; do
  for arch in x86_64 aarch64 armv7; do
    bin="target/arm/trusttime-$arch-$flavour"
    pid=${DPID[$arch-$flavour]}
    kill -0 "$pid" || { echo "bench/arm.sh: the $arch-$flavour daemon died" >&2; exit 1; }
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    how="native"; [ "$arch" != x86_64 ] && how="qemu-user"
    size=$(stat -c %s "$bin"); xsize=$(stat -c %s "target/arm/trusttime-x86_64-$flavour")
    echo "| $flavour | $arch ($how) | $size | $(awk -v a="$size" -v b="$xsize" 'BEGIN{printf "%.2f", a/b}') | $hwm | ${PEAK[$arch-$flavour]} | $(awk -v a="${PEAK[$arch-$flavour]}" -v b="${PEAK[x86_64-$flavour]}" 'BEGIN{printf "%.2f", a/b}') |"
  done
done
