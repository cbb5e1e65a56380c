//! The virtual-server configuration as a pure model: what `ipvsadm -A/-E/-D/
//! -a/-e/-d/-C/--set/-R` change, with every check made before anything moves.
//!
//! `apply` either changes the model as the command says, or returns the error
//! and leaves the model exactly as it was. `Restore` runs its commands against
//! a copy and keeps the copy only if all of them succeed.
//!
//! Order: services and, within a service, real servers are kept in insertion
//! order. The kernel hands them out in hash-table order (services) and in
//! reverse insertion order (real servers, `list_add` at the head), neither of
//! which means anything to a user; ipvsadm sorts both unless `--nosort`, so the
//! stored order only shows with `--nosort`, and insertion order is the one a
//! reader can predict.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use crate::types::TrafficTotals;
use crate::types::{ForwardMethod, ServiceKey};

use crate::command::{
    ClientAddr, Command, DestInfo, DestSpec, IpvsError, IpvsTimeouts, LaddrSpec, ListCursor, Rates,
    ServiceInfo, ServiceSpec, MAX_THRESHOLD, MAX_TIMEOUT_S, MAX_WEIGHT,
};

/// Every scheduler ipvsadm knows, in the kernel's order. rvs-dp's scheduler
/// registry builds each of these.
pub const SCHEDULER_NAMES: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];

/// A virtual service and its real servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRules {
    pub spec: ServiceSpec,
    pub dests: Vec<DestSpec>,
    /// FULLNAT local addresses, in the order added.
    pub laddrs: Vec<LaddrSpec>,
}

impl ServiceRules {
    pub fn dest(&self, rip: Ipv4Addr, port: u16) -> Option<&DestSpec> {
        self.dests.iter().find(|d| d.rip == rip && d.port == port)
    }
}

/// Table sizes past which the model answers "Memory allocation problem",
/// as the kernel does when it cannot allocate a service or destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_services: usize,
    pub max_dests_per_service: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_services: 65536,
            max_dests_per_service: 65536,
        }
    }
}

/// The whole configuration: services in insertion order, and the timeouts.
///
/// Two indexes, derived from `services` and kept in step with it, make a
/// lookup O(1) instead of a scan: at the 65,536-service and
/// 65,536-real-server limits a restore or a reconcile would otherwise
/// compare billions of keys.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct IpvsConfig {
    services: Vec<ServiceRules>,
    timeouts: IpvsTimeouts,
    limits: Limits,
    /// Position of each service in `services`.
    service_at: HashMap<ServiceKey, usize>,
    /// Every (service, RIP, port) of a real server.
    dest_keys: HashSet<(ServiceKey, Ipv4Addr, u16)>,
    /// The service each FULLNAT local address belongs to: one only.
    laddr_owner: HashMap<Ipv4Addr, ServiceKey>,
}

impl IpvsConfig {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_limits(limits: Limits) -> Self {
        IpvsConfig {
            limits,
            ..Self::default()
        }
    }

    pub fn services(&self) -> &[ServiceRules] {
        &self.services
    }

    pub fn service(&self, key: &ServiceKey) -> Option<&ServiceRules> {
        self.find(key).map(|i| &self.services[i])
    }

    /// True if the service holds the real server `rip:port`.
    pub fn has_dest(&self, key: &ServiceKey, rip: Ipv4Addr, port: u16) -> bool {
        self.dest_keys.contains(&(*key, rip, port))
    }

    /// Real servers in all services.
    pub fn dest_count(&self) -> usize {
        self.dest_keys.len()
    }

    pub fn timeouts(&self) -> IpvsTimeouts {
        self.timeouts
    }

    /// The `List` reply skeleton: every service and real server with zero
    /// counters. The data plane fills in counters, rates and connection counts.
    pub fn list(&self) -> Vec<ServiceInfo> {
        self.services
            .iter()
            .map(|s| ServiceInfo {
                spec: s.spec.clone(),
                stats: TrafficTotals::default(),
                rates: Rates::default(),
                dests: s.dests.iter().map(dest_info).collect(),
                owned: None,
                laddrs: s.laddrs.clone(),
            })
            .collect()
    }

