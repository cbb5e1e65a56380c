//! UDP datagram headers (RFC 768).
//!
//! Over IPv4 a checksum of 0 means "not computed": incremental updates must leave it 0,
//! and a computed checksum that comes out as 0 is sent as 0xFFFF (the same value in
//! ones-complement arithmetic).

use std::net::Ipv4Addr;

use super::bytes::{get_u16, set_u16, slice, slice_mut};
use super::checksum;
use super::ipv4::IpProtocol;
use super::WireError;

pub mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

pub const HEADER_LEN: usize = 8;

/// A view over a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

/// Apply an incremental update under the zero rule.
#[inline(always)]
fn update_nonzero(c: u16, f: impl FnOnce(u16) -> u16) -> u16 {
    if c == 0 {
        return 0;
    }
    match f(c) {
        0 => 0xffff,
        n => n,
    }
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wrap without validation. Accessors stay total; missing fields read as zero.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wrap after checking the header and that the length field fits the buffer.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let l = usize::from(p.len());
        if l < HEADER_LEN || l > len {
            return Err(WireError::BadLength);
        }
        Ok(p)
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header + payload.
    #[inline]
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// True when the length field says there is no payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The datagram as the length field bounds it (cut at the buffer end).
    #[inline]
    fn datagram(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        slice(b, 0..usize::from(self.len()).min(b.len()))
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        slice(self.datagram(), HEADER_LEN..usize::from(self.len()))
    }

    #[inline]
    fn full_sum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        checksum::fold(
            checksum::pseudo_header_sum(src, dst, IpProtocol::UDP, self.len())
                + checksum::sum(self.datagram()),
        )
    }

    /// True when the checksum holds, or is absent (0).
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0 || self.full_sum(src, dst) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline(always)]
    fn fix_checksum(&mut self, f: impl FnOnce(u16) -> u16) {
        let b = self.buffer.as_mut();
        let c = get_u16(b, field::CHECKSUM);
        set_u16(b, field::CHECKSUM, update_nonzero(c, f));
    }

    /// Set the source port; an existing checksum is updated incrementally.
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        let old = self.src_port();
        set_u16(self.buffer.as_mut(), field::SRC_PORT, port);
        self.fix_checksum(|c| checksum::update16(c, old, port));
    }

    /// Set the destination port; an existing checksum is updated incrementally.
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        let old = self.dst_port();
        set_u16(self.buffer.as_mut(), field::DST_PORT, port);
        self.fix_checksum(|c| checksum::update16(c, old, port));
    }

    /// Set the length field. It is counted twice by the checksum (header and
    /// pseudo-header), so the incremental update is applied twice.
    #[inline]
    pub fn set_len(&mut self, len: u16) {
        let old = self.len();
        set_u16(self.buffer.as_mut(), field::LENGTH, len);
        self.fix_checksum(|c| checksum::update16(checksum::update16(c, old, len), old, len));
    }

    /// Write the checksum field as is (0 turns the checksum off).
    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, c);
    }

    /// Fold an address change in the IPv4 pseudo-header into an existing checksum.
    #[inline]
    pub fn update_checksum_addr(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        self.fix_checksum(|c| checksum::update32(c, u32::from(old), u32::from(new)));
    }

    /// Compute the checksum from scratch (a result of 0 is written as 0xFFFF).
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = match !self.full_sum(src, dst) {
            0 => 0xffff,
            c => c,
        };
        self.set_checksum(c);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let b = self.buffer.as_mut();
        let end = usize::from(get_u16(b, field::LENGTH)).min(b.len());
        slice_mut(b, HEADER_LEN..end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, UdpHeader, UdpSlice};
    use proptest::prelude::*;

    const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    const RIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// A DNS-ish query: 5353 -> 53, 3 payload bytes, checksum filled by etherparse.
    fn known() -> Vec<u8> {
        let h = UdpHeader::with_ipv4_checksum(
            5353,
            53,
            &etherparse::Ipv4Header::new(11, 64, etherparse::IpNumber::UDP, CIP.octets(), VIP.octets())
                .unwrap(),
            &[1, 2, 3],
        )
        .unwrap();
        let mut v = h.to_bytes().to_vec();
        v.extend_from_slice(&[1, 2, 3]);
        v
    }

    #[test]
    fn parse_known() {
        let v = known();
        let p = UdpPacket::new_checked(&v[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (5353, 53, 11));
        assert_eq!(p.payload(), &[1, 2, 3]);
        assert!(p.verify_checksum(CIP, VIP));
        assert!(!p.verify_checksum(CIP, RIP));
        let mut w = v.clone();
        let mut q = UdpPacket::new_checked(&mut w[..]).unwrap();
        q.fill_checksum(CIP, VIP);
        assert_eq!(w, v, "our full computation agrees with etherparse");
    }

    #[test]
    fn check_errors() {
        let v = known();
        assert_eq!(UdpPacket::new_checked(&v[..7]).unwrap_err(), WireError::Truncated);
        assert_eq!(
            UdpPacket::new_checked(&v[..10]).unwrap_err(),
            WireError::BadLength
        );
        let mut b = v.clone();
        b[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(UdpPacket::new_checked(&b[..]).unwrap_err(), WireError::BadLength);
        // Bytes past the length field (padding) are allowed and not part of the payload.
        let mut b = v.clone();
        b.extend_from_slice(&[9, 9]);
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload(), &[1, 2, 3]);
        assert!(p.verify_checksum(CIP, VIP));
    }

    #[test]
    fn zero_checksum_means_none_and_stays_zero() {
        let mut v = known();
        let mut p = UdpPacket::new_checked(&mut v[..]).unwrap();
        p.set_checksum(0);
        p.update_checksum_addr(VIP, RIP);
        p.set_dst_port(5353);
        p.set_src_port(1);
        p.set_len(11);
        assert_eq!(p.checksum(), 0);
        assert!(p.verify_checksum(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST));
    }

    /// Exhaustive over the new port: among all 65536 there are results that compute to
    /// 0, and both paths must send those as 0xFFFF.
    #[test]
    fn computed_zero_sent_as_ffff_every_port() {
        let base = known();
        let mut zeros = 0;
        for port in 0..=u16::MAX {
            let mut a = base.clone();
            let mut p = UdpPacket::new_checked(&mut a[..]).unwrap();
            p.set_dst_port(port);
            let inc = p.checksum();
            p.fill_checksum(CIP, VIP);
            assert_eq!(inc, p.checksum(), "port {port}");
            assert_ne!(inc, 0);
            zeros += usize::from(inc == 0xffff);
            assert!(p.verify_checksum(CIP, VIP));
        }
        assert_eq!(zeros, 1, "exactly one port makes the sum come out as zero");
    }

    #[test]
    fn etherparse_builds_we_parse_and_back() {
        let mut v = Vec::new();
        PacketBuilder::ipv4(CIP.octets(), VIP.octets(), 64)
            .udp(40001, 53)
            .write(&mut v, b"hello")
            .unwrap();
        {
            let mut ip = crate::wire::Ipv4Packet::new_checked(&mut v[..]).unwrap();
            let u = UdpPacket::new_checked(ip.payload()).unwrap();
            assert_eq!((u.src_port(), u.dst_port(), u.len()), (40001, 53, 13));
            assert_eq!(u.payload(), b"hello");
            assert!(u.verify_checksum(CIP, VIP));
            ip.set_dst_addr(RIP);
            let mut u = UdpPacket::new_checked(ip.payload_mut()).unwrap();
            u.update_checksum_addr(VIP, RIP);
            u.set_dst_port(5300);
        }
        let u = UdpSlice::from_slice(&v[20..]).unwrap();
        assert_eq!(u.destination_port(), 5300);
        let h = u.to_header();
        assert_eq!(
            h.checksum,
            h.calc_checksum_ipv4_raw(CIP.octets(), RIP.octets(), u.payload())
                .unwrap()
        );
    }

    fn arb_datagram() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 8..100).prop_map(|mut v| {
            let l = v.len() as u16;
            v[4..6].copy_from_slice(&l.to_be_bytes());
            v
        })
    }

    proptest! {
        #[test]
        fn incremental_equals_full(mut v in arb_datagram(), a in any::<[u32; 4]>(), sport in any::<u16>(), dport in any::<u16>(), none in any::<bool>()) {
            let (src, dst, nsrc, ndst) = (Ipv4Addr::from(a[0]), Ipv4Addr::from(a[1]), Ipv4Addr::from(a[2]), Ipv4Addr::from(a[3]));
            let mut p = UdpPacket::new_checked(&mut v[..]).unwrap();
            if none {
                p.set_checksum(0);
            } else {
                p.fill_checksum(src, dst);
                prop_assert_ne!(p.checksum(), 0);
            }
            p.update_checksum_addr(src, nsrc);
            p.set_src_port(sport);
            p.update_checksum_addr(dst, ndst);
            p.set_dst_port(dport);
            let inc = p.checksum();
            prop_assert!(p.verify_checksum(nsrc, ndst));
            if none {
                prop_assert_eq!(inc, 0);
            } else {
                p.fill_checksum(nsrc, ndst);
                prop_assert_eq!(inc, p.checksum());
                let e = UdpSlice::from_slice(&v).unwrap();
                let h = e.to_header();
                prop_assert_eq!(h.calc_checksum_ipv4_raw(nsrc.octets(), ndst.octets(), e.payload()).unwrap(), inc);
            }
        }

        #[test]
        fn set_len_incremental(mut v in arb_datagram(), a in any::<[u32; 2]>(), l1 in any::<u8>(), l2 in any::<u8>()) {
            let (src, dst) = (Ipv4Addr::from(a[0]), Ipv4Addr::from(a[1]));
            let n = v.len() as u16;
            let (l1, l2) = (8 + u16::from(l1) % (n - 7), 8 + u16::from(l2) % (n - 7));
            // Zero bytes add nothing to the sum, so moving the end of the datagram over
            // them changes the checksum only through the two copies of the length.
            v[usize::from(l1.min(l2))..].fill(0);
            v[4..6].copy_from_slice(&l1.to_be_bytes());
            let mut p = UdpPacket::new_checked(&mut v[..]).unwrap();
            p.fill_checksum(src, dst);
            p.set_len(l2);
            let inc = p.checksum();
            prop_assert!(p.verify_checksum(src, dst));
            p.fill_checksum(src, dst);
            prop_assert_eq!(inc, p.checksum());
        }

        #[test]
        fn no_panic(mut data in proptest::collection::vec(any::<u8>(), 0..40), a in any::<u32>(), w in any::<u16>()) {
            if let Ok(p) = UdpPacket::new_checked(&mut data[..]) {
                exercise(p, a, w);
            }
            exercise(UdpPacket::new_unchecked(&mut data[..]), a, w);
        }
    }

    fn exercise(mut p: UdpPacket<&mut [u8]>, a: u32, w: u16) {
        let ip = Ipv4Addr::from(a);
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.len(),
            p.is_empty(),
            p.checksum(),
            p.payload(),
            p.verify_checksum(ip, ip),
        );
        p.set_src_port(w);
        p.set_dst_port(w);
        p.set_len(w);
        p.update_checksum_addr(ip, Ipv4Addr::LOCALHOST);
        p.fill_checksum(ip, ip);
        p.set_checksum(w);
        let _ = p.payload_mut();
    }
}
