//! Locality-based least connection (kernel ip_vs_lblc.c), for cache clusters:
//! connections for one destination IP keep going to the server that took the
//! last one, so its cache stays warm. A destination is moved, to the weighted
//! least-connection pick, only when its server is unavailable or overloaded in
//! lblc's sense: more active connections than its weight while another server
//! is below half of its own.
//!
//! The destination cache is per worker and fixed-size (see `locality`).

use super::locality::{LocalityTable, DEFAULT_EXPIRATION_S};
use super::{is_available, least_weighted, locality_overloaded, SchedKey, Scheduler};
use crate::dest::RealServer;

#[derive(Clone, Debug)]
pub struct Lblc {
    /// Destination IP -> real-server index.
    table: LocalityTable<u32>,
}

impl Lblc {
    pub fn new() -> Self {
        Lblc::with_expiration(DEFAULT_EXPIRATION_S)
    }

    /// As `new`, with cache entries expiring after `expiration_s` unused
    /// (the kernel's lblc_expiration sysctl).
    pub fn with_expiration(expiration_s: u64) -> Self {
        Lblc {
            table: LocalityTable::new(expiration_s),
        }
    }
}

impl Default for Lblc {
    fn default() -> Self {
        Lblc::new()
    }
}

impl Scheduler for Lblc {
    fn name(&self) -> &'static str {
        "lblc"
    }

    fn schedule(&mut self, dests: &[RealServer], key: &SchedKey) -> Option<usize> {
        if let Some(&mut i) = self.table.lookup(key.dst) {
            let i = i as usize;
            if is_available(dests, i) && !locality_overloaded(&dests[i], dests) {
                return Some(i);
            }
        }
        let i = least_weighted(dests, RealServer::overhead)?;
        self.table.insert(key.dst, i as u32);
        Some(i)
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(Lblc {
            table: self.table.fresh(),
        })
    }

    fn tick(&mut self, now_s: u64) {
        self.table.tick(now_s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{key_vip, load, overload, servers};

    #[test]
    fn sticks_to_the_cached_server_while_it_copes() {
        let d = servers(&[10, 10, 10]);
        let mut s = Lblc::new();
        let first = s.schedule(&d, &key_vip(1, 1)).unwrap();
        assert_eq!(first, 0, "empty cache: wlc pick, first on ties");
        // The cached server is busier than the others, but not overloaded in
        // lblc's sense (active <= weight): it keeps the destination.
        load(&d[0], 10, 500);
        for c in 0..5 {
            assert_eq!(s.schedule(&d, &key_vip(c, 1)), Some(0));
        }
        // A new destination goes to the least loaded.
        assert_eq!(s.schedule(&d, &key_vip(1, 2)), Some(1));
    }

    #[test]
    fn moves_when_overloaded_and_another_has_room() {
        let d = servers(&[4, 4]);
        let mut s = Lblc::new();
        assert_eq!(s.schedule(&d, &key_vip(1, 7)), Some(0));
        load(&d[0], 5, 0); // active > weight
        load(&d[1], 2, 0); // 2*2 = 4, not < 4: no room anywhere
        assert_eq!(s.schedule(&d, &key_vip(1, 7)), Some(0), "nowhere better to go");
        load(&d[1], 1, 0); // 1*2 < 4: room
        assert_eq!(s.schedule(&d, &key_vip(1, 7)), Some(1));
        // The move is cached: it stays on 1 even after 0 recovers.
        load(&d[0], 0, 0);
        assert_eq!(s.schedule(&d, &key_vip(1, 7)), Some(1));
    }

    #[test]
    fn moves_off_an_unavailable_server() {
        let d = servers(&[1, 1]);
        let mut s = Lblc::new();
        assert_eq!(s.schedule(&d, &key_vip(1, 3)), Some(0));
        overload(&d[0]);
        assert_eq!(s.schedule(&d, &key_vip(1, 3)), Some(1));
    }

    #[test]
    fn entries_expire_by_the_coarse_clock() {
        let d = servers(&[1, 1]);
        let mut s = Lblc::with_expiration(60);
        assert_eq!(s.schedule(&d, &key_vip(1, 3)), Some(0));
        // Busier, so wlc would now pick 1, but not overloaded in lblc's sense.
        load(&d[0], 0, 300);
        s.tick(60);
        assert_eq!(s.schedule(&d, &key_vip(1, 3)), Some(0), "still cached");
        s.tick(121);
        assert_eq!(s.schedule(&d, &key_vip(1, 3)), Some(1), "expired: wlc again");
    }
}
