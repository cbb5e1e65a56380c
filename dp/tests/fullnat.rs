//! FULLNAT through the whole per-packet path: frames in, verdicts and frames
//! out, checked with etherparse as an independent parser. The lab: clients
//! on port 0 (10.1.0.0/24), real servers on port 1 (10.2.0.0/24), the local
//! address 10.2.0.200 on port 1.

use std::net::{Ipv4Addr, SocketAddrV4};

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
use rvs_dp::core::{owner_of, CoreOptions, Forwarder, Verdict};
use rvs_dp::fnat::laddr::{owner_of_port, LaddrConfig};
use rvs_dp::fnat::steer::{FlowDevice, FlowRule, SteerConfig, Steering};
use rvs_dp::fnat::toa;
use rvs_dp::packet::{PacketBuf, VecBuf};
use rvs_dp::service::{ForwardMethod, Proto, ServiceKey};
use rvs_dp::stats::DropReason;
use rvs_dp::wire::ethernet::MacAddr;
use rvs_proto::command::{ClientAddr, Command, IpvsError, LaddrSpec, Reply};

#[path = "common/lab.rs"]
mod lab;
use lab::{port, LabDirector, CIP, CLIENT_MAC, LIP, P0_MAC, P1_MAC, RIP, RS_MAC, VIP};

struct Lab {
    dir: LabDirector,
    fwds: Vec<Forwarder>,
    key: ServiceKey,
}

fn laddr(addr: Ipv4Addr, port_name: &str) -> LaddrSpec {
    LaddrSpec {
        addr,
        port_name: port_name.into(),
    }
}

impl Lab {
    /// A FULLNAT service VIP:80 (TCP) or VIP:53 (UDP) → RIP:8080 with LIP,
    /// `workers` forwarders, local ports `ports` held `hold` s after use.
    fn new(proto: Proto, client_addr: ClientAddr, workers: u16, ports: (u16, u16), hold: u32) -> Lab {
        let mut dir = LabDirector::new_with(
            vec![
                port(P0_MAC, Ipv4Addr::new(10, 1, 0, 1), 1500),
                port(P1_MAC, Ipv4Addr::new(10, 2, 0, 1), 1500),
            ],
            &[],
            &[(CIP, MacAddr(CLIENT_MAC)), (RIP, MacAddr(RS_MAC))],
            workers,
            CoreOptions::default(),
            |s| {
                s.with_port_names(vec!["outside".into(), "inside".into()])
                    .with_laddr_config(LaddrConfig {
                        ports: ports.0..=ports.1,
                        hold,
                    })
            },
        );
        let vport = if proto == Proto::Tcp { 80 } else { 53 };
        let mut spec = lab::service(proto, VIP, vport, "rr", None);
        spec.client_addr = client_addr;
        let key = spec.key();
        dir.apply(Command::AddService(spec));
        dir.real_server(key, RIP, 8080, 1, ForwardMethod::FullNat);
        dir.apply(Command::AddLaddr(key, laddr(LIP, "inside")));
        let fwds = (0..workers).map(|w| dir.forwarder(w, 1024, 100)).collect();
        Lab { dir, fwds, key }
    }

    fn tcp(client_addr: ClientAddr) -> Lab {
        Lab::new(Proto::Tcp, client_addr, 1, (1024, 65535), 60)
    }

    fn refresh(&mut self) {
        for f in self.fwds.iter_mut() {
            f.refresh();
        }
    }

    /// Worker `w` processes `frame` from `port`.
    fn send_on(&mut self, w: usize, port: u16, frame: &[u8], redirected: bool) -> (Verdict, Vec<u8>) {
        let mut b = VecBuf::new(frame);
        let v = self.fwds[w].process(port, &mut b, redirected);
        (v, b.data().to_vec())
    }

    fn send(&mut self, port: u16, frame: &[u8]) -> (Verdict, Vec<u8>) {
        self.send_on(0, port, frame, false)
    }

    fn laddrs(&mut self) -> Vec<(Ipv4Addr, u64, u64)> {
        let (r, _) = self
            .dir
            .control
            .handle(&Command::GetLaddr(self.key), Vec::new, Vec::new);
        let Reply::Laddrs(l) = r else { panic!("{r:?}") };
        l.iter().map(|l| (l.spec.addr, l.conns, l.exhausted)).collect()
    }
}

#[derive(Default, Clone, Copy)]
struct Seg<'a> {
    flags: &'a str,
    seq: u32,
    ack: u32,
    payload: &'a [u8],
    sack: Option<(u32, u32)>,
    mss: Option<u16>,
}

fn tcp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), s: Seg, mac: (MacAddr, MacAddr)) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac.0 .0, mac.1 .0).ipv4(src.0.octets(), dst.0.octets(), 64);
    let mut t = b.tcp(src.1, dst.1, s.seq, 64240);
    for f in s.flags.chars() {
        t = match f {
            'S' => t.syn(),
            'A' => t.ack(s.ack),
            'F' => t.fin(),
            'R' => t.rst(),
            'P' => t.psh(),
            _ => t,
        };
    }
    let mut opts = Vec::new();
    if let Some(m) = s.mss {
        opts.push(TcpOptionElement::MaximumSegmentSize(m));
    }
    if let Some((l, r)) = s.sack {
        opts.extend([
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::SelectiveAcknowledgement((l, r), [None, None, None]),
        ]);
    }
    if !opts.is_empty() {
        t = t.options(&opts).unwrap();
    }
    let mut out = Vec::new();
    t.write(&mut out, s.payload).unwrap();
    out
}

