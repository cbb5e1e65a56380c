//! `/metrics`: OpenMetrics text built with prometheus-client from the latest
//! stats `Snapshot` and the real servers' health, served over HTTP/1.1 by
//! hyper (GET /metrics answers 200, anything else 404).
//!
//! Any local user can connect to the endpoint, so no client may hold up
//! another: each connection is its own task on a small single-thread tokio
//! runtime (the "metrics" thread), the whole request head must arrive within
//! `HEADER_READ_TIMEOUT` of accepting the connection (a client dribbling a
//! byte at a time, or sending nothing, is cut off then), and a connection
//! lives at most `CONNECTION_TIMEOUT` (a client that never reads its reply).
//! One request per connection, as before (`Connection: close`).
//!
//! Series (prefix `rvs_`):
//!
//! | name | type | labels |
//! |---|---|---|
//! | `service_connections`, `service_in_packets`, `service_out_packets`, `service_in_bytes`, `service_out_bytes` | counter | proto, vip, port |
//! | `real_server_connections`, `real_server_in_packets`, `real_server_out_packets`, `real_server_in_bytes`, `real_server_out_bytes` | counter | proto, vip, port, rip, rport |
//! | `real_server_active_connections`, `real_server_inactive_connections`, `real_server_weight` | gauge | proto, vip, port, rip, rport |
//! | `real_server_up` | gauge | proto, vip, port, rip, rport (every configured real server, 1 healthy / 0 not) |
//! | `drops` | counter | reason (`DropReason::name`), summed over workers |
//! | `worker_rx_packets`, `worker_tx_packets`, `worker_redirects_sent`, `worker_redirects_received` | counter | worker |
//! | `worker_rx_pps`, `worker_tx_pps`, `worker_conn_table_used` | gauge | worker |
//! | `worker_embryonic_evicted` | counter | worker |
//! | `fnat_packets` | counter | worker, direction (`in`: client → real server, `out`: back) |
//! | `fnat_replies` | counter | worker, path (`direct`: the reply reached its owner from the NIC by chance, `redirected`: through another worker's redirect ring, `steered`: put on its owner's queue by a NIC flow rule) |
//! | `flow_rules` | gauge | port, name, mode (`classes`, `exact`, `none`): NIC flow rules steering FULLNAT replies, per port that has local addresses |
//! | `fnat_toa` | counter | worker, result (`inserted`, `skipped`: no room in the segment) |
//! | `fnat_proxy_headers` | counter | worker (PROXY headers put in a segment, resends included) |
//! | `packet_latency_seconds` | histogram | (none): buckets at every power of two from 16 ns to 2^32 ns |
//! | `packet_latency_quantile_seconds` | gauge | quantile (0.5, 0.9, 0.99, 0.999, 1) |
//! | `kernel_packets` | counter | port, iface, direction (`up`: to the kernel interface, `down`: from it to the wire) |
//! | `kernel_dropped` | counter | port, iface, reason (`up_ratelimited`, `up_txfull`, `down_bad`, `down_txfull`) |
//! | `vip_owned` | gauge | vip (each VIP of a configured service, 1 owned / 0 not) |
//! | `laddr_connections` | gauge | proto, vip, port, laddr (FULLNAT: connections holding a port of the local address) |
//! | `laddr_exhausted` | counter | proto, vip, port, laddr (FULLNAT: new connections refused, no free port on it) |
//!
//! `drops{reason="laddr_exhausted"}` is the same refusal summed over the
//! workers, as every drop reason.
//!
//! Counters get the `_total` suffix in the text, as OpenMetrics wants.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::oneshot;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use rvs_proto::latency::{bucket_bounds, LatencyHist, LATENCY_BUCKETS};
use rvs_proto::types::DropReason;
use rvs_proto::types::TrafficTotals;

use crate::config::RealId;
use crate::resync::ResyncStats;
use crate::stats::Snapshot;
use rvs_proto::command::SyncCountersInfo;

/// The health of one configured real server, as the daemon last decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealStatus {
    pub id: RealId,
    pub up: bool,
}

/// What the HTTP thread renders; written by the daemon and the stats thread.
#[derive(Default)]
pub struct MetricsState {
    snapshot: Mutex<Option<Arc<Snapshot>>>,
    health: Mutex<Vec<RealStatus>>,
    sync: Mutex<Option<SyncCountersInfo>>,
    resync: Mutex<Option<Arc<ResyncStats>>>,
}

