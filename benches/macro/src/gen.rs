//! Traffic for the macro-benchmarks: client → VIP frames written to a pcap
//! that DPDK's `net_pcap` PMD replays with `infinite_rx=1`.
//!
//! Every frame is addressed to the director's port MAC and to the VIP, with
//! valid IPv4 and L4 checksums, so rvs-dp's full per-packet path runs (no
//! early drop on a bad checksum or a foreign MAC). Flow `i` is client
//! `client_base + i` (skipping clients other workers own, with `owner`), so
//! flows are distinct by address and a 1M-flow file needs no port juggling.

use std::io::{self, Write};
use std::net::Ipv4Addr;

use rvs_dp::core::owner_of;

/// Frame sizes on the wire including the 4-byte FCS, as load testers count
/// them; the pcap holds the frame without FCS.
pub const FCS: usize = 4;
/// Simple IMIX: 7 × 64 B, 4 × 594 B, 1 × 1518 B (average 361.8 B).
pub const IMIX: [usize; 12] = [64, 594, 64, 64, 594, 64, 1518, 64, 594, 64, 64, 594];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// UDP datagrams: every packet can create a connection.
    Udp,
    /// TCP: a flow's first packet is a SYN, later ones are ACKs.
    Tcp,
    /// TCP SYNs only, one per flow (new-connection rate).
    Syn,
    /// TCP, flow after flow: a SYN then `HANDSHAKE_FRAMES - 1` ACKs, back to
    /// back. The client's third packet finds the connection ESTABLISHED: with
    /// the kernel's default `sync_threshold` (3 50) a sync master sends it
    /// then (new-connection rate with sync).
    Handshake,
}

/// Frames per flow of `Kind::Handshake`.
pub const HANDSHAKE_FRAMES: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// One frame size (bytes on the wire, FCS included), 64..=1518.
    Fixed(usize),
    Imix,
}

#[derive(Clone, Debug)]
pub struct Spec {
    pub kind: Kind,
    pub size: Size,
    pub flows: u32,
    /// Frames in the file; flows are sent round robin (0 = one per flow).
    pub packets: u32,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub vip: Ipv4Addr,
    pub vport: u16,
    pub client_base: Ipv4Addr,
    /// Only clients that worker `k` of `n` owns (rvs-dp's `owner_of`; the
    /// benchmark's services are not persistent, so no ownership mask).
    pub owner: Option<(u16, u16)>,
    /// SYN flood mixed in: every other frame is a SYN from a never-seen client
    /// (`flood_base + j`) to `vip:flood_vport`. The file then holds
    /// `2 * flood_syns` frames.
    pub flood_syns: u32,
    pub flood_vport: u16,
    pub flood_base: Ipv4Addr,
    /// FULLNAT with a PROXY header (kind `Tcp`): see `FnatStream`.
    pub fnat_stream: Option<FnatStream>,
}

/// A FULLNAT TCP stream with a PROXY header of `hdr_len` bytes, as a lone
/// director sees it once established: each flow's SYN (sequence S), then the
/// real server's ack covering the header (RIP:rport → LIP:lport_first + i,
/// in the flows' order, as a lone worker leases the ports), then the flows'
/// data at S + 1, which the director shifts by the header's length.
#[derive(Clone, Copy, Debug)]
pub struct FnatStream {
    pub rip: Ipv4Addr,
    pub rport: u16,
    pub lip: Ipv4Addr,
    pub lport_first: u16,
    pub hdr_len: u32,
    pub rs_mac: [u8; 6],
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            kind: Kind::Udp,
            size: Size::Fixed(64),
            flows: 1024,
            packets: 0,
            dst_mac: [0x02, 0, 0, 0, 0, 0x01],
            src_mac: [0x02, 0, 0, 0, 0, 0xaa],
            vip: Ipv4Addr::new(10, 1, 0, 100),
            vport: 80,
            client_base: Ipv4Addr::new(11, 0, 0, 1),
            owner: None,
            flood_syns: 0,
            flood_vport: 80,
            flood_base: Ipv4Addr::new(12, 0, 0, 1),
            fnat_stream: None,
        }
    }
}

pub const PROTO_TCP: u8 = rvs_dp::wire::IpProtocol::TCP;
pub const PROTO_UDP: u8 = rvs_dp::wire::IpProtocol::UDP;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// One frame, as the director receives it.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub proto: u8,
    pub tcp_flags: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub ident: u16,
    pub seq: u32,
    /// The acknowledgment number of an ACK (1 in the generated flows).
    pub ack: u32,
    /// Bytes on the wire with FCS (the buffer gets 4 less).
    pub wire_len: usize,
}

