//! FULLNAT in the per-packet path (see `crate::fnat` for the parts).
//!
//! - New connection: after scheduling, on the client's owner as for NAT, a
//!   local address from this worker's pool of the service
//!   (`fnat::pools::WorkerPools`); none left: the SYN drops as
//!   `LaddrExhausted`, nothing is created. The entry's OUT key is what the
//!   replies carry, RIP:rport → LIP:lport.
//! - Replies: a packet to a local address belongs to the worker that owns its
//!   destination port (`fnat::laddr::owner_of_port`): the pools lease each
//!   worker only ports of its own share, and a connection is made on its
//!   client's owner, so the owner of the port is the owner of the connection.
//!   A reply received elsewhere goes to it through the redirect rings; the
//!   owner counts which way each reply came (`fnat_replies_direct`: RSS
//!   happened to pick the owner's queue; `fnat_replies_redirected`;
//!   `fnat_replies_steered`: a NIC flow rule for its LIP on the port it came
//!   in on put it there, see `fnat::steer`).
//! - Client → RS: source LIP:lport, destination RIP:rport; then the client
//!   hint: TOA on the SYN and on the segments acknowledging the server's
//!   first byte (as DPVS), or the PROXY header at the start of the stream and
//!   the sequence shift on every later segment (`fnat::seq`). The packet
//!   grows into the buffer's tailroom, never past the egress MTU: a TOA that
//!   does not fit is left out (`toa_skipped`), a PROXY header that does not
//!   fit drops the segment (`TooBig`; the client resends it), client bytes
//!   past the room are cut (resent when the server's ack stops short).
//! - RS → client: the ack and SACK shift back (PROXY), or with TOA the
//!   SYN-ACK's MSS 8 bytes down; then VIP:vport → CIP:cport.
//! - The fast path (`core::fast`) takes established FULLNAT packets without
//!   a client hint, and PROXY ones past the header that need only their seq
//!   or ack shifted (`SeqShift::steady`); everything above is the general
//!   path's.
//! - Ports return to their pool when the entry is freed, after a TIME_WAIT
//!   hold (`ConnTable::take_fnat_freed`, drained after every packet of the
//!   general path and every housekeeping round).
//!
//! Fragments: a fragmented client segment of a PROXY connection cannot be
//! shifted (its TCP checksum covers the whole datagram): dropped
//! (`Fragment`). A reply's non-first fragments carry no port: the worker that
//! redirects the first fragment remembers where it sent it, and passes the
//! rest of the datagram on to the same owner (`FragCache`).

use std::net::{Ipv4Addr, SocketAddrV4};

use super::{Endpoints, Forwarder, Ip, Verdict};
use crate::conn::ConnId;
use crate::fnat::laddr::owner_of_port;
use crate::fnat::proxy::{self, ProxyVersion};
use crate::fnat::segment::SegError;
use crate::fnat::seq::{ClientPlan, SeqShift};
use crate::fnat::side::{ClientHint, FnatSide};
use crate::fnat::toa;
use crate::packet::PacketBuf;
use crate::route::NextHop;
use crate::service::ClientAddr;
use crate::stats::DropReason;
use crate::wire::bytes::get_u32;
use crate::wire::tcp::{field as tcp_field, TcpFlags};
use crate::xmit::fnat;

/// Room for the longest PROXY header we write (v1 over IPv4).
const HDR_MAX: usize = proxy::V1_TCP4_MAX_LEN;

impl Forwarder {
    /// The worker that owns a reply to a local address with destination
    /// port `lport`, if not this one (to redirect it there). Counts the
    /// replies the owner handles by the way they came; `steered`: a NIC
    /// flow rule for its LIP on the port it came in on put it on our queue.
    #[inline]
    pub(super) fn fnat_reply_owner(&mut self, lport: u16, redirected: bool, steered: bool) -> Option<u16> {
        let n = self.shared.workers;
        if n > 1 && !redirected {
            let o = owner_of_port(lport, n);
            if o != self.worker {
                self.counters.redirected_out += 1;
                return Some(o);
            }
        }
        if redirected {
            self.counters.fnat_replies_redirected += 1;
        } else if steered {
            self.counters.fnat_replies_steered += 1;
        } else {
            self.counters.fnat_replies_direct += 1;
        }
        None
    }

