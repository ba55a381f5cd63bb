# What the benchmark scripts share: a scratch folder, a server waited for,
# the shoppers model trained, and `serval bench` runs kept for the summary.
# Sourced (`. scripts/lib-bench.sh`) from the repository root by scripts
# that set `set -euo pipefail` first; it sets $scratch and $data.

data=examples/data/online_shoppers_intention.csv
scratch=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$scratch"' EXIT

# wait_for_server SERVAL URL PID LOG: returns once the server at URL answers
# `serval models`; stops the script, showing LOG, if process PID exits or
# ten seconds pass first.
wait_for_server() {
  local serval=$1 url=$2 pid=$3 log=$4
  for _ in $(seq 100); do
    "$serval" --server "$url" models >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "the server at $url did not start: $(cat "$log")" >&2
  exit 1
}

# train_shoppers SERVAL URL: registers the online_shoppers model as
# `shoppers`, the model every Predict benchmark calls.
train_shoppers() {
  "$1" --server "$2" train --model shoppers --data $data --label Revenue --positive TRUE --json >/dev/null
}

# bench_row SERVAL URL DURATION LABEL ARGS…: one `serval bench` run of
# DURATION with ARGS; prints it as a table row (see bench_header) and keeps
# its JSON, labelled, in $scratch/runs.jsonl for bench_ratios.py.
bench_row() {
  local serval=$1 url=$2 duration=$3 label=$4
  shift 4
  "$serval" --server "$url" bench --duration "$duration" --json "$@" |
    python3 scripts/bench_ratios.py row "$label" "$scratch/runs.jsonl"
}

bench_header() {
  echo "| run | concurrency | rows/call | calls/s | rows/s | p50 ms | p99 ms | errors |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
}
