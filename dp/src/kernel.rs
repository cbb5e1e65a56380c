//! The kernel exception path: a port with `kernel_iface = "NAME"` gets a
//! kernel network interface NAME carrying the port's MAC, and everything
//! that arrives on the port and is not for the load balancer
//! (`Verdict::ToKernel`: VRRP, traffic to the port's own address, ARP
//! replies, other EtherTypes) goes up to it; everything the kernel sends on
//! it goes out of the port. So keepalived, ping, ssh to the director's
//! address work as on any host, and keepalived's addresses decide which VIPs
//! this director owns (`addrwatch`, `ownership`).
//!
//! The interface is a DPDK `net_tap` vdev (`net_tap_rvsN,iface=NAME,mac=MAC`,
//! see `tap_devargs`), which works anywhere. Where /dev/vhost-net exists,
//! virtio-user over vhost-net is the faster alternative with the same shape
//! (`virtio_user0,path=/dev/vhost-net,iface=NAME,mac=MAC,queue_size=1024`):
//! `kernel_vdev` in rvs.toml replaces the net_tap devargs, nothing else
//! changes, since both are one ethdev with one RX and one TX queue.
//!
//! Load-balanced traffic never goes through it, and it cannot endanger
//! forwarding:
//! - workers hand `ToKernel` mbufs to this path through one bounded SPSC ring
//!   each (full: dropped and counted, `kernel_queue_full`), never waiting;
//! - the exception thread is a plain thread off the workers' lcores: it
//!   drains those rings into the taps under a token bucket
//!   (`[dataplane] kernel_rate_pps`), so a flood to the port's address
//!   cannot take more than that, and drains the taps' RX;
//! - VRRP (`exception::is_control_frame`) has a ring from each worker and a
//!   token bucket of its own, drained first: a flood that fills the shared
//!   ring and bucket cannot starve keepalived of its peer's adverts (a
//!   backup that misses them takes the VIPs from a live master);
//! - what the kernel sends is checked (`exception::check_from_kernel`) and
//!   goes out of the port as it is, on a TX queue reserved for this path
//!   (the port is configured with one TX queue more than there are
//!   workers), or, for devices without a spare TX queue (af_packet), through
//!   a ring that worker 0 drains into its own queue between bursts.
//! - the kernel interface follows the port's carrier (`Carrier`): when the
//!   port loses its link, the interface goes down, so keepalived sees a
//!   fault on it and hands its VIPs to the peer, as it would on a plain
//!   host whose cable is pulled; when the link returns, the interface comes
//!   back up.
//!
//! Its counters (`ExceptionCounters`, per port) are the thread's own: it
//! publishes them into the control region's kernel slot every
//! `PUBLISH_EVERY` (`rvsadm --kernel`, rvs-cp's metrics read them there) and
//! prints them in the exit report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rvs_proto::statsarea::{monotonic_ns, KernelPortStats, KernelStatsBlock, KernelStatsWriter};

use crate::dpdk::{EthdevConf, MbufBurst, Mempool, Port, RingConsumer, RingProducer, RxQueue, TxQueue};
use crate::exception::{check_from_kernel, ExceptionCounters, TokenBucket, CONTROL_BURST, CONTROL_RATE_PPS};
use crate::wire::ethernet::MacAddr;

/// Frames per burst on the exception path.
const BURST: usize = 32;
/// How long the exception thread sleeps when nothing moved.
const IDLE_SLEEP: Duration = Duration::from_micros(200);
/// How often the exception thread reads the ports' carriers.
const CARRIER_POLL: Duration = Duration::from_millis(50);
/// Depth of each worker's ring to the exception path, and of the ring to
/// worker 0 for ports without a spare TX queue.
pub const RING_SIZE: u32 = 1024;
/// Depth of each worker's control-class ring (VRRP) to the exception path.
pub const CONTROL_RING_SIZE: u32 = 256;
/// How often the counters go to the control region.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// How frames from the kernel reach the wire.
pub enum KernelTx {
    /// A TX queue of the port reserved for the exception path.
    Queue(TxQueue),
    /// A ring to worker 0, which transmits them on its own queue.
    Worker(RingProducer),
}

/// One port's kernel interface.
pub struct KernelPort {
    /// Our port index.
    pub port: u16,
    /// The DPDK id of the physical port (what its mbufs carry in `port`).
    pub dpdk_id: u16,
    pub iface: String,
    pub tap: Port,
    pub tap_rx: RxQueue,
    pub tap_tx: TxQueue,
    pub out: KernelTx,
    pub mtu: u16,
    pub carrier: Carrier,
    /// The carrier last mirrored onto the kernel interface.
    pub link_up: bool,
    pub counters: ExceptionCounters,
}

