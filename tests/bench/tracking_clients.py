#!/usr/bin/env python3
"""Client-side caching load for tests/bench/tracking.sh: N RESP3 connections
with CLIENT TRACKING on, each reading its share of the benchmark's keyspace
(`key:%012d`, as redis-benchmark -r names keys) so every key is tracked by
one client. Each invalidation is answered as a caching client would: the
key is read again (and so tracked again). Prints "ready" once every key has
been read, then runs until killed.

  tracking_clients.py PORT CLIENTS KEYS
"""
import re
import selectors
import socket
import sys

port, clients, keys = (int(a) for a in sys.argv[1:4])
KEY = re.compile(rb"key:\d{12}")


def get_cmds(names):
    return b"".join(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k) for k in names)


sel = selectors.DefaultSelector()
conns = []
per = keys // clients
for i in range(clients):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*3\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n$2\r\non\r\n")
    conns.append(s)
# Wait for both replies of each connection (HELLO's map ends with the
# modules array, TRACKING answers +OK).
for s in conns:
    buf = b""
    while not buf.endswith(b"+OK\r\n"):
        buf += s.recv(65536)
# Read every key once: GET replies (nulls or values) are discarded.
for i, s in enumerate(conns):
    names = [b"key:%012d" % k for k in range(i * per, (i + 1) * per)]
    s.sendall(get_cmds(names) + b"*1\r\n$4\r\nPING\r\n")
for s in conns:
    buf = b""
    while not buf.endswith(b"+PONG\r\n"):
        buf += s.recv(1 << 16)
for s in conns:
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, bytearray())
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        s, buf = key.fileobj, key.data
        try:
            d = s.recv(1 << 16)
        except BlockingIOError:
            continue
        if not d:
            sys.exit(0)
        buf += d
        cut = buf.rfind(b"\r\n")
        if cut < 0:
            continue
        done = bytes(buf[: cut + 2])
        del buf[: cut + 2]
        # Only invalidations name keys (values are redis-benchmark's "xxx").
        names = KEY.findall(done)
        if names:
            s.setblocking(True)
            s.sendall(get_cmds(names))
            s.setblocking(False)
