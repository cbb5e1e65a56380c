//! IPv4 headers (RFC 791), and the CIDR prefixes used for local networks.
//!
//! Every setter on a mutable view keeps the header checksum valid by an RFC 1624
//! incremental update (a few ns), so a NAT or TTL rewrite never needs a full pass over
//! the header; `fill_checksum` recomputes from scratch for freshly built headers.

use core::fmt;
use core::str::FromStr;
use std::net::Ipv4Addr;

use super::bytes::{get_u16, get_u32, get_u8, set_u16, set_u32, slice, slice_mut, Field};
use super::checksum;
use super::WireError;

pub mod field {
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    /// TTL and protocol share the 16-bit word at 8..10 for checksum purposes.
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// The TTL of packets the director originates (replies, tunnel headers).
pub const DEFAULT_TTL: u8 = 64;

const FLAG_DF: u16 = 0x4000;
/// More fragments, in the flags/offset word.
pub const FLAG_MF: u16 = 0x2000;
/// The fragment offset, in the flags/offset word.
pub const OFFSET_MASK: u16 = 0x1fff;

/// IP protocol numbers the director deals with.
pub struct IpProtocol;

impl IpProtocol {
    pub const ICMP: u8 = 1;
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

/// A view over an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wrap without validation. Accessors stay total; missing fields read as zero.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wrap after checking version, IHL and total length against the buffer. Bytes past
    /// `total_len` (Ethernet minimum-frame padding) are allowed and ignored by `payload`.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::check_header(buffer)?;
        if usize::from(p.total_len()) > p.buffer.as_ref().len() {
            return Err(WireError::BadTotalLen);
        }
        Ok(p)
    }

    /// Like `new_checked` but lets `total_len` run past the buffer: for the original
    /// datagram quoted in an ICMP error, of which only the header and the first 8
    /// payload bytes are present. `payload` is then cut at the end of the buffer.
    #[inline]
    pub fn new_checked_embedded(buffer: T) -> Result<Self, WireError> {
        Self::check_header(buffer)
    }

    #[inline]
    fn check_header(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if p.version() != 4 {
            return Err(WireError::BadVersion);
        }
        let hl = p.header_len();
        if hl < HEADER_LEN || hl > len {
            return Err(WireError::BadHeaderLen);
        }
        if usize::from(p.total_len()) < hl {
            return Err(WireError::BadTotalLen);
        }
        Ok(p)
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole underlying buffer, padding included.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    #[inline]
    pub fn version(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::VER_IHL) >> 4
    }

    /// Header length in bytes (IHL * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(get_u8(self.buffer.as_ref(), field::VER_IHL) & 0x0f) * 4
    }

    /// The former TOS byte: DSCP (high 6 bits) and ECN (low 2).
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::TOS)
    }

    #[inline]
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT)
    }

    #[inline]
    fn flags_offset(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FLG_OFF)
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & OFFSET_MASK) << 3
    }

    /// Part of a fragmented datagram: MF set or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// The first fragment of a fragmented datagram (MF set, offset 0). False for an
    /// unfragmented packet.
    #[inline]
    pub fn is_first_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) == FLAG_MF
    }

    /// Offset 0: the payload starts with the transport header, so ports can be read.
    /// True for unfragmented packets and first fragments.
    #[inline]
    pub fn has_transport_header(&self) -> bool {
        self.flags_offset() & OFFSET_MASK == 0
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::TTL)
    }

    #[inline]
    pub fn protocol(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::PROTOCOL)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_u32(self.buffer.as_ref(), field::SRC))
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_u32(self.buffer.as_ref(), field::DST))
    }

    #[inline]
    pub fn options(&self) -> &[u8] {
        slice(self.buffer.as_ref(), HEADER_LEN..self.header_len())
    }

    /// The header bytes, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        slice(self.buffer.as_ref(), 0..self.header_len())
    }

    #[inline]
    fn payload_range(&self) -> Field {
        let end = usize::from(self.total_len()).min(self.buffer.as_ref().len());
        self.header_len()..end
    }

    /// `header_len..total_len`: the transport segment without link padding.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        slice(self.buffer.as_ref(), self.payload_range())
    }

    /// `0..total_len`: the datagram without link padding.
    #[inline]
    pub fn packet(&self) -> &[u8] {
        let end = usize::from(self.total_len()).min(self.buffer.as_ref().len());
        slice(self.buffer.as_ref(), 0..end)
    }

    #[inline]
    pub fn verify_checksum(&self) -> bool {
        let h = self.header();
        if let Ok(w) = <&[u8; 20]>::try_from(h) {
            return header_checksum_ok(w);
        }
        !h.is_empty() && checksum::finish(checksum::sum(h)) == 0
    }
}

