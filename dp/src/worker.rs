//! The poll-mode worker: one per lcore. It owns one RX and one TX queue per
//! port, its shard of the connection table (inside its `Forwarder`), and the
//! consumer ends of the redirect rings from every other worker.
//!
//! Per burst: RX → `Forwarder::process` → TX, redirect or hold for ARP, then
//! bulk frees. Between bursts (every `HOUSEKEEPING_EVERY` loops): the clock,
//! a new service snapshot, incremental expiry, packets whose next hop got
//! resolved, stats publishing. No locks, allocation, syscalls or logging per
//! packet.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::conn::ConnId;
use crate::core::{Forwarder, PortInfo, Verdict};
use crate::dpdk::{rdtsc, tsc_hz};
use crate::dpdk::{Mbuf, MbufBurst, Mempool};
use crate::dpdk::{RingConsumer, RingProducer};
use crate::dpdk::{RxQueue, TxQueue};
use crate::neigh::arp::ARP_FRAME_LEN;
use crate::neigh::resolve::announce_ports;
use crate::neigh::{build_arp_request, build_gratuitous_arp, Resolver};
use crate::packet::PacketBuf;
use crate::stats::DropReason;
use crate::vdev::CsumSampler;
use crate::wire::ethernet::MacAddr;
use crate::xmit::dr::set_macs;
use rvs_proto::command::ConnInfo;
use rvs_proto::latency::{CyclesToNs, LatencyHist};
use rvs_proto::statsarea::{monotonic_ns, StatsWriter, WorkerStatsBlock};

impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        Mbuf::data(self)
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        Mbuf::data_mut(self)
    }
    #[inline(always)]
    fn rx_ip_csum(&self) -> Option<bool> {
        Mbuf::rx_ip_csum(self)
    }
    #[inline(always)]
    fn rx_l4_csum(&self) -> Option<bool> {
        Mbuf::rx_l4_csum(self)
    }
    #[inline(always)]
    fn ip_csum_ok(&self, software: impl FnOnce() -> bool) -> bool {
        Mbuf::ip_csum_ok(self, software)
    }
    fn prepend(&mut self, n: usize) -> bool {
        Mbuf::prepend(self, n).is_some()
    }
    fn adj(&mut self, n: usize) -> bool {
        Mbuf::adj(self, n).is_some()
    }
    fn truncate(&mut self, len: usize) {
        let cur = Mbuf::len(self);
        if len < cur {
            self.trim(cur - len);
        }
    }
    fn append(&mut self, n: usize) -> bool {
        Mbuf::append(self, n).is_some()
    }
}

const HOUSEKEEPING_EVERY: u32 = 64;
const EXPIRE_BUDGET: usize = 512;
const PENDING_SLOTS: usize = 64;
const TXB: usize = 64;

/// Connection listings (`ipvsadm -Lc`): the control thread bumps `request`,
/// each worker answers in its slot between bursts.
pub struct ConnDump {
    pub request: AtomicU64,
    pub slots: Vec<(AtomicU64, Mutex<Vec<ConnInfo>>)>,
}

impl ConnDump {
    pub fn new(workers: usize) -> Self {
        ConnDump {
            request: AtomicU64::new(0),
            slots: (0..workers)
                .map(|_| (AtomicU64::new(0), Mutex::new(Vec::new())))
                .collect(),
        }
    }

