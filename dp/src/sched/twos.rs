//! Weighted power of two choices (kernel ip_vs_twos.c): draw two servers at
//! random, each with probability in proportion to its weight, and take the one
//! with the lower overhead / weight; the first draw wins a tie.
//!
//! As in the kernel, the draws are uniform over [0, total weight] inclusive,
//! so the first available server gets one extra chance in total + 1.
//!
//! Randomness comes from a per-instance xorshift64* generator: no global
//! state, no locks, no allocation. Each instance (and each clone for another
//! worker) gets its own seed at build time, so workers do not draw in lockstep.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{mix64, SchedKey, Scheduler};
use crate::dest::RealServer;

/// Distinct seeds per instance; deterministic across runs, which keeps
/// behaviour reproducible. Only touched when an instance is built.
static SEED_SEQ: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Debug)]
pub struct Twos {
    state: u64,
}

impl Twos {
    pub fn new() -> Self {
        Twos::with_seed(mix64(SEED_SEQ.fetch_add(1, Ordering::Relaxed)))
    }

    pub fn with_seed(seed: u64) -> Self {
        // xorshift's one forbidden state is 0.
        Twos {
            state: if seed == 0 { 0x2545_F491_4F6C_DD1D } else { seed },
        }
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, n) by multiply-shift (no modulo bias worth the name for
    /// n far below 2^64).
    #[inline]
    fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

impl Default for Twos {
    fn default() -> Self {
        Twos::new()
    }
}

/// The first available server whose cumulative weight reaches `r`.
#[inline]
fn weighted_pick(dests: &[RealServer], r: u64) -> Option<usize> {
    let mut acc = 0u64;
    for (i, d) in dests.iter().enumerate() {
        if d.available() {
            acc += d.weight as u64;
            if acc >= r {
                return Some(i);
            }
        }
    }
    None
}

impl Scheduler for Twos {
    fn name(&self) -> &'static str {
        "twos"
    }

    fn schedule(&mut self, dests: &[RealServer], _key: &SchedKey) -> Option<usize> {
        let total: u64 = dests
            .iter()
            .filter(|d| d.available())
            .map(|d| d.weight as u64)
            .sum();
        if total == 0 {
            return None;
        }
        let (r1, r2) = (self.below(total + 1), self.below(total + 1));
        let c1 = weighted_pick(dests, r1)?;
        let c2 = weighted_pick(dests, r2)?;
        let (a, b) = (&dests[c1], &dests[c2]);
        // b's overhead/weight strictly below a's, cross-multiplied.
        if (a.overhead() as u128) * (b.weight as u128) > (b.overhead() as u128) * (a.weight as u128) {
            Some(c2)
        } else {
            Some(c1)
        }
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(Twos::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{key, load, servers};

    fn shares(s: &mut Twos, d: &[RealServer], n: usize) -> Vec<f64> {
        let mut c = vec![0usize; d.len()];
        for _ in 0..n {
            c[s.schedule(d, &key(1)).unwrap()] += 1;
        }
        c.into_iter().map(|x| x as f64 / n as f64).collect()
    }

    #[test]
    fn idle_servers_are_drawn_by_weight() {
        let d = servers(&[3, 1]);
        let sh = shares(&mut Twos::with_seed(1), &d, 40_000);
        // Equal (zero) load: the first draw stands, weighted 3:1 (+1 chance to
        // the first server, as the kernel draws from [0, total]).
        assert!((sh[0] - 0.8).abs() < 0.02, "{sh:?}");
    }

    #[test]
    fn the_less_loaded_of_two_wins() {
        let d = servers(&[1, 1]);
        load(&d[0], 100, 0);
        let sh = shares(&mut Twos::with_seed(7), &d, 40_000);
        // Server 0 is taken only when both draws land on it: ~(2/3)^2 with the
        // kernel's extra chance for the first server.
        assert!((sh[0] - 4.0 / 9.0).abs() < 0.02, "{sh:?}");
        // Weight scales the load: 0 now has 10x the weight and so less load per weight.
        // 5 active on weight 10 beats 1 active on weight 1; server 1 is
        // taken only when both draws land on it (1/12 each).
        let d = servers(&[10, 1]);
        load(&d[0], 5, 0);
        load(&d[1], 1, 0);
        let sh = shares(&mut Twos::with_seed(9), &d, 20_000);
        assert!(sh[1] < 0.015, "{sh:?}");
    }

    #[test]
    fn instances_draw_differently() {
        let d = servers(&[1; 8]);
        let mut a = Twos::new();
        let mut b = Twos::new();
        let pa: Vec<_> = (0..32).map(|_| a.schedule(&d, &key(1))).collect();
        let pb: Vec<_> = (0..32).map(|_| b.schedule(&d, &key(1))).collect();
        assert_ne!(pa, pb);
    }
}
