//! The established-connection fast path: the packet nearly every frame is.
//!
//! An untagged IPv4 frame to our MAC, a 20-byte header, no fragment, TTL
//! above 1, TCP or UDP, of a connection this worker owns and already has,
//! forwarded by NAT (either way), FULLNAT (either way; with PROXY only once
//! the header is acked and a segment needs no more than its seq or ack
//! shifted; TOA connections take the general path), DR, or TUN within the
//! egress MTU, to a resolved next hop. Such a frame
//! is checked and rewritten here in one pass over fixed-size header arrays,
//! so the offsets are known at compile time and cost no bounds checks.
//!
//! Where its packets go was resolved by the connection's first packet this
//! way and is kept in an egress slot (`egress`): route, port, MACs, and the
//! martian check of the entry's addresses, revalidated by the neighbour
//! table's generation. The IPv4 header checksum is the NIC's verdict where it
//! gives one (`PacketBuf::rx_ip_csum`), else summed here.
//!
//! Anything else, and anything that would drop, returns `None` before any
//! state changes (a cache slot filled aside), and the general path
//! (`Forwarder::classify`) handles the frame from the start: it stays the
//! one definition of behaviour. The fast
//! path only skips its layers, never decides differently; the
//! `fast_path_matches_general_path*` property tests in `dp/tests/fuzz_regressions.rs`
//! holds it to that, frame by frame, counters and connection states included.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use super::egress::Egress;
use super::{Forwarder, Verdict};
use crate::conn::{Direction, FlowKey};
use crate::fnat::laddr::owner_of_port;
use crate::fnat::side::ClientHint;
use crate::neigh::Neigh;
use crate::packet::PacketBuf;
use crate::service::{ForwardMethod, Proto};
use crate::stats::DropReason;
use crate::wire::ethernet::{field as eth, EtherType, HEADER_LEN as ETH_LEN};
use crate::wire::ipip::IPIP_HEADER_LEN;
use crate::wire::ipv4::{self, field as ip, IpProtocol, HEADER_LEN as IP_LEN};
use crate::wire::tcp::{self, TcpFlags};
use crate::wire::{checksum, udp};
use crate::xmit::tun;

/// What `fast` read of a frame's headers, for `fast_conn`.
#[derive(Clone, Copy)]
struct Parsed {
    len: usize,
    /// The IPv4 total length.
    total: usize,
    proto: Proto,
    /// TCP's flags; 0 for UDP.
    flags: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
}

/// Ethernet, IPv4 and the first 8 bytes of L4: ports, and UDP's length.
const HEAD_LEN: usize = ETH_LEN + IP_LEN + udp::HEADER_LEN;
/// Version 4, a 20-byte header: no options.
const VER_IHL: u8 = 0x40 | (IP_LEN / 4) as u8;

