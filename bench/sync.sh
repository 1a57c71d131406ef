#!/usr/bin/env bash
# Time from process start to a consensus result, with three chronyd servers on loopback of
# which one lies, for `trusttime sync` and for the reference clients that run here:
#   chronyd -Q (default iburst), chronyd -Q (minpoll -6, minsources 2),
#   ntpd-rs 1.9 (minimum-agreeing-sources = 2), if `ntp-daemon` is on PATH or in $NTPD_RS.
# Also: offset error (measured minus the servers' true offset), peak RSS (GNU time), binary size.
# Every figure is the median of $RUNS runs (default 5). Nothing touches the machine's clock:
# servers run under libfaketime without CAP_SYS_TIME, clients in no-set modes.
#
# Usage: bench/sync.sh            (builds trusttime --release first)
#   TT_BEFORE=path/to/an/older/trusttime bench/sync.sh   also times that binary, interleaved
#   LEAN=0 bench/sync.sh           skips the --no-default-features build and its row
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-5}"
FAKE=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
CHRONYD="${TRUSTTIME_CHRONYD:-$(pwd)/target/peers/chrony/usr/sbin/chronyd}"
[ -x "$CHRONYD" ] || CHRONYD="$(command -v chronyd || true)"
[ -x "$CHRONYD" ] || { echo "chronyd not found: run ./scripts/install-peers" >&2; exit 2; }
# ntpd-rs has no observe-only mode: without CAP_SYS_TIME it exits before measuring, and with
# it, it adjusts the kernel clock. It is run only when NTPD_RS names its binary, and then still
# without CAP_SYS_TIME (so on a machine whose clock must not change it reports no result).
NTPD_RS="${NTPD_RS:-}"
HONEST=600; LIAR=4200; PORT=${PORT:-31123}
NOCAP=(setpriv --bounding-set -sys_time --inh-caps -sys_time)

cargo build --release --locked -q -p trusttime
TT=target/release/trusttime
# The same client without the optional features (tls, web, mqtt): what a sync-only device ships.
LEAN="${LEAN:-1}"
TT_BEFORE="${TT_BEFORE:-}"
TT_LEAN=target/lean/release/trusttime
if [ "$LEAN" = 1 ]; then
  cargo build --release --locked -q -p trusttime --no-default-features --target-dir target/lean
fi
WORK=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

start_server() { # ip offset
  env LD_PRELOAD=$FAKE FAKETIME="+$2" DONT_FAKE_MONOTONIC=1 "${NOCAP[@]}" "$CHRONYD" -x -d -u root \
    -f /dev/null "port $PORT" "bindaddress $1" 'local stratum 1' 'allow 127.0.0.0/8' 'cmdport 0' \
    'bindcmdaddress /' "pidfile $WORK/$1.pid" "driftfile $WORK/$1.drift" >"$WORK/$1.log" 2>&1 &
  PIDS+=($!)
}
start_server 127.0.0.21 $HONEST
start_server 127.0.0.22 $LIAR
start_server 127.0.0.23 $HONEST
sleep 1

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else print a[int((NR+1)/2)]}'; }
now_ns() { date +%s%N; }

# run_client NAME CMD...: prints "elapsed_ms offset_s rss_kib" per run into $WORK/NAME.runs
# (APPEND=1: add to the runs already there, for interleaving two clients run by run.)
run_client() {
  local name=$1; shift
  [ -n "${APPEND:-}" ] || : >"$WORK/$name.runs"
  for _ in $(seq "$RUNS"); do
    local t0 t1 out
    t0=$(now_ns)
    out=$(/usr/bin/time -f 'RSS %M' "$@" 2>&1 || true)
    t1=$(now_ns)
    local off rss
    off=$(parse_offset "$name" "$out")
    rss=$(sed -n 's/^RSS \([0-9]*\)$/\1/p' <<<"$out" | tail -1)
    echo "$(( (t1 - t0) / 1000 )) ${off:-nan} ${rss:-nan}" >>"$WORK/$name.runs"
  done
}
parse_offset() {
  case $1 in
    trusttime*) sed -n 's/.*"offset_s":\([-0-9.e]*\).*/\1/p' <<<"$2" | head -1 ;;
    chrony*) # "System clock wrong by 600.000123 seconds": true minus local
      sed -n 's/.*System clock wrong by \([-0-9.]*\) seconds.*/\1/p' <<<"$2" | head -1 ;;
    ntpd-rs) sed -n 's/.*Offset: \([-0-9.e]*\)ms.*/\1/p' <<<"$2" | head -1 | awk 'NF {print $1/1000}' ;;
  esac
}

