//! The packet buffer the per-packet path works on: an mbuf in the data plane,
//! a `VecBuf` in tests, benchmarks and the fuzzer. Only what the transforms
//! need: the bytes, and growing or shrinking at the front (encapsulation) and
//! the back (replies built in place).

pub trait PacketBuf {
    fn data(&self) -> &[u8];
    fn data_mut(&mut self) -> &mut [u8];
    /// Grows the packet by `n` bytes at the front, from the headroom.
    /// Returns false, changing nothing, when the headroom is too small.
    fn prepend(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the front. False when shorter than `n`.
    fn adj(&mut self, n: usize) -> bool;
    /// Cuts the packet to `len` bytes (no-op if already shorter).
    fn truncate(&mut self, len: usize);
    /// Grows the packet by `n` bytes at the back (tailroom). False if no room.
    fn append(&mut self, n: usize) -> bool;
    /// What the NIC found of the frame's IPv4 header checksum, where it
    /// checked (DPDK's `RTE_MBUF_F_RX_IP_CKSUM_GOOD`/`_BAD`): `Some(true)`
    /// good, `Some(false)` bad; `None` when it did not say, and the header
    /// is verified in software. Both paths ask it alike.
    #[inline(always)]
    fn rx_ip_csum(&self) -> Option<bool> {
        None
    }
    /// As `rx_ip_csum`, for the TCP or UDP checksum
    /// (`RTE_MBUF_F_RX_L4_CKSUM_GOOD`/`_BAD`).
    #[inline(always)]
    fn rx_l4_csum(&self) -> Option<bool> {
        None
    }
    /// Whether the IPv4 header checksum holds: the NIC's verdict
    /// (`rx_ip_csum`) where it gave one, else `software`'s. An mbuf answers
    /// from its flags without an `Option` in between (the fast path asks
    /// for every packet).
    #[inline(always)]
    fn ip_csum_ok(&self, software: impl FnOnce() -> bool) -> bool {
        self.rx_ip_csum().unwrap_or_else(software)
    }
    fn len(&self) -> usize {
        self.data().len()
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A heap buffer with headroom, standing in for an mbuf.
#[derive(Clone, Debug)]
pub struct VecBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// `PacketBuf::rx_ip_csum` and `rx_l4_csum`, as a NIC would report
    /// them (tests, benchmarks).
    rx_ip_csum: Option<bool>,
    rx_l4_csum: Option<bool>,
}

/// As DPDK's RTE_PKTMBUF_HEADROOM.
pub const DEFAULT_HEADROOM: usize = 128;

impl VecBuf {
    pub fn new(frame: &[u8]) -> Self {
        Self::with_room(frame, DEFAULT_HEADROOM, 256)
    }

    pub fn with_room(frame: &[u8], headroom: usize, tailroom: usize) -> Self {
        let mut buf = vec![0u8; headroom + frame.len() + tailroom];
        buf[headroom..headroom + frame.len()].copy_from_slice(frame);
        VecBuf {
            buf,
            start: headroom,
            end: headroom + frame.len(),
            rx_ip_csum: None,
            rx_l4_csum: None,
        }
    }

    /// Refills with `frame`, keeping the allocation (benchmarks reuse buffers).
    pub fn reset(&mut self, frame: &[u8]) {
        let head = DEFAULT_HEADROOM.min(self.buf.len());
        let end = head + frame.len();
        if end > self.buf.len() {
            self.buf.resize(end + 256, 0);
        }
        self.buf[head..end].copy_from_slice(frame);
        self.start = head;
        self.end = end;
    }

    pub fn headroom(&self) -> usize {
        self.start
    }

    /// What `rx_ip_csum` answers from now on, as if a NIC had checked the
    /// IPv4 header (kept across `reset`).
    pub fn set_rx_ip_csum(&mut self, status: Option<bool>) {
        self.rx_ip_csum = status;
    }

    /// As `set_rx_ip_csum`, for `rx_l4_csum`.
    pub fn set_rx_l4_csum(&mut self, status: Option<bool>) {
        self.rx_l4_csum = status;
    }
}

impl PacketBuf for VecBuf {
    #[inline(always)]
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }
    #[inline(always)]
    fn rx_ip_csum(&self) -> Option<bool> {
        self.rx_ip_csum
    }
    #[inline(always)]
    fn rx_l4_csum(&self) -> Option<bool> {
        self.rx_l4_csum
    }
    fn prepend(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }
    fn adj(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.start += n;
        true
    }
    fn truncate(&mut self, len: usize) {
        if len < self.end - self.start {
            self.end = self.start + len;
        }
    }
    fn append(&mut self, n: usize) -> bool {
        if self.end + n > self.buf.len() {
            return false;
        }
        self.end += n;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vecbuf_room_rules() {
        let mut b = VecBuf::with_room(&[1, 2, 3], 2, 1);
        assert!(!b.prepend(3));
        assert!(b.prepend(2));
        assert_eq!(b.data(), &[0, 0, 1, 2, 3]);
        assert!(b.adj(2));
        assert!(!b.adj(4));
        assert!(b.append(1));
        assert!(!b.append(1));
        b.truncate(2);
        assert_eq!(b.data(), &[1, 2]);
        b.truncate(10);
        assert_eq!(b.len(), 2);
    }
}
