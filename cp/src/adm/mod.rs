//! rvsadm: ipvsadm's command line and output formats in front of the rvs
//! data plane.
//!
//! - `parse`: the command line (popt-style, ipvsadm's checks and messages).
//! - `format`: ipvsadm's listings and its save format.
//! - `save`: reading a save file into one all-or-nothing restore.
//!
//! `run` is the whole program minus the transport, so the binary and the
//! tests share it. Exit codes follow ipvsadm: 0 on success, 2 for a command
//! line it refuses, 255 when the data plane refuses the command (ipvsadm
//! returns -1 from main), 1 when a listing fails.

pub mod format;
pub mod parse;
pub mod save;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::Ipv4Addr;

use rvs_proto::command::CONNS_PAGE;
use rvs_proto::command::{Command, ConnInfo, IpvsError, Rates, Reply, ServiceInfo, WorkerLatency};
use rvs_proto::ipvs::IpvsConfig;
use rvs_proto::types::{ServiceKey, TrafficTotals};

use parse::{Action, ListOpts, ListWhat};

/// How rvsadm reaches the data plane: one request, one reply.
pub trait CtlTransport {
    fn request(&mut self, cmd: &Command) -> anyhow::Result<Reply>;
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
/// without a running data plane.
#[derive(Clone, Debug)]
pub struct LocalTransport {
    pub config: IpvsConfig,
    pub service_counters: HashMap<ServiceKey, (TrafficTotals, Rates)>,
    pub dest_counters: HashMap<(ServiceKey, Ipv4Addr, u16), DestCounters>,
    pub conns: Vec<ConnInfo>,
    pub latency: Vec<WorkerLatency>,
    pub conn_tab_size: u32,
}

impl Default for LocalTransport {
    fn default() -> Self {
        LocalTransport {
            config: IpvsConfig::new(),
            service_counters: HashMap::new(),
            dest_counters: HashMap::new(),
            conns: Vec::new(),
            latency: Vec::new(),
            // The kernel's default connection table size (2^12).
            conn_tab_size: 4096,
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

    fn list(&self) -> Vec<ServiceInfo> {
        let mut v = self.config.list();
        for s in v.iter_mut() {
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
        v
    }
}

impl CtlTransport for LocalTransport {
    fn request(&mut self, cmd: &Command) -> anyhow::Result<Reply> {
        Ok(match cmd {
            Command::List => Reply::Services(self.list()),
            Command::ListConns => Reply::Conns(self.conns.clone()),
            Command::ListConnsPage { offset, limit, .. } => {
                let start = (*offset as usize).min(self.conns.len());
                let end = start.saturating_add(*limit as usize).min(self.conns.len());
                Reply::ConnsPage {
                    listing: 1,
                    total: self.conns.len() as u32,
                    conns: self.conns[start..end].to_vec(),
                }
            }
            Command::GetTimeouts => {
                let t = self.config.timeouts();
                Reply::Timeouts {
                    tcp: t.tcp,
                    tcpfin: t.tcpfin,
                    udp: t.udp,
                }
            }
            Command::Latency => Reply::Latency(self.latency.clone()),
            Command::GetInfo => Reply::Info {
                conn_tab_size: self.conn_tab_size,
            },
            change => match self.config.apply(change) {
                Ok(()) => {
                    for z in Self::zeroes_in(change) {
                        self.zero(z);
                    }
                    Reply::Ok
                }
                Err(e) => Reply::Error(e),
            },
        })
    }
}

const USAGE: &str = "\
Usage:
  rvsadm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags]
  rvsadm -D virtual-service
  rvsadm -C
  rvsadm -R
  rvsadm -S [-n]
  rvsadm -a|e virtual-service -r server-address [options]
  rvsadm -d virtual-service -r server-address
  rvsadm -L|l [virtual-service] [options]
  rvsadm -Z [virtual-service]
  rvsadm --set tcp tcpfin udp
  rvsadm --latency [--json]
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
  --set tcp tcpfin udp        set connection timeouts in seconds (0 keeps one)
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
  --weight       -w weight    0..65535 (default 1)
  --u-threshold  -x number    upper connection threshold
  --l-threshold  -y number    lower connection threshold
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
    let mut ask = |cmd: &Command, stderr: &mut dyn Write| match transport.request(cmd) {
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
        Action::Apply(cmd) => match ask(&cmd, stderr) {
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
            match ask(&script.command, stderr) {
                None => 2,
                Some(Reply::Ok) => 0,
                Some(Reply::Error(IpvsError::Restore { index, error })) => {
                    match script.lines.get(index) {
                        Some(line) => out(stderr, &format!("line {line}: {error}\n")),
                        None => out(stderr, &format!("{error}\n")),
                    }
                    255
                }
                Some(Reply::Error(e)) => {
                    out(stderr, &format!("{e}\n"));
                    255
                }
                Some(r) => unexpected(stderr, &r),
            }
        }
        Action::Save { .. } => match ask(&Command::List, stderr) {
            None => 2,
            Some(Reply::Services(s)) => {
                out(stdout, &format::save(&s));
                0
            }
            Some(Reply::Error(e)) => {
                out(stderr, &format!("{e}\n"));
                1
            }
            Some(r) => unexpected(stderr, &r),
        },
        Action::List(what, opts) => {
            let cmd = match what {
                ListWhat::All | ListWhat::Service(_) => Command::List,
                ListWhat::Conns => Command::ListConnsPage {
                    listing: 0,
                    offset: 0,
                    limit: CONNS_PAGE,
                },
                ListWhat::Timeouts => Command::GetTimeouts,
                ListWhat::Latency => Command::Latency,
            };
            let reply = match ask(&cmd, stderr) {
                None => return 2,
                Some(Reply::Error(e)) => {
                    out(stderr, &format!("{e}\n"));
                    return 1;
                }
                // A big table comes a page at a time: gather the rest of the listing.
                Some(Reply::ConnsPage {
                    listing,
                    total,
                    mut conns,
                }) => {
                    while conns.len() < total as usize {
                        let next = Command::ListConnsPage {
                            listing,
                            offset: conns.len() as u32,
                            limit: CONNS_PAGE,
                        };
                        match ask(&next, stderr) {
                            None => return 2,
                            Some(Reply::ConnsPage { conns: more, .. }) if !more.is_empty() => {
                                conns.extend(more)
                            }
                            Some(Reply::Error(e)) => {
                                out(stderr, &format!("{e}\n"));
                                return 1;
                            }
                            Some(r) => return unexpected(stderr, &r),
                        }
                    }
                    Reply::Conns(conns)
                }
                Some(r) => r,
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
                        let size = match ask(&Command::GetInfo, stderr) {
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
                (_, r) => unexpected(stderr, &r),
            }
        }
    }
}
