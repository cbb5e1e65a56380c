//! One worker's local-address pools, one per FULLNAT service, kept across
//! service snapshots; and the per-LIP counters the control thread reads
//! (`ipvsadm -G`) without locks.
//!
//! The worker rebuilds its pools between bursts when it switches to a new
//! snapshot (`WorkerPools::rebuild`): each LIP keeps its ports' state
//! (leases of live connections, TIME_WAIT holds) wherever it moves, so a
//! configuration change never hands out a port a live connection holds. A
//! LIP removed from its service but still used ("retired": the control
//! thread keeps it in the snapshot while its counters show connections)
//! stays in a pool no allocation draws from, so it is whole again if the
//! LIP comes back; its connections carry on, their ports are returned when
//! they end. Each LIP's counters are `stats::LaddrStats`.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::laddr::{LaddrConfig, LaddrError, LaddrPool, LocalAddr};
use super::stats::LaddrStats;
use crate::service::{ForwardMethod, ServiceTable};

/// A LIP as the worker frees ports to it.
struct Lip {
    addr: Ipv4Addr,
    /// Index in `WorkerPools::pools`.
    pool: usize,
    stats: Arc<LaddrStats>,
}

/// One worker's pools.
pub struct WorkerPools {
    worker: u16,
    workers: u16,
    cfg: LaddrConfig,
    /// One per FULLNAT service with LIPs, and last the retired LIPs' pool
    /// (never allocated from).
    pools: Vec<LaddrPool>,
    /// By service index of the snapshot: its pool, if it has one.
    by_service: Vec<Option<usize>>,
    /// Every LIP, sorted by address.
    lips: Vec<Lip>,
    /// Ports returned to no pool (a LIP gone for good); for tests and stats.
    pub orphaned: u64,
}

impl WorkerPools {
    pub fn new(worker: u16, workers: u16, cfg: LaddrConfig) -> Self {
        WorkerPools {
            worker,
            workers,
            cfg,
            pools: Vec::new(),
            by_service: Vec::new(),
            lips: Vec::new(),
            orphaned: 0,
        }
    }

    /// The pools for `snap` (between bursts; allocates). LIPs keep their
    /// ports' state wherever they move (`LaddrPool::regroup`).
    pub fn rebuild(&mut self, snap: &ServiceTable) -> Result<(), LaddrError> {
        let mut sets: Vec<Vec<Ipv4Addr>> = Vec::new();
        let mut by_service = vec![None; snap.len()];
        for (i, s) in snap.services().iter().enumerate() {
            let fnat = s.dests.iter().any(|d| d.method == ForwardMethod::FullNat);
            if fnat && !s.laddrs.is_empty() {
                by_service[i] = Some(sets.len());
                sets.push(s.laddrs.iter().map(|l| l.addr).collect());
            }
        }
        // The retired LIPs, and those of services without FULLNAT servers:
        // owned, never allocated from.
        let in_use: Vec<Ipv4Addr> = sets.iter().flatten().copied().collect();
        sets.push(
            snap.lips()
                .iter()
                .map(|l| l.addr)
                .filter(|a| !in_use.contains(a))
                .collect(),
        );
        let old = std::mem::take(&mut self.pools);
        self.pools = LaddrPool::regroup(old, &sets, &self.cfg, self.worker, self.workers)?;
        self.by_service = by_service;
        self.lips = snap
            .lips()
            .iter()
            .map(|l| Lip {
                addr: l.addr,
                pool: sets
                    .iter()
                    .position(|s| s.contains(&l.addr))
                    .unwrap_or(sets.len() - 1),
                stats: l.stats.clone(),
            })
            .collect();
        Ok(())
    }

    /// A local address for a new connection of service `si` (its index in
    /// the snapshot the pools were built for). On exhaustion every LIP of
    /// the service counts it.
    #[inline]
    pub fn allocate(&mut self, si: usize, now: u32) -> Result<LocalAddr, LaddrError> {
        let p = self
            .by_service
            .get(si)
            .copied()
            .flatten()
            .ok_or(LaddrError::NoLocalAddress)?;
        let pool = self.pools.get_mut(p).ok_or(LaddrError::NoLocalAddress)?;
        let w = self.worker as usize;
        match pool.allocate(now) {
            Ok(a) => {
                if let Some(l) = find(&self.lips, a.lip) {
                    l.stats.conn(w, true);
                }
                Ok(a)
            }
            Err(e) => {
                if e == LaddrError::Exhausted {
                    for lip in pool.lips() {
                        if let Some(l) = find(&self.lips, lip) {
                            l.stats.exhausted(w);
                        }
                    }
                }
                Err(e)
            }
        }
    }

