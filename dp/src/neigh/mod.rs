//! Neighbours: the ARP table every worker shares here, and all of ARP in
//! `arp` (what comes in, what we send) and `resolve` (per worker: packets
//! held for a next hop, when to ask again, which VIPs to announce).
//!
//! The table: ARP replies land on whichever worker's queue the NIC picks, but
//! every worker needs the MAC of every real server and gateway. So the table is a fixed array
//! of atomics: a slot is claimed for an IP with a compare-and-swap, and its MAC
//! and timestamp are published as one packed 64-bit word. Readers (every packet
//! to a next hop) do two relaxed loads. Nothing is ever allocated after start.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::wire::ethernet::MacAddr;

pub mod arp;
pub mod resolve;

pub use arp::{build_arp_request, build_gratuitous_arp};
pub use resolve::{PendingQueue, Resolver};

const EMPTY: u32 = 0;

/// How long a learned entry is trusted before it is refreshed by a new request.
pub const NEIGH_REACHABLE_S: u32 = 300;
/// Static entries (from the config) carry this timestamp and never age.
const STATIC_STAMP: u64 = 0xFFFF;

struct Slot {
    /// The IP, +1 so that 0 means empty (0.0.0.0 is never a next hop).
    ip: AtomicU32,
    /// MAC in the low 48 bits; the high 16 bits are the learn time in
    /// seconds modulo 65536 (0xFFFF = static), 0 = not yet resolved.
    word: AtomicU64,
}

/// What a lookup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Neigh {
    Resolved(MacAddr),
    /// Known but old: usable, and worth refreshing with an ARP request.
    Stale(MacAddr),
    Unknown,
}

pub struct NeighTable {
    slots: Box<[Slot]>,
    mask: usize,
    /// Bumped after every change of an entry's MAC or timestamp (`learn`,
    /// `add_static`): what a worker resolved under an older generation it
    /// must look up again (`core::egress`).
    generation: AtomicU64,
}

fn pack(mac: MacAddr, stamp: u64) -> u64 {
    let m = mac.0;
    let low = u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]]);
    low | (stamp << 48)
}

fn unpack(w: u64) -> MacAddr {
    let b = w.to_be_bytes();
    MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
}

#[inline]
fn ip_hash(ip: u32) -> usize {
    (ip.wrapping_mul(0x9E37_79B1) >> 7) as usize
}

impl NeighTable {
    /// `capacity` is rounded up to a power of two; the table never grows.
    pub fn new(capacity: usize) -> Self {
        let n = capacity.next_power_of_two().max(16);
        let slots = (0..n)
            .map(|_| Slot {
                ip: AtomicU32::new(EMPTY),
                word: AtomicU64::new(0),
            })
            .collect();
        NeighTable {
            slots,
            mask: n - 1,
            generation: AtomicU64::new(0),
        }
    }

    fn find(&self, ip: Ipv4Addr) -> Option<&Slot> {
        let tag = u32::from(ip).wrapping_add(1);
        let mut h = ip_hash(tag) & self.mask;
        for _ in 0..=self.mask {
            let s = self.slots.get(h)?;
            let v = s.ip.load(Ordering::Acquire);
            if v == tag {
                return Some(s);
            }
            if v == EMPTY {
                return None;
            }
            h = (h + 1) & self.mask;
        }
        None
    }

    fn claim(&self, ip: Ipv4Addr) -> Option<&Slot> {
        let tag = u32::from(ip).wrapping_add(1);
        let mut h = ip_hash(tag) & self.mask;
        for _ in 0..=self.mask {
            let s = self.slots.get(h)?;
            match s
                .ip
                .compare_exchange(EMPTY, tag, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(s),
                Err(v) if v == tag => return Some(s),
                Err(_) => h = (h + 1) & self.mask,
            }
        }
        None
    }

    #[inline]
    pub fn lookup(&self, ip: Ipv4Addr, now_s: u32) -> Neigh {
        let Some(s) = self.find(ip) else {
            return Neigh::Unknown;
        };
        let w = s.word.load(Ordering::Acquire);
        if w == 0 {
            return Neigh::Unknown;
        }
        let stamp = w >> 48;
        let mac = unpack(w);
        if stamp == STATIC_STAMP {
            return Neigh::Resolved(mac);
        }
        let age = (now_s as u64).wrapping_sub(stamp) & 0xFFFF;
        if age > NEIGH_REACHABLE_S as u64 {
            Neigh::Stale(mac)
        } else {
            Neigh::Resolved(mac)
        }
    }

