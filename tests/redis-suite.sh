#!/usr/bin/env bash
# Runs Redis 7.0.15's own unit tests (../shared/redis-tests, see its README)
# against the debug datanode in external-server mode. Tests and whole units
# listed in tests/redis-suite-skips.txt are skipped; any other failure fails
# this script. With arguments, runs only those units.
#
#   tests/redis-suite.sh                 every unit in units.txt
#   tests/redis-suite.sh unit/type/list  one unit
set -euo pipefail
cd "$(dirname "$0")/.."
SUITE=${REDIS_TESTS:-../shared/redis-tests}
SKIPS=tests/redis-suite-skips.txt
BIN=${DATANODE_BIN:-target/debug/datanode}
# Units run with servers the harness starts (all their tests are
# external:skip): see tests/redis-suite-spawned.sh. The last four also run
# in external mode; run again so, their external:skip tests (replicas,
# restarts, CONFIG REWRITE, the Lua debugger) run too.
SPAWNED_UNITS="unit/acl unit/acl-v2 unit/auth unit/info unit/pubsubshard unit/limits unit/wait unit/shutdown unit/obuf-limits unit/oom-score-adj unit/client-eviction unit/networking unit/maxmemory unit/memefficiency unit/scripting unit/functions unit/introspection unit/pause"
if [ ! -x "$SUITE/run.sh" ]; then
  echo "redis-suite: $SUITE is not here (a clone outside this setup); Redis's own tests not run"
  exit 0
fi
if ! command -v tclsh >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq tcl >/dev/null
fi
# Whole units are skip-file lines that start with `unit/`.
skipped_units=$(sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$SKIPS" | grep '^unit/' || true)
if [ $# -gt 0 ]; then
  units=("$@")
else
  mapfile -t units < <(grep -v '^#' "$SUITE/units.txt" | grep . |
    grep -vxF -e "${skipped_units:-//none//}")
fi
# The harness listens on a port below --baseport; a per-run base lets two
# runs share the machine.
# unit/hyperloglog's fuzz test spends ~45 s in Tcl itself (redis-server
# too), close to the suite's 60 s default on a busy 2-core machine.
export TEST_TIMEOUT=${TEST_TIMEOUT:-180}
base=$((22000 + ($$ % 250) * 40))
export RUNTEST_FLAGS="${RUNTEST_FLAGS:-} --baseport $base"
log=$(mktemp)
keep=${KEEP:-$(mktemp -d)}
trap 'rm -f "$log"; [ -n "${KEEP:-}" ] || rm -rf "$keep"' EXIT
SKIPFILE=$SKIPS KEEP=$keep "$SUITE/run.sh" "$BIN" "${units[@]}" | tee "$log"
last=$(tail -n 1 "$log")

# Units whose every test is tagged external:skip run with the harness
# starting datanode itself (tests/redis-suite-spawned.sh).
spawned=()
for u in $SPAWNED_UNITS; do
  if [ $# -eq 0 ] || printf '%s\n' "$@" | grep -qxF "$u"; then spawned+=("$u"); fi
done
spawned_failed=0
if [ ${#spawned[@]} -gt 0 ]; then
  spawned_log=$(mktemp)
  SKIPFILE=$SKIPS tests/redis-suite-spawned.sh "$BIN" "${spawned[@]}" | tee "$spawned_log" || true
  spawned_failed=$(sed -n 's/^.*(servers started by the harness): [0-9]* passed, \([0-9]*\) failed.*$/\1/p' "$spawned_log" |
    awk '{s+=$1} END {print s+0}')
  grep -q "(servers started by the harness)" "$spawned_log" || spawned_failed=1
  rm -f "$spawned_log"
fi
if [ "$spawned_failed" -gt 0 ]; then
  echo "redis-suite: failures in units the harness ran servers for (above)" >&2
  exit 1
fi
# A test the harness timed out is reported as [TIMEOUT], which run.sh does
# not count.
# The suite colours its status words, so strip the colour codes first.
timeouts=$(for f in "$keep"/*.log; do
  [ -e "$f" ] || continue
  sed 's/\x1b\[[0-9;]*m//g' "$f" | grep -q '\[TIMEOUT\]' && echo "$f"
done || true)
if [ -n "$timeouts" ]; then
  echo "redis-suite: a test timed out in: $timeouts" >&2
  exit 1
fi
# A panic in datanode fails the run even when the tests passed: the task
# that panicked (a connection, the cron) dies alone and the server goes on.
panics=$(grep -l "panicked at" "$keep"/*.server.log 2>/dev/null || true)
if [ -n "$panics" ]; then
  for f in $panics; do
    echo "redis-suite: datanode panicked in $(basename "$f" .server.log):" >&2
    grep -m1 -A3 "panicked at" "$f" >&2
  done
  exit 1
fi
if ! [[ $last =~ ^([0-9]+)\ passed,\ 0\ failed$ ]]; then
  echo "redis-suite: failures above (or tests/redis-suite-skips.txt needs a line with its reason)" >&2
  exit 1
fi
