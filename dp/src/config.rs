//! rvs.toml: one file for the data plane (`[dataplane]`, `[[port]]`, `[[route]]`,
//! `[[neighbor]]`) and the virtual servers (`[[virtual_server]]`, keepalived's
//! vocabulary), read by both rvs-dp and rvs-cp.
//!
//! Every error names the file, the key and the problem, because an operator
//! at 3 a.m. should not have to guess which of forty lines is wrong.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rvs_proto::command::{Command, DaemonRole, IpvsError, SyncDaemonSpec, SYNC_MAX_MAXLEN};
use rvs_proto::ipvs::{IpvsConfig, Limits};
use rvs_proto::kernelblock::KERNEL_PORTS;
use serde::Deserialize;

use crate::service::{ForwardMethod, Proto};

/// The control region's default path: the one constant every tool shares.
pub use rvs_proto::region::DEFAULT_PATH as DEFAULT_CTL_PATH;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {err}")]
    Io { file: String, err: std::io::Error },
    #[error("{file}: {msg}")]
    Parse { file: String, msg: String },
    #[error("{file}: {key}: {problem}")]
    Invalid {
        file: String,
        key: String,
        problem: String,
    },
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub dataplane: Dataplane,
    #[serde(default)]
    pub port: Vec<PortConfig>,
    #[serde(default)]
    pub route: Vec<RouteConfig>,
    #[serde(default)]
    pub neighbor: Vec<NeighborConfig>,
    #[serde(default)]
    pub virtual_server: Vec<VirtualServerConfig>,
    /// rvs-cp's own settings (metrics address, histogram log); rvs-dp ignores them.
    #[serde(default)]
    pub control: Option<toml::Table>,
    /// Connection sync daemons started at boot, as `rvsadm --start-daemon` does.
    #[serde(default)]
    pub sync: SyncConfig,
    /// FULLNAT's local ports, shared by every local address of every service.
    #[serde(default)]
    pub fullnat: FullnatConfig,
}

/// `[fullnat]`: the local ports FULLNAT connections take on every local
/// address, and how long a freed one stays out of use.
///
/// ```toml
/// [fullnat]
/// lport_min = 1024   # default; at least 1024
/// lport_max = 65535  # default
/// hold_s = 60        # default: Linux's TIME_WAIT; 0..=3600
/// flow_steering = true     # default: NIC flow rules steer replies (see below)
/// flow_rules_max = 4096    # default: most exact-port rules on one port
/// ```
///
/// Worker `w` of `n` owns the ports `p` with `(p % 64) % n == w` (the reply's
/// destination port names its worker), so the range must give each worker
/// one: any range of 64 ports or more does.
///
/// With several workers, rvs-dp asks each port with local addresses for
/// `rte_flow` rules that put a reply on its owner's RX queue
/// (`fnat::steer`): port classes under a mask where the NIC takes masks,
/// else one rule per local port (when range x LIPs x protocols stays within
/// `flow_rules_max`), else none, and the software redirect does the work.
/// `flow_steering = false` keeps every port on the redirect.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FullnatConfig {
    #[serde(default = "default_lport_min")]
    pub lport_min: u32,
    #[serde(default = "default_lport_max")]
    pub lport_max: u32,
    #[serde(default = "default_hold_s")]
    pub hold_s: u32,
    #[serde(default = "default_true")]
    pub flow_steering: bool,
    #[serde(default = "default_flow_rules_max")]
    pub flow_rules_max: u32,
}

fn default_true() -> bool {
    true
}
fn default_flow_rules_max() -> u32 {
    crate::fnat::steer::DEFAULT_MAX_RULES as u32
}

fn default_lport_min() -> u32 {
    1024
}
fn default_lport_max() -> u32 {
    65535
}
fn default_hold_s() -> u32 {
    crate::fnat::laddr::DEFAULT_HOLD_SECS
}

/// The most `[fullnat] flow_rules_max` accepted (one rule per port of the
/// whole range, for 16 LIP-protocol pairs).
pub const MAX_FLOW_RULES: u32 = 1 << 20;

/// The longest `[fullnat] hold_s` accepted: an hour.
pub const MAX_HOLD_SECS: u32 = 3600;

impl Default for FullnatConfig {
    fn default() -> Self {
        FullnatConfig {
            lport_min: default_lport_min(),
            lport_max: default_lport_max(),
            hold_s: default_hold_s(),
            flow_steering: true,
            flow_rules_max: default_flow_rules_max(),
        }
    }
}

impl FullnatConfig {
    /// The pools' configuration, checked for `workers` workers: Err is
    /// (key, problem).
    pub fn laddr_config(&self, workers: usize) -> Result<crate::fnat::laddr::LaddrConfig, (String, String)> {
        use crate::fnat::laddr::{LaddrConfig as Pools, LaddrError, MAX_WORKERS};
        let (min, max) = (self.lport_min, self.lport_max);
        for (key, v) in [("fullnat.lport_min", min), ("fullnat.lport_max", max)] {
            if !(1024..=65535).contains(&v) {
                return Err((key.into(), format!("{v}: must be 1024..=65535")));
            }
        }
        if min > max {
            return Err((
                "fullnat.lport_min".into(),
                format!("{min} is above lport_max {max}"),
            ));
        }
        if self.hold_s > MAX_HOLD_SECS {
            return Err((
                "fullnat.hold_s".into(),
                format!("{}: at most {MAX_HOLD_SECS} seconds", self.hold_s),
            ));
        }
        if self.flow_rules_max > MAX_FLOW_RULES {
            return Err((
                "fullnat.flow_rules_max".into(),
                format!("{}: at most {MAX_FLOW_RULES}", self.flow_rules_max),
            ));
        }
        let cfg = Pools {
            ports: min as u16..=max as u16,
            hold: self.hold_s,
        };
        let workers = u16::try_from(workers).unwrap_or(u16::MAX).min(MAX_WORKERS + 1);
        match cfg.check(workers) {
            Ok(()) => Ok(cfg),
            Err(LaddrError::RangeTooSmall) => Err((
                "fullnat.lport_min".into(),
                format!(
                    "{min}..={max} holds {} ports, which leaves one of the {workers} workers without any \
                     (worker w owns the ports p with p % 64 % {workers} == w): widen it to 64 ports or more",
                    max - min + 1
                ),
            )),
            Err(e) => Err(("fullnat".into(), e.to_string())),
        }
    }
}

