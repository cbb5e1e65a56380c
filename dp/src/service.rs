//! Virtual services, as the control plane describes them and the workers see
//! them: an immutable snapshot, swapped whole on every change. Their real
//! servers are `dest`'s.

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

pub use crate::dest::{
    DestStats, ForwardMethod, RealServer, SchedFlags, TrafficCounters, TrafficTotals, WorkerTraffic,
};
pub use crate::flow::Proto;
use crate::fnat::stats::LaddrStats;
pub use rvs_proto::command::ClientAddr;
pub use rvs_proto::types::ServiceKey;

/// A local address (LIP) of a FULLNAT service (`--add-laddr`), resolved to
/// the port it lives on; its counters live as long as the LIP is configured
/// or, removed, still used (`ServiceTable::with_retired_lips`).
#[derive(Clone, Debug)]
pub struct LocalAddress {
    pub addr: Ipv4Addr,
    /// Our port index.
    pub port: u16,
    pub stats: Arc<LaddrStats>,
    /// Protocols (`steer_bit`) whose replies NIC flow rules on `port`
    /// deliver to their owner (`fnat::steer`); set by the control plane.
    pub steered: u8,
}

/// The bit of `proto` in `LocalAddress::steered`.
#[inline(always)]
pub fn steer_bit(proto: Proto) -> u8 {
    match proto {
        Proto::Tcp => 1,
        Proto::Udp => 2,
    }
}

impl LocalAddress {
    /// Whether a reply of `proto` received on `in_port` was put on its
    /// queue by a flow rule (it reached its owner by the rule, not by luck).
    #[inline(always)]
    pub fn steers(&self, in_port: u16, proto: Proto) -> bool {
        self.port == in_port && self.steered & steer_bit(proto) != 0
    }
}

/// Persistence (ipvsadm `-p timeout`, `-M netmask`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Persistence {
    pub timeout_s: u32,
    pub netmask: Ipv4Addr,
}

/// One virtual service in a snapshot.
pub struct VirtualService {
    pub key: ServiceKey,
    pub sched_name: String,
    pub sched_opts: crate::sched::SchedOptions,
    pub persistence: Option<Persistence>,
    /// `-j enable`: SYNs answered with cookies (see `core::synproxy`).
    pub syn_proxy: bool,
    pub dests: Vec<RealServer>,
    /// FULLNAT: the local addresses its connections leave with, and what
    /// they tell the real server about the client.
    pub laddrs: Vec<LocalAddress>,
    pub client_addr: ClientAddr,
    /// Service-level traffic counters, shared across snapshots like `DestStats`.
    pub stats: Arc<WorkerTraffic>,
    /// The scheduler built for `dests`; each worker takes its own `clone_box`.
    pub sched: Box<dyn crate::sched::Scheduler>,
}

impl fmt::Debug for VirtualService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualService")
            .field("key", &self.key)
            .field("sched", &self.sched_name)
            .field("persistence", &self.persistence)
            .field("dests", &self.dests.len())
            .finish()
    }
}

impl VirtualService {
    /// Index of the real server `rip:port`, if this service has it.
    pub fn dest_index(&self, rip: Ipv4Addr, port: u16) -> Option<usize> {
        self.dests.iter().position(|d| d.rip == rip && d.port == port)
    }
}

const NO_SLOT: u32 = u32::MAX;

/// An immutable set of virtual services: what the workers forward by. The
/// control thread builds a new one for every change and publishes it whole.
#[derive(Debug)]
pub struct ServiceTable {
    pub generation: u64,
    services: Vec<VirtualService>,
    /// Open-addressed index over (proto, vip, port); power-of-two length.
    index: Vec<u32>,
    /// Every VIP, sorted, for "is this address ours" (ARP, classification).
    vips: Vec<Ipv4Addr>,
    /// The coarsest persistence netmask of all services (255.255.255.255 when
    /// none is persistent): what worker ownership hashes. See `core::owner_of`.
    owner_mask: Ipv4Addr,
    /// Some service has the SYN proxy: only then does a packet without a
    /// connection look for it (see `core::synproxy`).
    any_syn_proxy: bool,
    /// Every local address, sorted: those of the services, and retired ones
    /// that connections still use (`with_retired_lips`). The director owns
    /// them all: it answers ARP for them and takes their packets as replies.
    lips: Vec<LocalAddress>,
    /// One bit per local address (`lip_bit`): an address whose bit is clear
    /// is none, without the search. Every reply a NAT director forwards
    /// asks (`lip`), and is answered here.
    lip_filter: u64,
    /// Some service has a FULLNAT real server.
    any_fnat: bool,
    /// By service index: some real server of it rewrites packets (NAT or
    /// FULLNAT), so a new connection's L4 checksum is checked
    /// (`rewrites`). Worked out once here, not per new connection.
    rewrites: Vec<bool>,
}