impl Forwarder {
    /// Forwards a frame of a known connection completely, or returns `None`
    /// having changed nothing.
    #[inline(always)]
    pub(super) fn fast<B: PacketBuf>(
        &mut self,
        in_port: u16,
        pkt: &mut B,
        redirected: bool,
    ) -> Option<Verdict> {
        let len = pkt.len();
        let d = pkt.data();
        let head: &[u8; HEAD_LEN] = d.get(..HEAD_LEN)?.try_into().ok()?;
        let port_mac = *self.hot.port_macs.get(in_port as usize)?;
        let dst_mac = u64::from_le_bytes(head[..8].try_into().ok()?) & 0xFFFF_FFFF_FFFF;
        let ethertype = eth::ETHERTYPE..ETH_LEN;
        if dst_mac != port_mac || head[ethertype] != EtherType::IPV4.0.to_be_bytes() {
            return None;
        }
        let iph: &[u8; IP_LEN] = head[ETH_LEN..ETH_LEN + IP_LEN].try_into().ok()?;
        let be16 = |at: usize| u16::from_be_bytes([iph[at], iph[at + 1]]);
        let be32 = |at: usize| u32::from_be_bytes([iph[at], iph[at + 1], iph[at + 2], iph[at + 3]]);
        let total = usize::from(be16(ip::LENGTH));
        // Version 4 with no options; no fragment (MF clear, offset 0); a TTL
        // that survives the decrement; a total length inside the frame.
        if iph[ip::VER_IHL] != VER_IHL
            || be16(ip::FLG_OFF) & (ipv4::FLAG_MF | ipv4::OFFSET_MASK) != 0
            || iph[ip::TTL] <= 1
            || total > len - ETH_LEN
        {
            return None;
        }
        let src = Ipv4Addr::from(be32(ip::SRC));
        let dst = Ipv4Addr::from(be32(ip::DST));
        let l4 = &head[ETH_LEN + IP_LEN..];
        let l4_16 = |at: usize| u16::from_be_bytes([l4[at], l4[at + 1]]);
        let seg_len = total.checked_sub(IP_LEN)?;
        let (proto, flags) = match iph[ip::PROTOCOL] {
            IpProtocol::TCP => {
                let seg = d.get(ETH_LEN + IP_LEN..ETH_LEN + total)?;
                let doff = usize::from(*seg.get(tcp::field::DATA_OFF)? >> 4) * 4;
                if seg_len < tcp::HEADER_LEN || doff < tcp::HEADER_LEN || doff > seg_len {
                    return None;
                }
                let flags = *seg.get(tcp::field::FLAGS)?;
                // A SYN is nearly always a new connection: spare it a lookup
                // here before the general path's.
                if flags & TcpFlags::SYN != 0 {
                    return None;
                }
                (Proto::Tcp, flags)
            }
            IpProtocol::UDP => {
                let ulen = usize::from(l4_16(udp::field::LENGTH));
                if seg_len < udp::HEADER_LEN || ulen < udp::HEADER_LEN || ulen > seg_len {
                    return None;
                }
                (Proto::Udp, 0)
            }
            _ => return None,
        };
        // After the SYN's way out above: it need not pay the sum twice.
        if !pkt.ip_csum_ok(|| ipv4::header_checksum_ok(iph)) {
            return None;
        }
        // TCP and UDP put their ports at the same offsets.
        let sport = l4_16(udp::field::SRC_PORT);
        let dport = l4_16(udp::field::DST_PORT);

        let p = Parsed {
            len,
            total,
            proto,
            flags,
            src,
            dst,
            sport,
            dport,
        };
        // Each direction its own copy of the rest, with the direction a
        // constant: fewer values live at once, fewer branches on it.
        if self.snap.is_vip(dst) {
            self.fast_conn::<true, B>(in_port, p, pkt, redirected)
        } else {
            self.fast_conn::<false, B>(in_port, p, pkt, redirected)
        }
    }