fn client(s: Seg) -> Vec<u8> {
    tcp((CIP, 40000), (VIP, 80), s, (MacAddr(CLIENT_MAC), P0_MAC))
}

fn server(lport: u16, s: Seg) -> Vec<u8> {
    tcp((RIP, 8080), (LIP, lport), s, (MacAddr(RS_MAC), P1_MAC))
}

fn udp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8], mac: (MacAddr, MacAddr)) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac.0 .0, mac.1 .0)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .udp(src.1, dst.1);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

/// What a forwarded frame is, all checksums verified.
#[derive(Debug)]
struct Out {
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    seq: u32,
    ack: u32,
    payload: Vec<u8>,
    toa: Option<SocketAddrV4>,
    sack: Vec<(u32, u32)>,
    mss: Option<u16>,
    dst_mac: [u8; 6],
}

fn parse(frame: &[u8]) -> Out {
    let p = SlicedPacket::from_ethernet(frame).expect("valid frame");
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else {
        panic!()
    };
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not ipv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IP checksum");
    assert_eq!(usize::from(h.total_len), frame.len() - 14, "frame length");
    let (src, dst) = (ip.header().source_addr(), ip.header().destination_addr());
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let th = t.to_header();
            assert_eq!(
                t.checksum(),
                th.calc_checksum_ipv4(&h, t.payload()).unwrap(),
                "TCP checksum"
            );
            let mut sack = Vec::new();
            let mut mss = None;
            let mut toa = None;
            // etherparse stops at options it does not know (TOA's 254).
            for o in t.options_iterator().map_while(Result::ok) {
                match o {
                    TcpOptionElement::SelectiveAcknowledgement(a, rest) => {
                        sack.push(a);
                        sack.extend(rest.iter().flatten());
                    }
                    TcpOptionElement::MaximumSegmentSize(m) => mss = Some(m),
                    _ => {}
                }
            }
            if let Some(found) = toa::find_toa(t.options()) {
                toa = Some(found);
            }
            Out {
                src: (src, t.source_port()),
                dst: (dst, t.destination_port()),
                seq: t.sequence_number(),
                ack: t.acknowledgment_number(),
                payload: t.payload().to_vec(),
                toa,
                sack,
                mss,
                dst_mac: eth.destination(),
            }
        }
        Some(TransportSlice::Udp(u)) => {
            assert_eq!(
                u.checksum(),
                u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap(),
                "UDP checksum"
            );
            Out {
                src: (src, u.source_port()),
                dst: (dst, u.destination_port()),
                seq: 0,
                ack: 0,
                payload: u.payload().to_vec(),
                toa: None,
                sack: Vec::new(),
                mss: None,
                dst_mac: eth.destination(),
            }
        }
        _ => panic!("no transport"),
    }
}

const ISN: u32 = 1000;
const RS_ISN: u32 = 900_000;

/// The client's SYN through worker 0; returns the local port it left with.
fn open(lab: &mut Lab) -> u16 {
    let (v, out) = lab.send(
        0,
        &client(Seg {
            flags: "S",
            seq: ISN,
            ..Seg::default()
        }),
    );
    assert_eq!(v, Verdict::Forward { port: 1 });
    let o = parse(&out);
    assert_eq!(o.src.0, LIP);
    assert_eq!(o.dst, (RIP, 8080));
    assert_eq!(o.dst_mac, RS_MAC);
    o.src.1
}