    /// Asks every worker for its connections and gathers what they hand
    /// over within 2 s (a stopped worker's part is simply missing).
    pub fn collect(&self) -> Vec<ConnInfo> {
        let req = self.request.fetch_add(1, Ordering::AcqRel) + 1;
        let t0 = std::time::Instant::now();
        while self
            .slots
            .iter()
            .any(|(seen, _)| seen.load(Ordering::Acquire) < req)
            && t0.elapsed() < std::time::Duration::from_secs(2)
        {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        let mut out = Vec::new();
        for (_, slot) in &self.slots {
            if let Ok(mut g) = slot.lock() {
                out.append(&mut g);
            }
        }
        out
    }
}

pub struct Worker {
    pub id: u16,
    pub fwd: Forwarder,
    pub ports: Vec<PortInfo>,
    /// Index: our port index. The queue of this worker on that port.
    pub rx: Vec<RxQueue>,
    pub tx: Vec<TxQueue>,
    /// DPDK port id → our port index, for redirected mbufs.
    pub port_index: Vec<u16>,
    pub redirect_in: Vec<RingConsumer>,
    /// Index: destination worker; None for ourselves.
    pub redirect_out: Vec<Option<RingProducer>>,
    pub pool: Mempool,
    pub stats: Option<StatsWriter>,
    pub stop: Arc<AtomicBool>,
    pub idle_sleep_us: u32,
    /// Most packets taken from a queue per poll (`[dataplane] rx_burst`).
    pub rx_burst: usize,
    pub dump: Arc<ConnDump>,
    /// Index: our port index. Sampled L4 checksum checks on af_packet ports
    /// (see `vdev`); None elsewhere, one untaken branch per burst.
    pub rx_csum: Vec<Option<CsumSampler>>,
    pub tx_pkts: u64,
    pub tx_bytes: u64,
    /// `Verdict::ToKernel` frames go to the exception path through this
    /// bounded ring (None: no port has a kernel interface).
    pub kernel_out: Option<RingProducer>,
    /// The control class of `ToKernel` frames (VRRP,
    /// `exception::is_control_frame`) goes up through this ring instead,
    /// so that a flood on `kernel_out` cannot crowd it out.
    pub kernel_ctl_out: Option<RingProducer>,
    /// (our port index, ring): frames the kernel sent, to transmit on that
    /// port, when the port has no spare TX queue for the exception path
    /// (worker 0 only; see `kernel`).
    pub kernel_in: Vec<(u16, RingConsumer)>,
}

struct Io {
    tx_bufs: Vec<MbufBurst<TXB>>,
    redir_bufs: Vec<MbufBurst<TXB>>,
    /// `ToKernel` frames, handed to `kernel_out` at each flush.
    kernel_buf: MbufBurst<TXB>,
    /// Control-class `ToKernel` frames, handed to `kernel_ctl_out`.
    kernel_ctl_buf: MbufBurst<TXB>,
    to_kernel: u64,
    kernel_drops: u64,
    /// Dropped packets, freed together once per burst (a SYN flood drops
    /// millions a second; one rte_pktmbuf_free_bulk beats 32 single frees).
    dropped: MbufBurst<TXB>,
    arp: Resolver<Mbuf>,
    hist: LatencyHist,
    conv: CyclesToNs,
    tx_drops: u64,
    redirect_drops: u64,
    neigh_drops: u64,
    nombuf: u64,
    /// SYN proxy: client packets held until their real server answers
    /// (`Verdict::Hold`), oldest first; at most `HELD_MAX`.
    held: Vec<Held>,
}

/// A packet held for a proxied connection.
struct Held {
    conn: ConnId,
    port: u16,
    since_s: u32,
    m: Mbuf,
}

/// Packets a worker holds for proxied connections at most.
const HELD_MAX: usize = 256;
/// A held packet whose connection was not released within this many
/// seconds is dropped (the client resends it).
const HELD_SECS: u32 = 3;

impl Worker {
    fn flush_tx(&mut self, io: &mut Io) {
        for (p, buf) in io.tx_bufs.iter_mut().enumerate() {
            if buf.is_empty() {
                continue;
            }
            let bytes: usize = buf.as_slice().iter().map(|m| m.len()).sum();
            let before = buf.len();
            let Some(q) = self.tx.get_mut(p) else {
                buf.free_all();
                continue;
            };
            let sent = q.tx_burst(buf);
            self.tx_pkts += sent as u64;
            if sent == before {
                self.tx_bytes += bytes as u64;
            } else {
                let left: usize = buf.as_slice().iter().map(|m| m.len()).sum();
                self.tx_bytes += (bytes - left) as u64;
                io.tx_drops += buf.len() as u64;
                buf.free_all();
            }
        }
        for (w, buf) in io.redir_bufs.iter_mut().enumerate() {
            if buf.is_empty() {
                continue;
            }
            match self.redirect_out.get_mut(w) {
                Some(Some(r)) => {
                    r.enqueue_burst(buf);
                    io.redirect_drops += buf.len() as u64;
                    buf.free_all();
                }
                _ => buf.free_all(),
            }
        }
        for (buf, ring) in [
            (&mut io.kernel_ctl_buf, &mut self.kernel_ctl_out),
            (&mut io.kernel_buf, &mut self.kernel_out),
        ] {
            if buf.is_empty() {
                continue;
            }
            let n = buf.len();
            let sent = match ring {
                Some(r) => r.enqueue_burst(buf),
                None => 0,
            };
            io.to_kernel += sent as u64;
            io.kernel_drops += (n - sent) as u64;
            buf.free_all();
        }
        io.dropped.free_all();
    }

