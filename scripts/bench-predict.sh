#!/usr/bin/env bash
# Measures the predict path as docs/performance.md reports it: builds the
# release binaries, starts a server on a scratch registry, trains the
# online_shoppers model, and runs `serval bench` for each comparison: the
# empty call (`--rpc health`) against Predict with rows as records, as
# columns and as dense rows, one-row calls at 1, 16 and 256 callers and
# 64-row calls at 64 callers, in alternating rounds; then overload.
#   scripts/bench-predict.sh [duration, default 10s] [rounds, default 3]
# Env: SERVAL_SERVER_BIN, a server binary to measure instead of this
# checkout's (the client is always this checkout's); SERVAL_BENCH_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
rounds=${2:-3}
port=${SERVAL_BENCH_PORT:-50651}
metrics_port=$((port + 1))
server=http://127.0.0.1:$port
. scripts/lib-bench.sh

cargo build --release --bin serval --bin serval-server >&2
serval=target/release/serval
server_bin=${SERVAL_SERVER_BIN:-target/release/serval-server}

$server_bin --listen 127.0.0.1:$port --database "$scratch/bench.db" \
  --metrics-listen 127.0.0.1:$metrics_port >"$scratch/server.log" 2>&1 &
server_pid=$!
wait_for_server $serval $server $server_pid "$scratch/server.log"
train_shoppers $serval $server

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

bench() {
  bench_row $serval $server "$duration" "$@"
}

bench_header
# Every comparison alternates, round after round: the load generator and
# the server share the machine's cores, and one run can land on a noisy
# moment that the run it is compared with does not see.
for round in $(seq "$rounds"); do
  for c in 1 16 256; do
    bench "empty call (health)" --rpc health --concurrency $c
    bench "records" --model shoppers --form records --data $data --concurrency $c
    bench "columns" --model shoppers --form columns --data $data --concurrency $c
    bench "dense" --model shoppers --form dense --concurrency $c
  done
  for form in records columns dense; do
    bench "$form" --model shoppers --form $form --data $data --concurrency 64 --rows-per-request 64
  done
done
bench "overload" --model shoppers --form records --data $data --concurrency 4096
bench "overload" --model shoppers --form records --data $data --concurrency 4096 --rows-per-request 16
echo "server peak RSS: $(awk '/VmHWM/ {print $2 / 1024 " MiB"}' /proc/$server_pid/status), threads now: $(ls /proc/$server_pid/task | wc -l)" >&2
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# How long the server itself took to answer (from the call's start in the
# service to its answer) to refuse a call, from its Prometheus histogram:
# refusals only happen in the last run.
python3 - "$metrics_port" <<'PY'
import re, sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode()
buckets = {}
for labels, count in re.findall(r'^serval_predict_duration_seconds_bucket\{([^}]*)\} (\S+)$', text, re.M):
    labels = dict(re.findall(r'(\w+)="([^"]*)"', labels))
    le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
    buckets.setdefault(labels["code"], []).append((le, float(count)))
for code in ["RESOURCE_EXHAUSTED"]:
    rows = sorted(buckets.get(code, []))
    if not rows or rows[-1][1] == 0:
        continue
    total = rows[-1][1]
    quantile = lambda q: next(le for le, n in rows if n >= q * total)
    print(f"server-side Predict {code}: {int(total)} calls, p50 <= {quantile(0.5) * 1000:g} ms, "
          f"p99 <= {quantile(0.99) * 1000:g} ms", file=sys.stderr)
PY

# The targets as ratios of runs next to each other, round by round, with
# their medians.
PYTHONPATH=scripts python3 - "$scratch/runs.jsonl" <<'PY'
import statistics, sys
from bench_ratios import Runs, rounds
pick = Runs(sys.argv[1]).pick
health = {c: pick("empty call (health)", c) for c in (1, 16, 256)}
for c in (1, 16, 256):
    for form in ("records", "columns", "dense"):
        target = {(256, "records"): 0.8, (16, "records"): 0.6, (256, "dense"): 0.85}.get((c, form))
        rounds(f"C={c}, {form} / empty call", pick(form, c), health[c], target=target)
for form in ("records", "columns", "dense"):
    p50 = statistics.median(x["p50_ms"] - y["p50_ms"] for x, y in zip(pick(form, 1), health[1]))
    verdict = (" met" if p50 <= 0.08 else " above +0.08 ms") if form == "records" else ""
    print(f"C=1, {form} p50 minus the empty call's: median {p50:+.3f} ms{verdict}")
dense64 = pick("dense", 64, 64)
rounds("64-row calls, records / dense rows/s", pick("records", 64, 64), dense64, "rows_per_s", 0.6)
rounds("64-row calls, columns / dense rows/s", pick("columns", 64, 64), dense64, "rows_per_s", 0.9)
PY
