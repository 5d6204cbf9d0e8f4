#!/usr/bin/env bash
# Starts caravan-central on a throwaway database, SQLite (the default) or
# PostgreSQL (a throwaway server from test/postgres, through
# test/schemathesis/postgres), runs run.sh (which seeds what it needs)
# against it and stops both.
#
#   with-server.sh PATH/TO/caravan-central [sqlite|postgres]
set -euo pipefail
central="${1:?usage: with-server.sh PATH/TO/caravan-central [sqlite|postgres]}"
backend="${2:-sqlite}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
chmod 755 "$work"
pid=""
pgpid=""
cleanup() {
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [[ -n $pgpid ]]; then kill "$pgpid" 2>/dev/null || true; wait "$pgpid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

case $backend in
sqlite)
  db="sqlite://$work/caravan.db"
  ;;
postgres)
  (cd "$here/../.." && go build -o "$work/postgres" ./test/schemathesis/postgres)
  "$work/postgres" >"$work/postgres.url" 2>"$work/postgres.log" &
  pgpid=$!
  for _ in $(seq 600); do
    [[ -s "$work/postgres.url" ]] && break
    if ! kill -0 "$pgpid" 2>/dev/null; then cat "$work/postgres.log" >&2; exit 1; fi
    sleep 0.1
  done
  db="$(head -1 "$work/postgres.url")"
  [[ -n $db ]] || { echo "with-server.sh: PostgreSQL did not start" >&2; cat "$work/postgres.log" >&2; exit 1; }
  ;;
*)
  echo "with-server.sh: unknown database $backend (sqlite or postgres)" >&2
  exit 2
  ;;
esac
echo "with-server.sh: caravan-central on $backend" >&2
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"

"$central" serve --listen "127.0.0.1:$port" --database "$db" --log-level warn --repository-url https://git.example.org/config.git 2>"$work/server.log" &
pid=$!

export CARAVAN_SERVER="http://127.0.0.1:$port"
for _ in $(seq 100); do
  curl -fsS "$CARAVAN_SERVER/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
CARAVAN_TOKEN="$("$central" token create --database "$db" --role admin --name schemathesis)"
export CARAVAN_TOKEN

if ! bash "$here/run.sh"; then
  echo "--- server log ($backend)" >&2
  tail -50 "$work/server.log" >&2
  exit 1
fi
