//! The slab, its free list and the two hash indexes.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::mem::{boxed_table, prefetch};
use super::tcp::{next_state, StateTable, TcpState};
use super::timeout::Timeouts;
use super::{ConnError, ConnId, Direction, FlowKey, NewConn, NewTemplate};
use crate::fnat::laddr::LocalAddr;
use crate::fnat::side::FnatSide;
use crate::service::{DestStats, ForwardMethod, Proto, WorkerTraffic};
use crate::wire::tcp::TcpFlags;

/// End of a chain, empty bucket, or no template.
const NIL: u32 = u32::MAX;

const F_LIVE: u8 = 1 << 0;
const F_TEMPLATE: u8 = 1 << 1;
/// DR/TUN: replies bypass the director, so TCP runs the INPUT_ONLY table.
const F_NOOUTPUT: u8 = 1 << 2;
const F_SEEN_REPLY: u8 = 1 << 3;
/// Counted in the real server's active (not inactive) connections.
const F_ACTIVE: u8 = 1 << 4;
const F_IN_HASHED: u8 = 1 << 5;
const F_OUT_HASHED: u8 = 1 << 6;
/// A TCP connection that has not reached ESTABLISHED yet: a SYN (or a
/// handshake) seen, no proof that the client is real. Cleared, for good,
/// when the state first becomes ESTABLISHED; see `ConnTable`'s embryonic queue.
const F_EMBRYONIC: u8 = 1 << 7;

/// Seconds a new connection lives before its first `on_packet`, as
/// the kernel's ip_vs_conn_new. The caller runs it for the packet
/// that created the connection, which sets the real timeout.
pub const INITIAL_TIMEOUT: u32 = 3;

/// Slots examined by `insert` on a full table, hoping to find expired
/// entries that `expire` has not reached yet. Bounded to keep insert O(1).
const FULL_RECLAIM_BUDGET: usize = 64;

/// Entries of the embryonic queue one eviction may drop from its head for
/// having completed their handshake since they were queued, before it gives
/// up. `expire` takes such entries out of the queue as it sweeps, so at the
/// head they are only those established since the last sweep; bounded to
/// keep insert O(1) all the same.
const EVICT_SKIP_BUDGET: usize = 64;

/// One connection, or one persistence template. One cache line: the keys and
/// chain links a lookup touches are all in it.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Conn {
    /// Next in the IN chain; for a free slot, next in the free list.
    in_next: u32,
    out_next: u32,
    /// The IN key's addresses, CIP then VIP (`in_ips`), and ports, cport
    /// then vport: each pair side by side, so that a lookup compares an
    /// entry's pair with one load (see `find_in`).
    ips: [u8; 8],
    rip: Ipv4Addr,
    ports: [u16; 2],
    rport: u16,
    proto: Proto,
    method: ForwardMethod,
    state: TcpState,
    flags: u8,
    /// The worker's egress slot of each direction's packets, +1 (0: none
    /// yet), index `Direction as usize`: the per-packet path's cache of route,
    /// neighbour and port, kept by the worker (`core::egress`); the table
    /// only clears it when the slot is reused.
    egress: [u8; 2],
    expires: u32,
    /// A template's persistence timeout (seconds). A TCP connection's
    /// previous entry in the embryonic queue (NIL at its head or unqueued).
    /// The two never meet in one entry, and the entry stays one cache line.
    timeout_or_prev: u32,
    /// The template this connection was scheduled by, or NIL.
    template: u32,
    /// A template's connections (the kernel's n_control). A TCP
    /// connection's next entry in the embryonic queue (NIL at its tail or unqueued).
    children_or_next: u32,
    dest: Option<Arc<DestStats>>,
    svc: Option<Arc<WorkerTraffic>>,
}

const _: () = assert!(std::mem::size_of::<Conn>() == 64);

impl Conn {
    const EMPTY: Conn = Conn {
        in_next: NIL,
        out_next: NIL,
        ips: [0; 8],
        rip: Ipv4Addr::UNSPECIFIED,
        ports: [0; 2],
        rport: 0,
        proto: Proto::Tcp,
        method: ForwardMethod::Dr,
        state: TcpState::None,
        flags: 0,
        egress: [0; 2],
        expires: 0,
        timeout_or_prev: 0,
        template: NIL,
        children_or_next: 0,
        dest: None,
        svc: None,
    };

    /// The client side, as `lookup_in` finds it: CIP:cport → VIP:vport (for
    /// a template, client network:0 → VIP:vport).
    #[inline]
    pub fn flow(&self) -> FlowKey {
        FlowKey::new(self.proto, self.cip(), self.cport(), self.vip(), self.vport())
    }