    /// A connection that held `a` ended at `now`: the port is usable again
    /// after the hold.
    #[inline]
    pub fn free(&mut self, a: LocalAddr, now: u32) {
        let Some(l) = find(&self.lips, a.lip) else {
            self.orphaned += 1;
            return;
        };
        l.stats.conn(self.worker as usize, false);
        match self.pools.get_mut(l.pool).map(|p| p.free(a, now)) {
            Some(Ok(())) => {}
            _ => self.orphaned += 1,
        }
    }

    /// Ports leased now over all pools (tests).
    pub fn leased(&self) -> usize {
        self.pools.iter().map(|p| p.leased()).sum()
    }
}

#[inline]
fn find(lips: &[Lip], addr: Ipv4Addr) -> Option<&Lip> {
    let i = lips.binary_search_by_key(&addr, |l| l.addr).ok()?;
    lips.get(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{LocalAddress, ServiceTable};

    const L1: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 201);
    const L2: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 202);

    fn lip(addr: Ipv4Addr, stats: &Arc<LaddrStats>) -> LocalAddress {
        LocalAddress {
            addr,
            port: 1,
            stats: stats.clone(),
            steered: 0,
        }
    }

    /// A table whose only LIPs are retired ones (`with_retired_lips`): enough
    /// for the pools, which take the services' LIPs from the services.
    fn table(lips: Vec<LocalAddress>) -> ServiceTable {
        ServiceTable::new(1, Vec::new()).with_retired_lips(lips)
    }

    fn cfg() -> LaddrConfig {
        LaddrConfig {
            ports: 2000..=2009,
            hold: 5,
        }
    }

    #[test]
    fn regroup_keeps_leases_wherever_a_lip_goes() {
        let mut a = LaddrPool::new(&[L1, L2], &cfg(), 0, 1).unwrap();
        let x = a.allocate(0).unwrap();
        let y = a.allocate(0).unwrap();
        assert_eq!((x.lip, y.lip), (L1, L2));
        // L2 moves to a pool of its own, L1 leaves, a new LIP comes.
        let l3 = Ipv4Addr::new(10, 2, 0, 203);
        let mut v = LaddrPool::regroup(vec![a], &[vec![l3], vec![L2]], &cfg(), 0, 1).unwrap();
        assert_eq!(v[1].leased(), 1, "L2's lease moved with it");
        assert_eq!(v[0].leased(), 0);
        // Its port is never handed out again while leased.
        let mut got = Vec::new();
        while let Ok(a) = v[1].allocate(0) {
            got.push(a.lport);
        }
        assert_eq!(got.len(), 9);
        assert!(!got.contains(&y.lport));
        assert_eq!(v[1].free(y, 0), Ok(()));
        assert_eq!(v[0].free(x, 0), Err(LaddrError::NotLeased), "L1 is gone");
    }

    #[test]
    fn retired_lip_pool_is_never_allocated_from_and_counts_stay_right() {
        let s1 = Arc::new(LaddrStats::new(1));
        let mut w = WorkerPools::new(0, 1, cfg());
        w.rebuild(&table(vec![lip(L1, &s1)])).unwrap();
        // No service: nothing to allocate for.
        assert_eq!(w.allocate(0, 0), Err(LaddrError::NoLocalAddress));
        // A port freed to a retired LIP the pool never leased: orphaned, counts sane.
        w.free(LocalAddr { lip: L1, lport: 2000 }, 0);
        assert_eq!((w.orphaned, s1.conns()), (1, 0));
        // A LIP no table knows.
        w.free(LocalAddr { lip: L2, lport: 2000 }, 0);
        assert_eq!(w.orphaned, 2);
    }
}
