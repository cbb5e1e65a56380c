//! LVS-DR: the real server holds the VIP (on lo, ARP suppressed), so the IP
//! packet goes to it untouched; only the Ethernet header is rewritten.

use crate::wire::ethernet::field::{DST, SRC};
use crate::wire::ethernet::MacAddr;

/// Rewrites the destination and source MAC of the frame in place.
#[inline]
pub fn set_macs(frame: &mut [u8], dst: MacAddr, src: MacAddr) {
    if let Some(h) = frame.get_mut(..SRC.end) {
        h[DST].copy_from_slice(&dst.0);
        h[SRC].copy_from_slice(&src.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmit::testutil::*;

    #[test]
    fn only_l2_changes() {
        let mut f = tcp_frame([10, 1, 0, 10], [10, 1, 0, 100], 1234, 80, true, b"");
        let before = f.clone();
        let rs = MacAddr([2, 0, 0, 0, 0, 0x11]);
        set_macs(&mut f, rs, MacAddr(DIRECTOR_MAC));
        assert_eq!(&f[..6], &rs.0);
        assert_eq!(&f[6..12], &DIRECTOR_MAC);
        assert_eq!(&f[12..], &before[12..], "IP packet untouched");
        assert_checksums_valid(&f);
        let mut short = vec![1u8; 5];
        set_macs(&mut short, rs, rs);
        assert_eq!(short, vec![1u8; 5]);
    }
}
