//! ARP for Ethernet/IPv4 only (RFC 826): the director answers for its VIPs and resolves
//! next hops, nothing else.

use std::net::Ipv4Addr;

use super::bytes::{get_array, get_u16, get_u8, set_array, set_u16, set_u8, Field};
use super::ethernet::MacAddr;
use super::WireError;

pub mod field {
    use super::Field;
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

const HTYPE_ETHERNET: u16 = 1;
const PTYPE_IPV4: u16 = 0x0800;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    Request,
    Reply,
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    #[inline]
    fn from(v: u16) -> Self {
        match v {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            o => ArpOperation::Unknown(o),
        }
    }
}

impl From<ArpOperation> for u16 {
    #[inline]
    fn from(v: ArpOperation) -> Self {
        match v {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(o) => o,
        }
    }
}

/// A view over an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Checks the length and that this is Ethernet/IPv4 ARP (else `Unsupported`).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        let b = p.buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        if get_u16(b, field::HTYPE) != HTYPE_ETHERNET
            || get_u16(b, field::PTYPE) != PTYPE_IPV4
            || get_u8(b, field::HLEN) != 6
            || get_u8(b, field::PLEN) != 4
        {
            return Err(WireError::Unsupported);
        }
        Ok(p)
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(get_u16(self.buffer.as_ref(), field::OPER))
    }

    #[inline]
    pub fn sender_mac(&self) -> MacAddr {
        MacAddr(get_array(self.buffer.as_ref(), field::SHA.start))
    }

    #[inline]
    pub fn sender_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::SPA.start))
    }

    #[inline]
    pub fn target_mac(&self) -> MacAddr {
        MacAddr(get_array(self.buffer.as_ref(), field::THA.start))
    }

    #[inline]
    pub fn target_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::TPA.start))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    #[inline]
    pub fn set_operation(&mut self, op: ArpOperation) {
        set_u16(self.buffer.as_mut(), field::OPER, op.into());
    }

    #[inline]
    pub fn set_sender_mac(&mut self, m: MacAddr) {
        set_array(self.buffer.as_mut(), field::SHA.start, m.0);
    }

    #[inline]
    pub fn set_sender_ip(&mut self, ip: Ipv4Addr) {
        set_array(self.buffer.as_mut(), field::SPA.start, ip.octets());
    }

    #[inline]
    pub fn set_target_mac(&mut self, m: MacAddr) {
        set_array(self.buffer.as_mut(), field::THA.start, m.0);
    }

    #[inline]
    pub fn set_target_ip(&mut self, ip: Ipv4Addr) {
        set_array(self.buffer.as_mut(), field::TPA.start, ip.octets());
    }
}

