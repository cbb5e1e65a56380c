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