    /// Queues `m` for TX on `port`. The buffer holds a whole burst, so the
    /// first push nearly always succeeds; a full buffer is flushed first.
    #[inline(always)]
    fn queue_tx(&mut self, io: &mut Io, port: u16, m: Mbuf) {
        let p = port as usize;
        let m = match io.tx_bufs.get_mut(p) {
            Some(b) => match b.push(m) {
                Ok(()) => return,
                Err(m) => m,
            },
            None => {
                drop(m);
                return;
            }
        };
        self.flush_tx(io);
        match io.tx_bufs.get_mut(p) {
            Some(b) => {
                if let Err(m) = b.push(m) {
                    drop(m);
                    io.tx_drops += 1;
                }
            }
            None => drop(m),
        }
    }

    /// Sends the ARP frame `build` writes out of `port`. False when the pool
    /// is empty.
    fn send_arp(
        &mut self,
        io: &mut Io,
        port: u16,
        build: impl FnOnce(&mut [u8], &PortInfo) -> usize,
    ) -> bool {
        let Some(info) = self.ports.get(port as usize).copied() else {
            return true;
        };
        let Some(mut m) = self.pool.alloc() else {
            io.nombuf += 1;
            return false;
        };
        if m.append(ARP_FRAME_LEN).is_some() && build(m.data_mut(), &info) > 0 {
            self.queue_tx(io, port, m);
        }
        true
    }

    fn send_arp_request(&mut self, io: &mut Io, port: u16, via: Ipv4Addr, force: bool) {
        if io.arp.request_due(via, self.fwd.now(), force) {
            self.send_arp(io, port, |b, info| build_arp_request(b, info, via));
        }
    }

    /// Gratuitous ARP for `ip` on every port whose subnet holds it.
    fn announce(&mut self, io: &mut Io, ip: Ipv4Addr) {
        let ports: Vec<u16> = announce_ports(&self.ports, ip).map(|(p, _)| p).collect();
        for p in ports {
            if !self.send_arp(io, p, |b, info| build_gratuitous_arp(b, info, ip)) {
                return;
            }
        }
    }

    /// Processes again the packets held for the proxied connections the
    /// forwarder released (their real server answered), in arrival order.
    fn release_held(&mut self, io: &mut Io) {
        let released = std::mem::take(&mut self.fwd.synproxy_released);
        for &conn in &released {
            let mut i = 0;
            while i < io.held.len() {
                if io.held[i].conn != conn {
                    i += 1;
                    continue;
                }
                let Held { port, mut m, .. } = io.held.remove(i);
                let v = self.fwd.process_held(port, &mut m);
                self.dispatch(io, m, v);
            }
        }
        // Given back with its capacity: no allocation per release.
        self.fwd.synproxy_released = released;
        self.fwd.synproxy_released.clear();
        self.flush_tx(io);
    }

    /// Drops the held packets older than `HELD_SECS`.
    fn expire_held(&mut self, io: &mut Io) {
        let now = self.fwd.now();
        while io
            .held
            .first()
            .is_some_and(|h| now.saturating_sub(h.since_s) >= HELD_SECS)
        {
            let h = io.held.remove(0);
            self.fwd.drops.count(DropReason::SynProxyWaiting);
            drop(h.m);
        }
    }

    #[inline]
    fn dispatch(&mut self, io: &mut Io, m: Mbuf, v: Verdict) {
        match v {
            Verdict::Forward { port } => self.queue_tx(io, port, m),
            Verdict::Drop(_) => io.dropped.push_for_free(m),
            Verdict::ToKernel => {
                let ctl = self.kernel_ctl_out.is_some() && crate::exception::is_control_frame(m.data());
                let full = if ctl {
                    io.kernel_ctl_buf.is_full()
                } else {
                    io.kernel_buf.is_full()
                };
                if full {
                    self.flush_tx(io);
                }
                let buf = if ctl {
                    &mut io.kernel_ctl_buf
                } else {
                    &mut io.kernel_buf
                };
                if buf.push(m).is_err() {
                    io.kernel_drops += 1;
                }
            }
            Verdict::Redirect { worker } => {
                let w = worker as usize;
                if io.redir_bufs.get(w).is_some_and(|b| b.is_full()) {
                    self.flush_tx(io);
                }
                match io.redir_bufs.get_mut(w) {
                    Some(b) => {
                        if b.push(m).is_err() {
                            io.redirect_drops += 1;
                        }
                    }
                    None => drop(m),
                }
            }
            Verdict::Resolve { port, via } => {
                if let Some(old) = io.arp.hold(port, via, self.fwd.now(), m) {
                    drop(old);
                    io.neigh_drops += 1;
                }
                self.send_arp_request(io, port, via, false);
            }
            Verdict::Hold { conn } => {
                if io.held.len() < HELD_MAX {
                    let port = self.port_index.get(m.port() as usize).copied().unwrap_or(0);
                    io.held.push(Held {
                        conn,
                        port,
                        since_s: self.fwd.now(),
                        m,
                    });
                } else {
                    self.fwd.drops.count(DropReason::SynProxyWaiting);
                    io.dropped.push_for_free(m);
                }
            }
            Verdict::Consumed { learned } => {
                drop(m);
                if let Some(ip) = learned {
                    self.release_pending(io, Some(ip));
                }
            }
        }
    }