/// The header check of the usual 20-byte header: five 32-bit words, no loop
/// (every packet runs it).
///
/// The ones' complement sum folds to 0xFFFF exactly when the plain sum `s`
/// of the header's 16-bit words is a non-zero multiple of 0xFFFF (folding
/// keeps `s` modulo 0xFFFF, as 0x10000 = 1 modulo 0xFFFF). So the words are
/// summed as native-endian 32-bit loads, with no byte swap (a swapped word is
/// the word times 256 modulo 0xFFFF, and 256 is invertible modulo 0xFFFF, so
/// the multiple stays a multiple: RFC 1071's byte-order independence), and
/// tested with one remainder instead of the folds.
#[inline(always)]
pub fn header_checksum_ok(w: &[u8; 20]) -> bool {
    let word = |i: usize| u64::from(u32::from_ne_bytes([w[i], w[i + 1], w[i + 2], w[i + 3]]));
    let s = word(0) + word(4) + word(8) + word(12) + word(16);
    s != 0 && s % 0xffff == 0
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Replace the 16-bit word at `at` and fold the change into the header checksum.
    #[inline(always)]
    fn replace_word(&mut self, at: usize, new: u16) {
        let b = self.buffer.as_mut();
        let old = get_u16(b, at);
        set_u16(b, at, new);
        let c = get_u16(b, field::CHECKSUM);
        set_u16(b, field::CHECKSUM, checksum::update16(c, old, new));
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let r = self.payload_range();
        slice_mut(self.buffer.as_mut(), r)
    }

    /// Set the source address and update the header checksum incrementally. The
    /// transport checksum covers the address too: the caller updates it separately.
    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.replace_addr(field::SRC, a);
    }

    /// Set the destination address; see `set_src_addr`.
    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.replace_addr(field::DST, a);
    }

    #[inline(always)]
    fn replace_addr(&mut self, at: usize, a: Ipv4Addr) {
        let b = self.buffer.as_mut();
        let old = get_u32(b, at);
        let new = u32::from(a);
        set_u32(b, at, new);
        let c = get_u16(b, field::CHECKSUM);
        set_u16(b, field::CHECKSUM, checksum::update32(c, old, new));
    }

    /// Decrement the TTL (not below 0) and return the new value. The forwarder drops
    /// and answers time-exceeded for TTL <= 1 before calling this.
    #[inline]
    pub fn decrement_ttl(&mut self) -> u8 {
        let ttl = self.ttl().saturating_sub(1);
        self.set_ttl(ttl);
        ttl
    }

    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        let w = get_u16(self.buffer.as_ref(), field::TTL);
        self.replace_word(field::TTL, (u16::from(ttl) << 8) | (w & 0x00ff));
    }

    #[inline]
    pub fn set_protocol(&mut self, proto: u8) {
        let w = get_u16(self.buffer.as_ref(), field::TTL);
        self.replace_word(field::TTL, (w & 0xff00) | u16::from(proto));
    }

    #[inline]
    pub fn set_dscp_ecn(&mut self, tos: u8) {
        let w = get_u16(self.buffer.as_ref(), field::VER_IHL);
        self.replace_word(field::VER_IHL, (w & 0xff00) | u16::from(tos));
    }

    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        self.replace_word(field::LENGTH, len);
    }

    #[inline]
    pub fn set_ident(&mut self, id: u16) {
        self.replace_word(field::IDENT, id);
    }

    #[inline]
    pub fn set_dont_frag(&mut self, df: bool) {
        let w = self.flags_offset();
        self.replace_word(field::FLG_OFF, if df { w | FLAG_DF } else { w & !FLAG_DF });
    }

    #[inline]
    pub fn set_more_frags(&mut self, mf: bool) {
        let w = self.flags_offset();
        self.replace_word(field::FLG_OFF, if mf { w | FLAG_MF } else { w & !FLAG_MF });
    }

    /// Set the fragment offset in bytes; the low 3 bits are dropped (offsets are
    /// 8-byte units on the wire).
    #[inline]
    pub fn set_frag_offset(&mut self, bytes: u16) {
        let w = self.flags_offset();
        self.replace_word(field::FLG_OFF, (w & !OFFSET_MASK) | (bytes >> 3));
    }

    /// Write the checksum field as is (no update of anything else).
    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, c);
    }

    /// Recompute the header checksum from scratch.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::finish(checksum::sum(self.header()));
        self.set_checksum(c);
    }
}