    #[inline]
    pub fn cip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.cip_octets())
    }
    #[inline(always)]
    fn cip_octets(&self) -> [u8; 4] {
        let i = &self.ips;
        [i[0], i[1], i[2], i[3]]
    }
    #[inline]
    pub fn cport(&self) -> u16 {
        self.ports[0]
    }
    #[inline]
    pub fn vip(&self) -> Ipv4Addr {
        let i = &self.ips;
        Ipv4Addr::new(i[4], i[5], i[6], i[7])
    }
    #[inline]
    pub fn vport(&self) -> u16 {
        self.ports[1]
    }
    #[inline]
    pub fn rip(&self) -> Ipv4Addr {
        self.rip
    }
    #[inline]
    pub fn rport(&self) -> u16 {
        self.rport
    }
    #[inline]
    pub fn proto(&self) -> Proto {
        self.proto
    }
    #[inline]
    pub fn method(&self) -> ForwardMethod {
        self.method
    }
    #[inline]
    pub fn state(&self) -> TcpState {
        self.state
    }
    /// The state word of `ipvsadm -Lc`: the TCP state, or "UDP".
    pub fn state_name(&self) -> &'static str {
        match self.proto {
            Proto::Tcp => self.state.name(),
            Proto::Udp => "UDP",
        }
    }
    /// Coarse-clock second after which the entry is gone.
    #[inline]
    pub fn expires(&self) -> u32 {
        self.expires
    }
    /// Seconds left, as the expire column of `ipvsadm -Lc` shows.
    pub fn remaining(&self, now: u32) -> u32 {
        self.expires.saturating_sub(now)
    }
    #[inline]
    pub fn is_template(&self) -> bool {
        self.flags & F_TEMPLATE != 0
    }
    /// Counted as active (ESTABLISHED) in its real server's counters.
    #[inline]
    pub fn is_active(&self) -> bool {
        self.flags & F_ACTIVE != 0
    }
    /// DR/TUN: replies do not pass through the director.
    #[inline]
    pub fn no_output(&self) -> bool {
        self.flags & F_NOOUTPUT != 0
    }
    #[inline]
    pub fn seen_reply(&self) -> bool {
        self.flags & F_SEEN_REPLY != 0
    }
    pub fn set_seen_reply(&mut self) {
        self.flags |= F_SEEN_REPLY;
    }
    /// The persistence template this connection belongs to.
    #[inline]
    pub fn template(&self) -> Option<ConnId> {
        (self.template != NIL).then_some(ConnId(self.template))
    }
    /// For a template: how many connections it controls.
    #[inline]
    pub fn children(&self) -> u32 {
        if self.flags & F_TEMPLATE != 0 {
            self.children_or_next
        } else {
            0
        }
    }
    /// For a template: its persistence timeout in seconds.
    #[inline]
    pub fn persistence_timeout(&self) -> u32 {
        if self.flags & F_TEMPLATE != 0 {
            self.timeout_or_prev
        } else {
            0
        }
    }
    /// A TCP connection whose handshake has not completed (it never was
    /// ESTABLISHED): the first to give way when the table is full.
    #[inline]
    pub fn is_embryonic(&self) -> bool {
        self.flags & F_EMBRYONIC != 0
    }
    /// The egress slot recorded for `dir` by `set_egress`, +1; 0 when none is.
    #[inline]
    pub fn egress(&self, dir: Direction) -> u8 {
        self.egress[dir as usize]
    }
    /// Records the egress slot (+1; 0 clears it) of this connection's
    /// packets in direction `dir`: a cache the worker keeps in the entry's
    /// spare bytes (`core::egress`). Nothing in the table reads it.
    #[inline]
    pub fn set_egress(&mut self, dir: Direction, slot: u8) {
        self.egress[dir as usize] = slot;
    }
    /// One packet with an L4 header on this connection, in direction `dir`:
    /// `ConnTable::on_packet` on an entry in hand (`lookup_in_mut`,
    /// `lookup_out_mut`). Nothing for a template or a free slot.
    #[inline(always)]
    pub fn on_packet(&mut self, dir: Direction, tcp_flags: u8, now: u32, timeouts: &Timeouts) -> bool {
        if self.flags & (F_LIVE | F_TEMPLATE) != F_LIVE {
            return false;
        }
        self.step(dir, tcp_flags, now, timeouts)
    }
    #[inline]
    pub fn dest(&self) -> Option<&Arc<DestStats>> {
        self.dest.as_ref()
    }
    #[inline]
    pub fn svc(&self) -> Option<&Arc<WorkerTraffic>> {
        self.svc.as_ref()
    }

    /// One packet of this connection seen: the TCP state machine (the
    /// kernel's set_tcp_state) and the idle timer. Returns whether the TCP
    /// state changed.
    ///
    /// Inline, the segment nearly every packet is: an ACK without SYN, FIN
    /// or RST on an ESTABLISHED connection, which stays so in all three
    /// tables, and UDP; the rest in `step_tcp`.
    #[inline(always)]
    fn step(&mut self, dir: Direction, tcp_flags: u8, now: u32, timeouts: &Timeouts) -> bool {
        if dir == Direction::Output {
            self.flags |= F_SEEN_REPLY;
        }
        match self.proto {
            Proto::Udp => {
                self.expires = now.saturating_add(timeouts.udp);
                false
            }
            Proto::Tcp
                if self.state == TcpState::Established
                    && tcp_flags & (TcpFlags::RST | TcpFlags::SYN | TcpFlags::FIN | TcpFlags::ACK)
                        == TcpFlags::ACK =>
            {
                // A reply: the OUTPUT table from now on, as in `step_tcp`.
                if dir == Direction::Output {
                    self.flags &= !F_NOOUTPUT;
                }
                self.expires = now.saturating_add(timeouts.tcp_established());
                false
            }
            Proto::Tcp => self.step_tcp(dir, tcp_flags, now, timeouts),
        }
    }

    /// `step` for a TCP segment, through the kernel's tables.
    #[inline(never)]
    fn step_tcp(&mut self, dir: Direction, tcp_flags: u8, now: u32, timeouts: &Timeouts) -> bool {
        let table = match dir {
            Direction::Output => {
                self.flags &= !F_NOOUTPUT;
                StateTable::Output
            }
            Direction::Input if self.flags & F_NOOUTPUT != 0 => StateTable::InputOnly,
            Direction::Input => StateTable::Input,
        };
        let new = next_state(table, self.state, tcp_flags);
        let changed = new != self.state;
        if changed {
            let active = new.is_active();
            if active != (self.flags & F_ACTIVE != 0) {
                self.flags ^= F_ACTIVE;
                // Only on a state change, so the established
                // packet's path pays nothing; the entry leaves
                // the embryonic queue lazily (`ConnTable::unqueue`).
                if active {
                    self.flags &= !F_EMBRYONIC;
                }
                if let Some(d) = &self.dest {
                    d.set_active(active);
                }
            }
            self.state = new;
        }
        self.expires = now.saturating_add(timeouts.tcp(new));
        changed
    }

    /// A template that still controls connections never expires (the kernel
    /// re-arms its timer); anything else lives until `expires`.
    #[inline]
    fn alive(&self, now: u32) -> bool {
        now <= self.expires || (self.flags & F_TEMPLATE != 0 && self.children_or_next > 0)
    }

    /// Whether lookups already treat this entry as gone.
    pub fn is_expired(&self, now: u32) -> bool {
        !self.alive(now)
    }
}