    /// One page of `list`: at most `rows` rows (a service heading, each of
    /// its local addresses, which go with the heading, and each real server
    /// count one each), starting at `from`, and where the next
    /// page starts (`None` after the last). A page that starts inside a
    /// service (`from.dest > 0`) repeats that service's spec with the rest
    /// of its real servers; the reader appends them to what it has. A row
    /// budget rather than a service count keeps every page's size bounded
    /// whether the table is 65,536 services or one service of 65,536 real
    /// servers.
    pub fn list_page(&self, from: ListCursor, rows: usize) -> (Vec<ServiceInfo>, Option<ListCursor>) {
        let rows = rows.max(2); // a heading and one real server: always progress
        let mut out = Vec::new();
        let mut used = 0;
        let mut at = from;
        while let Some(s) = self.services.get(at.service as usize) {
            if used + 1 >= rows {
                return (out, Some(at));
            }
            used += 1;
            let start = (at.dest as usize).min(s.dests.len());
            // The local addresses go with the heading's first page, a row each.
            let laddrs = if start == 0 { s.laddrs.clone() } else { Vec::new() };
            used += laddrs.len();
            let take = (s.dests.len() - start).min(rows.saturating_sub(used).max(1));
            used += take;
            out.push(ServiceInfo {
                spec: s.spec.clone(),
                stats: TrafficTotals::default(),
                rates: Rates::default(),
                dests: s.dests[start..start + take].iter().map(dest_info).collect(),
                owned: None,
                laddrs,
            });
            if start + take < s.dests.len() {
                return (
                    out,
                    Some(ListCursor {
                        service: at.service,
                        dest: (start + take) as u32,
                    }),
                );
            }
            at = ListCursor {
                service: at.service + 1,
                dest: 0,
            };
        }
        (out, None)
    }

    /// The commands that rebuild this configuration from an empty one (the
    /// timeouts only when they differ from the defaults).
    pub fn to_commands(&self) -> Vec<Command> {
        let mut out = Vec::new();
        if self.timeouts != IpvsTimeouts::default() {
            let t = self.timeouts;
            out.push(Command::SetTimeouts {
                tcp: t.tcp,
                tcpfin: t.tcpfin,
                udp: t.udp,
            });
        }
        for s in &self.services {
            out.push(Command::AddService(s.spec.clone()));
            for d in &s.dests {
                out.push(Command::AddDest(s.spec.key(), d.clone()));
            }
            for l in &s.laddrs {
                out.push(Command::AddLaddr(s.spec.key(), l.clone()));
            }
        }
        out
    }

