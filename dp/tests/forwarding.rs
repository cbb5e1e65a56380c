//! The whole per-packet path, pure: frames in, verdicts and frames out,
//! checked with etherparse as an independent parser.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use rvs_dp::core::{owner_of, CoreOptions, Forwarder, PortInfo, Shared, Verdict};
use rvs_dp::packet::{PacketBuf, VecBuf};
use rvs_dp::service::{ForwardMethod, Persistence, Proto, ServiceKey};
use rvs_dp::stats::DropReason;
use rvs_dp::wire::ethernet::MacAddr;
use rvs_proto::command::Command;

#[path = "common/lab.rs"]
mod lab;
use lab::{port, rs_ip, LabDirector, CIP, CLIENT_MAC, DIP0, DIP1, P0_MAC, P1_MAC, VIP};

fn rs_mac(i: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 2, i])
}

struct Lab {
    dir: LabDirector,
    fwd: Forwarder,
}

/// The director every test starts from: two /24 ports, the client and the
/// three real servers as static neighbours.
fn director(workers: u16, opts: CoreOptions, mtu: u16) -> LabDirector {
    let mut neighbours = vec![(CIP, MacAddr(CLIENT_MAC))];
    neighbours.extend((1..=3).map(|i| (rs_ip(i), rs_mac(i))));
    LabDirector::new(
        vec![port(P0_MAC, DIP0, mtu), port(P1_MAC, DIP1, mtu)],
        &[],
        &neighbours,
        workers,
        opts,
    )
}

/// A VIP service on `port` with real servers 1..=weights.len() of `method`.
fn add_service(
    dir: &mut LabDirector,
    proto: Proto,
    port: u16,
    sched_name: &str,
    method: ForwardMethod,
    weights: &[u32],
    persistence: Option<Persistence>,
) -> ServiceKey {
    let p = persistence.map(|p| (p.timeout_s, p.netmask));
    let key = dir.service(proto, VIP, port, sched_name, p);
    // NAT maps the port to 8080; DR and TUN keep the virtual port (the IPVS
    // model refuses anything else, as the kernel does).
    let rport = if method == ForwardMethod::Nat && port != 0 {
        8080
    } else {
        port
    };
    for (i, &w) in weights.iter().enumerate() {
        dir.real_server(key, rs_ip(i as u8 + 1), rport, w, method);
    }
    key
}

impl Lab {
    fn new(method: ForwardMethod, sched_name: &str, weights: &[u32]) -> Lab {
        Self::with(
            method,
            sched_name,
            weights,
            CoreOptions::default(),
            1500,
            1024,
            None,
        )
    }

    fn with(
        method: ForwardMethod,
        sched_name: &str,
        weights: &[u32],
        opts: CoreOptions,
        mtu: u16,
        capacity: u32,
        persistence: Option<Persistence>,
    ) -> Lab {
        let mut dir = director(1, opts, mtu);
        add_service(&mut dir, Proto::Tcp, 80, sched_name, method, weights, persistence);
        add_service(&mut dir, Proto::Udp, 53, sched_name, method, weights, None);
        let fwd = dir.forwarder(0, capacity, 100);
        Lab { dir, fwd }
    }

    fn send(&mut self, port: u16, frame: &[u8]) -> (Verdict, Vec<u8>) {
        let mut b = VecBuf::new(frame);
        let v = self.fwd.process(port, &mut b, false);
        (v, b.data().to_vec())
    }
}

fn tcp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: &str,
    payload: &[u8],
    dst_mac: MacAddr,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, dst_mac.0).ipv4(src.octets(), dst.octets(), 64);
    let mut t = b.tcp(sport, dport, 1000, 64240);
    for f in flags.chars() {
        t = match f {
            'S' => t.syn(),
            'A' => t.ack(1),
            'F' => t.fin(),
            'R' => t.rst(),
            _ => t,
        };
    }
    let mut out = Vec::new();
    t.write(&mut out, payload).unwrap();
    out
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8], dst_mac: MacAddr) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, dst_mac.0)
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(sport, dport);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

/// Parses with etherparse, checks all checksums, returns (src, dst, sport, dport, dst mac).
fn check(frame: &[u8]) -> (Ipv4Addr, Ipv4Addr, u16, u16, [u8; 6]) {
    let p = SlicedPacket::from_ethernet(frame).expect("valid frame");
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else {
        panic!()
    };
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not ipv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IP checksum");
    let (sp, dp) = match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            assert_eq!(
                t.checksum(),
                t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap(),
                "TCP checksum"
            );
            (t.source_port(), t.destination_port())
        }
        Some(TransportSlice::Udp(u)) => {
            assert_eq!(
                u.checksum(),
                u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap(),
                "UDP checksum"
            );
            (u.source_port(), u.destination_port())
        }
        _ => (0, 0),
    };
    (
        Ipv4Addr::from(h.source),
        Ipv4Addr::from(h.destination),
        sp,
        dp,
        eth.destination(),
    )
}

