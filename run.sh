#!/usr/bin/env bash
# The main job: builds slotkv and runs `controlplane up`: the control plane
# (REST on 127.0.0.1:7070, state in ./data/slotkv/controlplane.db) with six
# local datanodes (3 masters, 3 replicas) on 127.0.0.1:30001-30006, the
# cluster created by the control plane's own job on the first run and
# brought back on later ones. Ctrl-C stops everything. Options are passed
# to `controlplane up` (see `controlplane up --help`).
set -euo pipefail
cd "$(dirname "$0")"
web/build.sh
cargo build --release -p datanode -p controlplane
exec target/release/controlplane up "$@"
