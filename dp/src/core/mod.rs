//! The per-packet path of one worker, after the kernel's ip_vs_core.c:
//! classify, find or create the connection, transform, and say where the
//! packet goes. Pure: the DPDK worker, the benchmarks and the fuzzer all drive
//! this same code over their own packet buffers.
//!
//! Ownership: every connection belongs to exactly one worker, chosen from the
//! client's address alone (`owner_of`). Both directions can compute it without
//! any shared table: a client→VIP packet names the client as its source, a
//! real server's NAT reply names it as its destination, and an ICMP error names
//! it in the datagram it quotes. A packet that lands on another worker's queue
//! is handed to the owner (`Verdict::Redirect`). Hashing on the client address
//! only also keeps all of a client's connections and all fragments of its
//! datagrams on one worker, so the fragment cache stays worker-local.
//!
//! Persistence templates are worker-local too, so every client one template
//! covers must have one owner: the address is masked, before hashing, with the
//! coarsest `-M` netmask of the service table (`ServiceTable::owner_mask`;
//! 255.255.255.255 when no service is persistent, the common case, which
//! changes nothing). The price: with `-M 255.255.255.0` a whole /24 of clients
//! is handled by one worker, for every service, persistent or not, so a few
//! busy client networks spread less evenly over the workers.
//!
//! When a new table changes that mask (the first persistent service with a
//! coarser `-M` is added, or the last one goes), clients change owner, as they
//! would if the worker count changed: their established connections are on the
//! old owner, so on the new one TCP packets other than a SYN drop
//! (`NoConnNotSyn`) and UDP flows are scheduled afresh, maybe to another real
//! server; while the workers switch snapshots one burst apart they may briefly
//! disagree too. Setting `-M` on the first persistent service before traffic
//! arrives avoids it.

mod egress;
mod fast;
mod fnat;
mod synproxy;
pub use synproxy::{synced_shift, ProxySlot};
#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use crossbeam_utils::CachePadded;

use crate::conn::{
    client_net, Bucket, Conn, ConnId, ConnTable, Direction, FlowKey, NewConn, NewTemplate, TcpState, Timeouts,
};
use crate::neigh::arp::{self, ArpInput};
use crate::neigh::{Neigh, NeighTable};
use crate::ownership::Owned;
use crate::packet::PacketBuf;
pub use crate::route::PortInfo;
use crate::route::{NextHop, RouteTable};
use crate::sched::Scheduler;
use crate::service::{ForwardMethod, Proto, ServiceTable};
use crate::stats::{DropCounters, DropReason};
use crate::wire::arp::{ArpOperation, ArpPacket};
use crate::wire::ethernet::{EtherType, EthernetFrame};
use crate::wire::icmp::{IcmpPacket, IcmpType};
use crate::wire::ipv4::{IpProtocol, Ipv4Packet};
use crate::wire::tcp::{TcpFlags, TcpPacket};
use crate::wire::udp::{self, UdpPacket};
use crate::wire::{ipv4, tcp};
use crate::xmit::{dr, icmp, nat, tun};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreOptions {
    /// End connections whose real server was removed, on their next packet.
    pub expire_nodest_conn: bool,
    /// Answer a SYN that no real server can take with a RST.
    pub tcp_rst_no_dest: bool,
    /// The kernel's conn_reuse_mode: what a SYN does that matches a closed
    /// connection's entry (a client reusing its port). 0: it goes on that
    /// connection, to its real server; bit 1 (the default): an entry in
    /// TIME_WAIT or CLOSE ends and the SYN is scheduled as a new connection;
    /// bit 2 too: so does one in FIN_WAIT whose replies bypass us (DR, TUN:
    /// the last state the director sees there). Connections a persistence
    /// template controls keep their entry, as in the kernel.
    pub conn_reuse_mode: u8,
    /// The kernel's expire_quiescent_template: a persistence template whose
    /// real server is quiesced (weight 0) ends on the client's next new
    /// connection, which is scheduled afresh. Off (the default), the
    /// template keeps sending its clients to the quiesced server.
    pub expire_quiescent_template: bool,
}

impl Default for CoreOptions {
    /// The kernel's defaults.
    fn default() -> Self {
        CoreOptions {
            expire_nodest_conn: false,
            tcp_rst_no_dest: false,
            conn_reuse_mode: 1,
            expire_quiescent_template: false,
        }
    }
}

/// conn_reuse_mode's bits (`CoreOptions::conn_reuse_mode`).
pub const CONN_REUSE_TIME_WAIT: u8 = 1;
pub const CONN_REUSE_FIN_WAIT_NO_OUTPUT: u8 = 2;

/// Director-wide state the workers share. Everything here is either
/// immutable, swapped whole (services, timeouts), or lock-free (neighbours).
pub struct Shared {
    pub services: ArcSwap<ServiceTable>,
    pub timeouts: ArcSwap<Timeouts>,
    /// The addresses this director owns (see `ownership`): `Owned::ALL`
    /// unless a port has a kernel interface; then the address watcher
    /// publishes what the kernel interfaces hold.
    pub owned: ArcSwap<Owned>,
    /// Index: our port index. True for ports with a kernel interface: what
    /// arrives there and is not for the load balancer is `Verdict::ToKernel`.
    kernel_ports: Vec<bool>,
    pub neigh: NeighTable,
    pub ports: Vec<PortInfo>,
    /// How FULLNAT local addresses share their ports out (range, TIME_WAIT hold).
    pub laddr: crate::fnat::laddr::LaddrConfig,
    /// The ports' names (rvs.toml's `[[port]] name`; `port0`, `port1`...
    /// unless given): what a local address names its port by.
    pub port_names: Vec<String>,
    /// The ports' addresses, for the per-packet martian and local checks.
    port_addrs: Vec<u32>,
    /// The ports' MACs as `mac_word` reads a frame's destination, for the
    /// fast path's one compare.
    port_macs: Vec<u64>,
    pub routes: RouteTable,
    pub workers: u16,
    pub opts: CoreOptions,
    /// The service generation each worker has switched to: the control
    /// thread replies to a command once every worker has seen it.
    pub seen_generation: Vec<CachePadded<AtomicU64>>,
    /// Connection sync: the master flag and the rings to and from the sync threads.
    pub sync: crate::sync::SyncHub,
    /// The SYN proxy's cookie secret, one per process.
    pub cookie_key: crate::synproxy::cookie::CookieKey,
}

impl Shared {
    pub fn new(ports: Vec<PortInfo>, routes: RouteTable, workers: u16, opts: CoreOptions) -> Self {
        let workers = workers.max(1);
        let port_addrs = ports.iter().map(|p| u32::from(p.addr)).collect();
        let port_macs = ports.iter().map(|p| mac_word(&p.mac.0)).collect();
        Shared {
            port_addrs,
            port_macs,
            services: ArcSwap::from_pointee(ServiceTable::default()),
            timeouts: ArcSwap::from_pointee(Timeouts::default()),
            owned: ArcSwap::from_pointee(Owned::ALL),
            kernel_ports: vec![false; ports.len()],
            neigh: NeighTable::new(4096),
            laddr: crate::fnat::laddr::LaddrConfig::default(),
            port_names: (0..ports.len()).map(|i| format!("port{i}")).collect(),
            ports,
            routes,
            workers,
            opts,
            seen_generation: (0..workers)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
            sync: crate::sync::SyncHub::new(workers as usize),
            cookie_key: crate::synproxy::cookie::CookieKey::random_or_seeded(),
        }
    }

    /// A fixed SYN cookie key instead of a random one: for tests and fuzzing
    /// that must compute the cookies a director makes.
    pub fn with_cookie_key(mut self, key: crate::synproxy::cookie::CookieKey) -> Self {
        self.cookie_key = key;
        self
    }

    /// Names the ports (index: our port index), as rvs.toml does.
    pub fn with_port_names(mut self, names: Vec<String>) -> Self {
        for (n, name) in self.port_names.iter_mut().zip(names) {
            *n = name;
        }
        self
    }

    /// Local ports and hold of FULLNAT local addresses, instead of
    /// 1024..=65535 and 60 s.
    pub fn with_laddr_config(mut self, cfg: crate::fnat::laddr::LaddrConfig) -> Self {
        self.laddr = cfg;
        self
    }

