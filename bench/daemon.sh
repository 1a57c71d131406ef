#!/usr/bin/env bash
# Long-running cost of the daemon: peak RSS (VmHWM) and CPU time (user+system) after
# $DURATION seconds (default 600) of polling three loopback chronyd servers with the poll
# interval lowered to 2^MINPOLL s (default -2: 0.25 s) so it works hard, beside chronyd as a
# client with the same poll settings (-x: never steers the clock), and the time from start to
# trusted/first selection. Runs both side by side in the same run.
#
# CPU time is read from schedstat (ns) and "wakeups" counts voluntary context switches.
# Usage: DURATION=600 bench/daemon.sh   (LEAN=1: the --no-default-features build; MUSL=1: the
#        same, static with musl; TT=PATH: a prebuilt binary, nothing is built; TT2=PATH: a
#        second prebuilt binary measured in the same run, e.g. an older version, with
#        TT_NAME/TT2_NAME as their labels in the table)
# At the end it also reads each daemon's offset error: trusttime's `status --json` offset_s
# minus the servers' known +OFFSET s, and chronyd's `tracking` (through its command socket).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-600}"; MINPOLL="${MINPOLL:--2}"
# OFFSET: how far ahead the two honest servers run, in s (libfaketime). OFFSET=0 runs them
# without libfaketime, on the real clock with the kernel's timestamps, so that the offset
# error measures the clients and not the test servers' own timestamp bias. The liar always
# runs 3600 s ahead of them.
OFFSET="${OFFSET:-600}"
FAKE=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
CHRONYD="${TRUSTTIME_CHRONYD:-$(pwd)/target/peers/chrony/usr/sbin/chronyd}"
NOCAP=(setpriv --bounding-set -sys_time --inh-caps -sys_time)
PORT=${PORT:-32123}
# LEAN=1 measures the build without optional features (tls, web, mqtt); MUSL=1 the same
# build linked statically against musl (what a small device would ship).
if [ -n "${TT:-}" ]; then
  TT=$(realpath "$TT")
elif [ "${MUSL:-0}" = 1 ]; then
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
TT2="${TT2:+$(realpath "$TT2")}"
# Peak RSS counts the binary's pages that are mapped, and on a fault the kernel maps up to
# 64 KiB around it from whatever of the file the page cache holds: a binary just built or
# copied (all of it cached) and one partly evicted could differ for the same code. Both are
# read whole first, so that they start alike.
cat "$TT" ${TT2:+"$TT2"} >/dev/null
TT_NAME="${TT_NAME:-trusttime daemon (observe-only)}"; TT2_NAME="${TT2_NAME:-second trusttime daemon}"
CHRONYC="${TRUSTTIME_CHRONYC:-$(dirname "$CHRONYD")/../bin/chronyc}"
WORK=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
for ip in 127.0.0.61 127.0.0.62 127.0.0.63; do
  off=$OFFSET; [ $ip = 127.0.0.62 ] && off=$((OFFSET + 3600))
  fake=(env LD_PRELOAD=$FAKE FAKETIME="+$off" DONT_FAKE_MONOTONIC=1); [ "$off" = 0 ] && fake=()
  "${fake[@]}" "${NOCAP[@]}" "$CHRONYD" -x -d -u root -f /dev/null \
    "port $PORT" "bindaddress $ip" 'local stratum 1' 'allow 127.0.0.0/8' 'cmdport 0' 'bindcmdaddress /' \
    "pidfile $WORK/$ip.pid" >"$WORK/$ip.log" 2>&1 &
  PIDS+=($!)
done
sleep 1
now_ns() { date +%s%N; }
start_tt() { # BIN NAME: writes $WORK/NAME.toml, starts the daemon, sets TTPID and READY_MS
  cat >"$WORK/$2.toml" <<TOML
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
state-dir = "$WORK/$2-state"
control-socket = "$WORK/$2.sock"
startup-delay = "0s"
min-poll = $MINPOLL
max-poll = $MINPOLL
TOML
  local t0 t1
  t0=$(now_ns)
  "${NOCAP[@]}" "$1" daemon --config "$WORK/$2.toml" >"$WORK/$2.log" 2>&1 &
  TTPID=$!; PIDS+=($TTPID)
  "$1" wait --for tls --timeout 10s --config "$WORK/$2.toml" >/dev/null 2>&1
  t1=$(now_ns)
  READY_MS=$(( (t1 - t0) / 1000000 ))
}
start_tt "$TT" tt; TT_PID=$TTPID; TT_READY_MS=$READY_MS
if [ -n "$TT2" ]; then start_tt "$TT2" tt2; TT2_PID=$TTPID; TT2_READY_MS=$READY_MS; fi

