#!/usr/bin/env bash
# Side-by-side benchmark: redis-server and datanode with equal configs, in
# the same run, alternating, so machine noise hits both alike. Writes the
# ratios to BENCHMARKS.md. See tests/bench/README.md.
#
#   tests/bench/bench.sh [--rounds N] [--requests N] [--quick] [--out FILE]
#                        [--no-memory] [--only-memory]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ROUNDS=3
REQUESTS=300000
OUT="$ROOT/BENCHMARKS.md"
MEMORY=1
THROUGHPUT=1
TYPES=1
TESTS="set,get,incr,hset,mset"
CLIENTS=50
ARGS_USED="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    --quick) ROUNDS=1; REQUESTS=50000; shift ;;
    --out) OUT=$2; shift 2 ;;
    --no-memory) MEMORY=0; shift ;;
    --only-memory) THROUGHPUT=0; TYPES=0; shift ;;
    --no-types) TYPES=0; shift ;;
    --only-types) THROUGHPUT=0; MEMORY=0; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

DATANODE_BIN=${DATANODE_BIN:-"$ROOT/target/release/datanode"}
if [ -z "${DATANODE_BIN_GIVEN:-}" ] && [ "$DATANODE_BIN" = "$ROOT/target/release/datanode" ]; then
  (cd "$ROOT" && cargo build --release -p datanode >/dev/null 2>&1) || { echo "release build failed" >&2; exit 1; }
fi

WORK=$(mktemp -d /tmp/slotkv-bench.XXXXXX)
# `start` runs in a command substitution (a subshell), so the servers' pids
# go to a file rather than a variable the subshell could not hand back.
cleanup() {
  local p
  if [ -f "$WORK/pids" ]; then
    while read -r p; do kill "$p" 2>/dev/null || true; done <"$WORK/pids"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() {
  local p
  for _ in $(seq 1 100); do
    # Below the ephemeral range (32768+), where outgoing sockets take ports.
    p=$(( (RANDOM % 10000) + 20000 ))
    if ! (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free port" >&2; exit 1
}

start() { # name binary -> prints port
  local name=$1 bin=$2 port
  port=$(free_port)
  mkdir -p "$WORK/$name"
  (cd "$WORK/$name" && exec "$bin" --port "$port" --bind 127.0.0.1 --dir "$WORK/$name" \
      --appendonly yes --appendfsync everysec --save '' --enable-debug-command yes \
      >"$WORK/$name/log" 2>&1) &
  echo $! >>"$WORK/pids"
  for _ in $(seq 1 200); do
    if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ]; then echo "$port"; return; fi
    sleep 0.05
  done
  echo "$name did not start; log:" >&2; cat "$WORK/$name/log" >&2; exit 1
}

REDIS_PORT=$(start redis redis-server)
DN_PORT=$(start datanode "$DATANODE_BIN")

# results: server depth test rps p50 p99 (one line per run)
RES="$WORK/results"
: > "$RES"
run_bench() { # server port depth
  redis-benchmark -p "$2" -t "$TESTS" -c "$CLIENTS" -P "$3" -n "$REQUESTS" -r 100000 --csv 2>/dev/null \
    | tail -n +2 | tr -d '"' | while IFS=, read -r test rps avg min p50 p95 p99 max; do
        echo "$1 $3 ${test%% *} $rps $p50 $p99" >> "$RES"
      done
}

# Data-type commands: -t tests plus custom ZRANGE/HGETALL on prepared keys.
TYPE_TESTS="lpush,lpop,sadd,spop,zadd,hset"
run_types() { # server port depth
  redis-benchmark -p "$2" -t "$TYPE_TESTS" -c "$CLIENTS" -P "$3" -n "$REQUESTS" -r 100000 --csv 2>/dev/null \
    | tail -n +2 | tr -d '"' | while IFS=, read -r test rps avg min p50 p95 p99 max; do
        echo "$1 $3 ${test%% *} $rps $p50 $p99" >> "$RES"
      done
  for custom in "ZRANGE bench:z 0 99" "HGETALL bench:h"; do
    # shellcheck disable=SC2086
    redis-benchmark -p "$2" -c "$CLIENTS" -P "$3" -n "$REQUESTS" --csv $custom 2>/dev/null \
      | tail -n +2 | tr -d '"' | while IFS=, read -r test rps avg min p50 p95 p99 max; do
          echo "$1 $3 ${custom%% *} $rps $p50 $p99" >> "$RES"
        done
  done
}

prepare_types() { # port: a 100-member sorted set and a 10-field hash
  local args=() i
  for i in $(seq 1 100); do args+=("$i" "member:$i"); done
  redis-cli -p "$1" zadd bench:z "${args[@]}" >/dev/null
  args=()
  for i in $(seq 1 10); do args+=("field:$i" "value:$i"); done
  redis-cli -p "$1" hset bench:h "${args[@]}" >/dev/null
}

if [ "$TYPES" = 1 ]; then
  for r in $(seq 1 "$ROUNDS"); do
    for depth in 1 16; do
      echo "types round $r/$ROUNDS, -P $depth" >&2
      for p in "$REDIS_PORT" "$DN_PORT"; do redis-cli -p "$p" flushall >/dev/null; prepare_types "$p"; done
      run_types redis "$REDIS_PORT" "$depth"
      run_types datanode "$DN_PORT" "$depth"
    done
  done
fi

if [ "$THROUGHPUT" = 1 ]; then
  for r in $(seq 1 "$ROUNDS"); do
    for depth in 1 16; do
      echo "round $r/$ROUNDS, -P $depth" >&2
      redis-cli -p "$REDIS_PORT" flushall >/dev/null; redis-cli -p "$DN_PORT" flushall >/dev/null
      run_bench redis "$REDIS_PORT" "$depth"
      run_bench datanode "$DN_PORT" "$depth"
    done
  done
fi

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) printf "%.3f\n", a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
stat() { # server depth test column(4 rps,5 p50,6 p99)
  awk -v s="$1" -v d="$2" -v t="$3" -v c="$4" '$1==s && $2==d && $3==t {print $c}' "$RES" | median
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b+0 == 0) print "n/a"; else printf "%.2f", a/b }'; }

