//! The per-LIP counters the control thread reads (`ipvsadm -G`, /metrics)
//! without locks: each worker writes only its own slot (relaxed stores, one
//! writer), the control thread sums them. Apart from the pools so that the
//! service snapshot can hold them without importing the workers' pools.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

#[derive(Debug, Default)]
struct Slot {
    conns: AtomicU64,
    exhausted: AtomicU64,
}

/// A LIP's use, per worker: connections holding one of its ports, and new
/// connections refused because its service's ports were all taken.
#[derive(Debug)]
pub struct LaddrStats {
    slots: Box<[CachePadded<Slot>]>,
}

impl LaddrStats {
    pub fn new(workers: usize) -> Self {
        LaddrStats {
            slots: (0..workers.max(1)).map(|_| CachePadded::default()).collect(),
        }
    }

    #[inline]
    fn slot(&self, worker: usize) -> &Slot {
        match self.slots.get(worker) {
            Some(s) => s,
            None => &self.slots[self.slots.len() - 1],
        }
    }

    /// Worker `worker` leased (`up`) or returned a port. One writer per slot.
    #[inline]
    pub fn conn(&self, worker: usize, up: bool) {
        let c = &self.slot(worker).conns;
        let v = c.load(Ordering::Relaxed);
        c.store(if up { v + 1 } else { v.saturating_sub(1) }, Ordering::Relaxed);
    }

    #[inline]
    pub fn exhausted(&self, worker: usize) {
        let c = &self.slot(worker).exhausted;
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Connections holding a port now, all workers.
    pub fn conns(&self) -> u64 {
        self.slots.iter().map(|s| s.conns.load(Ordering::Relaxed)).sum()
    }

    /// Refusals for exhaustion, all workers.
    pub fn exhaustions(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.exhausted.load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_sum_their_workers() {
        let s = LaddrStats::new(2);
        s.conn(0, true);
        s.conn(1, true);
        s.conn(1, true);
        s.conn(1, false);
        s.exhausted(0);
        s.conn(7, true); // past the last slot: the last one
        assert_eq!((s.conns(), s.exhaustions()), (3, 1));
        s.conn(0, false);
        s.conn(0, false);
        assert_eq!(s.conns(), 2, "never below zero");
    }
}
