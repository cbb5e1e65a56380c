//! Forwarding methods, after the kernel's ip_vs_xmit.c: each turns a packet of
//! a known connection into what goes on the wire.
//!
//! - `nat`: DNAT of client packets to the real server, SNAT of its replies.
//! - `dr`: the IP packet untouched; only the Ethernet header is rewritten.
//! - `tun`: IP-in-IP to the real server.
//! - `icmp`: ICMP errors about NATed connections, translated inner header included;
//!   and the messages the director itself sends (frag-needed, echo reply, RST).
//!
//! All of them work on raw IPv4 bytes whose header length the caller already
//! validated, through the total accessors of `wire::bytes`, so no input panics.

pub mod dr;
pub mod fnat;
pub mod icmp;
pub mod nat;
pub mod tun;

use std::net::Ipv4Addr;

use crate::wire::bytes::{get_ne16, get_ne32, get_u8, set_ne16, set_ne32, set_u8};
use crate::wire::ipv4::field::{CHECKSUM as IP_CSUM, DST as IP_DST, PROTOCOL, SRC as IP_SRC, TTL as IP_TTL};
use crate::wire::ipv4::IpProtocol;
use crate::wire::{checksum, tcp, udp};

/// Which endpoint of the packet a rewrite changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Src,
    Dst,
}

/// Offset of the L4 checksum inside the L4 header, for protocols that have
/// one covering the pseudo-header.
#[inline]
fn l4_csum_offset(proto: u8) -> Option<usize> {
    match proto {
        IpProtocol::TCP => Some(tcp::field::CHECKSUM),
        IpProtocol::UDP => Some(udp::field::CHECKSUM),
        _ => None,
    }
}

/// Rewrites one endpoint (address, and port when `l4` says the L4 header is
/// present) of an IPv4 packet, updating the IP header checksum and the L4
/// checksum incrementally (RFC 1624). `hl` is the validated IP header length.
/// `l4` is false for non-first fragments, which carry no L4 header.
#[inline]
pub fn rewrite_endpoint(ip: &mut [u8], hl: usize, side: Side, addr: Ipv4Addr, port: u16, l4: bool) {
    rewrite(ip, hl, side, addr, port, l4, 0);
}

/// What a forwarded packet gets: the TTL decremented and one endpoint
/// rewritten (as `rewrite_endpoint`), each checksum updated once for all of
/// it. Returns false (and changes nothing) when the TTL would reach 0.
#[inline]
pub(crate) fn forward_rewrite(
    ip: &mut [u8],
    hl: usize,
    side: Side,
    addr: Ipv4Addr,
    port: u16,
    l4: bool,
) -> bool {
    let ttl = get_u8(ip, IP_TTL);
    if ttl <= 1 {
        return false;
    }
    set_u8(ip, IP_TTL, ttl - 1);
    rewrite(ip, hl, side, addr, port, l4, checksum::TTL_DECREMENT_NE);
    true
}

/// FULLNAT's forward rewrite: the TTL decremented and both endpoints
/// rewritten (`src`, `dst`: address and port; ports when `l4`), each
/// checksum updated once for all of it. Returns false (and changes nothing)
/// when the TTL would reach 0.
#[inline]
pub(crate) fn forward_rewrite_both(
    ip: &mut [u8],
    hl: usize,
    (src, sport): (Ipv4Addr, u16),
    (dst, dport): (Ipv4Addr, u16),
    l4: bool,
) -> bool {
    let ttl = get_u8(ip, IP_TTL);
    if ttl <= 1 {
        return false;
    }
    set_u8(ip, IP_TTL, ttl - 1);
    let (old_src, old_dst) = (get_ne32(ip, IP_SRC), get_ne32(ip, IP_DST));
    let (new_src, new_dst) = (u32::from_ne_bytes(src.octets()), u32::from_ne_bytes(dst.octets()));
    set_ne32(ip, IP_SRC, new_src);
    set_ne32(ip, IP_DST, new_dst);
    let addr_delta = checksum::delta32(old_src, new_src) + checksum::delta32(old_dst, new_dst);
    let c = checksum::apply(get_ne16(ip, IP_CSUM), checksum::TTL_DECREMENT_NE + addr_delta);
    set_ne16(ip, IP_CSUM, c);
    if !l4 {
        return true;
    }
    let proto = get_u8(ip, PROTOCOL);
    let Some(csum_off) = l4_csum_offset(proto) else {
        return true;
    };
    let Some(seg) = ip.get_mut(hl..) else { return true };
    let (new_sport, new_dport) = (
        u16::from_ne_bytes(sport.to_be_bytes()),
        u16::from_ne_bytes(dport.to_be_bytes()),
    );
    let old_sport = get_ne16(seg, udp::field::SRC_PORT);
    let old_dport = get_ne16(seg, udp::field::DST_PORT);
    set_ne16(seg, udp::field::SRC_PORT, new_sport);
    set_ne16(seg, udp::field::DST_PORT, new_dport);
    let old_csum = get_ne16(seg, csum_off);
    if proto == IpProtocol::UDP && old_csum == 0 {
        return true; // UDP without checksum stays without
    }
    let delta =
        addr_delta + checksum::delta16(old_sport, new_sport) + checksum::delta16(old_dport, new_dport);
    let mut c = checksum::apply(old_csum, delta);
    if proto == IpProtocol::UDP && c == 0 {
        c = 0xFFFF;
    }
    set_ne16(seg, csum_off, c);
    true
}

