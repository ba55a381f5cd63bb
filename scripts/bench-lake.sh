#!/usr/bin/env bash
# Measures training from Parquet at data-lake scale within --training-memory,
# for docs/performance.md "Larger data": builds the release binaries and the
# generator (model/examples/lake_parquet.rs), writes ROWS generated rows of
# 30 columns (29 features and a label) to $SERVAL_BENCH_DATA (not
# committed; reused when present), starts a server with
# --training-memory $SERVAL_BENCH_MEMORY (1GiB) and trains the file as a
# server-side source (`serval train --source file://…`) for EPOCHS epochs.
# Prints the wall time, the server's peak RSS (VmHWM from /proc), each
# epoch's seconds and rows/s, and where the time went (the server's log of
# its phases: census, sample, encoder fit, decode, encode; reading rows,
# forward and backward, out-of-fold scoring, importance).
# SERVAL_BENCH_DEVICE (cpu) is the server's --device: with `cuda` or
# `cuda:N` the binaries are built with `--features cuda` (needs the CUDA
# toolkit) and training's matrix products run on that GPU.
#   scripts/bench-lake.sh [ROWS, default 1000000] [EPOCHS, default 3]
#   SERVAL_BENCH_DEVICE=cuda scripts/bench-lake.sh 10000000 3
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000}
epochs=${2:-3}
memory=${SERVAL_BENCH_MEMORY:-1GiB}
device=${SERVAL_BENCH_DEVICE:-cpu}
port=${SERVAL_BENCH_PORT:-50653}
data=${SERVAL_BENCH_DATA:-/tmp/serval-lake}
server=http://127.0.0.1:$port
scratch=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$scratch"' EXIT

# SERVAL_BENCH_PROFILE=debug checks the script itself quickly; figures come
# from release builds.
profile=${SERVAL_BENCH_PROFILE:-release}
flag=$([ "$profile" = release ] && echo --release || true)
features=$(case "$device" in cuda*) echo "--features cuda" ;; esac)
cargo build $flag $features --bin serval --bin serval-server >&2
# The generator's own speed is not measured: a dev build will do.
cargo build -p serval-model --example lake_parquet >&2
bin=target/$profile
mkdir -p "$data"
file="$data/lake-$rows.parquet"
if [ ! -f "$file" ]; then
  echo "writing $rows rows to $file" >&2
  target/debug/examples/lake_parquet "$rows" "$file.partial"
  mv "$file.partial" "$file"
fi

$bin/serval-server --listen 127.0.0.1:$port --http-listen off \
  --database "$scratch/bench.db" --training-memory "$memory" \
  --device "$device" --data-source-allow "file://$data/" >"$scratch/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do $bin/serval --server $server models >/dev/null 2>&1 && break; sleep 0.1; done

start=$(date +%s.%N)
$bin/serval --server $server train --model lake --source "file://$file" \
  --label label --positive 1 --epochs "$epochs" --patience 0 --json >"$scratch/version.json"
end=$(date +%s.%N)
peak=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)

echo "rows: $rows, file: $(du -m "$file" | cut -f1) MiB, --training-memory $memory, --device $device, $(nproc) cores"
echo "wall time: $(echo "$end - $start" | bc) s; server peak RSS: $((peak / 1024)) MiB"
sed 's/\x1b\[[0-9;]*m//g' "$scratch/server.log" >"$scratch/plain.log"
tail -n 1 "$scratch/version.json" | python3 -c "
import json, re, sys
v = json.load(sys.stdin)
d = v['dataset']
print('dataset:', {k: d.get(k) for k in ('rows', 'train_rows', 'validation_rows', 'streamed')})
print('validation AUC %.4f, test AUC %.4f' % (v['metrics']['auc'], v['test_metrics']['auc']))
last = 0.0
for line in open('$scratch/plain.log'):
    if 'epoch ended' not in line:
        continue
    epoch = int(re.search(r'epoch=(\d+)', line).group(1))
    elapsed = float(re.search(r'elapsed_seconds=([0-9.]+)', line).group(1))
    print('epoch %d: %.1f s, %.0f rows/s (learning, then scoring %d rows out of fold)'
          % (epoch, elapsed - last, d['train_rows'] / (elapsed - last), d['validation_rows']))
    last = elapsed
"
grep -o 'phases=.*' "$scratch/plain.log"
