//! rvsadm: ipvsadm's command line and output formats in front of the rvs
//! data plane.
//!
//! - `parse`: the command line (popt-style, ipvsadm's checks and messages).
//! - `format`: ipvsadm's listings and its save format.
//! - `save`: reading a save file into one all-or-nothing restore.
//! - `exchange`: paged listings and staged restores (any table size).
//!
//! `run` is the whole program minus the transport, so the binary and the
//! tests share it. Exit codes follow ipvsadm: 0 on success, 2 for a command
//! line it refuses, 255 when the data plane refuses the command (ipvsadm
//! returns -1 from main), 1 when a listing fails.

pub mod exchange;
pub mod format;
pub mod parse;
pub mod save;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::Ipv4Addr;

use rvs_proto::command::{
    Command, ConnInfo, IpvsError, LaddrInfo, OwnedAddrs, Rates, Reply, ServiceInfo, WorkerLatency,
};
use rvs_proto::ipvs::IpvsConfig;
use rvs_proto::kernelblock::KernelStatsBlock;
use rvs_proto::serve::{self, DataPlane, Sessions};
use rvs_proto::types::{DropReason, ServiceKey, TrafficTotals};

use exchange::ExchangeError;
use parse::{Action, ListOpts, ListWhat};

/// How rvsadm reaches the data plane: one request, one reply.
pub trait CtlTransport {
    fn request(&mut self, cmd: &Command) -> anyhow::Result<Reply>;

    /// Packets not forwarded, by reason, summed over the workers (rvs-dp's
    /// stats area; the workers count them, the control thread does not).
    fn drops(&mut self) -> anyhow::Result<[u64; DropReason::COUNT]> {
        anyhow::bail!("this data plane reports no drop counters")
    }

    /// The exception path's last published counters, per port with a kernel
    /// interface (rvs-dp's stats area; its kernel thread counts them).
    fn kernel(&mut self) -> anyhow::Result<KernelStatsBlock> {
        anyhow::bail!("this data plane reports no kernel interface counters")
    }

    /// Each worker's last published counters (rvs-dp's stats area), workers
    /// caught mid-publish left out.
    fn workers(&mut self) -> anyhow::Result<Vec<WorkerCounters>> {
        anyhow::bail!("this data plane reports no worker counters")
    }
}

/// One worker's counters as `--workers` shows them: packets, redirects,
/// connections, and FULLNAT's (see `WorkerStatsBlock`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkerCounters {
    pub worker: u32,
    pub rx_pkts: u64,
    pub tx_pkts: u64,
    pub redirects_sent: u64,
    pub redirects_received: u64,
    pub conns_created: u64,
    pub conn_table_used: u64,
    pub fnat_in: u64,
    pub fnat_out: u64,
    pub fnat_replies_direct: u64,
    pub fnat_replies_redirected: u64,
    pub fnat_replies_steered: u64,
    pub toa_inserted: u64,
    pub toa_skipped: u64,
    pub proxy_inserted: u64,
}

impl WorkerCounters {
    pub fn from_block(worker: u32, b: &rvs_proto::statsarea::WorkerStatsBlock) -> Self {
        WorkerCounters {
            worker,
            rx_pkts: b.rx_pkts,
            tx_pkts: b.tx_pkts,
            redirects_sent: b.redirects_sent,
            redirects_received: b.redirects_received,
            conns_created: b.conns_created,
            conn_table_used: b.conn_table_used,
            fnat_in: b.fnat_in,
            fnat_out: b.fnat_out,
            fnat_replies_direct: b.fnat_replies_direct,
            fnat_replies_redirected: b.fnat_replies_redirected,
            fnat_replies_steered: b.fnat_replies_steered,
            toa_inserted: b.toa_inserted,
            toa_skipped: b.toa_skipped,
            proxy_inserted: b.proxy_inserted,
        }
    }
}

/// Counters of one real server, as the data plane would report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestCounters {
    pub active: u32,
    pub inactive: u32,
    pub persistent: u32,
    pub stats: TrafficTotals,
    pub rates: Rates,
}

