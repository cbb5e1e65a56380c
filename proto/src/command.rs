//! The requests the tools send to the data plane, and its replies: ipvsadm's
//! operations, one enum each way, carried as serde_json bytes over the
//! shared-memory ring.
//!
//! Error texts are ipvsadm's own (its libipvs `ipvs_strerror` table and the
//! checks ipvsadm.c makes before calling the kernel), so scripts that match on
//! them keep working.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};

use crate::types::TrafficTotals;
use crate::types::{ForwardMethod, Proto, SchedFlags, ServiceKey};

/// ipvsadm's upper bound for every timeout it accepts: 31 days, in seconds.
pub const MAX_TIMEOUT_S: u32 = 86400 * 31;
/// `-p` without a value.
pub const DEFAULT_PERSISTENT_TIMEOUT_S: u32 = 300;
/// `-s` not given.
pub const DEFAULT_SCHEDULER: &str = "wlc";
/// Highest weight ipvsadm accepts (`-w`).
pub const MAX_WEIGHT: u32 = 65535;
/// Highest connection threshold ipvsadm accepts (`-x`, `-y`): C's INT_MAX.
pub const MAX_THRESHOLD: u32 = i32::MAX as u32;

/// A virtual service as `-A` / `-E` describe it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub proto: Proto,
    pub vip: Ipv4Addr,
    /// 0 only for a persistent service (it then matches every port).
    pub port: u16,
    /// One of `crate::ipvs::SCHEDULER_NAMES`.
    pub scheduler: String,
    /// `-b`: ipvsadm prints them as sh-*/mh-* for sh/mh, as flag-1/flag-2 otherwise.
    pub flags: SchedFlags,
    /// `-p [timeout]`: the persistence timeout in seconds.
    pub persistence: Option<u32>,
    /// `-M`: the persistence granularity; 255.255.255.255 when not given.
    pub netmask: Ipv4Addr,
    /// `-j enable` (DPVS's syntax): the director answers SYNs with SYN
    /// cookies and opens a connection to a real server only for a client
    /// that completes the handshake. NAT real servers only.
    #[serde(default)]
    pub syn_proxy: bool,
    /// How a FULLNAT real server learns the client's address (rvs's
    /// `--proxy-protocol v1|v2` / `--toa`); `None` for every other method.
    #[serde(default)]
    pub client_addr: ClientAddr,
}

/// What a FULLNAT connection carries to the real server about its client,
/// whose address the director replaced with a local address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClientAddr {
    /// Nothing: the real server sees only the LIP.
    #[default]
    None,
    /// TCP option 254 (client port and address) on the handshake, as DPVS
    /// writes it for servers that run a TOA module.
    Toa,
    /// A PROXY protocol v1 (text) header at the start of the TCP stream.
    ProxyV1,
    /// A PROXY protocol v2 (binary) header at the start of the TCP stream.
    ProxyV2,
}

impl ClientAddr {
    /// The word rvsadm takes and prints (`-Ln`, `-S`).
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAddr::None => "none",
            ClientAddr::Toa => "toa",
            ClientAddr::ProxyV1 => "v1",
            ClientAddr::ProxyV2 => "v2",
        }
    }
}

/// A local address of a FULLNAT service (DPVS's `--add-laddr -z LIP -F PORT`):
/// the source address its connections leave with, on the port named.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LaddrSpec {
    pub addr: Ipv4Addr,
    /// The rvs-dp port (its name in rvs.toml) the LIP lives on.
    pub port_name: String,
}

/// How one port steers FULLNAT replies to their worker (rvs-dp's
/// `fnat::steer`): mode `classes`, `exact` or `none`, the rules installed,
/// and why it fell back, if it did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortFlowInfo {
    /// rvs-dp's port index, and its name in rvs.toml.
    pub port: u16,
    pub name: String,
    pub mode: String,
    pub rules: u32,
    pub reason: String,
}

/// `-G` (`--get-laddr`): one local address of a service and its use now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaddrInfo {
    pub spec: LaddrSpec,
    /// Connections holding one of its ports now, all workers.
    pub conns: u64,
    /// New connections refused because every port of it was taken.
    pub exhausted: u64,
}