/// `[sync]`: the sync parameters, and `[sync.master]` / `[sync.backup]` (either,
/// both or none), each as `rvsadm --start-daemon ROLE` would start it:
///
/// ```toml
/// [sync]
/// sync_threshold = [3, 50]     # the kernel's sysctl of that name (default)
/// sync_refresh_period = 0      # seconds (default 0: off)
/// [sync.master]
/// mcast_interface = "outside0" # a kernel interface (kernel_iface) of the exception path
/// syncid = 1
/// [sync.backup]
/// mcast_interface = "outside0"
/// syncid = 1
/// peers = ["192.0.2.2"]        # sources accepted (default: any)
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    #[serde(default = "default_sync_threshold")]
    pub sync_threshold: [u32; 2],
    #[serde(default)]
    pub sync_refresh_period: u32,
    pub master: Option<SyncDaemonConfig>,
    pub backup: Option<SyncDaemonConfig>,
}

fn default_sync_threshold() -> [u32; 2] {
    [3, 50]
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            sync_threshold: default_sync_threshold(),
            sync_refresh_period: 0,
            master: None,
            backup: None,
        }
    }
}

/// One daemon of `[sync]`; the fields are `--start-daemon`'s options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncDaemonConfig {
    pub mcast_interface: String,
    #[serde(default)]
    pub syncid: u8,
    /// 0: derived as the kernel does.
    #[serde(default)]
    pub sync_maxlen: u32,
    pub mcast_group: Option<Ipv4Addr>,
    #[serde(default)]
    pub mcast_port: u16,
    #[serde(default)]
    pub mcast_ttl: u8,
    /// Backup only: the source addresses accepted; empty: any.
    #[serde(default)]
    pub peers: Vec<Ipv4Addr>,
}

impl SyncConfig {
    /// The sync parameters, checked as the kernel checks its sysctl.
    pub fn params(&self) -> Result<crate::sync::SyncParams, String> {
        let p = crate::sync::SyncParams {
            threshold: self.sync_threshold[0],
            period: self.sync_threshold[1],
            refresh_period: self.sync_refresh_period,
        };
        if !p.valid() {
            return Err(format!(
                "sync.sync_threshold: {} {}: the threshold must be below the period (or the period 0)",
                p.threshold, p.period
            ));
        }
        Ok(p)
    }

