//! ARP on the wire: requests and replies received, and the frames the
//! director sends itself (requests for next hops, gratuitous announcements).

use std::net::Ipv4Addr;

use super::NeighTable;
use crate::route::PortInfo;
use crate::wire::arp::{ArpOperation, ArpPacket, ArpRepr};
use crate::wire::ethernet::{self, EtherType, MacAddr};
use crate::xmit::dr;

/// What became of an ARP packet received on a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArpInput {
    /// It asked for one of our addresses or VIPs: the frame is now the reply,
    /// to go back out of the port it came in on.
    Replied,
    /// The sender's MAC is now known, so frames held for it can go.
    Learned(Ipv4Addr),
    /// Nothing to do (not for us, malformed, or a sender we do not track).
    Ignored,
}

/// Handles the ARP packet at `frame[l2..]` received on `port`. We answer for
/// the port's address and for VIPs on its subnet (`is_vip`); a sender is
/// merged as RFC 826 says: learned when it talks to us, only refreshed when
/// we already know it.
pub fn input(
    neigh: &NeighTable,
    port: &PortInfo,
    is_vip: impl Fn(Ipv4Addr) -> bool,
    now: u32,
    frame: &mut [u8],
    l2: usize,
) -> ArpInput {
    let Some(Ok(a)) = frame.get(l2..).map(ArpPacket::new_checked) else {
        return ArpInput::Ignored;
    };
    let repr = ArpRepr::parse(&a);
    let target_is_ours =
        repr.target_ip == port.addr || (is_vip(repr.target_ip) && port.on_link(repr.target_ip));
    let sender_ok = port.on_link(repr.sender_ip) && repr.sender_mac.is_unicast();
    let known = sender_ok
        && if target_is_ours {
            neigh.learn(repr.sender_ip, repr.sender_mac, now)
        } else {
            neigh.refresh(repr.sender_ip, repr.sender_mac, now)
        };
    if repr.op == ArpOperation::Request && target_is_ours {
        let reply = repr.reply(port.mac);
        dr::set_macs(frame, repr.sender_mac, port.mac);
        return match frame.get_mut(l2..).map(|body| reply.emit(body)) {
            Some(Ok(())) => ArpInput::Replied,
            _ => ArpInput::Ignored,
        };
    }
    if known {
        ArpInput::Learned(repr.sender_ip)
    } else {
        ArpInput::Ignored
    }
}

/// Every ARP frame the director builds: Ethernet's minimum (FCS excluded).
pub const ARP_FRAME_LEN: usize = 60;

/// Writes an ARP request for `target` from `port` into `buf` (at least
/// `ARP_FRAME_LEN` bytes). Returns its length, 0 when `buf` is too small.
pub fn build_arp_request(buf: &mut [u8], port: &PortInfo, target: Ipv4Addr) -> usize {
    build_request(buf, port, port.addr, target)
}

/// A gratuitous ARP announcing `ip` at `port`'s MAC (a request for itself,
/// which every host and switch accepts). Failover sends these on demand.
pub fn build_gratuitous_arp(buf: &mut [u8], port: &PortInfo, ip: Ipv4Addr) -> usize {
    build_request(buf, port, ip, ip)
}

fn build_request(buf: &mut [u8], port: &PortInfo, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> usize {
    let Some(frame) = buf.get_mut(..ARP_FRAME_LEN) else {
        return 0;
    };
    frame.fill(0);
    if ethernet::write_header(frame, MacAddr::BROADCAST, port.mac, EtherType::ARP).is_err() {
        return 0;
    }
    let repr = ArpRepr {
        op: ArpOperation::Request,
        sender_mac: port.mac,
        sender_ip,
        target_mac: MacAddr::ZERO,
        target_ip,
    };
    match frame.get_mut(ethernet::HEADER_LEN..).map(|body| repr.emit(body)) {
        Some(Ok(())) => ARP_FRAME_LEN,
        _ => 0,
    }
}
