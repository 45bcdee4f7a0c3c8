#!/usr/bin/env bash
# The curl walkthrough of docs/security.md against a running worklease-server: the admin
# creates an environment key, a runner polls with it, the process running the item heartbeats
# and stops it with the item's secret, the admin revokes the key. Prints each command and the
# server's answer, and fails (status 1) when a status is not the one documented. CI runs it
# against a fresh server.
#
#   cargo run --release -p worklease-server -- --token secret &
#   WORKLEASE_TOKEN=secret scripts/security-walkthrough.sh [http://127.0.0.1:8080]
set -euo pipefail
BASE=${1:-http://127.0.0.1:8080}
: "${WORKLEASE_TOKEN:?set WORKLEASE_TOKEN to the admin token of the server}"

show() { # show TITLE STATUS BEARER SHOWN CURL-ARGS...: print the command (SHOWN in place of
  # the credential), run it, print the answer
  local title=$1 expected=$2 bearer=$3 shown=$4; shift 4
  printf '\n# %s\n$ curl -H "Authorization: Bearer %s"' "$title" "$shown" >&2
  printf ' %q' "$@" >&2
  printf '\n' >&2
  local answer status body
  answer=$(curl -sS -w '\n%{http_code}' -H "Authorization: Bearer $bearer" "$@")
  status=${answer##*$'\n'}
  body=${answer%$'\n'*}
  printf '%s\n' "$body" | python3 -m json.tool >&2
  if [ "$status" != "$expected" ]; then
    printf 'security-walkthrough: %s answered %s, expected %s\n' "$title" "$status" "$expected" >&2
    exit 1
  fi
  printf '%s' "$body"
}
# The placeholder each command shows for its credential, then the command's curl arguments.
admin() { show "$1" "$2" "$WORKLEASE_TOKEN" '$WORKLEASE_TOKEN' "${@:3}"; }
runner() { show "$1" "$2" "$KEY" '$KEY' "${@:3}"; }
item() { show "$1" "$2" "$SESSIONS_TOKEN" '$SESSIONS_TOKEN' "${@:3}"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

E="$BASE/v1/environments"
ENV=$(admin "1. the admin creates an environment" 200 -X POST "$E" \
  -H 'content-type: application/json' -d '{"name": "builds"}' | field '["id"]')
CREATED=$(admin "2. and a key for its runners: the only answer that shows the key" 200 -X POST "$E/$ENV/keys" \
  -H 'content-type: application/json' -d '{"name": "runner fleet"}')
KEY=$(printf '%s' "$CREATED" | field '["key"]')
KEY_ID=$(printf '%s' "$CREATED" | field '["id"]')
admin "3. keys are listed without the key" 200 "$E/$ENV/keys" >/dev/null
WORK=$(admin "4. work arrives (normally from the session service)" 200 -X POST "$E/$ENV/work" \
  -H 'content-type: application/json' -d '{"data": {"type": "session", "id": "sess_build1"}}' | field '["id"]')
SECRET=$(runner "5. the runner polls with the key; the item comes with its secret" 200 \
  "$E/$ENV/work/poll" -H 'Worker-ID: runner-1' | field '["secret"]')
runner "6. and acknowledges it" 200 -X POST "$E/$ENV/work/$WORK/ack" -H 'Worker-ID: runner-1' >/dev/null
# The secret is URL-safe base64 (no padding) of {"sessions_token": "wls_…"}.
SESSIONS_TOKEN=$(python3 -c 'import base64,json,sys; s=sys.argv[1]; print(json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))["sessions_token"])' "$SECRET")
printf '\n# 7. the process running the item decodes the secret: SESSIONS_TOKEN=%s…\n' "${SESSIONS_TOKEN:0:12}" >&2
item "8. and heartbeats with the sessions token" 200 -X POST \
  "$E/$ENV/work/$WORK/heartbeat?expected_last_heartbeat=NO_HEARTBEAT" >/dev/null
item "9. the sessions token opens nothing else: reading the item is the admin's" 403 \
  "$E/$ENV/work/$WORK" >/dev/null
item "10. the process stops its item when done" 200 -X POST "$E/$ENV/work/$WORK/stop" \
  -H 'content-type: application/json' -d '{"force": true}' >/dev/null
runner "11. the key opens nothing outside its environment's work" 403 "$E/$ENV" >/dev/null
admin "12. the admin revokes the key" 200 -X DELETE "$E/$ENV/keys/$KEY_ID" >/dev/null
runner "13. from now on it is refused, by every member" 401 "$E/$ENV/work/poll" >/dev/null