    /// The index of the port named `name`.
    pub fn port_named(&self, name: &str) -> Option<u16> {
        self.port_names.iter().position(|n| n == name).map(|i| i as u16)
    }

    /// Gives the ports flagged in `kernel` (index: our port index) a kernel
    /// interface. With any, ownership follows the kernel: nothing is owned
    /// until the address watcher publishes what the interfaces hold.
    pub fn with_kernel_ports(mut self, kernel: &[bool]) -> Self {
        for (k, &on) in self.kernel_ports.iter_mut().zip(kernel) {
            *k = on;
        }
        if self.kernel_ports.iter().any(|&k| k) {
            self.owned.store(Arc::new(Owned::only(0, [])));
        }
        self
    }

    /// Martian addresses, and whether the packet is for one of our ports:
    /// one pass over the ports for both.
    #[inline(always)]
    fn martian_or_local(&self, src: Ipv4Addr, dst: Ipv4Addr) -> (bool, bool) {
        let (s, d) = (u32::from(src), u32::from(dst));
        let (s0, d0) = (s >> 24, d >> 24);
        // 0/8, 127/8, multicast and broadcast sources; 0/8 and 127/8 destinations.
        let mut martian = s0 == 0 || s0 == 127 || s0 >= 224 || d0 == 0 || d0 == 127;
        let mut local = false;
        for &a in self.port_addrs.iter() {
            martian |= a == s;
            local |= a == d;
        }
        (martian, local)
    }

    /// Whether port `port` has a kernel interface.
    #[inline]
    pub fn has_kernel(&self, port: u16) -> bool {
        self.kernel_ports.get(port as usize).copied().unwrap_or(false)
    }

    /// True once every worker runs on generation `gen` or later.
    pub fn all_workers_seen(&self, gen: u64) -> bool {
        self.seen_generation
            .iter()
            .all(|g| g.load(Ordering::Acquire) >= gen)
    }
}

/// A MAC address as one integer (the same whatever the CPU's byte order).
#[inline(always)]
fn mac_word(m: &[u8; 6]) -> u64 {
    u64::from_le_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 0, 0])
}

/// Where a packet goes after `Forwarder::process`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit on `port`; the frame is complete, L2 header included.
    Forward {
        port: u16,
    },
    /// The next hop `via` on `port` has no MAC yet: hold the frame and ask ARP.
    Resolve {
        port: u16,
        via: Ipv4Addr,
    },
    /// Another worker owns this packet's connection: hand it over.
    Redirect {
        worker: u16,
    },
    /// Consumed (an ARP reply); `learned` is an IP whose MAC is now known,
    /// so frames waiting for it can go.
    Consumed {
        learned: Option<Ipv4Addr>,
    },
    /// Not for the load balancer, on a port with a kernel interface: hand
    /// the frame, untouched, to the kernel (VRRP, traffic to the port's own
    /// address or to an owned address that is no VIP, ARP replies, other
    /// EtherTypes). Never given without a kernel interface.
    ToKernel,
    /// SYN proxy: a client packet of connection `conn`, whose real server
    /// has not answered the director's SYN yet. The worker keeps it and
    /// processes it again once `conn` appears in `synproxy_released`.
    Hold {
        conn: ConnId,
    },
    Drop(DropReason),
}

/// Per-worker counters besides drops. Plain integers: one writer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerCounters {
    pub rx_pkts: u64,
    pub rx_bytes: u64,
    pub conns_created: u64,
    pub nat_in: u64,
    pub nat_out: u64,
    pub dr_out: u64,
    pub tun_out: u64,
    pub icmp_translated: u64,
    pub local_replies: u64,
    pub arp_replies: u64,
    pub redirected_out: u64,
    pub redirected_in: u64,
    pub fragments_followed: u64,
    pub templates_created: u64,
    /// Packets `fast` forwarded whole (the rest went the general path).
    pub fast_path: u64,
    /// SYN proxy: SYN-ACKs with a cookie sent, cookies accepted (a
    /// connection to a real server opened), real servers' handshakes done.
    pub synproxy_syn_acks: u64,
    pub synproxy_accepted: u64,
    pub synproxy_established: u64,
    /// Client packets held until their real server answered (`Verdict::Hold`).
    pub synproxy_held: u64,
    /// FULLNAT packets forwarded client → real server and back.
    pub fnat_in: u64,
    pub fnat_out: u64,
    /// FULLNAT replies this worker owned, by the way they came: straight
    /// from the NIC, or through another worker's redirect, or put on this
    /// worker's queue by a NIC flow rule (`core::fnat`, `fnat::steer`).
    pub fnat_replies_direct: u64,
    pub fnat_replies_redirected: u64,
    pub fnat_replies_steered: u64,
    /// TOA options inserted, and left out for want of room.
    pub toa_inserted: u64,
    pub toa_skipped: u64,
    /// PROXY headers put in a segment (first sends and resends).
    pub proxy_inserted: u64,
}

/// Below this many connections the table stays in cache and warming a burst
/// would only cost time.
const WARM_MIN_CONNS: usize = 32 * 1024;
/// At most this many packets of a burst are warmed.
const WARM_BURST: usize = 64;

/// What every packet of a known connection does, on both paths (`track`
/// and `fast`): the state step, when the packet has its L4 header (`l4`),
/// and its `len` bytes in the real server's and service's traffic counters
/// (worker `worker`'s slots). A per-connection event hook belongs here.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn conn_packet(
    c: &mut Conn,
    dir: Direction,
    flags: u8,
    l4: bool,
    now: u32,
    timeouts: &Timeouts,
    worker: u16,
    len: usize,
) {
    if l4 {
        c.on_packet(dir, flags, now, timeouts);
    }
    count_traffic(c, worker, dir, len);
}

/// A packet of `len` bytes on connection `c` in direction `dir`, in its
/// real server's and service's traffic counters (worker `worker`'s slots).
#[inline(always)]
fn count_traffic(c: &Conn, worker: u16, dir: Direction, len: usize) {
    let w = worker as usize;
    // Straight-line: an iterator over the two cost a loop per packet.
    if let Some(t) = c.dest().map(|d| d.traffic.worker(w)) {
        match dir {
            Direction::Input => t.add_in(len),
            Direction::Output => t.add_out(len),
        }
    }
    if let Some(t) = c.svc().map(|s| s.worker(w)) {
        match dir {
            Direction::Input => t.add_in(len),
            Direction::Output => t.add_out(len),
        }
    }
}

/// Which worker owns connections of client `cip`, `mask` being the service
/// table's `owner_mask`: every client of one masked network gets one owner.
#[inline]
pub fn owner_of(cip: Ipv4Addr, mask: Ipv4Addr, workers: u16) -> u16 {
    if workers <= 1 {
        return 0;
    }
    let h = (u32::from(cip) & u32::from(mask)).wrapping_mul(0x9E37_79B1);
    ((h as u64 * workers as u64) >> 32) as u16
}

/// Non-first fragments carry no ports. The first fragment's verdict is kept
/// here, keyed by (src, dst, protocol, ident), so later fragments follow it:
/// to its connection, or, for a FULLNAT reply whose port named another
/// worker, to that worker (which then follows its own entry).
/// Fragments that arrive before their first one are dropped (counted).
const FRAG_SLOTS: usize = 256;
const FRAG_TTL_S: u32 = 5;

#[derive(Clone, Copy, Default)]
struct FragEntry {
    src: u32,
    dst: u32,
    ident: u16,
    proto: u8,
    out: bool,
    conn: u32,
    /// The worker the first fragment was redirected to, or `LOCAL`.
    worker: u16,
    expires: u32,
}

/// Where a non-first fragment goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FragFollow {
    /// To connection `conn` here, in direction `out`.
    Conn { out: bool, conn: u32 },
    /// To the worker its first fragment went to.
    Worker(u16),
}

impl FragEntry {
    const LOCAL: u16 = u16::MAX;
}

struct FragCache {
    slots: Box<[FragEntry; FRAG_SLOTS]>,
}

