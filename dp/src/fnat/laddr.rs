//! FULLNAT local addresses (LIPs) and the per-worker split of their ports.
//!
//! A FULLNAT connection leaves the director as LIP:lport → RIP:rport, so the
//! real server's reply comes back to LIP:lport. Each worker owns a fixed share
//! of every LIP's ports, named by `owner_of_port`, and allocates only from its
//! share: the reply's destination port then tells the receive path (or a NIC
//! flow rule) which worker owns the connection, without any lookup. This is
//! DPVS's per-lcore `sa_pool`.
//!
//! The split: the low 6 bits of the port pick one of `PORT_CLASSES` (64)
//! classes, and class `c` belongs to worker `c % workers`. A mask on the low
//! bits is what NIC flow rules can match (one rule per class, all with the
//! same mask), which a plain `port % workers` is not for a worker count that
//! is not a power of two. For a power of two up to 64 the two agree; for other
//! counts the shares differ by at most one class in 64 (with 3 workers: 22, 21
//! and 21 classes).
//!
//! Allocation is a FIFO ring of free ports per (LIP, worker): allocate pops the
//! head, free pushes the tail stamped with the time the port may be reused
//! (`now + hold`). The clock only moves forward, so the ring is ordered by that
//! stamp and the head is always the first port to become usable: one look at
//! the head decides, O(1) per LIP. (A clock that stepped back would only make
//! allocation fail early; it can never hand out a port before its hold ends,
//! because the head's own stamp is always checked.) Round-robin across the
//! LIPs tries each LIP at most once, so an allocation is O(number of LIPs) in
//! the worst case (all exhausted) and O(1) while the LIP at the cursor has a
//! port ready. A bitmap of leased ports refuses a double or foreign free, so
//! the ring can never hold a port twice or a port that is in use.
//!
//! Memory, per LIP per worker: 6 bytes per owned port (2 for the port, 4 for its
//! stamp) plus one bit per port of the whole range. With the default range
//! 1024..=65535 (64 512 ports) that is 387 KiB + 8 KiB with one worker, and
//! 48 KiB + 8 KiB with eight. Everything is allocated when the pool is built;
//! allocate and free never allocate.
//!
//! Clock: `now` is the coarse seconds clock the connection table uses.

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

/// How many classes the low bits of a port name; a power of two (it is a mask).
pub const PORT_CLASSES: u16 = 64;

/// The most workers a split can serve: one class each.
pub const MAX_WORKERS: u16 = PORT_CLASSES;

/// Linux's TIME_WAIT (TCP_TIMEWAIT_LEN): after a connection ends, the real
/// server may still hold LIP:lport ↔ RIP:rport in TIME_WAIT for this long, and a
/// new SYN on the same 4-tuple could be taken for an old duplicate.
pub const DEFAULT_HOLD_SECS: u32 = 60;

/// The worker that owns local port `lport` when there are `workers` workers.
///
/// Total: `workers` of 0 gives 0, and counts above `MAX_WORKERS` still give a
/// worker below `workers` (the pool constructor refuses such counts, so the
/// receive path and the allocator never disagree).
#[inline]
pub fn owner_of_port(lport: u16, workers: u16) -> u16 {
    (lport & (PORT_CLASSES - 1)).checked_rem(workers).unwrap_or(0)
}

/// What went wrong when building a pool, leasing or returning a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LaddrError {
    /// The service has no local address configured.
    #[error("no local address")]
    NoLocalAddress,
    /// Every port this worker owns on every LIP is leased or still held after
    /// its connection ended. Counted as `laddr_exhausted`.
    #[error("local ports exhausted")]
    Exhausted,
    /// A port returned that this pool had not leased (double free, another
    /// worker's port, an unknown LIP). Nothing changed.
    #[error("port not leased from this pool")]
    NotLeased,
    /// The port range is empty or includes port 0.
    #[error("bad local port range")]
    BadRange,
    /// The worker count is 0 or above `MAX_WORKERS`, or the worker index is not
    /// below it.
    #[error("bad worker count or index")]
    BadWorkers,
    /// The range is so small that some worker would own no port of it.
    #[error("port range too small for the worker count")]
    RangeTooSmall,
}

/// A leased local address: the source the connection uses towards the RS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalAddr {
    pub lip: Ipv4Addr,
    pub lport: u16,
}

