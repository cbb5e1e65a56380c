//! Where each worker publishes its counters for the tools, without locks.
//!
//! Each worker owns one slot: a sequence word on its own cache line, then a
//! fixed-size `WorkerStatsBlock`. The worker keeps its live counters in a
//! private block and, once every N bursts, copies it into its slot under a
//! seqlock: the sequence goes odd, the words are stored, the sequence goes
//! even again. A reader copies the words and keeps the copy only if the
//! sequence was even and unchanged around it.
//!
//! The copies are word-by-word relaxed atomic loads and stores, with the
//! fences of the classic seqlock, so a reader racing the writer is defined
//! behaviour (not a data race) and a torn copy is always detected. A worker
//! that dies mid-publish leaves its sequence odd; readers then give up after
//! a bounded number of tries and report the worker's stats as unavailable.
//!
//! Capacity: `STATS_SERVICES` (256) virtual services and `STATS_REALS` (1024)
//! real servers per worker, indexed by a small stats id that the control
//! plane assigns (the same id on every worker). Each traffic block is 40
//! bytes, so a worker's block is about 55 KB and 16 workers need under 1 MB.
//! Changing either capacity changes the block and needs an ABI version bump.
//!
//! After the workers' slots comes one more slot, with the same seqlock, for
//! the exception path (`kernelblock::KernelStatsBlock`): the one thread
//! between the ports and their kernel interfaces publishes its counters
//! there (`KernelStatsWriter`), and tools read them with
//! `StatsReader::read_kernel`.

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;

use crate::kernelblock::KERNEL_BLOCK_WORDS;
pub use crate::kernelblock::{ExceptionCounters, KernelPortStats, KernelStatsBlock, KERNEL_PORTS};
use crate::region::{Region, RegionError, Result};
pub use crate::statsblock::{TrafficBlock, WorkerStatsBlock, STATS_REALS, STATS_SERVICES, STATS_SLOT_BYTES};
use crate::statsblock::{BLOCK_WORDS, SLOT_SEQ_BYTES};

/// How many times a reader retries a slot that is being written.
const READ_TRIES: u32 = 10_000;

/// CLOCK_MONOTONIC in ns, comparable between processes on one host.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if r != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The sequence word and the block words of one seqlocked slot.
struct Slot<'a> {
    seq: &'a AtomicU64,
    words: &'a [AtomicU64],
}

impl Slot<'_> {
    /// Stores `src` under the seqlock. One writer per slot.
    fn store(&self, src: &[u64]) {
        let seq = self.seq.load(Ordering::Relaxed);
        // Odd while writing; a sequence left odd by a crashed predecessor stays odd.
        let start = seq | 1;
        self.seq.store(start, Ordering::Relaxed);
        // Orders the odd sequence before the data stores that follow.
        fence(Ordering::Release);
        for (dst, src) in self.words.iter().zip(src.iter()) {
            dst.store(*src, Ordering::Relaxed);
        }
        self.seq.store(start.wrapping_add(1), Ordering::Release);
    }

    /// Copies the slot into `dst`; false if every try found it being written.
    fn load(&self, dst: &mut [u64]) -> bool {
        for attempt in 0..READ_TRIES {
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 == 0 {
                for (d, src) in dst.iter_mut().zip(self.words.iter()) {
                    *d = src.load(Ordering::Relaxed);
                }
                // Orders the data loads before the re-check of the sequence.
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == before {
                    return true;
                }
            }
            if attempt > 100 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        false
    }
}

/// The slot at byte `off` of the region, with `words` block words.
///
/// # Safety
/// `off` must be 64-byte aligned and `off + SLOT_SEQ_BYTES + 8 * words` must
/// lie inside the mapping (a section of the validated geometry).
unsafe fn slot_at(region: &Region, off: usize, words: usize) -> Slot<'_> {
    // SAFETY: per the contract, inside the mapping and aligned; AtomicU64 has
    // the layout of u64 and any bit pattern is valid.
    unsafe {
        let base = region.base().add(off);
        Slot {
            seq: &*(base as *const AtomicU64),
            words: std::slice::from_raw_parts(base.add(SLOT_SEQ_BYTES) as *const AtomicU64, words),
        }
    }
}

fn slot(region: &Region, worker: usize) -> Result<Slot<'_>> {
    let g = region.geometry();
    let workers = g.layout.workers as usize;
    if worker >= workers {
        return Err(RegionError::NoSuchWorker { worker, workers });
    }
    let off = g.stats_off as usize + worker * STATS_SLOT_BYTES;
    // SAFETY: the geometry was validated against the mapping length, the slot
    // lies inside the stats section, and it is 64-byte aligned.
    Ok(unsafe { slot_at(region, off, BLOCK_WORDS) })
}

