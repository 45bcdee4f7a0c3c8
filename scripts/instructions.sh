#!/usr/bin/env bash
# Instructions per heartbeat, counted by callgrind (exact, unlike timings): table size, path.
#   scripts/instructions.sh [LEASES] [HEARTBEATS]     e.g. scripts/instructions.sh 10000 100000
set -euo pipefail
leases=${1:-10000}
heartbeats=${2:-100000}
cargo build --release --quiet --example heartbeat_loop
for mode in hit stale unknown; do
    out=$(mktemp)
    valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect='heartbeat_loop::run' \
        target/release/examples/heartbeat_loop "$leases" "$heartbeats" "$mode" 2>"$out" >/dev/null
    refs=$(grep -o 'refs: *[0-9,]*' "$out" | tr -d ', ' | cut -d: -f2)
    rm -f "$out"
    echo "$mode: $((refs / heartbeats)) instructions per heartbeat at $leases leases"
done
