#!/usr/bin/env bash
# Fuzzes the control plane's REST API against its own OpenAPI document with
# schemathesis (from PyPI, in a virtual environment under target/): a real
# `controlplane up` (six datanodes) on free loopback ports; no response may
# be a 5xx, and every response must match the document (status, content
# type, headers, body schema). Everything started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/venv-schemathesis
if [ ! -x "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'schemathesis==4.32.5'
fi

. tests/up.sh
trap stop_up EXIT
start_up target/debug
http=$UP_HTTP
token=$UP_TOKEN

# The event stream never ends, so it is left to the integration tests.
# One worker: with two threads, hypothesis parses lambda sources with `ast`
# concurrently, and CPython 3.11's ast keeps its recursion depth in shared
# state, so the two race ("AST constructor recursion depth mismatch"), which
# failed a CI run although every request had passed.
fuzz() {
"$venv/bin/st" run "http://$http/api/v1/openapi.json" \
  -H "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --exclude-path-regex 'events/stream' \
  --max-examples "${FUZZ_EXAMPLES:-100}" --seed "${FUZZ_SEED:-20261204}" \
  --request-timeout 10 -w 1 --no-color
}

# If CPython's ast race still strikes (a crash inside hypothesis, not a
# finding about the API), run once more; any real failure fails as before.
log=target/api-fuzz.log
if fuzz 2>&1 | tee "$log"; then
  exit 0
fi
# Only a run whose one problem is that crash is repeated: schemathesis
# prints a FAILURES section for any finding about the API.
if grep -q "AST constructor recursion depth mismatch" "$log" && ! grep -qi "failures" "$log"; then
  echo "api-fuzz: hypothesis hit CPython's ast race; running again" >&2
  fuzz
else
  exit 1
fi
