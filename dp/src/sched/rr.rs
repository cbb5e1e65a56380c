//! Round robin (kernel ip_vs_rr.c): the next available real server after the
//! one picked last, skipping quiesced (weight 0) and overloaded ones.

use super::{SchedKey, Scheduler};
use crate::dest::RealServer;

#[derive(Clone, Debug, Default)]
pub struct Rr {
    /// Where the next scan starts: one past the last pick.
    next: usize,
}

impl Rr {
    pub fn new() -> Self {
        Rr::default()
    }
}

impl Scheduler for Rr {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn schedule(&mut self, dests: &[RealServer], _key: &SchedKey) -> Option<usize> {
        let n = dests.len();
        // A shorter list than last time (or none) restarts at the head.
        let start = if self.next < n { self.next } else { 0 };
        let i = (start..n).chain(0..start).find(|&i| dests[i].available())?;
        self.next = i + 1;
        Some(i)
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(Rr::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{key, servers};

    #[test]
    fn cycles_in_list_order() {
        let d = servers(&[1, 1, 1]);
        let mut s = Rr::new();
        let got: Vec<_> = (0..7).map(|_| s.schedule(&d, &key(1)).unwrap()).collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn weight_is_ignored_except_zero() {
        let d = servers(&[5, 0, 1]);
        let mut s = Rr::new();
        let got: Vec<_> = (0..4).map(|_| s.schedule(&d, &key(1)).unwrap()).collect();
        assert_eq!(got, [0, 2, 0, 2]);
    }

    #[test]
    fn skips_a_server_that_became_overloaded_and_resumes_after_it() {
        let d = servers(&[1, 1, 1]);
        let mut s = Rr::new();
        assert_eq!(s.schedule(&d, &key(1)), Some(0));
        crate::sched::tests::overload(&d[1]);
        assert_eq!(s.schedule(&d, &key(1)), Some(2));
        assert_eq!(s.schedule(&d, &key(1)), Some(0));
    }

    #[test]
    fn shorter_list_does_not_panic() {
        let d = servers(&[1, 1, 1]);
        let mut s = Rr::new();
        s.schedule(&d, &key(1));
        s.schedule(&d, &key(1));
        assert_eq!(s.schedule(&d[..1], &key(1)), Some(0));
    }
}