    /// Applies one configuration command. On error nothing has changed.
    /// Queries (`Command::is_query`) are not configuration changes and are
    /// refused; the data plane answers them from its live state.
    pub fn apply(&mut self, cmd: &Command) -> Result<(), IpvsError> {
        match cmd {
            Command::Restore(cmds) => {
                let mut next = self.clone();
                for (index, c) in cmds.iter().enumerate() {
                    if matches!(c, Command::Restore(_)) {
                        return Err(IpvsError::Restore {
                            index,
                            error: Box::new(IpvsError::Unsupported("restore inside a restore".into())),
                        });
                    }
                    next.apply(c).map_err(|error| IpvsError::Restore {
                        index,
                        error: Box::new(error),
                    })?;
                }
                *self = next;
                Ok(())
            }
            Command::AddService(spec) => {
                check_service(spec)?;
                if self.find(&spec.key()).is_some() {
                    return Err(IpvsError::ServiceExists);
                }
                if self.services.len() >= self.limits.max_services {
                    return Err(IpvsError::NoMemory);
                }
                self.service_at.insert(spec.key(), self.services.len());
                self.services.push(ServiceRules {
                    spec: spec.clone(),
                    dests: Vec::new(),
                    laddrs: Vec::new(),
                });
                Ok(())
            }
            Command::EditService(spec) => {
                check_service(spec)?;
                let i = self.find(&spec.key()).ok_or(IpvsError::NoSuchService)?;
                if spec.syn_proxy {
                    if let Some(d) = self.services[i]
                        .dests
                        .iter()
                        .find(|d| d.method != ForwardMethod::Nat)
                    {
                        return Err(IpvsError::SynProxyNeedsNat {
                            rip: d.rip,
                            port: d.port,
                        });
                    }
                }
                for d in &self.services[i].dests {
                    check_client_addr(spec, d)?;
                }
                self.services[i].spec = spec.clone();
                Ok(())
            }
            Command::DelService(key) => {
                let i = self.find(key).ok_or(IpvsError::NoSuchService)?;
                let gone = self.services.remove(i);
                for d in &gone.dests {
                    self.dest_keys.remove(&(*key, d.rip, d.port));
                }
                for l in &gone.laddrs {
                    self.laddr_owner.remove(&l.addr);
                }
                self.service_at.remove(key);
                for (j, s) in self.services.iter().enumerate().skip(i) {
                    self.service_at.insert(s.spec.key(), j);
                }
                Ok(())
            }
            Command::Clear => {
                self.services.clear();
                self.service_at.clear();
                self.dest_keys.clear();
                self.laddr_owner.clear();
                Ok(())
            }
            Command::Zero(key) => {
                // Counters live in the data plane; the model only checks the target.
                if let Some(key) = key {
                    self.find(key).ok_or(IpvsError::NoSuchService)?;
                }
                Ok(())
            }
            Command::AddDest(key, dest) => {
                let i = self.find(key).ok_or(IpvsError::ServiceNotDefined)?;
                check_dest(key, dest)?;
                check_syn_proxy(&self.services[i].spec, dest)?;
                check_client_addr(&self.services[i].spec, dest)?;
                if self.has_dest(key, dest.rip, dest.port) {
                    return Err(IpvsError::DestExists);
                }
                let svc = &mut self.services[i];
                if svc.dests.len() >= self.limits.max_dests_per_service {
                    return Err(IpvsError::NoMemory);
                }
                svc.dests.push(dest.clone());
                self.dest_keys.insert((*key, dest.rip, dest.port));
                Ok(())
            }
            Command::EditDest(key, dest) => {
                let i = self.find(key).ok_or(IpvsError::ServiceNotDefined)?;
                check_dest(key, dest)?;
                check_syn_proxy(&self.services[i].spec, dest)?;
                check_client_addr(&self.services[i].spec, dest)?;
                let svc = &mut self.services[i];
                let d = svc
                    .dests
                    .iter_mut()
                    .find(|d| d.rip == dest.rip && d.port == dest.port)
                    .ok_or(IpvsError::NoSuchDest)?;
                *d = dest.clone();
                Ok(())
            }
            Command::DelDest(key, rip, port) => {
                let i = self.find(key).ok_or(IpvsError::ServiceNotDefined)?;
                let svc = &mut self.services[i];
                let j = svc
                    .dests
                    .iter()
                    .position(|d| d.rip == *rip && d.port == *port)
                    .ok_or(IpvsError::NoSuchDest)?;
                svc.dests.remove(j);
                self.dest_keys.remove(&(*key, *rip, *port));
                Ok(())
            }
            Command::SetTimeouts { tcp, tcpfin, udp } => {
                for t in [*tcp, *tcpfin, *udp] {
                    if t > MAX_TIMEOUT_S {
                        return Err(IpvsError::BadTimeout(t));
                    }
                }
                let keep = |new: u32, old: u32| if new == 0 { old } else { new };
                let old = self.timeouts;
                self.timeouts = IpvsTimeouts {
                    tcp: keep(*tcp, old.tcp),
                    tcpfin: keep(*tcpfin, old.tcpfin),
                    udp: keep(*udp, old.udp),
                };
                Ok(())
            }
            Command::AddLaddr(key, laddr) => {
                let i = self.find(key).ok_or(IpvsError::NoSuchService)?;
                if !is_unicast(laddr.addr) {
                    return Err(IpvsError::AddressNotUnicast(laddr.addr));
                }
                if laddr.port_name.is_empty() {
                    return Err(IpvsError::LaddrNotOnPort {
                        addr: laddr.addr,
                        port_name: String::new(),
                    });
                }
                match self.laddr_owner.get(&laddr.addr) {
                    Some(owner) if owner == key => return Err(IpvsError::LaddrExists(laddr.addr)),
                    Some(owner) => {
                        return Err(IpvsError::LaddrInUse {
                            addr: laddr.addr,
                            service: *owner,
                        })
                    }
                    None => {}
                }
                self.services[i].laddrs.push(laddr.clone());
                self.laddr_owner.insert(laddr.addr, *key);
                Ok(())
            }
            Command::DelLaddr(key, addr) => {
                let i = self.find(key).ok_or(IpvsError::NoSuchService)?;
                let svc = &mut self.services[i];
                let j = svc
                    .laddrs
                    .iter()
                    .position(|l| l.addr == *addr)
                    .ok_or(IpvsError::NoSuchLaddr(*addr))?;
                svc.laddrs.remove(j);
                self.laddr_owner.remove(addr);
                Ok(())
            }
            Command::List
            | Command::GetLaddr(_)
            | Command::FlowSteering
            | Command::ListPage { .. }
            | Command::ListConns
            | Command::ListConnsPage { .. }
            | Command::GetTimeouts
            | Command::Latency
            | Command::GetInfo
            | Command::Ownership => Err(IpvsError::Unsupported(format!(
                "{cmd:?} is a query, not a configuration change"
            ))),
            Command::StartDaemon(_)
            | Command::StopDaemon(_)
            | Command::ListDaemons
            | Command::SyncCounters => Err(IpvsError::Unsupported(
                "a sync daemon command is not a configuration change".into(),
            )),
            Command::RestoreBegin
            | Command::RestoreChunk { .. }
            | Command::RestoreCommit { .. }
            | Command::RestoreAbort { .. } => Err(IpvsError::Unsupported(
                "a staged restore step is not a configuration change".into(),
            )),
        }
    }

    fn find(&self, key: &ServiceKey) -> Option<usize> {
        self.service_at.get(key).copied()
    }
}

