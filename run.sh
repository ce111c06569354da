#!/usr/bin/env bash
# The main job: builds slotkv and runs a local cluster of six datanodes
# (3 masters, 3 replicas) on 127.0.0.1:30001-30006, joined with the real
# redis-cli (Debian's redis-tools is installed when missing). Ctrl-C stops
# it; data stays in ./data/cluster (./cluster.sh clean removes it).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v redis-cli >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-tools >/dev/null
fi
cargo build --release -p datanode
exec ./cluster.sh run
