#!/usr/bin/env bash
# Copies the CRDs Stowage serves but does not own, byte for byte from their
# upstream Go modules, into pkg/apis/crds (and from there into the chart):
# ProvisioningRequest (autoscaling.x-k8s.io) from Cluster Autoscaler's API
# module, at the version Kueue pins, so the schema is exactly upstream's.
set -euo pipefail
AUTOSCALER_APIS_VERSION="${AUTOSCALER_APIS_VERSION:-v0.0.0-20240830133931-adfbe7e45277}"
top=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Outside any module, so go.mod is left alone.
dir=$(cd "$tmp" && go mod download -json "k8s.io/autoscaler/cluster-autoscaler/apis@${AUTOSCALER_APIS_VERSION}" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
src="$dir/config/crd/autoscaling.x-k8s.io_provisioningrequests.yaml"
[[ -f "$src" ]] || { echo "upstream-crds: $src not found" >&2; exit 1; }
install -m 0644 "$src" "$top/pkg/apis/crds/autoscaling.x-k8s.io_provisioningrequests.yaml"