fn dest_info(d: &DestSpec) -> DestInfo {
    DestInfo {
        spec: d.clone(),
        active: 0,
        inactive: 0,
        persistent: 0,
        stats: TrafficTotals::default(),
        rates: Rates::default(),
    }
}

fn is_unicast(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast())
}

fn check_service(spec: &ServiceSpec) -> Result<(), IpvsError> {
    if !is_unicast(spec.vip) {
        return Err(IpvsError::AddressNotUnicast(spec.vip));
    }
    if spec.client_addr != ClientAddr::None && spec.proto != crate::types::Proto::Tcp {
        return Err(IpvsError::ClientAddrNeedsTcp);
    }
    if !SCHEDULER_NAMES.contains(&spec.scheduler.as_str()) {
        return Err(IpvsError::SchedulerNotFound(spec.scheduler.clone()));
    }
    match spec.persistence {
        Some(t) if t == 0 || t > MAX_TIMEOUT_S => return Err(IpvsError::BadTimeout(t)),
        None if spec.port == 0 => return Err(IpvsError::ZeroPortNotPersistent),
        _ => {}
    }
    Ok(())
}

fn check_syn_proxy(spec: &ServiceSpec, dest: &DestSpec) -> Result<(), IpvsError> {
    if spec.syn_proxy && dest.method != ForwardMethod::Nat {
        return Err(IpvsError::SynProxyNeedsNat {
            rip: dest.rip,
            port: dest.port,
        });
    }
    Ok(())
}

fn check_client_addr(spec: &ServiceSpec, dest: &DestSpec) -> Result<(), IpvsError> {
    if spec.client_addr != ClientAddr::None && dest.method != ForwardMethod::FullNat {
        return Err(IpvsError::ClientAddrNeedsFullNat {
            rip: dest.rip,
            port: dest.port,
        });
    }
    Ok(())
}

