#!/usr/bin/env bash
# Eviction benchmark: a Zipfian read-through cache (GET; on a miss, SET)
# against redis-server and a release datanode, with maxmemory at a quarter
# of the data set, for allkeys-lru and allkeys-lfu. Both servers get the
# same key sequence (same seed) and the same budget above their own empty
# used_memory; rounds alternate the servers so machine noise hits both.
# Prints hit ratios, throughput and the datanode/redis-server ratios.
#
#   tests/bench/eviction.sh [--rounds N] [--ops N] [--keys N] [--value BYTES]
#                           [--policies "allkeys-lru allkeys-lfu"]
#
# Environment: DATANODE_BIN (default target/release/datanode, built unless
# DATANODE_BIN_GIVEN=1), CARGO_TARGET_DIR (where to build).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
. "$ROOT/tests/bench/lib.sh"
ROUNDS=3
OPS=1000000
KEYS=200000
VALUE=200
POLICIES="allkeys-lru allkeys-lfu"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --ops) OPS=$2; shift 2 ;;
    --keys) KEYS=$2; shift 2 ;;
    --value) VALUE=$2; shift 2 ;;
    --policies) POLICIES=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
release_datanode
(cd "$ROOT" && cargo build --release -p slotkv-tests --bin evict_bench >/dev/null 2>&1) || { echo "build of evict_bench failed" >&2; exit 1; }
BENCH="$TARGET/release/evict_bench"

WORK=$(mktemp -d /tmp/slotkv-evict-bench.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM


run_one() { # server-name binary policy -> prints the bench line
  local name=$1 bin=$2 policy=$3 port
  port=$(free_port)
  mkdir -p "$WORK/$name"
  (cd "$WORK/$name" && exec "$bin" --port "$port" --bind 127.0.0.1 --dir "$WORK/$name" \
      --save '' --appendonly no --maxmemory-policy "$policy" >"$WORK/$name/log" 2>&1) &
  PID=$!
  for _ in $(seq 1 200); do
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ] && break
    sleep 0.05
  done
  "$BENCH" --port "$port" --keys "$KEYS" --value "$VALUE" --ops "$OPS" --warmup $((OPS / 3)) --seed 42
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=
}

field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }

echo "keys=$KEYS value=${VALUE}B ops=$OPS (+$((OPS / 3)) warm-up) zipf=0.99 seed=42 rounds=$ROUNDS"
echo "maxmemory = used_memory when empty + keys*value/4"
printf '%-12s %-9s %9s %12s\n' policy server hit_ratio ops_per_sec
for policy in $POLICIES; do
  : > "$WORK/res"
  for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then order="redis datanode"; else order="datanode redis"; fi
    for s in $order; do
      if [ "$s" = redis ]; then bin=redis-server; else bin=$DATANODE_BIN; fi
      line=$(run_one "$s" "$bin" "$policy")
      echo "$s $line" >> "$WORK/res"
      echo "  round $r $s: $line" >&2
    done
  done
  for s in redis datanode; do
    h=$(grep "^$s " "$WORK/res" | field hit_ratio | median)
    t=$(grep "^$s " "$WORK/res" | field ops_per_sec | median)
    printf '%-12s %-9s %9.4f %12.0f\n' "$policy" "$s" "$h" "$t"
    eval "H_$s=$h; T_$s=$t"
  done
  awk -v hr="$H_redis" -v hd="$H_datanode" -v tr="$T_redis" -v td="$T_datanode" -v p="$policy" \
    'BEGIN { printf "%-12s hit ratio datanode-redis: %+.2f points; throughput datanode/redis: %.2fx\n", p, (hd-hr)*100, td/tr }'
done
