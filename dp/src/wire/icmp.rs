//! ICMPv4 (RFC 792): echo for the director's own addresses, and the error messages a
//! director must relay (rewriting the quoted datagram) or send (fragmentation needed,
//! for path MTU discovery when a forward method adds a header or a link is smaller).
//!
//! The checksum covers the whole buffer given to the view, i.e. the IP payload.

use super::bytes::{get_u16, get_u8, set_u16, tail, tail_mut};
use super::checksum;
use super::WireError;

pub mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const REST: usize = 4;
    pub const NEXT_HOP_MTU: usize = 6;
    pub const BODY: usize = 8;
}

pub const HEADER_LEN: usize = 8;

/// Message types (and the one code) the director reads or writes.
pub struct IcmpType;

impl IcmpType {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAMETER_PROBLEM: u8 = 12;
    /// Code of DEST_UNREACHABLE: fragmentation needed and DF set (RFC 1191).
    pub const CODE_FRAG_NEEDED: u8 = 4;
}

/// A view over an ICMPv4 message.
#[derive(Debug, Clone)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        IcmpPacket { buffer }
    }

    /// Wrap after checking the 8-byte header is present. The quoted datagram of an
    /// error is not validated here: parse `inner()` with
    /// `Ipv4Packet::new_checked_embedded` when it is needed.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        if p.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(p)
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn msg_type(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::TYPE)
    }

    #[inline]
    pub fn code(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::CODE)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// An error message, which quotes the datagram that caused it.
    #[inline]
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            IcmpType::DEST_UNREACHABLE
                | IcmpType::SOURCE_QUENCH
                | IcmpType::REDIRECT
                | IcmpType::TIME_EXCEEDED
                | IcmpType::PARAMETER_PROBLEM
        )
    }

    #[inline]
    pub fn is_echo_request(&self) -> bool {
        self.msg_type() == IcmpType::ECHO_REQUEST
    }

    /// The next-hop MTU of a "fragmentation needed" message (RFC 1191).
    #[inline]
    pub fn next_hop_mtu(&self) -> Option<u16> {
        if self.msg_type() == IcmpType::DEST_UNREACHABLE && self.code() == IcmpType::CODE_FRAG_NEEDED {
            Some(get_u16(self.buffer.as_ref(), field::NEXT_HOP_MTU))
        } else {
            None
        }
    }

    /// The quoted original datagram (its IP header and at least 8 payload bytes) of an
    /// error message; empty for other types.
    #[inline]
    pub fn inner(&self) -> &[u8] {
        if self.is_error() {
            tail(self.buffer.as_ref(), field::BODY)
        } else {
            &[]
        }
    }

    /// Everything after the 8-byte header (echo data, or the quoted datagram).
    #[inline]
    pub fn data(&self) -> &[u8] {
        tail(self.buffer.as_ref(), field::BODY)
    }

    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::finish(checksum::sum(self.buffer.as_ref())) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    #[inline(always)]
    fn replace_word(&mut self, at: usize, new: u16) {
        let b = self.buffer.as_mut();
        let old = get_u16(b, at);
        set_u16(b, at, new);
        let c = get_u16(b, field::CHECKSUM);
        set_u16(b, field::CHECKSUM, checksum::update16(c, old, new));
    }

    /// Set the type; the checksum is updated incrementally.
    #[inline]
    pub fn set_msg_type(&mut self, t: u8) {
        let w = get_u16(self.buffer.as_ref(), field::TYPE);
        self.replace_word(field::TYPE, (u16::from(t) << 8) | (w & 0x00ff));
    }

    /// Set the code; the checksum is updated incrementally.
    #[inline]
    pub fn set_code(&mut self, c: u8) {
        let w = get_u16(self.buffer.as_ref(), field::TYPE);
        self.replace_word(field::TYPE, (w & 0xff00) | u16::from(c));
    }

    #[inline]
    pub fn set_echo_ident(&mut self, id: u16) {
        self.replace_word(field::ECHO_IDENT, id);
    }

    #[inline]
    pub fn set_echo_seq_no(&mut self, seq: u16) {
        self.replace_word(field::ECHO_SEQ, seq);
    }

    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, c);
    }

    /// Fold a change of one 16-bit word of the body (made through `inner_mut`) into
    /// the checksum. The word must sit at an even offset of the message.
    #[inline]
    pub fn adjust_checksum16(&mut self, old: u16, new: u16) {
        let c = self.checksum();
        self.set_checksum(checksum::update16(c, old, new));
    }

    /// Fold a change of a 32-bit value at an even offset of the body (a quoted address).
    #[inline]
    pub fn adjust_checksum32(&mut self, old: u32, new: u32) {
        let c = self.checksum();
        self.set_checksum(checksum::update32(c, old, new));
    }

    /// Recompute the checksum over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::finish(checksum::sum(self.buffer.as_ref()));
        self.set_checksum(c);
    }

    #[inline]
    pub fn inner_mut(&mut self) -> &mut [u8] {
        if self.is_error() {
            tail_mut(self.buffer.as_mut(), field::BODY)
        } else {
            &mut []
        }
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        tail_mut(self.buffer.as_mut(), field::BODY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::Ipv4Packet;
    use etherparse::icmpv4::DestUnreachableHeader;
    use etherparse::{Icmpv4Type, PacketBuilder};
    use proptest::prelude::*;

    /// `ping -c1`-style request: ident 0x1234, seq 1, 4 data bytes.
    fn echo_request() -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .icmpv4_echo_request(0x1234, 1)
            .write(&mut v, b"ping")
            .unwrap();
        v.drain(..20);
        v
    }

    fn tcp_packet(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4([198, 51, 100, 10], [203, 0, 113, 1], 64)
            .tcp(40000, 80, 0x01020304, 1000)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    #[test]
    fn parse_echo_request() {
        let v = echo_request();
        let p = IcmpPacket::new_checked(&v[..]).unwrap();
        assert_eq!((p.msg_type(), p.code()), (IcmpType::ECHO_REQUEST, 0));
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x1234, 1));
        assert!(!p.is_error());
        assert!(p.inner().is_empty());
        assert_eq!(p.data(), b"ping");
        assert_eq!(p.next_hop_mtu(), None);
        assert!(p.verify_checksum());
        assert_eq!(
            IcmpPacket::new_checked(&v[..7]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn etherparse_errors_we_parse() {
        let orig = tcp_packet(b"data");
        for (t, ty, code, is_frag) in [
            (
                Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1280,
                }),
                3,
                4,
                true,
            ),
            (
                Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
                3,
                3,
                false,
            ),
            (
                Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit),
                11,
                0,
                false,
            ),
        ] {
            let mut v = Vec::new();
            PacketBuilder::ipv4([1, 1, 1, 1], [198, 51, 100, 10], 64)
                .icmpv4(t)
                .write(&mut v, &orig[..28])
                .unwrap();
            let ip = Ipv4Packet::new_checked(&v[..]).unwrap();
            let p = IcmpPacket::new_checked(ip.payload()).unwrap();
            assert_eq!((p.msg_type(), p.code()), (ty, code));
            assert!(p.is_error());
            assert!(p.verify_checksum());
            assert_eq!(p.next_hop_mtu(), if is_frag { Some(1280) } else { None });
            assert_eq!(p.inner(), &orig[..28]);
        }
    }

    #[test]
    fn error_types() {
        let mut b = [0u8; 8];
        for t in 0..=255u8 {
            b[0] = t;
            let p = IcmpPacket::new_checked(&b[..]).unwrap();
            assert_eq!(p.is_error(), matches!(t, 3 | 4 | 5 | 11 | 12), "type {t}");
        }
    }

    #[test]
    fn inner_rewrite_with_adjust() {
        // NAT of an error about a packet we rewrote: change the quoted source address and
        // keep the ICMP checksum valid without a full pass.
        let orig = tcp_packet(b"data");
        let mut out = [0u8; 64];
        let n = HEADER_LEN + 28;
        out[..4].copy_from_slice(&[IcmpType::DEST_UNREACHABLE, IcmpType::CODE_FRAG_NEEDED, 0, 0]);
        out[HEADER_LEN..n].copy_from_slice(&orig[..28]);
        let mut p = IcmpPacket::new_checked(&mut out[..n]).unwrap();
        p.fill_checksum();
        let inner = p.inner_mut();
        let old = u32::from_be_bytes([inner[12], inner[13], inner[14], inner[15]]);
        let new = 0x0a00_0002u32;
        inner[12..16].copy_from_slice(&new.to_be_bytes());
        p.adjust_checksum32(old, new);
        assert!(p.verify_checksum());
        let c = p.checksum();
        p.fill_checksum();
        assert_eq!(c, p.checksum());
    }

    proptest! {
        #[test]
        fn setters_incremental(mut v in proptest::collection::vec(any::<u8>(), 8..80), t in any::<u8>(), c in any::<u8>(), id in any::<u16>(), seq in any::<u16>()) {
            v[0] |= 0x80; // never all zeros
            let mut p = IcmpPacket::new_checked(&mut v[..]).unwrap();
            p.fill_checksum();
            p.set_msg_type(t);
            p.set_code(c);
            p.set_echo_ident(id);
            p.set_echo_seq_no(seq);
            let inc = p.checksum();
            prop_assert!(p.verify_checksum());
            p.fill_checksum();
            prop_assert_eq!(inc, p.checksum());
            prop_assert_eq!((p.msg_type(), p.code(), p.echo_ident(), p.echo_seq_no()), (t, c, id, seq));
        }

        #[test]
        fn no_panic(mut data in proptest::collection::vec(any::<u8>(), 0..60), w in any::<u16>(), x in any::<u8>()) {
            if let Ok(p) = IcmpPacket::new_checked(&mut data[..]) {
                exercise(p, w, x);
            }
            exercise(IcmpPacket::new_unchecked(&mut data[..]), w, x);
        }
    }

    fn exercise(mut p: IcmpPacket<&mut [u8]>, w: u16, x: u8) {
        let _ = (
            p.msg_type(),
            p.code(),
            p.checksum(),
            p.echo_ident(),
            p.echo_seq_no(),
            p.is_error(),
        );
        let _ = (
            p.is_echo_request(),
            p.next_hop_mtu(),
            p.inner(),
            p.data(),
            p.verify_checksum(),
        );
        p.set_msg_type(x);
        p.set_code(x);
        p.set_echo_ident(w);
        p.set_echo_seq_no(w);
        p.adjust_checksum16(w, 1);
        p.adjust_checksum32(u32::from(w), 1);
        p.set_checksum(w);
        p.fill_checksum();
        let _ = p.inner_mut();
        let _ = p.data_mut();
    }
}
