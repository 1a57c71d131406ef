#!/usr/bin/env bash
# Time from process start to an *authenticated* time on loopback, cold (a fresh process, no
# cookies or keys kept from an earlier run), for `trusttime sync` and the reference clients:
#   NTS (RFC 8915) against a chronyd 4.3 NTS server: trusttime --nts, chronyd -Q (default
#     iburst; iburst minpoll -6 maxpoll -6), ntpd-rs 1.9 if $NTPD_RS names its binary;
#   Roughtime against roughenough-server: trusttime --roughtime, roughenough-client (-p 14).
# Also: offset error (measured minus the servers' true +600 s), peak RSS (GNU time).
# Every figure is the median of $RUNS runs (default 5). Nothing touches the machine's clock:
# servers run under libfaketime without CAP_SYS_TIME, clients in no-set modes and without
# CAP_SYS_TIME where they could set it.
#
# Usage: bench/authenticated.sh   (builds trusttime --release first)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-5}"
FAKE=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
CHRONYD="${TRUSTTIME_CHRONYD:-$(pwd)/target/peers/chrony/usr/sbin/chronyd}"
[ -x "$CHRONYD" ] || CHRONYD="$(command -v chronyd || true)"
[ -x "$CHRONYD" ] || { echo "chronyd not found: run ./scripts/install-peers" >&2; exit 2; }
ROUGH="${TRUSTTIME_ROUGHENOUGH:-$(pwd)/target/peers/roughenough/bin}"
[ -x "$ROUGH/roughenough-server" ] || { echo "roughenough not found: run ./scripts/install-peers" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "GNU time not found: apt-get install time" >&2; exit 2; }
# ntpd-rs has no observe-only mode (see bench/sync.sh): run only when NTPD_RS names its binary,
# and then still without CAP_SYS_TIME.
NTPD_RS="${NTPD_RS:-}"
OFFSET=600; PORT=${PORT:-31323}; KEPORT=$((PORT + 1)); RTPORT=$((PORT + 2))
NOCAP=(setpriv --bounding-set -sys_time --inh-caps -sys_time)
FAKED=(env LD_PRELOAD=$FAKE FAKETIME="+$OFFSET" DONT_FAKE_MONOTONIC=1)

# MUSL=1: the static device build with NTS (`--no-default-features --features tls`, musl;
# ring's C code needs musl-gcc: apt-get install musl-tools).
if [ "${MUSL:-0}" = 1 ]; then
  rustup target list --installed | grep -q x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl
  CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked -q -p trusttime \
    --no-default-features --features tls --target x86_64-unknown-linux-musl --target-dir target/musl-tls
  BUILT=target/musl-tls/x86_64-unknown-linux-musl/release/trusttime
else
  cargo build --release --locked -q -p trusttime
  BUILT=target/release/trusttime
fi
WORK=$(mktemp -d); PIDS=()
# A copy, so that another build in the same tree during the run cannot swap the binary.
TT=$WORK/trusttime; cp "$BUILT" "$TT"
cleanup() { # the servers write their dump files on exit: wait for them before removing WORK
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# A private CA (ECDSA P-256) and a leaf for localhost signed by it; chronyd serves leaf + CA.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -keyout "$WORK/root.key" -out "$WORK/root.pem" -subj /CN=trusttime-bench-root \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
  -keyout "$WORK/key.pem" -out "$WORK/leaf.csr" 2>/dev/null
printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1' 'basicConstraints=critical,CA:FALSE' \
  'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' >"$WORK/leaf.ext"
openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/root.pem" -CAkey "$WORK/root.key" \
  -CAcreateserial -days 30 -extfile "$WORK/leaf.ext" -out "$WORK/leaf.pem" 2>/dev/null
cat "$WORK/leaf.pem" "$WORK/root.pem" >"$WORK/chain.pem"
mkdir -p "$WORK/srv-dump" "$WORK/cli-dump"

# chronyd: NTP on PORT, NTS-KE on KEPORT, at +600 s.
"${FAKED[@]}" "${NOCAP[@]}" "$CHRONYD" -x -d -u root -f /dev/null "port $PORT" \
  'bindaddress 127.0.0.1' 'local stratum 1' 'allow 127.0.0.0/8' 'cmdport 0' 'bindcmdaddress /' \
  "pidfile $WORK/nts.pid" "driftfile $WORK/nts.drift" "ntsserverkey $WORK/key.pem" \
  "ntsservercert $WORK/chain.pem" "ntsport $KEPORT" 'ntsprocesses 0' "ntsdumpdir $WORK/srv-dump" \
  >"$WORK/chronyd.log" 2>&1 &
PIDS+=($!)
# roughenough-server on RTPORT, at +600 s.
printf 'interface: 127.0.0.1\nport: %s\nseed: %s\nnum_workers: 1\n' "$RTPORT" \
  "$(openssl rand -hex 32)" >"$WORK/roughenough.yaml"
"${FAKED[@]}" "${NOCAP[@]}" "$ROUGH/roughenough-server" "$WORK/roughenough.yaml" \
  >"$WORK/roughenough.log" 2>&1 &
PIDS+=($!)
sleep 1
PUBKEY=$(grep 'Long-term public key' "$WORK/roughenough.log" | head -1 | sed 's/.*:[[:space:]]*//')
[ -n "$PUBKEY" ] || { echo "roughenough-server did not start:" >&2; cat "$WORK/roughenough.log" >&2; exit 1; }

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else print a[int((NR+1)/2)]}'; }
now_ns() { date +%s%N; }

