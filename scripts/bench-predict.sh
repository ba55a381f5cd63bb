#!/usr/bin/env bash
# Measures the predict path as README "Performance" reports it: builds the
# release binaries, starts a server on a scratch registry, trains the
# online_shoppers model, and runs `serval bench` for each comparison.
#   scripts/bench-predict.sh [duration, default 10s]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
port=${SERVAL_BENCH_PORT:-50651}
metrics_port=$((port + 1))
server=http://127.0.0.1:$port
scratch=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$scratch"' EXIT

cargo build --release --bin serval --bin serval-server >&2
serval=target/release/serval

start_server() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  target/release/serval-server --listen 127.0.0.1:$port --metrics-listen 127.0.0.1:$metrics_port \
    --database "$scratch/bench.db" "$@" >"$scratch/server.log" 2>&1 &
  for _ in $(seq 50); do $serval --server $server models >/dev/null 2>&1 && return; sleep 0.1; done
  echo "server did not start" >&2; exit 1
}

# Prints one table row and keeps the run's JSON (labelled) for the summary.
bench() {
  local label=$1; shift
  $serval --server $server bench --duration "$duration" --json "$@" | python3 -c "
import json, sys
j = json.load(sys.stdin)
j['label'] = '$label'
with open('$scratch/runs.jsonl', 'a') as runs:
    runs.write(json.dumps(j) + '\\n')
errors = ', '.join(f'{k} {v}' for k, v in j['errors'].items()) or 'none'
if j.get('error_p50_ms') is not None:
    errors += f' (answered in p50 {j[\"error_p50_ms\"]:.1f} ms)'
print(f\"| $label | {j['concurrency']} | {j['rows_per_request']} | {j['rps']:.0f} | {j['rows_per_s']:.0f} | {j['p50_ms']:.3f} | {j['p99_ms']:.3f} | {errors} |\")"
}

start_server
$serval --server $server train --model shoppers --data examples/data/online_shoppers_intention.csv \
  --label Revenue --positive TRUE --json >/dev/null

echo "| run | concurrency | rows/request | requests/s | rows/s | p50 ms | p99 ms | errors |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
# The empty-RPC comparison alternates three times: the load generator and
# the server share the machine's cores, and one pair of runs can land on a
# noisy moment for one side only.
for round in 1 2 3; do
  bench "empty RPC (health)" --rpc health --concurrency 256
  bench "batched" --model shoppers --concurrency 256
done
for c in 1 16; do bench "batched" --model shoppers --concurrency $c; done
bench "batched" --model shoppers --concurrency 64 --rows-per-request 64
bench "overload" --model shoppers --concurrency 4096
bench "overload" --model shoppers --concurrency 4096 --rows-per-request 16
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
start_server --max-batch-rows 1
for c in 1 16 256; do bench "unbatched (--max-batch-rows 1)" --model shoppers --concurrency $c; done

# The targets as ratios, from the runs above.
python3 - "$scratch/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
def pick(label, concurrency, rows=1):
    return [r for r in runs if r["label"].startswith(label)
            and r["concurrency"] == concurrency and r["rows_per_request"] == rows]
empty, batched = pick("empty RPC", 256), pick("batched", 256)
pairs = [b["rps"] / e["rps"] for e, b in zip(empty, batched)]
print(f"256 one-row callers, batched / empty RPC, round by round: "
      + ", ".join(f"{p:.2f}x" for p in pairs) + f" (median {statistics.median(pairs):.2f}x)")
unbatched = pick("unbatched", 256)[0]["rps"]
print(f"256 one-row callers, batched / unbatched: {statistics.median(b['rps'] for b in batched) / unbatched:.2f}x")
for c in (1, 16):
    b, u = pick("batched", c)[0], pick("unbatched", c)[0]
    print(f"concurrency {c}, batched / unbatched: {b['rps'] / u['rps']:.2f}x, "
          f"p50 {b['p50_ms']:.3f} against {u['p50_ms']:.3f} ms")
wide = pick("batched", 64, 64)[0]["rows_per_s"]
print(f"64-row requests: {wide / statistics.median(b['rows_per_s'] for b in batched):.1f}x the rows/s of one-row requests")
PY
