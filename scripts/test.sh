#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs and builds what it needs (scripts/setup.sh),
# runs ruff and mypy, starts the local cluster and brokers, runs pytest, stops everything.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -k naming).
#
# Where the machine can run a real node (localcluster/realnode.py: root, runc, the node
# binaries), the tests marked `real_node` run on a cluster whose node is kubelet + containerd
# (real containers, real images) while the rest run on the node agent's cluster, both lanes at
# once. BATCHJOB_NODE=agent runs everything on the node agent.
set -euo pipefail
T0=$(date +%s)
TIMES=$(mktemp /tmp/batchjob-lane-times.XXXXXX)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=$("$ROOT/scripts/setup.sh" | tail -n 1)
export PATH="$VENV/bin:$PATH"
# shellcheck source=scripts/node.sh
source "$ROOT/scripts/node.sh"

echo "== ruff, mypy" >&2
t=$(date +%s)
ruff check .
ruff format --check .
mypy
echo "set-up (scripts/setup.sh): $(( t - T0 ))s" >"$TIMES"
echo "ruff, mypy: $(( $(date +%s) - t ))s" >>"$TIMES"

# Where the tests run is declared beside them: files marked `real_node` run on the real node (real
# programs in real containers, images pulled from localcluster/registry.py), except tests marked
# `agent_node`; everything else runs on the node agent's cluster. What stays on the agent, and why:
# test_indexed's 1,000-item test (the real node starts about 1.8 Pods/s, the agent 7/s),
# test_control_plane (host PIDs), test_peer_example (its image, perl:5.34.0, is not built here),
# tests/faults, tests/stack and tests/benchmarks (their subject is the API, brokers and Airflow,
# not the node), and the unit and broker tests (no cluster).
# tests/faults/test_node_faults.py kills the kubelet, containerd and etcd: on a real-node cluster of
# its own (BATCHJOB_NODE_FAULTS_DIR), started and stopped by the module, beside the lane's.
REAL_LANE=(-m "real_node and not agent_node" tests/cluster tests/faults/test_node_faults.py)
# tests/conformance (the Python and the Go worker against the same brokers) runs in the floor lane.
AGENT_LANE=(-m "(not real_node or agent_node) and not wheel" --ignore=tests/conformance tests)
# The floor lane: the oldest Airflow, cncf.kubernetes, pika and redis pyproject.toml allows
# (scripts/floors.sh): the unit and broker tests, and a DAG that defers through every operator and
# waits in the worker, on the real scheduler, executor and triggerer of those versions. It runs on a
# node agent's cluster of its own (its DAG's queue Pods run busybox, so the real node cannot hold
# them, and the agent lane restarts its own cluster's brokers under the fault tests): where there is
# a real node, beside the two other lanes; else after the agent lane.
# The docs build (marker docs) needs the [dev] doc tools, which the floor venv does not hold.
# It also runs the worker conformance suite (tests/conformance): the floor lane is the short one, and
# the Python worker is then held to the Go worker's behaviour at its oldest pika and redis.
FLOOR_LANE=(-m "not docs" tests/unit tests/brokers tests/conformance tests/stack/test_defer_race.py::test_short_deferred_jobs_never_lose_a_try)
# The wheel lane: the sdist and wheel built, checked and installed (not editable) into a clean
# virtualenv, which runs a deferred Job on the floor lane's cluster after that lane (tests/wheel).
WHEEL_LANE=(-m wheel tests/wheel)

CACHE=${BATCHJOB_CACHE:-$HOME/.cache/airflow-batchjob}
# A run killed from outside (a CI time limit) leaves its clusters, mounts and gigabytes behind.
python -m localcluster.stale "$CACHE/clusters"
AGENT_DIR="$CACHE/clusters/test-$$"
REAL_DIR="$CACHE/clusters/real-$$"
FLOOR_DIR="$CACHE/clusters/floor-$$"
export BATCHJOB_NODE_FAULTS_DIR="$CACHE/clusters/nodefaults-$$"
REAL_LOG=$(mktemp /tmp/batchjob-real-lane.XXXXXX)
FLOOR_LOG=$(mktemp /tmp/batchjob-floor-lane.XXXXXX)
trap 'for d in "$AGENT_DIR" "$REAL_DIR" "$FLOOR_DIR" "$BATCHJOB_NODE_FAULTS_DIR"; do python -m localcluster down --dir "$d"; done; rm -f "$REAL_LOG" "$FLOOR_LOG" "$TIMES"' EXIT

