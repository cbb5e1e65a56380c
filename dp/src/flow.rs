//! The flow vocabulary shared by the connection table, the schedulers and the
//! per-packet path: the transport protocol of a virtual service, and the flow
//! key, Katran style: a small fixed-size `Copy` value (13 bytes), passed by
//! value in registers.

use std::fmt;
use std::net::Ipv4Addr;

use crate::wire::ipv4::IpProtocol;

/// Transport protocol of a virtual service. The discriminant is the IP protocol number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum Proto {
    Tcp = IpProtocol::TCP,
    Udp = IpProtocol::UDP,
}

impl Proto {
    pub fn from_ip_proto(p: u8) -> Option<Proto> {
        match p {
            IpProtocol::TCP => Some(Proto::Tcp),
            IpProtocol::UDP => Some(Proto::Udp),
            _ => None,
        }
    }

    /// ipvsadm's spelling in listings: `TCP` / `UDP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
