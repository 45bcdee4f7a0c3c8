#!/usr/bin/env bash
# Every route of the HTTP API (docs/api.md) against a running worklease-server, in the order a
# worker meets them: prints each command and the server's real answer, and fails (status 1)
# when an answer's status is not the one documented. CI runs it against a fresh server.
#
#   cargo run --release -p worklease-server -- --token secret &
#   WORKLEASE_TOKEN=secret scripts/walkthrough.sh [http://127.0.0.1:8080]
set -euo pipefail
BASE=${1:-http://127.0.0.1:8080}
: "${WORKLEASE_TOKEN:?set WORKLEASE_TOKEN to the token the server uses}"
AUTH="Authorization: Bearer $WORKLEASE_TOKEN"

show() { # show TITLE STATUS CURL-ARGS...: print the command, run it, pretty-print the answer
  local title=$1 expected=$2; shift 2
  printf '\n# %s\n$ curl' "$title" >&2
  printf ' %q' "$@" | sed "s/$WORKLEASE_TOKEN/\$WORKLEASE_TOKEN/g" >&2
  printf '\n' >&2
  local answer status body
  answer=$(curl -sS -w '\n%{http_code}' -H "$AUTH" "$@")
  status=${answer##*$'\n'}
  body=${answer%$'\n'*}
  printf '%s\n' "$body" | python3 -m json.tool >&2
  if [ "$status" != "$expected" ]; then
    printf 'walkthrough: %s answered %s, expected %s\n' "$title" "$status" "$expected" >&2
    exit 1
  fi
  printf '%s' "$body"
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

ENV=$(show "1. create a self-hosted environment" 200 -X POST "$BASE/v1/environments" \
  -H 'content-type: application/json' -d '{"name": "demo", "config": {"type": "self_hosted"}}' | field '["id"]')
WORK=$(show "2. create a work item (normally done by the session service)" 200 -X POST \
  "$BASE/v1/environments/$ENV/work" -H 'content-type: application/json' \
  -d '{"data": {"type": "session", "id": "sess_demo1"}, "metadata": {"repo": "worklease"}}' | field '["id"]')
W="$BASE/api/v1/cloud/environments/$ENV/work"
show "3. poll for work as worker w1 (waits up to 500 ms when the queue is empty)" 200 \
  "$W/poll?block_ms=500" -H 'Worker-ID: w1' >/dev/null
show "4. acknowledge it: queued -> starting" 200 -X POST "$W/$WORK/ack" -H 'Worker-ID: w1' >/dev/null
TOKEN=$(show "5. first heartbeat claims the lease: starting -> active" 200 -X POST \
  "$W/$WORK/heartbeat?expected_last_heartbeat=NO_HEARTBEAT&desired_ttl_seconds=60" | field '["last_heartbeat"]')
show "6. later heartbeats echo the last token" 200 -X POST \
  "$W/$WORK/heartbeat?expected_last_heartbeat=$TOKEN" >/dev/null
show "7. a stale token means someone else holds the lease: 412" 412 -X POST \
  "$W/$WORK/heartbeat?expected_last_heartbeat=$TOKEN" >/dev/null
show "8. ask the worker to stop: active -> stopping" 200 -X POST "$W/$WORK/stop" >/dev/null
show "8b. a heartbeat on a stopping item renews nothing: the worker drains" 200 -X POST \
  "$W/$WORK/heartbeat?expected_last_heartbeat=$TOKEN" >/dev/null
show "9. the worker confirms once drained: stopping -> stopped" 200 -X POST "$W/$WORK/stop" >/dev/null
show "10. confirm" 200 "$W/$WORK" >/dev/null
show "11. the queue is empty" 200 "$W/stats" >/dev/null

# Environments (docs/contract.md §9): the resource the SDK's client.beta.environments manages.
E="$BASE/v1/environments"
SANDBOX=$(show "12. create a cloud environment with a description and metadata" 200 -X POST "$E" \
  -H 'content-type: application/json' \
  -d '{"name": "sandbox", "config": {"type": "cloud", "networking": {"type": "unrestricted"}}, "description": "experiments", "metadata": {"team": "ml", "tier": "gold"}}' \
  | field '["id"]')
show "13. rename it, clear the description, delete one key with null and one with \"\"" 200 -X POST "$E/$SANDBOX" \
  -H 'content-type: application/json' \
  -d '{"name": "sandbox-2", "description": null, "metadata": {"team": null, "tier": ""}}' >/dev/null
show "14. list environments, one per page (next_page is the page parameter of the next call)" 200 \
  "$E?limit=1" >/dev/null
show "15. archive the first environment: it takes no new work" 200 -X POST "$E/$ENV/archive" >/dev/null
show "16. creating work there is refused with error_code environment_archived" 400 -X POST "$E/$ENV/work" \
  -H 'content-type: application/json' -d '{"data": {"type": "session", "id": "sess_demo2"}}' >/dev/null
show "17. archived environments are listed only when asked" 200 "$E?include_archived=true" >/dev/null
show "18. delete it (refused with 409 while an item holds a lease)" 200 -X DELETE "$E/$ENV" >/dev/null
show "19. it is gone" 404 "$E/$ENV" >/dev/null
