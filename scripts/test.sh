#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs and builds what it needs (scripts/setup.sh),
# runs ruff and mypy, starts the local cluster and brokers, runs pytest, stops everything.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -k naming).
#
# Where the machine can run a real node (localcluster/realnode.py: root, runc, the node
# binaries), the test files in REAL_NODE_TESTS run on a cluster whose node is kubelet + containerd
# (real containers, real images), and the rest on the node agent's cluster; the two run one after
# the other. BATCHJOB_NODE=agent runs everything on the node agent.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=$("$ROOT/scripts/setup.sh" | tail -n 1)
export PATH="$VENV/bin:$PATH"
# shellcheck source=scripts/node.sh
source "$ROOT/scripts/node.sh"

echo "== ruff, mypy" >&2
ruff check .
ruff format --check .
mypy

# Real programs in real containers, their images pulled from the local registry
# (localcluster/registry.py). The other cluster files still run on the node agent: test_indexed
# (its 1,000-item test is too slow for a real node's Pod rate), test_results,
# test_ttl_and_deletions and test_retry_keeps_work (not yet run on the real node since they got
# the worker image); test_control_plane checks host PIDs; test_peer_example needs perl:5.34.0.
REAL_NODE_TESTS=(
  tests/cluster/test_real_node.py
  tests/cluster/test_pod_settings.py
  tests/cluster/test_diagnostics.py
  tests/cluster/test_queue.py
  tests/cluster/test_batchjob.py
  tests/cluster/test_jobgroup.py
  tests/cluster/test_lifecycle.py
  tests/cluster/test_pod_logs.py
  tests/cluster/test_watch_resilience.py
)

CACHE=${BATCHJOB_CACHE:-$HOME/.cache/airflow-batchjob}
AGENT_DIR="$CACHE/clusters/test-$$"
REAL_DIR="$CACHE/clusters/real-$$"
trap 'python -m localcluster down --dir "$AGENT_DIR"; python -m localcluster down --dir "$REAL_DIR"' EXIT

real_node=0
if [[ $# -eq 0 && ${BATCHJOB_NODE:-real} == real ]]; then
  if why=$(real_node_why) && [[ -z $why ]]; then
    real_node=1
  else
    echo "== no real node here ($why): every test runs on the node agent" >&2
  fi
fi

PYTEST=(python -m pytest -p no:cacheprovider -q -rfEs --durations=15)
status=0
if ((real_node)); then
  echo "== starting the local cluster with a real node in $REAL_DIR" >&2
  if python -m localcluster up --node real --dir "$REAL_DIR" >/dev/null; then
    echo "== pytest on the real node: ${REAL_NODE_TESTS[*]}" >&2
    BATCHJOB_CLUSTER_DIR=$REAL_DIR "${PYTEST[@]}" "${REAL_NODE_TESTS[@]}" || status=$?
  else
    # Loud, not fatal: the same tests then run on the node agent below.
    echo "== THE REAL NODE DID NOT START: every test runs on the node agent. Its logs:" >&2
    tail -n 20 "$REAL_DIR"/logs/{containerd,kubelet}.log >&2 || true
    real_node=0
  fi
  python -m localcluster down --dir "$REAL_DIR"
fi

export BATCHJOB_CLUSTER_DIR=$AGENT_DIR
echo "== starting the local cluster in $BATCHJOB_CLUSTER_DIR" >&2
python -m localcluster up --dir "$BATCHJOB_CLUSTER_DIR" >/dev/null
echo "== pytest" >&2
if ((real_node)); then
  ignore=()
  for f in "${REAL_NODE_TESTS[@]}"; do ignore+=(--ignore "$f"); done
  "${PYTEST[@]}" "${ignore[@]}" tests || status=$?
else
  "${PYTEST[@]}" "${@:-tests}" || status=$?
fi
exit "$status"
