//! `SyncHub`: what the workers and the sync threads share, in `core::Shared`.
//!
//! - The master flag, read by each worker once per housekeeping round (not per
//!   packet): on, the worker puts a `SyncTap` in its `Forwarder`; off, it drops it.
//! - Per worker, two bounded lock-free rings: `out` (worker → master thread, the
//!   connections to send) and `inbound` (backup thread → worker, the connections to
//!   install). Neither side ever waits: a full ring drops and counts.
//! - Per worker, counters of what became of the events, for listings and tests.
//! - `dump`: a full resync's listing of every worker's table as events (`bulk`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_utils::CachePadded;

use super::event::SyncEvent;
use super::threshold::{SyncParams, SyncRing, SYNC_RING_SIZE};

/// A full resync's listing (`bulk::Listing`): the control thread bumps
/// `request`, each worker answers in its slot between bursts (`install::worker_tick`)
/// with every live entry of its table as the event a master would send, its
/// timeout being the seconds it has left.
#[derive(Debug)]
pub struct SyncDump {
    pub request: AtomicU64,
    pub slots: Vec<(AtomicU64, Mutex<Vec<SyncEvent>>)>,
}

impl SyncDump {
    fn new(workers: usize) -> Self {
        SyncDump {
            request: AtomicU64::new(0),
            slots: (0..workers)
                .map(|_| (AtomicU64::new(0), Mutex::new(Vec::new())))
                .collect(),
        }
    }

    /// Asks every worker for its table and gathers what they hand over
    /// within `wait` (a stopped worker's part is missing: None then).
    pub fn collect(&self, wait: std::time::Duration) -> Option<Vec<SyncEvent>> {
        let req = self.request.fetch_add(1, Ordering::AcqRel) + 1;
        let t0 = std::time::Instant::now();
        let answered = |s: &(AtomicU64, Mutex<Vec<SyncEvent>>)| s.0.load(Ordering::Acquire) >= req;
        while !self.slots.iter().all(answered) {
            if t0.elapsed() >= wait {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        let mut out = Vec::new();
        for (_, slot) in &self.slots {
            if let Ok(mut g) = slot.lock() {
                if out.is_empty() {
                    out = std::mem::take(&mut *g);
                } else {
                    out.append(&mut g);
                }
            }
        }
        Some(out)
    }
}

/// What one worker did with sync events. Written by that worker (or, for
/// `inbound_dropped`, the backup thread), read by anyone.
#[derive(Debug, Default)]
pub struct WorkerSyncStats {
    /// Events the master tap handed to the master thread.
    pub pushed: AtomicU64,
    /// Events lost to a full `out` ring (`sync_dropped`).
    pub dropped: AtomicU64,
    /// Received entries installed as new connections or templates.
    pub installed: AtomicU64,
    /// Received entries that refreshed a connection or template already there.
    pub updated: AtomicU64,
    /// Received entries for no configured virtual service (or a template for a
    /// service without persistence).
    pub unknown_service: AtomicU64,
    /// Received entries for a real server the service does not have.
    pub unknown_dest: AtomicU64,
    /// Received entries refused by a full connection table.
    pub table_full: AtomicU64,
    /// Received entries for a FULLNAT real server: sync carries no local
    /// address, so none can be installed (`sync::install`).
    pub fullnat: AtomicU64,
    /// Received entries lost to a full `inbound` ring.
    pub inbound_dropped: AtomicU64,
}

/// A plain copy of `WorkerSyncStats`, summed or per worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStatsSnapshot {
    pub pushed: u64,
    pub dropped: u64,
    pub installed: u64,
    pub updated: u64,
    pub unknown_service: u64,
    pub unknown_dest: u64,
    pub table_full: u64,
    pub fullnat: u64,
    pub inbound_dropped: u64,
}

impl WorkerSyncStats {
    pub fn snapshot(&self) -> SyncStatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SyncStatsSnapshot {
            pushed: g(&self.pushed),
            dropped: g(&self.dropped),
            installed: g(&self.installed),
            updated: g(&self.updated),
            unknown_service: g(&self.unknown_service),
            unknown_dest: g(&self.unknown_dest),
            table_full: g(&self.table_full),
            fullnat: g(&self.fullnat),
            inbound_dropped: g(&self.inbound_dropped),
        }
    }
}

impl std::ops::Add for SyncStatsSnapshot {
    type Output = SyncStatsSnapshot;
    fn add(self, o: Self) -> Self {
        SyncStatsSnapshot {
            pushed: self.pushed + o.pushed,
            dropped: self.dropped + o.dropped,
            installed: self.installed + o.installed,
            updated: self.updated + o.updated,
            unknown_service: self.unknown_service + o.unknown_service,
            unknown_dest: self.unknown_dest + o.unknown_dest,
            table_full: self.table_full + o.table_full,
            fullnat: self.fullnat + o.fullnat,
            inbound_dropped: self.inbound_dropped + o.inbound_dropped,
        }
    }
}

pub struct SyncHub {
    master: AtomicBool,
    params: Mutex<SyncParams>,
    /// Index: worker. Worker → master thread.
    pub out: Vec<Arc<SyncRing>>,
    /// Index: worker. Backup thread → worker.
    pub inbound: Vec<Arc<SyncRing>>,
    pub stats: Vec<CachePadded<WorkerSyncStats>>,
    pub dump: SyncDump,
}

impl SyncHub {
    pub fn new(workers: usize) -> Self {
        let rings = || {
            (0..workers)
                .map(|_| Arc::new(SyncRing::new(SYNC_RING_SIZE)))
                .collect()
        };
        SyncHub {
            master: AtomicBool::new(false),
            params: Mutex::new(SyncParams::default()),
            out: rings(),
            inbound: rings(),
            stats: (0..workers)
                .map(|_| CachePadded::new(WorkerSyncStats::default()))
                .collect(),
            dump: SyncDump::new(workers),
        }
    }

    /// Whether a master daemon runs: workers then feed `out`.
    #[inline]
    pub fn master_on(&self) -> bool {
        self.master.load(Ordering::Acquire)
    }

    /// Turns the workers' taps on (with `params`) or off.
    pub fn set_master(&self, on: bool, params: SyncParams) {
        if let Ok(mut p) = self.params.lock() {
            *p = params;
        }
        self.master.store(on, Ordering::Release);
    }

    pub fn params(&self) -> SyncParams {
        self.params.lock().map(|p| *p).unwrap_or_default()
    }

    /// Every worker's counters summed.
    pub fn totals(&self) -> SyncStatsSnapshot {
        self.stats
            .iter()
            .map(|s| s.snapshot())
            .fold(SyncStatsSnapshot::default(), |a, b| a + b)
    }
}

impl std::fmt::Debug for SyncHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncHub")
            .field("master", &self.master_on())
            .field("workers", &self.out.len())
            .finish()
    }
}