impl MetricsState {
    pub fn set_snapshot(&self, s: Snapshot) {
        if let Ok(mut g) = self.snapshot.lock() {
            *g = Some(Arc::new(s));
        }
    }

    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.lock().ok().and_then(|g| g.clone())
    }

    pub fn set_health(&self, h: Vec<RealStatus>) {
        if let Ok(mut g) = self.health.lock() {
            *g = h;
        }
    }

    /// rvs-dp's connection sync counters (`Command::SyncCounters`).
    pub fn set_sync(&self, c: SyncCountersInfo) {
        if let Ok(mut g) = self.sync.lock() {
            *g = Some(c);
        }
    }

    /// The full resync counters, for a director that serves or fetches.
    pub fn set_resync(&self, s: Arc<ResyncStats>) {
        if let Ok(mut g) = self.resync.lock() {
            *g = Some(s);
        }
    }

    pub fn render(&self) -> String {
        let health = self.health.lock().map(|g| g.clone()).unwrap_or_default();
        let mut out = render(self.snapshot().as_deref(), &health);
        if let Some(c) = self.sync.lock().ok().and_then(|g| g.clone()) {
            let at = out.rfind("# EOF").unwrap_or(out.len());
            out.insert_str(at, &render_sync(&c));
        }
        if let Some(r) = self.resync.lock().ok().and_then(|g| g.clone()) {
            let at = out.rfind("# EOF").unwrap_or(out.len());
            out.insert_str(at, &render_resync(&r));
        }
        out
    }
}

/// One counter family in the text format: `# HELP`, `# TYPE`, then
/// `NAME_total{LABEL="value"} n` per value, or `NAME_total n` without a label.
fn counter_family<'a>(
    o: &mut String,
    name: &str,
    help: &str,
    label: Option<&str>,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) {
    use std::fmt::Write;
    let _ = write!(o, "# HELP {name} {help}.\n# TYPE {name} counter\n");
    for (v, n) in values {
        let _ = match label {
            Some(l) => writeln!(o, "{name}_total{{{l}=\"{v}\"}} {n}"),
            None => writeln!(o, "{name}_total {n}"),
        };
    }
}

/// The full resync counters in the text format, without `# EOF`:
/// `rvs_resync_listings_total{result}` (served to peers),
/// `rvs_resync_fetches_total{result}` and `rvs_resync_fetched_entries_total`
/// (fetched from the peer).
pub fn render_resync(r: &ResyncStats) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let mut o = String::new();
    counter_family(
        &mut o,
        "rvs_resync_listings",
        "Full resync listings asked of this director, by result",
        Some("result"),
        [
            ("served", &r.served),
            ("refused", &r.refused),
            ("failed", &r.failed),
        ]
        .map(|(k, c)| (k, c.load(Relaxed))),
    );
    counter_family(
        &mut o,
        "rvs_resync_fetches",
        "Full resyncs this director fetched from its peer, by result (gave_up: the last retry failed too)",
        Some("result"),
        [
            ("ok", &r.fetched),
            ("no_peer", &r.fetch_no_peer),
            ("failed", &r.fetch_failed),
            ("gave_up", &r.fetch_gave_up),
        ]
        .map(|(k, c)| (k, c.load(Relaxed))),
    );
    counter_family(
        &mut o,
        "rvs_resync_fetched_entries",
        "Connections installed from the peer's full resyncs",
        None,
        [("", r.fetched_entries.load(Relaxed))],
    );
    o
}

