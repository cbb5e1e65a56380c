//! A FULLNAT connection's own state, kept beside its `Conn` (which is a full
//! cache line already) in a side array of the connection table, indexed by
//! the same slot: the local address its packets leave with toward the real
//! server, and how the client's address reaches that server. Only FULLNAT
//! packets touch it, so NAT, DR and TUN pay nothing for it.

use std::net::Ipv4Addr;

use super::laddr::LocalAddr;
use super::proxy::ProxyVersion;
use super::seq::SeqShift;

/// How a connection tells its real server the client's address (the
/// service's `client_addr`, fixed when the connection is made).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientHint {
    /// Nothing: the real server sees only LIP:lport.
    #[default]
    None,
    /// TOA (TCP option 254), as DPVS writes it: on the SYN, and on the
    /// client's segments acknowledging the real server's first data byte
    /// (`rs_data`, its ISN + 1, known once its SYN-ACK passed: the handshake's
    /// last ACK and the client's data before the server's first reply), the
    /// segments a TOA module on the server reads it from.
    Toa { rs_data: Option<u32> },
    /// A PROXY protocol header at the start of the client's stream, and the
    /// sequence translation it takes from then on.
    Proxy { version: ProxyVersion, shift: SeqShift },
}

/// The FULLNAT half of a connection entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FnatSide {
    /// LIP:lport, what the connection's packets carry as their source toward
    /// the real server, and its replies as their destination.
    pub laddr: LocalAddr,
    pub hint: ClientHint,
}

impl FnatSide {
    /// An unused slot's side (never read for a live FULLNAT entry).
    pub const EMPTY: FnatSide = FnatSide {
        laddr: LocalAddr {
            lip: Ipv4Addr::UNSPECIFIED,
            lport: 0,
        },
        hint: ClientHint::None,
    };
}

const _: () = assert!(std::mem::size_of::<FnatSide>() <= 24);
