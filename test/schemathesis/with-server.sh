#!/usr/bin/env bash
# Starts caravan-central on a throwaway SQLite database, seeds an account, a
# cluster, a node pool, a block and a status report so that operations on
# existing resources are exercised, runs run.sh against it and stops it.
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

api() {
  curl -fsS -X "$1" -H "Authorization: Bearer $CARAVAN_TOKEN" -H 'Content-Type: application/json' \
    --data "$3" "$CARAVAN_SERVER/api/v1$2" >/dev/null
}
cluster=aws:123456789012:eu-central-1:kube-1
api POST /infrastructure-accounts '{"id":"aws:123456789012","name":"team","owner":"team","environment":"test"}'
api POST /clusters '{"id":"'$cluster'","infrastructure_account":"aws:123456789012","region":"eu-central-1","api_server_url":"https://kube-1.example.org","environment":"test","channel":"dev","node_pools":[{"name":"default","profile":"worker","instance_types":["m6i.large"],"min_size":1,"max_size":3}]}'
api POST "/clusters/$cluster/blocks" '{"reason":"seeded for schemathesis"}'
api PUT "/clusters/$cluster/status" '{"phase":"idle","current_version":"0123456789abcdef0123456789abcdef01234567#abc"}'

if ! bash "$here/run.sh"; then
  echo "--- server log" >&2
  tail -50 "$work/server.log" >&2
  exit 1
fi
