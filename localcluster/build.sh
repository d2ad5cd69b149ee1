#!/usr/bin/env bash
# Build the local cluster's binaries from the Go module proxy into a versioned cache.
#
# Outputs: $BATCHJOB_CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin/{etcd,
# kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kwok} plus kwok-stages.yaml. A warm
# cache (stamp file present) returns at once. Nothing upstream is committed: the wrapper module is
# written to a scratch directory at build time.
#
# One module and one `go build` for all six: they share most of their dependencies (client-go,
# apimachinery, grpc, protobuf, otel), which Go then compiles once instead of once per module. That
# is why etcd is the version k8s.io/kubernetes itself requires (ETCD_VERSION must match it: the
# build fails loudly if the module graph picks another) and kwok is built against the same k8s.io
# staging modules as Kubernetes.
set -euo pipefail

# `build.sh kueue`: Kueue only (localcluster/build_kueue.sh), for runs that use it (issue 33).
if [[ ${1:-} == kueue ]]; then exec bash "$(dirname "$0")/build_kueue.sh"; fi

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.0}
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
took() { echo "localcluster: $1 after $(( $(date +%s) - start ))s"; }

# shellcheck source=localcluster/k8s_staging.sh
source "$(dirname "$0")/k8s_staging.sh"
MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)

echo "localcluster: building etcd $ETCD_VERSION, kubernetes $K8S_VERSION (with kubelet), kwok $KWOK_VERSION into $BIN"
d=$WORK/mod
mkdir -p "$d/etcd"
{
  printf 'module local.test/clusterbin\n\ngo 1.26.0\n\nrequire (\n'
  printf '\tk8s.io/kubernetes %s\n\tgo.etcd.io/etcd/server/v3 %s\n\tsigs.k8s.io/kwok %s\n)\n\nreplace (\n' \
    "$K8S_VERSION" "$ETCD_VERSION" "$KWOK_VERSION"
  for m in $STAGING; do printf '\tk8s.io/%s => k8s.io/%s %s\n' "$m" "$m" "$STAGING_VERSION"; done
  echo ")"
} >"$d/go.mod"
cat >"$d/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
GO
printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' \
  >"$d/etcd/main.go"
(cd "$d" && go mod tidy)
picked=$(cd "$d" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
if [[ $picked != "$ETCD_VERSION" ]]; then
  echo "localcluster: kubernetes $K8S_VERSION needs etcd $picked, not $ETCD_VERSION: set ETCD_VERSION=$picked (and in localcluster/cluster.py)" >&2
  exit 1
fi
took "modules downloaded"

ld="-s -w"
for kv in gitVersion=$K8S_VERSION gitMajor=1 gitMinor=$MINOR gitTreeState=clean \
          buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ); do
  ld="$ld -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
done
# -p: as many packages at once as the machine has cores (go's default), stated for the record.
(cd "$d" && go build -p "$(nproc)" -trimpath -tags selinux,notest -ldflags "$ld" -o "$BIN/" \
   ./etcd k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
   k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet sigs.k8s.io/kwok/cmd/kwok)
took "etcd, kubernetes and kwok built"

# kwok needs Stage objects; take the defaults shipped in the module at build time.
src=$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage
: >"$OUT/kwok-stages.yaml"
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
         pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  if [[ -f $src/$f ]]; then cat "$src/$f" >>"$OUT/kwok-stages.yaml"; echo "---" >>"$OUT/kwok-stages.yaml"
  else echo "localcluster: kwok stage $f not found in module" >&2; ls -R "$src" >&2; exit 1; fi
done
echo "k8s=$K8S_VERSION etcd=$ETCD_VERSION kwok=$KWOK_VERSION built=$(date -u +%FT%TZ) seconds=$(( $(date +%s) - start ))" >"$STAMP"