#[test]
fn tcp_both_ways_rewrites_both_ends() {
    let mut lab = Lab::tcp(ClientAddr::None);
    let lport = open(&mut lab);
    assert!(lport >= 1024);
    let (v, out) = lab.send(
        1,
        &server(
            lport,
            Seg {
                flags: "SA",
                seq: RS_ISN,
                ack: ISN + 1,
                ..Seg::default()
            },
        ),
    );
    assert_eq!(v, Verdict::Forward { port: 0 });
    let o = parse(&out);
    assert_eq!((o.src, o.dst), ((VIP, 80), (CIP, 40000)));
    assert_eq!((o.seq, o.ack), (RS_ISN, ISN + 1));
    assert_eq!(o.dst_mac, CLIENT_MAC);
    let (v, out) = lab.send(
        0,
        &client(Seg {
            flags: "AP",
            seq: ISN + 1,
            ack: RS_ISN + 1,
            payload: b"GET / HTTP/1.0\r\n\r\n",
            ..Seg::default()
        }),
    );
    assert_eq!(v, Verdict::Forward { port: 1 });
    let o = parse(&out);
    assert_eq!((o.src, o.dst), ((LIP, lport), (RIP, 8080)));
    assert_eq!(o.payload, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(o.seq, ISN + 1, "no header: no shift");
    let c = &lab.fwds[0].counters;
    assert_eq!((c.fnat_in, c.fnat_out, c.fnat_replies_direct), (2, 1, 1));
    assert_eq!(lab.laddrs(), vec![(LIP, 1, 0)]);
    // A reply to a port no connection holds is no one's.
    let (v, _) = lab.send(
        1,
        &server(
            lport ^ 1,
            Seg {
                flags: "A",
                seq: RS_ISN + 1,
                ..Seg::default()
            },
        ),
    );
    assert_eq!(v, Verdict::Drop(DropReason::OutNoConn));
}

#[test]
fn the_connection_listing_shows_the_local_address() {
    let mut lab = Lab::tcp(ClientAddr::None);
    let lport = open(&mut lab);
    let f = &lab.fwds[0];
    let list = rvs_dp::conn::list::listing(&f.conns, f.now());
    assert_eq!(list.len(), 1);
    let c = &list[0];
    assert_eq!(
        (c.cip, c.cport, c.vip, c.vport, c.rip, c.rport),
        (CIP, 40000, VIP, 80, RIP, 8080)
    );
    assert_eq!(c.laddr, Some(SocketAddrV4::new(LIP, lport)));
}

#[test]
fn udp_both_ways() {
    let mut lab = Lab::new(Proto::Udp, ClientAddr::None, 1, (1024, 65535), 60);
    let q = udp((CIP, 5353), (VIP, 53), b"query", (MacAddr(CLIENT_MAC), P0_MAC));
    let (v, out) = lab.send(0, &q);
    assert_eq!(v, Verdict::Forward { port: 1 });
    let o = parse(&out);
    assert_eq!((o.src.0, o.dst), (LIP, (RIP, 8080)));
    let lport = o.src.1;
    let a = udp((RIP, 8080), (LIP, lport), b"answer", (MacAddr(RS_MAC), P1_MAC));
    let (v, out) = lab.send(1, &a);
    assert_eq!(v, Verdict::Forward { port: 0 });
    let o = parse(&out);
    assert_eq!(
        (o.src, o.dst, o.payload.as_slice()),
        ((VIP, 53), (CIP, 5353), &b"answer"[..])
    );
    // The same flow keeps its local port.
    let (_, out) = lab.send(0, &q);
    assert_eq!(parse(&out).src, (LIP, lport));
}

#[test]
fn exhausted_pool_refuses_new_syns_only_and_frees_after_the_hold() {
    // 64 ports, one worker: all of them its own.
    let mut lab = Lab::new(Proto::Tcp, ClientAddr::None, 1, (2000, 2063), 10);
    let mut ports = Vec::new();
    for i in 0..64u16 {
        let f = tcp(
            (CIP, 30000 + i),
            (VIP, 80),
            Seg {
                flags: "S",
                seq: ISN,
                ..Seg::default()
            },
            (MacAddr(CLIENT_MAC), P0_MAC),
        );
        let (v, out) = lab.send(0, &f);
        assert_eq!(v, Verdict::Forward { port: 1 }, "conn {i}");
        ports.push(parse(&out).src.1);
    }
    ports.sort();
    ports.dedup();
    assert_eq!(ports, (2000..=2063).collect::<Vec<_>>(), "every port once");
    let syn = tcp(
        (CIP, 31000),
        (VIP, 80),
        Seg {
            flags: "S",
            seq: ISN,
            ..Seg::default()
        },
        (MacAddr(CLIENT_MAC), P0_MAC),
    );
    let (v, _) = lab.send(0, &syn);
    assert_eq!(v, Verdict::Drop(DropReason::LaddrExhausted));
    assert_eq!(
        lab.fwds[0].drops.by_reason[DropReason::LaddrExhausted as usize],
        1
    );
    assert_eq!(lab.fwds[0].conns.len(), 64, "no entry for the refused SYN");
    assert_eq!(lab.laddrs(), vec![(LIP, 64, 1)]);
    // Established flows are untouched.
    let f = tcp(
        (CIP, 30000),
        (VIP, 80),
        Seg {
            flags: "A",
            seq: ISN + 1,
            ack: 1,
            ..Seg::default()
        },
        (MacAddr(CLIENT_MAC), P0_MAC),
    );
    assert_eq!(lab.send(0, &f).0, Verdict::Forward { port: 1 });

    // The SYN_RECV entries expire (60 s for a SYN_RECV... any timeout well
    // under 1000 s); their ports come back only after the 10 s hold.
    let t = 2000;
    lab.fwds[0].set_now(t);
    while lab.fwds[0].housekeeping(4096) > 0 {}
    assert_eq!(lab.fwds[0].conns.len(), 0);
    assert_eq!(lab.laddrs(), vec![(LIP, 0, 1)]);
    assert_eq!(lab.send(0, &syn).0, Verdict::Drop(DropReason::LaddrExhausted));
    lab.fwds[0].set_now(t + 10);
    assert_eq!(lab.send(0, &syn).0, Verdict::Forward { port: 1 });
}

#[test]
fn replies_reach_the_owner_of_their_port() {
    let mut lab = Lab::new(Proto::Tcp, ClientAddr::None, 2, (1024, 65535), 60);
    let mut redirected = 0;
    for i in 0..16u16 {
        let cip = Ipv4Addr::new(10, 1, 0, 20 + i as u8);
        lab.dir.shared.neigh.add_static(cip, MacAddr(CLIENT_MAC));
        let owner = owner_of(cip, Ipv4Addr::BROADCAST, 2) as usize;
        let syn = tcp(
            (cip, 40000),
            (VIP, 80),
            Seg {
                flags: "S",
                seq: ISN,
                ..Seg::default()
            },
            (MacAddr(CLIENT_MAC), P0_MAC),
        );
        // The SYN on the wrong worker goes to the client's owner, as for NAT.
        let (v, _) = lab.send_on(1 - owner, 0, &syn, false);
        assert_eq!(v, Verdict::Redirect { worker: owner as u16 });
        let (v, out) = lab.send_on(owner, 0, &syn, true);
        assert_eq!(v, Verdict::Forward { port: 1 });
        let lport = parse(&out).src.1;
        assert_eq!(
            owner_of_port(lport, 2) as usize,
            owner,
            "the port names the owner"
        );
        // The reply arrives on both workers in turn (RSS knows nothing of ports).
        let reply = server(
            lport,
            Seg {
                flags: "SA",
                seq: RS_ISN,
                ack: ISN + 1,
                ..Seg::default()
            },
        );
        let (v, _) = lab.send_on(1 - owner, 1, &reply, false);
        assert_eq!(v, Verdict::Redirect { worker: owner as u16 });
        let (v, out) = lab.send_on(owner, 1, &reply, true);
        redirected += 1;
        assert_eq!(v, Verdict::Forward { port: 0 });
        assert_eq!(parse(&out).dst, (cip, 40000));
        let (v, _) = lab.send_on(owner, 1, &reply, false);
        assert_eq!(v, Verdict::Forward { port: 0 });
    }
    let direct: u64 = lab.fwds.iter().map(|f| f.counters.fnat_replies_direct).sum();
    let via: u64 = lab.fwds.iter().map(|f| f.counters.fnat_replies_redirected).sum();
    assert_eq!((direct, via), (16, redirected));
}

/// `frame` (Ethernet + IPv4 without options) cut in two fragments at
/// `at` bytes of IP payload (a multiple of 8), with IP id `ident`.
fn fragments(frame: &[u8], at: usize, ident: u16) -> [Vec<u8>; 2] {
    let (head, payload) = (&frame[..34], &frame[34..]);
    let piece = |data: &[u8], offset: usize, more: bool| {
        let mut f = head.to_vec();
        f.extend_from_slice(data);
        let total = (20 + data.len()) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[18..20].copy_from_slice(&ident.to_be_bytes());
        let off = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
        f[20..22].copy_from_slice(&off.to_be_bytes());
        f[24..26].copy_from_slice(&[0, 0]);
        let c = !rvs_dp::wire::checksum::fold(rvs_dp::wire::checksum::sum(&f[14..34]));
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f
    };
    [piece(&payload[..at], 0, true), piece(&payload[at..], at, false)]
}

#[test]
fn reply_fragments_follow_the_first_to_the_owner() {
    let mut lab = Lab::new(Proto::Udp, ClientAddr::None, 2, (1024, 65535), 60);
    let owner = owner_of(CIP, Ipv4Addr::BROADCAST, 2) as usize;
    let other = 1 - owner;
    let q = udp((CIP, 5353), (VIP, 53), b"query", (MacAddr(CLIENT_MAC), P0_MAC));
    let (v, out) = lab.send_on(owner, 0, &q, false);
    assert_eq!(v, Verdict::Forward { port: 1 });
    let lport = parse(&out).src.1;
    let answer = udp((RIP, 8080), (LIP, lport), &[7u8; 100], (MacAddr(RS_MAC), P1_MAC));
    let [first, rest] = fragments(&answer, 32, 0x1234);
    // Both reach the other worker first (RSS hashes fragments by address only).
    let (v, _) = lab.send_on(other, 1, &first, false);
    assert_eq!(v, Verdict::Redirect { worker: owner as u16 });
    let (v, _) = lab.send_on(other, 1, &rest, false);
    assert_eq!(
        v,
        Verdict::Redirect { worker: owner as u16 },
        "the rest follows the first"
    );
    for (f, what) in [(&first, "first"), (&rest, "rest")] {
        let (v, out) = lab.send_on(owner, 1, f, true);
        assert_eq!(v, Verdict::Forward { port: 0 }, "{what}");
        assert_eq!(
            (&out[26..30], &out[30..34]),
            (&VIP.octets()[..], &CIP.octets()[..]),
            "{what}"
        );
        assert_eq!(
            rvs_dp::wire::checksum::fold(rvs_dp::wire::checksum::sum(&out[14..34])),
            0xffff,
            "{what}: IP checksum"
        );
    }
    assert_eq!(lab.fwds[owner].counters.fragments_followed, 1);
    // The rest of another datagram, whose first fragment was not seen: dropped,
    // not passed on.
    let [_, stray] = fragments(&answer, 32, 0x4321);
    assert_eq!(
        lab.send_on(other, 1, &stray, false).0,
        Verdict::Drop(DropReason::Fragment)
    );
}

#[test]
fn local_address_answers_arp_on_its_port_only() {
    let mut lab = Lab::tcp(ClientAddr::None);
    let arp = |target: Ipv4Addr, sender: Ipv4Addr, dst: MacAddr| {
        let mut f = vec![0xffu8; 6];
        f.extend_from_slice(&RS_MAC);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&RS_MAC);
        f.extend_from_slice(&sender.octets());
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target.octets());
        f.resize(60, 0);
        let _ = dst;
        f
    };
    let (v, out) = lab.send(1, &arp(LIP, RIP, P1_MAC));
    assert_eq!(v, Verdict::Forward { port: 1 });
    assert_eq!(&out[22..28], &P1_MAC.0, "our MAC for the LIP");
    // Not on the clients' port: the LIP is not on its subnet.
    let (v, _) = lab.send(0, &arp(LIP, CIP, P0_MAC));
    assert_ne!(v, Verdict::Forward { port: 0 });
}

