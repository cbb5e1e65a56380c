//! The data plane's control thread, after the kernel's ip_vs_ctl.c: it applies
//! ipvsadm commands as transactions and answers queries from live counters.
//!
//! A change is validated against a copy of the configuration model
//! (`IpvsConfig::apply`), turned into a new immutable `ServiceTable`
//! (schedulers built here, off the packet path), and published whole; the
//! workers switch between bursts. Counters survive every change because the
//! builder hands each real server and service the same `Arc`ed counters for
//! as long as it exists.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rvs_proto::region::RegionError;
use rvs_proto::ring::CtlServer;

use crate::conn::Timeouts as ConnTimeouts;
use crate::core::Shared;
use crate::fnat::stats::LaddrStats;
use crate::fnat::steer::{Steer, Target, Want};
use crate::sched::{self, SchedOptions};
use crate::service::{
    steer_bit, DestStats, LocalAddress, Persistence, Proto, RealServer, ServiceKey, ServiceTable,
    TrafficTotals, VirtualService, WorkerTraffic,
};
use crate::sync::{SyncDaemons, SyncParams};
use rvs_proto::command::{
    Command, ConnInfo, DestInfo, IpvsError, LaddrInfo, LaddrSpec, OwnedAddrs, PortFlowInfo, Rates, Reply,
    ServiceInfo, WorkerLatency,
};
use rvs_proto::ipvs::IpvsConfig;
use rvs_proto::serve::{self, DataPlane, Sessions};

type DestKey = (ServiceKey, Ipv4Addr, u16);

/// Rate estimation, as the kernel's ip_vs_est.c: totals sampled every couple
/// of seconds, rates over the last window.
#[derive(Clone, Copy, Default)]
struct Estimator {
    last: TrafficTotals,
    last_at: Option<Instant>,
    rates: Rates,
}

impl Estimator {
    fn sample(&mut self, now: Instant, t: TrafficTotals) {
        if let Some(at) = self.last_at {
            let dt = now.duration_since(at).as_secs_f64();
            if dt < 1.0 {
                return;
            }
            let r = |a: u64, b: u64| ((a.saturating_sub(b)) as f64 / dt).round() as u64;
            self.rates = Rates {
                cps: r(t.conns, self.last.conns),
                inpps: r(t.inpkts, self.last.inpkts),
                outpps: r(t.outpkts, self.last.outpkts),
                inbps: r(t.inbytes, self.last.inbytes),
                outbps: r(t.outbytes, self.last.outbytes),
            };
        }
        self.last = t;
        self.last_at = Some(now);
    }
}

fn minus(a: TrafficTotals, b: TrafficTotals) -> TrafficTotals {
    TrafficTotals {
        conns: a.conns.saturating_sub(b.conns),
        inpkts: a.inpkts.saturating_sub(b.inpkts),
        outpkts: a.outpkts.saturating_sub(b.outpkts),
        inbytes: a.inbytes.saturating_sub(b.inbytes),
        outbytes: a.outbytes.saturating_sub(b.outbytes),
    }
}

pub struct ControlPlane {
    config: IpvsConfig,
    shared: Arc<Shared>,
    generation: u64,
    dest_stats: HashMap<DestKey, Arc<DestStats>>,
    svc_stats: HashMap<ServiceKey, Arc<WorkerTraffic>>,
    /// `ipvsadm -Z` subtracts these rather than writing into counters that
    /// workers own.
    svc_zero: HashMap<ServiceKey, TrafficTotals>,
    dest_zero: HashMap<DestKey, TrafficTotals>,
    svc_est: HashMap<ServiceKey, Estimator>,
    dest_est: HashMap<DestKey, Estimator>,
    pub conn_capacity_total: u32,
    /// Paged listings and staged restores in progress.
    sessions: Sessions,
    /// The connection sync daemons (`--start-daemon`), off until started.
    pub sync: SyncDaemons,
    /// Full resync's listings and installs (`rvs_proto::resync`).
    pub bulk: crate::sync::bulk::Bulk,
    /// Every local address's port and counters, while configured or in use.
    laddr_stats: HashMap<Ipv4Addr, (u16, Arc<LaddrStats>)>,
    /// NIC flow rules steering FULLNAT replies (`fnat::steer`); none: the
    /// software redirect alone.
    steering: Option<Box<dyn Steer>>,
}

