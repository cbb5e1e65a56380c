//! The vocabulary every side of the control ABI shares: a virtual service's
//! identity, protocol and forward method, scheduler flags, traffic totals and
//! the named drop reasons. The forwarding core uses these same types, so a
//! value means one thing from the packet path to rvsadm's listing.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Transport protocol of a virtual service. The discriminant is the IP protocol number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum Proto {
    Tcp = 6,
    Udp = 17,
}

impl Proto {
    pub fn from_ip_proto(p: u8) -> Option<Proto> {
        match p {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
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

/// How packets reach a real server (ipvsadm `-m`, `-g`, `-i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum ForwardMethod {
    /// LVS-NAT ("Masq"): DNAT in, SNAT of the replies.
    Nat = 0,
    /// LVS-DR ("Route"): rewrite the MAC only; the real server holds the VIP.
    #[default]
    Dr = 1,
    /// LVS-TUN ("Tunnel"): IP-in-IP to the real server.
    Tun = 2,
    /// FULLNAT (DPVS's FNAT, `-b` on `-a`/`-e`): both ends rewritten,
    /// CIP:cport → VIP:vport leaves as LIP:lport → RIP:rport, so replies come
    /// back to one of the service's local addresses from anywhere.
    FullNat = 3,
}

impl ForwardMethod {
    /// The word ipvsadm prints in its `Forward` column.
    pub fn ipvsadm_name(self) -> &'static str {
        match self {
            ForwardMethod::Nat => "Masq",
            ForwardMethod::Dr => "Route",
            ForwardMethod::Tun => "Tunnel",
            ForwardMethod::FullNat => "FullNat",
        }
    }

    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(ForwardMethod::Nat),
            1 => Some(ForwardMethod::Dr),
            2 => Some(ForwardMethod::Tun),
            3 => Some(ForwardMethod::FullNat),
            _ => None,
        }
    }
}

impl FromStr for ForwardMethod {
    type Err = String;
    /// Accepts keepalived's `lb_kind` words and ipvsadm's column words.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "nat" | "masq" | "masquerading" | "m" => Ok(ForwardMethod::Nat),
            "dr" | "route" | "direct" | "gatewaying" | "g" => Ok(ForwardMethod::Dr),
            "tun" | "tunnel" | "ipip" | "i" => Ok(ForwardMethod::Tun),
            "fnat" | "fullnat" | "b" => Ok(ForwardMethod::FullNat),
            other => Err(format!("unknown forward method '{other}' (nat, dr, tun or fnat)")),
        }
    }
}

/// The identity of a virtual service: (protocol, VIP, port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ServiceKey {
    pub proto: Proto,
    pub vip: Ipv4Addr,
    pub port: u16,
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}:{}", self.proto, self.vip, self.port)
    }
}

/// Scheduler flags (ipvsadm `-b`), as the kernel names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct SchedFlags {
    /// sh-fallback / mh-fallback: if the hashed server is unavailable, try the next.
    pub fallback: bool,
    /// sh-port / mh-port: include the client port in the hash.
    pub port: bool,
}

impl SchedFlags {
    /// Parses ipvsadm's `-b` value: a comma separated list such as `sh-fallback,sh-port`.
    pub fn parse(s: &str) -> Result<SchedFlags, String> {
        let mut f = SchedFlags::default();
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "sh-fallback" | "mh-fallback" | "flag-1" => f.fallback = true,
                "sh-port" | "mh-port" | "flag-2" => f.port = true,
                "flag-3" => {}
                other => return Err(format!("invalid scheduler flag '{other}'")),
            }
        }
        Ok(f)
    }
}

/// Traffic counters summed over the workers, as `ipvsadm --stats` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrafficTotals {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

impl std::ops::AddAssign for TrafficTotals {
    fn add_assign(&mut self, o: Self) {
        self.conns += o.conns;
        self.inpkts += o.inpkts;
        self.outpkts += o.outpkts;
        self.inbytes += o.inbytes;
        self.outbytes += o.outbytes;
    }
}