/// The endpoint rewrite, with `ip_delta`: header changes already made whose
/// checksum update is still to do.
///
/// The checksum arithmetic runs on words in the CPU's byte order (`ip_delta`
/// too), no byte swaps: the ones' complement sum is the same either way.
#[inline(always)]
fn rewrite(ip: &mut [u8], hl: usize, side: Side, addr: Ipv4Addr, port: u16, l4: bool, ip_delta: u32) {
    let (addr_off, port_off) = match side {
        Side::Src => (IP_SRC, udp::field::SRC_PORT),
        Side::Dst => (IP_DST, udp::field::DST_PORT),
    };
    let old_addr = get_ne32(ip, addr_off);
    let new_addr = u32::from_ne_bytes(addr.octets());
    set_ne32(ip, addr_off, new_addr);
    let addr_delta = checksum::delta32(old_addr, new_addr);
    let c = checksum::apply(get_ne16(ip, IP_CSUM), ip_delta + addr_delta);
    set_ne16(ip, IP_CSUM, c);
    if !l4 {
        return;
    }
    let proto = get_u8(ip, PROTOCOL);
    let Some(csum_off) = l4_csum_offset(proto) else {
        return;
    };
    let Some(seg) = ip.get_mut(hl..) else { return };
    let new_port = u16::from_ne_bytes(port.to_be_bytes());
    let old_port = get_ne16(seg, port_off);
    set_ne16(seg, port_off, new_port);
    let old_csum = get_ne16(seg, csum_off);
    if proto == IpProtocol::UDP && old_csum == 0 {
        return; // UDP without checksum stays without
    }
    let mut c = checksum::apply(old_csum, addr_delta + checksum::delta16(old_port, new_port));
    if proto == IpProtocol::UDP && c == 0 {
        c = 0xFFFF;
    }
    set_ne16(seg, csum_off, c);
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Packet builders for the transform tests (etherparse builds; we check with etherparse).
    use etherparse::PacketBuilder;

    pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0c];
    pub const DIRECTOR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xd0];

    pub fn tcp_frame(
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        syn: bool,
        payload: &[u8],
    ) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC).ipv4(src, dst, 64);
        let b = if syn {
            b.tcp(sport, dport, 1000, 64240).syn()
        } else {
            b.tcp(sport, dport, 1000, 64240).ack(5000)
        };
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    pub fn udp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
            .ipv4(src, dst, 64)
            .udp(sport, dport);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    /// Parses with etherparse and checks every checksum: the independent oracle.
    pub fn assert_checksums_valid(frame: &[u8]) -> etherparse::SlicedPacket<'_> {
        let p = etherparse::SlicedPacket::from_ethernet(frame).expect("etherparse parses our output");
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not ipv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum(), "IP header checksum");
        match &p.transport {
            Some(etherparse::TransportSlice::Tcp(t)) => {
                let want = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
                assert_eq!(t.checksum(), want, "TCP checksum");
            }
            Some(etherparse::TransportSlice::Udp(u)) if u.checksum() != 0 => {
                let want = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
                assert_eq!(u.checksum(), want, "UDP checksum");
            }
            _ => {}
        }
        p
    }
}
