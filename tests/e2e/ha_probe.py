#!/usr/bin/env python3
"""Client-side probes for the failover lab (tests/e2e/ha_failover.sh).

  ha_probe.py conns VIP PORT LOG STOPFILE MAXSECS
      A new TCP connection to VIP:PORT every 10 ms, each with a 1 s budget for
      connect + HTTP/1.0 GET + reply. One line per attempt, when it ends:
      "START_EPOCH ok|fail SERVER_OR_REASON". Runs until STOPFILE exists or
      MAXSECS have passed.
  ha_probe.py arp IFACE SRCIP VIP LOG STOPFILE MAXSECS
      An ARP request for VIP every 20 ms from IFACE (as SRCIP); one line per request:
      "EPOCH MAC[,MAC...]" with every distinct MAC that answered it (or "-").
      Two MACs on one line means both directors answered it.
  ha_probe.py outage LOG EVENT_EPOCH SPAN
      From a conns log: "OUTAGE FROM TO FAILED AFTER": the longest gap
      between the starts of two consecutive successful attempts in
      [event - 0.2 s, event + SPAN] (the last success through the old owner
      and the first through the new one), its bounds, the attempts that
      failed in it, and those that failed after it within the span.
  ha_probe.py stray LOG WINDOWS
      From a conns log: the failed attempts that started outside every
      window "FROM TO" (epochs, one per line of the file WINDOWS).
  ha_probe.py owners LOG [FROM_EPOCH [TO_EPOCH]]
      From an arp log: the sequence of answering MACs with the time each
      took over, and the number of requests answered by more than one MAC.
"""
import asyncio
import os
import socket
import struct
import sys
import time


def conns(vip, port, log, stop, maxsecs):
    out = open(log, "w", buffering=1)
    deadline = time.time() + maxsecs

    async def one(start):
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(vip, port), 1.0)
        except Exception as e:  # noqa: BLE001 - every failure is a data point
            out.write(f"{start:.4f} fail connect:{type(e).__name__}\n")
            return
        try:
            w.write(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
            data = await asyncio.wait_for(r.read(), max(0.05, 1.0 - (time.time() - start)))
            body = data.split(b"\r\n\r\n", 1)[-1].strip().decode(errors="replace")
            if data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n", 1)[0]:
                out.write(f"{start:.4f} ok {body or '?'}\n")
            else:
                out.write(f"{start:.4f} fail reply\n")
        except Exception as e:  # noqa: BLE001
            out.write(f"{start:.4f} fail read:{type(e).__name__}\n")
        finally:
            w.close()

    async def main():
        tasks = set()
        nxt = time.time()
        while time.time() < deadline and not os.path.exists(stop):
            t = asyncio.ensure_future(one(time.time()))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            nxt += 0.010
            await asyncio.sleep(max(0.0, nxt - time.time()))
        if tasks:
            await asyncio.wait(tasks, timeout=2)

    asyncio.run(main())


def arp(iface, srcip, vip, log, stop, maxsecs):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    s.bind((iface, 0))
    s.settimeout(0.002)
    with open(f"/sys/class/net/{iface}/address") as f:
        mymac = bytes.fromhex(f.read().strip().replace(":", ""))
    myip = socket.inet_aton(srcip)
    target = socket.inet_aton(vip)
    req = (b"\xff" * 6 + mymac + b"\x08\x06"
           + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
           + mymac + myip + b"\x00" * 6 + target)
    out = open(log, "w", buffering=1)
    deadline = time.time() + maxsecs
    while time.time() < deadline and not os.path.exists(stop):
        t = time.time()
        s.send(req)
        macs = []
        while time.time() < t + 0.020:
            try:
                f = s.recv(128)
            except socket.timeout:
                continue
            if len(f) < 42 or f[12:14] != b"\x08\x06":
                continue
            op = struct.unpack("!H", f[20:22])[0]
            if op == 2 and f[28:32] == target:
                mac = f[22:28].hex(":")
                if mac not in macs:
                    macs.append(mac)
        out.write(f"{t:.4f} {','.join(macs) or '-'}\n")


def read(log):
    with open(log) as f:
        return [ln.split() for ln in f if ln.strip()]


def outage(log, event, span):
    rows = sorted((float(r[0]), r[1] == "ok") for r in read(log))
    oks = [t for t, ok in rows if ok and event - 0.2 <= t <= event + span]
    if len(oks) < 2 or oks[-1] < event:
        print("none 0 0 0 0")
        return
    a, b = max(zip(oks, oks[1:]), key=lambda p: p[1] - p[0])
    failed = sum(1 for t, ok in rows if not ok and a < t < b)
    after = sum(1 for t, ok in rows if not ok and b < t <= event + span)
    print(f"{b - a:.3f} {a:.4f} {b:.4f} {failed} {after}")


def stray(log, windows):
    with open(windows) as f:
        wins = [tuple(map(float, ln.split()[:2])) for ln in f if ln.strip()]
    bad = [r for r in read(log) if r[1] != "ok"
           and not any(a <= float(r[0]) <= b for a, b in wins)]
    print(len(bad))
    for r in bad[:10]:
        print(" ".join(r), file=sys.stderr)


def owners(log, lo=0.0, hi=float("inf")):
    """Prints "double_answers N longest_ms M": the requests both directors
    answered, and the longest run of consecutive such requests (first to
    last). Then the owners in order, one "EPOCH MAC" per change, from the
    requests one director alone answered."""
    seq = []
    both = 0
    run_start = None
    longest = 0.0
    last_both = None
    for r in read(log):
        t = float(r[0])
        if not lo <= t <= hi or r[1] == "-":
            continue
        macs = r[1].split(",")
        if len(macs) > 1:
            both += 1
            run_start = t if run_start is None else run_start
            last_both = t
            longest = max(longest, (last_both - run_start) * 1000 + 20)
            continue
        run_start = None
        if not seq or seq[-1][1] != r[1]:
            seq.append((t, r[1]))
    print(f"double_answers {both} longest_ms {longest:.0f}")
    for t, m in seq:
        print(f"{t:.3f} {m}")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "conns":
        conns(args[0], int(args[1]), args[2], args[3], float(args[4]))
    elif cmd == "arp":
        arp(args[0], args[1], args[2], args[3], args[4], float(args[5]))
    elif cmd == "outage":
        outage(args[0], float(args[1]), float(args[2]))
    elif cmd == "stray":
        stray(args[0], args[1])
    elif cmd == "owners":
        owners(args[0], *(float(a) for a in args[1:]))
    else:
        sys.exit(f"unknown command {cmd}")
