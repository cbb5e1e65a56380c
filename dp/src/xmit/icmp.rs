//! ICMP: errors about NATed connections, translated so that each side sees the
//! addresses it knows (kernel ip_vs_nat_icmp), and the messages the director
//! builds itself, in place in the packet that caused them.

use std::net::Ipv4Addr;

use super::{forward_rewrite, rewrite_endpoint, Side};
use crate::packet::PacketBuf;
use crate::stats::DropReason;
use crate::wire::bytes::{get_u16, get_u32, set_u16, set_u32, set_u8};
use crate::wire::ethernet;
use crate::wire::icmp::{field as icmp_field, IcmpPacket, IcmpType, HEADER_LEN as ICMP_HEADER_LEN};
use crate::wire::ipv4::field::{DST as IP_DST, LENGTH as IP_LEN, SRC as IP_SRC, TTL as IP_TTL};
use crate::wire::ipv4::{
    IpProtocol, Ipv4Packet, Ipv4Repr, DEFAULT_TTL as REPLY_TTL, HEADER_LEN as IP_HEADER_LEN,
};
use crate::wire::tcp::{self, TcpFlags, TcpPacket};

/// An ICMP error from the client side about a reply we sent (its embedded
/// datagram is VIP:vport → CIP:cport), headed for the real server: outer
/// destination VIP → RIP, embedded source VIP:vport → RIP:rport.
/// `ip` is the whole outer IPv4 packet (total length), `hl` its header length.
pub fn translate_error_in(ip: &mut [u8], hl: usize, rip: Ipv4Addr, rport: u16) -> Result<(), DropReason> {
    translate_error(ip, hl, Side::Dst, rip, rport)
}

/// An ICMP error from the real-server side about a packet we sent to a real
/// server (embedded CIP:cport → RIP:rport), headed for the client: outer source
/// → VIP, embedded destination RIP:rport → VIP:vport.
pub fn translate_error_out(ip: &mut [u8], hl: usize, vip: Ipv4Addr, vport: u16) -> Result<(), DropReason> {
    translate_error(ip, hl, Side::Src, vip, vport)
}

/// FULLNAT: an ICMP error about a connection, both ends of the quoted
/// datagram rewritten. The outer header goes from `outer_src` to
/// `outer_dst` (TTL - 1); the quoted datagram becomes `inner_src` →
/// `inner_dst` (address, port). From the client side (quoting VIP:vport →
/// CIP:cport): LIP → RIP outside, RIP:rport → LIP:lport inside; from the
/// real-server side (quoting LIP:lport → RIP:rport): VIP → CIP outside,
/// CIP:cport → VIP:vport inside.
pub fn translate_error_fnat(
    ip: &mut [u8],
    hl: usize,
    (outer_src, outer_dst): (Ipv4Addr, Ipv4Addr),
    inner_src: (Ipv4Addr, u16),
    inner_dst: (Ipv4Addr, u16),
) -> Result<(), DropReason> {
    if !forward_rewrite(ip, hl, Side::Dst, outer_dst, 0, false) {
        return Err(DropReason::TtlExpired);
    }
    rewrite_endpoint(ip, hl, Side::Src, outer_src, 0, false);
    let Some(icmp) = ip.get_mut(hl..) else {
        return Err(DropReason::MalformedIcmp);
    };
    let Some(inner) = icmp.get_mut(ICMP_HEADER_LEN..) else {
        return Err(DropReason::MalformedIcmp);
    };
    let ihl = Ipv4Packet::new_unchecked(&*inner).header_len();
    rewrite_endpoint(inner, ihl, Side::Src, inner_src.0, inner_src.1, true);
    rewrite_endpoint(inner, ihl, Side::Dst, inner_dst.0, inner_dst.1, true);
    IcmpPacket::new_unchecked(icmp).fill_checksum();
    Ok(())
}