#[test]
fn local_address_must_be_on_its_named_port() {
    let mut lab = Lab::tcp(ClientAddr::None);
    let before = lab.dir.shared.services.load().generation;
    for (addr, name) in [
        (Ipv4Addr::new(10, 9, 0, 1), "inside"),   // on no port's subnet
        (Ipv4Addr::new(10, 1, 0, 201), "inside"), // on the other port's
        (Ipv4Addr::new(10, 2, 0, 201), "nosuchport"),
        (Ipv4Addr::new(10, 2, 0, 1), "inside"), // the port's own address
    ] {
        let e = lab
            .dir
            .control
            .apply(&Command::AddLaddr(lab.key, laddr(addr, name)));
        assert_eq!(
            e,
            Err(IpvsError::LaddrNotOnPort {
                addr,
                port_name: name.into()
            })
        );
    }
    assert_eq!(
        lab.dir.shared.services.load().generation,
        before,
        "nothing applied"
    );
    assert_eq!(lab.laddrs(), vec![(LIP, 0, 0)]);
}

#[test]
fn removed_local_address_keeps_its_connections() {
    let mut lab = Lab::tcp(ClientAddr::None);
    let lport = open(&mut lab);
    lab.dir.apply(Command::AddLaddr(
        lab.key,
        laddr(Ipv4Addr::new(10, 2, 0, 201), "inside"),
    ));
    lab.dir.apply(Command::DelLaddr(lab.key, LIP));
    lab.refresh();
    // The old connection carries on both ways, the LIP still ours.
    let (v, _) = lab.send(
        1,
        &server(
            lport,
            Seg {
                flags: "SA",
                seq: RS_ISN,
                ack: ISN + 1,
                ..Seg::default()
            },
        ),
    );
    assert_eq!(v, Verdict::Forward { port: 0 });
    let (v, out) = lab.send(
        0,
        &client(Seg {
            flags: "A",
            seq: ISN + 1,
            ack: RS_ISN + 1,
            ..Seg::default()
        }),
    );
    assert_eq!(v, Verdict::Forward { port: 1 });
    assert_eq!(parse(&out).src, (LIP, lport));
    // New connections use the remaining LIP.
    let f = tcp(
        (CIP, 40001),
        (VIP, 80),
        Seg {
            flags: "S",
            seq: ISN,
            ..Seg::default()
        },
        (MacAddr(CLIENT_MAC), P0_MAC),
    );
    let (_, out) = lab.send(0, &f);
    assert_eq!(parse(&out).src.0, Ipv4Addr::new(10, 2, 0, 201));
}