/// Why a packet was dropped (or not forwarded). Stable order: the stats area
/// and the tools index counters by the discriminant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Frame shorter than an Ethernet header, or a VLAN tag cut short.
    TruncatedL2 = 0,
    /// EtherType neither IPv4 nor ARP.
    UnknownEtherType,
    /// Not addressed to our MAC, nor broadcast.
    NotOurMac,
    /// IPv4 header invalid: version, IHL, total length beyond the frame.
    MalformedIpv4,
    /// IPv4 header checksum wrong.
    BadIpChecksum,
    /// Martian source or destination (0/8, 127/8, multicast/broadcast source, ...).
    Martian,
    /// TTL would reach 0 on forwarding.
    TtlExpired,
    /// Destination is neither a VIP, nor one of our addresses.
    NotForUs,
    /// IP protocol we do not balance (neither TCP, UDP nor ICMP).
    UnknownProtocol,
    /// TCP/UDP header truncated or inconsistent.
    MalformedL4,
    /// ICMP message malformed, or an error whose inner header is truncated.
    MalformedIcmp,
    /// ICMP type we neither answer nor translate.
    IcmpUnhandled,
    /// ICMP error about no connection we know.
    IcmpNoConn,
    /// Packet to a VIP port with no virtual service.
    NoService,
    /// TCP packet that is not a SYN and matches no connection.
    NoConnNotSyn,
    /// The scheduler found no available real server.
    NoRealServer,
    /// The connection table is full: new connection refused.
    ConnTableFull,
    /// Non-first IPv4 fragment of a flow we cannot follow.
    Fragment,
    /// Reply from a real server that matches no connection.
    OutNoConn,
    /// The connection's real server was removed (expire_nodest_conn).
    DestRemoved,
    /// No route to the next hop.
    NoRoute,
    /// Next hop not resolved by ARP, and its wait queue is full.
    NeighQueueFull,
    /// Not enough headroom to encapsulate.
    NoHeadroom,
    /// Packet too big for the egress MTU (DF clear, we do not fragment).
    TooBig,
    /// ARP we do not answer (not for our address, or not a request/reply).
    ArpIgnored,
    /// TX ring full.
    TxFull,
    /// Redirect ring to the owning worker full.
    RedirectFull,
    /// Out of mbufs.
    NoMbuf,
    /// To a VIP this director does not own now (kernel_iface ports: the
    /// address is on no kernel interface, so the peer director serves it).
    VipNotOwned,
    /// For the kernel interface, but its exception ring was full.
    KernelQueueFull,
    /// TCP/UDP checksum wrong on a packet that would open an LVS-NAT
    /// connection (established NAT traffic keeps its wrong checksum: the
    /// incremental update carries the error through to the receiver).
    BadL4Checksum,
    /// SYN proxy: an ACK matching no connection whose acknowledgment is no
    /// valid cookie (forged, expired, or for another tuple).
    SynProxyBadCookie,
    /// SYN proxy: a packet of a connection whose real server has not
    /// answered the director's SYN yet (the client resends it).
    SynProxyWaiting,
    /// FULLNAT: every port of the service's local addresses in this worker's
    /// share is taken (or held in TIME_WAIT), or it has none: SYN refused.
    LaddrExhausted,
}

impl DropReason {
    pub const COUNT: usize = DropReason::LaddrExhausted as usize + 1;

    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::TruncatedL2,
        DropReason::UnknownEtherType,
        DropReason::NotOurMac,
        DropReason::MalformedIpv4,
        DropReason::BadIpChecksum,
        DropReason::Martian,
        DropReason::TtlExpired,
        DropReason::NotForUs,
        DropReason::UnknownProtocol,
        DropReason::MalformedL4,
        DropReason::MalformedIcmp,
        DropReason::IcmpUnhandled,
        DropReason::IcmpNoConn,
        DropReason::NoService,
        DropReason::NoConnNotSyn,
        DropReason::NoRealServer,
        DropReason::ConnTableFull,
        DropReason::Fragment,
        DropReason::OutNoConn,
        DropReason::DestRemoved,
        DropReason::NoRoute,
        DropReason::NeighQueueFull,
        DropReason::NoHeadroom,
        DropReason::TooBig,
        DropReason::ArpIgnored,
        DropReason::TxFull,
        DropReason::RedirectFull,
        DropReason::NoMbuf,
        DropReason::VipNotOwned,
        DropReason::KernelQueueFull,
        DropReason::BadL4Checksum,
        DropReason::SynProxyBadCookie,
        DropReason::SynProxyWaiting,
        DropReason::LaddrExhausted,
    ];

    /// snake_case name for metrics labels and listings.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::TruncatedL2 => "truncated_l2",
            DropReason::UnknownEtherType => "unknown_ethertype",
            DropReason::NotOurMac => "not_our_mac",
            DropReason::MalformedIpv4 => "malformed_ipv4",
            DropReason::BadIpChecksum => "bad_ip_checksum",
            DropReason::Martian => "martian",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::NotForUs => "not_for_us",
            DropReason::UnknownProtocol => "unknown_protocol",
            DropReason::MalformedL4 => "malformed_l4",
            DropReason::MalformedIcmp => "malformed_icmp",
            DropReason::IcmpUnhandled => "icmp_unhandled",
            DropReason::IcmpNoConn => "icmp_no_conn",
            DropReason::NoService => "no_service",
            DropReason::NoConnNotSyn => "no_conn_not_syn",
            DropReason::NoRealServer => "no_real_server",
            DropReason::ConnTableFull => "conn_table_full",
            DropReason::Fragment => "fragment",
            DropReason::OutNoConn => "out_no_conn",
            DropReason::DestRemoved => "dest_removed",
            DropReason::NoRoute => "no_route",
            DropReason::NeighQueueFull => "neigh_queue_full",
            DropReason::NoHeadroom => "no_headroom",
            DropReason::TooBig => "too_big",
            DropReason::ArpIgnored => "arp_ignored",
            DropReason::TxFull => "tx_full",
            DropReason::RedirectFull => "redirect_full",
            DropReason::NoMbuf => "no_mbuf",
            DropReason::VipNotOwned => "vip_not_owned",
            DropReason::KernelQueueFull => "kernel_queue_full",
            DropReason::BadL4Checksum => "bad_l4_checksum",
            DropReason::SynProxyBadCookie => "synproxy_bad_cookie",
            DropReason::SynProxyWaiting => "synproxy_waiting",
            DropReason::LaddrExhausted => "laddr_exhausted",
        }
    }
}