/// How a service's LIP ports are shared out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaddrConfig {
    /// Ports usable on every LIP. Keep it clear of the director's own
    /// ephemeral range if the LIPs are also host addresses.
    pub ports: RangeInclusive<u16>,
    /// Seconds a freed port is kept out of use (see `DEFAULT_HOLD_SECS`).
    pub hold: u32,
}

impl Default for LaddrConfig {
    fn default() -> Self {
        LaddrConfig {
            ports: 1024..=65535,
            hold: DEFAULT_HOLD_SECS,
        }
    }
}

/// One LIP's ports owned by one worker.
#[derive(Debug)]
struct LipPorts {
    lip: Ipv4Addr,
    /// First port of the range: bit `p - first` of `leased` is port `p`.
    first: u16,
    /// Ring of free ports, `len` of them from `head`; capacity is every port
    /// this worker owns, so a push after a checked free always has room.
    ports: Box<[u16]>,
    /// The time from which `ports[i]` may be leased again.
    ready: Box<[u32]>,
    head: usize,
    len: usize,
    leased: Box<[u64]>,
}

impl LipPorts {
    fn new(lip: Ipv4Addr, range: &RangeInclusive<u16>, worker: u16, workers: u16) -> Self {
        let owned: Vec<u16> = range
            .clone()
            .filter(|&p| owner_of_port(p, workers) == worker)
            .collect();
        let span = usize::from(*range.end() - *range.start()) + 1;
        LipPorts {
            lip,
            first: *range.start(),
            ready: vec![0; owned.len()].into_boxed_slice(),
            len: owned.len(),
            ports: owned.into_boxed_slice(),
            head: 0,
            leased: vec![0; span.div_ceil(64)].into_boxed_slice(),
        }
    }

    /// Word and bit of port `p` in `leased`, if `p` is in the range.
    #[inline]
    fn bit(&self, p: u16) -> Option<(usize, u64)> {
        let i = usize::from(p.checked_sub(self.first)?);
        (i / 64 < self.leased.len()).then(|| (i / 64, 1u64 << (i % 64)))
    }

    #[inline]
    fn is_leased(&self, p: u16) -> bool {
        self.bit(p)
            .is_some_and(|(w, m)| self.leased.get(w).is_some_and(|x| x & m != 0))
    }

    #[inline]
    fn set_leased(&mut self, p: u16, on: bool) {
        if let Some((w, m)) = self.bit(p) {
            if let Some(x) = self.leased.get_mut(w) {
                if on {
                    *x |= m
                } else {
                    *x &= !m
                }
            }
        }
    }

    #[inline]
    fn pop(&mut self, now: u32) -> Option<u16> {
        if self.len == 0 || *self.ready.get(self.head)? > now {
            return None;
        }
        let p = *self.ports.get(self.head)?;
        // No division on the per-SYN path: the ring wraps by comparison.
        self.head += 1;
        if self.head >= self.ports.len() {
            self.head = 0;
        }
        self.len -= 1;
        self.set_leased(p, true);
        Some(p)
    }

    #[inline]
    fn push(&mut self, p: u16, ready: u32) -> bool {
        let cap = self.ports.len();
        if self.len >= cap {
            return false;
        }
        let mut tail = self.head + self.len;
        if tail >= cap {
            tail -= cap;
        }
        match (self.ports.get_mut(tail), self.ready.get_mut(tail)) {
            (Some(slot), Some(r)) => {
                *slot = p;
                *r = ready;
            }
            _ => return false,
        }
        self.len += 1;
        self.set_leased(p, false);
        true
    }
}

/// One worker's local address pool for one service. Owned by that worker
/// alone: no locks, no atomics.
#[derive(Debug)]
pub struct LaddrPool {
    worker: u16,
    workers: u16,
    hold: u32,
    lips: Box<[LipPorts]>,
    /// The LIP the next allocation tries first.
    cursor: usize,
}