#[test]
fn arp_for_vip_and_port_address_answered() {
    let mut lab = Lab::new(ForwardMethod::Nat, "rr", &[1]);
    for target in [VIP, DIP0] {
        let req = {
            let mut f = vec![0u8; 42];
            f[..6].copy_from_slice(&[0xff; 6]);
            f[6..12].copy_from_slice(&CLIENT_MAC);
            f[12..14].copy_from_slice(&[8, 6]);
            f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
            f[22..28].copy_from_slice(&CLIENT_MAC);
            f[28..32].copy_from_slice(&CIP.octets());
            f[38..42].copy_from_slice(&target.octets());
            f
        };
        let (v, out) = lab.send(0, &req);
        assert_eq!(v, Verdict::Forward { port: 0 });
        // etherparse 0.16 has no ARP parser: check the fields by offset.
        assert_eq!(&out[12..14], &[8, 6]);
        assert_eq!(&out[20..22], &[0, 2], "reply");
        assert_eq!(&out[22..28], &P0_MAC.0, "sender MAC");
        assert_eq!(&out[28..32], &target.octets(), "sender IP");
        assert_eq!(&out[32..38], &CLIENT_MAC, "target MAC");
        assert_eq!(&out[38..42], &CIP.octets(), "target IP");
        assert_eq!(&out[..6], &CLIENT_MAC);
    }
    // Not ours: the VIP is not on port 1's subnet, nor is a stranger's address.
    let mut req = vec![0u8; 42];
    req[..6].copy_from_slice(&[0xff; 6]);
    req[12..14].copy_from_slice(&[8, 6]);
    req[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    req[38..42].copy_from_slice(&Ipv4Addr::new(10, 1, 0, 77).octets());
    assert_eq!(lab.send(0, &req).0, Verdict::Drop(DropReason::ArpIgnored));
}

#[test]
fn nat_full_tcp_exchange_and_counters() {
    let mut lab = Lab::new(ForwardMethod::Nat, "rr", &[1]);
    let (v, out) = lab.send(0, &tcp(CIP, VIP, 40000, 80, "S", b"", P0_MAC));
    assert_eq!(v, Verdict::Forward { port: 1 });
    let (s, d, sp, dp, mac) = check(&out);
    assert_eq!((s, d, sp, dp, mac), (CIP, rs_ip(1), 40000, 8080, rs_mac(1).0));
    assert_eq!(&out[6..12], &P1_MAC.0);

    let (v, out) = lab.send(1, &tcp(rs_ip(1), CIP, 8080, 40000, "SA", b"", P1_MAC));
    assert_eq!(v, Verdict::Forward { port: 0 });
    let (s, d, sp, dp, mac) = check(&out);
    assert_eq!((s, d, sp, dp, mac), (VIP, CIP, 80, 40000, CLIENT_MAC));

    let (v, _) = lab.send(0, &tcp(CIP, VIP, 40000, 80, "A", b"hello", P0_MAC));
    assert_eq!(v, Verdict::Forward { port: 1 });
    let snap = lab.fwd.services().clone();
    let d = &snap.get(0).unwrap().dests[0];
    assert_eq!(d.active(), 1, "ESTABLISHED counts as active");
    assert_eq!(d.inactive(), 0);
    let t = d.stats.traffic.total();
    assert_eq!((t.conns, t.inpkts, t.outpkts), (1, 2, 1));
    assert_eq!(lab.fwd.counters.nat_in, 2);
    assert_eq!(lab.fwd.counters.nat_out, 1);
    assert_eq!(lab.fwd.drops.total(), 0);

    // A reply that matches nothing is dropped.
    let (v, _) = lab.send(1, &tcp(rs_ip(2), CIP, 8080, 40000, "A", b"", P1_MAC));
    assert_eq!(v, Verdict::Drop(DropReason::NotForUs));
}

#[test]
fn rr_and_wrr_spread_exactly() {
    for (name, weights, want) in [
        ("rr", vec![1, 1, 1], vec![100, 100, 100]),
        ("wrr", vec![3, 2, 1], vec![150, 100, 50]),
    ] {
        let mut lab = Lab::new(ForwardMethod::Nat, name, &weights);
        let mut got = [0usize; 3];
        for i in 0..300u16 {
            let (v, out) = lab.send(0, &tcp(CIP, VIP, 10000 + i, 80, "S", b"", P0_MAC));
            assert_eq!(v, Verdict::Forward { port: 1 });
            let (_, d, ..) = check(&out);
            got[(d.octets()[3] - 11) as usize] += 1;
        }
        assert_eq!(got.to_vec(), want, "{name}");
        // UDP is balanced the same way.
        let mut got = [0usize; 3];
        for i in 0..300u16 {
            let (v, out) = lab.send(0, &udp(CIP, VIP, 20000 + i, 53, b"q", P0_MAC));
            assert_eq!(v, Verdict::Forward { port: 1 });
            got[(check(&out).1.octets()[3] - 11) as usize] += 1;
        }
        assert_eq!(got.to_vec(), want, "{name} udp");
    }
}

#[test]
fn unknown_next_hop_asks_arp() {
    let mut lab = Lab::new(ForwardMethod::Nat, "rr", &[1]);
    // Replace the service's server with one we have no MAC for.
    let key = ServiceKey {
        proto: Proto::Tcp,
        vip: VIP,
        port: 80,
    };
    lab.dir.apply(Command::DelDest(key, rs_ip(1), 8080));
    lab.dir
        .real_server(key, Ipv4Addr::new(10, 2, 0, 99), 8080, 1, ForwardMethod::Nat);
    lab.fwd.refresh();
    let (v, _) = lab.send(0, &tcp(CIP, VIP, 40000, 80, "S", b"", P0_MAC));
    assert_eq!(
        v,
        Verdict::Resolve {
            port: 1,
            via: Ipv4Addr::new(10, 2, 0, 99)
        }
    );
    // Its ARP reply is learned (it was wanted) and releases the wait.
    let mut rep = vec![0u8; 42];
    rep[..6].copy_from_slice(&P1_MAC.0);
    rep[6..12].copy_from_slice(&[2, 0, 0, 0, 2, 99]);
    rep[12..14].copy_from_slice(&[8, 6]);
    rep[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    rep[22..28].copy_from_slice(&[2, 0, 0, 0, 2, 99]);
    rep[28..32].copy_from_slice(&[10, 2, 0, 99]);
    rep[32..38].copy_from_slice(&P1_MAC.0);
    rep[38..42].copy_from_slice(&DIP1.octets());
    assert_eq!(
        lab.send(1, &rep).0,
        Verdict::Consumed {
            learned: Some(Ipv4Addr::new(10, 2, 0, 99))
        }
    );
    let (v, out) = lab.send(0, &tcp(CIP, VIP, 40000, 80, "A", b"", P0_MAC));
    assert_eq!(v, Verdict::Forward { port: 1 });
    assert_eq!(&out[..6], &[2, 0, 0, 0, 2, 99]);
}

#[test]
fn dr_rewrites_mac_only() {
    let mut lab = Lab::new(ForwardMethod::Dr, "rr", &[1, 1]);
    // For DR the servers sit on the client-side subnet in real life; here port 1 is fine.
    let frame = tcp(CIP, VIP, 40000, 80, "S", b"", P0_MAC);
    let (v, out) = lab.send(0, &frame);
    assert_eq!(v, Verdict::Forward { port: 1 });
    assert_eq!(&out[..6], &rs_mac(1).0);
    assert_eq!(&out[6..12], &P1_MAC.0);
    assert_eq!(&out[12..], &frame[12..], "IP packet untouched, TTL included");
    assert_eq!(lab.fwd.counters.dr_out, 1);
    // Replies do not pass through a DR director: an OUT lookup finds nothing.
    let (v, _) = lab.send(1, &tcp(rs_ip(1), CIP, 80, 40000, "SA", b"", P1_MAC));
    assert_eq!(v, Verdict::Drop(DropReason::NotForUs));
}

#[test]
fn tun_encapsulates_and_sends_frag_needed() {
    let mut lab = Lab::with(
        ForwardMethod::Tun,
        "rr",
        &[1],
        CoreOptions::default(),
        1500,
        1024,
        None,
    );
    let frame = tcp(CIP, VIP, 40000, 80, "S", b"", P0_MAC);
    let (v, out) = lab.send(0, &frame);
    assert_eq!(v, Verdict::Forward { port: 1 });
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    let h = ip.header().to_header();
    assert_eq!(
        (Ipv4Addr::from(h.source), Ipv4Addr::from(h.destination)),
        (DIP1, rs_ip(1))
    );
    assert_eq!(h.protocol, etherparse::IpNumber::IPV4);
    assert_eq!(&out[34..], &frame[14..], "inner packet untouched");

    // Full-size with DF: does not fit with 20 more bytes.
    let big = tcp(CIP, VIP, 40000, 80, "A", &[0u8; 1460], P0_MAC);
    let (v, out) = lab.send(0, &big);
    assert_eq!(v, Verdict::Forward { port: 0 });
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(TransportSlice::Icmpv4(i)) = &p.transport else {
        panic!("{p:?}")
    };
    assert!(matches!(
        i.icmp_type(),
        etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1480 }
        )
    ));
    assert_eq!(&out[..6], &CLIENT_MAC);
}

