//! Named reasons for every packet the data plane does not forward, and the
//! per-worker counters that tally them. A drop is never silent.

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
}

impl DropReason {
    pub const COUNT: usize = DropReason::NoMbuf as usize + 1;

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
        }
    }
}

/// A worker's drop tally, indexed by reason.
#[derive(Clone, Debug, Default)]
pub struct DropCounters {
    pub by_reason: [u64; DropReason::COUNT],
}

impl DropCounters {
    #[inline]
    pub fn count(&mut self, r: DropReason) {
        self.by_reason[r as usize] += 1;
    }
    pub fn get(&self, r: DropReason) -> u64 {
        self.by_reason[r as usize]
    }
    pub fn total(&self) -> u64 {
        self.by_reason.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_in_discriminant_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT, "names are unique");
    }
}
