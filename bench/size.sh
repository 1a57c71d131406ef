#!/usr/bin/env bash
# Flash added by each part of the core to a Cortex-M firmware, and the budgets it must meet.
#
# Method: bench/size-fw is a bare firmware (two-word vector table, no runtime) built with
# opt-level "s", fat LTO, one codegen unit and panic abort; each cumulative feature links one
# more part of the core and drives it with inputs the optimiser cannot see. "Flash added" is
# (.text + .rodata + .data + vector table) of the variant minus that of the empty firmware,
# read with llvm-size (or arm-none-eabi-size).
#
# Budgets (thumbv7em-none-eabihf, Cortex-M4F, the target the budgets were set on):
#   SNTP, one server                     <= 3080 B  (coreSNTP, client + serializer, same method)
#   SNTP + 4 servers + decide + trust    <  8 KiB
#   NTS over that                        < 12 KiB more
#   Roughtime (compact-crypto) over NTS  < 20 KiB more
# thumbv6m-none-eabi (Cortex-M0: Thumb-1, no divide instruction) is measured and printed; its
# figures are larger and carry no budget.
#
# Stack: the "stack" variant puts each entry point a firmware calls behind a never-inlined
# `stack_*` function and is built with `-Z emit-stack-sizes` (RUSTC_BOOTSTRAP=1, the stable
# compiler); bench/stack.py adds each function's frame (.stack_sizes) along the deepest path of
# the call graph (llvm-objdump). Budget, on both targets: select::decide over 4 sources
# <= 512 B.
#
# Usage: bench/size.sh          exit 1 when a budget is exceeded
set -euo pipefail
cd "$(dirname "$0")/.."
FW=bench/size-fw
TD="$(pwd)/target/size-fw"
SIZE=$(command -v llvm-size || command -v arm-none-eabi-size || true)
[ -n "$SIZE" ] || { echo "size.sh: llvm-size or arm-none-eabi-size is needed" >&2; exit 2; }

variants=(empty sntp consensus trust nts roughtime ffi)
declare -A label=(
  [sntp]="SNTP client, one server"
  [consensus]="+ 4 servers and select::decide"
  [trust]="+ trust state machine"
  [nts]="+ NTS (KE records, AES-SIV-CMAC)"
  [roughtime]="+ Roughtime (Ed25519, SHA-512 compact)"
  [ffi]="the whole C API (8 servers, consensus, trust, save/restore)"
)

flash() { # target feature -> bytes of flash
  local t=$1 f=$2 feat=()
  [ "$f" = empty ] || feat=(--features "$f")
  (cd "$FW" && cargo build --release --locked -q --target "$t" --target-dir "$TD" "${feat[@]}")
  "$SIZE" -A "$TD/$t/release/trusttime-size-fw" |
    awk '$1 ~ /^\.(vector_table|text|rodata|data)$/ { s += $2 } END { print s }'
}

declare -A added
for t in thumbv7em-none-eabihf thumbv6m-none-eabi; do
  declare -A bytes=()
  for v in "${variants[@]}"; do bytes[$v]=$(flash "$t" "$v"); done
  for v in "${variants[@]}"; do added[$t.$v]=$(( bytes[$v] - bytes[empty] )); done
done

m4=thumbv7em-none-eabihf; m0=thumbv6m-none-eabi
echo "| what | flash added, Cortex-M4F | flash added, Cortex-M0 |"
echo "|---|---:|---:|"
for v in sntp consensus trust nts roughtime ffi; do
  echo "| ${label[$v]} | ${added[$m4.$v]} B | ${added[$m0.$v]} B |"
done

fail=0
check() { # what measured budget op
  local what=$1 got=$2 budget=$3 op=$4 ok
  if [ "$op" = le ]; then ok=$(( got <= budget )); else ok=$(( got < budget )); fi
  if [ "$ok" = 1 ]; then
    echo "budget ok:       $what: $got B (budget $( [ "$op" = le ] && echo '<=' || echo '<' ) $budget B)"
  else
    echo "BUDGET EXCEEDED: $what: $got B (budget $( [ "$op" = le ] && echo '<=' || echo '<' ) $budget B)"
    fail=1
  fi
}
echo
check "SNTP, one server (M4F)" "${added[$m4.sntp]}" 3080 le
check "SNTP + 4 servers + decide + trust (M4F)" "${added[$m4.trust]}" 8192 lt
check "NTS over that (M4F)" $(( added[$m4.nts] - added[$m4.trust] )) 12288 lt
check "Roughtime over NTS (M4F)" $(( added[$m4.roughtime] - added[$m4.nts] )) 20480 lt

# Worst-case stack per entry point (static: frames along the deepest call path).
entries=(stack_decide_4 stack_ntp_poll_transmit stack_ntp_handle_datagram
  stack_trust_on_consensus stack_system_on_consensus stack_nts_parse_ke_response_into
  stack_nts_session_reset stack_nts_seal_request stack_nts_open_reply)
declare -A stack slabel=(
  [stack_decide_4]="select::decide, 4 sources"
  [stack_ntp_poll_transmit]="NtpClient::poll_transmit"
  [stack_ntp_handle_datagram]="NtpClient::handle_datagram + take_sample"
  [stack_trust_on_consensus]="TrustMachine::on_consensus"
  [stack_system_on_consensus]="System::on_consensus"
  [stack_nts_parse_ke_response_into]="nts::parse_ke_response_into"
  [stack_nts_session_reset]="NtsSession::reset"
  [stack_nts_seal_request]="NtsSession::seal_request"
  [stack_nts_open_reply]="NtsSession::open_reply"
)
for t in "$m4" "$m0"; do
  (cd "$FW" && RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Z emit-stack-sizes" cargo build --release --locked -q \
    --target "$t" --target-dir "$TD/stack" --features stack)
  out=$(python3 bench/stack.py "$TD/stack/$t/release/trusttime-size-fw" "${entries[@]}") || {
    echo "$out"; echo "size.sh: the stack bound does not hold on $t (see above)" >&2; exit 1; }
  while read -r fn bytes path; do
    stack[$t.$fn]=$bytes
    [ "$t" = "$m4" ] || continue
    [ -z "${SIZE_SH_PATHS:-}" ] || echo "  $fn: $path" >&2
  done <<<"$out"
done
echo
echo "| entry point (worst-case stack) | Cortex-M4F | Cortex-M0 |"
echo "|---|---:|---:|"
for e in "${entries[@]}"; do
  echo "| ${slabel[$e]} | ${stack[$m4.$e]} B | ${stack[$m0.$e]} B |"
done
echo
check "select::decide, 4 sources, stack (M4F)" "${stack[$m4.stack_decide_4]}" 512 le
check "select::decide, 4 sources, stack (M0)" "${stack[$m0.stack_decide_4]}" 512 le
exit $fail