impl FragCache {
    fn slot(src: u32, dst: u32, ident: u16) -> usize {
        (src ^ dst.rotate_left(7) ^ (ident as u32).wrapping_mul(0x9E37_79B1)) as usize % FRAG_SLOTS
    }
    fn remember(&mut self, ip: &Ip, out: bool, conn: ConnId, now: u32) {
        self.put(ip, out, conn.index(), FragEntry::LOCAL, now);
    }
    fn remember_redirect(&mut self, ip: &Ip, worker: u16, now: u32) {
        self.put(ip, true, 0, worker, now);
    }
    fn put(&mut self, ip: &Ip, out: bool, conn: u32, worker: u16, now: u32) {
        let (src, dst, ident, proto) = (u32::from(ip.src), u32::from(ip.dst), ip.ident, ip.proto);
        let s = &mut self.slots[Self::slot(src, dst, ident)];
        *s = FragEntry {
            src,
            dst,
            ident,
            proto,
            out,
            conn,
            worker,
            expires: now.saturating_add(FRAG_TTL_S),
        };
    }
    fn find(&self, src: u32, dst: u32, ident: u16, proto: u8, now: u32) -> Option<FragFollow> {
        let s = &self.slots[Self::slot(src, dst, ident)];
        if !(s.expires > now && s.src == src && s.dst == dst && s.ident == ident && s.proto == proto) {
            return None;
        }
        Some(if s.worker == FragEntry::LOCAL {
            FragFollow::Conn {
                out: s.out,
                conn: s.conn,
            }
        } else {
            FragFollow::Worker(s.worker)
        })
    }
}

/// Whether the TCP or UDP checksum of an unfragmented packet holds (a UDP
/// datagram without checksum passes; a fragment cannot be checked, the
/// checksum covering the whole datagram).
///
/// Verified only on the packet that opens an LVS-NAT connection, before
/// scheduling. Like kernel IPVS without an application helper, packets of
/// established NAT connections are not verified: the RFC 1624 incremental
/// update keeps a wrong checksum exactly as wrong, so the receiver drops the
/// segment as it would have without us, and the per-packet path pays no
/// full-payload sum. DR and TUN leave the packet unchanged and never verify.
///
/// `nic`: the NIC's verdict where it gave one (`PacketBuf::rx_l4_csum`),
/// taken instead of the sum (for an unfragmented packet).
fn l4_checksum_ok(frame: &[u8], ip: &Ip, proto: Proto, nic: Option<bool>) -> bool {
    if ip.frag {
        return true;
    }
    if let Some(ok) = nic {
        return ok;
    }
    let Some(seg) = frame.get(ip.l2 + ip.hl..ip.l2 + ip.total) else {
        return false;
    };
    match proto {
        Proto::Tcp => TcpPacket::new_unchecked(seg).verify_checksum(ip.src, ip.dst),
        Proto::Udp => UdpPacket::new_unchecked(seg).verify_checksum(ip.src, ip.dst),
    }
}

/// What the per-packet path knows about an IPv4 packet once it is parsed.
#[derive(Clone, Copy)]
struct Ip {
    l2: usize,
    hl: usize,
    total: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ident: u16,
    frag: bool,
    first_frag: bool,
}

/// A connection's addresses and forward method, copied out of its entry.
#[derive(Clone, Copy)]
struct Endpoints {
    method: ForwardMethod,
    /// CIP:cport → VIP:vport.
    flow: FlowKey,
    rip: Ipv4Addr,
    rport: u16,
}

/// What the fast path reads of `Shared` on every packet, copied into the
/// worker once (none of it changes while the director runs), side by side:
/// one load each instead of a load through `shared` first.
#[repr(C, align(64))]
struct Hot {
    /// `Shared::port_macs`.
    port_macs: Box<[u64]>,
    /// `Shared::workers`.
    workers: u16,
    /// `CoreOptions::expire_nodest_conn`.
    expire_nodest_conn: bool,
}

/// The per-worker packet processor.
pub struct Forwarder {
    hot: Hot,
    pub worker: u16,
    shared: Arc<Shared>,
    snap: Arc<ServiceTable>,
    timeouts: Arc<Timeouts>,
    /// The owned addresses, switched between bursts like `snap`.
    owned: Arc<Owned>,
    scheds: Vec<Box<dyn Scheduler>>,
    pub conns: ConnTable,
    now: u32,
    pub drops: DropCounters,
    pub counters: WorkerCounters,
    frags: FragCache,
    /// Next hops whose entry went stale while still in use: the worker sends
    /// them a fresh ARP request after the burst.
    pub stale_hops: Vec<(u16, Ipv4Addr)>,
    /// Take established connections' packets through `fast` (on by
    /// default; off only to compare the two paths).
    pub fast_path: bool,
    /// The next hops `fast` resolved, named by connection entries.
    egress: egress::EgressCache,
    /// While a master sync daemon runs: decides which connections to send
    /// (`sync::threshold`); switched by `sync::worker_tick` between bursts.
    pub sync: Option<Box<crate::sync::SyncTap>>,
    /// SYN proxy state by connection id, made with the first proxied
    /// connection (see `synproxy`).
    synproxy: Option<Box<[synproxy::ProxySlot]>>,
    /// Proxied connections whose real server answered since the worker last
    /// looked: their held packets can go (`Verdict::Hold`). Bounded; see
    /// `synproxy::RELEASED_MAX`.
    pub synproxy_released: Vec<ConnId>,
    /// FULLNAT: this worker's local-address pools, one per service.
    pools: crate::fnat::pools::WorkerPools,
}

impl Forwarder {
    pub fn new(worker: u16, shared: Arc<Shared>, conn_capacity: u32) -> Self {
        let snap = shared.services.load_full();
        let timeouts = shared.timeouts.load_full();
        let owned = shared.owned.load_full();
        let scheds = snap.services().iter().map(|s| s.sched.clone_box()).collect();
        let seed = 0x5eed_0000_0000_0000 ^ ((worker as u64) << 32) ^ std::process::id() as u64;
        let shared_workers = shared.workers;
        let laddr_cfg = shared.laddr.clone();
        let hot = Hot {
            port_macs: shared.port_macs.clone().into_boxed_slice(),
            workers: shared.workers,
            expire_nodest_conn: shared.opts.expire_nodest_conn,
        };
        let mut f = Forwarder {
            hot,
            worker,
            shared,
            snap,
            timeouts,
            owned,
            scheds,
            conns: ConnTable::with_seed(conn_capacity, seed),
            now: 0,
            drops: DropCounters::default(),
            counters: WorkerCounters::default(),
            frags: FragCache {
                slots: Box::new([FragEntry::default(); FRAG_SLOTS]),
            },
            stale_hops: Vec::with_capacity(16),
            fast_path: true,
            egress: egress::EgressCache::default(),
            sync: None,
            synproxy: None,
            synproxy_released: Vec::with_capacity(synproxy::RELEASED_MAX),
            pools: crate::fnat::pools::WorkerPools::new(worker, shared_workers, laddr_cfg),
        };
        f.fnat_refresh();
        f
    }