impl ServiceSpec {
    /// A non-persistent service with ipvsadm's defaults (wlc, no flags, /32 mask).
    pub fn new(proto: Proto, vip: Ipv4Addr, port: u16) -> Self {
        ServiceSpec {
            proto,
            vip,
            port,
            scheduler: DEFAULT_SCHEDULER.to_string(),
            flags: SchedFlags::default(),
            persistence: None,
            netmask: Ipv4Addr::BROADCAST,
            syn_proxy: false,
            client_addr: ClientAddr::None,
        }
    }

    pub fn key(&self) -> ServiceKey {
        ServiceKey {
            proto: self.proto,
            vip: self.vip,
            port: self.port,
        }
    }
}

/// A real server as `-a` / `-e` describe it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestSpec {
    pub rip: Ipv4Addr,
    pub port: u16,
    pub method: ForwardMethod,
    /// 0..=65535; 0 quiesces the real server.
    pub weight: u32,
    /// `-x`: 0 = no upper connection threshold.
    pub u_threshold: u32,
    /// `-y`: 0 = no lower threshold (the data plane then uses 3/4 of the upper).
    pub l_threshold: u32,
}

impl DestSpec {
    /// A real server with ipvsadm's defaults: weight 1, no thresholds.
    pub fn new(rip: Ipv4Addr, port: u16, method: ForwardMethod) -> Self {
        DestSpec {
            rip,
            port,
            method,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        }
    }
}

/// Connection timeouts in seconds (`--set tcp tcpfin udp`, `-L --timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpvsTimeouts {
    pub tcp: u32,
    pub tcpfin: u32,
    pub udp: u32,
}

impl Default for IpvsTimeouts {
    /// The kernel's defaults: 15 minutes established, 2 minutes FIN_WAIT, 5 minutes UDP.
    fn default() -> Self {
        IpvsTimeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300,
        }
    }
}

/// Which sync daemon: the one that sends (master) or the one that receives (backup).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DaemonRole {
    #[default]
    Master,
    Backup,
}

impl DaemonRole {
    /// ipvsadm's word: `master` / `backup`.
    pub fn as_str(self) -> &'static str {
        match self {
            DaemonRole::Master => "master",
            DaemonRole::Backup => "backup",
        }
    }
}

/// The IPVS sync protocol's defaults (`IP_VS_SYNC_GROUP`, `IP_VS_SYNC_PORT`, ttl 1).
pub const SYNC_DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
pub const SYNC_DEFAULT_PORT: u16 = 8848;
pub const SYNC_DEFAULT_TTL: u8 = 1;
/// Longest sync payload ipvsadm accepts (`--sync-maxlen`): a 64 KiB datagram less
/// the IPv4 and UDP headers.
pub const SYNC_MAX_MAXLEN: u32 = 65535 - 20 - 8;

/// A sync daemon as `--start-daemon` describes it, and as `-L --daemon` lists it
/// (then with every default resolved).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncDaemonSpec {
    pub role: DaemonRole,
    /// `--mcast-interface`: a kernel interface of the exception path.
    pub mcast_ifn: String,
    /// `--syncid` (0..=255). A backup with 0 takes every syncid.
    pub syncid: u8,
    /// `--sync-maxlen`: 0 = derived as the kernel does (1472 for a master).
    pub sync_maxlen: u32,
    /// `--mcast-group`: None = 224.0.0.81.
    pub mcast_group: Option<Ipv4Addr>,
    /// `--mcast-port`: 0 = 8848.
    pub mcast_port: u16,
    /// `--mcast-ttl`: 0 = 1.
    pub mcast_ttl: u8,
    /// Backup only (rvs's `sync_peer`): the source addresses accepted; empty = any.
    #[serde(default)]
    pub peers: Vec<Ipv4Addr>,
}

impl SyncDaemonSpec {
    pub fn new(role: DaemonRole, mcast_ifn: &str) -> Self {
        SyncDaemonSpec {
            role,
            mcast_ifn: mcast_ifn.to_string(),
            syncid: 0,
            sync_maxlen: 0,
            mcast_group: None,
            mcast_port: 0,
            mcast_ttl: 0,
            peers: Vec::new(),
        }
    }

