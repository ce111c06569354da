# Helpers shared by the benchmark scripts (sourced, not run).
#
#   free_port                      a port nothing listens on
#   free_cluster_port              the same, with its bus port (+10000) free
#   start_server NAME BIN PORT DIR ARGS…   starts a server in DIR, waits
#                                  for PONG (10 s), records its pid
#   stop_servers                   stops every server started here
#   median                         median of the numbers on stdin
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
