//! Ethernet II frames, with at most one 802.1Q tag.

use core::fmt;
use core::str::FromStr;

use super::bytes::{get_array, get_u16, set_array, set_u16, tail, tail_mut, Field};
use super::WireError;

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    #[inline]
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Group bit set (broadcast included).
    #[inline]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    #[inline]
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    #[inline]
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Six hex pairs separated by ':' (or '-', as some tools print them).
impl FromStr for MacAddr {
    type Err = WireError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for o in out.iter_mut() {
            let p = parts.next().ok_or(WireError::BadAddress)?;
            if p.is_empty() || p.len() > 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(WireError::BadAddress);
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| WireError::BadAddress)?;
        }
        if parts.next().is_some() {
            return Err(WireError::BadAddress);
        }
        Ok(MacAddr(out))
    }
}

/// An EtherType value; the named constants are the ones the director handles.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EtherType(pub u16);

impl EtherType {
    pub const IPV4: EtherType = EtherType(0x0800);
    pub const ARP: EtherType = EtherType(0x0806);
    pub const VLAN: EtherType = EtherType(0x8100);
    pub const IPV6: EtherType = EtherType(0x86dd);
}

impl fmt::Debug for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EtherType({:#06x})", self.0)
    }
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        EtherType(v)
    }
}

impl From<EtherType> for u16 {
    fn from(v: EtherType) -> Self {
        v.0
    }
}

pub mod field {
    use super::Field;
    pub const DST: Field = 0..6;
    pub const SRC: Field = 6..12;
    pub const ETHERTYPE: usize = 12;
    /// With an 802.1Q tag: TCI at 14..16, inner EtherType at 16..18.
    pub const VLAN_TCI: usize = 14;
    pub const INNER_ETHERTYPE: usize = 16;
}

pub const HEADER_LEN: usize = 14;
pub const VLAN_HEADER_LEN: usize = 18;

/// A view over an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wrap without validation. Accessors stay total; short fields read as zero.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wrap after checking that the header (and the VLAN tag, if any) is present.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let f = Self::new_unchecked(buffer);
        let len = f.buffer.as_ref().len();
        if len < HEADER_LEN || len < f.header_len() {
            return Err(WireError::Truncated);
        }
        Ok(f)
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn outer_ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    #[inline]
    fn tagged(&self) -> bool {
        self.outer_ethertype() == EtherType::VLAN.0
    }

    #[inline]
    pub fn dst(&self) -> MacAddr {
        MacAddr(get_array(self.buffer.as_ref(), field::DST.start))
    }

    #[inline]
    pub fn src(&self) -> MacAddr {
        MacAddr(get_array(self.buffer.as_ref(), field::SRC.start))
    }

    /// The EtherType of the payload: the inner one when the frame carries a VLAN tag.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        if self.tagged() {
            EtherType(get_u16(self.buffer.as_ref(), field::INNER_ETHERTYPE))
        } else {
            EtherType(self.outer_ethertype())
        }
    }

    /// The 12-bit VLAN id, when the frame carries an 802.1Q tag.
    #[inline]
    pub fn vlan_id(&self) -> Option<u16> {
        if self.tagged() {
            Some(get_u16(self.buffer.as_ref(), field::VLAN_TCI) & 0x0fff)
        } else {
            None
        }
    }

    /// 14, or 18 with a VLAN tag.
    #[inline]
    pub fn header_len(&self) -> usize {
        if self.tagged() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        tail(self.buffer.as_ref(), self.header_len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline]
    pub fn set_dst(&mut self, mac: MacAddr) {
        set_array(self.buffer.as_mut(), field::DST.start, mac.0);
    }

    #[inline]
    pub fn set_src(&mut self, mac: MacAddr) {
        set_array(self.buffer.as_mut(), field::SRC.start, mac.0);
    }

    /// Set the payload EtherType (the inner one when tagged).
    #[inline]
    pub fn set_ethertype(&mut self, t: EtherType) {
        let at = if self.tagged() {
            field::INNER_ETHERTYPE
        } else {
            field::ETHERTYPE
        };
        set_u16(self.buffer.as_mut(), at, t.0);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        tail_mut(self.buffer.as_mut(), h)
    }
}

