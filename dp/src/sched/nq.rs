//! Never queue (kernel ip_vs_nq.c): an idle server (no active connections)
//! takes the connection at once, the first such in list order; when none is
//! idle, shortest expected delay decides.

use super::sed::sed_overhead;
use super::{least_weighted, SchedKey, Scheduler};
use crate::dest::RealServer;

#[derive(Clone, Copy, Debug, Default)]
pub struct Nq;

impl Scheduler for Nq {
    fn name(&self) -> &'static str {
        "nq"
    }

    fn schedule(&mut self, dests: &[RealServer], _key: &SchedKey) -> Option<usize> {
        if let Some(i) = dests.iter().position(|d| d.available() && d.active() == 0) {
            return Some(i);
        }
        least_weighted(dests, sed_overhead)
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(Nq)
    }
}
