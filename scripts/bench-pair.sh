#!/usr/bin/env bash
# Two `serval bench` runs compared in many short back-to-back pairs, for
# ratios on a machine whose speed drifts within minutes: each pair sees the
# same moment, the order within a pair alternates, and the median of many
# pairs settles where three long rounds do not. Starts a release server (gRPC and HTTP) on a scratch
# registry with the shoppers model, then alternates A and B.
#   scripts/bench-pair.sh "A's bench options" "B's bench options" [duration, default 2s] [pairs, default 20] [target ratio]
#   scripts/bench-pair.sh "--protocol oip-grpc --form columns" "--protocol serval --form columns" 2s 80 0.9
# Every run adds --model shoppers --data (the shoppers CSV) --concurrency 256
# unless the options say otherwise (a later option wins). Prints each run
# as a table row, then every pair's ratio of calls/s, A over B ("A is 0.9x
# B"), their median and, from ten pairs on, their geometric mean with a 95 %
# bootstrap interval; a target ratio is met only when the whole interval is.
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1
b=$2
duration=${3:-2s}
pairs=${4:-20}
target=${5:-}
port=${SERVAL_BENCH_PORT:-50691}
http_port=$((port + 1))
server=http://127.0.0.1:$port
. scripts/lib-bench.sh

cargo build --release --bin serval --bin serval-server >&2
serval=target/release/serval
target/release/serval-server --listen 127.0.0.1:$port --http-listen 127.0.0.1:$http_port \
  --database "$scratch/bench.db" >"$scratch/server.log" 2>&1 &
wait_for_server $serval $server $! "$scratch/server.log"
train_shoppers $serval $server
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

defaults=(--model shoppers --data $data --concurrency 256 --http-address 127.0.0.1:$http_port)
bench_header
# Every other pair runs B first: the first run of a pair was measured ~5 %
# faster than the second, whichever it was, so a fixed order would lean.
for pair in $(seq "$pairs"); do
  order=(A B)
  ((pair % 2)) || order=(B A)
  for run in "${order[@]}"; do
    options=$a
    [[ $run == B ]] && options=$b
    # shellcheck disable=SC2086 # the options are words on purpose
    bench_row $serval $server "$duration" $run "${defaults[@]}" $options
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

PYTHONPATH=scripts python3 - "$scratch/runs.jsonl" "$a" "$b" "$target" <<'PY'
import sys
from bench_ratios import Runs, rounds
runs = Runs(sys.argv[1]).runs
pick = lambda label: [r for r in runs if r["label"] == label]
target = float(sys.argv[4]) if sys.argv[4] else None
rounds(f"A ({sys.argv[2]}) / B ({sys.argv[3]}), calls/s", pick("A"), pick("B"), target=target)
PY
