#!/usr/bin/env bash
# Builds Kueue's manager from the version pinned in tools/kueue into
# bin/kueue, for the end-to-end test that runs Kueue's ProvisioningRequest
# admission check against Stowage. Rebuilt only when the pin changes (the
# first build takes minutes on 2 cores); also records Kueue's module
# directory, whose CRDs the test installs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${KUEUE_BIN:-$ROOT/bin/kueue}
mkdir -p "$OUT"
log() { printf '[kueue] %s\n' "$*"; }
if command -v flock >/dev/null; then
  exec 9>"$OUT/.build.lock"
  flock 9
fi
key=$(cat tools/kueue/go.mod tools/kueue/go.sum | sha256sum | cut -c1-16)
if [[ -x "$OUT/kueue" && -f "$OUT/.kueue.stamp" && "$(cat "$OUT/.kueue.stamp")" == "$key" ]]; then
  log "kueue up to date"
else
  log "building Kueue's manager (first build takes minutes; cached in $OUT afterwards)"
  start=$SECONDS
  (cd tools/kueue && go build -trimpath -o "$OUT/kueue" sigs.k8s.io/kueue/cmd/kueue)
  echo "$key" > "$OUT/.kueue.stamp"
  log "built kueue in $((SECONDS - start))s"
fi
(cd tools/kueue && go list -m -f '{{.Dir}}' sigs.k8s.io/kueue) > "$OUT/kueue-module-dir"
