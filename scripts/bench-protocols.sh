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
data=examples/data/online_shoppers_intention.csv
scratch=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$scratch"' EXIT

cargo build --release --bin serval --bin serval-server >&2
serval=target/release/serval

target/release/serval-server --listen 127.0.0.1:$port --http-listen 127.0.0.1:$http_port \
  --database "$scratch/bench.db" >"$scratch/server.log" 2>&1 &
up=false
for _ in $(seq 100); do
  $serval --server $server models >/dev/null 2>&1 && { up=true; break; }
  sleep 0.1
done
$up || { echo "the server did not start: $(cat "$scratch/server.log")" >&2; exit 1; }
$serval --server $server train --model shoppers --data $data --label Revenue --positive TRUE --json >/dev/null

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# Prints one table row and keeps the run's JSON (labelled) for the summary.
bench() {
  local label=$1; shift
  $serval --server $server bench --duration "$duration" --json --http-address 127.0.0.1:$http_port "$@" | python3 -c "
import json, sys
j = json.load(sys.stdin)
j['label'] = '$label'
with open('$scratch/runs.jsonl', 'a') as runs:
    runs.write(json.dumps(j) + '\\n')
errors = ', '.join(f'{k} {v}' for k, v in j['errors'].items()) or 'none'
print(f\"| $label | {j['concurrency']} | {j['rows_per_request']} | {j['rps']:.0f} | {j['rows_per_s']:.0f} | {j['p50_ms']:.3f} | {j['p99_ms']:.3f} | {errors} |\")"
}

echo "| run | concurrency | rows/call | calls/s | rows/s | p50 ms | p99 ms | errors |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
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
python3 - "$scratch/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
def pick(label, concurrency, rows=1):
    return [r for r in runs if r["label"] == label
            and r["concurrency"] == concurrency and r["rows_per_request"] == rows]
def rounds(name, numerators, denominators, key="rps", target=None):
    ratios = [n[key] / d[key] for n, d in zip(numerators, denominators)]
    median = statistics.median(ratios)
    verdict = "" if target is None else (" met" if median >= target else f" below {target}x")
    print(f"{name}: " + ", ".join(f"{r:.2f}x" for r in ratios) + f" (median {median:.2f}x{verdict})")
for form in ("dense", "columns"):
    rounds(f"C=256 one-row, oip-grpc / serval, {form}", pick(f"oip-grpc {form}", 256), pick(f"serval {form}", 256), target=0.9)
rounds("C=256 one-row, serval dense with / without traceparent", pick("serval dense traceparent", 256), pick("serval dense no traceparent", 256))
for form in ("dense", "columns"):
    rows = [r["rows_per_s"] for r in pick(f"oip-http {form}", 64, 64)]
    print(f"64-row calls at C=64, oip-http {form}: median {statistics.median(rows):.0f} rows/s")
    rounds(f"64-row calls, oip-http {form} / serval dense rows/s", pick(f"oip-http {form}", 64, 64), pick("serval dense", 64, 64), "rows_per_s")
PY