impl ControlPlane {
    pub fn new(shared: Arc<Shared>, conn_capacity_total: u32) -> Self {
        ControlPlane {
            config: IpvsConfig::new(),
            shared: shared.clone(),
            generation: 0,
            dest_stats: HashMap::new(),
            svc_stats: HashMap::new(),
            svc_zero: HashMap::new(),
            dest_zero: HashMap::new(),
            svc_est: HashMap::new(),
            dest_est: HashMap::new(),
            conn_capacity_total,
            sessions: Sessions::default(),
            sync: SyncDaemons::new(shared, SyncParams::default()),
            bulk: Default::default(),
            laddr_stats: HashMap::new(),
            steering: None,
        }
    }

    /// Steers FULLNAT replies with NIC flow rules from the next commit on.
    pub fn set_steering(&mut self, s: Box<dyn Steer>) {
        self.steering = Some(s);
    }

    /// Each port's flow steering, for the tools (`Command::FlowSteering`).
    pub fn flow_steering(&self) -> Vec<PortFlowInfo> {
        let names = &self.shared.port_names;
        (self.steering.iter().flat_map(|s| s.report()))
            .map(|p| PortFlowInfo {
                port: p.port,
                name: names.get(usize::from(p.port)).cloned().unwrap_or_default(),
                mode: p.mode.name().to_string(),
                rules: u32::try_from(p.rules).unwrap_or(u32::MAX),
                reason: p.reason,
            })
            .collect()
    }

    /// Removes every flow rule (at exit).
    pub fn clear_steering(&mut self) {
        if let Some(s) = self.steering.as_mut() {
            s.clear();
        }
    }

    /// Brings the NIC rules in line with `table`'s local addresses (those
    /// of its services; a retired LIP loses its rules, the redirect still
    /// takes its replies) and marks which LIPs they steer.
    fn steer(&mut self, table: &mut ServiceTable) {
        let Some(s) = self.steering.as_mut() else {
            return;
        };
        let mut want = Want::new();
        for vs in table.services() {
            for l in &vs.laddrs {
                (want.entry(l.port).or_default()).insert(Target {
                    lip: l.addr,
                    proto: vs.key.proto,
                });
            }
        }
        for p in s.apply(&want) {
            eprintln!("rvs-dp: {p}");
        }
        let s = &*s;
        table.mark_steered(|lip, port| {
            [Proto::Tcp, Proto::Udp]
                .into_iter()
                .filter(|&proto| s.steers(port, &Target { lip, proto }))
                .fold(0, |b, proto| b | steer_bit(proto))
        });
    }

