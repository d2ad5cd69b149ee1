#!/usr/bin/env bash
# Build a real node's binaries from the Go module proxy into a versioned cache (issue 18).
#
# Outputs: $BATCHJOB_CACHE/node-containerd-$CONTAINERD_VERSION-cni-$CNI_VERSION/
#   bin/{containerd,containerd-shim-runc-v2,ctr,pause}, cni/{bridge,host-local,loopback}.
# The kubelet is built by build.sh, with the control plane whose dependencies it shares.
# pause is ours (below): the sandbox container's process, baked into the local pause image.
# runc comes from Debian (apt-get install runc, done by scripts/setup.sh). A warm cache returns at
# once. Nothing upstream is committed: the wrapper modules are written to a scratch directory.
set -euo pipefail

CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
CNI_VERSION=${CNI_VERSION:-v1.10.0}
CACHE=${BATCHJOB_CACHE:-$HOME/.cache/airflow-batchjob}
OUT=$CACHE/node-containerd-$CONTAINERD_VERSION-cni-$CNI_VERSION
STAMP=$OUT/.built

if [[ -f $STAMP ]]; then
  echo "localcluster: node binaries cached in $OUT"
  exit 0
fi

command -v go >/dev/null || { echo "localcluster: Go is required (go 1.26+)" >&2; exit 1; }
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$OUT/bin" "$OUT/cni"
WORK=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)

build_containerd_and_cni() {
  local d=$WORK/containerd
  mkdir -p "$d"
  printf 'module local.test/nodebin\n\ngo 1.26.0\n\nrequire (\n\tgithub.com/containerd/containerd/v2 %s\n\tgithub.com/containernetworking/plugins %s\n)\n' \
    "$CONTAINERD_VERSION" "$CNI_VERSION" >"$d/go.mod"
  cat >"$d/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
	_ "github.com/containernetworking/plugins/plugins/ipam/host-local"
	_ "github.com/containernetworking/plugins/plugins/main/bridge"
	_ "github.com/containernetworking/plugins/plugins/main/loopback"
)
GO
  (cd "$d" && go mod tidy)
  local ld="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
  # No btrfs, devmapper or zfs snapshotters (cgo): the node uses overlayfs.
  (cd "$d" && go build -p 2 -trimpath -tags "no_btrfs no_devmapper no_zfs" -ldflags "$ld" -o "$OUT/bin/" \
     github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
     github.com/containerd/containerd/v2/cmd/ctr)
  (cd "$d" && go build -p 2 -trimpath -ldflags "-s -w" -o "$OUT/cni/" \
     github.com/containernetworking/plugins/plugins/main/bridge \
     github.com/containernetworking/plugins/plugins/main/loopback \
     github.com/containernetworking/plugins/plugins/ipam/host-local)
}

build_pause() {
  # A Pod sandbox's process: sleep until SIGTERM or SIGINT, then exit 0.
  local d=$WORK/pause
  mkdir -p "$d"
  printf 'module local.test/pause\n\ngo 1.26.0\n' >"$d/go.mod"
  cat >"$d/main.go" <<'GO'
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
GO
  (cd "$d" && go build -trimpath -ldflags "-s -w" -o "$OUT/bin/pause" .)
}

echo "localcluster: building containerd $CONTAINERD_VERSION, CNI plugins $CNI_VERSION into $OUT"
build_pause
build_containerd_and_cni
echo "localcluster: containerd and CNI plugins built after $(( $(date +%s) - start ))s"
echo "containerd=$CONTAINERD_VERSION cni=$CNI_VERSION built=$(date -u +%FT%TZ) seconds=$(( $(date +%s) - start ))" >"$STAMP"