#[test]
fn toa_rides_on_the_syn_and_the_handshake_ack() {
    let mut lab = Lab::tcp(ClientAddr::Toa);
    let (_, out) = lab.send(
        0,
        &client(Seg {
            flags: "S",
            seq: ISN,
            ..Seg::default()
        }),
    );
    let o = parse(&out);
    assert_eq!(o.toa, Some(SocketAddrV4::new(CIP, 40000)));
    let lport = o.src.1;
    // The server's MSS reaches the client 8 bytes smaller, room for TOA.
    let (_, out) = lab.send(
        1,
        &server(
            lport,
            Seg {
                flags: "SA",
                seq: RS_ISN,
                ack: ISN + 1,
                mss: Some(1460),
                ..Seg::default()
            },
        ),
    );
    assert_eq!(parse(&out).mss, Some(1452));
    // A full-sized request segment at that MSS still takes TOA, under the MTU.
    let full = vec![b'r'; 1452];
    let (v, out) = lab.send(
        0,
        &client(Seg {
            flags: "A",
            seq: ISN + 1,
            ack: RS_ISN + 1,
            payload: &full,
            ..Seg::default()
        }),
    );
    assert_eq!(v, Verdict::Forward { port: 1 });
    let o = parse(&out);
    assert_eq!(
        (o.toa, o.payload.len()),
        (Some(SocketAddrV4::new(CIP, 40000)), 1452)
    );
    assert!(out.len() - 14 <= 1500, "{} bytes", out.len() - 14);
    // Once the server's data is acked, no more.
    let (_, out) = lab.send(
        0,
        &client(Seg {
            flags: "A",
            seq: ISN + 1,
            ack: RS_ISN + 100,
            payload: b"x",
            ..Seg::default()
        }),
    );
    let o = parse(&out);
    assert_eq!((o.toa, o.payload.as_slice()), (None, &b"x"[..]));
    assert_eq!(lab.fwds[0].counters.toa_inserted, 2);
    assert_eq!(lab.fwds[0].counters.toa_skipped, 0);
}

#[test]
fn proxy_v2_header_then_shifted_sequence_both_ways() {
    let mut lab = Lab::tcp(ClientAddr::ProxyV2);
    let lport = open(&mut lab);
    let (_, out) = lab.send(
        1,
        &server(
            lport,
            Seg {
                flags: "SA",
                seq: RS_ISN,
                ack: ISN + 1,
                ..Seg::default()
            },
        ),
    );
    assert_eq!(parse(&out).ack, ISN + 1);
    let data = b"GET / HTTP/1.0\r\n\r\n";
    let (v, out) = lab.send(
        0,
        &client(Seg {
            flags: "AP",
            seq: ISN + 1,
            ack: RS_ISN + 1,
            payload: data,
            ..Seg::default()
        }),
    );
    assert_eq!(v, Verdict::Forward { port: 1 });
    let o = parse(&out);
    let n = 28u32; // v2 over IPv4
    assert_eq!(o.seq, ISN + 1);
    assert_eq!(o.payload.len(), n as usize + data.len());
    assert_eq!(&o.payload[..12], &rvs_dp::fnat::proxy::V2_SIGNATURE);
    assert_eq!(&o.payload[16..20], &CIP.octets(), "the client's address");
    assert_eq!(&o.payload[20..24], &VIP.octets());
    assert_eq!(u16::from_be_bytes([o.payload[24], o.payload[25]]), 40000);
    assert_eq!(&o.payload[n as usize..], data);
    // The server acks header and data, and SACKs a later block.
    let end = ISN + 1 + n + data.len() as u32;
    let (v, out) = lab.send(
        1,
        &server(
            lport,
            Seg {
                flags: "A",
                seq: RS_ISN + 1,
                ack: end,
                sack: Some((end + 100, end + 200)),
                ..Seg::default()
            },
        ),
    );
    assert_eq!(v, Verdict::Forward { port: 0 });
    let o = parse(&out);
    let cend = ISN + 1 + data.len() as u32;
    assert_eq!(o.ack, cend, "the client's numbering");
    assert_eq!(o.sack, vec![(cend + 100, cend + 200)]);
    // Later client segments, retransmits included, are shifted.
    let (_, out) = lab.send(
        0,
        &client(Seg {
            flags: "A",
            seq: cend,
            ack: RS_ISN + 1,
            payload: b"more",
            ..Seg::default()
        }),
    );
    let o = parse(&out);
    assert_eq!((o.seq, o.payload.as_slice()), (cend + n, &b"more"[..]));
    let (_, out) = lab.send(
        0,
        &client(Seg {
            flags: "AP",
            seq: ISN + 1,
            ack: RS_ISN + 1,
            payload: data,
            ..Seg::default()
        }),
    );
    let o = parse(&out);
    assert_eq!(
        (o.seq, o.payload.as_slice()),
        (ISN + 1 + n, &data[..]),
        "acked header: not again"
    );
    assert_eq!(lab.fwds[0].counters.proxy_inserted, 1);
}

