#!/usr/bin/env bash
# Side-by-side benchmark of the bitmap, HyperLogLog, geo and stream commands
# (issue 13): redis-server and datanode with equal configs, in the same run,
# alternating, at pipeline depths 1 and 16; then the memory one HLL takes
# (sparse and dense) and the memory per stream entry on each. Writes tests/bench/results-families.md (a
# section of BENCHMARKS.md).
#
#   tests/bench/families.sh [--rounds N] [--requests N]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
ROUNDS=3
REQUESTS=200000
CLIENTS=50
OUT="$ROOT/tests/bench/results-families.md"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

release_datanode
WORK=$(mktemp -d /tmp/slotkv-families.XXXXXX)
trap 'stop_servers; rm -rf "$WORK"' EXIT INT TERM
ARGS=(--save '' --appendonly no)
RP=$(free_port)
start_server redis redis-server "$RP" "$WORK/redis" "${ARGS[@]}"
DP=$(free_port)
start_server datanode "$DATANODE_BIN" "$DP" "$WORK/datanode" "${ARGS[@]}"
RPID=$(server_pid "$RP"); DPID=$(server_pid "$DP")

# The script EVALSHA runs: three commands on one key.
SCRIPT="redis.call('INCR', KEYS[1]) redis.call('EXPIRE', KEYS[1], 100) return redis.call('GET', KEYS[1])"
SHA=$(printf '%s' "$SCRIPT" | sha1sum | cut -d' ' -f1)

# 10,000 points around Sicily for GEOSEARCH; a 12.5 KB bitmap for BITCOUNT.
prepare() {
  redis-cli -p "$1" script load "$SCRIPT" >/dev/null
  python3 - "$1" <<'EOF' | redis-cli -p "$1" --pipe >/dev/null
import random, sys
random.seed(13)
def cmd(*a):
    out = "*%d\r\n" % len(a)
    for x in a:
        x = str(x)
        out += "$%d\r\n%s\r\n" % (len(x.encode()), x)
    sys.stdout.write(out)
cmd("FLUSHALL")
for i in range(0, 10000, 100):
    args = []
    for j in range(i, i + 100):
        args += ["%.6f" % random.uniform(12.0, 16.0), "%.6f" % random.uniform(36.5, 38.5), "p%d" % j]
    cmd("GEOADD", "bench:geo", *args)
cmd("SETBIT", "bench:bits", 99999, 1)
for i in range(0, 100000, 7):
    cmd("SETBIT", "bench:bits", i, 1)
# A stream of 10,000 entries; group g has delivered 1,000 to consumer c.
for i in range(1, 10001):
    cmd("XADD", "bench:s", "%d-0" % i, "field", "value-%d" % i, "n", i)
cmd("XGROUP", "CREATE", "bench:s", "g", "0")
cmd("XREADGROUP", "GROUP", "g", "c", "COUNT", 1000, "STREAMS", "bench:s", ">")
EOF
}

