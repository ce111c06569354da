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

# Units whose every test is tagged external:skip, because each starts its
# own servers from config files (aclfile, user directives, restarts). The
# harness can start datanode itself for them: it is put where the harness
# looks for redis-server.
spawned=()
for u in unit/acl unit/acl-v2 unit/auth; do
  if [ $# -eq 0 ] || printf '%s\n' "$@" | grep -qxF "$u"; then spawned+=("$u"); fi
done
spawned_failed=0
if [ ${#spawned[@]} -gt 0 ]; then
  work=$(mktemp -d)
  cp -r "$SUITE/tests" "$SUITE/runtest" "$work/"
  chmod -R u+w "$work"
  mkdir -p "$work/src" "$work/tests/tmp"
  for t in redis-cli redis-benchmark redis-check-aof redis-check-rdb; do
    command -v $t >/dev/null && ln -sf "$(command -v $t)" "$work/src/$t"
  done
  ln -sf "$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")" "$work/src/redis-server"
  for u in "${spawned[@]}"; do
    out="$work/${u//\//_}.log"
    rc=0
    (cd "$work" && timeout -k 10 900 ./runtest --single "$u" --clients 1 --durable \
      --timeout "$TEST_TIMEOUT" $RUNTEST_FLAGS) >"$out" 2>&1 || rc=$?
    ok=$(sed 's/\x1b\[[0-9;]*m//g' "$out" | grep -c '^\[ok\]' || true)
    err=$(sed 's/\x1b\[[0-9;]*m//g' "$out" | grep -cE '^\[(err|exception|TIMEOUT)\]' || true)
    [ "$rc" -eq 0 ] || [ "$err" -gt 0 ] || err=1
    echo "$u (servers started by the harness): $ok passed, $err failed"
    sed 's/\x1b\[[0-9;]*m//g' "$out" | grep -E '^\[(err|exception|TIMEOUT)\]' -A3 | head -40 | sed 's/^/    /' || true
    if [ -n "${KEEP:-}" ]; then cp "$out" "$keep/"; fi
    spawned_failed=$((spawned_failed + err))
  done
  rm -rf "$work"
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
if ! [[ $last =~ ^([0-9]+)\ passed,\ 0\ failed$ ]]; then
  echo "redis-suite: failures above (or tests/redis-suite-skips.txt needs a line with its reason)" >&2
  exit 1
fi
