#!/usr/bin/env bash
# Heartbeats per second over HTTP, in one run on this machine, with wrk and 50 connections:
#
#   1. worklease-server in memory: unconditional heartbeats on random acked items
#      (scripts/heartbeat.lua), over plain HTTP and over HTTPS (--tls-cert, a P-256 certificate
#      from a CA made with openssl; wrk keeps its connections, so this is TLS's per-request
#      cost, not the handshake's); then, over plain HTTP, the same heartbeats sent with an
#      environment key and with each item's own item secret instead of the admin token
#      (scripts/heartbeat_credentials.lua, docs/security.md);
#   2. the ceiling: a bare axum route answering the same body (server/examples/bare.rs);
#   3. redis-benchmark EVALSHA compare-and-set, in memory and with appendfsync always;
#   4. worklease-server durable (--data-dir in a temporary directory): the same heartbeats,
#      each fsynced (group commit) before its answer, over plain HTTP and over HTTPS; then
#      "idle pollers": IDLE_WORKERS workers long-polling an empty environment for IDLE_SECONDS
#      (scripts/idle_pollers.py), counting the log entries they cause and the server's log
#      syncs meanwhile (GET /cluster's log_syncs), both of which should be 0;
#   5. a three-member replicated cluster on loopback (docs/contract.md §8): the same heartbeats sent to the
#      leader, then to a follower (which forwards each to the leader), each committed on a
#      majority before its answer, and reads of the same items at the leader (scripts/retrieve.lua:
#      each linearizable, after a leadership confirmation that concurrent reads share; the
#      script prints how many reads each confirmation served, from GET /cluster's read_rounds);
#      then "idle pollers" through the leader, counting the log syncs of all three members.
#
# The server (plain and TLS) and the bare route run in alternating rounds (ROUNDS of SECONDS each), so load from
# anything else on the machine falls on both alike; each reports its median round. Prints each
# rate with p50/p99 latency, and the ratios server / bare and server / redis. wrk shares the
# cores with the server, so the in-memory rounds also report the CPU time each side spends per
# heartbeat (the server's from /proc/PID/stat, wrk's from the shell's `time`), plain and HTTPS:
# the two sides' TLS costs are then visible apart.
# Needs wrk and redis-server (apt-get install wrk redis-server). Everything listens on
# 127.0.0.1 on free ports; redis runs in a temporary directory; all are stopped at the end.
#
#   scripts/service-bench.sh [SECONDS] [ITEMS] [ROUNDS]   # defaults: 10 s, 1000 items, 3 rounds
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${1:-10}
ITEMS=${2:-1000}
ROUNDS=${3:-3}
CONNECTIONS=50
THREADS=2

for tool in wrk redis-server redis-cli redis-benchmark python3 curl openssl; do
  command -v "$tool" >/dev/null || { echo "service-bench: $tool is missing (apt-get install wrk redis-server)" >&2; exit 1; }
done

cargo build --release --quiet -p worklease-server --bins --examples
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
SERVER="$TARGET/release/worklease-server"
BARE="$TARGET/release/examples/bare"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start NAME CMD...: runs CMD in the background, waits for its "listening on http://ADDR" line,
# and sets ADDR.
start() {
  local name=$1; shift
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  for _ in $(seq 100); do
    ADDR=$(sed -n 's|^listening on https\{0,1\}://||p' "$WORK/$name.out" | head -1)
    [ -n "$ADDR" ] && return 0
    sleep 0.1
  done
  echo "service-bench: $name did not start: $(cat "$WORK/$name.err")" >&2
  exit 1
}