real_node=0
if [[ $# -eq 0 && ${BATCHJOB_NODE:-real} == real ]]; then
  if why=$(real_node_why) && [[ -z $why ]]; then
    real_node=1
  else
    echo "== no real node here ($why): every test runs on the node agent" >&2
  fi
fi

PYTEST=(python -m pytest -p no:cacheprovider -q -rfEs --durations=15)
floors=""
if [[ $# -eq 0 ]]; then
  t=$(date +%s)
  floors=$("$ROOT/scripts/floors.sh" "$VENV" | tail -n 1)
  echo "floor venv: $(( $(date +%s) - t ))s" >>"$TIMES"
fi
if ((real_node)); then
  t=$(date +%s)
  echo "== starting the local cluster with a real node in $REAL_DIR" >&2
  if ! python -m localcluster up --node real --dir "$REAL_DIR" >/dev/null; then
    # Loud, not fatal: the same tests then run on the node agent below.
    echo "== THE REAL NODE DID NOT START: every test runs on the node agent. Its logs:" >&2
    tail -n 20 "$REAL_DIR"/logs/{containerd,kubelet}.log >&2 || true
    python -m localcluster down --dir "$REAL_DIR"
    real_node=0
  fi
  echo "real-node cluster up (images built on first use): $(( $(date +%s) - t ))s" >>"$TIMES"
fi

# Each lane's time and exit status, printed at the end: the budget, visible in every run.
lane() {  # lane NAME CLUSTER_DIR COMMAND...: run a lane, record its time and status
  local name=$1 dir=$2 t rc=0
  shift 2
  t=$(date +%s)
  BATCHJOB_CLUSTER_DIR=$dir "$@" || rc=$?
  echo "$name: $(( $(date +%s) - t ))s, exit $rc" >>"$TIMES"
  return "$rc"
}
floor_lane() {  # floor_lane CLUSTER_DIR: starts a node agent's cluster there and runs the lane on it
  [[ -n $floors ]] || return 0
  local t
  t=$(date +%s)
  python -m localcluster up --dir "$1" >/dev/null
  echo "floor cluster up: $(( $(date +%s) - t ))s" >>"$TIMES"
  echo "== the floor lane ($("$floors/bin/python" -c 'from importlib.metadata import version as v
print("apache-airflow", v("apache-airflow"), "cncf.kubernetes", v("apache-airflow-providers-cncf-kubernetes"))')): ${FLOOR_LANE[*]}" >&2
  lane "floor lane" "$1" "$floors/bin/python" -m pytest -p no:cacheprovider -q -rfEs "${FLOOR_LANE[@]}"
}
wheel_lane() {  # wheel_lane CLUSTER_DIR: on the cluster the floor lane started there
  [[ -n $floors ]] || return 0
  echo "== the wheel lane: ${WHEEL_LANE[*]}" >&2
  lane "wheel lane" "$1" "${PYTEST[@]}" "${WHEEL_LANE[@]}"
}
floor_and_wheel_lanes() {
  local rc=0
  floor_lane "$1" || rc=$?
  wheel_lane "$1" || rc=$?
  return "$rc"
}
summary() {
  echo "== times (wall clock; the lanes overlap):" >&2
  cat "$TIMES" >&2
  echo "whole command: $(( $(date +%s) - T0 ))s; exit $status" >&2
}

echo "== starting the local cluster in $AGENT_DIR" >&2
t=$(date +%s)
python -m localcluster up --dir "$AGENT_DIR" >/dev/null
echo "agent cluster up: $(( $(date +%s) - t ))s" >>"$TIMES"
status=0
if ((real_node)); then
  # Three lanes at once, each on its own cluster: the real node's tests mostly wait on the kubelet
  # (little CPU), the floor lane (then the wheel lane) is short, the agent's lane computes and
  # sets the pace. The real
  # and floor lanes' output is printed after the agent's.
  echo "== pytest on the real node (output below, when it ends): ${REAL_LANE[*]}" >&2
  lane "real-node lane" "$REAL_DIR" "${PYTEST[@]}" "${REAL_LANE[@]}" >"$REAL_LOG" 2>&1 &
  real_pid=$!
  floor_and_wheel_lanes "$FLOOR_DIR" >"$FLOOR_LOG" 2>&1 &
  floor_pid=$!
  echo "== pytest on the node agent: ${AGENT_LANE[*]}" >&2
  lane "agent lane" "$AGENT_DIR" "${PYTEST[@]}" "${AGENT_LANE[@]}" || status=$?
  for lane_pid in "$real_pid" "$floor_pid"; do wait "$lane_pid" || status=$?; done
  echo "== the real-node lane:" >&2
  cat "$REAL_LOG"
  echo "== the floor and wheel lanes:" >&2
  cat "$FLOOR_LOG"
else
  echo "== pytest on the node agent" >&2
  lane "agent lane" "$AGENT_DIR" "${PYTEST[@]}" "${@:-tests}" || status=$?
  python -m localcluster down --dir "$AGENT_DIR"
  floor_and_wheel_lanes "$FLOOR_DIR" || status=$?
fi
summary
exit "$status"