SRV=(127.0.0.21:$PORT 127.0.0.22:$PORT 127.0.0.23:$PORT)
if [ -n "$TT_BEFORE" ]; then
  # Run by run, alternating, so that both see the same load.
  : >"$WORK/trusttime.runs"; : >"$WORK/trusttime-before.runs"
  for _ in $(seq "$RUNS"); do
    APPEND=1 RUNS=1 run_client trusttime "$TT" sync --json --timeout 3s -s "${SRV[0]}" -s "${SRV[1]}" -s "${SRV[2]}"
    APPEND=1 RUNS=1 run_client trusttime-before "$TT_BEFORE" sync --json --timeout 3s -s "${SRV[0]}" -s "${SRV[1]}" -s "${SRV[2]}"
  done
else
  run_client trusttime "$TT" sync --json --timeout 3s -s "${SRV[0]}" -s "${SRV[1]}" -s "${SRV[2]}"
fi
if [ "$LEAN" = 1 ]; then
  run_client trusttime-lean "$TT_LEAN" sync --json --timeout 3s -s "${SRV[0]}" -s "${SRV[1]}" -s "${SRV[2]}"
fi
# The single-round-trip baseline: the same binary, one honest server, no agreement needed.
if [ -n "$TT_BEFORE" ]; then
  : >"$WORK/trusttime-1-server.runs"; : >"$WORK/trusttime-before-1-server.runs"
  for _ in $(seq "$RUNS"); do
    APPEND=1 RUNS=1 run_client trusttime-1-server "$TT" sync --json --timeout 3s -s "${SRV[0]}"
    APPEND=1 RUNS=1 run_client trusttime-before-1-server "$TT_BEFORE" sync --json --timeout 3s -s "${SRV[0]}"
  done
else
  run_client trusttime-1-server "$TT" sync --json --timeout 3s -s "${SRV[0]}"
fi
# In-process time from the first request to the decision (trusttime reports it), for this
# binary and, interleaved run by run, the one in $TT_BEFORE.
inproc() { "$@" | sed -n 's/.*"elapsed_ms":\([0-9.e-]*\).*/\1/p'; }
: >"$WORK/tt-inproc.runs"; : >"$WORK/tt1-inproc.runs"
: >"$WORK/before-inproc.runs"; : >"$WORK/before1-inproc.runs"
for _ in $(seq "$RUNS"); do
  inproc "$TT" sync --json -s "${SRV[0]}" -s "${SRV[1]}" -s "${SRV[2]}" >>"$WORK/tt-inproc.runs"
  inproc "$TT" sync --json -s "${SRV[0]}" >>"$WORK/tt1-inproc.runs"
  if [ -n "$TT_BEFORE" ]; then
    inproc "$TT_BEFORE" sync --json -s "${SRV[0]}" -s "${SRV[1]}" -s "${SRV[2]}" >>"$WORK/before-inproc.runs"
    inproc "$TT_BEFORE" sync --json -s "${SRV[0]}" >>"$WORK/before1-inproc.runs"
  fi
done
median <"$WORK/tt-inproc.runs" >"$WORK/tt-inproc"
median <"$WORK/tt1-inproc.runs" >"$WORK/tt1-inproc"

