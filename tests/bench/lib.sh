# Helpers shared by the benchmark scripts (sourced, not run).
#
#   free_port                      a port nothing listens on
#   free_cluster_port              the same, with its bus port (+10000) free
#   start_server NAME BIN PORT DIR ARGS…   starts a server in DIR, waits
#                                  for PONG (10 s), records its pid
#   stop_servers                   stops every server started here
#   median                         median of the numbers on stdin
#   gen_slot_data KIND N TAGFILE   RESP SETs of N keys over slots 0-999
#   start_cluster3 BIN DIR         three masters made a cluster by
#                                  redis-cli (the first has slots 0-5460),
#                                  waited for until all say ok; sets
#                                  CLUSTER_PORTS
#   release_datanode               sets DATANODE_BIN (default: the release
#                                  build under $CARGO_TARGET_DIR or target/,
#                                  built first unless DATANODE_BIN_GIVEN=1)

BENCH_PIDS=()

free_port() {
  local p
  for _ in $(seq 1 200); do
    # Below the ephemeral range (32768+), where outgoing sockets take ports.
    p=$(( (RANDOM % 10000) + 20000 ))
    if ! (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free port" >&2
  return 1
}

# A client port whose bus port (+10000) is free too, both below the
# ephemeral range.
free_cluster_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( (RANDOM % 8000) + 12000 ))
    if ! (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null &&
       ! (echo > /dev/tcp/127.0.0.1/$((p + 10000))) 2>/dev/null; then
      echo "$p"; return
    fi
  done
  echo "no free port" >&2
  return 1
}

start_server() {
  local name=$1 bin=$2 port=$3 dir=$4
  shift 4
  mkdir -p "$dir"
  (cd "$dir" && exec "$bin" --port "$port" --bind 127.0.0.1 --dir "$dir" "$@" >"$dir/$name.log" 2>&1) &
  BENCH_PIDS+=($!)
  for _ in $(seq 1 200); do
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ] && return 0
    sleep 0.05
  done
  echo "$name did not start on port $port (see $dir/$name.log)" >&2
  return 1
}

stop_servers() {
  local p
  for p in "${BENCH_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${BENCH_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  BENCH_PIDS=()
}

# The pid a server on port $1 reports.
server_pid() { redis-cli -p "$1" info server | tr -d '\r' | awk -F: '/^process_id:/{print $2}'; }

# Nanoseconds on CPU of every thread of process $1 so far (schedstat's
# first field, summed over its threads).
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}'; }

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

release_datanode() {
  local root target
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  target=${CARGO_TARGET_DIR:-$root/target}
  DATANODE_BIN=${DATANODE_BIN:-"$target/release/datanode"}
  if [ -z "${DATANODE_BIN_GIVEN:-}" ]; then
    (cd "$root" && cargo build --release -p datanode >/dev/null 2>&1) ||
      { echo "release build of datanode failed" >&2; return 1; }
  fi
  [ -x "$DATANODE_BIN" ] || { echo "no datanode at $DATANODE_BIN" >&2; return 1; }
}

# RESP for a data set: KIND small|large|huge, N keys spread over slots
# 0-999 through hash tags found for each slot. Writes a tag of slot 3000
# (which stays on the first master) to TAGFILE.
gen_slot_data() { # KIND N TAGFILE
  python3 - "$1" "$2" "$3" <<'PY'
import sys
kind, n, tagfile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def crc16(b):
    c = 0
    for x in b:
        c ^= x << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
            c &= 0xFFFF
    return c
tags, i = {}, 0
while sum(1 for s in tags if s < 1000) < 1000 or 3000 not in tags:
    t = b"t%d" % i
    s = crc16(t) & 16383
    if (s < 1000 or s == 3000) and s not in tags:
        tags[s] = t
    i += 1
open(tagfile, "w").write(tags[3000].decode())
out = sys.stdout.buffer
val = b"x" * {"small": 16, "large": 1 << 20, "huge": 100 << 20}[kind]
for j in range(n):
    k = b"{" + tags[j % 1000] + b"}:%d" % j
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(val), val))
PY
}

start_cluster3() {
  local bin=$1 dir=$2 hosts=() p ok
  CLUSTER_PORTS=()
  for i in 1 2 3; do
    p=$(free_cluster_port)
    CLUSTER_PORTS+=("$p")
    hosts+=("127.0.0.1:$p")
    start_server "n$i" "$bin" "$p" "$dir/$p" --cluster-enabled yes \
      --cluster-config-file nodes.conf --cluster-node-timeout 15000 \
      --save '' --appendonly no
  done
  redis-cli --cluster create "${hosts[@]}" --cluster-yes >"$dir/create.log" 2>&1
  for _ in $(seq 1 600); do
    ok=1
    for p in "${CLUSTER_PORTS[@]}"; do
      [ "$(redis-cli -p "$p" cluster info | grep '^cluster_state:' | tr -d '\r')" = cluster_state:ok ] || ok=0
    done
    [ $ok = 1 ] && return 0
    sleep 0.05
  done
  echo "the cluster in $dir did not become ok" >&2
  return 1
}