    pub fn group(&self) -> Ipv4Addr {
        self.mcast_group.unwrap_or(SYNC_DEFAULT_GROUP)
    }

    pub fn port(&self) -> u16 {
        if self.mcast_port == 0 {
            SYNC_DEFAULT_PORT
        } else {
            self.mcast_port
        }
    }

    pub fn ttl(&self) -> u8 {
        if self.mcast_ttl == 0 {
            SYNC_DEFAULT_TTL
        } else {
            self.mcast_ttl
        }
    }

    /// The line `ipvsadm -L --daemon` prints for this daemon (defaults resolved first).
    pub fn ipvsadm_line(&self) -> String {
        let mut s = format!(
            "{} sync daemon (mcast={}, syncid={}",
            self.role.as_str(),
            self.mcast_ifn,
            self.syncid
        );
        if self.sync_maxlen != 0 {
            s.push_str(&format!(", maxlen={}", self.sync_maxlen));
        }
        s.push_str(&format!(
            ", group={}, port={}, ttl={})",
            self.group(),
            self.port(),
            self.ttl()
        ));
        s
    }
}

/// One request to the data plane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// `-A`
    AddService(ServiceSpec),
    /// `-E`: replaces every attribute of the service (as the kernel does).
    EditService(ServiceSpec),
    /// `-D`
    DelService(ServiceKey),
    /// `-C`: remove every virtual service.
    Clear,
    /// `-Z [service]`: zero the traffic counters of one service or all.
    Zero(Option<ServiceKey>),
    /// `-a`
    AddDest(ServiceKey, DestSpec),
    /// `-e`: the real server is found by (RIP, port) and takes the new attributes.
    EditDest(ServiceKey, DestSpec),
    /// `-d`
    DelDest(ServiceKey, Ipv4Addr, u16),
    /// `--set tcp tcpfin udp`; 0 leaves that timeout unchanged (as the kernel does).
    SetTimeouts {
        tcp: u32,
        tcpfin: u32,
        udp: u32,
    },
    /// `-L`, whole: services with their real servers, counters and rates
    /// (fine for small tables; one reply must fit the ring).
    List,
    /// `-L`, `-S` one page at a time: `generation` None starts a listing;
    /// later pages name the generation the first reply gave, and are refused
    /// with `IpvsError::TableChanged` once the table has changed since, so a
    /// listing of any size is of one table, never a mix of two.
    ListPage {
        generation: Option<u64>,
        from: ListCursor,
    },
    /// `-L -c`, whole (fine for small tables; one reply must fit the ring).
    ListConns,
    /// `-L -c` one page at a time: `listing` 0 takes a fresh listing of every
    /// worker's table; later pages name the listing the first reply gave, so
    /// a big table is listed consistently in replies that fit the ring.
    ListConnsPage {
        listing: u64,
        offset: u32,
        limit: u32,
    },
    /// `-L --timeout`
    GetTimeouts,
    /// `--latency` (rvs only): per-worker packet latency percentiles.
    Latency,
    /// The connection table size, for the `-L` header line.
    GetInfo,
    /// `--kernel` (rvs only): the addresses this director owns now, and
    /// which VIPs of configured services are among them.
    Ownership,
    /// `-R`: the commands are applied as one transaction, all or nothing.
    Restore(Vec<Command>),
    /// `-R` of any size, staged: `RestoreBegin` opens a staging area,
    /// `RestoreChunk`s fill it (each is checked as it arrives), and
    /// `RestoreCommit` applies everything as one transaction. The staging is
    /// discarded on the first error, on `RestoreAbort`, and when no step
    /// comes for `RESTORE_IDLE_S` seconds (a tool that died mid-way).
    RestoreBegin,
    RestoreChunk {
        restore: u64,
        commands: Vec<Command>,
    },
    RestoreCommit {
        restore: u64,
    },
    RestoreAbort {
        restore: u64,
    },
    /// `--start-daemon`: a connection sync daemon (both roles may run at once).
    StartDaemon(SyncDaemonSpec),
    /// `--stop-daemon`
    StopDaemon(DaemonRole),
    /// `-L --daemon`
    ListDaemons,
    /// The sync counters (`rvsadm -L --daemon --json`).
    SyncCounters,
    /// `--add-laddr -z LIP -t VIP:port -F PORT` (DPVS's syntax): a local
    /// address for the service's FULLNAT connections.
    AddLaddr(ServiceKey, LaddrSpec),
    /// `--del-laddr -z LIP -t VIP:port`
    DelLaddr(ServiceKey, Ipv4Addr),
    /// `--get-laddr` / `-G -t VIP:port`: the service's local addresses.
    GetLaddr(ServiceKey),
    /// Each port's NIC flow steering of FULLNAT replies (rvs-cp's
    /// `rvs_flow_rules`).
    FlowSteering,
}