RES="$WORK/results"
: > "$RES"
# name|command (redis-benchmark puts a zero-padded number from -r in place
# of __rand_int__, which an offset refuses, so SETBIT varies its key)
LOADS=(
  "EVALSHA|EVALSHA $SHA 1 ev:__rand_int__"
  "SETBIT|SETBIT bits:__rand_int__ 4095 1"
  "BITCOUNT|BITCOUNT bench:bits"
  "PFADD|PFADD bench:hll __rand_int__"
  "PFCOUNT|PFCOUNT bench:hll"
  "GEOSEARCH|GEOSEARCH bench:geo FROMLONLAT 14 37.5 BYRADIUS 20 km ASC COUNT 10"
  "XADD|XADD bench:add * field value n __rand_int__"
  "XRANGE|XRANGE bench:s 5000 + COUNT 10"
  "XREAD|XREAD COUNT 10 STREAMS bench:s 9990"
  "XREADGROUP|XREADGROUP GROUP g c COUNT 10 STREAMS bench:s 0"
  "XPENDING|XPENDING bench:s g - + 10"
)
# Besides throughput, the server's CPU time per request: where 50 clients
# at small commands keep redis-benchmark's one thread busier than the
# server, throughput only shows the client's limit, and CPU per request
# still tells the servers apart.
run_one() { # server port depth load
  local name=${4%%|*} cmd=${4#*|} pid c0 out
  pid=$RPID
  [ "$1" = datanode ] && pid=$DPID
  c0=$(cpu_ns "$pid")
  # Commands are split into words unquoted: XADD's `*` must stay a word.
  set -f
  # shellcheck disable=SC2086
  out=$(redis-benchmark -p "$2" -c "$CLIENTS" -P "$3" -n "$REQUESTS" -r 100000 --csv $cmd 2>/dev/null |
    tail -n +2 | tr -d '"')
  set +f
  local ns=$(( ($(cpu_ns "$pid") - c0) / REQUESTS ))
  echo "$out" | while IFS=, read -r _ rps _ _ p50 _ p99 _; do
    echo "$1 $3 $name $rps $p50 $p99 $ns" >> "$RES"
  done
}
# Each load runs on both servers back to back, the first one alternating
# by round, so a slow minute of the shared machine hits both alike.
for r in $(seq 1 "$ROUNDS"); do
  for depth in 1 16; do
    echo "round $r/$ROUNDS, -P $depth" >&2
    prepare "$RP"; prepare "$DP"
    for l in "${LOADS[@]}"; do
      if [ $((r % 2)) -eq 1 ]; then
        run_one redis "$RP" "$depth" "$l"; run_one datanode "$DP" "$depth" "$l"
      else
        run_one datanode "$DP" "$depth" "$l"; run_one redis "$RP" "$depth" "$l"
      fi
    done
  done
done

# used_memory once the loading client has gone: until the server has freed
# the --pipe connection, its buffers (tens of KB) count too.
used_memory() { # port
  local i
  for i in $(seq 1 100); do
    [ "$(redis-cli -p "$1" info clients | tr -d '\r' | awk -F: '/^connected_clients:/{print $2}')" = 1 ] && break
    sleep 0.05
  done
  redis-cli -p "$1" info memory | tr -d '\r' | awk -F: '/^used_memory:/{print $2}'
}

# Bytes of used_memory one HLL adds: 1000 keys of N elements each.
hll_bytes() { # port elements key-prefix
  redis-cli -p "$1" flushall >/dev/null
  local before after
  before=$(used_memory "$1")
  python3 - "$2" "$3" <<'EOF' | redis-cli -p "$1" --pipe >/dev/null
import sys
n, prefix = int(sys.argv[1]), sys.argv[2]
for k in range(1000):
    for i in range(0, n, 500):
        eles = ["e%d" % j for j in range(i, min(n, i + 500))]
        parts = ["PFADD", "%s%d" % (prefix, k)] + eles
        sys.stdout.write("*%d\r\n" % len(parts) + "".join("$%d\r\n%s\r\n" % (len(p), p) for p in parts))
EOF
  after=$(used_memory "$1")
  echo $(( (after - before) / 1000 ))
}

# Bytes of used_memory per stream entry: 100,000 entries of two fields
# (the same field names each time, as most streams have).
stream_bytes() { # port
  redis-cli -p "$1" flushall >/dev/null
  local before after
  before=$(used_memory "$1")
  python3 - <<'EOF' | redis-cli -p "$1" --pipe >/dev/null
import sys
for i in range(1, 100001):
    parts = ["XADD", "mem:s", "%d-0" % (1700000000000 + i), "sensor", "s%d" % (i % 50), "reading", str(i % 1000)]
    sys.stdout.write("*%d\r\n" % len(parts) + "".join("$%d\r\n%s\r\n" % (len(p), p) for p in parts))
EOF
  after=$(used_memory "$1")
  awk -v a="$after" -v b="$before" 'BEGIN { printf "%.1f", (a - b) / 100000 }'
}

stat() { awk -v s="$1" -v d="$2" -v t="$3" -v c="$4" '$1==s && $2==d && $3==t {print $c}' "$RES" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
{
  echo "## Scripting, bitmaps, HyperLogLog, geo and streams (issue 13)"
  echo
  echo "\`tests/bench/families.sh --rounds $ROUNDS --requests $REQUESTS\` ($(date -u +%Y-%m-%d), commit $(git -C "$ROOT" rev-parse --short HEAD)): $CLIENTS clients, medians of $ROUNDS rounds, both servers \`--save '' --appendonly no\`. EVALSHA runs a cached script of three commands (INCR, EXPIRE, GET) on one of 100,000 keys; SETBIT sets bit 4095 of one of 100,000 keys; BITCOUNT counts a 12.5 KB bitmap; PFADD adds random elements to one HLL (dense after the first few thousand); GEOSEARCH asks for the 10 nearest of 10,000 points within 20 km. XADD appends to a growing stream; XRANGE and XREAD read 10 entries of a 10,000-entry stream; XREADGROUP reads 10 entries of its consumer's pending history (each read counts a delivery); XPENDING lists 10 pending entries."
  for depth in 1 16; do
    echo
    echo "Pipeline depth $depth:"
    echo
    echo "| command | redis ops/s | datanode ops/s | ratio | redis p99 ms | datanode p99 ms | p99 ratio | redis CPU ns/op | datanode CPU ns/op | CPU ratio |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for l in "${LOADS[@]}"; do
      t=${l%%|*}
      rr=$(stat redis "$depth" "$t" 4); dr=$(stat datanode "$depth" "$t" 4)
      r99=$(stat redis "$depth" "$t" 6); d99=$(stat datanode "$depth" "$t" 6)
      rc=$(stat redis "$depth" "$t" 7); dc=$(stat datanode "$depth" "$t" 7)
      echo "| $t | $rr | $dr | $(ratio "$dr" "$rr") | $r99 | $d99 | $(ratio "$d99" "$r99") | $rc | $dc | $(ratio "$dc" "$rc") |"
    done
  done
  echo
  echo "Memory per HLL (used_memory over 1000 keys, with each key's share of the keyspace's tables). datanode keeps a table per hash slot: 1000 keys named \`hll:N\` land in 1000 slots, and each slot's smallest table costs 64 bytes; keys sharing a hash tag (\`{h}N\`) share one table, as keys do in any keyspace of more than a few hundred thousand keys. redis-server keeps one table either way."
  echo
  echo "| elements per HLL | keys | redis B | datanode B | ratio |"
  echo "|---:|---|---:|---:|---:|"
  for n in 100 5000; do
    for prefix in "hll:" "{h}"; do
      echo "memory: 1000 HLLs of $n elements, keys $prefix" >&2
      rb=$(hll_bytes "$RP" "$n" "$prefix"); db=$(hll_bytes "$DP" "$n" "$prefix")
      echo "| $n | \`${prefix}N\` | $rb | $db | $(ratio "$db" "$rb") |"
    done
  done
  echo
  echo "Memory per stream entry (used_memory over 100,000 entries of two fields):"
  echo
  echo "| redis B/entry | datanode B/entry | ratio |"
  echo "|---:|---:|---:|"
  echo "memory: a stream of 100,000 entries" >&2
  rs=$(stream_bytes "$RP"); ds=$(stream_bytes "$DP")
  echo "| $rs | $ds | $(ratio "$ds" "$rs") |"
} > "$OUT"
cat "$OUT"
