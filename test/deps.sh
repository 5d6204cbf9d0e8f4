#!/usr/bin/env bash
# Installs what the tests need on a fresh machine: PostgreSQL from Debian's
# packages, and a Python venv with schemathesis. Each step is skipped when
# already done.
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

requirements="$here/schemathesis/requirements.txt"
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$stamp"; then
  echo "making the Python venv $venv for schemathesis"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi
