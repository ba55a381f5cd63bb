#!/usr/bin/env bash
# Held-out quality of Serval against LightGBM, CatBoost and logistic
# regression on the example datasets (see scripts/bench-quality.py).
# Makes a throwaway virtual environment (in $VENV if set and kept, otherwise
# a temporary folder removed at exit), installs the requirements from PyPI,
# and passes every argument on, e.g.
#   scripts/bench-quality.sh --serval-bin target/release --out /tmp/splits
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -n "${VENV:-}" ]; then
  venv=$VENV
else
  venv=$(mktemp -d)/venv
  trap 'rm -rf "$(dirname "$venv")"' EXIT
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements-bench-quality.txt"
"$venv/bin/python" "$here/bench-quality.py" "$@"