    /// After a snapshot switch: the FULLNAT pools for it (between bursts;
    /// allocates), and the connection table's FULLNAT side once needed.
    fn fnat_refresh(&mut self) {
        if !self.snap.any_fnat() && self.snap.lips().is_empty() && !self.conns.fnat_enabled() {
            return;
        }
        if !self.conns.fnat_enabled() && self.worker == 0 && self.shared.workers > 1 {
            // Said once, when the first FULLNAT service appears.
            eprintln!(
                "rvs-dp: FULLNAT replies reach the worker owning their local port by NIC flow \
                 rules where a port has them (see 'flow steering' above), else through the \
                 software redirect rings; the workers count fnat_replies \
                 direct/redirected/steered"
            );
        }
        self.conns.enable_fnat();
        if let Err(e) = self.pools.rebuild(&self.snap) {
            eprintln!("rvs-dp: worker {}: FULLNAT local address pools: {e}", self.worker);
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn services(&self) -> &Arc<ServiceTable> {
        &self.snap
    }

    /// The owned addresses this worker forwards by.
    pub fn owned(&self) -> &Arc<Owned> {
        &self.owned
    }

    /// Whether the VIP `ip` is owned (always, without kernel interfaces).
    #[inline(always)]
    fn owns(&self, ip: Ipv4Addr) -> bool {
        self.owned.owns(ip)
    }

    /// Between bursts: picks up a new service snapshot and timeouts if the
    /// control thread published one. Returns true when it switched.
    pub fn refresh(&mut self) -> bool {
        let mut switched = false;
        {
            let cur = self.shared.services.load();
            if cur.generation != self.snap.generation || !Arc::ptr_eq(&cur, &self.snap) {
                self.snap = arc_swap::Guard::into_inner(cur);
                self.scheds = self.snap.services().iter().map(|s| s.sched.clone_box()).collect();
                self.fnat_refresh();
                switched = true;
            }
        }
        let t = self.shared.timeouts.load();
        if !Arc::ptr_eq(&t, &self.timeouts) {
            self.timeouts = arc_swap::Guard::into_inner(t);
        }
        let o = self.shared.owned.load();
        if !Arc::ptr_eq(&o, &self.owned) {
            self.owned = arc_swap::Guard::into_inner(o);
        }
        if let Some(g) = self.shared.seen_generation.get(self.worker as usize) {
            g.store(self.snap.generation, Ordering::Release);
        }
        switched
    }

    /// The coarse clock, in seconds; set by the worker once per burst.
    #[inline]
    pub fn set_now(&mut self, now_s: u32) {
        self.now = now_s;
    }

    pub fn now(&self) -> u32 {
        self.now
    }

    /// Incremental expiry: at most `budget` table slots examined.
    pub fn housekeeping(&mut self, budget: usize) -> usize {
        for s in self.scheds.iter_mut() {
            s.tick(self.now as u64);
        }
        let n = self.conns.expire(self.now, budget);
        if self.conns.has_fnat_freed() {
            self.return_fnat_ports();
        }
        n
    }

    /// Processes one frame received on `in_port`. `redirected` is true when
    /// another worker handed it over (so it is not redirected again).
    #[inline]
    pub fn process<B: PacketBuf>(&mut self, in_port: u16, pkt: &mut B, redirected: bool) -> Verdict {
        self.process_inline(in_port, pkt, redirected)
    }

    /// `process`, always inlined: `process_burst`'s loop, which runs it
    /// for every packet of a burst without a call (and the call's saving
    /// and restoring of registers) each time.
    #[inline(always)]
    fn process_inline<B: PacketBuf>(&mut self, in_port: u16, pkt: &mut B, redirected: bool) -> Verdict {
        if self.fast_path {
            if let Some(v) = self.fast(in_port, pkt, redirected) {
                return v;
            }
        }
        self.slow(in_port, pkt, redirected)
    }

    /// `process` past the fast path, out of line: the fast path's frame then
    /// holds only what it uses (fewer registers saved and restored per packet).
    #[inline(never)]
    fn slow<B: PacketBuf>(&mut self, in_port: u16, pkt: &mut B, redirected: bool) -> Verdict {
        if !redirected {
            self.counters.rx_pkts += 1;
            self.counters.rx_bytes += pkt.len() as u64;
        } else {
            self.counters.redirected_in += 1;
        }
        let v = self.classify(in_port, pkt, redirected);
        if let Verdict::Drop(r) = v {
            self.drops.count(r);
        }
        if self.conns.has_fnat_freed() {
            self.return_fnat_ports();
        }
        v
    }

    /// A packet given back as `Verdict::Hold`, once its connection is in
    /// `synproxy_released`: the general path again, without counting it as
    /// received a second time.
    pub fn process_held<B: PacketBuf>(&mut self, in_port: u16, pkt: &mut B) -> Verdict {
        let v = self.classify(in_port, pkt, true);
        if let Verdict::Drop(r) = v {
            self.drops.count(r);
        }
        if self.conns.has_fnat_freed() {
            self.return_fnat_ports();
        }
        v
    }

    /// Processes a burst received on `in_port`, `verdicts[i]` for `pkts[i]`.
    /// With a large table it first walks the burst to request each packet's
    /// bucket head, then each chain's first entry, so the cache misses of the
    /// whole burst overlap instead of stalling packet after packet.
    #[inline(never)]
    pub fn process_burst<B: PacketBuf>(&mut self, in_port: u16, pkts: &mut [B], verdicts: &mut [Verdict]) {
        let n = pkts.len().min(verdicts.len());
        if self.conns.len() >= WARM_MIN_CONNS {
            let mut buckets = [None; WARM_BURST];
            for (b, p) in buckets.iter_mut().zip(pkts.iter()) {
                *b = self.prefetch_bucket(p.data());
            }
            for b in buckets.iter().take(n).flatten() {
                self.conns.prefetch_chain(*b);
            }
            for b in buckets.iter().take(n).flatten() {
                self.conns.prefetch_chain_next(*b);
            }
        }
        for (p, v) in pkts.iter_mut().zip(verdicts.iter_mut()).take(n) {
            *v = self.process_inline(in_port, p, false);
        }
    }

    /// Requests the bucket head `lookup_in`/`lookup_out` will read for this
    /// frame (a cheap, partial parse; anything unusual is just not prefetched).
    #[inline]
    fn prefetch_bucket(&self, d: &[u8]) -> Option<Bucket> {
        let eth = EthernetFrame::new_unchecked(d);
        let ip = Ipv4Packet::new_unchecked(eth.payload());
        if eth.ethertype() != EtherType::IPV4 || !ip.has_transport_header() {
            return None;
        }
        let proto = Proto::from_ip_proto(ip.protocol())?;
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        // TCP and UDP put their ports at the same offsets.
        let l4 = UdpPacket::new_unchecked(ip.as_bytes().get(ip.header_len()..).unwrap_or(&[]));
        let (sport, dport) = (l4.src_port(), l4.dst_port());
        let flow = FlowKey::new(proto, src, sport, dst, dport);
        Some(self.conns.prefetch(flow, !self.snap.is_vip(dst)))
    }

    #[inline]
    fn classify<B: PacketBuf>(&mut self, in_port: u16, pkt: &mut B, redirected: bool) -> Verdict {
        let Some(port) = self.shared.ports.get(in_port as usize).copied() else {
            return Verdict::Drop(DropReason::NotForUs);
        };
        let (l2, ethertype) = {
            let Ok(eth) = EthernetFrame::new_checked(pkt.data()) else {
                return Verdict::Drop(DropReason::TruncatedL2);
            };
            let dst = eth.dst();
            if dst != port.mac && !dst.is_broadcast() {
                // Multicast (VRRP's 224.0.0.18, IPv6 neighbour discovery)
                // is the kernel's.
                if dst.is_multicast() && self.shared.has_kernel(in_port) {
                    return Verdict::ToKernel;
                }
                return Verdict::Drop(DropReason::NotOurMac);
            }
            (eth.header_len(), eth.ethertype())
        };
        if ethertype == EtherType::IPV4 {
            let v = self.ipv4(in_port, pkt, l2, redirected);
            // An owned address that is no VIP (a floating gateway) is the kernel's.
            if v == Verdict::Drop(DropReason::NotForUs) && self.shared.has_kernel(in_port) {
                let d = pkt.data().get(l2..).map(Ipv4Packet::new_checked);
                if let Some(Ok(ip)) = d {
                    if self.owned.listed(ip.dst_addr()) {
                        return Verdict::ToKernel;
                    }
                }
            }
            v
        } else if ethertype == EtherType::ARP {
            self.arp(in_port, &port, pkt, l2)
        } else if self.shared.has_kernel(in_port) {
            Verdict::ToKernel
        } else {
            Verdict::Drop(DropReason::UnknownEtherType)
        }
    }

    fn arp<B: PacketBuf>(&mut self, in_port: u16, port: &PortInfo, pkt: &mut B, l2: usize) -> Verdict {
        let (snap, owned) = (&self.snap, &self.owned);
        // Without kernel interfaces every VIP is ours; with them, whatever
        // the kernel interfaces hold (owned VIPs and floating addresses).
        // Local addresses are always ours (see `ownership`), on their port.
        let ours = |ip| {
            snap.lip(ip).is_some_and(|l| l.port == in_port)
                || if owned.is_all() {
                    snap.is_vip(ip)
                } else {
                    owned.listed(ip)
                }
        };
        let kernel = self.shared.has_kernel(in_port);
        // A reply may answer the kernel's own request: it gets the frame,
        // after we learned from it (held packets go at the next housekeeping).
        let is_reply = kernel
            && matches!(
                pkt.data().get(l2..).map(ArpPacket::new_checked),
                Some(Ok(a)) if a.operation() == ArpOperation::Reply
            );
        match arp::input(&self.shared.neigh, port, ours, self.now, pkt.data_mut(), l2) {
            ArpInput::Replied => {
                self.counters.arp_replies += 1;
                Verdict::Forward { port: in_port }
            }
            _ if is_reply => Verdict::ToKernel,
            ArpInput::Learned(ip) => Verdict::Consumed { learned: Some(ip) },
            ArpInput::Ignored => Verdict::Drop(DropReason::ArpIgnored),
        }
    }

    #[inline(always)]
    fn parse_ip(&self, data: &[u8], l2: usize, nic_csum: Option<bool>) -> Result<Ip, DropReason> {
        let bytes = data.get(l2..).ok_or(DropReason::MalformedIpv4)?;
        let ip = Ipv4Packet::new_checked(bytes).map_err(|_| DropReason::MalformedIpv4)?;
        // The NIC's verdict where it gave one (`PacketBuf::rx_ip_csum`).
        if !nic_csum.unwrap_or_else(|| ip.verify_checksum()) {
            return Err(DropReason::BadIpChecksum);
        }
        Ok(Ip {
            l2,
            hl: ip.header_len(),
            total: ip.total_len() as usize,
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            proto: ip.protocol(),
            ident: ip.ident(),
            frag: ip.is_fragment(),
            first_frag: ip.is_first_fragment(),
        })
    }

    /// Martian addresses, and whether the packet is for one of our ports
    /// (`Shared::martian_or_local`).
    #[inline(always)]
    fn martian_or_local(&self, src: Ipv4Addr, dst: Ipv4Addr) -> (bool, bool) {
        self.shared.martian_or_local(src, dst)
    }

    #[inline]
    fn ipv4<B: PacketBuf>(&mut self, in_port: u16, pkt: &mut B, l2: usize, redirected: bool) -> Verdict {
        let ip = match self.parse_ip(pkt.data(), l2, pkt.rx_ip_csum()) {
            Ok(ip) => ip,
            Err(r) => return Verdict::Drop(r),
        };
        let (martian, local) = self.martian_or_local(ip.src, ip.dst);
        if martian {
            return Verdict::Drop(DropReason::Martian);
        }
        if local {
            // With a kernel interface, the kernel answers for the port's address.
            if self.shared.has_kernel(in_port) {
                return Verdict::ToKernel;
            }
            return self.local(in_port, pkt, &ip);
        }
        match ip.proto {
            IpProtocol::TCP => self.l4(in_port, pkt, &ip, Proto::Tcp, redirected),
            IpProtocol::UDP => self.l4(in_port, pkt, &ip, Proto::Udp, redirected),
            IpProtocol::ICMP => self.icmp(in_port, pkt, &ip, redirected),
            _ if self.snap.is_vip(ip.dst) => Verdict::Drop(DropReason::UnknownProtocol),
            _ => Verdict::Drop(DropReason::NotForUs),
        }
    }

    /// Packets to one of the director's own addresses: only ping is answered.
    fn local<B: PacketBuf>(&mut self, in_port: u16, pkt: &mut B, ip: &Ip) -> Verdict {
        if ip.proto == IpProtocol::ICMP && !ip.frag {
            return self.echo(in_port, pkt, ip);
        }
        Verdict::Drop(DropReason::NotForUs)
    }

    fn echo<B: PacketBuf>(&mut self, in_port: u16, pkt: &mut B, ip: &Ip) -> Verdict {
        let d = pkt.data();
        let Some(icmp_bytes) = d.get(ip.l2 + ip.hl..ip.l2 + ip.total) else {
            return Verdict::Drop(DropReason::MalformedIcmp);
        };
        let Ok(echo) = IcmpPacket::new_checked(icmp_bytes) else {
            return Verdict::Drop(DropReason::MalformedIcmp);
        };
        if !echo.is_echo_request() {
            return Verdict::Drop(DropReason::IcmpUnhandled);
        }
        if !echo.verify_checksum() {
            return Verdict::Drop(DropReason::MalformedIcmp);
        }
        match icmp::echo_reply(pkt.data_mut(), ip.l2, ip.hl) {
            Ok(()) => {
                self.counters.local_replies += 1;
                Verdict::Forward { port: in_port }
            }
            Err(r) => Verdict::Drop(r),
        }
    }

    /// The worker that must handle a packet whose client is `cip`, if not us.
    #[inline]
    fn foreign_owner(&mut self, cip: Ipv4Addr, redirected: bool) -> Option<u16> {
        let n = self.shared.workers;
        if n <= 1 || redirected {
            return None;
        }
        let o = owner_of(cip, self.snap.owner_mask(), n);
        if o == self.worker {
            None
        } else {
            self.counters.redirected_out += 1;
            Some(o)
        }
    }

    #[inline(always)]
    fn l4<B: PacketBuf>(
        &mut self,
        in_port: u16,
        pkt: &mut B,
        ip: &Ip,
        proto: Proto,
        redirected: bool,
    ) -> Verdict {
        let to_vip = self.snap.is_vip(ip.dst);
        if to_vip && !self.owns(ip.dst) {
            return Verdict::Drop(DropReason::VipNotOwned);
        }
        // A reply to a local address: its destination port names the owner,
        // checked once the ports are read.
        let lip = if to_vip { None } else { self.snap.lip(ip.dst) };
        let (to_lip, steered) = (lip.is_some(), lip.is_some_and(|l| l.steers(in_port, proto)));
        let cip = if to_vip { ip.src } else { ip.dst };
        if !to_lip {
            if let Some(worker) = self.foreign_owner(cip, redirected) {
                return Verdict::Redirect { worker };
            }
        }
        if ip.frag && !ip.first_frag {
            return self.follow_fragment(in_port, pkt, ip, redirected);
        }
        // Ports and TCP flags, checked against what the packet holds.
        let (sport, dport, flags) = {
            let Some(seg) = pkt.data().get(ip.l2 + ip.hl..ip.l2 + ip.total) else {
                return Verdict::Drop(DropReason::MalformedL4);
            };
            match proto {
                // A first fragment need not hold the whole header its length fields describe.
                Proto::Tcp => {
                    let t = TcpPacket::new_unchecked(seg);
                    let doff = t.header_len();
                    if seg.len() < tcp::HEADER_LEN || doff < tcp::HEADER_LEN || (!ip.frag && doff > seg.len())
                    {
                        return Verdict::Drop(DropReason::MalformedL4);
                    }
                    (t.src_port(), t.dst_port(), t.flags())
                }
                Proto::Udp => {
                    let u = UdpPacket::new_unchecked(seg);
                    let ulen = usize::from(u.len());
                    if seg.len() < udp::HEADER_LEN
                        || (!ip.frag && (ulen < udp::HEADER_LEN || ulen > seg.len()))
                    {
                        return Verdict::Drop(DropReason::MalformedL4);
                    }
                    (u.src_port(), u.dst_port(), 0)
                }
            }
        };
        let flow = FlowKey::new(proto, ip.src, sport, ip.dst, dport);
        if to_vip {
            let found = self.conns.lookup_in(flow, self.now);
            if proto == Proto::Tcp
                && self.snap.any_syn_proxy()
                && found.is_none_or(|id| flags & TcpFlags::SYN != 0 && self.reuse_ends(id))
            {
                if let Some(v) = self.syn_proxy_open(in_port, pkt, ip, flow, flags) {
                    if let (Some(id), Verdict::Forward { .. }) = (found, &v) {
                        // A SYN on the reused port of a closed connection (the
                        // only way `found` gets here): the old one ends, the
                        // cookie answer went out.
                        self.conns.remove(id);
                    }
                    return v;
                }
            }
            let id = match found {
                Some(id) if flags & TcpFlags::SYN != 0 && self.reuse_ends(id) => {
                    // The client reused the port of a closed connection: a new
                    // connection, scheduled and counted as such.
                    self.conns.remove(id);
                    match self.new_conn(in_port, pkt, ip, flow, flags, pkt.rx_l4_csum()) {
                        Ok(id) => id,
                        Err(v) => return v,
                    }
                }
                Some(id) => id,
                None => match self.new_conn(in_port, pkt, ip, flow, flags, pkt.rx_l4_csum()) {
                    Ok(id) => id,
                    Err(v) => return v,
                },
            };
            if ip.frag {
                self.frags.remember(ip, false, id, self.now);
            }
            if self.synproxy.is_some() {
                if let Err(v) = self.syn_proxy_in(pkt, ip, id) {
                    return v;
                }
            }
            self.xmit_in(in_port, pkt, ip, id, flags, true)
        } else {
            if to_lip {
                if let Some(worker) = self.fnat_reply_owner(dport, redirected, steered) {
                    if ip.frag {
                        // The rest of the datagram has no port to name its owner.
                        self.frags.remember_redirect(ip, worker, self.now);
                    }
                    return Verdict::Redirect { worker };
                }
            }
            let Some(id) = self.conns.lookup_out(flow, self.now) else {
                return Verdict::Drop(if to_lip {
                    DropReason::OutNoConn
                } else {
                    DropReason::NotForUs
                });
            };
            if ip.frag {
                self.frags.remember(ip, true, id, self.now);
            }
            if self.synproxy.is_some() {
                if let Some(v) = self.syn_proxy_out(in_port, pkt, ip, id, flags) {
                    return v;
                }
            }
            self.xmit_out(in_port, pkt, ip, id, flags, true)
        }
    }

    /// Whether a SYN that matches connection `id` ends it, to be scheduled
    /// as a new connection: the kernel's is_new_conn_expected under
    /// `conn_reuse_mode` (see `CoreOptions`).
    #[cold]
    fn reuse_ends(&self, id: ConnId) -> bool {
        let mode = self.shared.opts.conn_reuse_mode;
        let Some(c) = self.conns.get(id) else {
            return false;
        };
        if mode == 0 || c.proto() != Proto::Tcp || c.template().is_some() {
            return false;
        }
        match c.state() {
            TcpState::TimeWait | TcpState::Close => true,
            TcpState::FinWait => mode & CONN_REUSE_FIN_WAIT_NO_OUTPUT != 0 && c.no_output(),
            _ => false,
        }
    }

    fn follow_fragment<B: PacketBuf>(
        &mut self,
        in_port: u16,
        pkt: &mut B,
        ip: &Ip,
        redirected: bool,
    ) -> Verdict {
        let (out, idx) = match self
            .frags
            .find(ip.src.into(), ip.dst.into(), ip.ident, ip.proto, self.now)
        {
            Some(FragFollow::Conn { out, conn }) => (out, conn),
            // Never passed on twice: the owner follows its own entry or drops.
            Some(FragFollow::Worker(worker)) if !redirected => {
                self.counters.redirected_out += 1;
                return Verdict::Redirect { worker };
            }
            _ => return Verdict::Drop(DropReason::Fragment),
        };
        let id = ConnId(idx);
        // The slot may have been reused since the first fragment; a template
        // there is not the connection the fragments belong to.
        if self.conns.get(id).is_none_or(|c| c.is_template()) {
            return Verdict::Drop(DropReason::Fragment);
        }
        self.counters.fragments_followed += 1;
        if out {
            self.xmit_out(in_port, pkt, ip, id, 0, false)
        } else {
            self.xmit_in(in_port, pkt, ip, id, 0, false)
        }
    }

    /// A connection for `flow` (CIP:cport → VIP:vport), if its service can take it.
    /// `nic_l4_csum`: the NIC's verdict on the packet's TCP/UDP checksum
    /// (`PacketBuf::rx_l4_csum`), None for one rewritten since it arrived.
    fn new_conn<B: PacketBuf>(
        &mut self,
        in_port: u16,
        pkt: &mut B,
        ip: &Ip,
        flow: FlowKey,
        flags: u8,
        nic_l4_csum: Option<bool>,
    ) -> Result<ConnId, Verdict> {
        let proto = flow.proto;
        let Some(si) = self.snap.lookup(proto, flow.dst, flow.dport) else {
            return Err(Verdict::Drop(DropReason::NoService));
        };
        const OPENERS: u8 = TcpFlags::SYN | TcpFlags::ACK | TcpFlags::RST | TcpFlags::FIN;
        if proto == Proto::Tcp && flags & OPENERS != TcpFlags::SYN {
            // Only a bare SYN opens a connection (no ACK, RST or FIN).
            return Err(Verdict::Drop(DropReason::NoConnNotSyn));
        }
        let snap = &self.snap;
        let Some(svc) = snap.get(si) else {
            return Err(Verdict::Drop(DropReason::NoService));
        };
        // LVS-NAT rewrites the packet: a corrupt one must not open a
        // connection (nor reach the scheduler). Checked here only, once per
        // connection; see `l4_checksum_ok`.
        if snap.rewrites(si) && !l4_checksum_ok(pkt.data(), ip, proto, nic_l4_csum) {
            return Err(Verdict::Drop(DropReason::BadL4Checksum));
        }
        let now = self.now;
        let mut template = None;
        let mut chosen = None;
        if let Some(p) = svc.persistence {
            let tflow = FlowKey::new(proto, client_net(flow.src, p.netmask), 0, flow.dst, svc.key.port);
            if let Some(t) = self.conns.lookup_template(tflow, now) {
                if let Some(tc) = self.conns.get(t) {
                    // The kernel keeps using a template's server while it exists,
                    // even quiesced, unless expire_quiescent_template is on
                    // (ip_vs_check_template).
                    let expire_quiescent = self.shared.opts.expire_quiescent_template;
                    match svc.dest_index(tc.rip(), tc.rport()) {
                        Some(di)
                            if !(expire_quiescent && svc.dests.get(di).is_some_and(|d| d.weight == 0)) =>
                        {
                            chosen = Some(di);
                            template = Some(t);
                        }
                        _ => {
                            self.conns.remove(t);
                        }
                    }
                }
            }
            if chosen.is_none() {
                let Some(sched) = self.scheds.get_mut(si) else {
                    return Err(Verdict::Drop(DropReason::NoService));
                };
                if let Some(di) = sched.schedule(&svc.dests, &flow) {
                    let d = &svc.dests[di];
                    let t = self.conns.insert_template(
                        NewTemplate {
                            flow: tflow,
                            rip: d.rip,
                            rport: d.port,
                            method: d.method,
                            dest: Some(d.stats.clone()),
                        },
                        p.timeout_s,
                        now,
                    );
                    match t {
                        Ok(t) => {
                            self.counters.templates_created += 1;
                            template = Some(t);
                        }
                        Err(_) => return Err(Verdict::Drop(DropReason::ConnTableFull)),
                    }
                    chosen = Some(di);
                }
            }
        } else if let Some(sched) = self.scheds.get_mut(si) {
            chosen = sched.schedule(&svc.dests, &flow);
        }
        let Some(di) = chosen else {
            if proto == Proto::Tcp && self.shared.opts.tcp_rst_no_dest {
                self.drops.count(DropReason::NoRealServer);
                return match icmp::tcp_rst_for_syn(pkt, ip.l2, ip.hl) {
                    Ok(()) => {
                        self.counters.local_replies += 1;
                        Err(Verdict::Forward { port: in_port })
                    }
                    Err(r) => Err(Verdict::Drop(r)),
                };
            }
            return Err(Verdict::Drop(DropReason::NoRealServer));
        };
        let Some(d) = svc.dests.get(di) else {
            return Err(Verdict::Drop(DropReason::NoRealServer));
        };
        // Port-0 (all ports) services keep the client's port.
        let rport = if d.port == 0 { flow.dport } else { d.port };
        let new = NewConn {
            flow,
            rip: d.rip,
            rport,
            method: d.method,
            dest: Some(d.stats.clone()),
            svc: Some(svc.stats.clone()),
            template,
        };
        let id = if d.method == ForwardMethod::FullNat {
            let syn_seq = (proto == Proto::Tcp)
                .then(|| {
                    let seg = pkt.data().get(ip.l2 + ip.hl..).unwrap_or(&[]);
                    crate::wire::bytes::get_u32(seg, tcp::field::SEQ)
                })
                .filter(|_| !ip.frag);
            let ends = (
                std::net::SocketAddrV4::new(flow.src, flow.sport),
                std::net::SocketAddrV4::new(flow.dst, flow.dport),
            );
            let client_addr = svc.client_addr;
            let side = self
                .fnat_lease(si, client_addr, ends, syn_seq)
                .map_err(Verdict::Drop)?;
            match self.conns.insert_fnat(new, side, now) {
                Ok(id) => id,
                Err(_) => {
                    self.pools.free(side.laddr, now);
                    return Err(Verdict::Drop(DropReason::ConnTableFull));
                }
            }
        } else {
            self.conns
                .insert(new, now)
                .map_err(|_| Verdict::Drop(DropReason::ConnTableFull))?
        };
        let Some(svc) = self.snap.get(si) else {
            return Err(Verdict::Drop(DropReason::NoService));
        };
        let Some(d) = svc.dests.get(di) else {
            return Err(Verdict::Drop(DropReason::NoRealServer));
        };
        let w = self.worker as usize;
        d.stats.traffic.worker(w).add_conn();
        svc.stats.worker(w).add_conn();
        self.counters.conns_created += 1;
        Ok(id)
    }

    /// Sends a finished packet toward `hop`: Ethernet addresses from the
    /// neighbour table, or a `Resolve` verdict when the MAC is unknown.
    #[inline(always)]
    fn send_via<B: PacketBuf>(&mut self, pkt: &mut B, hop: NextHop) -> Verdict {
        let Some(port) = self.shared.ports.get(hop.port as usize) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let mac = match self.shared.neigh.lookup(hop.via, self.now) {
            Neigh::Resolved(m) => m,
            Neigh::Stale(m) => {
                if self.stale_hops.len() < self.stale_hops.capacity()
                    && !self.stale_hops.contains(&(hop.port, hop.via))
                {
                    self.stale_hops.push((hop.port, hop.via));
                }
                m
            }
            Neigh::Unknown => {
                self.shared.neigh.want(hop.via);
                return Verdict::Resolve {
                    port: hop.port,
                    via: hop.via,
                };
            }
        };
        dr::set_macs(pkt.data_mut(), mac, port.mac);
        Verdict::Forward { port: hop.port }
    }

    /// What every packet of a known connection goes through, both ways:
    /// expire_nodest_conn, the TCP state machine (packets with an L4 header),
    /// and the real server's and service's traffic counters. Returns the
    /// connection's endpoints, read from the one access to its entry.
    #[inline(always)]
    fn track(
        &mut self,
        id: ConnId,
        dir: Direction,
        flags: u8,
        l4: bool,
        len: usize,
    ) -> Result<Endpoints, DropReason> {
        let missing = match dir {
            Direction::Input => DropReason::NoConnNotSyn,
            Direction::Output => DropReason::OutNoConn,
        };
        // The option first: without it, no need to reach the real server's counters.
        if self.shared.opts.expire_nodest_conn {
            let c = self.conns.get(id).ok_or(missing)?;
            if c.dest().is_some_and(|d| d.removed.load(Ordering::Relaxed)) {
                self.conns.remove(id);
                return Err(DropReason::DestRemoved);
            }
        }
        let c = self
            .conns
            .get_mut(id)
            .filter(|c| !c.is_template())
            .ok_or(missing)?;
        conn_packet(c, dir, flags, l4, self.now, &self.timeouts, self.worker, len);
        let e = Endpoints {
            method: c.method(),
            flow: c.flow(),
            rip: c.rip(),
            rport: c.rport(),
        };
        if let (Some(t), Direction::Input, true) = (self.sync.as_deref_mut(), dir, l4) {
            t.on_input(&self.conns, id, self.now, self.synproxy.as_deref());
        }
        Ok(e)
    }

    /// Client → real server on connection `id`. `l4`: the packet has its L4
    /// header (false for a non-first fragment).
    #[inline(always)]
    fn xmit_in<B: PacketBuf>(
        &mut self,
        in_port: u16,
        pkt: &mut B,
        ip: &Ip,
        id: ConnId,
        flags: u8,
        l4: bool,
    ) -> Verdict {
        let e = match self.track(id, Direction::Input, flags, l4, pkt.len()) {
            Ok(e) => e,
            Err(r) => return Verdict::Drop(r),
        };
        let (method, rip, rport) = (e.method, e.rip, e.rport);
        let Some(hop) = self.shared.routes.lookup(rip) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        match method {
            ForwardMethod::Nat => {
                if let Some(mtu) = self.too_big_for(hop, ip.total) {
                    return self.too_big(in_port, pkt, ip.l2, mtu);
                }
                let Some(ipb) = pkt.data_mut().get_mut(ip.l2..ip.l2 + ip.total) else {
                    return Verdict::Drop(DropReason::MalformedIpv4);
                };
                if let Err(r) = nat::nat_in(ipb, ip.hl, rip, rport, l4) {
                    return Verdict::Drop(r);
                }
                self.counters.nat_in += 1;
                self.send_via(pkt, hop)
            }
            ForwardMethod::Dr => {
                if let Some(mtu) = self.too_big_for(hop, ip.total) {
                    return self.too_big(in_port, pkt, ip.l2, mtu);
                }
                self.counters.dr_out += 1;
                self.send_via(pkt, hop)
            }
            ForwardMethod::Tun => match self.encapsulate_to(pkt, ip.l2, rip, hop) {
                Ok(tun::TunOutcome::Encapsulated) => {
                    self.counters.tun_out += 1;
                    self.send_via(pkt, hop)
                }
                Ok(tun::TunOutcome::FragNeeded { mtu }) => self.frag_needed(in_port, pkt, ip.l2, mtu),
                Err(r) => Verdict::Drop(r),
            },
            ForwardMethod::FullNat => {
                if let Some(mtu) = self.too_big_for(hop, ip.total) {
                    return self.too_big(in_port, pkt, ip.l2, mtu);
                }
                self.fnat_in(pkt, ip, id, &e, l4, hop)
            }
        }
    }

    /// The MTU of `hop`'s port.
    #[inline(always)]
    fn egress_mtu(&self, hop: NextHop) -> Option<u16> {
        self.shared.ports.get(hop.port as usize).map(|p| p.mtu)
    }

    /// The egress MTU of `hop`'s port when an IP packet of `total` bytes
    /// does not fit it.
    #[inline(always)]
    fn too_big_for(&self, hop: NextHop, total: usize) -> Option<u16> {
        let mtu = self.egress_mtu(hop)?;
        (total > usize::from(mtu)).then_some(mtu)
    }

    /// A packet bigger than the egress `mtu`, as the kernel's
    /// ensure_mtu_is_adequate: with DF set, an ICMP "fragmentation needed"
    /// carrying `mtu` goes back to its sender; without DF the kernel would
    /// fragment, we drop it (`TooBig`): fragmenting would need chained mbufs.
    #[cold]
    fn too_big<B: PacketBuf>(&mut self, in_port: u16, pkt: &mut B, l2: usize, mtu: u16) -> Verdict {
        let df = pkt
            .data()
            .get(l2..)
            .is_some_and(|b| Ipv4Packet::new_unchecked(b).dont_frag());
        if df {
            self.frag_needed(in_port, pkt, l2, mtu)
        } else {
            Verdict::Drop(DropReason::TooBig)
        }
    }

    /// Turns the packet into an ICMP "fragmentation needed" back out of
    /// `in_port`, from that port's address.
    fn frag_needed<B: PacketBuf>(&mut self, in_port: u16, pkt: &mut B, l2: usize, mtu: u16) -> Verdict {
        let Some(from) = self.shared.ports.get(in_port as usize).map(|p| p.addr) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        match icmp::frag_needed(pkt, l2, from, mtu) {
            Ok(()) => {
                self.counters.local_replies += 1;
                Verdict::Forward { port: in_port }
            }
            Err(r) => Verdict::Drop(r),
        }
    }

    /// IP-in-IP toward `rip` from the address of the port `hop` leaves by,
    /// within that port's MTU.
    #[inline]
    fn encapsulate_to<B: PacketBuf>(
        &self,
        pkt: &mut B,
        l2: usize,
        rip: Ipv4Addr,
        hop: NextHop,
    ) -> Result<tun::TunOutcome, DropReason> {
        let out = self
            .shared
            .ports
            .get(hop.port as usize)
            .ok_or(DropReason::NoRoute)?;
        tun::encapsulate(pkt, l2, out.addr, rip, out.mtu)
    }

    /// Real server → client (LVS-NAT replies) on connection `id`.
    #[inline(always)]
    fn xmit_out<B: PacketBuf>(
        &mut self,
        in_port: u16,
        pkt: &mut B,
        ip: &Ip,
        id: ConnId,
        flags: u8,
        l4: bool,
    ) -> Verdict {
        let e = match self.track(id, Direction::Output, flags, l4, pkt.len()) {
            Ok(e) => e,
            Err(r) => return Verdict::Drop(r),
        };
        let (vip, vport, cip) = (e.flow.dst, e.flow.dport, e.flow.src);
        let Some(hop) = self.shared.routes.lookup(cip) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        if let Some(mtu) = self.too_big_for(hop, ip.total) {
            return self.too_big(in_port, pkt, ip.l2, mtu);
        }
        if e.method == ForwardMethod::FullNat {
            return self.fnat_out(pkt, ip, id, &e, l4, hop);
        }
        let Some(ipb) = pkt.data_mut().get_mut(ip.l2..ip.l2 + ip.total) else {
            return Verdict::Drop(DropReason::MalformedIpv4);
        };
        if let Err(r) = nat::nat_out(ipb, ip.hl, vip, vport, l4) {
            return Verdict::Drop(r);
        }
        self.counters.nat_out += 1;
        self.send_via(pkt, hop)
    }

    fn icmp<B: PacketBuf>(&mut self, in_port: u16, pkt: &mut B, ip: &Ip, redirected: bool) -> Verdict {
        if ip.frag {
            return Verdict::Drop(DropReason::Fragment);
        }
        let to_vip = self.snap.is_vip(ip.dst);
        if to_vip && !self.owns(ip.dst) {
            return Verdict::Drop(DropReason::VipNotOwned);
        }
        // The quoted datagram: IP header + ports.
        let (inner_src, inner_dst, inner_proto, inner_sport, inner_dport) = {
            let Some(m) = pkt.data().get(ip.l2 + ip.hl..ip.l2 + ip.total) else {
                return Verdict::Drop(DropReason::MalformedIcmp);
            };
            let Ok(msg) = IcmpPacket::new_checked(m) else {
                return Verdict::Drop(DropReason::MalformedIcmp);
            };
            let t = msg.msg_type();
            // Pings to a VIP or a local address are answered.
            if t == IcmpType::ECHO_REQUEST && (to_vip || self.snap.lip(ip.dst).is_some()) {
                return self.echo(in_port, pkt, ip);
            }
            // Redirects are not relayed: they are about routes, not connections.
            use IcmpType as T;
            if !matches!(
                t,
                T::DEST_UNREACHABLE | T::SOURCE_QUENCH | T::TIME_EXCEEDED | T::PARAMETER_PROBLEM
            ) {
                return Verdict::Drop(if to_vip {
                    DropReason::IcmpUnhandled
                } else {
                    DropReason::NotForUs
                });
            }
            let inner = Ipv4Packet::new_unchecked(msg.inner());
            let ihl = inner.header_len();
            if inner.as_bytes().len() < ihl + 4 || ihl < ipv4::HEADER_LEN || inner.version() != 4 {
                return Verdict::Drop(DropReason::MalformedIcmp);
            }
            // Only the ports of the quoted L4 header are there for sure.
            let ports = UdpPacket::new_unchecked(inner.as_bytes().get(ihl..).unwrap_or(&[]));
            (
                inner.src_addr(),
                inner.dst_addr(),
                inner.protocol(),
                ports.src_port(),
                ports.dst_port(),
            )
        };
        let Some(proto) = Proto::from_ip_proto(inner_proto) else {
            return Verdict::Drop(DropReason::IcmpUnhandled);
        };
        // The client is the quoted datagram's destination when the error is
        // about our reply to it (headed for the VIP), else the outer destination.
        let cip = if to_vip { inner_dst } else { ip.dst };
        // An error to a local address quotes LIP:lport as its source: the
        // port names the owner, as for replies.
        let to_lip = !to_vip && self.snap.lip(ip.dst).is_some();
        if to_lip {
            let n = self.shared.workers;
            if n > 1 && !redirected {
                let o = crate::fnat::laddr::owner_of_port(inner_sport, n);
                if o != self.worker {
                    self.counters.redirected_out += 1;
                    return Verdict::Redirect { worker: o };
                }
            }
        } else if let Some(worker) = self.foreign_owner(cip, redirected) {
            return Verdict::Redirect { worker };
        }
        // The quoted datagram travelled the other way: as the table keys it,
        // CIP:cport → VIP:vport (to the VIP) or RIP:rport → CIP:cport.
        let flow = FlowKey::new(proto, inner_dst, inner_dport, inner_src, inner_sport);
        if to_vip {
            let Some(id) = self.conns.lookup_in(flow, self.now) else {
                return Verdict::Drop(DropReason::IcmpNoConn);
            };
            let Some(c) = self.conns.get(id) else {
                return Verdict::Drop(DropReason::IcmpNoConn);
            };
            let (method, rip, rport) = (c.method(), c.rip(), c.rport());
            let Some(hop) = self.shared.routes.lookup(rip) else {
                return Verdict::Drop(DropReason::NoRoute);
            };
            // No "fragmentation needed" about an ICMP error (the kernel's
            // ensure_mtu_is_adequate skips them too); we do not fragment.
            if method != ForwardMethod::Tun && self.too_big_for(hop, ip.total).is_some() {
                return Verdict::Drop(DropReason::TooBig);
            }
            self.counters.icmp_translated += 1;
            match method {
                ForwardMethod::Nat => {
                    let Some(ipb) = pkt.data_mut().get_mut(ip.l2..ip.l2 + ip.total) else {
                        return Verdict::Drop(DropReason::MalformedIcmp);
                    };
                    if let Err(r) = icmp::translate_error_in(ipb, ip.hl, rip, rport) {
                        return Verdict::Drop(r);
                    }
                    self.send_via(pkt, hop)
                }
                ForwardMethod::Dr => self.send_via(pkt, hop),
                ForwardMethod::Tun => match self.encapsulate_to(pkt, ip.l2, rip, hop) {
                    Ok(tun::TunOutcome::Encapsulated) => self.send_via(pkt, hop),
                    Ok(tun::TunOutcome::FragNeeded { .. }) => Verdict::Drop(DropReason::TooBig),
                    Err(r) => Verdict::Drop(r),
                },
                ForwardMethod::FullNat => {
                    let Some(laddr) = self.fnat_laddr(id) else {
                        return Verdict::Drop(DropReason::IcmpNoConn);
                    };
                    let Some(ipb) = pkt.data_mut().get_mut(ip.l2..ip.l2 + ip.total) else {
                        return Verdict::Drop(DropReason::MalformedIcmp);
                    };
                    // About our reply VIP:vport → CIP:cport: the server sent
                    // it as RIP:rport → LIP:lport.
                    let outer = (laddr.0, rip);
                    if let Err(r) = icmp::translate_error_fnat(ipb, ip.hl, outer, (rip, rport), laddr) {
                        return Verdict::Drop(r);
                    }
                    self.send_via(pkt, hop)
                }
            }
        } else {
            let Some(id) = self.conns.lookup_out(flow, self.now) else {
                return Verdict::Drop(DropReason::NotForUs);
            };
            let Some(c) = self.conns.get(id) else {
                return Verdict::Drop(DropReason::IcmpNoConn);
            };
            let (vip, vport, cip, cport, method) = (c.vip(), c.vport(), c.cip(), c.cport(), c.method());
            let Some(hop) = self.shared.routes.lookup(cip) else {
                return Verdict::Drop(DropReason::NoRoute);
            };
            if self.too_big_for(hop, ip.total).is_some() {
                return Verdict::Drop(DropReason::TooBig);
            }
            let Some(ipb) = pkt.data_mut().get_mut(ip.l2..ip.l2 + ip.total) else {
                return Verdict::Drop(DropReason::MalformedIcmp);
            };
            let r = if method == ForwardMethod::FullNat {
                // About LIP:lport → RIP:rport: the client sent it as
                // CIP:cport → VIP:vport.
                icmp::translate_error_fnat(ipb, ip.hl, (vip, cip), (cip, cport), (vip, vport))
            } else {
                icmp::translate_error_out(ipb, ip.hl, vip, vport)
            };
            if let Err(r) = r {
                return Verdict::Drop(r);
            }
            self.counters.icmp_translated += 1;
            self.send_via(pkt, hop)
        }
    }
}
