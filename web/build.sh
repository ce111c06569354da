#!/usr/bin/env bash
# Builds the dashboard into web/dist (embedded in the controlplane binary
# at compile time): npm packages from the lock file, then the type check
# and Vite. Skips the install when node_modules matches the lock file.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
  echo "web/build.sh: npm is needed to build the dashboard (Node.js 20.19 or later)" >&2
  exit 1
fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build