    /// `fast` past the parse: the connection's lookup, checks and rewrite;
    /// `TO_VIP` for client → VIP packets (the IN direction).
    #[inline(always)]
    fn fast_conn<const TO_VIP: bool, B: PacketBuf>(
        &mut self,
        in_port: u16,
        p: Parsed,
        pkt: &mut B,
        redirected: bool,
    ) -> Option<Verdict> {
        let Parsed {
            len,
            total,
            proto,
            flags,
            src,
            dst,
            sport,
            dport,
        } = p;
        let to_vip = TO_VIP;
        if to_vip && !self.owns(dst) {
            return None;
        }
        let cip = if to_vip { src } else { dst };
        // A FULLNAT reply: its destination port names the owner.
        let lip = if to_vip { None } else { self.snap.lip(dst) };
        let (to_lip, steered) = (lip.is_some(), lip.is_some_and(|l| l.steers(in_port, proto)));
        if !redirected && self.hot.workers > 1 {
            let n = self.hot.workers;
            let owner = if to_lip {
                owner_of_port(dport, n)
            } else {
                super::owner_of(cip, self.snap.owner_mask(), n)
            };
            if owner != self.worker {
                return None;
            }
        }
        let flow = FlowKey::new(proto, src, sport, dst, dport);
        let now = self.now;
        let ((id, c, side), dir) = if to_vip {
            (self.conns.lookup_in_mut_side(flow, now)?, Direction::Input)
        } else {
            (self.conns.lookup_out_mut_side(flow, now)?, Direction::Output)
        };
        // FULLNAT: the other end's rewrite; a PROXY connection past its
        // header here too when all a segment needs is its seq (client → RS)
        // or ack (RS → client) shifted (`SeqShift::steady`); TOA, and PROXY
        // otherwise, the general path's job.
        let mut seq_fix = None;
        let other = match side {
            Some(s) => {
                match s.hint {
                    ClientHint::None => {}
                    ClientHint::Proxy { shift, .. } if proto == Proto::Tcp => {
                        let tcp_seg = pkt.data().get(ETH_LEN + IP_LEN..ETH_LEN + total)?;
                        seq_fix = Some(shift.steady(dir == Direction::Input, tcp_seg)?);
                    }
                    _ => return None,
                }
                Some(match dir {
                    Direction::Input => (s.laddr.lip, s.laddr.lport),
                    Direction::Output => (c.cip(), c.cport()),
                })
            }
            None => None,
        };
        // A proxied connection's sequence numbers are translated: the general path's job.
        if self
            .synproxy
            .as_deref()
            .is_some_and(|t| super::synproxy::proxied(t, id, c))
        {
            return None;
        }
        // expire_nodest_conn ends the connection: the general path's job.
        if self.hot.expire_nodest_conn && c.dest().is_some_and(|d| d.removed.load(Ordering::Relaxed)) {
            return None;
        }
        // Where the packet goes and what it becomes.
        let (method, toward, addr, l4port) = match (dir, c.method()) {
            (Direction::Input, m @ (ForwardMethod::Nat | ForwardMethod::Dr | ForwardMethod::Tun)) => {
                (m, c.rip(), c.rip(), c.rport())
            }
            (Direction::Output, ForwardMethod::Nat) => (ForwardMethod::Nat, c.cip(), c.vip(), c.vport()),
            (Direction::Input, ForwardMethod::FullNat) if other.is_some() => {
                (ForwardMethod::FullNat, c.rip(), c.rip(), c.rport())
            }
            (Direction::Output, ForwardMethod::FullNat) if other.is_some() => {
                (ForwardMethod::FullNat, c.cip(), c.vip(), c.vport())
            }
            _ => return None,
        };
        let slot = c.egress(dir);
        let shared = &*self.shared;
        // Read before any neighbour lookup whose answer is kept.
        let generation = shared.neigh.generation();
        // A slot that no longer resolves: the general path asks ARP.
        let (recorded, eg) = if slot != 0 {
            (slot, self.egress.get(slot, generation, now, &shared.neigh)?)
        } else {
            self.egress
                .keep(resolve(shared, src, dst, toward, generation, now)?)
        };
        if slot == 0 {
            c.set_egress(dir, recorded);
        }
        // A packet (with TUN, its outer header too) past the egress MTU gets
        // an ICMP "fragmentation needed" or a drop: the general path's business.
        let outer = if method == ForwardMethod::Tun {
            IPIP_HEADER_LEN
        } else {
            0
        };
        if total + outer > usize::from(eg.mtu) {
            return None;
        }

        // Ours from here on. The checks above leave nothing below to fail;
        // were it to, the frame is a counted drop, never a second pass.
        if redirected {
            self.counters.redirected_in += 1;
        } else {
            self.counters.rx_pkts += 1;
            self.counters.rx_bytes += len as u64;
        }
        if to_lip {
            if redirected {
                self.counters.fnat_replies_redirected += 1;
            } else if steered {
                self.counters.fnat_replies_steered += 1;
            } else {
                self.counters.fnat_replies_direct += 1;
            }
        }
        super::conn_packet(c, dir, flags, true, now, &self.timeouts, self.worker, len);
        // The sync daemon's count of the connection's packets (`Forwarder::track`).
        if let (Some(t), Direction::Input) = (self.sync.as_deref_mut(), dir) {
            t.on_input(&self.conns, id, now, self.synproxy.as_deref());
        }
        // The rewrite and the new Ethernet addresses, through one borrow of
        // the frame (after the outer header, for TUN); each method counts
        // its own packet in its own branch (no second dispatch on it).
        let counters = &mut self.counters;
        let done = if method == ForwardMethod::Tun {
            match tun::encapsulate(pkt, ETH_LEN, eg.addr, addr, eg.mtu) {
                Ok(tun::TunOutcome::Encapsulated) => {
                    if let Some(h) = pkt.data_mut().get_mut(..eg.macs.len()) {
                        h.copy_from_slice(&eg.macs);
                    }
                    counters.tun_out += 1;
                    Ok(())
                }
                Ok(tun::TunOutcome::FragNeeded { .. }) => Err(DropReason::TooBig),
                Err(r) => Err(r),
            }
        } else {
            let frame = pkt.data_mut();
            if method == ForwardMethod::Dr {
                if let Some(h) = frame.get_mut(..eg.macs.len()) {
                    h.copy_from_slice(&eg.macs);
                }
                counters.dr_out += 1;
                Ok(())
            } else {
                let r = rewrite(frame, proto, dir, (addr, l4port), other, seq_fix, &eg.macs);
                if r.is_ok() {
                    *match (other.is_some(), dir) {
                        (false, Direction::Input) => &mut counters.nat_in,
                        (false, Direction::Output) => &mut counters.nat_out,
                        (true, Direction::Input) => &mut counters.fnat_in,
                        (true, Direction::Output) => &mut counters.fnat_out,
                    } += 1;
                }
                r
            }
        };
        let port = eg.hop.port;
        Some(match done {
            Ok(()) => {
                self.counters.fast_path += 1;
                Verdict::Forward { port }
            }
            Err(r) => {
                self.drops.count(r);
                Verdict::Drop(r)
            }
        })
    }
}

