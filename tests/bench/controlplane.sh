#!/usr/bin/env bash
# The control plane's figures (issue 11), in one run:
#
#  1. Reshard speed: 1000 slots holding 500k keys of 16 bytes move from one
#     master of a 3-master cluster to another, (a) by `redis-cli --cluster
#     reshard` on a redis-server cluster (pipeline 10, its default, and
#     100) and (b) by a reshard job of the control plane (`serve`, the
#     cluster adopted) on a datanode cluster, which takes atomic slot
#     migration: from the POST to the job's `succeeded`. Ratio = (a)/(b).
#  2. REST latency: GET /clusters/local/topology at a fixed 500 requests/s
#     for 20 s against `controlplane up` (six datanodes, observed every
#     second), measured from each request's scheduled time (no
#     coordinated omission): p50, p99, max.
#  3. Memory: the control plane's RSS every 10 s while it observes that
#     6-node cluster for --rss-minutes (default 10): the largest.
#
#   tests/bench/controlplane.sh [--keys N] [--rss-minutes M]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
. "$ROOT/tests/bench/lib.sh"
KEYS=500000
RSS_MINUTES=10
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) KEYS=$2; shift 2 ;;
    --rss-minutes) RSS_MINUTES=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

release_datanode
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release -p controlplane >/dev/null 2>&1) ||
  { echo "build of controlplane failed" >&2; exit 1; }
CP="$TARGET/release/controlplane"
TOKEN="skv_bench_$RANDOM$RANDOM"
CP_PID=""

WORK=$(mktemp -d /tmp/slotkv-cpbench.XXXXXX)
stop_cp() {
  if [ -n "$CP_PID" ]; then
    kill -TERM "$CP_PID" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$CP_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$CP_PID" 2>/dev/null || true
    CP_PID=""
  fi
}
trap 'stop_cp; stop_servers; rm -rf "$WORK"' EXIT INT TERM
field() { grep "^$1:" | cut -d: -f2 | tr -d '\r'; }
api() { # METHOD PATH [BODY] -> body
  curl -sS -X "$1" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    ${3:+-d "$3"} "http://$HTTP/api/v1$2"
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# A 3-master cluster of BIN with KEYS keys over slots 0-999 of its first
# master; sets PORTS.
cluster_with_data() {
  local bin=$1 dir=$2
  start_cluster3 "$bin" "$dir"
  PORTS=("${CLUSTER_PORTS[@]}")
  gen_slot_data small "$KEYS" "$dir/tag" > "$dir/data.resp"
  redis-cli -p "${PORTS[0]}" --pipe < "$dir/data.resp" > "$dir/pipe.log" 2>&1
  [ "$(redis-cli -p "${PORTS[0]}" dbsize)" = "$KEYS" ] || { echo "load failed" >&2; return 1; }
}

now_ms() { date +%s%3N; }

# 1a. redis-cli --cluster reshard on redis-server.
declare -A CLI
for pipe in 10 100; do
  d="$WORK/cli$pipe"
  cluster_with_data redis-server "$d"
  sid=$(redis-cli -p "${PORTS[0]}" cluster myid)
  did=$(redis-cli -p "${PORTS[1]}" cluster myid)
  t0=$(now_ms)
  redis-cli --cluster reshard "127.0.0.1:${PORTS[0]}" --cluster-from "$sid" --cluster-to "$did" \
    --cluster-slots 1000 --cluster-yes --cluster-pipeline "$pipe" > "$d/reshard.log" 2>&1
  t1=$(now_ms)
  [ "$(redis-cli -p "${PORTS[1]}" dbsize)" = "$KEYS" ] || { echo "redis-cli moved too little" >&2; exit 1; }
  CLI[$pipe]=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print (b-a)/1000}')
  echo "  redis-cli reshard (redis-server, pipeline $pipe): ${CLI[$pipe]} s" >&2
  stop_servers
done

# 1b. The control plane's reshard job on datanodes.
d="$WORK/cp"
cluster_with_data "$DATANODE_BIN" "$d"
HTTP="127.0.0.1:$(free_port)"
GRPC="127.0.0.1:$(free_port)"
SLOTKV_TOKEN=$TOKEN "$CP" serve --database "sqlite://$d/cp.db" --data "$d" --http "$HTTP" \
  --grpc "$GRPC" > "$d/cp.log" 2>&1 &
CP_PID=$!
for _ in $(seq 1 300); do curl -sf "http://$HTTP/api/v1/health" >/dev/null 2>&1 && break; sleep 0.1; done
job=$(api POST /clusters "{\"name\": \"local\", \"adopt\": \"127.0.0.1:${PORTS[0]}\"}" | json 'd["id"]')
for _ in $(seq 1 600); do
  [ "$(api GET "/jobs/$job" | json 'd["status"]')" = succeeded ] && break
  sleep 0.1