/// The data plane in process: the configuration model plus counters, rates,
/// connections and latencies set by hand. For tests, and for trying rvsadm
/// without a running data plane. It answers through `rvs_proto::serve`,
/// as rvs-dp does, so paging, staged restores and the query/change split
/// are rvs-dp's own.
#[derive(Clone, Debug)]
pub struct LocalTransport {
    pub config: IpvsConfig,
    pub service_counters: HashMap<ServiceKey, (TrafficTotals, Rates)>,
    pub dest_counters: HashMap<(ServiceKey, Ipv4Addr, u16), DestCounters>,
    /// (connections, refused for lack of a port) per local address.
    pub laddr_counters: HashMap<(ServiceKey, Ipv4Addr), (u64, u64)>,
    pub conns: Vec<ConnInfo>,
    pub latency: Vec<WorkerLatency>,
    pub drops: [u64; DropReason::COUNT],
    pub kernel: KernelStatsBlock,
    pub workers: Vec<WorkerCounters>,
    /// What the data plane owns (every VIP unless a test says otherwise).
    pub owned: OwnedAddrs,
    pub conn_tab_size: u32,
    pub generation: u64,
    pub sessions: Sessions,
}

impl Default for LocalTransport {
    fn default() -> Self {
        LocalTransport {
            config: IpvsConfig::new(),
            service_counters: HashMap::new(),
            dest_counters: HashMap::new(),
            laddr_counters: HashMap::new(),
            conns: Vec::new(),
            latency: Vec::new(),
            drops: [0; DropReason::COUNT],
            kernel: KernelStatsBlock::default(),
            workers: Vec::new(),
            owned: OwnedAddrs::all(),
            // The kernel's default connection table size (2^12).
            conn_tab_size: 4096,
            generation: 0,
            sessions: Sessions::default(),
        }
    }
}

impl LocalTransport {
    fn zero(&mut self, only: Option<ServiceKey>) {
        // -Z clears traffic counters and rates; connection counts stay (they
        // describe live connections, not history).
        let hit = |k: &ServiceKey| only.is_none_or(|o| o == *k);
        for (k, (t, r)) in self.service_counters.iter_mut() {
            if hit(k) {
                *t = TrafficTotals::default();
                *r = Rates::default();
            }
        }
        for ((k, _, _), d) in self.dest_counters.iter_mut() {
            if hit(k) {
                d.stats = TrafficTotals::default();
                d.rates = Rates::default();
            }
        }
    }

    fn zeroes_in(cmd: &Command) -> Vec<Option<ServiceKey>> {
        match cmd {
            Command::Zero(k) => vec![*k],
            Command::Restore(cmds) => cmds.iter().flat_map(Self::zeroes_in).collect(),
            _ => Vec::new(),
        }
    }
}

impl DataPlane for LocalTransport {
    fn model(&self) -> &IpvsConfig {
        &self.config
    }
    fn generation(&self) -> u64 {
        self.generation
    }
    fn sessions(&mut self) -> &mut Sessions {
        &mut self.sessions
    }
    fn fill_counters(&self, services: &mut [ServiceInfo]) {
        for s in services.iter_mut() {
            let key = s.spec.key();
            if let Some((t, r)) = self.service_counters.get(&key) {
                s.stats = *t;
                s.rates = *r;
            }
            for d in s.dests.iter_mut() {
                if let Some(c) = self.dest_counters.get(&(key, d.spec.rip, d.spec.port)) {
                    d.active = c.active;
                    d.inactive = c.inactive;
                    d.persistent = c.persistent;
                    d.stats = c.stats;
                    d.rates = c.rates;
                }
            }
        }
    }
    fn conns(&mut self) -> Vec<ConnInfo> {
        self.conns.clone()
    }
    fn fill_laddrs(&self, key: &ServiceKey, laddrs: &mut [LaddrInfo]) {
        for l in laddrs.iter_mut() {
            if let Some(&(conns, exhausted)) = self.laddr_counters.get(&(*key, l.spec.addr)) {
                l.conns = conns;
                l.exhausted = exhausted;
            }
        }
    }
    fn latency(&mut self) -> Vec<WorkerLatency> {
        self.latency.clone()
    }
    fn conn_tab_size(&self) -> u32 {
        self.conn_tab_size
    }
    fn owned(&self) -> OwnedAddrs {
        self.owned.clone()
    }
    fn commit(&mut self, next: IpvsConfig, cmds: &[Command]) -> Result<u64, IpvsError> {
        self.config = next;
        for z in cmds.iter().flat_map(Self::zeroes_in) {
            self.zero(z);
        }
        self.generation += 1;
        Ok(self.generation)
    }
}

