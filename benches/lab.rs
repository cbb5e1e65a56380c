//! Shared setup of the core benchmarks and the profiling driver: a director
//! with two ports, one VIP carrying a NAT, a DR, a TUN and a FULLNAT service
//! (rr over three real servers; FULLNAT from one local address), clients
//! behind a router, and a worker's table filled with ESTABLISHED flows.

#![allow(dead_code)]

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rvs_dp::conn::{FlowKey, TcpState};
use rvs_dp::core::{CoreOptions, Forwarder, Shared, Verdict};
use rvs_dp::packet::{PacketBuf, VecBuf};
use rvs_dp::service::{ForwardMethod, Proto};
use rvs_dp::wire::ethernet::MacAddr;

#[path = "../dp/tests/common/lab.rs"]
mod common_lab;
use common_lab::{port, LabDirector};

pub const P0_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xd0, 0]);
pub const P1_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xd0, 1]);
pub const GW_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0x99, 0x99]);
pub const DIP0: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub const DIP1: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
/// Clients sit behind a router, so a million of them need one neighbour entry.
pub const CLIENT_GW: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 254);
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 100);
pub const NAT_PORT: u16 = 80;
pub const DR_PORT: u16 = 81;
pub const TUN_PORT: u16 = 82;
pub const FNAT_PORT: u16 = 83;
/// A UDP NAT service, as `scripts/bench.sh` forwards (its traffic is UDP).
pub const UDP_PORT: u16 = 53;
/// The FULLNAT service's local address, on port 1.
pub const LIP: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 200);
pub const RS_NAT_PORT: u16 = 8080;
/// Head room above N for the new-connection bench: SYNs go in batches of
/// this size, and the batch is removed again outside the timed section.
pub const SLACK: u32 = 1024;
pub const NOW: u32 = 100;

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;

pub fn rs_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 2, 0, 10 + i)
}

/// Flow `i`'s client: 16 ports per address in 172.16.0.0/12 (established
/// flows from 172.16/13, the new-connection SYNs from 172.24/13).
pub fn client(i: u32, syn_range: bool) -> (Ipv4Addr, u16) {
    let base = if syn_range { 0xAC18_0000u32 } else { 0xAC10_0000u32 };
    (Ipv4Addr::from(base + (i >> 4) + 1), 10_000 + (i & 15) as u16)
}

pub fn shared() -> Arc<Shared> {
    let mut neighbours = vec![(CLIENT_GW, GW_MAC)];
    neighbours.extend((1..=3).map(|i| (rs_ip(i), MacAddr([2, 0, 0, 0, 2, i]))));
    let mut dir = LabDirector::new_with(
        vec![port(P0_MAC, DIP0, 1500), port(P1_MAC, DIP1, 1500)],
        &[(Ipv4Addr::new(172, 16, 0, 0), 12, CLIENT_GW)],
        &neighbours,
        1,
        CoreOptions::default(),
        // No TIME_WAIT hold: the new-connection cases free their ports
        // outside the timed section and lease them again at once.
        |s| {
            s.with_laddr_config(rvs_dp::fnat::laddr::LaddrConfig {
                ports: 1024..=65535,
                hold: 0,
            })
        },
    );
    for (vport, method) in [
        (NAT_PORT, ForwardMethod::Nat),
        (DR_PORT, ForwardMethod::Dr),
        (TUN_PORT, ForwardMethod::Tun),
        (FNAT_PORT, ForwardMethod::FullNat),
    ] {
        let rport = if matches!(method, ForwardMethod::Nat | ForwardMethod::FullNat) {
            RS_NAT_PORT
        } else {
            vport
        };
        let key = dir.service(Proto::Tcp, VIP, vport, "rr", None);
        for i in 1..=3 {
            dir.real_server(key, rs_ip(i), rport, 1, method);
        }
        if method == ForwardMethod::FullNat {
            dir.apply(rvs_proto::command::Command::AddLaddr(
                key,
                rvs_proto::command::LaddrSpec {
                    addr: LIP,
                    port_name: "port1".into(),
                },
            ));
        }
    }
    let key = dir.service(Proto::Udp, VIP, UDP_PORT, "rr", None);
    for i in 1..=3 {
        dir.real_server(key, rs_ip(i), UDP_PORT, 1, ForwardMethod::Nat);
    }
    dir.shared
}