impl Command {
    /// True for the commands that only read (lists, timeouts, latency, info).
    pub fn is_query(&self) -> bool {
        matches!(
            self,
            Command::List
                | Command::ListPage { .. }
                | Command::ListConns
                | Command::ListConnsPage { .. }
                | Command::GetTimeouts
                | Command::Latency
                | Command::GetInfo
                | Command::ListDaemons
                | Command::Ownership
                | Command::GetLaddr(_)
                | Command::FlowSteering
        )
    }

    /// The sync daemon commands: served by the data plane's sync threads, not
    /// by the IPVS model (they are not part of a restore or a save).
    pub fn is_daemon(&self) -> bool {
        matches!(
            self,
            Command::StartDaemon(_) | Command::StopDaemon(_) | Command::ListDaemons | Command::SyncCounters
        )
    }
}

/// Where a paged listing resumes: service `service` (0-based, in the table's
/// order), from its real server `dest` (0-based).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListCursor {
    pub service: u32,
    pub dest: u32,
}

/// Rates over the estimator's window, as `ipvsadm --rate` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

/// A real server in a `List` reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestInfo {
    pub spec: DestSpec,
    pub active: u32,
    pub inactive: u32,
    /// Persistence templates bound to this real server.
    pub persistent: u32,
    pub stats: TrafficTotals,
    pub rates: Rates,
}

/// A virtual service in a `List` reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub spec: ServiceSpec,
    pub stats: TrafficTotals,
    pub rates: Rates,
    pub dests: Vec<DestInfo>,
    /// Whether the director owns the VIP now (answers ARP for it and
    /// forwards it; see `OwnedAddrs`). None from a data plane that does not
    /// say; left out of the JSON then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned: Option<bool>,
    /// FULLNAT local addresses, in the order added (so `-S` can save them);
    /// left out of the JSON when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub laddrs: Vec<LaddrSpec>,
}

/// The addresses a director owns now. With kernel interfaces, exactly the
/// addresses on them (rvs-dp follows them with rtnetlink: keepalived's
/// `virtual_ipaddress`, `ip addr add`), port addresses and floating gateways
/// included; without, every VIP (`all`), as a lone director.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedAddrs {
    /// No kernel interface decides: every VIP is owned.
    pub all: bool,
    /// Sorted, no duplicates; empty when `all`.
    pub addresses: Vec<Ipv4Addr>,
}

impl OwnedAddrs {
    /// A director without kernel interfaces.
    pub fn all() -> Self {
        OwnedAddrs {
            all: true,
            addresses: Vec::new(),
        }
    }

    /// Exactly `addrs` (sorted and deduplicated here).
    pub fn only(addrs: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        let mut addresses: Vec<Ipv4Addr> = addrs.into_iter().collect();
        addresses.sort();
        addresses.dedup();
        OwnedAddrs {
            all: false,
            addresses,
        }
    }

    pub fn owns(&self, ip: Ipv4Addr) -> bool {
        self.all || self.addresses.contains(&ip)
    }
}

/// A VIP of the configured services, and whether the director owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipOwned {
    pub vip: Ipv4Addr,
    pub owned: bool,
}

