//! The flow vocabulary shared by the connection table, the schedulers and the
//! per-packet path: the transport protocol of a virtual service, and the flow
//! key, Katran style: a small fixed-size `Copy` value (13 bytes), passed by
//! value in registers.

use std::net::Ipv4Addr;

use crate::wire::ipv4::IpProtocol;

/// The transport protocol of a virtual service is the control ABI's
/// (`rvs_proto::types::Proto`); its discriminants are the IP protocol numbers
/// wire names, which this holds at compile time.
pub use rvs_proto::types::Proto;

const _: () = assert!(Proto::Tcp as u8 == IpProtocol::TCP && Proto::Udp as u8 == IpProtocol::UDP);

/// A packet's 5-tuple as it travels: `src:sport -> dst:dport` over `proto`.
/// Which LVS address each side is depends on the direction, and every user
/// says which it takes:
///
/// - client → VIP (IN lookups, `NewConn`, scheduling, `Endpoints`):
///   `src` = CIP, `dst` = VIP;
/// - real server → client (OUT lookups, LVS-NAT replies): `src` = RIP,
///   `dst` = CIP;
/// - a persistence template: `src` = the client network (CIP & `-M`
///   netmask), `sport` = 0, `dst` = VIP, `dport` = the service's port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct FlowKey {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: Proto,
}

const _: () = assert!(std::mem::size_of::<FlowKey>() <= 16);

impl FlowKey {
    #[inline]
    pub const fn new(proto: Proto, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Self {
        FlowKey {
            src,
            dst,
            sport,
            dport,
            proto,
        }
    }
}
