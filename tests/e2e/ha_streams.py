#!/usr/bin/env python3
"""Long-lived, sequence-checked TCP streams for the sync lab (tests/e2e/ha_sync.sh).

  ha_streams.py server PORT LOG MAXSECS
      On a real server. Each connection starts with a 4-byte stream id, then
      8-byte big-endian sequence numbers 0, 1, 2, ... The server checks each
      one is the previous plus one, and after every read answers with the last
      sequence number it holds (8 bytes), so the client checks the way back too.
      One line per stream when it ends: "ID ok COUNT" (clean EOF after a
      contiguous sequence), "ID gap EXPECTED GOT", or "ID reset COUNT" (any
      error before EOF). Exits after MAXSECS.
  ha_streams.py client VIP PORT N LOG STOPFILE MAXSECS [FIRST_ID RESUMEFILE]
      N streams to VIP:PORT (ids FIRST_ID.., default 0), each sending 16 sequence numbers every 10 ms and
      checking the answers (never backwards, never past what was sent). Runs
      until STOPFILE exists or MAXSECS have passed, then closes each stream
      (FIN) and waits up to 10 s for its last answer and the server's EOF.
      LOG gets one line per answer gap over 50 ms while running
      ("gap ID FROM_EPOCH SECONDS") and one line per stream at the end:
      "end ID ok SENT" or "end ID fail REASON SENT ACKED".
      With RESUMEFILE: each stream sends for 1 s, then nothing at all (an idle
      connection, which a sync master does not send again) until RESUMEFILE
      exists, then goes on as the others.
  ha_streams.py stalls LOG EVENT_EPOCH SPAN
      From a client log: "STREAMS_WITH_A_GAP LONGEST_GAP" for the gaps that
      start in [event - 0.5 s, event + SPAN].
"""
import asyncio
import os
import struct
import sys
import time

PER_TICK = 16


def server(port, log, maxsecs):
    out = open(log, "a", buffering=1)

    async def handle(r, w):
        sid = "?"
        n = 0
        try:
            hdr = await r.readexactly(4)
            sid = str(struct.unpack("!I", hdr)[0])
            buf = b""
            while True:
                data = await r.read(65536)
                if not data:
                    if buf:
                        out.write(f"{sid} gap partial {len(buf)}\n")
                    else:
                        out.write(f"{sid} ok {n}\n")
                    break
                buf += data
                k = len(buf) // 8
                for i in range(k):
                    (s,) = struct.unpack_from("!Q", buf, i * 8)
                    if s != n:
                        out.write(f"{sid} gap {n} {s}\n")
                        w.close()
                        return
                    n += 1
                buf = buf[k * 8:]
                if k:
                    w.write(struct.pack("!Q", n - 1))
                    await w.drain()
        except Exception as e:  # noqa: BLE001 - every failure is reported
            # A connection closed before its id is a health check's probe.
            if sid != "?":
                out.write(f"{sid} reset {n} {type(e).__name__}\n")
        finally:
            w.close()

    async def main():
        srv = await asyncio.start_server(handle, "0.0.0.0", port, reuse_address=True)
        async with srv:
            await asyncio.sleep(maxsecs)

    asyncio.run(main())


def client(vip, port, n, log, stop, maxsecs, first=0, resume=None):
    out = open(log, "w", buffering=1)
    deadline = time.time() + maxsecs

    async def one(sid):
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(vip, port), 3.0)
        except Exception as e:  # noqa: BLE001
            out.write(f"end {sid} fail connect:{type(e).__name__} 0 -1\n")
            return
        sent = 0
        acked = -1
        last_ack = time.time()
        failed = None

        async def reader():
            nonlocal acked, last_ack, failed
            buf = b""
            while True:
                data = await r.read(65536)
                if not data:
                    return
                buf += data
                now = time.time()
                k = len(buf) // 8
                for i in range(k):
                    (a,) = struct.unpack_from("!Q", buf, i * 8)
                    if a < acked or a >= sent:
                        failed = f"bad-ack:{a}"
                        return
                    acked = a
                buf = buf[k * 8:]
                if k:
                    if now - last_ack > 0.05:
                        out.write(f"gap {sid} {last_ack:.4f} {now - last_ack:.4f}\n")
                    last_ack = now

        w.write(struct.pack("!I", sid))
        rt = asyncio.ensure_future(reader())
        try:
            nxt = time.time()
            idle_from = nxt + 1.0 if resume else None
            while time.time() < deadline and not os.path.exists(stop) and not rt.done():
                if idle_from and time.time() >= idle_from:
                    while not os.path.exists(resume) and time.time() < deadline and not rt.done():
                        await asyncio.sleep(0.05)
                    idle_from = None
                    last_ack = nxt = time.time()
                w.write(b"".join(struct.pack("!Q", sent + i) for i in range(PER_TICK)))
                sent += PER_TICK
                # Bounded: a stalled stream stops adding once 1 MB waits.
                if w.transport.get_write_buffer_size() > (1 << 20):
                    await asyncio.wait_for(w.drain(), 20)
                nxt += 0.010
                await asyncio.sleep(max(0.0, nxt - time.time()))
            if w.can_write_eof():
                w.write_eof()
            await asyncio.wait_for(rt, 10)
            if rt.exception():
                raise rt.exception()
        except Exception as e:  # noqa: BLE001
            failed = failed or f"{type(e).__name__}"
        finally:
            rt.cancel()
            w.close()
        if failed is None and acked != sent - 1:
            failed = "short"
        if failed is None:
            out.write(f"end {sid} ok {sent}\n")
        else:
            out.write(f"end {sid} fail {failed} {sent} {acked}\n")

    async def main():
        await asyncio.gather(*(one(first + i) for i in range(n)))

    asyncio.run(main())


def stalls(log, ev, span):
    worst = 0.0
    ids = set()
    with open(log) as f:
        for line in f:
            p = line.split()
            if p[0] != "gap":
                continue
            start, dur = float(p[2]), float(p[3])
            if ev - 0.5 <= start <= ev + span:
                ids.add(p[1])
                worst = max(worst, dur)
    print(f"{len(ids)} {worst:.3f}")


def main():
    a = sys.argv[1:]
    if a[:1] == ["server"] and len(a) == 4:
        server(int(a[1]), a[2], float(a[3]))
    elif a[:1] == ["client"] and len(a) == 7:
        client(a[1], int(a[2]), int(a[3]), a[4], a[5], float(a[6]))
    elif a[:1] == ["client"] and len(a) == 9:
        client(a[1], int(a[2]), int(a[3]), a[4], a[5], float(a[6]), int(a[7]), a[8])
    elif a[:1] == ["stalls"] and len(a) == 4:
        stalls(a[1], float(a[2]), float(a[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
