#!/usr/bin/env bash
# Instructions per heartbeat request over HTTP for each kind of credential (docs/security.md),
# counted by callgrind (exact and unaffected by other load on the machine): the in-memory
# server, heartbeats on ITEMS acked items sent with the admin token, the environment key, and
# each item's own sessions_token (scripts/heartbeat_credentials.lua), a fresh server per kind.
# Prints instructions per request and each kind's ratio to the admin token's.
#
#   scripts/credentials-instructions.sh [SECONDS] [ITEMS]   # defaults: 10 s, 200 items
# Needs valgrind, wrk, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
ITEMS=${2:-200}
for tool in valgrind callgrind_control wrk python3; do
  command -v "$tool" >/dev/null || { echo "credentials-instructions: $tool is missing" >&2; exit 1; }
done
cargo build --release --quiet -p worklease-server
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
OUT=${KEEP_DIR:-$(mktemp -d)}; mkdir -p "$OUT"
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null || true; [ -n "${KEEP_DIR:-}" ] || rm -rf "$OUT"; }
trap cleanup EXIT
declare -A PER
for mode in admin key secret; do
  valgrind --tool=callgrind --callgrind-out-file="$OUT/$mode.callgrind" --dump-instr=no \
    "$TARGET/release/worklease-server" --listen 127.0.0.1:0 --token bench-token \
    --default-ttl-seconds 600 --log-level warn >"$OUT/$mode.out" 2>"$OUT/$mode.err" &
  PID=$!
  addr=
  for _ in $(seq 600); do
    addr=$(sed -n 's|^listening on http://||p' "$OUT/$mode.out" | head -1)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "credentials-instructions: the server did not start" >&2; exit 1; }
  python3 scripts/bench_credentials.py "$addr" bench-token "$ITEMS" >"$OUT/ids"
  callgrind_control -z "$PID" >/dev/null 2>&1
  wrk -t1 -c10 -d"${SECONDS_PER_RUN}s" -s scripts/heartbeat_credentials.lua "http://$addr" \
    -- "$OUT/ids" "$mode" >"$OUT/$mode.wrk"
  kill -TERM "$PID"
  wait "$PID" || true
  PID=
  if grep -qE "Non-2xx|Socket errors" "$OUT/$mode.wrk"; then
    echo "credentials-instructions: $mode: wrk saw errors:" >&2; cat "$OUT/$mode.wrk" >&2; exit 1
  fi
  requests=$(awk '/requests in/ {print $1}' "$OUT/$mode.wrk")
  instructions=$(awk '/^summary:/ {print $2}' "$OUT/$mode.callgrind")
  PER[$mode]=$((instructions / requests))
  echo "$mode: ${PER[$mode]} instructions/request ($instructions over $requests requests)"
done
for mode in key secret; do
  python3 -c "print(f'$mode / admin: {${PER[$mode]} / ${PER[admin]}:.3f}x instructions')"
done
