//! Weighted round robin.
//!
//! The kernel (ip_vs_wrr.c) steps a current weight down by the gcd of the
//! weights and, at each step, serves every server whose weight reaches it. That
//! gives exact proportions but in bursts: with weights 3:2:1 one cycle is
//! A A B A B C. We use smooth weighted round robin instead (each pick: every
//! available server's current value grows by its weight, the largest is served
//! and pays back the total), which gives the same proportions, exactly w_i
//! picks of server i in every sum(w) picks, but spread out as evenly as
//! possible (3:2:1 gives A B A C B A). Only the order within a cycle differs
//! from the kernel.
//!
//! Quiesced (weight 0) and overloaded servers neither gain nor count in the
//! total while skipped, so the others keep their mutual proportions.

use super::{SchedKey, Scheduler};
use crate::dest::RealServer;

#[derive(Clone, Debug)]
pub struct Wrr {
    /// Smooth-WRR "current weight" per real server, in list order.
    current: Box<[i64]>,
}

impl Wrr {
    pub fn new(dests: &[RealServer]) -> Self {
        Wrr {
            current: vec![0; dests.len()].into_boxed_slice(),
        }
    }
}

impl Scheduler for Wrr {
    fn name(&self) -> &'static str {
        "wrr"
    }

    fn schedule(&mut self, dests: &[RealServer], _key: &SchedKey) -> Option<usize> {
        let mut total: i64 = 0;
        let mut best: Option<(usize, i64)> = None;
        for (i, (d, cur)) in dests.iter().zip(self.current.iter_mut()).enumerate() {
            if !d.available() {
                continue;
            }
            let w = d.weight as i64;
            *cur += w;
            total += w;
            match best {
                Some((_, b)) if b >= *cur => {}
                _ => best = Some((i, *cur)),
            }
        }
        let (i, _) = best?;
        self.current[i] -= total;
        Some(i)
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(Wrr {
            current: vec![0; self.current.len()].into_boxed_slice(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{key, overload, servers};

    fn picks(s: &mut Wrr, d: &[RealServer], n: usize) -> Vec<usize> {
        (0..n).map(|_| s.schedule(d, &key(1)).unwrap()).collect()
    }

    fn counts(p: &[usize], n: usize) -> Vec<usize> {
        (0..n).map(|i| p.iter().filter(|&&x| x == i).count()).collect()
    }

    fn longest_run(p: &[usize]) -> usize {
        p.chunk_by(|a, b| a == b).map(<[usize]>::len).max().unwrap_or(0)
    }

    #[test]
    fn exact_proportions_in_every_cycle() {
        let d = servers(&[3, 2, 1]);
        let mut s = Wrr::new(&d);
        let p = picks(&mut s, &d, 300);
        for cycle in p.chunks(6) {
            assert_eq!(counts(cycle, 3), [3, 2, 1], "cycle {cycle:?}");
        }
        assert_eq!(counts(&p, 3), [150, 100, 50]);
    }

    #[test]
    fn interleaves_instead_of_bursting() {
        let d = servers(&[3, 2, 1]);
        let mut s = Wrr::new(&d);
        let p = picks(&mut s, &d, 300);
        assert!(longest_run(&p) <= 2, "runs too long: {:?}", &p[..12]);
        // Within one cycle no server is served twice in a row.
        assert_eq!(longest_run(&p[..6]), 1, "{:?}", &p[..6]);
    }

    #[test]
    fn equal_weights_never_repeat_a_server() {
        for w in [[1u32, 1, 1], [7, 7, 7]] {
            let d = servers(&w);
            let mut s = Wrr::new(&d);
            let p = picks(&mut s, &d, 90);
            assert_eq!(longest_run(&p), 1, "{p:?}");
            assert_eq!(counts(&p, 3), [30, 30, 30]);
        }
    }

    #[test]
    fn weight_change_takes_effect_on_rebuild() {
        let d = servers(&[1, 1]);
        let mut s = Wrr::new(&d);
        assert_eq!(counts(&picks(&mut s, &d, 40), 2), [20, 20]);
        let mut d2 = d.clone();
        d2[0].weight = 3;
        let mut s = Wrr::new(&d2);
        assert_eq!(counts(&picks(&mut s, &d2, 40), 2), [30, 10]);
    }

    #[test]
    fn skipped_servers_leave_the_others_proportions() {
        let d = servers(&[3, 2, 1, 0]);
        overload(&d[1]);
        let mut s = Wrr::new(&d);
        let p = picks(&mut s, &d, 400);
        assert_eq!(counts(&p, 4), [300, 0, 100, 0]);
    }

    #[test]
    fn clone_starts_a_fresh_cycle() {
        let d = servers(&[3, 2, 1]);
        let mut s = Wrr::new(&d);
        let first = picks(&mut s, &d, 6);
        picks(&mut s, &d, 3);
        let mut c = s.clone_box();
        let again: Vec<_> = (0..6).map(|_| c.schedule(&d, &key(1)).unwrap()).collect();
        assert_eq!(first, again);
    }
}
