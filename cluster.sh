#!/usr/bin/env bash
# A local slotkv cluster of datanodes on 127.0.0.1, in the spirit of
# Redis's utils/create-cluster:
#   ./cluster.sh start    start NODES datanodes (ports PORT+1 …)
#   ./cluster.sh create   join them with redis-cli --cluster create
#   ./cluster.sh stop     stop them
#   ./cluster.sh clean    remove their data and logs
#   ./cluster.sh run      start + create, then wait; Ctrl-C stops them
# Environment: PORT (30000), NODES (6), REPLICAS (1), TIMEOUT (5000 ms),
# BIN (target/release/datanode), DATA (./data/cluster).
set -euo pipefail
cd "$(dirname "$0")"

PORT=${PORT:-30000}
NODES=${NODES:-6}
REPLICAS=${REPLICAS:-1}
TIMEOUT=${TIMEOUT:-5000}
BIN=${BIN:-$PWD/target/release/datanode}
DATA=${DATA:-$PWD/data/cluster}

ports() { seq $((PORT + 1)) $((PORT + NODES)); }

start() {
  for p in $(ports); do
    mkdir -p "$DATA/$p"
    "$BIN" --port "$p" --bind 127.0.0.1 --dir "$DATA/$p" \
      --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-node-timeout "$TIMEOUT" --appendonly yes \
      --logfile "$DATA/$p/datanode.log" --pidfile "$DATA/$p/datanode.pid" \
      --daemonize yes
  done
  # Wait (bounded) until every node answers.
  for p in $(ports); do
    for _ in $(seq 100); do
      redis-cli -p "$p" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  echo "started $NODES datanodes on ports $((PORT + 1))-$((PORT + NODES))"
}

create() {
  local hosts=()
  for p in $(ports); do hosts+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${hosts[@]}" --cluster-replicas "$REPLICAS" --cluster-yes
}

stop() {
  for p in $(ports); do
    redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true
  done
  echo "stopped"
}

clean() {
  rm -rf "$DATA"
  echo "removed $DATA"
}

case "${1:-run}" in
  start) start ;;
  create) create ;;
  stop) stop ;;
  clean) clean ;;
  run)
    start
    # A restarted cluster keeps its nodes.conf; only a new one is created.
    if [ "$(redis-cli -p $((PORT + 1)) cluster info | grep -c 'cluster_known_nodes:1\b' || true)" = "1" ]; then
      create
    fi
    trap 'stop; exit 0' INT TERM
    echo
    echo "slotkv cluster ready: redis-cli -c -p $((PORT + 1))   (Ctrl-C stops it; ./cluster.sh clean wipes it)"
    while true; do sleep 3600; done
    ;;
  *)
    echo "usage: $0 [start|create|stop|clean|run]" >&2
    exit 1
    ;;
esac