    /// Sends held packets whose next hop is now resolved (`only`: just that one).
    fn release_pending(&mut self, io: &mut Io, only: Option<Ipv4Addr>) {
        let now = self.fwd.now();
        let shared = self.fwd.shared().clone();
        // The queue holds at most PENDING_SLOTS packets, so one pass takes all.
        let mut ready: [Option<(u16, Mbuf, MacAddr)>; PENDING_SLOTS] = std::array::from_fn(|_| None);
        let mut k = 0;
        let expired = io.arp.release(&shared.neigh, now, only, |port, m, mac| {
            if let Some(slot) = ready.get_mut(k) {
                *slot = Some((port, m, mac));
                k += 1;
            }
        });
        for slot in ready.iter_mut().take(k) {
            if let Some((port, mut m, mac)) = slot.take() {
                let src = self.ports.get(port as usize).map_or(MacAddr::ZERO, |p| p.mac);
                set_macs(m.data_mut(), mac, src);
                self.queue_tx(io, port, m);
            }
        }
        io.neigh_drops += expired;
    }

    fn publish(&mut self, io: &Io, block: &mut WorkerStatsBlock) {
        let Some(w) = &self.stats else { return };
        let c = &self.fwd.counters;
        block.timestamp_ns = monotonic_ns();
        block.rx_pkts = c.rx_pkts;
        block.rx_bytes = c.rx_bytes;
        block.tx_pkts = self.tx_pkts;
        block.tx_bytes = self.tx_bytes;
        block.drops.copy_from_slice(&self.fwd.drops.by_reason);
        block.drops[DropReason::TxFull as usize] += io.tx_drops;
        block.drops[DropReason::RedirectFull as usize] += io.redirect_drops;
        block.drops[DropReason::NeighQueueFull as usize] += io.neigh_drops;
        block.drops[DropReason::NoMbuf as usize] += io.nombuf;
        block.drops[DropReason::KernelQueueFull as usize] += io.kernel_drops;
        block.redirects_sent = c.redirected_out;
        block.redirects_received = c.redirected_in;
        block.conns_created = c.conns_created;
        block.conn_table_used = self.fwd.conns.len() as u64;
        block.conn_table_size = self.fwd.conns.capacity() as u64;
        block.embryonic_evicted = self.fwd.conns.embryonic_evicted();
        block.fnat_in = c.fnat_in;
        block.fnat_out = c.fnat_out;
        block.fnat_replies_direct = c.fnat_replies_direct;
        block.fnat_replies_redirected = c.fnat_replies_redirected;
        block.fnat_replies_steered = c.fnat_replies_steered;
        block.toa_inserted = c.toa_inserted;
        block.toa_skipped = c.toa_skipped;
        block.proxy_inserted = c.proxy_inserted;
        block.latency = io.hist;
        let snap = self.fwd.services().clone();
        let wid = self.id as usize;
        let mut real = 0;
        for (i, s) in snap.services().iter().enumerate() {
            if let Some(b) = block.services.get_mut(i) {
                *b = s.stats.worker(wid).snapshot().into();
            }
            for d in &s.dests {
                if let Some(b) = block.reals.get_mut(real) {
                    *b = d.stats.traffic.worker(wid).snapshot().into();
                }
                real += 1;
            }
        }
        w.publish(block);
    }