    pub fn config(&self) -> &IpvsConfig {
        &self.config
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Applies a configuration command as one transaction. Returns the new
    /// generation the workers must reach before the reply goes out.
    pub fn apply(&mut self, cmd: &Command) -> Result<u64, IpvsError> {
        let mut next = self.config.clone();
        next.apply(cmd)?;
        self.commit(next, std::slice::from_ref(cmd))
    }

    /// Puts `next`, a model `cmds` turned the current one into, in force:
    /// one new snapshot, whatever the number of commands.
    pub fn commit(&mut self, next: IpvsConfig, cmds: &[Command]) -> Result<u64, IpvsError> {
        let mut table = self.build(&next)?;
        // Nothing can fail from here on (a flow rule refused only means the
        // redirect does that port's work).
        self.steer(&mut table);
        for cmd in cmds {
            self.note_zero(cmd);
        }
        self.mark_removed(&next);
        let t = next.timeouts();
        let mut ct = ConnTimeouts::default();
        ct.set_ipvsadm(t.tcp, t.tcpfin, t.udp);
        self.shared.timeouts.store(Arc::new(ct));
        self.config = next;
        self.shared.services.store(Arc::new(table));
        Ok(self.generation)
    }

    /// Builds the snapshot for `cfg`, reusing the counters of every service
    /// and real server that already exists.
    fn build(&mut self, cfg: &IpvsConfig) -> Result<ServiceTable, IpvsError> {
        let workers = self.shared.workers as usize;
        let mut services = Vec::with_capacity(cfg.services().len());
        for vs in cfg.services() {
            let key = vs.spec.key();
            let laddrs = vs
                .laddrs
                .iter()
                .map(|l| self.local_address(l))
                .collect::<Result<Vec<_>, _>>()?;
            let dests: Vec<RealServer> = vs
                .dests
                .iter()
                .map(|d| {
                    let stats = self
                        .dest_stats
                        .entry((key, d.rip, d.port))
                        .or_insert_with(|| Arc::new(DestStats::new(workers)))
                        .clone();
                    stats.u_threshold.store(d.u_threshold, Ordering::Relaxed);
                    stats.l_threshold.store(d.l_threshold, Ordering::Relaxed);
                    stats.removed.store(false, Ordering::Relaxed);
                    stats.update_overload();
                    RealServer {
                        rip: d.rip,
                        port: d.port,
                        weight: d.weight,
                        method: d.method,
                        stats,
                    }
                })
                .collect();
            let opts = SchedOptions {
                flags: vs.spec.flags,
                ..SchedOptions::default()
            };
            let sched = sched::build(&vs.spec.scheduler, &dests, &opts)
                .map_err(|_| IpvsError::SchedulerNotFound(vs.spec.scheduler.clone()))?;
            let stats = self
                .svc_stats
                .entry(key)
                .or_insert_with(|| Arc::new(WorkerTraffic::new(workers)))
                .clone();
            services.push(VirtualService {
                key,
                sched_name: vs.spec.scheduler.clone(),
                sched_opts: opts,
                persistence: vs.spec.persistence.map(|timeout_s| Persistence {
                    timeout_s,
                    netmask: vs.spec.netmask,
                }),
                syn_proxy: vs.spec.syn_proxy,
                dests,
                laddrs,
                client_addr: vs.spec.client_addr,
                stats,
                sched,
            });
        }
        // LIPs no service has any more: kept (owned, not allocated from)
        // while connections use them; forgotten at the first build after.
        let configured: std::collections::HashSet<Ipv4Addr> = cfg
            .services()
            .iter()
            .flat_map(|s| s.laddrs.iter().map(|l| l.addr))
            .collect();
        self.laddr_stats
            .retain(|a, (_, st)| configured.contains(a) || st.conns() > 0);
        let retired = (self.laddr_stats.iter())
            .filter(|(a, _)| !configured.contains(a))
            .map(|(&addr, (port, stats))| LocalAddress {
                addr,
                port: *port,
                stats: stats.clone(),
                steered: 0,
            })
            .collect();
        self.generation += 1;
        Ok(ServiceTable::new(self.generation, services).with_retired_lips(retired))
    }

    /// A service's local address, resolved to its port: the port named must
    /// exist and the LIP be on its subnet (and not be the port's own address).
    fn local_address(&mut self, l: &LaddrSpec) -> Result<LocalAddress, IpvsError> {
        let bad = || IpvsError::LaddrNotOnPort {
            addr: l.addr,
            port_name: l.port_name.clone(),
        };
        let port = self.shared.port_named(&l.port_name).ok_or_else(bad)?;
        let info = self.shared.ports.get(port as usize).ok_or_else(bad)?;
        if !info.on_link(l.addr) || info.addr == l.addr {
            return Err(bad());
        }
        let workers = self.shared.workers as usize;
        let (p, stats) = self
            .laddr_stats
            .entry(l.addr)
            .or_insert_with(|| (port, Arc::new(LaddrStats::new(workers))));
        *p = port;
        Ok(LocalAddress {
            addr: l.addr,
            port,
            stats: stats.clone(),
            steered: 0,
        })
    }

    /// `-G`: each local address's connections and exhaustion count.
    fn fill_laddrs(&self, laddrs: &mut [LaddrInfo]) {
        for l in laddrs.iter_mut() {
            if let Some((_, st)) = self.laddr_stats.get(&l.spec.addr) {
                l.conns = st.conns();
                l.exhausted = st.exhaustions();
            }
        }
    }

    /// Real servers that left the configuration: flag them (expire_nodest_conn
    /// ends their connections), and forget their counters once idle.
    fn mark_removed(&mut self, next: &IpvsConfig) {
        let live = |k: &DestKey| next.has_dest(&k.0, k.1, k.2);
        for (k, s) in self.dest_stats.iter() {
            if !live(k) {
                s.removed.store(true, Ordering::Relaxed);
            }
        }
        self.dest_stats.retain(|k, _| live(k));
        self.dest_zero.retain(|k, _| live(k));
        self.dest_est.retain(|k, _| live(k));
        self.svc_stats.retain(|k, _| next.service(k).is_some());
        self.svc_zero.retain(|k, _| next.service(k).is_some());
        self.svc_est.retain(|k, _| next.service(k).is_some());
    }

    fn note_zero(&mut self, cmd: &Command) {
        match cmd {
            Command::Zero(which) => {
                let keys: Vec<ServiceKey> = match which {
                    Some(k) => vec![*k],
                    None => self.svc_stats.keys().copied().collect(),
                };
                for k in keys {
                    if let Some(s) = self.svc_stats.get(&k) {
                        self.svc_zero.insert(k, s.total());
                    }
                    for (dk, d) in self.dest_stats.iter() {
                        if dk.0 == k {
                            self.dest_zero.insert(*dk, d.traffic.total());
                        }
                    }
                }
            }
            Command::Restore(cmds) => {
                for c in cmds {
                    self.note_zero(c);
                }
            }
            _ => {}
        }
    }

    /// Samples the rate estimators (call every second or two).
    pub fn estimate(&mut self) {
        let now = Instant::now();
        for (k, s) in &self.svc_stats {
            let z = self.svc_zero.get(k).copied().unwrap_or_default();
            self.svc_est
                .entry(*k)
                .or_default()
                .sample(now, minus(s.total(), z));
        }
        for (k, d) in &self.dest_stats {
            let z = self.dest_zero.get(k).copied().unwrap_or_default();
            self.dest_est
                .entry(*k)
                .or_default()
                .sample(now, minus(d.traffic.total(), z));
        }
    }

    /// `List`: the configuration with live counters and VIP ownership.
    pub fn list(&mut self) -> Reply {
        self.handle(&Command::List, Vec::new, Vec::new).0
    }

    fn fill_counters(&self, services: &mut [ServiceInfo]) {
        for s in services.iter_mut() {
            let key = s.spec.key();
            if let Some(st) = self.svc_stats.get(&key) {
                s.stats = minus(st.total(), self.svc_zero.get(&key).copied().unwrap_or_default());
            }
            s.rates = self.svc_est.get(&key).map(|e| e.rates).unwrap_or_default();
            for d in s.dests.iter_mut() {
                fill_dest(d, key, &self.dest_stats, &self.dest_zero, &self.dest_est);
            }
        }
    }

    /// Answers a command (`rvs_proto::serve::handle`). Configuration changes
    /// return the generation to wait for; queries answer at once. `conns`
    /// and `latency` gather what only the workers know.
    pub fn handle(
        &mut self,
        cmd: &Command,
        conns: impl FnOnce() -> Vec<ConnInfo>,
        latency: impl FnOnce() -> Vec<WorkerLatency>,
    ) -> (Reply, Option<u64>) {
        if cmd.is_daemon() {
            return (self.daemon(cmd), None);
        }
        serve::handle(
            &mut Serving {
                cp: self,
                conns: Some(conns),
                latency: Some(latency),
            },
            cmd,
        )
    }

    /// `--start-daemon`, `--stop-daemon`, `-L --daemon`.
    fn daemon(&mut self, cmd: &Command) -> Reply {
        let done = |r: Result<(), IpvsError>| match r {
            Ok(()) => Reply::Ok,
            Err(e) => Reply::Error(e),
        };
        match cmd {
            Command::StartDaemon(spec) => done(self.sync.start(spec)),
            Command::StopDaemon(role) => done(self.sync.stop(*role)),
            Command::SyncCounters => {
                let mut t = self.sync.totals();
                self.bulk.add_to(&mut t);
                Reply::SyncCounters(t)
            }
            _ => Reply::Daemons(self.sync.list()),
        }
    }

    /// Drops staged restores whose tool went quiet (see `Sessions::expire`).
    pub fn expire_sessions(&mut self) {
        self.sessions.expire(Instant::now());
        self.bulk.expire(Instant::now());
    }
}

/// The control plane while it answers one command, with the workers'
/// connection and latency gatherers.
struct Serving<'a, C, L> {
    cp: &'a mut ControlPlane,
    conns: Option<C>,
    latency: Option<L>,
}

