//! Source hashing (kernel ip_vs_sh.c): the client IP (and, with the `port`
//! flag, the client port) hashes into a 256-bucket table, so one client keeps
//! reaching the same real server without any per-client state.
//!
//! The table is filled as the kernel fills it: servers in list order, each
//! taking `weight` consecutive buckets (a quiesced server still takes one,
//! whose clients are then refused or fall back), cycling until all 256 are
//! assigned. If the hashed server is unavailable the connection is
//! refused, unless the `fallback` flag asks to walk on to the next bucket
//! whose server is available.

use super::{hash_32, is_available, SchedKey, Scheduler};
use crate::dest::{RealServer, SchedFlags};

/// IP_VS_SH_TAB_BITS.
const SH_TAB_BITS: u32 = 8;
pub const SH_TAB_SIZE: usize = 1 << SH_TAB_BITS;
const NO_DEST: u32 = u32::MAX;

#[derive(Clone, Debug)]
pub struct Sh {
    buckets: [u32; SH_TAB_SIZE],
    flags: SchedFlags,
}

impl Sh {
    pub fn new(dests: &[RealServer], flags: SchedFlags) -> Self {
        let mut buckets = [NO_DEST; SH_TAB_SIZE];
        if !dests.is_empty() {
            let (mut p, mut filled) = (0usize, 0u32);
            for b in buckets.iter_mut() {
                *b = p as u32;
                filled += 1;
                if filled >= dests[p].weight {
                    p = (p + 1) % dests.len();
                    filled = 0;
                }
            }
        }
        Sh { buckets, flags }
    }

    fn bucket(&self, key: &SchedKey) -> usize {
        let port = if self.flags.port { key.sport } else { 0 };
        hash_32(u32::from(key.src).wrapping_add(port as u32), SH_TAB_BITS) as usize
    }

    #[cfg(test)]
    pub(crate) fn buckets(&self) -> &[u32] {
        &self.buckets
    }
}

impl Scheduler for Sh {
    fn name(&self) -> &'static str {
        "sh"
    }

    fn schedule(&mut self, dests: &[RealServer], key: &SchedKey) -> Option<usize> {
        let h = self.bucket(key);
        let first = self.buckets[h];
        if first == NO_DEST {
            return None;
        }
        if is_available(dests, first as usize) {
            return Some(first as usize);
        }
        if !self.flags.fallback {
            return None;
        }
        (1..SH_TAB_SIZE)
            .map(|k| self.buckets[(h + k) % SH_TAB_SIZE] as usize)
            .find(|&i| is_available(dests, i))
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{key, key_port, overload, servers};

    #[test]
    fn buckets_follow_weights() {
        let d = servers(&[3, 1]);
        let s = Sh::new(&d, SchedFlags::default());
        let n0 = s.buckets().iter().filter(|&&b| b == 0).count();
        assert_eq!((n0, SH_TAB_SIZE - n0), (192, 64));
        // A quiesced server still owns one bucket per round.
        let d = servers(&[2, 0]);
        let s = Sh::new(&d, SchedFlags::default());
        assert_eq!(&s.buckets()[..6], &[0, 0, 1, 0, 0, 1]);
    }

    #[test]
    fn same_client_same_server() {
        let d = servers(&[1, 1, 1, 1]);
        let mut s = Sh::new(&d, SchedFlags::default());
        let mut seen = [false; 4];
        for c in 0..200u32 {
            let first = s.schedule(&d, &key(c)).unwrap();
            seen[first] = true;
            for _ in 0..3 {
                assert_eq!(s.schedule(&d, &key(c)), Some(first));
            }
            // Without the port flag the client port does not matter.
            assert_eq!(s.schedule(&d, &key_port(c, 40000 + c as u16)), Some(first));
        }
        assert_eq!(seen, [true; 4], "clients spread over every server");
    }

    #[test]
    fn port_flag_hashes_the_client_port() {
        let d = servers(&[1, 1, 1, 1]);
        let flags = SchedFlags {
            port: true,
            fallback: false,
        };
        let mut s = Sh::new(&d, flags);
        let picks: Vec<_> = (0..64u16)
            .map(|p| s.schedule(&d, &key_port(7, 1024 + p)).unwrap())
            .collect();
        assert!(
            picks.iter().any(|&p| p != picks[0]),
            "port must change the server: {picks:?}"
        );
        // Still stable per (client, port).
        for (p, &want) in picks.iter().enumerate() {
            assert_eq!(s.schedule(&d, &key_port(7, 1024 + p as u16)), Some(want));
        }
    }

    #[test]
    fn unavailable_server_refuses_without_fallback_and_moves_with_it() {
        let d = servers(&[1, 1, 1]);
        let mut plain = Sh::new(&d, SchedFlags::default());
        let mut fb = Sh::new(
            &d,
            SchedFlags {
                fallback: true,
                port: false,
            },
        );
        let victim = plain.schedule(&d, &key(42)).unwrap();
        overload(&d[victim]);
        assert_eq!(plain.schedule(&d, &key(42)), None);
        let moved = fb.schedule(&d, &key(42)).unwrap();
        assert_ne!(moved, victim);
        assert_eq!(fb.schedule(&d, &key(42)), Some(moved), "fallback is stable too");
        // Clients of the healthy servers are not disturbed by the fallback.
        for c in 0..100 {
            if let Some(i) = plain.schedule(&d, &key(c)) {
                assert_eq!(fb.schedule(&d, &key(c)), Some(i));
            }
        }
    }
}