/// The fields of an option-less IPv4 header that a builder chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub tos: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub payload_len: u16,
}

impl Ipv4Repr {
    /// Read the builder-level fields of a packet (options and fragment offset dropped).
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Ipv4Repr {
        Ipv4Repr {
            src: p.src_addr(),
            dst: p.dst_addr(),
            protocol: p.protocol(),
            ttl: p.ttl(),
            tos: p.dscp_ecn(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            payload_len: p.total_len().saturating_sub(p.header_len() as u16),
        }
    }

    /// Write a 20-byte header with a valid checksum at the start of `buf`.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let total = self
            .payload_len
            .checked_add(HEADER_LEN as u16)
            .ok_or(WireError::BadTotalLen)?;
        let h = buf.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
        set_u16(h, field::VER_IHL, 0x4500 | u16::from(self.tos));
        set_u16(h, field::LENGTH, total);
        set_u16(h, field::IDENT, self.ident);
        set_u16(h, field::FLG_OFF, if self.dont_frag { FLAG_DF } else { 0 });
        set_u16(
            h,
            field::TTL,
            (u16::from(self.ttl) << 8) | u16::from(self.protocol),
        );
        set_u32(h, field::SRC, u32::from(self.src));
        set_u32(h, field::DST, u32::from(self.dst));
        Ipv4Packet::new_unchecked(h).fill_checksum();
        Ok(())
    }
}

/// The netmask of a prefix length, as a host-order word; above 32 counts as 32.
#[inline]
pub const fn prefix_mask(prefix_len: u8) -> u32 {
    match prefix_len {
        0 => 0,
        p if p >= 32 => u32::MAX,
        p => u32::MAX << (32 - p as u32),
    }
}

/// An address with a prefix length, as in "10.1.0.1/24".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, WireError> {
        if prefix_len > 32 {
            return Err(WireError::BadAddress);
        }
        Ok(Ipv4Cidr { addr, prefix_len })
    }

    /// The mask; a `prefix_len` above 32 (only possible through the public field)
    /// counts as 32.
    #[inline]
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(prefix_mask(self.prefix_len))
    }

    #[inline]
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & prefix_mask(self.prefix_len))
    }

    #[inline]
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let m = prefix_mask(self.prefix_len);
        u32::from(ip) & m == u32::from(self.addr) & m
    }
}