# cpu_ticks PID: the user and system CPU time the process has used, in clock ticks.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# run_wrk NAME URL [IDS] [PID]: wrk with the heartbeat script; sets what wrk_with sets and,
# given the server's PID, SERVER_US, the server's CPU time per request (µs).
run_wrk() {
  local name=$1 url=$2 ids=${3:-$WORK/ids} pid=${4:-} ticks_before=0
  [ -n "$pid" ] && ticks_before=$(cpu_ticks "$pid")
  wrk_with "$name" "$url" scripts/heartbeat.lua "$ids" "$TOKEN"
  SERVER_US=
  if [ -n "$pid" ]; then
    SERVER_US=$(awk -v t="$(( $(cpu_ticks "$pid") - ticks_before ))" -v hz="$(getconf CLK_TCK)" \
      -v n="$REQUESTS" 'BEGIN {printf "%.2f", t / hz / n * 1e6}')
  fi
}
# run_wrk_as NAME URL MODE: the same heartbeats sent with one kind of credential (key or
# secret) on the items of scripts/bench_credentials.py; sets RATE, P50, P99 (ms).
run_wrk_as() {
  wrk_with "$1" "$2" scripts/heartbeat_credentials.lua "$WORK/credential-ids" "$3"
}
# wrk_with NAME URL SCRIPT ARGS...: one wrk run; sets RATE, P50, P99 (ms), REQUESTS and
# WRK_US, wrk's CPU time per request (µs).
wrk_with() {
  local name=$1 url=$2 script=$3 TIMEFORMAT='%U %S'; shift 3
  { time wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency \
    -s "$script" "$url" -- "$@" >"$WORK/$name.wrk"; } 2>"$WORK/$name.time"
  REQUESTS=$(awk '/requests in/ {print $1}' "$WORK/$name.wrk")
  WRK_US=$(tail -1 "$WORK/$name.time" | awk -v n="$REQUESTS" '{printf "%.2f", ($1 + $2) / n * 1e6}')
  if grep -q "Non-2xx" "$WORK/$name.wrk"; then
    echo "service-bench: $name answered errors:" >&2; cat "$WORK/$name.wrk" >&2; exit 1
  fi
  RATE=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$WORK/$name.wrk")
  P50=$(awk '$1 == "50%" {print $2}' "$WORK/$name.wrk" | to_ms)
  P99=$(awk '$1 == "99%" {print $2}' "$WORK/$name.wrk" | to_ms)
}
to_ms() { python3 -c '
import sys
v = sys.stdin.read().strip()
for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
    if v.endswith(unit):
        print(f"{float(v[:-len(unit)]) * scale:.3f}"); break
'; }

# A private CA and a server certificate for 127.0.0.1, for the HTTPS runs.
scripts/loopback-cert.sh "$WORK"
TLS_ARGS=(--tls-cert "$WORK/server.pem" --tls-key "$WORK/server.key")

# --- 1. the server, in memory
TOKEN=bench-token
start server "$SERVER" --listen 127.0.0.1:0 --token "$TOKEN" --default-ttl-seconds 600 --log-level warn
SERVER_ADDR=$ADDR
SERVER_PID=${PIDS[-1]}
# populate ADDR [CA]: one environment and ITEMS acked items on the server at ADDR (over HTTPS
# trusting CA when given); prints the ids.
populate() { python3 scripts/bench_items.py "$1" "$TOKEN" "$ITEMS" ${2:+"$2"}; }
populate "$SERVER_ADDR" >"$WORK/ids"
# An environment key and ITEMS items polled with it (each with its item secret), acked.
python3 scripts/bench_credentials.py "$SERVER_ADDR" "$TOKEN" "$ITEMS" >"$WORK/credential-ids"
start server-tls "$SERVER" --listen 127.0.0.1:0 --token "$TOKEN" --default-ttl-seconds 600 \
  --log-level warn "${TLS_ARGS[@]}"
TLS_ADDR=$ADDR
TLS_PID=${PIDS[-1]}
populate "$TLS_ADDR" "$WORK/ca.pem" >"$WORK/tls-ids"
# --- 2. the bare route, in rounds alternating with the server's
start bare "$BARE" 127.0.0.1:0
BARE_ADDR=$ADDR
: >"$WORK/server.rounds"; : >"$WORK/bare.rounds"; : >"$WORK/tls.rounds"
: >"$WORK/key.rounds"; : >"$WORK/secret.rounds"
# CPU µs per heartbeat in each round: "server wrk", plain and HTTPS.
: >"$WORK/server.cpu"; : >"$WORK/tls.cpu"
for round in $(seq "$ROUNDS"); do
  run_wrk server "http://$SERVER_ADDR" "$WORK/ids" "$SERVER_PID"; echo "$RATE $P50 $P99" >>"$WORK/server.rounds"
  echo "$SERVER_US $WRK_US" >>"$WORK/server.cpu"
  run_wrk_as key "http://$SERVER_ADDR" key; echo "$RATE $P50 $P99" >>"$WORK/key.rounds"
  run_wrk_as secret "http://$SERVER_ADDR" secret; echo "$RATE $P50 $P99" >>"$WORK/secret.rounds"
  run_wrk server-tls "https://$TLS_ADDR" "$WORK/tls-ids" "$TLS_PID"; echo "$RATE $P50 $P99" >>"$WORK/tls.rounds"
  echo "$SERVER_US $WRK_US" >>"$WORK/tls.cpu"
  run_wrk bare "http://$BARE_ADDR"; echo "$RATE $P50 $P99" >>"$WORK/bare.rounds"
  echo "round $round: server $(tail -1 "$WORK/server.rounds" | cut -d' ' -f1)/s, key $(tail -1 "$WORK/key.rounds" | cut -d' ' -f1)/s, secret $(tail -1 "$WORK/secret.rounds" | cut -d' ' -f1)/s, TLS $(tail -1 "$WORK/tls.rounds" | cut -d' ' -f1)/s, bare $(tail -1 "$WORK/bare.rounds" | cut -d' ' -f1)/s" >&2
done
median() { sort -n "$1" | awk '{ line[NR] = $0 } END { print line[int((NR + 1) / 2)] }'; }
read -r SERVER_RATE SERVER_P50 SERVER_P99 < <(median "$WORK/server.rounds")
read -r BARE_RATE BARE_P50 BARE_P99 < <(median "$WORK/bare.rounds")
read -r TLS_RATE TLS_P50 TLS_P99 < <(median "$WORK/tls.rounds")
read -r KEY_RATE KEY_P50 KEY_P99 < <(median "$WORK/key.rounds")
read -r SECRET_RATE SECRET_P50 SECRET_P99 < <(median "$WORK/secret.rounds")
for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
wait 2>/dev/null || true
PIDS=()

# --- 3. the server, durable: a fresh data directory, the same items and rounds
start durable "$SERVER" --listen 127.0.0.1:0 --token "$TOKEN" --default-ttl-seconds 600 \
  --log-level warn --data-dir "$WORK/data"
DURABLE_ADDR=$ADDR
populate "$DURABLE_ADDR" >"$WORK/durable-ids"
start durable-tls "$SERVER" --listen 127.0.0.1:0 --token "$TOKEN" --default-ttl-seconds 600 \
  --log-level warn --data-dir "$WORK/data-tls" "${TLS_ARGS[@]}"
DURABLE_TLS_ADDR=$ADDR
populate "$DURABLE_TLS_ADDR" "$WORK/ca.pem" >"$WORK/durable-tls-ids"
: >"$WORK/durable.rounds"; : >"$WORK/durable-tls.rounds"
for round in $(seq "$ROUNDS"); do
  run_wrk durable "http://$DURABLE_ADDR" "$WORK/durable-ids"
  echo "$RATE $P50 $P99" >>"$WORK/durable.rounds"
  run_wrk durable-tls "https://$DURABLE_TLS_ADDR" "$WORK/durable-tls-ids"
  echo "$RATE $P50 $P99" >>"$WORK/durable-tls.rounds"
  echo "round $round: durable $(tail -1 "$WORK/durable.rounds" | cut -d' ' -f1)/s, TLS $RATE/s" >&2
done
read -r DURABLE_RATE DURABLE_P50 DURABLE_P99 < <(median "$WORK/durable.rounds")
read -r DURABLE_TLS_RATE DURABLE_TLS_P50 DURABLE_TLS_P99 < <(median "$WORK/durable-tls.rounds")
IDLE_WORKERS=${IDLE_WORKERS:-50}
IDLE_SECONDS=${IDLE_SECONDS:-60}
read -r IDLE_POLLS IDLE_ENTRIES IDLE_ENTRIES_RATE IDLE_SYNCS IDLE_SYNC_RATE < <(python3 scripts/idle_pollers.py \
  "$DURABLE_ADDR" "$TOKEN" "$IDLE_WORKERS" "$IDLE_SECONDS")
echo "idle pollers, durable: $IDLE_POLLS polls/s, $IDLE_ENTRIES log entries, $IDLE_SYNCS log syncs" >&2
for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
wait 2>/dev/null || true
PIDS=()

# --- 3b. a three-member cluster: the same items and rounds through the leader, then a follower
free_ports() { python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))'; }
read -r -a CPORTS <<<"$(free_ports)"
PEERS="1=127.0.0.1:${CPORTS[0]},2=127.0.0.1:${CPORTS[1]},3=127.0.0.1:${CPORTS[2]}"
for n in 1 2 3; do
  start "node$n" "$SERVER" --listen "127.0.0.1:${CPORTS[$((n - 1))]}" --token "$TOKEN" \
    --default-ttl-seconds 600 --log-level warn --data-dir "$WORK/node$n" --node-id "$n" --peers "$PEERS" \
    --cluster-secret "bench-cluster-secret-0123456789abcdef"
