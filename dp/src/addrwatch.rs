//! VIP ownership follows the kernel: this thread watches the IPv4 addresses
//! of the kernel interfaces (`kernel`) with rtnetlink and publishes what they
//! hold as the owned set (`ownership::Owned`, through `Shared::owned`).
//!
//! At start it puts each port's own address on its interface (an existing
//! one is fine), subscribes to RTMGRP_IPV4_IFADDR, dumps the addresses once
//! (events queued meanwhile are applied after; adding or removing an address
//! twice changes nothing), and then follows RTM_NEWADDR / RTM_DELADDR. When
//! the kernel drops events (ENOBUFS) it dumps again. No polling of `ip`, no
//! per-packet cost: workers switch to a new set between bursts.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::core::Shared;
use crate::ownership::Owned;

/// rtnetlink's multicast group for IPv4 address changes (a bit mask for bind).
const RTMGRP_IPV4_IFADDR: u32 = 0x10;

/// One kernel interface to watch, and the port address it must carry.
#[derive(Clone, Debug)]
pub struct Watched {
    pub iface: String,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

/// The interface index of `name`, if it exists.
fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string; the call only reads it.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

fn route_socket(groups: u32) -> Result<Socket, String> {
    let mut s = Socket::new(NETLINK_ROUTE).map_err(|e| format!("rtnetlink socket: {e}"))?;
    s.bind(&SocketAddr::new(0, groups))
        .map_err(|e| format!("rtnetlink bind: {e}"))?;
    Ok(s)
}

fn send(s: &Socket, msg: RouteNetlinkMessage, flags: u16, seq: u32) -> Result<(), String> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    m.finalize();
    let mut buf = vec![0u8; m.buffer_len()];
    m.serialize(&mut buf);
    s.send_to(&buf, &SocketAddr::new(0, 0), 0)
        .map(drop)
        .map_err(|e| format!("rtnetlink send: {e}"))
}

/// Every message in one datagram.
fn parse_all(mut buf: &[u8]) -> Vec<NetlinkMessage<RouteNetlinkMessage>> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[..len]) {
            out.push(m);
        }
        // Messages are 4-byte aligned.
        let next = (len + 3) & !3;
        buf = buf.get(next..).unwrap_or(&[]);
    }
    out
}

/// (interface index, IPv4 address) of an address message.
fn addr_of(m: &AddressMessage) -> Option<(u32, Ipv4Addr)> {
    if m.header.family != AddressFamily::Inet {
        return None;
    }
    let pick = |want_local: bool| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(v)) if want_local => Some(*v),
            AddressAttribute::Address(IpAddr::V4(v)) if !want_local => Some(*v),
            _ => None,
        })
    };
    Some((m.header.index, pick(true).or_else(|| pick(false))?))
}

fn addr_message(index: u32, addr: Ipv4Addr, prefix_len: u8) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.prefix_len = prefix_len;
    m.header.index = index;
    m.attributes.push(AddressAttribute::Local(IpAddr::V4(addr)));
    m.attributes.push(AddressAttribute::Address(IpAddr::V4(addr)));
    m
}

/// The watcher: which interfaces, what they hold, and where it publishes.
struct Watcher {
    shared: Arc<Shared>,
    /// ifindex → interface name.
    names: BTreeMap<u32, String>,
    /// ifindex → its IPv4 addresses.
    held: BTreeMap<u32, BTreeSet<Ipv4Addr>>,
    generation: u64,
}