# run_client NAME CMD...: prints "elapsed_us offset_s rss_kib authenticated" per run into
# $WORK/NAME.runs. Before each run, outside the timed part, the chronyd client's NTS dump
# directory is emptied: with cookies kept from the previous run it would skip NTS-KE.
run_client() {
  local name=$1; shift
  : >"$WORK/$name.runs"
  for _ in $(seq "$RUNS"); do
    rm -rf "${WORK:?}/cli-dump" && mkdir "$WORK/cli-dump"
    local t0 t1 out off rss auth
    t0=$(now_ns)
    out=$(/usr/bin/time -f 'RSS %M' "$@" 2>&1 || true)
    t1=$(now_ns)
    off=$(parse_offset "$name" "$out" "$t1")
    rss=$(sed -n 's/^RSS \([0-9]*\)$/\1/p' <<<"$out" | tail -1)
    auth=$(parse_auth "$name" "$out" "$off")
    echo "$(( (t1 - t0) / 1000 )) ${off:-nan} ${rss:-nan} $auth" >>"$WORK/$name.runs"
  done
}
parse_offset() {
  case $1 in
    trusttime*) sed -n 's/.*"offset_s":\([-0-9.e]*\).*/\1/p' <<<"$2" | head -1 ;;
    chrony*) # "System clock wrong by 600.000123 seconds": true minus local
      sed -n 's/.*System clock wrong by \([-0-9.]*\) seconds.*/\1/p' <<<"$2" | head -1 ;;
    ntpd-rs) sed -n 's/.*Offset: \([-0-9.e]*\)ms.*/\1/p' <<<"$2" | head -1 | awk 'NF {print $1/1000}' ;;
    roughenough*) # the midpoint in whole Unix seconds (-f %s) minus the local time at exit
      sed -n '/^[0-9][0-9]*$/p' <<<"$2" | tail -1 | awk -v t="$3" 'NF {printf "%.6f", $1 - t / 1e9}' ;;
  esac
}
parse_auth() {
  case $1 in
    trusttime*) grep -q '"provenance":"authenticated"' <<<"$2" && grep -q '"authenticated":true' <<<"$2" \
      && echo yes || echo no ;;
    # chronyd takes no unauthenticated sample from an `nts` source: an offset means NTS held.
    chrony*|ntpd-rs) [ -n "$3" ] && echo yes || echo no ;;
    roughenough*) grep -q 'verified=Yes' <<<"$2" && echo yes || echo no ;;
  esac
}

run_client trusttime-nts "$TT" sync --nts "localhost:$KEPORT" --ca "$WORK/root.pem" --json
# The unauthenticated baseline: the same binary, the same chronyd, plain NTP.
run_client trusttime-ntp "$TT" sync -s "127.0.0.1:$PORT" --json
run_client trusttime-roughtime "$TT" sync --roughtime "127.0.0.1:$RTPORT=$PUBKEY" --json
# In-process time from the first request to the decision (trusttime reports it).
inproc() { for _ in $(seq "$RUNS"); do { "$TT" sync --json "$@" || true; } \
  | sed -n 's/.*"elapsed_ms":\([0-9.e-]*\).*/\1/p'; done | median; }
