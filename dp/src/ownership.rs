//! Which addresses this director owns: VIP ownership follows the kernel.
//!
//! Without kernel interfaces (no `kernel_iface` on any port) the director
//! owns every VIP it has a service for, as a lone director does: `Owned::ALL`.
//!
//! With them, an address is owned while it is configured on one of the
//! kernel interfaces (keepalived's `virtual_ipaddress { VIP/32 dev IFACE }`,
//! or `ip addr add`): rvs-dp answers ARP for it, announces it with
//! gratuitous ARP when it appears, and forwards its services. A VIP that has
//! services but is not owned is dropped (`DropReason::VipNotOwned`): the peer
//! director serves it. An owned address that is no VIP (a NAT inside gateway
//! that floats between directors) is answered for in ARP like a VIP, and its
//! own traffic goes up to the kernel.
//!
//! FULLNAT local addresses (LIPs) are not subject to this: they are always
//! owned, kernel interfaces or not, on the port each is configured on. The
//! director answers ARP for them there and takes every packet to them as a
//! FULLNAT reply (never `ToKernel`), whether or not the kernel interface
//! also holds the address. A LIP is one director's own source address, not
//! a floating one: two directors of an active/backup pair need LIPs of their
//! own (FULLNAT connections are not synced, see `sync`). A LIP is announced
//! with gratuitous ARP when it is added (`neigh::resolve`).
//!
//! The address watcher (DPDK build: `kernel::watch`) publishes a new
//! `Owned` whole through `Shared::owned`; workers pick it up between bursts,
//! like a service snapshot, so the per-packet check is one flag test when
//! everything is owned and a scan of a handful of addresses otherwise.

use std::net::Ipv4Addr;

use rvs_proto::command::OwnedAddrs;

/// An immutable set of owned addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owned {
    /// Bumped by the watcher on every change, so workers see what is new.
    pub generation: u64,
    /// Everything is owned (no kernel interface).
    all: bool,
    /// Sorted, deduplicated.
    addrs: Vec<Ipv4Addr>,
}

impl Owned {
    /// A director without kernel interfaces: every VIP is owned.
    pub const ALL: Owned = Owned {
        generation: 0,
        all: true,
        addrs: Vec::new(),
    };

    /// Exactly `addrs` are owned.
    pub fn only(generation: u64, addrs: impl IntoIterator<Item = Ipv4Addr>) -> Owned {
        let mut addrs: Vec<Ipv4Addr> = addrs.into_iter().collect();
        addrs.sort();
        addrs.dedup();
        Owned {
            generation,
            all: false,
            addrs,
        }
    }

    /// True when no kernel interface decides (every VIP is owned).
    #[inline]
    pub fn is_all(&self) -> bool {
        self.all
    }

    /// Whether `ip` is owned.
    #[inline]
    pub fn owns(&self, ip: Ipv4Addr) -> bool {
        // A director has a handful of owned addresses: a scan beats a search.
        self.all || self.addrs.contains(&ip)
    }

    /// Whether `ip` is listed (false for every address under `ALL`): the
    /// addresses the kernel holds.
    #[inline]
    pub fn listed(&self, ip: Ipv4Addr) -> bool {
        !self.all && self.addrs.contains(&ip)
    }

    pub fn addrs(&self) -> &[Ipv4Addr] {
        &self.addrs
    }

    /// What the tools are told (`rvsadm --kernel`, rvs-cp's `rvs_vip_owned`).
    pub fn to_addrs(&self) -> OwnedAddrs {
        if self.all {
            OwnedAddrs::all()
        } else {
            OwnedAddrs::only(self.addrs.iter().copied())
        }
    }

    /// What `self` owns that `before` did not, and what it no longer owns.
    pub fn diff(&self, before: &Owned) -> (Vec<Ipv4Addr>, Vec<Ipv4Addr>) {
        let gained = (self.addrs.iter())
            .filter(|a| !before.addrs.contains(a))
            .copied()
            .collect();
        let lost = (before.addrs.iter())
            .filter(|a| !self.addrs.contains(a))
            .copied()
            .collect();
        (gained, lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 101);

    #[test]
    fn all_owns_everything_and_lists_nothing() {
        assert!(Owned::ALL.owns(A));
        assert!(!Owned::ALL.listed(A));
        assert!(Owned::ALL.is_all());
    }

    #[test]
    fn the_tools_are_told_the_same() {
        assert_eq!(Owned::ALL.to_addrs(), OwnedAddrs::all());
        let one = Owned::only(1, [B, A]).to_addrs();
        assert_eq!((one.all, one.addresses.as_slice()), (false, &[A, B][..]));
        assert!(Owned::only(2, []).to_addrs().addresses.is_empty());
        assert!(!Owned::only(2, []).to_addrs().owns(A));
    }

    #[test]
    fn only_and_diff() {
        let one = Owned::only(1, [A, A]);
        assert_eq!(one.addrs(), &[A]);
        assert!(one.owns(A) && one.listed(A) && !one.owns(B));
        let two = Owned::only(2, [B, A]);
        assert_eq!(two.diff(&one), (vec![B], vec![]));
        assert_eq!(one.diff(&two), (vec![], vec![B]));
        assert_eq!(Owned::only(3, []).diff(&two), (vec![], vec![A, B]));
    }
}