mem_per_element() { # port kind -> "rss_per_element used_per_element"
  local p=$1 kind=$2 r0 u0 r1 u1 n cmd count
  redis-cli -p "$p" flushall >/dev/null
  sleep 0.5
  r0=$(redis-cli -p "$p" info memory | awk -F: '/^used_memory_rss:/ {print $2+0}')
  u0=$(redis-cli -p "$p" info memory | awk -F: '/^used_memory:/ {print $2+0}')
  # Lists again with interior nodes compressed (the setting is read when
  # a list is made).
  local depth=0
  [ "$kind" = list-compressed ] && depth=1
  redis-cli -p "$p" config set list-compress-depth "$depth" >/dev/null
  case "$kind" in
    list|list-compressed) cmd="RPUSH bench:big element:__rand_int__"; count="LLEN" ;;
    set) cmd="SADD bench:big element:__rand_int__"; count="SCARD" ;;
    hash) cmd="HSET bench:big field:__rand_int__ value"; count="HLEN" ;;
    zset) cmd="ZADD bench:big __rand_int__ element:__rand_int__"; count="ZCARD" ;;
  esac
  # shellcheck disable=SC2086
  redis-benchmark -p "$p" -c 20 -P 64 -n 1000000 -r 100000000 $cmd >/dev/null 2>&1
  n=$(redis-cli -p "$p" $count bench:big)
  r1=$(redis-cli -p "$p" info memory | awk -F: '/^used_memory_rss:/ {print $2+0}')
  u1=$(redis-cli -p "$p" info memory | awk -F: '/^used_memory:/ {print $2+0}')
  redis-cli -p "$p" config set list-compress-depth 0 >/dev/null
  awk -v a="$r0" -v b="$r1" -v c="$u0" -v d="$u1" -v n="$n" 'BEGIN { printf "%.1f %.1f %d", (b-a)/n, (d-c)/n, n }'
}

# SAVE of the current data, timed by the client.
save_ms() { local t0 t1; t0=$(date +%s%N); redis-cli -p "$1" save >/dev/null; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )); }

# Median load times of both servers' dump.rdb over 3 alternating starts.
load_medians() { # -> "redis_ms redis_keys datanode_ms datanode_keys"
  local r=() d=() rk dk ms i
  for i in 1 2 3; do
    read -r ms rk <<<"$(load_ms redis redis-server)"; r+=("$ms")
    read -r ms dk <<<"$(load_ms datanode "$DATANODE_BIN")"; d+=("$ms")
  done
  echo "$(printf '%s\n' "${r[@]}" | sort -n | sed -n 2p) $rk $(printf '%s\n' "${d[@]}" | sort -n | sed -n 2p) $dk"
}