/// The sync counters in the text format, without `# EOF`: `rvs_sync_sent`,
/// `rvs_sync_dropped`, `rvs_sync_installed`, `rvs_sync_updated`,
/// `rvs_sync_refused{reason=...}`, `rvs_sync_messages{daemon,what}`.
pub fn render_sync(c: &SyncCountersInfo) -> String {
    let mut o = String::new();
    for (name, help, n) in [
        ("sent", "Entries the workers handed to the sync master", c.sent),
        ("dropped", "Entries lost to a full worker sync ring", c.dropped),
        ("installed", "Received entries installed new", c.installed),
        ("updated", "Received entries that updated an entry", c.updated),
    ] {
        counter_family(&mut o, &format!("rvs_sync_{name}"), help, None, [("", n)]);
    }
    counter_family(
        &mut o,
        "rvs_sync_refused",
        "Received sync entries or datagrams refused, by reason",
        Some("reason"),
        c.refused.iter().map(|(r, n)| (r.as_str(), *n)),
    );
    counter_family(
        &mut o,
        "rvs_sync_messages",
        "Sync datagrams of the running daemons",
        Some("what"),
        [
            ("sent", c.messages_sent),
            ("send_errors", c.send_errors),
            ("received", c.messages_received),
            ("accepted", c.messages_accepted),
        ],
    );
    o
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SvcLabels {
    proto: String,
    vip: String,
    port: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RealLabels {
    proto: String,
    vip: String,
    port: String,
    rip: String,
    rport: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerPathLabels {
    worker: String,
    path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerDirectionLabels {
    worker: String,
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerResultLabels {
    worker: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KernelLabels {
    port: String,
    iface: String,
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KernelDropLabels {
    port: String,
    iface: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LaddrLabels {
    proto: String,
    vip: String,
    port: String,
    laddr: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlowLabels {
    port: String,
    name: String,
    mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VipLabels {
    vip: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuantileLabels {
    quantile: String,
}

/// A histogram whose buckets are already counted (prometheus-client's own
/// Histogram only takes one observation at a time).
#[derive(Debug)]
struct FixedHistogram {
    sum: f64,
    count: u64,
    /// (upper bound, count in this bucket only); the last bound is +Inf.
    buckets: Vec<(f64, u64)>,
}

impl EncodeMetric for FixedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<()>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The latency buckets folded at powers of two (16 ns .. 2^32 ns), which are
/// bucket edges of the log-linear histogram, so the counts are exact.
fn latency_histogram(h: &LatencyHist) -> FixedHistogram {
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    let mut acc = 0u64;
    for i in 0..LATENCY_BUCKETS {
        let Some((_, hi)) = bucket_bounds(i) else { break };
        acc = acc.saturating_add(h.counts[i]);
        if hi.is_power_of_two() && hi >= 16 {
            buckets.push((hi as f64 * 1e-9, acc));
            acc = 0;
        }
    }
    buckets.push((f64::MAX, acc));
    FixedHistogram {
        sum: h.sum_ns as f64 * 1e-9,
        count: buckets.iter().map(|b| b.1).sum(),
        buckets,
    }
}

type Counters<L> = Family<L, Counter<u64>>;
type Gauges<L> = Family<L, Gauge<i64>>;
type FGauges<L> = Family<L, Gauge<f64, AtomicU64>>;

fn counter<L: Clone + std::hash::Hash + Eq>(f: &Counters<L>, l: &L, v: u64) {
    f.get_or_create(l).inc_by(v);
}

/// The whole exposition for one scrape.
pub fn render(snap: Option<&Snapshot>, health: &[RealStatus]) -> String {
    let mut reg = Registry::with_prefix("rvs");
    let traffic = |what: &str| -> [(String, String); 5] {
        [
            (
                format!("{what}_connections"),
                format!("Connections scheduled to the {what}"),
            ),
            (
                format!("{what}_in_packets"),
                format!("Packets from clients to the {what}"),
            ),
            (
                format!("{what}_out_packets"),
                format!("Packets from the {what} to clients"),
            ),
            (
                format!("{what}_in_bytes"),
                format!("Bytes from clients to the {what}"),
            ),
            (
                format!("{what}_out_bytes"),
                format!("Bytes from the {what} to clients"),
            ),
        ]
    };
    let values = |t: &TrafficTotals| [t.conns, t.inpkts, t.outpkts, t.inbytes, t.outbytes];

    let svc: [Counters<SvcLabels>; 5] = Default::default();
    let real: [Counters<RealLabels>; 5] = Default::default();
    for (f, (name, help)) in svc.iter().zip(traffic("service")) {
        reg.register(name, help, f.clone());
    }
    for (f, (name, help)) in real.iter().zip(traffic("real_server")) {
        reg.register(name, help, f.clone());
    }
    let active = Gauges::<RealLabels>::default();
    let inactive = Gauges::<RealLabels>::default();
    let weight = Gauges::<RealLabels>::default();
    let up = Gauges::<RealLabels>::default();
    reg.register(
        "real_server_active_connections",
        "Active (established) connections",
        active.clone(),
    );
    reg.register(
        "real_server_inactive_connections",
        "Inactive connections",
        inactive.clone(),
    );
    reg.register("real_server_weight", "Weight in rvs-dp's table", weight.clone());
    reg.register("real_server_up", "Health check verdict: 1 up, 0 down", up.clone());
    let drops = Counters::<ReasonLabels>::default();
    reg.register("drops", "Packets dropped, by reason, all workers", drops.clone());
    let rx = Counters::<WorkerLabels>::default();
    let tx = Counters::<WorkerLabels>::default();
    let redir_sent = Counters::<WorkerLabels>::default();
    let redir_recv = Counters::<WorkerLabels>::default();
    let rx_pps = FGauges::<WorkerLabels>::default();
    let tx_pps = FGauges::<WorkerLabels>::default();
    let conns_used = Gauges::<WorkerLabels>::default();
    let evicted = Counters::<WorkerLabels>::default();
    reg.register("worker_rx_packets", "Packets received by the worker", rx.clone());
    reg.register("worker_tx_packets", "Packets sent by the worker", tx.clone());
    reg.register(
        "worker_redirects_sent",
        "Packets handed to the worker owning their connection",
        redir_sent.clone(),
    );
    reg.register(
        "worker_redirects_received",
        "Packets other workers handed to this one",
        redir_recv.clone(),
    );
    reg.register(
        "worker_rx_pps",
        "Received packets per second over the last stats interval",
        rx_pps.clone(),
    );
    reg.register(
        "worker_tx_pps",
        "Sent packets per second over the last stats interval",
        tx_pps.clone(),
    );
    reg.register(
        "worker_conn_table_used",
        "Entries in use in the worker's connection table",
        conns_used.clone(),
    );
    reg.register(
        "worker_embryonic_evicted",
        "Embryonic TCP connections (never established) evicted to make room for new ones",
        evicted.clone(),
    );
    let fnat_pkts = Counters::<WorkerDirectionLabels>::default();
    let fnat_replies = Counters::<WorkerPathLabels>::default();
    let fnat_toa = Counters::<WorkerResultLabels>::default();
    let fnat_proxy = Counters::<WorkerLabels>::default();
    reg.register(
        "fnat_packets",
        "FULLNAT packets forwarded, client to real server (in) and back (out)",
        fnat_pkts.clone(),
    );
    reg.register(
        "fnat_replies",
        "FULLNAT replies handled by the worker owning their connection, by the way they came: from the NIC (direct) or another worker's redirect ring (redirected)",
        fnat_replies.clone(),
    );
    reg.register(
        "fnat_toa",
        "FULLNAT TOA options inserted, or skipped for want of room in the segment",
        fnat_toa.clone(),
    );
    reg.register(
        "fnat_proxy_headers",
        "FULLNAT PROXY protocol headers put in a segment, resends included",
        fnat_proxy.clone(),
    );
    let kernel_pkts = Counters::<KernelLabels>::default();
    let kernel_drops = Counters::<KernelDropLabels>::default();
    let vip_owned = Gauges::<VipLabels>::default();
    reg.register(
        "kernel_packets",
        "Frames through a port's kernel interface: up to the kernel, down from it to the wire",
        kernel_pkts.clone(),
    );
    reg.register(
        "kernel_dropped",
        "Frames the exception path dropped, by port and reason",
        kernel_drops.clone(),
    );
    reg.register(
        "vip_owned",
        "Whether this director owns the VIP now (answers ARP for it, forwards it): 1 owned, 0 not",
        vip_owned.clone(),
    );
    let laddr_conns = Gauges::<LaddrLabels>::default();
    let laddr_exhausted = Counters::<LaddrLabels>::default();
    reg.register(
        "laddr_connections",
        "FULLNAT: connections holding a port of the local address, all workers",
        laddr_conns.clone(),
    );
    reg.register(
        "laddr_exhausted",
        "FULLNAT: new connections refused because no port of the local address was free",
        laddr_exhausted.clone(),
    );
    let flow_rules = Gauges::<FlowLabels>::default();
    reg.register(
        "flow_rules",
        "NIC flow rules steering FULLNAT replies to their worker, per port (mode classes, exact or none)",
        flow_rules.clone(),
    );
    let quantiles = FGauges::<QuantileLabels>::default();
    reg.register(
        "packet_latency_quantile_seconds",
        "Per-packet processing time quantiles since rvs-dp started",
        quantiles.clone(),
    );

    for r in health {
        let (k, rip, rport) = r.id;
        let l = RealLabels {
            proto: k.proto.to_string(),
            vip: k.vip.to_string(),
            port: k.port.to_string(),
            rip: rip.to_string(),
            rport: rport.to_string(),
        };
        up.get_or_create(&l).set(r.up as i64);
    }

    if let Some(s) = snap {
        for si in &s.services {
            let k = si.spec.key();
            let l = SvcLabels {
                proto: k.proto.to_string(),
                vip: k.vip.to_string(),
                port: k.port.to_string(),
            };
            for (f, v) in svc.iter().zip(values(&si.stats)) {
                counter(f, &l, v);
            }
            for d in &si.dests {
                let l = RealLabels {
                    proto: l.proto.clone(),
                    vip: l.vip.clone(),
                    port: l.port.clone(),
                    rip: d.spec.rip.to_string(),
                    rport: d.spec.port.to_string(),
                };
                for (f, v) in real.iter().zip(values(&d.stats)) {
                    counter(f, &l, v);
                }
                active.get_or_create(&l).set(d.active as i64);
                inactive.get_or_create(&l).set(d.inactive as i64);
                weight.get_or_create(&l).set(d.spec.weight as i64);
            }
        }
        for r in DropReason::ALL {
            let total: u64 = s
                .workers
                .iter()
                .map(|w| w.drops[r as usize])
                .fold(0, u64::wrapping_add);
            counter(
                &drops,
                &ReasonLabels {
                    reason: r.name().into(),
                },
                total,
            );
        }
        for w in &s.workers {
            let l = WorkerLabels {
                worker: w.worker.to_string(),
            };
            counter(&rx, &l, w.rx_pkts);
            counter(&tx, &l, w.tx_pkts);
            counter(&redir_sent, &l, w.redirects_sent);
            counter(&redir_recv, &l, w.redirects_received);
            rx_pps.get_or_create(&l).set(w.rx_pps);
            tx_pps.get_or_create(&l).set(w.tx_pps);
            conns_used.get_or_create(&l).set(w.conn_table_used as i64);
            counter(&evicted, &l, w.embryonic_evicted);
            let f = &w.fnat;
            for (direction, v) in [("in", f.fnat_in), ("out", f.fnat_out)] {
                let dl = WorkerDirectionLabels {
                    worker: l.worker.clone(),
                    direction: direction.into(),
                };
                counter(&fnat_pkts, &dl, v);
            }
            let paths = [
                ("direct", f.replies_direct),
                ("redirected", f.replies_redirected),
                ("steered", f.replies_steered),
            ];
            for (path, v) in paths {
                let pl = WorkerPathLabels {
                    worker: l.worker.clone(),
                    path: path.into(),
                };
                counter(&fnat_replies, &pl, v);
            }
            for (result, v) in [("inserted", f.toa_inserted), ("skipped", f.toa_skipped)] {
                let rl = WorkerResultLabels {
                    worker: l.worker.clone(),
                    result: result.into(),
                };
                counter(&fnat_toa, &rl, v);
            }
            counter(&fnat_proxy, &l, f.proxy_inserted);
        }
        for k in &s.kernel {
            let (port, iface) = (k.port.to_string(), k.iface());
            for (direction, v) in [("up", k.counters.up), ("down", k.counters.down)] {
                let l = KernelLabels {
                    port: port.clone(),
                    iface: iface.clone(),
                    direction: direction.into(),
                };
                counter(&kernel_pkts, &l, v);
            }
            for (reason, v) in k.counters.drops() {
                let l = KernelDropLabels {
                    port: port.clone(),
                    iface: iface.clone(),
                    reason: reason.into(),
                };
                counter(&kernel_drops, &l, v);
            }
        }
        // Each VIP once, however many services it has; a data plane that
        // does not say leaves it out.
        for si in &s.services {
            if let Some(owned) = si.owned {
                let l = VipLabels {
                    vip: si.spec.vip.to_string(),
                };
                vip_owned.get_or_create(&l).set(owned as i64);
            }
        }
        for (k, ls) in &s.laddrs {
            for li in ls {
                let l = LaddrLabels {
                    proto: k.proto.to_string(),
                    vip: k.vip.to_string(),
                    port: k.port.to_string(),
                    laddr: li.spec.addr.to_string(),
                };
                laddr_conns.get_or_create(&l).set(li.conns as i64);
                counter(&laddr_exhausted, &l, li.exhausted);
            }
        }
        for f in &s.flow {
            let l = FlowLabels {
                port: f.port.to_string(),
                name: f.name.clone(),
                mode: f.mode.clone(),
            };
            flow_rules.get_or_create(&l).set(i64::from(f.rules));
        }
        if !s.latency_hdr.is_empty() {
            for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
                let v = s.latency_hdr.value_at_quantile(q) as f64 * 1e-9;
                quantiles
                    .get_or_create(&QuantileLabels {
                        quantile: q.to_string(),
                    })
                    .set(v);
            }
        }
        reg.register(
            "packet_latency_seconds",
            "Per-packet processing time in rvs-dp since it started",
            latency_histogram(&s.latency),
        );
    }

    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &reg).is_err() {
        out = "# EOF\n".into();
    }
    out
}

/// The `/metrics` HTTP server: a thread running a single-thread tokio runtime
/// that serves every connection concurrently.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Time from accepting a connection to having its whole request head. A
/// scraper sends it in one packet; Prometheus' own scrape timeout is 10 s.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest life of one connection, reply included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

fn respond(req: &Request<Incoming>, state: &MetricsState) -> Response<Full<Bytes>> {
    let (status, ctype, body) = if req.method() == Method::GET && req.uri().path() == "/metrics" {
        (StatusCode::OK, CONTENT_TYPE, state.render())
    } else {
        (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try GET /metrics\n".to_string(),
        )
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    state: Arc<MetricsState>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(false);
    loop {
        let stream = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors and the like: let it pass rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let conn = http.serve_connection(
            TokioIo::new(stream),
            service_fn(move |req| {
                let resp = respond(&req, &state);
                async move { Ok::<_, Infallible>(resp) }
            }),
        );
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
        });
    }
}

impl MetricsServer {
    pub fn start(addr: SocketAddr, state: Arc<MetricsState>) -> std::io::Result<MetricsServer> {
        let listener = std::net::TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _in_runtime = rt.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || rt.block_on(accept_loop(listener, state, stopped)))?;
        Ok(MetricsServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    /// Stops accepting; dropping the runtime (on its thread) closes every
    /// connection still open.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_proto::statsarea::KernelPortStats;

    #[test]
    fn latency_histogram_folds_exactly_at_powers_of_two() {
        let mut h = LatencyHist::default();
        for v in [5u64, 20, 31, 32, 1000, 1 << 40] {
            h.record(v);
        }
        let f = latency_histogram(&h);
        assert_eq!(f.count, 6);
        let le = |ns: f64| {
            f.buckets
                .iter()
                .find(|b| (b.0 - ns * 1e-9).abs() < 1e-15)
                .map(|b| b.1)
        };
        assert_eq!(le(16.0), Some(1), "5 ns");
        assert_eq!(le(32.0), Some(2), "20 and 31 ns");
        assert_eq!(le(64.0), Some(1), "32 ns");
        assert_eq!(le(1024.0), Some(1));
        assert_eq!(
            f.buckets.last().map(|b| b.1),
            Some(0),
            "clamped into the last bucket, below 2^32"
        );
        assert_eq!(le(4294967296.0), Some(1));
    }

    fn snapshot(services: Vec<rvs_proto::command::ServiceInfo>, kernel: Vec<KernelPortStats>) -> Snapshot {
        Snapshot {
            taken: std::time::SystemTime::now(),
            services,
            workers: Vec::new(),
            kernel,
            laddrs: Vec::new(),
            flow: Vec::new(),
            latency: LatencyHist::default(),
            latency_hdr: crate::hlog::new_histogram(),
            interval: crate::hlog::new_histogram(),
        }
    }

    fn service(vip: &str, port: u16, owned: Option<bool>) -> rvs_proto::command::ServiceInfo {
        use rvs_proto::command::ServiceSpec;
        rvs_proto::command::ServiceInfo {
            spec: ServiceSpec::new(rvs_proto::types::Proto::Tcp, vip.parse().unwrap(), port),
            stats: TrafficTotals::default(),
            rates: Default::default(),
            dests: Vec::new(),
            owned,
            laddrs: Vec::new(),
        }
    }

    /// The lines of `text` that are samples of `family` (not HELP/TYPE).
    fn samples<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.split(['{', ' ']).next() == Some(family))
            .collect()
    }

    #[test]
    fn kernel_interfaces_and_vip_ownership_are_rendered() {
        use rvs_proto::statsarea::ExceptionCounters;
        let c = ExceptionCounters {
            up: 120,
            down: 80,
            up_ratelimited: 7,
            up_txfull: 1,
            down_bad: 2,
            down_txfull: 3,
        };
        let kernel = vec![
            KernelPortStats::new(0, "outside0", c),
            KernelPortStats::new(2, "inside0", ExceptionCounters::default()),
        ];
        let services = vec![
            service("10.1.0.100", 80, Some(true)),
            service("10.1.0.100", 443, Some(true)),
            service("10.1.0.101", 80, Some(false)),
            service("10.1.0.102", 80, None),
        ];
        let text = render(Some(&snapshot(services, kernel)), &[]);
        assert!(text.contains("# TYPE rvs_kernel_packets counter\n"), "{text}");
        assert!(text.contains("# TYPE rvs_kernel_dropped counter\n"), "{text}");
        assert!(text.contains("# TYPE rvs_vip_owned gauge\n"), "{text}");
        let mut pkts = samples(&text, "rvs_kernel_packets_total");
        pkts.sort();
        assert_eq!(
            pkts,
            [
                r#"rvs_kernel_packets_total{port="0",iface="outside0",direction="down"} 80"#,
                r#"rvs_kernel_packets_total{port="0",iface="outside0",direction="up"} 120"#,
                r#"rvs_kernel_packets_total{port="2",iface="inside0",direction="down"} 0"#,
                r#"rvs_kernel_packets_total{port="2",iface="inside0",direction="up"} 0"#,
            ]
        );
        let drops = samples(&text, "rvs_kernel_dropped_total");
        assert_eq!(drops.len(), 8, "every reason of every port, zeros too");
        for (reason, n) in [
            ("up_ratelimited", 7),
            ("up_txfull", 1),
            ("down_bad", 2),
            ("down_txfull", 3),
        ] {
            let want =
                format!(r#"rvs_kernel_dropped_total{{port="0",iface="outside0",reason="{reason}"}} {n}"#);
            assert!(drops.contains(&want.as_str()), "{want} in {drops:?}");
        }
        let mut owned = samples(&text, "rvs_vip_owned");
        owned.sort();
        assert_eq!(
            owned,
            [
                r#"rvs_vip_owned{vip="10.1.0.100"} 1"#,
                r#"rvs_vip_owned{vip="10.1.0.101"} 0"#
            ],
            "each VIP once; one the data plane says nothing of is left out"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn no_kernel_interface_no_kernel_samples() {
        let text = render(
            Some(&snapshot(vec![service("10.1.0.100", 80, Some(true))], vec![])),
            &[],
        );
        assert!(samples(&text, "rvs_kernel_packets_total").is_empty());
        assert!(samples(&text, "rvs_kernel_dropped_total").is_empty());
        assert_eq!(
            samples(&text, "rvs_vip_owned"),
            [r#"rvs_vip_owned{vip="10.1.0.100"} 1"#]
        );
    }

    /// FULLNAT: each local address's connections and refusals, and the
    /// refusals summed over the workers among the drop reasons.
    #[test]
    fn local_addresses_are_rendered() {
        use crate::stats::{FnatCounters, WorkerSnap};
        use rvs_proto::command::{LaddrInfo, LaddrSpec};
        let mut snap = snapshot(vec![service("10.1.0.100", 80, Some(true))], vec![]);
        let key = snap.services[0].spec.key();
        let info = |a: &str, conns, exhausted| LaddrInfo {
            spec: LaddrSpec {
                addr: a.parse().unwrap(),
                port_name: "inside".into(),
            },
            conns,
            exhausted,
        };
        snap.laddrs = vec![(key, vec![info("10.2.0.201", 1200, 7), info("10.2.0.202", 34, 0)])];
        let worker = |w: usize, n: u64| {
            let mut drops = [0; DropReason::COUNT];
            drops[DropReason::LaddrExhausted as usize] = n;
            WorkerSnap {
                worker: w,
                rx_pkts: 0,
                rx_bytes: 0,
                tx_pkts: 0,
                tx_bytes: 0,
                rx_pps: 0.0,
                tx_pps: 0.0,
                redirects_sent: 0,
                redirects_received: 0,
                conns_created: 0,
                conn_table_used: 0,
                conn_table_size: 0,
                embryonic_evicted: 0,
                fnat: FnatCounters {
                    fnat_in: 10 * n,
                    fnat_out: 9 * n,
                    replies_direct: 5 * n,
                    replies_redirected: 4 * n,
                    replies_steered: 6 * n,
                    toa_inserted: n,
                    toa_skipped: 1,
                    proxy_inserted: 2,
                },
                drops,
            }
        };
        snap.workers = vec![worker(0, 3), worker(1, 4)];
        let flow = |port: u16, name: &str, mode: &str, rules: u32| rvs_proto::command::PortFlowInfo {
            port,
            name: name.into(),
            mode: mode.into(),
            rules,
            reason: String::new(),
        };
        snap.flow = vec![flow(0, "lan", "exact", 2000), flow(1, "wan", "none", 0)];
        let text = render(Some(&snap), &[]);
        assert!(text.contains("# TYPE rvs_flow_rules gauge\n"), "{text}");
        let mut rules = samples(&text, "rvs_flow_rules");
        rules.sort();
        assert_eq!(
            rules,
            [
                r#"rvs_flow_rules{port="0",name="lan",mode="exact"} 2000"#,
                r#"rvs_flow_rules{port="1",name="wan",mode="none"} 0"#,
            ]
        );
        assert!(text.contains("# TYPE rvs_laddr_connections gauge\n"), "{text}");
        assert!(text.contains("# TYPE rvs_laddr_exhausted counter\n"), "{text}");
        let mut conns = samples(&text, "rvs_laddr_connections");
        conns.sort();
        assert_eq!(
            conns,
            [
                r#"rvs_laddr_connections{proto="TCP",vip="10.1.0.100",port="80",laddr="10.2.0.201"} 1200"#,
                r#"rvs_laddr_connections{proto="TCP",vip="10.1.0.100",port="80",laddr="10.2.0.202"} 34"#,
            ]
        );
        assert!(samples(&text, "rvs_laddr_exhausted_total").contains(
            &r#"rvs_laddr_exhausted_total{proto="TCP",vip="10.1.0.100",port="80",laddr="10.2.0.201"} 7"#
        ));
        assert!(samples(&text, "rvs_drops_total").contains(&r#"rvs_drops_total{reason="laddr_exhausted"} 7"#));
        // The workers' FULLNAT counters, one series per worker and path.
        assert!(text.contains("# TYPE rvs_fnat_replies counter\n"), "{text}");
        let mut replies = samples(&text, "rvs_fnat_replies_total");
        replies.sort();
        assert_eq!(
            replies,
            [
                r#"rvs_fnat_replies_total{worker="0",path="direct"} 15"#,
                r#"rvs_fnat_replies_total{worker="0",path="redirected"} 12"#,
                r#"rvs_fnat_replies_total{worker="0",path="steered"} 18"#,
                r#"rvs_fnat_replies_total{worker="1",path="direct"} 20"#,
                r#"rvs_fnat_replies_total{worker="1",path="redirected"} 16"#,
                r#"rvs_fnat_replies_total{worker="1",path="steered"} 24"#,
            ]
        );
        assert!(samples(&text, "rvs_fnat_packets_total")
            .contains(&r#"rvs_fnat_packets_total{worker="1",direction="out"} 36"#));
        assert!(samples(&text, "rvs_fnat_toa_total")
            .contains(&r#"rvs_fnat_toa_total{worker="0",result="skipped"} 1"#));
        assert!(samples(&text, "rvs_fnat_proxy_headers_total")
            .contains(&r#"rvs_fnat_proxy_headers_total{worker="1"} 2"#));
        // Without FULLNAT services, no samples.
        let text = render(
            Some(&snapshot(vec![service("10.1.0.100", 80, Some(true))], vec![])),
            &[],
        );
        assert!(samples(&text, "rvs_laddr_connections").is_empty());
    }

    #[test]
    fn health_is_rendered_without_stats() {
        let id = (
            rvs_proto::types::ServiceKey {
                proto: rvs_proto::types::Proto::Tcp,
                vip: "10.1.0.100".parse().unwrap(),
                port: 80,
            },
            "10.2.0.11".parse().unwrap(),
            8080,
        );
        let text = render(None, &[RealStatus { id, up: true }]);
        assert!(
            text.contains(
                "rvs_real_server_up{proto=\"TCP\",vip=\"10.1.0.100\",port=\"80\",rip=\"10.2.0.11\",rport=\"8080\"} 1"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn sync_counters_go_before_eof() {
        let st = MetricsState::default();
        assert!(!st.render().contains("rvs_sync_"), "none before rvs-dp answered");
        let mut c = SyncCountersInfo {
            sent: 7,
            installed: 5,
            messages_accepted: 2,
            ..Default::default()
        };
        c.refused.insert("unknown_service".into(), 3);
        st.set_sync(c);
        let text = st.render();
        for line in [
            "rvs_sync_sent_total 7\n",
            "rvs_sync_dropped_total 0\n",
            "rvs_sync_installed_total 5\n",
            "rvs_sync_refused_total{reason=\"unknown_service\"} 3\n",
            "rvs_sync_messages_total{what=\"accepted\"} 2\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn resync_counters_go_before_eof() {
        let st = MetricsState::default();
        assert!(!st.render().contains("rvs_resync_"), "none without --resync-*");
        let r = Arc::new(ResyncStats::default());
        st.set_resync(r.clone());
        r.refused.fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        r.count_fetch(&Ok(Some(905)), false);
        r.count_fetch(&Err("broke off".into()), true);
        let text = st.render();
        for line in [
            "rvs_resync_listings_total{result=\"served\"} 0\n",
            "rvs_resync_listings_total{result=\"refused\"} 2\n",
            "rvs_resync_fetches_total{result=\"ok\"} 1\n",
            "rvs_resync_fetches_total{result=\"failed\"} 1\n",
            "rvs_resync_fetches_total{result=\"gave_up\"} 1\n",
            "rvs_resync_fetched_entries_total 905\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
