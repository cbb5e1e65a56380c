#!/usr/bin/env python3
"""A lab real server behind FULLNAT with PROXY protocol: every connection must
open with a PROXY protocol header (v2 binary or v1 text, as haproxy's
proxy-protocol.txt defines them), then speaks HTTP/1.1:

    GET /            -> "NAME src=CIP:CPORT dst=VIP:VPORT peer=LIP:LPORT vN\\n"
    GET /blob?size=N -> N deterministic bytes (as scripts/rs_server.py's)
    POST /sink       -> sha256 of the body

A connection without a valid header is closed, and counted on stderr.

    pp_server.py NAME PORT
"""
import os
import socket
import struct
import sys
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from rs_server import LabHandler, Server, blob  # noqa: E402

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def read_exact(f, n):
    data = b""
    while len(data) < n:
        chunk = f.read(n - len(data))
        if not chunk:
            raise ValueError("connection closed inside the PROXY header")
        data += chunk
    return data


def read_proxy_header(f):
    """Returns (version, (src, sport), (dst, dport)) from the stream `f`."""
    head = read_exact(f, 12)
    if head == V2_SIG:
        ver_cmd, fam, length = struct.unpack("!BBH", read_exact(f, 4))
        body = read_exact(f, length)
        if ver_cmd != 0x21 or fam != 0x11 or length < 12:
            raise ValueError(f"v2 header: ver/cmd {ver_cmd:#x} family {fam:#x} length {length}")
        src, dst, sport, dport = struct.unpack("!4s4sHH", body[:12])
        return 2, (socket.inet_ntoa(src), sport), (socket.inet_ntoa(dst), dport)
    if head.startswith(b"PROXY "):
        line = head
        while not line.endswith(b"\r\n"):
            if len(line) > 107:
                raise ValueError("v1 header longer than 107 bytes")
            line += read_exact(f, 1)
        words = line[:-2].decode("ascii").split(" ")
        if len(words) != 6 or words[1] != "TCP4":
            raise ValueError(f"v1 header: {line!r}")
        return 1, (words[2], int(words[4])), (words[3], int(words[5]))
    raise ValueError(f"no PROXY header: {head!r}")


class Handler(LabHandler):
    def setup(self):
        super().setup()
        try:
            self.pp = read_proxy_header(self.rfile)
        except (ValueError, OSError) as e:
            print(f"{self.name}: {e}", file=sys.stderr, flush=True)
            self.pp = None
            self.close_connection = True

    def handle(self):
        if self.pp is not None:
            super().handle()

    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(u.query)
        if u.path == "/":
            ver, (s, sp), (d, dp) = self.pp
            a, p = self.client_address[:2]
            self.reply(200, f"{self.name} src={s}:{sp} dst={d}:{dp} peer={a}:{p} v{ver}\n".encode())
        elif u.path == "/blob":
            self.reply(200, blob(min(int(q.get("size", ["1024"])[0]), 64 << 20)))
        else:
            self.reply(404, b"not found\n")


if __name__ == "__main__":
    Handler.name = sys.argv[1]
    Server(("0.0.0.0", int(sys.argv[2]) if len(sys.argv) > 2 else 8080), Handler).serve_forever()
