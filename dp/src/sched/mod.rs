//! Schedulers: how a virtual service picks a real server for a new connection.
//!
//! One file per scheduler, after the kernel's ip_vs_<name>.c, behind one small
//! trait. A worker owns its scheduler instances (cursor state such as rr's
//! position is per worker, so no locks), while connection counts are read from
//! the director-wide `DestStats` atomics, so lc/wlc/sed/nq see every worker's
//! connections. `schedule` never allocates.

use crate::dest::{RealServer, SchedFlags};

pub mod dh;
pub mod fo;
pub mod lblc;
pub mod lblcr;
pub mod lc;
mod locality;
pub mod mh;
pub mod nq;
pub mod ovf;
pub mod registry;
pub mod rr;
pub mod sed;
pub mod sh;
pub mod twos;
pub mod wlc;
pub mod wrr;

#[cfg(test)]
mod tests;

pub use registry::{build, SchedError, SCHEDULER_NAMES};

/// What a scheduler may look at in the packet that opens a connection:
/// `src` is the client (CIP:cport), `dst` what it asked for (VIP:vport; dh
/// and lblc/lblcr hash the VIP).
pub type SchedKey = crate::flow::FlowKey;

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

    /// Advances the scheduler's coarse clock (seconds, monotonic, any epoch).
    /// Only lblc and lblcr keep time: their cache entries and lblcr's
    /// replicated server sets age by it, as the kernel ages them by jiffies.
    /// The worker calls it between bursts; without calls nothing ever expires.
    fn tick(&mut self, _now_s: u64) {}
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

/// The kernel's hash_32 (include/linux/hash.h): multiply by the 32-bit golden
/// ratio and keep the top `bits` bits, which are the well-mixed ones.
#[inline]
pub(crate) fn hash_32(val: u32, bits: u32) -> u32 {
    debug_assert!((1..=32).contains(&bits));
    val.wrapping_mul(0x61C8_8647) >> (32 - bits)
}

/// SplitMix64's finaliser: a cheap, well-avalanching 64-bit mix, used where
/// the kernel uses siphash with fixed keys (mh) and to seed twos' generator.
#[inline]
pub(crate) fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether index `i` names an available real server of `dests`. Table
/// schedulers store indices; a list shorter than the one they were built for
/// must give "unavailable", never a panic.
#[inline]
pub(crate) fn is_available(dests: &[RealServer], i: usize) -> bool {
    dests.get(i).is_some_and(RealServer::available)
}

/// The available real server with the least `cost / weight`, the comparison
/// behind wlc, sed, nq and the lblc/lblcr fallback. As in the kernel the ratio
/// is compared by cross-multiplying, never divided; u128 products so that no
/// counter or weight can overflow. Ties go to the first in list order.
#[inline]
pub(crate) fn least_weighted(dests: &[RealServer], cost: impl Fn(&RealServer) -> u64) -> Option<usize> {
    let mut best: Option<(usize, u64, u32)> = None;
    for (i, d) in dests.iter().enumerate() {
        if !d.available() {
            continue;
        }
        let c = cost(d);
        match best {
            Some((_, bc, bw)) if (bc as u128) * (d.weight as u128) <= (c as u128) * (bw as u128) => {}
            _ => best = Some((i, c, d.weight)),
        }
    }
    best.map(|b| b.0)
}

/// lblc/lblcr's idea of "overloaded" (kernel is_overloaded in ip_vs_lblc.c):
/// more active connections than its weight while some other server is below
/// half of its own. Unlike the kernel, only available servers count as the
/// spare one: a quiesced or flagged server cannot take the connection anyway.
#[inline]
pub(crate) fn locality_overloaded(d: &RealServer, dests: &[RealServer]) -> bool {
    d.active() as u64 > d.weight as u64
        && dests
            .iter()
            .any(|o| o.available() && (o.active() as u64) * 2 < o.weight as u64)
}
