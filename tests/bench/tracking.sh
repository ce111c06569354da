#!/usr/bin/env bash
# SET throughput with client-side caching, redis-server and datanode side by
# side: both started with the same arguments as bench.sh; 50 RESP3 clients
# (tracking_clients.py) turn CLIENT TRACKING on and GET the whole keyspace
# redis-benchmark writes to (100000 keys, each tracked by one client), and
# read a key again whenever it is invalidated, as a caching client does.
# Then `redis-benchmark -t set -r 100000` at -P 1 and -P 16, alternating
# servers, for several rounds. The same runs without the tracking clients
# show what tracking costs. Prints medians and datanode/redis-server ratios.
#
#   tests/bench/tracking.sh [--rounds N] [--requests N]
#
# DATANODE_BIN=/path benchmarks another binary (default: the release build
# under $CARGO_TARGET_DIR or target/, which must exist).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
. "$ROOT/tests/bench/lib.sh"
ROUNDS=3
REQUESTS=200000
CLIENTS=50
TRACKERS=50
KEYS=100000
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

DATANODE_BIN=${DATANODE_BIN:-"${CARGO_TARGET_DIR:-$ROOT/target}/release/datanode"}
[ -x "$DATANODE_BIN" ] || { echo "no datanode at $DATANODE_BIN (cargo build --release -p datanode)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/slotkv-tracking-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM


start() { # name binary -> prints port
  local name=$1 bin=$2 port
  port=$(free_port)
  mkdir -p "$WORK/$name"
  (cd "$WORK/$name" && exec "$bin" --port "$port" --bind 127.0.0.1 --dir "$WORK/$name" \
      --appendonly yes --appendfsync everysec --save '' \
      >"$WORK/$name/log" 2>&1) &
  PIDS+=($!)
  for _ in $(seq 1 200); do
    if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ]; then echo "$port"; return; fi
    sleep 0.05
  done
  echo "$name did not start; log:" >&2; cat "$WORK/$name/log" >&2; exit 1
}

REDIS_PORT=$(start redis redis-server)
DN_PORT=$(start datanode "$DATANODE_BIN")

RES="$WORK/results"
: > "$RES"
TRACKER_PID=""
trackers_up() { # port: start the tracking clients, wait until every key is read
  local fifo="$WORK/ready"
  rm -f "$fifo"; mkfifo "$fifo"
  python3 "$ROOT/tests/bench/tracking_clients.py" "$1" "$TRACKERS" "$KEYS" >"$fifo" &
  TRACKER_PID=$!
  PIDS+=("$TRACKER_PID")
  read -r line <"$fifo" || true
  [ "${line:-}" = "ready" ] || { echo "tracking clients did not start on port $1" >&2; exit 1; }
}
trackers_down() {
  kill "$TRACKER_PID" 2>/dev/null || true
  wait "$TRACKER_PID" 2>/dev/null || true
  TRACKER_PID=""
}
run() { # server port mode depth
  local rps
  rps=$(redis-benchmark -p "$2" -t set -c "$CLIENTS" -P "$4" -n "$REQUESTS" -r "$KEYS" --csv 2>/dev/null \
    | tail -n +2 | tr -d '"' | cut -d, -f2)
  if [ "$3" = tracking ]; then
    # The tracking clients must all still be there for the numbers to mean
    # anything (none dropped for a full output buffer).
    local n
    n=$(redis-cli -p "$2" info clients | tr -d '\r' | awk -F: '$1=="tracking_clients"{print $2}')
    [ "$n" = "$TRACKERS" ] || { echo "$1: $n tracking clients left, not $TRACKERS" >&2; exit 1; }
  fi
  echo "$1 $3 $4 $rps" >> "$RES"
}

for r in $(seq 1 "$ROUNDS"); do
  for mode in tracking off; do
    for depth in 1 16; do
      echo "round $r/$ROUNDS, $mode, -P $depth" >&2
      for s in "redis $REDIS_PORT" "datanode $DN_PORT"; do
        set -- $s
        redis-cli -p "$2" flushall >/dev/null
        if [ "$mode" = tracking ]; then trackers_up "$2"; fi
        run "$1" "$2" "$mode" "$depth"
        if [ "$mode" = tracking ]; then trackers_down; fi
      done
    done
  done
done

med() { awk -v s="$1" -v m="$2" -v d="$3" '$1==s && $2==m && $3==d {print $4}' "$RES" | median; }

echo
echo "SET, $CLIENTS clients, $REQUESTS requests over $KEYS keys, $TRACKERS tracking clients; median of $ROUNDS rounds (requests/s)"
printf '%-9s %-6s %12s %12s %8s\n' mode depth redis-server datanode ratio
for mode in tracking off; do
  for depth in 1 16; do
    r=$(med redis "$mode" "$depth"); d=$(med datanode "$mode" "$depth")
    printf '%-9s %-6s %12.0f %12.0f %8.2f\n' "$mode" "-P $depth" "$r" "$d" "$(awk -v a="$d" -v b="$r" 'BEGIN {print (b > 0 ? a / b : 0)}')"
  done
done
echo
echo "Cost of tracking (tracking vs off), as a share of throughput kept"
for depth in 1 16; do
  for s in redis datanode; do
    on=$(med "$s" tracking "$depth"); off=$(med "$s" off "$depth")
    printf '%-9s -P %-3s %6.2f\n' "$s" "$depth" "$(awk -v a="$on" -v b="$off" 'BEGIN {print (b > 0 ? a / b : 0)}')"
  done
done
