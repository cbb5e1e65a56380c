//! Routes: the ports' connected subnets plus static routes, longest prefix first.
//! A director has a handful of routes, so a short sorted list beats a trie.

use std::net::Ipv4Addr;

use crate::wire::ethernet::MacAddr;
use crate::wire::ipv4::{prefix_mask, Ipv4Cidr};

/// One of the director's ports, as the per-packet path needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortInfo {
    pub mac: MacAddr,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    /// IP MTU.
    pub mtu: u16,
}

impl PortInfo {
    #[inline]
    pub fn on_link(&self, ip: Ipv4Addr) -> bool {
        Ipv4Cidr {
            addr: self.addr,
            prefix_len: self.prefix_len,
        }
        .contains(ip)
    }
}

/// Where to send a packet for a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    pub port: u16,
    /// The address to resolve with ARP: the destination itself on a
    /// connected subnet, else the gateway.
    pub via: Ipv4Addr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Addr,
    pub prefix_len: u8,
    /// None: connected (the destination is on the link).
    pub gateway: Option<Ipv4Addr>,
    pub port: u16,
}

impl Route {
    #[inline]
    pub fn matches(&self, ip: Ipv4Addr) -> bool {
        let m = prefix_mask(self.prefix_len);
        u32::from(ip) & m == u32::from(self.dst) & m
    }
}

#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// (network, mask) of `routes[i]`, precomputed: every forwarded packet
    /// runs a lookup.
    keys: Vec<(u32, u32)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("gateway {0} is not on any port's connected subnet")]
    GatewayUnreachable(Ipv4Addr),
    #[error("prefix length {0} is over 32")]
    BadPrefix(u8),
}

impl RouteTable {
    pub fn new() -> Self {
        RouteTable::default()
    }

    pub fn add_connected(&mut self, net: Ipv4Addr, prefix_len: u8, port: u16) -> Result<(), RouteError> {
        if prefix_len > 32 {
            return Err(RouteError::BadPrefix(prefix_len));
        }
        self.push(Route {
            dst: net,
            prefix_len,
            gateway: None,
            port,
        });
        Ok(())
    }

    /// A static route; its gateway must be on a connected subnet (added first).
    pub fn add_static(&mut self, dst: Ipv4Addr, prefix_len: u8, gateway: Ipv4Addr) -> Result<(), RouteError> {
        if prefix_len > 32 {
            return Err(RouteError::BadPrefix(prefix_len));
        }
        let port = self
            .routes
            .iter()
            .find(|r| r.gateway.is_none() && r.matches(gateway))
            .map(|r| r.port)
            .ok_or(RouteError::GatewayUnreachable(gateway))?;
        self.push(Route {
            dst,
            prefix_len,
            gateway: Some(gateway),
            port,
        });
        Ok(())
    }

    fn push(&mut self, r: Route) {
        self.routes.push(r);
        // Longest prefix first; connected before static at equal length.
        self.routes
            .sort_by_key(|r| (std::cmp::Reverse(r.prefix_len), r.gateway.is_some()));
        self.keys = self
            .routes
            .iter()
            .map(|r| {
                let m = prefix_mask(r.prefix_len);
                (u32::from(r.dst) & m, m)
            })
            .collect();
    }

    #[inline]
    pub fn lookup(&self, ip: Ipv4Addr) -> Option<NextHop> {
        let a = u32::from(ip);
        let i = self.keys.iter().position(|&(net, m)| a & m == net)?;
        self.routes.get(i).map(|r| NextHop {
            port: r.port,
            via: r.gateway.unwrap_or(ip),
        })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_and_gateways() {
        let mut t = RouteTable::new();
        t.add_connected(Ipv4Addr::new(10, 1, 0, 0), 24, 0).unwrap();
        t.add_connected(Ipv4Addr::new(10, 2, 0, 0), 24, 1).unwrap();
        assert_eq!(
            t.add_static(Ipv4Addr::UNSPECIFIED, 0, Ipv4Addr::new(192, 0, 2, 1)),
            Err(RouteError::GatewayUnreachable(Ipv4Addr::new(192, 0, 2, 1)))
        );
        t.add_static(Ipv4Addr::UNSPECIFIED, 0, Ipv4Addr::new(10, 1, 0, 254))
            .unwrap();
        t.add_static(Ipv4Addr::new(172, 16, 0, 0), 16, Ipv4Addr::new(10, 2, 0, 254))
            .unwrap();
        let hop = |a| t.lookup(a).unwrap();
        assert_eq!(
            hop(Ipv4Addr::new(10, 2, 0, 7)),
            NextHop {
                port: 1,
                via: Ipv4Addr::new(10, 2, 0, 7)
            }
        );
        assert_eq!(
            hop(Ipv4Addr::new(172, 16, 3, 3)),
            NextHop {
                port: 1,
                via: Ipv4Addr::new(10, 2, 0, 254)
            }
        );
        assert_eq!(
            hop(Ipv4Addr::new(8, 8, 8, 8)),
            NextHop {
                port: 0,
                via: Ipv4Addr::new(10, 1, 0, 254)
            }
        );
        // A port's own address names its connected subnet as well as the network does.
        t.add_connected(Ipv4Addr::new(10, 3, 0, 7), 24, 2).unwrap();
        assert_eq!(
            t.lookup(Ipv4Addr::new(10, 3, 0, 99)),
            Some(NextHop {
                port: 2,
                via: Ipv4Addr::new(10, 3, 0, 99)
            })
        );
        let mut empty = RouteTable::new();
        assert_eq!(empty.lookup(Ipv4Addr::new(1, 1, 1, 1)), None);
        assert_eq!(
            empty.add_connected(Ipv4Addr::new(1, 1, 1, 1), 33, 0),
            Err(RouteError::BadPrefix(33))
        );
        empty.add_connected(Ipv4Addr::new(1, 1, 1, 1), 32, 0).unwrap();
        assert!(empty.lookup(Ipv4Addr::new(1, 1, 1, 1)).is_some());
        assert!(empty.lookup(Ipv4Addr::new(1, 1, 1, 2)).is_none());
    }
}