pub fn forwarder(s: &Arc<Shared>, n: u32) -> Forwarder {
    let mut f = Forwarder::new(0, s.clone(), n + SLACK);
    f.set_now(NOW);
    f.refresh();
    f
}

/// Ethernet + IPv4 + TCP, no payload, padded to Ethernet's 60-byte minimum.
pub const FRAME_LEN: usize = 60;

pub fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

pub fn sum16(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

/// Zeroes `f` and writes Ethernet (to `dst_mac`) and an IPv4 header
/// (`src` -> `dst`, protocol `proto`, total length `total`, TTL 64, DF if
/// `df`) with its checksum; the transport header and payload are the
/// caller's, from byte 34.
fn eth_ipv4(
    f: &mut [u8],
    dst_mac: MacAddr,
    (src, dst): (Ipv4Addr, Ipv4Addr),
    proto: u8,
    total: u16,
    df: bool,
) {
    f.fill(0);
    f[..6].copy_from_slice(&dst_mac.0);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0x77, 0x77]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    if df {
        ip[6] = 0x40;
    }
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = fold(sum16(ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

pub fn tcp_frame(
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    out: &mut [u8],
) {
    let f = &mut out[..FRAME_LEN];
    eth_ipv4(f, dst_mac, (src, dst), 6, 40, true);
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
    tcp[8..12].copy_from_slice(&(u32::from(flags & ACK != 0)).to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let pseudo = sum16(&src.octets()) + sum16(&dst.octets()) + 6 + 20;
    let c = fold(pseudo + sum16(tcp));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
}

/// Ethernet + IPv4 + UDP with 18 bytes of payload: 60 bytes, the 64-byte
/// frames of `scripts/bench.sh` without their FCS; the UDP checksum set.
pub fn udp_frame(dst_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, out: &mut [u8]) {
    const PAYLOAD: usize = FRAME_LEN - 42;
    let f = &mut out[..FRAME_LEN];
    eth_ipv4(f, dst_mac, (src, dst), 17, (20 + 8 + PAYLOAD) as u16, false);
    let udp = &mut f[34..];
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&((8 + PAYLOAD) as u16).to_be_bytes());
    for (i, b) in udp[8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let len = (8 + PAYLOAD) as u32;
    let pseudo = sum16(&src.octets()) + sum16(&dst.octets()) + 17 + len;
    let c = fold(pseudo + sum16(udp));
    udp[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
}

/// Opens `n` UDP NAT flows (one datagram each) and returns their frames,
/// client → VIP, in a shuffled order.
pub fn open_udp_flows(f: &mut Forwarder, n: u32) -> Frames {
    let mut buf = VecBuf::new(&[0u8; FRAME_LEN]);
    let mut fr = [0u8; 64];
    for i in 0..n {
        let (cip, cport) = client(i, false);
        udp_frame(P0_MAC, cip, VIP, cport, UDP_PORT, &mut fr);
        assert_eq!(send(f, 0, &fr, &mut buf), Verdict::Forward { port: 1 });
    }
    assert_eq!(f.conns.len(), n as usize);
    let mut ins = Frames::with_capacity(n as usize);
    for &i in &shuffled(n) {
        let (cip, cport) = client(i, false);
        ins.push(|b| udp_frame(P0_MAC, cip, VIP, cport, UDP_PORT, b));
    }
    ins
}

/// Frames at a fixed stride in one allocation, walked round-robin.
pub struct Frames {
    data: Vec<u8>,
    pub n: usize,
}

impl Frames {
    pub fn with_capacity(n: usize) -> Frames {
        Frames {
            data: Vec::with_capacity(n * 64),
            n: 0,
        }
    }
    pub fn push(&mut self, build: impl FnOnce(&mut [u8])) {
        let at = self.data.len();
        self.data.resize(at + 64, 0);
        build(&mut self.data[at..at + 64]);
        self.n += 1;
    }
    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        &self.data[i * 64..i * 64 + FRAME_LEN]
    }
}

/// Deterministic shuffle (xorshift Fisher-Yates): no extra dependency.
pub fn shuffled(n: u32) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n).collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

pub fn send(f: &mut Forwarder, port: u16, frame: &[u8], buf: &mut VecBuf) -> Verdict {
    buf.reset(frame);
    f.process(port, buf, false)
}

/// Opens `n` connections to `vport` (SYN, the SYN-ACK for NAT, then ACK, so
/// each ends ESTABLISHED). Returns each flow's real server.
pub fn open_flows(f: &mut Forwarder, n: u32, vport: u16) -> Vec<(Ipv4Addr, u16)> {
    let nat = vport == NAT_PORT;
    let fnat = vport == FNAT_PORT;
    let mut buf = VecBuf::new(&[0u8; FRAME_LEN]);
    let mut fr = [0u8; 64];
    let mut rs = Vec::with_capacity(n as usize);
    for i in 0..n {
        let (cip, cport) = client(i, false);
        tcp_frame(P0_MAC, cip, VIP, cport, vport, SYN, &mut fr);
        assert_eq!(send(f, 0, &fr, &mut buf), Verdict::Forward { port: 1 });
        let c = f
            .conns
            .lookup_in(FlowKey::new(Proto::Tcp, cip, cport, VIP, vport), NOW)
            .and_then(|id| f.conns.get(id))
            .expect("the SYN made a connection");
        let (rip, rport) = (c.rip(), c.rport());
        rs.push((rip, rport));
        if nat {
            tcp_frame(P1_MAC, rip, cip, rport, cport, SYN | ACK, &mut fr);
            assert_eq!(send(f, 1, &fr, &mut buf), Verdict::Forward { port: 0 });
        }
        if fnat {
            let (lip, lport) = fnat_laddr(f, cip, cport);
            tcp_frame(P1_MAC, rip, lip, rport, lport, SYN | ACK, &mut fr);
            assert_eq!(send(f, 1, &fr, &mut buf), Verdict::Forward { port: 0 });
        }
        tcp_frame(P0_MAC, cip, VIP, cport, vport, ACK, &mut fr);
        assert_eq!(send(f, 0, &fr, &mut buf), Verdict::Forward { port: 1 });
    }
    assert_eq!(f.conns.len(), n as usize);
    let established = f
        .conns
        .iter()
        .filter(|(_, c)| c.state() == TcpState::Established)
        .count();
    assert_eq!(established, n as usize, "every flow ESTABLISHED");
    rs
}

/// The local address FULLNAT flow `cip:cport` leaves with.
pub fn fnat_laddr(f: &Forwarder, cip: Ipv4Addr, cport: u16) -> (Ipv4Addr, u16) {
    let s = f
        .conns
        .lookup_in(FlowKey::new(Proto::Tcp, cip, cport, VIP, FNAT_PORT), NOW)
        .and_then(|id| f.conns.fnat(id))
        .expect("a FULLNAT connection");
    (s.laddr.lip, s.laddr.lport)
}

/// The real servers' replies to FULLNAT flows opened by `open_flows`
/// (RIP:rport → LIP:lport), in `flow_frames`' shuffled order.
pub fn fnat_replies(f: &Forwarder, n: u32, rs: &[(Ipv4Addr, u16)]) -> Frames {
    let mut outs = Frames::with_capacity(n as usize);
    for &i in &shuffled(n) {
        let (cip, cport) = client(i, false);
        let (lip, lport) = fnat_laddr(f, cip, cport);
        let (rip, rport) = rs[i as usize];
        outs.push(|b| tcp_frame(P1_MAC, rip, lip, rport, lport, ACK, b));
    }
    outs
}

/// One more ACK per flow opened by `open_flows`, in a shuffled order: client
/// → VIP, and, given the real servers, the NAT replies.
pub fn flow_frames(n: u32, vport: u16, replies_from: Option<&[(Ipv4Addr, u16)]>) -> (Frames, Option<Frames>) {
    let order = shuffled(n);
    let mut ins = Frames::with_capacity(n as usize);
    let mut outs = replies_from.map(|_| Frames::with_capacity(n as usize));
    for &i in &order {
        let (cip, cport) = client(i, false);
        ins.push(|b| tcp_frame(P0_MAC, cip, VIP, cport, vport, ACK, b));
        if let (Some(o), Some(rs)) = (outs.as_mut(), replies_from) {
            let (rip, rport) = rs[i as usize];
            o.push(|b| tcp_frame(P1_MAC, rip, cip, rport, cport, ACK, b));
        }
    }
    (ins, outs)
}

/// Times `iters` packets from `frames`, continuing where the last call stopped.
pub fn run(f: &mut Forwarder, port: u16, frames: &Frames, cursor: &mut usize, iters: u64) -> Duration {
    run_with_csum(f, port, frames, cursor, iters, None)
}

/// As `run`, each frame's IPv4 header checksum reported by the "NIC" as
/// `csum` (`PacketBuf::rx_ip_csum`).
pub fn run_with_csum(
    f: &mut Forwarder,
    port: u16,
    frames: &Frames,
    cursor: &mut usize,
    iters: u64,
    csum: Option<bool>,
) -> Duration {
    let mut buf = VecBuf::new(frames.get(0));
    buf.set_rx_ip_csum(csum);
    let mut i = *cursor;
    let start = Instant::now();
    for _ in 0..iters {
        buf.reset(frames.get(i));
        black_box(f.process(port, &mut buf, false));
        i += 1;
        if i == frames.n {
            i = 0;
        }
    }
    let t = start.elapsed();
    *cursor = i;
    t
}

/// As `run`, through `Forwarder::process_burst` in bursts of 32, as the
/// DPDK worker calls it (with the table's burst warm-up above 32K conns).
pub fn run_burst(f: &mut Forwarder, port: u16, frames: &Frames, cursor: &mut usize, iters: u64) -> Duration {
    const B: usize = 32;
    let mut bufs: Vec<VecBuf> = (0..B).map(|_| VecBuf::new(frames.get(0))).collect();
    let mut verdicts = [Verdict::Consumed { learned: None }; B];
    let mut i = *cursor;
    let mut done = 0u64;
    let start = Instant::now();
    while done < iters {
        let k = (iters - done).min(B as u64) as usize;
        for b in bufs.iter_mut().take(k) {
            b.reset(frames.get(i));
            i += 1;
            if i == frames.n {
                i = 0;
            }
        }
        f.process_burst(port, &mut bufs[..k], &mut verdicts[..k]);
        black_box(&verdicts);
        done += k as u64;
    }
    let t = start.elapsed();
    *cursor = i;
    t
}

/// The same loop without `process`: the cost of refilling the buffer.
pub fn run_reset_only(frames: &Frames, cursor: &mut usize, iters: u64) -> Duration {
    let mut buf = VecBuf::new(frames.get(0));
    let mut i = *cursor;
    let start = Instant::now();
    for _ in 0..iters {
        buf.reset(frames.get(i));
        black_box(buf.data_mut());
        i += 1;
        if i == frames.n {
            i = 0;
        }
    }
    let t = start.elapsed();
    *cursor = i;
    t
}

/// Every frame once, untimed: checks the verdict and warms the path.
pub fn check_all(f: &mut Forwarder, port: u16, frames: &Frames, want: Verdict) {
    let mut buf = VecBuf::new(frames.get(0));
    for i in 0..frames.n {
        assert_eq!(send(f, port, frames.get(i), &mut buf), want, "frame {i}");
    }
}

pub fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}
