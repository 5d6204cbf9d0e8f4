#!/usr/bin/env bash
# Builds kustomize-controller from this module into OUTPUT, and copies the
# CRDs it needs from the module cache into OUTPUT/flux-crds: its own
# Kustomization, and the source kinds it watches (GitRepository,
# OCIRepository, Bucket, ExternalArtifact) from the source-controller release
# whose API module it requires. Nothing is hand-written: the CRDs are the
# released ones.
set -euo pipefail
out="$(realpath -m "${1:?usage: build.sh OUTPUT}")"
cd "$(dirname "$0")"
go build -trimpath -ldflags="-s -w" -o "$out/kustomize-controller" github.com/fluxcd/kustomize-controller

kustomize="$(go list -m -f '{{.Dir}}' github.com/fluxcd/kustomize-controller)"
source_version="$(go list -m -f '{{.Version}}' github.com/fluxcd/source-controller/api)"
# source-controller itself is no dependency of this module (requiring it
# would move kustomize-controller's dependencies): download its release,
# tagged like its API module, from outside any module so that neither
# go.mod nor go.sum changes.
empty="$(mktemp -d)"
trap 'rm -rf "$empty"' EXIT
source="$(cd "$empty" && go mod download -json "github.com/fluxcd/source-controller@$source_version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
if [ -z "$source" ]; then
  echo "build.sh: could not download github.com/fluxcd/source-controller@$source_version" >&2
  exit 1
fi
crds="$out/flux-crds"
rm -rf "$crds.tmp"
mkdir -p "$crds.tmp"
cp "$kustomize"/config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml "$crds.tmp/"
for kind in gitrepositories ocirepositories buckets externalartifacts; do
  cp "$source/config/crd/bases/source.toolkit.fluxcd.io_$kind.yaml" "$crds.tmp/"
done
chmod 644 "$crds.tmp"/*.yaml
rm -rf "$crds"
mv "$crds.tmp" "$crds"
