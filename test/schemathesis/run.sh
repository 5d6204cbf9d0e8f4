#!/usr/bin/env bash
# Checks with schemathesis that a running caravan-central answers as its
# OpenAPI description (central/api/openapi.yaml, served at
# /api/v1/openapi.yaml) says: no server errors, only documented status codes,
# content types, headers and bodies, invalid requests rejected, valid ones
# accepted, auth enforced, 405 for undocumented methods.
#
#   CARAVAN_SERVER  base URL of the server, e.g. http://127.0.0.1:8080
#   CARAVAN_TOKEN   an admin token of that server
#   CARAVAN_VENV    virtualenv holding requirements.txt (default .cache/venv)
#   ST_MAX_EXAMPLES test cases per operation and phase (default 100, about a
#                   minute on 2 cores)
#
# The run writes to the registry: it first adds an account and a cluster (and
# keeps whatever is already there), then creates, changes and deletes what it
# generates. Use a throwaway database. Exits non-zero on any failure.
set -euo pipefail

: "${CARAVAN_SERVER:?set CARAVAN_SERVER to the base URL of a running caravan-central}"
: "${CARAVAN_TOKEN:?set CARAVAN_TOKEN to an admin token of that server}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=${CARAVAN_VENV:-.cache/venv}
st="$venv/bin/schemathesis"
if [[ ! -x $st ]]; then
	echo "run.sh: $st not found; create the venv: python3 -m venv $venv && $venv/bin/pip install -r $here/requirements.txt" >&2
	exit 2
fi
server=${CARAVAN_SERVER%/}

# seed POSTs a resource unless it exists, so that operations on existing
# resources (the examples in the spec name these) are exercised too.
seed() {
	local path=$1 body=$2 code
	code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$server$path" \
		-H "Authorization: Bearer $CARAVAN_TOKEN" -H 'Content-Type: application/json' -d "$body")
	if [[ $code != 201 && $code != 409 ]]; then
		echo "run.sh: seeding POST $path answered $code" >&2
		exit 1
	fi
}
seed /api/v1/infrastructure-accounts \
	'{"id":"aws:123456789012","name":"Schemathesis","owner":"caravan","environment":"production","config_items":{"team":"caravan"}}'
# lifecycle_status ready: the cluster cannot be deleted, so it stays for every phase.
seed /api/v1/clusters \
	'{"id":"aws:123456789012:eu-central-1:kube-1","infrastructure_account":"aws:123456789012","region":"eu-central-1",
	  "api_server_url":"https://kube-1.example.org","environment":"production","channel":"stable","lifecycle_status":"ready",
	  "node_pools":[{"name":"default","profile":"worker","instance_types":["m6i.large"],"min_size":1,"max_size":3}]}'
curl -sS -o /dev/null -f -X PUT "$server/api/v1/clusters/aws:123456789012:eu-central-1:kube-1/status" \
	-H "Authorization: Bearer $CARAVAN_TOKEN" -H 'Content-Type: application/json' -d '{"phase":"idle","current_version":"v1"}'

# --checks all: every check applies to this API. The few statuses that
# schema-valid requests legitimately get, and the fixed long-poll wait, are in
# schemathesis.toml with the reasons. --generation-deterministic makes the
# generated data the same on every run (schemathesis then ignores --seed).
# One worker: with several, hypothesis' threads hit a CPython 3.11 ast.parse
# race ("AST constructor recursion depth mismatch"), and one is fast enough.
exec "$st" --config-file "$here/schemathesis.toml" run "$server/api/v1/openapi.yaml" \
	--url "$server" \
	--header "Authorization: Bearer $CARAVAN_TOKEN" \
	--checks all \
	--phases examples,coverage,fuzzing,stateful \
	--max-examples "${ST_MAX_EXAMPLES:-100}" \
	--generation-deterministic \
	--workers 1 \
	--request-timeout 15 \
	--no-color
