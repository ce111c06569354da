#!/usr/bin/env bash
# Replication lag under load: a master and one replica of the same kind;
# `redis-benchmark -t set -P 16` writes to the master while the replica's
# lag (master_repl_offset − the replica's offset, in bytes; the replica
# read first, so an upper bound) is sampled every 100 ms. Prints the load's throughput, the median and worst lag,
# and how long the replica took to catch up after the load ended. Rounds
# alternate the servers; medians, with datanode/redis-server ratios.
#
#   tests/bench/repllag.sh [--requests N] [--rounds N]
#
# Environment: DATANODE_BIN (default target/release/datanode, built unless
# DATANODE_BIN_GIVEN=1), CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
. "$ROOT/tests/bench/lib.sh"
REQUESTS=2000000
ROUNDS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --requests) REQUESTS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
release_datanode

WORK=$(mktemp -d /tmp/slotkv-repllag.XXXXXX)
trap 'stop_servers; rm -rf "$WORK"' EXIT INT TERM

field() { grep "^$1:" | cut -d: -f2 | tr -d '\r'; }
now_ms() { date +%s%3N; }

run_one() { # name binary -> "rps median_lag max_lag catchup_ms"
  local name=$1 bin=$2 mp rp dir
  dir="$WORK/$name.$RANDOM"
  mp=$(free_port); rp=$(free_port)
  local common=(--save '' --appendonly no --repl-diskless-sync-delay 0)
  start_server master "$bin" "$mp" "$dir/m" "${common[@]}"
  start_server replica "$bin" "$rp" "$dir/r" "${common[@]}"
  redis-cli -p "$rp" replicaof 127.0.0.1 "$mp" >/dev/null
  for _ in $(seq 1 200); do
    redis-cli -p "$rp" info replication | grep -q "master_link_status:up" && break
    sleep 0.05
  done
  redis-benchmark -p "$mp" -t set -n "$REQUESTS" -P 16 -c 50 -r 100000 -d 64 --csv >"$dir/bench.csv" 2>/dev/null &
  local bench=$!
  : >"$dir/lags"
  while kill -0 "$bench" 2>/dev/null; do
    local m r
    # Replica first, then master: the lag read is an upper bound (the
    # master moves on meanwhile), the same for both servers.
    r=$(redis-cli -p "$rp" info replication | field slave_repl_offset)
    m=$(redis-cli -p "$mp" info replication | field master_repl_offset)
    [ -n "$m" ] && [ -n "$r" ] && echo $((m > r ? m - r : 0)) >>"$dir/lags"
    sleep 0.1
  done
  wait "$bench" || true
  local t0 t1
  t0=$(now_ms)
  for _ in $(seq 1 600); do
    local m r
    m=$(redis-cli -p "$mp" info replication | field master_repl_offset)
    r=$(redis-cli -p "$rp" info replication | field slave_repl_offset)
    [ "$m" = "$r" ] && break
    sleep 0.05
  done
  t1=$(now_ms)
  local rps
  rps=$(grep '"SET"' "$dir/bench.csv" | cut -d, -f2 | tr -d '"')
  local med max
  med=$(median <"$dir/lags")
  max=$(sort -n "$dir/lags" | tail -1)
  stop_servers
  echo "$rps $med $max $((t1 - t0))"
}

echo "redis-benchmark -t set -n $REQUESTS -P 16 -c 50 -r 100000 -d 64 on the master, one replica; rounds=$ROUNDS"
: > "$WORK/res"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then order="redis datanode"; else order="datanode redis"; fi
  for s in $order; do
    if [ "$s" = redis ]; then bin=redis-server; else bin=$DATANODE_BIN; fi
    line=$(run_one "$s" "$bin")
    echo "$s $line" >> "$WORK/res"
    echo "  round $r $s: rps median_lag_bytes max_lag_bytes catchup_ms = $line" >&2
  done
done
col() { grep "^$1 " "$WORK/res" | awk -v c="$2" '{print $c}' | median; }
printf '%-9s %11s %16s %13s %11s\n' server set_per_s median_lag_bytes max_lag_bytes catchup_ms
for s in redis datanode; do
  printf '%-9s %11.0f %16.0f %13.0f %11.0f\n' "$s" "$(col $s 2)" "$(col $s 3)" "$(col $s 4)" "$(col $s 5)"
done
awk -v rr="$(col redis 2)" -v rd="$(col datanode 2)" -v mr="$(col redis 4)" -v md="$(col datanode 4)" \
  'BEGIN { printf "datanode/redis: write throughput %.2fx, worst lag %.2fx (lower is better)\n", rd/rr, (mr > 0 ? md/mr : 0) }'
