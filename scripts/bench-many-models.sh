#!/usr/bin/env bash
# Many loaded versions, as docs/performance.md reports them: registers N
# small models (tiny-1 … tiny-N, one version each) in a scratch registry,
# then, for each server binary given, starts it on that registry and
# measures the time until it serves (it loads every version that serves
# traffic before it does), its threads and RSS, and Predict at 64 callers
# spread evenly over the N models and concentrated on one, in alternating
# rounds.
#   scripts/bench-many-models.sh [N, default 1000] [duration, default 10s] [rounds, default 3]
# Env: SERVAL_SERVER_BEFORE, a second server binary to compare (e.g. one
# built from an earlier commit); SERVAL_BENCH_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-1000}
duration=${2:-10s}
rounds=${3:-3}
port=${SERVAL_BENCH_PORT:-50671}
server=http://127.0.0.1:$port
scratch=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$scratch"' EXIT

cargo build --release --bin serval --bin serval-server >&2
serval=target/release/serval
declare -A binaries=([after]=target/release/serval-server)
order=(after)
if [[ -n "${SERVAL_SERVER_BEFORE:-}" ]]; then
  binaries[before]=$SERVAL_SERVER_BEFORE
  order=(before after)
fi

# A small dataset: a number, a category and a boolean, 200 rows.
python3 - "$scratch/tiny.csv" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("x,colour,member,label\n")
    for i in range(200):
        x = (i * 37 % 200) / 10
        f.write(f"{x},{['red', 'green', 'blue'][i % 3]},{'yes' if i % 4 == 0 else 'no'},{int(x > 10)}\n")
PY

# Starts binary $1 on the scratch registry (its pid in $server_pid) and
# sets $up to the seconds until it served.
start() {
  local started
  started=$(date +%s.%N)
  "$1" --listen 127.0.0.1:$port --database "$scratch/many.db" --max-training-jobs 4 \
    >"$scratch/server.log" 2>&1 &
  server_pid=$!
  until $serval --server $server models >/dev/null 2>&1; do
    kill -0 $server_pid 2>/dev/null || { echo "server exited: $(cat "$scratch/server.log")" >&2; exit 1; }
    sleep 0.05
  done
  up=$(python3 -c "print(f'{$(date +%s.%N) - $started:.1f}')")
}
stop() {
  kill $server_pid
  wait $server_pid 2>/dev/null || true
}

echo "registering $count models…" >&2
start "${binaries[after]}"
seq 1 "$count" | xargs -P 4 -I{} $serval --server $server train --model tiny-{} \
  --data "$scratch/tiny.csv" --label label --positive 1 --epochs 3 --json >/dev/null
stop

memory() { # threads, RSS MiB
  echo "$(ls /proc/$server_pid/task | wc -l) $(awk '/VmRSS/ {printf "%.0f", $2 / 1024}' /proc/$server_pid/status)"
}
bench() {
  $serval --server $server bench --duration "$duration" --json --concurrency 64 --form dense "$@" |
    python3 -c "import json,sys; j=json.load(sys.stdin); print(f\"{j['rps']:.0f} {j['p50_ms']:.3f} {j['p99_ms']:.3f} {sum(j['errors'].values())}\")"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "| server | round | start-up s (loads $count) | threads | RSS MiB | spread: calls/s | p50 ms | p99 ms | one model: calls/s | p50 ms | p99 ms | threads, RSS MiB after |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
for round in $(seq "$rounds"); do
  for name in "${order[@]}"; do
    start "${binaries[$name]}"
    read -r threads rss <<<"$(memory)"
    read -r s_rps s_p50 s_p99 s_err <<<"$(bench --model tiny --spread "$count")"
    read -r o_rps o_p50 o_p99 o_err <<<"$(bench --model tiny-1)"
    read -r threads_after rss_after <<<"$(memory)"
    errors=$((s_err + o_err))
    [[ $errors -eq 0 ]] || echo "$name round $round: $errors failed calls" >&2
    echo "| $name | $round | $up | $threads | $rss | $s_rps | $s_p50 | $s_p99 | $o_rps | $o_p50 | $o_p99 | $threads_after, $rss_after |"
    stop
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