fn check_dest(key: &ServiceKey, dest: &DestSpec) -> Result<(), IpvsError> {
    if !is_unicast(dest.rip) {
        return Err(IpvsError::AddressNotUnicast(dest.rip));
    }
    if dest.weight > MAX_WEIGHT {
        return Err(IpvsError::BadWeight(dest.weight));
    }
    if dest.u_threshold > MAX_THRESHOLD {
        return Err(IpvsError::BadUThreshold(dest.u_threshold));
    }
    if dest.l_threshold > MAX_THRESHOLD {
        return Err(IpvsError::BadLThreshold(dest.l_threshold));
    }
    // The kernel's own test: with no upper threshold (0) a lower one is refused too.
    if dest.l_threshold > dest.u_threshold {
        return Err(IpvsError::ThresholdOrder {
            lower: dest.l_threshold,
            upper: dest.u_threshold,
        });
    }
    // DR rewrites only the MAC and TUN only wraps the packet: the real server
    // sees the VIP's port, so a different one would be a lie in the listing.
    if matches!(dest.method, ForwardMethod::Dr | ForwardMethod::Tun) && dest.port != key.port {
        return Err(IpvsError::PortMismatch {
            vport: key.port,
            rport: dest.port,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Proto;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn key(p: u16) -> ServiceKey {
        ServiceKey {
            proto: Proto::Tcp,
            vip: ip("192.168.1.100"),
            port: p,
        }
    }

    fn svc(p: u16) -> ServiceSpec {
        let mut s = ServiceSpec::new(Proto::Tcp, ip("192.168.1.100"), p);
        s.scheduler = "wrr".into();
        s
    }

    fn nat(rip: &str, port: u16, w: u32) -> DestSpec {
        let mut d = DestSpec::new(ip(rip), port, ForwardMethod::Nat);
        d.weight = w;
        d
    }

    fn base() -> IpvsConfig {
        let mut c = IpvsConfig::new();
        c.apply(&Command::AddService(svc(80))).unwrap();
        c.apply(&Command::AddDest(key(80), nat("10.0.1.1", 80, 3)))
            .unwrap();
        c.apply(&Command::AddDest(key(80), nat("10.0.1.2", 8080, 1)))
            .unwrap();
        c
    }

    /// Applies `cmd`, expects `err`, and checks the model did not move.
    fn refused(c: &mut IpvsConfig, cmd: Command, err: IpvsError) {
        let before = c.clone();
        assert_eq!(c.apply(&cmd), Err(err), "{cmd:?}");
        assert_eq!(*c, before, "a refused {cmd:?} changed the model");
    }

    fn laddr(a: &str) -> LaddrSpec {
        LaddrSpec {
            addr: ip(a),
            port_name: "inside".into(),
        }
    }

    #[test]
    fn local_addresses_belong_to_one_service() {
        let mut c = base();
        c.apply(&Command::AddService(svc(443))).unwrap();
        c.apply(&Command::AddLaddr(key(80), laddr("10.0.2.1"))).unwrap();
        c.apply(&Command::AddLaddr(key(80), laddr("10.0.2.2"))).unwrap();
        refused(
            &mut c,
            Command::AddLaddr(key(80), laddr("10.0.2.1")),
            IpvsError::LaddrExists(ip("10.0.2.1")),
        );
        refused(
            &mut c,
            Command::AddLaddr(key(443), laddr("10.0.2.2")),
            IpvsError::LaddrInUse {
                addr: ip("10.0.2.2"),
                service: key(80),
            },
        );
        refused(
            &mut c,
            Command::AddLaddr(key(81), laddr("10.0.2.3")),
            IpvsError::NoSuchService,
        );
        refused(
            &mut c,
            Command::AddLaddr(key(80), laddr("255.255.255.255")),
            IpvsError::AddressNotUnicast(ip("255.255.255.255")),
        );
        let mut nameless = laddr("10.0.2.3");
        nameless.port_name.clear();
        assert!(matches!(
            c.apply(&Command::AddLaddr(key(80), nameless)),
            Err(IpvsError::LaddrNotOnPort { .. })
        ));
        refused(
            &mut c,
            Command::DelLaddr(key(80), ip("10.0.2.9")),
            IpvsError::NoSuchLaddr(ip("10.0.2.9")),
        );
        let laddrs = |c: &IpvsConfig, k| c.service(&k).unwrap().laddrs.clone();
        assert_eq!(laddrs(&c, key(80)), vec![laddr("10.0.2.1"), laddr("10.0.2.2")]);

        // The commands rebuild the same model, laddrs included.
        let mut again = IpvsConfig::new();
        again.apply(&Command::Restore(c.to_commands())).unwrap();
        assert_eq!(again, c);

        // Deleting the address or the service frees it for another service.
        c.apply(&Command::DelLaddr(key(80), ip("10.0.2.2"))).unwrap();
        c.apply(&Command::AddLaddr(key(443), laddr("10.0.2.2"))).unwrap();
        c.apply(&Command::DelService(key(80))).unwrap();
        c.apply(&Command::AddLaddr(key(443), laddr("10.0.2.1"))).unwrap();
        c.apply(&Command::Clear).unwrap();
        c.apply(&Command::AddService(svc(80))).unwrap();
        c.apply(&Command::AddLaddr(key(80), laddr("10.0.2.1"))).unwrap();
    }

    #[test]
    fn client_address_headers_need_tcp_and_fullnat() {
        let mut c = IpvsConfig::new();
        let mut udp = ServiceSpec::new(Proto::Udp, ip("192.168.1.100"), 53);
        udp.client_addr = ClientAddr::ProxyV2;
        refused(&mut c, Command::AddService(udp), IpvsError::ClientAddrNeedsTcp);

        let mut c = base();
        let mut pp = svc(80);
        pp.client_addr = ClientAddr::ProxyV1;
        // base()'s real servers are NAT.
        refused(
            &mut c,
            Command::EditService(pp.clone()),
            IpvsError::ClientAddrNeedsFullNat {
                rip: ip("10.0.1.1"),
                port: 80,
            },
        );
        let fnat = |rip: &str| DestSpec::new(ip(rip), 8080, ForwardMethod::FullNat);
        let mut c = IpvsConfig::new();
        c.apply(&Command::AddService(pp.clone())).unwrap();
        c.apply(&Command::AddDest(key(80), fnat("10.0.1.1"))).unwrap();
        refused(
            &mut c,
            Command::AddDest(key(80), nat("10.0.1.2", 80, 1)),
            IpvsError::ClientAddrNeedsFullNat {
                rip: ip("10.0.1.2"),
                port: 80,
            },
        );
        let mut to_nat = fnat("10.0.1.1");
        to_nat.method = ForwardMethod::Nat;
        refused(
            &mut c,
            Command::EditDest(key(80), to_nat),
            IpvsError::ClientAddrNeedsFullNat {
                rip: ip("10.0.1.1"),
                port: 8080,
            },
        );
        // FULLNAT changes the port as NAT does.
        c.apply(&Command::AddDest(key(80), fnat("10.0.1.2"))).unwrap();
        pp.client_addr = ClientAddr::Toa;
        c.apply(&Command::EditService(pp)).unwrap();
    }

    #[test]
    fn syn_proxy_takes_nat_real_servers_only() {
        let mut c = base();
        let mut sp = svc(80);
        sp.syn_proxy = true;
        c.apply(&Command::EditService(sp.clone())).unwrap();
        let dr = DestSpec::new(ip("10.0.1.3"), 80, ForwardMethod::Dr);
        let no = IpvsError::SynProxyNeedsNat {
            rip: ip("10.0.1.3"),
            port: 80,
        };
        refused(&mut c, Command::AddDest(key(80), dr.clone()), no.clone());
        let mut to_dr = nat("10.0.1.1", 80, 3);
        to_dr.method = ForwardMethod::Tun;
        refused(
            &mut c,
            Command::EditDest(key(80), to_dr),
            IpvsError::SynProxyNeedsNat {
                rip: ip("10.0.1.1"),
                port: 80,
            },
        );
        // Without the proxy the DR server goes in; the proxy then cannot be
        // turned on while it is there.
        let mut plain = svc(80);
        plain.syn_proxy = false;
        c.apply(&Command::EditService(plain)).unwrap();
        c.apply(&Command::AddDest(key(80), dr)).unwrap();
        refused(&mut c, Command::EditService(sp), no);
        assert!(IpvsError::SynProxyNeedsNat {
            rip: ip("10.0.1.3"),
            port: 80
        }
        .to_string()
        .contains("10.0.1.3:80"));
    }

    #[test]
    fn add_edit_delete_service_and_dests() {
        let mut c = base();
        assert_eq!(c.services().len(), 1);
        assert_eq!(c.services()[0].dests.len(), 2);

        let mut e = svc(80);
        e.scheduler = "lc".into();
        e.persistence = Some(600);
        c.apply(&Command::EditService(e.clone())).unwrap();
        assert_eq!(c.service(&key(80)).unwrap().spec, e);
        assert_eq!(
            c.service(&key(80)).unwrap().dests.len(),
            2,
            "edit keeps the real servers"
        );

        c.apply(&Command::EditDest(key(80), nat("10.0.1.1", 80, 7)))
            .unwrap();
        assert_eq!(
            c.service(&key(80))
                .unwrap()
                .dest(ip("10.0.1.1"), 80)
                .unwrap()
                .weight,
            7
        );

        c.apply(&Command::DelDest(key(80), ip("10.0.1.1"), 80)).unwrap();
        assert!(c.service(&key(80)).unwrap().dest(ip("10.0.1.1"), 80).is_none());

        c.apply(&Command::DelService(key(80))).unwrap();
        assert!(c.services().is_empty());
    }

    #[test]
    fn insertion_order_is_kept() {
        let mut c = IpvsConfig::new();
        for p in [443, 80, 8080] {
            c.apply(&Command::AddService(svc(p))).unwrap();
        }
        let ports: Vec<u16> = c.services().iter().map(|s| s.spec.port).collect();
        assert_eq!(ports, [443, 80, 8080]);
    }

    #[test]
    fn every_refusal_leaves_the_model_unchanged() {
        let mut c = base();
        refused(&mut c, Command::AddService(svc(80)), IpvsError::ServiceExists);
        refused(&mut c, Command::EditService(svc(81)), IpvsError::NoSuchService);
        refused(&mut c, Command::DelService(key(81)), IpvsError::NoSuchService);
        refused(&mut c, Command::Zero(Some(key(81))), IpvsError::NoSuchService);
        refused(
            &mut c,
            Command::AddDest(key(81), nat("10.0.1.1", 80, 1)),
            IpvsError::ServiceNotDefined,
        );
        refused(
            &mut c,
            Command::EditDest(key(81), nat("10.0.1.1", 80, 1)),
            IpvsError::ServiceNotDefined,
        );
        refused(
            &mut c,
            Command::DelDest(key(81), ip("10.0.1.1"), 80),
            IpvsError::ServiceNotDefined,
        );
        refused(
            &mut c,
            Command::AddDest(key(80), nat("10.0.1.1", 80, 1)),
            IpvsError::DestExists,
        );
        refused(
            &mut c,
            Command::EditDest(key(80), nat("10.0.1.9", 80, 1)),
            IpvsError::NoSuchDest,
        );
        refused(
            &mut c,
            Command::DelDest(key(80), ip("10.0.1.1"), 81),
            IpvsError::NoSuchDest,
        );

        let mut s = svc(90);
        s.scheduler = "nope".into();
        refused(
            &mut c,
            Command::AddService(s.clone()),
            IpvsError::SchedulerNotFound("nope".into()),
        );
        s.port = 80;
        refused(
            &mut c,
            Command::EditService(s),
            IpvsError::SchedulerNotFound("nope".into()),
        );

        refused(
            &mut c,
            Command::AddService(svc(0)),
            IpvsError::ZeroPortNotPersistent,
        );
        let mut s = svc(0);
        s.persistence = Some(0);
        refused(&mut c, Command::AddService(s.clone()), IpvsError::BadTimeout(0));
        s.persistence = Some(MAX_TIMEOUT_S + 1);
        refused(
            &mut c,
            Command::AddService(s),
            IpvsError::BadTimeout(MAX_TIMEOUT_S + 1),
        );
        let mut zero = svc(0);
        zero.persistence = Some(300);
        c.apply(&Command::AddService(zero.clone())).unwrap();
        zero.persistence = None;
        refused(
            &mut c,
            Command::EditService(zero),
            IpvsError::ZeroPortNotPersistent,
        );

        let mut s = svc(99);
        s.vip = ip("224.0.0.1");
        refused(
            &mut c,
            Command::AddService(s),
            IpvsError::AddressNotUnicast(ip("224.0.0.1")),
        );
        refused(
            &mut c,
            Command::AddDest(key(80), nat("0.0.0.0", 80, 1)),
            IpvsError::AddressNotUnicast(ip("0.0.0.0")),
        );
        refused(
            &mut c,
            Command::AddDest(key(80), nat("10.0.1.5", 80, 65536)),
            IpvsError::BadWeight(65536),
        );
        let mut d = nat("10.0.1.5", 80, 1);
        d.l_threshold = 5;
        refused(
            &mut c,
            Command::AddDest(key(80), d.clone()),
            IpvsError::ThresholdOrder { lower: 5, upper: 0 },
        );
        d.u_threshold = MAX_THRESHOLD + 1;
        refused(
            &mut c,
            Command::AddDest(key(80), d),
            IpvsError::BadUThreshold(MAX_THRESHOLD + 1),
        );
        // A bad edit of an existing real server does not half-apply.
        refused(
            &mut c,
            Command::EditDest(key(80), nat("10.0.1.1", 80, 70000)),
            IpvsError::BadWeight(70000),
        );
        refused(
            &mut c,
            Command::AddDest(key(80), DestSpec::new(ip("10.0.1.5"), 8080, ForwardMethod::Dr)),
            IpvsError::PortMismatch {
                vport: 80,
                rport: 8080,
            },
        );
        refused(
            &mut c,
            Command::AddDest(key(80), DestSpec::new(ip("10.0.1.5"), 81, ForwardMethod::Tun)),
            IpvsError::PortMismatch { vport: 80, rport: 81 },
        );
        refused(
            &mut c,
            Command::SetTimeouts {
                tcp: 1,
                tcpfin: MAX_TIMEOUT_S + 1,
                udp: 1,
            },
            IpvsError::BadTimeout(MAX_TIMEOUT_S + 1),
        );
        let before = c.clone();
        assert!(matches!(c.apply(&Command::List), Err(IpvsError::Unsupported(_))));
        assert_eq!(c, before);
    }

    #[test]
    fn dr_and_tun_accept_the_service_port() {
        let mut c = base();
        c.apply(&Command::AddDest(
            key(80),
            DestSpec::new(ip("10.0.1.5"), 80, ForwardMethod::Dr),
        ))
        .unwrap();
        c.apply(&Command::AddDest(
            key(80),
            DestSpec::new(ip("10.0.1.6"), 80, ForwardMethod::Tun),
        ))
        .unwrap();
        assert_eq!(c.service(&key(80)).unwrap().dests.len(), 4);
    }

    #[test]
    fn set_timeouts_zero_keeps_the_old_value() {
        let mut c = IpvsConfig::new();
        assert_eq!(c.timeouts(), IpvsTimeouts::default());
        c.apply(&Command::SetTimeouts {
            tcp: 7200,
            tcpfin: 0,
            udp: 60,
        })
        .unwrap();
        assert_eq!(
            c.timeouts(),
            IpvsTimeouts {
                tcp: 7200,
                tcpfin: 120,
                udp: 60
            }
        );
    }

    #[test]
    fn clear_and_zero() {
        let mut c = base();
        c.apply(&Command::Zero(None)).unwrap();
        c.apply(&Command::Zero(Some(key(80)))).unwrap();
        assert_eq!(c.services().len(), 1);
        c.apply(&Command::Clear).unwrap();
        assert!(c.services().is_empty());
    }

    #[test]
    fn restore_is_all_or_nothing() {
        let mut c = base();
        let before = c.clone();
        let bad = Command::Restore(vec![
            Command::Clear,
            Command::AddService(svc(443)),
            Command::AddDest(key(443), nat("10.0.1.1", 443, 1)),
            Command::AddDest(key(443), nat("10.0.1.1", 443, 1)),
        ]);
        assert_eq!(
            c.apply(&bad),
            Err(IpvsError::Restore {
                index: 3,
                error: Box::new(IpvsError::DestExists)
            })
        );
        assert_eq!(
            c, before,
            "the Clear and the Add before the failure were rolled back"
        );

        let good = Command::Restore(vec![
            Command::Clear,
            Command::AddService(svc(443)),
            Command::AddDest(key(443), nat("10.0.1.1", 443, 1)),
        ]);
        c.apply(&good).unwrap();
        assert_eq!(c.services().len(), 1);
        assert_eq!(c.services()[0].spec.port, 443);

        let nested = Command::Restore(vec![Command::Clear, Command::Restore(vec![])]);
        let before = c.clone();
        assert!(matches!(
            c.apply(&nested),
            Err(IpvsError::Restore { index: 1, .. })
        ));
        assert_eq!(c, before);
        assert!(matches!(
            c.apply(&Command::Restore(vec![Command::List])),
            Err(IpvsError::Restore { index: 0, .. })
        ));
    }

    #[test]
    fn limits_answer_memory_allocation_problem() {
        let mut c = IpvsConfig::with_limits(Limits {
            max_services: 1,
            max_dests_per_service: 1,
        });
        c.apply(&Command::AddService(svc(80))).unwrap();
        refused(&mut c, Command::AddService(svc(81)), IpvsError::NoMemory);
        c.apply(&Command::AddDest(key(80), nat("10.0.1.1", 80, 1)))
            .unwrap();
        refused(
            &mut c,
            Command::AddDest(key(80), nat("10.0.1.2", 80, 1)),
            IpvsError::NoMemory,
        );
    }

    #[test]
    fn to_commands_rebuilds_the_same_model() {
        let mut c = base();
        c.apply(&Command::SetTimeouts {
            tcp: 100,
            tcpfin: 0,
            udp: 0,
        })
        .unwrap();
        let mut d = IpvsConfig::new();
        d.apply(&Command::Restore(c.to_commands())).unwrap();
        assert_eq!(c, d);
        let l = c.list();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].dests.len(), 2);
        assert_eq!(l[0].dests[1].spec.port, 8080);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn arb_cmd() -> impl Strategy<Value = Command> {
            let port = prop_oneof![Just(0u16), Just(80), Just(443)];
            let rip = (1u8..4).prop_map(|i| Ipv4Addr::new(10, 0, 0, i));
            let method = prop_oneof![
                Just(ForwardMethod::Nat),
                Just(ForwardMethod::Dr),
                Just(ForwardMethod::Tun)
            ];
            let sched = prop_oneof![Just("wrr".to_string()), Just("bogus".to_string())];
            let spec = (port.clone(), sched, proptest::option::of(0u32..3)).prop_map(|(p, s, pers)| {
                let mut sp = ServiceSpec::new(Proto::Tcp, Ipv4Addr::new(192, 168, 1, 1), p);
                sp.scheduler = s;
                sp.persistence = pers;
                sp
            });
            let k = port.clone().prop_map(|p| ServiceKey {
                proto: Proto::Tcp,
                vip: Ipv4Addr::new(192, 168, 1, 1),
                port: p,
            });
            let dest =
                (rip.clone(), port, method, 0u32..70000, 0u32..3, 0u32..3).prop_map(|(r, p, m, w, u, l)| {
                    DestSpec {
                        rip: r,
                        port: p,
                        method: m,
                        weight: w,
                        u_threshold: u,
                        l_threshold: l,
                    }
                });
            prop_oneof![
                spec.clone().prop_map(Command::AddService),
                spec.prop_map(Command::EditService),
                k.clone().prop_map(Command::DelService),
                (k.clone(), dest.clone()).prop_map(|(k, d)| Command::AddDest(k, d)),
                (k.clone(), dest).prop_map(|(k, d)| Command::EditDest(k, d)),
                (k, rip).prop_map(|(k, r)| Command::DelDest(k, r, 80)),
            ]
        }

        proptest! {
            #[test]
            fn failed_commands_change_nothing(cmds in proptest::collection::vec(arb_cmd(), 1..40)) {
                let mut c = IpvsConfig::new();
                for cmd in &cmds {
                    let before = c.clone();
                    if c.apply(cmd).is_err() {
                        prop_assert_eq!(&c, &before);
                    }
                }
                // The model's invariants hold whatever got through.
                for s in c.services() {
                    prop_assert!(s.spec.port != 0 || s.spec.persistence.is_some());
                    for (i, d) in s.dests.iter().enumerate() {
                        prop_assert!(d.weight <= MAX_WEIGHT);
                        prop_assert!(d.method == ForwardMethod::Nat || d.port == s.spec.port);
                        prop_assert!(s.dests[..i].iter().all(|e| (e.rip, e.port) != (d.rip, d.port)));
                    }
                }
                // A restore of the same sequence is all-or-nothing.
                let mut r = IpvsConfig::new();
                let all_ok = {
                    let mut t = IpvsConfig::new();
                    cmds.iter().all(|c| t.apply(c).is_ok())
                };
                let res = r.apply(&Command::Restore(cmds.clone()));
                prop_assert_eq!(res.is_ok(), all_ok);
                if all_ok { prop_assert_eq!(&r, &c); } else { prop_assert_eq!(&r, &IpvsConfig::new()); }
            }
        }
    }
}
