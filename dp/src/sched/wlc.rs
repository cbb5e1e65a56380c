//! Weighted least connection (kernel ip_vs_wlc.c), the kernel's default: the
//! available real server with the least overhead / weight, where overhead is
//! active * 256 + inactive. Ties go to the first in list order.

use super::{least_weighted, SchedKey, Scheduler};
use crate::dest::RealServer;

#[derive(Clone, Copy, Debug, Default)]
pub struct Wlc;

impl Scheduler for Wlc {
    fn name(&self) -> &'static str {
        "wlc"
    }

    fn schedule(&mut self, dests: &[RealServer], _key: &SchedKey) -> Option<usize> {
        least_weighted(dests, RealServer::overhead)
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(Wlc)
    }
}
