//! LVS-TUN: the client's packet, unchanged, inside an outer IPv4 header from
//! the director (DIP) to the real server (RIP), which decapsulates it and
//! answers the client directly from the VIP.

use std::net::Ipv4Addr;

use crate::packet::PacketBuf;
use crate::stats::DropReason;
use crate::wire::ipip::{encap_header, IPIP_HEADER_LEN};
use crate::wire::ipv4::{self, Ipv4Packet};

/// What the encapsulation decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunOutcome {
    Encapsulated,
    /// Too big for the egress MTU with DF set: tell the client, with this
    /// next-hop MTU, what fits (the caller builds the ICMP error).
    FragNeeded {
        mtu: u16,
    },
}

/// Prepends the outer header after the L2 header of `l2_len` bytes.
/// `egress_mtu` is the IP MTU of the port toward the real server.
pub fn encapsulate<B: PacketBuf>(
    pkt: &mut B,
    l2_len: usize,
    dip: Ipv4Addr,
    rip: Ipv4Addr,
    egress_mtu: u16,
) -> Result<TunOutcome, DropReason> {
    let inner_len = pkt.len().saturating_sub(l2_len);
    let Some(ip) = pkt.data().get(l2_len..) else {
        return Err(DropReason::MalformedIpv4);
    };
    let inner = Ipv4Packet::new_unchecked(ip);
    // The inner packet's total length (trailing Ethernet padding excluded).
    let inner_total = usize::from(inner.total_len());
    let df = inner.dont_frag();
    if inner_total < ipv4::HEADER_LEN || inner_total > inner_len {
        return Err(DropReason::MalformedIpv4);
    }
    if inner_total + IPIP_HEADER_LEN > egress_mtu as usize {
        if df {
            return Ok(TunOutcome::FragNeeded {
                mtu: egress_mtu.saturating_sub(IPIP_HEADER_LEN as u16),
            });
        }
        return Err(DropReason::TooBig);
    }
    // Drop Ethernet padding so the outer length is exact.
    pkt.truncate(l2_len + inner_total);
    if !pkt.prepend(IPIP_HEADER_LEN) {
        return Err(DropReason::NoHeadroom);
    }
    let d = pkt.data_mut();
    d.copy_within(IPIP_HEADER_LEN..IPIP_HEADER_LEN + l2_len, 0);
    let (head, inner) = d.split_at_mut(l2_len + IPIP_HEADER_LEN);
    let outer = &mut head[l2_len..];
    encap_header(outer, dip, rip, inner, ipv4::DEFAULT_TTL).map_err(|_| DropReason::MalformedIpv4)?;
    Ok(TunOutcome::Encapsulated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::VecBuf;
    use crate::xmit::testutil::*;
    use etherparse::{NetSlice, SlicedPacket};

    #[test]
    fn ipip_outer_header_and_untouched_inner() {
        let f = tcp_frame([10, 1, 0, 10], [10, 1, 0, 100], 1234, 80, false, &[7u8; 100]);
        let mut b = VecBuf::new(&f);
        let r = encapsulate(
            &mut b,
            14,
            Ipv4Addr::new(10, 1, 0, 1),
            Ipv4Addr::new(10, 1, 0, 11),
            1500,
        );
        assert_eq!(r, Ok(TunOutcome::Encapsulated));
        let out = b.data();
        assert_eq!(out.len(), f.len() + 20);
        assert_eq!(&out[..14], &f[..14], "L2 header moved to the front");
        assert_eq!(&out[34..], &f[14..], "inner packet byte-identical");
        let p = SlicedPacket::from_ethernet(out).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        let h = ip.header().to_header();
        assert_eq!(h.protocol, etherparse::IpNumber::IPV4);
        assert_eq!(h.source, [10, 1, 0, 1]);
        assert_eq!(h.destination, [10, 1, 0, 11]);
        assert_eq!(h.total_len as usize, f.len() - 14 + 20);
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let mut inner_frame = out[..14].to_vec();
        inner_frame.extend_from_slice(&out[34..]);
        assert_checksums_valid(&inner_frame);
    }

    #[test]
    fn mtu_df_and_headroom() {
        let f = tcp_frame([10, 1, 0, 10], [10, 1, 0, 100], 1234, 80, false, &[7u8; 1460]);
        let mut b = VecBuf::new(&f);
        let r = encapsulate(
            &mut b,
            14,
            Ipv4Addr::new(10, 1, 0, 1),
            Ipv4Addr::new(10, 1, 0, 11),
            1500,
        );
        assert_eq!(r, Ok(TunOutcome::FragNeeded { mtu: 1480 }), "etherparse sets DF");
        assert_eq!(b.data(), &f[..], "unchanged when refused");
        let mut nodf = f.clone();
        nodf[14 + 6] &= !0x40;
        let mut b = VecBuf::new(&nodf);
        assert_eq!(
            encapsulate(
                &mut b,
                14,
                Ipv4Addr::new(10, 1, 0, 1),
                Ipv4Addr::new(10, 1, 0, 11),
                1500
            ),
            Err(DropReason::TooBig)
        );
        let small = tcp_frame([10, 1, 0, 10], [10, 1, 0, 100], 1234, 80, false, b"x");
        let mut b = VecBuf::with_room(&small, 10, 0);
        assert_eq!(
            encapsulate(
                &mut b,
                14,
                Ipv4Addr::new(10, 1, 0, 1),
                Ipv4Addr::new(10, 1, 0, 11),
                1500
            ),
            Err(DropReason::NoHeadroom)
        );
    }
}