#[test]
fn drops_are_named() {
    let mut lab = Lab::new(ForwardMethod::Nat, "rr", &[0, 0]);
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (tcp(CIP, VIP, 1, 81, "S", b"", P0_MAC), DropReason::NoService),
        (tcp(CIP, VIP, 1, 80, "A", b"", P0_MAC), DropReason::NoConnNotSyn),
        (tcp(CIP, VIP, 1, 80, "S", b"", P0_MAC), DropReason::NoRealServer),
        (
            tcp(CIP, Ipv4Addr::new(10, 9, 9, 9), 1, 80, "S", b"", P0_MAC),
            DropReason::NotForUs,
        ),
        (
            tcp(CIP, VIP, 1, 80, "S", b"", MacAddr([2, 9, 9, 9, 9, 9])),
            DropReason::NotOurMac,
        ),
        (
            tcp(Ipv4Addr::new(127, 0, 0, 1), VIP, 1, 80, "S", b"", P0_MAC),
            DropReason::Martian,
        ),
        (vec![1, 2, 3], DropReason::TruncatedL2),
    ];
    for (f, want) in cases {
        assert_eq!(lab.send(0, &f).0, Verdict::Drop(want), "{want:?}");
        assert!(lab.fwd.drops.get(want) >= 1);
    }
    let mut bad = tcp(CIP, VIP, 1, 80, "S", b"", P0_MAC);
    bad[24] ^= 0xff; // IP checksum
    assert_eq!(lab.send(0, &bad).0, Verdict::Drop(DropReason::BadIpChecksum));
    let mut ipv6 = bad.clone();
    ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(lab.send(0, &ipv6).0, Verdict::Drop(DropReason::UnknownEtherType));
    let mut ttl1 = tcp(CIP, VIP, 1, 80, "S", b"", P0_MAC);
    let mut lab2 = Lab::new(ForwardMethod::Nat, "rr", &[1]);
    ttl1[22] = 1;
    ttl1[24..26].copy_from_slice(&[0, 0]);
    let c = etherparse::Ipv4HeaderSlice::from_slice(&ttl1[14..])
        .unwrap()
        .to_header()
        .calc_header_checksum();
    ttl1[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(lab2.send(0, &ttl1).0, Verdict::Drop(DropReason::TtlExpired));
}

#[test]
fn rst_when_no_server_if_configured() {
    let opts = CoreOptions {
        tcp_rst_no_dest: true,
        ..Default::default()
    };
    let mut lab = Lab::with(ForwardMethod::Nat, "wlc", &[0], opts, 1500, 1024, None);
    let (v, out) = lab.send(0, &tcp(CIP, VIP, 40000, 80, "S", b"", P0_MAC));
    assert_eq!(v, Verdict::Forward { port: 0 });
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!()
    };
    assert!(t.rst());
    assert_eq!(lab.fwd.drops.get(DropReason::NoRealServer), 1, "still counted");
}

#[test]
fn full_table_refuses_new_and_keeps_established() {
    let mut lab = Lab::with(
        ForwardMethod::Nat,
        "rr",
        &[1],
        CoreOptions::default(),
        1500,
        16,
        None,
    );
    // Established (the client's ACK seen): these never give way.
    for i in 0..16u16 {
        assert_eq!(
            lab.send(0, &tcp(CIP, VIP, 1000 + i, 80, "S", b"", P0_MAC)).0,
            Verdict::Forward { port: 1 }
        );
        assert_eq!(
            lab.send(0, &tcp(CIP, VIP, 1000 + i, 80, "A", b"", P0_MAC)).0,
            Verdict::Forward { port: 1 }
        );
    }
    assert_eq!(
        lab.send(0, &tcp(CIP, VIP, 2000, 80, "S", b"", P0_MAC)).0,
        Verdict::Drop(DropReason::ConnTableFull)
    );
    for i in 0..16u16 {
        assert_eq!(
            lab.send(0, &tcp(CIP, VIP, 1000 + i, 80, "A", b"data", P0_MAC)).0,
            Verdict::Forward { port: 1 },
            "established flow {i} unaffected"
        );
        assert_eq!(
            lab.send(1, &tcp(rs_ip(1), CIP, 8080, 1000 + i, "A", b"", P1_MAC))
                .0,
            Verdict::Forward { port: 0 }
        );
    }
    assert_eq!(lab.fwd.drops.get(DropReason::ConnTableFull), 1);
}

#[test]
fn full_table_of_syns_gives_the_oldest_slot_to_a_new_syn() {
    let mut lab = Lab::with(
        ForwardMethod::Nat,
        "rr",
        &[1],
        CoreOptions::default(),
        1500,
        16,
        None,
    );
    for i in 0..16u16 {
        assert_eq!(
            lab.send(0, &tcp(CIP, VIP, 1000 + i, 80, "S", b"", P0_MAC)).0,
            Verdict::Forward { port: 1 }
        );
    }
    // Full of SYN_RECV: the new SYN is forwarded, the oldest one evicted.
    assert_eq!(
        lab.send(0, &tcp(CIP, VIP, 2000, 80, "S", b"", P0_MAC)).0,
        Verdict::Forward { port: 1 }
    );
    assert_eq!(lab.fwd.conns.embryonic_evicted(), 1);
    assert_eq!(
        lab.send(0, &tcp(CIP, VIP, 1000, 80, "A", b"", P0_MAC)).0,
        Verdict::Drop(DropReason::NoConnNotSyn)
    );
    for p in (1001..1016).chain([2000]) {
        assert_eq!(
            lab.send(0, &tcp(CIP, VIP, p, 80, "A", b"", P0_MAC)).0,
            Verdict::Forward { port: 1 },
            "flow {p} kept and now established"
        );
    }
    assert_eq!(lab.fwd.drops.get(DropReason::ConnTableFull), 0);
}

#[test]
fn ping_director_and_vip() {
    let mut lab = Lab::new(ForwardMethod::Nat, "rr", &[1]);
    for dst in [DIP0, VIP] {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, P0_MAC.0)
            .ipv4(CIP.octets(), dst.octets(), 64)
            .icmpv4_echo_request(1, 2);
        let mut f = Vec::new();
        b.write(&mut f, b"abc").unwrap();
        let (v, out) = lab.send(0, &f);
        assert_eq!(v, Verdict::Forward { port: 0 });
        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let Some(TransportSlice::Icmpv4(i)) = &p.transport else {
            panic!()
        };
        assert!(matches!(i.icmp_type(), etherparse::Icmpv4Type::EchoReply(_)));
        let (s, d, ..) = check(&out);
        assert_eq!((s, d), (dst, CIP));
    }
}

#[test]
fn redirect_to_owner_with_two_workers() {
    let mut dir = director(2, CoreOptions::default(), 1500);
    add_service(&mut dir, Proto::Tcp, 80, "rr", ForwardMethod::Nat, &[1], None);
    let s = dir.shared.clone();
    let mut w = [dir.forwarder(0, 1024, 0), dir.forwarder(1, 1024, 0)];
    let mut clients_per_owner = [0; 2];
    for c in 1..=40u8 {
        let cip = Ipv4Addr::new(10, 1, 0, 100 + c);
        s.neigh.add_static(cip, MacAddr([2, 0, 0, 0, 1, c]));
        let owner = owner_of(cip, Ipv4Addr::BROADCAST, 2) as usize;
        clients_per_owner[owner] += 1;
        // The SYN lands on worker 0 (say, RSS put it there).
        let mut b = VecBuf::new(&tcp(cip, VIP, 5000, 80, "S", b"", P0_MAC));
        let mut v = w[0].process(0, &mut b, false);
        if owner == 1 {
            assert_eq!(v, Verdict::Redirect { worker: 1 });
            v = w[1].process(0, &mut b, true);
        }
        assert_eq!(v, Verdict::Forward { port: 1 });
        // The reply lands on worker 1.
        let mut r = VecBuf::new(&tcp(rs_ip(1), cip, 8080, 5000, "SA", b"", P1_MAC));
        let mut v = w[1].process(1, &mut r, false);
        if owner == 0 {
            assert_eq!(v, Verdict::Redirect { worker: 0 });
            v = w[0].process(1, &mut r, true);
        }
        assert_eq!(v, Verdict::Forward { port: 0 }, "reply handled by the owner");
    }
    assert!(
        clients_per_owner[0] > 5 && clients_per_owner[1] > 5,
        "{clients_per_owner:?}"
    );
    for (i, f) in w.iter().enumerate() {
        assert_eq!(f.conns.len(), clients_per_owner[i]);
        assert_eq!(f.counters.nat_out as usize, clients_per_owner[i]);
        assert_eq!(f.drops.total(), 0);
    }
    assert!(s.all_workers_seen(1));
}