impl Watcher {
    /// Applies one message; true if the held set changed.
    fn apply(&mut self, m: &NetlinkMessage<RouteNetlinkMessage>) -> bool {
        let (add, am) = match &m.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a)) => (true, a),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(a)) => (false, a),
            _ => return false,
        };
        let Some((index, ip)) = addr_of(am) else {
            return false;
        };
        let Some(set) = self.held.get_mut(&index) else {
            return false;
        };
        if add {
            set.insert(ip)
        } else {
            set.remove(&ip)
        }
    }

    /// Publishes the held addresses as the owned set, logging what changed.
    fn publish(&mut self) {
        self.generation += 1;
        let all = self.held.values().flatten().copied();
        let new = Owned::only(self.generation, all);
        let old = self.shared.owned.load_full();
        let (gained, lost) = new.diff(&old);
        let services = self.shared.services.load();
        let what = |ip: Ipv4Addr| if services.is_vip(ip) { "VIP" } else { "address" };
        let iface = |ip: Ipv4Addr| {
            (self.held.iter())
                .find(|(_, s)| s.contains(&ip))
                .and_then(|(i, _)| self.names.get(i))
                .map_or("?", String::as_str)
        };
        for ip in gained {
            eprintln!(
                "rvs-dp: owns {} {ip} (on {}): answering ARP, announcing",
                what(ip),
                iface(ip)
            );
        }
        for ip in lost {
            eprintln!(
                "rvs-dp: no longer owns {} {ip}: ARP unanswered, its traffic dropped",
                what(ip)
            );
        }
        self.shared.owned.store(Arc::new(new));
    }

    /// Reads replies to request `seq` until Done or an ack; returns the
    /// error code of a NACK (negative errno) or 0.
    fn read_reply(&mut self, s: &Socket, seq: u32, buf: &mut Vec<u8>) -> Result<i32, String> {
        loop {
            buf.clear();
            s.recv(buf, 0).map_err(|e| format!("rtnetlink recv: {e}"))?;
            for m in parse_all(buf) {
                if m.header.sequence_number != seq {
                    continue;
                }
                match &m.payload {
                    NetlinkPayload::Done(_) => return Ok(0),
                    NetlinkPayload::Error(e) => return Ok(e.code.map_or(0, |c| c.get())),
                    _ => {
                        self.apply(&m);
                    }
                }
            }
        }
    }

    fn dump(&mut self, s: &Socket, seq: u32, buf: &mut Vec<u8>) -> Result<(), String> {
        for set in self.held.values_mut() {
            set.clear();
        }
        let mut q = AddressMessage::default();
        q.header.family = AddressFamily::Inet;
        send(
            s,
            RouteNetlinkMessage::GetAddress(q),
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
        )?;
        self.read_reply(s, seq, buf).map(drop)
    }
}

/// Puts the port addresses on their interfaces, publishes what the
/// interfaces hold, warns about VIPs with services that none holds, and
/// starts the thread that follows changes until `stop`.
pub fn start(
    watched: &[Watched],
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, String> {
    let events = route_socket(RTMGRP_IPV4_IFADDR)?;
    let req = route_socket(0)?;
    let mut w = Watcher {
        shared,
        names: BTreeMap::new(),
        held: BTreeMap::new(),
        generation: 0,
    };
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut seq = 1;
    for x in watched {
        let index =
            ifindex(&x.iface).ok_or_else(|| format!("kernel interface {} does not exist", x.iface))?;
        w.names.insert(index, x.iface.clone());
        w.held.insert(index, BTreeSet::new());
        let add = addr_message(index, x.addr, x.prefix_len);
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        send(&req, RouteNetlinkMessage::NewAddress(add), flags, seq)?;
        match w.read_reply(&req, seq, &mut buf)? {
            0 => {}
            e if -e == libc::EEXIST => {}
            e => eprintln!(
                "rvs-dp: cannot add {}/{} to {}: {}",
                x.addr,
                x.prefix_len,
                x.iface,
                std::io::Error::from_raw_os_error(-e)
            ),
        }
        seq += 1;
    }
    w.dump(&req, seq, &mut buf)?;
    seq += 1;
    w.publish();
    let owned = w.shared.owned.load_full();
    for vip in w.shared.services.load().vips() {
        if !owned.owns(*vip) {
            eprintln!(
                "rvs-dp: warning: VIP {vip} has services but is on no kernel interface: not owned (no ARP, traffic dropped as vip_not_owned) until keepalived or `ip addr add` puts it on one"
            );
        }
    }
    // Wake up now and then to see `stop`.
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: a valid socket fd and a timeval that outlives the call.
    let ret = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&events),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if ret != 0 {
        return Err(format!(
            "rtnetlink: SO_RCVTIMEO: {}",
            std::io::Error::last_os_error()
        ));
    }
    std::thread::Builder::new()
        .name("rvs-addrwatch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                buf.clear();
                match events.recv(&mut buf, 0) {
                    Ok(_) => {
                        let mut changed = false;
                        for m in parse_all(&buf) {
                            changed |= w.apply(&m);
                        }
                        if changed {
                            w.publish();
                        }
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        eprintln!("rvs-dp: rtnetlink: events lost, reading the addresses again");
                        seq += 1;
                        match w.dump(&req, seq, &mut buf) {
                            Ok(()) => w.publish(),
                            Err(e) => eprintln!("rvs-dp: {e}"),
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        eprintln!("rvs-dp: rtnetlink: {e}; address watch stopped");
                        return;
                    }
                }
            }
        })
        .map_err(|e| format!("cannot start the address watcher: {e}"))
}
