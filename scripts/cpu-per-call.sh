#!/usr/bin/env bash
# Server CPU per call, by request form: starts a release server on a
# scratch registry, trains online_shoppers, and for the empty call
# (`--rpc health`) and Predict with records, columns and dense rows runs
# `serval bench`, reading the server's user+system CPU time from
# /proc/PID/stat before and after; prints µs of server CPU per call and
# context switches per call. CPU per call is steadier than calls/s on a
# shared machine: it does not depend on how much of the cores the load
# generator got.
#   scripts/cpu-per-call.sh [concurrency, default 256] [duration, default 10s] [rows per call, default 1]
# Env: SERVAL_BENCH_PROTOCOLS (default "serval"; e.g. "serval oip-grpc" adds
# the Open Inference Protocol's ModelInfer with the same rows).
set -euo pipefail
cd "$(dirname "$0")/.."
concurrency=${1:-256}
duration=${2:-10s}
rows=${3:-1}
port=${SERVAL_BENCH_PORT:-50661}
server=http://127.0.0.1:$port
. scripts/lib-bench.sh

cargo build --release --bin serval --bin serval-server >&2
serval=target/release/serval
target/release/serval-server --listen 127.0.0.1:$port --http-listen off --database "$scratch/bench.db" \
  >"$scratch/server.log" 2>&1 &
pid=$!
wait_for_server $serval $server $pid "$scratch/server.log"
train_shoppers $serval $server

ticks=$(getconf CLK_TCK)
cpu() { awk -v t="$ticks" '{print ($14 + $15) / t}' /proc/$pid/stat; }
switches() { cat /proc/$pid/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; }
echo "| call | concurrency | rows/call | calls/s | server CPU µs/call | server context switches/call |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
run() {
  local label=$1; shift
  local c0 s0 out
  c0=$(cpu); s0=$(switches)
  # No warm-up: every call the server's CPU time covers is counted.
  out=$($serval --server $server bench --duration "$duration" --warmup 0s --concurrency "$concurrency" --json "$@")
  python3 - "$out" "$c0" "$(cpu)" "$s0" "$(switches)" "$label" "$concurrency" <<'PY'
import json, sys
j = json.loads(sys.argv[1])
c0, c1, s0, s1 = map(float, sys.argv[2:6])
calls = j["requests"]
print(f"| {sys.argv[6]} | {sys.argv[7]} | {j['rows_per_request']} | {j['rps']:.0f} | {(c1 - c0) / calls * 1e6:.1f} | {(s1 - s0) / calls:.2f} |")
PY
}
for round in 1 2; do
  run "empty call (health)" --rpc health
  for protocol in ${SERVAL_BENCH_PROTOCOLS:-serval}; do
    for form in records columns dense; do
      # The Open Inference Protocol has no records form.
      [[ $protocol != serval && $form == records ]] && continue
      extra=(--model shoppers --protocol "$protocol" --form $form --rows-per-request "$rows")
      [[ $form == dense ]] || extra+=(--data $data)
      label=$form
      [[ $protocol == serval ]] || label="$protocol $form"
      run "$label" "${extra[@]}"
    done
  done
done
