//! Locality-based least connection with replication (kernel ip_vs_lblcr.c):
//! like lblc, but a destination IP maps to a set of servers, so a hot
//! destination can be served by several caches. The least loaded (weighted)
//! member of the set takes the connection; when it is overloaded in lblc's
//! sense, the weighted least-connection server joins the set and takes it.
//! A set that has not changed for the expiration time (kernel default 24 h)
//! loses its most loaded member, one per lookup, down to one member.
//!
//! Sets are fixed arrays of `SET_CAPACITY` servers (the kernel's lists are
//! unbounded); a full set makes room by dropping its most loaded member.

use super::locality::{LocalityTable, DEFAULT_EXPIRATION_S};
use super::{least_weighted, locality_overloaded, SchedKey, Scheduler};
use crate::dest::RealServer;

pub const SET_CAPACITY: usize = 8;

/// A destination's server set. Members are kept in insertion order and
/// scanned newest first, as the kernel scans its head-inserted list, which
/// decides ties the same way.
#[derive(Clone, Copy, Debug, Default)]
struct DestSet {
    members: [u32; SET_CAPACITY],
    len: u8,
    lastmod_s: u64,
}

impl DestSet {
    fn iter_newest_first(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.members[..self.len as usize]
            .iter()
            .copied()
            .enumerate()
            .rev()
    }

    /// The member with the least overhead / weight (ip_vs_dest_set_min).
    fn min(&self, dests: &[RealServer]) -> Option<usize> {
        let mut best: Option<(usize, u64, u32)> = None;
        for (_, m) in self.iter_newest_first() {
            let Some(d) = dests.get(m as usize).filter(|d| d.available()) else {
                continue;
            };
            let oh = d.overhead();
            match best {
                Some((_, bo, bw)) if (bo as u128) * (d.weight as u128) <= (oh as u128) * (bw as u128) => {}
                _ => best = Some((m as usize, oh, d.weight)),
            }
        }
        best.map(|b| b.0)
    }

    /// Position of the member with the most overhead / weight among those of
    /// non-zero weight (ip_vs_dest_set_max).
    fn max_pos(&self, dests: &[RealServer]) -> Option<usize> {
        let mut best: Option<(usize, u64, u32)> = None;
        for (pos, m) in self.iter_newest_first() {
            let Some(d) = dests.get(m as usize).filter(|d| d.weight > 0) else {
                continue;
            };
            let oh = d.overhead();
            match best {
                Some((_, bo, bw)) if (bo as u128) * (d.weight as u128) >= (oh as u128) * (bw as u128) => {}
                _ => best = Some((pos, oh, d.weight)),
            }
        }
        best.map(|b| b.0)
    }

    fn remove(&mut self, pos: usize, now_s: u64) {
        let len = self.len as usize;
        if pos < len {
            self.members.copy_within(pos + 1..len, pos);
            self.len -= 1;
            self.lastmod_s = now_s;
        }
    }

    fn insert(&mut self, i: usize, dests: &[RealServer], now_s: u64) {
        if self.members[..self.len as usize].contains(&(i as u32)) {
            return;
        }
        if self.len as usize == SET_CAPACITY {
            // The most loaded member, or the oldest if none has a weight.
            let pos = self.max_pos(dests).unwrap_or(0);
            self.remove(pos, now_s);
        }
        self.members[self.len as usize] = i as u32;
        self.len += 1;
        self.lastmod_s = now_s;
    }
}

#[derive(Clone, Debug)]
pub struct Lblcr {
    table: LocalityTable<DestSet>,
    /// lblcr_expiration: how long a set must stay unchanged before it shrinks.
    set_expiration_s: u64,
}

impl Lblcr {
    pub fn new() -> Self {
        Lblcr::with_expiration(DEFAULT_EXPIRATION_S)
    }

    /// As `new`, with the kernel's lblcr_expiration sysctl set to `expiration_s`
    /// (both for unused entries and for shrinking unchanged sets).
    pub fn with_expiration(expiration_s: u64) -> Self {
        Lblcr {
            table: LocalityTable::new(expiration_s),
            set_expiration_s: expiration_s,
        }
    }

    #[cfg(test)]
    fn set_of(&mut self, dst: std::net::Ipv4Addr) -> Vec<u32> {
        self.table
            .lookup(dst)
            .map(|s| s.members[..s.len as usize].to_vec())
            .unwrap_or_default()
    }
}

