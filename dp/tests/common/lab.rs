//! The one test director, shared by the forwarding tests, the fuzz target
//! (`fuzz/src/lab.rs`) and the benchmarks (`benches/lab.rs`), which include
//! this file by path. Ports, routes and neighbours are set up as rvs-dp's
//! `Director` sets them up from rvs.toml; virtual services and real servers go
//! through `ControlPlane`, the code rvs-dp runs for every ipvsadm command, so
//! a lab's service table is built exactly as the product builds it.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::sync::Arc;

use rvs_dp::control::ControlPlane;
use rvs_dp::core::{CoreOptions, Forwarder, PortInfo, Shared};
use rvs_dp::route::RouteTable;
use rvs_dp::service::{ForwardMethod, Proto, ServiceKey};
use rvs_dp::wire::ethernet::MacAddr;
use rvs_proto::command::{Command, DestSpec, ServiceSpec};

/// The lab's addresses, the same in every test: clients and VIPs on port 0
/// (10.1.0.0/24), real servers and local addresses on port 1 (10.2.0.0/24).
pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0c];
pub const RS_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
pub const P0_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xd0, 0]);
pub const P1_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xd0, 1]);
pub const DIP0: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub const DIP1: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
pub const CIP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 100);
pub const RIP: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 11);
pub const LIP: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 200);

/// Real server `i`'s address (`RIP` is the first).
pub fn rs_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 2, 0, 10 + i)
}

pub struct LabDirector {
    pub shared: Arc<Shared>,
    pub control: ControlPlane,
}

impl LabDirector {
    /// A director with `ports` (each with its connected route), static routes
    /// `(network, prefix, gateway)` and static neighbours.
    pub fn new(
        ports: Vec<PortInfo>,
        static_routes: &[(Ipv4Addr, u8, Ipv4Addr)],
        neighbours: &[(Ipv4Addr, MacAddr)],
        workers: u16,
        opts: CoreOptions,
    ) -> LabDirector {
        Self::new_with(ports, static_routes, neighbours, workers, opts, |s| s)
    }

    /// As `new`, with `tweak` applied to the `Shared` before it is shared
    /// (a fixed SYN cookie key, say).
    pub fn new_with(
        ports: Vec<PortInfo>,
        static_routes: &[(Ipv4Addr, u8, Ipv4Addr)],
        neighbours: &[(Ipv4Addr, MacAddr)],
        workers: u16,
        opts: CoreOptions,
        tweak: impl FnOnce(Shared) -> Shared,
    ) -> LabDirector {
        let mut routes = RouteTable::new();
        for (i, p) in ports.iter().enumerate() {
            routes.add_connected(p.addr, p.prefix_len, i as u16).unwrap();
        }
        for &(net, len, via) in static_routes {
            routes.add_static(net, len, via).unwrap();
        }
        let shared = Arc::new(tweak(Shared::new(ports, routes, workers, opts)));
        for &(ip, mac) in neighbours {
            shared.neigh.add_static(ip, mac);
        }
        LabDirector::from_shared(shared)
    }

    /// A director on a `Shared` the test built itself (kernel ports, ...).
    pub fn from_shared(shared: Arc<Shared>) -> LabDirector {
        let control = ControlPlane::new(shared.clone(), 0);
        LabDirector { shared, control }
    }

    /// One ipvsadm command, as rvsadm would send it; a refused one is a bug
    /// in the test.
    pub fn apply(&mut self, cmd: Command) {
        if let Err(e) = self.control.apply(&cmd) {
            panic!("lab command {cmd:?} refused: {e}");
        }
    }

    /// `-A`: a virtual service; `persistence` is `-p timeout -M netmask`.
    pub fn service(
        &mut self,
        proto: Proto,
        vip: Ipv4Addr,
        port: u16,
        scheduler: &str,
        persistence: Option<(u32, Ipv4Addr)>,
    ) -> ServiceKey {
        let spec = service(proto, vip, port, scheduler, persistence);
        let key = spec.key();
        self.apply(Command::AddService(spec));
        key
    }

    /// `-a`: a real server of `key`.
    pub fn real_server(
        &mut self,
        key: ServiceKey,
        rip: Ipv4Addr,
        port: u16,
        weight: u32,
        method: ForwardMethod,
    ) {
        self.apply(Command::AddDest(key, dest(rip, port, weight, method)));
    }

    /// `-e`: a real server's new weight (0 quiesces it).
    pub fn weight(&mut self, key: ServiceKey, rip: Ipv4Addr, port: u16, weight: u32, method: ForwardMethod) {
        self.apply(Command::EditDest(key, dest(rip, port, weight, method)));
    }

    /// Worker `worker`'s forwarder, on the current table, its clock at `now`.
    pub fn forwarder(&self, worker: u16, capacity: u32, now: u32) -> Forwarder {
        let mut f = Forwarder::new(worker, self.shared.clone(), capacity);
        f.set_now(now);
        f.refresh();
        f
    }
}

/// The spec of `service`, for a `-R` batch (one table build for many
/// commands, where each `apply` builds one).
pub fn service(
    proto: Proto,
    vip: Ipv4Addr,
    port: u16,
    scheduler: &str,
    persistence: Option<(u32, Ipv4Addr)>,
) -> ServiceSpec {
    let mut spec = ServiceSpec::new(proto, vip, port);
    spec.scheduler = scheduler.into();
    if let Some((timeout, netmask)) = persistence {
        spec.persistence = Some(timeout);
        spec.netmask = netmask;
    }
    spec
}

pub fn dest(rip: Ipv4Addr, port: u16, weight: u32, method: ForwardMethod) -> DestSpec {
    let mut d = DestSpec::new(rip, port, method);
    d.weight = weight;
    d
}

/// A port of the lab (`/24`).
pub fn port(mac: MacAddr, addr: Ipv4Addr, mtu: u16) -> PortInfo {
    PortInfo {
        mac,
        addr,
        prefix_len: 24,
        mtu,
    }
}