    /// The daemons to start, master first, with the config key each comes from.
    pub fn daemons(&self) -> Result<Vec<(String, SyncDaemonSpec)>, String> {
        let mut out = Vec::new();
        for (key, role, d) in [
            ("sync.master", DaemonRole::Master, &self.master),
            ("sync.backup", DaemonRole::Backup, &self.backup),
        ] {
            let Some(d) = d else { continue };
            if d.sync_maxlen > SYNC_MAX_MAXLEN {
                return Err(format!("{key}.sync_maxlen: at most {SYNC_MAX_MAXLEN}"));
            }
            if role == DaemonRole::Master && !d.peers.is_empty() {
                return Err(format!("{key}.peers: only a backup filters its peers"));
            }
            let mut s = SyncDaemonSpec::new(role, &d.mcast_interface);
            s.syncid = d.syncid;
            s.sync_maxlen = d.sync_maxlen;
            s.mcast_group = d.mcast_group;
            s.mcast_port = d.mcast_port;
            s.mcast_ttl = d.mcast_ttl;
            s.peers = d.peers.clone();
            if !s.group().is_multicast() {
                return Err(format!(
                    "{key}.mcast_group: {} is not a multicast group",
                    s.group()
                ));
            }
            out.push((key.to_string(), s));
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataplane {
    /// EAL lcores that run workers, one worker each.
    #[serde(default = "default_workers")]
    pub workers: Vec<u32>,
    /// Connection-table capacity per worker (a shard each).
    #[serde(default = "default_capacity")]
    pub conn_capacity: u32,
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// The shared-memory control region (overridden by RVS_CTL and --ctl).
    #[serde(default)]
    pub ctl: Option<PathBuf>,
    /// End a connection on its next packet when its real server was removed
    /// (kernel IPVS's expire_nodest_conn).
    #[serde(default)]
    pub expire_nodest_conn: bool,
    /// Answer a SYN that no real server can take with a RST instead of silence.
    #[serde(default)]
    pub tcp_rst_no_dest: bool,
    /// Kernel IPVS's conn_reuse_mode (0..=3, default 1): a SYN on the entry of
    /// a closed connection (TIME_WAIT, CLOSE; with bit 2 also a DR/TUN
    /// FIN_WAIT) ends it and is scheduled as a new connection. 0 sends it
    /// on to the old connection's real server.
    #[serde(default = "default_conn_reuse_mode")]
    pub conn_reuse_mode: u8,
    /// Kernel IPVS's expire_quiescent_template: persistence templates of a
    /// quiesced (weight 0) real server end on their clients' next connection.
    #[serde(default)]
    pub expire_quiescent_template: bool,
    /// Descriptors per RX/TX queue.
    #[serde(default = "default_ring")]
    pub ring_size: u16,
    /// mbufs in the pool (0 = sized from rings and workers).
    #[serde(default)]
    pub mbufs: u32,
    /// Sleep this long when a worker's queues stay empty (0 = pure busy
    /// polling, the default; a lab on shared cores wants a few microseconds).
    #[serde(default)]
    pub idle_sleep_us: u32,
    /// Most packets a worker takes from a queue per poll (8, 16, 24 or 32). Every
    /// packet of a burst waits for the whole burst to be processed, so a
    /// smaller burst trades some throughput for latency.
    #[serde(default = "default_rx_burst")]
    pub rx_burst: u16,
    /// Bytes of packet data per mbuf (256..=16384; default 2048, which holds
    /// a 1500-byte-MTU frame). Smaller pools fit more mbufs in the same
    /// hugepages when only small frames arrive; a frame larger than this is
    /// dropped by the port.
    #[serde(default = "default_mbuf_data_room")]
    pub mbuf_data_room: u16,
    /// Most frames a second handed up to the kernel interfaces (all ports
    /// together; see `kernel`): a flood to a port's address is cut here.
    #[serde(default = "default_kernel_rate_pps")]
    pub kernel_rate_pps: u64,
}

fn default_workers() -> Vec<u32> {
    vec![1]
}
fn default_capacity() -> u32 {
    1 << 20
}
fn default_conn_reuse_mode() -> u8 {
    1
}
fn default_ring() -> u16 {
    1024
}
/// The most a worker's burst arrays hold.
pub const MAX_RX_BURST: u16 = 32;
fn default_rx_burst() -> u16 {
    MAX_RX_BURST
}
fn default_mbuf_data_room() -> u16 {
    2048
}
fn default_kernel_rate_pps() -> u64 {
    20_000
}

impl Default for Dataplane {
    fn default() -> Self {
        Dataplane {
            workers: default_workers(),
            conn_capacity: default_capacity(),
            timeouts: TimeoutsConfig::default(),
            ctl: None,
            expire_nodest_conn: false,
            tcp_rst_no_dest: false,
            conn_reuse_mode: default_conn_reuse_mode(),
            expire_quiescent_template: false,
            ring_size: default_ring(),
            mbufs: 0,
            idle_sleep_us: 0,
            rx_burst: default_rx_burst(),
            mbuf_data_room: default_mbuf_data_room(),
            kernel_rate_pps: default_kernel_rate_pps(),
        }
    }
}

/// As `ipvsadm --set tcp tcpfin udp`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    #[serde(default = "t_tcp")]
    pub tcp: u32,
    #[serde(default = "t_tcpfin")]
    pub tcpfin: u32,
    #[serde(default = "t_udp")]
    pub udp: u32,
}
fn t_tcp() -> u32 {
    900
}
fn t_tcpfin() -> u32 {
    120
}
fn t_udp() -> u32 {
    300
}
impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            tcp: t_tcp(),
            tcpfin: t_tcpfin(),
            udp: t_udp(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    pub name: String,
    /// A PCI address (bound with dpdk-devbind) or a vdev devargs string.
    pub device: String,
    /// "10.1.0.1/24": our address and the connected subnet.
    pub address: String,
    pub mac: Option<String>,
    pub mtu: Option<u16>,
    /// A kernel interface of this name for the port (see `kernel`): what is
    /// not for the load balancer goes up to it, what the kernel sends on it
    /// goes out of the port, and the addresses on it decide which VIPs this
    /// director owns (keepalived's `virtual_ipaddress { VIP dev NAME }`).
    pub kernel_iface: Option<String>,
    /// The DPDK devargs of that interface, instead of the default
    /// `net_tap_rvsN,iface=NAME,mac=MAC` (e.g. virtio-user over vhost-net).
    pub kernel_vdev: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub dst: String,
    pub via: Ipv4Addr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighborConfig {
    pub ip: Ipv4Addr,
    pub mac: String,
}

/// keepalived's `virtual_server IP PORT { ... }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VirtualServerConfig {
    pub address: Ipv4Addr,
    pub port: u16,
    #[serde(default = "default_protocol")]
    pub protocol: String,
    #[serde(default = "default_algo")]
    pub lb_algo: String,
    /// Default forward method of the real servers: NAT, DR, TUN or FNAT
    /// (FULLNAT, also "FULLNAT").
    #[serde(default = "default_kind")]
    pub lb_kind: String,
    /// Scheduler flags as ipvsadm -b: "sh-port,sh-fallback".
    #[serde(default)]
    pub sched_flags: Option<String>,
    pub persistence_timeout: Option<u32>,
    pub persistence_granularity: Option<Ipv4Addr>,
    /// SYN proxy (ipvsadm -j enable): SYNs answered with cookies; NAT only.
    #[serde(default)]
    pub syn_proxy: bool,
    /// FULLNAT: what tells the real servers the client's address: "none"
    /// (the default), "toa", "proxy-v1" or "proxy-v2" (TCP services, FNAT
    /// real servers only).
    #[serde(default)]
    pub client_addr: Option<String>,
    /// FULLNAT local addresses (DPVS's `--add-laddr`), in this order:
    /// `laddrs = [{ address = "10.2.0.201", port = "inside" }]`, `port`
    /// naming the `[[port]]` whose subnet holds the address.
    #[serde(default)]
    pub laddrs: Vec<LaddrConfig>,
    /// Minimum total weight of healthy real servers for the service to be up.
    #[serde(default = "default_quorum")]
    pub quorum: u32,
    #[serde(default)]
    pub hysteresis: u32,
    /// "IP PORT" or "IP:PORT": used when the quorum is lost.
    pub sorry_server: Option<String>,
    #[serde(default)]
    pub inhibit_on_failure: bool,
    /// Seconds between health checks (default for the real servers' checks).
    #[serde(default = "default_delay")]
    pub delay_loop: f64,
    #[serde(default)]
    pub real_server: Vec<RealServerConfig>,
}

fn default_protocol() -> String {
    "TCP".into()
}
fn default_algo() -> String {
    "wlc".into()
}
fn default_kind() -> String {
    "NAT".into()
}
fn default_quorum() -> u32 {
    1
}
fn default_delay() -> f64 {
    60.0
}
fn default_weight() -> u32 {
    1
}

/// One FULLNAT local address of a virtual server.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LaddrConfig {
    pub address: Ipv4Addr,
    /// The `[[port]]` (its `name`) the address lives on.
    pub port: String,
}

/// `client_addr`'s words.
pub fn parse_client_addr(s: &str) -> Result<rvs_proto::command::ClientAddr, String> {
    use rvs_proto::command::ClientAddr;
    match s.to_ascii_lowercase().as_str() {
        "none" => Ok(ClientAddr::None),
        "toa" => Ok(ClientAddr::Toa),
        "proxy-v1" => Ok(ClientAddr::ProxyV1),
        "proxy-v2" => Ok(ClientAddr::ProxyV2),
        _ => Err(format!(
            "unknown client_addr '{s}' (none, toa, proxy-v1 or proxy-v2)"
        )),
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RealServerConfig {
    pub address: Ipv4Addr,
    pub port: Option<u16>,
    #[serde(default = "default_weight")]
    pub weight: u32,
    pub lb_kind: Option<String>,
    /// ipvsadm -x / -y.
    #[serde(default)]
    pub uthreshold: u32,
    #[serde(default)]
    pub lthreshold: u32,
    #[serde(default)]
    pub inhibit_on_failure: Option<bool>,
    /// Health checks (TCP_CHECK, HTTP_GET, MISC_CHECK): rvs-cp's business.
    /// rvs-dp accepts the keys and leaves their schema to rvs-cp's config.
    pub tcp_check: Option<toml::Table>,
    pub http_get: Option<toml::Table>,
    pub misc_check: Option<toml::Table>,
}

impl VirtualServerConfig {
    /// The ipvsadm service this block describes (validated config only).
    pub fn service_spec(&self) -> Result<rvs_proto::command::ServiceSpec, String> {
        let mut s =
            rvs_proto::command::ServiceSpec::new(parse_proto(&self.protocol)?, self.address, self.port);
        s.scheduler = self.lb_algo.clone();
        if let Some(f) = &self.sched_flags {
            s.flags = crate::service::SchedFlags::parse(f)?;
        }
        s.persistence = self.persistence_timeout;
        if let Some(m) = self.persistence_granularity {
            s.netmask = m;
        }
        s.syn_proxy = self.syn_proxy;
        if let Some(c) = &self.client_addr {
            s.client_addr = parse_client_addr(c)?;
        }
        Ok(s)
    }

    /// The local addresses as the control ABI has them.
    pub fn laddr_specs(&self) -> Vec<rvs_proto::command::LaddrSpec> {
        (self.laddrs.iter())
            .map(|l| rvs_proto::command::LaddrSpec {
                addr: l.address,
                port_name: l.port.clone(),
            })
            .collect()
    }

    /// The ipvsadm real server for `rs`, with this block's defaults.
    pub fn dest_spec(&self, rs: &RealServerConfig) -> Result<rvs_proto::command::DestSpec, String> {
        let method: ForwardMethod = match &rs.lb_kind {
            Some(k) => k.parse()?,
            None => self.lb_kind.parse()?,
        };
        let mut d = rvs_proto::command::DestSpec::new(rs.address, rs.port.unwrap_or(self.port), method);
        d.weight = rs.weight;
        d.u_threshold = rs.uthreshold;
        d.l_threshold = rs.lthreshold;
        Ok(d)
    }
}

/// A port after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub name: String,
    pub device: String,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    pub mac: Option<[u8; 6]>,
    pub mtu: u16,
    pub kernel_iface: Option<String>,
    pub kernel_vdev: Option<String>,
}

pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    match s.contains('/').then(|| s.parse::<crate::wire::Ipv4Cidr>()) {
        Some(Ok(c)) => Ok((c.addr, c.prefix_len)),
        _ => Err(format!(
            "'{s}' is not ADDRESS/PREFIX, prefix 0-32 (e.g. 10.1.0.1/24)"
        )),
    }
}

pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    s.parse::<crate::wire::MacAddr>()
        .map(|m| m.0)
        .map_err(|_| format!("'{s}' is not a MAC address (aa:bb:cc:dd:ee:ff)"))
}

