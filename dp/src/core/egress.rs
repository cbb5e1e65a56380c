//! Where an established connection's packets leave, resolved once: the
//! route, the output port and the neighbour's MAC of each direction are
//! looked up by the first packet the fast path takes that way, kept in one of
//! the worker's egress slots, and named by the connection entry
//! (`Conn::egress`, one byte per direction). Later packets read the slot.
//!
//! Why it stays right:
//! - routes and ports never change while the director runs (they are part of
//!   `Shared`), so a connection's next hop in one direction is fixed: its
//!   destination (the real server in, the client out) is a key of the entry;
//! - the neighbour's MAC can change, and its entry ages: a slot keeps the
//!   neighbour table's generation it was resolved under, bumped by every
//!   change (`NeighTable::generation`), and the second (the coarse clock)
//!   it was resolved in. A lookup's answer depends on nothing else, so under
//!   the same generation in the same second it is the same; otherwise the
//!   slot is resolved again before use (once a second per slot at most), and
//!   when the table no longer answers `Resolved`, the packet goes the general
//!   path (which asks ARP again).
//!
//! A slot is one next hop (port and address to resolve), shared by every
//! connection through it, so the slots stay few: one per real server and
//! gateway. There are at most `SLOTS`; past that, connections to further next
//! hops are forwarded with per-packet lookups, as without the cache. Slots are
//! never freed, so a slot number in an entry never names another next hop.

use std::net::Ipv4Addr;

use crate::neigh::{Neigh, NeighTable};
use crate::route::{NextHop, PortInfo};
use crate::wire::ethernet::MacAddr;

/// Slots per worker: a slot number + 1 fits the entry's byte.
pub const SLOTS: usize = 255;
/// Open-addressing index from next hop to slot, at most half full.
const INDEX: usize = 512;

/// One next hop, resolved.
#[derive(Clone, Copy, Debug)]
pub struct Egress {
    pub hop: NextHop,
    /// The new Ethernet destination and source: the frame's first 12 bytes.
    pub macs: [u8; 12],
    /// The output port's IP MTU and address (TUN's outer source).
    pub mtu: u16,
    pub addr: Ipv4Addr,
    /// The neighbour table's generation and the clock's second when resolved.
    generation: u64,
    now: u32,
}

impl Egress {
    /// An egress through `port` (the hop's port) to the neighbour at `mac`,
    /// looked up at `now` under neighbour generation `generation`.
    pub fn new(hop: NextHop, port: &PortInfo, mac: MacAddr, generation: u64, now: u32) -> Egress {
        let mut macs = [0; 12];
        macs[..6].copy_from_slice(&mac.0);
        macs[6..].copy_from_slice(&port.mac.0);
        Egress {
            hop,
            macs,
            mtu: port.mtu,
            addr: port.addr,
            generation,
            now,
        }
    }

    /// The neighbour's MAC, the frame's new destination.
    #[cfg(test)]
    fn next_mac(&self) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&self.macs[..6]);
        MacAddr(m)
    }

    #[inline(always)]
    fn valid(&self, generation: u64, now: u32) -> bool {
        self.generation == generation && self.now == now
    }
}

/// A worker's egress slots.
pub struct EgressCache {
    slots: Vec<Egress>,
    /// Slot + 1 by hash of the next hop; 0 = empty.
    index: Box<[u8; INDEX]>,
    /// The egress `keep` was given when every slot was taken: lent for that
    /// packet only, never named by an entry.
    spare: Option<Egress>,
}

impl Default for EgressCache {
    fn default() -> Self {
        EgressCache {
            slots: Vec::with_capacity(SLOTS),
            index: Box::new([0; INDEX]),
            spare: None,
        }
    }
}

impl EgressCache {
    /// The egress of slot number `slot` (+1, as entries hold it), checked
    /// against the neighbour table's `generation` (read before this call)
    /// and the clock, and resolved again if either moved on. None when the
    /// neighbour is no longer `Resolved` (or `slot` names no slot).
    #[inline(always)]
    pub fn get(&mut self, slot: u8, generation: u64, now: u32, neigh: &NeighTable) -> Option<&Egress> {
        let e = self.slots.get_mut(usize::from(slot).wrapping_sub(1))?;
        if !e.valid(generation, now) {
            refresh(e, generation, now, neigh)?;
        }
        Some(e)
    }

    /// Keeps `e`, the first resolution of a next hop, as `insert` does, and
    /// lends it: returns the slot number for the entry to record (0 when
    /// every slot was taken, the egress then lent for this packet only,
    /// named by no entry) and the egress. The per-packet path thus copies
    /// nothing of it, first packet or later ones (`get`).
    #[cold]
    #[inline(never)]
    pub fn keep(&mut self, e: Egress) -> (u8, &Egress) {
        let n = self.insert(e);
        match usize::from(n).checked_sub(1).and_then(|i| self.slots.get(i)) {
            Some(kept) => (n, kept),
            None => (0, self.spare.insert(e)),
        }
    }

