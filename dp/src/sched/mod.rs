//! Schedulers: how a virtual service picks a real server for a new connection.
//!
//! One file per scheduler, after the kernel's ip_vs_<name>.c, behind one small
//! trait. A worker owns its scheduler instances (cursor state such as rr's
//! position is per worker, so no locks), while connection counts are read from
//! the director-wide `DestStats` atomics, so lc/wlc/sed/nq see every worker's
//! connections. `schedule` never allocates.

use std::net::Ipv4Addr;

use crate::service::{RealServer, SchedFlags};

pub mod registry;

pub use registry::{build, SchedError, SCHEDULER_NAMES};

/// What a scheduler may look at in the packet that opens a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedKey {
    pub cip: Ipv4Addr,
    pub cport: u16,
    /// The destination the client asked for (the VIP); dh and lblc/lblcr hash it.
    pub vip: Ipv4Addr,
    pub vport: u16,
}

/// A scheduler instance. Instances are built by `registry::build` for one
/// service's real-server list; when the list changes, the control plane builds
/// a new instance (as the kernel calls `update_service`).
pub trait Scheduler: Send + Sync {
    /// ipvsadm's name: "rr", "wrr", ...
    fn name(&self) -> &'static str;

    /// Picks an index into `dests`, or `None` when no real server can take the
    /// connection (all quiesced, overloaded, or none configured).
    /// `dests` is the same list the instance was built for.
    fn schedule(&mut self, dests: &[RealServer], key: &SchedKey) -> Option<usize>;

    /// A fresh copy for another worker: state that is expensive to build (a
    /// Maglev table) is shared, cursor state starts over.
    fn clone_box(&self) -> Box<dyn Scheduler>;
}

/// Options some schedulers take beyond the flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedOptions {
    pub flags: SchedFlags,
    /// Maglev lookup table size (mh); must be a prime. Default 65537.
    pub mh_table_size: u32,
}

impl Default for SchedOptions {
    fn default() -> Self {
        SchedOptions {
            flags: SchedFlags::default(),
            mh_table_size: 65537,
        }
    }
}
