#!/usr/bin/env bash
# Heartbeats per second over HTTP with each kind of credential (docs/security.md), in one run
# on this machine: the in-memory server, wrk with 50 connections, unconditional heartbeats on
# random acked items sent with the admin token, with the environment key, and with each item's
# own sessions_token, in alternating rounds (ROUNDS of SECONDS each) with the bare axum route
# (server/examples/bare.rs: the same body, no credentials, no table), so other load falls on all
# alike. Prints each kind's median rate and its ratios to the bare route's and to the admin
# token's (whose check is a plain comparison).
#
#   scripts/credentials-bench.sh [SECONDS] [ITEMS] [ROUNDS]   # defaults: 5 s, 1000 items, 3 rounds
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-5}
ITEMS=${2:-1000}
ROUNDS=${3:-3}
for tool in wrk python3; do
  command -v "$tool" >/dev/null || { echo "credentials-bench: $tool is missing" >&2; exit 1; }
done
cargo build --release --quiet -p worklease-server --bins --examples
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
WORK=$(mktemp -d)
PID= BARE_PID=
cleanup() { for pid in $PID $BARE_PID; do kill "$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
"$TARGET/release/examples/bare" 127.0.0.1:0 >"$WORK/bare.out" &
BARE_PID=$!
"$TARGET/release/worklease-server" --listen 127.0.0.1:0 --token bench-token \
  --default-ttl-seconds 600 >"$WORK/out" 2>"$WORK/err" &
PID=$!
for _ in $(seq 100); do grep -q '^listening on ' "$WORK/out" && break; sleep 0.1; done
ADDR=$(sed -n 's|^listening on http://||p' "$WORK/out")
for _ in $(seq 100); do grep -q '^listening on ' "$WORK/bare.out" && break; sleep 0.1; done
BARE_ADDR=$(sed -n 's|^listening on http://||p' "$WORK/bare.out")
python3 scripts/bench_credentials.py "$ADDR" bench-token "$ITEMS" >"$WORK/ids"
declare -A RATES
for round in $(seq "$ROUNDS"); do
  for mode in admin key secret bare; do
    # The bare route takes any path and ignores the credential: the admin token's requests.
    if [ "$mode" = bare ]; then target=$BARE_ADDR sent=admin; else target=$ADDR sent=$mode; fi
    wrk -t2 -c50 -d"${SECONDS_PER_RUN}s" -s scripts/heartbeat_credentials.lua \
      "http://$target" -- "$WORK/ids" "$sent" >"$WORK/wrk"
    if grep -q 'Non-2xx' "$WORK/wrk"; then
      echo "credentials-bench: $mode heartbeats were refused:" >&2; cat "$WORK/wrk" >&2; exit 1
    fi
    rate=$(sed -n 's/^Requests\/sec: *//p' "$WORK/wrk")
    RATES[$mode]="${RATES[$mode]:-} $rate"
  done
done
median() { printf '%s\n' $1 | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
admin=$(median "${RATES[admin]}")
bare=$(median "${RATES[bare]}")
for mode in admin key secret bare; do
  rate=$(median "${RATES[$mode]}")
  printf '%-6s %10.0f heartbeats/s  (rounds:%s)  %.3f x bare  %.3f x admin\n' "$mode" "$rate" \
    "${RATES[$mode]}" "$(python3 -c "print($rate / $bare)")" "$(python3 -c "print($rate / $admin)")"
done
