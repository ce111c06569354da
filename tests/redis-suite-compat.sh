#!/usr/bin/env bash
# Runs Redis 7.0.15's own unit tests against redis-server and against the
# debug datanode (with tests/redis-suite-skips.txt), and writes the pass
# counts per unit side by side to COMPATIBILITY.md.
#
#   tests/redis-suite-compat.sh                  run both, write the table
#   tests/redis-suite-compat.sh REDIS.txt DN.txt  table from saved outputs
set -euo pipefail
cd "$(dirname "$0")/.."
SUITE=${REDIS_TESTS:-../shared/redis-tests}
spawned=$(sed -n 's/^SPAWNED_UNITS="\(.*\)"$/\1/p' tests/redis-suite.sh)
export SPAWNED="$spawned"
if [ $# -eq 2 ]; then
  redis_out=$1; dn_out=$2
else
  redis_out=$(mktemp); dn_out=$(mktemp)
  # The one test that cannot run in external mode against redis-server
  # either (see the suite's README).
  refskip=$(mktemp)
  echo "SRANDMEMBER with a dict containing long chain" >"$refskip"
  # Not run on either server: it connects to a non-loopback address.
  echo "Protected mode works as expected" >>"$refskip"
  SKIPFILE=$refskip "$SUITE/run.sh" "$(command -v redis-server)" | tee "$redis_out"
  # shellcheck disable=SC2086
  SKIPFILE=$refskip tests/redis-suite-spawned.sh "$(command -v redis-server)" $spawned |
    tee -a "$redis_out"
  tests/redis-suite.sh | tee "$dn_out" || true
fi
python3 - "$redis_out" "$dn_out" tests/redis-suite-skips.txt <<'EOF' >COMPATIBILITY.md
import re, sys, collections
def counts(path):
    d = collections.OrderedDict()
    for line in open(path, errors="replace"):
        # A unit run with servers the harness starts comes after its
        # external-mode line (all skipped) and replaces it.
        m = re.match(r"^(unit/\S+)(?: \(servers started by the harness\))?: (\d+) passed, (\d+) failed", line)
        if m:
            d[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return d
ref, dn = counts(sys.argv[1]), counts(sys.argv[2])
skips = collections.Counter()
whole = {}
unit = None
for line in open(sys.argv[3]):
    line = line.rstrip("\n")
    m = re.match(r"^# (unit/\S+)$", line)
    if m:
        unit = m.group(1)
        continue
    if not line or line.startswith("#"):
        continue
    name, _, reason = line.partition("  # ")
    if name.startswith("unit/"):
        whole[name] = reason
    elif unit:
        skips[unit] += 1
print("# Compatibility with Redis 7.0.15's own test suite\n")
print("Redis's unit tests (`../shared/redis-tests`) run in external-server mode against")
print("redis-server 7.0.15 and against datanode in the same session. Tests and units that")
print("datanode skips are listed with their reasons in `tests/redis-suite-skips.txt`.")
print("A unit showing 0 and 0 has every test tagged `external:skip` by Redis itself;")
import os, textwrap
units = os.environ.get("SPAWNED", "").split()
listed = ", ".join(units[:-1]) + " and " + units[-1] if len(units) > 1 else "".join(units)
print(textwrap.fill(listed + ", whose tests all are, run instead with the harness starting"
                    " each server itself (`tests/redis-suite-spawned.sh`; unit/maxmemory"
                    " in database 0, see the README's known differences). unit/memefficiency's"
                    " defrag tests run their active-defrag steps on redis-server only: datanode"
                    " refuses `activedefrag yes` as a redis-server built without defrag support"
                    " does, and the tests then check only the data.", 84, break_on_hyphens=False) + "\n")
print("Reproduce: `tests/redis-suite-compat.sh` (both runs, then this file).\n")
print("| unit | redis-server passed | datanode passed | datanode failed | skipped by datanode |")
print("|---|---|---|---|---|")
tr = td = 0
for u, (rp, rf) in ref.items():
    if u in whole:
        print(f"| {u} | {rp} | — | — | whole unit: {whole[u]} |")
        tr += rp
        continue
    dp, df = dn.get(u, (0, 0))
    print(f"| {u} | {rp} | {dp} | {df} | {skips.get(u, 0)} |")
    tr += rp; td += dp
print(f"| **all** | **{tr}** | **{td}** | **{sum(f for _, f in dn.values())}** | **{sum(skips.values())} tests, {len(whole)} units** |")
EOF
echo "wrote COMPATIBILITY.md"