#[test]
fn proxy_header_without_room_drops_instead_of_corrupting() {
    let mut lab = Lab::tcp(ClientAddr::ProxyV1);
    let lport = open(&mut lab);
    lab.send(
        1,
        &server(
            lport,
            Seg {
                flags: "SA",
                seq: RS_ISN,
                ack: ISN + 1,
                ..Seg::default()
            },
        ),
    );
    let seg = client(Seg {
        flags: "AP",
        seq: ISN + 1,
        ack: RS_ISN + 1,
        payload: b"hi",
        ..Seg::default()
    });
    // A buffer with no tailroom: the header cannot go in front of the data.
    let mut b = VecBuf::with_room(&seg, 128, 0);
    let v = lab.fwds[0].process(0, &mut b, false);
    assert_eq!(v, Verdict::Drop(DropReason::TooBig));
    assert_eq!(lab.fwds[0].drops.by_reason[DropReason::TooBig as usize], 1);
    // With room, the same segment goes, header first.
    let (v, out) = lab.send(0, &seg);
    assert_eq!(v, Verdict::Forward { port: 1 });
    assert!(parse(&out)
        .payload
        .starts_with(b"PROXY TCP4 10.1.0.10 10.1.0.100 40000 80\r\nhi"));
}

#[test]
fn icmp_errors_translated_both_ways() {
    let mut lab = Lab::tcp(ClientAddr::None);
    let lport = open(&mut lab);
    // A router on the servers' side: fragmentation needed, about LIP:lport → RIP:8080.
    let quoted = server(
        8080,
        Seg {
            flags: "A",
            seq: ISN + 1,
            ..Seg::default()
        },
    );
    let mut quoted = quoted[14..14 + 28].to_vec();
    quoted[12..16].copy_from_slice(&LIP.octets());
    quoted[16..20].copy_from_slice(&RIP.octets());
    quoted[20..22].copy_from_slice(&lport.to_be_bytes());
    quoted[22..24].copy_from_slice(&8080u16.to_be_bytes());
    let router = Ipv4Addr::new(10, 2, 0, 254);
    let b = PacketBuilder::ethernet2(RS_MAC, P1_MAC.0)
        .ipv4(router.octets(), LIP.octets(), 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 },
        ));
    let mut f = Vec::new();
    b.write(&mut f, &quoted).unwrap();
    let (v, out) = lab.send(1, &f);
    assert_eq!(v, Verdict::Forward { port: 0 });
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(ip.header().destination_addr(), CIP);
    assert_eq!(ip.header().source_addr(), VIP);
    let inner = &out[14 + 20 + 8..];
    assert_eq!(&inner[12..16], &CIP.octets(), "quoted source: the client");
    assert_eq!(&inner[16..20], &VIP.octets(), "quoted destination: the VIP");
    assert_eq!(u16::from_be_bytes([inner[20], inner[21]]), 40000);
    assert_eq!(u16::from_be_bytes([inner[22], inner[23]]), 80);
    let icmp = &out[14 + 20..];
    assert_eq!(
        rvs_dp::wire::checksum::fold(rvs_dp::wire::checksum::sum(icmp)),
        0xffff,
        "ICMP checksum"
    );

    // The client side: port unreachable about VIP:80 → CIP:40000.
    let quoted = client(Seg {
        flags: "A",
        ..Seg::default()
    });
    let mut quoted = quoted[14..14 + 28].to_vec();
    quoted[12..16].copy_from_slice(&VIP.octets());
    quoted[16..20].copy_from_slice(&CIP.octets());
    quoted[20..22].copy_from_slice(&80u16.to_be_bytes());
    quoted[22..24].copy_from_slice(&40000u16.to_be_bytes());
    let b = PacketBuilder::ethernet2(CLIENT_MAC, P0_MAC.0)
        .ipv4(CIP.octets(), VIP.octets(), 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ));
    let mut f = Vec::new();
    b.write(&mut f, &quoted).unwrap();
    let (v, out) = lab.send(0, &f);
    assert_eq!(v, Verdict::Forward { port: 1 });
    assert_eq!(&out[26..30], &LIP.octets(), "from the LIP");
    assert_eq!(&out[30..34], &RIP.octets(), "to the real server");
    let inner = &out[14 + 20 + 8..];
    assert_eq!(&inner[12..16], &RIP.octets());
    assert_eq!(&inner[16..20], &LIP.octets());
    assert_eq!(u16::from_be_bytes([inner[20], inner[21]]), 8080);
    assert_eq!(u16::from_be_bytes([inner[22], inner[23]]), lport);
    assert_eq!(lab.fwds[0].counters.icmp_translated, 2);
}

