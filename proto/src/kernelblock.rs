//! The block rvs-dp's exception path (the thread between the ports and
//! their kernel interfaces) publishes in the stats area (see `statsarea`):
//! for each port with a kernel interface, frames up to the kernel, frames
//! down from it, and each reason a frame was dropped on the way. Fixed
//! layout: changing it needs an ABI version bump.

/// Ports with a kernel interface the block has room for. rvs-dp refuses a
/// configuration with more (`kernel_iface` on more ports than this).
pub const KERNEL_PORTS: usize = 32;
/// An interface name with its NUL (the kernel's IFNAMSIZ).
pub const IFACE_BYTES: usize = 16;

/// The exception path's tallies for one port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ExceptionCounters {
    /// Frames handed to the kernel.
    pub up: u64,
    /// Frames the kernel sent, transmitted on the port.
    pub down: u64,
    /// Up: over the rate limit (`[dataplane] kernel_rate_pps`).
    pub up_ratelimited: u64,
    /// Up: the kernel interface did not take them.
    pub up_txfull: u64,
    /// Down: malformed or oversized (`exception::check_from_kernel` in rvs-dp).
    pub down_bad: u64,
    /// Down: the port's queue (or the ring to worker 0) was full.
    pub down_txfull: u64,
}

/// The names of the drop reasons, in `ExceptionCounters::drops` order: what
/// the tools print and label metrics with.
pub const KERNEL_DROP_REASONS: [&str; 4] = ["up_ratelimited", "up_txfull", "down_bad", "down_txfull"];

impl ExceptionCounters {
    /// Every frame dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.drops()
            .iter()
            .map(|(_, n)| n)
            .fold(0, |a, n| a.wrapping_add(*n))
    }

    /// (reason, frames) for each reason in `KERNEL_DROP_REASONS`.
    pub fn drops(&self) -> [(&'static str, u64); 4] {
        let n = [
            self.up_ratelimited,
            self.up_txfull,
            self.down_bad,
            self.down_txfull,
        ];
        let r = KERNEL_DROP_REASONS;
        [(r[0], n[0]), (r[1], n[1]), (r[2], n[2]), (r[3], n[3])]
    }
}

/// One port's entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct KernelPortStats {
    /// rvs-dp's index of the port (its place among the config's `[[port]]`s).
    pub port: u64,
    /// The kernel interface's name, NUL-padded.
    pub iface: [u8; IFACE_BYTES],
    pub counters: ExceptionCounters,
}

impl KernelPortStats {
    /// An entry for port `port` and interface `iface`; a name longer than
    /// `IFACE_BYTES - 1` bytes (which rvs-dp's config refuses) is cut.
    pub fn new(port: u16, iface: &str, counters: ExceptionCounters) -> Self {
        let mut name = [0u8; IFACE_BYTES];
        let n = iface.len().min(IFACE_BYTES - 1);
        name[..n].copy_from_slice(&iface.as_bytes()[..n]);
        KernelPortStats {
            port: port.into(),
            iface: name,
            counters,
        }
    }

    /// The interface name, up to its first NUL (lossy if it is not UTF-8).
    pub fn iface(&self) -> String {
        let end = self.iface.iter().position(|&b| b == 0).unwrap_or(IFACE_BYTES);
        String::from_utf8_lossy(&self.iface[..end]).into_owned()
    }
}

/// Everything the exception path publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct KernelStatsBlock {
    /// CLOCK_MONOTONIC ns when it was filled (`statsarea::monotonic_ns`); 0
    /// until rvs-dp first publishes.
    pub timestamp_ns: u64,
    /// Entries of `ports` in use, as written; readers use `ports()`, which
    /// never trusts it past `KERNEL_PORTS`.
    pub count: u64,
    pub ports: [KernelPortStats; KERNEL_PORTS],
}

pub(crate) const KERNEL_BLOCK_WORDS: usize = std::mem::size_of::<KernelStatsBlock>() / 8;
const _: () = assert!(std::mem::size_of::<ExceptionCounters>() == 6 * 8);
const _: () = assert!(std::mem::size_of::<KernelPortStats>() == 8 + IFACE_BYTES + 6 * 8);
// No padding anywhere: the field sizes add up to the block size.
const _: () = assert!(
    std::mem::size_of::<KernelStatsBlock>() == 16 + KERNEL_PORTS * std::mem::size_of::<KernelPortStats>()
);
const _: () = assert!(std::mem::size_of::<KernelStatsBlock>().is_multiple_of(8));

