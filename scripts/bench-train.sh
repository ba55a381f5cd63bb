#!/usr/bin/env bash
# Measures training as a user sees it, for README "Training speed": builds
# the release binaries, starts a server on a scratch registry, and times the
# whole `serval train` command (upload, preparation, training, registration)
# on each example dataset with default settings, `runs` times each, printing
# the median wall time and the version's validation AUC and F1.
#   scripts/bench-train.sh [runs, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
port=${SERVAL_BENCH_PORT:-50652}
server=http://127.0.0.1:$port
scratch=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$scratch"' EXIT

cargo build --release --bin serval --bin serval-server >&2
serval=target/release/serval
target/release/serval-server --listen 127.0.0.1:$port --database "$scratch/bench.db" >"$scratch/server.log" 2>&1 &
for _ in $(seq 50); do $serval --server $server models >/dev/null 2>&1 && break; sleep 0.1; done

train() {
  local name=$1; shift
  local times=()
  local out
  for _ in $(seq "$runs"); do
    local start end
    start=$(date +%s.%N)
    out=$($serval --server $server train --model "$name" --json "$@")
    end=$(date +%s.%N)
    times+=("$(echo "$end - $start" | bc)")
  done
  local median
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "$out" | python3 -c "
import json, sys
v = json.load(sys.stdin)
m = v['metrics']
print(f\"| $name | {v['dataset']['rows']} | {float('$median'):.2f} s | {m['auc']:.4f} | {m['f1']:.3f} |\")"
}

echo "| dataset | rows | serval train wall time (median of $runs) | validation AUC | F1 at stored threshold |"
echo "| --- | ---: | ---: | ---: | ---: |"
train shoppers --data examples/data/online_shoppers_intention.csv --label Revenue --positive TRUE
train churn --data examples/data/Telco-Customer-Churn.csv --label Churn --positive Yes --drop customerID
train coupons --data examples/data/in-vehicle-coupon-recommendation.csv --label Y --positive 1
