//! The exception path's pure parts: the token bucket that bounds what goes
//! up to the kernel, the check every frame the kernel sends must pass before
//! it goes out of a port, and the path's counters (defined in the control
//! ABI, `rvs_proto::kernelblock`, since the tools read them live from the
//! stats area). The DPDK side (taps, rings, the thread) is `kernel`.

pub use rvs_proto::kernelblock::ExceptionCounters;

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
/// Time is whatever monotonic nanoseconds the caller passes.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    /// Tokens, in billionths (so refills at any rate stay exact).
    nano_tokens: u64,
    last_ns: u64,
}

impl TokenBucket {
    /// A full bucket at time `now_ns`.
    pub fn new(rate: u64, burst: u64, now_ns: u64) -> Self {
        let burst = burst.max(1);
        TokenBucket {
            rate,
            burst,
            nano_tokens: burst.saturating_mul(1_000_000_000),
            last_ns: now_ns,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now_ns: u64) -> bool {
        let dt = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        let cap = self.burst.saturating_mul(1_000_000_000);
        self.nano_tokens = self
            .nano_tokens
            .saturating_add(dt.saturating_mul(self.rate))
            .min(cap);
        if self.nano_tokens >= 1_000_000_000 {
            self.nano_tokens -= 1_000_000_000;
            true
        } else {
            false
        }
    }
}

/// IP protocol (IPv4) and next header (IPv6) of VRRP.
const IPPROTO_VRRP: u8 = 112;

/// Frames a second the control class may take up to the kernel, apart
/// from `kernel_rate_pps`, and how many it may save up: far above what
/// keepalived sends (one advert per VRID per advert_int), far below what
/// would let a forged flood of them swamp the kernel.
pub const CONTROL_RATE_PPS: u64 = 10_000;
pub const CONTROL_BURST: u64 = 1_000;

/// Whether a frame going up to the kernel is one the director's failover
/// depends on: VRRP (IPv4 protocol or IPv6 next header 112). These go up
/// through a ring and a rate limit of their own, so that a flood to the
/// port's address (which the shared path drops past `kernel_rate_pps`)
/// cannot starve keepalived of its peer's adverts: a backup that misses
/// them takes the VIPs while the master still holds them.
pub fn is_control_frame(frame: &[u8]) -> bool {
    match frame.get(12..14) {
        Some([0x08, 0x00]) => {
            frame.get(14).is_some_and(|v| v >> 4 == 4) && frame.get(23) == Some(&IPPROTO_VRRP)
        }
        Some([0x86, 0xdd]) => frame.get(20) == Some(&IPPROTO_VRRP),
        _ => false,
    }
}

/// Why a frame from the kernel interface was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadFrame {
    /// Shorter than an Ethernet header.
    Runt,
    /// Longer than the port's MTU plus an Ethernet header and one VLAN tag.
    Oversized,
    /// Chained over several mbufs (the kernel never needs that below the MTU).
    Chained,
    /// An 802.3 length field where the EtherType belongs.
    NotEthernetII,
}

/// Ethernet header plus one VLAN tag.
const MAX_L2: usize = 14 + 4;

/// Whether a frame the kernel sent on a port's interface may go out of
/// that port: one segment, an Ethernet II header, within the port's MTU.
/// It goes out as it is; it never enters the load balancer's path.
pub fn check_from_kernel(frame: &[u8], segments: u16, mtu: u16) -> Result<(), BadFrame> {
    if segments != 1 {
        return Err(BadFrame::Chained);
    }
    if frame.len() < 14 {
        return Err(BadFrame::Runt);
    }
    if frame.len() > usize::from(mtu) + MAX_L2 {
        return Err(BadFrame::Oversized);
    }
    if u16::from_be_bytes([frame[12], frame[13]]) < 0x0600 {
        return Err(BadFrame::NotEthernetII);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vrrp_is_the_control_class_and_nothing_else() {
        let mut v4 = vec![0u8; 60];
        v4[12..14].copy_from_slice(&[0x08, 0x00]);
        v4[14] = 0x45;
        v4[23] = 112;
        assert!(is_control_frame(&v4), "VRRP over IPv4");
        for proto in [6u8, 17, 1, 2, 0] {
            v4[23] = proto;
            assert!(!is_control_frame(&v4), "protocol {proto}");
        }
        v4[23] = 112;
        v4[14] = 0x65;
        assert!(!is_control_frame(&v4), "not version 4");
        let mut v6 = vec![0u8; 80];
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        v6[20] = 112;
        assert!(is_control_frame(&v6), "VRRP over IPv6");
        v6[20] = 58;
        assert!(!is_control_frame(&v6), "ICMPv6");
        let mut arp = vec![0u8; 60];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        arp[23] = 112;
        assert!(!is_control_frame(&arp), "ARP");
        for n in 0..24 {
            assert!(!is_control_frame(&v4[..n]), "truncated to {n}");
        }
    }

    #[test]
    fn bucket_limits_rate_and_burst() {
        let mut b = TokenBucket::new(1000, 10, 0);
        assert_eq!((0..100).filter(|_| b.take(0)).count(), 10, "the burst");
        // 1000/s: one token per millisecond.
        assert!(!b.take(500_000));
        assert!(b.take(1_000_000));
        assert!(!b.take(1_000_000));
        // A long idle refills only up to the burst.
        assert_eq!((0..100).filter(|_| b.take(10_000_000_000)).count(), 10);
        // Time going backwards takes nothing and adds nothing.
        assert!(!b.take(5));
    }

    #[test]
    fn frames_from_the_kernel_are_checked() {
        let mut f = vec![0u8; 60];
        f[12..14].copy_from_slice(&[8, 0]);
        assert_eq!(check_from_kernel(&f, 1, 1500), Ok(()));
        assert_eq!(check_from_kernel(&f, 2, 1500), Err(BadFrame::Chained));
        assert_eq!(check_from_kernel(&f[..13], 1, 1500), Err(BadFrame::Runt));
        let big = vec![8u8; 1500 + 19];
        assert_eq!(check_from_kernel(&big, 1, 1500), Err(BadFrame::Oversized));
        assert_eq!(check_from_kernel(&big[..1518], 1, 1500), Ok(()));
        f[12..14].copy_from_slice(&[0, 60]);
        assert_eq!(check_from_kernel(&f, 1, 1500), Err(BadFrame::NotEthernetII));
    }
}
