#!/usr/bin/env bash
# Installs what the tests need (Debian's redis-server and redis-tools, tcl
# for Redis's own test suite; only when missing) and runs the whole test
# suite: our tests, then Redis 7.0.15's own unit tests against datanode
# (tests/redis-suite.sh, when ../shared/redis-tests is present). The REST
# API is fuzzed against its OpenAPI document (tests/api-fuzz.sh, which puts
# schemathesis in a virtual environment under target/). A private
# PostgreSQL (tests/postgres.sh) serves the store tests on that database.
# The dashboard is built (web/build.sh: npm ci from the lock file, then
# Vite), unit-tested with Vitest, and tested end to end in Debian's
# chromium and Firefox ESR (tests/e2e.sh, which installs them when
# missing).
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server redis-tools >/dev/null
fi
redis-server --version

# The store, lease and two-control-plane tests run on PostgreSQL too.
. tests/postgres.sh

# The dashboard, built into the controlplane binary; its unit tests.
web/build.sh
(cd web && npm test --silent)

# The integration tests start the datanode binary from target/debug.
cargo build --workspace --bins
cargo test --workspace -- --test-threads="${TEST_THREADS:-2}"
tests/api-fuzz.sh
tests/e2e.sh
tests/redis-suite.sh
