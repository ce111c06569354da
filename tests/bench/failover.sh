#!/usr/bin/env bash
# Failover time: a 3-master, 3-replica cluster of one kind (made with
# `redis-cli --cluster create`); one master is killed with SIGKILL and a
# client retries `SET` of a key in its slots on that master's replica
# every 10 ms. The time is from the kill to the first OK. Runs at each
# node timeout given, alternating the servers; medians, with the
# datanode/redis-server ratio and the ratio to the node timeout.
#
#   tests/bench/failover.sh [--timeouts "1000 5000"] [--rounds N]
#
# Environment: DATANODE_BIN (default target/release/datanode, built unless
# DATANODE_BIN_GIVEN=1), CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
. "$ROOT/tests/bench/lib.sh"
TIMEOUTS="1000 5000"
ROUNDS=5
while [ $# -gt 0 ]; do
  case "$1" in
    --timeouts) TIMEOUTS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

release_datanode

WORK=$(mktemp -d /tmp/slotkv-failover.XXXXXX)
trap 'stop_servers; rm -rf "$WORK"' EXIT INT TERM

now_ms() { date +%s%3N; }

field() { grep "^$1:" | cut -d: -f2 | tr -d '\r'; }

run_one() { # name binary timeout -> failover ms
  local name=$1 bin=$2 timeout=$3 dir ports=() hosts=()
  dir="$WORK/$name.$RANDOM"
  for i in 1 2 3 4 5 6; do
    local p
    p=$(free_cluster_port)
    ports+=("$p")
    hosts+=("127.0.0.1:$p")
    start_server "n$i" "$bin" "$p" "$dir/$p" --cluster-enabled yes \
      --cluster-config-file nodes.conf --cluster-node-timeout "$timeout" \
      --save '' --appendonly no
  done
  redis-cli --cluster create "${hosts[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1
  # Wait (bounded) until every node says ok and knows every replica.
  for _ in $(seq 1 600); do
    local ok=1
    for p in "${ports[@]}"; do
      [ "$(redis-cli -p "$p" cluster info | field cluster_state)" = ok ] || ok=0
      [ "$(redis-cli -p "$p" cluster nodes | grep -c slave)" = 3 ] || ok=0
    done
    [ $ok = 1 ] && break
    sleep 0.05
  done
  # The second node is a master (redis-cli gives the first three the
  # slots); find its replica and a key it serves.
  local mp=${ports[1]} rp="" key=""
  for p in "${ports[@]}"; do
    if [ "$(redis-cli -p "$p" info replication | field master_port)" = "$mp" ]; then rp=$p; fi
  done
  for i in $(seq 1 1000); do
    if [ "$(redis-cli -p "$mp" set "k$i" v 2>/dev/null)" = OK ]; then key="k$i"; break; fi
  done
  # The replica must be in sync (a replica that never synced may not run).
  for _ in $(seq 1 200); do
    redis-cli -p "$rp" info replication | grep -q "master_link_status:up" && break
    sleep 0.05
  done
  local mpid
  mpid=$(redis-cli -p "$mp" info server | field process_id)
  local t0 t1
  t0=$(now_ms)
  kill -9 "$mpid"
  for _ in $(seq 1 6000); do
    [ "$(redis-cli -p "$rp" set "$key" w 2>/dev/null)" = OK ] && break
    sleep 0.01
  done
  t1=$(now_ms)
  stop_servers
  echo $((t1 - t0))
}

: > "$WORK/res"
for t in $TIMEOUTS; do
  for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then order="redis datanode"; else order="datanode redis"; fi
    for s in $order; do
      if [ "$s" = redis ]; then bin=redis-server; else bin=$DATANODE_BIN; fi
      ms=$(run_one "$s" "$bin" "$t")
      echo "$t $s $ms" >> "$WORK/res"
      echo "  timeout $t round $r $s: $ms ms" >&2
    done
  done
done
col() { grep "^$1 $2 " "$WORK/res" | awk '{print $3}' | median; }
printf '%-10s %-9s %12s %14s\n' timeout_ms server failover_ms x_timeout
for t in $TIMEOUTS; do
  for s in redis datanode; do
    printf '%-10s %-9s %12.0f %14.2f\n' "$t" "$s" "$(col "$t" $s)" "$(awk -v m="$(col "$t" $s)" -v t="$t" 'BEGIN{print m/t}')"
  done
  awk -v r="$(col "$t" redis)" -v d="$(col "$t" datanode)" -v t="$t" \
    'BEGIN { printf "node timeout %d: datanode/redis failover time %.2fx\n", t, (r > 0 ? d/r : 0) }'
done
