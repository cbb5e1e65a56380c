#!/usr/bin/env python3
"""Checks that rvs-dp's and testpmd's counters agree (phase 2 of run.sh).

usage: check_counts.py DP_STDOUT TESTPMD_LOG NVIP

DP_STDOUT holds rvs-dp's exit report (`worker N: ...`, `port i: ...`);
TESTPMD_LOG ends with `show port stats all` taken after rvs-dp exited, with
the stats cleared before rvs-dp started. Port 0 is the client side, port 1
the real-server side, on both.
"""

import re
import sys

MIN_PACKETS = 1000
# rvs-dp announces its addresses with gratuitous ARP at start.
MAX_ARP = 8


def parse_dp(path):
    workers, ports = [], {}
    with open(path) as f:
        for line in f:
            if m := re.match(r"worker (\d+): (.*)", line):
                rest = m.group(2)
                w = {k: int(v) for k, v in re.findall(r"\b([a-z_]+) (\d+)", rest)}
                w["redirected_out"] = int(re.search(r"redirected out (\d+)", rest).group(1))
                w["drops"] = {k: int(v) for k, v in re.findall(r"drop\.([a-z_0-9]+) (\d+)", rest)}
                workers.append(w)
            elif m := re.match(r"port (\d+): (.*)", line):
                ports[int(m.group(1))] = {k: int(v) for k, v in re.findall(r"([a-z_]+) (\d+)", m.group(2))}
    return workers, ports


def parse_testpmd(path):
    with open(path, errors="replace") as f:
        text = f.read()
    stats = {}
    # The last block per port wins (show port stats all runs once, at the end).
    for m in re.finditer(
        r"NIC statistics for port (\d+)\s+#+\s+RX-packets:\s+(\d+).*?TX-packets:\s+(\d+)", text, re.S
    ):
        stats[int(m.group(1))] = {"rx": int(m.group(2)), "tx": int(m.group(3))}
    return stats


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    workers, dp_ports = parse_dp(sys.argv[1])
    tp = parse_testpmd(sys.argv[2])
    nvip = int(sys.argv[3])
    errors = []
    if not workers or 0 not in dp_ports or 1 not in dp_ports:
        raise SystemExit(f"check_counts: no rvs-dp exit report in {sys.argv[1]}")
    if 0 not in tp or 1 not in tp:
        raise SystemExit(f"check_counts: no 'show port stats all' output in {sys.argv[2]}")

    tot = lambda k: sum(w.get(k, 0) for w in workers)  # noqa: E731
    drops = {}
    for w in workers:
        for k, v in w["drops"].items():
            drops[k] = drops.get(k, 0) + v
    nat_in, rx, tx, conns = tot("nat_in"), tot("rx"), tot("tx"), tot("conns")
    p0, p1 = dp_ports[0], dp_ports[1]
    tx_full = drops.get("tx_full", 0)
    print(
        f"check_counts: testpmd port0 tx {tp[0]['tx']} port1 rx {tp[1]['rx']}; "
        f"rvs-dp port0 in {p0['ipackets']} nat_in {nat_in} conns {conns} port1 out {p1['opackets']} "
        f"drops {drops or 'none'}"
    )

    def check(ok, msg):
        if not ok:
            errors.append(msg)

    check(nat_in >= MIN_PACKETS, f"only {nat_in} packets NATed, at least {MIN_PACKETS} expected")
    # Everything testpmd generated toward port 0 is for a VIP.
    check(p0["ipackets"] == nat_in, f"rvs-dp port 0 received {p0['ipackets']} but NATed {nat_in}")
    # testpmd stopped generating before rvs-dp stopped polling, so whatever
    # it put on the client-side ring arrived; and the other way round.
    check(p0["ipackets"] == tp[0]["tx"], f"rvs-dp port 0 received {p0['ipackets']}, testpmd sent {tp[0]['tx']}")
    check(tp[0]["rx"] == p0["opackets"], f"testpmd port 0 received {tp[0]['rx']}, rvs-dp port 0 sent {p0['opackets']}")
    check(conns == nvip, f"{conns} connections, expected {nvip} (one per flowgen flow)")
    check(rx == p0["ipackets"] + p1["ipackets"], f"workers received {rx}, ports {p0['ipackets']} + {p1['ipackets']}")
    check(tx == p0["opackets"] + p1["opackets"], f"workers sent {tx}, ports {p0['opackets']} + {p1['opackets']}")
    # NATed packets leave on port 1 unless the TX queue was full.
    extra = p1["opackets"] - (nat_in - tx_full)
    check(0 <= extra <= MAX_ARP, f"port 1 sent {p1['opackets']}, NATed {nat_in} minus tx_full {tx_full}: {extra} unexplained")
    # testpmd drained port 1 before rvs-dp left, so nothing may be missing.
    check(tp[1]["rx"] == p1["opackets"], f"testpmd port 1 received {tp[1]['rx']}, rvs-dp port 1 sent {p1['opackets']}")
    # flowgen also sends on port 1, to a MAC that is not rvs-dp's there.
    check(drops.get("not_our_mac", 0) == p1["ipackets"],
          f"not_our_mac drops {drops.get('not_our_mac', 0)} != port 1 input {p1['ipackets']}")
    unexplained = {k: v for k, v in drops.items() if k not in ("not_our_mac", "tx_full")}
    check(not unexplained, f"unexplained drops: {unexplained}")
    for e in errors:
        print(f"check_counts: {e}", file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
