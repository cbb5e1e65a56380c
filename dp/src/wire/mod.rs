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
pub mod udp;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetFrame, MacAddr};
pub use icmp::{emit_frag_needed, IcmpPacket, IcmpType};
pub use ipip::{encap_header, IPIP_HEADER_LEN, PROTO_IPIP};
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
