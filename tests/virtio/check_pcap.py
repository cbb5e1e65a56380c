#!/usr/bin/env python3
"""Checks what rvs-dp sent toward the real servers (phase 1 of run.sh).

usage: check_pcap.py OUT.pcap RVS.toml SERVERS_PORT_MAC

The input was testpmd flowgen traffic (DPDK 22.11): UDP from CIP 10.254.0.0
port 1000, TTL 64, no UDP checksum, to 10.253.0.<flow>:1001. Each VIP has a
single real server in RVS.toml, so every frame's rewrite is known: Ethernet
to that server's static neighbour MAC from our port-1 MAC; IP destination the
RIP, source still the CIP (NAT keeps it), TTL 63, a valid header checksum;
UDP destination port the real server's port, source port kept, and a
checksum that is either still absent (0) or valid. Length and payload stay.
Anything else in the capture, other than ARP from our port, is an error.
"""

import struct
import sys
import tomllib
from collections import Counter
from ipaddress import IPv4Address

CIP = IPv4Address("10.254.0.0")
CPORT = 1000
IN_TTL = 64
IN_IP_LEN = 46  # flowgen's 64-byte frames minus Ethernet header and FCS
MIN_PACKETS = 1000


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def mac(s: str) -> bytes:
    return bytes(int(x, 16) for x in s.split(":"))


def frames(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise SystemExit(f"{path}: not a pcap file ({len(data)} bytes)")
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        endian = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        endian = ">"
    else:
        raise SystemExit(f"{path}: not a pcap file (magic {magic:#x})")
    off = 24
    while off + 16 <= len(data):
        incl, orig = struct.unpack(endian + "II", data[off + 8 : off + 16])
        off += 16
        yield data[off : off + incl], orig
        off += incl


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    path, cfg_path, our_mac = sys.argv[1], sys.argv[2], mac(sys.argv[3])
    with open(cfg_path, "rb") as f:
        cfg = tomllib.load(f)
    neigh = {IPv4Address(n["ip"]): mac(n["mac"]) for n in cfg["neighbor"]}
    # RIP -> (RS port, VIP); one real server per virtual service here.
    rs = {}
    for vs in cfg["virtual_server"]:
        (r,) = vs["real_server"]
        rs[IPv4Address(r["address"])] = (r["port"], IPv4Address(vs["address"]))

    errors = []
    per_rip = {rip: 0 for rip in rs}
    arp = 0
    total = 0

    def bad(p, msg):
        if len(errors) < 20:
            errors.append(f"{msg}\n    in {seen[p]} frame(s), first #{first[p]}: {p[:64].hex()}")

    # flowgen repeats a few frames, so each distinct frame is checked once
    # and counted as often as it occurs.
    seen = Counter()
    first = {}
    for i, (p, orig) in enumerate(frames(path)):
        if len(p) != orig:
            errors.append(f"frame {i}: captured {len(p)} of {orig} bytes")
            continue
        seen[p] += 1
        first.setdefault(p, i)

    for p, count in seen.items():
        total += count
        i = p
        if len(p) < 14:
            bad(i, "shorter than an Ethernet header")
            continue
        dst, src, etype = p[0:6], p[6:12], struct.unpack("!H", p[12:14])[0]
        if src != our_mac:
            bad(i, f"source MAC {src.hex(':')} is not our port's {our_mac.hex(':')}")
        if etype == 0x0806:
            arp += count
            continue
        if etype != 0x0800:
            bad(i, f"unexpected ethertype {etype:#06x}")
            continue
        ip = p[14:]
        if len(ip) < 28 or ip[0] != 0x45:
            bad(i, f"not a plain IPv4 header: {ip[:20].hex()}")
            continue
        tot_len = struct.unpack("!H", ip[2:4])[0]
        if tot_len != IN_IP_LEN or len(ip) < tot_len:
            bad(i, f"IP total length {tot_len} (frame holds {len(ip)}), sent {IN_IP_LEN}")
            continue
        if csum(ip[:20]) != 0xFFFF:
            bad(i, f"bad IP header checksum {ip[10:12].hex()}")
        if ip[8] != IN_TTL - 1:
            bad(i, f"TTL {ip[8]}, expected {IN_TTL - 1}")
        if ip[9] != 17:
            bad(i, f"IP protocol {ip[9]}, expected UDP")
            continue
        sip, dip = IPv4Address(ip[12:16]), IPv4Address(ip[16:20])
        if sip != CIP:
            bad(i, f"source IP {sip}, expected the CIP {CIP} (NAT keeps it)")
        if dip not in rs:
            bad(i, f"destination IP {dip} is not a real server ({', '.join(map(str, rs))})")
            continue
        rport, vip = rs[dip]
        if dst != neigh[dip]:
            bad(i, f"destination MAC {dst.hex(':')}, expected {dip}'s neighbour {neigh[dip].hex(':')}")
        udp = ip[20:tot_len]
        sport, dport, ulen, ucsum = struct.unpack("!HHHH", udp[:8])
        if sport != CPORT:
            bad(i, f"UDP source port {sport}, expected {CPORT}")
        if dport != rport:
            bad(i, f"UDP destination port {dport}, expected {rport} (RS of VIP {vip})")
        if ulen != tot_len - 20:
            bad(i, f"UDP length {ulen}, IP payload {tot_len - 20}")
        if ucsum != 0:
            # flowgen sends no checksum; a NAT must leave a zero one alone
            # (RFC 768) or, if it fills one in, get it right.
            pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, ulen)
            if csum(pseudo + udp[:ulen]) != 0xFFFF:
                bad(i, f"bad UDP checksum {ucsum:#06x} (the input had none)")
        if any(udp[8:ulen]):
            bad(i, "UDP payload changed (flowgen sends zeros)")
        per_rip[dip] += count

    ipv4 = sum(per_rip.values())
    dist = ", ".join(f"{r}:{rs[r][0]} {n}" for r, n in per_rip.items())
    print(f"check_pcap: {total} frames: {ipv4} NATed UDP ({dist}), {arp} ARP")
    if ipv4 < MIN_PACKETS:
        errors.append(f"only {ipv4} NATed packets captured, at least {MIN_PACKETS} expected")
    missing = [str(r) for r, n in per_rip.items() if n == 0]
    if missing:
        errors.append(f"no packets reached real server(s) {', '.join(missing)}")
    for e in errors:
        print(f"check_pcap: {e}", file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
