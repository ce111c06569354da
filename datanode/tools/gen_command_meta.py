#!/usr/bin/env python3
"""Generates datanode/src/command/meta_table.rs from a running redis-server 7.0.

The COMMAND INFO entries (arity, flags, key positions, ACL categories, tips,
key specifications, subcommands) are facts clients route by, so we take them
from the reference server, in RESP3 so maps and sets keep their types.
Only commands and subcommands present in our dispatch table are emitted.
COMMAND DOCS keeps the structural facts (group, since, arguments, flags) but
its prose is ours: summaries come from tools/command_summaries.txt, and
Redis's complexity and history texts are left out.

Usage: redis-server --port 23999 --save '' & ; tools/gen_command_meta.py 23999
"""
import re
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "src" / "command" / "table.rs"
OUT = ROOT / "src" / "command" / "meta_table.rs"
SUMMARIES = ROOT / "tools" / "command_summaries.txt"
DROP_DOC_FIELDS = {"complexity", "history"}


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def send(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)
        return self.read()

    def line(self):
        while b"\r\n" not in self.buf:
            self.buf += self.s.recv(65536)
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l

    def exact(self, n):
        while len(self.buf) < n + 2:
            self.buf += self.s.recv(65536)
        d, self.buf = self.buf[:n], self.buf[n + 2:]
        return d

    def read(self):
        l = self.line()
        t, rest = chr(l[0]), l[1:]
        if t in "+-":
            return ("simple" if t == "+" else "error", rest.decode())
        if t == ":":
            return ("int", int(rest))
        if t == "$":
            n = int(rest)
            return ("null", None) if n < 0 else ("bulk", self.exact(n).decode())
        if t == "_":
            return ("null", None)
        if t in "*~":
            n = int(rest)
            return ("array" if t == "*" else "set", [self.read() for _ in range(n)])
        if t == "%":
            n = int(rest)
            return ("map", [(self.read(), self.read()) for _ in range(n)])
        raise ValueError("unexpected reply type " + t)


def ours():
    names = re.findall(r'\bc(?:ontainer)?\(\s*"([a-z_|\-]+)"', TABLE.read_text())
    top = [n for n in names if "|" not in n]
    subs = {n for n in names if "|" in n}
    return top, subs


def rust(v):
    kind, val = v
    if kind == "int":
        return "M::Int(%d)" % val
    if kind == "simple":
        return "M::Simple(%s)" % rstr(val)
    if kind == "bulk":
        return "M::Bulk(%s)" % rstr(val)
    if kind == "null":
        return "M::Null"
    if kind in ("array", "set"):
        tag = "Array" if kind == "array" else "Set"
        return "M::%s(&[%s])" % (tag, ", ".join(rust(x) for x in val))
    if kind == "map":
        return "M::Map(&[%s])" % ", ".join("(%s, %s)" % (rust(k), rust(x)) for k, x in val)
    raise ValueError(kind)


def rstr(s):
    # rustfmt gives up on an item with a line it cannot fit, so long texts
    # (SORT's key-spec notes) are split into concat!() pieces.
    if len(s) > 60:
        words = re.findall(r"\s+|\S+\s*", s)
        parts, cur = [], ""
        for w in words:
            if cur and len(cur) + len(w) > 60:
                parts.append(cur)
                cur = ""
            cur += w
        parts.append(cur)
        assert "".join(parts) == s
        if len(parts) > 1:
            return "concat!(" + ", ".join(quote(p) for p in parts) + ")"
    return quote(s)


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def summaries():
    out = {}
    for line in SUMMARIES.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, text = line.split(":", 1)
            out[name.strip()] = text.strip()
    return out


def fix_docs(name, doc, subs, summ):
    """Replaces the summary with ours, drops prose, filters subcommands."""
    kind, pairs = doc
    out = []
    for k, v in pairs:
        key = k[1]
        if key in DROP_DOC_FIELDS:
            continue
        if key == "summary":
            if name not in summ:
                sys.exit("no summary for %s in %s" % (name, SUMMARIES))
            v = ("bulk", summ[name])
        if key == "subcommands":
            kept = [(sk, fix_docs(sk[1], sv, subs, summ)) for sk, sv in v[1] if sk[1] in subs]
            v = ("map", sorted(kept, key=lambda kv: kv[0][1]))
        out.append((k, v))
    return ("map", out)


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 6379
    c = Conn(port)
    c.send("HELLO", "3")
    top, subs = ours()
    entries = []
    for name in top:
        kind, info = c.send("COMMAND", "INFO", name)
        entry = info[0]
        if entry[0] == "null":
            sys.exit("redis-server does not know %s" % name)
        fields = list(entry[1])
        # Keep only the subcommands we implement.
        sub_kind, sub_list = fields[9]
        # Sorted: redis-server lists them in its dict's (random) order.
        kept = [s for s in sub_list if s[1][0][1] in subs]
        fields[9] = (sub_kind, sorted(kept, key=lambda s: s[1][0][1]))
        entries.append((name, ("array", fields)))
    summ = summaries()
    docs = []
    for name in top:
        kind, m = c.send("COMMAND", "DOCS", name)
        for k, v in m:
            docs.append((name, fix_docs(name, v, subs, summ)))
    body = "\n".join("    (%s, %s)," % (rstr(n), rust(e)) for n, e in entries)
    docs_body = "\n".join("    (%s, %s)," % (rstr(n), rust(e)) for n, e in docs)
    OUT.write_text(
        "//! Generated by `tools/gen_command_meta.py` from redis-server 7.0's\n"
        "//! COMMAND INFO (facts clients route by). Do not edit by hand.\n\n"
        "use super::meta::M;\n\n"
        "pub static COMMAND_INFO: &[(&str, M)] = &[\n" + body + "\n];\n\n"
        "pub static COMMAND_DOCS: &[(&str, M)] = &[\n" + docs_body + "\n];\n"
    )
    print("wrote %d commands to %s" % (len(entries), OUT))


if __name__ == "__main__":
    main()
