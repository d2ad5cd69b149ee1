#!/usr/bin/env bash
# The demo on a fresh machine: installs and builds what it needs (scripts/setup.sh), starts the
# local cluster and brokers, runs smoke Jobs and then every example DAG end to end through a real
# Airflow (api-server, scheduler, triggerer, dag-processor), and stops everything it started.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=$("$ROOT/scripts/setup.sh" | tail -n 1)
export PATH="$VENV/bin:$PATH"
CACHE=${BATCHJOB_CACHE:-$HOME/.cache/airflow-batchjob}
export BATCHJOB_CLUSTER_DIR="$CACHE/clusters/demo-$$"
trap 'python -m localcluster down --dir "$BATCHJOB_CLUSTER_DIR"' EXIT
python -m localcluster up --dir "$BATCHJOB_CLUSTER_DIR" >/dev/null
# shellcheck disable=SC1091
source "$BATCHJOB_CLUSTER_DIR/cluster.env"
echo "== smoke Jobs (plain kubernetes client)"
python -m localcluster.smoke
echo "== example DAGs through Airflow's scheduler and triggerer"
python -m localcluster.demo
