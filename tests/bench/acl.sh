#!/usr/bin/env bash
# SET and GET as an ACL user limited to `~key:*` (every command is checked
# against its key patterns) and as the default user (no check), on
# redis-server and datanode side by side, alternating, medians of N rounds.
# Prints a markdown table for BENCHMARKS.md.
#
#   tests/bench/acl.sh [--rounds N] [--requests N]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/bench/lib.sh"
ROUNDS=3
REQUESTS=200000
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
release_datanode
work=$(mktemp -d)
trap 'stop_servers; rm -rf "$work"' EXIT
rp=$(free_port); start_server redis "$(command -v redis-server)" "$rp" "$work/redis" --save '' --appendonly no
dp=$(free_port); start_server datanode "$DATANODE_BIN" "$dp" "$work/datanode" --save '' --appendonly no
for p in $rp $dp; do
  redis-cli -p "$p" ACL SETUSER bench on '>benchpw' '~key:*' '&*' '+@all' >/dev/null
done
# rps for one (port, user, test, depth).
run() {
  local port=$1 who=$2 test=$3 depth=$4 auth=()
  [ "$who" = user ] && auth=(--user bench -a benchpw)
  redis-benchmark -p "$port" "${auth[@]}" -t "$test" -c 50 -P "$depth" -n "$REQUESTS" \
    -r 100000 --csv 2>/dev/null | awk -F'"' -v t="${test^^}" '$2 == t {print $4}'
}
echo "| as | command | depth | redis ops/s | datanode ops/s | ratio |"
echo "|---|---|---:|---:|---:|---:|"
for who in user default; do
  for depth in 1 16; do
    for test in set get; do
      r=(); d=()
      for _ in $(seq "$ROUNDS"); do
        r+=("$(run "$rp" $who $test $depth)")
        d+=("$(run "$dp" $who $test $depth)")
      done
      rm=$(printf '%s\n' "${r[@]}" | median)
      dm=$(printf '%s\n' "${d[@]}" | median)
      ratio=$(awk -v a="$dm" -v b="$rm" 'BEGIN {printf "%.2f", a / b}')
      label=$([ $who = user ] && echo 'user `~key:*`' || echo default)
      echo "| $label | ${test^^} | $depth | $rm | $dm | $ratio |"
    done
  done
done
