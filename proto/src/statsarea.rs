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

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;

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

/// The sequence word and the block words of one worker's slot.
struct Slot<'a> {
    seq: &'a AtomicU64,
    words: &'a [AtomicU64],
}

fn slot(region: &Region, worker: usize) -> Result<Slot<'_>> {
    let g = region.geometry();
    let workers = g.layout.workers as usize;
    if worker >= workers {
        return Err(RegionError::NoSuchWorker { worker, workers });
    }
    let off = g.stats_off as usize + worker * STATS_SLOT_BYTES;
    // SAFETY: the geometry was validated against the mapping length, the slot
    // lies inside the stats section, and it is 64-byte aligned. AtomicU64 has
    // the layout of u64 and any bit pattern is valid.
    unsafe {
        let base = region.base().add(off);
        Ok(Slot {
            seq: &*(base as *const AtomicU64),
            words: std::slice::from_raw_parts(base.add(SLOT_SEQ_BYTES) as *const AtomicU64, BLOCK_WORDS),
        })
    }
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
        let Ok(s) = slot(&self.region, self.worker) else {
            return;
        };
        let seq = s.seq.load(Ordering::Relaxed);
        // Odd while writing; a sequence left odd by a crashed predecessor stays odd.
        let start = seq | 1;
        s.seq.store(start, Ordering::Relaxed);
        // Orders the odd sequence before the data stores that follow.
        fence(Ordering::Release);
        for (dst, src) in s.words.iter().zip(block.words().iter()) {
            dst.store(*src, Ordering::Relaxed);
        }
        s.seq.store(start.wrapping_add(1), Ordering::Release);
    }
}

/// A tool's read access to every worker's stats slot.
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
        let Ok(s) = slot(&self.region, worker) else {
            return false;
        };
        let dst = out.words_mut();
        for attempt in 0..READ_TRIES {
            let before = s.seq.load(Ordering::Acquire);
            if before & 1 == 0 {
                for (d, src) in dst.iter_mut().zip(s.words.iter()) {
                    *d = src.load(Ordering::Relaxed);
                }
                // Orders the data loads before the re-check of the sequence.
                fence(Ordering::Acquire);
                if s.seq.load(Ordering::Relaxed) == before {
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