    /// Keeps `e` (resolved under its generation) in the slot of its next
    /// hop, new or found. Returns the slot number + 1, or 0 when every slot
    /// is taken by another next hop.
    pub fn insert(&mut self, e: Egress) -> u8 {
        let h = u32::from(e.hop.via) ^ (u32::from(e.hop.port) << 16).rotate_left(7);
        let mut i = (h.wrapping_mul(0x9E37_79B1) >> 23) as usize % INDEX;
        loop {
            match self.index[i] {
                0 if self.slots.len() < SLOTS => {
                    self.slots.push(e);
                    let n = self.slots.len() as u8;
                    self.index[i] = n;
                    return n;
                }
                0 => return 0,
                n => {
                    if let Some(s) = self.slots.get_mut(usize::from(n) - 1) {
                        if s.hop == e.hop {
                            *s = e;
                            return n;
                        }
                    }
                }
            }
            i = (i + 1) % INDEX;
        }
    }

    /// Slots in use.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cold]
fn refresh(e: &mut Egress, generation: u64, now: u32, neigh: &NeighTable) -> Option<()> {
    let Neigh::Resolved(mac) = neigh.lookup(e.hop.via, now) else {
        return None;
    };
    e.macs[..6].copy_from_slice(&mac.0);
    e.generation = generation;
    e.now = now;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neigh::NEIGH_REACHABLE_S;

    fn port() -> PortInfo {
        PortInfo {
            mac: MacAddr([2, 0, 0, 0, 0, 0xaa]),
            addr: Ipv4Addr::new(10, 0, 0, 1),
            prefix_len: 24,
            mtu: 1500,
        }
    }

    #[test]
    fn slots_follow_the_neighbour_table() {
        let t = NeighTable::new(16);
        let via = Ipv4Addr::new(10, 0, 0, 9);
        let hop = NextHop { port: 0, via };
        let m1 = MacAddr([2, 0, 0, 0, 0, 1]);
        let m2 = MacAddr([2, 0, 0, 0, 0, 2]);
        t.want(via);
        t.learn(via, m1, 100);
        let mut c = EgressCache::default();
        let g = t.generation();
        let s = c.insert(Egress::new(hop, &port(), m1, g, 100));
        assert_eq!(s, 1);
        assert_eq!(
            c.insert(Egress::new(hop, &port(), m1, g, 100)),
            1,
            "one slot per hop"
        );
        assert_eq!(c.get(s, g, 150, &t).unwrap().next_mac(), m1);
        // A new MAC bumps the generation: the slot follows it.
        t.learn(via, m2, 160);
        let g2 = t.generation();
        assert_ne!(g, g2);
        assert_eq!(c.get(s, g2, 160, &t).unwrap().next_mac(), m2);
        // Aged out: no longer resolved, the slot is refused.
        assert!(c.get(s, g2, 160 + NEIGH_REACHABLE_S + 1, &t).is_none());
        // The clock going back before the slot was resolved: looked up
        // again, and the table's answer (the stamp is in the future) is no.
        assert!(c.get(s, g2, 159, &t).is_none());
        assert!(c.get(s, g2, 161, &t).is_some());
        assert_eq!(c.get(0, g2, 160, &t).map(|e| e.mtu), None, "0 names no slot");
        assert_eq!(c.get(2, g2, 160, &t).map(|e| e.mtu), None);
    }

    #[test]
    fn full_cache_refuses_new_hops() {
        let t = NeighTable::new(1024);
        let mut c = EgressCache::default();
        let g = t.generation();
        let f = MacAddr([2, 0, 0, 0, 0, 1]);
        for i in 0..SLOTS as u32 {
            let hop = NextHop {
                port: (i & 1) as u16,
                via: Ipv4Addr::from(0x0a00_0000 + i),
            };
            assert_eq!(
                usize::from(c.insert(Egress::new(hop, &port(), f, g, 0))),
                i as usize + 1
            );
        }
        let hop = NextHop {
            port: 0,
            via: Ipv4Addr::new(10, 9, 9, 9),
        };
        assert_eq!(c.insert(Egress::new(hop, &port(), f, g, 0)), 0);
        assert_eq!(c.len(), SLOTS);
        // Lent for the packet all the same, and named by no entry.
        let (n, e) = c.keep(Egress::new(hop, &port(), f, g, 0));
        assert_eq!((n, e.hop), (0, hop));
        assert_eq!(c.len(), SLOTS);
    }

    #[test]
    fn keep_lends_the_slot_it_filled() {
        let t = NeighTable::new(16);
        let via = Ipv4Addr::new(10, 0, 0, 9);
        let hop = NextHop { port: 0, via };
        let m = MacAddr([2, 0, 0, 0, 0, 1]);
        t.want(via);
        t.learn(via, m, 100);
        let g = t.generation();
        let mut c = EgressCache::default();
        let (n, e) = c.keep(Egress::new(hop, &port(), m, g, 100));
        assert_eq!((n, e.next_mac()), (1, m));
        // Named by its slot from now on.
        assert_eq!(c.get(1, g, 100, &t).map(|e| e.next_mac()), Some(m));
        assert_eq!(c.len(), 1);
    }
}
