#!/usr/bin/env bash
# The floor lane's virtualenv: this checkout with exactly the oldest versions pyproject.toml allows
# (uv's lowest-direct resolution: our direct dependencies at their floors, the rest at their
# newest as of [tool.batchjob.floors] as-of in pyproject.toml), plus the test tools. Cached under ~/.cache/airflow-batchjob like the main venv, keyed by
# the dependency lists; it fails if any direct dependency did not land on its floor.
# Usage: FLOORS=$(scripts/floors.sh "$VENV" | tail -n 1)   ($VENV: the main venv, which has uv)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${BATCHJOB_CACHE:-$HOME/.cache/airflow-batchjob}
MAIN=${1:?usage: floors.sh MAIN_VENV}
UV="$MAIN/bin/uv"
PY="$MAIN/bin/python"
# The extras the lane needs: the queue patterns run in its DAG.
EXTRAS="rabbitmq,redis"

AS_OF=$("$PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["tool"]["batchjob"]["floors"]["as-of"])' \
  "$ROOT/pyproject.toml")
KEY=$("$PY" -c 'import json, sys, tomllib; p = tomllib.load(open(sys.argv[1], "rb"))["project"]
print(json.dumps([p["dependencies"], p.get("optional-dependencies", {}), sys.argv[2]], sort_keys=True))' \
  "$ROOT/pyproject.toml" "$AS_OF" | sha256sum | cut -c1-12)
VENV=$CACHE/venv-floors-$("$PY" -c 'import sys; print("py%d%d" % sys.version_info[:2])')-$KEY
if [[ ! -f $VENV/.complete ]]; then
  echo "floors: creating $VENV" >&2
  rm -rf "$VENV"
  "$UV" venv -q -p "$PY" "$VENV" >&2
  "$UV" pip install -q -p "$VENV/bin/python" --resolution lowest-direct --exclude-newer "$AS_OF" \
    -e "$ROOT[$EXTRAS]" >&2
  # The test tools at their newest; they must not move a floor (checked below).
  "$UV" pip install -q -p "$VENV/bin/python" "pytest>=8" "pytest-timeout>=2.3" "hypothesis>=6.100" >&2
  "$VENV/bin/python" "$ROOT/scripts/check_floors.py" "$ROOT/pyproject.toml" "$EXTRAS" >&2
  touch "$VENV/.complete"
fi
# shellcheck source=scripts/venvlib.sh
source "$ROOT/scripts/venvlib.sh"
refresh_editable "$VENV" "$UV" pip install -q -p "$VENV/bin/python" --no-deps -e "$ROOT"
compile_bytecode "$VENV"
echo "$VENV"