done
LEADER_PORT=
for _ in $(seq 200); do
  for port in "${CPORTS[@]}"; do
    if curl -s -m 1 -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port/cluster" | grep -q '"role":"leader"'; then
      LEADER_PORT=$port; break 2
    fi
  done
  sleep 0.05
done
[ -n "$LEADER_PORT" ] || { echo "service-bench: the cluster elected no leader" >&2; exit 1; }
for port in "${CPORTS[@]}"; do [ "$port" != "$LEADER_PORT" ] && FOLLOWER_PORT=$port && break; done
populate "127.0.0.1:$LEADER_PORT" >"$WORK/cluster-ids"
: >"$WORK/leader.rounds"; : >"$WORK/follower.rounds"; : >"$WORK/reads.rounds"
# cluster_field NAME: GET /cluster's NAME at the leader.
cluster_field() {
  curl -s -m 2 -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$LEADER_PORT/cluster" |
    python3 -c "import json, sys; print(json.load(sys.stdin)['$1'])"
}
READS=0; READ_ROUNDS_BEFORE=$(cluster_field read_rounds)
for round in $(seq "$ROUNDS"); do
  run_wrk leader "http://127.0.0.1:$LEADER_PORT" "$WORK/cluster-ids"
  echo "$RATE $P50 $P99" >>"$WORK/leader.rounds"
  run_wrk follower "http://127.0.0.1:$FOLLOWER_PORT" "$WORK/cluster-ids"
  echo "$RATE $P50 $P99" >>"$WORK/follower.rounds"
  wrk_with reads "http://127.0.0.1:$LEADER_PORT" scripts/retrieve.lua "$WORK/cluster-ids" "$TOKEN"
  echo "$RATE $P50 $P99" >>"$WORK/reads.rounds"
  READS=$((READS + REQUESTS))
  echo "round $round: cluster leader $(tail -1 "$WORK/leader.rounds" | cut -d' ' -f1)/s, follower $(tail -1 "$WORK/follower.rounds" | cut -d' ' -f1)/s, reads $RATE/s" >&2
