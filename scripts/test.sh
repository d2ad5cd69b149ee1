#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs and builds what it needs (scripts/setup.sh),
# runs ruff and mypy, starts the local cluster and brokers, runs pytest, stops everything.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -k naming).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=$("$ROOT/scripts/setup.sh" | tail -n 1)
export PATH="$VENV/bin:$PATH"

echo "== ruff, mypy" >&2
ruff check .
ruff format --check .
mypy

CACHE=${BATCHJOB_CACHE:-$HOME/.cache/airflow-batchjob}
export BATCHJOB_CLUSTER_DIR="$CACHE/clusters/test-$$"
trap 'python -m localcluster down --dir "$BATCHJOB_CLUSTER_DIR"' EXIT
echo "== starting the local cluster in $BATCHJOB_CLUSTER_DIR" >&2
python -m localcluster up --dir "$BATCHJOB_CLUSTER_DIR" >/dev/null
echo "== pytest" >&2
python -m pytest -p no:cacheprovider -q -rfEs --durations=15 "${@:-tests}"
