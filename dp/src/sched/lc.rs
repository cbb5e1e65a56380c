//! Least connection (kernel ip_vs_lc.c): the available real server with the
//! least connection overhead (active * 256 + inactive); weight only matters
//! as 0 = quiesced. Ties go to the first in list order.

use super::{SchedKey, Scheduler};
use crate::dest::RealServer;

#[derive(Clone, Copy, Debug, Default)]
pub struct Lc;

impl Scheduler for Lc {
    fn name(&self) -> &'static str {
        "lc"
    }

    fn schedule(&mut self, dests: &[RealServer], _key: &SchedKey) -> Option<usize> {
        let mut best: Option<(usize, u64)> = None;
        for (i, d) in dests.iter().enumerate() {
            if !d.available() {
                continue;
            }
            let oh = d.overhead();
            if best.is_none_or(|(_, b)| oh < b) {
                best = Some((i, oh));
            }
        }
        best.map(|b| b.0)
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(Lc)
    }
}
