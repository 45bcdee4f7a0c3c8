#!/usr/bin/env bash
# Heartbeats per second over HTTP against worklease-server in durable mode (--data-dir), with wrk
# and scripts/heartbeat.lua: every 2xx is fsynced before it is sent. Prints the rate, p50/p99
# latency, and the fsyncs the log made per request (group commit: many requests share one).
# Needs wrk (apt-get install wrk). Listens on 127.0.0.1 on a free port; the data directory is a
# temporary one, removed at the end.
#
#   scripts/durable-bench.sh [SECONDS] [ITEMS] [CONNECTIONS]   # defaults: 10 s, 1000 items, 50
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${1:-10}
ITEMS=${2:-1000}
CONNECTIONS=${3:-50}
THREADS=2
TOKEN=bench-token

for tool in wrk python3; do
  command -v "$tool" >/dev/null || { echo "durable-bench: $tool is missing (apt-get install wrk)" >&2; exit 1; }
done
cargo build --release --quiet -p worklease-server
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
SERVER="$TARGET/release/worklease-server"

WORK=$(mktemp -d)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$SERVER" --listen 127.0.0.1:0 --token "$TOKEN" --default-ttl-seconds 600 --data-dir "$WORK/data" \
  >"$WORK/server.out" 2>"$WORK/server.err" &
PID=$!
for _ in $(seq 300); do
  ADDR=$(sed -n 's|^listening on http://||p' "$WORK/server.out" | head -1)
  [ -n "$ADDR" ] && break
  sleep 0.1
done
[ -n "$ADDR" ] || { echo "durable-bench: the server did not start: $(cat "$WORK/server.err")" >&2; exit 1; }

python3 scripts/bench_items.py "$ADDR" "$TOKEN" "$ITEMS" >"$WORK/ids"

wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency \
  -s scripts/heartbeat.lua "http://$ADDR" -- "$WORK/ids" "$TOKEN" >"$WORK/wrk"
if grep -q "Non-2xx" "$WORK/wrk"; then
  echo "durable-bench: the server answered errors:" >&2; cat "$WORK/wrk" >&2; exit 1
fi
kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=

RATE=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$WORK/wrk")
REQUESTS=$(awk '/requests in/ {print $1}' "$WORK/wrk")
P50=$(awk '$1 == "50%" {print $2}' "$WORK/wrk")
P99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk")
# The server logs its log writer's totals when it stops: fsyncs, entries, commands.
TOTALS=$(grep "log closed" "$WORK/server.err" | tail -1)
field() { echo "$TOTALS" | sed -n "s/.*$1=\([0-9]*\).*/\1/p"; }
FSYNCS=$(field fsyncs); COMMANDS=$(field commands)
echo "durable heartbeats over HTTP: wrk -t$THREADS -c$CONNECTIONS -d${SECONDS_PER_RUN}s, $ITEMS items, $(nproc) cores"
echo "rate: $RATE req/s   p50: $P50   p99: $P99   ($REQUESTS requests)"
python3 -c "
f, c = int('${FSYNCS:-0}'), int('${COMMANDS:-0}')
print(f'log: {c} commands in {f} fsyncs: {c / max(f, 1):.1f} commands per fsync (setup included)')"
