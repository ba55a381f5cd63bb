#!/usr/bin/env bash
# Runs the Python example client against a fresh serval-server on a free
# loopback port with a scratch registry, and exits with the client's status.
#
#   cargo build --bin serval-server && examples/python/run_against_server.sh
#
# Env: SERVAL_SERVER_BIN (default target/debug/serval-server, relative to the
# repository root), PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/../.."

server_bin="${SERVAL_SERVER_BIN:-target/debug/serval-server}"
if [[ ! -x "$server_bin" ]]; then
  echo "FAIL: no server binary at $server_bin (cargo build --bin serval-server)" >&2
  exit 1
fi

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

# A virtualenv with grpcio, grpcio-tools and the health-checking stubs.
"${PYTHON:-python3}" -m venv "$work/venv"
python="$work/venv/bin/python"
"$python" -m pip install --quiet --disable-pip-version-check -r examples/python/requirements.txt

# A free port: bind to port 0 and let the kernel choose.
port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
address="127.0.0.1:$port"

"$server_bin" --listen "$address" --http-listen off --database "$work/serval.db" >"$work/server.log" 2>&1 &
server_pid=$!

# Wait (up to 30 s) until the standard gRPC health service answers SERVING.
if ! "$python" - "$address" "$server_pid" <<'PY'
import os, sys, time
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

address, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 30
with grpc.insecure_channel(address) as channel:
    health = health_pb2_grpc.HealthStub(channel)
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)  # still running?
        except ProcessLookupError:
            sys.exit("server exited during start-up")
        try:
            reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                sys.exit(0)
        except grpc.RpcError:
            pass
        time.sleep(0.2)
sys.exit(f"server not serving on {address} after 30 s")
PY
then
  echo "FAIL: serval-server did not start; its log:" >&2
  cat "$work/server.log" >&2
  exit 1
fi

status=0
SERVAL_SERVER="$address" "$python" examples/python/serval_client.py || status=$?
if [[ $status -ne 0 ]]; then
  echo "client failed (exit $status); server log:" >&2
  tail -n 50 "$work/server.log" >&2
fi
exit "$status"