impl LaddrPool {
    /// The pool of worker `worker` of `workers` over `lips`. Allocates; call
    /// from the control path.
    pub fn new(lips: &[Ipv4Addr], cfg: &LaddrConfig, worker: u16, workers: u16) -> Result<Self, LaddrError> {
        if workers == 0 || workers > MAX_WORKERS || worker >= workers {
            return Err(LaddrError::BadWorkers);
        }
        let (first, last) = (*cfg.ports.start(), *cfg.ports.end());
        if first == 0 || first > last {
            return Err(LaddrError::BadRange);
        }
        // Every worker needs a port, or its share of new connections could never
        // be made. Class c first appears at the first port >= first with low bits
        // c, so each class (hence each worker) is present once the range spans
        // PORT_CLASSES ports; below that, check the classes that are there.
        let span = u32::from(last - first) + 1;
        if span < u32::from(PORT_CLASSES)
            && (0..workers).any(|w| !(first..=last).any(|p| owner_of_port(p, workers) == w))
        {
            return Err(LaddrError::RangeTooSmall);
        }
        Ok(LaddrPool {
            worker,
            workers,
            hold: cfg.hold,
            lips: lips
                .iter()
                .map(|&lip| LipPorts::new(lip, &cfg.ports, worker, workers))
                .collect(),
            cursor: 0,
        })
    }

    /// Pools over new sets of LIPs (`sets[i]` for the i-th result), for a new
    /// configuration: a LIP that some pool of `old` has keeps its state
    /// (leases of live connections, holds), whichever pool it moves to; a new
    /// LIP starts with every port free; a LIP in no set is dropped (ports
    /// freed to it later are refused with `NotLeased`). Allocates; call from
    /// the control path. `cfg`, `worker` and `workers` as for `new`.
    pub fn regroup(
        old: Vec<LaddrPool>,
        sets: &[Vec<Ipv4Addr>],
        cfg: &LaddrConfig,
        worker: u16,
        workers: u16,
    ) -> Result<Vec<LaddrPool>, LaddrError> {
        let mut kept: Vec<LipPorts> = old
            .into_iter()
            .filter(|p| p.workers == workers && p.worker == worker)
            .flat_map(|p| p.lips.into_vec())
            .collect();
        let mut out = Vec::with_capacity(sets.len());
        for set in sets {
            let mut pool = LaddrPool::new(&[], cfg, worker, workers)?;
            pool.lips = set
                .iter()
                .map(|&lip| match kept.iter().position(|l| l.lip == lip) {
                    Some(i) => kept.swap_remove(i),
                    None => LipPorts::new(lip, &cfg.ports, worker, workers),
                })
                .collect();
            out.push(pool);
        }
        Ok(out)
    }

    /// The LIPs of this pool, in allocation order.
    pub fn lips(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.lips.iter().map(|l| l.lip)
    }

    /// This pool's worker index.
    pub fn worker(&self) -> u16 {
        self.worker
    }

    /// Lease a local address for a new connection: round-robin over the LIPs,
    /// skipping those with no port ready at `now`.
    #[inline]
    pub fn allocate(&mut self, now: u32) -> Result<LocalAddr, LaddrError> {
        let n = self.lips.len();
        if n == 0 {
            return Err(LaddrError::NoLocalAddress);
        }
        // Round-robin from the cursor, wrapping by comparison (no division
        // on the per-SYN path).
        let mut i = self.cursor;
        for _ in 0..n {
            if i >= n {
                i = 0;
            }
            let Some(l) = self.lips.get_mut(i) else { break };
            if let Some(lport) = l.pop(now) {
                self.cursor = i + 1;
                return Ok(LocalAddr { lip: l.lip, lport });
            }
            i += 1;
        }
        Err(LaddrError::Exhausted)
    }

    /// Return a leased address when its connection ends at `now`; the port is
    /// leased again no earlier than `now + hold`. O(number of LIPs) to find the
    /// LIP (a service has a handful).
    #[inline]
    pub fn free(&mut self, a: LocalAddr, now: u32) -> Result<(), LaddrError> {
        let ready = now.saturating_add(self.hold);
        let l = self
            .lips
            .iter_mut()
            .find(|l| l.lip == a.lip)
            .ok_or(LaddrError::NotLeased)?;
        if !l.is_leased(a.lport) {
            return Err(LaddrError::NotLeased);
        }
        if l.push(a.lport, ready) {
            Ok(())
        } else {
            Err(LaddrError::NotLeased)
        }
    }

    /// Ports leased now, over all LIPs.
    pub fn leased(&self) -> usize {
        self.lips.iter().map(|l| l.ports.len() - l.len).sum()
    }

    /// Ports not leased (ready or held), over all LIPs.
    pub fn free_ports(&self) -> usize {
        self.lips.iter().map(|l| l.len).sum()
    }

    /// Whether this pool's worker owns `lport` (what `owner_of_port` says).
    pub fn owns(&self, lport: u16) -> bool {
        owner_of_port(lport, self.workers) == self.worker
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};