#[test]
fn fragments_follow_their_first() {
    let mut lab = Lab::new(ForwardMethod::Nat, "rr", &[1]);
    // A UDP datagram of 3000 bytes in two fragments (etherparse builds the whole; we split).
    let whole = udp(CIP, VIP, 7000, 53, &[0x5a; 2000], P0_MAC);
    let ip_payload = &whole[34..]; // UDP header + data
    let first_len = 1480;
    let mk = |offset: usize, data: &[u8], more: bool| -> Vec<u8> {
        let mut h = etherparse::Ipv4Header::new(
            data.len() as u16,
            64,
            etherparse::IpNumber::UDP,
            CIP.octets(),
            VIP.octets(),
        )
        .unwrap();
        h.identification = 0x4242;
        h.more_fragments = more;
        h.fragment_offset = etherparse::IpFragOffset::try_new((offset / 8) as u16).unwrap();
        h.header_checksum = h.calc_header_checksum();
        let mut f = whole[..14].to_vec();
        h.write(&mut f).unwrap();
        f.extend_from_slice(data);
        f
    };
    let f1 = mk(0, &ip_payload[..first_len], true);
    let f2 = mk(first_len, &ip_payload[first_len..], false);
    // A non-first fragment before its first: dropped, counted.
    assert_eq!(lab.send(0, &f2).0, Verdict::Drop(DropReason::Fragment));
    let (v, o1) = lab.send(0, &f1);
    assert_eq!(v, Verdict::Forward { port: 1 });
    let (v, o2) = lab.send(0, &f2);
    assert_eq!(v, Verdict::Forward { port: 1 });
    assert_eq!(lab.fwd.counters.fragments_followed, 1);
    // Reassemble and check the UDP checksum over the whole datagram.
    let mut data = o1[34..].to_vec();
    data.extend_from_slice(&o2[34..]);
    assert_eq!(&o1[30..34], &rs_ip(1).octets());
    assert_eq!(&o2[30..34], &rs_ip(1).octets());
    let uh = etherparse::UdpHeaderSlice::from_slice(&data).unwrap().to_header();
    assert_eq!(uh.destination_port, 8080);
    let want = uh
        .calc_checksum_ipv4_raw(CIP.octets(), rs_ip(1).octets(), &data[8..])
        .unwrap();
    assert_eq!(
        uh.checksum, want,
        "L4 checksum valid over the reassembled datagram"
    );
}

#[test]
fn icmp_errors_translated_both_ways() {
    let mut lab = Lab::new(ForwardMethod::Nat, "rr", &[1]);
    lab.send(0, &udp(CIP, VIP, 7000, 53, b"q", P0_MAC));
    // The real server says port unreachable about CIP:7000 -> RIP:8080.
    let quoted = udp(CIP, rs_ip(1), 7000, 8080, b"q", P1_MAC);
    let b = PacketBuilder::ethernet2(rs_mac(1).0, P1_MAC.0)
        .ipv4(rs_ip(1).octets(), CIP.octets(), 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ));
    let mut f = Vec::new();
    b.write(&mut f, &quoted[14..14 + 28]).unwrap();
    let (v, out) = lab.send(1, &f);
    assert_eq!(v, Verdict::Forward { port: 0 });
    assert_eq!(&out[26..30], &VIP.octets(), "the client hears it from the VIP");
    assert_eq!(
        &out[42 + 16..42 + 20],
        &VIP.octets(),
        "about its packet to the VIP"
    );
    assert_eq!(u16::from_be_bytes([out[42 + 22], out[42 + 23]]), 53);
    // The client says port unreachable about VIP:53 -> CIP:7000.
    let quoted = udp(VIP, CIP, 53, 7000, b"a", P0_MAC);
    let b = PacketBuilder::ethernet2(CLIENT_MAC, P0_MAC.0)
        .ipv4(CIP.octets(), VIP.octets(), 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ));
    let mut f = Vec::new();
    b.write(&mut f, &quoted[14..14 + 28]).unwrap();
    let (v, out) = lab.send(0, &f);
    assert_eq!(v, Verdict::Forward { port: 1 });
    assert_eq!(&out[30..34], &rs_ip(1).octets());
    assert_eq!(&out[42 + 12..42 + 16], &rs_ip(1).octets());
    assert_eq!(lab.fwd.counters.icmp_translated, 2);
}

#[test]
fn persistence_pins_a_client() {
    let p = Persistence {
        timeout_s: 300,
        netmask: Ipv4Addr::new(255, 255, 255, 0),
    };
    let mut lab = Lab::with(
        ForwardMethod::Nat,
        "rr",
        &[1, 1, 1],
        CoreOptions::default(),
        1500,
        1024,
        Some(p),
    );
    let mut first = None;
    for i in 0..10u16 {
        // Same /24, different hosts and ports: one real server.
        let cip = Ipv4Addr::new(10, 1, 0, 20 + (i as u8 % 3));
        let (v, out) = lab.send(0, &tcp(cip, VIP, 3000 + i, 80, "S", b"", P0_MAC));
        assert_eq!(v, Verdict::Forward { port: 1 });
        let d = check(&out).1;
        assert_eq!(*first.get_or_insert(d), d);
    }
    assert_eq!(lab.fwd.counters.templates_created, 1);
    assert_eq!(lab.fwd.conns.templates(), 1);
}

/// `-p 300 -M 255.255.255.0` with two workers: every client of the /24 goes to
/// one real server, as with IPVS, though their addresses alone would spread
/// them over both workers (and so over two persistence templates).
#[test]
fn persistence_netmask_holds_across_workers() {
    let p = Persistence {
        timeout_s: 300,
        netmask: Ipv4Addr::new(255, 255, 255, 0),
    };
    let mut dir = director(2, CoreOptions::default(), 1500);
    add_service(
        &mut dir,
        Proto::Tcp,
        80,
        "sh",
        ForwardMethod::Nat,
        &[1, 1, 1],
        Some(p),
    );
    let mut w = [dir.forwarder(0, 1024, 100), dir.forwarder(1, 1024, 100)];
    let clients: Vec<Ipv4Addr> = (0..8).map(|i| Ipv4Addr::new(10, 1, 0, 50 + 7 * i)).collect();
    let owners = |mask| clients.iter().map(|&c| owner_of(c, mask, 2)).collect::<Vec<_>>();
    assert!(owners(Ipv4Addr::BROADCAST).contains(&0) && owners(Ipv4Addr::BROADCAST).contains(&1));
    let mut rips = Vec::new();
    for (i, &cip) in clients.iter().enumerate() {
        // RSS spreads the SYNs over both queues.
        let first = i % 2;
        let mut b = VecBuf::new(&tcp(cip, VIP, 4000 + i as u16, 80, "S", b"", P0_MAC));
        let mut v = w[first].process(0, &mut b, false);
        if let Verdict::Redirect { worker } = v {
            v = w[worker as usize].process(0, &mut b, true);
        }
        assert_eq!(v, Verdict::Forward { port: 1 }, "client {cip}");
        rips.push(check(b.data()).1);
    }
    assert!(
        rips.iter().all(|r| *r == rips[0]),
        "one real server for the /24: {rips:?}"
    );
    let templates: usize = w.iter().map(|f| f.conns.templates()).sum();
    assert_eq!(templates, 1);
}