impl CtlTransport for LocalTransport {
    fn request(&mut self, cmd: &Command) -> anyhow::Result<Reply> {
        Ok(serve::handle(self, cmd).0)
    }
    fn drops(&mut self) -> anyhow::Result<[u64; DropReason::COUNT]> {
        Ok(self.drops)
    }
    fn kernel(&mut self) -> anyhow::Result<KernelStatsBlock> {
        Ok(self.kernel)
    }
    fn workers(&mut self) -> anyhow::Result<Vec<WorkerCounters>> {
        Ok(self.workers.clone())
    }
}

const USAGE: &str = "\
Usage:
  rvsadm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags]
          [-j enable|disable] [--proxy-protocol disable|v1|v2 | --toa]
  rvsadm -D virtual-service
  rvsadm -C
  rvsadm -R
  rvsadm -S [-n]
  rvsadm -a|e virtual-service -r server-address [options]
  rvsadm -d virtual-service -r server-address
  rvsadm -L|l [virtual-service] [options]
  rvsadm --add-laddr -z local-address virtual-service -F port-name
  rvsadm --del-laddr -z local-address virtual-service
  rvsadm --get-laddr [virtual-service] [--json]
  rvsadm -Z [virtual-service]
  rvsadm --set tcp tcpfin udp
  rvsadm --latency [--json]
  rvsadm --drops [--json]
  rvsadm --workers [--json]
  rvsadm --kernel [--json]
  rvsadm --start-daemon state --mcast-interface interface [daemon-options]
  rvsadm --stop-daemon state
  rvsadm -h

Commands (long or short):
  --add-service     -A        add a virtual service
  --edit-service    -E        change a virtual service (every attribute)
  --delete-service  -D        delete a virtual service
  --clear           -C        delete every virtual service
  --restore         -R        read rules (the -S format) from stdin, all or nothing
  --save            -S        write the rules to stdout
  --add-server      -a        add a real server
  --edit-server     -e        change a real server
  --delete-server   -d        delete a real server
  --list            -L|-l     list the table
  --zero            -Z        zero the counters of one service or all
  --add-laddr       -P        add a FULLNAT local address to a service
  --del-laddr       -Q        delete one
  --get-laddr       -G        list a service's local addresses (all services')
  --set tcp tcpfin udp        set connection timeouts in seconds (0 keeps one)
  --start-daemon master|backup  start a connection sync daemon (IPVS sync v1)
  --stop-daemon master|backup   stop it
  --help            -h        this text

virtual-service:
  --tcp-service|-t  address[:port]
  --udp-service|-u  address[:port]

