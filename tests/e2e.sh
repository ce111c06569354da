#!/usr/bin/env bash
# The dashboard end to end in Debian's chromium, driven by playwright-core
# (web/e2e/run.mjs), and a smoke test in Debian's Firefox ESR over WebDriver
# BiDi (web/e2e/firefox.mjs); both browsers are installed when missing.
# They run against a real `controlplane up` with six datanodes on free
# loopback ports. Screenshots go to target/e2e/. Everything started is
# stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v firefox-esr >/dev/null 2>&1 || need+=(firefox-esr)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -d web/node_modules ] || web/build.sh

. tests/up.sh
spare_dir=$(mktemp -d)
spare_port=""
cleanup() {
  [ -n "$spare_port" ] && redis-cli -p "$spare_port" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
  rm -rf "$spare_dir"
  stop_up
}
trap cleanup EXIT
start_up target/debug
# An empty node for the page to add (and remove again).
spare_port=$(up_base_ports)
target/debug/datanode --port "$spare_port" --bind 127.0.0.1 --dir "$spare_dir" \
  --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
  >"$spare_dir/datanode.log" 2>&1 &
for _ in $(seq 100); do
  [ "$(redis-cli -p "$spare_port" PING 2>/dev/null)" = PONG ] && break
  sleep 0.1
done
viewer=$(target/debug/controlplane token add --database "sqlite://$UP_DB" --name e2e-viewer --role viewer)

# Firefox first: the chromium run ends by stopping a node.
E2E_URL="http://$UP_HTTP" E2E_TOKEN="$UP_TOKEN" FIREFOX_VERSION="$(firefox-esr --version)" \
  node --experimental-websocket web/e2e/firefox.mjs
E2E_URL="http://$UP_HTTP" E2E_TOKEN="$UP_TOKEN" E2E_VIEWER="$viewer" E2E_DB="$UP_DB" \
  E2E_SPARE="127.0.0.1:$spare_port" \
  E2E_OUT="$PWD/target/e2e" CHROMIUM="$(command -v chromium)" \
  node web/e2e/run.mjs
