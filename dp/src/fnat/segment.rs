//! A TCP segment inside an IPv4 packet, located once, for the FULLNAT rewrites
//! that change its length (TOA, PROXY header insertion).
//!
//! The rewrites take `pkt: &mut [u8]` holding the IPv4 packet in its first
//! `total_len` bytes; the rest of the slice is room the packet may grow into.
//! The caller sizes that room: the mbuf's tailroom, and no more than the path
//! MTU allows.

use crate::wire::{IpProtocol, Ipv4Packet, TcpPacket, WireError};

/// Why a FULLNAT segment rewrite was refused. The packet is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SegError {
    /// The IPv4 or TCP header does not validate.
    #[error("malformed packet: {0}")]
    Malformed(WireError),
    /// Not TCP.
    #[error("not TCP")]
    NotTcp,
    /// A fragment: growing one would shift every later fragment's offset, and
    /// the TCP checksum covers the whole datagram.
    #[error("IP fragment")]
    Fragment,
    /// The TCP header already has more than 32 bytes of options, so 8 more
    /// would pass the 60-byte limit of the data offset.
    #[error("no TCP option space")]
    NoOptionSpace,
    /// The grown packet would not fit the room given (or 65535 bytes).
    #[error("no room to grow the packet")]
    NoRoom,
    /// The bytes to insert are not the length the connection recorded.
    #[error("inserted header length differs from the recorded one")]
    BadHeaderLen,
}

impl From<WireError> for SegError {
    fn from(e: WireError) -> Self {
        SegError::Malformed(e)
    }
}

/// Offsets of a validated IPv4/TCP packet, all within `total`, which is within
/// the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seg {
    /// Start of the TCP header (the IP header length).
    pub tcp: usize,
    /// TCP header length, options included.
    pub tcp_hl: usize,
    /// IP total length.
    pub total: usize,
}

impl Seg {
    /// Start of the TCP payload.
    #[inline]
    pub fn payload(&self) -> usize {
        self.tcp + self.tcp_hl
    }

    /// TCP payload length.
    #[inline]
    pub fn payload_len(&self) -> usize {
        self.total - self.payload()
    }

    /// TCP segment length, as in the pseudo-header.
    #[inline]
    pub fn seg_len(&self) -> usize {
        self.total - self.tcp
    }
}

/// Validate `pkt` as an unfragmented IPv4/TCP packet.
#[inline]
pub(crate) fn locate(pkt: &[u8]) -> Result<Seg, SegError> {
    let ip = Ipv4Packet::new_checked(pkt)?;
    if ip.protocol() != IpProtocol::TCP {
        return Err(SegError::NotTcp);
    }
    if ip.is_fragment() {
        return Err(SegError::Fragment);
    }
    let tcp = TcpPacket::new_checked(ip.payload())?;
    Ok(Seg {
        tcp: ip.header_len(),
        tcp_hl: tcp.header_len(),
        total: usize::from(ip.total_len()),
    })
}

/// Write the IP total length (the IP checksum follows incrementally).
#[inline]
pub(crate) fn set_total_len(pkt: &mut [u8], total: u16) {
    Ipv4Packet::new_unchecked(pkt).set_total_len(total);
}
