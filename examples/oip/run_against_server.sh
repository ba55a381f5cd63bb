#!/usr/bin/env bash
# Checks the Open Inference Protocol over HTTP and gRPC with the real
# third-party clients (tritonclient.http, tritonclient.grpc): a fresh serval-server on free loopback ports
# with a scratch registry, a small model trained with the `serval` CLI, the
# CLI's own Predict answer for some rows, then check_tritonclient.py.
# Exits with the check's status.
#
#   cargo build --bin serval-server --bin serval && examples/oip/run_against_server.sh
#
# Env: SERVAL_SERVER_BIN (default target/debug/serval-server) and SERVAL_BIN
# (default target/debug/serval), relative to the repository root; PYTHON
# (default python3).
set -euo pipefail
cd "$(dirname "$0")/../.."

server_bin="${SERVAL_SERVER_BIN:-target/debug/serval-server}"
cli_bin="${SERVAL_BIN:-target/debug/serval}"
for bin in "$server_bin" "$cli_bin"; do
  if [[ ! -x "$bin" ]]; then
    echo "FAIL: no binary at $bin (cargo build --bin serval-server --bin serval)" >&2
    exit 1
  fi
done

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"${PYTHON:-python3}" -m venv "$work/venv"
python="$work/venv/bin/python"
"$python" -m pip install --quiet --disable-pip-version-check -r examples/oip/requirements.txt

# Two free ports (gRPC and HTTP): bind to port 0 and let the kernel choose.
read -r grpc_port http_port < <("$python" -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')
address="127.0.0.1:$grpc_port"
http_address="127.0.0.1:$http_port"

"$server_bin" --listen "$address" --http-listen "$http_address" --database "$work/serval.db" \
  >"$work/server.log" 2>&1 &
server_pid=$!

# Wait (up to 30 s) until the HTTP endpoint says it is ready.
if ! "$python" - "$http_address" "$server_pid" <<'PY'
import os, sys, time, urllib.request
address, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)  # still running?
    except ProcessLookupError:
        sys.exit("server exited during start-up")
    try:
        with urllib.request.urlopen(f"http://{address}/v2/health/ready", timeout=1) as reply:
            if reply.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit(f"server not ready on {address} after 30 s")
PY
then
  echo "FAIL: serval-server did not start; its log:" >&2
  cat "$work/server.log" >&2
  exit 1
fi

# A small model (x decides the label; a categorical and a boolean column
# ride along), trained through gRPC by the CLI.
"$python" - "$work" <<'PY'
import sys
work = sys.argv[1]
with open(f"{work}/small.csv", "w") as f:
    f.write("id,x,colour,member,label\n")
    for i in range(200):
        x = (i * 37 % 200) / 10
        f.write(f"{i},{x},{['red', 'green', 'blue'][i % 3]},{'yes' if i % 4 == 0 else 'no'},{int(x > 10)}\n")
with open(f"{work}/rows.csv", "w") as f:
    f.write("x,colour,member\n")
    for i in range(40):
        f.write(f"{i * 0.55 - 1},{['red', 'green', 'blue', 'purple'][i % 4]},{'yes' if i % 3 == 0 else 'no'}\n")
PY
serval=("$cli_bin" --server "http://$address")
"${serval[@]}" train --model small --data "$work/small.csv" --label label --positive 1 \
  --drop id --boolean member --epochs 3 --hidden 8 >"$work/train.log"
"${serval[@]}" predict --model small --data "$work/rows.csv" --json >"$work/expected.json"

status=0
"$python" examples/oip/check_tritonclient.py "$http_address" "$work" "$address" || status=$?
if [[ $status -ne 0 ]]; then
  echo "check failed (exit $status); server log:" >&2
  tail -n 50 "$work/server.log" >&2
fi
exit "$status"
