#!/usr/bin/env bash
# Long-running cost of the daemon: peak RSS (VmHWM) and CPU time (user+system) after
# $DURATION seconds (default 600) of polling three loopback chronyd servers with the poll
# interval lowered to 2^MINPOLL s (default -2: 0.25 s) so it works hard, beside chronyd as a
# client with the same poll settings (-x: never steers the clock), and the time from start to
# trusted/first selection. Runs both side by side in the same run.
#
# Usage: DURATION=600 bench/daemon.sh   (LEAN=1: the --no-default-features build; MUSL=1: the
#        same, static with musl)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-600}"; MINPOLL="${MINPOLL:--2}"
FAKE=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
CHRONYD="${TRUSTTIME_CHRONYD:-$(pwd)/target/peers/chrony/usr/sbin/chronyd}"
NOCAP=(setpriv --bounding-set -sys_time --inh-caps -sys_time)
PORT=${PORT:-32123}
# LEAN=1 measures the build without optional features (tls, web, mqtt); MUSL=1 the same
# build linked statically against musl (what a small device would ship).
if [ "${MUSL:-0}" = 1 ]; then
  rustup target list --installed | grep -q x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl
  cargo build --release --locked -q -p trusttime --no-default-features \
    --target x86_64-unknown-linux-musl --target-dir target/musl
  TT=$(pwd)/target/musl/x86_64-unknown-linux-musl/release/trusttime
elif [ "${LEAN:-0}" = 1 ]; then
  cargo build --release --locked -q -p trusttime --no-default-features --target-dir target/lean
  TT=$(pwd)/target/lean/release/trusttime
else
  cargo build --release --locked -q -p trusttime
  TT=$(pwd)/target/release/trusttime
fi
WORK=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
for ip in 127.0.0.61 127.0.0.62 127.0.0.63; do
  off=600; [ $ip = 127.0.0.62 ] && off=4200
  env LD_PRELOAD=$FAKE FAKETIME="+$off" DONT_FAKE_MONOTONIC=1 "${NOCAP[@]}" "$CHRONYD" -x -d -u root -f /dev/null \
    "port $PORT" "bindaddress $ip" 'local stratum 1' 'allow 127.0.0.0/8' 'cmdport 0' 'bindcmdaddress /' \
    "pidfile $WORK/$ip.pid" >"$WORK/$ip.log" 2>&1 &
  PIDS+=($!)
done
sleep 1
cat >"$WORK/tt.toml" <<TOML
[[source]]
kind = "ntp"
address = "127.0.0.61:$PORT"
[[source]]
kind = "ntp"
address = "127.0.0.62:$PORT"
[[source]]
kind = "ntp"
address = "127.0.0.63:$PORT"
[clock]
observe-only = true
[daemon]
state-dir = "$WORK/state"
control-socket = "$WORK/c.sock"
startup-delay = "0s"
min-poll = $MINPOLL
max-poll = $MINPOLL
TOML
now_ns() { date +%s%N; }
t0=$(now_ns)
"${NOCAP[@]}" "$TT" daemon --config "$WORK/tt.toml" >"$WORK/tt.log" 2>&1 &
TTPID=$!; PIDS+=($TTPID)
"$TT" wait --for tls --timeout 10s --config "$WORK/tt.toml" >/dev/null 2>&1
t1=$(now_ns)
TT_READY_MS=$(( (t1 - t0) / 1000000 ))

t0=$(now_ns)
"${NOCAP[@]}" "$CHRONYD" -x -d -u root -f /dev/null \
  "server 127.0.0.61 port $PORT iburst minpoll $MINPOLL maxpoll $MINPOLL" \
  "server 127.0.0.62 port $PORT iburst minpoll $MINPOLL maxpoll $MINPOLL" \
  "server 127.0.0.63 port $PORT iburst minpoll $MINPOLL maxpoll $MINPOLL" \
  'minsources 2' 'cmdport 0' 'bindcmdaddress /' 'port 0' "pidfile $WORK/client.pid" >"$WORK/chrony-client.log" 2>&1 &
CHPID=$!; PIDS+=($CHPID)
until grep -q "Selected source" "$WORK/chrony-client.log" 2>/dev/null; do
  sleep 0.01; [ $(( ($(now_ns) - t0) / 1000000000 )) -gt 30 ] && break
done
t1=$(now_ns)
CH_READY_MS=$(( (t1 - t0) / 1000000 ))

sleep "$DURATION"
stat_of() { # pid -> "hwm_kib cpu_ms anon_kib pss_kib"
  local hwm ticks anon pss
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$1/status")
  # Private memory (heap, stacks, data written): what the process itself costs, beside the
  # file-backed pages of its binary and shared libraries that VmHWM also counts.
  anon=$(awk '/RssAnon/ {print $2}' "/proc/$1/status")
  pss=$(awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup")
  ticks=$(awk '{print $14 + $15}' "/proc/$1/stat")
  echo "$hwm $(( ticks * 1000 / $(getconf CLK_TCK) )) $anon $pss"
}
read -r TT_HWM TT_CPU TT_ANON TT_PSS < <(stat_of $TTPID)
read -r CH_HWM CH_CPU CH_ANON CH_PSS < <(stat_of $CHPID)
REQS=$("$TT" sources --json --config "$WORK/tt.toml" | python3 -c 'import json,sys; print(sum(s["requests"] for s in json.load(sys.stdin)["sources"]))')
echo "| daemon | start to trusted, ms | peak RSS, KiB | private (RssAnon), KiB | PSS, KiB | CPU over ${DURATION} s, ms |"
echo "|---|---:|---:|---:|---:|---:|"
echo "| trusttime daemon (observe-only) | $TT_READY_MS | $TT_HWM | $TT_ANON | $TT_PSS | $TT_CPU |"
echo "| chronyd -x (client, minsources 2) | $CH_READY_MS | $CH_HWM | $CH_ANON | $CH_PSS | $CH_CPU |"
echo
echo "poll interval 2^$MINPOLL s; trusttime sent $REQS exchanges in ${DURATION} s; RSS ratio $(awk -v a=$TT_HWM -v b=$CH_HWM 'BEGIN{printf "%.2f", a/b}'); private memory ratio $(awk -v a=$TT_ANON -v b=$CH_ANON 'BEGIN{printf "%.2f", a/b}')"
