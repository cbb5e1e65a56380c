//! Reads rvs-dp's counters every `stats_interval`: the `List` reply (per
//! service and real server counters, and whether each VIP is owned), each
//! worker's stats block (packets, drops by reason, redirects, latency) and
//! the exception path's block (per kernel interface), the use of each
//! FULLNAT local address (`GetLaddr`, for the services that have any), each
//! port's flow steering of FULLNAT replies (`FlowSteering`),
//! computes rates, and hands a `Snapshot` to the metrics endpoint and the
//! latency log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use rvs_proto::command::{Command, LaddrInfo, PortFlowInfo, Reply, ServiceInfo};
use rvs_proto::latency::LatencyHist;
use rvs_proto::statsarea::{KernelPortStats, WorkerStatsBlock};
use rvs_proto::types::{DropReason, ServiceKey};

use crate::adm::exchange::{ask, list_services};
use crate::config::ControlSettings;
use crate::hlog::{self, HlogWriter};
use crate::transport::ShmTransport;

/// One worker's counters at one read.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerSnap {
    pub worker: usize,
    pub rx_pkts: u64,
    pub rx_bytes: u64,
    pub tx_pkts: u64,
    pub tx_bytes: u64,
    /// Packets per second since the previous read (0 on the first).
    pub rx_pps: f64,
    pub tx_pps: f64,
    pub redirects_sent: u64,
    pub redirects_received: u64,
    pub conns_created: u64,
    pub conn_table_used: u64,
    pub conn_table_size: u64,
    /// Embryonic connections evicted for new ones (see `WorkerStatsBlock`).
    pub embryonic_evicted: u64,
    /// FULLNAT counters, as the worker's stats block has them.
    pub fnat: FnatCounters,
    pub drops: [u64; DropReason::COUNT],
}

/// One worker's FULLNAT counters (see `WorkerStatsBlock`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FnatCounters {
    /// Packets forwarded client → real server, and back.
    pub fnat_in: u64,
    pub fnat_out: u64,
    /// Replies that reached their owner straight from the NIC, or through
    /// another worker's redirect ring, or by a NIC flow rule (steered).
    pub replies_direct: u64,
    pub replies_redirected: u64,
    pub replies_steered: u64,
    pub toa_inserted: u64,
    pub toa_skipped: u64,
    pub proxy_inserted: u64,
}

impl From<&WorkerStatsBlock> for FnatCounters {
    fn from(b: &WorkerStatsBlock) -> Self {
        FnatCounters {
            fnat_in: b.fnat_in,
            fnat_out: b.fnat_out,
            replies_direct: b.fnat_replies_direct,
            replies_redirected: b.fnat_replies_redirected,
            replies_steered: b.fnat_replies_steered,
            toa_inserted: b.toa_inserted,
            toa_skipped: b.toa_skipped,
            proxy_inserted: b.proxy_inserted,
        }
    }
}

/// Everything one stats read saw.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub taken: SystemTime,
    pub services: Vec<ServiceInfo>,
    /// Workers whose block could be read (a worker caught mid-write is skipped).
    pub workers: Vec<WorkerSnap>,
    /// Each port with a kernel interface: frames up, down, dropped by reason
    /// (empty without kernel interfaces, or if the block could not be read).
    pub kernel: Vec<KernelPortStats>,
    /// Each service with local addresses, and their use (`GetLaddr`).
    pub laddrs: Vec<(ServiceKey, Vec<LaddrInfo>)>,
    /// Each port's NIC flow steering of FULLNAT replies (`FlowSteering`;
    /// empty from a data plane that does not answer it).
    pub flow: Vec<PortFlowInfo>,
    /// All workers' latency since they started.
    pub latency: LatencyHist,
    /// The same as an HdrHistogram (bucket midpoints).
    pub latency_hdr: Histogram<u64>,
    /// What the latency gained since the previous read.
    pub interval: Histogram<u64>,
}

/// Keeps what rates and deltas need between reads.
#[derive(Default)]
pub struct Collector {
    /// Per worker: (block timestamp ns, rx_pkts, tx_pkts).
    prev: Vec<Option<(u64, u64, u64)>>,
    prev_latency: Option<Box<LatencyHist>>,
}

fn rate(now: (u64, u64), before: Option<(u64, u64)>) -> f64 {
    match before {
        Some((t0, v0)) if now.0 > t0 && now.1 >= v0 => (now.1 - v0) as f64 * 1e9 / (now.0 - t0) as f64,
        _ => 0.0,
    }
}

