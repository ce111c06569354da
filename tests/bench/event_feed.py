#!/usr/bin/env python3
"""Records events into a control plane's SQLite store at a steady rate, as
a second control plane sharing the database would (the same counter row,
in one transaction per event), so the dashboard's live stream can be
measured under load: event_feed.py DB CLUSTER RATE SECONDS [COUNT [KIND]]
(stops after COUNT events when given; KIND defaults to bench_event)."""
import json
import sqlite3
import sys
import time

db, cluster, rate, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
limit = int(sys.argv[5]) if len(sys.argv) > 5 else None
kind = sys.argv[6] if len(sys.argv) > 6 else "bench_event"
con = sqlite3.connect(db, timeout=10, isolation_level=None)
start = time.monotonic()
n = 0
while time.monotonic() - start < seconds and (limit is None or n < limit):
    due = start + n / rate
    wait = due - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    con.execute("BEGIN IMMEDIATE")
    (eid,) = con.execute(
        "UPDATE counters SET value = value + 1 WHERE name = 'events' RETURNING value"
    ).fetchone()
    con.execute(
        "INSERT INTO events (id, time, cluster, kind, node, job, actor, details) VALUES (?, ?, ?, ?, NULL, NULL, ?, ?)",
        (eid, int(time.time() * 1000), cluster, kind, "bench", json.dumps({"n": n, "note": "synthetic load"})),
    )
    con.execute("COMMIT")
    n += 1
print(n)