/// Writes `f` into `buf` (cleared first) with valid checksums. Frames shorter
/// than the headers are padded to the Ethernet minimum; TCP carries no payload
/// when the frame is minimal, so a SYN has none.
pub fn build_frame(buf: &mut Vec<u8>, f: &Frame, dst_mac: [u8; 6], src_mac: [u8; 6]) {
    let len = f.wire_len.clamp(64, 1518) - FCS;
    let l4_hdr = if f.proto == PROTO_TCP { 20 } else { 8 };
    let payload = len.saturating_sub(14 + 20 + l4_hdr);
    let payload = if f.proto == PROTO_TCP && f.tcp_flags & TCP_SYN != 0 {
        0
    } else {
        payload
    };
    let ip_total = 20 + l4_hdr + payload;
    buf.clear();
    buf.extend_from_slice(&dst_mac);
    buf.extend_from_slice(&src_mac);
    buf.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_off = buf.len();
    buf.extend_from_slice(&[0x45, 0]);
    buf.extend_from_slice(&(ip_total as u16).to_be_bytes());
    buf.extend_from_slice(&f.ident.to_be_bytes());
    buf.extend_from_slice(&0x4000u16.to_be_bytes()); // DF
    buf.extend_from_slice(&[64, f.proto, 0, 0]);
    buf.extend_from_slice(&f.src.octets());
    buf.extend_from_slice(&f.dst.octets());
    let ip_csum = fold(sum16(&buf[ip_off..ip_off + 20], 0));
    buf[ip_off + 10..ip_off + 12].copy_from_slice(&ip_csum.to_be_bytes());
    let l4_off = buf.len();
    buf.extend_from_slice(&f.sport.to_be_bytes());
    buf.extend_from_slice(&f.dport.to_be_bytes());
    if f.proto == PROTO_TCP {
        buf.extend_from_slice(&f.seq.to_be_bytes());
        let ack = if f.tcp_flags & TCP_ACK != 0 { f.ack } else { 0 };
        buf.extend_from_slice(&ack.to_be_bytes());
        buf.extend_from_slice(&[0x50, f.tcp_flags]);
        buf.extend_from_slice(&0xffffu16.to_be_bytes());
        buf.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    } else {
        buf.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
    }
    buf.extend((0..payload).map(|i| (i as u8).wrapping_mul(31)));
    // Pseudo-header: src, dst, zero+proto, L4 length.
    let l4_len = ip_total - 20;
    let mut acc = sum16(&f.src.octets(), 0);
    acc = sum16(&f.dst.octets(), acc);
    acc += u32::from(f.proto) + l4_len as u32;
    let mut csum = fold(sum16(&buf[l4_off..l4_off + l4_len], acc));
    if f.proto == PROTO_UDP && csum == 0 {
        csum = 0xffff;
    }
    let at = if f.proto == PROTO_TCP {
        l4_off + 16
    } else {
        l4_off + 6
    };
    buf[at..at + 2].copy_from_slice(&csum.to_be_bytes());
    // Ethernet padding up to the minimum frame.
    buf.resize(buf.len().max(len), 0);
}

/// A pcap (libpcap 2.4, Ethernet, microsecond stamps) being written.
pub struct PcapWriter<W: Write> {
    out: W,
    n: u32,
}

impl<W: Write> PcapWriter<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&65535u32.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out, n: 0 })
    }

    pub fn write(&mut self, frame: &[u8]) -> io::Result<()> {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(self.n / 1_000_000).to_le_bytes());
        h[4..8].copy_from_slice(&(self.n % 1_000_000).to_le_bytes());
        h[8..12].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(frame)?;
        self.n += 1;
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<u32> {
        self.out.flush()?;
        Ok(self.n)
    }
}

/// The `i`-th client address from `base` that `owner` (if any) accepts.
/// Walks addresses in order, so client lists are computed once, up front.
pub fn clients(base: Ipv4Addr, n: u32, owner: Option<(u16, u16)>) -> Vec<Ipv4Addr> {
    let mut out = Vec::with_capacity(n as usize);
    let mut a = u32::from(base);
    while out.len() < n as usize {
        let ip = Ipv4Addr::from(a);
        if owner.is_none_or(|(k, w)| owner_of(ip, Ipv4Addr::BROADCAST, w) == k) {
            out.push(ip);
        }
        a = a.wrapping_add(1);
    }
    out
}

fn size_at(size: Size, k: usize) -> usize {
    match size {
        Size::Fixed(n) => n,
        Size::Imix => IMIX[k % IMIX.len()],
    }
}

/// What a generated file holds, for the driver's report.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    pub frames: u32,
    /// Average frame size on the wire (FCS included).
    pub avg_wire_len: f64,
}

