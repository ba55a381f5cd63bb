#!/usr/bin/env bash
# Measures the predict path as README "Performance" reports it: builds the
# release binaries, starts a batched and an unbatched server on scratch
# registries, trains the online_shoppers model on each, and runs
# `serval bench` for each comparison.
#   scripts/bench-predict.sh [duration, default 10s]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
port=${SERVAL_BENCH_PORT:-50651}
metrics_port=$((port + 1))
unbatched_port=$((port + 2))
server=http://127.0.0.1:$port
unbatched=http://127.0.0.1:$unbatched_port
scratch=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$scratch"' EXIT

cargo build --release --bin serval --bin serval-server >&2
serval=target/release/serval

# Two servers side by side, batched and unbatched (--max-batch-rows 1), each
# with its own scratch registry and the same model: only the one being
# measured is busy, and the comparisons alternate between them.
start_server() {
  local name=$1 listen=$2; shift 2
  target/release/serval-server --listen "$listen" --database "$scratch/$name.db" "$@" \
    >"$scratch/$name.log" 2>&1 &
  local up=false
  for _ in $(seq 50); do
    $serval --server "http://$listen" models >/dev/null 2>&1 && { up=true; break; }
    sleep 0.1
  done
  $up || { echo "the $name server did not start: $(cat "$scratch/$name.log")" >&2; exit 1; }
  $serval --server "http://$listen" train --model shoppers --data examples/data/online_shoppers_intention.csv \
    --label Revenue --positive TRUE --json >/dev/null
}

# Prints one table row and keeps the run's JSON (labelled) for the summary.
bench() {
  local label=$1 target=$2; shift 2
  $serval --server "$target" bench --duration "$duration" --json "$@" | python3 -c "
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

start_server batched 127.0.0.1:$port --metrics-listen 127.0.0.1:$metrics_port
start_server unbatched 127.0.0.1:$unbatched_port --max-batch-rows 1

echo "| run | concurrency | rows/request | requests/s | rows/s | p50 ms | p99 ms | errors |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
# Every comparison alternates three times: the load generator and the
# server share the machine's cores, and one run can land on a noisy moment
# that the run it is compared with does not see.
for round in 1 2 3; do
  bench "empty RPC (health)" $server --rpc health --concurrency 256
  bench "batched" $server --model shoppers --concurrency 256
  bench "unbatched (--max-batch-rows 1)" $unbatched --model shoppers --concurrency 256
done
for c in 1 16; do
  for round in 1 2 3; do
    bench "batched" $server --model shoppers --concurrency $c
    bench "unbatched (--max-batch-rows 1)" $unbatched --model shoppers --concurrency $c
  done
done
bench "batched" $server --model shoppers --concurrency 64 --rows-per-request 64
bench "overload" $server --model shoppers --concurrency 4096
bench "overload" $server --model shoppers --concurrency 4096 --rows-per-request 16
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
python3 - "$scratch/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
def pick(label, concurrency, rows=1):
    return [r for r in runs if r["label"].startswith(label)
            and r["concurrency"] == concurrency and r["rows_per_request"] == rows]
def rounds(name, numerators, denominators):
    ratios = [n["rps"] / d["rps"] for n, d in zip(numerators, denominators)]
    print(f"{name}, round by round: " + ", ".join(f"{r:.2f}x" for r in ratios)
          + f" (median {statistics.median(ratios):.2f}x)")
batched = pick("batched", 256)
rounds("256 one-row callers, batched / empty RPC", batched, pick("empty RPC", 256))
rounds("256 one-row callers, batched / unbatched", batched, pick("unbatched", 256))
for c in (1, 16):
    b, u = pick("batched", c), pick("unbatched", c)
    rounds(f"concurrency {c}, batched / unbatched", b, u)
    p50 = statistics.median(x["p50_ms"] - y["p50_ms"] for x, y in zip(b, u))
    print(f"concurrency {c}, p50 batched minus unbatched: median {p50:+.3f} ms")
wide = pick("batched", 64, 64)[0]["rows_per_s"]
print(f"64-row requests: {wide / statistics.median(b['rows_per_s'] for b in batched):.1f}x the rows/s of one-row requests")
PY
