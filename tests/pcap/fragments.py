#!/usr/bin/env python3
"""IPv4 fragments through rvs-dp, end to end, on net_pcap ports (run by
fragments.sh). af_packet labs cannot test this: DPDK's af_packet PMD sets
PACKET_FANOUT_FLAG_DEFRAG, so the kernel reassembles before rvs-dp sees them.

  fragments.py make IN.pcap        client datagrams to the VIP, fragmented
  fragments.py check OUT.pcap      what rvs-dp sent toward the real servers

The input: DATAGRAMS UDP datagrams from CIP to VIP:53, each of PAYLOAD bytes,
cut into 3 fragments of at most FRAG bytes of data (first fragment first, as
rvs-dp needs: a later fragment before its first is dropped), on distinct
client ports and IP idents. The service is rr over three NAT real servers,
so consecutive datagrams go to different servers. Every fragment must come
out rewritten to its datagram's real server (destination address; the
first fragment's UDP port and checksum), TTL 63, a valid IP header checksum,
and the datagram must reassemble to the original payload with a valid UDP
checksum.
"""

import sys
from collections import defaultdict

from scapy.all import IP, UDP, Ether, fragment, rdpcap, wrpcap, raw

CLIENT_MAC = "02:00:00:00:00:0c"
DIR_MAC = "02:00:00:00:d0:00"      # rvs-dp's client port (fragments.sh)
DIR_MAC_SERVERS = "02:00:00:00:d0:01"
CIP, VIP, VPORT = "10.1.0.10", "10.1.0.100", 53
RS = {f"10.2.0.{11 + i}": (5300 + i, f"02:00:00:00:02:{11 + i:02x}") for i in range(3)}
DATAGRAMS, PAYLOAD, FRAG = 6, 2900, 1200


def payload(i):
    return bytes((i * 31 + j) & 0xFF for j in range(PAYLOAD))


def make(path):
    frames = []
    for i in range(DATAGRAMS):
        pkt = IP(src=CIP, dst=VIP, id=0x4000 + i, ttl=64) / UDP(sport=40000 + i, dport=VPORT) / payload(i)
        frags = fragment(pkt, fragsize=FRAG)
        assert len(frags) == 3, len(frags)
        frames += [Ether(src=CLIENT_MAC, dst=DIR_MAC) / f for f in frags]
    wrpcap(path, frames)
    print(f"fragments: {len(frames)} fragments of {DATAGRAMS} datagrams in {path}")


def ip_csum_ok(ip):
    b = raw(ip)[: ip.ihl * 4]
    s = sum(int.from_bytes(b[k : k + 2], "big") for k in range(0, len(b), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


def check(path):
    errors = []
    by_id = defaultdict(list)
    for f in rdpcap(path):
        if not f.haslayer(IP):
            continue  # gratuitous ARP and ARP requests from our port
        ip = f[IP]
        by_id[ip.id].append(f)
    for i in range(DATAGRAMS):
        ident = 0x4000 + i
        frs = by_id.pop(ident, [])
        if len(frs) != 3:
            errors.append(f"datagram {i}: {len(frs)} fragments out, want 3")
            continue
        dsts = {f[IP].dst for f in frs}
        if len(dsts) != 1 or next(iter(dsts)) not in RS:
            errors.append(f"datagram {i}: fragments to {sorted(dsts)}: want one real server")
            continue
        rip = next(iter(dsts))
        rport, rmac = RS[rip]
        for f in frs:
            ip = f[IP]
            if f[Ether].dst != rmac or f[Ether].src != DIR_MAC_SERVERS:
                errors.append(f"datagram {i}: MACs {f[Ether].src} -> {f[Ether].dst}")
            if ip.src != CIP or ip.ttl != 63 or not ip_csum_ok(ip):
                errors.append(f"datagram {i}: src {ip.src} ttl {ip.ttl} header checksum ok {ip_csum_ok(ip)}")
        # Reassemble by offset and check the whole datagram.
        data = b""
        for f in sorted(frs, key=lambda f: f[IP].frag):
            ip = f[IP]
            if ip.frag * 8 != len(data):
                errors.append(f"datagram {i}: gap at {len(data)}, fragment at {ip.frag * 8}")
            data += raw(ip.payload)[: ip.len - ip.ihl * 4]
        whole = IP(raw(IP(src=CIP, dst=rip, proto=17, id=ident) / data))
        u = whole[UDP] if whole.haslayer(UDP) else None
        if u is None:
            errors.append(f"datagram {i}: no UDP header after reassembly")
            continue
        got = u.chksum
        want = IP(raw(IP(src=CIP, dst=rip) / UDP(sport=u.sport, dport=u.dport) / bytes(u.payload)))[UDP].chksum
        if (u.sport, u.dport) != (40000 + i, rport):
            errors.append(f"datagram {i}: ports {u.sport} -> {u.dport}, want {40000 + i} -> {rport}")
        if got != want:
            errors.append(f"datagram {i}: UDP checksum {got:#06x}, want {want:#06x}")
        if bytes(u.payload) != payload(i):
            errors.append(f"datagram {i}: payload differs after reassembly")
        print(f"fragments: datagram {i} (ident {ident:#x}): 3 fragments -> {rip}:{rport}")
    for ident, frs in by_id.items():
        errors.append(f"unexpected IPv4 output: ident {ident:#x}, {len(frs)} frame(s)")
    servers = {f[IP].dst for f in rdpcap(path) if f.haslayer(IP)}
    if len(servers) < 3:
        errors.append(f"rr should have used all 3 real servers, used {sorted(servers)}")
    for e in errors:
        print("fragments: FAIL:", e)
    if errors:
        sys.exit(1)
    print(f"fragments: all {DATAGRAMS} datagrams intact, each on one real server")


if __name__ == "__main__":
    {"make": make, "check": check}[sys.argv[1]](sys.argv[2])
