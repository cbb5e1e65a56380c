//! Weighted failover (kernel ip_vs_fo.c): every connection goes to the
//! available real server with the highest weight; the first in list order
//! wins a tie. Lower weights are the standby order.

use super::{SchedKey, Scheduler};
use crate::dest::RealServer;

#[derive(Clone, Copy, Debug, Default)]
pub struct Fo;

impl Scheduler for Fo {
    fn name(&self) -> &'static str {
        "fo"
    }

    fn schedule(&mut self, dests: &[RealServer], _key: &SchedKey) -> Option<usize> {
        highest_weight(dests, |_| true)
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(Fo)
    }
}

/// The available server passing `ok` with the highest weight, first on ties.
#[inline]
pub(crate) fn highest_weight(dests: &[RealServer], ok: impl Fn(&RealServer) -> bool) -> Option<usize> {
    let mut best: Option<(usize, u32)> = None;
    for (i, d) in dests.iter().enumerate() {
        if !d.available() || !ok(d) {
            continue;
        }
        if best.is_none_or(|(_, w)| d.weight > w) {
            best = Some((i, d.weight));
        }
    }
    best.map(|b| b.0)
}