/// "a.b.c.d/len"; a bare address means a host route (/32).
impl FromStr for Ipv4Cidr {
    type Err = WireError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, p),
            None => (s, "32"),
        };
        let addr: Ipv4Addr = a.parse().map_err(|_| WireError::BadAddress)?;
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return Err(WireError::BadAddress);
        }
        let prefix_len: u8 = p.parse().map_err(|_| WireError::BadAddress)?;
        Ipv4Cidr::new(addr, prefix_len)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use etherparse::{IpNumber, Ipv4Dscp, Ipv4Ecn, Ipv4Header, Ipv4HeaderSlice, PacketBuilder};
    use proptest::prelude::*;

    /// A UDP datagram header from a capture: 192.168.0.1 -> 192.168.0.199, checksum b861.
    pub(crate) const KNOWN: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0,
        0xa8, 0x00, 0xc7,
    ];

    fn known_packet() -> Vec<u8> {
        let mut v = KNOWN.to_vec();
        v.resize(0x73, 0xab);
        v
    }

    #[test]
    fn parse_known() {
        let v = known_packet();
        let p = Ipv4Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp_ecn(), 0);
        assert_eq!(p.total_len(), 0x73);
        assert_eq!(p.ident(), 0);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert!(!p.is_fragment());
        assert!(p.has_transport_header());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::UDP);
        assert_eq!(p.checksum(), 0xb861);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(p.options().is_empty());
        assert_eq!(p.payload().len(), 0x73 - 20);
        assert!(p.verify_checksum());
    }

    #[test]
    fn padding_beyond_total_len_is_ignored() {
        let mut v = KNOWN.to_vec();
        v[2..4].copy_from_slice(&28u16.to_be_bytes());
        v.resize(46, 0); // Ethernet minimum payload
        let p = Ipv4Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.payload().len(), 8);
        assert_eq!(p.packet().len(), 28);
    }

    #[test]
    fn check_errors() {
        let v = known_packet();
        assert_eq!(
            Ipv4Packet::new_checked(&v[..19]).unwrap_err(),
            WireError::Truncated
        );
        let mut b = v.clone();
        b[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            WireError::BadVersion
        );
        b[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            WireError::BadHeaderLen
        );
        b[0] = 0x4f; // 60-byte header in a 40-byte buffer
        assert_eq!(
            Ipv4Packet::new_checked(&b[..40]).unwrap_err(),
            WireError::BadHeaderLen
        );
        let mut b = v.clone();
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            WireError::BadTotalLen
        );
        // total_len past the buffer: refused, except as an ICMP-quoted datagram.
        assert_eq!(
            Ipv4Packet::new_checked(&v[..28]).unwrap_err(),
            WireError::BadTotalLen
        );
        let q = Ipv4Packet::new_checked_embedded(&v[..28]).unwrap();
        assert_eq!(q.payload().len(), 8);
        assert_eq!(q.total_len(), 0x73);
    }

    #[test]
    fn setters_keep_checksum_valid() {
        let mut v = known_packet();
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        p.set_src_addr(Ipv4Addr::new(10, 0, 0, 1));
        p.set_dst_addr(Ipv4Addr::new(172, 16, 5, 9));
        assert_eq!(p.decrement_ttl(), 63);
        p.set_ident(0x1234);
        p.set_dont_frag(false);
        p.set_more_frags(true);
        p.set_frag_offset(1480);
        p.set_dscp_ecn(0xb8);
        p.set_protocol(IpProtocol::TCP);
        p.set_total_len(100);
        assert!(p.verify_checksum());
        let inc = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), inc);
        let h = Ipv4HeaderSlice::from_slice(&v[..20]).unwrap().to_header();
        assert_eq!(h.source, [10, 0, 0, 1]);
        assert_eq!(h.destination, [172, 16, 5, 9]);
        assert_eq!(h.time_to_live, 63);
        assert_eq!(h.identification, 0x1234);
        assert!(!h.dont_fragment && h.more_fragments);
        assert_eq!(h.fragment_offset.byte_offset(), 1480);
        assert_eq!(h.dscp.value(), 0xb8 >> 2);
        assert_eq!(h.protocol, IpNumber::TCP);
        assert_eq!(h.total_len, 100);
        assert_eq!(h.header_checksum, h.calc_header_checksum());
    }

    #[test]
    fn ttl_does_not_wrap() {
        let mut v = known_packet();
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        p.set_ttl(1);
        assert_eq!(p.decrement_ttl(), 0);
        assert_eq!(p.decrement_ttl(), 0);
        assert_eq!(p.ttl(), 0);
        assert!(p.verify_checksum());
    }

    #[test]
    fn etherparse_builds_we_parse() {
        let mut v = Vec::new();
        PacketBuilder::ipv4([10, 1, 2, 3], [192, 0, 2, 80], 17)
            .tcp(40000, 80, 7, 1024)
            .write(&mut v, b"hello")
            .unwrap();
        let p = Ipv4Packet::new_checked(&v[..]).unwrap();
        let e = Ipv4HeaderSlice::from_slice(&v).unwrap();
        assert_eq!(p.src_addr(), e.source_addr());
        assert_eq!(p.dst_addr(), e.destination_addr());
        assert_eq!(p.ttl(), e.ttl());
        assert_eq!(p.protocol(), e.protocol().0);
        assert_eq!(p.total_len(), e.total_len());
        assert_eq!(p.ident(), e.identification());
        assert_eq!(p.dont_frag(), e.dont_fragment());
        assert_eq!(p.checksum(), e.header_checksum());
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 20 + 5);
    }

    #[test]
    fn we_emit_etherparse_parses() {
        let r = Ipv4Repr {
            src: Ipv4Addr::new(198, 51, 100, 7),
            dst: Ipv4Addr::new(203, 0, 113, 9),
            protocol: IpProtocol::IPIP,
            ttl: 33,
            tos: 0x2d,
            ident: 0xbeef,
            dont_frag: true,
            payload_len: 60,
        };
        let mut b = [0u8; 80];
        r.emit(&mut b).unwrap();
        let h = Ipv4HeaderSlice::from_slice(&b).unwrap().to_header();
        assert_eq!(h.source, [198, 51, 100, 7]);
        assert_eq!(h.destination, [203, 0, 113, 9]);
        assert_eq!(h.protocol, IpNumber::IPV4);
        assert_eq!(h.time_to_live, 33);
        assert_eq!((h.dscp.value() << 2) | h.ecn.value(), 0x2d);
        assert_eq!(h.identification, 0xbeef);
        assert!(h.dont_fragment && !h.more_fragments);
        assert_eq!(h.fragment_offset.value(), 0);
        assert_eq!(h.total_len, 80);
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(Ipv4Repr::parse(&Ipv4Packet::new_checked(&b[..]).unwrap()), r);
        assert_eq!(r.emit(&mut b[..19]), Err(WireError::Truncated));
        let big = Ipv4Repr {
            payload_len: 65516,
            ..r
        };
        assert_eq!(big.emit(&mut b), Err(WireError::BadTotalLen));
    }

    #[test]
    fn fragments_recognised() {
        // (DF, MF, offset in 8-byte units) -> (is_fragment, is_first_fragment, has_transport_header)
        let cases = [
            (false, false, 0u16, false, false, true),
            (true, false, 0, false, false, true),
            (false, true, 0, true, true, true),
            (false, true, 185, true, false, false),
            (false, false, 185, true, false, false),
            (true, false, 1, true, false, false),
            (true, true, 0x1fff, true, false, false),
        ];
        for (df, mf, off, frag, first, l4) in cases {
            let h = Ipv4Header {
                dont_fragment: df,
                more_fragments: mf,
                fragment_offset: off.try_into().unwrap(),
                total_len: 28,
                time_to_live: 9,
                protocol: IpNumber::UDP,
                ..Default::default()
            };
            let mut v = h.to_bytes().to_vec();
            v.resize(28, 0);
            let p = Ipv4Packet::new_checked(&v[..]).unwrap();
            let what = format!("df={df} mf={mf} off={off}");
            assert_eq!(p.dont_frag(), df, "{what}");
            assert_eq!(p.more_frags(), mf, "{what}");
            assert_eq!(p.frag_offset(), off * 8, "{what}");
            assert_eq!(p.is_fragment(), frag, "{what}");
            assert_eq!(p.is_fragment(), h.is_fragmenting_payload(), "{what}");
            assert_eq!(p.is_first_fragment(), first, "{what}");
            assert_eq!(p.has_transport_header(), l4, "{what}");
        }
    }

    #[test]
    fn cidr() {
        let c: Ipv4Cidr = "10.1.0.1/24".parse().unwrap();
        assert_eq!(
            c,
            Ipv4Cidr {
                addr: Ipv4Addr::new(10, 1, 0, 1),
                prefix_len: 24
            }
        );
        assert_eq!(c.to_string(), "10.1.0.1/24");
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.network(), Ipv4Addr::new(10, 1, 0, 0));
        assert!(c.contains(Ipv4Addr::new(10, 1, 0, 255)));
        assert!(!c.contains(Ipv4Addr::new(10, 1, 1, 0)));
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert_eq!(all.netmask(), Ipv4Addr::UNSPECIFIED);
        assert!(all.contains(Ipv4Addr::new(255, 1, 2, 3)));
        let host: Ipv4Cidr = "192.0.2.1".parse().unwrap();
        assert_eq!(host.prefix_len, 32);
        assert!(host.contains(Ipv4Addr::new(192, 0, 2, 1)));
        assert!(!host.contains(Ipv4Addr::new(192, 0, 2, 2)));
        assert_eq!(
            "10.0.0.0/9".parse::<Ipv4Cidr>().unwrap().netmask(),
            Ipv4Addr::new(255, 128, 0, 0)
        );
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "x/8",
            "10.0.0.0/8/8",
            "10.0.0.0/008",
        ] {
            assert_eq!(bad.parse::<Ipv4Cidr>(), Err(WireError::BadAddress), "{bad}");
        }
        let odd = Ipv4Cidr {
            addr: Ipv4Addr::new(1, 2, 3, 4),
            prefix_len: 200,
        };
        assert_eq!(odd.netmask(), Ipv4Addr::BROADCAST);
        assert!(odd.contains(Ipv4Addr::new(1, 2, 3, 4)));
    }

    /// A random valid header (options included) followed by its payload.
    pub(crate) fn arb_header() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<[u8; 20]>(),
            0usize..=10,
            proptest::collection::vec(any::<u8>(), 40),
            0usize..64,
        )
            .prop_map(|(mut h, opt_words, opts, payload)| {
                let hl = 20 + 4 * opt_words;
                h[0] = 0x40 | (hl / 4) as u8;
                // etherparse drops the reserved flag bit, so its checksum would not match.
                h[6] &= 0x7f;
                let mut v = h.to_vec();
                v.extend_from_slice(&opts[..4 * opt_words]);
                v.resize(hl + payload, 0x5a);
                let total = v.len() as u16;
                v[2..4].copy_from_slice(&total.to_be_bytes());
                Ipv4Packet::new_unchecked(&mut v[..]).fill_checksum();
                v
            })
    }

    /// The 20-byte check against the general sum, on headers whose checksum
    /// field is right (then edited or not), and on arbitrary bytes.
    fn header_checksum_matches_the_sum(h: [u8; 20]) {
        let slow = checksum::finish(checksum::sum(&h)) == 0;
        assert_eq!(header_checksum_ok(&h), slow, "{h:02x?}");
    }

    #[test]
    fn header_checksum_edge_cases() {
        header_checksum_matches_the_sum([0; 20]);
        header_checksum_matches_the_sum([0xff; 20]);
        header_checksum_matches_the_sum(KNOWN);
        assert!(header_checksum_ok(&KNOWN));
        let mut h = KNOWN;
        h[10] ^= 0x01;
        header_checksum_matches_the_sum(h);
        assert!(!header_checksum_ok(&h));
    }

    proptest! {
        #[test]
        fn header_checksum_ok_is_the_sum(mut h in any::<[u8; 20]>(), fix in any::<bool>(), flip in 0usize..200) {
            if fix {
                h[10..12].copy_from_slice(&[0, 0]);
                let c = checksum::finish(checksum::sum(&h));
                h[10..12].copy_from_slice(&c.to_be_bytes());
                assert!(header_checksum_ok(&h));
            }
            if flip < 160 {
                h[flip / 8] ^= 1 << (flip % 8);
            }
            header_checksum_matches_the_sum(h);
        }

        #[test]
        fn verify_accepts_valid_and_catches_any_byte_flip(mut v in arb_header(), at in any::<usize>(), x in 1u8..=255) {
            // Both paths: the 20-byte fast path and the general one (options).
            let hl = Ipv4Packet::new_checked(&v[..]).unwrap().header_len();
            prop_assert!(Ipv4Packet::new_checked(&v[..]).unwrap().verify_checksum());
            let at = at % hl;
            if at != 0 && at != 2 && at != 3 {
                // (version/IHL and total length would change what is checked)
                v[at] ^= x;
                prop_assert!(!Ipv4Packet::new_unchecked(&v[..]).verify_checksum(), "flip at {} of {}", at, hl);
            }
        }

        #[test]
        fn incremental_equals_full(mut v in arb_header(), src in any::<u32>(), dst in any::<u32>(), ttl in any::<u8>(), id in any::<u16>(), df in any::<bool>(), tos in any::<u8>()) {
            let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
            prop_assert!(p.verify_checksum());
            p.set_src_addr(Ipv4Addr::from(src));
            let c1 = p.checksum();
            p.fill_checksum();
            prop_assert_eq!(c1, p.checksum());
            p.set_dst_addr(Ipv4Addr::from(dst));
            p.set_ttl(ttl);
            p.decrement_ttl();
            p.set_ident(id);
            p.set_dont_frag(df);
            p.set_dscp_ecn(tos);
            let inc = p.checksum();
            p.fill_checksum();
            prop_assert_eq!(inc, p.checksum());
            prop_assert_eq!(p.ttl(), ttl.saturating_sub(1));
            let e = Ipv4HeaderSlice::from_slice(&v).unwrap().to_header();
            prop_assert_eq!(e.header_checksum, e.calc_header_checksum());
            prop_assert_eq!(e.source, src.to_be_bytes());
            prop_assert_eq!(e.destination, dst.to_be_bytes());
        }

        #[test]
        fn matches_etherparse_on_random_headers(v in arb_header()) {
            let p = Ipv4Packet::new_checked(&v[..]).unwrap();
            let (e, rest) = Ipv4Header::from_slice(&v).unwrap();
            prop_assert_eq!(p.header_len(), e.header_len());
            prop_assert_eq!(p.dscp_ecn(), (e.dscp.value() << 2) | e.ecn.value());
            prop_assert_eq!(p.total_len(), e.total_len);
            prop_assert_eq!(p.ident(), e.identification);
            prop_assert_eq!(p.dont_frag(), e.dont_fragment);
            prop_assert_eq!(p.more_frags(), e.more_fragments);
            prop_assert_eq!(p.frag_offset(), e.fragment_offset.byte_offset());
            prop_assert_eq!(p.is_fragment(), e.is_fragmenting_payload());
            prop_assert_eq!(p.ttl(), e.time_to_live);
            prop_assert_eq!(p.protocol(), e.protocol.0);
            prop_assert_eq!(p.checksum(), e.calc_header_checksum());
            prop_assert_eq!(p.src_addr().octets(), e.source);
            prop_assert_eq!(p.dst_addr().octets(), e.destination);
            prop_assert_eq!(p.options(), e.options.as_slice());
            prop_assert_eq!(p.payload(), rest);
        }

        #[test]
        fn etherparse_headers_parse(src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), ttl in any::<u8>(), dscp in 0u8..64, ecn in 0u8..4, id in any::<u16>(), df in any::<bool>(), mf in any::<bool>(), off in 0u16..0x2000, proto in any::<u8>(), opt_words in 0usize..=10, payload in 0u16..100) {
            let opts = vec![1u8; 4 * opt_words]; // NOP options
            let mut h = Ipv4Header {
                dscp: Ipv4Dscp::try_new(dscp).unwrap(),
                ecn: Ipv4Ecn::try_new(ecn).unwrap(),
                identification: id,
                dont_fragment: df,
                more_fragments: mf,
                fragment_offset: off.try_into().unwrap(),
                time_to_live: ttl,
                protocol: IpNumber(proto),
                source: src,
                destination: dst,
                options: opts[..].try_into().unwrap(),
                ..Default::default()
            };
            h.set_payload_len(usize::from(payload)).unwrap();
            h.header_checksum = h.calc_header_checksum();
            let mut v = h.to_bytes().to_vec();
            v.resize(v.len() + usize::from(payload), 0);
            let p = Ipv4Packet::new_checked(&v[..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(p.src_addr().octets(), src);
            prop_assert_eq!(p.dst_addr().octets(), dst);
            prop_assert_eq!(p.ttl(), ttl);
            prop_assert_eq!(p.dscp_ecn(), (dscp << 2) | ecn);
            prop_assert_eq!(p.ident(), id);
            prop_assert_eq!((p.dont_frag(), p.more_frags(), p.frag_offset()), (df, mf, off * 8));
            prop_assert_eq!(p.is_fragment(), mf || off != 0);
            prop_assert_eq!(p.is_first_fragment(), mf && off == 0);
            prop_assert_eq!(p.protocol(), proto);
            prop_assert_eq!(p.options(), &opts[..]);
            prop_assert_eq!(p.payload().len(), usize::from(payload));
        }

        #[test]
        fn no_panic(mut data in proptest::collection::vec(any::<u8>(), 0..100), fix in any::<bool>(), a in any::<u32>(), w in any::<u16>(), x in any::<u8>()) {
            if fix && !data.is_empty() {
                data[0] = 0x40 | (data[0] & 0x0f);
                if data.len() >= 4 {
                    let l = (data.len() as u16).min(u16::from_be_bytes([data[2], data[3]]));
                    data[2..4].copy_from_slice(&l.to_be_bytes());
                }
            }
            for embedded in [false, true] {
                let mut d = data.clone();
                let r = if embedded { Ipv4Packet::new_checked_embedded(&mut d[..]) } else { Ipv4Packet::new_checked(&mut d[..]) };
                if let Ok(p) = r {
                    exercise(p, a, w, x);
                }
            }
            exercise(Ipv4Packet::new_unchecked(&mut data[..]), a, w, x);
        }
    }

    fn exercise(mut p: Ipv4Packet<&mut [u8]>, a: u32, w: u16, x: u8) {
        let _ = (
            p.version(),
            p.header_len(),
            p.dscp_ecn(),
            p.total_len(),
            p.ident(),
            p.dont_frag(),
        );
        let _ = (
            p.more_frags(),
            p.frag_offset(),
            p.is_fragment(),
            p.is_first_fragment(),
            p.has_transport_header(),
        );
        let _ = (
            p.ttl(),
            p.protocol(),
            p.checksum(),
            p.src_addr(),
            p.dst_addr(),
            p.options(),
            p.header(),
        );
        let _ = (p.payload(), p.packet(), p.verify_checksum(), Ipv4Repr::parse(&p));
        p.set_src_addr(Ipv4Addr::from(a));
        p.set_dst_addr(Ipv4Addr::from(a));
        p.decrement_ttl();
        p.set_ttl(x);
        p.set_protocol(x);
        p.set_dscp_ecn(x);
        p.set_total_len(w);
        p.set_ident(w);
        p.set_dont_frag(true);
        p.set_more_frags(true);
        p.set_frag_offset(w);
        p.set_checksum(w);
        p.fill_checksum();
        let _ = p.payload_mut();
    }
}