# Median SAVE times of redis-server and datanode over 5 SAVEs each,
# alternating: one SAVE moves by 30% on this machine.
save_medians() { # redis_port datanode_port -> "redis_ms datanode_ms"
  local r=() d=() i
  for i in 1 2 3 4 5; do
    r+=("$(save_ms "$1")")
    d+=("$(save_ms "$2")")
  done
  echo "$(printf '%s\n' "${r[@]}" | sort -n | sed -n 3p) $(printf '%s\n' "${d[@]}" | sort -n | sed -n 3p)"
}

# Time for a fresh process of the same binary to load that server's
# dump.rdb and answer PING (start-up included; both sides pay it alike).
load_ms() { # name binary -> "ms keys"
  local name=$1 bin=$2 port t0 t1 pid keys
  port=$(free_port)
  t0=$(date +%s%N)
  (cd "$WORK/$name" && exec "$bin" --port "$port" --bind 127.0.0.1 --dir "$WORK/$name" \
      --appendonly no --save '' >"$WORK/$name/load.log" 2>&1) &
  pid=$!
  for _ in $(seq 1 6000); do
    if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ]; then break; fi
    sleep 0.01
  done
  t1=$(date +%s%N)
  keys=$(redis-cli -p "$port" dbsize)
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  echo "$(( (t1 - t0) / 1000000 )) $keys"
}

mem_per_key() { # port -> "rss_per_key used_per_key"
  local p=$1 r0 u0 r1 u1
  redis-cli -p "$p" flushall >/dev/null
  sleep 0.5
  r0=$(redis-cli -p "$p" info memory | awk -F: '/^used_memory_rss:/ {print $2+0}')
  u0=$(redis-cli -p "$p" info memory | awk -F: '/^used_memory:/ {print $2+0}')
  redis-cli -p "$p" debug populate 1000000 >/dev/null
  r1=$(redis-cli -p "$p" info memory | awk -F: '/^used_memory_rss:/ {print $2+0}')
  u1=$(redis-cli -p "$p" info memory | awk -F: '/^used_memory:/ {print $2+0}')
  awk -v a="$r0" -v b="$r1" -v c="$u0" -v d="$u1" 'BEGIN { printf "%.1f %.1f", (b-a)/1e6, (d-c)/1e6 }'
}