    fn answer_dump(&mut self) {
        let Some((seen, slot)) = self.dump.slots.get(self.id as usize) else {
            return;
        };
        let req = self.dump.request.load(Ordering::Acquire);
        if seen.load(Ordering::Relaxed) == req {
            return;
        }
        let now = self.fwd.now();
        let list = crate::conn::list::listing(&self.fwd.conns, now);
        if let Ok(mut g) = slot.lock() {
            *g = list;
        }
        seen.store(req, Ordering::Release);
    }

    /// The poll loop; returns when `stop` is set.
    pub fn run(mut self) {
        let hz = tsc_hz().max(1);
        let start = rdtsc();
        let nports = self.ports.len();
        let nworkers = self.redirect_out.len();
        let mut io = Io {
            tx_bufs: (0..nports).map(|_| MbufBurst::new()).collect(),
            redir_bufs: (0..nworkers).map(|_| MbufBurst::new()).collect(),
            kernel_buf: MbufBurst::new(),
            kernel_ctl_buf: MbufBurst::new(),
            to_kernel: 0,
            kernel_drops: 0,
            dropped: MbufBurst::new(),
            arp: Resolver::new(PENDING_SLOTS),
            hist: LatencyHist::default(),
            conv: CyclesToNs::new(hz),
            tx_drops: 0,
            redirect_drops: 0,
            neigh_drops: 0,
            nombuf: 0,
            held: Vec::with_capacity(HELD_MAX),
        };
        let mut block = WorkerStatsBlock::new_boxed();
        let mut rx: MbufBurst<32> = MbufBurst::new();
        // A burst's verdicts, `process_burst`'s output: made once, each
        // burst overwrites (and the drain below reads) its first n.
        let mut verdicts = [Verdict::Consumed { learned: None }; 32];
        let mut loops: u32 = 0;
        let mut last_publish = 0u64;
        let mut idle_loops = 0u32;
        self.fwd.set_now(0);
        self.fwd.refresh();
        if self.id == 0 {
            let addrs: Vec<Ipv4Addr> = self.ports.iter().map(|p| p.addr).collect();
            for a in addrs {
                self.announce(&mut io, a);
            }
        }
        while !self.stop.load(Ordering::Relaxed) {
            let mut got = 0usize;
            for p in 0..nports {
                let n = match self.rx.get_mut(p) {
                    Some(q) => q.rx_burst_upto(&mut rx, self.rx_burst),
                    None => 0,
                };
                if n == 0 {
                    continue;
                }
                got += n;
                if let Some(Some(s)) = self.rx_csum.get_mut(p) {
                    s.on_burst(n, rx.as_slice().iter().map(|m| m.data()));
                }
                let t_rx = rdtsc();
                self.fwd.process_burst(p as u16, rx.as_mut_slice(), &mut verdicts);
                for (m, &v) in rx.drain().zip(verdicts.iter()) {
                    // Nearly every verdict: straight to TX, past the rest of dispatch.
                    match v {
                        Verdict::Forward { port } => self.queue_tx(&mut io, port, m),
                        _ => self.dispatch(&mut io, m, v),
                    }
                }
                self.flush_tx(&mut io);
                let dt = rdtsc().wrapping_sub(t_rx);
                io.hist.record_cycles_n(dt, n as u64, &io.conv);
            }
            for r in 0..self.redirect_in.len() {
                let n = self.redirect_in[r].dequeue_burst(&mut rx);
                if n == 0 {
                    continue;
                }
                got += n;
                let t_rx = rdtsc();
                for mut m in rx.drain() {
                    let port = self.port_index.get(m.port() as usize).copied().unwrap_or(0);
                    let v = self.fwd.process(port, &mut m, true);
                    self.dispatch(&mut io, m, v);
                }
                self.flush_tx(&mut io);
                let dt = rdtsc().wrapping_sub(t_rx);
                io.hist.record_cycles_n(dt, n as u64, &io.conv);
            }
            for k in 0..self.kernel_in.len() {
                let (port, r) = &mut self.kernel_in[k];
                let port = *port;
                if r.dequeue_burst(&mut rx) == 0 {
                    continue;
                }
                got += 1;
                for m in rx.drain() {
                    self.queue_tx(&mut io, port, m);
                }
                self.flush_tx(&mut io);
            }
            if !self.fwd.synproxy_released.is_empty() {
                self.release_held(&mut io);
            }
            loops = loops.wrapping_add(1);
            if loops.is_multiple_of(HOUSEKEEPING_EVERY) {
                if !io.held.is_empty() {
                    self.expire_held(&mut io);
                }
                let tsc = rdtsc();
                let now_s = (tsc.wrapping_sub(start) / hz) as u32;
                self.fwd.set_now(now_s);
                self.fwd.refresh();
                crate::sync::worker_tick(&mut self.fwd);
                if self.id == 0 {
                    let new = io.arp.to_announce(self.fwd.services(), self.fwd.owned());
                    for v in new {
                        self.announce(&mut io, v);
                    }
                }
                self.fwd.housekeeping(EXPIRE_BUDGET);
                self.release_pending(&mut io, None);
                // Taken out and put back empty, so its capacity is kept.
                let mut stale = std::mem::take(&mut self.fwd.stale_hops);
                for &(port, via) in &stale {
                    self.send_arp_request(&mut io, port, via, false);
                }
                stale.clear();
                self.fwd.stale_hops = stale;
                self.answer_dump();
                for s in self.rx_csum.iter_mut().flatten() {
                    if s.take_hint() {
                        eprintln!("rvs-dp: worker {}: {}", self.id, s.hint());
                    }
                }
                self.flush_tx(&mut io);
                let ns = tsc.wrapping_sub(start) / (hz / 1_000_000).max(1) * 1000;
                if ns.wrapping_sub(last_publish) > 100_000_000 {
                    last_publish = ns;
                    self.publish(&io, &mut block);
                }
            }
            if got == 0 {
                idle_loops = idle_loops.saturating_add(1);
                if self.idle_sleep_us > 0 && idle_loops > 256 {
                    std::thread::sleep(std::time::Duration::from_micros(self.idle_sleep_us as u64));
                }
            } else {
                idle_loops = 0;
            }
        }
        self.flush_tx(&mut io);
        self.publish(&io, &mut block);
        let c = &self.fwd.counters;
        let mut line = format!(
            "worker {}: rx {} tx {} conns {} nat_in {} nat_out {} dr {} tun {} redirected out {} in {} local {} arp {} fast_path {} embryonic_evicted {}",
            self.id,
            c.rx_pkts,
            self.tx_pkts,
            c.conns_created,
            c.nat_in,
            c.nat_out,
            c.dr_out,
            c.tun_out,
            c.redirected_out,
            c.redirected_in,
            c.local_replies,
            c.arp_replies,
            c.fast_path,
            self.fwd.conns.embryonic_evicted()
        );
        if self.kernel_out.is_some() {
            line.push_str(&format!(" to_kernel {}", io.to_kernel));
        }
        if c.fnat_in + c.fnat_out > 0 {
            line.push_str(&format!(
                " fnat_in {} fnat_out {} fnat_replies direct {} redirected {} steered {} toa {} (skipped {}) proxy_headers {}",
                c.fnat_in,
                c.fnat_out,
                c.fnat_replies_direct,
                c.fnat_replies_redirected,
                c.fnat_replies_steered,
                c.toa_inserted,
                c.toa_skipped,
                c.proxy_inserted
            ));
        }
        if c.synproxy_syn_acks > 0 {
            line.push_str(&format!(
                " synproxy_syn_acks {} synproxy_accepted {} synproxy_established {} synproxy_held {}",
                c.synproxy_syn_acks, c.synproxy_accepted, c.synproxy_established, c.synproxy_held
            ));
        }
        crate::sync::worker_tick(&mut self.fwd);
        if let Some(s) = self
            .fwd
            .shared()
            .sync
            .stats
            .get(self.id as usize)
            .map(|s| s.snapshot())
        {
            if s != Default::default() {
                line.push_str(&format!(
                    " sync_sent {} sync_dropped {} sync_installed {} sync_updated {} sync_refused {}",
                    s.pushed,
                    s.dropped,
                    s.installed,
                    s.updated,
                    s.unknown_service + s.unknown_dest + s.table_full
                ));
            }
        }
        if self.rx_csum.iter().any(Option::is_some) {
            let (sampled, bad) = self
                .rx_csum
                .iter()
                .flatten()
                .fold((0, 0), |(n, b), s| (n + s.sampled, b + s.bad));
            line.push_str(&format!(" rx_l4_csum_sampled {sampled} rx_l4_csum_bad {bad}"));
        }
        for (i, n) in block.drops.iter().enumerate() {
            if *n > 0 {
                line.push_str(&format!(" drop.{} {}", DropReason::ALL[i].name(), n));
            }
        }
        println!("{line}");
        // Mbufs still held are freed when `io` drops.
    }
}
