//! TCP segment headers (RFC 793 / 9293): what a layer-4 director reads (ports, flags for
//! the connection state machine) and rewrites (ports, checksum).
//!
//! The view covers the whole segment, i.e. the IP payload: the checksum is computed
//! over every byte of the buffer given to it.

use std::net::Ipv4Addr;

use super::bytes::{get_u16, get_u32, get_u8, set_u16, set_u32, set_u8, slice, tail, tail_mut};
use super::checksum;
use super::ipv4::IpProtocol;
use super::WireError;

pub mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

/// Bits of the flags byte (offset 13).
pub struct TcpFlags;

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// A view over a TCP segment.
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

/// The pseudo-header length field; a segment too long for IPv4 cannot be valid anyway,
/// so saturating keeps the arithmetic total without a panic path.
#[inline(always)]
fn seg_len(b: &[u8]) -> u16 {
    u16::try_from(b.len()).unwrap_or(u16::MAX)
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wrap without validation. Accessors stay total; missing fields read as zero (an
    /// ICMP error quotes only the first 8 bytes: ports and sequence number).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wrap after checking the fixed header and that the data offset fits the buffer.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hl = p.header_len();
        if hl < HEADER_LEN || hl > len {
            return Err(WireError::BadHeaderLen);
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

    #[inline]
    pub fn seq_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQ)
    }

    #[inline]
    pub fn ack_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::ACK)
    }

    /// Header length in bytes (data offset * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(get_u8(self.buffer.as_ref(), field::DATA_OFF) >> 4) * 4
    }

    /// The flags byte; test with the `TcpFlags` bits. (The experimental NS bit, in the
    /// data-offset byte, is left out.)
    #[inline]
    pub fn flags(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::FLAGS)
    }

    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & TcpFlags::SYN != 0
    }

    #[inline]
    pub fn fin(&self) -> bool {
        self.flags() & TcpFlags::FIN != 0
    }

    #[inline]
    pub fn rst(&self) -> bool {
        self.flags() & TcpFlags::RST != 0
    }

    #[inline]
    pub fn ack(&self) -> bool {
        self.flags() & TcpFlags::ACK != 0
    }

    #[inline]
    pub fn window(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::WINDOW)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn urgent(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::URGENT)
    }

    #[inline]
    pub fn options(&self) -> &[u8] {
        slice(self.buffer.as_ref(), HEADER_LEN..self.header_len())
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        tail(self.buffer.as_ref(), self.header_len())
    }

    /// Ones-complement sum of pseudo-header + segment; 0xFFFF when the checksum holds.
    #[inline]
    fn full_sum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let b = self.buffer.as_ref();
        checksum::fold(checksum::pseudo_header_sum(src, dst, IpProtocol::TCP, seg_len(b)) + checksum::sum(b))
    }

    /// Check the checksum of the whole buffer against the IPv4 pseudo-header.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.full_sum(src, dst) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline(always)]
    fn fix_checksum(&mut self, f: impl FnOnce(u16) -> u16) {
        let b = self.buffer.as_mut();
        let c = get_u16(b, field::CHECKSUM);
        set_u16(b, field::CHECKSUM, f(c));
    }

    /// Set the source port and update the checksum incrementally.
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        let old = self.src_port();
        set_u16(self.buffer.as_mut(), field::SRC_PORT, port);
        self.fix_checksum(|c| checksum::update16(c, old, port));
    }

    /// Set the destination port and update the checksum incrementally.
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        let old = self.dst_port();
        set_u16(self.buffer.as_mut(), field::DST_PORT, port);
        self.fix_checksum(|c| checksum::update16(c, old, port));
    }

    /// Set the sequence number and update the checksum incrementally.
    #[inline]
    pub fn set_seq_number(&mut self, seq: u32) {
        let old = self.seq_number();
        set_u32(self.buffer.as_mut(), field::SEQ, seq);
        self.fix_checksum(|c| checksum::update32(c, old, seq));
    }

    /// Set the acknowledgment number and update the checksum incrementally.
    #[inline]
    pub fn set_ack_number(&mut self, ack: u32) {
        let old = self.ack_number();
        set_u32(self.buffer.as_mut(), field::ACK, ack);
        self.fix_checksum(|c| checksum::update32(c, old, ack));
    }

    /// Set the flags byte and update the checksum incrementally.
    #[inline]
    pub fn set_flags(&mut self, flags: u8) {
        let b = self.buffer.as_mut();
        let old = get_u16(b, field::DATA_OFF);
        set_u8(b, field::FLAGS, flags);
        let new = get_u16(b, field::DATA_OFF);
        self.fix_checksum(|c| checksum::update16(c, old, new));
    }

    /// Write the checksum field as is.
    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, c);
    }

    /// Fold an address change in the IPv4 pseudo-header (NAT of the source or the
    /// destination) into the checksum.
    #[inline]
    pub fn update_checksum_addr(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        self.fix_checksum(|c| checksum::update32(c, u32::from(old), u32::from(new)));
    }

    /// Recompute the checksum over pseudo-header + the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let s = self.full_sum(src, dst);
        self.set_checksum(!s);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        tail_mut(self.buffer.as_mut(), h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TcpSlice, TransportSlice};
    use proptest::prelude::*;

    const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    const RIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// A SYN to port 80 with MSS 1460, built by hand.
    fn known_syn() -> Vec<u8> {
        let mut v = vec![
            0x9c, 0x40, 0x00, 0x50, // 40000 -> 80
            0x00, 0x00, 0x03, 0xe8, // seq 1000
            0x00, 0x00, 0x00, 0x00, // ack 0
            0x60, 0x02, 0xfa, 0xf0, // doff 6, SYN, window 64240
            0x00, 0x00, 0x00, 0x00, // checksum, urgent
            0x02, 0x04, 0x05, 0xb4, // MSS 1460
        ];
        TcpPacket::new_unchecked(&mut v[..]).fill_checksum(CIP, VIP);
        v
    }

    #[test]
    fn parse_known() {
        let v = known_syn();
        let p = TcpPacket::new_checked(&v[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (40000, 80));
        assert_eq!((p.seq_number(), p.ack_number()), (1000, 0));
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.flags(), TcpFlags::SYN);
        assert!(p.syn() && !p.ack() && !p.fin() && !p.rst());
        assert_eq!(p.window(), 64240);
        assert_eq!(p.options(), &[2, 4, 5, 0xb4]);
        assert!(p.payload().is_empty());
        assert!(p.verify_checksum(CIP, VIP));
        assert!(!p.verify_checksum(CIP, RIP));
        // Independent check of our fill against etherparse's computation.
        let e = TcpSlice::from_slice(&v).unwrap();
        assert_eq!(
            e.calc_checksum_ipv4(CIP.octets(), VIP.octets()).unwrap(),
            p.checksum()
        );
    }

    #[test]
    fn check_errors() {
        let v = known_syn();
        assert_eq!(
            TcpPacket::new_checked(&v[..19]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            TcpPacket::new_checked(&v[..20]).unwrap_err(),
            WireError::BadHeaderLen
        );
        let mut b = v.clone();
        b[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&b[..]).unwrap_err(),
            WireError::BadHeaderLen
        );
        b[12] = 0x50;
        assert!(TcpPacket::new_checked(&b[..]).is_ok());
    }

    #[test]
    fn etherparse_builds_we_parse() {
        let mut v = Vec::new();
        PacketBuilder::ipv4(CIP.octets(), VIP.octets(), 64)
            .tcp(51000, 443, 0xdead_beef, 512)
            .ack(77)
            .psh()
            .fin()
            .options_raw(&[1, 1, 1, 1])
            .unwrap()
            .write(&mut v, b"odd")
            .unwrap();
        let ip = crate::wire::Ipv4Packet::new_checked(&v[..]).unwrap();
        let p = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (51000, 443));
        assert_eq!((p.seq_number(), p.ack_number()), (0xdead_beef, 77));
        assert_eq!(p.flags(), TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN);
        assert_eq!(p.window(), 512);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.payload(), b"odd");
        assert!(p.verify_checksum(CIP, VIP));
    }

    #[test]
    fn nat_rewrite_etherparse_agrees() {
        let mut v = Vec::new();
        PacketBuilder::ipv4(CIP.octets(), VIP.octets(), 64)
            .tcp(40000, 80, 1, 100)
            .syn()
            .write(&mut v, b"x")
            .unwrap();
        {
            let mut ip = crate::wire::Ipv4Packet::new_checked(&mut v[..]).unwrap();
            ip.set_dst_addr(RIP);
            ip.decrement_ttl();
            let mut t = TcpPacket::new_checked(ip.payload_mut()).unwrap();
            t.update_checksum_addr(VIP, RIP);
            t.set_dst_port(8080);
        }
        let s = SlicedPacket::from_ip(&v).unwrap();
        let Some(TransportSlice::Tcp(t)) = s.transport else {
            panic!("no tcp")
        };
        assert_eq!(t.destination_port(), 8080);
        assert_eq!(
            t.checksum(),
            t.calc_checksum_ipv4(CIP.octets(), RIP.octets()).unwrap()
        );
        let Some(etherparse::NetSlice::Ipv4(ip)) = s.net else {
            panic!("no ip")
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(h.destination, RIP.octets());
    }

    #[test]
    fn flag_and_sequence_setters() {
        let mut v = known_syn();
        let mut p = TcpPacket::new_checked(&mut v[..]).unwrap();
        p.set_flags(TcpFlags::SYN | TcpFlags::ACK);
        p.set_seq_number(0x8000_0001);
        p.set_ack_number(1001);
        assert!(p.syn() && p.ack());
        assert_eq!((p.seq_number(), p.ack_number()), (0x8000_0001, 1001));
        assert!(p.verify_checksum(CIP, VIP));
        assert_eq!(v[12], 0x60, "data offset untouched by set_flags");
    }

    fn arb_segment() -> impl Strategy<Value = Vec<u8>> {
        (proptest::collection::vec(any::<u8>(), 20..120), any::<u8>()).prop_map(|(mut v, d)| {
            let max_doff = (v.len() / 4).min(15) as u8;
            let doff = 5 + d % (max_doff - 4);
            v[12] = (doff << 4) | (v[12] & 0x0f);
            v
        })
    }

    proptest! {
        #[test]
        fn incremental_equals_full(mut v in arb_segment(), a in any::<[u32; 4]>(), sport in any::<u16>(), dport in any::<u16>()) {
            let (src, dst, nsrc, ndst) = (Ipv4Addr::from(a[0]), Ipv4Addr::from(a[1]), Ipv4Addr::from(a[2]), Ipv4Addr::from(a[3]));
            let mut p = TcpPacket::new_checked(&mut v[..]).unwrap();
            p.fill_checksum(src, dst);
            prop_assert!(p.verify_checksum(src, dst));
            // Full NAT: both addresses and both ports.
            p.update_checksum_addr(src, nsrc);
            p.set_src_port(sport);
            p.update_checksum_addr(dst, ndst);
            p.set_dst_port(dport);
            let inc = p.checksum();
            prop_assert!(p.verify_checksum(nsrc, ndst));
            p.fill_checksum(nsrc, ndst);
            prop_assert_eq!(inc, p.checksum());
            let e = TcpSlice::from_slice(&v).unwrap();
            prop_assert_eq!(e.calc_checksum_ipv4(nsrc.octets(), ndst.octets()).unwrap(), inc);
            prop_assert_eq!((e.source_port(), e.destination_port()), (sport, dport));
        }

        #[test]
        fn matches_etherparse(v in arb_segment()) {
            let p = TcpPacket::new_checked(&v[..]).unwrap();
            let e = TcpSlice::from_slice(&v).unwrap();
            prop_assert_eq!(p.src_port(), e.source_port());
            prop_assert_eq!(p.dst_port(), e.destination_port());
            prop_assert_eq!(p.seq_number(), e.sequence_number());
            prop_assert_eq!(p.ack_number(), e.acknowledgment_number());
            prop_assert_eq!(p.header_len(), usize::from(e.data_offset()) * 4);
            prop_assert_eq!((p.fin(), p.syn(), p.rst(), p.ack()), (e.fin(), e.syn(), e.rst(), e.ack()));
            prop_assert_eq!(p.flags() & TcpFlags::PSH != 0, e.psh());
            prop_assert_eq!(p.flags() & TcpFlags::URG != 0, e.urg());
            prop_assert_eq!(p.window(), e.window_size());
            prop_assert_eq!(p.checksum(), e.checksum());
            prop_assert_eq!(p.urgent(), e.urgent_pointer());
            prop_assert_eq!(p.options(), e.options());
            prop_assert_eq!(p.payload(), e.payload());
        }

        #[test]
        fn no_panic(mut data in proptest::collection::vec(any::<u8>(), 0..80), a in any::<u32>(), w in any::<u16>(), x in any::<u8>()) {
            if let Ok(p) = TcpPacket::new_checked(&mut data[..]) {
                exercise(p, a, w, x);
            }
            exercise(TcpPacket::new_unchecked(&mut data[..]), a, w, x);
        }
    }

    fn exercise(mut p: TcpPacket<&mut [u8]>, a: u32, w: u16, x: u8) {
        let ip = Ipv4Addr::from(a);
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.seq_number(),
            p.ack_number(),
            p.header_len(),
            p.flags(),
        );
        let _ = (
            p.syn(),
            p.fin(),
            p.rst(),
            p.ack(),
            p.window(),
            p.checksum(),
            p.urgent(),
            p.options(),
            p.payload(),
        );
        let _ = p.verify_checksum(ip, ip);
        p.set_src_port(w);
        p.set_dst_port(w);
        p.set_seq_number(a);
        p.set_ack_number(a);
        p.set_flags(x);
        p.set_checksum(w);
        p.update_checksum_addr(ip, Ipv4Addr::LOCALHOST);
        p.fill_checksum(ip, ip);
        let _ = p.payload_mut();
    }
}