fn kernel_slot(region: &Region) -> Slot<'_> {
    let g = region.geometry();
    // SAFETY: as in `slot`: the kernel section is one validated, 64-byte
    // aligned slot of KERNEL_SLOT_BYTES.
    unsafe { slot_at(region, g.kernel_off as usize, KERNEL_BLOCK_WORDS) }
}

/// A worker's handle on its own stats slot. One writer per slot: rvs-dp hands
/// each worker its own (see `CtlServer::stats_writer`).
pub struct StatsWriter {
    region: Arc<Region>,
    worker: usize,
}

impl StatsWriter {
    pub(crate) fn new(region: Arc<Region>, worker: usize) -> Result<StatsWriter> {
        slot(&region, worker)?;
        Ok(StatsWriter { region, worker })
    }

    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Copies `block` into the shared slot. Lock-free and allocation-free;
    /// costs a ~55 KB copy, so call it once every N bursts, not per packet.
    pub fn publish(&self, block: &WorkerStatsBlock) {
        // `new` checked the index, so this cannot fail.
        if let Ok(s) = slot(&self.region, self.worker) {
            s.store(block.words());
        }
    }
}

/// The exception path's handle on the kernel slot. One writer: rvs-dp gives
/// it to the exception thread alone (see `CtlServer::kernel_writer`).
pub struct KernelStatsWriter {
    region: Arc<Region>,
}

impl KernelStatsWriter {
    pub(crate) fn new(region: Arc<Region>) -> KernelStatsWriter {
        KernelStatsWriter { region }
    }

    /// Copies `block` into the shared slot (about 2 KB). Lock-free and
    /// allocation-free.
    pub fn publish(&self, block: &KernelStatsBlock) {
        kernel_slot(&self.region).store(block.words());
    }
}

/// A tool's read access to every worker's stats slot and the kernel slot.
pub struct StatsReader {
    region: Arc<Region>,
}

impl StatsReader {
    pub fn new(region: Arc<Region>) -> StatsReader {
        StatsReader { region }
    }

    pub fn workers(&self) -> usize {
        self.region.geometry().layout.workers as usize
    }

    /// A consistent copy of `worker`'s last published block, or `None` if the
    /// worker is out of range or kept writing over every try.
    pub fn read(&self, worker: usize) -> Option<WorkerStatsBlock> {
        let mut b = WorkerStatsBlock::new_boxed();
        self.read_into(worker, &mut b).then_some(*b)
    }

    /// As `read`, into a caller-provided block (avoids a 55 KB stack temporary).
    pub fn read_into(&self, worker: usize, out: &mut WorkerStatsBlock) -> bool {
        match slot(&self.region, worker) {
            Ok(s) => s.load(out.words_mut()),
            Err(_) => false,
        }
    }

    /// A consistent copy of the exception path's last published block, or
    /// `None` if it kept writing over every try (or died mid-publish). A
    /// block with `timestamp_ns` 0 was never published: rvs-dp has no kernel
    /// interface, or has not started its exception path yet.
    pub fn read_kernel(&self) -> Option<KernelStatsBlock> {
        let mut b = KernelStatsBlock::default();
        kernel_slot(&self.region).load(b.words_mut()).then_some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TrafficTotals;

    #[test]
    fn block_fits_its_slot_and_capacities_match_the_doc() {
        assert!(STATS_SLOT_BYTES >= SLOT_SEQ_BYTES + std::mem::size_of::<WorkerStatsBlock>());
        assert_eq!(STATS_SLOT_BYTES % 64, 0);
        assert!(std::mem::size_of::<WorkerStatsBlock>() < 60_000);
        let b = WorkerStatsBlock::new_boxed();
        assert!(b.service(STATS_SERVICES - 1).is_some());
        assert!(b.service(STATS_SERVICES).is_none());
        assert!(b.real(STATS_REALS).is_none());
        assert_eq!(b.words().iter().copied().max(), Some(0));
    }

    #[test]
    fn a_writer_that_died_mid_publish_makes_reads_fail_not_tear() {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm".into()
        } else {
            std::env::temp_dir()
        };
        let path = dir.join(format!(
            "rvs-unit-{}-stats-{}.ctl",
            std::process::id(),
            monotonic_ns()
        ));
        let server = crate::ring::CtlServer::create(&path, crate::region::Layout::with_workers(2)).unwrap();
        let w = server.stats_writer(1).unwrap();
        let r = StatsReader::new(server.region().clone());
        let mut b = WorkerStatsBlock::new_boxed();
        b.rx_pkts = 5;
        w.publish(&b);
        assert_eq!(r.read(1).map(|b| b.rx_pkts), Some(5));
        // Crash in the middle of a publish: the sequence stays odd.
        let s = slot(server.region(), 1).unwrap();
        s.seq.fetch_add(1, Ordering::Relaxed);
        assert!(r.read(1).is_none());
        assert_eq!(r.read(0).map(|b| b.rx_pkts), Some(0), "other workers unaffected");
        // Its successor (same slot) publishes normally again.
        b.rx_pkts = 6;
        w.publish(&b);
        assert_eq!(r.read(1).map(|b| b.rx_pkts), Some(6));
        assert!(r.read(2).is_none());
        assert!(server.stats_writer(2).is_err());
    }