    /// The table's generation: it changes whenever an entry's MAC or age
    /// does. Read it before a lookup whose answer is kept.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Records `ip is-at mac`. Returns false when the table is full.
    pub fn learn(&self, ip: Ipv4Addr, mac: MacAddr, now_s: u32) -> bool {
        let Some(s) = self.claim(ip) else { return false };
        if s.word.load(Ordering::Relaxed) >> 48 == STATIC_STAMP {
            return true; // configured entries win over what the wire says
        }
        // Keep 0xFFFF for static entries.
        let stamp = (now_s as u64 & 0xFFFF).min(STATIC_STAMP - 1);
        s.word.store(pack(mac, stamp), Ordering::Release);
        self.bump();
        true
    }

    /// Learns only if the IP is already in the table (an answer to our request,
    /// or a refresh); unsolicited ARP from strangers must not fill the table.
    pub fn refresh(&self, ip: Ipv4Addr, mac: MacAddr, now_s: u32) -> bool {
        if self.find(ip).is_some() {
            self.learn(ip, mac, now_s)
        } else {
            false
        }
    }

    /// Marks `ip` as wanted (a request is being sent), so its reply is accepted.
    pub fn want(&self, ip: Ipv4Addr) -> bool {
        self.claim(ip).is_some()
    }

    pub fn add_static(&self, ip: Ipv4Addr, mac: MacAddr) -> bool {
        let Some(s) = self.claim(ip) else { return false };
        s.word.store(pack(mac, STATIC_STAMP), Ordering::Release);
        self.bump();
        true
    }

    /// Every resolved entry, for listings.
    pub fn entries(&self) -> Vec<(Ipv4Addr, MacAddr, bool)> {
        self.slots
            .iter()
            .filter_map(|s| {
                let tag = s.ip.load(Ordering::Acquire);
                let w = s.word.load(Ordering::Acquire);
                (tag != EMPTY && w != 0).then(|| {
                    (
                        Ipv4Addr::from(tag.wrapping_sub(1)),
                        unpack(w),
                        w >> 48 == STATIC_STAMP,
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const M2: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    #[test]
    fn learn_lookup_age_and_static() {
        let t = NeighTable::new(16);
        let a = Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!(t.lookup(a, 0), Neigh::Unknown);
        assert!(!t.refresh(a, M1, 0), "unsolicited stranger is not learned");
        assert!(t.want(a));
        assert_eq!(t.lookup(a, 0), Neigh::Unknown, "wanted but unresolved");
        assert!(t.refresh(a, M1, 10));
        assert_eq!(t.lookup(a, 10), Neigh::Resolved(M1));
        assert_eq!(t.lookup(a, 10 + NEIGH_REACHABLE_S + 1), Neigh::Stale(M1));
        t.learn(a, M2, 500);
        assert_eq!(t.lookup(a, 501), Neigh::Resolved(M2));
        let b = Ipv4Addr::new(10, 0, 0, 2);
        t.add_static(b, M1);
        t.learn(b, M2, 1);
        assert_eq!(
            t.lookup(b, 100_000),
            Neigh::Resolved(M1),
            "static never ages or changes"
        );
    }

    #[test]
    fn full_table_refuses_without_panic() {
        let t = NeighTable::new(16);
        for i in 0..16u32 {
            assert!(t.learn(Ipv4Addr::from(0x0a00_0001 + i), M1, 0));
        }
        assert!(!t.learn(Ipv4Addr::new(192, 0, 2, 1), M1, 0));
        assert_eq!(t.lookup(Ipv4Addr::new(192, 0, 2, 1), 0), Neigh::Unknown);
        assert_eq!(t.entries().len(), 16);
    }

    #[test]
    fn shared_between_threads() {
        let t = std::sync::Arc::new(NeighTable::new(1024));
        let hs: Vec<_> = (0..4u32)
            .map(|w| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for i in 0..200u32 {
                        t.learn(
                            Ipv4Addr::from(0x0a00_0000 + i),
                            MacAddr([2, 0, 0, 0, w as u8, i as u8]),
                            1,
                        );
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        for i in 0..200u32 {
            match t.lookup(Ipv4Addr::from(0x0a00_0000 + i), 1) {
                Neigh::Resolved(m) => assert_eq!(m.0[5], i as u8),
                other => panic!("{i}: {other:?}"),
            }
        }
        assert_eq!(t.entries().len(), 200, "one slot per IP even under races");
    }
}
