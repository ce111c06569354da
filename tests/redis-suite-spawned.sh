#!/usr/bin/env bash
# Runs Redis 7.0.15 units whose every test is tagged external:skip (they
# start their own servers from config files: aclfile, user directives,
# restarts) with the harness starting BIN itself: BIN is put where the
# harness looks for redis-server. Prints, per unit,
# `UNIT (servers started by the harness): N passed, M failed`.
#
#   tests/redis-suite-spawned.sh BIN UNIT...
#
# SKIPFILE, as for the suite's run.sh: test names to skip (`name  # reason`).
set -uo pipefail
cd "$(dirname "$0")/.."
SUITE=${REDIS_TESTS:-../shared/redis-tests}
BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1"); shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$SUITE/tests" "$SUITE/runtest" "$work/"
chmod -R u+w "$work"
mkdir -p "$work/src" "$work/tests/tmp"
for t in redis-cli redis-benchmark redis-check-aof redis-check-rdb; do
  if command -v $t >/dev/null; then ln -sf "$(command -v $t)" "$work/src/$t"; fi
done
ln -sf "$BIN" "$work/src/redis-server"
skip=()
if [ -n "${SKIPFILE:-}" ]; then
  sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$SKIPFILE" | grep . >"$work/skip.txt" || true
  skip=(--skipfile "$work/skip.txt")
fi
for u in "$@"; do
  out="$work/${u//\//_}.log"
  rc=0
  # unit/maxmemory's client-eviction tests leave about 3.5 MB between the
  # data and maxmemory; on a database other than 0 datanode spends 1.1 MB
  # of it on that database's slots (16384 slot locks and tables, allocated
  # when the database is first written; README, known differences), so
  # the unit runs in database 0 (whose tables are part of the startup
  # memory, as Redis's databases are), on both servers, as the shared
  # runner (../shared/redis-tests/run.sh) runs every other unit. Making
  # database 0 on first use instead was tried: unit/lazyfree then fails
  # there (its baseline is taken before the first key).
  unit_flags=()
  [ "$u" = unit/maxmemory ] && unit_flags=(--singledb)
  (cd "$work" && timeout -k 10 900 ./runtest --single "$u" --clients 1 --durable --dont-clean \
    --timeout "${TEST_TIMEOUT:-180}" "${unit_flags[@]}" "${skip[@]}" ${RUNTEST_FLAGS:-}) >"$out" 2>&1 || rc=$?
  clean() { sed 's/\x1b\[[0-9;]*m//g' "$out"; }
  ok=$(clean | grep -c '^\[ok\]' || true)
  err=$(clean | grep -cE '^\[(err|exception|TIMEOUT)\]' || true)
  if [ "$rc" -ne 0 ] && [ "$err" -eq 0 ]; then err=1; fi
  # A panic in a server the harness started counts as a failure (see
  # redis-suite.sh); the servers' logs are under tests/tmp.
  panicked=$(grep -rh -m1 -A3 "panicked at" "$work/tests/tmp" 2>/dev/null | head -8 || true)
  if [ -n "$panicked" ]; then err=$((err + 1)); fi
  echo "$u (servers started by the harness): $ok passed, $err failed"
  if [ -n "$panicked" ]; then echo "    datanode panicked:"; echo "$panicked" | sed 's/^/    /'; fi
  clean | grep -E '^\[(err|exception|TIMEOUT)\]' -A3 | head -40 | sed 's/^/    /' || true
  rm -rf "$work/tests/tmp" && mkdir -p "$work/tests/tmp"
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cp "$out" "$KEEP/"; fi
done
