#!/usr/bin/env bash
# Instructions per heartbeat request over HTTP, counted by callgrind (exact and unaffected by
# other load on the machine, unlike requests per second): the in-memory server over plain HTTP
# and over HTTPS (--tls-cert, a P-256 certificate from a CA made with openssl, as in
# scripts/service-bench.sh), against the bare axum route (server/examples/bare.rs), all driven
# by the same wrk heartbeats (scripts/heartbeat.lua) on ITEMS acked items.
#
# Each process runs under callgrind; its counters are zeroed once it is set up (for the server:
# once bench_items.py has created and acked the items), wrk then runs for SECONDS, and the
# process is stopped with SIGTERM. Instructions counted (Ir, every thread) / wrk's requests =
# instructions per request. The callgrind files are kept in OUT_DIR for callgrind_annotate.
#
#   scripts/request-instructions.sh [SECONDS] [ITEMS] [OUT_DIR]   # defaults: 20 s, 1000, a temp dir
# Needs valgrind, wrk, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${1:-20}
ITEMS=${2:-1000}
OUT=${3:-$(mktemp -d)}
CONNECTIONS=10
TOKEN=bench-token
mkdir -p "$OUT"

for tool in valgrind callgrind_control wrk python3 openssl; do
  command -v "$tool" >/dev/null || { echo "request-instructions: $tool is missing" >&2; exit 1; }
done

cargo build --release --quiet -p worklease-server --bins --examples
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null || true; }
trap cleanup EXIT

# measure NAME SCHEME SETUP CMD...: CMD under callgrind; SETUP ADDR runs once it listens (its
# stdout is the ids file); wrk calls SCHEME://ADDR. Prints NAME, requests, instructions and
# instructions per request.
measure() {
  local name=$1 scheme=$2 setup=$3; shift 3
  valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.callgrind" --dump-instr=no \
    "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" &
  PID=$!
  local addr=
  for _ in $(seq 600); do
    addr=$(sed -n "s|^listening on $scheme://||p" "$OUT/$name.out" | head -1)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "request-instructions: $name did not start: $(cat "$OUT/$name.err")" >&2; exit 1; }
  "$setup" "$addr" >"$OUT/$name.ids"
  callgrind_control -z "$PID" >/dev/null 2>&1
  wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" -s scripts/heartbeat.lua "$scheme://$addr" \
    -- "$OUT/$name.ids" "$TOKEN" >"$OUT/$name.wrk"
  kill -TERM "$PID"
  wait "$PID" || true
  PID=
  if grep -qE "Non-2xx|Socket errors" "$OUT/$name.wrk"; then
    echo "request-instructions: $name: wrk saw errors:" >&2; cat "$OUT/$name.wrk" >&2; exit 1
  fi
  local requests instructions
  requests=$(awk '/requests in/ {print $1}' "$OUT/$name.wrk")
  instructions=$(awk '/^summary:/ {print $2}' "$OUT/$name.callgrind")
  echo "$name $requests $instructions $((instructions / requests))"
}

server_setup() { python3 scripts/bench_items.py "$1" "$TOKEN" "$ITEMS"; }
tls_setup() { python3 scripts/bench_items.py "$1" "$TOKEN" "$ITEMS" "$OUT/ca.pem"; }
# The bare route answers any path of the route's shape: the server's ids, so paths are alike.
bare_setup() { cat "$OUT/server.ids"; }

# A private CA and a server certificate for 127.0.0.1, for the HTTPS run.
scripts/loopback-cert.sh "$OUT"

SERVER_ARGS=(--listen 127.0.0.1:0 --token "$TOKEN" --default-ttl-seconds 600 --log-level warn)
read -r _ s_requests s_instructions s_per < <(measure server http server_setup \
  "$TARGET/release/worklease-server" "${SERVER_ARGS[@]}")
read -r _ t_requests t_instructions t_per < <(measure server-tls https tls_setup \
  "$TARGET/release/worklease-server" "${SERVER_ARGS[@]}" \
  --tls-cert "$OUT/server.pem" --tls-key "$OUT/server.key")
read -r _ b_requests b_instructions b_per < <(measure bare http bare_setup \
  "$TARGET/release/examples/bare" 127.0.0.1:0)
echo "server:        $s_per instructions/request ($s_instructions over $s_requests requests)"
echo "server, HTTPS: $t_per instructions/request ($t_instructions over $t_requests requests)"
echo "bare:          $b_per instructions/request ($b_instructions over $b_requests requests)"
python3 -c "print(f'server / bare: {$s_per / $b_per:.3f}x instructions; bare / server: {$b_per / $s_per:.3f}')"
python3 -c "print(f'HTTPS / plain: {$t_per / $s_per:.3f}x instructions (+{$t_per - $s_per} a request)')"
echo "callgrind files in $OUT (callgrind_annotate $OUT/server.callgrind)"
