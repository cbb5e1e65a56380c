//! Per worker: the packets held until their next hop resolves, when to ask
//! for a next hop again, and which VIPs are still to be announced. Pure; the
//! DPDK worker only allocates and sends the frames it is told to.

use std::net::Ipv4Addr;

use super::{Neigh, NeighTable};
use crate::ownership::Owned;
use crate::route::PortInfo;
use crate::service::ServiceTable;
use crate::wire::ethernet::MacAddr;

/// At most one request per next hop per this many seconds.
const ARP_RETRY_S: u32 = 1;
/// A held packet is dropped after this long without an answer.
const PENDING_MAX_WAIT_S: u32 = 3;

/// One worker's ARP state, holding packets of type `P` (the worker's buffers).
pub struct Resolver<P> {
    /// (port, packet), by next hop.
    pending: PendingQueue<(u16, P)>,
    /// Next hops recently asked for, and when.
    asked: [(Ipv4Addr, u32); 16],
    /// What the last (service, ownership) generation announced.
    announced: Vec<Ipv4Addr>,
    announced_gen: Option<(u64, u64)>,
}

impl<P> Resolver<P> {
    /// Holds at most `capacity` packets.
    pub fn new(capacity: usize) -> Self {
        Resolver {
            pending: PendingQueue::new(capacity),
            asked: [(Ipv4Addr::UNSPECIFIED, 0); 16],
            announced: Vec::new(),
            announced_gen: None,
        }
    }

    /// Holds `pkt`, to leave by `port` once `via` resolves. Returns the
    /// oldest held packet when that made room for it, to be dropped.
    pub fn hold(&mut self, port: u16, via: Ipv4Addr, now: u32, pkt: P) -> Option<P> {
        self.pending.push(via, now, (port, pkt)).map(|(_, p)| p)
    }

    /// Whether to send a request for `via` now (`force`: whatever the last
    /// one was); a yes counts as sent.
    pub fn request_due(&mut self, via: Ipv4Addr, now: u32, force: bool) -> bool {
        let recent = |&(ip, t): &(Ipv4Addr, u32)| ip == via && now.wrapping_sub(t) < ARP_RETRY_S;
        if !force && self.asked.iter().any(recent) {
            return false;
        }
        let n = self.asked.len();
        let slot = self
            .asked
            .iter()
            .position(|&(ip, _)| ip == via)
            .unwrap_or_else(|| usize::from(via.octets()[3]) % n);
        self.asked[slot] = (via, now);
        true
    }

    /// Hands `send(port, packet, next-hop MAC)` every held packet whose next
    /// hop (`only`: just that one) now has a MAC, and returns how many held
    /// packets waited too long and were dropped.
    pub fn release(
        &mut self,
        neigh: &NeighTable,
        now: u32,
        only: Option<Ipv4Addr>,
        mut send: impl FnMut(u16, P, MacAddr),
    ) -> u64 {
        self.pending.take_if(
            |ip, _| only.is_none_or(|o| o == ip) && !matches!(neigh.lookup(ip, now), Neigh::Unknown),
            |ip, (port, p)| {
                if let Neigh::Resolved(mac) | Neigh::Stale(mac) = neigh.lookup(ip, now) {
                    send(port, p, mac);
                }
            },
        );
        let mut expired = 0;
        let too_old = |_, since: u32| now.wrapping_sub(since) > PENDING_MAX_WAIT_S;
        self.pending.take_if(too_old, |_, _| expired += 1);
        expired
    }

    /// The addresses not announced yet (none when neither the service
    /// generation nor the ownership generation changed): what gratuitous ARP
    /// should go out for. Without kernel interfaces, those are `snap`'s VIPs;
    /// with them, what `owned` lists (owned VIPs and floating addresses), so
    /// a backup director never announces a VIP its peer serves. FULLNAT
    /// local addresses are always owned (`ownership`): each is announced
    /// when it first appears, so neighbours that cached another MAC for it
    /// learn ours before the first reply is due.
    pub fn to_announce(&mut self, snap: &ServiceTable, owned: &Owned) -> Vec<Ipv4Addr> {
        let gen = (snap.generation, owned.generation);
        if self.announced_gen == Some(gen) {
            return Vec::new();
        }
        self.announced_gen = Some(gen);
        let mut now = if owned.is_all() {
            snap.vips().to_vec()
        } else {
            owned.addrs().to_vec()
        };
        now.extend(snap.lips().iter().map(|l| l.addr));
        now.sort();
        now.dedup();
        let new = now
            .iter()
            .filter(|v| !self.announced.contains(v))
            .copied()
            .collect();
        self.announced = now;
        new
    }
}

/// The ports a gratuitous ARP for `ip` goes out of: those whose subnet holds it.
pub fn announce_ports(ports: &[PortInfo], ip: Ipv4Addr) -> impl Iterator<Item = (u16, &PortInfo)> + '_ {
    ports
        .iter()
        .enumerate()
        .filter(move |(_, p)| p.on_link(ip))
        .map(|(i, p)| (i as u16, p))
}

/// Packets waiting for a next hop to resolve: a small fixed ring per worker.
/// When full, the oldest waiting packet is handed back to be dropped.
pub struct PendingQueue<P> {
    items: Vec<Option<(Ipv4Addr, u32, P)>>,
    head: usize,
}

