//! The SYN proxy in the forwarding path (see `crate::synproxy`).
//!
//! 1. A bare SYN to a proxied service, with no connection: answered with a
//!    SYN-ACK whose ISN is a cookie. Nothing is stored.
//! 2. An ACK with no connection: if `ack - 1` is a valid cookie, the
//!    connection is created and scheduled as a SYN would have been, and the
//!    ACK becomes the SYN to the real server (the client's ISN and options).
//! 3. The real server's SYN-ACK fixes the sequence offset; the director
//!    answers it with the ACK the client would have sent. From then on the
//!    connection's packets are translated (`crate::synproxy::translate`).
//!
//! Client packets that arrive between 2 and 3 (a client sends its request
//! right after its ACK) are handed back as `Verdict::Hold`: the worker keeps
//! them and processes them again once step 3 lists the connection in
//! `synproxy_released`. What a worker cannot hold, or holds too long, is
//! dropped and counted `synproxy_waiting`; the client resends it.
//! Per-connection state is a side array indexed by connection id, made the
//! first time a proxied connection opens; a slot counts only while its flow
//! matches the entry's, so a reused id never inherits a translation.

use super::{Forwarder, Ip, Verdict};
use crate::conn::{Conn, ConnId, Direction, FlowKey};
use crate::packet::PacketBuf;
use crate::service::Proto;
use crate::stats::DropReason;
use crate::synproxy::cookie::{self, CookieOptions, Handshake};
use crate::synproxy::handshake::{self, Seen};
use crate::synproxy::translate::{self, SeqShift};
use crate::wire::tcpopt::SynOptions;
use crate::wire::TcpFlags;

/// Connections released in one burst at most; later ones wait for their
/// held packets' timeout (the clients resend them).
pub const RELEASED_MAX: usize = 64;

/// The window shift the director announces to clients that offer scaling.
pub const ANNOUNCED_WSCALE: u8 = 7;
/// The window of the director's SYN-ACK (unscaled, as in any SYN).
const SYNACK_WINDOW: u16 = 65_535;

/// One proxied connection's state.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProxySlot {
    /// The connection this slot belongs to; a slot whose flow is not its
    /// entry's is stale.
    flow: Option<FlowKey>,
    /// The cookie: the director's ISN toward the client.
    cookie: u32,
    /// Waiting for the real server's SYN-ACK.
    waiting: bool,
    /// The client's window shift (None: it did not offer scaling).
    client_wscale: Option<u8>,
    /// The client's last window, for the ACK to the RS.
    client_window: u16,
    shift: SeqShift,
}

fn tcp_range(ip: &Ip) -> std::ops::Range<usize> {
    ip.l2 + ip.hl..ip.l2 + ip.total
}

/// Connection `id`'s (entry `c`) sequence shift, if it is a proxied
/// connection whose real server's handshake fixed it: what connection sync
/// carries (`sync::SyncEvent::proxy`), so a backup translates as we do.
#[inline]
pub fn synced_shift(table: Option<&[ProxySlot]>, id: ConnId, c: &Conn) -> Option<SeqShift> {
    let s = table?.get(id.0 as usize)?;
    (s.flow == Some(c.flow()) && !s.waiting).then_some(s.shift)
}

/// Whether connection `id`, whose entry is `c`, is a proxied one (in the
/// slots `table`): `Forwarder::proxy_slot` for a caller holding the entry.
#[inline]
pub(super) fn proxied(table: &[ProxySlot], id: ConnId, c: &Conn) -> bool {
    table.get(id.0 as usize).is_some_and(|s| s.flow == Some(c.flow()))
}

impl Forwarder {
    /// The slot of connection `id` if it is a proxied connection.
    #[inline]
    pub(super) fn proxy_slot(&self, id: ConnId) -> Option<ProxySlot> {
        let t = self.synproxy.as_ref()?;
        let s = *t.get(id.0 as usize)?;
        let flow = self.conns.get(id)?.flow();
        (s.flow == Some(flow)).then_some(s)
    }

    /// The slots of the proxied connections, for `synced_shift`.
    pub fn proxy_slots(&self) -> Option<&[ProxySlot]> {
        self.synproxy.as_deref()
    }

    /// Connection `id`'s SYN proxy slot, to fill for a connection that
    /// becomes proxied; the table is made on first use (a director that
    /// never proxies never allocates it).
    fn new_proxy_slot(&mut self, id: ConnId) -> Option<&mut ProxySlot> {
        let n = self.conns.capacity();
        let table = self
            .synproxy
            .get_or_insert_with(|| vec![ProxySlot::default(); n].into_boxed_slice());
        table.get_mut(id.0 as usize)
    }