/// Both directions: the outer header's `outer` address becomes `addr`, and
/// the quoted datagram's opposite endpoint becomes `addr:port` (it travelled
/// the other way); then the ICMP checksum is recomputed over the message.
fn translate_error(
    ip: &mut [u8],
    hl: usize,
    outer: Side,
    addr: Ipv4Addr,
    port: u16,
) -> Result<(), DropReason> {
    if !forward_rewrite(ip, hl, outer, addr, 0, false) {
        return Err(DropReason::TtlExpired);
    }
    let Some(icmp) = ip.get_mut(hl..) else {
        return Err(DropReason::MalformedIcmp);
    };
    let Some(inner) = icmp.get_mut(ICMP_HEADER_LEN..) else {
        return Err(DropReason::MalformedIcmp);
    };
    let ihl = Ipv4Packet::new_unchecked(&*inner).header_len();
    let quoted = match outer {
        Side::Dst => Side::Src,
        Side::Src => Side::Dst,
    };
    rewrite_endpoint(inner, ihl, quoted, addr, port, true);
    IcmpPacket::new_unchecked(icmp).fill_checksum();
    Ok(())
}

/// Swaps the Ethernet addresses, so the frame goes back where it came from.
pub(crate) fn swap_macs(frame: &mut [u8]) {
    if let Ok(mut eth) = ethernet::EthernetFrame::new_checked(frame) {
        let (dst, src) = (eth.dst(), eth.src());
        eth.set_dst(src);
        eth.set_src(dst);
    }
}

/// Writes a fresh 20-byte IPv4 header (no options, DF, TTL 64) at the start of `ip`.
fn write_ip_header(ip: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, total_len: u16) {
    let repr = Ipv4Repr {
        src,
        dst,
        protocol,
        ttl: REPLY_TTL,
        tos: 0,
        ident: 0,
        dont_frag: true,
        payload_len: total_len.saturating_sub(IP_HEADER_LEN as u16),
    };
    let _ = repr.emit(ip);
}

/// Turns the packet into "fragmentation needed" (type 3 code 4) for its
/// sender, from `our_ip`, carrying the next-hop `mtu` and the original IP
/// header plus 8 bytes (RFC 792 / RFC 1191).
pub fn frag_needed<B: PacketBuf>(
    pkt: &mut B,
    l2_len: usize,
    our_ip: Ipv4Addr,
    mtu: u16,
) -> Result<(), DropReason> {
    let d = pkt.data();
    let Some(orig) = d.get(l2_len..) else {
        return Err(DropReason::MalformedIpv4);
    };
    let ohl = Ipv4Packet::new_unchecked(orig).header_len();
    // RFC 792: the header and the first 64 bits of the datagram, at most
    // a 60-byte header (IHL 15) and 8 bytes.
    const DATA: usize = 8;
    let quote_len = (ohl + DATA).min(orig.len());
    let mut quote = [0u8; 15 * 4 + DATA];
    let Some(q) = orig.get(..quote_len) else {
        return Err(DropReason::MalformedIpv4);
    };
    quote[..quote_len].copy_from_slice(q);
    let client = Ipv4Addr::from(get_u32(orig, IP_SRC));
    let icmp_len = ICMP_HEADER_LEN + quote_len;
    let total = IP_HEADER_LEN + icmp_len;
    if pkt.len() < l2_len + total && !pkt.append(l2_len + total - pkt.len()) {
        return Err(DropReason::NoMbuf);
    }
    pkt.truncate(l2_len + total);
    let d = pkt.data_mut();
    swap_macs(d);
    let Some(ip) = d.get_mut(l2_len..) else {
        return Err(DropReason::MalformedIpv4);
    };
    write_ip_header(ip, our_ip, client, IpProtocol::ICMP, total as u16);
    let Some(icmp) = ip.get_mut(IP_HEADER_LEN..) else {
        return Err(DropReason::MalformedIpv4);
    };
    icmp[..ICMP_HEADER_LEN].fill(0);
    icmp[icmp_field::TYPE] = IcmpType::DEST_UNREACHABLE;
    icmp[icmp_field::CODE] = IcmpType::CODE_FRAG_NEEDED;
    set_u16(icmp, icmp_field::NEXT_HOP_MTU, mtu);
    if let Some(q) = icmp.get_mut(ICMP_HEADER_LEN..ICMP_HEADER_LEN + quote_len) {
        q.copy_from_slice(&quote[..quote_len]);
    }
    IcmpPacket::new_unchecked(icmp).fill_checksum();
    Ok(())
}

