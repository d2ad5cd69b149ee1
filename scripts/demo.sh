#!/usr/bin/env bash
# The demo on a fresh machine: installs and builds what it needs (scripts/setup.sh), starts the
# local cluster and brokers, runs smoke Jobs and then every example DAG end to end through a real
# Airflow (api-server, scheduler, triggerer, dag-processor), and stops everything it started.
# `scripts/demo.sh --profile ha` runs the DAGs on the production profile (PostgreSQL, Celery with
# two workers, two triggerers) instead of LocalExecutor on SQLite.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=$("$ROOT/scripts/setup.sh" | tail -n 1)
export PATH="$VENV/bin:$PATH"
# shellcheck source=scripts/node.sh
source "$ROOT/scripts/node.sh"
CACHE=${BATCHJOB_CACHE:-$HOME/.cache/airflow-batchjob}
python -m localcluster.stale "$CACHE/clusters"  # what runs killed from outside left
export BATCHJOB_CLUSTER_DIR="$CACHE/clusters/demo-$$"
trap 'python -m localcluster down --dir "$BATCHJOB_CLUSTER_DIR"' EXIT
# Pods run as real containers (kubelet + containerd) where the machine can run them, else under
# the node agent; BATCHJOB_NODE=agent chooses the agent.
node=agent
if [[ ${BATCHJOB_NODE:-real} == real ]]; then
  if why=$(real_node_why) && [[ -z $why ]]; then
    node=real
  else
    echo "== no real node here ($why): Pods run under the node agent"
  fi
fi
if ! python -m localcluster up --node "$node" --dir "$BATCHJOB_CLUSTER_DIR" >/dev/null; then
  [[ $node == real ]] || exit 1
  echo "== THE REAL NODE DID NOT START: the demo runs on the node agent. Its logs:"
  tail -n 20 "$BATCHJOB_CLUSTER_DIR"/logs/{containerd,kubelet}.log || true
  python -m localcluster down --dir "$BATCHJOB_CLUSTER_DIR"
  python -m localcluster up --node agent --dir "$BATCHJOB_CLUSTER_DIR" >/dev/null
fi
echo "== cluster node: $(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["node"])' "$BATCHJOB_CLUSTER_DIR/cluster.json")"
# shellcheck disable=SC1091
source "$BATCHJOB_CLUSTER_DIR/cluster.env"
echo "== smoke Jobs (plain kubernetes client)"
python -m localcluster.smoke
echo "== example DAGs through Airflow's scheduler and triggerer"
python -m localcluster.demo "$@"
