# Starts `controlplane up` (six datanodes) on free loopback ports for the
# scripted tests (sourced, not run):
#
#   start_up BIN_DIR   controlplane and datanode from BIN_DIR; waits (60 s)
#                      until the local cluster is created and observed ok;
#                      sets UP_HTTP, UP_GRPC, UP_BASE, UP_DIR, UP_TOKEN and
#                      UP_DB (the SQLite file)
#   stop_up            stops it and its datanodes, removes UP_DIR (call it
#                      from an EXIT trap)

up_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Six consecutive free ports for the datanodes (and their bus ports +10000).
up_base_ports() {
  python3 - <<'PY'
import random, socket
def free(p):
    for q in (p, p + 10000):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", q))
        except OSError:
            return False
        finally:
            s.close()
    return True
for _ in range(200):
    b = random.randint(20000, 29000)
    if all(free(b + i) for i in range(6)):
        print(b)
        break
PY
}

start_up() {
  local bin=$1
  UP_DIR=$(mktemp -d)
  UP_HTTP="127.0.0.1:$(up_free_port)"
  UP_GRPC="127.0.0.1:$(up_free_port)"
  UP_BASE=$(up_base_ports)
  UP_DB="$UP_DIR/controlplane.db"
  UP_TOKEN="skv_test_$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  SLOTKV_TOKEN="$UP_TOKEN" "$bin/controlplane" up --data "$UP_DIR" --http "$UP_HTTP" \
    --grpc "$UP_GRPC" --base-port "$UP_BASE" --datanode "$bin/datanode" \
    >"$UP_DIR/controlplane.log" 2>&1 &
  UP_PID=$!
  local ok="" _
  for _ in $(seq 600); do
    if curl -sf -H "Authorization: Bearer $UP_TOKEN" "http://$UP_HTTP/api/v1/clusters/local" 2>/dev/null |
      python3 -c 'import json,sys; c=json.load(sys.stdin); sys.exit(0 if c["state"]=="ok" and c["running_job"] is None and c["masters"]==3 and c["replicas"]==3 else 1)' 2>/dev/null; then
      ok=1
      break
    fi
    sleep 0.1
  done
  if [ -z "$ok" ]; then
    echo "the control plane did not come up" >&2
    cat "$UP_DIR/controlplane.log" >&2
    return 1
  fi
}

stop_up() {
  [ -n "${UP_PID:-}" ] || return 0
  kill -TERM "$UP_PID" 2>/dev/null || true
  local _ i
  for _ in $(seq 300); do kill -0 "$UP_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$UP_PID" 2>/dev/null || true
  for i in 0 1 2 3 4 5; do
    redis-cli -p $((UP_BASE + i)) SHUTDOWN NOSAVE >/dev/null 2>&1 || true
  done
  rm -rf "$UP_DIR"
  UP_PID=""
}