impl<P> PendingQueue<P> {
    pub fn new(capacity: usize) -> Self {
        let mut items = Vec::with_capacity(capacity.max(1));
        items.resize_with(capacity.max(1), || None);
        PendingQueue { items, head: 0 }
    }

    /// Queues `pkt` for `next_hop`; returns an evicted packet, if the ring was full.
    pub fn push(&mut self, next_hop: Ipv4Addr, now_s: u32, pkt: P) -> Option<P> {
        let n = self.items.len();
        let slot = &mut self.items[self.head % n];
        self.head = (self.head + 1) % n;
        slot.replace((next_hop, now_s, pkt)).map(|(_, _, p)| p)
    }

    /// Hands `f` every packet for which `take(next hop, queued at)` says yes.
    pub fn take_if(&mut self, mut take: impl FnMut(Ipv4Addr, u32) -> bool, mut f: impl FnMut(Ipv4Addr, P)) {
        for slot in self.items.iter_mut() {
            if matches!(slot, Some((hop, t, _)) if take(*hop, *t)) {
                if let Some((hop, _, p)) = slot.take() {
                    f(hop, p);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announces_vips_and_local_addresses_once_each() {
        use crate::fnat::stats::LaddrStats;
        use crate::service::LocalAddress;
        use std::sync::Arc;
        let lip = |a: [u8; 4]| LocalAddress {
            addr: Ipv4Addr::from(a),
            port: 1,
            stats: Arc::new(LaddrStats::new(1)),
            steered: 0,
        };
        let mut r: Resolver<()> = Resolver::new(4);
        let snap = ServiceTable::new(1, Vec::new()).with_retired_lips(vec![lip([10, 2, 0, 200])]);
        let owned = Owned::only(1, [Ipv4Addr::new(192, 168, 0, 10)]);
        assert_eq!(
            r.to_announce(&snap, &owned),
            vec![Ipv4Addr::new(10, 2, 0, 200), Ipv4Addr::new(192, 168, 0, 10)]
        );
        assert!(r.to_announce(&snap, &owned).is_empty(), "same generations");
        // A LIP added: only it; it goes whether or not the kernel owns anything.
        let snap = ServiceTable::new(2, Vec::new())
            .with_retired_lips(vec![lip([10, 2, 0, 200]), lip([10, 2, 0, 201])]);
        let owned = Owned::only(2, []);
        assert_eq!(r.to_announce(&snap, &owned), vec![Ipv4Addr::new(10, 2, 0, 201)]);
        // Gone and back: announced again.
        let snap = ServiceTable::new(3, Vec::new());
        assert!(r.to_announce(&snap, &owned).is_empty());
        let snap = ServiceTable::new(4, Vec::new()).with_retired_lips(vec![lip([10, 2, 0, 201])]);
        assert_eq!(r.to_announce(&snap, &owned), vec![Ipv4Addr::new(10, 2, 0, 201)]);
    }

    #[test]
    fn pending_queue_bounded() {
        let mut q = PendingQueue::new(2);
        let a = Ipv4Addr::new(10, 0, 0, 1);
        assert!(q.push(a, 0, 1).is_none());
        assert!(q.push(a, 0, 2).is_none());
        assert_eq!(q.push(a, 1, 3), Some(1), "oldest evicted");
        let mut got = vec![];
        q.take_if(|hop, _| hop == a, |_, p| got.push(p));
        got.sort();
        assert_eq!(got, vec![2, 3]);
        q.take_if(|_, _| true, |_, p| panic!("left behind: {p}"));
        q.push(a, 0, 4);
        let mut old = vec![];
        q.take_if(|_, t| 5u32.wrapping_sub(t) > 3, |_, p| old.push(p));
        assert_eq!(old, vec![4]);
    }

    #[test]
    fn requests_rate_limited_per_next_hop() {
        let mut r: Resolver<()> = Resolver::new(4);
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        assert!(r.request_due(a, 10, false));
        assert!(!r.request_due(a, 10, false), "asked this second");
        assert!(r.request_due(b, 10, false), "another next hop");
        assert!(r.request_due(a, 10, true), "forced");
        assert!(r.request_due(a, 11, false), "a second later");
    }

    #[test]
    fn held_packets_leave_once_resolved_or_expire() {
        let neigh = NeighTable::new(16);
        let mut r = Resolver::new(4);
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        assert!(r.hold(1, a, 0, "to a").is_none());
        assert!(r.hold(0, b, 0, "to b").is_none());
        let mut sent = vec![];
        assert_eq!(r.release(&neigh, 1, None, |p, x, m| sent.push((p, x, m))), 0);
        assert!(sent.is_empty(), "nothing resolved yet");
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        neigh.add_static(a, mac);
        assert_eq!(r.release(&neigh, 2, None, |p, x, m| sent.push((p, x, m))), 0);
        assert_eq!(sent, vec![(1, "to a", mac)]);
        let none = |_, _, _| unreachable!();
        assert_eq!(r.release(&neigh, 3, None, none), 0, "b may wait 3 s");
        assert_eq!(r.release(&neigh, 4, None, none), 1, "b expired");
    }
}