chrony_q() { # NAME "server options" extra directives...: writes a script that runs chronyd -Q
  local name=$1 opts=$2; shift 2
  { echo '#!/bin/sh'
    printf 'exec'; printf " '%s'" "${NOCAP[@]}" "$CHRONYD" -Q -u root -f /dev/null \
      "server 127.0.0.21 port $PORT $opts" "server 127.0.0.22 port $PORT $opts" \
      "server 127.0.0.23 port $PORT $opts" 'cmdport 0' 'bindcmdaddress /' 'port 0' \
      "pidfile $WORK/$name.pid" "$@"; echo
  } >"$WORK/$name.sh"
  chmod +x "$WORK/$name.sh"
}
chrony_q chrony-iburst iburst
chrony_q chrony-fast 'iburst minpoll -6 maxpoll -6' 'minsources 2'
run_client chrony-iburst "$WORK/chrony-iburst.sh"
run_client chrony-fast "$WORK/chrony-fast.sh"

if [ -n "$NTPD_RS" ]; then
  cat >"$WORK/ntpd-rs.toml" <<TOML
[observability]
log-level = "info"
[[source]]
mode = "server"
address = "127.0.0.21:$PORT"
[[source]]
mode = "server"
address = "127.0.0.22:$PORT"
[[source]]
mode = "server"
address = "127.0.0.23:$PORT"
[synchronization]
minimum-agreeing-sources = 2
single-step-panic-threshold = 1e-9
startup-step-panic-threshold = { forward = 1e-9, backward = 1e-9 }
TOML
  run_client ntpd-rs "${NOCAP[@]}" "$NTPD_RS" -c "$WORK/ntpd-rs.toml"
fi

TT_MS=$(awk '{print $1/1000}' "$WORK/trusttime.runs" | median)
printf '| client | time to result, ms (median of %s) | x trusttime | offset error, ms | followed liar | peak RSS, KiB |\n' "$RUNS"
printf '|---|---:|---:|---:|---|---:|\n'
for name in trusttime trusttime-before trusttime-lean trusttime-1-server trusttime-before-1-server chrony-iburst chrony-fast ntpd-rs; do
  f="$WORK/$name.runs"; [ -s "$f" ] || continue
  ms=$(awk '{print $1/1000}' "$f" | median)
  off=$(awk '{print $2}' "$f" | median)
  rss=$(awk '{print $3}' "$f" | median)
  err=$(awk -v o="$off" -v h=$HONEST 'BEGIN { if (o == "" || o == "nan") print "n/a"; else { e = (o - h) * 1000; if (e < 0) e = -e; printf "%.3f", e } }')
  liar=$(awk -v o="$off" -v l=$LIAR 'BEGIN { if (o == "" || o == "nan") print "no result"; else if (o > l - 1 && o < l + 1) print "YES"; else print "no" }')
  ratio=$(awk -v a="$ms" -v b="$TT_MS" 'BEGIN { printf "%.0f", a / b }')
  printf '| %s | %.1f | %s | %s | %s | %s |\n' "$name" "$ms" "$ratio" "$err" "$liar" "$rss"
done
echo
printf "trusttime, first request to decision (in-process, median): 3 servers %.3f ms, 1 server %.3f ms\n" "$(cat "$WORK/tt-inproc")" "$(cat "$WORK/tt1-inproc")"
if [ -n "$TT_BEFORE" ]; then
  printf "TT_BEFORE, first request to decision (in-process, median): 3 servers %.3f ms, 1 server %.3f ms\n" \
    "$(median <"$WORK/before-inproc.runs")" "$(median <"$WORK/before1-inproc.runs")"
fi
echo "trusttime binary: $(stat -c %s "$TT") bytes (release, opt-level s)"
if [ "$LEAN" = 1 ]; then echo "without default features: $(stat -c %s "$TT_LEAN") bytes"; fi
echo "machine: $(nproc) CPUs, $(uname -r); chronyd $("$CHRONYD" -v | head -1 | awk '{print $4}')"