/// Connection sync's counters since rvs-dp started: the workers' (summed) and
/// the running daemons' (since each started).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCountersInfo {
    /// Entries the workers handed to the master thread (`sync_sent`).
    pub sent: u64,
    /// Entries lost to a full worker ring (`sync_dropped`).
    pub dropped: u64,
    /// Received entries installed new, or updating an entry (`sync_installed`).
    pub installed: u64,
    pub updated: u64,
    /// Received entries (or datagrams) refused, by reason (`sync_refused`):
    /// `unknown_service`, `unknown_dest`, `table_full`, `fullnat`, `inbound_full`,
    /// `foreign_peer`, and the decoder's reasons (`wrong_sync_id`, ...).
    pub refused: std::collections::BTreeMap<String, u64>,
    /// The master daemon's datagrams sent and failed sends.
    pub messages_sent: u64,
    pub send_errors: u64,
    /// The backup daemon's datagrams received and accepted whole.
    pub messages_received: u64,
    pub messages_accepted: u64,
}

/// One connection (or persistence template) in a `ListConns` reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnInfo {
    pub proto: Proto,
    /// The kernel's state name: ESTABLISHED, SYN_RECV, FIN_WAIT, TIME_WAIT,
    /// CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN, SYNACK, NONE (templates), UDP.
    pub state: String,
    /// Seconds until the entry expires.
    pub expires_s: u32,
    pub cip: Ipv4Addr,
    pub cport: u16,
    pub vip: Ipv4Addr,
    pub vport: u16,
    pub rip: Ipv4Addr,
    pub rport: u16,
    /// FULLNAT only: the local address and port (LIP:lport) the connection
    /// uses toward its real server, which its replies come back to. Absent
    /// for the other methods, and in JSON from a data plane that predates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub laddr: Option<SocketAddrV4>,
}

/// Packet latency percentiles of one worker, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerLatency {
    pub worker: u32,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    /// Samples behind the percentiles.
    pub count: u64,
}

/// The data plane's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Ok,
    Error(IpvsError),
    Services(Vec<ServiceInfo>),
    /// A page of a `ListPage` listing of table generation `generation`;
    /// `next` is where the next page starts, None after the last. When the
    /// page started inside a service, its first entry carries the rest of
    /// that service's real servers.
    ServicesPage {
        generation: u64,
        services: Vec<ServiceInfo>,
        next: Option<ListCursor>,
    },
    /// `RestoreBegin`: the staging area the chunks go to.
    RestoreStaged {
        restore: u64,
    },
    Conns(Vec<ConnInfo>),
    /// A page of a connection listing: `total` entries in listing `listing`.
    ConnsPage {
        listing: u64,
        total: u32,
        conns: Vec<ConnInfo>,
    },
    Timeouts {
        tcp: u32,
        tcpfin: u32,
        udp: u32,
    },
    Latency(Vec<WorkerLatency>),
    Info {
        conn_tab_size: u32,
    },
    /// `-L --daemon`: the running sync daemons, master first, defaults resolved.
    Daemons(Vec<SyncDaemonSpec>),
    /// `Ownership`: what is owned, and each VIP of the configured services
    /// (sorted, once each) with its state.
    Ownership {
        owned: OwnedAddrs,
        vips: Vec<VipOwned>,
    },
    SyncCounters(SyncCountersInfo),
    /// `GetLaddr`: the service's local addresses, in the order added.
    Laddrs(Vec<LaddrInfo>),
    /// `FlowSteering`: the ports that had local addresses to steer.
    FlowSteering(Vec<PortFlowInfo>),
}