/// Writes the file `spec` describes.
pub fn generate<W: Write>(spec: &Spec, out: W) -> io::Result<Summary> {
    let mut w = PcapWriter::new(out)?;
    let est = clients(spec.client_base, spec.flows.max(1), spec.owner);
    let flood = clients(spec.flood_base, spec.flood_syns, spec.owner);
    let frames = if spec.flood_syns > 0 {
        2 * spec.flood_syns
    } else if spec.packets > 0 {
        spec.packets
    } else if spec.kind == Kind::Handshake {
        spec.flows.max(1).saturating_mul(HANDSHAKE_FRAMES)
    } else {
        spec.flows.max(1)
    };
    let mut buf = Vec::with_capacity(1600);
    let mut wire_total = 0u64;
    let mut est_k = 0u32;
    for k in 0..frames {
        let f = if spec.flood_syns > 0 && k % 2 == 1 {
            let j = (k / 2) as usize;
            Frame {
                proto: PROTO_TCP,
                tcp_flags: TCP_SYN,
                src: flood[j],
                dst: spec.vip,
                sport: 1024 + (j % 60000) as u16,
                dport: spec.flood_vport,
                ident: j as u16,
                seq: j as u32,
                ack: 1,
                wire_len: 64,
            }
        } else {
            let i = if spec.kind == Kind::Handshake {
                (est_k / HANDSHAKE_FRAMES % spec.flows.max(1)) as usize
            } else {
                (est_k % spec.flows.max(1)) as usize
            };
            let first = if spec.kind == Kind::Handshake {
                est_k.is_multiple_of(HANDSHAKE_FRAMES)
            } else {
                est_k < spec.flows.max(1)
            };
            est_k += 1;
            let (proto, flags) = match spec.kind {
                Kind::Udp => (PROTO_UDP, 0),
                Kind::Syn => (PROTO_TCP, TCP_SYN),
                Kind::Tcp | Kind::Handshake if first => (PROTO_TCP, TCP_SYN),
                Kind::Tcp | Kind::Handshake => (PROTO_TCP, TCP_ACK),
            };
            let isn = (i as u32).wrapping_mul(2_654_435_761);
            // A FULLNAT stream's data starts after the SYN's sequence number.
            let stream = spec.fnat_stream.is_some() && spec.kind == Kind::Tcp && !first;
            Frame {
                proto,
                tcp_flags: flags,
                src: est[i],
                dst: spec.vip,
                sport: 1024 + (i % 60000) as u16,
                dport: spec.vport,
                ident: k as u16,
                seq: if stream { isn.wrapping_add(1) } else { isn },
                ack: 1,
                wire_len: size_at(spec.size, k as usize),
            }
        };
        build_frame(&mut buf, &f, spec.dst_mac, spec.src_mac);
        wire_total += (buf.len() + FCS) as u64;
        w.write(&buf)?;
        // After the last SYN of a FULLNAT stream: the real server's acks.
        if let (Some(fs), true) = (
            spec.fnat_stream,
            est_k == spec.flows.max(1) && f.tcp_flags == TCP_SYN,
        ) {
            for i in 0..spec.flows {
                let isn = i.wrapping_mul(2_654_435_761);
                let r = Frame {
                    proto: PROTO_TCP,
                    tcp_flags: TCP_ACK,
                    src: fs.rip,
                    dst: fs.lip,
                    sport: fs.rport,
                    dport: fs.lport_first.wrapping_add(i as u16),
                    ident: i as u16,
                    seq: 77,
                    ack: isn.wrapping_add(1).wrapping_add(fs.hdr_len),
                    wire_len: 64,
                };
                build_frame(&mut buf, &r, spec.dst_mac, fs.rs_mac);
                wire_total += (buf.len() + FCS) as u64;
                w.write(&buf)?;
            }
        }
    }
    let n = w.finish()?;
    Ok(Summary {
        frames: n,
        avg_wire_len: wire_total as f64 / n.max(1) as f64,
    })
}