#[test]
fn quiesce_keeps_old_connections_and_removal_with_expire_nodest() {
    let opts = CoreOptions {
        expire_nodest_conn: true,
        ..Default::default()
    };
    let mut lab = Lab::with(ForwardMethod::Nat, "rr", &[1, 1], opts, 1500, 1024, None);
    let (_, out) = lab.send(0, &tcp(CIP, VIP, 1, 80, "S", b"", P0_MAC));
    assert_eq!(check(&out).1, rs_ip(1));
    // Quiesce server 1 (`-e -w 0`): the new snapshot shares its counters.
    let key = lab.fwd.services().get(0).unwrap().key;
    let rs1 = lab.fwd.services().get(0).unwrap().dests[0].clone();
    lab.dir.weight(key, rs_ip(1), 8080, 0, ForwardMethod::Nat);
    lab.fwd.refresh();
    for i in 2..12u16 {
        let (_, out) = lab.send(0, &tcp(CIP, VIP, i, 80, "S", b"", P0_MAC));
        assert_eq!(check(&out).1, rs_ip(2), "no new connections to a quiesced server");
    }
    let (v, out) = lab.send(0, &tcp(CIP, VIP, 1, 80, "A", b"more", P0_MAC));
    assert_eq!(v, Verdict::Forward { port: 1 });
    assert_eq!(check(&out).1, rs_ip(1), "its open connection goes on");
    // Remove it: with expire_nodest_conn its connection ends on the next packet.
    lab.dir.apply(Command::DelDest(key, rs_ip(1), 8080));
    assert!(rs1.stats.removed.load(Ordering::Relaxed));
    lab.fwd.refresh();
    assert_eq!(
        lab.send(0, &tcp(CIP, VIP, 1, 80, "A", b"", P0_MAC)).0,
        Verdict::Drop(DropReason::DestRemoved)
    );
    assert_eq!(rs1.active() + rs1.inactive(), 0, "its counters settled");
}

#[test]
fn vlan_tagged_frames_are_forwarded_with_their_tag() {
    let mut lab = Lab::new(ForwardMethod::Nat, "rr", &[1]);
    let b = PacketBuilder::ethernet2(CLIENT_MAC, P0_MAC.0)
        .single_vlan(etherparse::VlanId::try_new(42).unwrap())
        .ipv4(CIP.octets(), VIP.octets(), 64)
        .tcp(4000, 80, 1, 1000)
        .syn();
    let mut f = Vec::new();
    b.write(&mut f, b"").unwrap();
    let (v, out) = lab.send(0, &f);
    assert_eq!(v, Verdict::Forward { port: 1 });
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    assert!(p.vlan.is_some());
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(Ipv4Addr::from(ip.header().destination()), rs_ip(1));
}

#[test]
fn burst_processing_with_a_warm_up_matches_packet_by_packet() {
    // Above the warm-up threshold (32K connections), process_burst first
    // touches every packet's bucket and entry; the verdicts and bytes must be
    // exactly those of one-by-one processing.
    let lab = || {
        Lab::with(
            ForwardMethod::Nat,
            "rr",
            &[1, 1, 1],
            CoreOptions::default(),
            1500,
            40_000,
            None,
        )
    };
    let (mut a, mut b) = (lab(), lab());
    for i in 0..33_000u32 {
        let cip = Ipv4Addr::from(0x0a01_0000 + (i / 60_000) + 20);
        let f = tcp(cip, VIP, (i % 60_000) as u16 + 1, 80, "S", b"", P0_MAC);
        assert_eq!(a.send(0, &f).0, Verdict::Forward { port: 1 });
        assert_eq!(b.send(0, &f).0, Verdict::Forward { port: 1 });
    }
    let frames: Vec<Vec<u8>> = (0..32u32)
        .map(|i| {
            let mut f = tcp(
                Ipv4Addr::from(0x0a01_0000 + 20),
                VIP,
                (i * 997 % 33_000) as u16 + 1,
                80,
                "A",
                b"x",
                P0_MAC,
            );
            if i == 7 {
                f[14 + 9] = 99; // one oddball in the burst
                f[24..26].copy_from_slice(&[0, 0]);
                let c = etherparse::Ipv4HeaderSlice::from_slice(&f[14..])
                    .unwrap()
                    .to_header()
                    .calc_header_checksum();
                f[24..26].copy_from_slice(&c.to_be_bytes());
            }
            f
        })
        .collect();
    let mut bufs: Vec<VecBuf> = frames.iter().map(|f| VecBuf::new(f)).collect();
    let mut verdicts = [Verdict::Consumed { learned: None }; 32];
    a.fwd.process_burst(0, &mut bufs, &mut verdicts);
    for (i, f) in frames.iter().enumerate() {
        let (v, out) = b.send(0, f);
        assert_eq!(verdicts[i], v, "packet {i}");
        assert_eq!(bufs[i].data(), &out[..], "packet {i} bytes");
    }
    assert_eq!(verdicts[7], Verdict::Drop(DropReason::UnknownProtocol));
    assert_eq!(verdicts[0], Verdict::Forward { port: 1 });
}

#[test]
fn gratuitous_arp_and_arp_request_frames() {
    let port = PortInfo {
        mac: P0_MAC,
        addr: DIP0,
        prefix_len: 24,
        mtu: 1500,
    };
    let mut buf = [0u8; 64];
    assert_eq!(rvs_dp::neigh::build_gratuitous_arp(&mut buf, &port, VIP), 60);
    assert_eq!(&buf[..6], &[0xff; 6], "broadcast");
    assert_eq!(&buf[6..12], &P0_MAC.0);
    assert_eq!(&buf[12..14], &[8, 6]);
    assert_eq!(&buf[20..22], &[0, 1], "a request");
    assert_eq!(&buf[22..28], &P0_MAC.0, "sender MAC: ours");
    assert_eq!(&buf[28..32], &VIP.octets(), "sender IP: the VIP");
    assert_eq!(&buf[38..42], &VIP.octets(), "target IP: the VIP too (gratuitous)");
    assert_eq!(rvs_dp::neigh::build_arp_request(&mut buf, &port, rs_ip(1)), 60);
    assert_eq!(&buf[28..32], &DIP0.octets(), "asks from the port address");
    assert_eq!(&buf[38..42], &rs_ip(1).octets());
    assert_eq!(
        rvs_dp::neigh::build_arp_request(&mut [0u8; 20], &port, rs_ip(1)),
        0,
        "too small: nothing written"
    );
}