/// Why a command was refused. The `Display` texts are ipvsadm's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpvsError {
    /// `-A` of a service that exists.
    ServiceExists,
    /// `-E`, `-D`, `-Z` or `-L` of a service that does not exist.
    NoSuchService,
    /// `-a`, `-e`, `-d` on a service that does not exist.
    ServiceNotDefined,
    /// `-a` of a real server that exists.
    DestExists,
    /// `-e`, `-d` of a real server that does not exist.
    NoSuchDest,
    /// A scheduler name not in `SCHEDULER_NAMES`.
    SchedulerNotFound(String),
    /// Weight above 65535.
    BadWeight(u32),
    /// `-x` above INT_MAX.
    BadUThreshold(u32),
    /// `-y` above INT_MAX.
    BadLThreshold(u32),
    /// Lower threshold above the upper one (the kernel answers ERANGE).
    ThresholdOrder { lower: u32, upper: u32 },
    /// Port 0 on a service without persistence.
    ZeroPortNotPersistent,
    /// A timeout outside 1..=31 days (persistence) or 0..=31 days (`--set`).
    BadTimeout(u32),
    /// DR and TUN cannot change the port: the real server receives the VIP's port.
    PortMismatch { vport: u16, rport: u16 },
    /// VIP or RIP 0.0.0.0, broadcast or multicast (the kernel answers EINVAL).
    AddressNotUnicast(Ipv4Addr),
    /// A SYN proxy with a real server that is not NAT: the proxy must see
    /// the real server's replies to translate their sequence numbers.
    SynProxyNeedsNat { rip: Ipv4Addr, port: u16 },
    /// `--add-laddr` of a local address the service has already.
    LaddrExists(Ipv4Addr),
    /// `--del-laddr` of a local address the service does not have.
    NoSuchLaddr(Ipv4Addr),
    /// `--add-laddr` of a local address another service holds: its ports
    /// would be shared by two pools that do not know of each other.
    LaddrInUse { addr: Ipv4Addr, service: ServiceKey },
    /// `--add-laddr` naming a port rvs-dp does not have, or a LIP that is not
    /// on that port's subnet (replies to it would not come back).
    LaddrNotOnPort { addr: Ipv4Addr, port_name: String },
    /// PROXY protocol or TOA on a UDP service: both are TCP's.
    ClientAddrNeedsTcp,
    /// PROXY protocol or TOA with a real server that is not FULLNAT: only
    /// FULLNAT hides the client's address and rewrites the stream.
    ClientAddrNeedsFullNat { rip: Ipv4Addr, port: u16 },
    /// A table limit of the data plane was reached.
    NoMemory,
    /// A query or a nested restore inside `Restore`, or an operation rvs lacks.
    Unsupported(String),
    /// Command `index` (0-based) of a `Restore` failed; nothing was applied.
    Restore { index: usize, error: Box<IpvsError> },
    /// A later page of a listing, after the table changed: list again.
    TableChanged,
    /// A restore step for a staging area that is gone: it failed, was
    /// aborted or committed, or was idle too long.
    NoSuchRestore(u64),
    /// `--start-daemon` of a role already running (the kernel's EEXIST).
    DaemonRunning,
    /// `--stop-daemon` of a role not running (the kernel's ESRCH).
    NoDaemon,
    /// A sync daemon could not open its socket: the system's error text (as
    /// ipvsadm prints `strerror` for errors it has no text of its own for).
    DaemonSocket(String),
    /// A full resync's install page (`resync::BulkRequest::Install`): the
    /// workers' inbound sync rings stayed full (entries handed over before
    /// that stay handed over).
    SyncBusy,
    /// A full resync's page or listing request refused whole (malformed
    /// messages, a count its messages do not hold, a listing that is gone):
    /// nothing of it was installed or listed.
    SyncPageRefused(String),
}