/// Where a port's carrier is read.
pub enum Carrier {
    /// The PMD's link status (`rte_eth_link_get_nowait`).
    Ethdev(Port),
    /// A kernel interface's `/sys/class/net/IFACE/carrier`. af_packet's PMD
    /// reports its link up from start to stop, whatever the interface under
    /// it does, so for af_packet ports the kernel's view is the truth.
    Sysfs(String),
}

impl Carrier {
    /// The carrier source for a port opened with `devargs`.
    pub fn for_port(port: Port, devargs: &str) -> Carrier {
        match crate::vdev::driver(devargs) {
            "net_af_packet" | "eth_af_packet" => match crate::vdev::devarg(devargs, "iface") {
                Some(iface) => Carrier::Sysfs(format!("/sys/class/net/{iface}/carrier")),
                None => Carrier::Ethdev(port),
            },
            _ => Carrier::Ethdev(port),
        }
    }

    /// Whether the link is up; an unreadable source counts as up, so a
    /// driver without link reporting never takes the kernel interface down.
    pub fn up(&self) -> bool {
        match self {
            Carrier::Ethdev(p) => p.link_up().unwrap_or(true),
            Carrier::Sysfs(path) => std::fs::read_to_string(path).map_or(true, |s| s.trim() != "0"),
        }
    }
}

/// Mirrors the port's carrier onto its kernel interface if it changed. A
/// failure is reported once, not at every poll.
fn follow_carrier(k: &mut KernelPort) {
    let up = k.carrier.up();
    if up == k.link_up {
        return;
    }
    k.link_up = up;
    let state = if up { "up" } else { "down" };
    match k.tap.set_link(up) {
        Ok(()) => eprintln!(
            "rvs-dp: port {} link {state}: kernel interface {} set {state}",
            k.port, k.iface
        ),
        Err(e) => eprintln!(
            "rvs-dp: port {} link {state}: cannot set kernel interface {} {state}: {e}",
            k.port, k.iface
        ),
    }
}

/// The devargs of port `i`'s kernel interface: a net_tap named `iface`
/// carrying the port's MAC.
pub fn tap_devargs(i: usize, iface: &str, mac: MacAddr) -> String {
    format!("net_tap_rvs{i},iface={iface},mac={mac}")
}

/// Probes, configures (one queue pair) and starts the kernel interface
/// `devargs`; starting a net_tap sets its link up.
pub fn open(devargs: &str, pool: Mempool, mtu: u16) -> Result<(Port, RxQueue, TxQueue), String> {
    let tap = Port::probe(devargs).map_err(|e| format!("cannot create kernel interface {devargs}: {e}"))?;
    let conf = EthdevConf {
        rx_queues: 1,
        tx_queues: 1,
        rx_desc: 512,
        tx_desc: 512,
        mtu: (mtu != 1500).then_some(mtu),
        rss: false,
    };
    let mut c = tap
        .configure(&conf, pool)
        .map_err(|e| format!("kernel interface {devargs}: cannot configure: {e}"))?;
    tap.start()
        .map_err(|e| format!("kernel interface {devargs}: cannot start: {e}"))?;
    match (c.rx.pop(), c.tx.pop()) {
        (Some(rx), Some(tx)) => Ok((tap, rx, tx)),
        _ => Err(format!("kernel interface {devargs}: no queues")),
    }
}

/// The exception thread's state.
pub struct ExceptionPath {
    pub ports: Vec<KernelPort>,
    /// One ring from each worker (`Worker::kernel_out`).
    pub from_workers: Vec<RingConsumer>,
    /// And one for the control class (`Worker::kernel_ctl_out`), drained
    /// first, under a rate limit of its own.
    pub from_workers_ctl: Vec<RingConsumer>,
    /// Frames a second up to the kernel, over all ports.
    pub rate_pps: u64,
    pub stop: Arc<AtomicBool>,
    /// The control region's kernel slot (this thread is its only writer).
    pub stats: Option<KernelStatsWriter>,
}