done
for _ in $(seq 1 300); do
  [ "$(api GET /clusters/local | json 'd["state"]')" = ok ] && break
  sleep 0.1
done
sid=$(redis-cli -p "${PORTS[0]}" cluster myid)
did=$(redis-cli -p "${PORTS[1]}" cluster myid)
CP_SECS=$(python3 - "$HTTP" "$TOKEN" "$sid" "$did" <<'PY'
import http.client, json, sys, time
host, token, src, dst = sys.argv[1:5]
c = http.client.HTTPConnection(host, timeout=30)
h = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
body = json.dumps({"to": dst, "from": [src], "ranges": [[0, 999]]})
t0 = time.monotonic()
c.request("POST", "/api/v1/clusters/local/reshard", body, h)
r = c.getresponse()
job = json.loads(r.read())
assert r.status == 202, job
while True:
    c.request("GET", "/api/v1/jobs/" + job["id"], headers=h)
    j = json.loads(c.getresponse().read())
    if j["status"] in ("succeeded", "failed", "cancelled"):
        break
    time.sleep(0.01)
assert j["status"] == "succeeded", j
print("%.3f" % (time.monotonic() - t0))
PY
)
[ "$(redis-cli -p "${PORTS[1]}" dbsize)" = "$KEYS" ] || { echo "control plane moved too little" >&2; exit 1; }
echo "  control-plane reshard job (datanode, atomic): $CP_SECS s" >&2
stop_cp
stop_servers

# 2 and 3. `controlplane up`: REST latency, then RSS over time.
d="$WORK/up"
mkdir -p "$d"
HTTP="127.0.0.1:$(free_port)"
GRPC="127.0.0.1:$(free_port)"
BASE=$(free_cluster_port)
SLOTKV_TOKEN=$TOKEN "$CP" up --data "$d" --http "$HTTP" --grpc "$GRPC" --base-port "$BASE" \
  --datanode "$DATANODE_BIN" > "$d/up.log" 2>&1 &
CP_PID=$!
for _ in $(seq 1 900); do
  s=$(api GET /clusters/local 2>/dev/null | json 'd.get("state"), d.get("running_job")' 2>/dev/null || true)
  [ "$s" = "ok None" ] && break
  sleep 0.1
done
LAT=$(python3 - "$HTTP" "$TOKEN" <<'PY'
import http.client, sys, time
host, token = sys.argv[1:3]
c = http.client.HTTPConnection(host, timeout=10)
h = {"Authorization": "Bearer " + token}
rate, secs = 500, 20
lat = []
t0 = time.monotonic()
for i in range(rate * secs):
    due = t0 + i / rate
    now = time.monotonic()
    if now < due:
        time.sleep(due - now)
    c.request("GET", "/api/v1/clusters/local/topology", headers=h)
    r = c.getresponse()
    r.read()
    assert r.status == 200
    lat.append(time.monotonic() - due)
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
print("%.2f %.2f %.2f %.0f" % (q(0.5), q(0.99), lat[-1] * 1000, len(lat) / (time.monotonic() - t0)))
PY
)
echo "  GET /topology at 500/s: p50 p99 max (ms), achieved rate: $LAT" >&2
RSS_MAX=0
for _ in $(seq 1 $((RSS_MINUTES * 6))); do
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$CP_PID/status")
  [ "$rss" -gt "$RSS_MAX" ] && RSS_MAX=$rss
  sleep 10
done
echo "  control-plane RSS over $RSS_MINUTES min: max $((RSS_MAX / 1024)) MB" >&2
stop_cp

printf '%-44s %10s %8s\n' what seconds ratio
printf '%-44s %10.2f %8.2f\n' "redis-cli reshard, redis-server, pipeline 10" "${CLI[10]}" 1
printf '%-44s %10.2f %8.2f\n' "redis-cli reshard, redis-server, pipeline 100" "${CLI[100]}" \
  "$(awk -v a="${CLI[10]}" -v b="${CLI[100]}" 'BEGIN{print a/b}')"
printf '%-44s %10.2f %8.2f\n' "control-plane reshard job, datanode" "$CP_SECS" \
  "$(awk -v a="${CLI[10]}" -v b="$CP_SECS" 'BEGIN{print a/b}')"
printf '%-44s %10.2f %8.2f\n' "  (against redis-cli with pipeline 100)" "$CP_SECS" \
  "$(awk -v a="${CLI[100]}" -v b="$CP_SECS" 'BEGIN{print a/b}')"
set -- $LAT
echo "GET /api/v1/clusters/local/topology at 500/s for 20 s: p50 $1 ms, p99 $2 ms, max $3 ms (achieved $4/s)"
echo "control-plane RSS, 6-node cluster observed for $RSS_MINUTES min: max $((RSS_MAX / 1024)) MB"