/// The first packet one way on a connection: what its egress slot will stand
/// for. Martian and local addresses (this packet's, which are the entry's
/// keys: a slot is only ever recorded for addresses that pass), the route
/// toward `toward`, the port, the neighbour: the egress for a slot
/// (`EgressCache::keep`); None for the general path.
#[cold]
#[inline(never)]
fn resolve(
    shared: &super::Shared,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    toward: Ipv4Addr,
    generation: u64,
    now: u32,
) -> Option<Egress> {
    let (martian, local) = shared.martian_or_local(src, dst);
    if martian || local {
        return None;
    }
    let hop = shared.routes.lookup(toward)?;
    let out = shared.ports.get(hop.port as usize)?;
    let Neigh::Resolved(mac) = shared.neigh.lookup(hop.via, now) else {
        return None;
    };
    Some(Egress::new(hop, out, mac, generation, now))
}

/// The L3/L4 rewrite of a NAT packet, FULLNAT's (`other`: the opposite
/// end's new address and port) too, a PROXY connection's sequence shift
/// (`seq_fix`), and the new Ethernet addresses `macs`: all at fixed offsets
/// of one bounds-checked header array.
#[inline(always)]
fn rewrite(
    frame: &mut [u8],
    proto: Proto,
    dir: Direction,
    (addr, l4port): (Ipv4Addr, u16),
    other: Option<(Ipv4Addr, u16)>,
    seq_fix: Option<(usize, u32, u32)>,
    macs: &[u8; 12],
) -> Result<(), DropReason> {
    // `fast` checked the frame holds the whole L4 header: 20 bytes of TCP
    // (total length >= 40), or UDP's 8 (HEAD_LEN).
    const L4: usize = ETH_LEN + IP_LEN;
    match proto {
        Proto::Tcp => {
            let h: &mut [u8; L4 + tcp::HEADER_LEN] = frame
                .get_mut(..L4 + tcp::HEADER_LEN)
                .and_then(|h| h.try_into().ok())
                .ok_or(DropReason::MalformedL4)?;
            match other {
                Some(o) => fnat_fixed(h, dir, (addr, l4port), o, L4 + tcp::field::CHECKSUM, false)?,
                None => nat_fixed(h, dir, addr, l4port, L4 + tcp::field::CHECKSUM, false)?,
            }
            if let Some(f) = seq_fix {
                shift_number(h, f);
            }
            h[..12].copy_from_slice(macs);
        }
        Proto::Udp => {
            let h: &mut [u8; HEAD_LEN] = frame
                .get_mut(..HEAD_LEN)
                .and_then(|h| h.try_into().ok())
                .ok_or(DropReason::MalformedL4)?;
            match other {
                Some(o) => fnat_fixed(h, dir, (addr, l4port), o, L4 + udp::field::CHECKSUM, true)?,
                None => nat_fixed(h, dir, addr, l4port, L4 + udp::field::CHECKSUM, true)?,
            }
            h[..12].copy_from_slice(macs);
        }
    }
    Ok(())
}