/// The bit of `ip` in `ServiceTable::lip_filter`: the top 6 bits of a
/// multiplicative hash, which spreads neighbouring addresses (a pool of
/// LIPs is usually a run of them) over different bits.
#[inline(always)]
fn lip_bit(ip: Ipv4Addr) -> u64 {
    1 << (u32::from(ip).wrapping_mul(0x9E37_79B1) >> 26)
}

fn lip_filter(lips: &[LocalAddress]) -> u64 {
    lips.iter().fold(0, |f, l| f | lip_bit(l.addr))
}

#[inline]
fn service_hash(proto: Proto, vip: Ipv4Addr, port: u16) -> u64 {
    let k = (u32::from(vip) as u64) << 24 | (port as u64) << 8 | proto as u64;
    k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (k >> 29)
}

impl Default for ServiceTable {
    fn default() -> Self {
        ServiceTable::new(0, Vec::new())
    }
}

impl ServiceTable {
    pub fn new(generation: u64, services: Vec<VirtualService>) -> Self {
        let slots = (services.len() * 2).next_power_of_two().max(8);
        let mut index = vec![NO_SLOT; slots];
        let mask = slots - 1;
        for (i, s) in services.iter().enumerate() {
            let mut h = service_hash(s.key.proto, s.key.vip, s.key.port) as usize & mask;
            while index[h] != NO_SLOT {
                h = (h + 1) & mask;
            }
            index[h] = i as u32;
        }
        let mut vips: Vec<Ipv4Addr> = services.iter().map(|s| s.key.vip).collect();
        vips.sort();
        vips.dedup();
        // Masks AND together: clients alike under any service's mask are alike
        // under the result, contiguous masks or not.
        let owner_mask = services
            .iter()
            .filter_map(|s| s.persistence)
            .fold(Ipv4Addr::BROADCAST, |m, p| m & p.netmask);
        let any_syn_proxy = services.iter().any(|s| s.syn_proxy);
        let mut lips: Vec<LocalAddress> = services.iter().flat_map(|s| s.laddrs.iter().cloned()).collect();
        lips.sort_by_key(|l| l.addr);
        lips.dedup_by_key(|l| l.addr);
        let any_fnat = services
            .iter()
            .any(|s| s.dests.iter().any(|d| d.method == ForwardMethod::FullNat));
        let rewrites = services
            .iter()
            .map(|s| {
                s.dests
                    .iter()
                    .any(|d| matches!(d.method, ForwardMethod::Nat | ForwardMethod::FullNat))
            })
            .collect();
        ServiceTable {
            generation,
            services,
            index,
            vips,
            owner_mask,
            any_syn_proxy,
            lip_filter: lip_filter(&lips),
            lips,
            any_fnat,
            rewrites,
        }
    }

    /// Adds local addresses no service has any more but connections still
    /// use: still owned (ARP, replies), never allocated from.
    pub fn with_retired_lips(mut self, retired: Vec<LocalAddress>) -> Self {
        for r in retired {
            if let Err(at) = self.lips.binary_search_by_key(&r.addr, |l| l.addr) {
                self.lips.insert(at, r);
            }
        }
        self.lip_filter = lip_filter(&self.lips);
        self
    }

    /// Whether some service has a FULLNAT real server.
    #[inline]
    pub fn any_fnat(&self) -> bool {
        self.any_fnat
    }

