#!/usr/bin/env bash
# Installs what the tests need on a fresh machine: PostgreSQL and Chromium (for
# the web UI's tests) from Debian's packages, and a Python venv with
# schemathesis and moto (moto_server, the AWS emulator of test/moto). Each step
# is skipped when already done.
set -euo pipefail
venv="${1:-.cache/venv}"
here="$(cd "$(dirname "$0")" && pwd)"

if ! command -v pg_ctl >/dev/null && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  echo "installing PostgreSQL (Debian package postgresql)"
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  "${as_root[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q postgresql
fi

# The web UI's tests (central/ui) drive headless Chromium.
if ! command -v chromium >/dev/null; then
  echo "installing Chromium (Debian package chromium)"
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  "${as_root[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q chromium
fi

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