/// Answers an echo request in place: addresses swapped, type 0, TTL 64.
pub fn echo_reply(frame: &mut [u8], l2_len: usize, hl: usize) -> Result<(), DropReason> {
    swap_macs(frame);
    let Some(ip) = frame.get_mut(l2_len..) else {
        return Err(DropReason::MalformedIpv4);
    };
    let src = get_u32(ip, IP_SRC);
    let dst = get_u32(ip, IP_DST);
    set_u32(ip, IP_SRC, dst);
    set_u32(ip, IP_DST, src);
    set_u8(ip, IP_TTL, REPLY_TTL);
    Ipv4Packet::new_unchecked(&mut *ip).fill_checksum();
    let total = get_u16(ip, IP_LEN) as usize;
    let Some(icmp) = ip.get_mut(hl..total) else {
        return Err(DropReason::MalformedIcmp);
    };
    IcmpPacket::new_unchecked(icmp).set_msg_type(IcmpType::ECHO_REPLY);
    Ok(())
}

/// Answers a SYN with a RST+ACK in place (no real server can take it).
pub fn tcp_rst_for_syn<B: PacketBuf>(pkt: &mut B, l2_len: usize, hl: usize) -> Result<(), DropReason> {
    let d = pkt.data();
    let Some(ip) = d.get(l2_len..) else {
        return Err(DropReason::MalformedIpv4);
    };
    let (src, dst) = (
        Ipv4Addr::from(get_u32(ip, IP_SRC)),
        Ipv4Addr::from(get_u32(ip, IP_DST)),
    );
    let Some(syn) = ip
        .get(hl..)
        .filter(|t| t.len() >= tcp::HEADER_LEN)
        .map(TcpPacket::new_unchecked)
    else {
        return Err(DropReason::MalformedL4);
    };
    let (sport, dport, seq) = (syn.src_port(), syn.dst_port(), syn.seq_number());
    const LEN: usize = IP_HEADER_LEN + tcp::HEADER_LEN;
    pkt.truncate(l2_len + LEN);
    if pkt.len() < l2_len + LEN {
        return Err(DropReason::MalformedL4);
    }
    let d = pkt.data_mut();
    swap_macs(d);
    let Some(ip) = d.get_mut(l2_len..) else {
        return Err(DropReason::MalformedIpv4);
    };
    write_ip_header(ip, dst, src, IpProtocol::TCP, LEN as u16);
    let Some(t) = ip.get_mut(IP_HEADER_LEN..LEN) else {
        return Err(DropReason::MalformedL4);
    };
    t.fill(0);
    set_u8(t, tcp::field::DATA_OFF, ((tcp::HEADER_LEN / 4) as u8) << 4);
    let mut rst = TcpPacket::new_unchecked(t);
    rst.set_src_port(dport);
    rst.set_dst_port(sport);
    rst.set_ack_number(seq.wrapping_add(1));
    rst.set_flags(TcpFlags::RST | TcpFlags::ACK);
    rst.fill_checksum(dst, src);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::VecBuf;
    use crate::wire::checksum;
    use crate::xmit::testutil::*;
    use etherparse::{Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

    const CIP: [u8; 4] = [10, 1, 0, 10];
    const VIP: [u8; 4] = [10, 1, 0, 100];
    const RIP: [u8; 4] = [10, 2, 0, 11];

    /// An ICMP port-unreachable from `from` to `to`, quoting `quoted` (an IP packet).
    fn icmp_error(from: [u8; 4], to: [u8; 4], quoted: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
            .ipv4(from, to, 64)
            .icmpv4(Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port,
            ));
        let mut out = Vec::new();
        b.write(&mut out, quoted).unwrap();
        out
    }

    fn icmp_ok(frame: &[u8]) {
        let ip_total = u16::from_be_bytes([frame[16], frame[17]]) as usize;
        let icmp = &frame[34..14 + ip_total];
        assert_eq!(checksum::fold(checksum::sum(icmp)), 0xFFFF, "ICMP checksum");
        let p = SlicedPacket::from_ethernet(frame).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
    }

    #[test]
    fn error_from_client_side_reaches_real_server_translated() {
        // We sent VIP:80 -> CIP:40000 (a NAT reply); the client's host says port unreachable.
        let reply = udp_frame(VIP, CIP, 53, 40000, b"answer");
        let mut f = icmp_error(CIP, VIP, &reply[14..14 + 28]);
        let hl = 20;
        let end = f.len();
        translate_error_in(&mut f[14..end], hl, Ipv4Addr::from(RIP), 5353).unwrap();
        icmp_ok(&f);
        assert_eq!(&f[14 + 16..14 + 20], &RIP, "outer dst is the real server");
        let inner = &f[14 + 28..];
        assert_eq!(&inner[12..16], &RIP, "inner src is the real server");
        assert_eq!(u16::from_be_bytes([inner[20], inner[21]]), 5353);
        let ih = etherparse::Ipv4HeaderSlice::from_slice(inner)
            .unwrap()
            .to_header();
        assert_eq!(ih.header_checksum, ih.calc_header_checksum(), "inner IP checksum");
    }

    #[test]
    fn error_from_server_side_reaches_client_translated() {
        // We sent CIP:40000 -> RIP:8080; the real server says port unreachable to CIP.
        let fwd = udp_frame(CIP, RIP, 40000, 8080, b"q");
        let mut f = icmp_error(RIP, CIP, &fwd[14..14 + 28]);
        translate_error_out(&mut f[14..], 20, Ipv4Addr::from(VIP), 53).unwrap();
        icmp_ok(&f);
        assert_eq!(&f[14 + 12..14 + 16], &VIP, "the client hears from the VIP");
        let inner = &f[14 + 28..];
        assert_eq!(&inner[16..20], &VIP);
        assert_eq!(u16::from_be_bytes([inner[22], inner[23]]), 53);
    }

    #[test]
    fn frag_needed_built_in_place() {
        let f = tcp_frame(CIP, VIP, 40000, 80, false, &[1u8; 1400]);
        let mut b = VecBuf::new(&f);
        frag_needed(&mut b, 14, Ipv4Addr::new(10, 1, 0, 1), 1480).unwrap();
        let out = b.data();
        assert_eq!(out.len(), 14 + 20 + 8 + 28);
        assert_eq!(&out[..6], &CLIENT_MAC, "back to the sender");
        icmp_ok(out);
        let p = SlicedPacket::from_ethernet(out).unwrap();
        let Some(TransportSlice::Icmpv4(i)) = &p.transport else {
            panic!()
        };
        match i.icmp_type() {
            Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu },
            ) => assert_eq!(next_hop_mtu, 1480),
            t => panic!("{t:?}"),
        }
        assert_eq!(&out[42..62], &f[14..34], "quotes the original header");
    }

    #[test]
    fn echo_reply_and_rst() {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
            .ipv4(CIP, VIP, 64)
            .icmpv4_echo_request(7, 9);
        let mut f = Vec::new();
        b.write(&mut f, b"ping").unwrap();
        echo_reply(&mut f, 14, 20).unwrap();
        icmp_ok(&f);
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(TransportSlice::Icmpv4(i)) = &p.transport else {
            panic!()
        };
        assert!(matches!(i.icmp_type(), Icmpv4Type::EchoReply(e) if e.id == 7 && e.seq == 9));
        assert_eq!(&f[14 + 12..14 + 16], &VIP);

        let syn = tcp_frame(CIP, VIP, 40000, 80, true, b"");
        let mut b = VecBuf::new(&syn);
        tcp_rst_for_syn(&mut b, 14, 20).unwrap();
        let p = assert_checksums_valid(b.data());
        let Some(TransportSlice::Tcp(t)) = &p.transport else {
            panic!()
        };
        assert!(t.rst() && t.ack());
        assert_eq!((t.source_port(), t.destination_port()), (80, 40000));
        assert_eq!(t.acknowledgment_number(), 1001);
    }
}
