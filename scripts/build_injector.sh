#!/usr/bin/env bash
# Build the injected worker (injector/, Go): one static binary, cached under
# $BATCHJOB_CACHE/injector-<key>/batchjob-worker, where <key> hashes injector/'s sources, go.mod,
# go.sum, the Go version and the target architecture; a warm cache returns at once. Prints the
# binary's path on its last line. Modules come from the Go module proxy (GOPROXY as configured).
#   scripts/build_injector.sh            # the machine's architecture
#   GOARCH=arm64 scripts/build_injector.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${BATCHJOB_CACHE:-$HOME/.cache/airflow-batchjob}
SRC="$ROOT/injector"
ARCH=${GOARCH:-$(go env GOARCH)}
KEY=$( (cd "$SRC" && cat go.mod go.sum $(ls *.go | sort) && go version && echo "$ARCH") | sha256sum | cut -c1-12)
OUT="$CACHE/injector-$KEY/batchjob-worker"
if [ ! -x "$OUT" ]; then
  t=$(date +%s)
  mkdir -p "$(dirname "$OUT")"
  # Static (no cgo, no libc): it runs in any Linux image of the architecture, even FROM scratch.
  (cd "$SRC" && CGO_ENABLED=0 GOOS=linux GOARCH="$ARCH" GOFLAGS=-mod=mod \
    go build -trimpath -ldflags="-s -w" -o "$OUT.partial" .)
  mv "$OUT.partial" "$OUT"
  # Older builds of other sources are dropped (a few MB each).
  for old in "$CACHE"/injector-*; do
    [ "$old" = "$CACHE/injector-$KEY" ] || rm -rf "$old"
  done
  echo "build_injector: built $OUT in $(( $(date +%s) - t ))s" >&2
fi
echo "$OUT"