done
read -r LEADER_RATE LEADER_P50 LEADER_P99 < <(median "$WORK/leader.rounds")
read -r FOLLOWER_RATE FOLLOWER_P50 FOLLOWER_P99 < <(median "$WORK/follower.rounds")
read -r READS_RATE READS_P50 READS_P99 < <(median "$WORK/reads.rounds")
READ_ROUNDS=$(( $(cluster_field read_rounds) - READ_ROUNDS_BEFORE ))
read -r CIDLE_POLLS CIDLE_ENTRIES CIDLE_ENTRIES_RATE CIDLE_SYNCS CIDLE_SYNC_RATE < <(python3 scripts/idle_pollers.py \
  "127.0.0.1:$LEADER_PORT" "$TOKEN" "$IDLE_WORKERS" "$IDLE_SECONDS" "${CPORTS[@]/#/127.0.0.1:}")
echo "idle pollers, cluster: $CIDLE_POLLS polls/s, $CIDLE_ENTRIES log entries, $CIDLE_SYNCS log syncs" >&2
for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
wait 2>/dev/null || true
PIDS=()

# --- 4. redis EVALSHA compare-and-set: the same lease renewal as one Lua call per request
CAS='local held = redis.call("GET", KEYS[1])
if held == false or held == ARGV[1] then
  redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
  return 1