#[test]
fn proxy_header_within_the_mtu_cuts_the_payload() {
    let mut lab = Lab::tcp(ClientAddr::ProxyV2);
    let lport = open(&mut lab);
    lab.send(
        1,
        &server(
            lport,
            Seg {
                flags: "SA",
                seq: RS_ISN,
                ack: ISN + 1,
                ..Seg::default()
            },
        ),
    );
    // A full-size first segment: header + all of it would pass 1500.
    let big: Vec<u8> = (0..1460u32).map(|i| i as u8).collect();
    let (v, out) = lab.send(
        0,
        &client(Seg {
            flags: "A",
            seq: ISN + 1,
            ack: RS_ISN + 1,
            payload: &big,
            ..Seg::default()
        }),
    );
    assert_eq!(v, Verdict::Forward { port: 1 });
    assert_eq!(out.len() - 14, 1500, "up to the MTU");
    let o = parse(&out);
    assert_eq!(&o.payload[..12], &rvs_dp::fnat::proxy::V2_SIGNATURE);
    assert_eq!(
        &o.payload[28..],
        &big[..1460 - 28],
        "the tail is cut, the client resends it"
    );
    // The server acks what it got: the client hears of its first 1432 bytes.
    let (_, out) = lab.send(
        1,
        &server(
            lport,
            Seg {
                flags: "A",
                seq: RS_ISN + 1,
                ack: ISN + 1 + 1460,
                ..Seg::default()
            },
        ),
    );
    assert_eq!(parse(&out).ack, ISN + 1 + 1432);
}

#[test]
fn syn_proxy_with_fullnat_is_refused() {
    let mut lab = Lab::tcp(ClientAddr::None);
    let mut spec = lab::service(Proto::Tcp, VIP, 443, "rr", None);
    spec.syn_proxy = true;
    let key = spec.key();
    lab.dir.apply(Command::AddService(spec));
    let d = lab::dest(RIP, 443, 1, ForwardMethod::FullNat);
    assert!(matches!(
        lab.dir.control.apply(&Command::AddDest(key, d)),
        Err(IpvsError::SynProxyNeedsNat { .. })
    ));
}

#[test]
fn local_address_answers_ping() {
    let mut lab = Lab::tcp(ClientAddr::None);
    let b = PacketBuilder::ethernet2(RS_MAC, P1_MAC.0)
        .ipv4(RIP.octets(), LIP.octets(), 64)
        .icmpv4_echo_request(7, 1);
    let mut f = Vec::new();
    b.write(&mut f, b"ping").unwrap();
    let (v, out) = lab.send(1, &f);
    assert_eq!(v, Verdict::Forward { port: 1 });
    assert_eq!(&out[26..30], &LIP.octets(), "from the LIP");
    assert_eq!(&out[30..34], &RIP.octets());
    assert_eq!(out[34], 0, "echo reply");
}

#[test]
fn proxy_connection_fragments_are_dropped_both_ways() {
    let mut lab = Lab::tcp(ClientAddr::ProxyV2);
    let lport = open(&mut lab);
    let mut f = client(Seg {
        flags: "A",
        seq: ISN + 1,
        ack: RS_ISN + 1,
        payload: b"abcdefgh",
        ..Seg::default()
    });
    f[14 + 6] = 0x20; // MF, offset 0: a first fragment
    f[14 + 10] = 0;
    f[14 + 11] = 0;
    let c = !rvs_dp::wire::checksum::fold(rvs_dp::wire::checksum::sum(&f[14..34]));
    f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(lab.send(0, &f).0, Verdict::Drop(DropReason::Fragment));
    let mut r = server(
        lport,
        Seg {
            flags: "A",
            seq: RS_ISN + 1,
            ack: ISN + 1,
            payload: b"abcdefgh",
            ..Seg::default()
        },
    );
    r[14 + 6] = 0x20;
    r[14 + 10] = 0;
    r[14 + 11] = 0;
    let c = !rvs_dp::wire::checksum::fold(rvs_dp::wire::checksum::sum(&r[14..34]));
    r[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(lab.send(1, &r).0, Verdict::Drop(DropReason::Fragment));
}

/// With kernel interfaces (ownership following the kernel's addresses), a
/// LIP is still always the director's: ARP answered, replies forwarded,
/// nothing to it handed to the kernel.
#[test]
fn local_addresses_stay_owned_with_kernel_interfaces() {
    let mut dir = LabDirector::new_with(
        vec![
            port(P0_MAC, Ipv4Addr::new(10, 1, 0, 1), 1500),
            port(P1_MAC, Ipv4Addr::new(10, 2, 0, 1), 1500),
        ],
        &[],
        &[(CIP, MacAddr(CLIENT_MAC)), (RIP, MacAddr(RS_MAC))],
        1,
        CoreOptions::default(),
        |s| {
            s.with_port_names(vec!["outside".into(), "inside".into()])
                .with_kernel_ports(&[true, true])
        },
    );
    // The VIP owned (as the address watcher would publish it), the LIP not.
    dir.shared
        .owned
        .store(std::sync::Arc::new(rvs_dp::ownership::Owned::only(1, [VIP])));
    let spec = lab::service(Proto::Tcp, VIP, 80, "rr", None);
    let key = spec.key();
    dir.apply(Command::AddService(spec));
    dir.real_server(key, RIP, 8080, 1, ForwardMethod::FullNat);
    dir.apply(Command::AddLaddr(key, laddr(LIP, "inside")));
    let mut lab = Lab {
        fwds: vec![dir.forwarder(0, 1024, 100)],
        dir,
        key,
    };
    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&RS_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&RS_MAC);
    arp.extend_from_slice(&RIP.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&LIP.octets());
    arp.resize(60, 0);
    assert_eq!(lab.send(1, &arp).0, Verdict::Forward { port: 1 });
    let lport = open(&mut lab);
    let (v, _) = lab.send(
        1,
        &server(
            lport,
            Seg {
                flags: "SA",
                seq: RS_ISN,
                ack: ISN + 1,
                ..Seg::default()
            },
        ),
    );
    assert_eq!(v, Verdict::Forward { port: 0 });
    let (v, _) = lab.send(
        1,
        &server(
            lport ^ 1,
            Seg {
                flags: "A",
                ..Seg::default()
            },
        ),
    );
    assert_eq!(v, Verdict::Drop(DropReason::OutNoConn), "not the kernel's");
}