    /// The FULLNAT side of a new connection of service `si`: a local address
    /// leased from this worker's pool, and the client hint the service asks
    /// for (`syn_seq`: the client's ISN, for a PROXY header's shift).
    pub(super) fn fnat_lease(
        &mut self,
        si: usize,
        client_addr: ClientAddr,
        flow_ends: (SocketAddrV4, SocketAddrV4),
        syn_seq: Option<u32>,
    ) -> Result<FnatSide, DropReason> {
        let laddr = self
            .pools
            .allocate(si, self.now)
            .map_err(|_| DropReason::LaddrExhausted)?;
        let (client, vip) = flow_ends;
        let proxy = |version| {
            let n = proxy::header_len(version, client, vip) as u16;
            ClientHint::Proxy {
                version,
                shift: SeqShift::new(syn_seq.unwrap_or(0), n),
            }
        };
        let hint = match (client_addr, syn_seq) {
            (ClientAddr::Toa, Some(_)) => ClientHint::Toa { rs_data: None },
            (ClientAddr::ProxyV1, Some(_)) => proxy(ProxyVersion::V1),
            (ClientAddr::ProxyV2, Some(_)) => proxy(ProxyVersion::V2),
            _ => ClientHint::None,
        };
        Ok(FnatSide { laddr, hint })
    }

    /// Gives the ports of FULLNAT entries freed since the last call back to
    /// their pools.
    #[inline]
    pub(super) fn return_fnat_ports(&mut self) {
        let now = self.now;
        for a in self.conns.take_fnat_freed() {
            self.pools.free(a, now);
        }
    }

