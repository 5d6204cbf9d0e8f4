#!/usr/bin/env bash
# Writes kwok's configuration: the Stage documents for nodes (initialize,
# heartbeat with lease) and pods (create, init containers, ready, complete,
# delete) from the kwok module pinned in test/tools, without the
# kustomization files, which kwok does not read.
set -euo pipefail
out="$(realpath -m "${1:?usage: stages.sh OUTPUT}")"
cd "$(dirname "$0")"
kwok="$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
files=("$kwok/kustomize/stage/node/fast/node-initialize.yaml" "$kwok/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml")
files+=("$kwok"/kustomize/stage/pod/general/pod-*.yaml)
{
  for f in "${files[@]}"; do
    echo "---"
    cat "$f"
  done
} > "$out.tmp"
mv "$out.tmp" "$out"
