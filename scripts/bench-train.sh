#!/usr/bin/env bash
# Measures training as a user sees it, for docs/performance.md "Training":
# builds the release binaries, starts a server on a scratch registry, and
# times the whole `serval train` command (upload, preparation, training,
# registration) on each example dataset with default settings, `runs` times
# each, printing the median wall time and the version's validation AUC and
# F1; then the same for two generated wide numeric tables (60 x 20,000 and
# 1,000 x 2,000 cells), whose cost must follow the number of cells.
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

# Wide numeric tables: values of 1-2 digits, a label that follows column 0.
wide() {
  python3 - "$1" "$2" "$3" <<'PY'
import random, sys
rows, columns, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
random.seed(7)
with open(path, "w") as f:
    f.write(",".join(f"x{c}" for c in range(columns)) + ",label\n")
    for r in range(rows):
        label = r % 2
        cells = [str(label * 5 + random.randrange(5))] + [str(random.randrange(100)) for _ in range(columns - 1)]
        f.write(",".join(cells) + f",{label}\n")
PY
}
wide 60 20000 "$scratch/wide-60x20000.csv"
wide 1000 2000 "$scratch/wide-1000x2000.csv"
train wide-60x20000 --data "$scratch/wide-60x20000.csv" --label label --positive 1
train wide-1000x2000 --data "$scratch/wide-1000x2000.csv" --label label --positive 1
