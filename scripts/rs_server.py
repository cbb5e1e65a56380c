#!/usr/bin/env python3
"""A lab real server: HTTP on a TCP port and a UDP echo, both naming themselves.

HTTP:  GET /            -> "NAME\n"
       GET /peer        -> "NAME PEERADDR:PEERPORT\n" (who the connection came from)
       GET /blob?size=N -> N deterministic bytes (header X-Server: NAME)
       GET /slow?secs=S -> streams one line per 0.2 s for S seconds
       GET /health      -> 200 "ok" unless the file FAILFLAG exists (then 503)
       POST /sink       -> sha256 of the body
UDP:   any datagram     -> "NAME " + datagram

    rs_server.py NAME [HTTP_PORT [UDP_PORT [FAILFLAG]]]

Imported (tests/e2e/pp_server.py), it gives its blob, its base handler (the
reply, POST /sink) and its threading server; nothing runs.
"""
import hashlib
import http.server
import os
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value; older Pythons lack the name


def blob(size):
    # Deterministic, not compressible, cheap: a repeated 64 KiB sha-chain block.
    block = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(2048))
    out = bytearray()
    while len(out) < size:
        out += block
    return bytes(out[:size])


class LabHandler(http.server.BaseHTTPRequestHandler):
    """What every lab server answers alike; `name` names the server."""

    protocol_version = "HTTP/1.1"
    name = "rs"

    def log_message(self, *a):
        pass

    def reply(self, code, body, extra=None):
        self.send_response(code)
        self.send_header("X-Server", self.name)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        h = hashlib.sha256()
        while n > 0:
            chunk = self.rfile.read(min(n, 1 << 16))
            if not chunk:
                break
            h.update(chunk)
            n -= len(chunk)
        self.reply(200, (h.hexdigest() + "\n").encode())


class Handler(LabHandler):
    failflag = None

    def do_GET(self):
        name = self.name
        u = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(u.query)
        if u.path == "/":
            self.reply(200, f"{name}\n".encode())
        elif u.path == "/peer":
            a, p = self.client_address[:2]
            self.reply(200, f"{name} {a}:{p}\n".encode())
        elif u.path == "/health":
            if os.path.exists(self.failflag):
                self.reply(503, b"failing\n")
            else:
                self.reply(200, b"ok\n")
        elif u.path == "/blob":
            size = min(int(q.get("size", ["1024"])[0]), 64 << 20)
            self.reply(200, blob(size))
        elif u.path == "/slow":
            secs = min(float(q.get("secs", ["3"])[0]), 60.0)
            lines = max(1, int(secs / 0.2))
            self.send_response(200)
            self.send_header("X-Server", name)
            self.send_header("Content-Length", str(lines * (len(name) + 1)))
            self.end_headers()
            for _ in range(lines):
                self.wfile.write(f"{name}\n".encode())
                self.wfile.flush()
                time.sleep(0.2)
        else:
            self.reply(404, b"not found\n")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def udp_echo(name, port):
    # Answer from the address the datagram was sent to (the VIP, for DR and
    # TUN), as a real UDP service on an LVS real server must: a socket bound to
    # 0.0.0.0 would otherwise answer from the interface address.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    s.bind(("0.0.0.0", port))
    while True:
        data, anc, _flags, peer = s.recvmsg(65535, socket.CMSG_SPACE(12))
        reply = name.encode() + b" " + data
        pktinfo = [c for c in anc if c[0] == socket.IPPROTO_IP and c[1] == IP_PKTINFO]
        if pktinfo:
            # struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }:
            # send from addr (the destination it arrived for), any interface.
            info = pktinfo[0][2]
            out = struct.pack("=I4s4s", 0, info[8:12], b"\0\0\0\0")
            s.sendmsg([reply], [(socket.IPPROTO_IP, IP_PKTINFO, out)], 0, peer)
        else:
            s.sendto(reply, peer)


def main():
    name = sys.argv[1]
    http_port = int(sys.argv[2]) if len(sys.argv) > 2 else 80
    udp_port = int(sys.argv[3]) if len(sys.argv) > 3 else 53
    Handler.name = name
    Handler.failflag = sys.argv[4] if len(sys.argv) > 4 else f"/tmp/rvs-lab-{name}.fail"
    threading.Thread(target=udp_echo, args=(name, udp_port), daemon=True).start()
    Server(("0.0.0.0", http_port), Handler).serve_forever()


if __name__ == "__main__":
    main()