/// A PROXY connection's seq or ack (`SeqShift::steady`: its offset in the
/// TCP header, old and new value) rewritten, the TCP checksum with it.
#[inline(always)]
fn shift_number<const N: usize>(h: &mut [u8; N], (at, old, new): (usize, u32, u32)) {
    const TCP: usize = ETH_LEN + IP_LEN;
    if let Some(b) = h.get_mut(TCP + at..TCP + at + 4) {
        b.copy_from_slice(&new.to_be_bytes());
    }
    if let Some(b) = h.get_mut(TCP + tcp::field::CHECKSUM..TCP + tcp::field::CHECKSUM + 2) {
        let c = u16::from_be_bytes([b[0], b[1]]);
        b.copy_from_slice(&checksum::update32(c, old, new).to_be_bytes());
    }
}

/// FULLNAT at the same fixed offsets as `nat_fixed`: the TTL and both
/// ends, the end `nat_fixed` rewrites (`addr:port`) and the other one
/// (`other`: the source client → real server, the destination of replies),
/// each checksum updated once for all of it.
#[inline(always)]
fn fnat_fixed<const N: usize>(
    h: &mut [u8; N],
    dir: Direction,
    (addr, port): (Ipv4Addr, u16),
    (addr2, port2): (Ipv4Addr, u16),
    l4_csum_at: usize,
    udp: bool,
) -> Result<(), DropReason> {
    const TTL: usize = ETH_LEN + ip::TTL;
    const IP_CSUM: usize = ETH_LEN + ip::CHECKSUM;
    const L4: usize = ETH_LEN + IP_LEN;
    let (src, dst) = (
        (ETH_LEN + ip::SRC, L4 + udp::field::SRC_PORT),
        (ETH_LEN + ip::DST, L4 + udp::field::DST_PORT),
    );
    let ((a1, p1), (a2, p2)) = match dir {
        Direction::Input => (dst, src),
        Direction::Output => (src, dst),
    };
    let get16 = |h: &[u8; N], at: usize| u16::from_ne_bytes([h[at], h[at + 1]]);
    let get32 = |h: &[u8; N], at: usize| u32::from_ne_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let ttl = h[TTL];
    if ttl <= 1 {
        return Err(DropReason::TtlExpired);
    }
    h[TTL] = ttl - 1;
    let (old1, old2) = (get32(h, a1), get32(h, a2));
    let (new1, new2) = (
        u32::from_ne_bytes(addr.octets()),
        u32::from_ne_bytes(addr2.octets()),
    );
    h[a1..a1 + 4].copy_from_slice(&new1.to_ne_bytes());
    h[a2..a2 + 4].copy_from_slice(&new2.to_ne_bytes());
    let addr_delta = checksum::delta32(old1, new1) + checksum::delta32(old2, new2);
    let c = checksum::apply(get16(h, IP_CSUM), checksum::TTL_DECREMENT_NE + addr_delta);
    h[IP_CSUM..IP_CSUM + 2].copy_from_slice(&c.to_ne_bytes());
    let (np1, np2) = (
        u16::from_ne_bytes(port.to_be_bytes()),
        u16::from_ne_bytes(port2.to_be_bytes()),
    );
    let (op1, op2) = (get16(h, p1), get16(h, p2));
    h[p1..p1 + 2].copy_from_slice(&np1.to_ne_bytes());
    h[p2..p2 + 2].copy_from_slice(&np2.to_ne_bytes());
    let old_csum = get16(h, l4_csum_at);
    if udp && old_csum == 0 {
        return Ok(()); // UDP without checksum stays without
    }
    let delta = addr_delta + checksum::delta16(op1, np1) + checksum::delta16(op2, np2);
    let mut c = checksum::apply(old_csum, delta);
    if udp && c == 0 {
        c = 0xFFFF;
    }
    h[l4_csum_at..l4_csum_at + 2].copy_from_slice(&c.to_ne_bytes());
    Ok(())
}

