#!/usr/bin/env bash
# Measures the Open Inference Protocol and trace context against serval.v1
# Predict, as docs/performance.md reports them: builds the release
# binaries, starts a server (gRPC and HTTP, no OTLP export) on a scratch
# registry, trains the online_shoppers model, and runs `serval bench` in
# alternating rounds:
#   - one-row calls at 256 callers: Predict against ModelInfer over gRPC,
#     with rows as dense rows (one FP32 tensor) and as columns;
#   - 64-row calls at 64 callers over HTTP/JSON (dense and columns), with
#     Predict's dense 64-row calls beside them;
#   - Predict with and without a `traceparent` on every call.
#   scripts/bench-protocols.sh [duration, default 5s] [rounds, default 3]
# Env: SERVAL_BENCH_PORT (gRPC; HTTP is the next port).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-5s}
rounds=${2:-3}
port=${SERVAL_BENCH_PORT:-50661}
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

bench() {
  local label=$1; shift
  bench_row $serval $server "$duration" "$label" --http-address 127.0.0.1:$http_port "$@"
}

bench_header
for round in $(seq "$rounds"); do
  for form in dense columns; do
    bench "serval $form" --model shoppers --protocol serval --form $form --data $data --concurrency 256
    bench "oip-grpc $form" --model shoppers --protocol oip-grpc --form $form --data $data --concurrency 256
  done
  # Each pair back to back: with a traceparent on every call, then without.
  bench "serval dense traceparent" --model shoppers --form dense --concurrency 256 --traceparent
  bench "serval dense no traceparent" --model shoppers --form dense --concurrency 256
  for form in dense columns; do
    bench "oip-http $form" --model shoppers --protocol oip-http --form $form --data $data \
      --concurrency 64 --rows-per-request 64
  done
  bench "serval dense" --model shoppers --form dense --concurrency 64 --rows-per-request 64
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# The comparisons as ratios of runs next to each other, round by round,
# with their medians.
PYTHONPATH=scripts python3 - "$scratch/runs.jsonl" <<'PY'
import statistics, sys
from bench_ratios import Runs, rounds
pick = Runs(sys.argv[1]).pick
for form in ("dense", "columns"):
    rounds(f"C=256 one-row, oip-grpc / serval, {form}", pick(f"oip-grpc {form}", 256), pick(f"serval {form}", 256), target=0.9)
rounds("C=256 one-row, serval dense with / without traceparent", pick("serval dense traceparent", 256), pick("serval dense no traceparent", 256))
for form in ("dense", "columns"):
    rows = [r["rows_per_s"] for r in pick(f"oip-http {form}", 64, 64)]
    print(f"64-row calls at C=64, oip-http {form}: median {statistics.median(rows):.0f} rows/s")
    rounds(f"64-row calls, oip-http {form} / serval dense rows/s", pick(f"oip-http {form}", 64, 64), pick("serval dense", 64, 64), "rows_per_s")
PY
