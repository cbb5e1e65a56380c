//! The three segments a SYN proxy writes, each in the buffer of the segment
//! that prompts it (no allocation): the SYN-ACK with the cookie (from the
//! client's SYN), the SYN to the real server (from the client's ACK), and
//! the ACK that completes the RS's handshake (from the RS's SYN-ACK).
//!
//! Each is a fresh IPv4 header (20 bytes, TTL 64, DF) and TCP header with
//! its options, checksums computed in full; the link header in front is
//! kept (a VLAN tag stays), its MACs set by the caller's values.

use std::net::Ipv4Addr;

use crate::packet::PacketBuf;
use crate::wire::bytes::{get_u16, get_u32};
use crate::wire::ethernet::MacAddr;
use crate::wire::tcp::field;
use crate::wire::tcpopt::SynOptions;
use crate::wire::{checksum, IpProtocol, TcpFlags, TcpPacket};

/// One TCP segment to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub options: SynOptions,
}

/// The fields of the TCP segment in a frame, read once the caller has
/// validated its IPv4 and TCP headers at `l3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub src_mac: MacAddr,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub options: SynOptions,
}

impl Seen {
    /// None if the frame is too short for the headers it claims.
    pub fn read(frame: &[u8], l3: usize) -> Option<Seen> {
        let ip = frame.get(l3..)?;
        let ihl = usize::from(*ip.first()? & 0x0f) * 4;
        let tcp = ip.get(ihl..)?;
        let hl = usize::from(*tcp.get(field::DATA_OFF)? >> 4) * 4;
        if ihl < 20 || hl < 20 || tcp.len() < hl || frame.len() < 12 {
            return None;
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&frame[6..12]);
        Some(Seen {
            src_mac: MacAddr(mac),
            src: Ipv4Addr::from(get_u32(ip, 12)),
            dst: Ipv4Addr::from(get_u32(ip, 16)),
            sport: get_u16(tcp, field::SRC_PORT),
            dport: get_u16(tcp, field::DST_PORT),
            seq: get_u32(tcp, field::SEQ),
            ack: get_u32(tcp, field::ACK),
            window: get_u16(tcp, field::WINDOW),
            options: SynOptions::parse(&tcp[20..hl]),
        })
    }
}