/// NAT at the fixed offsets of an untagged frame with a 20-byte IPv4 header:
/// the TTL, and the destination (client → real server) or source (replies)
/// address and port, each checksum updated once. The same arithmetic as
/// `xmit::forward_rewrite`, whose general form also serves IP options,
/// fragments and ICMP errors; here every offset is a constant.
///
/// The checksum arithmetic runs on native-endian words, with no byte swap:
/// a ones' complement sum is the same in either byte order (RFC 1071 2.B),
/// as long as every word of it (the checksums too) is taken in one order.
/// The TTL decrement changes the TTL/protocol word by -0x0100 in network
/// order, so its RFC 1624 term `!m + m'` is a constant: -1 in ones'
/// complement, 0xFEFF big-endian, whichever byte order it is read in.
#[inline(always)]
fn nat_fixed<const N: usize>(
    h: &mut [u8; N],
    dir: Direction,
    addr: Ipv4Addr,
    port: u16,
    l4_csum_at: usize,
    udp: bool,
) -> Result<(), DropReason> {
    const TTL: usize = ETH_LEN + ip::TTL;
    const IP_CSUM: usize = ETH_LEN + ip::CHECKSUM;
    const L4: usize = ETH_LEN + IP_LEN;
    let (addr_at, port_at) = match dir {
        Direction::Input => (ETH_LEN + ip::DST, L4 + udp::field::DST_PORT),
        Direction::Output => (ETH_LEN + ip::SRC, L4 + udp::field::SRC_PORT),
    };
    let get16 = |h: &[u8; N], at: usize| u16::from_ne_bytes([h[at], h[at + 1]]);
    let ttl = h[TTL];
    if ttl <= 1 {
        return Err(DropReason::TtlExpired);
    }
    h[TTL] = ttl - 1;
    let old_addr = u32::from_ne_bytes([h[addr_at], h[addr_at + 1], h[addr_at + 2], h[addr_at + 3]]);
    let new_addr = u32::from_ne_bytes(addr.octets());
    h[addr_at..addr_at + 4].copy_from_slice(&new_addr.to_ne_bytes());
    let addr_delta = checksum::delta32(old_addr, new_addr);
    let c = checksum::apply(get16(h, IP_CSUM), checksum::TTL_DECREMENT_NE + addr_delta);
    h[IP_CSUM..IP_CSUM + 2].copy_from_slice(&c.to_ne_bytes());
    let new_port = u16::from_ne_bytes(port.to_be_bytes());
    let old_port = get16(h, port_at);
    h[port_at..port_at + 2].copy_from_slice(&new_port.to_ne_bytes());
    let old_csum = get16(h, l4_csum_at);
    if udp && old_csum == 0 {
        return Ok(()); // UDP without checksum stays without
    }
    let mut c = checksum::apply(old_csum, addr_delta + checksum::delta16(old_port, new_port));
    if udp && c == 0 {
        c = 0xFFFF;
    }
    h[l4_csum_at..l4_csum_at + 2].copy_from_slice(&c.to_ne_bytes());
    Ok(())
}