impl<C, L> DataPlane for Serving<'_, C, L>
where
    C: FnOnce() -> Vec<ConnInfo>,
    L: FnOnce() -> Vec<WorkerLatency>,
{
    fn model(&self) -> &IpvsConfig {
        &self.cp.config
    }
    fn generation(&self) -> u64 {
        self.cp.generation
    }
    fn sessions(&mut self) -> &mut Sessions {
        &mut self.cp.sessions
    }
    fn fill_counters(&self, services: &mut [ServiceInfo]) {
        self.cp.fill_counters(services)
    }
    fn conns(&mut self) -> Vec<ConnInfo> {
        self.conns.take().map(|f| f()).unwrap_or_default()
    }
    fn latency(&mut self) -> Vec<WorkerLatency> {
        self.latency.take().map(|f| f()).unwrap_or_default()
    }
    fn conn_tab_size(&self) -> u32 {
        self.cp.conn_capacity_total
    }
    fn owned(&self) -> OwnedAddrs {
        self.cp.shared.owned.load().to_addrs()
    }
    fn commit(&mut self, next: IpvsConfig, cmds: &[Command]) -> Result<u64, IpvsError> {
        self.cp.commit(next, cmds)
    }
    fn fill_laddrs(&self, _key: &ServiceKey, laddrs: &mut [LaddrInfo]) {
        self.cp.fill_laddrs(laddrs)
    }
    fn flow_steering(&self) -> Vec<PortFlowInfo> {
        self.cp.flow_steering()
    }
}