    const L1: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
    const L2: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);

    fn cfg(ports: RangeInclusive<u16>, hold: u32) -> LaddrConfig {
        LaddrConfig { ports, hold }
    }

    #[test]
    fn owner_is_low_bits_mod_workers() {
        assert_eq!(owner_of_port(1024, 4), 0);
        assert_eq!(owner_of_port(1027, 4), 3);
        // 63 & 63 = 63, 63 % 3 = 0; 64 & 63 = 0.
        assert_eq!(owner_of_port(63, 3), 0);
        assert_eq!(owner_of_port(65, 3), 1);
        assert_eq!(owner_of_port(12345, 0), 0);
        assert_eq!(owner_of_port(12345, 1), 0);
        // Powers of two agree with plain modulo.
        for p in [0u16, 1, 999, 65535] {
            for w in [1u16, 2, 4, 8, 16, 32, 64] {
                assert_eq!(owner_of_port(p, w), p % w);
            }
        }
    }

    #[test]
    fn shares_differ_by_at_most_one_class() {
        for workers in 1..=MAX_WORKERS {
            let mut n = vec![0u32; usize::from(workers)];
            for p in 1024..=65535u16 {
                n[usize::from(owner_of_port(p, workers))] += 1;
            }
            let (lo, hi) = (n.iter().min().unwrap(), n.iter().max().unwrap());
            // One class of the 64 is 1008 ports of this range.
            assert!(hi - lo <= 1008, "workers {workers}: {lo}..{hi}");
        }
    }

    #[test]
    fn config_errors() {
        let c = LaddrConfig::default();
        assert_eq!(
            LaddrPool::new(&[L1], &c, 0, 0).unwrap_err(),
            LaddrError::BadWorkers
        );
        assert_eq!(
            LaddrPool::new(&[L1], &c, 2, 2).unwrap_err(),
            LaddrError::BadWorkers
        );
        assert_eq!(
            LaddrPool::new(&[L1], &c, 0, 65).unwrap_err(),
            LaddrError::BadWorkers
        );
        assert_eq!(
            LaddrPool::new(&[L1], &cfg(0..=10, 0), 0, 1).unwrap_err(),
            LaddrError::BadRange
        );
        assert_eq!(
            LaddrPool::new(&[L1], &cfg(RangeInclusive::new(9, 8), 0), 0, 1).unwrap_err(),
            LaddrError::BadRange
        );
        // Ports 1024..=1026 are classes 0, 1, 2: worker 3 of 4 would have none.
        assert_eq!(
            LaddrPool::new(&[L1], &cfg(1024..=1026, 0), 0, 4).unwrap_err(),
            LaddrError::RangeTooSmall
        );
        assert!(LaddrPool::new(&[L1], &cfg(1024..=1027, 0), 3, 4).is_ok());
        let mut empty = LaddrPool::new(&[], &c, 0, 1).unwrap();
        assert_eq!(empty.allocate(0).unwrap_err(), LaddrError::NoLocalAddress);
    }

    #[test]
    fn round_robin_over_lips_and_exhaustion() {
        let mut p = LaddrPool::new(&[L1, L2], &cfg(2000..=2007, 10), 1, 2).unwrap();
        // Worker 1 of 2 owns the odd ports: 2001, 2003, 2005, 2007 on each LIP.
        let got: Vec<_> = (0..8).map(|_| p.allocate(0).unwrap()).collect();
        assert_eq!(got[0], LocalAddr { lip: L1, lport: 2001 });
        assert_eq!(got[1], LocalAddr { lip: L2, lport: 2001 });
        assert_eq!(got[2], LocalAddr { lip: L1, lport: 2003 });
        assert!(got.iter().all(|a| a.lport % 2 == 1 && p.owns(a.lport)));
        assert_eq!(p.allocate(0).unwrap_err(), LaddrError::Exhausted);
        assert_eq!(p.leased(), 8);
        p.free(got[3], 5).unwrap();
        assert_eq!(p.free(got[3], 5).unwrap_err(), LaddrError::NotLeased);
        assert_eq!(
            p.free(LocalAddr { lip: L1, lport: 2002 }, 5).unwrap_err(),
            LaddrError::NotLeased
        );
        assert_eq!(
            p.free(
                LocalAddr {
                    lip: Ipv4Addr::new(1, 1, 1, 1),
                    lport: 2001
                },
                5
            )
            .unwrap_err(),
            LaddrError::NotLeased
        );
        // Held until 15.
        assert_eq!(p.allocate(14).unwrap_err(), LaddrError::Exhausted);
        assert_eq!(p.allocate(15).unwrap(), got[3]);
    }

    /// One step of the model: which worker acts, and how.
    #[derive(Debug, Clone)]
    enum Op {
        Alloc(u16),
        /// Free the i-th (mod count) live lease.
        Free(usize),
        /// Free something never leased (or already freed).
        BogusFree(u16, u16),
        Tick(u32),
    }

    fn op(workers: u16) -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..workers).prop_map(Op::Alloc),
            3 => any::<usize>().prop_map(Op::Free),
            1 => (0..workers, 1990u16..2080).prop_map(|(w, p)| Op::BogusFree(w, p)),
            2 => (0u32..6).prop_map(Op::Tick),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Several workers' pools over the same LIPs, driven by random leases,
        /// frees and clock ticks, checked against a model of every port's state.
        #[test]
        fn pools_never_share_a_port_and_honour_the_hold(
            workers in 1u16..5,
            hold in 0u32..8,
            first in 2000u16..2010,
            span in 8u16..90,
            ops in proptest::collection::vec(op(4), 1..400),
        ) {
            let c = cfg(first..=first + span, hold);
            let lips = [L1, L2];
            let mut pools: Vec<_> = (0..workers).map(|w| LaddrPool::new(&lips, &c, w, workers).unwrap()).collect();
            let mut now = 0u32;
            // Live leases with their worker, and when each (LIP, port) may be reused.
            let mut live: Vec<(u16, LocalAddr)> = Vec::new();
            let mut live_set: HashSet<LocalAddr> = HashSet::new();
            let mut ready_at: HashMap<LocalAddr, u32> = HashMap::new();
            for o in ops {
                match o {
                    Op::Alloc(w) => {
                        let w = w % workers;
                        let got = pools[usize::from(w)].allocate(now);
                        // The model's view: does this worker have a port that is
                        // neither live nor held?
                        let usable = lips.iter().any(|&lip| c.ports.clone().any(|lport| {
                            let a = LocalAddr { lip, lport };
                            owner_of_port(lport, workers) == w
                                && !live_set.contains(&a)
                                && ready_at.get(&a).is_none_or(|&r| r <= now)
                        }));
                        match got {
                            Ok(a) => {
                                prop_assert_eq!(owner_of_port(a.lport, workers), w);
                                prop_assert!(c.ports.contains(&a.lport));
                                prop_assert!(live_set.insert(a), "{:?} leased twice", a);
                                if let Some(&r) = ready_at.get(&a) {
                                    prop_assert!(now >= r, "{:?} reused at {} before {}", a, now, r);
                                }
                                live.push((w, a));
                            }
                            Err(e) => {
                                prop_assert_eq!(e, LaddrError::Exhausted);
                                prop_assert!(!usable, "worker {} exhausted with a usable port", w);
                            }
                        }
                    }
                    Op::Free(i) if !live.is_empty() => {
                        let (w, a) = live.swap_remove(i % live.len());
                        live_set.remove(&a);
                        pools[usize::from(w)].free(a, now).unwrap();
                        ready_at.insert(a, now + hold);
                    }
                    Op::Free(_) => {}
                    Op::BogusFree(w, lport) => {
                        let w = w % workers;
                        let a = LocalAddr { lip: L1, lport };
                        let mine = live.iter().any(|&(lw, la)| lw == w && la == a);
                        if !mine {
                            let before = pools[usize::from(w)].free_ports();
                            prop_assert_eq!(pools[usize::from(w)].free(a, now), Err(LaddrError::NotLeased));
                            prop_assert_eq!(pools[usize::from(w)].free_ports(), before);
                        }
                    }
                    Op::Tick(d) => now += d,
                }
                let leased: usize = pools.iter().map(LaddrPool::leased).sum();
                prop_assert_eq!(leased, live.len());
            }
            // Everything freed and the hold over: every port can be leased again.
            for (w, a) in live.drain(..) {
                pools[usize::from(w)].free(a, now).unwrap();
            }
            now += hold;
            let total: usize = pools.iter().map(LaddrPool::free_ports).sum();
            prop_assert_eq!(total, 2 * (usize::from(span) + 1));
            let mut n = 0;
            for p in &mut pools {
                while p.allocate(now).is_ok() {
                    n += 1;
                }
            }
            prop_assert_eq!(n, total);
        }
    }
}