    fn scratch_server(name: &str, workers: u32) -> crate::ring::CtlServer {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm".into()
        } else {
            std::env::temp_dir()
        };
        let path = dir.join(format!(
            "rvs-unit-{}-{name}-{}.ctl",
            std::process::id(),
            monotonic_ns()
        ));
        crate::ring::CtlServer::create(&path, crate::region::Layout::with_workers(workers)).unwrap()
    }

    #[test]
    fn kernel_block_round_trips_and_leaves_the_workers_alone() {
        let server = scratch_server("kernel", 2);
        let r = StatsReader::new(server.region().clone());
        // Never published: all zero, timestamp 0.
        let fresh = r.read_kernel().unwrap();
        assert_eq!((fresh.timestamp_ns, fresh.ports().len()), (0, 0));

        let w1 = server.stats_writer(1).unwrap();
        let mut wb = WorkerStatsBlock::new_boxed();
        wb.rx_pkts = u64::MAX;
        wb.latency.counts[crate::latency::LATENCY_BUCKETS - 1] = u64::MAX;
        w1.publish(&wb);

        let k = server.kernel_writer();
        let mut b = KernelStatsBlock {
            timestamp_ns: 42,
            ..KernelStatsBlock::default()
        };
        let c = ExceptionCounters {
            up: 10,
            down: 20,
            up_ratelimited: 1,
            up_txfull: 2,
            down_bad: 3,
            down_txfull: 4,
        };
        b.push(KernelPortStats::new(0, "k0", c)).unwrap();
        for i in 1..KERNEL_PORTS {
            let c = ExceptionCounters {
                up: u64::MAX - i as u64,
                ..ExceptionCounters::default()
            };
            b.push(KernelPortStats::new(i as u16, &format!("if{i}"), c))
                .unwrap();
        }
        k.publish(&b);
        let got = r.read_kernel().unwrap();
        assert_eq!(got, b);
        assert_eq!(got.ports()[0].iface(), "k0");
        assert_eq!(got.ports()[0].counters, c);
        assert_eq!(
            got.ports()[KERNEL_PORTS - 1].iface(),
            format!("if{}", KERNEL_PORTS - 1)
        );
        // The last worker's slot, just below the kernel slot, is untouched.
        let back = r.read(1).unwrap();
        assert_eq!(back.rx_pkts, u64::MAX);
        assert_eq!(back.latency.counts[crate::latency::LATENCY_BUCKETS - 1], u64::MAX);
        // And the kernel slot survives a worker publishing again.
        w1.publish(&WorkerStatsBlock::new_boxed());
        assert_eq!(r.read_kernel().unwrap(), b);

        // A tool that opens the region sees the same block.
        let client = crate::ring::CtlClient::open(server.region().path()).unwrap();
        assert_eq!(client.stats().read_kernel().unwrap(), b);

        // Dying mid-publish makes reads fail, not tear; the next publish heals.
        kernel_slot(server.region()).seq.fetch_add(1, Ordering::Relaxed);
        assert!(r.read_kernel().is_none());
        assert!(r.read(0).is_some(), "workers unaffected");
        b.timestamp_ns = 43;
        k.publish(&b);
        assert_eq!(r.read_kernel().map(|b| b.timestamp_ns), Some(43));
    }

    #[test]
    fn a_torn_count_from_the_region_is_clamped() {
        let server = scratch_server("kernel-count", 1);
        let b = KernelStatsBlock {
            count: KERNEL_PORTS as u64 + 1000,
            ..KernelStatsBlock::default()
        };
        server.kernel_writer().publish(&b);
        let got = StatsReader::new(server.region().clone()).read_kernel().unwrap();
        assert_eq!(got.ports().len(), KERNEL_PORTS);
    }

    #[test]
    fn traffic_block_round_trips_totals() {
        let t = TrafficTotals {
            conns: 1,
            inpkts: 2,
            outpkts: 3,
            inbytes: 4,
            outbytes: 5,
        };
        assert_eq!(TrafficTotals::from(TrafficBlock::from(t)), t);
    }
}