impl ExceptionPath {
    /// Moves frames both ways until `stop`; prints each port's counters
    /// and returns them.
    pub fn run(mut self) -> Vec<ExceptionCounters> {
        let t0 = Instant::now();
        let now = || t0.elapsed().as_nanos() as u64;
        let mut bucket = TokenBucket::new(self.rate_pps, (self.rate_pps / 10).max(64), now());
        let mut ctl_bucket = TokenBucket::new(CONTROL_RATE_PPS, CONTROL_BURST, now());
        let mut burst: MbufBurst<BURST> = MbufBurst::new();
        let mut up: Vec<MbufBurst<BURST>> = self.ports.iter().map(|_| MbufBurst::new()).collect();
        let mut carrier_at = Instant::now();
        let mut block = KernelStatsBlock::default();
        for k in &self.ports {
            // The config allows no more ports than the block holds.
            let _ = block.push(KernelPortStats::new(k.port, &k.iface, k.counters));
        }
        self.publish(&mut block);
        let mut published = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            if published.elapsed() >= PUBLISH_EVERY {
                self.publish(&mut block);
                published = Instant::now();
            }
            let mut moved = 0;
            if carrier_at.elapsed() >= CARRIER_POLL {
                carrier_at = Instant::now();
                self.ports.iter_mut().for_each(follow_carrier);
            }
            // Up: workers → taps, rate limited; the control class first,
            // under its own limit.
            let classes = [
                (&mut self.from_workers_ctl, &mut ctl_bucket),
                (&mut self.from_workers, &mut bucket),
            ];
            for (rings, bucket) in classes {
                for r in rings.iter_mut() {
                    if r.dequeue_burst(&mut burst) == 0 {
                        continue;
                    }
                    moved += burst.len();
                    let t = now();
                    for m in burst.drain() {
                        let Some(k) = self.ports.iter().position(|k| k.dpdk_id == m.port()) else {
                            continue; // freed on drop
                        };
                        let c = &mut self.ports[k].counters;
                        if !bucket.take(t) {
                            c.up_ratelimited += 1;
                            continue;
                        }
                        if let Err(m) = up[k].push(m) {
                            drop(m);
                            c.up_txfull += 1;
                        }
                    }
                    for (k, b) in up.iter_mut().enumerate() {
                        send_up(&mut self.ports[k], b);
                    }
                }
            }
            // Down: taps → ports.
            for k in self.ports.iter_mut() {
                if k.tap_rx.rx_burst(&mut burst) == 0 {
                    continue;
                }
                moved += burst.len();
                let mut good: MbufBurst<BURST> = MbufBurst::new();
                for m in burst.drain() {
                    if check_from_kernel(m.data(), m.nb_segs(), k.mtu).is_err() {
                        k.counters.down_bad += 1;
                        continue;
                    }
                    // Cannot fail: `good` is as large as `burst`.
                    let _ = good.push(m);
                }
                send_down(k, &mut good);
            }
            if moved == 0 {
                std::thread::sleep(IDLE_SLEEP);
            }
        }
        self.publish(&mut block);
        let mut out = Vec::new();
        for k in &self.ports {
            let c = &k.counters;
            println!(
                "kernel {} (port {}): up {} down {} dropped {} (up_ratelimited {} up_txfull {} down_bad {} down_txfull {})",
                k.iface,
                k.port,
                c.up,
                c.down,
                c.dropped(),
                c.up_ratelimited,
                c.up_txfull,
                c.down_bad,
                c.down_txfull
            );
            let _ = k.tap.stop();
            out.push(*c);
        }
        out
    }

    /// Copies the ports' counters into `block` (which lists the ports in
    /// order) and into the control region.
    fn publish(&self, block: &mut KernelStatsBlock) {
        let Some(w) = &self.stats else { return };
        for (slot, k) in block.ports_mut().iter_mut().zip(&self.ports) {
            slot.counters = k.counters;
        }
        block.timestamp_ns = monotonic_ns();
        w.publish(block);
    }
}

fn send_up(k: &mut KernelPort, b: &mut MbufBurst<BURST>) {
    if b.is_empty() {
        return;
    }
    let n = b.len();
    let sent = k.tap_tx.tx_burst(b);
    k.counters.up += sent as u64;
    k.counters.up_txfull += (n - sent) as u64;
    b.free_all();
}

fn send_down(k: &mut KernelPort, b: &mut MbufBurst<BURST>) {
    if b.is_empty() {
        return;
    }
    let n = b.len();
    let sent = match &mut k.out {
        KernelTx::Queue(q) => q.tx_burst(b),
        KernelTx::Worker(r) => r.enqueue_burst(b),
    };
    k.counters.down += sent as u64;
    k.counters.down_txfull += (n - sent) as u64;
    b.free_all();
}