/// Write an untagged 14-byte Ethernet header at the start of `buf`.
#[inline]
pub fn write_header(
    buf: &mut [u8],
    dst: MacAddr,
    src: MacAddr,
    ethertype: EtherType,
) -> Result<(), WireError> {
    let h = buf.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
    set_array(h, field::DST.start, dst.0);
    set_array(h, field::SRC.start, src.0);
    set_u16(h, field::ETHERTYPE, ethertype.0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket};
    use proptest::prelude::*;

    const A: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
    const B: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];

    #[test]
    fn mac_text_round_trip() {
        let m: MacAddr = "52:54:00:AB:cd:ef".parse().unwrap();
        assert_eq!(m, MacAddr(B));
        assert_eq!(m.to_string(), "52:54:00:ab:cd:ef");
        assert_eq!("52-54-00-ab-cd-ef".parse::<MacAddr>().unwrap(), m);
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:ef:00",
            "52:54:00:ab:cd:eg",
            "123:4:5:6:7:8",
            "1::2:3:4:5",
        ] {
            assert_eq!(bad.parse::<MacAddr>(), Err(WireError::BadAddress), "{bad}");
        }
    }

    #[test]
    fn mac_kinds() {
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]).is_broadcast());
        assert!(MacAddr(A).is_unicast());
        assert!(!MacAddr(A).is_multicast());
    }

    #[test]
    fn known_frame() {
        let mut f = [0u8; 20];
        f[..6].copy_from_slice(&B);
        f[6..12].copy_from_slice(&A);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.dst(), MacAddr(B));
        assert_eq!(e.src(), MacAddr(A));
        assert_eq!(e.ethertype(), EtherType::ARP);
        assert_eq!(e.vlan_id(), None);
        assert_eq!(e.header_len(), 14);
        assert_eq!(e.payload().len(), 6);
        assert_eq!(
            EthernetFrame::new_checked(&f[..13]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn vlan_tag_needs_four_more_bytes() {
        let mut f = [0u8; 18];
        f[12..14].copy_from_slice(&[0x81, 0x00]);
        f[14..16].copy_from_slice(&[0x20, 0x64]); // PCP 1, VID 100
        f[16..18].copy_from_slice(&[0x08, 0x00]);
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.vlan_id(), Some(100));
        assert_eq!(e.ethertype(), EtherType::IPV4);
        assert_eq!(e.header_len(), 18);
        assert!(e.payload().is_empty());
        for n in 14..18 {
            assert_eq!(
                EthernetFrame::new_checked(&f[..n]).unwrap_err(),
                WireError::Truncated
            );
        }
    }

    #[test]
    fn setters_and_write_header() {
        let mut f = [0u8; 18];
        f[12..14].copy_from_slice(&[0x81, 0x00]);
        let mut e = EthernetFrame::new_checked(&mut f[..]).unwrap();
        e.set_dst(MacAddr(A));
        e.set_src(MacAddr(B));
        e.set_ethertype(EtherType::ARP);
        e.payload_mut();
        assert_eq!(e.dst(), MacAddr(A));
        assert_eq!(e.src(), MacAddr(B));
        assert_eq!(e.ethertype(), EtherType::ARP);
        assert_eq!(&f[16..18], &[0x08, 0x06]);

        let mut out = [0u8; 14];
        write_header(&mut out, MacAddr(A), MacAddr(B), EtherType::IPV4).unwrap();
        let e = EthernetFrame::new_checked(&out[..]).unwrap();
        assert_eq!(
            (e.dst(), e.src(), e.ethertype()),
            (MacAddr(A), MacAddr(B), EtherType::IPV4)
        );
        assert_eq!(
            write_header(&mut out[..13], MacAddr(A), MacAddr(B), EtherType::IPV4),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn etherparse_builds_we_parse() {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv4([1, 2, 3, 4], [5, 6, 7, 8], 64)
            .udp(1, 2)
            .write(&mut v, &[9; 5])
            .unwrap();
        let e = EthernetFrame::new_checked(&v[..]).unwrap();
        assert_eq!(e.src(), MacAddr(A));
        assert_eq!(e.dst(), MacAddr(B));
        assert_eq!(e.ethertype(), EtherType::IPV4);
        assert_eq!(e.payload().len(), 20 + 8 + 5);

        let mut v = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .single_vlan(etherparse::VlanId::try_new(4094).unwrap())
            .ipv4([1, 2, 3, 4], [5, 6, 7, 8], 64)
            .udp(1, 2)
            .write(&mut v, &[])
            .unwrap();
        let e = EthernetFrame::new_checked(&v[..]).unwrap();
        assert_eq!(e.vlan_id(), Some(4094));
        assert_eq!(e.ethertype(), EtherType::IPV4);
        assert_eq!(e.payload().len(), 28);
    }

    #[test]
    fn we_write_etherparse_parses() {
        let mut v = vec![0u8; 14 + 4];
        write_header(&mut v, MacAddr(B), MacAddr(A), EtherType(0x1234)).unwrap();
        let p = SlicedPacket::from_ethernet(&v).unwrap();
        match p.link {
            Some(etherparse::LinkSlice::Ethernet2(h)) => {
                assert_eq!(h.destination(), B);
                assert_eq!(h.source(), A);
                assert_eq!(h.ether_type(), etherparse::EtherType(0x1234));
            }
            other => panic!("unexpected link {other:?}"),
        }
    }

    proptest! {
        #[test]
        fn no_panic(data in proptest::collection::vec(any::<u8>(), 0..40), tag in any::<bool>(), m in any::<[u8; 6]>()) {
            let mut data = data;
            if tag && data.len() >= 14 {
                data[12] = 0x81;
                data[13] = 0x00;
            }
            let len = data.len();
            if let Ok(mut e) = EthernetFrame::new_checked(&mut data[..]) {
                let _ = (e.dst(), e.src(), e.ethertype(), e.vlan_id());
                prop_assert_eq!(e.payload().len(), len - e.header_len());
                e.set_dst(MacAddr(m));
                e.set_src(MacAddr(m));
                e.set_ethertype(EtherType(0x0800));
                let _ = e.payload_mut();
                prop_assert_eq!(e.dst(), MacAddr(m));
            }
            // Unchecked views over anything must stay total too.
            let mut e = EthernetFrame::new_unchecked(&mut data[..]);
            let _ = (e.dst(), e.src(), e.ethertype(), e.vlan_id(), e.payload().len());
            e.set_dst(MacAddr(m));
            e.set_ethertype(EtherType(1));
            let _ = e.payload_mut();
        }
    }
}