end
return 0'
# run_redis NAME EXTRA-ARGS...: sets RATE, P50, P99.
run_redis() {
  local name=$1; shift
  local port; port=$(free_port)
  mkdir -p "$WORK/$name"
  redis-server --bind 127.0.0.1 --port "$port" --protected-mode yes --dir "$WORK/$name" \
    --save '' --daemonize no --logfile "$WORK/$name/log" "$@" &
  PIDS+=($!)
  for _ in $(seq 100); do redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  local sha; sha=$(redis-cli -h 127.0.0.1 -p "$port" script load "$CAS")
  local requests=$(( BARE_RATE * SECONDS_PER_RUN / 2 + 10000 ))
  redis-benchmark -h 127.0.0.1 -p "$port" -c "$CONNECTIONS" -n "$requests" -r "$ITEMS" --csv \
    evalsha "$sha" 1 "lease:__rand_int__" worker-1 600000 >"$WORK/$name.csv"
  # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  read -r RATE P50 P99 < <(python3 -c '
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
row = rows[-1]
print(f"{float(row[1]):.0f} {float(row[4]):.3f} {float(row[6]):.3f}")' "$WORK/$name.csv")
  redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
  wait "${PIDS[-1]}" 2>/dev/null || true
}
run_redis redis-memory --appendonly no
REDIS_RATE=$RATE REDIS_P50=$P50 REDIS_P99=$P99
run_redis redis-fsync --appendonly yes --appendfsync always
FSYNC_RATE=$RATE FSYNC_P50=$P50 FSYNC_P99=$P99

