#!/usr/bin/env bash
# Dashboard figures (issue 12) in Debian's chromium against a real
# `controlplane up` (release build, six datanodes): the bundle's gzipped
# size, the first load with a cold cache, and the longest main-thread task
# while events stream at RATE per second (default 50) for SECONDS (30).
# Events are written into the store as a second control plane sharing the
# database would; the page receives them through its live stream.
#   tests/bench/dashboard.sh            prints the JSON, appends to BENCHMARKS.md with --record
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${BIN_DIR:-target/release}
web/build.sh >/dev/null
if [ "$bin" = target/release ]; then
  cargo build --release -q -p controlplane -p datanode
fi
. tests/up.sh
trap stop_up EXIT
start_up "$bin"
out=$(E2E_URL="http://$UP_HTTP" E2E_TOKEN="$UP_TOKEN" E2E_DB="$UP_DB" DIST="$PWD/web/dist" \
  CHROMIUM="$(command -v chromium)" node web/e2e/bench.mjs)
echo "$out"
if [ "${1:-}" = "--record" ]; then
  echo "$out" > target/dashboard-bench.json
fi
