//! Maglev hashing (kernel ip_vs_mh.c; Eisenbud et al., NSDI 2016, 3.4).
//!
//! Every real server gets a pseudo-random preference order over the slots of
//! a prime-sized lookup table (an offset and a skip, both hashed from its RIP
//! and port); servers take turns claiming their most preferred free slot until
//! the table is full. A client IP (plus the client port with the `port` flag)
//! hashes to a slot. Adding or removing one of N servers moves only about 1/N
//! of the clients, and the table is balanced to within a slot or so.
//!
//! Weights work as in the kernel: each server claims `turns` slots per round,
//! where turns is its weight divided by the gcd of all weights and shifted
//! right until the largest fits in half the bits of the table size; a server
//! with weight 0 claims none.
//!
//! The kernel hashes with siphash under fixed keys; we use a fixed 64-bit mix,
//! also deterministic, so every worker and every director running the same
//! configuration builds the same table.
//!
//! The table is built once per `build` and shared by `Arc` between workers.

use std::sync::Arc;

use super::{is_available, mix64, SchedError, SchedKey, SchedOptions, Scheduler};
use crate::dest::{RealServer, SchedFlags};

/// Upper bound on the table size, so a typo cannot allocate gigabytes.
pub const MH_MAX_TABLE_SIZE: u32 = 1 << 24;
const NO_DEST: u32 = u32::MAX;

const SEED_OFFSET: u64 = 0x6d68_5f6f_6666_7365;
const SEED_SKIP: u64 = 0x6d68_5f73_6b69_7021;
const SEED_KEY: u64 = 0x6d68_5f6b_6579_2e2e;

#[derive(Clone, Debug)]
pub struct Mh {
    table: Arc<[u32]>,
    flags: SchedFlags,
}

pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let n = n as u64;
    (3..)
        .step_by(2)
        .take_while(|d| d * d <= n)
        .all(|d| !n.is_multiple_of(d))
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[inline]
fn addr_port_hash(addr: u32, port: u16, seed: u64) -> u64 {
    mix64((((addr as u64) << 16) | port as u64) ^ seed)
}

impl Mh {
    pub fn new(dests: &[RealServer], opts: &SchedOptions) -> Result<Mh, SchedError> {
        let m = opts.mh_table_size;
        if !is_prime(m) {
            return Err(SchedError::BadOption(format!("mh table size {m} is not a prime")));
        }
        if m > MH_MAX_TABLE_SIZE {
            return Err(SchedError::BadOption(format!(
                "mh table size {m} is above the limit of {MH_MAX_TABLE_SIZE}"
            )));
        }
        if (m as usize) < dests.len() {
            return Err(SchedError::BadOption(format!(
                "mh table size {m} is smaller than the {} real servers",
                dests.len()
            )));
        }
        Ok(Mh {
            table: populate(dests, m).into(),
            flags: opts.flags,
        })
    }

    /// The lookup table: a real-server index (or u32::MAX) per slot.
    pub fn table(&self) -> &[u32] {
        &self.table
    }

    #[inline]
    fn key_hash(&self, key: &SchedKey) -> u64 {
        let port = if self.flags.port { key.sport } else { 0 };
        addr_port_hash(u32::from(key.src), port, SEED_KEY)
    }
}

/// Fills a table of `m` (prime) slots as the kernel's ip_vs_mh_populate does.
fn populate(dests: &[RealServer], m: u32) -> Vec<u32> {
    let mut table = vec![NO_DEST; m as usize];
    let g = dests.iter().map(|d| d.weight).filter(|&w| w > 0).fold(0, gcd);
    if g == 0 {
        return table;
    }
    let max_turns = dests.iter().map(|d| d.weight).max().unwrap_or(0) / g;
    // Half the table's bits, as IP_VS_MH_TAB_BITS is half of its index.
    let bits = m.ilog2() / 2;
    let shift = (u32::BITS - max_turns.leading_zeros()).saturating_sub(bits);

    struct Perm {
        next: u32,
        skip: u32,
        turns: u32,
    }
    let mut perms: Vec<Perm> = dests
        .iter()
        .map(|d| {
            let (a, p) = (u32::from(d.rip), d.port);
            let turns = if d.weight == 0 {
                0
            } else {
                ((d.weight / g) >> shift).max(1)
            };
            Perm {
                next: (addr_port_hash(a, p, SEED_OFFSET) % m as u64) as u32,
                skip: (addr_port_hash(a, p, SEED_SKIP) % (m as u64 - 1).max(1)) as u32 + 1,
                turns,
            }
        })
        .collect();

    // g > 0 means some server has turns >= 1, so each round fills at least one
    // slot; the skip is coprime with the prime m, so each probe sequence visits
    // every slot and finds a free one while the table is not full.
    let mut filled = 0u32;
    loop {
        for (i, p) in perms.iter_mut().enumerate() {
            for _ in 0..p.turns {
                while table[p.next as usize] != NO_DEST {
                    p.next += p.skip;
                    if p.next >= m {
                        p.next -= m;
                    }
                }
                table[p.next as usize] = i as u32;
                filled += 1;
                if filled == m {
                    return table;
                }
            }
        }
    }
}

