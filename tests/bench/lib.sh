# Helpers shared by the benchmark scripts (sourced, not run).
#
#   free_port                      a port nothing listens on
#   start_server NAME BIN PORT DIR ARGS…   starts a server in DIR, waits
#                                  for PONG (10 s), records its pid
#   stop_servers                   stops every server started here
#   median                         median of the numbers on stdin

BENCH_PIDS=()

free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( (RANDOM % 10000) + 20000 ))
    if ! (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
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

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