{
  echo "# Benchmarks"
  echo
  echo "datanode against redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'), same machine, same run, equal configs"
  echo "(\`--appendonly yes --appendfsync everysec --save ''\`), alternating between the two servers."
  echo "Absolute numbers on a shared machine are noise; the ratios, measured side by side, are the result."
  echo "Throughput ratio = datanode / redis-server (≥ 1.00 is as fast or faster); for p99 and memory, ≤ 1.00 is as good or better."
  echo
  echo "- Date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- Machine: $(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//')"
  echo "- datanode commit: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- Reproduce: \`tests/bench/bench.sh${ARGS_USED:+ $ARGS_USED}\` ($ROUNDS rounds of $REQUESTS requests per test, medians reported)"
  echo "- Load: \`redis-benchmark -t $TESTS -c $CLIENTS -P <depth> -n $REQUESTS -r 100000\`, on the same cores as the servers"
  if [ "$THROUGHPUT" = 1 ]; then
    for depth in 1 16; do
      echo
      echo "## Throughput and latency, $CLIENTS clients, pipeline depth $depth"
      echo
      echo "| command | redis ops/s | datanode ops/s | ratio | redis p50 ms | datanode p50 ms | redis p99 ms | datanode p99 ms | p99 ratio |"
      echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
      for t in SET GET INCR HSET MSET; do
        rr=$(stat redis $depth $t 4); dr=$(stat datanode $depth $t 4)
        r50=$(stat redis $depth $t 5); d50=$(stat datanode $depth $t 5)
        r99=$(stat redis $depth $t 6); d99=$(stat datanode $depth $t 6)
        echo "| $t | $rr | $dr | $(ratio "$dr" "$rr") | $r50 | $d50 | $r99 | $d99 | $(ratio "$d99" "$r99") |"
      done
    done
  fi
  if [ "$TYPES" = 1 ]; then
    for depth in 1 16; do
      echo
      echo "## Data types, $CLIENTS clients, pipeline depth $depth"
      echo
      echo "ZRANGE reads 100 members of a 100-member sorted set; HGETALL a 10-field hash."
      echo
      echo "| command | redis ops/s | datanode ops/s | ratio | redis p99 ms | datanode p99 ms | p99 ratio |"
      echo "|---|---:|---:|---:|---:|---:|---:|"
      for t in LPUSH LPOP SADD SPOP ZADD HSET ZRANGE HGETALL; do
        rr=$(stat redis $depth $t 4); dr=$(stat datanode $depth $t 4)
        r99=$(stat redis $depth $t 6); d99=$(stat datanode $depth $t 6)
        echo "| $t | $rr | $dr | $(ratio "$dr" "$rr") | $r99 | $d99 | $(ratio "$d99" "$r99") |"
      done
    done
  fi
  if [ "$MEMORY" = 1 ]; then
    echo
    echo "## Memory per element, about 1M elements in one key"
    echo
    echo "| type | elements (redis / datanode) | redis RSS B/elem | datanode RSS B/elem | ratio | redis used B/elem | datanode used B/elem | ratio |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    SAVELOAD=()
    for kind in list list-compressed set hash zset; do
      echo "memory: 1M-element $kind on each" >&2
      read -r rr ru rn <<<"$(mem_per_element "$REDIS_PORT" "$kind")"
      read -r dr du dn <<<"$(mem_per_element "$DN_PORT" "$kind")"
      label=$kind
      [ "$kind" = list-compressed ] && label="list, \`list-compress-depth 1\`"
      echo "| $label | $rn / $dn | $rr | $dr | $(ratio "$dr" "$rr") | $ru | $du | $(ratio "$du" "$ru") |"
      # Saves and loads are timed for the plain forms.
      [ "$kind" = list-compressed ] && continue
      read -r rs ds <<<"$(save_medians "$REDIS_PORT" "$DN_PORT")"
      read -r rl rk dl dk <<<"$(load_medians)"
      SAVELOAD+=("| 1M-element $kind | $rs | $ds | $(ratio "$ds" "$rs") | $rl ($rk keys) | $dl ($dk keys) | $(ratio "$dl" "$rl") |")
    done
  fi
  if [ "$MEMORY" = 1 ]; then
    echo "memory: populating 1M keys on each" >&2
    read -r rr ru <<<"$(mem_per_key "$REDIS_PORT")"
    read -r dr du <<<"$(mem_per_key "$DN_PORT")"
    read -r rs ds <<<"$(save_medians "$REDIS_PORT" "$DN_PORT")"
    read -r rl rk dl dk <<<"$(load_medians)"
    SAVELOAD+=("| 1M keys (DEBUG POPULATE) | $rs | $ds | $(ratio "$ds" "$rs") | $rl ($rk keys) | $dl ($dk keys) | $(ratio "$dl" "$rl") |")
    echo
    echo "## Memory per key after \`DEBUG POPULATE 1000000\` (keys \`key:N\`, values \`value:N\`)"
    echo
    echo "| measure | redis-server | datanode | ratio |"
    echo "|---|---:|---:|---:|"
    echo "| RSS bytes per key | $rr | $dr | $(ratio "$dr" "$rr") |"
    echo "| used_memory bytes per key | $ru | $du | $(ratio "$du" "$ru") |"
    echo
    echo "## RDB save and load time"
    echo
    echo "SAVE timed by the client, median of 5 alternating SAVEs; load = a fresh process of the same binary started on that dump.rdb until it answers PING, median of 3."
    echo
    echo "| data | redis SAVE ms | datanode SAVE ms | ratio | redis load ms | datanode load ms | ratio |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for row in "${SAVELOAD[@]}"; do echo "$row"; done
  fi
} > "$OUT.tmp"
# The sections other scripts measured (cluster, replication, families,
# control plane…) are kept as they stand in the file, from its notes on.
if [ "$OUT" = "$ROOT/BENCHMARKS.md" ] && grep -q '^## Reading these numbers' "$OUT" 2>/dev/null; then
  { echo; sed -n '/^## Reading these numbers/,$p' "$OUT"; } >> "$OUT.tmp"
elif [ -f "$ROOT/tests/bench/NOTES.md" ] && [ "$OUT" = "$ROOT/BENCHMARKS.md" ]; then
  { echo; cat "$ROOT/tests/bench/NOTES.md"; } >> "$OUT.tmp"
  # A file without them: start from the notes and the latest results.
  if [ -f "$ROOT/tests/bench/results-issue8.md" ]; then
    { echo; cat "$ROOT/tests/bench/results-issue8.md"; } >> "$OUT.tmp"
  fi
  for f in results-replication.md results-cluster.md results-families.md; do
    if [ -f "$ROOT/tests/bench/$f" ]; then
      { echo; cat "$ROOT/tests/bench/$f"; } >> "$OUT.tmp"
    fi
  done
fi
mv "$OUT.tmp" "$OUT"
echo "wrote $OUT" >&2
