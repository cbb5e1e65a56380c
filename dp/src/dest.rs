//! Real servers as the schedulers and connections see them: the forward
//! method, the weight and thresholds, and the counters shared by `Arc` between
//! every snapshot that still names the server and every connection bound to it,
//! so a change of weights or scheduler never loses them (kernel IPVS keeps a
//! removed dest in its trash list for the same reason). Its own module so that
//! `sched` and `service` both depend on it and not on each other.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

pub use rvs_proto::types::{ForwardMethod, SchedFlags, TrafficTotals};

/// Per-worker traffic counters. Each worker writes only its own slot, with a
/// plain load+store, so there is no atomic read-modify-write on the packet path.
#[derive(Default, Debug)]
pub struct TrafficCounters {
    pub conns: AtomicU64,
    pub inpkts: AtomicU64,
    pub outpkts: AtomicU64,
    pub inbytes: AtomicU64,
    pub outbytes: AtomicU64,
}

#[inline]
fn bump(c: &AtomicU64, by: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(by), Ordering::Relaxed);
}

impl TrafficCounters {
    /// Single-writer increment: only the owning worker calls these.
    #[inline]
    pub fn add_conn(&self) {
        bump(&self.conns, 1);
    }
    #[inline]
    pub fn add_in(&self, bytes: usize) {
        bump(&self.inpkts, 1);
        bump(&self.inbytes, bytes as u64);
    }
    #[inline]
    pub fn add_out(&self, bytes: usize) {
        bump(&self.outpkts, 1);
        bump(&self.outbytes, bytes as u64);
    }
    pub fn snapshot(&self) -> TrafficTotals {
        TrafficTotals {
            conns: self.conns.load(Ordering::Relaxed),
            inpkts: self.inpkts.load(Ordering::Relaxed),
            outpkts: self.outpkts.load(Ordering::Relaxed),
            inbytes: self.inbytes.load(Ordering::Relaxed),
            outbytes: self.outbytes.load(Ordering::Relaxed),
        }
    }
    pub fn reset(&self) {
        for c in [
            &self.conns,
            &self.inpkts,
            &self.outpkts,
            &self.inbytes,
            &self.outbytes,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// Per-worker traffic slots for one service or real server.
#[derive(Debug)]
pub struct WorkerTraffic {
    slots: Box<[CachePadded<TrafficCounters>]>,
}

impl WorkerTraffic {
    pub fn new(workers: usize) -> Self {
        let slots = (0..workers.max(1))
            .map(|_| CachePadded::new(TrafficCounters::default()))
            .collect();
        WorkerTraffic { slots }
    }
    /// The slot of `worker`; out-of-range workers share the last slot rather than panic.
    #[inline]
    pub fn worker(&self, worker: usize) -> &TrafficCounters {
        match self.slots.get(worker) {
            Some(s) => s,
            None => &self.slots[self.slots.len() - 1],
        }
    }
    pub fn total(&self) -> TrafficTotals {
        let mut t = TrafficTotals::default();
        for s in self.slots.iter() {
            t += s.snapshot();
        }
        t
    }
    pub fn reset(&self) {
        for s in self.slots.iter() {
            s.reset();
        }
    }
}

/// Director-wide connection counters of one real server, shared by all workers.
/// They change only when a connection is created, changes activity or ends,
/// never per packet.
#[derive(Debug)]
pub struct DestStats {
    pub active: AtomicU32,
    pub inactive: AtomicU32,
    pub persistent: AtomicU32,
    /// IPVS's IP_VS_DEST_F_OVERLOAD: set when conns reach the upper threshold,
    /// cleared when they fall below the lower one.
    pub overloaded: AtomicBool,
    /// `-x`: stop sending new connections at this many (active + inactive); 0 = none.
    pub u_threshold: AtomicU32,
    /// `-y`: accept new connections again below this many; 0 = 3/4 of the upper.
    pub l_threshold: AtomicU32,
    /// Set when the real server is deleted; connections still bound to it are
    /// ended on their next packet if the director runs with expire_nodest_conn.
    pub removed: AtomicBool,
    pub traffic: WorkerTraffic,
}

impl DestStats {
    pub fn new(workers: usize) -> Self {
        DestStats {
            active: AtomicU32::new(0),
            inactive: AtomicU32::new(0),
            persistent: AtomicU32::new(0),
            overloaded: AtomicBool::new(false),
            u_threshold: AtomicU32::new(0),
            l_threshold: AtomicU32::new(0),
            removed: AtomicBool::new(false),
            traffic: WorkerTraffic::new(workers),
        }
    }
    #[inline]
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }
    #[inline]
    pub fn inactive(&self) -> u32 {
        self.inactive.load(Ordering::Relaxed)
    }
}

/// A real server inside a service snapshot. Cheap to clone: the counters are shared.
#[derive(Clone, Debug)]
pub struct RealServer {
    pub rip: Ipv4Addr,
    pub port: u16,
    /// 0..=65535; 0 quiesces the server (no new connections, existing ones go on).
    pub weight: u32,
    pub method: ForwardMethod,
    /// Counters and thresholds (`-x`, `-y`), shared with the connections bound here.
    pub stats: Arc<DestStats>,
}

impl RealServer {
    pub fn new(rip: Ipv4Addr, port: u16, weight: u32, method: ForwardMethod, workers: usize) -> Self {
        RealServer {
            rip,
            port,
            weight,
            method,
            stats: Arc::new(DestStats::new(workers)),
        }
    }

    #[inline]
    pub fn active(&self) -> u32 {
        self.stats.active()
    }
    #[inline]
    pub fn inactive(&self) -> u32 {
        self.stats.inactive()
    }
    /// Overloaded as the kernel flags it (see `DestStats::overloaded`).
    #[inline]
    pub fn is_overloaded(&self) -> bool {
        self.stats.overloaded.load(Ordering::Relaxed)
    }
    /// Can take a new connection: weight above 0 and not overloaded.
    #[inline]
    pub fn available(&self) -> bool {
        self.weight > 0 && !self.is_overloaded()
    }
    /// IPVS's ip_vs_dest_conn_overhead: active connections cost 256 inactive ones.
    #[inline]
    pub fn overhead(&self) -> u64 {
        ((self.active() as u64) << 8) + self.inactive() as u64
    }

    pub fn u_threshold(&self) -> u32 {
        self.stats.u_threshold.load(Ordering::Relaxed)
    }
    pub fn l_threshold(&self) -> u32 {
        self.stats.l_threshold.load(Ordering::Relaxed)
    }
}

impl DestStats {
    /// Re-evaluates the overload flag after the connection count changed, with
    /// the kernel's hysteresis (ip_vs_bind_dest sets it at the upper threshold;
    /// ip_vs_unbind_dest clears it below the lower one, or below 3/4 of the
    /// upper when no lower is set).
    pub fn update_overload(&self) {
        let upper = self.u_threshold.load(Ordering::Relaxed);
        let lower = self.l_threshold.load(Ordering::Relaxed);
        let conns = self.active() as u64 + self.inactive() as u64;
        if upper != 0 && conns >= upper as u64 {
            self.overloaded.store(true, Ordering::Relaxed);
            return;
        }
        let clear = if lower != 0 {
            conns < lower as u64
        } else if upper != 0 {
            conns * 4 < upper as u64 * 3
        } else {
            true
        };
        if clear {
            self.overloaded.store(false, Ordering::Relaxed);
        }
    }

    /// A new connection was bound to this server: kernel IPVS counts it
    /// inactive until TCP reaches ESTABLISHED (UDP stays inactive).
    pub fn bind_conn(&self) {
        self.inactive.fetch_add(1, Ordering::Relaxed);
        self.update_overload();
    }

    /// A connection ended; `active` says which counter it was in.
    pub fn unbind_conn(&self, active: bool) {
        let c = if active { &self.active } else { &self.inactive };
        // Saturating: a reset counter (ipvsadm -Z does not touch these, but be safe)
        // must never wrap to 4 billion and make lc/wlc avoid the server forever.
        let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(1))
        });
        self.update_overload();
    }

    /// The connection moved between inactive and active (TCP ESTABLISHED or left it).
    pub fn set_active(&self, now_active: bool) {
        let (from, to) = if now_active {
            (&self.inactive, &self.active)
        } else {
            (&self.active, &self.inactive)
        };
        let _ = from.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(1))
        });
        to.fetch_add(1, Ordering::Relaxed);
    }

    /// A persistence template was created (`true`) or expired (`false`).
    pub fn persistent_delta(&self, up: bool) {
        if up {
            self.persistent.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self
                .persistent
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(1))
                });
        }
    }
}