    /// Makes connection `id` a proxied one past its handshake, translated by
    /// `shift`: what a sync backup installs for a connection its master
    /// proxied. Its packets are then translated as on the master.
    pub fn set_synced_shift(&mut self, id: ConnId, shift: SeqShift) {
        let Some(flow) = self.conns.get(id).map(|c| c.flow()) else {
            return;
        };
        if let Some(s) = self.new_proxy_slot(id) {
            *s = ProxySlot {
                flow: Some(flow),
                cookie: 0,
                waiting: false,
                client_wscale: None,
                client_window: 0,
                shift,
            };
        }
    }

    fn proxy_slot_mut(&mut self, id: ConnId) -> Option<&mut ProxySlot> {
        let flow = self.conns.get(id)?.flow();
        let s = self.synproxy.as_mut()?.get_mut(id.0 as usize)?;
        (s.flow == Some(flow)).then_some(s)
    }

    /// Steps 1 and 2 for a TCP packet to a VIP that matched no connection.
    /// None when the service does not proxy (or the packet is neither a bare
    /// SYN nor an ACK): the ordinary path decides.
    pub(super) fn syn_proxy_open<B: PacketBuf>(
        &mut self,
        in_port: u16,
        pkt: &mut B,
        ip: &Ip,
        flow: FlowKey,
        flags: u8,
    ) -> Option<Verdict> {
        let si = self.snap.lookup(Proto::Tcp, flow.dst, flow.dport)?;
        if !self.snap.get(si)?.syn_proxy {
            return None;
        }
        const HANDSHAKE: u8 = TcpFlags::SYN | TcpFlags::ACK | TcpFlags::RST | TcpFlags::FIN;
        match flags & HANDSHAKE {
            TcpFlags::SYN => Some(self.syn_proxy_answer(in_port, pkt, ip)),
            TcpFlags::ACK => Some(self.syn_proxy_accept(in_port, pkt, ip, flow)),
            _ => None,
        }
    }

    fn handshake_of(seen: &Seen, client_isn: u32) -> Handshake {
        Handshake {
            cip: seen.src,
            cport: seen.sport,
            vip: seen.dst,
            vport: seen.dport,
            client_isn,
        }
    }

    /// Step 1.
    fn syn_proxy_answer<B: PacketBuf>(&mut self, in_port: u16, pkt: &mut B, ip: &Ip) -> Verdict {
        let Some(seen) = Seen::read(pkt.data(), ip.l2) else {
            return Verdict::Drop(DropReason::MalformedL4);
        };
        let Some(port) = self.shared.ports.get(in_port as usize) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let o = seen.options;
        let carried = CookieOptions::from_syn(o.mss, o.wscale, o.sack_perm);
        let c = cookie::make(
            &self.shared.cookie_key,
            &Self::handshake_of(&seen, seen.seq),
            &carried,
            self.now,
        );
        let offer = SynOptions {
            mss: Some(port.mtu.saturating_sub(40)),
            wscale: o.wscale.map(|_| ANNOUNCED_WSCALE),
            sack_perm: o.sack_perm,
            timestamp: None,
        };
        let s = handshake::syn_ack(&seen, port.mac, c, offer, SYNACK_WINDOW);
        if !handshake::write(pkt, ip.l2, &s) {
            return Verdict::Drop(DropReason::NoHeadroom);
        }
        self.counters.synproxy_syn_acks += 1;
        Verdict::Forward { port: in_port }
    }

    /// Step 2.
    fn syn_proxy_accept<B: PacketBuf>(
        &mut self,
        in_port: u16,
        pkt: &mut B,
        ip: &Ip,
        flow: FlowKey,
    ) -> Verdict {
        let Some(seen) = Seen::read(pkt.data(), ip.l2) else {
            return Verdict::Drop(DropReason::MalformedL4);
        };
        let client_isn = seen.seq.wrapping_sub(1);
        let cookie = seen.ack.wrapping_sub(1);
        let Some(carried) = cookie::check(
            &self.shared.cookie_key,
            &Self::handshake_of(&seen, client_isn),
            cookie,
            self.now,
        ) else {
            return Verdict::Drop(DropReason::SynProxyBadCookie);
        };
        // The ACK becomes the client's SYN, as the real server must see it.
        let syn_opts = SynOptions {
            mss: Some(carried.mss),
            wscale: carried.wscale,
            sack_perm: carried.sack,
            timestamp: None,
        };
        let client_ws = carried.wscale;
        // The ACK's window is in the scale the client agreed with us; a
        // SYN's is unscaled. The MACs are the forwarding path's to set.
        let mut syn = handshake::syn_to_rs(&seen, client_ws, syn_opts);
        syn.src_mac = seen.src_mac;
        if !handshake::write(pkt, ip.l2, &syn) {
            return Verdict::Drop(DropReason::NoHeadroom);
        }
        // Rewritten here: what the NIC said of the ACK's checksums no longer
        // applies (None: summed in software).
        let ip2 = match self.parse_ip(pkt.data(), ip.l2, None) {
            Ok(ip2) => ip2,
            Err(r) => return Verdict::Drop(r),
        };
        let id = match self.new_conn(in_port, pkt, &ip2, flow, TcpFlags::SYN, None) {
            Ok(id) => id,
            Err(v) => return v,
        };
        if let Some(s) = self.new_proxy_slot(id) {
            *s = ProxySlot {
                flow: Some(flow),
                cookie,
                waiting: true,
                client_wscale: client_ws,
                client_window: seen.window,
                shift: SeqShift::default(),
            };
        }
        self.counters.synproxy_accepted += 1;
        self.xmit_in(in_port, pkt, &ip2, id, TcpFlags::SYN, true)
    }

