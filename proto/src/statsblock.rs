//! The block each worker publishes in its stats slot (see `statsarea`), and
//! the sizes the region's geometry is built from. Fixed layout: changing it
//! needs an ABI version bump.

use crate::latency::LatencyHist;
use crate::types::{DropReason, TrafficTotals};

pub const STATS_SERVICES: usize = 256;
pub const STATS_REALS: usize = 1024;

/// Traffic of one virtual service or real server on one worker, as
/// `ipvsadm --stats` counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TrafficBlock {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

impl From<TrafficBlock> for TrafficTotals {
    fn from(b: TrafficBlock) -> Self {
        TrafficTotals {
            conns: b.conns,
            inpkts: b.inpkts,
            outpkts: b.outpkts,
            inbytes: b.inbytes,
            outbytes: b.outbytes,
        }
    }
}

impl From<TrafficTotals> for TrafficBlock {
    fn from(t: TrafficTotals) -> Self {
        TrafficBlock {
            conns: t.conns,
            inpkts: t.inpkts,
            outpkts: t.outpkts,
            inbytes: t.inbytes,
            outbytes: t.outbytes,
        }
    }
}

/// Everything one worker publishes. Only `u64`s, no padding (checked below),
/// so it can be copied as a run of words and every bit pattern is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct WorkerStatsBlock {
    /// CLOCK_MONOTONIC ns when the worker filled the block (see `monotonic_ns`).
    pub timestamp_ns: u64,
    pub rx_pkts: u64,
    pub rx_bytes: u64,
    pub tx_pkts: u64,
    pub tx_bytes: u64,
    /// Indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::COUNT],
    /// Packets handed to the worker that owns their connection.
    pub redirects_sent: u64,
    /// Packets other workers handed to this one.
    pub redirects_received: u64,
    pub conns_created: u64,
    /// Entries in use in this worker's connection table.
    pub conn_table_used: u64,
    pub conn_table_size: u64,
    /// Embryonic connections (TCP, never ESTABLISHED) this worker's table
    /// evicted while alive to make room for a new one: a SYN flood's mark.
    pub embryonic_evicted: u64,
    /// FULLNAT packets forwarded client → real server and back.
    pub fnat_in: u64,
    pub fnat_out: u64,
    /// FULLNAT replies this worker owned, by the way they reached it: straight
    /// from the NIC by chance (RSS), or through another worker's redirect
    /// ring, or put on its queue by a NIC flow rule (`steered`).
    pub fnat_replies_direct: u64,
    pub fnat_replies_redirected: u64,
    pub fnat_replies_steered: u64,
    /// TOA options inserted, and left out for want of room in the segment.
    pub toa_inserted: u64,
    pub toa_skipped: u64,
    /// PROXY protocol headers put in a segment (first sends and resends).
    pub proxy_inserted: u64,
    /// Indexed by the service's stats id.
    pub services: [TrafficBlock; STATS_SERVICES],
    /// Indexed by the real server's stats id.
    pub reals: [TrafficBlock; STATS_REALS],
    pub latency: LatencyHist,
}

pub(crate) const BLOCK_WORDS: usize = std::mem::size_of::<WorkerStatsBlock>() / 8;
const _: () = assert!(std::mem::size_of::<WorkerStatsBlock>().is_multiple_of(8));
const _: () = assert!(std::mem::size_of::<TrafficBlock>() == 5 * 8);
// No padding anywhere: the field sizes add up to the block size.
const _: () = assert!(
    std::mem::size_of::<WorkerStatsBlock>()
        == 8 * (19 + DropReason::COUNT)
            + 40 * (STATS_SERVICES + STATS_REALS)
            + std::mem::size_of::<LatencyHist>()
);
const _: () = assert!(std::mem::size_of::<LatencyHist>() == 8 * (crate::latency::LATENCY_BUCKETS + 3));

/// Sequence word (own cache line) + block, rounded to a cache line.
pub(crate) const SLOT_SEQ_BYTES: usize = 64;
pub const STATS_SLOT_BYTES: usize =
    (SLOT_SEQ_BYTES + std::mem::size_of::<WorkerStatsBlock>()).div_ceil(64) * 64;

impl WorkerStatsBlock {
    /// A zeroed block on the heap (it is ~55 KB: keep it off worker stacks).
    pub fn new_boxed() -> Box<WorkerStatsBlock> {
        // SAFETY: all fields are integers, for which all-zero is valid.
        unsafe { Box::<WorkerStatsBlock>::new_zeroed().assume_init() }
    }

    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }

    pub fn service(&self, stats_id: usize) -> Option<&TrafficBlock> {
        self.services.get(stats_id)
    }

    pub fn real(&self, stats_id: usize) -> Option<&TrafficBlock> {
        self.reals.get(stats_id)
    }

    pub(crate) fn words(&self) -> &[u64; BLOCK_WORDS] {
        // SAFETY: the block is BLOCK_WORDS u64s with no padding (asserted above).
        unsafe { &*(self as *const Self as *const [u64; BLOCK_WORDS]) }
    }

    pub(crate) fn words_mut(&mut self) -> &mut [u64; BLOCK_WORDS] {
        // SAFETY: as in `words`; every bit pattern is a valid block.
        unsafe { &mut *(self as *mut Self as *mut [u64; BLOCK_WORDS]) }
    }
}