/// The per-worker connection table. See the module docs, on the embryonic
/// queue too.
pub struct ConnTable {
    slab: Box<[Conn]>,
    in_heads: Box<[u32]>,
    out_heads: Box<[u32]>,
    mask: u32,
    free_head: u32,
    len: u32,
    templates: u32,
    cursor: u32,
    /// The second of the last reclaim scan that found nothing: a full table
    /// under a SYN flood must not pay a scan for every refused SYN.
    reclaim_failed_at: Option<u32>,
    /// Oldest and newest TCP connection of the embryonic queue, or NIL.
    emb_head: u32,
    emb_tail: u32,
    /// Live embryonic connections freed to make room (`evict_embryonic`).
    evicted: u64,
    seed: [u64; 3],
    /// FULLNAT entries' local address and client hint, by slot: empty until
    /// `enable_fnat` (a director without FULLNAT services never pays for it).
    fnat: Box<[FnatSide]>,
    /// Local addresses of FULLNAT entries freed since the owner last took
    /// them (`take_fnat_freed`), for its port pools. Bounded (`FREED_MAX`):
    /// past it a port is lost to its pool (counted in `fnat_freed_lost`)
    /// rather than allocate.
    fnat_freed: Vec<LocalAddr>,
    fnat_freed_lost: u64,
}

/// Room in `ConnTable::fnat_freed`: more than one `expire` call of the
/// worker's housekeeping budget plus a full-table reclaim frees.
pub const FREED_MAX: usize = 8192;

/// A hash bucket picked by `prefetch_in`/`prefetch_out`.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    idx: u32,
    out: bool,
}

/// `Conn::ips` of an IN key: CIP then VIP, in network byte order.
#[inline(always)]
fn in_ips(cip: Ipv4Addr, vip: Ipv4Addr) -> [u8; 8] {
    let (c, v) = (cip.octets(), vip.octets());
    [c[0], c[1], c[2], c[3], v[0], v[1], v[2], v[3]]
}