/// How often the rate estimators are sampled (ip_vs_est.c uses 2 s).
const ESTIMATE_EVERY: Duration = Duration::from_secs(2);
/// Longest a configuration change waits for every worker to switch before
/// the reply goes out anyway (a stopped worker must not hang the tools).
const SWITCH_WAIT: Duration = Duration::from_secs(2);

impl ControlPlane {
    /// The control thread: serves the command ring until `stop()` says so,
    /// and samples the rate estimators on the way. `conns` and `latency`
    /// gather what only the workers know.
    pub fn run(
        &mut self,
        server: &mut CtlServer,
        stop: impl Fn() -> bool,
        mut conns: impl FnMut() -> Vec<ConnInfo>,
        mut latency: impl FnMut() -> Vec<WorkerLatency>,
    ) {
        let mut last_est = Instant::now();
        while !stop() {
            server.flush_replies();
            if last_est.elapsed() >= ESTIMATE_EVERY {
                self.estimate();
                self.expire_sessions();
                last_est = Instant::now();
            }
            let Some((id, bytes)) = server.poll_request() else {
                std::thread::sleep(Duration::from_micros(500));
                continue;
            };
            let out = self.serve(&bytes, &mut conns, &mut latency);
            if let Err(e) = server.reply(id, &out) {
                eprintln!("rvs-dp: reply failed: {e}");
                // Say so rather than leave the tool waiting out its timeout
                // (an unpaged `List` of a big table, from an older tool).
                if let RegionError::TooLarge { .. } = e {
                    let refusal = Reply::Error(IpvsError::Unsupported(format!("{e}; ask for it in pages")));
                    let _ = server.reply(id, &serde_json::to_vec(&refusal).unwrap_or_default());
                }
            }
        }
    }