/// An ARP frame from the client on port 0's subnet: `op` 1 (request) or 2 (reply).
fn arp_frame(op: u8, dst_mac: [u8; 6], target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 42];
    f[..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&CLIENT_MAC);
    f[12..14].copy_from_slice(&[8, 6]);
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, op]);
    f[22..28].copy_from_slice(&CLIENT_MAC);
    f[28..32].copy_from_slice(&CIP.octets());
    if op == 2 {
        f[32..38].copy_from_slice(&P0_MAC.0);
    }
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// Port 0 with a kernel interface: what is not for the load balancer goes
/// up, and VIPs are served only while the kernel holds them.
#[test]
fn kernel_interface_takes_the_rest_and_ownership_follows_it() {
    let opts = CoreOptions::default();
    let base = director(1, opts, 1500);
    let s = Shared::new(base.shared.ports.clone(), base.shared.routes.clone(), 1, opts)
        .with_kernel_ports(&[true, false]);
    let mut dir = LabDirector::from_shared(Arc::new(s));
    dir.shared.neigh.add_static(CIP, MacAddr(CLIENT_MAC));
    dir.shared.neigh.add_static(rs_ip(1), rs_mac(1));
    add_service(&mut dir, Proto::Tcp, 80, "rr", ForwardMethod::Nat, &[1], None);
    let mut lab = Lab {
        fwd: dir.forwarder(0, 1024, 100),
        dir,
    };
    let syn = |sport| tcp(CIP, VIP, sport, 80, "S", b"", P0_MAC);

    // VRRP: 224.0.0.18, protocol 112, to its multicast MAC.
    let mut vrrp = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, [1, 0, 0x5e, 0, 0, 18])
        .ipv4(CIP.octets(), [224, 0, 0, 18], 255)
        .write(
            &mut vrrp,
            etherparse::IpNumber(112),
            &[0x31, 1, 100, 1, 0, 10, 0, 0],
        )
        .unwrap();
    assert_eq!(lab.send(0, &vrrp).0, Verdict::ToKernel);
    // Ping to the port's address: the kernel answers.
    let ping = {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, P0_MAC.0)
            .ipv4(CIP.octets(), DIP0.octets(), 64)
            .icmpv4_echo_request(1, 2);
        let mut f = Vec::new();
        b.write(&mut f, b"abc").unwrap();
        f
    };
    assert_eq!(lab.send(0, &ping).0, Verdict::ToKernel);
    // An ARP reply (to the kernel's own request) goes up; IPv6 too.
    assert_eq!(lab.send(0, &arp_frame(2, P0_MAC.0, DIP0)).0, Verdict::ToKernel);
    let mut v6 = syn(1);
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(lab.send(0, &v6).0, Verdict::ToKernel);
    // Port 1 has no kernel interface: as before.
    assert_ne!(lab.send(1, &arp_frame(2, P1_MAC.0, DIP1)).0, Verdict::ToKernel);

    // The VIP is on no kernel interface: not owned.
    let v = lab.send(0, &arp_frame(1, [0xff; 6], VIP)).0;
    assert!(
        !matches!(v, Verdict::Forward { .. }),
        "ARP for the VIP unanswered: {v:?}"
    );
    assert_eq!(lab.send(0, &syn(1000)).0, Verdict::Drop(DropReason::VipNotOwned));

    // keepalived puts the VIP and a floating gateway on the interface.
    let gw = Ipv4Addr::new(10, 1, 0, 254);
    lab.dir
        .shared
        .owned
        .store(Arc::new(rvs_dp::ownership::Owned::only(1, [DIP0, VIP, gw])));
    lab.fwd.refresh();
    for target in [VIP, gw] {
        let (v, out) = lab.send(0, &arp_frame(1, [0xff; 6], target));
        assert_eq!(v, Verdict::Forward { port: 0 }, "ARP for {target}");
        assert_eq!(&out[22..28], &P0_MAC.0);
    }
    let (v, out) = lab.send(0, &syn(1001));
    assert_eq!(v, Verdict::Forward { port: 1 });
    let ack = tcp(CIP, VIP, 1001, 80, "A", b"x", P0_MAC);
    assert_eq!(lab.send(0, &ack).0, Verdict::Forward { port: 1 });
    assert_eq!(check(&out).1, rs_ip(1));
    // Traffic to the floating address itself is the kernel's.
    assert_eq!(
        lab.send(0, &tcp(CIP, gw, 1, 22, "S", b"", P0_MAC)).0,
        Verdict::ToKernel
    );

    // Removed: ARP unanswered, established and new traffic dropped, on the
    // fast path's account too.
    lab.dir
        .shared
        .owned
        .store(Arc::new(rvs_dp::ownership::Owned::only(2, [DIP0])));
    lab.fwd.refresh();
    let v = lab.send(0, &arp_frame(1, [0xff; 6], VIP)).0;
    assert!(
        !matches!(v, Verdict::Forward { .. }),
        "ARP for the VIP unanswered: {v:?}"
    );
    assert_eq!(lab.send(0, &ack).0, Verdict::Drop(DropReason::VipNotOwned));
    assert_eq!(lab.send(0, &syn(1002)).0, Verdict::Drop(DropReason::VipNotOwned));
}

/// Clears DF in an Ethernet + IPv4 frame and fixes the header checksum.
fn clear_df(f: &mut [u8]) {
    f[14 + 6] &= !0x40;
    f[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
    let h = etherparse::Ipv4HeaderSlice::from_slice(&f[14..])
        .unwrap()
        .to_header();
    f[14 + 10..14 + 12].copy_from_slice(&h.calc_header_checksum().to_be_bytes());
}

/// The ICMP "fragmentation needed" in `out`: (from, to, next-hop MTU, quoted
/// destination).
fn frag_needed_of(out: &[u8]) -> (Ipv4Addr, Ipv4Addr, u16, Ipv4Addr) {
    let p = SlicedPacket::from_ethernet(out).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not ipv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IP checksum");
    let Some(TransportSlice::Icmpv4(i)) = &p.transport else {
        panic!("not icmp: {p:?}")
    };
    let etherparse::Icmpv4Type::DestinationUnreachable(
        etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu },
    ) = i.icmp_type()
    else {
        panic!("not frag-needed: {:?}", i.icmp_type())
    };
    assert_eq!(
        i.checksum(),
        i.icmp_type().calc_checksum(i.payload()),
        "ICMP checksum"
    );
    let quoted = Ipv4Addr::from(<[u8; 4]>::try_from(&i.payload()[16..20]).unwrap());
    (
        Ipv4Addr::from(h.source),
        Ipv4Addr::from(h.destination),
        next_hop_mtu,
        quoted,
    )
}

/// A NAT packet past the egress MTU, either way: with DF, ICMP "fragmentation
/// needed" with that MTU back to its sender (as kernel IPVS); without DF, a
/// `too_big` drop. One byte less fits. The fast path (on here) leaves both
/// to the general path.
#[test]
fn nat_too_big_gets_frag_needed_with_df_and_too_big_without() {
    for mtu in [1500u16, 1000] {
        let mut lab = Lab::with(
            ForwardMethod::Nat,
            "rr",
            &[1],
            CoreOptions::default(),
            mtu,
            1024,
            None,
        );
        let fits = usize::from(mtu) - 28;
        // Open a UDP and a TCP connection.
        let (v, _) = lab.send(0, &udp(CIP, VIP, 5000, 53, b"q", P0_MAC));
        assert_eq!(v, Verdict::Forward { port: 1 });
        let (v, _) = lab.send(0, &tcp(CIP, VIP, 40000, 80, "S", b"", P0_MAC));
        assert_eq!(v, Verdict::Forward { port: 1 });
        let (v, _) = lab.send(1, &tcp(rs_ip(1), CIP, 8080, 40000, "SA", b"", P1_MAC));
        assert_eq!(v, Verdict::Forward { port: 0 });

        // Client → real server.
        let (v, out) = lab.send(0, &udp(CIP, VIP, 5000, 53, &vec![7; fits], P0_MAC));
        assert_eq!(v, Verdict::Forward { port: 1 }, "mtu {mtu}: exactly the MTU fits");
        assert_eq!(out.len(), 14 + usize::from(mtu));
        let big = udp(CIP, VIP, 5000, 53, &vec![7; fits + 1], P0_MAC);
        let (v, out) = lab.send(0, &big);
        assert_eq!(
            v,
            Verdict::Forward { port: 0 },
            "mtu {mtu}: frag-needed back to the client"
        );
        assert_eq!(frag_needed_of(&out), (DIP0, CIP, mtu, VIP));
        assert_eq!(&out[..6], &CLIENT_MAC);
        let mut no_df = big.clone();
        clear_df(&mut no_df);
        assert_eq!(lab.send(0, &no_df).0, Verdict::Drop(DropReason::TooBig));
        let seg = tcp(CIP, VIP, 40000, 80, "A", &vec![7; fits - 11], P0_MAC);
        let (v, out) = lab.send(0, &seg);
        assert_eq!(v, Verdict::Forward { port: 0 }, "TCP too");
        assert_eq!(frag_needed_of(&out), (DIP0, CIP, mtu, VIP));

        // Real server → client.
        let (v, _) = lab.send(1, &udp(rs_ip(1), CIP, 8080, 5000, &vec![7; fits], P1_MAC));
        assert_eq!(v, Verdict::Forward { port: 0 });
        let reply = tcp(rs_ip(1), CIP, 8080, 40000, "A", &vec![7; fits - 11], P1_MAC);
        let (v, out) = lab.send(1, &reply);
        assert_eq!(
            v,
            Verdict::Forward { port: 1 },
            "frag-needed back to the real server"
        );
        assert_eq!(frag_needed_of(&out), (DIP1, rs_ip(1), mtu, CIP));
        let mut no_df = reply.clone();
        clear_df(&mut no_df);
        assert_eq!(lab.send(1, &no_df).0, Verdict::Drop(DropReason::TooBig));

        assert_eq!(lab.fwd.drops.by_reason[DropReason::TooBig as usize], 2);
        assert_eq!(lab.fwd.counters.local_replies, 3);
    }
}

