#!/usr/bin/env bash
# Cluster benchmark: a 3-master cluster of redis-server and one of datanode
# (same config), each joined with redis-cli --cluster create, then
# `redis-benchmark --cluster -t set,get -c 50` at -P 1 and -P 16 against
# each, alternating, in the same run. Writes tests/bench/results-cluster.md
# and puts it into BENCHMARKS.md (bench.sh keeps it there too).
#
#   tests/bench/cluster.sh [--rounds N] [--requests N]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ROUNDS=3
REQUESTS=300000
CLIENTS=50
ARGS_USED="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

DATANODE_BIN=${DATANODE_BIN:-"$ROOT/target/release/datanode"}
if [ -z "${DATANODE_BIN_GIVEN:-}" ]; then
  (cd "$ROOT" && cargo build --release -p datanode >/dev/null 2>&1) || { echo "release build failed" >&2; exit 1; }
fi

WORK=$(mktemp -d /tmp/slotkv-cbench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() { # a port whose bus port (+10000) is free too
  local p
  for _ in $(seq 1 200); do
    p=$(( (RANDOM % 10000) + 12000 ))
    if ! (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null && ! (echo > /dev/tcp/127.0.0.1/$((p + 10000))) 2>/dev/null; then
      echo "$p"; return
    fi
  done
  echo "no free port" >&2; exit 1
}

start_node() { # name binary -> prints port
  local name=$1 bin=$2 port
  port=$(free_port)
  mkdir -p "$WORK/$name"
  (cd "$WORK/$name" && exec "$bin" --port "$port" --bind 127.0.0.1 --dir "$WORK/$name" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
      --appendonly yes --appendfsync everysec --save '' >"$WORK/$name/log" 2>&1) &
  PIDS+=($!)
  for _ in $(seq 1 200); do
    if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ]; then echo "$port"; return; fi
    sleep 0.05
  done
  echo "$name did not start" >&2; cat "$WORK/$name/log" >&2; exit 1
}

make_cluster() { # kind binary -> prints the first port
  local kind=$1 bin=$2 ports=() hosts=() p
  for i in 1 2 3; do p=$(start_node "$kind$i" "$bin"); ports+=("$p"); hosts+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${hosts[@]}" --cluster-replicas 0 --cluster-yes >"$WORK/$kind-create.log" 2>&1 \
    || { echo "cluster create failed for $kind" >&2; cat "$WORK/$kind-create.log" >&2; exit 1; }
  for p in "${ports[@]}"; do
    for _ in $(seq 1 300); do
      redis-cli -p "$p" cluster info 2>/dev/null | grep -q "cluster_state:ok" && break
      sleep 0.1
    done
  done
  echo "${ports[0]}"
}

REDIS_PORT=$(make_cluster redis redis-server)
DN_PORT=$(make_cluster datanode "$DATANODE_BIN")

RES="$WORK/results"
: > "$RES"
run_bench() { # server port depth
  redis-benchmark --cluster --threads 2 -h 127.0.0.1 -p "$2" -t set,get -c "$CLIENTS" -P "$3" -n "$REQUESTS" -r 100000 --csv 2>/dev/null \
    | grep -E '^"(SET|GET)' | tr -d '"' | while IFS=, read -r test rps avg min p50 p95 p99 max; do
        echo "$1 $3 ${test%% *} $rps $p50 $p99" >> "$RES"
      done
}

for r in $(seq 1 "$ROUNDS"); do
  for depth in 1 16; do
    echo "cluster round $r/$ROUNDS, -P $depth" >&2
    run_bench redis "$REDIS_PORT" "$depth"
    run_bench datanode "$DN_PORT" "$depth"
  done
done

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) printf "%.3f\n", a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
stat() { awk -v s="$1" -v d="$2" -v t="$3" -v c="$4" '$1==s && $2==d && $3==t {print $c}' "$RES" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b+0 == 0) print "n/a"; else printf "%.2f", a/b }'; }

SECTION="$ROOT/tests/bench/results-cluster.md"
{
  echo "## Cluster: 3 masters, \`redis-benchmark --cluster --threads 2\`, $CLIENTS clients"
  echo
  echo "- Date: $(date -u +%Y-%m-%dT%H:%MZ), datanode commit $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) cores"
  echo "- Reproduce: \`tests/bench/cluster.sh${ARGS_USED:+ $ARGS_USED}\` ($ROUNDS rounds of $REQUESTS requests per test, medians)"
  echo "- Each side: three nodes with \`cluster-enabled yes\`, AOF everysec, joined by \`redis-cli --cluster create\`; all six servers and the load generator share the cores."
  echo "- redis-benchmark reports ops/s from a millisecond clock; at these rates a run lasts about a second, so ratios within ±0.01 of 1.00 mean equal."
  echo
  echo "| depth | command | redis ops/s | datanode ops/s | ratio | redis p99 ms | datanode p99 ms | p99 ratio |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|"
  for depth in 1 16; do
    for t in SET GET; do
      rr=$(stat redis $depth $t 4); dr=$(stat datanode $depth $t 4)
      r99=$(stat redis $depth $t 6); d99=$(stat datanode $depth $t 6)
      echo "| $depth | $t | $rr | $dr | $(ratio "$dr" "$rr") | $r99 | $d99 | $(ratio "$d99" "$r99") |"
    done
  done
} > "$SECTION"

# Splice the section into BENCHMARKS.md: in place of an earlier one, else
# at the end.
B="$ROOT/BENCHMARKS.md"
if [ -f "$B" ]; then
  if grep -q '^## Cluster: ' "$B"; then
    awk -v sec="$SECTION" '
      /^## Cluster: / { while ((getline l < sec) > 0) print l; print ""; skip=1; next }
      /^## / { skip=0 }
      !skip' "$B" > "$B.tmp"
  else
    { cat "$B"; echo; cat "$SECTION"; } > "$B.tmp"
  fi
  mv "$B.tmp" "$B"
fi
cat "$SECTION"
