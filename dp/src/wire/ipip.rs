//! IP-in-IP encapsulation (RFC 2003), the TUN forward method: the director wraps the
//! client's datagram, unchanged, in an outer header to the real server's RIP.

use std::net::Ipv4Addr;

use super::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use super::WireError;

/// Length of the outer header (no options).
pub const IPIP_HEADER_LEN: usize = 20;

/// Write the 20-byte outer header into `out[..20]` for the datagram `inner`, which
/// follows it on the wire. TOS (so ECN, as RFC 6040's normal mode wants) and DF are
/// copied from the inner header; the total length is 20 + the inner total length; the
/// identification is the inner one (see `encap_header_ident` to choose it).
///
/// `inner` must be a valid IPv4 datagram (link padding after it is allowed).
#[inline]
pub fn encap_header(
    out: &mut [u8],
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    inner: &[u8],
    ttl: u8,
) -> Result<(), WireError> {
    let ident = Ipv4Packet::new_checked(inner)?.ident();
    encap_header_ident(out, outer_src, outer_dst, inner, ttl, ident)
}

/// `encap_header` with an explicit identification, for a sender that keeps its own
/// counter: with DF clear the outer datagram may be fragmented, and the real server
/// reassembles by (outer src, outer dst, protocol, ident), which copied inner idents
/// from different clients could make collide.
#[inline]
pub fn encap_header_ident(
    out: &mut [u8],
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    inner: &[u8],
    ttl: u8,
    ident: u16,
) -> Result<(), WireError> {
    let ip = Ipv4Packet::new_checked(inner)?;
    if usize::from(ip.total_len()) + IPIP_HEADER_LEN > usize::from(u16::MAX) {
        return Err(WireError::BadTotalLen);
    }
    Ipv4Repr {
        src: outer_src,
        dst: outer_dst,
        protocol: IpProtocol::IPIP,
        ttl,
        tos: ip.dscp_ecn(),
        ident,
        dont_frag: ip.dont_frag(),
        payload_len: ip.total_len(),
    }
    .emit(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpNumber, Ipv4HeaderSlice, PacketBuilder};
    use proptest::prelude::*;

    const DIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const RIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);

    fn inner(df: bool, tos: u8, payload: usize) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4([198, 51, 100, 10], [203, 0, 113, 1], 60)
            .tcp(40000, 80, 1, 100)
            .write(&mut v, &vec![0x11; payload])
            .unwrap();
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        p.set_dont_frag(df);
        p.set_dscp_ecn(tos);
        p.set_ident(0x4242);
        v
    }

    #[test]
    fn outer_header_etherparse_agrees() {
        for (df, tos) in [(true, 0x00), (false, 0xb9), (true, 0x03)] {
            let inn = inner(df, tos, 13);
            let mut pkt = vec![0u8; IPIP_HEADER_LEN + inn.len()];
            let (outer, rest) = pkt.split_at_mut(IPIP_HEADER_LEN);
            rest.copy_from_slice(&inn);
            encap_header(outer, DIP, RIP, rest, 64).unwrap();

            let h = Ipv4HeaderSlice::from_slice(&pkt).unwrap().to_header();
            assert_eq!(h.protocol, IpNumber::IPV4);
            assert_eq!(h.source, DIP.octets());
            assert_eq!(h.destination, RIP.octets());
            assert_eq!(h.time_to_live, 64);
            assert_eq!((h.dscp.value() << 2) | h.ecn.value(), tos);
            assert_eq!(h.dont_fragment, df);
            assert!(!h.more_fragments);
            assert_eq!(h.identification, 0x4242);
            assert_eq!(usize::from(h.total_len), pkt.len());
            assert_eq!(h.header_checksum, h.calc_header_checksum());

            let o = Ipv4Packet::new_checked(&pkt[..]).unwrap();
            assert_eq!(o.payload(), &inn[..], "inner datagram carried unchanged");
        }
    }

    #[test]
    fn padding_after_inner_is_not_counted() {
        let mut inn = inner(true, 0, 0);
        let real = inn.len();
        inn.resize(46, 0);
        let mut out = [0u8; 20];
        encap_header_ident(&mut out, DIP, RIP, &inn, 9, 7).unwrap();
        let o = Ipv4Packet::new_unchecked(&out[..]);
        assert_eq!(usize::from(o.total_len()), 20 + real);
        assert_eq!(o.ident(), 7);
        assert!(o.verify_checksum());
    }

    #[test]
    fn errors() {
        let inn = inner(true, 0, 0);
        let mut out = [0u8; 20];
        assert_eq!(
            encap_header(&mut out[..19], DIP, RIP, &inn, 64),
            Err(WireError::Truncated)
        );
        assert_eq!(
            encap_header(&mut out, DIP, RIP, &inn[..10], 64),
            Err(WireError::Truncated)
        );
        let mut bad = inn.clone();
        bad[0] = 0x65;
        assert_eq!(
            encap_header(&mut out, DIP, RIP, &bad, 64),
            Err(WireError::BadVersion)
        );
        // An inner datagram of 65516+ bytes cannot get 20 more.
        let mut huge = vec![0u8; 65_520];
        huge[..20].copy_from_slice(&inn[..20]);
        huge[2..4].copy_from_slice(&65_516u16.to_be_bytes());
        assert_eq!(
            encap_header(&mut out, DIP, RIP, &huge, 64),
            Err(WireError::BadTotalLen)
        );
        huge[2..4].copy_from_slice(&65_515u16.to_be_bytes());
        assert_eq!(encap_header(&mut out, DIP, RIP, &huge, 64), Ok(()));
        assert_eq!(Ipv4Packet::new_unchecked(&out[..]).total_len(), u16::MAX);
    }

    proptest! {
        #[test]
        fn no_panic(mut inner in proptest::collection::vec(any::<u8>(), 0..80), fix in any::<bool>(), outlen in 0usize..30, ttl in any::<u8>()) {
            // Half the cases get a plausible header so the success path runs too.
            if fix && inner.len() >= 20 {
                inner[0] = 0x45;
                let l = (inner.len() as u16).min(u16::from_be_bytes([inner[2], inner[3]]).max(20));
                inner[2..4].copy_from_slice(&l.to_be_bytes());
            }
            let mut out = vec![0u8; outlen];
            let r = encap_header(&mut out, DIP, RIP, &inner, ttl);
            prop_assert_eq!(r.is_ok(), outlen >= 20 && Ipv4Packet::new_checked(&inner[..]).is_ok());
            if r.is_ok() {
                let o = Ipv4Packet::new_unchecked(&out[..]);
                prop_assert!(o.verify_checksum());
                prop_assert_eq!(o.protocol(), IpProtocol::IPIP);
                prop_assert_eq!(o.ttl(), ttl);
                prop_assert_eq!(usize::from(o.total_len()), 20 + usize::from(u16::from_be_bytes([inner[2], inner[3]])));
            }
        }
    }
}