impl Default for Lblcr {
    fn default() -> Self {
        Lblcr::new()
    }
}

impl Scheduler for Lblcr {
    fn name(&self) -> &'static str {
        "lblcr"
    }

    fn schedule(&mut self, dests: &[RealServer], key: &SchedKey) -> Option<usize> {
        let now = self.table.now_s();
        let expiration = self.set_expiration_s;
        if let Some(set) = self.table.lookup(key.dst) {
            let least = set.min(dests);
            if set.len > 1 && now > set.lastmod_s.saturating_add(expiration) {
                if let Some(pos) = set.max_pos(dests) {
                    set.remove(pos, now);
                }
            }
            if let Some(i) = least {
                if !locality_overloaded(&dests[i], dests) {
                    return Some(i);
                }
            }
            let i = least_weighted(dests, RealServer::overhead)?;
            set.insert(i, dests, now);
            return Some(i);
        }
        let i = least_weighted(dests, RealServer::overhead)?;
        self.table
            .insert(key.dst, DestSet::default())
            .insert(i, dests, now);
        Some(i)
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(Lblcr {
            table: self.table.fresh(),
            set_expiration_s: self.set_expiration_s,
        })
    }

    fn tick(&mut self, now_s: u64) {
        self.table.tick(now_s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{key_vip, load, overload, servers, vip};

    #[test]
    fn set_grows_when_its_members_are_overloaded() {
        let d = servers(&[2, 2, 2]);
        let mut s = Lblcr::new();
        assert_eq!(s.schedule(&d, &key_vip(1, 1)), Some(0));
        assert_eq!(s.set_of(vip(1)), [0]);
        load(&d[0], 3, 0); // active > weight, and 1, 2 are idle
        assert_eq!(s.schedule(&d, &key_vip(1, 1)), Some(1));
        assert_eq!(s.set_of(vip(1)), [0, 1]);
        // Least loaded member of the set wins, not of the whole service.
        load(&d[0], 0, 0);
        load(&d[1], 1, 0);
        assert_eq!(s.schedule(&d, &key_vip(1, 1)), Some(0));
        load(&d[0], 1, 1);
        assert_eq!(s.schedule(&d, &key_vip(1, 1)), Some(1));
        assert_eq!(s.set_of(vip(1)), [0, 1], "no growth while a member copes");
    }

    #[test]
    fn unavailable_member_is_skipped_within_the_set() {
        let d = servers(&[2, 2, 2]);
        let mut s = Lblcr::new();
        s.schedule(&d, &key_vip(1, 1));
        load(&d[0], 3, 0);
        s.schedule(&d, &key_vip(1, 1));
        load(&d[0], 0, 0);
        overload(&d[1]);
        assert_eq!(s.schedule(&d, &key_vip(1, 1)), Some(0));
        overload(&d[0]);
        assert_eq!(
            s.schedule(&d, &key_vip(1, 1)),
            Some(2),
            "whole set down: wlc joins a new one"
        );
        assert_eq!(s.set_of(vip(1)), [0, 1, 2]);
    }

    #[test]
    fn unchanged_set_shrinks_by_its_most_loaded_member() {
        let d = servers(&[2, 2, 2]);
        let mut s = Lblcr::with_expiration(100);
        s.schedule(&d, &key_vip(1, 1));
        load(&d[0], 3, 0);
        s.schedule(&d, &key_vip(1, 1));
        assert_eq!(s.set_of(vip(1)), [0, 1]);
        s.tick(100);
        s.schedule(&d, &key_vip(1, 1));
        assert_eq!(s.set_of(vip(1)).len(), 2, "not yet expired");
        s.tick(101);
        assert_eq!(s.schedule(&d, &key_vip(1, 1)), Some(1));
        assert_eq!(s.set_of(vip(1)), [1], "the loaded member 0 left");
        s.tick(1000);
        s.schedule(&d, &key_vip(1, 1));
        assert_eq!(s.set_of(vip(1)).len(), 1, "never below one member");
    }

    #[test]
    fn set_is_bounded() {
        let d = servers(&[1; 12]);
        let mut s = Lblcr::new();
        for _ in 0..12 {
            let i = s.schedule(&d, &key_vip(1, 1)).unwrap();
            load(&d[i], 2, 0); // every pick is overloaded at once, others idle
        }
        let set = s.set_of(vip(1));
        assert_eq!(set.len(), SET_CAPACITY, "{set:?}");
    }
}
