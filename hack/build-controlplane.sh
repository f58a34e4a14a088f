#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok) from Go modules into bin/controlplane. Each binary is
# rebuilt only when missing or when its pinned version changes, so a warm
# machine returns in a second and a cold one (about 15 min on 2 cores) still works.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${CONTROLPLANE_BIN:-$ROOT/bin/controlplane}
KWOK_VERSION=v0.8.0
mkdir -p "$OUT"

log() { printf '[controlplane] %s\n' "$*"; }

# Several test runs may ask for the binaries at once; one builds, the others
# wait and then find them up to date.
if command -v flock >/dev/null; then
  exec 9>"$OUT/.build.lock"
  flock 9
fi

# stamp_ok NAME KEY: true when NAME exists and was built from KEY.
stamp_ok() { [[ -x "$OUT/$1" && -f "$OUT/.$1.stamp" && "$(cat "$OUT/.$1.stamp")" == "$2" ]]; }

build_module() { # build_module DIR NAME...
  local dir=$1; shift
  local key; key=$(cat "$ROOT/$dir/go.mod" "$ROOT/$dir/go.sum" 2>/dev/null | sha256sum | cut -c1-16 || true)
  local todo=()
  for n in "$@"; do stamp_ok "$n" "$key" || todo+=("$n"); done
  [[ ${#todo[@]} -eq 0 ]] && { log "$* up to date"; return; }
  (cd "$ROOT/$dir" && { [[ -f go.sum ]] || go mod tidy; })
  key=$(cat "$ROOT/$dir/go.mod" "$ROOT/$dir/go.sum" | sha256sum | cut -c1-16)
  for n in "${todo[@]}"; do
    log "building $n (first build takes minutes; cached in $OUT afterwards)"
    local start=$SECONDS
    (cd "$ROOT/$dir" && go build -trimpath -o "$OUT/$n" "./cmd/$n")
    echo "$key" > "$OUT/.$n.stamp"
    log "built $n in $((SECONDS - start))s"
  done
}

build_module tools/etcd etcd
build_module tools/kube kube-apiserver kube-controller-manager kube-scheduler

if stamp_ok kwok "$KWOK_VERSION"; then
  log "kwok up to date"
else
  log "building kwok $KWOK_VERSION"
  GOBIN="$OUT" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  echo "$KWOK_VERSION" > "$OUT/.kwok.stamp"
fi
# kwok's stage manifests live in its module; record where for the test helper.
go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p' > "$OUT/kwok-module-dir"
log "ready: $(ls "$OUT" | tr '\n' ' ')"