impl Scheduler for Mh {
    fn name(&self) -> &'static str {
        "mh"
    }

    fn schedule(&mut self, dests: &[RealServer], key: &SchedKey) -> Option<usize> {
        let m = self.table.len() as u64;
        if m == 0 {
            return None;
        }
        let h = self.key_hash(key);
        let first = self.table[(h % m) as usize];
        if first == NO_DEST {
            return None;
        }
        if is_available(dests, first as usize) {
            return Some(first as usize);
        }
        if !self.flags.fallback || !dests.iter().any(RealServer::available) {
            return None;
        }
        // Rehash with growing offsets, as the kernel does, so the clients of a
        // failed server spread over all the others rather than onto one
        // neighbour.
        (1..=m)
            .map(|off| self.table[(mix64(h.wrapping_add(off)) % m) as usize])
            .take_while(|&i| i != NO_DEST)
            .find(|&i| is_available(dests, i as usize))
            .map(|i| i as usize)
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{key, key_port, overload, servers};

    fn opts(size: u32) -> SchedOptions {
        SchedOptions {
            mh_table_size: size,
            ..SchedOptions::default()
        }
    }

    #[test]
    fn primes() {
        let p: Vec<u32> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(p, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(65537) && is_prime(65521) && is_prime(131071));
        assert!(!is_prime(65536) && !is_prime(65535) && !is_prime(4294967295));
    }

    #[test]
    fn rejects_bad_table_sizes() {
        let d = servers(&[1, 1, 1]);
        for bad in [0, 1, 4, 65536, 65535] {
            assert!(
                matches!(Mh::new(&d, &opts(bad)), Err(SchedError::BadOption(_))),
                "{bad}"
            );
        }
        assert!(matches!(Mh::new(&d, &opts(2)), Err(SchedError::BadOption(_))));
        assert!(matches!(
            Mh::new(&d, &opts(16_777_259)),
            Err(SchedError::BadOption(_))
        ));
        assert!(Mh::new(&d, &opts(3)).is_ok());
        assert!(Mh::new(&d, &opts(251)).is_ok());
    }

    #[test]
    fn table_is_balanced_and_full() {
        let d = servers(&[1; 10]);
        let s = Mh::new(&d, &opts(65537)).unwrap();
        let mut n = [0usize; 10];
        for &i in s.table() {
            n[i as usize] += 1;
        }
        for c in n {
            assert!(c.abs_diff(6554) <= 2, "{n:?}");
        }
    }

    #[test]
    fn removing_one_of_ten_moves_about_a_tenth() {
        const KEYS: u32 = 1_000_000;
        let d = servers(&[1; 10]);
        let mut before = Mh::new(&d, &opts(65537)).unwrap();
        let removed = 4;
        let mut d9 = d.clone();
        d9.remove(removed);
        let mut after = Mh::new(&d9, &opts(65537)).unwrap();
        let (mut moved, mut survivor_keys, mut survivor_moved) = (0u32, 0u32, 0u32);
        for c in 0..KEYS {
            let k = key(c.wrapping_mul(2_654_435_761).wrapping_add(0x0a00_0000));
            let b = before.schedule(&d, &k).unwrap();
            let a = after.schedule(&d9, &k).unwrap();
            // Same real server = same RIP (indices shift after the removed one).
            let same = b != removed && d[b].rip == d9[a].rip;
            if !same {
                moved += 1;
            }
            if b != removed {
                survivor_keys += 1;
                if !same {
                    survivor_moved += 1;
                }
            }
        }
        let frac = moved as f64 / KEYS as f64;
        let surv = survivor_moved as f64 / survivor_keys as f64;
        println!(
            "mh: removing 1 of 10 servers moved {moved} of {KEYS} keys ({:.3}%); \
             keys of surviving servers moved: {:.3}%",
            frac * 100.0,
            surv * 100.0
        );
        assert!(frac <= 0.1 * 1.15, "moved {frac}");
        assert!(frac >= 0.09, "the removed server's keys must move: {frac}");
        assert!(surv <= 0.02, "survivors' keys moved {surv}");
    }

    #[test]
    fn weights_give_proportional_slots_and_keys() {
        let d = servers(&[2, 1]);
        let mut s = Mh::new(&d, &opts(65537)).unwrap();
        let slots0 = s.table().iter().filter(|&&i| i == 0).count() as f64 / 65537.0;
        assert!((slots0 - 2.0 / 3.0).abs() < 0.01, "slot share {slots0}");
        let n = 300_000;
        let keys0 = (0..n)
            .filter(|&c| s.schedule(&d, &key(c * 7919 + 11)) == Some(0))
            .count() as f64;
        assert!(
            (keys0 / n as f64 - 2.0 / 3.0).abs() < 0.01,
            "key share {}",
            keys0 / n as f64
        );
    }

    #[test]
    fn huge_weights_are_shifted_down_but_keep_their_ratio() {
        // gcd 1 and max 65535: the kernel's shift keeps turns small.
        let d = servers(&[65535, 32767, 0]);
        let s = Mh::new(&d, &opts(65537)).unwrap();
        let mut n = [0usize; 3];
        for &i in s.table() {
            n[i as usize] += 1;
        }
        assert_eq!(n[2], 0, "weight 0 claims no slot");
        let r = n[0] as f64 / n[1] as f64;
        assert!((r - 2.0).abs() < 0.1, "{n:?}");
    }

    #[test]
    fn fallback_and_port_flags() {
        let d = servers(&[1, 1, 1, 1]);
        let mut plain = Mh::new(&d, &opts(251)).unwrap();
        let mut fb = Mh::new(
            &d,
            &SchedOptions {
                flags: SchedFlags {
                    fallback: true,
                    port: false,
                },
                mh_table_size: 251,
            },
        )
        .unwrap();
        let victim = plain.schedule(&d, &key(99)).unwrap();
        assert_eq!(fb.schedule(&d, &key(99)), Some(victim), "same table either way");
        overload(&d[victim]);
        assert_eq!(plain.schedule(&d, &key(99)), None);
        let other = fb.schedule(&d, &key(99)).unwrap();
        assert_ne!(other, victim);
        assert_eq!(fb.schedule(&d, &key(99)), Some(other));
        // The victim's clients spread over more than one survivor.
        let mut spread = [0usize; 4];
        for c in 0..5000 {
            if plain.schedule(&d, &key(c)).is_none() {
                spread[fb.schedule(&d, &key(c)).unwrap()] += 1;
            }
        }
        assert_eq!(spread[victim], 0);
        assert!(spread.iter().filter(|&&n| n > 0).count() >= 2, "{spread:?}");

        let mut port = Mh::new(
            &d,
            &SchedOptions {
                flags: SchedFlags {
                    fallback: false,
                    port: true,
                },
                mh_table_size: 251,
            },
        )
        .unwrap();
        // A fresh list with the same RIPs: nobody overloaded.
        let d_ok = servers(&[1, 1, 1, 1]);
        let p: Vec<_> = (0..64u16)
            .map(|cp| port.schedule(&d_ok, &key_port(5, 2000 + cp)))
            .collect();
        assert!(p.iter().any(|&x| x != p[0]), "port flag must hash the port");
        let q: Vec<_> = (0..64u16)
            .map(|cp| plain.schedule(&d_ok, &key_port(5, 2000 + cp)))
            .collect();
        assert!(q.iter().all(|&x| x == q[0]), "without it the port is ignored");
    }

    #[test]
    fn clones_share_the_table() {
        let d = servers(&[1, 1, 1]);
        let s = Mh::new(&d, &opts(65537)).unwrap();
        let c = s.clone();
        assert!(Arc::ptr_eq(&s.table, &c.table));
    }
}
