//! FULLNAT (DPVS's FNAT): both endpoints rewritten. Client packets
//! CIP:cport → VIP:vport leave as LIP:lport → RIP:rport; the real server's
//! replies RIP:rport → LIP:lport leave as VIP:vport → CIP:cport. The TTL drops
//! by one either way, and both checksums are updated incrementally. What the
//! real server learns of the client (TOA, PROXY header) is `fnat`'s.

use std::net::Ipv4Addr;

use super::forward_rewrite_both;
use crate::stats::DropReason;

/// Both endpoints to `src` and `dst`, the TTL down by one. Client → real
/// server passes (LIP, lport) and (RIP, rport); real server → client passes
/// (VIP, vport) and (CIP, cport). `l4`: the packet carries the L4 header (not
/// a non-first fragment).
#[inline]
pub fn fnat_rewrite(
    ip: &mut [u8],
    hl: usize,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    l4: bool,
) -> Result<(), DropReason> {
    if !forward_rewrite_both(ip, hl, src, dst, l4) {
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
    const LIP: [u8; 4] = [10, 2, 0, 200];
    const RIP: [u8; 4] = [10, 3, 0, 11];

    fn ends(f: &[u8]) -> ([u8; 4], u16, [u8; 4], u16, u8) {
        let p = assert_checksums_valid(f);
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        let (s, d) = match &p.transport {
            Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
            Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
            _ => panic!(),
        };
        (
            ip.header().source(),
            s,
            ip.header().destination(),
            d,
            ip.header().ttl(),
        )
    }

    #[test]
    fn tcp_and_udp_both_ways() {
        for udp in [false, true] {
            let mut f = if udp {
                udp_frame(CIP, VIP, 40000, 53, b"query")
            } else {
                tcp_frame(CIP, VIP, 40000, 80, false, b"GET /")
            };
            fnat_rewrite(&mut f[14..], 20, (LIP.into(), 5001), (RIP.into(), 8080), true).unwrap();
            assert_eq!(ends(&f), (LIP, 5001, RIP, 8080, 63));
            let mut r = if udp {
                udp_frame(RIP, LIP, 8080, 5001, b"answer")
            } else {
                tcp_frame(RIP, LIP, 8080, 5001, false, b"200")
            };
            fnat_rewrite(
                &mut r[14..],
                20,
                (VIP.into(), if udp { 53 } else { 80 }),
                (CIP.into(), 40000),
                true,
            )
            .unwrap();
            assert_eq!(ends(&r), (VIP, if udp { 53 } else { 80 }, CIP, 40000, 63));
        }
    }

    #[test]
    fn udp_without_checksum_stays_without_and_fragments_keep_their_ports() {
        let mut f = udp_frame(CIP, VIP, 40000, 53, b"query");
        f[14 + 20 + 6] = 0;
        f[14 + 20 + 7] = 0;
        fnat_rewrite(&mut f[14..], 20, (LIP.into(), 5001), (RIP.into(), 8080), true).unwrap();
        assert_eq!(&f[14 + 20 + 6..14 + 20 + 8], &[0, 0]);
        assert_eq!(&f[14 + 12..14 + 20], &[LIP, RIP].concat()[..]);
        // A non-first fragment: addresses only (its bytes are payload).
        let mut g = udp_frame(CIP, VIP, 40000, 53, b"query");
        let ports = g[34..38].to_vec();
        fnat_rewrite(&mut g[14..], 20, (LIP.into(), 5001), (RIP.into(), 8080), false).unwrap();
        assert_eq!(&g[34..38], &ports[..]);
        let ip = etherparse::Ipv4HeaderSlice::from_slice(&g[14..]).unwrap();
        assert_eq!(ip.to_header().calc_header_checksum(), ip.header_checksum());
    }

    #[test]
    fn ttl_one_is_refused_unchanged() {
        let mut f = tcp_frame(CIP, VIP, 40000, 80, false, b"x");
        f[14 + 8] = 1;
        let orig = f.clone();
        assert_eq!(
            fnat_rewrite(&mut f[14..], 20, (LIP.into(), 5001), (RIP.into(), 8080), true),
            Err(DropReason::TtlExpired)
        );
        assert_eq!(f, orig);
    }
}
