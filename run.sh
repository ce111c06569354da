#!/usr/bin/env bash
# Builds slotkv and runs a local datanode on 127.0.0.1:6379 (data in ./data).
# Extra arguments are passed on as redis.conf-style overrides, e.g.
#   ./run.sh --port 7000 --appendfsync always
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release -p datanode
mkdir -p data
echo "datanode: connect with  redis-cli -p ${PORT:-6379}   (Ctrl-C stops it)"
exec target/release/datanode datanode/redis.conf --dir "$PWD/data" "$@"
