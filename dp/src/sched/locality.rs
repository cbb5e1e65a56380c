//! The fixed-size destination cache behind lblc and lblcr.
//!
//! The kernel keeps a growing hash table of entries keyed by destination IP,
//! shared by all CPUs under a lock and trimmed by a timer. Ours is per worker
//! and preallocated: 1024 slots (IP_VS_LBLC_TAB_SIZE), each destination hashed
//! to a window of 4 consecutive slots. A miss in a full window evicts its least
//! recently used entry, so `schedule` never allocates and never grows.
//!
//! Entries unused for longer than the expiration (kernel default 24 h) are
//! treated as absent, as the kernel's full expiration check would have freed
//! them. Time is the coarse clock given to `Scheduler::tick`.

use std::net::Ipv4Addr;

use super::hash_32;

const TAB_BITS: u32 = 10;
pub(crate) const TAB_SIZE: usize = 1 << TAB_BITS;
const WINDOW: usize = 4;

/// DEFAULT_EXPIRATION of ip_vs_lblc.c / ip_vs_lblcr.c: one day.
pub const DEFAULT_EXPIRATION_S: u64 = 24 * 60 * 60;

#[derive(Clone, Copy, Debug, Default)]
struct Slot<T> {
    live: bool,
    dst: u32,
    /// Lookup sequence number of the last use: the LRU order within a window.
    last_seq: u64,
    /// Coarse clock at the last use: for expiration.
    last_s: u64,
    val: T,
}

#[derive(Clone, Debug)]
pub(crate) struct LocalityTable<T> {
    slots: Box<[Slot<T>]>,
    seq: u64,
    now_s: u64,
    expiration_s: u64,
}

impl<T: Copy + Default> LocalityTable<T> {
    pub fn new(expiration_s: u64) -> Self {
        LocalityTable {
            slots: vec![Slot::default(); TAB_SIZE].into_boxed_slice(),
            seq: 0,
            now_s: 0,
            expiration_s,
        }
    }

    /// An empty table like this one, for another worker.
    pub fn fresh(&self) -> Self {
        let mut t = Self::new(self.expiration_s);
        t.now_s = self.now_s;
        t
    }

    pub fn tick(&mut self, now_s: u64) {
        // A clock that steps back must not make old entries look young.
        self.now_s = self.now_s.max(now_s);
    }

    pub fn now_s(&self) -> u64 {
        self.now_s
    }

    #[inline]
    fn window(dst: u32) -> impl Iterator<Item = usize> {
        let h = hash_32(dst, TAB_BITS) as usize;
        (0..WINDOW).map(move |k| (h + k) % TAB_SIZE)
    }

    #[inline]
    fn fresh_enough(&self, s: &Slot<T>) -> bool {
        s.live && self.now_s.saturating_sub(s.last_s) <= self.expiration_s
    }

    /// The entry for `dst`, marked as just used.
    pub fn lookup(&mut self, dst: Ipv4Addr) -> Option<&mut T> {
        let dst = u32::from(dst);
        let i = Self::window(dst).find(|&i| {
            let s = &self.slots[i];
            s.dst == dst && self.fresh_enough(s)
        })?;
        self.seq += 1;
        let s = &mut self.slots[i];
        s.last_seq = self.seq;
        s.last_s = self.now_s;
        Some(&mut s.val)
    }

    /// A new entry for `dst` holding `val`. Takes, in order of preference, the
    /// slot `dst` already had, a free or expired slot, or the least recently
    /// used slot of the window.
    pub fn insert(&mut self, dst: Ipv4Addr, val: T) -> &mut T {
        let dst = u32::from(dst);
        let mut victim = None;
        let mut oldest = (u64::MAX, 0usize);
        for i in Self::window(dst) {
            let s = &self.slots[i];
            if s.live && s.dst == dst {
                victim = Some(i);
                break;
            }
            if victim.is_none() && !self.fresh_enough(s) {
                victim = Some(i);
            }
            if s.last_seq < oldest.0 {
                oldest = (s.last_seq, i);
            }
        }
        let i = victim.unwrap_or(oldest.1);
        self.seq += 1;
        self.slots[i] = Slot {
            live: true,
            dst,
            last_seq: self.seq,
            last_s: self.now_s,
            val,
        };
        &mut self.slots[i].val
    }

    #[cfg(test)]
    pub fn live_entries(&self) -> usize {
        self.slots.iter().filter(|s| self.fresh_enough(s)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_insert_evict_expire() {
        let mut t: LocalityTable<u32> = LocalityTable::new(100);
        let a = Ipv4Addr::new(10, 0, 0, 1);
        assert!(t.lookup(a).is_none());
        *t.insert(a, 5) += 1;
        assert_eq!(t.lookup(a).copied(), Some(6));
        // Far more destinations than slots: never grows, never panics, and a
        // destination in constant use survives the churn of its window.
        for n in 0..10_000u32 {
            t.insert(Ipv4Addr::from(0x0b00_0000 + n), n);
            if n % 2 == 0 {
                assert!(t.lookup(a).is_some(), "hot entry evicted at {n}");
            }
        }
        assert!(t.live_entries() <= TAB_SIZE);
        t.tick(100);
        assert!(t.lookup(a).is_some(), "used at t=0, still fresh at t=100");
        t.tick(201);
        assert!(t.lookup(a).is_none(), "expired after 100 s unused");
        t.tick(5);
        assert!(t.lookup(a).is_none(), "clock never steps back");
    }
}