    /// Client → RS on a proxied connection: Ok to go on (translated), or the
    /// verdict while the RS's handshake is pending.
    pub(super) fn syn_proxy_in<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        ip: &Ip,
        id: ConnId,
    ) -> Result<(), Verdict> {
        let Some(s) = self.proxy_slot(id) else {
            return Ok(());
        };
        if s.waiting {
            if let Some(slot) = self.proxy_slot_mut(id) {
                if let Some(seen) = Seen::read(pkt.data(), ip.l2) {
                    slot.client_window = seen.window;
                }
            }
            self.counters.synproxy_held += 1;
            return Err(Verdict::Hold { conn: id });
        }
        if let Some(tcp) = pkt.data_mut().get_mut(tcp_range(ip)) {
            translate::client_to_rs(tcp, &s.shift);
        }
        Ok(())
    }

    /// RS → client on a proxied connection: None to go on (translated), or
    /// what step 3 does with the RS's handshake.
    pub(super) fn syn_proxy_out<B: PacketBuf>(
        &mut self,
        in_port: u16,
        pkt: &mut B,
        ip: &Ip,
        id: ConnId,
        flags: u8,
    ) -> Option<Verdict> {
        let s = self.proxy_slot(id)?;
        if !s.waiting {
            if let Some(tcp) = pkt.data_mut().get_mut(tcp_range(ip)) {
                translate::rs_to_client(tcp, &s.shift);
            }
            return None;
        }
        if flags & TcpFlags::RST != 0 {
            // The RS refused: the client, which believes itself connected,
            // gets the RST in the director's numbering.
            if let Some(tcp) = pkt.data_mut().get_mut(tcp_range(ip)) {
                let mut t = crate::wire::TcpPacket::new_unchecked(tcp);
                t.set_seq_number(s.cookie.wrapping_add(1));
                t.set_flags(TcpFlags::RST);
            }
            return None;
        }
        if flags & (TcpFlags::SYN | TcpFlags::ACK) != TcpFlags::SYN | TcpFlags::ACK {
            return Some(Verdict::Drop(DropReason::SynProxyWaiting));
        }
        let seen = Seen::read(pkt.data(), ip.l2)?;
        // Scaling is on toward the RS only if both SYNs carried a shift.
        let rs_ws = match (s.client_wscale, seen.options.wscale) {
            (Some(_), Some(w)) => w.min(14),
            _ => 0,
        };
        let (client_own, client_reads) = match s.client_wscale {
            Some(w) => (w.min(14), ANNOUNCED_WSCALE),
            None => (0, 0),
        };
        let shift = SeqShift {
            delta: seen.seq.wrapping_sub(s.cookie),
            rs_win: (rs_ws, client_reads),
            client_win: (
                client_own,
                if seen.options.wscale.is_some() {
                    client_own
                } else {
                    0
                },
            ),
        };
        // The state machine sees the RS's SYN-ACK and the client's ACK.
        if self.track(id, Direction::Output, flags, true, pkt.len()).is_err() {
            return Some(Verdict::Drop(DropReason::OutNoConn));
        }
        let window = translate::rescale_window(s.client_window, shift.client_win.0, shift.client_win.1);
        let Some(port) = self.shared.ports.get(in_port as usize) else {
            return Some(Verdict::Drop(DropReason::NoRoute));
        };
        let ack = handshake::ack_to_rs(&seen, port.mac, window);
        if !handshake::write(pkt, ip.l2, &ack) {
            return Some(Verdict::Drop(DropReason::NoHeadroom));
        }
        // The shift first: the ACK may make the connection due for sync
        // (`track`), and what is sent must carry it.
        if let Some(slot) = self.proxy_slot_mut(id) {
            slot.waiting = false;
            slot.shift = shift;
        }
        if self
            .track(id, Direction::Input, TcpFlags::ACK, true, pkt.len())
            .is_err()
        {
            return Some(Verdict::Drop(DropReason::NoConnNotSyn));
        }
        if self.synproxy_released.len() < RELEASED_MAX {
            self.synproxy_released.push(id);
        }
        self.counters.synproxy_established += 1;
        Some(Verdict::Forward { port: in_port })
    }
}