    /// The local address `ip`, if it is one (retired ones included).
    #[inline(always)]
    pub fn lip(&self, ip: Ipv4Addr) -> Option<&LocalAddress> {
        if self.lip_filter & lip_bit(ip) == 0 {
            return None;
        }
        let i = self.lips.binary_search_by_key(&ip, |l| l.addr).ok()?;
        self.lips.get(i)
    }

    /// Every local address (retired ones included), sorted.
    pub fn lips(&self) -> &[LocalAddress] {
        &self.lips
    }

    /// Sets each local address's `steered` bits to `bits(addr, port)`.
    pub fn mark_steered(&mut self, bits: impl Fn(Ipv4Addr, u16) -> u8) {
        for l in &mut self.lips {
            l.steered = bits(l.addr, l.port);
        }
    }

    /// Whether any service has the SYN proxy.
    #[inline]
    pub fn any_syn_proxy(&self) -> bool {
        self.any_syn_proxy
    }

    #[inline]
    fn find_exact(&self, proto: Proto, vip: Ipv4Addr, port: u16) -> Option<usize> {
        if self.services.is_empty() {
            return None;
        }
        let mask = self.index.len() - 1;
        let mut h = service_hash(proto, vip, port) as usize & mask;
        loop {
            let slot = *self.index.get(h)?;
            if slot == NO_SLOT {
                return None;
            }
            let s = self.services.get(slot as usize)?;
            if s.key.port == port && s.key.vip == vip && s.key.proto == proto {
                return Some(slot as usize);
            }
            h = (h + 1) & mask;
        }
    }

    /// The service for a packet to `vip:port`. A port-0 service (persistent,
    /// all ports, as `ipvsadm -A -t VIP:0 -p`) catches ports with no service of their own.
    #[inline]
    pub fn lookup(&self, proto: Proto, vip: Ipv4Addr, port: u16) -> Option<usize> {
        self.find_exact(proto, vip, port).or_else(|| {
            if port != 0 {
                self.find_exact(proto, vip, 0)
            } else {
                None
            }
        })
    }

    #[inline(always)]
    pub fn is_vip(&self, ip: Ipv4Addr) -> bool {
        // Most directors have a handful of VIPs: a scan beats a search's
        // branches there, and every packet asks.
        if self.vips.len() <= 8 {
            self.vips.contains(&ip)
        } else {
            self.vips.binary_search(&ip).is_ok()
        }
    }

    /// The client-address mask of worker ownership (see `owner_mask` field).
    #[inline]
    pub fn owner_mask(&self) -> Ipv4Addr {
        self.owner_mask
    }

    pub fn vips(&self) -> &[Ipv4Addr] {
        &self.vips
    }

    #[inline]
    pub fn get(&self, i: usize) -> Option<&VirtualService> {
        self.services.get(i)
    }

    /// Whether service `i` has a real server that rewrites packets (NAT or
    /// FULLNAT): then a corrupt packet must not open a connection to it.
    #[inline]
    pub fn rewrites(&self, i: usize) -> bool {
        self.rewrites.get(i).copied().unwrap_or(false)
    }

    pub fn services(&self) -> &[VirtualService] {
        &self.services
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

#[cfg(test)]
mod lip_filter_tests {
    use super::*;

    /// The filter only ever spares the search for addresses that are not
    /// local: every LIP of a run is still found, retired ones too.
    #[test]
    fn every_lip_is_found_and_nothing_else() {
        let lips: Vec<LocalAddress> = (0..40u32)
            .map(|i| LocalAddress {
                addr: Ipv4Addr::from(0x0A00_0100 + i),
                port: 0,
                stats: Arc::new(LaddrStats::new(1)),
                steered: 0,
            })
            .collect();
        let t = ServiceTable::new(0, Vec::new());
        let t = t.with_retired_lips(lips.clone());
        for l in &lips {
            assert!(t.lip(l.addr).is_some());
        }
        for i in 0..4096u32 {
            let ip = Ipv4Addr::from(0x0A00_1000 + i);
            assert!(t.lip(ip).is_none());
        }
    }
}