/// DR forwards the packet whole, so the same check applies.
#[test]
fn dr_too_big_gets_frag_needed() {
    let mut lab = Lab::with(
        ForwardMethod::Dr,
        "rr",
        &[1],
        CoreOptions::default(),
        1500,
        1024,
        None,
    );
    let (v, _) = lab.send(0, &tcp(CIP, VIP, 40000, 80, "S", b"", P0_MAC));
    assert_eq!(v, Verdict::Forward { port: 1 });
    let (v, _) = lab.send(0, &tcp(CIP, VIP, 40000, 80, "A", &[1; 1460], P0_MAC));
    assert_eq!(v, Verdict::Forward { port: 1 });
    let big = tcp(CIP, VIP, 40000, 80, "A", &[1; 1461], P0_MAC);
    let (v, out) = lab.send(0, &big);
    assert_eq!(v, Verdict::Forward { port: 0 });
    assert_eq!(frag_needed_of(&out), (DIP0, CIP, 1500, VIP));
    let mut no_df = big;
    clear_df(&mut no_df);
    assert_eq!(lab.send(0, &no_df).0, Verdict::Drop(DropReason::TooBig));
}

/// Adds `delta` to the L4 checksum of an Ethernet + IPv4 (20-byte header) frame.
fn corrupt_l4_checksum(f: &mut [u8], delta: u16) {
    let at = 14 + 20 + if f[14 + 9] == 6 { 16 } else { 6 };
    let c = u16::from_be_bytes([f[at], f[at + 1]]).wrapping_add(delta);
    f[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Whether the TCP/UDP checksum of `frame` holds (etherparse as the oracle).
fn l4_checksum_holds(frame: &[u8]) -> bool {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not ipv4")
    };
    let h = ip.header().to_header();
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            t.checksum() == t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap()
        }
        Some(TransportSlice::Udp(u)) => {
            u.checksum() == u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap()
        }
        _ => panic!("no L4"),
    }
}