    /// Client → real server on FULLNAT connection `id`, whose entry `track`
    /// has already stepped: the addresses, then the client hint.
    pub(super) fn fnat_in<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        ip: &Ip,
        id: ConnId,
        e: &Endpoints,
        l4: bool,
        hop: NextHop,
    ) -> Verdict {
        let (rip, rport) = (e.rip, e.rport);
        let client = SocketAddrV4::new(e.flow.src, e.flow.sport);
        let vip = SocketAddrV4::new(e.flow.dst, e.flow.dport);
        let Some(side) = self.conns.fnat(id).copied() else {
            return Verdict::Drop(DropReason::NoConnNotSyn);
        };
        let mtu = self.egress_mtu(hop).map_or(0, usize::from);
        let Some(ipb) = pkt.data_mut().get_mut(ip.l2..ip.l2 + ip.total) else {
            return Verdict::Drop(DropReason::MalformedIpv4);
        };
        let lip = (side.laddr.lip, side.laddr.lport);
        if let Err(r) = fnat::fnat_rewrite(ipb, ip.hl, lip, (rip, rport), l4) {
            return Verdict::Drop(r);
        }
        let tcp = ip.proto == crate::wire::ipv4::IpProtocol::TCP && l4;
        match side.hint {
            ClientHint::None => {}
            // A fragment cannot be shifted (the checksum covers the whole
            // datagram, the first fragment's header the rest): none of the
            // connection's fragments go.
            ClientHint::Proxy { .. } if ip.frag => return Verdict::Drop(DropReason::Fragment),
            _ if !tcp => {}
            ClientHint::Toa { rs_data } => {
                let (flags, ack) = {
                    let seg = pkt.data().get(ip.l2 + ip.hl..).unwrap_or(&[]);
                    (
                        seg.get(tcp_field::FLAGS).copied().unwrap_or(0),
                        get_u32(seg, tcp_field::ACK),
                    )
                };
                let syn = flags & (TcpFlags::SYN | TcpFlags::ACK) == TcpFlags::SYN;
                let first_ack = flags & (TcpFlags::SYN | TcpFlags::RST) == 0
                    && flags & TcpFlags::ACK != 0
                    && rs_data == Some(ack);
                if (syn || first_ack) && !ip.frag {
                    let r = grow(pkt, ip.l2, ip.total, toa::TOA_LEN, mtu, |b| {
                        toa::insert_toa(b, client)
                    });
                    match r {
                        Ok(_) => self.counters.toa_inserted += 1,
                        Err(_) => self.counters.toa_skipped += 1,
                    }
                }
            }
            ClientHint::Proxy { version, mut shift } => {
                let plan = {
                    let seg = pkt.data().get(ip.l2 + ip.hl..ip.l2 + ip.total).unwrap_or(&[]);
                    let doff = usize::from(seg.get(tcp_field::DATA_OFF).copied().unwrap_or(0) >> 4) * 4;
                    let flags = seg.get(tcp_field::FLAGS).copied().unwrap_or(0);
                    shift.plan(
                        get_u32(seg, tcp_field::SEQ),
                        flags,
                        seg.len().saturating_sub(doff),
                    )
                };
                let before = shift.state();
                // Only a segment at the stream's start takes the header (and
                // room to grow); the rest only shift or trim in place.
                let r = if plan == ClientPlan::Insert {
                    let mut hdr = [0u8; HDR_MAX];
                    let Ok(n) = proxy::emit(version, &mut hdr, client, vip) else {
                        return Verdict::Drop(DropReason::MalformedL4);
                    };
                    grow(pkt, ip.l2, ip.total, n, mtu, |b| shift.client_to_rs(b, &hdr[..n]))
                } else {
                    let r = match pkt.data_mut().get_mut(ip.l2..ip.l2 + ip.total) {
                        Some(b) => shift.client_to_rs(b, &[]),
                        None => Err(SegError::NoRoom),
                    };
                    if let Ok(t) = r {
                        if t != ip.total {
                            pkt.truncate(ip.l2 + t);
                        }
                    }
                    r
                };
                match r {
                    Ok(_) => {}
                    Err(SegError::NoRoom) => return Verdict::Drop(DropReason::TooBig),
                    Err(_) => return Verdict::Drop(DropReason::MalformedL4),
                }
                if plan == ClientPlan::Insert {
                    self.counters.proxy_inserted += 1;
                }
                if shift.state() != before {
                    if let Some(s) = self.conns.fnat_mut(id) {
                        s.hint = ClientHint::Proxy { version, shift };
                    }
                }
            }
        }
        self.counters.fnat_in += 1;
        self.send_via(pkt, hop)
    }

    /// Real server → client on FULLNAT connection `id`: the client hint's
    /// part (PROXY: ack and SACK back; TOA: note the server's first byte),
    /// then the addresses.
    pub(super) fn fnat_out<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        ip: &Ip,
        id: ConnId,
        e: &Endpoints,
        l4: bool,
        hop: NextHop,
    ) -> Verdict {
        let (vip, vport) = (e.flow.dst, e.flow.dport);
        let (cip, cport) = (e.flow.src, e.flow.sport);
        let tcp = ip.proto == crate::wire::ipv4::IpProtocol::TCP && l4;
        let hint = self.conns.fnat(id).map(|s| s.hint);
        match hint {
            None => return Verdict::Drop(DropReason::OutNoConn),
            Some(ClientHint::Proxy { .. }) if ip.frag => return Verdict::Drop(DropReason::Fragment),
            Some(ClientHint::Proxy { version, mut shift }) if tcp => {
                let Some(ipb) = pkt.data_mut().get_mut(ip.l2..ip.l2 + ip.total) else {
                    return Verdict::Drop(DropReason::MalformedIpv4);
                };
                let before = shift;
                if shift.rs_to_client(ipb).is_err() {
                    return Verdict::Drop(DropReason::MalformedL4);
                }
                if shift != before {
                    if let Some(s) = self.conns.fnat_mut(id) {
                        s.hint = ClientHint::Proxy { version, shift };
                    }
                }
            }
            Some(ClientHint::Toa { rs_data: None }) if tcp => {
                let seg = pkt
                    .data_mut()
                    .get_mut(ip.l2 + ip.hl..ip.l2 + ip.total)
                    .unwrap_or(&mut []);
                let flags = seg.get(tcp_field::FLAGS).copied().unwrap_or(0);
                if flags & (TcpFlags::SYN | TcpFlags::ACK) == TcpFlags::SYN | TcpFlags::ACK {
                    let data = get_u32(seg, tcp_field::SEQ).wrapping_add(1);
                    clamp_mss_for_toa(seg);
                    if let Some(s) = self.conns.fnat_mut(id) {
                        s.hint = ClientHint::Toa { rs_data: Some(data) };
                    }
                }
            }
            Some(_) => {}
        }
        let Some(ipb) = pkt.data_mut().get_mut(ip.l2..ip.l2 + ip.total) else {
            return Verdict::Drop(DropReason::MalformedIpv4);
        };
        if let Err(r) = fnat::fnat_rewrite(ipb, ip.hl, (vip, vport), (cip, cport), l4) {
            return Verdict::Drop(r);
        }
        self.counters.fnat_out += 1;
        self.send_via(pkt, hop)
    }

    /// The local address of FULLNAT connection `id` (ICMP errors).
    pub(super) fn fnat_laddr(&self, id: ConnId) -> Option<(Ipv4Addr, u16)> {
        self.conns.fnat(id).map(|s| (s.laddr.lip, s.laddr.lport))
    }
}

