#!/usr/bin/env bash
# Build Kueue (issue 33) from the Go module proxy into a versioned cache. Only runs when asked for
# (`localcluster/build.sh kueue`, or this script): runs that don't use Kueue don't pay for it.
#
# Outputs: $BATCHJOB_CACHE/kueue-$KUEUE_VERSION/bin/kueue (the controller manager),
#   crds/*.yaml (the module's config/components/crd/bases) and webhook.yaml (its webhook
#   configurations, which localcluster/kueue.py points at the loopback manager).
# sigs.k8s.io/kueue's go.mod has no replace directives, so `go install module@version` builds it
# as released, with the k8s.io libraries it pins (client-go 0.35 talks to the 1.37 apiserver).
set -euo pipefail

KUEUE_VERSION=${KUEUE_VERSION:-v0.17.0}
CACHE=${BATCHJOB_CACHE:-$HOME/.cache/airflow-batchjob}
OUT=$CACHE/kueue-$KUEUE_VERSION
STAMP=$OUT/.built

if [[ -f $STAMP ]]; then
  echo "localcluster: kueue cached in $OUT"
  exit 0
fi

command -v go >/dev/null || { echo "localcluster: Go is required (go 1.26+)" >&2; exit 1; }
export GOTOOLCHAIN=local CGO_ENABLED=0
mkdir -p "$OUT/bin" "$OUT/crds"
start=$(date +%s)
echo "localcluster: building kueue $KUEUE_VERSION into $OUT"
# -p: as many packages at once as the machine has cores (go's default), stated for the record.
GOBIN=$OUT/bin go install -p "$(nproc)" -trimpath -ldflags "-s -w \
  -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION" "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION"

src=$(go env GOMODCACHE)/sigs.k8s.io/kueue@$KUEUE_VERSION/config/components
cp "$src"/crd/bases/*.yaml "$OUT/crds/"
cp "$src/webhook/manifests.yaml" "$OUT/webhook.yaml"
echo "kueue=$KUEUE_VERSION built=$(date -u +%FT%TZ) seconds=$(( $(date +%s) - start ))" >"$STAMP"
echo "localcluster: kueue built after $(( $(date +%s) - start ))s"