/// LVS-NAT: a packet with a wrong TCP/UDP checksum opens no connection
/// (`bad_l4_checksum`); on an established connection it is rewritten with
/// the error kept, so the real server or client drops it (general and fast
/// path alike). DR passes it unchanged.
#[test]
fn bad_l4_checksum_opens_no_nat_connection_and_stays_bad() {
    for fast in [true, false] {
        let mut lab = Lab::new(ForwardMethod::Nat, "rr", &[1]);
        lab.fwd.fast_path = fast;
        let mut syn = tcp(CIP, VIP, 40000, 80, "S", b"", P0_MAC);
        corrupt_l4_checksum(&mut syn, 1);
        assert_eq!(lab.send(0, &syn).0, Verdict::Drop(DropReason::BadL4Checksum));
        let mut dgram = udp(CIP, VIP, 5000, 53, b"query", P0_MAC);
        corrupt_l4_checksum(&mut dgram, 0x100);
        assert_eq!(lab.send(0, &dgram).0, Verdict::Drop(DropReason::BadL4Checksum));
        assert_eq!(lab.fwd.conns.len(), 0, "no connection from a corrupt packet");
        assert_eq!(lab.fwd.counters.conns_created, 0);
        assert_eq!(lab.fwd.drops.by_reason[DropReason::BadL4Checksum as usize], 2);
        // A UDP datagram without checksum (0) has nothing to verify.
        let mut bare = udp(CIP, VIP, 5001, 53, b"query", P0_MAC);
        bare[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
        assert_eq!(lab.send(0, &bare).0, Verdict::Forward { port: 1 });

        // Established: forwarded, still wrong after the rewrite, both ways.
        let (v, _) = lab.send(0, &tcp(CIP, VIP, 40000, 80, "S", b"", P0_MAC));
        assert_eq!(v, Verdict::Forward { port: 1 });
        let (v, _) = lab.send(1, &tcp(rs_ip(1), CIP, 8080, 40000, "SA", b"", P1_MAC));
        assert_eq!(v, Verdict::Forward { port: 0 });
        for delta in [1u16, 0x00ff, 0x8000, 0xfffe] {
            let mut seg = tcp(CIP, VIP, 40000, 80, "A", b"GET / HTTP/1.0\r\n\r\n", P0_MAC);
            corrupt_l4_checksum(&mut seg, delta);
            let (v, out) = lab.send(0, &seg);
            assert_eq!(v, Verdict::Forward { port: 1 });
            assert_eq!(check_addrs(&out), (CIP, rs_ip(1)));
            assert!(!l4_checksum_holds(&out), "delta {delta:#x}: the error is kept");
            let mut rep = tcp(rs_ip(1), CIP, 8080, 40000, "A", b"HTTP/1.0 200 OK\r\n", P1_MAC);
            corrupt_l4_checksum(&mut rep, delta);
            let (v, out) = lab.send(1, &rep);
            assert_eq!(v, Verdict::Forward { port: 0 });
            assert!(
                !l4_checksum_holds(&out),
                "reply, delta {delta:#x}: the error is kept"
            );
        }
        assert_eq!(lab.fwd.counters.fast_path > 0, fast);
    }
    let mut lab = Lab::new(ForwardMethod::Dr, "rr", &[1]);
    let mut syn = tcp(CIP, VIP, 40000, 80, "S", b"", P0_MAC);
    corrupt_l4_checksum(&mut syn, 1);
    let (v, out) = lab.send(0, &syn);
    assert_eq!(v, Verdict::Forward { port: 1 }, "DR passes it unchanged, as IPVS");
    assert_eq!(&out[14..], &syn[14..]);
}

fn check_addrs(frame: &[u8]) -> (Ipv4Addr, Ipv4Addr) {
    let h = etherparse::Ipv4HeaderSlice::from_slice(&frame[14..]).unwrap();
    (h.source_addr(), h.destination_addr())
}

impl Lab {
    /// Quiesces real server `i` (0-based) of every service (`-e -w 0`): the
    /// new snapshot shares its counters.
    fn quiesce(&mut self, i: usize) {
        let old = self.fwd.services().clone();
        for s in old.services() {
            let d = &s.dests[i];
            self.dir.weight(s.key, d.rip, d.port, 0, d.method);
        }
        self.fwd.refresh();
    }

    fn state_of(&self, cport: u16) -> String {
        let flow = rvs_dp::conn::FlowKey::new(Proto::Tcp, CIP, cport, VIP, 80);
        let id = self.fwd.conns.lookup_in(flow, self.fwd.now()).expect("an entry");
        self.fwd.conns.get(id).unwrap().state_name().to_string()
    }

    fn conns_of(&self, i: usize) -> u64 {
        self.fwd.services().get(0).unwrap().dests[i]
            .stats
            .traffic
            .total()
            .conns
    }
}

/// A NAT connection closed by the real server first (as with
/// `Connection: close`): the director's entry ends in TIME_WAIT.
fn nat_close(lab: &mut Lab, cport: u16, rs: u8) {
    for (port, frame) in [
        (0, tcp(CIP, VIP, cport, 80, "S", b"", P0_MAC)),
        (1, tcp(rs_ip(rs), CIP, 8080, cport, "SA", b"", P1_MAC)),
        (0, tcp(CIP, VIP, cport, 80, "A", b"GET /", P0_MAC)),
        (1, tcp(rs_ip(rs), CIP, 8080, cport, "FA", b"200 OK", P1_MAC)),
        (0, tcp(CIP, VIP, cport, 80, "FA", b"", P0_MAC)),
        (1, tcp(rs_ip(rs), CIP, 8080, cport, "A", b"", P1_MAC)),
    ] {
        let (v, _) = lab.send(port, &frame);
        assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
    }
}

/// conn_reuse_mode (kernel IPVS's, default 1): a client's SYN from the port
/// of a connection in TIME_WAIT ends that entry and is scheduled as a new
/// connection, so a quiesced real server gets none; 0 keeps the old
/// behaviour (the old connection's server, not counted).
#[test]
fn syn_on_a_time_wait_entry_is_scheduled_anew() {
    for (mode, want) in [(1u8, 2u8), (3, 2), (0, 1)] {
        let opts = CoreOptions {
            conn_reuse_mode: mode,
            ..Default::default()
        };
        let mut lab = Lab::with(ForwardMethod::Nat, "rr", &[1, 1], opts, 1500, 1024, None);
        nat_close(&mut lab, 40000, 1);
        assert_eq!(lab.state_of(40000), "TIME_WAIT");
        lab.quiesce(0);
        let (v, out) = lab.send(0, &tcp(CIP, VIP, 40000, 80, "S", b"", P0_MAC));
        assert_eq!(v, Verdict::Forward { port: 1 });
        assert_eq!(check(&out).1, rs_ip(want), "conn_reuse_mode {mode}");
        assert_eq!(lab.state_of(40000), "SYN_RECV");
        let counted = if want == 2 { (1, 1) } else { (1, 0) };
        assert_eq!(
            (lab.conns_of(0), lab.conns_of(1)),
            counted,
            "conn_reuse_mode {mode}: Conns"
        );
        assert_eq!(lab.fwd.conns.len(), 1, "the old entry made way");
        // The new connection runs on: replies from its real server get through.
        let (v, _) = lab.send(1, &tcp(rs_ip(want), CIP, 8080, 40000, "SA", b"", P1_MAC));
        assert_eq!(v, Verdict::Forward { port: 0 });
    }
}

/// Only closed entries make way: a SYN on a live connection (a
/// retransmitted SYN, or one on an ESTABLISHED entry) stays on it, and so
/// does one on a FIN_WAIT entry of a NAT connection.
#[test]
fn syn_on_a_live_entry_stays_on_it() {
    let mut lab = Lab::new(ForwardMethod::Nat, "rr", &[1, 1]);
    let (_, out) = lab.send(0, &tcp(CIP, VIP, 40000, 80, "S", b"", P0_MAC));
    assert_eq!(check(&out).1, rs_ip(1));
    let (_, out) = lab.send(0, &tcp(CIP, VIP, 40000, 80, "S", b"", P0_MAC));
    assert_eq!(check(&out).1, rs_ip(1), "SYN_RECV: a retransmission");
    lab.send(1, &tcp(rs_ip(1), CIP, 8080, 40000, "SA", b"", P1_MAC));
    lab.send(0, &tcp(CIP, VIP, 40000, 80, "A", b"", P0_MAC));
    assert_eq!(lab.state_of(40000), "ESTABLISHED");
    let (_, out) = lab.send(0, &tcp(CIP, VIP, 40000, 80, "S", b"", P0_MAC));
    assert_eq!(check(&out).1, rs_ip(1));
    lab.send(1, &tcp(rs_ip(1), CIP, 8080, 40000, "FA", b"", P1_MAC));
    lab.send(0, &tcp(CIP, VIP, 40000, 80, "A", b"", P0_MAC));
    assert_eq!(lab.state_of(40000), "FIN_WAIT");
    let (_, out) = lab.send(0, &tcp(CIP, VIP, 40000, 80, "S", b"", P0_MAC));
    assert_eq!(check(&out).1, rs_ip(1), "NAT FIN_WAIT: not closed yet");
    assert_eq!(lab.conns_of(0) + lab.conns_of(1), 1);
}

/// LVS-DR: the director sees only the client's side, whose last state is
/// FIN_WAIT. As in the kernel, only conn_reuse_mode bit 2 reschedules there.
#[test]
fn dr_fin_wait_is_rescheduled_with_bit_2() {
    for (mode, want) in [(1u8, 1u8), (2, 2), (3, 2)] {
        let opts = CoreOptions {
            conn_reuse_mode: mode,
            ..Default::default()
        };
        let mut lab = Lab::with(ForwardMethod::Dr, "rr", &[1, 1], opts, 1500, 1024, None);
        for flags in ["S", "A", "A", "FA", "A"] {
            lab.send(0, &tcp(CIP, VIP, 40000, 80, flags, b"", P0_MAC));
        }
        assert_eq!(lab.state_of(40000), "FIN_WAIT");
        lab.quiesce(0);
        let (v, out) = lab.send(0, &tcp(CIP, VIP, 40000, 80, "S", b"", P0_MAC));
        assert_eq!(v, Verdict::Forward { port: 1 });
        assert_eq!(out[..6], rs_mac(want).0, "conn_reuse_mode {mode}");
    }
}

/// Connections a persistence template controls keep their entry (the
/// kernel's is_new_conn_expected skips them): the template's server anyway.
#[test]
fn persistent_connection_reuse_stays_with_its_template() {
    let p = Persistence {
        timeout_s: 300,
        netmask: Ipv4Addr::BROADCAST,
    };
    let mut lab = Lab::with(
        ForwardMethod::Nat,
        "rr",
        &[1, 1],
        CoreOptions::default(),
        1500,
        1024,
        Some(p),
    );
    nat_close(&mut lab, 40000, 1);
    let (_, out) = lab.send(0, &tcp(CIP, VIP, 40000, 80, "S", b"", P0_MAC));
    assert_eq!(check(&out).1, rs_ip(1));
    assert_eq!(lab.conns_of(0), 1, "the same connection");
}

/// expire_quiescent_template: a template whose real server is quiesced
/// ends on its client's next connection, which goes elsewhere; off (the
/// kernel's default), the template holds its clients on the quiesced server.
#[test]
fn expire_quiescent_template_moves_persistent_clients() {
    let p = Persistence {
        timeout_s: 300,
        netmask: Ipv4Addr::BROADCAST,
    };
    for (on, want) in [(false, 1u8), (true, 2)] {
        let opts = CoreOptions {
            expire_quiescent_template: on,
            ..Default::default()
        };
        let mut lab = Lab::with(ForwardMethod::Nat, "rr", &[1, 1], opts, 1500, 1024, Some(p));
        let (_, out) = lab.send(0, &tcp(CIP, VIP, 40000, 80, "S", b"", P0_MAC));
        assert_eq!(check(&out).1, rs_ip(1));
        lab.quiesce(0);
        let (_, out) = lab.send(0, &tcp(CIP, VIP, 40001, 80, "S", b"", P0_MAC));
        assert_eq!(check(&out).1, rs_ip(want), "expire_quiescent_template {on}");
        let (_, out) = lab.send(0, &tcp(CIP, VIP, 40000, 80, "A", b"", P0_MAC));
        assert_eq!(check(&out).1, rs_ip(1), "open connections go on");
    }
}
