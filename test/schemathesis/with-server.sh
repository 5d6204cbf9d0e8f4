#!/usr/bin/env bash
# Starts caravan-central on a throwaway SQLite database, runs run.sh (which
# seeds what it needs) against it and stops it.
set -euo pipefail
central="${1:?usage: with-server.sh PATH/TO/caravan-central}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
db="sqlite://$work/caravan.db"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"

"$central" serve --listen "127.0.0.1:$port" --database "$db" --log-level warn --repository-url https://git.example.org/config.git 2>"$work/server.log" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

export CARAVAN_SERVER="http://127.0.0.1:$port"
for _ in $(seq 100); do
  curl -fsS "$CARAVAN_SERVER/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
CARAVAN_TOKEN="$("$central" token create --database "$db" --role admin --name schemathesis)"
export CARAVAN_TOKEN

if ! bash "$here/run.sh"; then
  echo "--- server log" >&2
  tail -50 "$work/server.log" >&2
  exit 1
fi
