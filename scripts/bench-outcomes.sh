#!/usr/bin/env bash
# Measures what outcome tracking costs, as docs/performance.md reports it:
# Predict throughput with --outcome-tracking on and off (one-row calls as
# records at 256 callers, in alternating rounds, each server on the same
# registry file), ReportOutcomes rows/s (`serval outcomes` uploading the ids
# of `serval predict --ids`), and memory per tracked prediction (server
# RSS, tracking on against off, after the same runs).
#   scripts/bench-outcomes.sh [duration, default 10s] [rounds, default 3]
# Env: SERVAL_BENCH_PROFILE: release (default) or dev (the test profile's
# binaries, for a quick relative figure); SERVAL_BENCH_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
rounds=${2:-3}
port=${SERVAL_BENCH_PORT:-50751}
data=examples/data/online_shoppers_intention.csv
scratch=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$scratch"' EXIT

if [ "${SERVAL_BENCH_PROFILE:-release}" = dev ]; then
  cargo build --bin serval --bin serval-server >&2
  bin=target/debug
else
  cargo build --release --bin serval --bin serval-server >&2
  bin=target/release
fi
serval=$bin/serval

# start NAME TRACKING PORT: a server on the shared scratch registry.
start() {
  $bin/serval-server --listen 127.0.0.1:$3 --database "$scratch/bench.db" --http-listen off \
    --metrics-listen 127.0.0.1:$(($3 + 1)) --outcome-tracking $2 >"$scratch/$1.log" 2>&1 &
  echo $! >"$scratch/$1.pid"
  for _ in $(seq 100); do
    $serval --server http://127.0.0.1:$3 models >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the $1 server did not start: $(cat "$scratch/$1.log")" >&2
  exit 1
}
on=http://127.0.0.1:$port
off=http://127.0.0.1:$((port + 2))
start on on $port
$serval --server $on train --model shoppers --data $data --label Revenue --positive TRUE --json >/dev/null
start off off $((port + 2))

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
bench() {
  local label=$1; shift
  $serval --server "$1" bench --duration "$duration" --json --model shoppers --form records --data $data \
    --concurrency 256 | python3 -c "
import json, sys
j = json.load(sys.stdin)
errors = ', '.join(f'{k} {v}' for k, v in j['errors'].items()) or 'none'
print(f\"| $label | {j['rps']:.0f} | {j['p50_ms']:.3f} | {j['p99_ms']:.3f} | {errors} |\")"
}
echo "| tracking | calls/s (1 row) | p50 ms | p99 ms | errors |"
echo "| --- | ---: | ---: | ---: | --- |"
for round in $(seq "$rounds"); do
  bench on $on
  bench off $off
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

rss() { awk '/VmRSS/ {print $2}' /proc/$(cat "$scratch/$1.pid")/status; }
tracked=$(curl -s http://127.0.0.1:$((port + 1))/metrics | awk '/^serval_tracked_predictions / {print $2}')
rss_on=$(rss on)
rss_off=$(rss off)
echo "tracked predictions: $tracked; RSS on $((rss_on / 1024)) MiB, off $((rss_off / 1024)) MiB:" \
  "$(( (rss_on - rss_off) * 1024 / tracked )) bytes per tracked prediction"

# ReportOutcomes: the ids of every row of the file, with its real label,
# ten times over (the first time matched, then duplicates: the same lookup).
$serval --server $on predict --model shoppers --data $data --ids >"$scratch/scored.csv"
python3 - "$data" "$scratch/scored.csv" "$scratch/outcomes.csv" <<'PY'
import csv, sys
labels = [row["Revenue"] == "TRUE" for row in csv.DictReader(open(sys.argv[1]))]
ids = [row["prediction_id"] for row in csv.DictReader(open(sys.argv[2]))]
with open(sys.argv[3], "w") as out:
    out.write("prediction_id,label\n")
    for _ in range(10):
        for id, label in zip(ids, labels):
            out.write(f"{id},{int(label)}\n")
PY
rows=$(($(wc -l <"$scratch/outcomes.csv") - 1))
started=$(date +%s.%N)
$serval --server $on outcomes --data "$scratch/outcomes.csv" --batch-rows 10000
ended=$(date +%s.%N)
python3 -c "print(f'ReportOutcomes: {$rows} rows in {$ended - $started:.2f} s: {$rows / ($ended - $started):.0f} rows/s (CLI: CSV read, batches of 10 000, one connection)')"
