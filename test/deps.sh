#!/usr/bin/env bash
# Installs what the tests need on a fresh machine: PostgreSQL, the AWS CLI (for
# the README's tour) and Chromium (for the web UI's tests) from Debian's packages, and a Python venv with
# schemathesis and moto (moto_server, the AWS emulator of test/moto). Each step
# is skipped when already done.
set -euo pipefail
venv="${1:-.cache/venv}"
here="$(cd "$(dirname "$0")" && pwd)"

# debian_package PACKAGE NAME installs a Debian package, as root.
debian_package() {
  echo "installing $2 (Debian package $1)"
  local as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  "${as_root[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q "$1"
}

if ! command -v pg_ctl >/dev/null && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  debian_package postgresql PostgreSQL
fi
# The README's tour (test/demo) runs the AWS CLI against the demo's moto.
command -v aws >/dev/null || debian_package awscli "the AWS CLI"
# The web UI's tests (central/ui) drive headless Chromium.
command -v chromium >/dev/null || debian_package chromium Chromium

# One venv for both; the stamp is the concatenation of the requirements
# files, so that changing either one reinstalls.
requirements=("$here/schemathesis/requirements.txt" "$here/moto/requirements.txt")
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ] || ! cat "${requirements[@]}" | cmp -s - "$stamp"; then
  echo "making the Python venv $venv for schemathesis and moto"
  python3 -m venv "$venv"
  args=()
  for r in "${requirements[@]}"; do args+=(-r "$r"); done
  "$venv/bin/pip" install -q --disable-pip-version-check "${args[@]}"
  cat "${requirements[@]}" >"$stamp"
fi
