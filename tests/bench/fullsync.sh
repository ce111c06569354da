#!/usr/bin/env bash
# Full-sync benchmark: a master holding N keys (DEBUG POPULATE, 100-byte
# values) gets a new replica of the same kind, while one client keeps
# writing to the master and timing every SET. Measures how long the full
# sync takes (REPLICAOF until the replica's link is up with the data
# loaded) and the master's write latency tail while it runs: redis-server
# forks for its snapshot; datanode cuts a point-in-time snapshot without
# forking. Rounds alternate the servers; medians are printed, with the
# datanode/redis-server ratios.
#
#   tests/bench/fullsync.sh [--keys N] [--rounds N]
#
# Environment: DATANODE_BIN (default target/release/datanode, built unless
# DATANODE_BIN_GIVEN=1), CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
. "$ROOT/tests/bench/lib.sh"
KEYS=1000000
ROUNDS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) KEYS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
release_datanode
(cd "$ROOT" && cargo build --release -p slotkv-tests --bin latency_probe >/dev/null 2>&1) || { echo "build of latency_probe failed" >&2; exit 1; }
PROBE="$TARGET/release/latency_probe"

WORK=$(mktemp -d /tmp/slotkv-fullsync.XXXXXX)
trap 'stop_servers; rm -rf "$WORK"' EXIT INT TERM

now_ms() { date +%s%3N; }

run_one() { # name binary -> prints "sync_ms count p50 p99 p999 max"
  local name=$1 bin=$2 mp rp dir stop probe_out t0 t1
  dir="$WORK/$name.$RANDOM"
  mp=$(free_port); rp=$(free_port)
  # Both sides as Redis 7.0 defaults them, but with no delay before a
  # diskless transfer (it would only add a constant wait).
  local common=(--save '' --appendonly no --repl-diskless-sync-delay 0 --enable-debug-command yes)
  start_server master "$bin" "$mp" "$dir/m" "${common[@]}"
  start_server replica "$bin" "$rp" "$dir/r" "${common[@]}"
  redis-cli -p "$mp" debug populate "$KEYS" key 100 >/dev/null
  stop="$dir/stop"; probe_out="$dir/probe"
  "$PROBE" "$mp" "$stop" 120 >"$probe_out" &
  local probe=$!
  # A moment of steady writes first, so the window holds normal latencies too.
  sleep 1
  t0=$(now_ms)
  redis-cli -p "$rp" replicaof 127.0.0.1 "$mp" >/dev/null
  for _ in $(seq 1 1200); do
    local info
    info=$(redis-cli -p "$rp" info replication 2>/dev/null || true)
    if grep -q "master_link_status:up" <<<"$info" && grep -q "master_sync_in_progress:0" <<<"$info"; then
      break
    fi
    sleep 0.05
  done
  t1=$(now_ms)
  sleep 1
  touch "$stop"
  wait "$probe"
  local keys
  keys=$(redis-cli -p "$rp" dbsize)
  stop_servers
  [ "$keys" -ge "$KEYS" ] || { echo "$name: the replica holds $keys keys, expected $KEYS" >&2; exit 1; }
  echo "$((t1 - t0)) $(cat "$probe_out")"
}

echo "keys=$KEYS value=100B rounds=$ROUNDS; one client writing (SET, one at a time) during the sync"
: > "$WORK/res"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then order="redis datanode"; else order="datanode redis"; fi
  for s in $order; do
    if [ "$s" = redis ]; then bin=redis-server; else bin=$DATANODE_BIN; fi
    line=$(run_one "$s" "$bin")
    echo "$s $line" >> "$WORK/res"
    echo "  round $r $s: sync_ms count p50_us p99_us p999_us max_us = $line" >&2
  done
done
col() { grep "^$1 " "$WORK/res" | awk -v c="$2" '{print $c}' | median; }
printf '%-9s %9s %9s %9s %9s %9s\n' server sync_ms p50_us p99_us p999_us max_us
for s in redis datanode; do
  printf '%-9s %9.0f %9.0f %9.0f %9.0f %9.0f\n' "$s" "$(col $s 2)" "$(col $s 4)" "$(col $s 5)" "$(col $s 6)" "$(col $s 7)"
done
awk -v sr="$(col redis 2)" -v sd="$(col datanode 2)" -v pr="$(col redis 5)" -v pd="$(col datanode 5)" \
    -v mr="$(col redis 7)" -v md="$(col datanode 7)" \
  'BEGIN { printf "datanode/redis: sync time %.2fx, write p99 during sync %.2fx, worst write %.2fx (lower is better)\n", sd/sr, pd/pr, md/mr }'