t0=$(now_ns)
"${NOCAP[@]}" "$CHRONYD" -x -d -u root -f /dev/null \
  "server 127.0.0.61 port $PORT iburst minpoll $MINPOLL maxpoll $MINPOLL" \
  "server 127.0.0.62 port $PORT iburst minpoll $MINPOLL maxpoll $MINPOLL" \
  "server 127.0.0.63 port $PORT iburst minpoll $MINPOLL maxpoll $MINPOLL" \
  'minsources 2' 'cmdport 0' "bindcmdaddress $WORK/chronyd.sock" 'port 0' "pidfile $WORK/client.pid" >"$WORK/chrony-client.log" 2>&1 &
CHPID=$!; PIDS+=($CHPID)
until grep -q "Selected source" "$WORK/chrony-client.log" 2>/dev/null; do
  sleep 0.01; [ $(( ($(now_ns) - t0) / 1000000000 )) -gt 30 ] && break
done
t1=$(now_ns)
CH_READY_MS=$(( (t1 - t0) / 1000000 ))

sleep "$DURATION"
stat_of() { # pid -> "hwm_kib cpu_ms anon_kib pss_kib wakeups"
  local hwm cpu_ns anon pss wakes
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$1/status")
  # Private memory (heap, stacks, data written): what the process itself costs, beside the
  # file-backed pages of its binary and shared libraries that VmHWM also counts.
  anon=$(awk '/RssAnon/ {print $2}' "/proc/$1/status")
  pss=$(awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup")
  # CPU time on every thread, in ns (schedstat; /proc/PID/stat counts 10 ms ticks), and how
  # often a thread went to sleep and was woken (voluntary context switches).
  cpu_ns=$(cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%d", s}')
  wakes=$(cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s}')
  echo "$hwm $(( cpu_ns / 1000000 )) $anon $pss $wakes"
}
read -r TT_HWM TT_CPU TT_ANON TT_PSS TT_WAKES < <(stat_of $TT_PID)
[ -n "$TT2" ] && read -r TT2_HWM TT2_CPU TT2_ANON TT2_PSS TT2_WAKES < <(stat_of $TT2_PID)
read -r CH_HWM CH_CPU CH_ANON CH_PSS CH_WAKES < <(stat_of $CHPID)
# Offset error, read after the CPU time: five readings 0.2 s apart of the trusted offset
# minus the servers' true +OFFSET s; mean of |error| and the uncertainty (half the interval).
# Also the error of the samples themselves: the mean of the agreeing sources' offsets (each
# the symmetric-path estimate ((T2-T1)+(T3-T4))/2 of its best sample) minus OFFSET, which is
# what chronyd's own figure below estimates; trusttime's offset_s is the centre of the proven
# interval instead.
tt_error() { # BIN NAME -> "mean_abs_error_ms uncertainty_ms sample_error_ms"
  for _ in 1 2 3 4 5; do
    "$1" status --json --config "$WORK/$2.toml"; echo
    "$1" sources --json --config "$WORK/$2.toml"; echo
    sleep 0.2
  done |
    python3 -c 'import json,sys
r=[json.loads(l) for l in sys.stdin if l.strip()]
st=[x for x in r if "uncertainty_s" in x]; so=[x for x in r if "sources" in x]
o=float(sys.argv[1])
e=[abs(x["offset_s"]-o)*1e3 for x in st]; u=[x["uncertainty_s"]*1e3 for x in st]
m=[]
for x in so:
    a=[s["offset_s"] for s in x["sources"] if s.get("verdict") == "agreed" and s.get("offset_s") is not None]
    if a: m.append(abs(sum(a)/len(a)-o)*1e3)
print("%.4f %.3f %.4f" % (sum(e)/len(e), sum(u)/len(u), sum(m)/len(m) if m else float("nan")))' "$OFFSET"
}
read -r TT_ERR TT_UNC TT_SERR < <(tt_error "$TT" tt)
[ -n "$TT2" ] && read -r TT2_ERR TT2_UNC TT2_SERR < <(tt_error "$TT2" tt2)
CH_TRACK="(no chronyc)"
if [ -x "$CHRONYC" ]; then
  # "System time : 600.000000000 seconds slow of NTP time" at OFFSET=600 (what -x keeps as the correction it
  # would apply) and "Last offset"/"RMS offset" (the measured offset left after it).
  CH_TRACK=$("$CHRONYC" -h "$WORK/chronyd.sock" tracking | awk -v o="$OFFSET" -F' *: *' '
    /^System time/ {split($2, a, " "); sys = a[1]; if ($2 ~ /fast/) sys = -sys}
    /^Last offset/ {split($2, a, " "); last = a[1]}
    /^RMS offset/ {split($2, a, " "); rms = a[1]}
    END {printf "System time - %s s: %.4f ms, last offset %.1f us, RMS offset %.1f us", o, (sys - o) * 1e3, last * 1e6, rms * 1e6}')
fi
# chronyd's own measurement of the same servers, for the offset error: `chronyd -Q` (measure
# once, set nothing) with the same three servers, a majority of two, eight samples each. (The
# client's `tracking` above shows the OFFSET s it would step and the residual of its last update;
# `-Q` prints the offset it measured.)
CH_Q=$("${NOCAP[@]}" timeout 30 "$CHRONYD" -Q -d -u root -f /dev/null \
  "server 127.0.0.61 port $PORT iburst minpoll -6 maxpoll -6" \
  "server 127.0.0.62 port $PORT iburst minpoll -6 maxpoll -6" \
  "server 127.0.0.63 port $PORT iburst minpoll -6 maxpoll -6" \
  'minsources 2' 'maxsamples 8' 'cmdport 0' "pidfile $WORK/q.pid" 2>&1 |
  awk -v o="$OFFSET" '/System clock wrong by/ {for (i = 1; i <= NF; i++) if ($i == "by") v = $(i + 1)} END {if (v == "") print "n/a"; else printf "%.4f", (v - o) * 1e3}')
REQS=$("$TT" sources --json --config "$WORK/tt.toml" | python3 -c 'import json,sys; print(sum(s["requests"] for s in json.load(sys.stdin)["sources"]))')
echo "| daemon | start to trusted, ms | peak RSS, KiB | private (RssAnon), KiB | PSS, KiB | CPU over ${DURATION} s, ms | CPU / chronyd's | wakeups | offset error, ms (uncertainty) | sample error, ms |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
echo "| $TT_NAME | $TT_READY_MS | $TT_HWM | $TT_ANON | $TT_PSS | $TT_CPU | $(ratio $TT_CPU $CH_CPU) | $TT_WAKES | $TT_ERR (±$TT_UNC) | $TT_SERR |"
[ -n "$TT2" ] && echo "| $TT2_NAME | $TT2_READY_MS | $TT2_HWM | $TT2_ANON | $TT2_PSS | $TT2_CPU | $(ratio $TT2_CPU $CH_CPU) | $TT2_WAKES | $TT2_ERR (±$TT2_UNC) | $TT2_SERR |"
echo "| chronyd -x (client, minsources 2) | $CH_READY_MS | $CH_HWM | $CH_ANON | $CH_PSS | $CH_CPU | 1.00 | $CH_WAKES | see below | see below |"
echo
echo "poll interval 2^$MINPOLL s; $TT_NAME sent $REQS exchanges in ${DURATION} s; RSS ratio $(ratio $TT_HWM $CH_HWM); private memory ratio $(ratio $TT_ANON $CH_ANON)"
[ -n "$TT2" ] && echo "$TT2_NAME: RSS ratio $(ratio $TT2_HWM $CH_HWM); private memory ratio $(ratio $TT2_ANON $CH_ANON)"
echo "chronyd tracking: $CH_TRACK"
echo "chronyd -Q against the same servers: measured offset - $OFFSET s = $CH_Q ms (compare with the sample error)"