/// The meaning of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    pub op: ArpOperation,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// The view was validated by `new_checked`, so this cannot fail; it takes any view
    /// so that an unchecked one reads as zeros rather than panicking.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> ArpRepr {
        ArpRepr {
            op: p.operation(),
            sender_mac: p.sender_mac(),
            sender_ip: p.sender_ip(),
            target_mac: p.target_mac(),
            target_ip: p.target_ip(),
        }
    }

    /// The reply a host owning `target_ip` at `our_mac` sends to this request.
    #[inline]
    pub fn reply(&self, our_mac: MacAddr) -> ArpRepr {
        ArpRepr {
            op: ArpOperation::Reply,
            sender_mac: our_mac,
            sender_ip: self.target_ip,
            target_mac: self.sender_mac,
            target_ip: self.sender_ip,
        }
    }

    /// Write the 28-byte packet at the start of `buf`.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let b = buf.get_mut(..PACKET_LEN).ok_or(WireError::Truncated)?;
        set_u16(b, field::HTYPE, HTYPE_ETHERNET);
        set_u16(b, field::PTYPE, PTYPE_IPV4);
        set_u8(b, field::HLEN, 6);
        set_u8(b, field::PLEN, 4);
        let mut p = ArpPacket::new_unchecked(b);
        p.set_operation(self.op);
        p.set_sender_mac(self.sender_mac);
        p.set_sender_ip(self.sender_ip);
        p.set_target_mac(self.target_mac);
        p.set_target_ip(self.target_ip);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// "who-has 192.168.1.1 tell 192.168.1.100" from 00:11:22:33:44:55.
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0xc0, 0xa8, 0x01,
        0x64, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x01, 0x01,
    ];

    #[test]
    fn parse_known_request() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        let r = ArpRepr::parse(&p);
        assert_eq!(r.op, ArpOperation::Request);
        assert_eq!(r.sender_mac, MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x55]));
        assert_eq!(r.sender_ip, Ipv4Addr::new(192, 168, 1, 100));
        assert_eq!(r.target_mac, MacAddr::ZERO);
        assert_eq!(r.target_ip, Ipv4Addr::new(192, 168, 1, 1));
    }

    #[test]
    fn emit_reproduces_known_bytes() {
        let r = ArpRepr::parse(&ArpPacket::new_checked(&REQUEST[..]).unwrap());
        let mut out = [0xeeu8; 30];
        r.emit(&mut out).unwrap();
        assert_eq!(&out[..28], &REQUEST[..]);
        assert_eq!(&out[28..], &[0xee, 0xee]);
        assert_eq!(r.emit(&mut out[..27]), Err(WireError::Truncated));
    }

    #[test]
    fn reply_swaps_roles() {
        let r = ArpRepr::parse(&ArpPacket::new_checked(&REQUEST[..]).unwrap());
        let ours = MacAddr([2, 0, 0, 0, 0, 9]);
        let rep = r.reply(ours);
        let mut out = [0u8; 28];
        rep.emit(&mut out).unwrap();
        let p = ArpPacket::new_checked(&out[..]).unwrap();
        assert_eq!(p.operation(), ArpOperation::Reply);
        assert_eq!(&out[6..8], &[0, 2]);
        assert_eq!(p.sender_mac(), ours);
        assert_eq!(p.sender_ip(), Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(p.target_mac(), MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x55]));
        assert_eq!(p.target_ip(), Ipv4Addr::new(192, 168, 1, 100));
    }

    #[test]
    fn refuses_other_kinds() {
        assert_eq!(
            ArpPacket::new_checked(&REQUEST[..27]).unwrap_err(),
            WireError::Truncated
        );
        for (at, v) in [(1, 6u8), (2, 0x86), (4, 8), (5, 16)] {
            let mut b = REQUEST;
            b[at] = v;
            assert_eq!(
                ArpPacket::new_checked(&b[..]).unwrap_err(),
                WireError::Unsupported,
                "byte {at}"
            );
        }
        let mut b = REQUEST;
        b[7] = 3; // RARP request: same layout, op we do not know
        assert_eq!(
            ArpPacket::new_checked(&b[..]).unwrap().operation(),
            ArpOperation::Unknown(3)
        );
        assert_eq!(u16::from(ArpOperation::Unknown(3)), 3);
    }

    #[test]
    fn setters_write_fields() {
        let mut b = REQUEST;
        let mut p = ArpPacket::new_checked(&mut b[..]).unwrap();
        p.set_operation(ArpOperation::Reply);
        p.set_sender_mac(MacAddr([1, 2, 3, 4, 5, 6]));
        p.set_sender_ip(Ipv4Addr::new(10, 0, 0, 1));
        p.set_target_mac(MacAddr([7, 8, 9, 10, 11, 12]));
        p.set_target_ip(Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(
            &b[6..],
            &[0, 2, 1, 2, 3, 4, 5, 6, 10, 0, 0, 1, 7, 8, 9, 10, 11, 12, 10, 0, 0, 2]
        );
    }

    proptest! {
        #[test]
        fn no_panic(mut data in proptest::collection::vec(any::<u8>(), 0..40), fix in any::<bool>(), m in any::<[u8; 6]>(), ip in any::<u32>()) {
            if fix && data.len() >= 6 {
                data[..6].copy_from_slice(&REQUEST[..6]);
            }
            let len = data.len();
            match ArpPacket::new_checked(&mut data[..]) {
                Ok(mut p) => {
                    let _ = ArpRepr::parse(&p);
                    p.set_operation(ArpOperation::Reply);
                    p.set_sender_mac(MacAddr(m));
                    p.set_sender_ip(Ipv4Addr::from(ip));
                    p.set_target_mac(MacAddr(m));
                    p.set_target_ip(Ipv4Addr::from(ip));
                    prop_assert_eq!(p.target_ip(), Ipv4Addr::from(ip));
                    prop_assert_eq!(p.sender_mac(), MacAddr(m));
                }
                Err(e) => prop_assert!(len < PACKET_LEN || e == WireError::Unsupported),
            }
            let mut p = ArpPacket::new_unchecked(&mut data[..]);
            let _ = ArpRepr::parse(&p);
            p.set_target_ip(Ipv4Addr::from(ip));
        }
    }
}