INPROC_NTS=$(inproc --nts "localhost:$KEPORT" --ca "$WORK/root.pem")
INPROC_RT=$(inproc --roughtime "127.0.0.1:$RTPORT=$PUBKEY")

chrony_q() { # NAME "server options": writes a script that runs chronyd -Q as an NTS client
  local name=$1 opts=$2
  { echo '#!/bin/sh'
    printf 'exec'; printf " '%s'" "${NOCAP[@]}" "$CHRONYD" -Q -u root -f /dev/null \
      "server localhost port $PORT nts ntsport $KEPORT $opts" "ntstrustedcerts $WORK/root.pem" \
      "ntsdumpdir $WORK/cli-dump" 'cmdport 0' 'bindcmdaddress /' 'port 0' "pidfile $WORK/$name.pid"
    echo
  } >"$WORK/$name.sh"
  chmod +x "$WORK/$name.sh"
}
chrony_q chrony-nts-iburst iburst
chrony_q chrony-nts-fast 'iburst minpoll -6 maxpoll -6'
run_client chrony-nts-iburst "$WORK/chrony-nts-iburst.sh"
run_client chrony-nts-fast "$WORK/chrony-nts-fast.sh"

if [ -n "$NTPD_RS" ]; then
  cat >"$WORK/ntpd-rs.toml" <<TOML
[observability]
log-level = "info"
[[source]]
mode = "nts"
address = "localhost:$KEPORT"
certificate-authority = "$WORK/root.pem"
[synchronization]
minimum-agreeing-sources = 1
single-step-panic-threshold = 1e-9
startup-step-panic-threshold = { forward = 1e-9, backward = 1e-9 }
TOML
  run_client ntpd-rs "${NOCAP[@]}" "$NTPD_RS" -c "$WORK/ntpd-rs.toml"
fi

# The reference Roughtime client, draft 14, bound to the server's key (-k).
run_client roughenough-client "$ROUGH/roughenough-client" -p 14 -k "$PUBKEY" -v -z -f '%s' \
  127.0.0.1 "$RTPORT"

ms_of() { awk '{print $1/1000}' "$WORK/$1.runs" | median; }
NTS_MS=$(ms_of trusttime-nts); RT_MS=$(ms_of trusttime-roughtime)
printf '| client | protocol | time to result, ms (median of %s) | x trusttime | offset error, ms | authenticated | peak RSS, KiB |\n' "$RUNS"
printf '|---|---|---:|---:|---:|---|---:|\n'
for name in trusttime-nts trusttime-ntp chrony-nts-iburst chrony-nts-fast ntpd-rs \
  trusttime-roughtime roughenough-client; do
  f="$WORK/$name.runs"; [ -s "$f" ] || continue
  case $name in *roughtime|roughenough*) proto=Roughtime; base=$RT_MS ;;
    trusttime-ntp) proto="NTP (plain)"; base=$NTS_MS ;; *) proto=NTS; base=$NTS_MS ;; esac
  ms=$(ms_of "$name")
  off=$(awk '{print $2}' "$f" | median)
  rss=$(awk '{print $3}' "$f" | median)
  auth=$(awk '{print $4}' "$f" | sort | uniq -c | awk -v n="$RUNS" '{printf "%s%s %s/%s", (NR > 1 ? ", " : ""), $2, $1, n}')
  err=$(awk -v o="$off" -v h=$OFFSET 'BEGIN { if (o == "" || o == "nan") print "n/a"; else { e = (o - h) * 1000; if (e < 0) e = -e; printf "%.3f", e } }')
  ratio=$(awk -v a="$ms" -v b="$base" 'BEGIN { r = a / b; if (r < 10) printf "%.2f", r; else printf "%.0f", r }')
  printf '| %s | %s | %.1f | %s | %s | %s | %s |\n' "$name" "$proto" "$ms" "$ratio" "$err" "$auth" "$rss"
done
echo
echo "x trusttime: against trusttime-nts for NTS and plain NTP, trusttime-roughtime for Roughtime"
printf "trusttime, first request to decision (in-process, median): NTS %.3f ms, Roughtime %.3f ms\n" \
  "$INPROC_NTS" "$INPROC_RT"
echo "trusttime binary: $(stat -c %s "$TT") bytes"
echo "machine: $(nproc) CPUs, $(uname -r), load $(cut -d" " -f1-3 /proc/loadavg); chronyd $("$CHRONYD" -v | head -1 | awk '{print $4}');" \
  "$("$ROUGH/roughenough-client" -V)"
