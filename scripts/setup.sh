#!/usr/bin/env bash
# Install and build everything the demo and the tests need; idempotent and cached.
#   - Debian packages: redis-server, rabbitmq-server, util-linux (unshare), openssl, libmath-bigint-perl,
#     runc, debootstrap, postgresql, chromium, fonts-liberation
#   - a virtualenv keyed by the hash of pyproject.toml's dependency lists under ~/.cache/airflow-batchjob
#   - the local cluster's Go binaries (localcluster/build.sh, build_node.sh; cached by version) and
#     the injected worker (scripts/build_injector.sh; cached by a hash of injector/) and Kueue
#     (localcluster/build.sh kueue; cached by version)
# The Go builds (CPU) run in the background while apt and pip (network and disk) do their part.
# Each step prints its time. Prints the venv path on its last line so callers can
# `VENV=$(scripts/setup.sh | tail -1)`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${BATCHJOB_CACHE:-$HOME/.cache/airflow-batchjob}
mkdir -p "$CACHE"
log() { echo "setup: $*" >&2; }
T0=$(date +%s)
step() { echo "setup: $1 in $(( $(date +%s) - $2 ))s" >&2; }

# Go is on the machine; nothing below is needed to build. The builds are cached (a warm cache
# returns at once).
(
  t=$(date +%s)
  "$ROOT/localcluster/build.sh" >&2
  step "control plane binaries (etcd, kube-*, kubelet, kwok)" "$t"
  t=$(date +%s)
  "$ROOT/localcluster/build_node.sh" >&2
  step "node binaries (containerd, CNI)" "$t"
  t=$(date +%s)
  "$ROOT/scripts/build_injector.sh" >/dev/null
  step "injected worker (injector/, static Go)" "$t"
) &
BUILDS=$!
# Kueue (tests/kueue, `localcluster up --kueue`): its own module graph, built beside the others.
(
  t=$(date +%s)
  "$ROOT/localcluster/build.sh" kueue >&2
  step "Kueue" "$t"
) &
KUEUE_BUILD=$!

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v rabbitmq-server >/dev/null || need_apt+=(rabbitmq-server)
command -v unshare >/dev/null || need_apt+=(util-linux)
command -v openssl >/dev/null || need_apt+=(openssl)
# The ported cncf.kubernetes example computes pi with perl's bignum; the node agent runs Pods as
# host processes, and Debian 12's core Math::BigInt 1.999830 dies on bpi(2000); the package (1.999838) does not.
[[ -e /usr/share/perl5/Math/BigInt.pm ]] || need_apt+=(libmath-bigint-perl)
# The real node (localcluster/realnode.py): runc for containerd, debootstrap for the worker image.
command -v runc >/dev/null || need_apt+=(runc)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
# The production profile of the Airflow stack (localcluster/haservers.py): Airflow's database.
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need_apt+=(postgresql)
# The Batch view's browser test (tests/browser): Debian's headless Chromium, driven over the
# DevTools Protocol; fonts, or screenshots show boxes (recommends are not installed).
command -v chromium >/dev/null || need_apt+=(chromium fonts-liberation)
if ((${#need_apt[@]})); then
  t=$(date +%s)
  log "apt-get install ${need_apt[*]}"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >&2 || true
  # Do not let the packages start their own system services: the local cluster starts its own.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null; $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
  step "apt-get" "$t"
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
# Keyed by what pip installs (the dependency lists), not by the whole file: a new pytest marker
# must not rebuild the virtualenv.
KEY=$($PY -c 'import json, sys, tomllib; p = tomllib.load(open(sys.argv[1], "rb"))["project"]
print(json.dumps([p["dependencies"], p.get("optional-dependencies", {})], sort_keys=True))' \
  "$ROOT/pyproject.toml" | sha256sum | cut -c1-12)
VENV=$CACHE/venv-$($PY -c 'import sys; print("py%d%d" % sys.version_info[:2])')-$KEY
if [[ ! -f $VENV/.complete ]]; then
  t=$(date +%s)
  log "creating $VENV (pip install .[dev,rabbitmq,redis])"
  rm -rf "$VENV"
  $PY -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >&2
  "$VENV/bin/pip" install -q -e "$ROOT[dev,rabbitmq,redis]" >&2
  touch "$VENV/.complete"
  step "virtualenv" "$t"
fi
# The venv outlives a clone: keep its editable install on this checkout and its metadata fresh.
# shellcheck source=scripts/venvlib.sh
source "$ROOT/scripts/venvlib.sh"
refresh_editable "$VENV" "$VENV/bin/pip" install -q --no-deps -e "$ROOT"
compile_bytecode "$VENV"
# The checkout's own bytecode, for the same reason: each Airflow task process of the tests, the
# demo and the benchmarks imports this package from here, and compiled it from source every time
# (about 1 s of a task's start, the "DAG parse 1.12 s against the peer's 0.12 s" of issue 28; an
# installed wheel is compiled by pip). Stale files are only recompiled in memory: always correct.
t=$(date +%s)
"$VENV/bin/python" -m compileall -q -j 2 "$ROOT/airflow_batchjob" "$ROOT/localcluster" "$ROOT/tests" \
  "$ROOT/example_dags" "$ROOT/benchmarks" >/dev/null || true
step "bytecode of the checkout" "$t"

wait "$BUILDS" || { log "a Go build failed (output above)"; exit 1; }
wait "$KUEUE_BUILD" || { log "the Kueue build failed (output above)"; exit 1; }
step "set-up" "$T0"
echo "$VENV"
