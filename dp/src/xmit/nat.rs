//! LVS-NAT: client packets have their destination VIP:vport rewritten to the
//! real server's RIP:rport; the real server's replies (it routes through us)
//! have their source RIP:rport rewritten back to VIP:vport. The TTL drops by
//! one either way, and both checksums are updated incrementally.

use std::net::Ipv4Addr;

use super::{forward_rewrite, Side};
use crate::stats::DropReason;

/// Client → real server. `l4`: the packet carries the L4 header (not a
/// non-first fragment).
#[inline]
pub fn nat_in(ip: &mut [u8], hl: usize, rip: Ipv4Addr, rport: u16, l4: bool) -> Result<(), DropReason> {
    if !forward_rewrite(ip, hl, Side::Dst, rip, rport, l4) {
        return Err(DropReason::TtlExpired);
    }
    Ok(())
}

/// Real server → client.
#[inline]
pub fn nat_out(ip: &mut [u8], hl: usize, vip: Ipv4Addr, vport: u16, l4: bool) -> Result<(), DropReason> {
    if !forward_rewrite(ip, hl, Side::Src, vip, vport, l4) {
        return Err(DropReason::TtlExpired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmit::testutil::*;
    use etherparse::{NetSlice, TransportSlice};

    const CIP: [u8; 4] = [10, 1, 0, 10];
    const VIP: [u8; 4] = [10, 1, 0, 100];
    const RIP: [u8; 4] = [10, 2, 0, 11];

    #[test]
    fn tcp_in_and_out_exact_bytes() {
        let mut f = tcp_frame(CIP, VIP, 40000, 80, false, b"GET / HTTP/1.0\r\n\r\n");
        let orig = f.clone();
        nat_in(&mut f[14..], 20, Ipv4Addr::from(RIP), 8080, true).unwrap();
        let p = assert_checksums_valid(&f);
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        assert_eq!(ip.header().destination(), RIP);
        assert_eq!(ip.header().source(), CIP);
        assert_eq!(ip.header().ttl(), 63);
        let Some(TransportSlice::Tcp(t)) = &p.transport else {
            panic!()
        };
        assert_eq!((t.source_port(), t.destination_port()), (40000, 8080));
        assert_eq!(t.payload(), b"GET / HTTP/1.0\r\n\r\n");
        // Exactly the dst address, TTL, the two checksums and the port changed.
        let changed: Vec<usize> = (0..f.len()).filter(|&i| f[i] != orig[i]).collect();
        for i in &changed {
            assert!(
                matches!(i - 14, 8 | 10 | 11 | 16..=19 | 22 | 23 | 36 | 37),
                "unexpected byte {i} changed"
            );
        }

        // The reply, from the real server.
        let mut r = tcp_frame(RIP, CIP, 8080, 40000, false, b"HTTP/1.0 200 OK\r\n\r\n");
        nat_out(&mut r[14..], 20, Ipv4Addr::from(VIP), 80, true).unwrap();
        let p = assert_checksums_valid(&r);
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        assert_eq!(ip.header().source(), VIP);
        assert_eq!(ip.header().destination(), CIP);
        let Some(TransportSlice::Tcp(t)) = &p.transport else {
            panic!()
        };
        assert_eq!((t.source_port(), t.destination_port()), (80, 40000));
    }

    #[test]
    fn udp_checksum_and_zero_rule() {
        let mut f = udp_frame(CIP, VIP, 5353, 53, b"query");
        nat_in(&mut f[14..], 20, Ipv4Addr::from(RIP), 53, true).unwrap();
        let p = assert_checksums_valid(&f);
        let Some(TransportSlice::Udp(u)) = &p.transport else {
            panic!()
        };
        assert_ne!(u.checksum(), 0);
        // A datagram sent without checksum keeps none.
        let mut g = udp_frame(CIP, VIP, 5353, 53, b"query");
        g[14 + 20 + 6] = 0;
        g[14 + 20 + 7] = 0;
        nat_in(&mut g[14..], 20, Ipv4Addr::from(RIP), 5300, true).unwrap();
        assert_eq!(&g[14 + 20 + 6..14 + 20 + 8], &[0, 0]);
        assert_eq!(u16::from_be_bytes([g[14 + 22], g[14 + 23]]), 5300);
        assert_checksums_valid(&g);
    }

    #[test]
    fn ttl_expiry_is_a_drop_and_changes_nothing() {
        let mut f = tcp_frame(CIP, VIP, 1, 80, true, b"");
        f[14 + 8] = 1;
        let before = f.clone();
        assert_eq!(
            nat_in(&mut f[14..], 20, Ipv4Addr::from(RIP), 80, true),
            Err(DropReason::TtlExpired)
        );
        assert_eq!(f, before);
    }

    #[test]
    fn non_first_fragment_rewrites_only_ip() {
        let mut f = udp_frame(CIP, VIP, 5353, 53, b"query");
        let l4_before = f[34..].to_vec();
        nat_in(&mut f[14..], 20, Ipv4Addr::from(RIP), 99, false).unwrap();
        assert_eq!(&f[34..], &l4_before[..], "no L4 header in a non-first fragment");
        assert_eq!(&f[14 + 16..14 + 20], &RIP);
    }

    /// RFC 1624's update adds the same difference to a right checksum and to
    /// a wrong one: a wrong TCP/UDP checksum stays wrong through NAT (so the
    /// receiver drops the packet, as without the director).
    #[test]
    fn incremental_update_keeps_a_wrong_checksum_wrong() {
        fn holds(frame: &[u8]) -> bool {
            let p = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
            let Some(NetSlice::Ipv4(ip)) = &p.net else {
                panic!()
            };
            let h = ip.header().to_header();
            match &p.transport {
                Some(TransportSlice::Tcp(t)) => {
                    t.checksum() == t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap()
                }
                Some(TransportSlice::Udp(u)) => {
                    u.checksum() == u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap()
                }
                _ => panic!(),
            }
        }
        for (i, delta) in [1u16, 2, 0x100, 0x7fff, 0x8000, 0xfffd, 0xfffe]
            .into_iter()
            .enumerate()
        {
            let payload = vec![i as u8 * 37; i * 13];
            for (mut f, at) in [
                (
                    tcp_frame(CIP, VIP, 40000 + i as u16, 80, false, &payload),
                    14 + 20 + 16,
                ),
                (udp_frame(CIP, VIP, 5353, 53, &payload), 14 + 20 + 6),
            ] {
                let c = u16::from_be_bytes([f[at], f[at + 1]]).wrapping_add(delta);
                f[at..at + 2].copy_from_slice(&c.to_be_bytes());
                assert!(!holds(&f));
                nat_in(&mut f[14..], 20, Ipv4Addr::from(RIP), 8080 + i as u16, true).unwrap();
                assert!(!holds(&f), "in, delta {delta:#x}");
                nat_out(&mut f[14..], 20, Ipv4Addr::from(VIP), 80, true).unwrap();
                assert!(!holds(&f), "out, delta {delta:#x}");
            }
        }
    }

    #[test]
    fn short_or_garbage_input_never_panics() {
        for len in 0..64 {
            let mut b = vec![0xAB; len];
            let _ = nat_in(&mut b, 20, Ipv4Addr::from(RIP), 1, true);
            let _ = nat_out(&mut b, 60, Ipv4Addr::from(VIP), 1, true);
        }
    }
}