impl fmt::Display for IpvsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpvsError::ServiceExists => f.write_str("Service already exists"),
            IpvsError::NoSuchService => f.write_str("No such service"),
            IpvsError::ServiceNotDefined => f.write_str("Service not defined"),
            IpvsError::DestExists => f.write_str("Destination already exists"),
            IpvsError::NoSuchDest => f.write_str("No such destination"),
            // ipvsadm cannot tell a missing scheduler from a missing persistence
            // engine (both ENOENT), hence its combined wording.
            IpvsError::SchedulerNotFound(_) => f.write_str("Scheduler or persistence engine not found"),
            IpvsError::BadWeight(_) => f.write_str("illegal weight specified"),
            IpvsError::BadUThreshold(_) => f.write_str("illegal u_threshold specified"),
            IpvsError::BadLThreshold(_) => f.write_str("illegal l_threshold specified"),
            IpvsError::ThresholdOrder { .. } => f.write_str("Numerical result out of range"),
            IpvsError::ZeroPortNotPersistent => f.write_str("Zero port specified for non-persistent service"),
            IpvsError::BadTimeout(t) => write!(f, "invalid timeout value `{t}' specified"),
            IpvsError::PortMismatch { vport, rport } => write!(
                f,
                "Real server port {rport} differs from virtual service port {vport}: \
                 gatewaying (DR) and ipip (TUN) keep the port, only masquerading (NAT) can change it"
            ),
            IpvsError::SynProxyNeedsNat { rip, port } => write!(
                f,
                "SYN proxy (-j enable) needs masquerading (-m) real servers: {rip}:{port} is not; \
                 its replies would bypass the director, which translates their sequence numbers"
            ),
            IpvsError::AddressNotUnicast(_) => {
                f.write_str("Invalid operation.  Possibly wrong module version, address not unicast, ...")
            }
            IpvsError::LaddrExists(a) => write!(f, "Local address {a} already exists for this service"),
            IpvsError::NoSuchLaddr(a) => write!(f, "No such local address: {a}"),
            IpvsError::LaddrInUse { addr, service } => {
                write!(f, "Local address {addr} is already used by service {service}")
            }
            IpvsError::LaddrNotOnPort { addr, port_name } => write!(
                f,
                "Local address {addr} is not on port {port_name}'s subnet (or there is no such port): \
                 replies to it would not reach the director"
            ),
            IpvsError::ClientAddrNeedsTcp => {
                f.write_str("PROXY protocol and TOA carry the client address in TCP only, not UDP")
            }
            IpvsError::ClientAddrNeedsFullNat { rip, port } => write!(
                f,
                "PROXY protocol and TOA need FULLNAT (-b) real servers: {rip}:{port} is not"
            ),
            IpvsError::NoMemory => f.write_str("Memory allocation problem"),
            IpvsError::Unsupported(what) => write!(f, "Operation not supported: {what}"),
            IpvsError::Restore { index, error } => write!(f, "restore command {}: {error}", index + 1),
            IpvsError::TableChanged => f.write_str("the table changed while it was listed; list again"),
            IpvsError::DaemonRunning => f.write_str("Daemon has already run"),
            IpvsError::NoDaemon => f.write_str("No daemon is running"),
            IpvsError::DaemonSocket(e) => f.write_str(e),
            IpvsError::SyncBusy => f.write_str("Sync rings stay full: the workers do not install"),
            IpvsError::SyncPageRefused(why) => write!(f, "resync page refused: {why}"),
            IpvsError::NoSuchRestore(id) => write!(
                f,
                "restore {id} is not in progress (it failed, was committed, or was idle {RESTORE_IDLE_S} s); \
                 nothing of it was applied"
            ),
        }
    }
}

impl std::error::Error for IpvsError {}

/// Connections per `ListConnsPage` reply: at most about 170 bytes each in JSON, so a
/// page stays well inside the ring's message size.
pub const CONNS_PAGE: u32 = 500;

/// Rows per `ListPage` reply (a service heading and each real server count
/// one): a real server is at most about 600 bytes in JSON (counters at their
/// widest), so a page stays under 300 KB, well inside the ring's message size.
pub const LIST_PAGE: u32 = 500;

/// Commands per `RestoreChunk`: at most about 250 bytes each in JSON, so a
/// chunk stays under 512 KB.
pub const RESTORE_CHUNK: usize = 2000;