pub fn parse_proto(s: &str) -> Result<Proto, String> {
    match s.to_ascii_uppercase().as_str() {
        "TCP" => Ok(Proto::Tcp),
        "UDP" => Ok(Proto::Udp),
        other => Err(format!("protocol '{other}' is not TCP or UDP")),
    }
}

impl Config {
    pub fn from_str_named(text: &str, file: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_string(),
            msg: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Io {
            file: file.clone(),
            err,
        })?;
        Config::from_str_named(&text, &file)
    }

    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let bad = |key: String, problem: String| ConfigError::Invalid {
            file: file.to_string(),
            key,
            problem,
        };
        let dp = &self.dataplane;
        if dp.workers.is_empty() {
            return Err(bad(
                "dataplane.workers".into(),
                "at least one worker lcore is needed".into(),
            ));
        }
        if dp.workers.len() > 64 {
            return Err(bad("dataplane.workers".into(), "at most 64 workers".into()));
        }
        let mut seen = dp.workers.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != dp.workers.len() {
            return Err(bad("dataplane.workers".into(), "an lcore is listed twice".into()));
        }
        self.fullnat
            .laddr_config(dp.workers.len())
            .map_err(|(key, problem)| bad(key, problem))?;
        if dp.conn_capacity < 16 || dp.conn_capacity > (1 << 30) {
            return Err(bad(
                "dataplane.conn_capacity".into(),
                "must be between 16 and 2^30".into(),
            ));
        }
        if !dp.ring_size.is_power_of_two() || dp.ring_size < 64 {
            return Err(bad(
                "dataplane.ring_size".into(),
                "must be a power of two, at least 64".into(),
            ));
        }
        // Vector RX paths (ixgbe, i40e, ice) take packets 4 or 8 at a time
        // and return none at all when asked for fewer.
        if dp.rx_burst == 0 || dp.rx_burst > MAX_RX_BURST || !dp.rx_burst.is_multiple_of(8) {
            return Err(bad(
                "dataplane.rx_burst".into(),
                format!("must be 8, 16, 24 or {MAX_RX_BURST} (vector RX drivers take packets 8 at a time)"),
            ));
        }
        if dp.conn_reuse_mode > 3 {
            return Err(bad(
                "dataplane.conn_reuse_mode".into(),
                "must be 0..=3 (bit 1: reschedule SYNs on TIME_WAIT/CLOSE entries; bit 2: also on DR/TUN FIN_WAIT)"
                    .into(),
            ));
        }
        if !(256..=16384).contains(&dp.mbuf_data_room) {
            return Err(bad(
                "dataplane.mbuf_data_room".into(),
                "must be 256..=16384 bytes".into(),
            ));
        }
        for (name, v) in [
            ("tcp", dp.timeouts.tcp),
            ("tcpfin", dp.timeouts.tcpfin),
            ("udp", dp.timeouts.udp),
        ] {
            if v == 0 || v > 86400 * 30 {
                return Err(bad(
                    format!("dataplane.timeouts.{name}"),
                    "must be 1..2592000 seconds".into(),
                ));
            }
        }
        let ports = self.ports(file)?;
        for (i, r) in self.route.iter().enumerate() {
            parse_cidr(&r.dst).map_err(|p| bad(format!("route[{i}].dst"), p))?;
            if !ports.iter().any(|p| same_subnet(p.addr, r.via, p.prefix_len)) {
                return Err(bad(
                    format!("route[{i}].via"),
                    format!("gateway {} is not on any port's subnet", r.via),
                ));
            }
        }
        for (i, n) in self.neighbor.iter().enumerate() {
            parse_mac(&n.mac).map_err(|p| bad(format!("neighbor[{i}].mac"), p))?;
        }
        for (i, vs) in self.virtual_server.iter().enumerate() {
            let k = |f: &str| format!("virtual_server[{i}] ({}:{}).{f}", vs.address, vs.port);
            parse_proto(&vs.protocol).map_err(|p| bad(k("protocol"), p))?;
            if !crate::sched::SCHEDULER_NAMES.contains(&vs.lb_algo.as_str()) {
                return Err(bad(k("lb_algo"), format!("unknown scheduler '{}'", vs.lb_algo)));
            }
            let kind: ForwardMethod = vs.lb_kind.parse().map_err(|p| bad(k("lb_kind"), p))?;
            if let Some(f) = &vs.sched_flags {
                crate::service::SchedFlags::parse(f).map_err(|p| bad(k("sched_flags"), p))?;
            }
            if vs.port == 0 && vs.persistence_timeout.is_none() {
                return Err(bad(k("port"), "port 0 needs persistence_timeout".into()));
            }
            if vs.delay_loop <= 0.0 || !vs.delay_loop.is_finite() {
                return Err(bad(
                    k("delay_loop"),
                    "must be a positive number of seconds".into(),
                ));
            }
            if let Some(s) = &vs.sorry_server {
                parse_endpoint(s).map_err(|p| bad(k("sorry_server"), p))?;
            }
            if let Some(c) = &vs.client_addr {
                parse_client_addr(c).map_err(|p| bad(k("client_addr"), p))?;
            }
            for (j, l) in vs.laddrs.iter().enumerate() {
                let lk = |f: &str| k(&format!("laddrs[{j}] ({}).{f}", l.address));
                let Some(p) = ports.iter().find(|p| p.name == l.port) else {
                    return Err(bad(lk("port"), format!("no [[port]] is named '{}'", l.port)));
                };
                if !same_subnet(p.addr, l.address, p.prefix_len) {
                    return Err(bad(
                        lk("address"),
                        format!(
                            "is not on port '{}''s subnet {}/{}: replies to it would not reach the director",
                            p.name, p.addr, p.prefix_len
                        ),
                    ));
                }
            }
            let mut rs_seen = Vec::new();
            for (j, rs) in vs.real_server.iter().enumerate() {
                let rk = |f: &str| format!("virtual_server[{i}].real_server[{j}] ({}).{f}", rs.address);
                if rs.weight > 65535 {
                    return Err(bad(rk("weight"), "must be 0..65535".into()));
                }
                let m = match &rs.lb_kind {
                    Some(s) => s.parse().map_err(|p| bad(rk("lb_kind"), p))?,
                    None => kind,
                };
                let port = rs.port.unwrap_or(vs.port);
                if m == ForwardMethod::Dr && port != vs.port {
                    return Err(bad(
                        rk("port"),
                        "DR needs the real server port equal to the virtual port".into(),
                    ));
                }
                if rs.lthreshold > rs.uthreshold && rs.uthreshold != 0 {
                    return Err(bad(rk("lthreshold"), "is above uthreshold".into()));
                }
                if rs_seen.contains(&(rs.address, port)) {
                    return Err(bad(rk("address"), "real server listed twice".into()));
                }
                rs_seen.push((rs.address, port));
            }
        }
        let mut keys: Vec<_> = self
            .virtual_server
            .iter()
            .map(|v| (v.protocol.to_ascii_uppercase(), v.address, v.port))
            .collect();
        keys.sort();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return Err(bad(
                "virtual_server".into(),
                "a virtual server is defined twice".into(),
            ));
        }
        for (i, vs) in self.virtual_server.iter().enumerate() {
            if let Some(p) = ports.iter().find(|p| p.addr == vs.address) {
                return Err(bad(
                    format!("virtual_server[{i}] ({}:{}).address", vs.address, vs.port),
                    format!("is port '{}''s own address", p.name),
                ));
            }
        }
        // The model rvs-dp applies at start, so that whatever it would refuse
        // (not unicast, over a table limit, ...) is refused here, with its
        // key, before EAL starts, and `rvs-cp --check` agrees.
        let mut model = IpvsConfig::new();
        for (key, cmd) in self.ipvs_commands().map_err(|(key, e)| bad(key, e))? {
            model.apply(&cmd).map_err(|e| {
                let problem = match e {
                    IpvsError::NoMemory => format!(
                        "over the data plane's limits ({} virtual services, {} real servers per service)",
                        Limits::default().max_services,
                        Limits::default().max_dests_per_service
                    ),
                    e => e.to_string(),
                };
                bad(key, problem)
            })?;
        }
        Ok(())
    }

    /// The timeouts and virtual servers as ipvsadm commands, each with the
    /// config key it comes from; rvs-dp applies them as one restore.
    pub fn ipvs_commands(&self) -> Result<Vec<(String, Command)>, (String, String)> {
        let t = self.dataplane.timeouts;
        let mut cmds = vec![(
            "dataplane.timeouts".to_string(),
            Command::SetTimeouts {
                tcp: t.tcp,
                tcpfin: t.tcpfin,
                udp: t.udp,
            },
        )];
        for (i, vs) in self.virtual_server.iter().enumerate() {
            let k = format!("virtual_server[{i}] ({}:{})", vs.address, vs.port);
            let spec = vs.service_spec().map_err(|e| (k.clone(), e))?;
            let key = spec.key();
            cmds.push((k, Command::AddService(spec)));
            for (j, rs) in vs.real_server.iter().enumerate() {
                let rk = format!("virtual_server[{i}].real_server[{j}] ({})", rs.address);
                let d = vs.dest_spec(rs).map_err(|e| (rk.clone(), e))?;
                cmds.push((rk, Command::AddDest(key, d)));
            }
            for (j, l) in vs.laddr_specs().into_iter().enumerate() {
                let lk = format!(
                    "virtual_server[{i}] ({}:{}).laddrs[{j}] ({})",
                    vs.address, vs.port, l.addr
                );
                cmds.push((lk, Command::AddLaddr(key, l)));
            }
        }
        Ok(cmds)
    }

    /// The ports, validated.
    pub fn ports(&self, file: &str) -> Result<Vec<PortSpec>, ConfigError> {
        let bad = |key: String, problem: String| ConfigError::Invalid {
            file: file.to_string(),
            key,
            problem,
        };
        let mut out: Vec<PortSpec> = Vec::new();
        for (i, p) in self.port.iter().enumerate() {
            let k = |f: &str| format!("port[{i}] ({}).{f}", p.name);
            if p.name.is_empty() {
                return Err(bad(format!("port[{i}].name"), "is empty".into()));
            }
            if out.iter().any(|o| o.name == p.name) {
                return Err(bad(k("name"), "two ports have this name".into()));
            }
            if p.device.trim().is_empty() {
                return Err(bad(k("device"), "is empty".into()));
            }
            let (addr, prefix_len) = parse_cidr(&p.address).map_err(|e| bad(k("address"), e))?;
            let mac = p
                .mac
                .as_deref()
                .map(parse_mac)
                .transpose()
                .map_err(|e| bad(k("mac"), e))?;
            let mtu = p.mtu.unwrap_or(1500);
            if !(576..=9600).contains(&mtu) {
                return Err(bad(k("mtu"), "must be 576..9600".into()));
            }
            if prefix_len == 0 {
                return Err(bad(k("address"), "a port's subnet cannot be 0.0.0.0/0".into()));
            }
            let mask = crate::wire::ipv4::prefix_mask(prefix_len);
            if prefix_len < 31 && (u32::from(addr) | mask) == u32::MAX {
                return Err(bad(
                    k("address"),
                    format!("{addr} is the broadcast address of its subnet"),
                ));
            }
            if let Some(o) = out.iter().find(|o| o.addr == addr) {
                return Err(bad(
                    k("address"),
                    format!("port '{}' has the same address", o.name),
                ));
            }
            if let Some(o) = out
                .iter()
                .find(|o| same_subnet(o.addr, addr, o.prefix_len.min(prefix_len)))
            {
                return Err(bad(
                    k("address"),
                    format!(
                        "its subnet overlaps port '{}' ({}/{})",
                        o.name, o.addr, o.prefix_len
                    ),
                ));
            }
            if let Some(name) = &p.kernel_iface {
                // IFNAMSIZ is 16 with the NUL; a comma would split the devargs.
                if name.is_empty() || name.len() > 15 || name.contains([',', '=', '/', ' ']) {
                    return Err(bad(
                        k("kernel_iface"),
                        format!(
                            "'{name}' is not an interface name (1-15 characters, no ',', '=', '/' or space)"
                        ),
                    ));
                }
                if out
                    .iter()
                    .any(|o| o.kernel_iface.as_deref() == Some(name.as_str()))
                {
                    return Err(bad(
                        k("kernel_iface"),
                        "two ports have this kernel interface".into(),
                    ));
                }
                // The exception path's counters have a fixed place in the
                // control region, one entry per such port.
                if out.iter().filter(|o| o.kernel_iface.is_some()).count() >= KERNEL_PORTS {
                    return Err(bad(
                        k("kernel_iface"),
                        format!("at most {KERNEL_PORTS} ports can have a kernel interface"),
                    ));
                }
            }
            if p.kernel_vdev.is_some() && p.kernel_iface.is_none() {
                return Err(bad(
                    k("kernel_vdev"),
                    "needs kernel_iface (the interface it creates)".into(),
                ));
            }
            out.push(PortSpec {
                name: p.name.clone(),
                device: p.device.clone(),
                addr,
                prefix_len,
                mac,
                mtu,
                kernel_iface: p.kernel_iface.clone(),
                kernel_vdev: p.kernel_vdev.clone(),
            });
        }
        Ok(out)
    }
}

