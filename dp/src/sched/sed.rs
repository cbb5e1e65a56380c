//! Shortest expected delay (kernel ip_vs_sed.c): the available real server
//! with the least (active + 1) / weight, the expected delay if the new
//! connection joins it. Only active connections count, unlike wlc.

use super::{least_weighted, SchedKey, Scheduler};
use crate::dest::RealServer;

/// (active + 1): the kernel's ip_vs_sed_dest_overhead.
#[inline]
pub(crate) fn sed_overhead(d: &RealServer) -> u64 {
    d.active() as u64 + 1
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Sed;

impl Scheduler for Sed {
    fn name(&self) -> &'static str {
        "sed"
    }

    fn schedule(&mut self, dests: &[RealServer], _key: &SchedKey) -> Option<usize> {
        least_weighted(dests, sed_overhead)
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(Sed)
    }
}