/// Replaces everything from `l3` on with `s` (and sets the MACs in front).
/// False, changing nothing, if the buffer cannot hold it.
pub fn write<B: PacketBuf>(pkt: &mut B, l3: usize, s: &Segment) -> bool {
    let tcp_len = 20 + s.options.len();
    let total = l3 + 20 + tcp_len;
    if pkt.len() < l3 || l3 < 14 {
        return false;
    }
    if pkt.len() < total && !pkt.append(total - pkt.len()) {
        return false;
    }
    pkt.truncate(total);
    let b = pkt.data_mut();
    b[0..6].copy_from_slice(&s.dst_mac.0);
    b[6..12].copy_from_slice(&s.src_mac.0);
    let ip = &mut b[l3..l3 + 20];
    ip.copy_from_slice(&[
        0x45,
        0,
        0,
        0,
        0,
        0,
        0x40,
        0,
        64,
        IpProtocol::TCP,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]);
    ip[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
    ip[12..16].copy_from_slice(&s.src.octets());
    ip[16..20].copy_from_slice(&s.dst.octets());
    let c = checksum::finish(checksum::sum(ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let tcp = &mut b[l3 + 20..total];
    tcp[..20].fill(0);
    tcp[0..2].copy_from_slice(&s.sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&s.dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&s.seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&s.ack.to_be_bytes());
    tcp[12] = ((tcp_len / 4) as u8) << 4;
    tcp[13] = s.flags;
    tcp[14..16].copy_from_slice(&s.window.to_be_bytes());
    if s.options.write(&mut tcp[20..]).is_none() {
        return false; // cannot happen: sized above
    }
    TcpPacket::new_unchecked(tcp).fill_checksum(s.src, s.dst);
    true
}

/// The SYN-ACK answering a client's SYN `syn`: from the VIP, with the
/// cookie as ISN and the options the director offers.
pub fn syn_ack(syn: &Seen, our_mac: MacAddr, cookie: u32, offer: SynOptions, window: u16) -> Segment {
    Segment {
        src_mac: our_mac,
        dst_mac: syn.src_mac,
        src: syn.dst,
        dst: syn.src,
        sport: syn.dport,
        dport: syn.sport,
        seq: cookie,
        ack: syn.seq.wrapping_add(1),
        flags: TcpFlags::SYN | TcpFlags::ACK,
        window,
        options: offer,
    }
}

/// The SYN to the real server, made of the client's handshake ACK `ack`:
/// same addresses (the forwarding path rewrites them as for any packet of
/// the connection), the client's ISN and the options its SYN carried. The
/// window is the ACK's, unscaled as a SYN's must be.
pub fn syn_to_rs(ack: &Seen, client_wscale: Option<u8>, carried: SynOptions) -> Segment {
    let win = u32::from(ack.window) << client_wscale.unwrap_or(0).min(14);
    Segment {
        src_mac: MacAddr([0; 6]),
        dst_mac: MacAddr([0; 6]),
        src: ack.src,
        dst: ack.dst,
        sport: ack.sport,
        dport: ack.dport,
        seq: ack.seq.wrapping_sub(1),
        ack: 0,
        flags: TcpFlags::SYN,
        window: win.min(65535) as u16,
        options: carried,
    }
}

/// The ACK completing the RS's handshake, answering its SYN-ACK `sa`, sent
/// back to where `sa` came from as if from the client.
pub fn ack_to_rs(sa: &Seen, our_mac: MacAddr, window: u16) -> Segment {
    Segment {
        src_mac: our_mac,
        dst_mac: sa.src_mac,
        src: sa.dst,
        dst: sa.src,
        sport: sa.dport,
        dport: sa.sport,
        seq: sa.ack,
        ack: sa.seq.wrapping_add(1),
        flags: TcpFlags::ACK,
        window,
        options: SynOptions::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::VecBuf;
    use etherparse::{PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};

    const CMAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];
    const DMAC: [u8; 6] = [2, 0, 0, 0, 0, 0x01];
    const CIP: [u8; 4] = [198, 51, 100, 7];
    const VIP: [u8; 4] = [10, 1, 0, 100];

    fn client_syn(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(CMAC, DMAC)
            .ipv4(CIP, VIP, 61)
            .tcp(40_000, 80, 1_000, 64_240)
            .syn()
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::SelectiveAcknowledgementPermitted,
                TcpOptionElement::Timestamp(5, 0),
                TcpOptionElement::Noop,
                TcpOptionElement::WindowScale(7),
            ])
            .unwrap();
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    #[test]
    fn syn_becomes_a_valid_syn_ack_with_the_cookie() {
        let mut pkt = VecBuf::new(&client_syn(b"fast open data"));
        let seen = Seen::read(pkt.data(), 14).unwrap();
        assert_eq!(seen.options.wscale, Some(7));
        assert!(seen.options.sack_perm);
        let offer = SynOptions {
            mss: Some(1460),
            wscale: Some(7),
            sack_perm: true,
            timestamp: None,
        };
        let s = syn_ack(&seen, MacAddr(DMAC), 0xdead_beef, offer, 65535);
        assert!(write(&mut pkt, 14, &s));
        let p = SlicedPacket::from_ethernet(pkt.data()).unwrap();
        let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link else {
            panic!()
        };
        assert_eq!(eth.destination(), CMAC);
        assert_eq!(eth.source(), DMAC);
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
            panic!()
        };
        assert_eq!(ip.header().source(), VIP);
        assert_eq!(ip.header().destination(), CIP);
        assert_eq!(
            ip.header().header_checksum(),
            ip.header().to_header().calc_header_checksum()
        );
        let Some(TransportSlice::Tcp(tcp)) = p.transport else {
            panic!()
        };
        assert!(tcp.syn() && tcp.ack() && !tcp.rst());
        assert_eq!((tcp.source_port(), tcp.destination_port()), (80, 40_000));
        assert_eq!(
            (tcp.sequence_number(), tcp.acknowledgment_number()),
            (0xdead_beef, 1_001)
        );
        assert!(tcp.payload().is_empty(), "the SYN's data is not echoed");
        assert_eq!(
            tcp.checksum(),
            tcp.to_header().calc_checksum_ipv4_raw(VIP, CIP, &[]).unwrap()
        );
        let again = Seen::read(pkt.data(), 14).unwrap();
        assert_eq!(again.options, offer);
    }

    #[test]
    fn ack_becomes_the_syn_to_the_real_server() {
        // The client's ACK of the cookie, window 600 at shift 7.
        let b = PacketBuilder::ethernet2(CMAC, DMAC)
            .ipv4(CIP, VIP, 61)
            .tcp(40_000, 80, 1_001, 600)
            .ack(0xdead_bef0);
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        let mut pkt = VecBuf::new(&v);
        let seen = Seen::read(pkt.data(), 14).unwrap();
        let carried = SynOptions {
            mss: Some(1440),
            wscale: Some(7),
            sack_perm: true,
            timestamp: None,
        };
        let mut s = syn_to_rs(&seen, Some(7), carried);
        s.src_mac = MacAddr(CMAC);
        s.dst_mac = MacAddr(DMAC);
        assert!(write(&mut pkt, 14, &s));
        let p = SlicedPacket::from_ethernet(pkt.data()).unwrap();
        let Some(TransportSlice::Tcp(tcp)) = p.transport else {
            panic!()
        };
        assert!(tcp.syn() && !tcp.ack());
        assert_eq!(tcp.sequence_number(), 1_000, "the client's ISN");
        assert_eq!(tcp.window_size(), 65535, "600 << 7, saturated");
        assert_eq!(
            tcp.checksum(),
            tcp.to_header().calc_checksum_ipv4_raw(CIP, VIP, &[]).unwrap()
        );
        assert_eq!(Seen::read(pkt.data(), 14).unwrap().options, carried);
    }

    #[test]
    fn rs_syn_ack_becomes_the_ack_to_it() {
        let rip = [10, 2, 0, 11];
        let rmac = [2, 0, 0, 0, 0, 0x11];
        let b = PacketBuilder::ethernet2(rmac, DMAC)
            .ipv4(rip, CIP, 64)
            .tcp(80, 40_000, 77_777, 65_160)
            .syn()
            .ack(1_001)
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::Noop,
                TcpOptionElement::WindowScale(9),
            ])
            .unwrap();
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        let mut pkt = VecBuf::new(&v);
        let seen = Seen::read(pkt.data(), 14).unwrap();
        assert_eq!(seen.options.wscale, Some(9));
        assert!(write(&mut pkt, 14, &ack_to_rs(&seen, MacAddr(DMAC), 502)));
        let p = SlicedPacket::from_ethernet(pkt.data()).unwrap();
        let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link else {
            panic!()
        };
        assert_eq!(eth.destination(), rmac);
        let Some(TransportSlice::Tcp(tcp)) = p.transport else {
            panic!()
        };
        assert!(tcp.ack() && !tcp.syn());
        assert_eq!(
            (tcp.sequence_number(), tcp.acknowledgment_number()),
            (1_001, 77_778)
        );
        assert_eq!((tcp.source_port(), tcp.destination_port()), (40_000, 80));
        assert_eq!(tcp.window_size(), 502);
        assert_eq!(
            tcp.checksum(),
            tcp.to_header().calc_checksum_ipv4_raw(CIP, rip, &[]).unwrap()
        );
    }

    #[test]
    fn short_frames_are_refused() {
        let f = client_syn(&[]);
        for n in 0..54 {
            assert!(Seen::read(&f[..n], 14).is_none(), "{n} bytes");
        }
        let mut tiny = VecBuf::with_room(&f[..10], 0, 0);
        assert!(!write(
            &mut tiny,
            14,
            &ack_to_rs(&Seen::read(&f, 14).unwrap(), MacAddr(DMAC), 1)
        ));
        let mut no_tail = VecBuf::with_room(&f[..54], 0, 0);
        let offer = SynOptions {
            mss: Some(1460),
            ..Default::default()
        };
        let s = syn_ack(&Seen::read(&f, 14).unwrap(), MacAddr(DMAC), 1, offer, 1);
        assert!(!write(&mut no_tail, 14, &s), "no tailroom for the options");
    }
}