/// The smallest MSS the clamp leaves (IPv4's minimum datagram less the
/// headers): a server announcing less is left alone.
const TOA_MSS_FLOOR: u16 = 536;

/// The client's segments that ack the server's first byte carry TOA, 8
/// bytes more than the client sized them for: the server's SYN-ACK
/// announces an MSS 8 bytes smaller, so that a full-sized request segment
/// still has room for TOA under the MTU (else it would go without,
/// `toa_skipped`). `seg` is the TCP segment; a malformed one is left as it is.
fn clamp_mss_for_toa(seg: &mut [u8]) {
    let doff = usize::from(seg.get(tcp_field::DATA_OFF).copied().unwrap_or(0) >> 4) * 4;
    let Some(opts) = seg.get_mut(20..doff) else {
        return;
    };
    let room = |mss: u16| mss.saturating_sub(toa::TOA_LEN as u16).max(TOA_MSS_FLOOR);
    if let Some((_, d)) = crate::wire::tcpopt::lower_mss(opts, room) {
        let c = crate::wire::bytes::get_u16(seg, tcp_field::CHECKSUM);
        crate::wire::bytes::set_u16(seg, tcp_field::CHECKSUM, crate::wire::checksum::apply(c, d));
    }
}

/// Runs `rewrite` over the IPv4 packet at `l2` (`total` bytes) with up to
/// `extra` bytes of room behind it, as much as the buffer's tailroom and
/// the egress `mtu` allow; then sets the frame to the packet's new length.
/// On error the packet is as it was (the frame's length too).
fn grow<B: PacketBuf>(
    pkt: &mut B,
    l2: usize,
    total: usize,
    extra: usize,
    mtu: usize,
    rewrite: impl FnOnce(&mut [u8]) -> Result<usize, SegError>,
) -> Result<usize, SegError> {
    let old_len = pkt.len();
    let want = l2 + (total + extra).min(mtu.max(total));
    // Without that much tailroom, the room is what the frame has.
    let appended = want > old_len && pkt.append(want - old_len);
    let end = want.min(pkt.len());
    let r = match pkt.data_mut().get_mut(l2..end) {
        Some(b) => rewrite(b),
        None => Err(SegError::NoRoom),
    };
    match r {
        Ok(new_total) => {
            if appended || new_total != total {
                pkt.truncate(l2 + new_total);
            }
            Ok(new_total)
        }
        Err(e) => {
            if appended {
                pkt.truncate(old_len);
            }
            Err(e)
        }
    }
}
