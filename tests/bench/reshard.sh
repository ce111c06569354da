#!/usr/bin/env bash
# Legacy resharding speed: a 3-master cluster of one kind; the first
# master's slots 0-999 hold the keys (500k values of 16 bytes, or 100
# values of 1 MB); `redis-cli --cluster reshard` moves those 1000 slots to
# the second master (SETSLOT, GETKEYSINSLOT, MIGRATE) while a client SETs
# keys of a slot that stays on the first master, one at a time. Reports
# keys moved per second and that client's p99 and worst latency, for
# redis-server and datanode in the same run, alternating; `atomic` is
# datanode moving the same slots with CLUSTER MIGRATESLOTS (Valkey 9's
# atomic slot migration, timed by tests/bench/migrateslots.py; the
# pipeline setting does not apply to it).
#
#   tests/bench/reshard.sh [--keys N] [--rounds N] [--pipelines "10 100"]
#                          [--values "small:N large:100 huge:1"]
#
# small: N keys of 16 bytes; large: 100 keys of 1 MB; huge: one 100 MB
# value (the client's worst latency shows how long MIGRATE stalls it).
#
# Environment: DATANODE_BIN (default target/release/datanode, built unless
# DATANODE_BIN_GIVEN=1), CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
. "$ROOT/tests/bench/lib.sh"
KEYS=500000
ROUNDS=1
PIPELINES="10 100"
SPECS="small:$KEYS large:100 huge:1"
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) KEYS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --pipelines) PIPELINES=$2; shift 2 ;;
    --values) SPECS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

release_datanode
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release -p slotkv-tests --bin latency_probe >/dev/null 2>&1) ||
  { echo "build of latency_probe failed" >&2; exit 1; }
PROBE="$TARGET/release/latency_probe"

WORK=$(mktemp -d /tmp/slotkv-reshard.XXXXXX)
trap 'stop_servers; rm -rf "$WORK"' EXIT INT TERM

now_ms() { date +%s%3N; }
field() { grep "^$1:" | cut -d: -f2 | tr -d '\r'; }

gen_data() { gen_slot_data "$1" "$2" "$WORK/probe-tag"; }

run_one() { # name binary kind nkeys pipeline -> "secs p99_us max_us"
  local name=$1 bin=$2 kind=$3 n=$4 pipe=$5 dir ports=()
  dir="$WORK/$name.$RANDOM"
  start_cluster3 "$bin" "$dir"
  ports=("${CLUSTER_PORTS[@]}")
  # redis-cli gives the first node slots 0-5460.
  local src=${ports[0]} dst=${ports[1]}
  gen_data "$kind" "$n" > "$dir/data.resp"
  redis-cli -p "$src" --pipe < "$dir/data.resp" > "$dir/pipe.log" 2>&1
  local got
  got=$(redis-cli -p "$src" dbsize)
  [ "$got" = "$n" ] || { echo "loaded $got of $n keys" >&2; return 1; }
  local sid did
  sid=$(redis-cli -p "$src" cluster myid)
  did=$(redis-cli -p "$dst" cluster myid)
  rm -f "$dir/stop"
  "$PROBE" "$src" "$dir/stop" 600 "$(cat "$WORK/probe-tag")" > "$dir/probe.out" &
  local probe=$!
  sleep 0.5
  local t0 t1
  t0=$(now_ms)
  local secs=""
  if [ "$name" = atomic ]; then
    # Valkey 9-style: one command, then polled until the job ends, timed
    # inside one process (migrateslots.py) so start-ups do not count.
    secs=$(python3 "$ROOT/tests/bench/migrateslots.py" "$src" 0 999 "$did") || return 1
  else
    redis-cli --cluster reshard "127.0.0.1:$src" --cluster-from "$sid" --cluster-to "$did" \
      --cluster-slots 1000 --cluster-yes --cluster-pipeline "$pipe" > "$dir/reshard.log" 2>&1
  fi
  t1=$(now_ms)
  touch "$dir/stop"
  wait "$probe"
  local moved
  moved=$(redis-cli -p "$dst" dbsize)
  [ "$moved" = "$n" ] || { echo "$name: $moved of $n keys moved" >&2; return 1; }
  stop_servers
  local lat
  lat=$(cat "$dir/probe.out")
  [ -n "$secs" ] || secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print (b-a)/1000}')
  echo "$secs $(echo "$lat" | awk '{print $3, $5}')"
}

: > "$WORK/res"
for spec in $SPECS; do
  kind=${spec%%:*} n=${spec##*:}
  [ "$kind" = small ] && n=$KEYS
  for pipe in $PIPELINES; do
    for r in $(seq 1 "$ROUNDS"); do
      if [ $((r % 2)) -eq 1 ]; then order="redis datanode atomic"; else order="atomic datanode redis"; fi
      for s in $order; do
        if [ "$s" = redis ]; then bin=redis-server; else bin=$DATANODE_BIN; fi
        res=$(run_one "$s" "$bin" "$kind" "$n" "$pipe")
        echo "$kind $pipe $s $res" >> "$WORK/res"
        echo "  $kind pipeline $pipe round $r $s: $res (secs p99_us max_us)" >&2
      done
    done
  done
done
col() { grep "^$1 $2 $3 " "$WORK/res" | awk -v c="$4" '{print $c}' | median; }
printf '%-6s %-9s %-9s %9s %11s %9s %10s\n' values pipeline server keys/s ratio p99_us max_us
for spec in $SPECS; do
  kind=${spec%%:*} n=${spec##*:}
  [ "$kind" = small ] && n=$KEYS
  for pipe in $PIPELINES; do
    r_s=$(col "$kind" "$pipe" redis 4)
    for s in redis datanode atomic; do
      secs=$(col "$kind" "$pipe" $s 4)
      printf '%-6s %-9s %-9s %9.1f %11.2f %9.0f %10.0f\n' "$kind" "$pipe" "$s" \
        "$(awk -v n="$n" -v t="$secs" 'BEGIN{print n/t}')" \
        "$(awk -v a="$r_s" -v b="$secs" 'BEGIN{print a/b}')" \
        "$(col "$kind" "$pipe" $s 5)" "$(col "$kind" "$pipe" $s 6)"
    done
  done
done