/// A NIC that takes every rule (masks too).
struct AnyRule(u64);

impl FlowDevice for AnyRule {
    type Handle = u64;
    fn validate(&mut self, _port: u16, _rule: &FlowRule) -> Result<(), String> {
        Ok(())
    }
    fn create(&mut self, _port: u16, _rule: &FlowRule) -> Result<u64, String> {
        self.0 += 1;
        Ok(self.0)
    }
    fn destroy(&mut self, _port: u16, _h: u64) -> Result<(), String> {
        Ok(())
    }
}

#[test]
fn replies_steered_by_rules_are_counted_apart() {
    let mut lab = Lab::new(Proto::Tcp, ClientAddr::None, 2, (1024, 65535), 60);
    lab.dir.control.set_steering(Box::new(Steering::new(
        AnyRule(0),
        SteerConfig {
            enabled: true,
            workers: 2,
            ports: 1024..=65535,
            max_rules: 4096,
        },
    )));
    // The next change steers: port 1 ("inside") gets classes for the LIP.
    let lip2 = Ipv4Addr::new(10, 2, 0, 201);
    lab.dir.apply(Command::AddLaddr(lab.key, laddr(lip2, "inside")));
    lab.refresh();
    let (r, _) = lab.dir.control.handle(&Command::FlowSteering, Vec::new, Vec::new);
    let Reply::FlowSteering(ports) = r else {
        panic!("{r:?}")
    };
    assert_eq!(ports.len(), 1);
    let p = &ports[0];
    assert_eq!(
        (p.port, p.name.as_str(), p.mode.as_str(), p.rules),
        (1, "inside", "classes", 4)
    );

    let owner = owner_of(CIP, Ipv4Addr::BROADCAST, 2) as usize;
    let syn = client(Seg {
        flags: "S",
        seq: ISN,
        ..Seg::default()
    });
    let (v, out) = lab.send_on(owner, 0, &syn, false);
    assert_eq!(v, Verdict::Forward { port: 1 });
    let lport = parse(&out).src.1;
    let synack = server(
        lport,
        Seg {
            flags: "SA",
            seq: RS_ISN,
            ack: ISN + 1,
            ..Seg::default()
        },
    );
    // On its owner, from the LIP's port: the rule put it there.
    assert_eq!(
        lab.send_on(owner, 1, &synack, false).0,
        Verdict::Forward { port: 0 }
    );
    // Established: the fast path counts alike.
    let ack = client(Seg {
        flags: "A",
        seq: ISN + 1,
        ack: RS_ISN + 1,
        ..Seg::default()
    });
    assert_eq!(lab.send_on(owner, 0, &ack, false).0, Verdict::Forward { port: 1 });
    let data = server(
        lport,
        Seg {
            flags: "PA",
            seq: RS_ISN + 1,
            ack: ISN + 1,
            payload: b"hello",
            ..Seg::default()
        },
    );
    assert_eq!(
        lab.send_on(owner, 1, &data, false).0,
        Verdict::Forward { port: 0 }
    );
    // Through the redirect, or on another port than the LIP's: not steered.
    assert_eq!(lab.send_on(owner, 1, &data, true).0, Verdict::Forward { port: 0 });
    let on_port0 = tcp(
        (RIP, 8080),
        (LIP, lport),
        Seg {
            flags: "PA",
            seq: RS_ISN + 1,
            ack: ISN + 1,
            payload: b"hello",
            ..Seg::default()
        },
        (MacAddr(RS_MAC), P0_MAC),
    );
    assert_eq!(
        lab.send_on(owner, 0, &on_port0, false).0,
        Verdict::Forward { port: 0 }
    );
    let c = &lab.fwds[owner].counters;
    assert_eq!(
        (
            c.fnat_replies_steered,
            c.fnat_replies_redirected,
            c.fnat_replies_direct
        ),
        (2, 1, 1)
    );

    // The second LIP gone: its rules go, the first one's stay.
    lab.dir.apply(Command::DelLaddr(lab.key, lip2));
    let (r, _) = lab.dir.control.handle(&Command::FlowSteering, Vec::new, Vec::new);
    let Reply::FlowSteering(ports) = r else {
        panic!("{r:?}")
    };
    assert_eq!(ports[0].rules, 2, "only LIP's two class rules are left");
}
