#!/usr/bin/env bash
# A three-node worklease cluster on loopback (docs/contract.md §8 replicated mode): starts nodes 1–3 on
# 127.0.0.1 with data directories in a temporary directory, waits for a leader, prints each
# node's GET /cluster, and stops them cleanly (SIGTERM) at the end.
#
#   scripts/cluster.sh              # start, print the status, stop
#   scripts/cluster.sh --failover   # also: kill -9 the leader, time the election, print the
#                                   # status, restart the killed node, print it again
#   scripts/cluster.sh --hold       # keep the cluster running until Ctrl-C (prints the peers
#                                   # and the token so you can curl any node)
#
# Environment: WORKLEASE_SERVER (a built binary; default: cargo build --release),
# CLUSTER_TOKEN (default cluster-token), CLUSTER_SECRET (default: a fresh `openssl rand -hex 32`),
# CLUSTER_PORTS (default: three free ports).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-}
case "$MODE" in ""|--failover|--hold) ;; *) echo "usage: scripts/cluster.sh [--failover|--hold]" >&2; exit 2 ;; esac

if [ -z "${WORKLEASE_SERVER:-}" ]; then
  cargo build --release --quiet -p worklease-server
  TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  WORKLEASE_SERVER="$TARGET/release/worklease-server"
fi
TOKEN=${CLUSTER_TOKEN:-cluster-token}
# What the members present to each other: a fresh one each run, unless given.
SECRET=${CLUSTER_SECRET:-$(openssl rand -hex 32)}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
read -r -a PORTS <<<"${CLUSTER_PORTS:-$(free_port) $(free_port) $(free_port)}"
PEERS="1=127.0.0.1:${PORTS[0]},2=127.0.0.1:${PORTS[1]},3=127.0.0.1:${PORTS[2]}"
WORK=$(mktemp -d)
declare -A PID

start_node() {
  local n=$1
  "$WORKLEASE_SERVER" --listen "127.0.0.1:${PORTS[$((n - 1))]}" --token "$TOKEN" \
    --data-dir "$WORK/node$n" --node-id "$n" --peers "$PEERS" --log-level info \
    --cluster-secret "$SECRET" \
    >>"$WORK/node$n.out" 2>>"$WORK/node$n.log" &
  PID[$n]=$!
}
stop_all() {
  for n in "${!PID[@]}"; do kill -TERM "${PID[$n]}" 2>/dev/null || true; done
  for n in "${!PID[@]}"; do wait "${PID[$n]}" 2>/dev/null || true; done
}
cleanup() { stop_all; rm -rf "$WORK"; }
trap cleanup EXIT

status() { # status N: the node's GET /cluster, or "down"
  curl -s -m 1 -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:${PORTS[$(($1 - 1))]}/cluster" || echo down
}
print_status() {
  for n in 1 2 3; do
    if [ -n "${PID[$n]:-}" ]; then echo "node $n (127.0.0.1:${PORTS[$((n - 1))]}): $(status "$n")"; else echo "node $n: stopped"; fi
  done
}
leader_of() { # the leader id node N reports, if N itself says it leads or follows one
  status "$1" | python3 -c 'import json,sys
try: s = json.load(sys.stdin)
except Exception: sys.exit(0)
print(s["leader_id"] if s.get("leader_id") else "")'
}
wait_for_leader() { # wait_for_leader [EXCEPT]: prints the id a live node (not EXCEPT) reports as leader
  for _ in $(seq 200); do
    for n in 1 2 3; do
      [ "$n" = "${1:-}" ] && continue
      [ -z "${PID[$n]:-}" ] && continue
      local leader; leader=$(leader_of "$n")
      if [ -n "$leader" ] && [ "$leader" != "${1:-}" ] && [ "$(leader_of "$leader")" = "$leader" ]; then
        echo "$leader"; return 0
      fi
    done
    sleep 0.05
  done
  echo "cluster: no leader; logs in $WORK" >&2; tail -n 20 "$WORK"/node*.log >&2; return 1
}

echo "starting three nodes: --peers $PEERS (data in $WORK)"
for n in 1 2 3; do start_node "$n"; done
LEADER=$(wait_for_leader)
echo "leader: node $LEADER"
print_status

if [ "$MODE" = "--failover" ]; then
  echo
  echo "kill -9 node $LEADER (the leader)"
  kill -9 "${PID[$LEADER]}"; wait "${PID[$LEADER]}" 2>/dev/null || true
  unset "PID[$LEADER]"
  started=$(date +%s.%N)
  NEW=$(wait_for_leader "$LEADER")
  echo "new leader: node $NEW after $(python3 -c "print(f'{$(date +%s.%N) - $started:.2f}')") s"
  print_status
  echo
  echo "restart node $LEADER with the same flags"
  start_node "$LEADER"
  for _ in $(seq 100); do [ "$(leader_of "$LEADER")" = "$NEW" ] && break; sleep 0.05; done
  print_status
elif [ "$MODE" = "--hold" ]; then
  echo
  echo "token: $TOKEN; try: curl -s -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:${PORTS[1]}/cluster"
  echo "Ctrl-C stops the cluster"
  trap 'echo; echo stopping' INT
  wait || true
fi
echo
echo "stopping the cluster"
stop_all
PID=()
echo "stopped"