/// A staged restore with no step for this long is discarded: its tool died
/// or hung. Long enough for a slow tool between chunks, short enough that a
/// dead one does not hold memory for long.
pub const RESTORE_IDLE_S: u64 = 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_json() {
        let key = ServiceKey {
            proto: Proto::Udp,
            vip: Ipv4Addr::new(192, 168, 1, 53),
            port: 53,
        };
        let mut spec = ServiceSpec::new(Proto::Tcp, Ipv4Addr::new(10, 0, 0, 1), 80);
        spec.persistence = Some(300);
        spec.netmask = Ipv4Addr::new(255, 255, 255, 0);
        spec.flags.fallback = true;
        let cmds = vec![
            Command::AddService(spec.clone()),
            Command::EditService(spec),
            Command::DelService(key),
            Command::Clear,
            Command::Zero(None),
            Command::Zero(Some(key)),
            Command::AddDest(
                key,
                DestSpec::new(Ipv4Addr::new(10, 0, 1, 1), 53, ForwardMethod::Nat),
            ),
            Command::EditDest(
                key,
                DestSpec::new(Ipv4Addr::new(10, 0, 1, 1), 53, ForwardMethod::Tun),
            ),
            Command::DelDest(key, Ipv4Addr::new(10, 0, 1, 1), 53),
            Command::SetTimeouts {
                tcp: 1,
                tcpfin: 2,
                udp: 3,
            },
            Command::List,
            Command::ListConns,
            Command::GetTimeouts,
            Command::Latency,
            Command::GetInfo,
            Command::Ownership,
        ];
        let all = Command::Restore(cmds);
        let bytes = serde_json::to_vec(&all).unwrap();
        let back: Command = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, all);
    }

    #[test]
    fn replies_round_trip_through_json() {
        let replies = vec![
            Reply::Ok,
            Reply::Error(IpvsError::Restore {
                index: 3,
                error: Box::new(IpvsError::SchedulerNotFound("xx".into())),
            }),
            Reply::Timeouts {
                tcp: 900,
                tcpfin: 120,
                udp: 300,
            },
            Reply::Latency(vec![WorkerLatency {
                worker: 1,
                p50: 10,
                p90: 20,
                p99: 30,
                p999: 40,
                max: 50,
                count: 6,
            }]),
            Reply::Info { conn_tab_size: 4096 },
            Reply::Ownership {
                owned: OwnedAddrs::only([Ipv4Addr::new(10, 1, 0, 100), Ipv4Addr::new(10, 1, 0, 1)]),
                vips: vec![VipOwned {
                    vip: Ipv4Addr::new(10, 1, 0, 100),
                    owned: true,
                }],
            },
        ];
        for r in replies {
            let s = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Reply>(&s).unwrap(), r);
        }
    }

    #[test]
    fn a_conn_info_without_local_address_keeps_its_json() {
        let nat = ConnInfo {
            proto: Proto::Tcp,
            state: "ESTABLISHED".into(),
            expires_s: 899,
            cip: Ipv4Addr::new(10, 1, 0, 10),
            cport: 40000,
            vip: Ipv4Addr::new(10, 1, 0, 100),
            vport: 80,
            rip: Ipv4Addr::new(10, 2, 0, 11),
            rport: 8080,
            laddr: None,
        };
        // What a data plane without FULLNAT's column wrote: no `laddr` key,
        // and it still reads.
        let old = r#"{"proto":"Tcp","state":"ESTABLISHED","expires_s":899,"cip":"10.1.0.10","cport":40000,"vip":"10.1.0.100","vport":80,"rip":"10.2.0.11","rport":8080}"#;
        assert_eq!(serde_json::from_str::<ConnInfo>(old).unwrap(), nat);
        assert_eq!(serde_json::to_string(&nat).unwrap(), old);
        let fnat = ConnInfo {
            laddr: Some(SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 201), 1025)),
            ..nat
        };
        let s = serde_json::to_string(&fnat).unwrap();
        assert!(s.ends_with(r#","laddr":"10.2.0.201:1025"}"#), "{s}");
        assert_eq!(serde_json::from_str::<ConnInfo>(&s).unwrap(), fnat);
    }

    #[test]
    fn error_texts_are_ipvsadms() {
        assert_eq!(IpvsError::ServiceExists.to_string(), "Service already exists");
        assert_eq!(IpvsError::ServiceNotDefined.to_string(), "Service not defined");
        assert_eq!(IpvsError::NoSuchDest.to_string(), "No such destination");
        assert_eq!(IpvsError::DestExists.to_string(), "Destination already exists");
        assert_eq!(IpvsError::NoMemory.to_string(), "Memory allocation problem");
        assert_eq!(
            IpvsError::Restore {
                index: 0,
                error: Box::new(IpvsError::NoSuchService)
            }
            .to_string(),
            "restore command 1: No such service"
        );
    }
}
