#!/usr/bin/env bash
# SET throughput with keyspace notifications, redis-server and datanode side
# by side: both started with the same arguments as bench.sh plus
# `notify-keyspace-events KEA`, each with one `redis-cli psubscribe '*'`
# subscriber reading into /dev/null; `redis-benchmark -t set` at -P 1 and
# -P 16, alternating servers, for several rounds. The same runs with
# notifications switched off (CONFIG SET notify-keyspace-events "") show
# what they cost. Prints medians and datanode/redis-server ratios.
#
#   tests/bench/notify.sh [--rounds N] [--requests N]
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
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

DATANODE_BIN=${DATANODE_BIN:-"${CARGO_TARGET_DIR:-$ROOT/target}/release/datanode"}
[ -x "$DATANODE_BIN" ] || { echo "no datanode at $DATANODE_BIN (cargo build --release -p datanode)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/slotkv-notify-bench.XXXXXX)
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
      --appendonly yes --appendfsync everysec --save '' --notify-keyspace-events KEA \
      >"$WORK/$name/log" 2>&1) &
  PIDS+=($!)
  for _ in $(seq 1 200); do
    if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ]; then echo "$port"; return; fi
    sleep 0.05
  done
  echo "$name did not start; log:" >&2; cat "$WORK/$name/log" >&2; exit 1
}

subscribe() { # port: one pattern subscriber, output discarded
  redis-cli -p "$1" psubscribe '*' >/dev/null 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    [ "$(redis-cli -p "$1" pubsub numpat)" = "1" ] && return
    sleep 0.05
  done
  echo "subscriber did not attach on port $1" >&2; exit 1
}

REDIS_PORT=$(start redis redis-server)
DN_PORT=$(start datanode "$DATANODE_BIN")
subscribe "$REDIS_PORT"
subscribe "$DN_PORT"

RES="$WORK/results"
: > "$RES"
run() { # server port mode depth
  local rps
  rps=$(redis-benchmark -p "$2" -t set -c "$CLIENTS" -P "$4" -n "$REQUESTS" -r 100000 --csv 2>/dev/null \
    | tail -n +2 | tr -d '"' | cut -d, -f2)
  # A subscriber dropped for lagging (client-output-buffer-limit) would
  # make the comparison meaningless: check it is still there.
  [ "$(redis-cli -p "$2" pubsub numpat)" = "1" ] || { echo "$1 lost its subscriber" >&2; exit 1; }
  echo "$1 $3 $4 $rps" >> "$RES"
}

for r in $(seq 1 "$ROUNDS"); do
  for mode in KEA off; do
    flags=KEA; [ "$mode" = off ] && flags=""
    for p in "$REDIS_PORT" "$DN_PORT"; do
      redis-cli -p "$p" config set notify-keyspace-events "$flags" >/dev/null
    done
    for depth in 1 16; do
      echo "round $r/$ROUNDS, notifications $mode, -P $depth" >&2
      for p in "$REDIS_PORT" "$DN_PORT"; do redis-cli -p "$p" flushall >/dev/null; done
      run redis "$REDIS_PORT" "$mode" "$depth"
      run datanode "$DN_PORT" "$mode" "$depth"
    done
  done
done

med() { awk -v s="$1" -v m="$2" -v d="$3" '$1==s && $2==m && $3==d {print $4}' "$RES" | median; }

echo
echo "SET, $CLIENTS clients, $REQUESTS requests, median of $ROUNDS rounds (requests/s)"
printf '%-13s %-6s %12s %12s %8s\n' notifications depth redis-server datanode ratio
for mode in KEA off; do
  for depth in 1 16; do
    r=$(med redis "$mode" "$depth"); d=$(med datanode "$mode" "$depth")
    printf '%-13s %-6s %12.0f %12.0f %8.2f\n' "$mode" "-P $depth" "$r" "$d" "$(awk -v a="$d" -v b="$r" 'BEGIN {print (b > 0 ? a / b : 0)}')"
  done
done
echo
echo "Cost of notifications (KEA + 1 subscriber vs off), as a share of throughput kept"
for depth in 1 16; do
  for s in redis datanode; do
    on=$(med "$s" KEA "$depth"); off=$(med "$s" off "$depth")
    printf '%-9s -P %-3s %6.2f\n' "$s" "$depth" "$(awk -v a="$on" -v b="$off" 'BEGIN {print (b > 0 ? a / b : 0)}')"
  done
done
