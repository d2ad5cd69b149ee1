#!/usr/bin/env bash
# Build the local cluster's binaries from the Go module proxy into a versioned cache.
#
# Outputs: $BATCHJOB_CACHE/k8s-$K8S_VERSION/bin/{etcd,kube-apiserver,kube-controller-manager,
# kube-scheduler,kwok} plus kwok-stages.yaml. A warm cache (all outputs present, stamp file
# matching the versions) returns at once. Nothing upstream is committed: the wrapper modules
# are written to a scratch directory at build time.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
CACHE=${BATCHJOB_CACHE:-$HOME/.cache/airflow-batchjob}
OUT=$CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION
BIN=$OUT/bin
STAMP=$OUT/.built

if [[ -f $STAMP ]]; then
  echo "localcluster: binaries cached in $BIN"
  exit 0
fi

command -v go >/dev/null || { echo "localcluster: Go is required (go 1.26+)" >&2; exit 1; }
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$BIN"
WORK=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)

# shellcheck source=localcluster/k8s_staging.sh
source "$(dirname "$0")/k8s_staging.sh"
MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)

build_k8s() {
  local d=$WORK/k8s
  mkdir -p "$d"
  {
    echo "module local.test/k8sbin"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    for m in $STAGING; do echo "	k8s.io/$m => k8s.io/$m $STAGING_VERSION"; done
    echo ")"
  } >"$d/go.mod"
  cat >"$d/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
  (cd "$d" && go mod tidy -e >/dev/null 2>&1 || true
   cd "$d" && go get k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler)
  local ld="-s -w" kv
  for kv in gitVersion=$K8S_VERSION gitMajor=1 gitMinor=$MINOR gitTreeState=clean \
            buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ); do
    ld="$ld -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
  done
  (cd "$d" && go build -p 2 -trimpath -tags selinux,notest -ldflags "$ld" -o "$BIN/" \
     k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
     k8s.io/kubernetes/cmd/kube-scheduler)
}

build_etcd() {
  local d=$WORK/etcd
  mkdir -p "$d"
  printf 'module local.test/etcdbin\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$ETCD_VERSION" >"$d/go.mod"
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >"$d/main.go"
  (cd "$d" && go mod tidy && go build -p 2 -trimpath -ldflags "-s -w" -o "$BIN/etcd" .)
}

build_kwok() {
  GOBIN=$BIN go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # kwok needs Stage objects; take the defaults shipped in the module at build time.
  local src
  src=$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage
  : >"$OUT/kwok-stages.yaml"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    if [[ -f $src/$f ]]; then cat "$src/$f" >>"$OUT/kwok-stages.yaml"; echo "---" >>"$OUT/kwok-stages.yaml"
    else echo "localcluster: kwok stage $f not found in module" >&2; ls -R "$src" >&2; exit 1; fi
  done
}

echo "localcluster: building etcd $ETCD_VERSION, kubernetes $K8S_VERSION, kwok $KWOK_VERSION into $BIN"
build_etcd
echo "localcluster: etcd built after $(( $(date +%s) - start ))s"
build_kwok
echo "localcluster: kwok built after $(( $(date +%s) - start ))s"
build_k8s
echo "localcluster: kubernetes built after $(( $(date +%s) - start ))s"
echo "k8s=$K8S_VERSION etcd=$ETCD_VERSION kwok=$KWOK_VERSION built=$(date -u +%FT%TZ) seconds=$(( $(date +%s) - start ))" >"$STAMP"