ratio() { python3 -c "print(f'{$1 / $2:.2f}x')"; }
echo
echo "heartbeats over HTTP: wrk -t$THREADS -c$CONNECTIONS, ${SECONDS_PER_RUN} s a run, $ITEMS items, $(nproc) cores;"
echo "server and bare: median of $ROUNDS alternating rounds; redis-benchmark -c $CONNECTIONS, one run each"
printf '%-44s %10s %10s %10s\n' "target" "req/s" "p50 ms" "p99 ms"
printf '%-44s %10s %10s %10s\n' "worklease-server, in memory" "$SERVER_RATE" "$SERVER_P50" "$SERVER_P99"
printf '%-44s %10s %10s %10s\n' "worklease-server, in memory, HTTPS" "$TLS_RATE" "$TLS_P50" "$TLS_P99"
printf '%-44s %10s %10s %10s\n' "worklease-server, in memory, environment key" "$KEY_RATE" "$KEY_P50" "$KEY_P99"
printf '%-44s %10s %10s %10s\n' "worklease-server, in memory, item secret" "$SECRET_RATE" "$SECRET_P50" "$SECRET_P99"
printf '%-44s %10s %10s %10s\n' "worklease-server, durable (--data-dir)" "$DURABLE_RATE" "$DURABLE_P50" "$DURABLE_P99"
printf '%-44s %10s %10s %10s\n' "worklease-server, durable, HTTPS" "$DURABLE_TLS_RATE" "$DURABLE_TLS_P50" "$DURABLE_TLS_P99"
printf '%-44s %10s %10s %10s\n' "3-member cluster, through the leader" "$LEADER_RATE" "$LEADER_P50" "$LEADER_P99"
printf '%-44s %10s %10s %10s\n' "3-member cluster, through a follower" "$FOLLOWER_RATE" "$FOLLOWER_P50" "$FOLLOWER_P99"
printf '%-44s %10s %10s %10s\n' "3-member cluster, reads at the leader" "$READS_RATE" "$READS_P50" "$READS_P99"
printf '%-44s %10s %10s %10s\n' "bare axum route, same body" "$BARE_RATE" "$BARE_P50" "$BARE_P99"
printf '%-44s %10s %10s %10s\n' "redis EVALSHA compare-and-set, in memory" "$REDIS_RATE" "$REDIS_P50" "$REDIS_P99"
printf '%-44s %10s %10s %10s\n' "redis EVALSHA compare-and-set, fsync always" "$FSYNC_RATE" "$FSYNC_P50" "$FSYNC_P99"
echo "idle pollers: $IDLE_WORKERS workers long-polling (block_ms=999) an empty environment for ${IDLE_SECONDS} s"
printf '%-44s %10s %10s %10s\n' "target" "polls/s" "entries" "syncs/s"
printf '%-44s %10s %10s %10s\n' "idle pollers, durable" "$IDLE_POLLS" "$IDLE_ENTRIES" "$IDLE_SYNC_RATE"
printf '%-44s %10s %10s %10s\n' "idle pollers, 3-member cluster (all members)" "$CIDLE_POLLS" "$CIDLE_ENTRIES" "$CIDLE_SYNC_RATE"
echo
echo "server / bare:                 $(ratio "$SERVER_RATE" "$BARE_RATE") (medians); per round: $(paste -d' ' "$WORK/server.rounds" "$WORK/bare.rounds" \
  | python3 -c 'import sys; r = sorted(float(l.split()[0]) / float(l.split()[3]) for l in sys.stdin); print(" ".join(f"{x:.2f}" for x in r), f"(median {r[len(r) // 2]:.2f})")')"
# per_round A B: A / B in each round (the first column of both files), sorted, and their median.
per_round() { paste -d' ' "$1" "$2" \
  | python3 -c 'import sys; r = sorted(float(l.split()[0]) / float(l.split()[3]) for l in sys.stdin); print(" ".join(f"{x:.2f}" for x in r), f"(median {r[len(r) // 2]:.2f})")'; }
echo "environment key / bare:        $(ratio "$KEY_RATE" "$BARE_RATE") (medians); per round: $(per_round "$WORK/key.rounds" "$WORK/bare.rounds")"
echo "item secret / bare:            $(ratio "$SECRET_RATE" "$BARE_RATE") (medians); per round: $(per_round "$WORK/secret.rounds" "$WORK/bare.rounds")"
echo "TLS / plain, in memory:        $(ratio "$TLS_RATE" "$SERVER_RATE") (medians); per round: $(per_round "$WORK/tls.rounds" "$WORK/server.rounds")"
# cpu_line COLUMN: the medians of that column of server.cpu and tls.cpu, and HTTPS / plain.
cpu_line() { python3 -c '
import statistics, sys
plain, tls = ([float(line.split()[int(sys.argv[1])]) for line in open(f)] for f in sys.argv[2:])
p, t = statistics.median(plain), statistics.median(tls)
print(f"plain {p:.2f}, HTTPS {t:.2f} ({t / p:.2f}x)")' "$1" "$WORK/server.cpu" "$WORK/tls.cpu"; }
echo "CPU us a heartbeat, in memory: server $(cpu_line 0); wrk $(cpu_line 1) (medians)"
echo "TLS / plain, durable:          $(ratio "$DURABLE_TLS_RATE" "$DURABLE_RATE") (medians); per round: $(per_round "$WORK/durable-tls.rounds" "$WORK/durable.rounds")"
echo "server / redis (in memory):    $(ratio "$SERVER_RATE" "$REDIS_RATE")"
echo "server / redis (fsync always): $(ratio "$SERVER_RATE" "$FSYNC_RATE")"
echo "durable / redis (fsync always): $(ratio "$DURABLE_RATE" "$FSYNC_RATE")"
echo "cluster leader / durable:      $(ratio "$LEADER_RATE" "$DURABLE_RATE")"
echo "cluster follower / durable:    $(ratio "$FOLLOWER_RATE" "$DURABLE_RATE")"
echo "cluster reads: $READS reads shared $READ_ROUNDS leadership confirmations ($(awk -v r="$READS" -v c="$READ_ROUNDS" 'BEGIN {printf "%.1f", (c > 0 ? r / c : 0)}') reads a round)"