Options:
  --scheduler    -s name      rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh twos
                              (default wlc)
  --persistent   -p [timeout] persistent service (default 300 s)
  --netmask      -M netmask   persistence granularity
  --sched-flags  -b flags     sh-fallback,sh-port / mh-fallback,mh-port / flag-1,flag-2
  --real-server  -r address[:port]
  --gatewaying   -g           direct routing (default)
  --ipip         -i           IP-in-IP tunnel
  --masquerading -m           NAT
  --fullnat      -b           FULLNAT (on -a/-e; on -A/-E, -b is --sched-flags)
  --weight       -w weight    0..65535 (default 1)
  --u-threshold  -x number    upper connection threshold
  --l-threshold  -y number    lower connection threshold
  --syn-proxy    -j enable|disable  SYN proxy (NAT real servers)
  --laddr        -z address   a FULLNAT local address
  --ifname       -F name      the rvs-dp port (rvs.toml [[port]] name) it lives on
  --proxy-protocol disable|v1|v2  FULLNAT: a PROXY protocol header to the real servers
  --toa                       FULLNAT: the client address in TCP option 254 (TOA)
  --numeric      -n           accepted; rvsadm never resolves names
  --connection   -c           list connections
  --timeout                   list timeouts
  --stats | --rate            list counters | rates
  --exact                     exact numbers, no K/M/G
  --thresholds                list thresholds
  --persistent-conn           list persistent connections
  --tun-info                  list tunnel information
  --nosort | --sort           insertion order | sorted (default)
  --json                      print the data plane's reply as JSON
  --latency                   per-worker packet latency percentiles
  --drops                     packets not forwarded, by reason, over all workers
  --kernel                    kernel interfaces: frames up, down and dropped;
                              the addresses owned and each VIP's state
  --daemon                    list the sync daemons (-L --daemon)
  --mcast-interface interface a kernel interface (exception path) for sync traffic
  --syncid sid                syncid 0..255 (a backup with 0 takes every syncid)
  --sync-maxlen length        largest sync message payload (default 1472)
  --mcast-group address       multicast group (default 224.0.0.81)
  --mcast-port port           UDP port (default 8848)
  --mcast-ttl ttl             multicast TTL (default 1)
";

fn out(w: &mut dyn Write, s: &str) {
    // A closed pipe (rvsadm -L | head) is not an error worth reporting.
    let _ = w.write_all(s.as_bytes());
}

fn json(reply: &Reply) -> String {
    match serde_json::to_string_pretty(reply) {
        Ok(s) => s + "\n",
        Err(e) => format!("{{\"error\": \"{e}\"}}\n"),
    }
}