pub fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix_len: u8) -> bool {
    crate::wire::Ipv4Cidr { addr: a, prefix_len }.contains(b)
}

/// "IP PORT" (keepalived) or "IP:PORT".
pub fn parse_endpoint(s: &str) -> Result<(Ipv4Addr, Option<u16>), String> {
    let s = s.trim();
    let (ip, port) = match s.split_once([' ', ':']) {
        Some((ip, port)) => (ip, Some(port.trim())),
        None => (s, None),
    };
    let ip: Ipv4Addr = ip.parse().map_err(|_| format!("'{ip}' is not an IPv4 address"))?;
    let port = port
        .map(|p| p.parse::<u16>().map_err(|_| format!("'{p}' is not a port")))
        .transpose()?;
    Ok((ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_table_starts_daemons_with_ipvsadm_defaults() {
        let cfg: Config = toml::from_str(
            r#"
[sync]
sync_threshold = [2, 10]
[sync.master]
mcast_interface = "outside0"
syncid = 9
[sync.backup]
mcast_interface = "outside0"
mcast_port = 9000
peers = ["192.0.2.2"]
"#,
        )
        .unwrap();
        let p = cfg.sync.params().unwrap();
        assert_eq!((p.threshold, p.period, p.refresh_period), (2, 10, 0));
        let d = cfg.sync.daemons().unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].0, "sync.master");
        assert_eq!(d[0].1.role, DaemonRole::Master);
        assert_eq!(
            (d[0].1.syncid, d[0].1.group(), d[0].1.port(), d[0].1.ttl()),
            (9, Ipv4Addr::new(224, 0, 0, 81), 8848, 1)
        );
        assert_eq!(d[1].1.port(), 9000);
        assert_eq!(d[1].1.peers, [Ipv4Addr::new(192, 0, 2, 2)]);
        // Nothing configured: no daemon, the kernel's defaults.
        let none = Config::default();
        assert!(none.sync.daemons().unwrap().is_empty());
        assert_eq!(none.sync.params().unwrap(), crate::sync::SyncParams::default());
        // The kernel's check on sync_threshold, and a group that is no group.
        let bad: Config = toml::from_str("[sync]\nsync_threshold = [50, 50]\n").unwrap();
        assert!(bad.sync.params().is_err());
        let bad: Config =
            toml::from_str("[sync.backup]\nmcast_interface = \"x\"\nmcast_group = \"10.0.0.1\"\n").unwrap();
        assert!(bad.sync.daemons().is_err());
        assert!(toml::from_str::<Config>("[sync.master]\nmcast_interface = \"x\"\nbogus = 1\n").is_err());
    }

    const GOOD: &str = r#"
[dataplane]
workers = [1]
conn_capacity = 65536
[dataplane.timeouts]
tcp = 900

[[port]]
name = "client"
device = "net_af_packet0,iface=veth-d0"
address = "10.1.0.1/24"
mac = "02:00:00:00:01:01"

[[port]]
name = "servers"
device = "0000:03:00.0"
address = "10.2.0.1/24"

[[route]]
dst = "0.0.0.0/0"
via = "10.1.0.254"

[[neighbor]]
ip = "10.2.0.11"
mac = "02:00:00:00:02:11"

[[virtual_server]]
address = "10.1.0.100"
port = 80
lb_algo = "wrr"
lb_kind = "NAT"

[[virtual_server.real_server]]
address = "10.2.0.11"
weight = 3
[virtual_server.real_server.http_get]
path = "/health"
status_code = [200]
"#;

    #[test]
    fn kernel_interfaces_fit_the_control_regions_kernel_slot() {
        let ports = |n: usize| {
            (0..n)
                .map(|i| {
                    format!(
                        "[[port]]\nname = \"p{i}\"\ndevice = \"net_null{i}\"\naddress = \"10.{i}.0.1/24\"\nkernel_iface = \"k{i}\"\n"
                    )
                })
                .collect::<String>()
        };
        let text = |n: usize| format!("[dataplane]\nworkers = [1]\n{}", ports(n));
        let c = Config::from_str_named(&text(KERNEL_PORTS), "rvs.toml").unwrap();
        assert_eq!(c.ports("rvs.toml").unwrap().len(), KERNEL_PORTS);
        let e = Config::from_str_named(&text(KERNEL_PORTS + 1), "rvs.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("port[{KERNEL_PORTS}] (p{KERNEL_PORTS}).kernel_iface"))
                && e.contains(&format!("at most {KERNEL_PORTS} ports")),
            "{e}"
        );
    }

    #[test]
    fn good_config_parses() {
        let c = Config::from_str_named(GOOD, "rvs.toml").unwrap();
        assert_eq!(c.port.len(), 2);
        let ports = c.ports("rvs.toml").unwrap();
        assert_eq!(ports[0].prefix_len, 24);
        assert_eq!(ports[0].mac, Some([2, 0, 0, 0, 1, 1]));
        assert_eq!(ports[1].mtu, 1500);
        assert_eq!(c.dataplane.timeouts.tcpfin, 120);
        assert_eq!(c.virtual_server[0].real_server[0].weight, 3);
        assert_eq!(c.dataplane.rx_burst, 32);
    }

    #[test]
    fn conn_reuse_mode_and_expire_quiescent_template() {
        let dp = Config::from_str_named(GOOD, "rvs.toml").unwrap().dataplane;
        assert_eq!(
            (dp.conn_reuse_mode, dp.expire_quiescent_template),
            (1, false),
            "the kernel's defaults"
        );
        let with = |v: &str| GOOD.replace("workers = [1]", &format!("workers = [1]\n{v}"));
        let dp = Config::from_str_named(
            &with("conn_reuse_mode = 3\nexpire_quiescent_template = true"),
            "rvs.toml",
        )
        .unwrap()
        .dataplane;
        assert_eq!((dp.conn_reuse_mode, dp.expire_quiescent_template), (3, true));
        let e = err(&with("conn_reuse_mode = 4"));
        assert!(
            e.contains("dataplane.conn_reuse_mode") && e.contains("0..=3"),
            "{e}"
        );
    }

    #[test]
    fn mbuf_data_room_is_bounded() {
        let with = |v: &str| GOOD.replace("workers = [1]", &format!("workers = [1]\nmbuf_data_room = {v}"));
        assert_eq!(
            Config::from_str_named(GOOD, "rvs.toml")
                .unwrap()
                .dataplane
                .mbuf_data_room,
            2048
        );
        let c = Config::from_str_named(&with("256"), "rvs.toml").unwrap();
        assert_eq!(c.dataplane.mbuf_data_room, 256);
        for bad in ["255", "16385"] {
            let e = err(&with(bad));
            assert!(
                e.contains("dataplane.mbuf_data_room") && e.contains("256..=16384"),
                "{e}"
            );
        }
    }

    #[test]
    fn rx_burst_is_bounded() {
        let with = |v: &str| GOOD.replace("workers = [1]", &format!("workers = [1]\nrx_burst = {v}"));
        let c = Config::from_str_named(&with("8"), "rvs.toml").unwrap();
        assert_eq!(c.dataplane.rx_burst, 8);
        for bad in ["0", "4", "12", "33", "40"] {
            let e = err(&with(bad));
            assert!(
                e.contains("dataplane.rx_burst") && e.contains("8, 16, 24 or 32"),
                "{e}"
            );
        }
    }

    fn err(text: &str) -> String {
        Config::from_str_named(text, "rvs.toml").unwrap_err().to_string()
    }

    /// What rvs-dp used to refuse only after EAL start ("restore command 2:
    /// Invalid operation", "Memory allocation problem"), and what it used to
    /// accept wrongly, is refused at load with the key, for rvs-dp and
    /// `rvs-cp --check` alike (both load through here).
    #[test]
    fn the_ipvs_model_and_port_rules_are_checked_at_load() {
        for vip in ["255.255.255.255", "0.0.0.0", "224.0.0.1"] {
            let e = err(&GOOD.replace("address = \"10.1.0.100\"", &format!("address = \"{vip}\"")));
            assert!(
                e.contains("virtual_server[0]") && e.contains("not unicast"),
                "{vip}: {e}"
            );
        }
        let e = err(&GOOD.replace("address = \"10.2.0.11\"", "address = \"224.0.0.1\""));
        assert!(e.contains("virtual_server[0].real_server[0] (224.0.0.1)"), "{e}");
        let e = err(&GOOD.replace("address = \"10.1.0.100\"", "address = \"10.1.0.1\""));
        assert!(
            e.contains("virtual_server[0] (10.1.0.1:80).address: is port 'client''s own address"),
            "{e}"
        );
        let e = err(&GOOD.replace("10.2.0.1/24", "10.1.0.1/24"));
        assert!(
            e.contains("port[1] (servers).address: port 'client' has the same address"),
            "{e}"
        );
        let e = err(&GOOD.replace("10.2.0.1/24", "10.1.0.2/16"));
        assert!(
            e.contains("port[1] (servers).address: its subnet overlaps port 'client'"),
            "{e}"
        );
        let e = err(&GOOD.replace("10.2.0.1/24", "10.2.0.255/24"));
        assert!(
            e.contains("port[1] (servers).address: 10.2.0.255 is the broadcast address"),
            "{e}"
        );
        let e = err(&GOOD.replace("10.2.0.1/24", "10.2.0.1/0"));
        assert!(
            e.contains("port[1] (servers).address: a port's subnet cannot be 0.0.0.0/0"),
            "{e}"
        );
        // /31 point-to-point links have no broadcast address.
        assert!(Config::from_str_named(&GOOD.replace("10.2.0.1/24", "10.2.0.1/31"), "rvs.toml").is_ok());
    }

    #[test]
    fn syn_proxy_in_toml_needs_nat() {
        let on = GOOD.replace("port = 80\n", "port = 80\nsyn_proxy = true\n");
        assert_ne!(on, GOOD);
        let c = Config::from_str_named(&on, "rvs.toml").unwrap();
        assert!(c.virtual_server[0].service_spec().unwrap().syn_proxy);
        let dr = on.replace("lb_kind = \"NAT\"", "lb_kind = \"DR\"");
        assert_ne!(dr, on, "GOOD sets lb_kind NAT");
        let e = err(&dr);
        assert!(
            e.contains("virtual_server[0].real_server[0]") && e.contains("SYN proxy"),
            "{e}"
        );
    }

    #[test]
    fn more_services_than_the_data_plane_holds_are_refused_at_load() {
        // GOOD has one service: this makes the table one over the limit.
        let n = rvs_proto::ipvs::Limits::default().max_services;
        let mut text = GOOD.to_string();
        for i in 0..n {
            text.push_str(&format!(
                "[[virtual_server]]\naddress = \"10.{}.{}.{}\"\nport = 81\n",
                100 + i / 65536,
                (i / 256) % 256,
                i % 256
            ));
        }
        let e = err(&text);
        assert!(
            e.contains(&format!("virtual_server[{n}]")) && e.contains("over the data plane's limits"),
            "{}",
            &e[..e.len().min(300)]
        );
    }

    #[test]
    fn errors_name_file_key_and_problem() {
        let e = err(&GOOD.replace("10.1.0.1/24", "10.1.0.1"));
        assert!(e.starts_with("rvs.toml: port[0] (client).address:"), "{e}");
        let e = err(&GOOD.replace("\"wrr\"", "\"bogus\""));
        assert!(
            e.contains("lb_algo") && e.contains("unknown scheduler 'bogus'"),
            "{e}"
        );
        let e = err(&GOOD.replace("weight = 3", "weight = 70000"));
        assert!(e.contains("real_server[0] (10.2.0.11).weight"), "{e}");
        let e = err(&GOOD.replace("via = \"10.1.0.254\"", "via = \"192.0.2.1\""));
        assert!(e.contains("route[0].via"), "{e}");
        let e = err(&GOOD.replace("conn_capacity", "conn_capacityy"));
        assert!(
            e.starts_with("rvs.toml: ") && e.contains("conn_capacityy"),
            "unknown key named: {e}"
        );
        assert!(e.contains("line"), "parse errors carry the line: {e}");
        let e = err(&GOOD.replace("02:00:00:00:01:01", "02:00:00:00:01"));
        assert!(e.contains("port[0] (client).mac"), "{e}");
        let e = err(&GOOD.replace("workers = [1]", "workers = []"));
        assert!(e.contains("dataplane.workers"), "{e}");
        let e = err(&GOOD
            .replace("lb_kind = \"NAT\"", "lb_kind = \"DR\"")
            .replace("weight = 3", "weight = 3\nport = 8080"));
        assert!(e.contains("DR needs"), "{e}");
    }

    #[test]
    fn fullnat_ports_and_hold() {
        let c = Config::from_str_named(GOOD, "rvs.toml").unwrap();
        assert_eq!(c.fullnat, FullnatConfig::default());
        let l = c.fullnat.laddr_config(1).unwrap();
        assert_eq!((l.ports, l.hold), (1024..=65535, 60));
        let with = |workers: &str, v: &str| {
            GOOD.replace("workers = [1]", &format!("workers = {workers}")) + &format!("\n[fullnat]\n{v}\n")
        };
        let c = Config::from_str_named(
            &with("[1]", "lport_min = 20000\nlport_max = 29999\nhold_s = 5"),
            "rvs.toml",
        )
        .unwrap();
        let l = c.fullnat.laddr_config(1).unwrap();
        assert_eq!((l.ports, l.hold), (20000..=29999, 5));
        // Bad values: the key named, the reason given, nothing accepted.
        for (workers, v, key, words) in [
            ("[1]", "lport_min = 80", "fullnat.lport_min", "1024..=65535"),
            ("[1]", "lport_max = 70000", "fullnat.lport_max", "1024..=65535"),
            (
                "[1]",
                "lport_min = 3000\nlport_max = 2000",
                "fullnat.lport_min",
                "above lport_max 2000",
            ),
            ("[1]", "hold_s = 86400", "fullnat.hold_s", "at most 3600"),
            (
                "[1, 2, 3]",
                "lport_min = 2000\nlport_max = 2001",
                "fullnat.lport_min",
                "holds 2 ports, which leaves one of the 3 workers without any",
            ),
            ("[1]", "lport = 2000", "lport", "unknown field"),
        ] {
            let e = err(&with(workers, v));
            assert!(e.contains(key) && e.contains(words), "{v}: {e}");
        }
        // Just enough: as many ports as workers, one class each.
        let c = Config::from_str_named(
            &with("[1, 2, 3]", "lport_min = 2000\nlport_max = 2002"),
            "rvs.toml",
        )
        .unwrap();
        let l = c.fullnat.laddr_config(3).unwrap();
        for w in 0..3 {
            assert!(l
                .ports
                .clone()
                .any(|p| crate::fnat::laddr::owner_of_port(p, 3) == w));
        }
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoint("10.0.0.1 80"),
            Ok((Ipv4Addr::new(10, 0, 0, 1), Some(80)))
        );
        assert_eq!(
            parse_endpoint("10.0.0.1:80"),
            Ok((Ipv4Addr::new(10, 0, 0, 1), Some(80)))
        );
        assert_eq!(parse_endpoint("10.0.0.1"), Ok((Ipv4Addr::new(10, 0, 0, 1), None)));
        assert!(parse_endpoint("x").is_err());
    }
}