/// rvs-dp's MAC syntax, as bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    s.parse::<rvs_dp::wire::MacAddr>().ok().map(|m| m.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_dp::wire::ipv4::Ipv4Packet;

    fn frame(proto: u8, flags: u8, wire_len: usize) -> Vec<u8> {
        let mut b = Vec::new();
        let f = Frame {
            proto,
            tcp_flags: flags,
            src: Ipv4Addr::new(11, 0, 0, 7),
            dst: Ipv4Addr::new(10, 1, 0, 100),
            sport: 4321,
            dport: 80,
            ident: 9,
            seq: 77,
            ack: 1,
            wire_len,
        };
        build_frame(&mut b, &f, [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 0xaa]);
        b
    }

    /// Sum over the pseudo-header and segment; 0xffff when the checksum is right.
    fn l4_ok(b: &[u8]) -> bool {
        let ip = &b[14..];
        let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        let mut acc = sum16(&ip[12..20], 0);
        acc += u32::from(ip[9]) + (total - 20) as u32;
        fold(sum16(&ip[20..total], acc)) == 0
    }

    #[test]
    fn frames_have_the_sizes_and_checksums_a_receiver_checks() {
        for (proto, flags, len) in [
            (PROTO_UDP, 0, 64),
            (PROTO_UDP, 0, 594),
            (PROTO_UDP, 0, 1518),
            (PROTO_TCP, TCP_SYN, 64),
            (PROTO_TCP, TCP_ACK, 64),
            (PROTO_TCP, TCP_ACK, 1518),
        ] {
            let b = frame(proto, flags, len);
            assert_eq!(b.len() + FCS, len, "{proto} {len}");
            let ip = Ipv4Packet::new_checked(&b[14..]).expect("ipv4 parses");
            assert!(ip.verify_checksum());
            assert_eq!(ip.protocol(), proto);
            assert!(l4_ok(&b), "{proto} {flags} {len}: L4 checksum");
        }
        // A SYN carries no payload: the frame is padded instead.
        let syn = frame(PROTO_TCP, TCP_SYN, 64);
        assert_eq!(u16::from_be_bytes([syn[16], syn[17]]), 40);
        assert_eq!(syn[14 + 20 + 13], TCP_SYN);
    }

    #[test]
    fn owner_filter_keeps_only_that_workers_clients() {
        let a = clients(Ipv4Addr::new(11, 0, 0, 1), 500, Some((1, 2)));
        assert_eq!(a.len(), 500);
        assert!(a.iter().all(|ip| owner_of(*ip, Ipv4Addr::BROADCAST, 2) == 1));
        let b = clients(Ipv4Addr::new(11, 0, 0, 1), 500, Some((0, 2)));
        assert!(a.iter().all(|ip| !b.contains(ip)));
    }

    #[test]
    fn file_layout_flows_and_flood_interleave() {
        let spec = Spec {
            kind: Kind::Tcp,
            flows: 3,
            packets: 7,
            ..Spec::default()
        };
        let mut out = Vec::new();
        let s = generate(&spec, &mut out).unwrap();
        assert_eq!(s.frames, 7);
        assert_eq!(out.len(), 24 + 7 * (16 + 60));
        let rec = |k: usize| &out[24 + k * 76 + 16..24 + (k + 1) * 76];
        // Flows 0,1,2 open with a SYN, then ACKs round robin.
        for k in 0..7 {
            let flags = rec(k)[14 + 20 + 13];
            assert_eq!(flags, if k < 3 { TCP_SYN } else { TCP_ACK }, "frame {k}");
            assert_eq!(rec(k)[14 + 15], 1 + (k % 3) as u8, "client of frame {k}");
        }

        let spec = Spec {
            flows: 2,
            flood_syns: 3,
            flood_vport: 81,
            size: Size::Imix,
            ..Spec::default()
        };
        let mut out = Vec::new();
        let s = generate(&spec, &mut out).unwrap();
        assert_eq!(s.frames, 6);
        let mut off = 24;
        let mut flood_clients = Vec::new();
        for k in 0..6 {
            let len = u32::from_le_bytes(out[off + 8..off + 12].try_into().unwrap()) as usize;
            let f = &out[off + 16..off + 16 + len];
            if k % 2 == 1 {
                assert_eq!(f[23], PROTO_TCP);
                assert_eq!(u16::from_be_bytes([f[36], f[37]]), 81);
                flood_clients.push(f[29]);
            } else {
                assert_eq!(f[23], PROTO_UDP);
                assert_eq!(&f[26..29], &[11, 0, 0]);
            }
            off += 16 + len;
        }
        assert_eq!(flood_clients, vec![1, 2, 3], "every flood SYN is a new client");
    }

    #[test]
    fn handshake_files_open_each_flow_then_ack_it_twice() {
        let spec = Spec {
            kind: Kind::Handshake,
            flows: 2,
            ..Spec::default()
        };
        let mut out = Vec::new();
        let s = generate(&spec, &mut out).unwrap();
        assert_eq!(s.frames, 6);
        let rec = |k: usize| &out[24 + k * 76 + 16..24 + (k + 1) * 76];
        for k in 0..6 {
            let flags = rec(k)[14 + 20 + 13];
            assert_eq!(flags, if k % 3 == 0 { TCP_SYN } else { TCP_ACK }, "frame {k}");
            assert_eq!(rec(k)[14 + 15], 1 + (k / 3) as u8, "client of frame {k}");
        }
    }

    #[test]
    fn imix_average_is_the_usual_one() {
        let avg = IMIX.iter().sum::<usize>() as f64 / IMIX.len() as f64;
        assert!((avg - 361.83).abs() < 0.01);
        assert_eq!(parse_mac("02:00:00:00:00:01"), Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(parse_mac("02:00:00:00:00"), None);
    }
}
