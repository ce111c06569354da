#!/usr/bin/env python3
"""Times one atomic slot migration: sends CLUSTER MIGRATESLOTS to the
source, then polls CLUSTER GETSLOTMIGRATIONS on the same connection every
millisecond until the job ends. Prints the seconds from the command to the
end (no process start-up inside the timing, unlike a redis-cli loop).

    migrateslots.py PORT FIRST LAST TARGET_ID
"""
import socket
import sys
import time


def command(sock, *args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    sock.sendall(out)
    return read_reply(sock.makefile("rb"))


def read_reply(f):
    line = f.readline()
    if not line:
        raise EOFError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind in (b"+", b":"):
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode()
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [read_reply(f) for _ in range(n)]
    raise RuntimeError("unexpected reply %r" % line)


def main():
    port, first, last, target = sys.argv[1:5]
    sock = socket.create_connection(("127.0.0.1", int(port)))
    t0 = time.monotonic()
    command(sock, "CLUSTER", "MIGRATESLOTS", "SLOTSRANGE", first, last, "NODE", target)
    deadline = t0 + 600
    state = None
    while time.monotonic() < deadline:
        jobs = command(sock, "CLUSTER", "GETSLOTMIGRATIONS")
        states = [dict(zip(j[::2], j[1::2])).get("state") for j in jobs]
        state = states[0] if states else None
        if state in ("success", "failed", "cancelled"):
            break
        time.sleep(0.001)
    elapsed = time.monotonic() - t0
    if state != "success":
        print("atomic migration ended: %s" % state, file=sys.stderr)
        sys.exit(1)
    print("%.4f" % elapsed)


if __name__ == "__main__":
    main()