impl Collector {
    pub fn collect(&mut self, t: &mut ShmTransport) -> Result<Snapshot, String> {
        // Paged: one reply of a big table would not fit the ring.
        let services = list_services(t).map_err(|e| e.to_string())?;
        // One request per FULLNAT service; a service removed meanwhile is skipped.
        let mut laddrs = Vec::new();
        for s in services.iter().filter(|s| !s.laddrs.is_empty()) {
            let key = s.spec.key();
            if let Ok(Reply::Laddrs(l)) = ask(t, &Command::GetLaddr(key)) {
                laddrs.push((key, l));
            }
        }
        let flow = match ask(t, &Command::FlowSteering) {
            Ok(Reply::FlowSteering(f)) => f,
            _ => Vec::new(),
        };
        let reader = t.stats().map_err(|e| e.to_string())?;
        let n = reader.workers();
        self.prev.resize(n, None);
        let mut block = WorkerStatsBlock::new_boxed();
        let mut latency = LatencyHist::default();
        let mut workers = Vec::with_capacity(n);
        for w in 0..n {
            if !reader.read_into(w, &mut block) {
                continue;
            }
            let prev = self.prev[w];
            workers.push(WorkerSnap {
                worker: w,
                rx_pkts: block.rx_pkts,
                rx_bytes: block.rx_bytes,
                tx_pkts: block.tx_pkts,
                tx_bytes: block.tx_bytes,
                rx_pps: rate((block.timestamp_ns, block.rx_pkts), prev.map(|p| (p.0, p.1))),
                tx_pps: rate((block.timestamp_ns, block.tx_pkts), prev.map(|p| (p.0, p.2))),
                redirects_sent: block.redirects_sent,
                redirects_received: block.redirects_received,
                conns_created: block.conns_created,
                conn_table_used: block.conn_table_used,
                conn_table_size: block.conn_table_size,
                embryonic_evicted: block.embryonic_evicted,
                fnat: FnatCounters::from(&*block),
                drops: block.drops,
            });
            // Only move the baseline when the worker published anew, so a
            // read between two publishes does not show a rate of zero.
            if prev.is_none_or(|p| p.0 != block.timestamp_ns) {
                self.prev[w] = Some((block.timestamp_ns, block.rx_pkts, block.tx_pkts));
            }
            latency.merge(&block.latency);
        }
        let kernel = reader
            .read_kernel()
            .map(|b| b.ports().to_vec())
            .unwrap_or_default();
        let gained = match &self.prev_latency {
            Some(p) => hlog::delta(&latency, p),
            None => latency,
        };
        self.prev_latency = Some(Box::new(latency));
        let mut latency_hdr = hlog::new_histogram();
        hlog::record_into(&latency, &mut latency_hdr);
        let mut interval = hlog::new_histogram();
        hlog::record_into(&gained, &mut interval);
        Ok(Snapshot {
            taken: SystemTime::now(),
            services,
            workers,
            kernel,
            laddrs,
            flow,
            latency,
            latency_hdr,
            interval,
        })
    }
}

/// The thread that reads stats every `stats_interval` (re-read from the
/// shared settings each time, so a reload takes effect at the next tick).
pub struct StatsThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StatsThread {
    pub fn start(
        mut transport: ShmTransport,
        settings: Arc<Mutex<ControlSettings>>,
        mut publish: impl FnMut(Snapshot) + Send + 'static,
    ) -> std::io::Result<StatsThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("stats".into()).spawn(move || {
            let mut collector = Collector::default();
            let mut log: Option<HlogWriter> = None;
            let mut log_failed: Option<std::path::PathBuf> = None;
            let mut last_error: Option<String> = None;
            let mut since = SystemTime::now();
            while !flag.load(Ordering::Relaxed) {
                let s = settings.lock().map(|s| s.clone()).unwrap_or_default();
                let end = Instant::now() + s.stats_interval;
                while !flag.load(Ordering::Relaxed) && Instant::now() < end {
                    std::thread::sleep(
                        end.saturating_duration_since(Instant::now())
                            .min(Duration::from_millis(20)),
                    );
                }
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                match collector.collect(&mut transport) {
                    Ok(snap) => {
                        last_error = None;
                        if log.as_ref().map(|l| l.path()) != s.histogram_log.as_deref() {
                            log = None;
                            if let Some(p) = &s.histogram_log {
                                match HlogWriter::open(p) {
                                    Ok(w) => log = Some(w),
                                    Err(e) if log_failed.as_ref() != Some(p) => {
                                        tracing::error!("histogram_log {}: {e}", p.display());
                                        log_failed = Some(p.clone());
                                    }
                                    Err(_) => {}
                                }
                            }
                        }
                        if let Some(w) = log.as_mut() {
                            let dur = snap.taken.duration_since(since).unwrap_or_default();
                            if let Err(e) = w.append(&snap.interval, since, dur) {
                                tracing::error!("histogram_log {}: {e}", w.path().display());
                                log = None;
                            }
                        }
                        since = snap.taken;
                        publish(snap);
                    }
                    Err(e) => {
                        if last_error.as_ref() != Some(&e) {
                            tracing::debug!("stats not read: {e}");
                            last_error = Some(e);
                        }
                    }
                }
            }
        })?;
        Ok(StatsThread {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for StatsThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
