#!/usr/bin/env bash
# The README's curl walkthrough against a running worklease-server; prints each command and
# the server's real response, so the README section can be regenerated from a live run.
#
#   cargo run --release -p worklease-server -- --token secret &
#   WORKLEASE_TOKEN=secret scripts/walkthrough.sh [http://127.0.0.1:8080]
set -euo pipefail
BASE=${1:-http://127.0.0.1:8080}
: "${WORKLEASE_TOKEN:?set WORKLEASE_TOKEN to the token the server uses}"
AUTH="Authorization: Bearer $WORKLEASE_TOKEN"

show() { # show TITLE CURL-ARGS...: print the command, run it, pretty-print the JSON answer
  local title=$1; shift
  printf '\n# %s\n$ curl' "$title" >&2
  printf ' %q' "$@" | sed "s/$WORKLEASE_TOKEN/\$WORKLEASE_TOKEN/g" >&2
  printf '\n' >&2
  local body
  body=$(curl -sS -H "$AUTH" "$@")
  printf '%s\n' "$body" | python3 -m json.tool >&2
  printf '%s' "$body"
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

ENV=$(show "1. create a self-hosted environment" -X POST "$BASE/v1/environments" \
  -H 'content-type: application/json' -d '{"name": "demo", "config": {"type": "self_hosted"}}' | field '["id"]')
WORK=$(show "2. create a work item (normally done by the session service)" -X POST \
  "$BASE/v1/environments/$ENV/work" -H 'content-type: application/json' \
  -d '{"data": {"type": "session", "id": "sess_demo1"}, "metadata": {"repo": "worklease"}}' | field '["id"]')
W="$BASE/api/v1/cloud/environments/$ENV/work"
show "3. poll for work as worker w1 (waits up to 500 ms when the queue is empty)" \
  "$W/poll?block_ms=500" -H 'Worker-ID: w1' >/dev/null
show "4. acknowledge it: queued -> starting" -X POST "$W/$WORK/ack" -H 'Worker-ID: w1' >/dev/null
TOKEN=$(show "5. first heartbeat claims the lease: starting -> active" -X POST \
  "$W/$WORK/heartbeat?expected_last_heartbeat=NO_HEARTBEAT&desired_ttl_seconds=60" | field '["last_heartbeat"]')
show "6. later heartbeats echo the last token" -X POST \
  "$W/$WORK/heartbeat?expected_last_heartbeat=$TOKEN" >/dev/null
show "7. a stale token means someone else holds the lease: 412" -X POST \
  "$W/$WORK/heartbeat?expected_last_heartbeat=$TOKEN" >/dev/null
show "8. ask the worker to stop: active -> stopping" -X POST "$W/$WORK/stop" >/dev/null
show "9. the worker confirms once drained: stopping -> stopped" -X POST "$W/$WORK/stop" >/dev/null
show "10. confirm" "$W/$WORK" >/dev/null
show "11. the queue is empty" "$W/stats" >/dev/null

# Environments (docs/contract.md §9): the resource the SDK's client.beta.environments manages.
E="$BASE/v1/environments"
SANDBOX=$(show "12. create a cloud environment with a description and metadata" -X POST "$E" \
  -H 'content-type: application/json' \
  -d '{"name": "sandbox", "config": {"type": "cloud", "networking": {"type": "unrestricted"}}, "description": "experiments", "metadata": {"team": "ml", "tier": "gold"}}' \
  | field '["id"]')
show "13. rename it, clear the description, delete one key with null and one with \"\"" -X POST "$E/$SANDBOX" \
  -H 'content-type: application/json' \
  -d '{"name": "sandbox-2", "description": null, "metadata": {"team": null, "tier": ""}}' >/dev/null
show "14. list environments, one per page (next_page is the page parameter of the next call)" \
  "$E?limit=1" >/dev/null
show "15. archive the first environment: it takes no new work" -X POST "$E/$ENV/archive" >/dev/null
show "16. creating work there is refused with error_code environment_archived" -X POST "$E/$ENV/work" \
  -H 'content-type: application/json' -d '{"data": {"type": "session", "id": "sess_demo2"}}' >/dev/null
show "17. archived environments are listed only when asked" "$E?include_archived=true" >/dev/null
show "18. delete it (refused with 409 while an item holds a lease)" -X DELETE "$E/$ENV" >/dev/null
show "19. it is gone" "$E/$ENV" >/dev/null