/// Runs one rvsadm invocation. `args` excludes the program name. Returns the
/// exit status.
pub fn run(
    args: &[String],
    transport: &mut dyn CtlTransport,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    let action = if args.is_empty() {
        Action::List(ListWhat::All, ListOpts::default())
    } else {
        match parse::parse_args(args) {
            Ok(a) => a,
            Err(e) => {
                out(stderr, &format!("{}\n", e.msg));
                return e.code;
            }
        }
    };
    let ask = |transport: &mut dyn CtlTransport, cmd: &Command, stderr: &mut dyn Write| match transport
        .request(cmd)
    {
        Ok(r) => Some(r),
        Err(e) => {
            out(stderr, &format!("rvsadm: cannot reach the data plane: {e:#}\n"));
            None
        }
    };
    let unexpected = |stderr: &mut dyn Write, r: &Reply| {
        out(
            stderr,
            &format!("rvsadm: unexpected reply from the data plane: {r:?}\n"),
        );
        1
    };
    // ipvsadm's exit codes: 2 when the data plane cannot be reached,
    // `refused` when it refuses, 1 for a reply that makes no sense.
    let failed = |stderr: &mut dyn Write, e: ExchangeError, refused: i32| match e {
        ExchangeError::Unreachable(_) => {
            out(stderr, &format!("rvsadm: {e}\n"));
            2
        }
        ExchangeError::Refused(e) => {
            out(stderr, &format!("{e}\n"));
            refused
        }
        ExchangeError::Unexpected(r) => unexpected(stderr, &r),
    };

    match action {
        Action::Help => {
            out(stdout, USAGE);
            0
        }
        Action::Version => {
            out(
                stdout,
                &format!(
                    "rvsadm {} (ipvsadm syntax, IPVS v{})\n",
                    env!("CARGO_PKG_VERSION"),
                    format::IPVS_VERSION
                ),
            );
            0
        }
        Action::Apply(cmd) => match ask(transport, &cmd, stderr) {
            None => 2,
            Some(Reply::Ok) => 0,
            Some(Reply::Error(e)) => {
                out(stderr, &format!("{e}\n"));
                255
            }
            Some(r) => unexpected(stderr, &r),
        },
        Action::Restore => {
            let mut text = String::new();
            if let Err(e) = stdin.read_to_string(&mut text) {
                out(stderr, &format!("rvsadm: cannot read stdin: {e}\n"));
                return 2;
            }
            let script = match save::parse_restore(&text) {
                Ok(s) => s,
                Err(e) => {
                    out(stderr, &format!("{e}\n"));
                    return e.error.code;
                }
            };
            let Command::Restore(cmds) = &script.command else {
                return unexpected(stderr, &Reply::Ok);
            };
            match exchange::restore(transport, cmds) {
                Ok(()) => 0,
                Err(ExchangeError::Refused(IpvsError::Restore { index, error })) => {
                    match script.lines.get(index) {
                        Some(line) => out(stderr, &format!("line {line}: {error}\n")),
                        None => out(stderr, &format!("{error}\n")),
                    }
                    255
                }
                Err(e) => failed(stderr, e, 255),
            }
        }
        Action::List(ListWhat::Drops, opts) => match transport.drops() {
            Ok(d) if opts.json => {
                let by_name: serde_json::Map<String, serde_json::Value> = DropReason::ALL
                    .iter()
                    .map(|r| (r.name().to_string(), d[*r as usize].into()))
                    .collect();
                out(stdout, &(serde_json::Value::Object(by_name).to_string() + "\n"));
                0
            }
            Ok(d) => {
                out(stdout, &format::drops(&d));
                0
            }
            Err(e) => {
                out(stderr, &format!("rvsadm: cannot reach the data plane: {e:#}\n"));
                2
            }
        },
        Action::List(ListWhat::Workers, opts) => match transport.workers() {
            Ok(w) if opts.json => {
                out(
                    stdout,
                    &(serde_json::to_string_pretty(&w).unwrap_or_default() + "\n"),
                );
                0
            }
            Ok(w) => {
                out(stdout, &format::workers(&w));
                0
            }
            Err(e) => {
                out(stderr, &format!("rvsadm: cannot reach the data plane: {e:#}\n"));
                2
            }
        },
        Action::List(ListWhat::Kernel, opts) => {
            let block = match transport.kernel() {
                Ok(b) => b,
                Err(e) => {
                    out(stderr, &format!("rvsadm: cannot reach the data plane: {e:#}\n"));
                    return 2;
                }
            };
            let (owned, vips) = match exchange::ask(transport, &Command::Ownership) {
                Ok(Reply::Ownership { owned, vips }) => (owned, vips),
                Ok(r) => return unexpected(stderr, &r),
                Err(e) => return failed(stderr, e, 1),
            };
            if opts.json {
                let v = format::kernel_json(block.ports(), &owned, &vips);
                out(stdout, &(v.to_string() + "\n"));
            } else {
                out(stdout, &format::kernel(block.ports(), &owned, &vips));
            }
            0
        }
        Action::List(ListWhat::Laddrs(only), opts) => {
            // As DPVS's ipvsadm: one service, or each service in turn.
            let keys = match only {
                Some(k) => vec![k],
                None => match exchange::list_services(transport) {
                    Ok(mut s) => {
                        format::sort_services(&mut s);
                        s.iter().map(|s| s.spec.key()).collect()
                    }
                    Err(e) => return failed(stderr, e, 1),
                },
            };
            let mut each = Vec::with_capacity(keys.len());
            for k in keys {
                match exchange::ask(transport, &Command::GetLaddr(k)) {
                    Ok(Reply::Laddrs(l)) => each.push((k, l)),
                    Ok(r) => return unexpected(stderr, &r),
                    Err(e) => return failed(stderr, e, 1),
                }
            }
            if opts.json {
                let v: Vec<serde_json::Value> = (each.iter())
                    .map(|(k, l)| serde_json::json!({ "service": k, "laddrs": l }))
                    .collect();
                let text = serde_json::to_string_pretty(&v).unwrap_or_default();
                out(stdout, &(text + "\n"));
            } else {
                out(stdout, &format::laddrs(&each));
            }
            0
        }
        Action::Save { .. } => match exchange::list_services(transport) {
            Ok(s) => {
                out(stdout, &format::save(&s));
                0
            }
            Err(e) => failed(stderr, e, 1),
        },
        Action::List(what, opts) => {
            let listed = match what {
                ListWhat::All | ListWhat::Service(_) => {
                    exchange::list_services(transport).map(Reply::Services)
                }
                ListWhat::Conns => exchange::list_conns(transport).map(Reply::Conns),
                ListWhat::Timeouts => exchange::ask(transport, &Command::GetTimeouts),
                ListWhat::Latency => exchange::ask(transport, &Command::Latency),
                ListWhat::Daemons => exchange::ask(transport, &Command::ListDaemons),
                // Answered by the arms above.
                ListWhat::Drops | ListWhat::Kernel | ListWhat::Workers | ListWhat::Laddrs(_) => return 1,
            };
            let reply = match listed {
                Ok(r) => r,
                Err(e) => return failed(stderr, e, 1),
            };
            match (what, reply) {
                (ListWhat::All, Reply::Services(mut s)) => {
                    if !opts.nosort {
                        format::sort_services(&mut s);
                    }
                    if opts.json {
                        out(stdout, &json(&Reply::Services(s)));
                    } else {
                        // An older data plane without GetInfo still lists; the
                        // header then shows the kernel's default size.
                        let size = match ask(transport, &Command::GetInfo, stderr) {
                            Some(Reply::Info { conn_tab_size }) => conn_tab_size,
                            _ => 4096,
                        };
                        out(stdout, &format::list_all(&s, size, &opts));
                    }
                    0
                }
                (ListWhat::Service(key), Reply::Services(s)) => {
                    let Some(mut one) = s.into_iter().find(|s| s.spec.key() == key) else {
                        out(stderr, &format!("{}\n", IpvsError::NoSuchService));
                        return 1;
                    };
                    if opts.json {
                        if !opts.nosort {
                            format::sort_services(std::slice::from_mut(&mut one));
                        }
                        out(stdout, &json(&Reply::Services(vec![one])));
                    } else {
                        out(stdout, &format::list_service(&one, &opts));
                    }
                    0
                }
                (ListWhat::Conns, r @ Reply::Conns(_)) if opts.json => {
                    out(stdout, &json(&r));
                    0
                }
                (ListWhat::Conns, Reply::Conns(c)) => {
                    out(stdout, &format::conns(&c, opts.persistent_conn));
                    0
                }
                (ListWhat::Timeouts, r @ Reply::Timeouts { .. }) if opts.json => {
                    out(stdout, &json(&r));
                    0
                }
                (ListWhat::Timeouts, Reply::Timeouts { tcp, tcpfin, udp }) => {
                    out(
                        stdout,
                        &format::timeouts(&rvs_proto::command::IpvsTimeouts { tcp, tcpfin, udp }),
                    );
                    0
                }
                (ListWhat::Latency, r @ Reply::Latency(_)) if opts.json => {
                    out(stdout, &json(&r));
                    0
                }
                (ListWhat::Latency, Reply::Latency(l)) => {
                    out(stdout, &format::latency(&l));
                    0
                }
                (ListWhat::Daemons, Reply::Daemons(d)) if opts.json => {
                    // {"Daemons": [...], "SyncCounters": {...}}: the listing as
                    // before, and the counters when this rvs-dp has them.
                    let mut v = serde_json::json!({ "Daemons": d });
                    if let Ok(Reply::SyncCounters(c)) = exchange::ask(transport, &Command::SyncCounters) {
                        v["SyncCounters"] = serde_json::json!(c);
                    }
                    out(
                        stdout,
                        &(serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"),
                    );
                    0
                }
                (ListWhat::Daemons, Reply::Daemons(d)) => {
                    let text: String = d.iter().map(|s| s.ipvsadm_line() + "\n").collect();
                    out(stdout, &text);
                    0
                }
                (_, r) => unexpected(stderr, &r),
            }
        }
    }
}