    /// One request's bytes in, the reply's bytes out. A change is answered
    /// once every worker runs the new snapshot, so a tool that lists right
    /// after a change sees it in force.
    pub fn serve(
        &mut self,
        request: &[u8],
        conns: impl FnOnce() -> Vec<ConnInfo>,
        latency: impl FnOnce() -> Vec<WorkerLatency>,
    ) -> Vec<u8> {
        // A full resync's binary request (`rvs_proto::resync`) is no JSON text.
        if let Some(req) = rvs_proto::resync::BulkRequest::parse(request) {
            return self.bulk.serve(&self.shared, req);
        }
        let reply = match serde_json::from_slice::<Command>(request) {
            Ok(cmd) => {
                let (reply, wait) = self.handle(&cmd, conns, latency);
                if let Some(gen) = wait {
                    let t0 = Instant::now();
                    while !self.shared.all_workers_seen(gen) && t0.elapsed() < SWITCH_WAIT {
                        std::thread::sleep(Duration::from_micros(100));
                    }
                }
                reply
            }
            Err(e) => Reply::Error(IpvsError::Unsupported(format!("malformed request: {e}"))),
        };
        serde_json::to_vec(&reply).unwrap_or_default()
    }
}

fn fill_dest(
    d: &mut DestInfo,
    key: ServiceKey,
    stats: &HashMap<DestKey, Arc<DestStats>>,
    zero: &HashMap<DestKey, TrafficTotals>,
    est: &HashMap<DestKey, Estimator>,
) {
    let k = (key, d.spec.rip, d.spec.port);
    if let Some(s) = stats.get(&k) {
        d.active = s.active();
        d.inactive = s.inactive();
        d.persistent = s.persistent.load(Ordering::Relaxed);
        d.stats = minus(s.traffic.total(), zero.get(&k).copied().unwrap_or_default());
    }
    d.rates = est.get(&k).map(|e| e.rates).unwrap_or_default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{CoreOptions, Forwarder};
    use crate::route::RouteTable;
    use crate::service::{ForwardMethod, Proto};
    use rvs_proto::command::{DestSpec, ServiceSpec, CONNS_PAGE};

    fn cp() -> (ControlPlane, Arc<Shared>) {
        let shared = Arc::new(Shared::new(vec![], RouteTable::new(), 1, CoreOptions::default()));
        (ControlPlane::new(shared.clone(), 1024), shared)
    }

    #[test]
    fn sync_daemon_commands_start_list_and_stop() {
        use rvs_proto::command::{DaemonRole, SyncDaemonSpec};
        // SO_BINDTODEVICE needs CAP_NET_RAW. Nothing is sent: no worker pushes.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let (mut cp, shared) = cp();
        let mut h = |c: Command| cp.handle(&c, Vec::new, Vec::new).0;
        let mut m = SyncDaemonSpec::new(DaemonRole::Master, "lo");
        m.syncid = 3;
        assert_eq!(h(Command::StartDaemon(m.clone())), Reply::Ok);
        assert!(shared.sync.master_on());
        assert_eq!(h(Command::StartDaemon(m)), Reply::Error(IpvsError::DaemonRunning));
        let Reply::Daemons(d) = h(Command::ListDaemons) else {
            panic!("not a daemon listing")
        };
        let lines: Vec<String> = d.iter().map(|s| s.ipvsadm_line()).collect();
        assert_eq!(
            lines,
            ["master sync daemon (mcast=lo, syncid=3, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)"]
        );
        assert_eq!(
            h(Command::StopDaemon(DaemonRole::Backup)),
            Reply::Error(IpvsError::NoDaemon)
        );
        assert_eq!(h(Command::StopDaemon(DaemonRole::Master)), Reply::Ok);
        assert!(!shared.sync.master_on());
        assert_eq!(h(Command::ListDaemons), Reply::Daemons(vec![]));
        assert_eq!(
            h(Command::StartDaemon(SyncDaemonSpec::new(
                DaemonRole::Backup,
                "nosuchdev0"
            ))),
            Reply::Error(IpvsError::DaemonSocket("No such device".into()))
        );
    }

    fn svc() -> ServiceSpec {
        let mut s = ServiceSpec::new(Proto::Tcp, Ipv4Addr::new(10, 1, 0, 100), 80);
        s.scheduler = "wrr".into();
        s
    }

    fn dest(last: u8, w: u32) -> DestSpec {
        let mut d = DestSpec::new(Ipv4Addr::new(10, 2, 0, last), 80, ForwardMethod::Nat);
        d.weight = w;
        d
    }

    #[test]
    fn transaction_publishes_and_counters_survive_edits() {
        let (mut cp, shared) = cp();
        let mut fwd = Forwarder::new(0, shared.clone(), 64);
        assert_eq!(cp.apply(&Command::AddService(svc())), Ok(1));
        cp.apply(&Command::AddDest(svc().key(), dest(11, 1))).unwrap();
        let gen = cp.apply(&Command::AddDest(svc().key(), dest(12, 1))).unwrap();
        assert!(!shared.all_workers_seen(gen));
        fwd.refresh();
        assert!(shared.all_workers_seen(gen), "the reply waits for this");
        let before = fwd.services().get(0).unwrap().dests[0].stats.clone();
        before.active.store(7, Ordering::Relaxed);
        cp.apply(&Command::EditDest(svc().key(), dest(11, 5))).unwrap();
        fwd.refresh();
        let after = &fwd.services().get(0).unwrap().dests[0];
        assert_eq!(after.weight, 5);
        assert!(
            Arc::ptr_eq(&before, &after.stats),
            "the same counters across snapshots"
        );
        let Reply::Services(list) = cp.list() else {
            panic!()
        };
        assert_eq!(list[0].dests[0].active, 7);
    }

    /// Listings and the `Ownership` query follow what the address watcher
    /// publishes in `Shared::owned`.
    #[test]
    fn ownership_follows_the_published_set() {
        use crate::ownership::Owned;
        use rvs_proto::command::VipOwned;
        let (mut cp, shared) = cp();
        cp.apply(&Command::AddService(svc())).unwrap();
        let vip = svc().vip;
        let owned_flag = |cp: &mut ControlPlane| match cp.list() {
            Reply::Services(l) => l[0].owned,
            r => panic!("{r:?}"),
        };
        let query = |cp: &mut ControlPlane| cp.handle(&Command::Ownership, Vec::new, Vec::new).0;
        assert_eq!(owned_flag(&mut cp), Some(true), "no kernel interface: owned");
        shared
            .owned
            .store(Arc::new(Owned::only(1, [Ipv4Addr::new(10, 1, 0, 1)])));
        assert_eq!(owned_flag(&mut cp), Some(false));
        assert_eq!(
            query(&mut cp),
            Reply::Ownership {
                owned: OwnedAddrs::only([Ipv4Addr::new(10, 1, 0, 1)]),
                vips: vec![VipOwned { vip, owned: false }],
            }
        );
        shared
            .owned
            .store(Arc::new(Owned::only(2, [Ipv4Addr::new(10, 1, 0, 1), vip])));
        assert_eq!(owned_flag(&mut cp), Some(true));
        let Reply::Ownership { owned, vips } = query(&mut cp) else {
            panic!()
        };
        assert_eq!(owned.addresses, vec![Ipv4Addr::new(10, 1, 0, 1), vip]);
        assert_eq!(vips, vec![VipOwned { vip, owned: true }]);
    }

    #[test]
    fn bad_command_changes_nothing() {
        let (mut cp, shared) = cp();
        cp.apply(&Command::AddService(svc())).unwrap();
        let gen = cp.generation();
        let snap = shared.services.load_full();
        assert!(cp.apply(&Command::AddService(svc())).is_err());
        let mut bad = svc();
        bad.scheduler = "nope".into();
        bad.vip = Ipv4Addr::new(10, 1, 0, 101);
        assert!(cp.apply(&Command::AddService(bad)).is_err());
        assert_eq!(cp.generation(), gen);
        assert!(Arc::ptr_eq(&snap, &shared.services.load_full()));
        let (r, g) = cp.handle(
            &Command::DelDest(svc().key(), Ipv4Addr::new(1, 1, 1, 1), 80),
            Vec::new,
            Vec::new,
        );
        assert!(matches!(r, Reply::Error(_)) && g.is_none());
    }

    #[test]
    fn connection_listing_in_pages() {
        let (mut cp, _) = cp();
        let conn = |i: u32| ConnInfo {
            proto: Proto::Tcp,
            state: "ESTABLISHED".into(),
            expires_s: 900,
            cip: Ipv4Addr::from(0x0a00_0000 + i),
            cport: 1000,
            vip: Ipv4Addr::new(10, 1, 0, 100),
            vport: 80,
            rip: Ipv4Addr::new(10, 2, 0, 11),
            rport: 80,
            laddr: None,
        };
        let all: Vec<ConnInfo> = (0..2500).map(conn).collect();
        let first = cp.handle(
            &Command::ListConnsPage {
                listing: 0,
                offset: 0,
                limit: 5000,
            },
            || all.clone(),
            Vec::new,
        );
        let (
            Reply::ConnsPage {
                listing,
                total,
                conns,
            },
            None,
        ) = first
        else {
            panic!("{first:?}")
        };
        assert_eq!(
            (total, conns.len()),
            (2500, CONNS_PAGE as usize),
            "a page is capped"
        );
        let mut got = conns;
        while got.len() < total as usize {
            let (r, _) = cp.handle(
                &Command::ListConnsPage {
                    listing,
                    offset: got.len() as u32,
                    limit: CONNS_PAGE,
                },
                || panic!("later pages reuse the listing"),
                Vec::new,
            );
            let Reply::ConnsPage { conns, .. } = r else {
                panic!("{r:?}")
            };
            assert!(!conns.is_empty());
            got.extend(conns);
        }
        assert_eq!(got, all);
        // The reply of a full page fits the ring's message size with room to spare.
        let (r, _) = cp.handle(
            &Command::ListConnsPage {
                listing,
                offset: 0,
                limit: CONNS_PAGE,
            },
            Vec::new,
            Vec::new,
        );
        let bytes = serde_json::to_vec(&r).unwrap().len();
        assert!(bytes < (256 << 10) / 2, "{bytes} bytes");
        let (r, _) = cp.handle(
            &Command::ListConnsPage {
                listing: 999,
                offset: 0,
                limit: 1,
            },
            Vec::new,
            Vec::new,
        );
        assert!(
            matches!(r, Reply::Error(_)),
            "an old listing is refused, not mixed"
        );
    }

    #[test]
    fn removal_flags_and_zero_and_timeouts() {
        let (mut cp, shared) = cp();
        cp.apply(&Command::AddService(svc())).unwrap();
        cp.apply(&Command::AddDest(svc().key(), dest(11, 1))).unwrap();
        let s = shared.services.load_full().get(0).unwrap().dests[0].stats.clone();
        s.traffic.worker(0).add_in(100);
        let Reply::Services(l) = cp.list() else { panic!() };
        assert_eq!(l[0].dests[0].stats.inbytes, 100);
        cp.apply(&Command::Zero(None)).unwrap();
        let Reply::Services(l) = cp.list() else { panic!() };
        assert_eq!(l[0].dests[0].stats.inbytes, 0, "-Z zeroes what -L shows");
        cp.apply(&Command::DelDest(svc().key(), Ipv4Addr::new(10, 2, 0, 11), 80))
            .unwrap();
        assert!(s.removed.load(Ordering::Relaxed));
        cp.apply(&Command::SetTimeouts {
            tcp: 100,
            tcpfin: 0,
            udp: 7,
        })
        .unwrap();
        let t = shared.timeouts.load();
        assert_eq!(t.ipvsadm_values(), (100, 120, 7));
        let (r, _) = cp.handle(&Command::GetTimeouts, Vec::new, Vec::new);
        assert_eq!(
            r,
            Reply::Timeouts {
                tcp: 100,
                tcpfin: 120,
                udp: 7
            }
        );
    }
}