/// Sequence word (own cache line) + block, rounded to a cache line.
pub const KERNEL_SLOT_BYTES: usize =
    (crate::statsblock::SLOT_SEQ_BYTES + std::mem::size_of::<KernelStatsBlock>()).div_ceil(64) * 64;

/// `push` found every entry taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelBlockFull;

impl Default for KernelStatsBlock {
    fn default() -> Self {
        KernelStatsBlock {
            timestamp_ns: 0,
            count: 0,
            ports: [KernelPortStats::default(); KERNEL_PORTS],
        }
    }
}

impl KernelStatsBlock {
    /// The entries in use (at most `KERNEL_PORTS`, whatever `count` says).
    pub fn ports(&self) -> &[KernelPortStats] {
        let n = usize::try_from(self.count)
            .unwrap_or(usize::MAX)
            .min(KERNEL_PORTS);
        &self.ports[..n]
    }

    /// Mutable access to the entries in use.
    pub fn ports_mut(&mut self) -> &mut [KernelPortStats] {
        let n = usize::try_from(self.count)
            .unwrap_or(usize::MAX)
            .min(KERNEL_PORTS);
        &mut self.ports[..n]
    }

    /// Appends an entry.
    pub fn push(&mut self, p: KernelPortStats) -> Result<(), KernelBlockFull> {
        let n = self.ports().len();
        let slot = self.ports.get_mut(n).ok_or(KernelBlockFull)?;
        *slot = p;
        self.count = n as u64 + 1;
        Ok(())
    }

    pub(crate) fn words(&self) -> &[u64; KERNEL_BLOCK_WORDS] {
        // SAFETY: the block is KERNEL_BLOCK_WORDS u64-sized, 8-aligned words
        // with no padding (asserted above).
        unsafe { &*(self as *const Self as *const [u64; KERNEL_BLOCK_WORDS]) }
    }

    pub(crate) fn words_mut(&mut self) -> &mut [u64; KERNEL_BLOCK_WORDS] {
        // SAFETY: as in `words`; every bit pattern is a valid block (integers
        // and bytes only).
        unsafe { &mut *(self as *mut Self as *mut [u64; KERNEL_BLOCK_WORDS]) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_nul_padded_and_cut_at_the_limit() {
        let p = KernelPortStats::new(3, "k0", ExceptionCounters::default());
        assert_eq!((p.port, p.iface().as_str()), (3, "k0"));
        assert_eq!(&p.iface[..3], b"k0\0");
        let long = KernelPortStats::new(0, "a-very-long-interface-name", ExceptionCounters::default());
        assert_eq!(long.iface(), "a-very-long-int");
        assert_eq!(long.iface[IFACE_BYTES - 1], 0);
        let full = KernelPortStats {
            iface: [b'x'; IFACE_BYTES],
            ..p
        };
        assert_eq!(full.iface(), "x".repeat(IFACE_BYTES), "no NUL: the whole field");
    }

    #[test]
    fn push_stops_at_capacity_and_ports_never_trusts_count() {
        let mut b = KernelStatsBlock::default();
        assert!(b.ports().is_empty());
        for i in 0..KERNEL_PORTS {
            assert_eq!(
                b.push(KernelPortStats::new(i as u16, "k", ExceptionCounters::default())),
                Ok(())
            );
        }
        assert_eq!(
            b.push(KernelPortStats::new(99, "k", ExceptionCounters::default())),
            Err(KernelBlockFull)
        );
        assert_eq!(b.ports().len(), KERNEL_PORTS);
        assert_eq!(b.ports().last().map(|p| p.port), Some(KERNEL_PORTS as u64 - 1));
        // A corrupt or hostile count is clamped, never read past the array.
        b.count = u64::MAX;
        assert_eq!(b.ports().len(), KERNEL_PORTS);
        assert_eq!(b.ports_mut().len(), KERNEL_PORTS);
    }

    #[test]
    fn dropped_sums_the_reasons_in_order() {
        let c = ExceptionCounters {
            up: 100,
            down: 50,
            up_ratelimited: 1,
            up_txfull: 2,
            down_bad: 3,
            down_txfull: 4,
        };
        assert_eq!(c.dropped(), 10);
        assert_eq!(
            c.drops(),
            [
                ("up_ratelimited", 1),
                ("up_txfull", 2),
                ("down_bad", 3),
                ("down_txfull", 4)
            ]
        );
    }
}
