//! Zero-copy views over packet bytes, after smoltcp's wire module.
//!
//! Every view is `XxxPacket<T: AsRef<[u8]>> { buffer: T }`. `new_checked` validates the
//! lengths once; after that every accessor and setter is total: the byte helpers in
//! `bytes` read 0 / write nothing when a field is out of range, so no input can make a
//! view panic, even one built with `new_unchecked` over a short buffer (an ICMP error
//! quotes only the first 8 bytes of the original transport header, for example).
//! Setters exist only when `T: AsMut<[u8]>`.

pub(crate) mod bytes;

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipip;
pub mod ipv4;
pub mod tcp;
pub mod tcpopt;
pub mod udp;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetFrame, MacAddr};
pub use icmp::{IcmpPacket, IcmpType};
pub use ipip::{encap_header, IPIP_HEADER_LEN};
pub use ipv4::{IpProtocol, Ipv4Cidr, Ipv4Packet, Ipv4Repr};
pub use tcp::{TcpFlags, TcpPacket};
pub use udp::UdpPacket;

/// Why a buffer was refused by a view or a builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the fixed header (or the output is too small).
    #[error("buffer truncated")]
    Truncated,
    /// IPv4 version field is not 4.
    #[error("bad IP version")]
    BadVersion,
    /// A header-length field (IHL, TCP data offset) is below the minimum or past the buffer.
    #[error("bad header length")]
    BadHeaderLen,
    /// IPv4 total length is below the header length or past the buffer.
    #[error("bad total length")]
    BadTotalLen,
    /// A length field other than the above (UDP length) is inconsistent.
    #[error("bad length field")]
    BadLength,
    /// A well-formed packet of a kind we do not handle (non-Ethernet/IPv4 ARP, ...).
    #[error("unsupported packet")]
    Unsupported,
    /// Text that does not parse as an address (MAC, CIDR).
    #[error("bad address syntax")]
    BadAddress,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;
    use std::net::Ipv4Addr;

    const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    const RIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// The in-place work of a NAT forward for one TCP frame, as the views make it:
    /// parse Ethernet/IPv4/TCP, rewrite MACs, destination address and port, TTL, and
    /// both checksums incrementally. Only here to measure and check the views together.
    fn rewrite(frame: &mut [u8], mac: MacAddr, rip: Ipv4Addr, rport: u16) -> Result<(), WireError> {
        let mut eth = EthernetFrame::new_checked(frame)?;
        if eth.ethertype() != EtherType::IPV4 {
            return Err(WireError::Unsupported);
        }
        eth.set_src(eth.dst());
        eth.set_dst(mac);
        let mut ip = Ipv4Packet::new_checked(eth.payload_mut())?;
        let vip = ip.dst_addr();
        ip.set_dst_addr(rip);
        ip.decrement_ttl();
        let mut tcp = TcpPacket::new_checked(ip.payload_mut())?;
        tcp.update_checksum_addr(vip, rip);
        tcp.set_dst_port(rport);
        Ok(())
    }

    fn frame() -> Vec<u8> {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(CIP.octets(), VIP.octets(), 64)
            .tcp(40000, 80, 1, 1000)
            .ack(5)
            .write(&mut v, &[0x33; 100])
            .unwrap();
        v
    }

    #[test]
    fn views_compose_for_a_nat_rewrite() {
        let mut v = frame();
        rewrite(&mut v, MacAddr([2, 0, 0, 0, 0, 9]), RIP, 8080).unwrap();
        let s = etherparse::SlicedPacket::from_ethernet(&v).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &s.net else {
            panic!("no ipv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.destination, RIP.octets());
        assert_eq!(h.time_to_live, 63);
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let Some(etherparse::TransportSlice::Tcp(t)) = &s.transport else {
            panic!("no tcp")
        };
        assert_eq!(t.destination_port(), 8080);
        assert_eq!(
            t.checksum(),
            t.calc_checksum_ipv4(CIP.octets(), RIP.octets()).unwrap()
        );
    }

    /// `cargo test --release -p rvs-dp --lib wire::tests::nat_rewrite_timing -- --ignored --nocapture`
    #[test]
    #[ignore = "timing; meaningful in release builds only"]
    fn nat_rewrite_timing() {
        let mut v = frame();
        let n = 10_000_000u32;
        let t = std::time::Instant::now();
        for i in 0..n {
            // Alternate the port so the work cannot be hoisted out of the loop.
            rewrite(
                black_box(&mut v),
                MacAddr([2, 0, 0, 0, 0, 9]),
                RIP,
                8080 + (i & 1) as u16,
            )
            .unwrap();
        }
        let ns = t.elapsed().as_nanos() as f64 / f64::from(n);
        println!("NAT rewrite: {ns:.1} ns/packet");
        let ip = Ipv4Packet::new_checked(&v[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert!(TcpPacket::new_checked(ip.payload())
            .unwrap()
            .verify_checksum(CIP, RIP));
    }
}