#[inline]
fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl ConnTable {
    /// A table of `capacity` entries (connections plus templates), with a
    /// hash seed the table's users cannot guess, so clients cannot aim at one
    /// bucket. Capacity is capped at 2^32 - 2.
    pub fn new(capacity: u32) -> ConnTable {
        let mut h = RandomState::new().build_hasher();
        h.write_u32(capacity);
        ConnTable::with_seed(capacity, h.finish())
    }

    /// As `new`, with a fixed seed (tests, reproducible benchmarks).
    pub fn with_seed(capacity: u32, seed: u64) -> ConnTable {
        let cap = capacity.min(NIL - 1);
        let buckets = (cap.max(1) as usize).next_power_of_two();
        let slab: Box<[Conn]> = boxed_table(cap as usize, |i| Conn {
            in_next: if i + 1 < cap as usize { i as u32 + 1 } else { NIL },
            ..Conn::EMPTY
        });
        let mut s = seed;
        ConnTable {
            slab,
            in_heads: boxed_table(buckets, |_| NIL),
            out_heads: boxed_table(buckets, |_| NIL),
            mask: (buckets - 1) as u32,
            free_head: if cap > 0 { 0 } else { NIL },
            len: 0,
            templates: 0,
            cursor: 0,
            reclaim_failed_at: None,
            emb_head: NIL,
            emb_tail: NIL,
            evicted: 0,
            seed: [splitmix64(&mut s), splitmix64(&mut s), splitmix64(&mut s) | 1],
            fnat: Box::new([]),
            fnat_freed: Vec::new(),
            fnat_freed_lost: 0,
        }
    }

    /// Makes room for FULLNAT entries (their side array and the freed
    /// queue); call off the packet path, before the first `insert_fnat`.
    /// Idempotent.
    pub fn enable_fnat(&mut self) {
        if self.fnat.len() != self.slab.len() {
            self.fnat = boxed_table(self.slab.len(), |_| FnatSide::EMPTY);
            self.fnat_freed = Vec::with_capacity(FREED_MAX);
        }
    }

    /// Whether `enable_fnat` was called.
    #[inline]
    pub fn fnat_enabled(&self) -> bool {
        !self.fnat.is_empty()
    }

    /// The FULLNAT side of a live FULLNAT connection.
    #[inline]
    pub fn fnat(&self, id: ConnId) -> Option<&FnatSide> {
        self.get(id).filter(|c| c.method == ForwardMethod::FullNat)?;
        self.fnat.get(id.0 as usize)
    }

    /// As `fnat`, to update its client hint. The local address must not
    /// change (the OUT index is keyed by it): callers write `hint` only.
    #[inline]
    pub fn fnat_mut(&mut self, id: ConnId) -> Option<&mut FnatSide> {
        self.get(id).filter(|c| c.method == ForwardMethod::FullNat)?;
        self.fnat.get_mut(id.0 as usize)
    }

    /// The local addresses of FULLNAT entries freed since the last call,
    /// for the owner's port pools.
    #[inline]
    pub fn take_fnat_freed(&mut self) -> std::vec::Drain<'_, LocalAddr> {
        self.fnat_freed.drain(..)
    }

    /// Whether FULLNAT entries were freed since `take_fnat_freed`.
    #[inline(always)]
    pub fn has_fnat_freed(&self) -> bool {
        !self.fnat_freed.is_empty()
    }

    /// Local ports lost to their pools because the freed queue was full.
    pub fn fnat_freed_lost(&self) -> u64 {
        self.fnat_freed_lost
    }

    /// Live entries: connections and templates, expired ones not yet collected included.
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Of `len()`, how many are persistence templates.
    #[inline]
    pub fn templates(&self) -> usize {
        self.templates as usize
    }
    #[inline]
    pub fn capacity(&self) -> usize {
        self.slab.len()
    }
    /// Embryonic connections (never ESTABLISHED) freed while still alive to
    /// make room for a new entry on a full table, since the table was made.
    #[inline]
    pub fn embryonic_evicted(&self) -> u64 {
        self.evicted
    }

    /// Memory per entry: the slab entry plus its share of both bucket arrays.
    pub fn bytes_per_conn(&self) -> usize {
        let buckets = (self.in_heads.len() + self.out_heads.len()) * std::mem::size_of::<u32>();
        std::mem::size_of::<Conn>() + buckets.div_ceil(self.capacity().max(1))
    }

    /// The bucket `lookup_in` (or with `out`, `lookup_out`) will read for
    /// this flow, with its head's cache line requested (a prefetch: nothing
    /// waits for it).
    #[inline]
    pub fn prefetch(&self, flow: FlowKey, out: bool) -> Bucket {
        let b = self.bucket(flow, false);
        if let Some(h) = if out { &self.out_heads } else { &self.in_heads }.get(b) {
            prefetch(h);
        }
        Bucket { idx: b as u32, out }
    }

    /// Reads the head of `b` (requested by `prefetch_in`/`prefetch_out`, so
    /// by now usually in cache) and requests the chain's first entry.
    /// With FULLNAT enabled, the head's side entry too (the fast path reads
    /// it for every FULLNAT packet; an empty array costs one compare).
    #[inline]
    pub fn prefetch_chain(&self, b: Bucket) {
        let heads = if b.out { &self.out_heads } else { &self.in_heads };
        let Some(&i) = heads.get(b.idx as usize) else {
            return;
        };
        if let Some(c) = self.slab.get(i as usize) {
            prefetch(c);
        }
        if let Some(s) = self.fnat.get(i as usize) {
            prefetch(s);
        }
    }

    /// Requests the second entry of `b`'s chain (its head entry requested
    /// by `prefetch_chain` a while ago): with half as many entries as
    /// buckets, one lookup in four goes past the head.
    #[inline]
    pub fn prefetch_chain_next(&self, b: Bucket) {
        let heads = if b.out { &self.out_heads } else { &self.in_heads };
        let next = heads
            .get(b.idx as usize)
            .and_then(|&i| self.slab.get(i as usize))
            .map(|c| if b.out { c.out_next } else { c.in_next });
        if let Some(c) = next.and_then(|i| self.slab.get(i as usize)) {
            prefetch(c);
        }
    }

    /// Bucket of `flow` in IN (CIP → VIP) or OUT (RIP → CIP). Templates hash
    /// apart from connections.
    #[inline(always)]
    fn bucket(&self, flow: FlowKey, template: bool) -> usize {
        let x = (u64::from(u32::from(flow.src)) << 32) | u64::from(u32::from(flow.dst));
        let y = (u64::from(flow.sport) << 32)
            | (u64::from(flow.dport) << 16)
            | ((flow.proto as u64) << 8)
            | template as u64;
        let h = mum(x ^ self.seed[0], y ^ self.seed[1]);
        let h = mum(h ^ self.seed[2], 0x9E37_79B9_7F4A_7C15);
        (h as u32 & self.mask) as usize
    }

    #[inline]
    fn in_bucket_of(&self, c: &Conn) -> usize {
        self.bucket(c.flow(), c.flags & F_TEMPLATE != 0)
    }

    /// OUT keys what a reply carries: RIP:rport → CIP:cport for NAT,
    /// RIP:rport → LIP:lport for FULLNAT.
    #[inline]
    fn out_bucket_of(&self, idx: u32) -> usize {
        let c = &self.slab[idx as usize];
        let (dst, dport) = self.out_dst(idx, c);
        self.bucket(FlowKey::new(c.proto, c.rip, c.rport, dst, dport), false)
    }

    /// The destination a reply of entry `idx` carries.
    #[inline(always)]
    fn out_dst(&self, idx: u32, c: &Conn) -> (Ipv4Addr, u16) {
        if c.method == ForwardMethod::FullNat {
            match self.fnat.get(idx as usize) {
                Some(s) => (s.laddr.lip, s.laddr.lport),
                None => (Ipv4Addr::UNSPECIFIED, 0),
            }
        } else {
            (c.cip(), c.cport())
        }
    }

    /// The connection of a client → VIP packet (`flow`: CIP:cport → VIP:vport).
    // Always inlined: the key then stays in the caller's registers as
    // scalars instead of being packed into an argument.
    #[inline(always)]
    pub fn lookup_in(&self, flow: FlowKey, now: u32) -> Option<ConnId> {
        self.find_in(flow, false, now).map(|(id, _)| id)
    }

    /// As `lookup_in`, with the entry itself, to read and step in one access
    /// (the per-packet path of an established connection).
    #[inline(always)]
    pub fn lookup_in_mut(&mut self, flow: FlowKey, now: u32) -> Option<(ConnId, &mut Conn)> {
        let (id, _) = self.find_in(flow, false, now)?;
        Some((id, self.slab.get_mut(id.0 as usize)?))
    }

    /// The connection of a real server's reply, LVS-NAT only (`flow`:
    /// RIP:rport → CIP:cport).
    // Always inlined: the key then stays in the caller's registers as
    // scalars instead of being packed into an argument.
    #[inline(always)]
    pub fn lookup_out(&self, flow: FlowKey, now: u32) -> Option<ConnId> {
        self.lookup_out_entry(flow, now).map(|(id, _)| id)
    }

    /// As `lookup_out`, with the entry itself (see `lookup_in_mut`).
    #[inline(always)]
    pub fn lookup_out_mut(&mut self, flow: FlowKey, now: u32) -> Option<(ConnId, &mut Conn)> {
        let (id, _) = self.lookup_out_entry(flow, now)?;
        Some((id, self.slab.get_mut(id.0 as usize)?))
    }

    #[inline(always)]
    fn lookup_out_entry(&self, flow: FlowKey, now: u32) -> Option<(ConnId, &Conn)> {
        let mut i = self.out_heads[self.bucket(flow, false)];
        while let Some(c) = self.slab.get(i as usize) {
            if c.rport == flow.sport && c.rip == flow.src && c.proto == flow.proto && c.alive(now) {
                // NAT compares the entry's own CIP:cport; FULLNAT its LIP:lport.
                let found = if c.method != ForwardMethod::FullNat {
                    c.ports[0] == flow.dport && c.cip_octets() == flow.dst.octets()
                } else {
                    self.out_dst(i, c) == (flow.dst, flow.dport)
                };
                if found {
                    return Some((ConnId(i), c));
                }
            }
            i = c.out_next;
        }
        None
    }

    /// As `lookup_in_mut`, with a FULLNAT entry's side (the fast path's
    /// one access to both).
    #[inline(always)]
    pub fn lookup_in_mut_side(
        &mut self,
        flow: FlowKey,
        now: u32,
    ) -> Option<(ConnId, &mut Conn, Option<&FnatSide>)> {
        let (id, _) = self.find_in(flow, false, now)?;
        self.entry_and_side(id)
    }

    /// As `lookup_out_mut`, with a FULLNAT entry's side.
    #[inline(always)]
    pub fn lookup_out_mut_side(
        &mut self,
        flow: FlowKey,
        now: u32,
    ) -> Option<(ConnId, &mut Conn, Option<&FnatSide>)> {
        let (id, _) = self.lookup_out_entry(flow, now)?;
        self.entry_and_side(id)
    }

    #[inline(always)]
    fn entry_and_side(&mut self, id: ConnId) -> Option<(ConnId, &mut Conn, Option<&FnatSide>)> {
        let c = self.slab.get_mut(id.0 as usize)?;
        let side = if c.method == ForwardMethod::FullNat {
            self.fnat.get(id.0 as usize)
        } else {
            None
        };
        Some((id, c, side))
    }

    /// The persistence template for a client network on a virtual service
    /// (`flow`: client network:0 → VIP:vport, see `FlowKey` and `client_net`).
    #[inline]
    pub fn lookup_template(&self, flow: FlowKey, now: u32) -> Option<ConnId> {
        self.find_in(flow, true, now).map(|(id, _)| id)
    }

    /// The IN index holds connections and templates (cport 0) apart.
    #[inline(always)]
    fn find_in(&self, flow: FlowKey, template: bool, now: u32) -> Option<(ConnId, &Conn)> {
        let (ips, ports) = (in_ips(flow.src, flow.dst), [flow.sport, flow.dport]);
        let mut i = self.in_heads[self.bucket(flow, template)];
        while let Some(c) = self.slab.get(i as usize) {
            if c.ports == ports
                && c.ips == ips
                && c.proto == flow.proto
                && (c.flags & F_TEMPLATE != 0) == template
                && c.alive(now)
            {
                return Some((ConnId(i), c));
            }
            i = c.in_next;
        }
        None
    }

    /// The entry in slot `id`, if the slot is in use (see the module docs on id validity).
    #[inline]
    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        self.slab.get(id.0 as usize).filter(|c| c.flags & F_LIVE != 0)
    }

    /// As `get`. The keys and the state are not writable through it, so the
    /// indexes and the real server's counters stay consistent.
    #[inline]
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.slab.get_mut(id.0 as usize).filter(|c| c.flags & F_LIVE != 0)
    }

    /// Takes a free slot. When there is none: first reclaims expired
    /// entries, then evicts the oldest embryonic connection.
    fn alloc(&mut self, now: u32) -> Result<u32, ConnError> {
        if self.free_head == NIL && self.reclaim_failed_at != Some(now) {
            if self.expire(now, FULL_RECLAIM_BUDGET) == 0 {
                self.reclaim_failed_at = Some(now);
            } else {
                self.reclaim_failed_at = None;
            }
        }
        if self.free_head == NIL {
            self.evict_embryonic(now);
        }
        let idx = self.free_head;
        let c = self.slab.get(idx as usize).ok_or(ConnError::TableFull)?;
        self.free_head = c.in_next;
        Ok(idx)
    }

    /// Frees the oldest connection of the embryonic queue, dropping from
    /// its head (at most `EVICT_SKIP_BUDGET`) the entries that completed
    /// their handshake since they were queued. Returns whether a slot was
    /// freed.
    ///
    /// Why the oldest: a flood's SYNs arrive faster than anyone's handshake
    /// can complete, so they take each other's slots in turn, and a real
    /// client's connection lives for as many evictions as there are
    /// embryonic entries ahead of it: capacity / flood rate, tens of
    /// milliseconds even for a small table, where a handshake takes one
    /// round trip. Established connections are never evicted.
    #[cold]
    fn evict_embryonic(&mut self, now: u32) -> bool {
        for _ in 0..EVICT_SKIP_BUDGET {
            let h = self.emb_head;
            let Some(c) = self.slab.get(h as usize) else {
                return false;
            };
            if c.flags & F_EMBRYONIC == 0 {
                self.unqueue(h);
                continue;
            }
            // An expired one is only reclaimed early: nothing could find it any more.
            if c.alive(now) {
                self.evicted += 1;
            }
            let tmpl = c.template;
            self.free_entry(h);
            // Its template goes too if it controls nothing now: made for a
            // handshake that never completed, it would otherwise hold its
            // slot for the whole persistence timeout, and a flood on a
            // persistent service would fill the table with them.
            if let Some(t) = self.slab.get(tmpl as usize) {
                if t.flags & (F_LIVE | F_TEMPLATE | F_IN_HASHED) == F_LIVE | F_TEMPLATE | F_IN_HASHED
                    && t.children_or_next == 0
                {
                    self.free_entry(tmpl);
                }
            }
            return true;
        }
        false
    }

    /// Appends TCP connection `idx` to the embryonic queue.
    fn enqueue(&mut self, idx: u32) {
        let tail = self.emb_tail;
        let c = &mut self.slab[idx as usize];
        c.timeout_or_prev = tail;
        c.children_or_next = NIL;
        match self.slab.get_mut(tail as usize) {
            Some(t) => t.children_or_next = idx,
            None => self.emb_head = idx,
        }
        self.emb_tail = idx;
    }

    /// Whether connection `idx` is in the embryonic queue: it has a
    /// predecessor or is the head (an unqueued connection's links are NIL).
    #[inline]
    fn queued(&self, idx: u32) -> bool {
        let c = &self.slab[idx as usize];
        c.flags & F_TEMPLATE == 0 && (c.timeout_or_prev != NIL || self.emb_head == idx)
    }

    /// Takes connection `idx` out of the embryonic queue, from anywhere in it.
    fn unqueue(&mut self, idx: u32) {
        let c = &mut self.slab[idx as usize];
        let (prev, next) = (c.timeout_or_prev, c.children_or_next);
        c.timeout_or_prev = NIL;
        c.children_or_next = NIL;
        match self.slab.get_mut(prev as usize) {
            Some(p) => p.children_or_next = next,
            None => self.emb_head = next,
        }
        match self.slab.get_mut(next as usize) {
            Some(n) => n.timeout_or_prev = prev,
            None => self.emb_tail = prev,
        }
    }

    fn link_in(&mut self, idx: u32) {
        let b = self.in_bucket_of(&self.slab[idx as usize]);
        self.slab[idx as usize].in_next = self.in_heads[b];
        self.in_heads[b] = idx;
    }

    fn link_out(&mut self, idx: u32) {
        let b = self.out_bucket_of(idx);
        self.slab[idx as usize].out_next = self.out_heads[b];
        self.out_heads[b] = idx;
    }

    fn unlink_in(&mut self, idx: u32) {
        let b = self.in_bucket_of(&self.slab[idx as usize]);
        let next = self.slab[idx as usize].in_next;
        if self.in_heads[b] == idx {
            self.in_heads[b] = next;
            return;
        }
        let mut p = self.in_heads[b];
        while p != NIL {
            let pn = self.slab[p as usize].in_next;
            if pn == idx {
                self.slab[p as usize].in_next = next;
                return;
            }
            p = pn;
        }
    }

    fn unlink_out(&mut self, idx: u32) {
        let b = self.out_bucket_of(idx);
        let next = self.slab[idx as usize].out_next;
        if self.out_heads[b] == idx {
            self.out_heads[b] = next;
            return;
        }
        let mut p = self.out_heads[b];
        while p != NIL {
            let pn = self.slab[p as usize].out_next;
            if pn == idx {
                self.slab[p as usize].out_next = next;
                return;
            }
            p = pn;
        }
    }

    /// Slot of a live, still-hashed template, or NIL.
    fn valid_template(&self, id: Option<ConnId>) -> u32 {
        match id {
            Some(ConnId(t)) => match self.slab.get(t as usize) {
                Some(c)
                    if c.flags & (F_LIVE | F_TEMPLATE | F_IN_HASHED) == F_LIVE | F_TEMPLATE | F_IN_HASHED =>
                {
                    t
                }
                _ => NIL,
            },
            None => NIL,
        }
    }

    /// Adds a connection in state NONE with `INITIAL_TIMEOUT`; the caller then
    /// runs `on_packet` for the packet that created it. The real server counts
    /// it inactive (`DestStats::bind_conn`). Counting it in the service's and
    /// real server's traffic (`conns`) is the caller's, who knows its worker slot.
    ///
    /// The caller looks the tuple up first: a second entry with the same IN key
    /// would shadow the first until one of them ends.
    ///
    /// On a full table (nothing expired to reclaim) it takes the slot of the
    /// oldest embryonic TCP connection, as does `insert_template`; a TCP
    /// connection is embryonic, and queued as such, until it first reaches
    /// ESTABLISHED. `ConnError::TableFull` only when there is none.
    ///
    /// A FULLNAT connection goes in with `insert_fnat`, which knows its local
    /// address: here it is refused (`ConnError::NoLocalAddress`).
    pub fn insert(&mut self, p: NewConn, now: u32) -> Result<ConnId, ConnError> {
        if p.method == ForwardMethod::FullNat {
            return Err(ConnError::NoLocalAddress);
        }
        self.insert_entry(p, None, now)
    }

    /// As `insert`, for a FULLNAT connection (`p.method` FullNat) leaving
    /// with `side.laddr`: its replies are found in OUT by RIP:rport →
    /// LIP:lport. When the entry is freed the local address goes to the
    /// freed queue (`take_fnat_freed`). Refused (`ConnError::NoLocalAddress`)
    /// before `enable_fnat` or for another method.
    pub fn insert_fnat(&mut self, p: NewConn, side: FnatSide, now: u32) -> Result<ConnId, ConnError> {
        if p.method != ForwardMethod::FullNat || !self.fnat_enabled() {
            return Err(ConnError::NoLocalAddress);
        }
        self.insert_entry(p, Some(side), now)
    }

    fn insert_entry(&mut self, p: NewConn, side: Option<FnatSide>, now: u32) -> Result<ConnId, ConnError> {
        let idx = self.alloc(now)?;
        if let (Some(side), Some(slot)) = (side, self.fnat.get_mut(idx as usize)) {
            *slot = side;
        }
        let tmpl = self.valid_template(p.template);
        let nat = matches!(p.method, ForwardMethod::Nat | ForwardMethod::FullNat);
        let tcp = p.flow.proto == Proto::Tcp;
        if let Some(d) = &p.dest {
            d.bind_conn();
        }
        let c = &mut self.slab[idx as usize];
        *c = Conn {
            in_next: NIL,
            out_next: NIL,
            ips: in_ips(p.flow.src, p.flow.dst),
            rip: p.rip,
            ports: [p.flow.sport, p.flow.dport],
            rport: p.rport,
            proto: p.flow.proto,
            method: p.method,
            state: TcpState::None,
            flags: F_LIVE
                | F_IN_HASHED
                | if nat { F_OUT_HASHED } else { F_NOOUTPUT }
                | if tcp { F_EMBRYONIC } else { 0 },
            egress: [0; 2],
            expires: now.saturating_add(INITIAL_TIMEOUT),
            timeout_or_prev: NIL,
            template: NIL,
            children_or_next: NIL,
            dest: p.dest,
            svc: p.svc,
        };
        self.link_in(idx);
        if nat {
            self.link_out(idx);
        }
        if tcp {
            self.enqueue(idx);
        }
        self.len += 1;
        if tmpl != NIL {
            self.attach(idx, tmpl, now);
        }
        Ok(ConnId(idx))
    }

    fn attach(&mut self, idx: u32, tmpl: u32, now: u32) {
        self.slab[idx as usize].template = tmpl;
        let t = &mut self.slab[tmpl as usize];
        t.children_or_next += 1;
        t.expires = now.saturating_add(t.timeout_or_prev);
    }

    /// Adds a persistence template pinning `t.client_net` to a real server
    /// for `timeout` seconds after its last use. Counted in the real server's
    /// persistent connections.
    pub fn insert_template(&mut self, t: NewTemplate, timeout: u32, now: u32) -> Result<ConnId, ConnError> {
        let idx = self.alloc(now)?;
        if let Some(d) = &t.dest {
            d.persistent_delta(true);
        }
        let nat = matches!(t.method, ForwardMethod::Nat | ForwardMethod::FullNat);
        self.slab[idx as usize] = Conn {
            in_next: NIL,
            out_next: NIL,
            ips: in_ips(t.flow.src, t.flow.dst),
            rip: t.rip,
            ports: [t.flow.sport, t.flow.dport],
            rport: t.rport,
            proto: t.flow.proto,
            method: t.method,
            state: TcpState::None,
            flags: F_LIVE | F_TEMPLATE | F_IN_HASHED | if nat { 0 } else { F_NOOUTPUT },
            egress: [0; 2],
            expires: now.saturating_add(timeout),
            timeout_or_prev: timeout,
            template: NIL,
            children_or_next: 0,
            dest: t.dest,
            svc: None,
        };
        self.link_in(idx);
        self.len += 1;
        self.templates += 1;
        Ok(ConnId(idx))
    }

    /// Puts connection `conn` under template `template` (children + 1) and
    /// refreshes the template to `now` + its persistence timeout, as the kernel
    /// does each time a template schedules a connection. False (and no change)
    /// if either id is stale, `conn` already has a template, or `template` is
    /// not a live template.
    pub fn link_template(&mut self, conn: ConnId, template: ConnId, now: u32) -> bool {
        let tmpl = self.valid_template(Some(template));
        match self.slab.get(conn.0 as usize) {
            Some(c) if tmpl != NIL && c.flags & (F_LIVE | F_TEMPLATE) == F_LIVE && c.template == NIL => {
                self.attach(conn.0, tmpl, now);
                true
            }
            _ => false,
        }
    }

    /// Refreshes a template's expiry to `now` + its persistence timeout.
    pub fn touch_template(&mut self, template: ConnId, now: u32) -> bool {
        match self.slab.get_mut(template.0 as usize) {
            Some(t) if t.flags & (F_LIVE | F_TEMPLATE) == F_LIVE | F_TEMPLATE => {
                t.expires = now.saturating_add(t.timeout_or_prev);
                true
            }
            _ => false,
        }
    }

    /// Runs the state machine for one packet of connection `id` and re-arms
    /// its timeout for the (new) state. TCP: the kernel's INPUT/OUTPUT tables,
    /// or INPUT_ONLY while the connection is flagged no-output (DR/TUN; a
    /// reply seen clears the flag, as in the kernel). Entering or leaving
    /// ESTABLISHED moves the connection between the real server's active and
    /// inactive counters. UDP only re-arms. Returns whether the state changed
    /// (false also for a stale id or a template).
    pub fn on_packet(
        &mut self,
        id: ConnId,
        dir: Direction,
        tcp_flags: u8,
        now: u32,
        timeouts: &Timeouts,
    ) -> bool {
        match self.slab.get_mut(id.0 as usize) {
            Some(c) if c.flags & (F_LIVE | F_TEMPLATE) == F_LIVE => c.step(dir, tcp_flags, now, timeouts),
            _ => false,
        }
    }

    /// Installs a connection a peer director synced (`crate::sync`), or brings the
    /// entry already there for its flow up to date: the synced TCP state (with the
    /// real server's active/inactive counters following it) and `timeout` seconds
    /// from `now`. An entry of the flow bound to another real server or method is
    /// replaced. A synced connection is embryonic (first to give way on a full table)
    /// only in a handshake state. Nothing changes when `TableFull` is returned.
    /// Returns the id and whether the entry is new.
    pub fn install_synced(
        &mut self,
        p: NewConn,
        state: TcpState,
        timeout: u32,
        now: u32,
    ) -> Result<(ConnId, bool), ConnError> {
        let found = self.lookup_in(p.flow, now).filter(|id| {
            let c = &self.slab[id.0 as usize];
            c.rip == p.rip && c.rport == p.rport && c.method == p.method
        });
        let (id, new) = match found {
            Some(id) => (id, false),
            None => {
                // An entry bound elsewhere goes; its slot then takes the new one.
                if let Some(old) = self.lookup_in(p.flow, now) {
                    self.remove(old);
                }
                (self.insert(p, now)?, true)
            }
        };
        let tcp = self.slab[id.0 as usize].proto == Proto::Tcp;
        let c = &mut self.slab[id.0 as usize];
        if tcp && c.state != state {
            let active = state.is_active();
            if active != (c.flags & F_ACTIVE != 0) {
                c.flags ^= F_ACTIVE;
                if let Some(d) = &c.dest {
                    d.set_active(active);
                }
            }
            c.state = state;
        }
        if tcp
            && !matches!(
                state,
                TcpState::None | TcpState::SynSent | TcpState::SynRecv | TcpState::Listen | TcpState::SynAck
            )
        {
            // Leaves the embryonic queue lazily, as on ESTABLISHED.
            c.flags &= !F_EMBRYONIC;
        }
        c.expires = now.saturating_add(timeout);
        Ok((id, new))
    }

    /// Installs a persistence template a peer director synced, or refreshes the one
    /// there (its persistence timeout becomes `timeout`); one bound to another real
    /// server is replaced. Returns the id and whether the template is new.
    pub fn install_synced_template(
        &mut self,
        t: NewTemplate,
        timeout: u32,
        now: u32,
    ) -> Result<(ConnId, bool), ConnError> {
        if let Some(id) = self.lookup_template(t.flow, now) {
            let c = &mut self.slab[id.0 as usize];
            if c.rip == t.rip && c.rport == t.rport && c.method == t.method {
                c.timeout_or_prev = timeout;
                c.expires = now.saturating_add(timeout);
                return Ok((id, false));
            }
            self.remove(id);
        }
        Ok((self.insert_template(t, timeout, now)?, true))
    }

    /// Ends entry `id` now (expire_nodest_conn, `ipvsadm -C`, tests). A
    /// template that still controls connections is only unhashed: no new
    /// lookup finds it, and it is freed with its last connection. Returns
    /// false if `id` names no live, still-visible entry.
    pub fn remove(&mut self, id: ConnId) -> bool {
        let Some(c) = self.slab.get(id.0 as usize) else {
            return false;
        };
        if c.flags & (F_LIVE | F_IN_HASHED) != F_LIVE | F_IN_HASHED {
            return false;
        }
        if c.flags & F_TEMPLATE != 0 && c.children_or_next > 0 {
            self.unlink_in(id.0);
            self.slab[id.0 as usize].flags &= !F_IN_HASHED;
        } else {
            self.free_entry(id.0);
        }
        true
    }

    /// Unhashes and frees a live slot, settles the real server's counters and
    /// the template's children; frees an unhashed template whose last
    /// connection this was. Returns how many entries were freed.
    fn free_entry(&mut self, idx: u32) -> usize {
        if self.queued(idx) {
            self.unqueue(idx);
        }
        let flags = self.slab[idx as usize].flags;
        if flags & F_IN_HASHED != 0 {
            self.unlink_in(idx);
        }
        if flags & F_OUT_HASHED != 0 {
            self.unlink_out(idx);
        }
        if self.slab[idx as usize].method == ForwardMethod::FullNat && flags & F_TEMPLATE == 0 {
            if let Some(side) = self.fnat.get(idx as usize) {
                if self.fnat_freed.len() < self.fnat_freed.capacity() {
                    self.fnat_freed.push(side.laddr);
                } else {
                    self.fnat_freed_lost += 1;
                }
            }
        }
        let c = &mut self.slab[idx as usize];
        let dest = c.dest.take();
        c.svc = None;
        let tmpl = c.template;
        c.flags = 0;
        c.template = NIL;
        c.timeout_or_prev = NIL;
        c.children_or_next = 0;
        c.in_next = self.free_head;
        c.out_next = NIL;
        self.free_head = idx;
        self.len -= 1;
        if flags & F_TEMPLATE != 0 {
            self.templates -= 1;
            if let Some(d) = dest {
                d.persistent_delta(false);
            }
        } else if let Some(d) = dest {
            d.unbind_conn(flags & F_ACTIVE != 0);
        }
        let mut freed = 1;
        if let Some(t) = self.slab.get_mut(tmpl as usize) {
            t.children_or_next = t.children_or_next.saturating_sub(1);
            if t.children_or_next == 0 && t.flags & (F_LIVE | F_TEMPLATE | F_IN_HASHED) == F_LIVE | F_TEMPLATE
            {
                freed += self.free_entry(tmpl);
            }
        }
        freed
    }

    /// Examines up to `budget` slots from a moving cursor and frees the
    /// expired entries; a template that still controls connections is
    /// re-armed for its persistence timeout instead (the kernel's n_control
    /// check). Returns how many entries were freed. Call it between bursts
    /// with a budget that sweeps the whole slab every second or so.
    pub fn expire(&mut self, now: u32, budget: usize) -> usize {
        let cap = self.slab.len() as u32;
        if cap == 0 {
            return 0;
        }
        let mut freed = 0;
        for _ in 0..budget.min(cap as usize) {
            let i = self.cursor;
            self.cursor = if i + 1 >= cap { 0 } else { i + 1 };
            let c = &mut self.slab[i as usize];
            if c.flags & F_LIVE == 0 {
                continue;
            }
            if now <= c.expires {
                // Established since it was queued: the sweep keeps the
                // queue's head short of such entries for `evict_embryonic`.
                if c.flags & F_EMBRYONIC == 0 && self.queued(i) {
                    self.unqueue(i);
                }
                continue;
            }
            if c.flags & F_TEMPLATE != 0 && c.children_or_next > 0 {
                c.expires = now.saturating_add(c.timeout_or_prev);
                continue;
            }
            freed += self.free_entry(i);
        }
        freed
    }

    /// Longest IN and OUT chains (tests of the hash spread).
    #[cfg(test)]
    pub(super) fn longest_chains(&self) -> (usize, usize) {
        let walk = |heads: &[u32], next: fn(&Conn) -> u32| {
            heads
                .iter()
                .map(|&h| {
                    let (mut n, mut i) = (0, h);
                    while let Some(c) = self.slab.get(i as usize) {
                        n += 1;
                        i = next(c);
                    }
                    n
                })
                .max()
                .unwrap_or(0)
        };
        (
            walk(&self.in_heads, |c| c.in_next),
            walk(&self.out_heads, |c| c.out_next),
        )
    }

    /// Every entry in the slab, expired ones not yet collected included
    /// (`ipvsadm -Lc`; filter with `Conn::is_expired`). O(capacity): control path only.
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> + '_ {
        self.slab
            .iter()
            .enumerate()
            .filter(|(_, c)| c.flags & F_LIVE != 0)
            .map(|(i, c)| (ConnId(i as u32), c))
    }
}
