//! Overflow connection (kernel ip_vs_ovf.c): the available real server with
//! the highest weight whose active connections have not exceeded its weight;
//! once they do, connections overflow to the next highest weight. As in the
//! kernel a server is still eligible at exactly `weight` active connections
//! (it is skipped when active > weight). Only active connections count, so
//! the scheduler suits TCP better than UDP.

use super::fo::highest_weight;
use super::{SchedKey, Scheduler};
use crate::dest::RealServer;

#[derive(Clone, Copy, Debug, Default)]
pub struct Ovf;

impl Scheduler for Ovf {
    fn name(&self) -> &'static str {
        "ovf"
    }

    fn schedule(&mut self, dests: &[RealServer], _key: &SchedKey) -> Option<usize> {
        highest_weight(dests, |d| d.active() <= d.weight)
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(Ovf)
    }
}
